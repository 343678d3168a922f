//! The event log survives compaction: on every replica, the event-log hash at its applied
//! index (`HashEvents`: the hash kept for the compacted events, then the events still held)
//! equals the hash of every event recorded up to that index, as the replicas that applied
//! them recorded them. A compaction that deletes an event without hashing it, hashes the
//! wrong bytes, or deletes an event it should keep shows here.

use std::collections::BTreeMap;

use prost::Message;
use quorate_payments::machine::{fold_event, store_hash_events, Applied, Store};
use quorate_raft_core::fnv::Fnv1a;
use quorate_raft_core::{Index, NodeId};

/// Every event recorded, as first applied.
#[derive(Debug, Default)]
pub struct EventLog {
    events: BTreeMap<Index, Vec<u8>>,
}

impl EventLog {
    /// A replica applied an entry with `output`.
    pub fn on_apply(&mut self, output: &Applied) {
        if let Applied::EventRecorded(recorded) = output {
            if !recorded.replayed {
                self.events
                    .entry(recorded.event.index)
                    .or_insert_with(|| recorded.event.encode_to_vec());
            }
        }
    }

    /// `node`'s event-log hash at its applied index against the recorded events.
    pub fn check_store(&self, node: NodeId, store: &impl Store) -> Result<(), String> {
        let meta = store
            .meta()
            .map_err(|e| format!("node {node}: cannot read its meta record: {e}"))?
            .unwrap_or_default();
        let applied = meta.applied_index;
        let (count, hash) = store_hash_events(store, applied)
            .map_err(|e| format!("node {node}: no event-log hash at its applied index: {e}"))?;
        let mut expected = Fnv1a::default();
        let mut expected_count = 0u64;
        for (&index, record) in self.events.range(..=applied) {
            fold_event(&mut expected, index, record);
            expected_count += 1;
        }
        if (count, hash) != (expected_count, expected.finish()) {
            return Err(format!(
                "node {node}'s event-log hash at its applied index {applied} is {hash:016x} over \
                 {count} events ({} compacted through index {}), but the {expected_count} \
                 events recorded up to there hash to {:016x}",
                meta.events_compacted,
                meta.events_compacted_through,
                expected.finish()
            ));
        }
        Ok(())
    }
}
