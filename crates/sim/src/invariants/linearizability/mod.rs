//! # Linearizability checker for a key-value store of append-only lists
//!
//! ## The model
//!
//! Every key holds a list of `u64` values, initially empty. Clients issue two kinds of
//! operations against one key:
//!
//! - [`OpKind::Append`] pushes a value to the end of the key's list. The workload guarantees
//!   that every value is appended by at most one operation in the whole history.
//! - [`OpKind::Read`] returns the key's whole list.
//!
//! An [`Operation`] records when the client called it (`call`), when the answer came back
//! (`ret`) and what the client observed. A history is *linearizable* (Herlihy & Wing, 1990) if
//! every operation can be given a point in time, between its call and its return, such that
//! executing the operations one at a time in the order of those points produces exactly the
//! observed results. Operation `A` *precedes* `B` in real time iff `A.ret < B.call`; equal
//! timestamps mean the two operations are concurrent. Linearizability is compositional
//! (a property of each object separately), so the history is split by key and every key is
//! checked independently; [`check`] reports the smallest offending key.
//!
//! ## Unknown outcomes
//!
//! A client that times out does not know whether its operation took effect; it may take
//! effect at any time after its call, even long after the timeout. Following Porcupine, such
//! an operation ([`Observed::Unknown`], `ret == None`) is modelled as returning at time
//! +infinity: it can be linearized anywhere after its call, including after everything else,
//! which is the same as "it never happened" when nothing later observes it. Consequences:
//!
//! - an unknown read carries no information and is dropped;
//! - an unknown append whose value no read returned is dropped too (placing it after every
//!   other operation is always possible and observed by nobody);
//! - an unknown append whose value some read returned must be linearized after its call and
//!   before that read, like any other append.
//!
//! Operations that definitely failed are never passed in.
//!
//! ## In the simulator
//!
//! A key is a payment and a list is the payment's events in order: an append is a submit
//! that records an event, whose value is the number of the logical operation that submitted
//! it (its idempotency key is derived from that number, so every retry appends the same
//! value, and the value is unique across the run), and a read is `PaymentEvents.Get`
//! returning those numbers. Submits the machine refused are left out (see `client`).
//!
//! ## Fast paths
//!
//! Before searching, each key goes through cheap sanity checks that give precise messages:
//! a read returning a value that no append of that key wrote (known or unknown), a read
//! returning the same value twice, and two reads whose lists are not prefix-comparable (the
//! list is append-only, so of any two observed lists one must be a prefix of the other).
//! After these checks all read lists form a chain of prefixes of the longest one, the
//! *master list* `M`.
//!
//! ## The search
//!
//! The search is the algorithm of Wing & Gong ("Testing and verifying concurrent objects",
//! 1993) with the memoization of Lowe ("Testing for linearizability", 2017), as implemented by
//! Porcupine's `checkSingle` (<https://github.com/anishathalye/porcupine>):
//!
//! 1. Every operation contributes a call event and, if its outcome is known, a return event.
//!    Events are sorted by time, calls before returns at the same timestamp (equal timestamps
//!    are concurrent), and put in a doubly linked list.
//! 2. Walking the list from its head, the search tries to linearize the first call whose
//!    precondition holds in the current state. Linearizing an operation removes ("lifts") its
//!    call and return events from the list, pushes it on an explicit stack, and restarts the
//!    walk from the head.
//! 3. Reaching a return event means that this operation returned without having been
//!    linearized: the current choice is a dead end. The search pops the last linearized
//!    operation, restores its events (dancing links) and state, and continues the walk after
//!    its call event. An empty stack at that point means the key is not linearizable (but see
//!    below: for this model a single dead end is usually already conclusive).
//! 4. A cache of visited configurations (the bitset of linearized operations plus the state)
//!    prevents exploring the same configuration twice.
//!
//! The search is iterative, so deep histories cannot overflow the call stack, and it is
//! bounded by a step budget (one step is one event examined by the walk): exceeding it yields
//! [`Verdict::Inconclusive`].
//!
//! **Model-specific precondition.** Because the list only grows, the state at any point of a
//! linearization is a prefix of every read linearized later. The search therefore only
//! accepts an append of `v` when no remaining read expects the current list (length `L`) and
//! `M[L] == v`, and only accepts a read whose list has length `L`. This pruning is sound (a
//! pruned branch can never be completed), keeps the state equal to `M[..L]` (so the state is
//! just `L`, itself determined by the bitset: the cache key is the bitset alone), and means
//! the search succeeds as soon as every read has been linearized: the remaining appends are
//! then unobserved and can be linearized in the order of their returns, which respects real
//! time.
//!
//! **No backtracking needed when values are unique.** With this precondition, every move the
//! search can make preserves the existence of a linearization, provided each value is
//! appended by at most one (participating) operation:
//!
//! - a read of length `L` that is callable (no remaining operation returned before its
//!   call) can be moved to the front of any completion: only reads of length `L` can precede
//!   it there, and none of them precedes it in real time;
//! - an allowed append of `v = M[L]` is forced: some remaining read is longer than `L`, so the
//!   next append of any completion must write `M[L]`, and only this operation does.
//!
//! Hence a dead end proves that no linearization exists, and for such keys the search stops
//! at the first dead end, without a cache: it never backtracks, runs in time polynomial in
//! the history (quadratic at worst, for the walks from the head), and reports the path it
//! followed as the longest linearizable prefix. If the input breaks the uniqueness guarantee
//! (two participating appends of the same value on a key), the search falls back to full
//! backtracking with the cache, which is exponential in the number of concurrent operations
//! in the worst case and is bounded by the step budget. (The test suite cross-checks both
//! modes against each other and against a brute-force oracle.)
//!
//! The explanation of a violation lists the key's operations in call order, the longest
//! linearizable prefix the search found, and the operation whose return it could not get
//! past. Long lists are abbreviated in the explanation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

mod explain;

#[cfg(test)]
use explain::fmt_list;
use explain::{dead_end_hint, explain};

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Push `value` to the end of the key's list.
    Append {
        /// The value pushed; appended by at most one operation in the whole history.
        value: u64,
    },
    /// Return the key's whole list.
    Read,
}

/// What the client observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The append was acknowledged: it took effect between its call and its return.
    Appended,
    /// The read returned this list, oldest value first.
    ReadValues(Vec<u64>),
    /// The client got no answer (timeout): the operation may or may not take effect, at any
    /// time after its call.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued the operation (used only in explanations).
    pub client: u64,
    /// The key the operation applies to.
    pub key: u64,
    /// What the operation did.
    pub kind: OpKind,
    /// When the client issued the operation.
    pub call: u64,
    /// When the client received the answer (not before `call`); `None` exactly when the
    /// outcome is unknown.
    pub ret: Option<u64>,
    /// What the client observed; [`Observed::Unknown`] exactly when `ret` is `None`.
    pub observed: Observed,
}

impl Operation {
    /// Whether the outcome of the operation is unknown (no return time or no observation).
    #[must_use]
    pub fn is_unknown(&self) -> bool {
        self.ret.is_none() || self.observed == Observed::Unknown
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// Not linearizable; `key` is the first offending key (smallest), `explanation` is a
    /// human-readable account: the operations of that key in call order (client, kind, call,
    /// ret, observed) and the longest linearizable prefix found, so an engineer can see the
    /// problem.
    NotLinearizable {
        /// The smallest key whose history is not linearizable.
        key: u64,
        /// Why: the reason, the key's operations and the longest linearizable prefix.
        explanation: String,
    },
    /// The search exceeded its budget for `key` (inconclusive; the caller reports it).
    Inconclusive {
        /// The smallest key whose search ran out of budget.
        key: u64,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`].
    #[must_use]
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks `history` (any order). `max_steps_per_key` bounds the search per key.
///
/// A step is one event examined by the search. For histories with unique append values the
/// search never backtracks, and a few steps per operation (about the number of concurrent
/// operations) suffice; a budget in the millions only matters for inputs that break the
/// uniqueness guarantee.
///
/// Keys are checked in increasing order. A violation on any key wins over a budget
/// exhaustion on a smaller key: the result is [`Verdict::NotLinearizable`] for the smallest
/// violating key if there is one, otherwise [`Verdict::Inconclusive`] for the smallest key
/// whose search ran out of budget, otherwise [`Verdict::Linearizable`].
#[must_use]
pub fn check(history: &[Operation], max_steps_per_key: u64) -> Verdict {
    check_with(history, max_steps_per_key, Strategy::Auto)
}

/// How the search treats dead ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Strategy {
    /// Stop at the first dead end when the key's append values are unique (every move is
    /// then completion-preserving, see the module documentation); backtrack otherwise.
    Auto,
    /// Always backtrack (plain Wing & Gong / Porcupine search). Used by tests to cross-check.
    #[cfg_attr(not(test), allow(dead_code))]
    Exhaustive,
}

fn check_with(history: &[Operation], max_steps_per_key: u64, strategy: Strategy) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        debug_assert_eq!(
            op.ret.is_none(),
            op.observed == Observed::Unknown,
            "ret is None exactly when the outcome is unknown: {op:?}"
        );
        debug_assert!(
            op.ret.is_none_or(|ret| ret >= op.call),
            "operation returns before its call: {op:?}"
        );
        debug_assert!(
            matches!(
                (&op.kind, &op.observed),
                (
                    OpKind::Append { .. },
                    Observed::Appended | Observed::Unknown
                ) | (OpKind::Read, Observed::ReadValues(_) | Observed::Unknown)
            ),
            "observation does not match the operation kind: {op:?}"
        );
        by_key.entry(op.key).or_default().push(op);
    }
    let mut inconclusive = None;
    for (key, mut ops) in by_key {
        ops.sort_by_key(|op| (op.call, op.ret.unwrap_or(u64::MAX), op.client));
        match check_key(&ops, max_steps_per_key, strategy) {
            KeyOutcome::Linearizable => {}
            KeyOutcome::OutOfBudget => {
                inconclusive.get_or_insert(key);
            }
            KeyOutcome::Violation(violation) => {
                return Verdict::NotLinearizable {
                    key,
                    explanation: explain(key, &ops, &violation),
                }
            }
        }
    }
    match inconclusive {
        Some(key) => Verdict::Inconclusive { key },
        None => Verdict::Linearizable,
    }
}

/// The result of checking one key.
enum KeyOutcome {
    Linearizable,
    OutOfBudget,
    Violation(Violation),
}

/// Why one key is not linearizable. Operation indices refer to the key's operations sorted
/// in call order.
enum Violation {
    /// Read `read` returned `value`, which no append of the key wrote.
    UnknownValue { read: usize, value: u64 },
    /// Read `read` returned `value` more than once.
    DuplicateValue { read: usize, value: u64 },
    /// The lists of reads `shorter` and `longer` first differ at `index`.
    Incomparable {
        shorter: usize,
        longer: usize,
        index: usize,
    },
    /// The search found no linearization.
    NoLinearization {
        /// The longest linearizable prefix found, in linearization order.
        prefix: Vec<usize>,
        /// The operation whose return the search could not get past after that prefix.
        stuck: Option<usize>,
        /// Why that operation could not take effect after the prefix.
        hint: String,
        /// The list after the prefix.
        state: Vec<u64>,
    },
}

/// The role of one of the key's operations in the check.
#[derive(Clone, Copy)]
enum Role<'a> {
    Append(u64),
    Read(&'a [u64]),
    Ignored(&'static str),
}

/// What the search needs from one participating operation.
#[derive(Clone, Copy)]
enum Step {
    /// Append this value.
    Append(u64),
    /// Read a list of this length (the list itself is the master list's prefix).
    Read(usize),
}

/// Why an unknown append that no read returned is left out of the search.
const UNOBSERVED: &str = "unknown append never observed: same as never happened";

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

fn roles<'a>(ops: &[&'a Operation]) -> Vec<Role<'a>> {
    ops.iter()
        .map(|op| match (&op.kind, &op.observed) {
            (OpKind::Read, _) if op.is_unknown() => {
                Role::Ignored("unknown read: carries no information")
            }
            (OpKind::Read, Observed::ReadValues(values)) => Role::Read(values),
            (OpKind::Read, _) => Role::Ignored("read without values (invalid input)"),
            (OpKind::Append { value }, _) => Role::Append(*value),
        })
        .collect()
}

/// Checks the operations of one key, sorted in call order.
fn check_key(ops: &[&Operation], max_steps: u64, strategy: Strategy) -> KeyOutcome {
    let mut roles = roles(ops);

    // Fast paths: every read value was appended, no read repeats a value. `last_seen` maps
    // each appended value to the last read that returned it.
    let mut last_seen: FxHashMap<u64, usize> = roles
        .iter()
        .filter_map(|role| match role {
            Role::Append(value) => Some((*value, NIL)),
            _ => None,
        })
        .collect();
    let mut reads: Vec<usize> = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let Role::Read(values) = role else { continue };
        for &value in *values {
            match last_seen.get_mut(&value) {
                None => return KeyOutcome::Violation(Violation::UnknownValue { read: i, value }),
                Some(seen) if *seen == i => {
                    return KeyOutcome::Violation(Violation::DuplicateValue { read: i, value })
                }
                Some(seen) => *seen = i,
            }
        }
        reads.push(i);
    }
    // Fast path: the read lists form a chain of prefixes. Sorted by length, it is enough to
    // compare neighbours (being a prefix is transitive).
    let read_values = |i: usize| match roles[i] {
        Role::Read(values) => values,
        _ => unreachable!("not a read"),
    };
    reads.sort_by_key(|&i| (read_values(i).len(), i));
    for pair in reads.windows(2) {
        let (shorter, longer) = (read_values(pair[0]), read_values(pair[1]));
        if let Some(index) = (0..shorter.len()).find(|&k| shorter[k] != longer[k]) {
            return KeyOutcome::Violation(Violation::Incomparable {
                shorter: pair[0],
                longer: pair[1],
                index,
            });
        }
    }
    let Some(&longest) = reads.last() else {
        // Only appends: nothing observes their order.
        return KeyOutcome::Linearizable;
    };
    let master = read_values(longest);

    // Unknown appends that no read observed can be linearized after everything else.
    let observed: FxHashSet<u64> = master.iter().copied().collect();
    for (role, op) in roles.iter_mut().zip(ops) {
        if let Role::Append(value) = *role {
            if op.is_unknown() && !observed.contains(&value) {
                *role = Role::Ignored(UNOBSERVED);
            }
        }
    }

    // With unique append values every allowed move preserves the existence of a
    // linearization, so the first dead end is final (see the module documentation).
    let mut values = FxHashSet::default();
    let unique = roles.iter().all(|role| match role {
        Role::Append(value) => values.insert(*value),
        _ => true,
    });
    let backtrack = strategy == Strategy::Exhaustive || !unique;
    search(ops, &roles, master, max_steps, backtrack)
}

/// The doubly linked list of call and return events, with dancing-links removal.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Events {
    fn new(nodes: usize) -> Self {
        Events {
            next: (0..nodes)
                .map(|n| if n + 1 < nodes { n + 1 } else { NIL })
                .collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
        }
    }

    /// Unlinks `node`, keeping its own links so that `restore` can put it back.
    fn remove(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Relinks `node`; removals must be undone in reverse order.
    fn restore(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }
}

/// A participant in the search: an operation with its events.
struct Participant {
    /// Index in the key's operations.
    op: usize,
    step: Step,
    call_node: usize,
    ret_node: Option<usize>,
}

/// Wing & Gong search with Lowe's memoization, iterative. See the module documentation.
/// Without `backtrack`, the first dead end is final and no cache is needed (no
/// configuration is ever visited twice).
fn search(
    ops: &[&Operation],
    roles: &[Role<'_>],
    master: &[u64],
    max_steps: u64,
    backtrack: bool,
) -> KeyOutcome {
    // Participants and their events, sorted by time with calls first at equal times.
    let mut participants: Vec<Participant> = Vec::new();
    let mut events: Vec<(u64, bool, usize)> = Vec::new(); // (time, is_return, participant)
    for (i, role) in roles.iter().enumerate() {
        let step = match *role {
            Role::Append(value) => Step::Append(value),
            Role::Read(values) => Step::Read(values.len()),
            Role::Ignored(_) => continue,
        };
        let p = participants.len();
        let op = ops[i];
        events.push((op.call, false, p));
        if !op.is_unknown() {
            // A return before the call is invalid input; treat it as returning at the call.
            let ret = op.ret.unwrap_or(u64::MAX).max(op.call);
            events.push((ret, true, p));
        }
        participants.push(Participant {
            op: i,
            step,
            call_node: NIL,
            ret_node: None,
        });
    }
    events.sort_unstable();
    // Node 0 is the head sentinel, node k + 1 is events[k].
    let mut node_participant = vec![NIL; events.len() + 1];
    let mut node_is_call = vec![false; events.len() + 1];
    for (k, &(_, is_return, p)) in events.iter().enumerate() {
        let node = k + 1;
        node_participant[node] = p;
        node_is_call[node] = !is_return;
        if is_return {
            participants[p].ret_node = Some(node);
        } else {
            participants[p].call_node = node;
        }
    }
    let mut list = Events::new(events.len() + 1);

    // State: the list is master[..len]. `pending_reads[l]` counts the reads of length `l`
    // not linearized yet; every remaining read has length >= len.
    let mut len = 0usize;
    let mut pending_reads = vec![0usize; master.len() + 1];
    let mut reads_remaining = 0usize;
    for participant in &participants {
        if let Step::Read(l) = participant.step {
            pending_reads[l] += 1;
            reads_remaining += 1;
        }
    }

    let words = participants.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: FxHashSet<Box<[u64]>> = FxHashSet::default();
    let mut stack: Vec<usize> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut best_stuck: Option<Option<usize>> = None;
    let mut steps = 0u64;
    let mut entry = list.next[HEAD];
    loop {
        if reads_remaining == 0 {
            // Every remaining append is unobserved: linearize them in the order of their
            // returns (which respects real time), after everything linearized so far.
            return KeyOutcome::Linearizable;
        }
        if steps >= max_steps {
            return KeyOutcome::OutOfBudget;
        }
        steps += 1;

        if entry != NIL && node_is_call[entry] {
            let p = node_participant[entry];
            let allowed = match participants[p].step {
                Step::Append(value) => pending_reads[len] == 0 && master.get(len) == Some(&value),
                Step::Read(l) => l == len,
            };
            if !allowed {
                entry = list.next[entry];
                continue;
            }
            linearized[p / 64] |= 1 << (p % 64);
            if backtrack {
                if cache.contains(&linearized[..]) {
                    linearized[p / 64] &= !(1 << (p % 64));
                    entry = list.next[entry];
                    continue;
                }
                cache.insert(linearized.clone().into_boxed_slice());
            }
            match participants[p].step {
                Step::Append(_) => len += 1,
                Step::Read(l) => {
                    pending_reads[l] -= 1;
                    reads_remaining -= 1;
                }
            }
            stack.push(p);
            list.remove(participants[p].call_node);
            if let Some(ret) = participants[p].ret_node {
                list.remove(ret);
            }
            entry = list.next[HEAD];
        } else {
            // A return event of an operation not linearized yet (or, defensively, the end of
            // the list): dead end, backtrack.
            if best_stuck.is_none() || stack.len() > best.len() {
                best.clone_from(&stack);
                best_stuck = Some((entry != NIL).then(|| participants[node_participant[entry]].op));
            }
            let popped = if backtrack { stack.pop() } else { None };
            let Some(p) = popped else {
                let prefix: Vec<usize> = best.iter().map(|&q| participants[q].op).collect();
                let state_len = best
                    .iter()
                    .filter(|&&q| matches!(participants[q].step, Step::Append(_)))
                    .count();
                let stuck = best_stuck.flatten();
                let done: HashSet<usize> = prefix.iter().copied().collect();
                let hint = stuck.map_or_else(String::new, |i| {
                    dead_end_hint(ops, roles, master, &done, state_len, i)
                });
                return KeyOutcome::Violation(Violation::NoLinearization {
                    prefix,
                    stuck,
                    hint,
                    state: master[..state_len].to_vec(),
                });
            };
            linearized[p / 64] &= !(1 << (p % 64));
            match participants[p].step {
                Step::Append(_) => len -= 1,
                Step::Read(l) => {
                    pending_reads[l] += 1;
                    reads_remaining += 1;
                }
            }
            if let Some(ret) = participants[p].ret_node {
                list.restore(ret);
            }
            list.restore(participants[p].call_node);
            entry = list.next[participants[p].call_node];
        }
    }
}

type FxHashSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;
type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A small fast hasher for values and bitsets (FxHash-style, with a final mix).
#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 10_000_000;

    fn append(client: u64, key: u64, value: u64, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            key,
            kind: OpKind::Append { value },
            call,
            ret: Some(ret),
            observed: Observed::Appended,
        }
    }

    fn append_unknown(client: u64, key: u64, value: u64, call: u64) -> Operation {
        Operation {
            client,
            key,
            kind: OpKind::Append { value },
            call,
            ret: None,
            observed: Observed::Unknown,
        }
    }

    fn read(client: u64, key: u64, values: &[u64], call: u64, ret: u64) -> Operation {
        Operation {
            client,
            key,
            kind: OpKind::Read,
            call,
            ret: Some(ret),
            observed: Observed::ReadValues(values.to_vec()),
        }
    }

    fn read_unknown(client: u64, key: u64, call: u64) -> Operation {
        Operation {
            client,
            key,
            kind: OpKind::Read,
            call,
            ret: None,
            observed: Observed::Unknown,
        }
    }

    #[track_caller]
    fn assert_linearizable(history: &[Operation]) {
        let verdict = check(history, BUDGET);
        assert_eq!(verdict, Verdict::Linearizable, "history: {history:#?}");
    }

    /// Asserts a violation on `key` and returns the explanation.
    #[track_caller]
    fn assert_violation(history: &[Operation], key: u64) -> String {
        match check(history, BUDGET) {
            Verdict::NotLinearizable {
                key: found,
                explanation,
            } => {
                assert_eq!(found, key, "wrong key; explanation:\n{explanation}");
                explanation
            }
            other => panic!("expected a violation on key {key}, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_linearizable(&[]);
    }

    #[test]
    fn sequential_appends_then_read_in_order() {
        assert_linearizable(&[
            append(1, 0, 1, 0, 10),
            append(1, 0, 2, 20, 30),
            read(2, 0, &[1, 2], 40, 50),
        ]);
    }

    #[test]
    fn sequential_read_in_wrong_order() {
        let explanation = assert_violation(
            &[
                append(1, 0, 1, 0, 10),
                append(1, 0, 2, 20, 30),
                read(2, 0, &[2, 1], 40, 50),
            ],
            0,
        );
        assert!(explanation.contains("Longest linearizable prefix found (0 operations)"));
        assert!(explanation.contains("#0 (Append(1), client 1) returned at t=10"));
    }

    #[test]
    fn stale_read_after_completed_append() {
        let explanation = assert_violation(
            &[
                append(1, 0, 1, 0, 10),
                append(1, 0, 2, 20, 30),
                read(2, 0, &[1], 40, 50),
            ],
            0,
        );
        assert!(explanation.contains("Longest linearizable prefix found (1 operations)"));
        assert!(explanation.contains("#1 (Append(2), client 1) returned at t=30"));
        assert!(explanation.contains("List after that prefix: [1]"));
    }

    #[test]
    fn lost_write() {
        assert_violation(&[append(1, 0, 1, 0, 10), read(2, 0, &[], 20, 30)], 0);
        assert_violation(
            &[
                append(1, 0, 1, 0, 10),
                read(2, 0, &[1], 20, 30),
                append(1, 0, 2, 40, 50),
                read(2, 0, &[1], 60, 70),
            ],
            0,
        );
    }

    #[test]
    fn concurrent_appends_either_order() {
        let appends = [append(1, 0, 1, 0, 10), append(2, 0, 2, 5, 15)];
        for order in [[1, 2], [2, 1]] {
            let mut history = appends.to_vec();
            history.push(read(3, 0, &order, 20, 30));
            history.push(read(4, 0, &order, 40, 50));
            assert_linearizable(&history);
        }
        // Both orders are fine, but later reads must agree on one.
        let mut history = appends.to_vec();
        history.push(read(3, 0, &[1, 2], 20, 30));
        history.push(read(4, 0, &[2, 1], 40, 50));
        let explanation = assert_violation(&history, 0);
        assert!(
            explanation.contains("disagree on the order"),
            "{explanation}"
        );
        // Even when the two reads are concurrent.
        let mut history = appends.to_vec();
        history.push(read(3, 0, &[1, 2], 20, 30));
        history.push(read(4, 0, &[2, 1], 20, 30));
        assert_violation(&history, 0);
    }

    #[test]
    fn read_concurrent_with_append_may_see_it_or_not() {
        assert_linearizable(&[append(1, 0, 1, 0, 10), read(2, 0, &[], 5, 15)]);
        assert_linearizable(&[append(1, 0, 1, 0, 10), read(2, 0, &[1], 5, 15)]);
        assert_linearizable(&[append(1, 0, 1, 5, 15), read(2, 0, &[1], 0, 10)]);
        // Two overlapping reads, one sees it, one does not.
        assert_linearizable(&[
            append(1, 0, 1, 0, 100),
            read(2, 0, &[1], 10, 30),
            read(3, 0, &[], 20, 40),
        ]);
    }

    #[test]
    fn equal_timestamps_are_concurrent() {
        // ret == call: concurrent, the read may miss the append.
        assert_linearizable(&[append(1, 0, 1, 0, 10), read(2, 0, &[], 10, 20)]);
        // The read may also see an append called exactly at its return.
        assert_linearizable(&[read(2, 0, &[1], 0, 10), append(1, 0, 1, 10, 20)]);
        // One tick later they are ordered.
        assert_violation(&[append(1, 0, 1, 0, 10), read(2, 0, &[], 11, 20)], 0);
        assert_violation(&[read(2, 0, &[1], 0, 10), append(1, 0, 1, 11, 20)], 0);
    }

    #[test]
    fn non_monotonic_reads() {
        let explanation = assert_violation(
            &[
                append(1, 0, 1, 0, 100),
                read(2, 0, &[1], 20, 30),
                read(3, 0, &[], 40, 50),
            ],
            0,
        );
        assert!(
            explanation.contains(
                "yet #1 (Read, client 2) returned at t=30 without having taken effect: it \
                 returned a list of 1 values, but the list then had 0; the next value of the \
                 list is 1 (appended by #0, called at t=0), which could only be added after the \
                 reads that returned the 0-value list, still pending: #2 (called at t=40)."
            ),
            "{explanation}"
        );
        // Same reads, overlapping: fine.
        assert_linearizable(&[
            append(1, 0, 1, 0, 100),
            read(2, 0, &[1], 20, 30),
            read(3, 0, &[], 25, 50),
        ]);
    }

    #[test]
    fn unknown_append_later_observed() {
        assert_linearizable(&[append_unknown(1, 0, 1, 0), read(2, 0, &[1], 50, 60)]);
        // It may take effect long after the client gave up on it.
        assert_linearizable(&[
            append_unknown(1, 0, 1, 0),
            read(2, 0, &[], 10, 20),
            append(1, 0, 2, 30, 40),
            read(2, 0, &[2], 50, 60),
            read(2, 0, &[2, 1], 1000, 1010),
        ]);
    }

    #[test]
    fn unknown_append_never_observed() {
        assert_linearizable(&[
            append_unknown(1, 0, 1, 0),
            read(2, 0, &[], 10, 20),
            append(3, 0, 2, 30, 40),
            read(2, 0, &[2], 50, 60),
        ]);
        assert_linearizable(&[append_unknown(1, 0, 1, 0)]);
        // The explanation of an unrelated violation says it was left out.
        let explanation = assert_violation(
            &[
                append_unknown(1, 0, 1, 0),
                append(3, 0, 2, 30, 40),
                read(2, 0, &[], 50, 60),
            ],
            0,
        );
        assert!(
            explanation.contains(
                "#0 client 1 Append(1) call=0 ret=? -> unknown (timed out)  (ignored: unknown \
                 append never observed: same as never happened)"
            ),
            "{explanation}"
        );
    }

    #[test]
    fn unknown_append_observed_before_its_call() {
        let explanation =
            assert_violation(&[read(2, 0, &[1], 10, 20), append_unknown(1, 0, 1, 50)], 0);
        assert!(explanation.contains("#0 (Read, client 2) returned at t=20"));
    }

    #[test]
    fn unknown_reads_are_ignored() {
        assert_linearizable(&[
            append(1, 0, 1, 0, 10),
            read_unknown(2, 0, 20),
            read(3, 0, &[1], 30, 40),
        ]);
    }

    #[test]
    fn read_of_value_never_appended() {
        let explanation =
            assert_violation(&[append(1, 0, 1, 0, 10), read(2, 0, &[1, 99], 20, 30)], 0);
        assert!(
            explanation.contains("returned value 99, which no append on key 0 ever wrote"),
            "{explanation}"
        );
        assert!(explanation.contains("#1 client 2 Read call=20 ret=30 -> [1, 99]"));
    }

    #[test]
    fn duplicated_value_in_read() {
        let explanation =
            assert_violation(&[append(1, 0, 1, 0, 10), read(2, 0, &[1, 1], 20, 30)], 0);
        assert!(
            explanation.contains("returned value 1 more than once"),
            "{explanation}"
        );
    }

    #[test]
    fn keys_are_independent() {
        // A value appended on key 1 and read on key 2 is a violation on key 2.
        let explanation = assert_violation(&[append(1, 1, 5, 0, 10), read(2, 2, &[5], 20, 30)], 2);
        assert!(explanation.contains("no append on key 2"));
        // Orders on different keys are unrelated.
        assert_linearizable(&[
            append(1, 1, 1, 0, 10),
            append(1, 2, 2, 20, 30),
            append(2, 2, 3, 0, 10),
            append(2, 1, 4, 20, 30),
            read(3, 1, &[1, 4], 40, 50),
            read(3, 2, &[3, 2], 40, 50),
        ]);
    }

    #[test]
    fn anomaly_on_one_key_reports_that_key() {
        let mut history = vec![
            append(1, 3, 1, 0, 10),
            read(1, 3, &[1], 20, 30),
            append(2, 7, 2, 0, 10),
            read(2, 7, &[], 20, 30), // lost write on key 7
            append(3, 9, 3, 0, 10),
            read(3, 9, &[3], 20, 30),
        ];
        let explanation = assert_violation(&history, 7);
        assert!(explanation.starts_with("key 7:"));
        assert!(!explanation.contains("Append(1)"), "{explanation}");
        // With a second anomaly on a smaller key, that key is reported.
        history.push(read(4, 3, &[], 40, 50));
        assert_violation(&history, 3);
    }

    #[test]
    fn violation_wins_over_inconclusive() {
        // Key 1 needs more than 5 steps, key 2 (a plain lost write) needs 2.
        let mut history = pathological(1, 14, false);
        assert_eq!(check(&history, 5), Verdict::Inconclusive { key: 1 });
        history.push(append(1, 2, 1000, 0, 10));
        history.push(read(2, 2, &[], 20, 30));
        let verdict = check(&history, 5);
        assert!(
            matches!(verdict, Verdict::NotLinearizable { key: 2, .. }),
            "{verdict:?}"
        );
    }

    /// `n` reads of `[]` concurrent with an append of 1 and with each other, then a stale read
    /// of `[]` after the append returned. Not linearizable; a backtracking search explores all
    /// 2^n subsets of the concurrent reads before concluding. With `duplicate`, value 1 is
    /// appended twice, which disables the first-dead-end cut.
    fn pathological(key: u64, n: u64, duplicate: bool) -> Vec<Operation> {
        let mut history = vec![append(0, key, 1, 0, 10)];
        if duplicate {
            history.push(append(0, key, 1, 0, 10));
        }
        for client in 1..=n {
            history.push(read(client, key, &[], 0, 100));
        }
        history.push(read(n + 1, key, &[], 20, 30));
        history
    }

    #[test]
    fn budget() {
        let history = pathological(0, 16, false);
        assert_eq!(check(&history, 0), Verdict::Inconclusive { key: 0 });
        assert_eq!(check(&history, 5), Verdict::Inconclusive { key: 0 });
        let start = std::time::Instant::now();
        let explanation = assert_violation(&history, 0);
        eprintln!(
            "pathological history (16 concurrent reads), first-dead-end search: {:?}",
            start.elapsed()
        );
        assert!(explanation.contains("Longest linearizable prefix found (16 operations)"));
        // The first dead end is conclusive: a few dozen steps suffice.
        assert!(matches!(
            check(&history, 100),
            Verdict::NotLinearizable { key: 0, .. }
        ));

        // The exhaustive search needs its cache to finish (16! orders without it).
        assert_eq!(
            check_with(&history, 1000, Strategy::Exhaustive),
            Verdict::Inconclusive { key: 0 }
        );
        let start = std::time::Instant::now();
        let verdict = check_with(&history, BUDGET, Strategy::Exhaustive);
        eprintln!(
            "pathological history (16 concurrent reads), exhaustive search: {:?}",
            start.elapsed()
        );
        assert!(matches!(verdict, Verdict::NotLinearizable { key: 0, .. }));
    }

    #[test]
    fn duplicate_append_values_fall_back_to_backtracking() {
        let history = pathological(0, 12, true);
        assert_eq!(check(&history, 1000), Verdict::Inconclusive { key: 0 });
        assert_violation(&history, 0);
        // A duplicate value that is observed once is fine if the other copy is unknown.
        assert_linearizable(&[
            append(1, 0, 1, 0, 10),
            append_unknown(2, 0, 1, 0),
            read(3, 0, &[1], 20, 30),
        ]);
        // Here only backtracking finds the linearization: the search first lets the long
        // append of 1 take effect, which dead-ends at the return of the short one; the
        // linearization is: short append, read, long append (whose 1 nobody reads).
        assert_linearizable(&[
            append(1, 0, 1, 0, 100),
            append(2, 0, 1, 1, 10),
            read(3, 0, &[1], 20, 30),
        ]);
    }

    #[test]
    fn event_list_restores_in_reverse_order() {
        let mut list = Events::new(6);
        let order = |list: &Events| {
            let mut nodes = Vec::new();
            let mut node = list.next[HEAD];
            while node != NIL {
                nodes.push(node);
                node = list.next[node];
            }
            nodes
        };
        // An adjacent pair, then a pair around it, then the tail.
        list.remove(2);
        list.remove(3);
        assert_eq!(order(&list), [1, 4, 5]);
        list.remove(1);
        list.remove(4);
        assert_eq!(order(&list), [5]);
        list.remove(5);
        assert_eq!(order(&list), Vec::<usize>::new());
        list.restore(5);
        list.restore(4);
        list.restore(1);
        assert_eq!(order(&list), [1, 4, 5]);
        list.restore(3);
        list.restore(2);
        assert_eq!(order(&list), [1, 2, 3, 4, 5]);
        let back: Vec<usize> = (1..6).map(|n| list.prev[n]).collect();
        assert_eq!(back, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn deep_sequential_history() {
        // Deep enough that a recursive search would be at risk.
        let n = 10_000u64;
        let mut history: Vec<Operation> = (0..n)
            .map(|i| append(i % 3, 0, i, 10 * i, 10 * i + 5))
            .collect();
        let all: Vec<u64> = (0..n).collect();
        history.push(read(9, 0, &all, 10 * n, 10 * n + 5));
        let start = std::time::Instant::now();
        assert_linearizable(&history);
        eprintln!(
            "deep sequential history ({n} appends): {:?}",
            start.elapsed()
        );
        let last = history.len() - 1;
        history[last] = read(9, 0, &all[..all.len() - 1], 10 * n, 10 * n + 5);
        assert_violation(&history, 0);
    }

    // ---- randomized tests ----

    /// xorshift64* with fixed seeds.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    struct GenParams {
        clients: u64,
        ops_per_client: u64,
        keys: u64,
        unknown_percent: u64,
        max_gap: u64,
        max_duration: u64,
    }

    /// Generates a linearizable history: every operation gets a linearization point inside its
    /// interval (unknown ones anywhere after their call, or never) and reads return the state
    /// of a sequential simulation at that point. The result is shuffled.
    fn generate(seed: u64, params: &GenParams) -> Vec<Operation> {
        let mut rng = Rng::new(seed);
        let mut next_value = 1;
        let mut history = Vec::new();
        let mut points = Vec::new(); // (linearization point, index) of ops that take effect
        for client in 0..params.clients {
            let mut t = rng.below(params.max_gap + 1);
            for _ in 0..params.ops_per_client {
                let call = t + rng.below(params.max_gap + 1);
                let ret = call + rng.below(params.max_duration + 1);
                t = ret;
                let key = rng.below(params.keys);
                let kind = if rng.chance(50) {
                    next_value += 1;
                    OpKind::Append { value: next_value }
                } else {
                    OpKind::Read
                };
                let unknown = rng.chance(params.unknown_percent);
                let point = if !unknown {
                    Some(call + rng.below(ret - call + 1))
                } else if rng.chance(50) {
                    Some(call + rng.below(4 * params.max_duration + 1))
                } else {
                    None
                };
                if let Some(point) = point {
                    points.push((point, history.len()));
                }
                history.push(Operation {
                    client,
                    key,
                    kind,
                    call,
                    ret: (!unknown).then_some(ret),
                    observed: if unknown {
                        Observed::Unknown
                    } else {
                        Observed::Appended
                    },
                });
            }
        }
        points.sort_unstable();
        let mut lists: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (_, i) in points {
            let op = &mut history[i];
            let list = lists.entry(op.key).or_default();
            match op.kind {
                OpKind::Append { value } => list.push(value),
                OpKind::Read if op.observed != Observed::Unknown => {
                    op.observed = Observed::ReadValues(list.clone());
                }
                OpKind::Read => {}
            }
        }
        for i in (1..history.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            history.swap(i, j);
        }
        history
    }

    /// Drops the last value of a read that is strictly after the return of that value's
    /// append; returns the corrupted read's key.
    fn corrupt(history: &mut [Operation]) -> Option<u64> {
        let append_ret: BTreeMap<u64, Option<u64>> = history
            .iter()
            .filter_map(|op| match op.kind {
                OpKind::Append { value } => Some((value, op.ret)),
                OpKind::Read => None,
            })
            .collect();
        let victim = history.iter().position(|op| match &op.observed {
            Observed::ReadValues(values) => values
                .last()
                .and_then(|last| append_ret[last])
                .is_some_and(|ret| ret < op.call),
            _ => false,
        })?;
        let Observed::ReadValues(values) = &mut history[victim].observed else {
            unreachable!()
        };
        values.pop();
        Some(history[victim].key)
    }

    #[test]
    fn randomized_histories() {
        let params = GenParams {
            clients: 6,
            ops_per_client: 50,
            keys: 3,
            unknown_percent: 10,
            max_gap: 10,
            max_duration: 30,
        };
        let mut corrupted = 0;
        for seed in 1..=20 {
            let mut history = generate(seed, &params);
            let start = std::time::Instant::now();
            let verdict = check(&history, BUDGET);
            let elapsed = start.elapsed();
            assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");
            assert_eq!(
                check_with(&history, BUDGET, Strategy::Exhaustive),
                Verdict::Linearizable,
                "seed {seed}"
            );
            eprintln!(
                "seed {seed}: {} ops, linearizable, checked in {elapsed:?}",
                history.len()
            );
            if let Some(key) = corrupt(&mut history) {
                assert_refuted(seed, &history, key);
                corrupted += 1;
            }
        }
        assert!(
            corrupted >= 15,
            "only {corrupted} histories could be corrupted"
        );
    }

    #[test]
    fn randomized_single_key_high_concurrency() {
        // 10 clients on one key, each op overlapping about 10 others.
        let params = GenParams {
            clients: 10,
            ops_per_client: 50,
            keys: 1,
            unknown_percent: 10,
            max_gap: 5,
            max_duration: 60,
        };
        for seed in 100..110 {
            let mut history = generate(seed, &params);
            let start = std::time::Instant::now();
            let verdict = check(&history, BUDGET);
            let elapsed = start.elapsed();
            assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");
            let key = corrupt(&mut history).unwrap_or_else(|| panic!("seed {seed}: no victim"));
            let refuted = assert_refuted(seed, &history, key);
            eprintln!(
                "seed {seed}: {} ops on one key: linearizable in {elapsed:?}, corrupted refuted \
                 in {refuted:?}",
                history.len()
            );
        }
    }

    /// Asserts that both strategies find a violation on `key`; returns the time `check` took.
    #[track_caller]
    fn assert_refuted(seed: u64, history: &[Operation], key: u64) -> std::time::Duration {
        let start = std::time::Instant::now();
        let verdict = check(history, BUDGET);
        let elapsed = start.elapsed();
        assert!(
            matches!(verdict, Verdict::NotLinearizable { key: found, .. } if found == key),
            "seed {seed}: corrupted history gave {verdict:?}"
        );
        let verdict = check_with(history, BUDGET, Strategy::Exhaustive);
        assert!(
            matches!(verdict, Verdict::NotLinearizable { key: found, .. } if found == key),
            "seed {seed}: exhaustive search on the corrupted history gave {verdict:?}"
        );
        elapsed
    }

    /// An independent oracle: tries every order of every operation (unknown reads dropped,
    /// unknown appends returning at +infinity), pruning only on real time and semantics.
    fn brute_force(history: &[Operation]) -> bool {
        fn dfs(ops: &[&Operation], used: &mut [bool], list: &mut Vec<u64>) -> bool {
            if used.iter().all(|&u| u) {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                let blocked = (0..ops.len())
                    .any(|j| j != i && !used[j] && ops[j].ret.is_some_and(|ret| ret < ops[i].call));
                if blocked {
                    continue;
                }
                used[i] = true;
                let ok = match (&ops[i].kind, &ops[i].observed) {
                    (OpKind::Append { value }, _) => {
                        list.push(*value);
                        let ok = dfs(ops, used, list);
                        list.pop();
                        ok
                    }
                    (OpKind::Read, Observed::ReadValues(values)) => {
                        values == list && dfs(ops, used, list)
                    }
                    _ => unreachable!(),
                };
                used[i] = false;
                if ok {
                    return true;
                }
            }
            false
        }
        let mut by_key: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
        for op in history {
            if !(op.kind == OpKind::Read && op.is_unknown()) {
                by_key.entry(op.key).or_default().push(op);
            }
        }
        by_key
            .values()
            .all(|ops| dfs(ops, &mut vec![false; ops.len()], &mut Vec::new()))
    }

    /// Mutates a history so that it is often, but not always, non-linearizable.
    fn mutate(rng: &mut Rng, history: &mut [Operation]) {
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].observed, Observed::ReadValues(_)))
            .collect();
        if reads.is_empty() || rng.chance(30) {
            // Shift an interval instead.
            let i = rng.below(history.len() as u64) as usize;
            let op = &mut history[i];
            let shift = rng.below(20);
            op.call += shift;
            if let Some(ret) = &mut op.ret {
                *ret = (*ret + rng.below(20)).max(op.call);
            }
            return;
        }
        let victim = reads[rng.below(reads.len() as u64) as usize];
        let other = reads[rng.below(reads.len() as u64) as usize];
        let other_values = match &history[other].observed {
            Observed::ReadValues(values) => values.clone(),
            _ => unreachable!(),
        };
        let Observed::ReadValues(values) = &mut history[victim].observed else {
            unreachable!()
        };
        match rng.below(5) {
            0 => {
                values.pop();
            }
            1 if values.len() >= 2 => {
                let a = rng.below(values.len() as u64) as usize;
                let b = rng.below(values.len() as u64) as usize;
                values.swap(a, b);
            }
            2 => values.push(1 + rng.below(12)),
            3 => *values = other_values,
            _ => {
                if !values.is_empty() {
                    values.remove(rng.below(values.len() as u64) as usize);
                }
            }
        }
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let params = GenParams {
            clients: 3,
            ops_per_client: 3,
            keys: 1,
            unknown_percent: 20,
            max_gap: 8,
            max_duration: 15,
        };
        let mut outcomes = [0u32; 2];
        for seed in 0..3000 {
            let mut rng = Rng::new(seed ^ 0xdead_beef);
            let mut history = generate(seed, &params);
            if rng.chance(70) {
                mutate(&mut rng, &mut history);
            }
            let expected = brute_force(&history);
            for strategy in [Strategy::Auto, Strategy::Exhaustive] {
                let verdict = check_with(&history, BUDGET, strategy);
                assert!(
                    !matches!(verdict, Verdict::Inconclusive { .. }),
                    "seed {seed}"
                );
                assert_eq!(
                    verdict.is_linearizable(),
                    expected,
                    "seed {seed}, {strategy:?}: checker says {verdict:?}, brute force says \
                     {expected}; history: {history:#?}"
                );
            }
            outcomes[usize::from(expected)] += 1;
        }
        eprintln!(
            "brute force cross-check: {} linearizable, {} not",
            outcomes[1], outcomes[0]
        );
        assert!(outcomes[0] > 300 && outcomes[1] > 300, "{outcomes:?}");
    }

    #[test]
    fn explanation_lists_operations_and_prefix() {
        let explanation = assert_violation(
            &[
                read(2, 4, &[1], 40, 50),
                append(1, 4, 1, 0, 10),
                append(1, 4, 2, 20, 30),
                read_unknown(3, 4, 5),
            ],
            4,
        );
        let expected = "\
key 4: history is not linearizable.
Reason: no linearization exists. After the longest linearizable prefix below, no pending \
operation can take effect next, yet #2 (Append(2), client 1) returned at t=30 without having \
taken effect: no read returned 2, so it could only take effect after every remaining read.
Operations on key 4 in call order (4):
  #0 client 1 Append(1) call=0 ret=10 -> ok
  #1 client 3 Read call=5 ret=? -> unknown (timed out)  (ignored: unknown read: carries no information)
  #2 client 1 Append(2) call=20 ret=30 -> ok
  #3 client 2 Read call=40 ret=50 -> [1]
Longest linearizable prefix found (1 operations):
  #0 Append(1) -> list now has 1 values
List after that prefix: [1]
";
        assert_eq!(explanation, expected);
    }

    #[test]
    fn long_lists_are_abbreviated() {
        let values: Vec<u64> = (1..=30).collect();
        assert_eq!(
            fmt_list(&values),
            "[1, 2, 3, 4, ... 30 values in all ..., 23, 24, 25, 26, 27, 28, 29, 30]"
        );
        assert_eq!(fmt_list(&[1, 2]), "[1, 2]");
    }
}
