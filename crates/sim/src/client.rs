//! Simulated clients: they run the workload's operations (payment submits and reads, lease
//! work, see [`crate::workload`]) against the cluster, retry each with the same idempotency
//! key, and record every payment operation as ok, refused or unknown.
//!
//! A submit the client gives up on has an *unknown* outcome: its last attempt is always still
//! in flight (a refused attempt is retried at once), so it may take effect later or never.
//! Unknown outcomes are never counted as failures or successes; the linearizability checker
//! may place them anywhere after their invocation. Reads the client gives up on carry no
//! information and are left out of the history.
//!
//! **Definite refusals.** A submit the machine refused (`INVALID_TRANSITION`, `STALE_TOKEN`,
//! ...) completed and changed nothing. The checker's model (append-only lists of values) has
//! no operation for "a no-op whose answer depended on the state", so refused submits are left
//! out of the history. That is the same as recording them as completed no-ops, because a no-op
//! without a returned value constrains no linearization; and it keeps their one observable
//! consequence: their values were never appended, so a read that returns one is flagged (a
//! value no append wrote). What is not checked is whether the refusal itself was justified by
//! the state at its linearization point (the lifecycle and fencing rules); the `lease-fencing`
//! invariant covers the fencing half on every replica.

use quorate_payments::machine::Applied;
use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::NodeId;

use crate::linearizability::{Observed, OpKind, Operation};
use crate::workload::{Next, Outcome, Plan, Workload};

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
    /// The logical operation; a submit's idempotency key is derived from it.
    pub op_id: u64,
    /// Which attempt of it.
    pub attempt: u32,
    /// What to do.
    pub action: Action,
}

impl Request {
    /// The response of this attempt saying `reply`.
    pub fn respond(&self, reply: Reply) -> Response {
        Response {
            client: self.client,
            op_id: self.op_id,
            attempt: self.attempt,
            reply,
        }
    }
}

/// A writer-lease fence, in the simulator's numbering (see [`crate::names`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The lease.
    pub lease: u64,
    /// The token the submitter was granted.
    pub token: u64,
}

/// What a request asks for. Payments and leases are numbered; the node names them for the
/// machine, and derives a submit's idempotency key from the request's `op_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Submit a payment event (`PaymentEvents.Submit`).
    Submit {
        /// The payment.
        payment: u64,
        /// What happened.
        kind: quorate_payments::machine::EventKind,
        /// The amount in minor units.
        amount: i64,
        /// The writer lease the submitter claims to hold, if any.
        fence: Option<Fence>,
    },
    /// Read a payment's events (`PaymentEvents.Get`).
    Read {
        /// The payment.
        payment: u64,
        /// How.
        kind: ReadKind,
    },
    /// Take a writer lease (`Leases.Acquire`).
    Acquire {
        /// The lease.
        lease: u64,
        /// Its time to live.
        ttl_ms: u64,
    },
    /// Renew a writer lease (`Leases.KeepAlive`).
    KeepAlive {
        /// The lease.
        lease: u64,
        /// The token held.
        token: u64,
    },
    /// Give a writer lease up (`Leases.Release`).
    Release {
        /// The lease.
        lease: u64,
        /// The token held.
        token: u64,
    },
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The machine's output for the command: this attempt's entry was applied (for a submit,
    /// possibly replaying the outcome of an earlier attempt).
    Applied(Applied),
    /// A read's answer: the operations whose events the payment holds, oldest first, as of a
    /// point inside the read's interval.
    Events(Vec<u64>),
    /// A read's answer when the event log was compacted past the payment's first events: the
    /// operations of the events still held (a suffix of the list, which the linearizability
    /// checker's model does not take: such reads are counted, not checked).
    CompactedEvents(Vec<u64>),
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

/// How an operation ended.
enum Ending {
    /// The machine answered (for a submit, possibly replaying an earlier attempt's outcome).
    Applied(Applied),
    /// A linearizable or stale read answered.
    Events(Vec<u64>),
    /// A read answered with the events still held after compaction.
    CompactedEvents(Vec<u64>),
    /// No answer before the deadline.
    GaveUp,
}

/// One simulated client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its id.
    pub id: u64,
    rng: SplitMix64,
    plan: Plan,
    op: Option<CurrentOp>,
    next_op_at: u64,
    next_seq: u64,
    leader_guess: Option<NodeId>,
    /// Submits (ok or unknown) and linearizable reads, for the checker.
    pub history: Vec<Operation>,
    /// Reads given up (left out of the history).
    pub failed: u64,
    /// Stale reads served (not checked).
    pub stale_reads: u64,
    /// Reads answered with a compacted payment's remaining events (not checked).
    pub compacted_reads: u64,
    /// Submits the machine refused (left out of the history, see the module documentation).
    pub refused: u64,
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
    /// A client with its own random stream, working on `plan`.
    pub fn new(id: u64, rng: SplitMix64, workload: Workload, plan: Plan) -> Self {
        Client {
            id,
            rng,
            plan,
            op: None,
            next_op_at: 0,
            next_seq: 0,
            leader_guess: None,
            history: Vec::new(),
            failed: 0,
            stale_reads: 0,
            compacted_reads: 0,
            refused: 0,
            active: true,
            reads_only: false,
            must_succeed_after: None,
            liveness_failures: Vec::new(),
            workload,
        }
    }

    /// What the client works on (its counters).
    pub fn plan(&self) -> &Plan {
        &self.plan
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
        let action = match self
            .plan
            .next(now, &mut self.rng, self.reads_only, &self.workload)
        {
            Next::Do(action) => action,
            Next::WaitUntil(at) => {
                debug_assert!(at > now, "a wait must end in the future");
                self.next_op_at = at.max(now + 1);
                return ClientAction::Sleep;
            }
        };
        self.next_seq += 1;
        let op_id = self.id * 1_000_000 + self.next_seq;
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

    fn finish(&mut self, now: u64, ending: Ending) {
        let Some(op) = self.op.take() else { return };
        let gave_up = matches!(ending, Ending::GaveUp);
        if gave_up && self.must_succeed_after.is_some_and(|t| op.invoked_at >= t) {
            self.liveness_failures.push(format!(
                "client {} op {} ({:?}) invoked at {} did not complete by {}",
                self.id, op.op_id, op.action, op.invoked_at, now
            ));
        }
        let outcome = match &ending {
            Ending::Applied(applied) => Outcome::Applied(applied),
            Ending::Events(ops) | Ending::CompactedEvents(ops) => Outcome::Events(ops),
            Ending::GaveUp => Outcome::GaveUp,
        };
        self.plan.learn(now, &op.action, outcome);
        let recorded = match (op.action, ending) {
            (Action::Submit { payment, .. }, Ending::Applied(Applied::EventRecorded(_))) => Some((
                payment,
                OpKind::Append { value: op.op_id },
                Observed::Appended,
            )),
            (Action::Submit { payment, .. }, Ending::GaveUp) => Some((
                payment,
                OpKind::Append { value: op.op_id },
                Observed::Unknown,
            )),
            (Action::Submit { .. }, Ending::Applied(_)) => {
                self.refused += 1;
                None
            }
            (
                Action::Read {
                    kind: ReadKind::Stale,
                    ..
                },
                Ending::Events(_),
            ) => {
                // Not checked: drop it from the history.
                self.stale_reads += 1;
                None
            }
            (Action::Read { .. }, Ending::CompactedEvents(_)) => {
                // Not checked: the model needs the whole list.
                self.compacted_reads += 1;
                None
            }
            (Action::Read { payment, .. }, Ending::Events(ops)) => {
                Some((payment, OpKind::Read, Observed::ReadValues(ops)))
            }
            (Action::Read { .. }, _) => {
                // A read that never answered observed nothing.
                self.failed += 1;
                None
            }
            // Lease operations are checked by the `lease-fencing` invariant, not here.
            _ => None,
        };
        if let Some((key, kind, observed)) = recorded {
            let ret = (observed != Observed::Unknown).then_some(now);
            self.history.push(Operation {
                client: self.id,
                key,
                kind,
                call: op.invoked_at,
                ret,
                observed,
            });
        }
        self.schedule_next(now);
    }

    fn schedule_next(&mut self, now: u64) {
        self.next_op_at = now
            + self
                .rng
                .range(self.workload.think_min, self.workload.think_max);
    }

    fn give_up(&mut self, now: u64) {
        if self.op.is_some() {
            self.finish(now, Ending::GaveUp);
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
            // The entry's token did not increase, so it was not applied (the
            // `fencing-token-order` invariant reports it): as if the entry was overwritten.
            Reply::Applied(Applied::FencingRejected(_)) if !current_attempt => ClientAction::Sleep,
            Reply::Applied(Applied::FencingRejected(_)) => {
                self.leader_guess = None;
                self.retry(now, nodes)
            }
            Reply::Applied(applied) => {
                self.leader_guess = Some(from);
                self.finish(now, Ending::Applied(applied));
                ClientAction::Sleep
            }
            Reply::Events(ops) => {
                self.leader_guess = Some(from);
                self.finish(now, Ending::Events(ops));
                ClientAction::Sleep
            }
            Reply::CompactedEvents(ops) => {
                self.leader_guess = Some(from);
                self.finish(now, Ending::CompactedEvents(ops));
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
        self.give_up(now);
    }
}
