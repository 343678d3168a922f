//! The `exactly-once` invariant: per idempotency key, at most one event is ever recorded,
//! however often, through however many leaders, the request was retried.
//!
//! Checked on every node's applied outputs, as they happen, and on every node's stored state
//! at the end of the run:
//!
//! - an entry answered with a new event (`EventRecorded`, not replayed) must have written
//!   exactly one event, and its key must not have been recorded at any other index, on any
//!   node (a replica replaying its log after a restart records it at the same index again);
//! - a replayed answer must write nothing and name the event its key first recorded (so a
//!   key must have recorded one);
//! - any other output must write no event;
//! - in each node's store, no two events carry the same key.
//!
//! The simulator's idempotency window (a day) outlasts every run, so no key may legitimately
//! be recorded twice.

use std::collections::BTreeMap;

use quorate_payments::machine::{Applied, Store};
use quorate_raft_core::{Entry, Index, NodeId};

/// The index at which each idempotency key recorded its event.
#[derive(Debug, Default)]
pub struct ExactlyOnce {
    recorded: BTreeMap<String, Index>,
}

impl ExactlyOnce {
    /// `node` applied `entry` with `output`, which added `events_written` events to its store.
    /// An error explains the violation.
    pub fn on_apply(
        &mut self,
        node: NodeId,
        entry: &Entry,
        output: &Applied,
        events_written: usize,
    ) -> Result<(), String> {
        let index = entry.index;
        let Applied::EventRecorded(out) = output else {
            if events_written != 0 {
                return Err(format!(
                    "node {node} applied index {index} with outcome {output:?} but wrote \
                     {events_written} events"
                ));
            }
            return Ok(());
        };
        let key = &out.event.idempotency_key;
        let first = self.recorded.get(key).copied();
        if out.replayed {
            if events_written != 0 {
                return Err(format!(
                    "node {node} replayed key {key:?} at index {index} but wrote \
                     {events_written} events"
                ));
            }
            return match first {
                Some(first) if first == out.event.index => Ok(()),
                Some(first) => Err(format!(
                    "node {node} replayed key {key:?} at index {index} as the event of index \
                     {}, but the key recorded its event at index {first}",
                    out.event.index
                )),
                None => Err(format!(
                    "node {node} replayed key {key:?} at index {index}, but no event was ever \
                     recorded for it"
                )),
            };
        }
        if events_written != 1 {
            return Err(format!(
                "node {node} recorded an event for key {key:?} at index {index} but wrote \
                 {events_written} events"
            ));
        }
        match first {
            Some(first) if first != index => Err(format!(
                "node {node} recorded an event for key {key:?} at index {index}; the key \
                 already recorded one at index {first}: a retry took effect twice"
            )),
            Some(_) => Ok(()),
            None => {
                self.recorded.insert(key.clone(), index);
                Ok(())
            }
        }
    }

    /// At most one event per key in `node`'s `store`.
    pub fn check_store(node: NodeId, store: &impl Store) -> Result<(), String> {
        let events = store
            .events_after(0, usize::MAX)
            .map_err(|e| format!("node {node}: cannot read its events: {e}"))?;
        let mut by_key: BTreeMap<&str, Index> = BTreeMap::new();
        for event in &events {
            if let Some(first) = by_key.insert(&event.idempotency_key, event.index) {
                return Err(format!(
                    "node {node} stores two events for key {:?}, at indexes {first} and {}",
                    event.idempotency_key, event.index
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_payments::machine::{EventRecord, EventRecorded, MemStore, SubmitRejected};
    use quorate_raft_core::EntryKind;

    fn entry(index: Index) -> Entry {
        Entry {
            index,
            term: 1,
            sequence: index,
            kind: EntryKind::Command,
            data: Default::default(),
        }
    }

    fn event(index: Index, key: &str) -> EventRecord {
        EventRecord {
            index,
            idempotency_key: key.into(),
            ..EventRecord::default()
        }
    }

    fn recorded(index: Index, key: &str, replayed: bool) -> Applied {
        Applied::EventRecorded(EventRecorded {
            event: event(index, key),
            replayed,
        })
    }

    #[test]
    fn a_retry_that_replays_passes_and_one_that_records_again_is_caught() {
        let mut check = ExactlyOnce::default();
        check
            .on_apply(1, &entry(3), &recorded(3, "k", false), 1)
            .unwrap();
        check
            .on_apply(1, &entry(5), &recorded(3, "k", true), 0)
            .unwrap();
        // Another node, or this one after a restart, applies index 3 again.
        check
            .on_apply(2, &entry(3), &recorded(3, "k", false), 1)
            .unwrap();
        let err = check
            .on_apply(2, &entry(7), &recorded(7, "k", false), 1)
            .unwrap_err();
        assert!(err.contains("took effect twice"), "{err}");
    }

    #[test]
    fn a_replay_that_writes_or_names_another_event_is_caught() {
        let mut check = ExactlyOnce::default();
        check
            .on_apply(1, &entry(3), &recorded(3, "k", false), 1)
            .unwrap();
        assert!(check
            .on_apply(1, &entry(4), &recorded(3, "k", true), 1)
            .is_err());
        assert!(check
            .on_apply(1, &entry(4), &recorded(4, "k", true), 0)
            .is_err());
    }

    #[test]
    fn outputs_that_record_nothing_must_write_nothing() {
        let mut check = ExactlyOnce::default();
        let refused = Applied::SubmitRejected(SubmitRejected::default());
        check.on_apply(1, &entry(2), &refused, 0).unwrap();
        assert!(check.on_apply(1, &entry(3), &refused, 1).is_err());
        assert!(check
            .on_apply(1, &entry(4), &recorded(4, "k", false), 0)
            .is_err());
    }

    #[test]
    fn a_store_with_two_events_for_one_key_is_caught() {
        let mut store = MemStore::new();
        store.put_event(event(3, "a"));
        store.put_event(event(4, "b"));
        ExactlyOnce::check_store(1, &store).unwrap();
        store.put_event(event(9, "a"));
        let err = ExactlyOnce::check_store(1, &store).unwrap_err();
        assert!(err.contains("indexes 3 and 9"), "{err}");
    }
}
