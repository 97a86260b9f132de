//! Timestamped log lines to stderr and to `<out>/jepsen.log`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

static FILE: OnceLock<Mutex<File>> = OnceLock::new();
static CLIENTS: OnceLock<Mutex<File>> = OnceLock::new();

/// Also writes every later line to `path`; client library logs go to `clients.log` beside it.
pub fn to_file(path: &Path) -> std::io::Result<()> {
    let f = File::create(path)?;
    let _ = FILE.set(Mutex::new(f));
    let c = File::create(path.with_file_name("clients.log"))?;
    let _ = CLIENTS.set(Mutex::new(c));
    Ok(())
}

/// A line of a client library's own log (librdkafka warnings and errors), to `clients.log`.
pub fn client_line(msg: &str) {
    if let Some(f) = CLIENTS.get() {
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{} {msg}", utc_now(true));
    }
}

/// Writes one line, prefixed with the UTC wall-clock time.
pub fn line(msg: &str) {
    let l = format!("{} {msg}\n", utc_now(true));
    eprint!("{l}");
    if let Some(f) = FILE.get() {
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(l.as_bytes());
    }
}

/// `2026-12-04T23:01:02.345Z` (with `millis`) or `20261204T230102Z` (without, for file names).
pub fn utc_now(millis: bool) -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    if millis {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", d.subsec_millis())
    } else {
        format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z")
    }
}

/// `jlog!("fmt", args)`: a timestamped line to stderr and the run's log file.
#[macro_export]
macro_rules! jlog {
    ($($arg:tt)*) => { $crate::log::line(&format!($($arg)*)) };
}
