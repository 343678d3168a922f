//! The payments services on a Quorate node, and the machine on RocksDB.

mod convert;
mod events;
mod leases;
mod status;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorate_log_store::LogStore;
use quorate_node::{NodeError, NodeHandle};
use quorate_proto::payments::leases_server::LeasesServer;
use quorate_proto::payments::payment_events_server::PaymentEventsServer;
use quorate_raft_core::ReadMode;
use tokio::sync::watch;

use crate::machine::{self, Applied, MetaRecord};
pub use crate::machine::{hash_events, hash_state, MachineError, RocksMachine, RocksState};

/// Why the hash of the event log was not computed.
#[derive(Debug, thiserror::Error)]
pub enum HashEventsError {
    /// The index asked for is not applied on this node yet.
    #[error("index {index} is not applied on this node yet (it applied up to {applied})")]
    NotApplied {
        /// The index asked for.
        index: u64,
        /// The node's applied index.
        applied: u64,
    },
    /// Reading the stored events failed.
    #[error(transparent)]
    Store(#[from] machine::StoreError),
}

/// Settings of the services.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// How long idempotency keys are remembered.
    pub idempotency_window: Duration,
    /// How many indexes of event history are kept behind the applied index (0: all); see
    /// `--event-retention`.
    pub event_retention: u64,
}

/// Counters the services keep (the machine keeps the rest in its meta record).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Requests refused with `NO_QUORUM`.
    pub no_quorum_refusals: AtomicU64,
}

/// Everything an operator may want counted: the machine's counters plus the services'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Submits and keep-alives refused for a stale or foreign lease token.
    pub stale_token_rejections: u64,
    /// Submits answered from the idempotency table.
    pub idempotent_replays: u64,
    /// Requests refused because no quorum could be reached.
    pub no_quorum_refusals: u64,
    /// Submits refused by the payment lifecycle.
    pub invalid_transitions: u64,
    /// Idempotency keys reused with another request.
    pub key_reuse_rejections: u64,
    /// Entries rejected at apply because their fencing token did not increase.
    pub fencing_rejections: u64,
    /// Stamps whose leader wall clock lay outside what the replicated clock allows.
    pub leader_clock_corrections: u64,
    /// The replicated clock (milliseconds since the Unix epoch).
    pub machine_clock_unix_ms: u64,
}

struct Inner {
    node: NodeHandle,
    db: LogStore,
    config: ServiceConfig,
    stop: watch::Receiver<bool>,
    counters: ServiceCounters,
}

/// `PaymentEvents` and `Leases` on one node.
#[derive(Clone)]
pub struct PaymentsService {
    inner: Arc<Inner>,
}

impl PaymentsService {
    /// The services of the node behind `node`, reading committed state from `db`. Watches end
    /// when `stop` turns true. Starts the leader-side lease expiry task.
    pub fn new(
        node: NodeHandle,
        db: LogStore,
        config: ServiceConfig,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let service = PaymentsService {
            inner: Arc::new(Inner {
                node,
                db,
                config,
                stop,
                counters: ServiceCounters::default(),
            }),
        };
        tokio::spawn(leases::expire_leases(service.clone()));
        service
    }

    /// The `PaymentEvents` server.
    pub fn payment_events_server(&self) -> PaymentEventsServer<Self> {
        PaymentEventsServer::new(self.clone())
    }

    /// The `Leases` server.
    pub fn leases_server(&self) -> LeasesServer<Self> {
        LeasesServer::new(self.clone())
    }

    /// A read view of the committed state.
    pub(crate) fn state(&self) -> RocksState {
        RocksState::new(self.inner.db.clone())
    }

    /// The counters, for `Admin.Status` and `/metrics`.
    pub fn counters(&self) -> Counters {
        let meta = machine::machine_status(&self.state()).unwrap_or_else(|_| MetaRecord::default());
        Counters {
            stale_token_rejections: meta.stale_token_rejections,
            idempotent_replays: meta.idempotent_replays,
            no_quorum_refusals: self
                .inner
                .counters
                .no_quorum_refusals
                .load(Ordering::Relaxed),
            invalid_transitions: meta.invalid_transitions,
            key_reuse_rejections: meta.key_reuse_rejections,
            fencing_rejections: meta.fencing_rejections,
            leader_clock_corrections: meta.leader_clock_corrections,
            machine_clock_unix_ms: meta.clock_ms,
        }
    }

    /// The hash of the event log up to `index` (0: the applied index) as `(index, hash,
    /// events)`; an index not applied yet is refused with a message naming what is available.
    pub fn hash_events(&self, index: u64) -> Result<(u64, u64, u64), HashEventsError> {
        let applied = machine::machine_status(&self.state())?.applied_index;
        let index = if index == 0 { applied } else { index };
        if index > applied {
            return Err(HashEventsError::NotApplied { index, applied });
        }
        let (events, hash) = hash_events(&self.inner.db, index)?;
        Ok((index, hash, events))
    }

    /// The hash of the whole machine as stored on this node, with the index it had applied
    /// then (see [`hash_state`]).
    pub fn hash_state(&self) -> Result<(u64, u64), machine::StoreError> {
        hash_state(&self.inner.db)
    }

    /// Proposes a client's command and decodes the machine's output; node errors become
    /// statuses (no-quorum refusals are counted).
    pub(crate) async fn propose(
        &self,
        command: machine::Command,
    ) -> Result<Applied, tonic::Status> {
        self.propose_uncounted(command)
            .await
            .map_err(|e| self.refuse(&e))
    }

    /// Proposes a command and decodes the machine's output, counting nothing: for the node's
    /// own commands (lease expiries), which are not client requests.
    pub(crate) async fn propose_uncounted(
        &self,
        command: machine::Command,
    ) -> Result<Applied, NodeError> {
        let applied = self.inner.node.propose(command.encode()).await?;
        Applied::decode(&applied.output).map_err(|e| {
            NodeError::Internal(format!(
                "the output of index {} cannot be decoded: {e}",
                applied.index
            ))
        })
    }

    /// A node error as a status, counting no-quorum refusals.
    pub(crate) fn refuse(&self, e: &NodeError) -> tonic::Status {
        if matches!(e, NodeError::NoQuorum { .. }) {
            self.inner
                .counters
                .no_quorum_refusals
                .fetch_add(1, Ordering::Relaxed);
        }
        status::node(e)
    }

    /// The one place reads choose their consistency (`Get`, `List`, `Watch`): a linearizable
    /// read (the default) first confirms leadership (the lease when lease reads are on, else
    /// a ReadIndex round) and waits until this node has applied the confirmed index; a stale
    /// one reads this node's state at once. Returns whether the read is stale.
    pub(crate) async fn confirm_read(&self, consistency: i32) -> Result<bool, tonic::Status> {
        use quorate_proto::payments::Consistency;
        let stale = match Consistency::try_from(consistency) {
            Ok(Consistency::Stale) => true,
            Ok(Consistency::Unspecified | Consistency::Linearizable) => false,
            Err(_) => return Err(status::invalid("consistency", "unknown consistency level")),
        };
        if !stale {
            let mode = if self.node().config().lease_reads {
                ReadMode::Lease
            } else {
                ReadMode::Quorum
            };
            self.node()
                .read_index(mode)
                .await
                .map_err(|e| self.refuse(&e))?;
        }
        Ok(stale)
    }

    pub(crate) fn node(&self) -> &NodeHandle {
        &self.inner.node
    }

    pub(crate) fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.inner.stop.clone()
    }
}
