//! The node's API for services: propose, read, transfer leadership, observe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorate_raft_core::{
    Index, Message, NoContact, NodeId, Payload, ReadMode, Role, Snapshot, Term,
};
use quorate_transport::{PeerStats, Transport};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::members::MemberOp;
use crate::status::NodeStatus;

/// A command that was committed and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Its index.
    pub index: Index,
    /// The term it was committed in (with the index, its identity).
    pub term: Term,
    /// The state machine's output.
    pub output: Bytes,
}

/// What the handle asks the driver to do.
pub(crate) enum Input {
    /// A message from a peer; requests carry a channel for the core's response.
    Peer {
        message: Message,
        reply: Option<oneshot::Sender<Message>>,
    },
    /// Propose a command here (this node should be the leader).
    Propose {
        command: Bytes,
        reply: oneshot::Sender<Result<Applied, NodeError>>,
        /// The sampled request it serves, whose trace the leader's work on it joins.
        trace: Option<quorate_telemetry::SpanContext>,
    },
    /// Confirm a read; the answer comes once the read index is applied locally.
    Read {
        mode: ReadMode,
        reply: oneshot::Sender<Result<Index, NodeError>>,
    },
    /// Hand leadership to a node.
    Transfer {
        target: NodeId,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Hand leadership to the best other voter.
    StepDown {
        reply: oneshot::Sender<Result<NodeId, NodeError>>,
    },
    /// The corruption check found this node's state unlike the majority's: stop taking part.
    Alarm { reason: String },
    /// The corruption check found replicas that disagree with no majority among them: refuse
    /// writes while that lasts (`None`: they agree again).
    HoldWrites { reason: Option<String> },
    /// An operator's membership change (this node should be the leader).
    ChangeMembership {
        ops: Vec<MemberOp>,
        reply: oneshot::Sender<Result<Applied, NodeError>>,
    },
    /// An operator asks for a snapshot now: compact the log behind the applied index.
    TakeSnapshot {
        reply: oneshot::Sender<Result<SnapshotTaken, NodeError>>,
    },
    /// Read a consistent image of the machine, for a backup.
    Backup {
        reply: oneshot::Sender<Result<Snapshot, NodeError>>,
    },
}

/// A snapshot an operator asked for ([`NodeHandle::take_snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotTaken {
    /// The index it is of (the applied index when it was taken).
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The first index still in the log afterwards.
    pub first_log_index: Index,
}

/// How long reading a backup image may take before the call gives up.
const BACKUP_DEADLINE: Duration = Duration::from_secs(120);

pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) inputs: mpsc::Sender<Input>,
    pub(crate) status: watch::Receiver<NodeStatus>,
    pub(crate) applied: watch::Receiver<Index>,
    pub(crate) transport: Transport,
    pub(crate) started_at: std::time::Instant,
}

/// A cheap, cloneable handle on a running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) shared: Arc<Shared>,
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.config.id
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// The node's state as of the end of the driver's last step.
    pub fn status(&self) -> NodeStatus {
        self.shared.status.borrow().clone()
    }

    /// Notified whenever the status changes.
    pub fn subscribe_status(&self) -> watch::Receiver<NodeStatus> {
        self.shared.status.clone()
    }

    /// Notified whenever the applied index grows.
    pub fn subscribe_applied(&self) -> watch::Receiver<Index> {
        self.shared.applied.clone()
    }

    /// What this node has observed of each peer.
    pub fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats> {
        self.shared.transport.stats().snapshot()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Input,
        deadline: Duration,
        on_timeout: impl FnOnce() -> NodeError,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .inputs
            .send(make(tx))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Err(_) => Err(on_timeout()),
        }
    }

    /// Runs `work` unless this node loses touch with a quorum first; then `on_loss` says what
    /// became of the request (a write in flight: unknown; a read: refused).
    async fn unless_cut_off<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, NodeError>>,
        on_loss: impl FnOnce(NodeError) -> NodeError,
    ) -> Result<T, NodeError> {
        let watch_contact = async {
            loop {
                tokio::time::sleep(self.shared.config.tick()).await;
                if let Err(e) = self.check_quorum_reachable() {
                    return e;
                }
            }
        };
        tokio::select! {
            result = work => result,
            lost = watch_contact => Err(on_loss(lost)),
        }
    }

    /// Refuses at once when this node cannot reach a leader with a quorum, so that a node cut
    /// off from the majority fails fast with `NO_QUORUM` and says why.
    pub fn check_quorum_reachable(&self) -> Result<(), NodeError> {
        // (Borrowed, not cloned: every request and every status change asks.)
        let status = self.shared.status.borrow();
        let raft = &status.raft;
        if status.stopping {
            return Err(NodeError::ShuttingDown);
        }
        if let Some(reason) = &status.corrupt {
            return Err(NodeError::Corrupt(reason.clone()));
        }
        if status.is_removed() {
            return Err(NodeError::NoQuorum {
                reason: format!(
                    "node {} is not a member of the cluster (removed, or not added yet): send \
                     requests to a member",
                    raft.id
                ),
            });
        }
        // A leader or follower that has been out of touch for this long cannot commit or
        // confirm anything now; refusing at once beats accepting work that will hang. The
        // rule is raft-core's, which the simulator runs too.
        let silence_ticks = self.shared.config.contact_silence_ticks();
        let ms = |ticks: u32| (status.tick * ticks).as_millis();
        raft.contact(silence_ticks)
            .map_err(|lost| NodeError::NoQuorum {
                reason: match lost {
                    NoContact::LeaderWithoutQuorum { recent, voters } => format!(
                        "node {} leads term {} but only {recent} of {voters} voters (itself \
                         included) answered within {} ms",
                        raft.id,
                        raft.term,
                        ms(silence_ticks)
                    ),
                    NoContact::NoLeader => format!(
                        "node {} is a {} in term {} and knows no leader: it cannot reach a \
                         majority",
                        raft.id, raft.role, raft.term
                    ),
                    NoContact::LeaderSilent {
                        leader,
                        silent_ticks,
                    } => format!(
                        "node {} has not heard from its leader (node {leader}) for {} ms",
                        raft.id,
                        ms(silent_ticks.min(1 << 20))
                    ),
                },
            })
    }

    /// Proposes `command` and waits until it is applied, forwarding it to the leader when this
    /// node is a follower.
    pub async fn propose(&self, command: Bytes) -> Result<Applied, NodeError> {
        let result = self.propose_checked(command).await;
        if let Err(e) = &result {
            self.shared.config.metrics.count_proposal_failed(e.reason());
        }
        result
    }

    async fn propose_checked(&self, command: Bytes) -> Result<Applied, NodeError> {
        self.check_quorum_reachable()?;
        if let Some(reason) = self.shared.status.borrow().writes_held.clone() {
            return Err(NodeError::Corrupt(reason));
        }
        self.unless_cut_off(self.route_proposal(command), |lost| {
            NodeError::OutcomeUnknown {
                reason: format!(
                    "contact with a quorum was lost while the write was in flight ({lost})"
                ),
            }
        })
        .await
    }

    async fn route_proposal(&self, command: Bytes) -> Result<Applied, NodeError> {
        let (role, leader_id) = {
            let status = self.shared.status.borrow();
            (status.raft.role, status.raft.leader_id)
        };
        if role == Role::Leader {
            match self.propose_here(command.clone()).await {
                Err(NodeError::NotLeader {
                    leader: Some(leader),
                    ..
                }) if leader != self.id() => self.forward_to_leader(leader, command).await,
                other => other,
            }
        } else {
            match leader_id {
                Some(leader) => self.forward_to_leader(leader, command).await,
                None => Err(NodeError::NoQuorum {
                    reason: "no leader".into(),
                }),
            }
        }
    }

    /// Proposes on this node only (it must be the leader).
    pub async fn propose_here(&self, command: Bytes) -> Result<Applied, NodeError> {
        let timeout = self.shared.config.request_timeout;
        let trace = quorate_telemetry::propagation::current_sampled();
        self.ask(
            |reply| Input::Propose {
                command,
                reply,
                trace,
            },
            timeout,
            || NodeError::OutcomeUnknown {
                reason: format!("not applied within {} ms", timeout.as_millis()),
            },
        )
        .await
    }

    /// Forwards to `leader`; if it answers that another node leads now, the command was not
    /// proposed, so it goes to that node instead (once: after that the client retries).
    async fn forward_to_leader(
        &self,
        leader: NodeId,
        command: Bytes,
    ) -> Result<Applied, NodeError> {
        match self.forward(leader, command.clone()).await {
            Err(NodeError::NotLeader {
                leader: Some(next), ..
            }) if next != leader => {
                if next == self.id() {
                    self.propose_here(command).await
                } else {
                    self.forward(next, command).await
                }
            }
            other => other,
        }
    }

    async fn forward(&self, leader: NodeId, command: Bytes) -> Result<Applied, NodeError> {
        // The same patience as a write proposed on the leader itself: a follower must not
        // give up (and answer OUTCOME_UNKNOWN) sooner than the leader would.
        let deadline = self.shared.config.request_timeout;
        let term = self.shared.status.borrow().raft.term;
        match self
            .shared
            .transport
            .forward(leader, term, command, deadline)
            .await
        {
            Ok(reply) => Ok(Applied {
                index: reply.index,
                term: reply.term,
                output: reply.output,
            }),
            Err(status) => Err(match NodeError::from_status(&status) {
                NodeError::NotLeader { leader: None, .. } => NodeError::NoQuorum {
                    reason: format!("node {leader} is no longer leader and knows no other"),
                },
                other => other,
            }),
        }
    }

    /// Confirms that this node may serve a linearizable read: returns once the state machine
    /// has applied an index at least as high as the leader's commit index at some instant after
    /// the call began.
    pub async fn read_index(&self, mode: ReadMode) -> Result<Index, NodeError> {
        self.check_quorum_reachable()?;
        let timeout = self.shared.config.election_timeout;
        let read = self.ask(
            |reply| Input::Read { mode, reply },
            timeout,
            || NodeError::NoQuorum {
                reason: format!(
                    "leadership could not be confirmed within {} ms",
                    timeout.as_millis()
                ),
            },
        );
        // A read has no side effect: losing the quorum simply refuses it.
        self.unless_cut_off(read, |lost| lost).await
    }

    /// Starts handing leadership to `target` (this node must be the leader).
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), NodeError> {
        self.ask(
            |reply| Input::Transfer { target, reply },
            self.shared.config.request_timeout,
            || NodeError::Internal("the node did not answer".into()),
        )
        .await
    }

    /// Raises the corruption alarm: this node's stored state differs from the majority's. It
    /// stops taking part in the cluster and refuses every request with `CORRUPT`, saying
    /// `reason`, until an operator replaces it (a restart runs the check again).
    pub async fn raise_corruption_alarm(&self, reason: String) {
        let _ = self.shared.inputs.send(Input::Alarm { reason }).await;
    }

    /// Refuses writes with `CORRUPT` and `reason` while replicas disagree with no majority
    /// among them (`None`: they agree again, writes resume).
    pub async fn hold_writes(&self, reason: Option<String>) {
        let _ = self.shared.inputs.send(Input::HoldWrites { reason }).await;
    }

    /// Hands leadership to the best other voter (this node must be the leader).
    pub async fn step_down(&self) -> Result<NodeId, NodeError> {
        self.ask(
            |reply| Input::StepDown { reply },
            self.shared.config.request_timeout,
            || NodeError::Internal("the node did not answer".into()),
        )
        .await
    }

    /// Takes a snapshot on this node now (whatever its role): its log is compacted behind its
    /// applied index, keeping the catch-up margin. Refused while a snapshot streams to a
    /// follower (the entries after it must stay), and on a node that applied nothing.
    pub async fn take_snapshot(&self) -> Result<SnapshotTaken, NodeError> {
        self.ask(
            |reply| Input::TakeSnapshot { reply },
            self.shared.config.request_timeout,
            || NodeError::Internal("the node did not answer".into()),
        )
        .await
    }

    /// Reads a consistent image of this node's machine, read off the node's loop while it goes
    /// on, with the snapshot metadata (term, membership) of the index the image is of.
    pub async fn backup(&self) -> Result<Snapshot, NodeError> {
        self.ask(
            |reply| Input::Backup { reply },
            BACKUP_DEADLINE,
            || NodeError::Internal("reading the image took too long".into()),
        )
        .await
    }

    /// Makes an operator's membership change on the leader (forwarded there from a
    /// follower), and returns once the membership asked for is committed (a change of voters:
    /// once the joint configuration is left). Refused with a reason when it cannot be made
    /// now (another change in progress, a learner not caught up, an unknown member).
    pub async fn change_membership(&self, ops: Vec<MemberOp>) -> Result<Applied, NodeError> {
        self.check_quorum_reachable()?;
        let (role, leader) = {
            let status = self.shared.status.borrow();
            (status.raft.role, status.raft.leader_id)
        };
        if role == Role::Leader {
            return self.change_membership_here(ops).await;
        }
        let Some(leader) = leader else {
            return Err(NodeError::NoQuorum {
                reason: "this node knows no leader to ask".into(),
            });
        };
        if self.shared.transport.address_of(leader).is_none() {
            // Its leader was just removed: a new one is being elected.
            return Err(NodeError::NoQuorum {
                reason: format!("node {leader}, the leader this node knows, is no longer a member"),
            });
        }
        let changes = ops.iter().map(MemberOp::to_proto).collect();
        // A change of voters commits two entries, each needing a quorum round.
        let deadline = self.shared.config.request_timeout * 2;
        match self
            .shared
            .transport
            .change_membership(leader, changes, deadline)
            .await
        {
            Ok(reply) => Ok(Applied {
                index: reply.index,
                term: reply.term,
                output: Bytes::new(),
            }),
            Err(status) => Err(NodeError::from_status(&status)),
        }
    }

    /// [`NodeHandle::change_membership`] on this node only (it must be the leader).
    pub async fn change_membership_here(&self, ops: Vec<MemberOp>) -> Result<Applied, NodeError> {
        let timeout = self.shared.config.request_timeout * 2;
        self.ask(
            |reply| Input::ChangeMembership { ops, reply },
            timeout,
            || NodeError::OutcomeUnknown {
                reason: format!(
                    "the membership change was not committed within {} ms: see `quoratectl \
                     members list`",
                    timeout.as_millis()
                ),
            },
        )
        .await
    }

    /// Waits until the state machine has applied `index`.
    pub async fn wait_applied(&self, index: Index) -> Result<(), NodeError> {
        let mut applied = self.shared.applied.clone();
        applied
            .wait_for(|&a| a >= index)
            .await
            .map(|_| ())
            .map_err(|_| NodeError::ShuttingDown)
    }
}

impl NodeHandle {
    /// Steps a request from a peer and returns the core's response once the state it depends
    /// on is durable (`None` for `TimeoutNow`, which has none). For the transport's server.
    pub async fn deliver(&self, message: Message) -> Result<Option<Message>, tonic::Status> {
        if matches!(message.payload, Payload::TimeoutNow) {
            self.shared
                .inputs
                .send(Input::Peer {
                    message,
                    reply: None,
                })
                .await
                .map_err(|_| tonic::Status::unavailable("node shutting down"))?;
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        self.shared
            .inputs
            .send(Input::Peer {
                message,
                reply: Some(tx),
            })
            .await
            .map_err(|_| tonic::Status::unavailable("node shutting down"))?;
        let deadline = self.shared.config.election_timeout;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(reply)) => Ok(Some(reply)),
            Ok(Err(_)) => Err(tonic::Status::unavailable("the node dropped the request")),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "the node did not answer in time",
            )),
        }
    }

    /// The peer transport (for direct RPCs such as probes).
    pub fn transport(&self) -> &Transport {
        &self.shared.transport
    }

    /// When the node started.
    pub fn started_at(&self) -> std::time::Instant {
        self.shared.started_at
    }
}
