//! # quorate-admin
//!
//! The `quorate.admin.v1.Admin` service: what operators ask a node, and the split-brain
//! report built from every member's own view.
//!
//! Every node keeps a true view of its peers (`PeerView`): the last successful RPC in each
//! direction, the round-trip time, the term each peer last reported, and (as leader) each
//! peer's match index and lag. A pinger probes every peer a few times per heartbeat interval
//! so that followers, which otherwise never talk to each other, have a fresh view too; it
//! also remembers each peer's last reported status, so a report can say what a node that no
//! longer answers was last seen doing.
#![deny(missing_docs)]

pub mod corruption;
mod peer;
pub mod report;
mod service;
mod snapshot;
mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use quorate_log_store::LogStore;
use quorate_node::NodeHandle;
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_server::AdminServer;
use tokio::sync::watch;

pub use peer::AdminPeer;
pub use snapshot::{backup_chunks, CHUNK_BYTES};
pub use status::{peer_views, role_to_proto, status_to_proto};

/// Reads the application's counters (the admin crate does not know the application).
pub type CounterSource = Arc<dyn Fn() -> pb::Counters + Send + Sync>;

/// Computes the hash of the event log up to an index (0: the applied index); may be slow, so
/// it runs on a blocking thread.
pub type HashSource = Arc<dyn Fn(u64) -> Result<pb::HashEventsResponse, HashError> + Send + Sync>;

/// Computes the hash of the whole machine as stored (hex) and the index it had applied then;
/// reads all of it, so it runs on a blocking thread.
pub type StateHashSource = Arc<dyn Fn() -> Result<(u64, String), HashError> + Send + Sync>;

/// Computes the event-log hash (hex) an image of the machine holds at the index it is of
/// (`SaveSnapshot`'s header): from the image itself, so that events deleted from the live
/// store since (`--event-retention`) change nothing. Decodes all of it, so it runs on a
/// blocking thread.
pub type ImageHashSource = Arc<dyn Fn(&[u8]) -> Result<String, HashError> + Send + Sync>;

/// Why a hash could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The index asked for is not applied on this node yet.
    #[error(
        "index {index} is not applied on this node yet: hashes are available for indexes 1 to \
         {applied}"
    )]
    NotApplied {
        /// The index asked for.
        index: u64,
        /// The node's applied index.
        applied: u64,
    },
    /// The index asked for is below the event log's compaction point (`--event-retention`):
    /// the events up to it are no longer held one by one.
    #[error(
        "index {index} is below the event log's compaction point: hashes are available for \
         indexes {first_available} and up"
    )]
    Compacted {
        /// The index asked for.
        index: u64,
        /// The lowest index a hash can be asked for.
        first_available: u64,
    },
    /// Reading the stored state failed.
    #[error("reading the stored state failed: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The blocking task that computes it failed.
    #[error("the hash task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// How often the pinger probes each peer.
const PING_INTERVAL: Duration = Duration::from_millis(250);

/// How long a peer's measured clock offset is reported after its last successful probe.
pub const CLOCK_OFFSET_MAX_AGE: Duration = Duration::from_secs(10);

struct Inner {
    node: NodeHandle,
    store: LogStore,
    client_address: String,
    counters: CounterSource,
    hashes: HashSource,
    state_hashes: StateHashSource,
    image_hashes: ImageHashSource,
    /// Each peer's last reported status and when it was received.
    seen: Mutex<BTreeMap<u64, (pb::StatusResponse, Instant)>>,
    /// Each peer's wall clock minus ours, from the last probe that answered, and when.
    clock_offsets: Mutex<BTreeMap<u64, (i64, Instant)>>,
}

/// The admin service of one node.
#[derive(Clone)]
pub struct AdminService {
    inner: Arc<Inner>,
}

impl AdminService {
    /// The service for `node` (whose storage is `store` and whose clients reach it at
    /// `client_address`); `counters` and the hash sources come from the application.
    pub fn new(
        node: NodeHandle,
        store: LogStore,
        client_address: String,
        counters: CounterSource,
        hashes: HashSource,
        state_hashes: StateHashSource,
        image_hashes: ImageHashSource,
    ) -> Self {
        AdminService {
            inner: Arc::new(Inner {
                node,
                store,
                client_address,
                counters,
                hashes,
                state_hashes,
                image_hashes,
                seen: Mutex::new(BTreeMap::new()),
                clock_offsets: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The tonic server.
    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }

    /// The operator RPCs of the peer port (probes, transfers), for `quorate_node::NodePeer`.
    pub fn peer_handler(&self) -> AdminPeer {
        AdminPeer {
            admin: self.clone(),
        }
    }

    pub(crate) fn node(&self) -> &NodeHandle {
        &self.inner.node
    }

    /// This node's status, as `Admin.Status` and probes report it.
    pub async fn local_status(&self) -> pb::StatusResponse {
        let (size, log_size) = self.sizes().await;
        let mut status = status_to_proto(
            &self.inner.node,
            &self.inner.node.status(),
            &self.inner.client_address,
            (self.inner.counters)(),
            size,
        );
        status.log_size_bytes = log_size;
        let offsets = self.clock_offsets();
        for peer in &mut status.peers {
            peer.clock_offset_ms = offsets.get(&peer.node_id).copied();
        }
        status
    }

    /// The bytes of the whole store and of its Raft log (0 when unreadable: they inform).
    async fn sizes(&self) -> (u64, u64) {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || {
            (
                store.data_size_bytes().unwrap_or(0),
                store.log_size_bytes().unwrap_or(0),
            )
        })
        .await
        .unwrap_or((0, 0))
    }

    /// Each peer's wall clock minus this node's, in milliseconds, as the last probe that
    /// answered measured it (corrected by half the round trip); a measurement older than
    /// [`CLOCK_OFFSET_MAX_AGE`] (the peer stopped answering) is not reported.
    pub fn clock_offsets(&self) -> BTreeMap<u64, i64> {
        self.inner
            .clock_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (_, at))| at.elapsed() < CLOCK_OFFSET_MAX_AGE)
            .map(|(&id, &(offset, _))| (id, offset))
            .collect()
    }

    /// The hash of the event log up to `index` (0: the applied index).
    pub async fn hash(&self, index: u64) -> Result<pb::HashEventsResponse, HashError> {
        let hashes = self.inner.hashes.clone();
        tokio::task::spawn_blocking(move || hashes(index))
            .await
            .map_err(HashError::Task)?
    }

    /// The event-log hash (hex) `image` holds at the index it is of.
    pub async fn image_hash(&self, image: bytes::Bytes) -> Result<String, HashError> {
        let hashes = self.inner.image_hashes.clone();
        tokio::task::spawn_blocking(move || hashes(&image))
            .await
            .map_err(HashError::Task)?
    }

    /// The hash of the whole machine as stored, and the index it had applied then.
    pub async fn state_hash(&self) -> Result<(u64, String), HashError> {
        let hashes = self.inner.state_hashes.clone();
        tokio::task::spawn_blocking(move || hashes())
            .await
            .map_err(HashError::Task)?
    }

    fn remember(&self, status: pb::StatusResponse) {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(status.node_id, (status, Instant::now()));
    }

    /// A peer's last reported status and how long ago it came.
    pub(crate) fn last_seen(&self, id: u64) -> Option<(pb::StatusResponse, Duration)> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|(s, at)| (s.clone(), at.elapsed()))
    }

    /// Probes every peer every 250 ms until `stop`, keeping this node's view of each peer
    /// (and each peer's last status) fresh.
    pub fn spawn_pinger(&self, mut stop: watch::Receiver<bool>) {
        let admin = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(PING_INTERVAL) => {}
                    _ = stop.wait_for(|&s| s) => return,
                }
                let node = admin.node();
                let peers: Vec<u64> = node
                    .status()
                    .peers
                    .keys()
                    .copied()
                    .filter(|&id| id != node.id())
                    .collect();
                let probes = peers.iter().map(|&peer| async move {
                    let sent_wall_ms = quorate_node::wall_clock_ms();
                    let sent = Instant::now();
                    let reply = node.transport().probe(peer, None, PING_INTERVAL * 2).await;
                    (reply, sent_wall_ms, sent.elapsed())
                });
                for (reply, sent_wall_ms, rtt) in join_all(probes).await {
                    let Some(status) = reply.ok().and_then(|r| r.status) else {
                        continue;
                    };
                    if status.wall_clock_unix_ms != 0 {
                        let midpoint = sent_wall_ms + rtt.as_millis() as u64 / 2;
                        let offset = status.wall_clock_unix_ms as i64 - midpoint as i64;
                        admin
                            .inner
                            .clock_offsets
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(status.node_id, (offset, Instant::now()));
                    }
                    admin.remember(status);
                }
            }
        });
    }
}
