//! # quorate-node
//!
//! The tokio runtime around `quorate-raft-core`: one task (the driver, on a thread of its own)
//! owns the core and runs the Ready loop; everything else talks to it through a [`NodeHandle`].
//!
//! - **Time**: ticks come from the monotonic clock (`tick = heartbeat_interval / 2`); ticks
//!   missed while the loop was busy are fed before every input (`RawNode::tick_to`).
//! - **Durability**: a Ready's hard state and entries are written to RocksDB (fsynced when the
//!   core says so) by the driver, on its own thread, before any of its messages leave. Proposals that
//!   arrive meanwhile wait in the input queue and go into the next Ready together: one fsync
//!   for all of them (group commit).
//! - **Writes**: [`NodeHandle::propose`] proposes on the leader, or forwards to it over the
//!   peer transport, and resolves when the entry is applied. If leadership is lost first, the
//!   caller gets `OUTCOME_UNKNOWN` and may retry with the same idempotency key.
//! - **Reads**: [`NodeHandle::read_index`] confirms leadership (ReadIndex, or the lease) and
//!   resolves once the local state machine has caught up; followers ask the leader.
//! - **Fail fast**: a node that cannot reach a leader with a quorum refuses at once with
//!   `NO_QUORUM` and says why ([`NodeHandle::check_quorum_reachable`]).
//! - **Joining**: before it runs, a node checks that its data directory belongs to it; one whose
//!   store is blank asks every peer whether the cluster already holds data, and starts a new
//!   cluster, rejoins as a non-voter, or refuses ([`prepare_store`]).
//! - **Shutdown**: a leader hands leadership to its best follower, in-flight work finishes
//!   (within an election timeout), storage is flushed.
#![deny(missing_docs)]

mod config;
mod driver;
mod error;
mod handle;
mod join;
mod members;
mod peer;
mod restore;
mod state_machine;
mod status;

use std::sync::Arc;

use quorate_log_store::LogStore;
use quorate_raft_core::{RawNode, Storage};
use quorate_transport::{StatsTable, Transport, TransportConfig};
use tokio::sync::{mpsc, watch};

pub use config::{defaults, parse_initial_cluster, NodeConfig};
pub use driver::wall_clock_ms;
pub use error::{error_status, NodeError, ERROR_DOMAIN};
pub use handle::{Applied, NodeHandle, SnapshotTaken};
pub use join::{prepare_store, StartingPeer};
pub use members::{MemberOp, MemberTable};
pub use peer::{NodePeer, OperatorRpcs};
pub use quorate_raft_core::bootstrap::ClusterState;
pub use restore::{restore_store, restored_cluster_id};
pub use state_machine::{ImageReader, ProposalTime, StateMachine};
pub use status::NodeStatus;

/// A started node: its handle and the driver task.
pub struct Node {
    /// The handle services use.
    pub handle: NodeHandle,
    /// Completes when the node stopped (after `shutdown` was signalled, or on a fatal error).
    pub driver: tokio::task::JoinHandle<Result<(), NodeError>>,
    /// Statistics shared with the peer server, which records incoming RPCs.
    pub stats: Arc<StatsTable>,
}

/// Starts a node over `store`, whose state machine `sm` has applied up to
/// `sm.applied_index()`. Setting `shutdown` to `true` stops it gracefully. Must be called
/// inside a tokio runtime.
pub fn start<SM: StateMachine>(
    config: NodeConfig,
    store: LogStore,
    sm: SM,
    shutdown: watch::Receiver<bool>,
) -> Result<Node, NodeError> {
    let raft_config = config.raft_config();
    let mut sm = sm;
    let stored = store
        .snapshot()
        .map_err(|e| NodeError::Internal(format!("cannot read the stored snapshot: {e}")))?;
    if sm.applied_index() < stored.meta.index {
        // A leader's snapshot was installed in the log but the machine did not take it
        // before the process stopped: take it now.
        if stored.data.is_empty() {
            return Err(NodeError::Internal(format!(
                "the state machine applied only up to index {} but the log was compacted up \
                 to {} and the stored snapshot holds no image: the data directory is damaged",
                sm.applied_index(),
                stored.meta.index
            )));
        }
        sm.restore(&stored.data)
            .map_err(|e| NodeError::Internal(format!("cannot restore the stored snapshot: {e}")))?;
    }
    let snapshot_index = stored.meta.index;
    let raw = RawNode::new(raft_config, store.clone(), sm.applied_index())
        .map_err(|e| NodeError::Internal(format!("cannot start the Raft core: {e}")))?;
    let stats = Arc::new(StatsTable::new(config.metrics.clone()));
    let (reply_tx, reply_rx) = mpsc::channel(16_384);
    let peers = config
        .peers
        .iter()
        .filter(|(&id, _)| id != config.id)
        .map(|(&id, address)| (id, address.clone()))
        .collect();
    let transport = Transport::start(
        TransportConfig {
            timing: config.timing(),
            tls: config.peer_tls.clone(),
            ..TransportConfig::new(config.cluster_id, config.id, peers)
        },
        reply_tx,
        stats.clone(),
    )
    .map_err(|e| NodeError::Invalid(e.to_string()))?;
    let (input_tx, input_rx) = mpsc::channel(16_384);
    let initial = NodeStatus {
        raft: raw.status(),
        tick: config.tick(),
        peers: config.peers.clone(),
        removed: Default::default(),
        membership_index: 0,
        removed_self: false,
        stopping: false,
        corrupt: None,
        writes_held: None,
        snapshot_index,
        published_at: std::time::Instant::now(),
    };
    let (status_tx, status_rx) = watch::channel(initial);
    let (applied_tx, applied_rx) = watch::channel(sm.applied_index());
    let handle = NodeHandle {
        shared: Arc::new(handle::Shared {
            config: config.clone(),
            inputs: input_tx,
            status: status_rx,
            applied: applied_rx,
            transport: transport.clone(),
            started_at: std::time::Instant::now(),
        }),
    };
    let driver = driver::Driver::new(
        config, raw, store, sm, transport, input_rx, reply_rx, status_tx, applied_tx, shutdown,
    )
    .with_snapshot_index(snapshot_index);
    let driver = run_on_own_thread(driver)?;
    Ok(Node {
        handle,
        driver,
        stats,
    })
}

/// Runs the driver on a thread of its own, with a single-threaded runtime: it writes and
/// applies in place (RocksDB calls block only this thread), instead of handing each Ready's
/// persist and apply to a blocking-pool thread and waiting to be woken again. The returned
/// task, on the caller's runtime, completes with the driver, and only once the driver's
/// runtime is gone: an image still being read (a snapshot, a backup) has finished or been
/// given up within [`DRIVER_RUNTIME_GRACE`], so the store is closed when the caller exits.
fn run_on_own_thread<SM: StateMachine>(
    driver: driver::Driver<SM>,
) -> Result<tokio::task::JoinHandle<Result<(), NodeError>>, NodeError> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("quorate-driver".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        runtime.block_on(driver.run())
                    }))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "no message".into());
                        Err(NodeError::Internal(format!("the driver panicked: {what}")))
                    });
                    runtime.shutdown_timeout(DRIVER_RUNTIME_GRACE);
                    result
                }
                Err(e) => Err(NodeError::Internal(format!(
                    "cannot start the driver's runtime: {e}"
                ))),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|e| NodeError::Internal(format!("cannot start the driver's thread: {e}")))?;
    Ok(tokio::spawn(async move {
        done_rx.await.unwrap_or_else(|_| {
            Err(NodeError::Internal(
                "the driver's thread ended without a result".into(),
            ))
        })
    }))
}

/// How long a stopped driver waits for an image read still running on its blocking pool.
const DRIVER_RUNTIME_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
