//! jemalloc's own counters on `/metrics`. A broker's RSS mixes memory in use with freed pages
//! jemalloc has not yet returned to the OS (see `malloc_conf` in main.rs); these tell them
//! apart.

use std::fmt::Write;

use tikv_jemalloc_ctl::{epoch, stats};

pub struct Jemalloc;

type Read = fn() -> tikv_jemalloc_ctl::Result<usize>;

const COUNTERS: [(&str, &str, Read); 4] = [
    ("rill_memory_allocated_bytes", "Bytes in live heap allocations", stats::allocated::read),
    ("rill_memory_active_bytes", "Bytes in heap pages holding live allocations", stats::active::read),
    (
        "rill_memory_resident_bytes",
        "Bytes of heap memory resident, freed pages not yet returned to the OS included",
        stats::resident::read,
    ),
    (
        "rill_memory_retained_bytes",
        "Bytes of heap address space returned to the OS but kept mapped for reuse",
        stats::retained::read,
    ),
];

impl rill_broker::metrics::MetricsSource for Jemalloc {
    fn render(&self, out: &mut String) {
        // The counters are a snapshot taken when the epoch advances.
        if epoch::advance().is_err() {
            return;
        }
        for (name, help, read) in COUNTERS {
            if let Ok(v) = read() {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
            }
        }
    }
}
