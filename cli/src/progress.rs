//! A rate/progress line on stderr for long operations, only when stderr is a terminal (scripts
//! and pipes see nothing).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    verb: &'static str,
    enabled: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

const EVERY: Duration = Duration::from_millis(250);

impl Progress {
    /// `verb` names what is counted, e.g. "produced". `enabled` lets callers add conditions
    /// (consume only shows progress when its records don't go to the same terminal).
    pub fn new(verb: &'static str, enabled: bool) -> Progress {
        let now = Instant::now();
        Progress { verb, enabled: enabled && std::io::stderr().is_terminal(), started: now, last: now, shown: false }
    }

    /// Reports `count` records and `bytes` so far (rate-limited).
    pub fn update(&mut self, count: u64, bytes: u64) {
        if !self.enabled || self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "\r\x1b[2K{} {count} records ({}) in {:.1}s, {:.0} records/s, {}/s",
            self.verb,
            human_bytes(bytes as f64),
            secs,
            count as f64 / secs,
            human_bytes(bytes as f64 / secs)
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
        self.shown = true;
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.shown {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
