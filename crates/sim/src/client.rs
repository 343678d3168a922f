//! Simulated clients: they append to and read per-key lists, retry with the same idempotency
//! key, and record every logical operation as ok, failed or unknown.
//!
//! An append the client gives up on has an *unknown* outcome: its last attempt is always still
//! in flight (a refused attempt is retried at once), so it may take effect later or never.
//! Unknown outcomes are never counted as failures or successes; the linearizability checker
//! may place them anywhere after their invocation. Reads the client gives up on carry no
//! information and are left out of the history.

use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::NodeId;

use crate::linearizability::{Observed, OpKind, Operation};

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// ReadIndex: a quorum round confirms leadership.
    Quorum,
    /// The leader lease (falls back to a quorum round when it does not hold).
    Lease,
    /// The node's applied state, no confirmation: may be stale, never checked.
    Stale,
}

/// A request from a client to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client.
    pub client: u64,
    /// The logical operation (also the idempotency key).
    pub op_id: u64,
    /// Which attempt of it.
    pub attempt: u32,
    /// What to do.
    pub action: Action,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Append `value` to `key`.
    Append {
        /// The list.
        key: u64,
        /// The value (unique per operation).
        value: u64,
    },
    /// Read `key`.
    Read {
        /// The list.
        key: u64,
        /// How.
        kind: ReadKind,
    },
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The append is applied (now or by an earlier attempt).
    Appended,
    /// The list as of a point inside the read's interval.
    Values(Vec<u64>),
    /// Not the leader; try `leader`.
    Redirect(Option<NodeId>),
    /// Refused before reaching the log (no quorum, transfer, no leader): did not happen.
    Refused,
    /// This attempt's entry was overwritten: it did not happen.
    Failed,
    /// Leadership was lost while the attempt was pending: it may still happen.
    Unknown,
}

/// A reply addressed to a client attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The client.
    pub client: u64,
    /// The operation.
    pub op_id: u64,
    /// The attempt it answers.
    pub attempt: u32,
    /// What the node said.
    pub reply: Reply,
}

/// Workload knobs, in microticks.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Keys the clients share.
    pub keys: u64,
    /// Think time between operations: `[min, max)`.
    pub think_min: u64,
    /// See `think_min`.
    pub think_max: u64,
    /// An attempt without an answer for this long is retried elsewhere.
    pub attempt_timeout: u64,
    /// A logical operation gives up after this long.
    pub op_timeout: u64,
}

#[derive(Clone, Debug)]
struct CurrentOp {
    op_id: u64,
    action: Action,
    invoked_at: u64,
    deadline: u64,
    attempt: u32,
    attempt_deadline: u64,
}

/// What a client wants the world to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Send this request to this node.
    Send(NodeId, Request),
    /// Nothing now; wake the client at this time.
    Sleep,
}

/// One simulated client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its id.
    pub id: u64,
    rng: SplitMix64,
    op: Option<CurrentOp>,
    next_op_at: u64,
    next_seq: u64,
    leader_guess: Option<NodeId>,
    /// Completed (ok or unknown) appends and confirmed reads, for the checker.
    pub history: Vec<Operation>,
    /// Reads given up (left out of the history).
    pub failed: u64,
    /// Stale reads served (not checked).
    pub stale_reads: u64,
    /// Whether to start new operations.
    pub active: bool,
    /// Start only reads (a quiet period).
    pub reads_only: bool,
    /// Operations invoked at or after this time must succeed (liveness phase); violations
    /// are collected here.
    pub must_succeed_after: Option<u64>,
    /// Operations that should have succeeded but did not.
    pub liveness_failures: Vec<String>,
    workload: Workload,
}

impl Client {
    /// A client with its own random stream.
    pub fn new(id: u64, rng: SplitMix64, workload: Workload) -> Self {
        Client {
            id,
            rng,
            op: None,
            next_op_at: 0,
            next_seq: 0,
            leader_guess: None,
            history: Vec::new(),
            failed: 0,
            stale_reads: 0,
            active: true,
            reads_only: false,
            must_succeed_after: None,
            liveness_failures: Vec::new(),
            workload,
        }
    }

    /// When the client next needs to be woken.
    pub fn next_wake(&self) -> Option<u64> {
        match &self.op {
            Some(op) => Some(op.attempt_deadline.min(op.deadline)),
            None if self.active => Some(self.next_op_at),
            None => None,
        }
    }

    /// Whether an operation is in progress.
    pub fn busy(&self) -> bool {
        self.op.is_some()
    }

    /// Time passed: start an operation, retry, or give up.
    pub fn wake(&mut self, now: u64, nodes: &[NodeId]) -> ClientAction {
        let Some(op) = self.op.as_ref() else {
            if self.active && now >= self.next_op_at {
                return self.start(now, nodes);
            }
            return ClientAction::Sleep;
        };
        if now >= op.deadline {
            self.give_up(now);
            return ClientAction::Sleep;
        }
        if now >= op.attempt_deadline {
            // No answer: try elsewhere (the attempt may still reach a log).
            self.leader_guess = None;
            return self.retry(now, nodes);
        }
        ClientAction::Sleep
    }

    fn start(&mut self, now: u64, nodes: &[NodeId]) -> ClientAction {
        self.next_seq += 1;
        let op_id = self.id * 1_000_000 + self.next_seq;
        let key = self.rng.range(0, self.workload.keys);
        let roll = if self.reads_only {
            self.rng.range(55, 100)
        } else {
            self.rng.range(0, 100)
        };
        let action = if roll < 55 {
            Action::Append { key, value: op_id }
        } else {
            let kind = match roll {
                55..=74 => ReadKind::Quorum,
                75..=89 => ReadKind::Lease,
                _ => ReadKind::Stale,
            };
            Action::Read { key, kind }
        };
        self.op = Some(CurrentOp {
            op_id,
            action,
            invoked_at: now,
            deadline: now + self.workload.op_timeout,
            attempt: 0,
            attempt_deadline: now,
        });
        self.retry(now, nodes)
    }

    fn retry(&mut self, now: u64, nodes: &[NodeId]) -> ClientAction {
        let target = match self.leader_guess {
            Some(leader) => leader,
            None => nodes[self.rng.range(0, nodes.len() as u64) as usize],
        };
        let timeout = self.workload.attempt_timeout;
        let Some(op) = self.op.as_mut() else {
            return ClientAction::Sleep;
        };
        op.attempt += 1;
        op.attempt_deadline = now + timeout;
        ClientAction::Send(
            target,
            Request {
                client: self.id,
                op_id: op.op_id,
                attempt: op.attempt,
                action: op.action,
            },
        )
    }

    fn finish(&mut self, now: u64, observed: Observed) {
        let Some(op) = self.op.take() else { return };
        let (key, kind) = match op.action {
            Action::Append { key, value } => (key, OpKind::Append { value }),
            Action::Read { key, .. } => (key, OpKind::Read),
        };
        let ret = (observed != Observed::Unknown).then_some(now);
        if ret.is_none() && self.must_succeed_after.is_some_and(|t| op.invoked_at >= t) {
            self.liveness_failures.push(format!(
                "client {} op {} ({:?}) invoked at {} did not complete by {}",
                self.id, op.op_id, op.action, op.invoked_at, now
            ));
        }
        self.history.push(Operation {
            client: self.id,
            key,
            kind,
            call: op.invoked_at,
            ret,
            observed,
        });
        self.schedule_next(now);
    }

    fn schedule_next(&mut self, now: u64) {
        self.next_op_at = now
            + self
                .rng
                .range(self.workload.think_min, self.workload.think_max);
    }

    fn give_up(&mut self, now: u64) {
        let Some(op) = self.op.as_ref() else { return };
        let invoked_at = op.invoked_at;
        match op.action {
            Action::Append { .. } => self.finish(now, Observed::Unknown),
            Action::Read { .. } => {
                // A read that never answered: it observed nothing.
                if self.must_succeed_after.is_some_and(|t| invoked_at >= t) {
                    self.liveness_failures.push(format!(
                        "client {} op {} ({:?}) invoked at {} gave up at {}",
                        self.id, op.op_id, op.action, invoked_at, now
                    ));
                }
                self.failed += 1;
                self.op = None;
                self.schedule_next(now);
            }
        }
    }

    /// A node answered. Returns a request to send if the client retries at once.
    pub fn on_response(
        &mut self,
        now: u64,
        from: NodeId,
        response: Response,
        nodes: &[NodeId],
    ) -> ClientAction {
        let Some(op) = self.op.as_ref() else {
            return ClientAction::Sleep;
        };
        if op.op_id != response.op_id {
            return ClientAction::Sleep; // an answer to an operation already finished
        }
        let current_attempt = op.attempt == response.attempt;
        match response.reply {
            Reply::Appended => {
                self.leader_guess = Some(from);
                self.finish(now, Observed::Appended);
                ClientAction::Sleep
            }
            Reply::Values(values) => {
                let stale = matches!(
                    op.action,
                    Action::Read {
                        kind: ReadKind::Stale,
                        ..
                    }
                );
                if stale {
                    // Not checked: drop it from the history.
                    self.stale_reads += 1;
                    self.op = None;
                    self.schedule_next(now);
                } else {
                    self.leader_guess = Some(from);
                    self.finish(now, Observed::ReadValues(values));
                }
                ClientAction::Sleep
            }
            // An older attempt's failure says nothing about the current one.
            Reply::Unknown | Reply::Failed | Reply::Refused | Reply::Redirect(_)
                if !current_attempt =>
            {
                ClientAction::Sleep
            }
            Reply::Redirect(leader) => {
                self.leader_guess = leader.filter(|&l| l != from);
                self.retry(now, nodes)
            }
            Reply::Unknown | Reply::Failed | Reply::Refused => {
                self.leader_guess = None;
                self.retry(now, nodes)
            }
        }
    }

    /// Stops starting new operations.
    pub fn stop(&mut self) {
        self.active = false;
    }

    /// Gives up whatever is in progress (end of the run).
    pub fn abandon(&mut self, now: u64) {
        if self.op.is_some() {
            self.give_up(now);
        }
    }
}
