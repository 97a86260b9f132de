//! Consumer groups through rdkafka (librdkafka): two BaseConsumers subscribed in one group split
//! six partitions; every record is committed synchronously (CommitMode::Sync) right after it is
//! consumed; no record is seen twice or missed, and the committed offsets end at the log end.
//! Then a second consumer in the same group finds nothing left, and one in a new group reads all.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;
use rill_tests::Broker;

const PARTITIONS: i32 = 6;
const RECORDS: i32 = 300;

async fn create_topic(b: &Broker, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &b.bootstrap).create().expect("admin client");
    let res = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request");
    for r in res {
        r.expect("topic created");
    }
}

fn group_consumer(b: &Broker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &b.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

/// Leave the group (unsubscribe sends LeaveGroup) and stop using the consumer. It is leaked, not
/// dropped: with rdkafka 0.39 / librdkafka 2.12.1, dropping a BaseConsumer that consumed with
/// subscribe() hung in rd_kafka_destroy (joining a broker thread) against both Rill and Apache Kafka.
fn close(c: BaseConsumer) {
    c.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        c.poll(Duration::from_millis(50));
    }
    std::mem::forget(c);
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment().expect("assignment").elements().iter().map(|e| e.partition()).collect()
}

/// Polls all consumers, committing each record synchronously; returns (consumer index, partition, offset).
fn consume_committing(cs: &[&BaseConsumer], want: usize, timeout: Duration) -> Vec<(usize, i32, i64)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    while got.len() < want {
        assert!(Instant::now() < deadline, "consumed only {} of {want}", got.len());
        for (i, c) in cs.iter().enumerate() {
            if let Some(r) = c.poll(Duration::from_millis(100)) {
                let m = r.expect("consume error");
                got.push((i, m.partition(), m.offset()));
                c.commit_message(&m, CommitMode::Sync).expect("sync commit");
            }
        }
    }
    // Nothing more may arrive.
    let quiet = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet {
        for c in cs {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                panic!("unexpected extra record {}@{}", m.partition(), m.offset());
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_six_partitions_commit_per_message() {
    let broker = Broker::start();
    let topic = rill_tests::unique("rdkafka-groups");
    let group = rill_tests::unique("rdkafka-group");
    create_topic(&broker, &topic, PARTITIONS).await;

    let a = group_consumer(&broker, &group);
    let b = group_consumer(&broker, &group);
    a.subscribe(&[&topic]).unwrap();
    b.subscribe(&[&topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (pa, pb) = loop {
        a.poll(Duration::from_millis(100));
        b.poll(Duration::from_millis(100));
        let (pa, pb) = (assigned(&a), assigned(&b));
        if !pa.is_empty() && !pb.is_empty() && pa.is_disjoint(&pb) && pa.union(&pb).count() == PARTITIONS as usize {
            break (pa, pb);
        }
        assert!(Instant::now() < deadline, "assignment never settled: {pa:?} {pb:?}");
    };

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for n in 0..RECORDS {
        let key = n.to_string();
        let payload = format!("v{n}");
        producer
            .send(
                FutureRecord::to(&topic).partition(n % PARTITIONS).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }

    let got = tokio::task::block_in_place(|| consume_committing(&[&a, &b], RECORDS as usize, Duration::from_secs(90)));
    let uniq: BTreeSet<(i32, i64)> = got.iter().map(|&(_, p, o)| (p, o)).collect();
    assert_eq!(uniq.len(), got.len(), "a record was delivered twice");
    let want: BTreeSet<(i32, i64)> = (0..RECORDS).map(|n| (n % PARTITIONS, (n / PARTITIONS) as i64)).collect();
    assert_eq!(uniq, want);
    for &(i, p, _) in &got {
        let mine = if i == 0 { &pa } else { &pb };
        assert!(mine.contains(&p), "consumer {i} got partition {p} outside its assignment {mine:?}");
    }
    let committed = a.committed(Duration::from_secs(10)).expect("committed");
    let offs: HashMap<i32, Offset> = committed.elements().iter().map(|e| (e.partition(), e.offset())).collect();
    let per = (RECORDS / PARTITIONS) as i64;
    for p in &pa {
        assert_eq!(offs[p], Offset::Offset(per), "partition {p}");
    }
    close(a);
    close(b);

    // Same group again: everything is committed, nothing is redelivered.
    let c = group_consumer(&broker, &group);
    c.subscribe(&[&topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while assigned(&c).len() < PARTITIONS as usize {
        c.poll(Duration::from_millis(100));
        assert!(Instant::now() < deadline, "no assignment for the re-joined group");
    }
    let committed = c.committed(Duration::from_secs(10)).expect("committed");
    for e in committed.elements() {
        assert_eq!(e.offset(), Offset::Offset(per), "partition {}", e.partition());
    }
    tokio::task::block_in_place(|| consume_committing(&[&c], 0, Duration::from_secs(5)));
    close(c);

    // Another group reads everything.
    let other = rill_tests::unique("rdkafka-group-b");
    let d = group_consumer(&broker, &other);
    d.subscribe(&[&topic]).unwrap();
    let got = tokio::task::block_in_place(|| consume_committing(&[&d], RECORDS as usize, Duration::from_secs(90)));
    let uniq: BTreeSet<(i32, i64)> = got.iter().map(|&(_, p, o)| (p, o)).collect();
    assert_eq!(uniq, want);
}
