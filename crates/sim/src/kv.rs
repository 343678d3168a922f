//! The replicated state machine the simulator runs: per-key append-only lists of values, with
//! idempotency keys and the fencing-token check at apply.
//!
//! It is a stand-in for the payments state machine (which replaces it when it lands): it has
//! the properties the invariants need to observe (exactly-once appends under retries, reads
//! whose results can be checked for linearizability, tokens checked at apply).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quorate_raft_core::{Entry, EntryKind, FencingToken, Index};

use crate::trace::TraceHash;

/// Append `value` to `key`'s list, once per `op_id` (the idempotency key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// The client that asked.
    pub client: u64,
    /// Unique per logical operation; retries reuse it.
    pub op_id: u64,
    /// Which list.
    pub key: u64,
    /// What to append (unique per operation).
    pub value: u64,
}

impl Command {
    /// The wire form carried in a log entry.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(32);
        buf.put_u64(self.client);
        buf.put_u64(self.op_id);
        buf.put_u64(self.key);
        buf.put_u64(self.value);
        buf.freeze()
    }

    /// Parses [`Command::encode`]'s output.
    pub fn decode(mut data: &[u8]) -> Option<Command> {
        if data.len() != 32 {
            return None;
        }
        Some(Command {
            client: data.get_u64(),
            op_id: data.get_u64(),
            key: data.get_u64(),
            value: data.get_u64(),
        })
    }
}

/// What applying an entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A no-op entry.
    Noop,
    /// The value was appended.
    Appended,
    /// The operation had been applied before (a retry): nothing changed.
    Replayed,
    /// The entry's fencing token did not increase: rejected, nothing changed.
    StaleToken {
        /// The last token applied.
        last: FencingToken,
    },
    /// The entry could not be decoded.
    Malformed,
}

/// Per-key lists plus the idempotency table.
#[derive(Clone, Debug, Default)]
pub struct KvStateMachine {
    lists: BTreeMap<u64, Vec<u64>>,
    /// op_id → applied already.
    seen: BTreeMap<u64, ()>,
    /// The last applied index.
    pub applied_index: Index,
    /// The token of the last applied entry.
    pub last_token: Option<FencingToken>,
    /// Entries rejected by the fencing check.
    pub stale_tokens: u64,
}

impl KvStateMachine {
    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) -> Applied {
        self.applied_index = entry.index;
        let token = entry.token();
        if let Some(last) = self.last_token {
            if token <= last {
                self.stale_tokens += 1;
                return Applied::StaleToken { last };
            }
        }
        self.last_token = Some(token);
        if entry.kind == EntryKind::Noop {
            return Applied::Noop;
        }
        let Some(command) = Command::decode(&entry.data) else {
            return Applied::Malformed;
        };
        if self.seen.insert(command.op_id, ()).is_some() {
            return Applied::Replayed;
        }
        self.lists
            .entry(command.key)
            .or_default()
            .push(command.value);
        Applied::Appended
    }

    /// The list of `key`.
    pub fn read(&self, key: u64) -> Vec<u64> {
        self.lists.get(&key).cloned().unwrap_or_default()
    }

    /// A fingerprint of the whole state, to compare replicas.
    pub fn fingerprint(&self) -> u64 {
        let mut h = TraceHash::default();
        for (key, values) in &self.lists {
            h.u64(*key);
            h.u64(values.len() as u64);
            for v in values {
                h.u64(*v);
            }
        }
        h.finish()
    }

    /// Every list, for exactly-once checks.
    pub fn lists(&self) -> &BTreeMap<u64, Vec<u64>> {
        &self.lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_entry(index: Index, term: u64, sequence: u64, op_id: u64) -> Entry {
        let command = Command {
            client: 1,
            op_id,
            key: 7,
            value: op_id * 10,
        };
        Entry {
            index,
            term,
            sequence,
            kind: EntryKind::Command,
            data: command.encode(),
        }
    }

    #[test]
    fn retries_with_the_same_op_id_apply_once() {
        let mut sm = KvStateMachine::default();
        assert_eq!(sm.apply(&command_entry(1, 1, 1, 5)), Applied::Appended);
        assert_eq!(sm.apply(&command_entry(2, 2, 1, 5)), Applied::Replayed);
        assert_eq!(sm.apply(&command_entry(3, 2, 2, 6)), Applied::Appended);
        assert_eq!(sm.read(7), vec![50, 60]);
    }

    #[test]
    fn a_token_that_does_not_increase_is_rejected() {
        let mut sm = KvStateMachine::default();
        assert_eq!(sm.apply(&command_entry(1, 3, 4, 1)), Applied::Appended);
        let stale = command_entry(2, 3, 4, 2); // same token
        assert!(matches!(sm.apply(&stale), Applied::StaleToken { .. }));
        let older_term = command_entry(3, 2, 9, 3);
        assert!(matches!(sm.apply(&older_term), Applied::StaleToken { .. }));
        assert_eq!(sm.read(7), vec![10], "rejected entries change nothing");
        assert_eq!(sm.stale_tokens, 2);
    }
}
