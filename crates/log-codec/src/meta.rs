//! How the hard state and the membership are laid out in the `raft_meta` column family.
//!
//! | key | value (format version 1) |
//! | --- | --- |
//! | `hard_state` | version `1`, term, vote (`0` for none, else `1` then the node id), commit, then only while the node rejoins after a lost disk: `1` and the term it rejoined at |
//! | `conf_state` | version `1`, then voters, learners, outgoing voters: each a count followed by that many node ids, ascending |
//! | `identity` | version `1`, cluster id, member id: written once the node has decided to start a new cluster or rejoin one (absent: the node never started) |
//! | `log_base` | version `1`, index and term of the last entry compacted away (absent: nothing was, the log starts at 1) |
//! | `snapshot` | version `1`, index, term, the membership as in `conf_state` (without its version byte), the data's length and the data, the membership context's length and the context (records from before membership changes end after the data) (absent: no snapshot yet) |
//!
//! Every number is LEB128. A record must be consumed exactly: trailing bytes are damage.

use std::collections::BTreeSet;

use quorate_raft_core::{ConfState, HardState, Index, NodeId, Snapshot, SnapshotMeta, Term};

use crate::varint;

/// Which cluster, and which member of it, a store belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: NodeId,
}

/// The key of the hard state record.
pub const HARD_STATE_KEY: &[u8] = b"hard_state";
/// The key of the membership record.
pub const CONF_STATE_KEY: &[u8] = b"conf_state";

/// The key of the identity record.
pub const IDENTITY_KEY: &[u8] = b"identity";
/// The key of the compaction point's record.
pub const LOG_BASE_KEY: &[u8] = b"log_base";
/// The key of the latest snapshot.
pub const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// The meta format this release writes.
const META_FORMAT_VERSION: u8 = 1;

/// The stored value of `hard_state`.
pub fn encode_hard_state(hard_state: &HardState) -> Vec<u8> {
    let mut out = vec![META_FORMAT_VERSION];
    varint::put(&mut out, hard_state.term);
    match hard_state.vote {
        None => out.push(0),
        Some(node) => {
            out.push(1);
            varint::put(&mut out, node);
        }
    }
    varint::put(&mut out, hard_state.commit);
    if let Some(term) = hard_state.rejoining {
        out.push(1);
        varint::put(&mut out, term);
    }
    out
}

/// The hard state stored as `value`; the error says what is wrong.
pub fn decode_hard_state(value: &[u8]) -> Result<HardState, String> {
    let mut input = take_version(value)?;
    let term = varint::take(&mut input).map_err(|reason| format!("term: {reason}"))?;
    let (&has_vote, rest) = input
        .split_first()
        .ok_or("the value ends before the vote")?;
    input = rest;
    let vote = match has_vote {
        0 => None,
        1 => Some(varint::take(&mut input).map_err(|reason| format!("vote: {reason}"))?),
        other => return Err(format!("invalid vote marker {other}")),
    };
    let commit = varint::take(&mut input).map_err(|reason| format!("commit: {reason}"))?;
    let rejoining = match input.split_first() {
        None => None,
        Some((1, rest)) => {
            input = rest;
            Some(varint::take(&mut input).map_err(|reason| format!("rejoining: {reason}"))?)
        }
        Some((other, _)) => return Err(format!("invalid rejoining marker {other}")),
    };
    expect_end(input)?;
    Ok(HardState {
        term,
        vote,
        commit,
        rejoining,
    })
}

/// The stored value of `identity`.
pub fn encode_identity(identity: &Identity) -> Vec<u8> {
    let mut out = vec![META_FORMAT_VERSION];
    varint::put(&mut out, identity.cluster_id);
    varint::put(&mut out, identity.member_id);
    out
}

/// The identity stored as `value`; the error says what is wrong.
pub fn decode_identity(value: &[u8]) -> Result<Identity, String> {
    let mut input = take_version(value)?;
    let cluster_id = varint::take(&mut input).map_err(|reason| format!("cluster id: {reason}"))?;
    let member_id = varint::take(&mut input).map_err(|reason| format!("member id: {reason}"))?;
    expect_end(input)?;
    Ok(Identity {
        cluster_id,
        member_id,
    })
}

/// The stored value of `conf_state`.
pub fn encode_conf_state(conf_state: &ConfState) -> Vec<u8> {
    let mut out = vec![META_FORMAT_VERSION];
    for set in [
        &conf_state.voters,
        &conf_state.learners,
        &conf_state.voters_outgoing,
    ] {
        varint::put(&mut out, set.len() as u64);
        for &node in set {
            varint::put(&mut out, node);
        }
    }
    out
}

/// The membership stored as `value`; the error says what is wrong.
pub fn decode_conf_state(value: &[u8]) -> Result<ConfState, String> {
    let mut input = take_version(value)?;
    let conf_state = take_conf_state(&mut input)?;
    expect_end(input)?;
    Ok(conf_state)
}

/// Reads the three sets of a membership from the front of `input`.
fn take_conf_state(input: &mut &[u8]) -> Result<ConfState, String> {
    let mut sets = Vec::with_capacity(3);
    for name in ["voters", "learners", "outgoing voters"] {
        let count = varint::take(input).map_err(|reason| format!("{name}: {reason}"))?;
        let mut set = BTreeSet::new();
        for _ in 0..count {
            let node: NodeId = varint::take(input).map_err(|reason| format!("{name}: {reason}"))?;
            set.insert(node);
        }
        sets.push(set);
    }
    let voters_outgoing = sets.pop().unwrap_or_default();
    let learners = sets.pop().unwrap_or_default();
    let voters = sets.pop().unwrap_or_default();
    Ok(ConfState {
        voters,
        learners,
        voters_outgoing,
    })
}

/// The stored value of `log_base`.
pub fn encode_log_base(index: Index, term: Term) -> Vec<u8> {
    let mut out = vec![META_FORMAT_VERSION];
    varint::put(&mut out, index);
    varint::put(&mut out, term);
    out
}

/// The compaction point stored as `value`; the error says what is wrong.
pub fn decode_log_base(value: &[u8]) -> Result<(Index, Term), String> {
    let mut input = take_version(value)?;
    let index = varint::take(&mut input).map_err(|reason| format!("index: {reason}"))?;
    let term = varint::take(&mut input).map_err(|reason| format!("term: {reason}"))?;
    expect_end(input)?;
    Ok((index, term))
}

/// The stored value of `snapshot`.
pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let mut out = vec![META_FORMAT_VERSION];
    varint::put(&mut out, snapshot.meta.index);
    varint::put(&mut out, snapshot.meta.term);
    out.extend_from_slice(&encode_conf_state(&snapshot.meta.conf_state)[1..]);
    varint::put(&mut out, snapshot.data.len() as u64);
    out.extend_from_slice(&snapshot.data);
    varint::put(&mut out, snapshot.meta.conf_context.len() as u64);
    out.extend_from_slice(&snapshot.meta.conf_context);
    out
}

/// The snapshot stored as `value`; the error says what is wrong.
pub fn decode_snapshot(value: &[u8]) -> Result<Snapshot, String> {
    let mut input = take_version(value)?;
    let index = varint::take(&mut input).map_err(|reason| format!("index: {reason}"))?;
    let term = varint::take(&mut input).map_err(|reason| format!("term: {reason}"))?;
    let conf_state = take_conf_state(&mut input)?;
    let data = take_bytes(&mut input, "data")?;
    // (Records written before membership changes end with the data.)
    let conf_context = if input.is_empty() {
        &[][..]
    } else {
        take_bytes(&mut input, "membership context")?
    };
    expect_end(input)?;
    Ok(Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            conf_state,
            conf_context: bytes::Bytes::copy_from_slice(conf_context),
        },
        data: bytes::Bytes::copy_from_slice(data),
    })
}

/// A length-prefixed field.
fn take_bytes<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a [u8], String> {
    let len = varint::take(input).map_err(|reason| format!("{what} length: {reason}"))?;
    if (input.len() as u64) < len {
        return Err(format!(
            "the {what} should be {len} bytes long, {} remain",
            input.len()
        ));
    }
    let (field, rest) = input.split_at(len as usize);
    *input = rest;
    Ok(field)
}

fn take_version(value: &[u8]) -> Result<&[u8], String> {
    let (&version, rest) = value.split_first().ok_or("the value is empty")?;
    if version != META_FORMAT_VERSION {
        return Err(format!(
            "unknown format version {version} (this release reads version {META_FORMAT_VERSION})"
        ));
    }
    Ok(rest)
}

fn expect_end(rest: &[u8]) -> Result<(), String> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("{} unexpected trailing bytes", rest.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_states_round_trip() {
        for hard_state in [
            HardState::default(),
            HardState {
                term: 9,
                vote: Some(3),
                commit: 1_000_000,
                rejoining: None,
            },
            HardState {
                term: u64::MAX,
                vote: None,
                commit: u64::MAX,
                rejoining: None,
            },
            HardState {
                term: 7,
                vote: None,
                commit: 0,
                rejoining: Some(7),
            },
        ] {
            let value = encode_hard_state(&hard_state);
            assert_eq!(decode_hard_state(&value), Ok(hard_state));
        }
    }

    #[test]
    fn identities_round_trip() {
        let identity = Identity {
            cluster_id: u64::MAX,
            member_id: 3,
        };
        assert_eq!(decode_identity(&encode_identity(&identity)), Ok(identity));
        assert!(decode_identity(&[1, 5])
            .unwrap_err()
            .starts_with("member id"));
    }

    #[test]
    fn conf_states_round_trip() {
        let joint = ConfState {
            voters: [1, 2, 3].into(),
            learners: [7].into(),
            voters_outgoing: [1, 2, 4].into(),
        };
        for conf_state in [ConfState::default(), ConfState::with_voters([1]), joint] {
            let value = encode_conf_state(&conf_state);
            assert_eq!(decode_conf_state(&value), Ok(conf_state));
        }
    }

    #[test]
    fn compaction_records_round_trip() {
        assert_eq!(decode_log_base(&encode_log_base(17, 4)), Ok((17, 4)));
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: 300,
                term: 9,
                conf_state: ConfState::with_voters([1, 2, 3]),
                conf_context: bytes::Bytes::from_static(b"1=a:1,2=b:2,3=c:3"),
            },
            data: bytes::Bytes::from_static(b"machine image"),
        };
        let value = encode_snapshot(&snapshot);
        assert_eq!(decode_snapshot(&value), Ok(snapshot.clone()));
        assert!(decode_snapshot(&value[..value.len() - 1])
            .unwrap_err()
            .contains("should be 17 bytes long"));
        // A record written before membership contexts existed ends after the data.
        let old = &value[..value.len() - 18];
        let mut without_context = snapshot;
        without_context.meta.conf_context = bytes::Bytes::new();
        assert_eq!(decode_snapshot(old), Ok(without_context));
    }

    #[test]
    fn damaged_meta_records_are_refused_with_a_reason() {
        let mut trailing = encode_hard_state(&HardState::default());
        trailing.extend([1, 7, 0]);
        assert_eq!(
            decode_hard_state(&trailing),
            Err("1 unexpected trailing bytes".to_string())
        );
        assert!(decode_hard_state(&[2, 0, 0, 0])
            .unwrap_err()
            .contains("unknown format version 2"));
        assert!(decode_hard_state(&[1, 0, 5, 0])
            .unwrap_err()
            .contains("invalid vote marker 5"));
        assert!(decode_conf_state(&[1, 3, 1])
            .unwrap_err()
            .starts_with("voters: truncated"));
    }
}
