//! A Jepsen-style fault harness for Kafka-protocol brokers.
//!
//! It starts a Rill (or Apache Kafka) cluster with every node in its own network namespace,
//! drives a queue workload through stock librdkafka clients while nemeses crash, pause,
//! partition, skew and power-cycle the nodes, records an ordered history of every operation,
//! and checks that history for Jepsen's Kafka anomaly classes. It never talks to anything
//! but loopback and the namespaces it made, and it removes them on exit.

pub mod checker;
pub mod db;
pub mod history;
pub mod log;
pub mod lossyfs;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod workload;
