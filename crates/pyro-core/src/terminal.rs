//! What a person would see: terminal output with its control sequences
//! interpreted (carriage returns, backspaces, erases, cursor moves), so a
//! progress bar that redraws its line reads as its last state and colour
//! codes vanish. One line per line the output reached (at most the last
//! [`LINES_MAX`]); trailing blanks are trimmed. Cursor moves are relative
//! (up, down, left, right, to a column) and never go below the last line,
//! as on a terminal's screen; absolute positioning and alternate screens
//! (full-screen programs such as `top`) are not drawn.

/// Lines kept (older ones scroll off): memory stays bounded whatever the
/// output.
pub const LINES_MAX: usize = 5_000;

/// Renders `bytes` written to a terminal `cols` columns wide.
pub fn render(bytes: &[u8], cols: u16) -> String {
    let mut screen = Screen {
        lines: vec![Vec::new()],
        row: 0,
        col: 0,
        cols: usize::from(cols.max(1)),
    };
    let mut parser = vte::Parser::new();
    parser.advance(&mut screen, bytes);
    let first = screen.lines.len().saturating_sub(LINES_MAX);
    let mut out: Vec<String> = screen.lines[first..]
        .iter()
        .map(|l| l.iter().collect::<String>().trim_end().to_owned())
        .collect();
    while out.last().is_some_and(String::is_empty) && out.len() > 1 {
        out.pop();
    }
    out.join("\n")
}

struct Screen {
    lines: Vec<Vec<char>>,
    row: usize,
    col: usize,
    cols: usize,
}

impl Screen {
    fn line(&mut self) -> &mut Vec<char> {
        while self.lines.len() <= self.row {
            self.lines.push(Vec::new());
        }
        &mut self.lines[self.row]
    }

    fn newline(&mut self) {
        self.row += 1;
        self.col = 0;
        self.line();
        // Scroll off in batches, so each line moves at most once or twice.
        if self.lines.len() > LINES_MAX + LINES_MAX / 4 {
            let off = self.lines.len() - LINES_MAX;
            self.lines.drain(..off);
            self.row -= off;
        }
    }
}

impl vte::Perform for Screen {
    fn print(&mut self, c: char) {
        if self.col >= self.cols {
            self.newline();
        }
        let col = self.col;
        let line = self.line();
        if line.len() <= col {
            line.resize(col, ' ');
            line.push(c);
        } else {
            line[col] = c;
        }
        self.col += 1;
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' | 0x0b | 0x0c => self.newline(),
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.saturating_sub(1),
            b'\t' => self.col = ((self.col / 8 + 1) * 8).min(self.cols.saturating_sub(1)),
            _ => {}
        }
    }

    fn csi_dispatch(
        &mut self,
        params: &vte::Params,
        _intermediates: &[u8],
        _ignore: bool,
        action: char,
    ) {
        let first = params
            .iter()
            .next()
            .and_then(|p| p.first().copied())
            .unwrap_or(0);
        let n = usize::from(first.max(1));
        match action {
            'K' => {
                let col = self.col;
                let line = self.line();
                match first {
                    0 => line.truncate(col),
                    1 => {
                        for c in line.iter_mut().take(col + 1) {
                            *c = ' ';
                        }
                    }
                    _ => line.clear(),
                }
            }
            'J' if first >= 2 => {
                self.lines = vec![Vec::new()];
                self.row = 0;
                self.col = 0;
            }
            'J' if first == 0 => {
                let (row, col) = (self.row, self.col);
                self.line().truncate(col);
                self.lines.truncate(row + 1);
            }
            'C' => self.col = (self.col + n).min(self.cols.saturating_sub(1)),
            'D' => self.col = self.col.saturating_sub(n),
            'G' => self.col = (n - 1).min(self.cols.saturating_sub(1)),
            'A' => self.row = self.row.saturating_sub(n),
            // Down, never past the last line (no scrolling, as on a screen).
            'B' => self.row = (self.row + n).min(self.lines.len().saturating_sub(1)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
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
}
