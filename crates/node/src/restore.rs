//! Building a member of a **new** cluster from a backup (`quoratectl snapshot restore`).
//!
//! A restored member starts from the backup's snapshot: its log is empty and begins after the
//! snapshot's index, its hard state has the snapshot's term and commits its index, and its
//! membership is the one the operator gives (every member a voter), not the backup's. Its
//! cluster id is new ([`restored_cluster_id`]): members of the cluster the backup came from
//! are refused by it (`CLUSTER_MISMATCH`) and refuse it, so an old node pointed at the new
//! cluster by mistake can neither vote in it nor overwrite it. Every member restored from the
//! same backup with the same `--initial-cluster` gets the same id, so they form one cluster
//! without talking first.
//!
//! The term stays the backup's: the new cluster's first leader is elected in a later term, so
//! fencing tokens (term, sequence) keep increasing across the restore.

use std::collections::BTreeMap;

use quorate_log_store::{Identity, LogStore};
use quorate_raft_core::{ConfState, HardState, LogWriter, NodeId, Snapshot, SnapshotMeta};

use crate::members::MemberTable;
use crate::NodeError;

/// The id of a cluster restored from the backup whose image has the SHA-256 `image_sha256`,
/// with the membership `peers` and the operator's optional `token` (to restore one backup
/// into two clusters that must not talk to each other). Never the id of the cluster the
/// backup came from, which [`crate::NodeConfig::cluster_id_for`] derives from its membership
/// alone.
pub fn restored_cluster_id(
    peers: &BTreeMap<NodeId, String>,
    image_sha256: &[u8],
    token: &str,
) -> u64 {
    let mut hash = quorate_raft_core::fnv::Fnv1a::default();
    hash.write(b"restored:");
    for (id, address) in peers {
        hash.write(format!("{id}={address},").as_bytes());
    }
    hash.write(image_sha256);
    hash.write(token.as_bytes());
    hash.finish()
}

/// Readies `store`, which must be blank, as member `member_id` of the new cluster `cluster_id`
/// whose members are `peers`, starting from `backup` (its metadata and its image). The image
/// is kept in the store's snapshot record; the node's start gives it to the state machine if
/// the caller did not restore the machine already (see `quorate_node::start`).
pub fn restore_store(
    store: &LogStore,
    backup: &Snapshot,
    member_id: NodeId,
    peers: &BTreeMap<NodeId, String>,
    cluster_id: u64,
) -> Result<(), NodeError> {
    let storage = |e: quorate_log_store::LogStoreError| NodeError::Internal(e.to_string());
    if !peers.contains_key(&member_id) {
        return Err(NodeError::Invalid(format!(
            "id: member {member_id} is not in the new membership {:?}",
            peers.keys().collect::<Vec<_>>()
        )));
    }
    if backup.meta.index == 0 {
        return Err(NodeError::Invalid(
            "the backup is of index 0: it holds nothing to restore".into(),
        ));
    }
    if !store.is_blank().map_err(storage)? {
        return Err(NodeError::Invalid(format!(
            "data-dir: {} already holds a node's data: restore into a new, empty directory",
            store.path().display()
        )));
    }
    let members = MemberTable {
        peers: peers.clone(),
        removed: Default::default(),
    };
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index: backup.meta.index,
            term: backup.meta.term,
            conf_state: ConfState::with_voters(peers.keys().copied()),
            conf_context: members.encode(),
        },
        data: backup.data.clone(),
    };
    let hard_state = HardState {
        term: snapshot.meta.term,
        vote: None,
        commit: snapshot.meta.index,
        ..HardState::default()
    };
    let mut writer = store.clone();
    writer
        .apply_snapshot(&snapshot)
        .map_err(|e| NodeError::Internal(format!("store the snapshot: {e}")))?;
    writer
        .persist(Some(&hard_state), &[], true)
        .map_err(|e| NodeError::Internal(format!("store the hard state: {e}")))?;
    store
        .set_identity(&Identity {
            cluster_id,
            member_id,
        })
        .map_err(storage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quorate_log_store::OpenOptions;
    use quorate_raft_core::Storage;

    fn peers() -> BTreeMap<NodeId, String> {
        (1..=3)
            .map(|id| (id, format!("10.0.0.{id}:2380")))
            .collect()
    }

    fn backup() -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index: 1_234,
                term: 9,
                conf_state: ConfState::with_voters([7, 8, 9]),
                conf_context: Bytes::new(),
            },
            data: Bytes::from_static(b"an image"),
        }
    }

    fn open(dir: &std::path::Path) -> LogStore {
        LogStore::open(
            dir,
            OpenOptions::new(ConfState::with_voters([1, 2, 3]), &[]),
        )
        .unwrap()
    }

    #[test]
    fn a_restored_store_starts_after_the_snapshot_with_the_new_membership_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let id = restored_cluster_id(&peers(), b"digest", "");
        restore_store(&store, &backup(), 2, &peers(), id).unwrap();

        let state = store.initial_state().unwrap();
        assert_eq!(state.hard_state.term, 9);
        assert_eq!(state.hard_state.commit, 1_234);
        assert_eq!(state.hard_state.vote, None);
        assert_eq!(store.first_index(), 1_235);
        assert_eq!(store.last_index(), 1_234);
        assert_eq!(store.term(1_234).unwrap(), 9);
        let stored = store.snapshot().unwrap();
        assert_eq!(
            stored.data,
            backup().data,
            "the image waits for the machine"
        );
        assert_eq!(stored.meta.conf_state, ConfState::with_voters([1, 2, 3]));
        let table = MemberTable::decode(&stored.meta.conf_context).unwrap();
        assert_eq!(table.peers, peers());
        assert_eq!(
            store.identity().unwrap(),
            Some(Identity {
                cluster_id: id,
                member_id: 2
            })
        );
    }

    #[test]
    fn a_restore_refuses_a_used_directory_and_a_member_outside_the_membership() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let id = restored_cluster_id(&peers(), b"digest", "");
        let outside = restore_store(&store, &backup(), 4, &peers(), id).unwrap_err();
        assert!(outside.to_string().contains("member 4"), "{outside}");
        restore_store(&store, &backup(), 1, &peers(), id).unwrap();
        let again = restore_store(&store, &backup(), 1, &peers(), id).unwrap_err();
        assert!(again.to_string().contains("already holds"), "{again}");
    }

    #[test]
    fn a_restored_cluster_never_has_the_id_of_the_cluster_it_came_from() {
        let original = crate::NodeConfig::cluster_id_for(&peers());
        let restored = restored_cluster_id(&peers(), b"digest", "");
        assert_ne!(restored, original);
        assert_eq!(restored, restored_cluster_id(&peers(), b"digest", ""));
        assert_ne!(restored, restored_cluster_id(&peers(), b"other", ""));
        assert_ne!(restored, restored_cluster_id(&peers(), b"digest", "second"));
    }
}
