//! A hook through which the broker learns how long group-commit fsyncs take.
//!
//! Storage must not depend on a metrics library: the broker registers one plain function at
//! start-up and storage calls it after each fsync round. Unset, the hook costs one atomic load.

use std::sync::OnceLock;
use std::time::Duration;

static SYNC_OBSERVER: OnceLock<fn(Duration)> = OnceLock::new();

/// Registers the function called with the duration of every group-commit round (the
/// fdatasync of each file holding unsynced data, plus the directory when segments were
/// created). The first registration wins; returns false if one was already set.
pub fn set_sync_observer(f: fn(Duration)) -> bool {
    SYNC_OBSERVER.set(f).is_ok()
}

pub(crate) fn sync_done(took: Duration) {
    if let Some(f) = SYNC_OBSERVER.get() {
        f(took);
    }
}
