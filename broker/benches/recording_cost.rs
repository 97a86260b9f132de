//! What recording monitoring costs per produce request: the request timer, the latency
//! histograms, the request counter, the error scan and the partition's byte/record counters.
//! Prints nanoseconds per request; README "Monitoring" quotes it.
//!
//! `cargo bench -p rill-broker --bench recording_cost`

use std::time::Instant;

use rill_broker::metrics::{now, PartitionStats, RequestTimer};
use rill_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use rill_protocol::messages::{ApiKey, ProduceResponse, ResponseKind};

fn main() {
    let resp = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default().with_partition_responses(vec![PartitionProduceResponse::default()]),
    ]));
    let stats = PartitionStats::default();
    let n = 2_000_000u32;
    for deferred in [false, true] {
        let started = Instant::now();
        for _ in 0..n {
            let t = RequestTimer::start(ApiKey::Produce, now());
            stats.produced(1000, 10);
            let t = if deferred { t.deferred() } else { t };
            t.done(Some(&resp));
        }
        let per = started.elapsed() / n;
        println!("recording one produce request (deferred: {deferred}): {} ns", per.as_nanos());
    }
}
