//! Safety invariants, checked after every step of a run. Each check is incremental so it can
//! run after every event.
//!
//! - **election safety**: at most one leader per term, over the whole run (Raft §5.2);
//! - **log matching**: entries with equal index and term are identical and so are their
//!   prefixes (§5.3). Checked as: every `(index, term)` ever written anywhere has one payload
//!   and one predecessor term, which by induction makes equal prefixes;
//! - **committed entries never change**: once any node reports index `i` committed, every node
//!   that later reports `i` committed has the same term there;
//! - **leader completeness**: a new leader's log holds every entry committed in an earlier
//!   term (§5.4); and, in its potential form, every node that *could* win an election holds the latest committed
//!   entry `(K, T)`: a node whose log is at least as up to date as that of a holder of
//!   `(K, T)` must hold it too. (The highest committed entry is always committed directly by
//!   the leader of its own term `T`; every leader of a later term holds it, by the §5.4.3
//!   argument, and so does every log that ends in an entry of such a term. The statement is
//!   false for entries committed indirectly, which a leader elected between their term and
//!   their commit may lack.) This catches a wrongly committed entry at the moment of the
//!   commit, not only when an unlucky election later exposes it;
//! - **state-machine safety**: no two nodes apply different entries at one index (§5.4.3);
//! - **fencing**: applied tokens strictly increase on every node;
//! - **lease safety**: never two nodes holding a valid leader lease at one instant, each judged
//!   by its own clock at that instant (a frozen process's lease runs out while it is frozen);
//!   and no lease read is answered with a lease that has run out by the node's clock
//!   (`lease-read-stale-clock`: time from before a pause);
//! - **lease fencing**: no replica records a write fenced by a writer-lease token that is not
//!   the lease's live token at that point of the log ([`crate::lease_fencing`]);
//! - **exactly once**: per idempotency key, at most one event is ever recorded, on any
//!   replica ([`crate::exactly_once`]; also checked on every node's state at the end);
//! - **event log**: on every replica, the event-log hash at its applied index equals that of
//!   every event recorded up to there, however much of the log its machine compacted
//!   (`event-log-hash`, [`crate::event_log`], checked on every node's state at the end);
//! - **snapshots**: a snapshot's image is of exactly the index it claims
//!   (`snapshot-matches-state`, checked by the node that takes it, and by the lease history
//!   of that node at that moment), its last entry is a committed one
//!   (`committed-entries-never-change`), and installing one never rewinds what a machine
//!   applied (`snapshot-never-rewinds`, checked by the installing node). Compacted entries
//!   count as held by the node whose snapshot covers them.

use std::collections::{BTreeMap, HashMap};

use quorate_payments::machine::{Applied, Store};
use quorate_raft_core::{Entry, Index, NodeId, Role, Term};

pub mod event_log;
pub mod exactly_once;
pub mod lease_fencing;
pub mod linearizability;

use crate::trace::TraceHash;
use event_log::EventLog;
use exactly_once::ExactlyOnce;
use lease_fencing::LeaseFencing;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// What happened.
    pub detail: String,
    /// Simulated time (microticks).
    pub at: u64,
}

/// A running node's log, as the electable-node check reads it.
pub struct LogView<'a> {
    /// The node.
    pub id: NodeId,
    /// Its last index.
    pub last_index: Index,
    /// Its last term.
    pub last_term: Term,
    /// The term at an index, if its log holds it.
    pub term_at: &'a dyn Fn(Index) -> Option<Term>,
    /// The last index its snapshot covers (entries up to there are compacted: it holds them
    /// in its machine, not in its log).
    pub compacted: Index,
}

/// The fingerprint of an entry's identity beyond index and term.
fn fingerprint(entry: &Entry) -> u64 {
    let mut h = TraceHash::default();
    h.u64(entry.sequence);
    h.u64(entry.kind as u64);
    h.bytes(&entry.data);
    h.finish()
}

/// The run's memory of what it has seen, and the first violation.
#[derive(Default)]
pub struct Invariants {
    leaders_by_term: BTreeMap<Term, NodeId>,
    /// (index, term) → (payload fingerprint, term of the previous entry).
    written: HashMap<(Index, Term), (u64, Term)>,
    /// `committed[i - 1]` is the term of committed index `i`.
    committed: Vec<Term>,
    /// `committed_by[i - 1]`: the node that first reported index `i` committed, and when.
    committed_by: Vec<(NodeId, u64)>,
    /// Per node, the commit index up to which it has been checked.
    checked_commit: BTreeMap<NodeId, Index>,
    /// `applied[i - 1]`: (term, fingerprint) of the entry applied at `i`.
    applied: Vec<(Term, u64)>,
    /// Every node's writer-lease histories.
    lease_fencing: LeaseFencing,
    /// Where each idempotency key recorded its event.
    exactly_once: ExactlyOnce,
    /// Every event recorded, for the event-log hash.
    event_log: EventLog,
    /// The first violation of the run.
    pub violation: Option<Violation>,
}

impl Invariants {
    fn fail(&mut self, invariant: &'static str, at: u64, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                invariant,
                detail,
                at,
            });
        }
    }

    /// Terms that had a leader.
    pub fn elections(&self) -> usize {
        self.leaders_by_term.len()
    }

    /// The highest index known committed.
    pub fn committed_index(&self) -> Index {
        self.committed.len() as Index
    }

    /// Election safety: `node` is leader of `term`.
    pub fn on_leader(&mut self, node: NodeId, term: Term, at: u64) {
        match self.leaders_by_term.get(&term) {
            Some(&other) if other != node => self.fail(
                "election-safety",
                at,
                format!("nodes {other} and {node} are both leaders of term {term}"),
            ),
            Some(_) => {}
            None => {
                self.leaders_by_term.insert(term, node);
            }
        }
    }

    /// Log matching: `node` wrote `entries`, the first of which follows an entry of
    /// `prev_term`.
    pub fn on_persist(&mut self, node: NodeId, prev_term: Term, entries: &[Entry], at: u64) {
        let mut prev = prev_term;
        for entry in entries {
            let identity = (fingerprint(entry), prev);
            match self.written.get(&(entry.index, entry.term)) {
                Some(&seen) if seen != identity => {
                    self.fail(
                        "log-matching",
                        at,
                        format!(
                            "node {node} wrote index {} term {} with payload/predecessor {:?}, \
                             another node wrote {:?}",
                            entry.index, entry.term, identity, seen
                        ),
                    );
                    return;
                }
                Some(_) => {}
                None => {
                    self.written.insert((entry.index, entry.term), identity);
                }
            }
            prev = entry.term;
        }
    }

    /// `node` reports `commit`; `term_at` reads its log, which is compacted up to
    /// `compacted` (the snapshot's own index still has its term).
    pub fn on_commit(
        &mut self,
        node: NodeId,
        commit: Index,
        term_at: impl Fn(Index) -> Option<Term>,
        compacted: Index,
        at: u64,
    ) {
        let checked = self.checked_commit.get(&node).copied().unwrap_or(0);
        if commit <= checked {
            return;
        }
        for index in checked + 1..=commit {
            // A compacted entry is in the snapshot, whose own (index, term) was checked
            // against the committed log when it was taken or installed.
            let compacted_term = || {
                (index < compacted)
                    .then(|| self.committed.get(index as usize - 1).copied())
                    .flatten()
            };
            let Some(term) = term_at(index).or_else(compacted_term) else {
                self.fail(
                    "committed-entries-never-change",
                    at,
                    format!("node {node} reports commit {commit} but has no entry {index}"),
                );
                return;
            };
            match self.committed.get(index as usize - 1) {
                Some(&known) if known != term => {
                    self.fail(
                        "committed-entries-never-change",
                        at,
                        format!(
                            "index {index} was committed with term {known}; node {node} now \
                             reports it committed with term {term}"
                        ),
                    );
                    return;
                }
                Some(_) => {}
                None => {
                    self.committed.push(term);
                    self.committed_by.push((node, at));
                }
            }
        }
        self.checked_commit.insert(node, commit);
    }

    /// A node restarted: its commit index may be lower now; check it again from there. Its
    /// machine replays the log from the start.
    pub fn on_restart(&mut self, node: NodeId) {
        self.checked_commit.remove(&node);
        self.lease_fencing.on_restart(node);
    }

    /// A snapshot's last entry must be a committed one: `(index, term)` must be in the
    /// committed log (a snapshot never holds uncommitted state, or other entries).
    fn check_snapshot_committed(
        &mut self,
        node: NodeId,
        what: &str,
        index: Index,
        term: Term,
        at: u64,
    ) {
        if index == 0 {
            return;
        }
        match self.committed.get(index as usize - 1) {
            Some(&known) if known == term => {}
            known => self.fail(
                "committed-entries-never-change",
                at,
                format!(
                    "node {node} {what} a snapshot of index {index} term {term}, but the \
                     committed log has {known:?} there"
                ),
            ),
        }
    }

    /// `node` compacted its log behind a snapshot of its machine at (`index`, `term`).
    pub fn on_snapshot_taken(&mut self, node: NodeId, index: Index, term: Term, at: u64) {
        self.check_snapshot_committed(node, "took", index, term, at);
        if let Err(detail) = self.lease_fencing.on_snapshot_taken(node, index) {
            self.fail("snapshot-matches-state", at, detail);
        }
    }

    /// `node`'s machine was replaced by the snapshot of (`index`, `term`): installed from the
    /// leader, or restored from its disk at a restart.
    pub fn on_snapshot_restored(&mut self, node: NodeId, index: Index, term: Term, at: u64) {
        if index == 0 {
            return;
        }
        self.check_snapshot_committed(node, "restored", index, term, at);
        if let Err(detail) = self.lease_fencing.on_snapshot_restored(node, index) {
            self.fail("snapshot-matches-state", at, detail);
        }
    }

    /// Leader completeness: `node` just became leader.
    pub fn on_became_leader(
        &mut self,
        node: NodeId,
        term: Term,
        term_at: impl Fn(Index) -> Option<Term>,
        compacted: Index,
        at: u64,
    ) {
        for (i, &committed_term) in self.committed.iter().enumerate() {
            if committed_term >= term {
                // Raft §5.4 promises the leaders of *later* terms every committed entry. A
                // leader of an older term can still be elected late (its votes waited out a
                // pause) and can commit nothing: its appends are refused by the majority that
                // moved on. Terms never decrease along the log, so nothing after this counts.
                break;
            }
            let index = i as Index + 1;
            if index < compacted {
                continue; // in its snapshot
            }
            if term_at(index) != Some(committed_term) {
                let detail = format!(
                    "node {node} became leader of term {term} without committed entry {index} \
                     (term {committed_term}); its log has {:?} there",
                    term_at(index)
                );
                self.fail("leader-completeness", at, detail);
                return;
            }
        }
    }

    /// Leader completeness in its potential form, over the running nodes' logs. Call it when
    /// the commit index advanced.
    pub fn check_electable(&mut self, logs: &[LogView<'_>], at: u64) {
        let latest = self.committed.len() as Index;
        let Some(&term) = self.committed.last() else {
            return;
        };
        for holder in logs.iter().filter(|v| (v.term_at)(latest) == Some(term)) {
            for candidate in logs {
                let at_least_as_up_to_date = (candidate.last_term, candidate.last_index)
                    >= (holder.last_term, holder.last_index);
                let holds =
                    latest < candidate.compacted || (candidate.term_at)(latest) == Some(term);
                if at_least_as_up_to_date && !holds {
                    let (by, when) = self.committed_by[latest as usize - 1];
                    self.fail(
                        "leader-completeness",
                        at,
                        format!(
                            "node {} could win an election (its log ends at {}/{}, at least as \
                             up to date as node {}'s {}/{}) but lacks the latest committed \
                             entry {latest} (term {term}, reported committed by node {by} at \
                             {when}); it has {:?} there",
                            candidate.id,
                            candidate.last_index,
                            candidate.last_term,
                            holder.id,
                            holder.last_index,
                            holder.last_term,
                            (candidate.term_at)(latest)
                        ),
                    );
                    return;
                }
            }
        }
    }

    /// State-machine safety, fencing-token order, lease fencing and exactly-once: `node`
    /// applied `entry` with `output`, which added `events_written` events to its store.
    pub fn on_apply(
        &mut self,
        node: NodeId,
        entry: &Entry,
        output: &Applied,
        events_written: usize,
        at: u64,
    ) {
        let identity = (entry.term, fingerprint(entry));
        let slot = entry.index as usize - 1;
        match self.applied.get(slot) {
            Some(&seen) if seen != identity => self.fail(
                "state-machine-safety",
                at,
                format!(
                    "node {node} applied index {} of term {}, another node applied term {} there",
                    entry.index, entry.term, seen.0
                ),
            ),
            Some(_) => {}
            None if self.applied.len() == slot => self.applied.push(identity),
            None => self.fail(
                "state-machine-safety",
                at,
                format!("node {node} applied index {} out of order", entry.index),
            ),
        }
        if let Applied::FencingRejected(rejected) = output {
            self.fail(
                "fencing-token-order",
                at,
                format!(
                    "node {node} applied token {} at index {} after token {:?}",
                    entry.token(),
                    entry.index,
                    rejected.last_applied
                ),
            );
        }
        if let Err(detail) = self.lease_fencing.on_apply(node, entry, output) {
            self.fail("lease-fencing", at, detail);
        }
        if let Err(detail) = self
            .exactly_once
            .on_apply(node, entry, output, events_written)
        {
            self.fail("exactly-once", at, detail);
        }
        self.event_log.on_apply(output);
    }

    /// Exactly-once on `node`'s stored state: at most one event per idempotency key.
    pub fn check_store(&mut self, node: NodeId, store: &impl Store, at: u64) {
        if let Err(detail) = ExactlyOnce::check_store(node, store) {
            self.fail("exactly-once", at, detail);
        }
        if let Err(detail) = self.event_log.check_store(node, store) {
            self.fail("event-log-hash", at, detail);
        }
    }

    /// Lease safety: `holders` are the nodes holding a valid lease now.
    pub fn check_leases(&mut self, holders: &[(NodeId, Term)], at: u64) {
        if holders.len() > 1 {
            self.fail(
                "lease-safety",
                at,
                format!(
                    "several nodes hold a valid leader lease at once: {holders:?} (node, term)"
                ),
            );
        }
    }

    /// Role bookkeeping for traces: nothing to check beyond `on_leader`.
    pub fn on_role(&mut self, node: NodeId, role: Role, term: Term, at: u64) {
        if role == Role::Leader {
            self.on_leader(node, term, at);
        }
    }

    /// Records a liveness or end-of-run failure.
    pub fn fail_liveness(&mut self, invariant: &'static str, at: u64, detail: String) {
        self.fail(invariant, at, detail);
    }

    /// Records a violation found outside this checker: by a node (it alone knows its timers)
    /// or by the end-of-run history check.
    pub fn report(&mut self, invariant: &'static str, at: u64, detail: String) {
        self.fail(invariant, at, detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quorate_payments::machine::{
        AcquireLease, Command, EventRecord, EventRecorded, FencingRejected, FencingTokenRecord,
        LeaseAcquired, LeaseFence, Submit,
    };
    use quorate_raft_core::EntryKind;

    fn entry(index: Index, term: Term, data: &'static [u8]) -> Entry {
        Entry {
            index,
            term,
            sequence: index,
            kind: EntryKind::Command,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut inv = Invariants::default();
        inv.on_leader(1, 3, 0);
        inv.on_leader(1, 3, 1);
        inv.on_leader(2, 4, 2);
        assert!(inv.violation.is_none());
        inv.on_leader(3, 4, 3);
        assert_eq!(inv.violation.unwrap().invariant, "election-safety");
    }

    #[test]
    fn divergent_entries_with_equal_index_and_term_are_caught() {
        let mut inv = Invariants::default();
        inv.on_persist(1, 0, &[entry(1, 1, b"a"), entry(2, 1, b"b")], 0);
        inv.on_persist(2, 0, &[entry(1, 1, b"a")], 0);
        assert!(inv.violation.is_none());
        inv.on_persist(3, 1, &[entry(2, 1, b"c")], 0);
        assert_eq!(inv.violation.unwrap().invariant, "log-matching");
    }

    #[test]
    fn a_changed_committed_entry_is_caught() {
        let mut inv = Invariants::default();
        let log1 = [1, 1, 2];
        inv.on_commit(1, 3, |i| log1.get(i as usize - 1).copied(), 0, 0);
        let log2 = [1, 1, 3];
        inv.on_commit(2, 2, |i| log2.get(i as usize - 1).copied(), 0, 0);
        assert!(inv.violation.is_none());
        inv.on_commit(2, 3, |i| log2.get(i as usize - 1).copied(), 0, 0);
        assert_eq!(
            inv.violation.unwrap().invariant,
            "committed-entries-never-change"
        );
    }

    #[test]
    fn a_leader_missing_a_committed_entry_is_caught() {
        let mut inv = Invariants::default();
        let log = [1, 2];
        inv.on_commit(1, 2, |i| log.get(i as usize - 1).copied(), 0, 0);
        let stale = [1];
        inv.on_became_leader(2, 3, |i| stale.get(i as usize - 1).copied(), 0, 0);
        assert_eq!(inv.violation.unwrap().invariant, "leader-completeness");
    }

    /// A node whose log holds `log` (the term of each index from 1), compacted nowhere.
    fn log_view(id: NodeId, log: &'static [u64]) -> LogView<'static> {
        LogView {
            id,
            last_index: log.len() as u64,
            last_term: *log.last().unwrap(),
            compacted: 0,
            term_at: Box::leak(Box::new(move |i: Index| log.get(i as usize - 1).copied())),
        }
    }

    #[test]
    fn an_electable_node_missing_a_committed_entry_is_caught() {
        let mut inv = Invariants::default();
        // Figure 8: index 2 of term 2 committed (wrongly, by counting) while node 5 holds
        // index 2 of term 3.
        let holder = [1u64, 2, 4];
        inv.on_commit(1, 2, |i| holder.get(i as usize - 1).copied(), 0, 0);
        let follower = [1u64, 2];
        let rival = [1u64, 3];
        let holder: &'static [u64] = Box::leak(Box::new(holder));
        let follower: &'static [u64] = Box::leak(Box::new(follower));
        let rival: &'static [u64] = Box::leak(Box::new(rival));
        // Without the rival, everyone who could win holds index 2.
        inv.check_electable(&[log_view(1, holder), log_view(2, follower)], 0);
        assert!(inv.violation.is_none());
        // The rival's log (last term 3) beats the follower's (last term 2): it could win.
        inv.check_electable(
            &[
                log_view(1, holder),
                log_view(2, follower),
                log_view(5, rival),
            ],
            0,
        );
        assert_eq!(inv.violation.unwrap().invariant, "leader-completeness");
    }

    #[test]
    fn an_indirectly_committed_entry_may_be_missing_from_older_terms() {
        // Index 2 (term 7) was committed by the term-9 leader through index 3; a node that
        // holds an entry of term 8 (from a leader elected before that commit) lacks index 2.
        // That is legal: only the latest committed entry (3, term 9) must be on electable
        // nodes, and the term-8 node is not as up to date as its holders.
        let mut inv = Invariants::default();
        let leader: &'static [u64] = &[1, 7, 9];
        let lagging: &'static [u64] = &[1, 7];
        let term8: &'static [u64] = &[1, 8];
        inv.on_commit(5, 3, |i| leader.get(i as usize - 1).copied(), 0, 0);
        inv.check_electable(
            &[
                log_view(5, leader),
                log_view(1, lagging),
                log_view(4, term8),
            ],
            0,
        );
        assert!(inv.violation.is_none(), "{:?}", inv.violation);
    }

    #[test]
    fn different_entries_applied_at_one_index_are_caught() {
        let mut inv = Invariants::default();
        inv.on_apply(1, &entry(1, 1, b"a"), &Applied::Noop, 0, 0);
        inv.on_apply(2, &entry(1, 1, b"a"), &Applied::Noop, 0, 0);
        assert!(inv.violation.is_none());
        inv.on_apply(3, &entry(1, 2, b"z"), &Applied::Noop, 0, 0);
        assert_eq!(inv.violation.unwrap().invariant, "state-machine-safety");
    }

    #[test]
    fn two_lease_holders_are_caught() {
        let mut inv = Invariants::default();
        inv.check_leases(&[(1, 2)], 0);
        assert!(inv.violation.is_none());
        inv.check_leases(&[(1, 2), (3, 3)], 0);
        assert_eq!(inv.violation.unwrap().invariant, "lease-safety");
    }

    #[test]
    fn a_stale_token_at_apply_is_caught() {
        let mut inv = Invariants::default();
        let rejected = Applied::FencingRejected(FencingRejected {
            token: FencingTokenRecord {
                term: 2,
                sequence: 1,
            },
            last_applied: FencingTokenRecord {
                term: 3,
                sequence: 9,
            },
        });
        inv.on_apply(1, &entry(1, 2, b"a"), &rejected, 0, 0);
        assert_eq!(inv.violation.unwrap().invariant, "fencing-token-order");
    }

    #[test]
    fn a_key_recorded_twice_is_an_exactly_once_violation() {
        let mut inv = Invariants::default();
        let recorded = |index| {
            Applied::EventRecorded(EventRecorded {
                event: EventRecord {
                    index,
                    idempotency_key: "op-7".into(),
                    ..EventRecord::default()
                },
                replayed: false,
            })
        };
        inv.on_apply(1, &entry(1, 1, b"a"), &recorded(1), 1, 0);
        assert!(inv.violation.is_none());
        inv.on_apply(1, &entry(2, 1, b"b"), &recorded(2), 1, 0);
        assert_eq!(inv.violation.unwrap().invariant, "exactly-once");
    }

    #[test]
    fn a_zombie_write_is_a_lease_fencing_violation() {
        let mut inv = Invariants::default();
        let command = |index, command: Command| Entry {
            index,
            term: 1,
            sequence: index,
            kind: EntryKind::Command,
            data: command.encode(),
        };
        let grant = |holder: &str| {
            Command::AcquireLease(AcquireLease {
                name: "w".into(),
                holder: holder.into(),
                ttl_ms: 1_000,
            })
        };
        let granted = |token| {
            Applied::LeaseAcquired(LeaseAcquired {
                granted: true,
                token,
                ..LeaseAcquired::default()
            })
        };
        inv.on_apply(1, &command(1, grant("a")), &granted(1), 0, 0);
        inv.on_apply(1, &command(2, grant("a")), &granted(2), 0, 0);
        assert!(inv.violation.is_none());
        let zombie = Command::Submit(Submit {
            payment_id: "p".into(),
            idempotency_key: "op-1".into(),
            fence: Some(LeaseFence {
                lease: "w".into(),
                token: 1,
            }),
            ..Submit::default()
        });
        let recorded = Applied::EventRecorded(EventRecorded {
            event: EventRecord {
                index: 3,
                idempotency_key: "op-1".into(),
                ..EventRecord::default()
            },
            replayed: false,
        });
        inv.on_apply(1, &command(3, zombie), &recorded, 1, 0);
        assert_eq!(inv.violation.unwrap().invariant, "lease-fencing");
    }
}
