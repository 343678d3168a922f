//! The member table: every member's peer address and the ids removed so far.
//!
//! Raft decides *who* votes ([`ConfState`]); the member table says *where* each member is. It
//! travels in the context of every membership entry (proto `MemberTable`), so an address
//! changes through the log like the membership itself, and it is in force on a node from the
//! moment the entry is appended there, as the configuration is. The initial membership carries
//! none: until the first change, the addresses are the ones the node was started with
//! (`--initial-cluster`).
//!
//! Removed ids are kept for good: an id never comes back (a machine that returns does so as a
//! new member), and the peer port refuses a removed member's requests, so one that still runs
//! cannot disturb the cluster.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use prost::Message as _;
use quorate_proto::raft as pb;
use quorate_raft_core::{ConfState, MemberChange, Membership, NodeId};

use crate::error::NodeError;

/// An operator's membership change, as the admin API and the peer RPC carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOp {
    /// A new member at `peer_address`, as a learner (promoted once caught up: a voter added
    /// empty would start by rejoining under a new term, and a majority that needs it stalls
    /// until it has caught up).
    Add {
        /// Its id (never used before in this cluster).
        id: NodeId,
        /// Where the other members reach its peer port.
        peer_address: String,
    },
    /// A learner becomes a voter.
    Promote(NodeId),
    /// A member leaves.
    Remove(NodeId),
    /// A member's peer address changes.
    Update {
        /// The member.
        id: NodeId,
        /// Its new peer address.
        peer_address: String,
    },
}

impl MemberOp {
    /// The operation a peer RPC carries; the error names the field.
    pub fn from_proto(change: &pb::MemberChange) -> Result<Self, NodeError> {
        use pb::member_change::Kind;
        let id = change.node_id;
        if id == 0 {
            return Err(NodeError::Invalid("node_id: must be non-zero".into()));
        }
        let address = || -> Result<String, NodeError> {
            let address = change.peer_address.trim();
            if address.is_empty() {
                return Err(NodeError::Invalid(format!(
                    "peer_address: required for node {id} (host:port of its peer port)"
                )));
            }
            let valid = match address.rsplit_once(':') {
                Some((host, port)) => {
                    !host.is_empty()
                        && !host.contains("://")
                        && !host.chars().any(char::is_whitespace)
                        && port.parse::<u16>().is_ok_and(|p| p > 0)
                }
                None => false,
            };
            if !valid {
                return Err(NodeError::Invalid(format!(
                    "peer_address: {address:?} is not host:port"
                )));
            }
            Ok(address.to_string())
        };
        Ok(match Kind::try_from(change.kind) {
            Ok(Kind::Add) if change.voter => {
                return Err(NodeError::Invalid(format!(
                    "voter: a new member joins as a learner; promote node {id} once it has \
                     caught up (quoratectl members promote, or members replace for both)"
                )))
            }
            Ok(Kind::Add) => MemberOp::Add {
                id,
                peer_address: address()?,
            },
            Ok(Kind::Promote) => MemberOp::Promote(id),
            Ok(Kind::Remove) => MemberOp::Remove(id),
            Ok(Kind::Update) => MemberOp::Update {
                id,
                peer_address: address()?,
            },
            Ok(Kind::Unspecified) | Err(_) => {
                return Err(NodeError::Invalid(format!(
                    "kind: {} is not a membership change",
                    change.kind
                )))
            }
        })
    }

    /// The operation as a peer RPC carries it.
    pub fn to_proto(&self) -> pb::MemberChange {
        use pb::member_change::Kind;
        let (kind, node_id, peer_address) = match self {
            MemberOp::Add { id, peer_address } => (Kind::Add, *id, peer_address.clone()),
            MemberOp::Promote(id) => (Kind::Promote, *id, String::new()),
            MemberOp::Remove(id) => (Kind::Remove, *id, String::new()),
            MemberOp::Update { id, peer_address } => (Kind::Update, *id, peer_address.clone()),
        };
        pb::MemberChange {
            kind: kind as i32,
            node_id,
            peer_address,
            voter: false,
        }
    }
}

/// Every member's peer address, and the ids removed so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberTable {
    /// Peer address of every member (this node included).
    pub peers: BTreeMap<NodeId, String>,
    /// Ids removed from the cluster.
    pub removed: BTreeSet<NodeId>,
}

impl MemberTable {
    /// The table a membership entry carries.
    pub fn decode(context: &[u8]) -> Result<Self, String> {
        let table = pb::MemberTable::decode(context)
            .map_err(|e| format!("the membership's member table is damaged: {e}"))?;
        Ok(MemberTable {
            peers: table.peer_addresses.into_iter().collect(),
            removed: table.removed.into_iter().collect(),
        })
    }

    /// The context of a membership entry.
    pub fn encode(&self) -> Bytes {
        pb::MemberTable {
            peer_addresses: self.peers.clone().into_iter().collect(),
            removed: self.removed.iter().copied().collect(),
        }
        .encode_to_vec()
        .into()
    }

    /// The table in force with `membership`: its own, or for the initial membership (which
    /// carries none) the addresses the node was started with.
    pub fn in_force(membership: &Membership, started_with: &BTreeMap<NodeId, String>) -> Self {
        if membership.context.is_empty() {
            return MemberTable {
                peers: started_with.clone(),
                removed: BTreeSet::new(),
            };
        }
        match MemberTable::decode(&membership.context) {
            Ok(table) => table,
            Err(e) => {
                // Written by a leader of this cluster: only damage gets here. Keep going with
                // the addresses the node was started with.
                tracing::error!(error = %e, "using the addresses given at start");
                MemberTable {
                    peers: started_with.clone(),
                    removed: BTreeSet::new(),
                }
            }
        }
    }

    /// What this table means with the configuration `conf` in force: the peers to talk to
    /// (members only, the outgoing voters of a joint configuration included: a node being
    /// removed still votes until the joint configuration is left), and the removed ids whose
    /// requests are refused (those no longer in `conf`). A node that knows no configuration
    /// yet (a new member waiting to be added) talks to every address it was given.
    pub fn in_effect(&self, conf: &ConfState) -> (BTreeMap<NodeId, String>, BTreeSet<NodeId>) {
        if conf.voters.is_empty() {
            return (self.peers.clone(), self.removed.clone());
        }
        let members = conf.members();
        let peers = self
            .peers
            .iter()
            .filter(|(id, _)| members.contains(id))
            .map(|(&id, address)| (id, address.clone()))
            .collect();
        let removed = self
            .removed
            .iter()
            .copied()
            .filter(|id| !members.contains(id))
            .collect();
        (peers, removed)
    }

    /// The Raft changes and the new table that `ops` make of the membership `conf` with this
    /// table. Refuses, naming the field, what cannot be done: an id in use or removed, a
    /// member that does not exist, an address another member has, a promotion of a voter.
    pub fn plan(
        &self,
        conf: &ConfState,
        ops: &[MemberOp],
    ) -> Result<(Vec<MemberChange>, MemberTable), NodeError> {
        if ops.is_empty() {
            return Err(NodeError::Invalid("changes: none given".into()));
        }
        let members = conf.members();
        let mut table = self.clone();
        // Addresses of members removed before are of no use any more.
        table
            .peers
            .retain(|id, _| members.contains(id) || !self.removed.contains(id));
        let mut changes = Vec::new();
        let refuse = |what: String| Err(NodeError::Invalid(what));
        for op in ops {
            match op {
                MemberOp::Add { id, peer_address } => {
                    if members.contains(id) {
                        return refuse(format!("node_id: node {id} is already a member"));
                    }
                    if self.removed.contains(id) {
                        return refuse(format!(
                            "node_id: node {id} was removed from this cluster, and a removed id \
                             never comes back: give the new member a new id"
                        ));
                    }
                    table.peers.insert(*id, peer_address.clone());
                    changes.push(MemberChange::AddLearner(*id));
                }
                MemberOp::Promote(id) => {
                    if conf.is_voter(*id) {
                        return refuse(format!("node_id: node {id} is already a voter"));
                    }
                    if !conf.learners.contains(id) {
                        return refuse(format!(
                            "node_id: node {id} is not a learner of this cluster (add it first)"
                        ));
                    }
                    changes.push(MemberChange::AddVoter(*id));
                }
                MemberOp::Remove(id) => {
                    if !members.contains(id) {
                        return refuse(format!("node_id: node {id} is not a member"));
                    }
                    // (Its address stays while it is still an outgoing voter of the joint
                    // configuration: see `MemberTable::in_effect`.)
                    table.removed.insert(*id);
                    changes.push(MemberChange::Remove(*id));
                }
                MemberOp::Update { id, peer_address } => {
                    if !members.contains(id) {
                        return refuse(format!("node_id: node {id} is not a member"));
                    }
                    table.peers.insert(*id, peer_address.clone());
                }
            }
        }
        // (Members the table does not list yet, e.g. an address never given, keep theirs.)
        let mut seen = BTreeMap::new();
        for (id, address) in &table.peers {
            if let Some(other) = seen.insert(address.as_str(), *id) {
                return refuse(format!(
                    "peer_address: nodes {other} and {id} would both be at {address}"
                ));
            }
        }
        Ok((changes, table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MemberTable {
        MemberTable {
            peers: BTreeMap::from([
                (1, "a:1".to_string()),
                (2, "b:1".to_string()),
                (3, "c:1".to_string()),
            ]),
            removed: BTreeSet::from([7]),
        }
    }

    #[test]
    fn the_table_round_trips_through_a_membership_context() {
        let t = table();
        assert_eq!(MemberTable::decode(&t.encode()), Ok(t.clone()));
        let initial = Membership::default();
        let started_with = BTreeMap::from([(1, "x:1".to_string())]);
        assert_eq!(
            MemberTable::in_force(&initial, &started_with).peers,
            started_with
        );
        let carried = Membership {
            context: t.encode(),
            ..Membership::default()
        };
        assert_eq!(MemberTable::in_force(&carried, &started_with), t);
        assert!(MemberTable::decode(b"\xff\xff").is_err());
    }

    #[test]
    fn plans_name_what_they_refuse() {
        let conf = ConfState {
            learners: [4].into(),
            ..ConfState::with_voters([1, 2, 3])
        };
        let t = MemberTable {
            peers: table()
                .peers
                .into_iter()
                .chain([(4, "d:1".to_string())])
                .collect(),
            ..table()
        };
        let add = MemberOp::Add {
            id: 5,
            peer_address: "e:1".into(),
        };
        let (changes, after) = t
            .plan(&conf, &[add, MemberOp::Remove(1), MemberOp::Promote(4)])
            .unwrap();
        assert_eq!(
            changes,
            vec![
                MemberChange::AddLearner(5),
                MemberChange::Remove(1),
                MemberChange::AddVoter(4)
            ]
        );
        assert_eq!(
            after.peers.keys().copied().collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(after.removed, BTreeSet::from([1, 7]));
        // Node 1 is still reached, and heard, while it votes in the outgoing half; once the
        // joint configuration is left it is refused.
        let joint = ConfState {
            voters: [2, 3, 4, 5].into(),
            voters_outgoing: [1, 2, 3].into(),
            ..ConfState::default()
        };
        let (peers, removed) = after.in_effect(&joint);
        assert!(peers.contains_key(&1) && !removed.contains(&1));
        let left = ConfState::with_voters([2, 3, 4, 5]);
        let (peers, removed) = after.in_effect(&left);
        assert!(!peers.contains_key(&1) && removed.contains(&1));
        // A later change forgets its address.
        let (_, later) = after.plan(&left, &[MemberOp::Remove(5)]).unwrap();
        assert!(!later.peers.contains_key(&1) && later.removed.contains(&1));
        let moved = MemberOp::Update {
            id: 2,
            peer_address: "b:2".into(),
        };
        let (changes, after) = t.plan(&conf, &[moved]).unwrap();
        assert!(changes.is_empty(), "an address is no Raft change");
        assert_eq!(after.peers[&2], "b:2");
        for (bad, field) in [
            (
                MemberOp::Add {
                    id: 7,
                    peer_address: "z:1".into(),
                },
                "removed",
            ),
            (
                MemberOp::Add {
                    id: 2,
                    peer_address: "z:1".into(),
                },
                "already a member",
            ),
            (
                MemberOp::Add {
                    id: 9,
                    peer_address: "a:1".into(),
                },
                "both be at a:1",
            ),
            (MemberOp::Promote(2), "already a voter"),
            (MemberOp::Promote(9), "not a learner"),
            (MemberOp::Remove(9), "not a member"),
        ] {
            let Err(NodeError::Invalid(why)) = t.plan(&conf, std::slice::from_ref(&bad)) else {
                panic!("{bad:?} must be refused");
            };
            assert!(why.contains(field), "{bad:?}: {why}");
        }
    }

    #[test]
    fn operations_round_trip_and_bad_fields_are_named() {
        for op in [
            MemberOp::Add {
                id: 4,
                peer_address: "d:1".into(),
            },
            MemberOp::Promote(4),
            MemberOp::Remove(4),
            MemberOp::Update {
                id: 4,
                peer_address: "d:2".into(),
            },
        ] {
            assert_eq!(MemberOp::from_proto(&op.to_proto()), Ok(op));
        }
        let no_address = MemberOp::Add {
            id: 4,
            peer_address: String::new(),
        }
        .to_proto();
        let Err(NodeError::Invalid(why)) = MemberOp::from_proto(&no_address) else {
            panic!("an address is needed");
        };
        assert!(why.starts_with("peer_address"), "{why}");
        for bad in ["host:abc", "a b:1", "http://a:1", "a:0", "a:70000", ":1"] {
            let change = pb::MemberChange {
                peer_address: bad.into(),
                ..no_address.clone()
            };
            assert!(MemberOp::from_proto(&change).is_err(), "{bad}");
        }
        let zero = pb::MemberChange {
            node_id: 0,
            ..MemberOp::Remove(1).to_proto()
        };
        assert!(MemberOp::from_proto(&zero).is_err());
        let unknown = pb::MemberChange {
            kind: 99,
            ..MemberOp::Remove(1).to_proto()
        };
        assert!(MemberOp::from_proto(&unknown).is_err());
        let voter = pb::MemberChange {
            voter: true,
            peer_address: "d:1".into(),
            ..no_address
        };
        let Err(NodeError::Invalid(why)) = MemberOp::from_proto(&voter) else {
            panic!("a new member joins as a learner");
        };
        assert!(why.starts_with("voter: "), "{why}");
    }
}
