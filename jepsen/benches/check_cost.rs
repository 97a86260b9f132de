//! How long the checker takes on a big history: ~10^6 operations (acknowledged sends over 16
//! keys, every value polled back in chunks of 10, a complete drain). Prints the time.
//!
//! `cargo bench -p rill-jepsen --bench check_cost`

use rill_jepsen::checker::{check, CheckOptions};
use rill_jepsen::history::{Body, Key, Offset, Op, OpType, Process, Val};

struct History(Vec<Op>);

impl History {
    fn push(&mut self, process: Process, kind: OpType, body: Body) {
        let index = self.0.len() as u64;
        self.0.push(Op { index, time_ns: index * 1_000, process, kind, body, error: None });
    }
    fn invoke_ok(&mut self, process: Process, invoke: Body, ok: Body) {
        self.push(process, OpType::Invoke, invoke);
        self.push(process, OpType::Ok, ok);
    }
}

fn main() {
    let (producers, keys) = (8u64, 16u32);
    let mut h = History(Vec::new());
    let mut logs: Vec<Vec<(Key, Offset, Val)>> = vec![Vec::new(); keys as usize];
    let mut v: Val = 0;
    while h.0.len() < 900_000 {
        let key = (v % u64::from(keys)) as Key;
        let offset = logs[key as usize].len() as Offset;
        logs[key as usize].push((key, offset, v));
        h.invoke_ok(
            (v % producers) as Process,
            Body::Send { key, value: v, offset: None },
            Body::Send { key, value: v, offset: Some(offset) },
        );
        v += 1;
    }
    let drain: Process = 1000;
    for (process, log) in
        [(100, &logs), (drain, &logs)].into_iter().flat_map(|(p, logs)| logs.iter().map(move |l| (p, l)))
    {
        let key = log[0].0;
        let p = if process == drain { drain } else { process + key };
        let assign = Body::Assign { keys: vec![key], seek_to_beginning: true };
        h.invoke_ok(p, assign.clone(), assign);
        for chunk in log.chunks(10) {
            h.invoke_ok(p, Body::Poll { records: vec![] }, Body::Poll { records: chunk.to_vec() });
        }
    }
    let end_offsets = logs.iter().map(|l| (l[0].0, l.len() as Offset)).collect();
    h.push(drain, OpType::Ok, Body::Drain { complete: true, end_offsets });
    let started = std::time::Instant::now();
    let a = check(&h.0, &CheckOptions::default());
    let took = started.elapsed();
    assert!(a.valid, "{:?}", a.bad);
    assert_eq!(a.stats.acked_read, v as usize);
    println!("check: {} ops, {} records polled: {:.2} s", h.0.len(), a.stats.records_polled, took.as_secs_f64());
}
