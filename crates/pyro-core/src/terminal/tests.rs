use super::render;

#[test]
fn a_redrawn_line_reads_as_its_last_state() {
    assert_eq!(render(b"a\rb\r\n", 80), "b");
    assert_eq!(
        render(b"progress 10%\rprogress 55%\rprogress 100%\r\ndone\r\n", 80),
        "progress 100%\ndone"
    );
    // Colours vanish; an erase-line clears what was there.
    assert_eq!(
        render(b"\x1b[31mred\x1b[0m text\r\x1b[Kclean\r\n", 80),
        "clean"
    );
    // Backspace, cursor moves, and a clear screen.
    assert_eq!(render(b"abc\x08\x08X\r\n", 80), "aXc");
    assert_eq!(render(b"old\x1b[2Jnew", 80), "new");
    assert_eq!(render(b"12345\x1b[3Gx", 80), "12x45");
    // Bracketed-paste and title sequences say nothing.
    assert_eq!(render(b"\x1b[?2004h\x1b]0;title\x07pyro$ ", 80), "pyro$");
    // Long lines wrap at the width.
    assert_eq!(render(b"abcdef", 4), "abcd\nef");
    // Moves down stop at the last line; huge moves cost nothing.
    assert_eq!(render(b"a\x1b[65535Bb", 80), "ab");
    let flood = b"\x1b[65535B\x1b[65535G".repeat(100_000);
    assert_eq!(render(&flood, 80), "");
    // At most the last LINES_MAX lines are kept.
    let many = "x\n".repeat(super::LINES_MAX * 3);
    // (The last of them is the empty line after the final newline.)
    assert_eq!(
        render(many.as_bytes(), 80).lines().count(),
        super::LINES_MAX - 1
    );
}

/// Tabs stop at every eighth column and never past the width; erasing to
/// the start of a line, the whole line and below the cursor; moves left,
/// right and up.
#[test]
fn tabs_erases_and_cursor_moves_land_where_a_terminal_puts_them() {
    assert_eq!(render(b"a\tb", 80), "a       b");
    assert_eq!(render(b"abc\tZ", 4), "abcZ");
    // ESC[1K blanks up to the cursor; ESC[2K the whole line.
    assert_eq!(render(b"abcdef\x1b[3G\x1b[1K", 80), "   def");
    assert_eq!(render(b"abcdef\x1b[2Kx", 80), "      x");
    // ESC[J (0): the rest of the line and every line below go.
    assert_eq!(render(b"one\ntwo\nthree\x1b[2A\x1b[2G\x1b[J", 80), "o");
    // Right, left, up.
    assert_eq!(render(b"ab\x1b[3Cc", 80), "ab   c");
    assert_eq!(render(b"abcd\x1b[2DX", 80), "abXd");
    // (A line feed keeps the column, as on a raw terminal.)
    assert_eq!(render(b"top\nbottom\x1b[1AT", 80), "top   T\nbottom");
}
