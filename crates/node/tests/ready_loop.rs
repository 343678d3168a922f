//! The production Ready loop over a real RocksDB store: group commit (proposals that arrive
//! while an fsync runs share the next one), every waiter answered with its own entry, durable
//! state across a restart, and a clean refusal once the node stops.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quorate_log_store::{LogStore, OpenOptions};
use quorate_node::{NodeConfig, NodeError, NodeHandle, ProposalTime, StateMachine};
use quorate_raft_core::{ConfState, Entry, EntryKind, Index, Role};
use tempfile::TempDir;
use tokio::sync::watch;

/// Echoes each command back as its output and remembers what it applied. Volatile: after a
/// restart the node replays the whole log into it.
#[derive(Default)]
struct Echo {
    applied: Index,
}

/// What Echo refuses.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct EchoError(String);

impl StateMachine for Echo {
    type Error = EchoError;

    fn applied_index(&self) -> Index {
        self.applied
    }

    /// Echo keeps no clock: commands are applied as the client sent them.
    fn stamp(&self, command: Bytes, _time: ProposalTime) -> Result<Bytes, EchoError> {
        Ok(command)
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, EchoError> {
        let mut outputs = Vec::new();
        for entry in entries {
            if entry.index != self.applied + 1 {
                return Err(EchoError(format!(
                    "entry {} applied after {}: out of order",
                    entry.index, self.applied
                )));
            }
            self.applied = entry.index;
            outputs.push(match entry.kind {
                EntryKind::Command => entry.data.clone(),
                _ => Bytes::new(),
            });
        }
        Ok(outputs)
    }

    fn image_reader(&self) -> quorate_node::ImageReader<EchoError> {
        let image = Bytes::copy_from_slice(&self.applied.to_be_bytes());
        Box::new(move || Ok(image))
    }

    fn image_index(&self, image: &[u8]) -> Result<Index, EchoError> {
        let bytes: [u8; 8] = image
            .try_into()
            .map_err(|_| EchoError("not an Echo image".into()))?;
        Ok(Index::from_be_bytes(bytes))
    }

    fn restore(&mut self, image: &[u8]) -> Result<(), EchoError> {
        self.applied = self.image_index(image)?;
        Ok(())
    }
}

struct OneNode {
    handle: NodeHandle,
    driver: tokio::task::JoinHandle<Result<(), NodeError>>,
    store: LogStore,
    stop: watch::Sender<bool>,
}

fn options() -> OpenOptions {
    OpenOptions::new(ConfState::with_voters([1]), &[])
}

/// A one-voter cluster (it commits what it has fsynced), with its peer port never used.
async fn start(directory: &TempDir) -> OneNode {
    let store = LogStore::open(directory.path(), options()).unwrap();
    let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    // Echo is volatile: it replays the whole log after a restart, so the log stays whole.
    let config = NodeConfig {
        snapshot_count: 0,
        ..NodeConfig::new(1, NodeConfig::cluster_id_for(&peers), peers)
    };
    let (stop, stop_rx) = watch::channel(false);
    let node = quorate_node::start(config, store.clone(), Echo::default(), stop_rx).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.handle.status().raft.role != Role::Leader {
        assert!(Instant::now() < deadline, "a single voter elects itself");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    OneNode {
        handle: node.handle,
        driver: node.driver,
        store,
        stop,
    }
}

impl OneNode {
    async fn stop(self) {
        self.stop.send_replace(true);
        self.driver.await.expect("driver task").expect("clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_share_fsyncs_and_each_gets_its_own_entry() {
    const PROPOSALS: usize = 400;
    let directory = TempDir::new().unwrap();
    let node = start(&directory).await;
    // Let the leader's no-op settle so only the proposals are measured.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = node.store.write_stats();
    let started = Instant::now();
    let tasks: Vec<_> = (0..PROPOSALS)
        .map(|i| {
            let handle = node.handle.clone();
            tokio::spawn(async move {
                let command = Bytes::from(format!("command-{i}"));
                let applied = handle.propose(command.clone()).await.expect("accepted");
                assert_eq!(applied.output, command, "each waiter gets its own entry");
                applied.index
            })
        })
        .collect();
    let mut indexes = BTreeSet::new();
    for task in tasks {
        assert!(
            indexes.insert(task.await.unwrap()),
            "one index per proposal"
        );
    }
    let elapsed = started.elapsed();
    let after = node.store.write_stats();
    let syncs = after.wal_syncs - before.wal_syncs;
    println!(
        "{PROPOSALS} concurrent proposals applied in {elapsed:?} with {syncs} WAL fsyncs \
         ({:.1} proposals per fsync)",
        PROPOSALS as f64 / syncs.max(1) as f64
    );
    assert!(syncs >= 1, "the proposals were made durable");
    // Without group commit every proposal would cost its own fsync (and the commit-index
    // write after it). Proposals that arrive while one fsync runs must share the next.
    assert!(
        syncs * 4 <= PROPOSALS as u64,
        "{syncs} fsyncs for {PROPOSALS} proposals: proposals are not batched"
    );
    let last = *indexes.last().unwrap();
    node.stop().await;

    // Everything acknowledged is in the log after a restart, and is applied again.
    let node = start(&directory).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.handle.status().raft.applied_index < last {
        assert!(
            Instant::now() < deadline,
            "the log is replayed after a restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored = node.store.clone();
    let entries = tokio::task::spawn_blocking(move || {
        use quorate_raft_core::Storage;
        stored.entries(1, last + 1, None)
    })
    .await
    .unwrap()
    .unwrap();
    for index in &indexes {
        let entry = &entries[(*index - 1) as usize];
        assert_eq!(entry.kind, EntryKind::Command);
        assert!(entry.data.starts_with(b"command-"));
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_refuses_proposals_with_a_reason() {
    let directory = TempDir::new().unwrap();
    let node = start(&directory).await;
    let handle = node.handle.clone();
    let applied = handle.propose(Bytes::from_static(b"before")).await.unwrap();
    assert!(applied.index >= 2, "after the leader's no-op");
    node.stop().await;
    let refused = handle
        .propose(Bytes::from_static(b"after"))
        .await
        .expect_err("a stopped node accepts nothing");
    assert_eq!(refused.reason(), "SHUTTING_DOWN", "{refused}");
}

/// Writes move the status that readers borrow, but wake none of the tasks waiting for a
/// change of standing (each wake-up was a thread switch per turn); stopping does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wake_no_status_watcher_and_stopping_does() {
    let directory = TempDir::new().unwrap();
    let node = start(&directory).await;
    let handle = node.handle.clone();
    // Let the leader's no-op and its first turns settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut watcher = handle.subscribe_status();
    watcher.borrow_and_update();
    let mut last = 0;
    for i in 0..20 {
        last = handle
            .propose(Bytes::from(format!("write-{i}")))
            .await
            .expect("accepted")
            .index;
    }
    assert!(
        handle.status().raft.applied_index >= last,
        "what readers borrow is up to date"
    );
    assert!(
        !watcher.has_changed().unwrap(),
        "20 writes woke a status watcher"
    );
    // Stopping is a change of standing.
    node.stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), watcher.changed())
        .await
        .expect("stopping wakes the watcher")
        .unwrap();
    assert!(watcher.borrow().stopping);
    node.driver.await.expect("driver task").expect("clean stop");
}
