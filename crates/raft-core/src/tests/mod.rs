//! Tests of whole groups of nodes over an in-memory network that the test controls message by
//! message.

mod amnesia;
mod defences;
mod interaction;
mod membership;
mod paper;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::{
    ConfState, Config, Entry, EntryKind, HardState, Index, LogWriter, MemStorage, Message, NodeId,
    RawNode, ReadState, Role, Snapshot, Term,
};

/// A Ready as the test saw it (for checks on ordering and durability).
#[derive(Clone, Debug)]
pub struct SeenReady {
    pub hard_state: Option<HardState>,
    pub must_sync: bool,
    pub early_messages: Vec<Message>,
    pub messages: Vec<Message>,
}

/// Nodes plus the messages travelling between them.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, RawNode<MemStorage>>,
    /// Messages sent and not yet delivered, in send order.
    pub in_flight: Vec<Message>,
    /// What each node's state machine received.
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Read states each node produced.
    pub reads: BTreeMap<NodeId, Vec<ReadState>>,
    /// Every Ready each node produced.
    pub readies: BTreeMap<NodeId, Vec<SeenReady>>,
    /// Nodes whose messages (both ways) are dropped.
    pub isolated: BTreeSet<NodeId>,
}

pub fn config(id: NodeId) -> Config {
    Config {
        election_timeout_min_ticks: 10,
        election_timeout_max_ticks: 20,
        heartbeat_interval_ticks: 1,
        max_clock_drift_ticks: 1,
        ..Config::new(id)
    }
}

impl Cluster {
    /// `n` fresh nodes with ids 1..=n; `tweak` adjusts every config.
    pub fn new(n: u64, tweak: impl Fn(&mut Config)) -> Self {
        let logs: Vec<(Vec<Term>, HardState)> = (1..=n)
            .map(|_| (Vec::new(), HardState::default()))
            .collect();
        Cluster::with_logs(&logs, tweak)
    }

    /// Nodes 1..=n whose stored logs have the given terms (entry i+1 has `terms[i]`) and
    /// hard states.
    pub fn with_logs(logs: &[(Vec<Term>, HardState)], tweak: impl Fn(&mut Config)) -> Self {
        let ids: Vec<NodeId> = (1..=logs.len() as u64).collect();
        let conf = ConfState::with_voters(ids.iter().copied());
        let mut nodes = BTreeMap::new();
        for (id, (terms, hs)) in ids.iter().zip(logs) {
            let mut storage = MemStorage::new(conf.clone());
            let entries: Vec<Entry> = terms
                .iter()
                .enumerate()
                .map(|(i, &t)| entry(i as u64 + 1, t, b""))
                .collect();
            storage.persist(Some(hs), &entries, true).unwrap();
            let mut cfg = config(*id);
            tweak(&mut cfg);
            nodes.insert(*id, RawNode::new(cfg, storage, 0).unwrap());
        }
        Cluster {
            applied: ids.iter().map(|&id| (id, Vec::new())).collect(),
            reads: ids.iter().map(|&id| (id, Vec::new())).collect(),
            readies: ids.iter().map(|&id| (id, Vec::new())).collect(),
            nodes,
            in_flight: Vec::new(),
            isolated: BTreeSet::new(),
        }
    }

    /// Starts a brand-new node `id` on an empty store that knows no configuration: it waits
    /// for a leader to add it.
    pub fn add_node(&mut self, id: NodeId, tweak: impl Fn(&mut Config)) {
        let mut cfg = config(id);
        tweak(&mut cfg);
        let storage = MemStorage::new(ConfState::default());
        self.nodes
            .insert(id, RawNode::new(cfg, storage, 0).unwrap());
        self.applied.insert(id, Vec::new());
        self.reads.insert(id, Vec::new());
        self.readies.insert(id, Vec::new());
    }

    /// The membership in force on `id`.
    pub fn conf(&self, id: NodeId) -> ConfState {
        self.nodes[&id].status().conf
    }

    /// `id` proposes `changes` and everything is delivered.
    pub fn change(&mut self, id: NodeId, changes: &[crate::MemberChange]) -> crate::Result<()> {
        self.node(id).propose_membership(changes, Bytes::new())?;
        self.flush(id);
        self.settle();
        Ok(())
    }

    pub fn node(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn role(&self, id: NodeId) -> Role {
        self.nodes[&id].status().role
    }

    pub fn term(&self, id: NodeId) -> Term {
        self.nodes[&id].status().term
    }

    pub fn commit(&self, id: NodeId) -> u64 {
        self.nodes[&id].status().commit_index
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.status().role == Role::Leader)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Crashes and restarts `id` from what it persisted (the harness persists everything);
    /// its state machine keeps what it applied.
    pub fn restart(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let storage = node.store().clone();
        let config = node.config().clone();
        let applied = self.applied[&id].last().map_or(0, |e| e.index);
        self.in_flight.retain(|m| m.from != id && m.to != id);
        self.nodes
            .insert(id, RawNode::new(config, storage, applied).unwrap());
    }

    /// `id` loses its disk and starts again from an empty store holding only `hard_state`
    /// (what [`crate::bootstrap::decide`] told it to write); its state machine is gone too.
    pub fn lose_disk(&mut self, id: NodeId, hard_state: HardState) {
        let node = &self.nodes[&id];
        let config = node.config().clone();
        let mut storage = MemStorage::new(node.status().conf);
        storage.persist(Some(&hard_state), &[], true).unwrap();
        self.in_flight.retain(|m| m.from != id && m.to != id);
        self.applied.insert(id, Vec::new());
        self.nodes
            .insert(id, RawNode::new(config, storage, 0).unwrap());
    }

    /// Processes every pending Ready of `id`: persist, queue messages, apply, advance.
    pub fn flush(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        while node.has_ready() {
            let ready = node.ready().unwrap();
            if let Some(snapshot) = &ready.snapshot {
                node.store_mut().apply_snapshot(snapshot).unwrap();
            }
            node.store_mut()
                .persist(ready.hard_state.as_ref(), &ready.entries, ready.must_sync)
                .unwrap();
            if let Some(snapshot) = &ready.snapshot {
                // The test's state machine is the list of entries applied: restore it.
                self.applied.insert(id, decode_machine(&snapshot.data));
            }
            self.readies.get_mut(&id).unwrap().push(SeenReady {
                hard_state: ready.hard_state,
                must_sync: ready.must_sync,
                early_messages: ready.early_messages.clone(),
                messages: ready.messages.clone(),
            });
            for m in ready.early_messages.into_iter().chain(ready.messages) {
                if !self.isolated.contains(&m.from) && !self.isolated.contains(&m.to) {
                    self.in_flight.push(m);
                }
            }
            self.applied
                .get_mut(&id)
                .unwrap()
                .extend(ready.committed_entries);
            self.reads.get_mut(&id).unwrap().extend(ready.read_states);
            node.advance().unwrap();
        }
    }

    pub fn flush_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.flush(id);
        }
    }

    /// Delivers (in order) every in-flight message matching `pred`, then flushes the
    /// recipients. Returns how many were delivered.
    pub fn deliver(&mut self, pred: impl Fn(&Message) -> bool) -> usize {
        self.flush_all();
        let (matching, rest): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(&pred);
        self.in_flight = rest;
        let count = matching.len();
        for m in matching {
            if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
                continue;
            }
            let to = m.to;
            let Some(node) = self.nodes.get_mut(&to) else {
                continue; // a node that was never started, or was shut down
            };
            node.step(m).unwrap();
            self.flush(to);
        }
        count
    }

    /// Drops every in-flight message matching `pred`.
    pub fn drop_where(&mut self, pred: impl Fn(&Message) -> bool) {
        self.flush_all();
        self.in_flight.retain(|m| !pred(m));
    }

    /// Delivers everything until no message is left.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.deliver(|_| true) == 0 {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    pub fn tick(&mut self, id: NodeId) {
        self.node(id).tick().unwrap();
        self.flush(id);
    }

    /// Ticks every node once and delivers everything.
    pub fn tick_all_and_settle(&mut self, times: u32) {
        for _ in 0..times {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.tick(id);
            }
            self.settle();
        }
    }

    /// Makes `id` campaign and delivers everything: it must win.
    pub fn elect(&mut self, id: NodeId) {
        self.node(id).campaign().unwrap();
        self.settle();
        assert_eq!(self.role(id), Role::Leader, "node {id} failed to win");
    }

    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> crate::Proposal {
        let p = self.node(id).propose(Bytes::copy_from_slice(data)).unwrap();
        self.flush(id);
        p
    }

    pub fn isolate(&mut self, id: NodeId) {
        self.isolated.insert(id);
        self.in_flight.retain(|m| m.from != id && m.to != id);
    }

    pub fn heal(&mut self) {
        self.isolated.clear();
    }

    /// The terms of `id`'s whole log.
    pub fn log_terms(&self, id: NodeId) -> Vec<Term> {
        let node = &self.nodes[&id];
        let last = node.status().last_log_index;
        node.log_entries(1, last + 1)
            .unwrap()
            .iter()
            .map(|e| e.term)
            .collect()
    }

    /// `id` snapshots its state machine at `index` and compacts its log up to there.
    pub fn compact(&mut self, id: NodeId, index: Index) -> crate::Result<()> {
        let node = self.nodes.get_mut(&id).unwrap();
        let meta = node.snapshot_meta(index)?;
        let applied: Vec<Entry> = self.applied[&id]
            .iter()
            .filter(|e| e.index <= index)
            .cloned()
            .collect();
        let snapshot = Snapshot {
            meta,
            data: encode_machine(&applied),
        };
        node.store_mut().compact(&snapshot, index)?;
        Ok(())
    }

    /// The data of the commands `id` applied.
    pub fn applied_data(&self, id: NodeId) -> Vec<Bytes> {
        self.applied[&id]
            .iter()
            .filter(|e| e.kind == crate::EntryKind::Command)
            .map(|e| e.data.clone())
            .collect()
    }
}

pub fn entry(index: u64, term: Term, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        sequence: index,
        kind: crate::EntryKind::Command,
        data: Bytes::copy_from_slice(data),
    }
}

pub fn hs(term: Term) -> HardState {
    HardState {
        term,
        vote: None,
        commit: 0,
        rejoining: None,
    }
}

/// The test machine's image: every applied entry, as (index, term, kind, length, data).
pub fn encode_machine(applied: &[Entry]) -> Bytes {
    let mut out = Vec::new();
    for e in applied {
        out.extend_from_slice(&e.index.to_be_bytes());
        out.extend_from_slice(&e.term.to_be_bytes());
        out.push(u8::from(e.kind == EntryKind::Command));
        out.extend_from_slice(&(e.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.data);
    }
    Bytes::from(out)
}

/// The inverse of [`encode_machine`].
pub fn decode_machine(mut data: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let u64_at = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    while !data.is_empty() {
        let index = u64_at(data, 0);
        let term = u64_at(data, 8);
        let kind = if data[16] == 1 {
            EntryKind::Command
        } else {
            EntryKind::Noop
        };
        let len = u32::from_be_bytes(data[17..21].try_into().unwrap()) as usize;
        out.push(Entry {
            index,
            term,
            sequence: index,
            kind,
            data: Bytes::copy_from_slice(&data[21..21 + len]),
        });
        data = &data[21 + len..];
    }
    out
}
