//! Connection log lines and the rate limiter that keeps bad input from flooding the log.
//!
//! Each connection logs one line when it opens and one when it closes (client id, address,
//! listener, principal, why it closed). A client that reconnects in a loop, or a scanner
//! sending garbage, would otherwise write a line per attempt: every site that logs per
//! connection goes through a [`RateLimiter`], which lets a burst through each second and then
//! reports how many lines it dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::broker::ConnContext;
use crate::metrics::ConnectionGauge;

/// Until authentication lands every connection is anonymous, as Kafka names it.
const ANONYMOUS: &str = "User:ANONYMOUS";

/// Lets at most `per_second` events through in each one-second window.
pub struct RateLimiter {
    per_second: u64,
    /// `second << 32 | count` in one word, so a check is a single atomic update.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimiter {
    pub const fn new(per_second: u32) -> Self {
        RateLimiter { per_second: per_second as u64, window: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(n)` if this event may be logged, `n` being how many were dropped since the last
    /// one that was; `None` to drop it.
    pub fn allow(&self) -> Option<u64> {
        let now = epoch_second();
        let prev = self
            .window
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                let (second, count) = (w >> 32, w & 0xffff_ffff);
                if second != now {
                    Some(now << 32 | 1)
                } else if count < self.per_second {
                    Some(w + 1)
                } else {
                    None
                }
            })
            .ok();
        match prev {
            Some(_) => Some(self.suppressed.swap(0, Ordering::AcqRel)),
            None => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

fn epoch_second() -> u64 {
    // Process-relative seconds, offset by one so the zero-initialised window never matches.
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() + 1
}

/// Connection open and close lines.
pub static CONNECTIONS: RateLimiter = RateLimiter::new(50);
/// Malformed, oversized or unservable requests.
pub static BAD_INPUT: RateLimiter = RateLimiter::new(10);

/// What a connection keeps between its open and close lines.
pub struct Opened {
    at: Instant,
    _gauge: ConnectionGauge,
}

/// Logs the open line and counts the connection on its listener.
pub fn opened(ctx: &ConnContext) -> Opened {
    if let Some(suppressed) = CONNECTIONS.allow() {
        tracing::info!(peer = %ctx.peer, listener = %ctx.listener, principal = ANONYMOUS, suppressed, "connection opened");
    }
    Opened { at: Instant::now(), _gauge: ConnectionGauge::open(&ctx.listener) }
}

/// Logs the close line: the client id is that of the connection's first request.
pub fn closed(ctx: &ConnContext, opened: Opened, reason: &str) {
    if let Some(suppressed) = CONNECTIONS.allow() {
        tracing::info!(
            peer = %ctx.peer,
            listener = %ctx.listener,
            principal = ANONYMOUS,
            client_id = ctx.client_id.get().map(String::as_str).unwrap_or(""),
            reason,
            duration_ms = opened.at.elapsed().as_millis() as u64,
            suppressed,
            "connection closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted_and_reported() {
        let l = RateLimiter::new(3);
        // Stay within one window: retry if the second rolls over mid-test.
        loop {
            let start = epoch_second();
            let allowed: Vec<_> = (0..10).map(|_| l.allow()).collect();
            if epoch_second() != start {
                continue;
            }
            assert_eq!(allowed.iter().filter(|a| a.is_some()).count(), 3);
            break;
        }
        while epoch_second() == (l.window.load(Ordering::Acquire) >> 32) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(l.allow().unwrap() >= 7, "the dropped lines are reported on the next one");
    }
}
