//! Rill's broker: listeners, request routing and the handlers for every API it serves, over
//! the partition logs of `rill-storage`.
//!
//! Requests arrive decoded by `rill-protocol`; record batches pass through as bytes: the
//! broker validates a batch and assigns its offsets, it never re-encodes records. It must
//! never block a connection's reader on disk sync: fsyncs run on blocking threads and are
//! shared by concurrent producers (group commit).

pub mod admin_http;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod conn_log;
pub mod error;
pub mod groups;
pub mod handlers;
pub mod metrics;
pub mod producer_state;
pub mod security;
pub mod server;
pub mod topic_config;
pub mod topics;

pub use broker::Broker;
pub use config::BrokerConfig;
