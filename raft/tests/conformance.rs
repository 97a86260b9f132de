//! openraft's own storage conformance suite, run against the segment-log-backed store.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use rill_raft::log_store::LogStore;
use rill_raft::state_machine::StateMachine;
use rill_raft::TypeConfig;
use rill_storage::LogConfig;

struct Builder {
    /// With a hook the state machine replays from the start (the metadata group); without one
    /// it resumes from the committed hint (partitions). The suite must pass both ways.
    with_hook: bool,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), LogConfig::default()).unwrap();
        let hook: Option<rill_raft::state_machine::ApplyHook> =
            if self.with_hook { Some(Arc::new(|_, _| {})) } else { None };
        let sm = StateMachine::new(store.shared.clone(), hook);
        Ok((dir, store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_partition_store() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    Suite::test_all(Builder { with_hook: false }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_metadata_store() {
    Suite::test_all(Builder { with_hook: true }).await.unwrap();
}
