//! rdkafka (librdkafka) against the broker under test: admin create topic, metadata,
//! a few thousand records through FutureProducer(acks=all), read back with BaseConsumer+assign.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use rill_tests::Broker;

const PARTITIONS: i32 = 3;
const RECORDS: usize = 3000;

fn admin(b: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", &b.bootstrap).create().expect("admin client")
}

async fn create_topic(b: &Broker, name: &str, partitions: i32) {
    let res = admin(b)
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("retention.ms", "604800000")],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request");
    for r in res {
        r.expect("topic created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_acks_all_and_consume_with_assign() {
    let broker = Broker::start();
    let topic: &'static str = Box::leak(rill_tests::unique("rdkafka-roundtrip").into_boxed_str());
    create_topic(&broker, topic, PARTITIONS).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");

    // Send in bounded windows of futures; remember where each record landed.
    let mut acked: HashMap<(i32, i64), (String, String)> = HashMap::new();
    let mut i = 0usize;
    while i < RECORDS {
        let end = (i + 500).min(RECORDS);
        let mut futs = Vec::new();
        for n in i..end {
            let key = format!("key-{n}");
            let val = format!("value-{n}-{}", "x".repeat(n % 150));
            let p = (n as i32) % PARTITIONS;
            let producer = producer.clone();
            futs.push(tokio::spawn(async move {
                let rec = FutureRecord::to(topic)
                    .partition(p)
                    .key(&key)
                    .payload(&val)
                    .headers(OwnedHeaders::new().insert(Header { key: "n", value: Some(&n.to_string()) }));
                let r = producer.send(rec, Duration::from_secs(30)).await;
                (key.clone(), val.clone(), r.map_err(|(e, _)| e.to_string()))
            }));
        }
        for f in futs {
            let (k, v, r) = f.await.unwrap();
            let d = r.expect("delivery acked");
            assert!(acked.insert((d.partition, d.offset), (k, v)).is_none(), "duplicate offset {d:?}");
        }
        i = end;
    }
    assert_eq!(acked.len(), RECORDS);

    // Metadata: the topic has the expected partitions and a leader on our single broker.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        // librdkafka refuses assign() without a group.id; no group API is used (no subscribe, no commit).
        .set("group.id", "rill-tests-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    assert_eq!(md.brokers().len(), 1, "single broker expected");
    let t = md.topics().iter().find(|t| t.name() == topic).expect("topic in metadata");
    assert!(t.error().is_none(), "topic error {:?}", t.error());
    assert_eq!(t.partitions().len(), PARTITIONS as usize);
    for p in t.partitions() {
        assert_eq!(p.leader(), md.brokers()[0].id());
    }

    // Watermarks: dense offsets from 0, high == number of records sent to the partition.
    for p in 0..PARTITIONS {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        let expected = acked.keys().filter(|(pp, _)| *pp == p).count() as i64;
        assert_eq!((lo, hi), (0, expected), "watermarks of partition {p}");
    }

    // Consume everything back with assign() from the beginning.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < RECORDS {
        assert!(Instant::now() < deadline, "timed out after consuming {seen}/{RECORDS}");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.expect("consume error");
        let (k, v) = acked
            .get(&(m.partition(), m.offset()))
            .unwrap_or_else(|| panic!("unexpected record at {}:{}", m.partition(), m.offset()));
        assert_eq!(m.key().unwrap(), k.as_bytes());
        assert_eq!(m.payload().unwrap(), v.as_bytes());
        let h = m.headers().expect("headers");
        assert_eq!(h.count(), 1);
        assert_eq!(h.get(0).key, "n");
        seen += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_auto_creates_topic() {
    let broker = Broker::start();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("client");
    let topic = rill_tests::unique("rdkafka-auto-created");
    let topic = topic.as_str();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
        let t = md.topics().iter().find(|t| t.name() == topic).expect("topic listed");
        if t.error().is_none() && !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0) {
            break;
        }
        assert!(Instant::now() < deadline, "topic not auto-created: {:?}", t.error());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
