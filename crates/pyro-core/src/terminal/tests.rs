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
