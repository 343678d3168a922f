//! What [`crate::LogStore::open`] needs to know besides the directory.

use std::collections::BTreeSet;

use quorate_raft_core::ConfState;

use crate::error::{LogStoreError, Result};

/// The column family of the Raft log.
pub const LOG_COLUMN_FAMILY: &str = "raft_log";
/// The column family of the hard state and the membership.
pub const META_COLUMN_FAMILY: &str = "raft_meta";
/// RocksDB's own column family, which every database has; the store keeps nothing in it.
pub(crate) const DEFAULT_COLUMN_FAMILY: &str = "default";

/// Options for [`crate::LogStore::open`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// The membership a new store starts with. Written only when the store is created; an
    /// existing store keeps its own, whatever this says (a restarted node must not change its
    /// cluster by changing a flag).
    pub bootstrap: ConfState,
    /// Extra column families for the state machine's data (see [`crate::StateBatch`]).
    /// Missing ones are created; a store that holds one not listed here is refused.
    pub state_column_families: Vec<String>,
}

impl OpenOptions {
    /// Options for a store of a cluster of `bootstrap` with the given state column families.
    pub fn new(bootstrap: ConfState, state_column_families: &[&str]) -> Self {
        OpenOptions {
            bootstrap,
            state_column_families: state_column_families
                .iter()
                .map(|name| name.to_string())
                .collect(),
        }
    }

    /// The state column families, checked: non-empty names, no duplicates, none of the
    /// store's own.
    pub(crate) fn checked_state_column_families(&self) -> Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for name in &self.state_column_families {
            if name.is_empty() {
                return Err(LogStoreError::InvalidOptions(
                    "a state column family has an empty name".to_string(),
                ));
            }
            if [LOG_COLUMN_FAMILY, META_COLUMN_FAMILY, DEFAULT_COLUMN_FAMILY]
                .contains(&name.as_str())
            {
                return Err(LogStoreError::InvalidOptions(format!(
                    "state column family {name:?} would share the store's own column family"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(LogStoreError::InvalidOptions(format!(
                    "state column family {name:?} is declared twice"
                )));
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_column_families_must_be_distinct_and_not_the_stores_own() {
        for bad in [
            &["accounts", "accounts"][..],
            &["raft_log"],
            &["raft_meta"],
            &["default"],
            &[""],
        ] {
            let options = OpenOptions::new(ConfState::default(), bad);
            assert!(
                matches!(
                    options.checked_state_column_families(),
                    Err(LogStoreError::InvalidOptions(_))
                ),
                "{bad:?}"
            );
        }
        let good = OpenOptions::new(ConfState::default(), &["accounts", "applied"]);
        assert_eq!(good.checked_state_column_families().unwrap().len(), 2);
    }
}
