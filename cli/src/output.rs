//! Writing to stdout: text for people, or one JSON value per line with `--json`. Every line
//! is flushed at once, because scripts and tests read the output while the command runs.

use std::io::Write;

use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// One result: `json` in JSON mode, `human` (which may span several lines) otherwise.
    pub fn emit(&self, json: &Value, human: impl std::fmt::Display) -> std::io::Result<()> {
        if self.json {
            write_line(json)
        } else {
            write_line(human)
        }
    }

    /// The `{"error": ...}` line of JSON mode; the message itself goes to stderr elsewhere.
    pub fn error(&self, message: &str) {
        if self.json {
            // Nothing more can be done if stdout is gone too.
            let _ = write_line(serde_json::json!({ "error": message }));
        }
    }
}

fn write_line(line: impl std::fmt::Display) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}
