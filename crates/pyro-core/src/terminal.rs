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
mod tests;
