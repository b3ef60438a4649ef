//! One live line per stage on standard error: rewritten in place on a
//! terminal, a plain line per stage otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress of a run.
#[derive(Debug)]
pub struct Progress {
    stages: usize,
    current: usize,
    label: String,
    started: Instant,
    quiet: bool,
    tty: bool,
}

impl Progress {
    /// `stages` stages; nothing is printed when `quiet`.
    pub fn new(stages: usize, quiet: bool) -> Self {
        Progress {
            stages,
            current: 0,
            label: String::new(),
            started: Instant::now(),
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Starts the next stage.
    pub fn stage(&mut self, label: &str) {
        self.current += 1;
        self.label = label.to_string();
        self.started = Instant::now();
        if self.tty {
            self.update("");
        }
    }

    /// Shows how far the stage is (on a terminal only).
    pub fn update(&self, detail: &str) {
        if self.quiet || !self.tty {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}  {detail}", self.head());
        let _ = err.flush();
    }

    /// Ends the stage with what it did.
    pub fn done(&self, detail: &str) {
        if self.quiet {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let line = format!("{}  {detail} ({secs:.1}s)", self.head());
        if self.tty {
            eprintln!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn head(&self) -> String {
        format!("[{}/{}] {}", self.current, self.stages, self.label)
    }
}
