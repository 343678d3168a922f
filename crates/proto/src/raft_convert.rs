//! Conversions between the core's [`Message`]s and the peer protocol's requests and responses.
//!
//! A core request becomes one RPC ([`PeerRequest`]); the RPC's reply becomes a core response
//! message. On the receiving side, an RPC request becomes a core message and the core's
//! response message becomes the RPC reply ([`PeerResponse`]). The core's `request_id`
//! correlation numbers never travel: the receiving node assigns its own.

use quorate_raft_core as core;
use quorate_raft_core::{Message, Payload};

use crate::raft as pb;

/// A message the peer protocol cannot represent in the core (or the other way round).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// A required field is missing.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// An enum field holds an unknown or unspecified value.
    #[error("invalid value {value} for {field}")]
    InvalidEnum {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i32,
    },
    /// The message is not of the expected kind.
    #[error("unexpected message kind {0}")]
    UnexpectedKind(&'static str),
}

/// A core request, ready to be sent as an RPC.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerRequest {
    /// `Raft.RequestVote`.
    Vote(pb::RequestVoteRequest),
    /// `Raft.AppendEntries`.
    Append(pb::AppendEntriesRequest),
    /// `Raft.Heartbeat`.
    Heartbeat(pb::HeartbeatRequest),
    /// `Raft.TimeoutNow`.
    TimeoutNow(pb::TimeoutNowRequest),
    /// `Raft.ReadIndex`.
    ReadIndex(pb::ReadIndexRequest),
}

impl PeerRequest {
    /// The request's header (every request has one once built by [`request_to_proto`]).
    pub fn header_mut(&mut self) -> &mut Option<pb::Header> {
        match self {
            PeerRequest::Vote(r) => &mut r.header,
            PeerRequest::Append(r) => &mut r.header,
            PeerRequest::Heartbeat(r) => &mut r.header,
            PeerRequest::TimeoutNow(r) => &mut r.header,
            PeerRequest::ReadIndex(r) => &mut r.header,
        }
    }
}

/// A core response, ready to be returned as an RPC reply.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerResponse {
    /// Reply to `Raft.RequestVote`.
    Vote(pb::RequestVoteResponse),
    /// Reply to `Raft.AppendEntries`.
    Append(pb::AppendEntriesResponse),
    /// Reply to `Raft.Heartbeat`.
    Heartbeat(pb::HeartbeatResponse),
    /// Reply to `Raft.ReadIndex`.
    ReadIndex(pb::ReadIndexResponse),
}

fn header(cluster_id: u64, m: &Message) -> Option<pb::Header> {
    Some(pb::Header {
        cluster_id,
        from: m.from,
        to: m.to,
        term: m.term,
        timing: None,
    })
}

fn open(header: Option<pb::Header>) -> Result<pb::Header, ConvertError> {
    header.ok_or(ConvertError::Missing("header"))
}

fn message(h: &pb::Header, payload: Payload) -> Message {
    Message {
        from: h.from,
        to: h.to,
        term: h.term,
        payload,
    }
}

/// The entry as the peer protocol carries it.
pub fn entry_to_proto(e: &core::Entry) -> pb::Entry {
    pb::Entry {
        index: e.index,
        term: e.term,
        sequence: e.sequence,
        kind: match e.kind {
            core::EntryKind::Noop => pb::EntryKind::Noop,
            core::EntryKind::Command => pb::EntryKind::Command,
            core::EntryKind::Membership => pb::EntryKind::Membership,
        } as i32,
        data: e.data.clone(),
    }
}

/// The entry as the core knows it.
pub fn entry_from_proto(e: pb::Entry) -> Result<core::Entry, ConvertError> {
    let kind = match pb::EntryKind::try_from(e.kind) {
        Ok(pb::EntryKind::Noop) => core::EntryKind::Noop,
        Ok(pb::EntryKind::Command) => core::EntryKind::Command,
        Ok(pb::EntryKind::Membership) => core::EntryKind::Membership,
        _ => {
            return Err(ConvertError::InvalidEnum {
                field: "Entry.kind",
                value: e.kind,
            })
        }
    };
    Ok(core::Entry {
        index: e.index,
        term: e.term,
        sequence: e.sequence,
        kind,
        data: e.data,
    })
}

fn read_mode_to_proto(mode: core::ReadMode) -> pb::ReadMode {
    match mode {
        core::ReadMode::Quorum => pb::ReadMode::Quorum,
        core::ReadMode::Lease => pb::ReadMode::Lease,
    }
}

fn rejection_to_proto(r: Option<core::VoteRejection>) -> pb::VoteRejection {
    match r {
        None => pb::VoteRejection::Unspecified,
        Some(core::VoteRejection::StaleTerm) => pb::VoteRejection::StaleTerm,
        Some(core::VoteRejection::AlreadyVoted) => pb::VoteRejection::AlreadyVoted,
        Some(core::VoteRejection::StaleLog) => pb::VoteRejection::StaleLog,
        Some(core::VoteRejection::LeaderAlive) => pb::VoteRejection::LeaderAlive,
        Some(core::VoteRejection::NotVoter) => pb::VoteRejection::NotVoter,
        Some(core::VoteRejection::Rejoining) => pb::VoteRejection::Rejoining,
    }
}

fn rejection_from_proto(r: i32) -> Option<core::VoteRejection> {
    match pb::VoteRejection::try_from(r).ok()? {
        pb::VoteRejection::Unspecified => None,
        pb::VoteRejection::StaleTerm => Some(core::VoteRejection::StaleTerm),
        pb::VoteRejection::AlreadyVoted => Some(core::VoteRejection::AlreadyVoted),
        pb::VoteRejection::StaleLog => Some(core::VoteRejection::StaleLog),
        pb::VoteRejection::LeaderAlive => Some(core::VoteRejection::LeaderAlive),
        pb::VoteRejection::NotVoter => Some(core::VoteRejection::NotVoter),
        pb::VoteRejection::Rejoining => Some(core::VoteRejection::Rejoining),
    }
}

/// Turns a core request into the RPC that carries it; `None` for responses (they travel as
/// RPC replies).
pub fn request_to_proto(cluster_id: u64, m: &Message) -> Option<PeerRequest> {
    let header = header(cluster_id, m);
    Some(match &m.payload {
        Payload::VoteRequest(r) => PeerRequest::Vote(pb::RequestVoteRequest {
            header,
            pre_vote: r.pre_vote,
            last_log_index: r.last_log_index,
            last_log_term: r.last_log_term,
            leadership_transfer: r.leadership_transfer,
        }),
        Payload::AppendRequest(r) => PeerRequest::Append(pb::AppendEntriesRequest {
            header,
            prev_log_index: r.prev_log_index,
            prev_log_term: r.prev_log_term,
            entries: r.entries.iter().map(entry_to_proto).collect(),
            leader_commit: r.leader_commit,
            round: r.round,
            traces: Vec::new(),
        }),
        Payload::HeartbeatRequest(r) => PeerRequest::Heartbeat(pb::HeartbeatRequest {
            header,
            commit: r.commit,
            round: r.round,
        }),
        Payload::TimeoutNow => PeerRequest::TimeoutNow(pb::TimeoutNowRequest { header }),
        Payload::ReadIndexRequest(r) => PeerRequest::ReadIndex(pb::ReadIndexRequest {
            header,
            read_id: r.read_id,
            mode: read_mode_to_proto(r.mode) as i32,
        }),
        _ => return None,
    })
}

/// The cluster id in a request's header.
pub fn request_cluster_id(request: &PeerRequest) -> Option<u64> {
    let header = match request {
        PeerRequest::Vote(r) => &r.header,
        PeerRequest::Append(r) => &r.header,
        PeerRequest::Heartbeat(r) => &r.header,
        PeerRequest::TimeoutNow(r) => &r.header,
        PeerRequest::ReadIndex(r) => &r.header,
    };
    header.as_ref().map(|h| h.cluster_id)
}

/// Turns a received RPC request into a core message (with `request_id` 0, for the receiving
/// node to set).
pub fn request_from_proto(request: PeerRequest) -> Result<Message, ConvertError> {
    Ok(match request {
        PeerRequest::Vote(r) => {
            let h = open(r.header)?;
            message(
                &h,
                Payload::VoteRequest(core::VoteRequest {
                    pre_vote: r.pre_vote,
                    last_log_index: r.last_log_index,
                    last_log_term: r.last_log_term,
                    leadership_transfer: r.leadership_transfer,
                    request_id: 0,
                }),
            )
        }
        PeerRequest::Append(r) => {
            let h = open(r.header)?;
            let entries = r
                .entries
                .into_iter()
                .map(entry_from_proto)
                .collect::<Result<Vec<_>, _>>()?;
            message(
                &h,
                Payload::AppendRequest(core::AppendRequest {
                    prev_log_index: r.prev_log_index,
                    prev_log_term: r.prev_log_term,
                    entries,
                    leader_commit: r.leader_commit,
                    round: r.round,
                    request_id: 0,
                }),
            )
        }
        PeerRequest::Heartbeat(r) => {
            let h = open(r.header)?;
            message(
                &h,
                Payload::HeartbeatRequest(core::HeartbeatRequest {
                    commit: r.commit,
                    round: r.round,
                    request_id: 0,
                }),
            )
        }
        PeerRequest::TimeoutNow(r) => message(&open(r.header)?, Payload::TimeoutNow),
        PeerRequest::ReadIndex(r) => {
            let h = open(r.header)?;
            let mode = match pb::ReadMode::try_from(r.mode) {
                Ok(pb::ReadMode::Lease) => core::ReadMode::Lease,
                Ok(pb::ReadMode::Quorum) => core::ReadMode::Quorum,
                _ => {
                    return Err(ConvertError::InvalidEnum {
                        field: "ReadIndexRequest.mode",
                        value: r.mode,
                    })
                }
            };
            message(
                &h,
                Payload::ReadIndexRequest(core::ReadIndexRequest {
                    read_id: r.read_id,
                    mode,
                    request_id: 0,
                }),
            )
        }
    })
}

/// Turns the core's response message into the RPC reply.
pub fn response_to_proto(cluster_id: u64, m: &Message) -> Result<PeerResponse, ConvertError> {
    let header = header(cluster_id, m);
    Ok(match &m.payload {
        Payload::VoteResponse(r) => PeerResponse::Vote(pb::RequestVoteResponse {
            header,
            pre_vote: r.pre_vote,
            granted: r.granted,
            rejection: rejection_to_proto(r.rejection) as i32,
        }),
        Payload::AppendResponse(r) => {
            let mut reply = pb::AppendEntriesResponse {
                header,
                round: r.round,
                ..Default::default()
            };
            match r.outcome {
                core::AppendOutcome::Accepted { match_index } => {
                    reply.accepted = true;
                    reply.match_index = match_index;
                }
                core::AppendOutcome::Rejected {
                    rejected_index,
                    hint_index,
                    hint_term,
                } => {
                    reply.rejected_index = rejected_index;
                    reply.hint_index = hint_index;
                    reply.hint_term = hint_term;
                }
            }
            PeerResponse::Append(reply)
        }
        Payload::HeartbeatResponse(r) => PeerResponse::Heartbeat(pb::HeartbeatResponse {
            header,
            round: r.round,
        }),
        Payload::ReadIndexResponse(r) => PeerResponse::ReadIndex(pb::ReadIndexResponse {
            header,
            read_id: r.read_id,
            index: r.index,
        }),
        other => return Err(ConvertError::UnexpectedKind(other.kind())),
    })
}

/// Turns an RPC reply into the core's response message.
pub fn response_from_proto(response: PeerResponse) -> Result<Message, ConvertError> {
    Ok(match response {
        PeerResponse::Vote(r) => {
            let h = open(r.header)?;
            message(
                &h,
                Payload::VoteResponse(core::VoteResponse {
                    pre_vote: r.pre_vote,
                    granted: r.granted,
                    rejection: rejection_from_proto(r.rejection),
                    request_id: 0,
                }),
            )
        }
        PeerResponse::Append(r) => {
            let h = open(r.header)?;
            let outcome = if r.accepted {
                core::AppendOutcome::Accepted {
                    match_index: r.match_index,
                }
            } else {
                core::AppendOutcome::Rejected {
                    rejected_index: r.rejected_index,
                    hint_index: r.hint_index,
                    hint_term: r.hint_term,
                }
            };
            message(
                &h,
                Payload::AppendResponse(core::AppendResponse {
                    round: r.round,
                    outcome,
                    request_id: 0,
                }),
            )
        }
        PeerResponse::Heartbeat(r) => {
            let h = open(r.header)?;
            message(
                &h,
                Payload::HeartbeatResponse(core::HeartbeatResponse {
                    round: r.round,
                    request_id: 0,
                }),
            )
        }
        PeerResponse::ReadIndex(r) => {
            let h = open(r.header)?;
            message(
                &h,
                Payload::ReadIndexResponse(core::ReadIndexResponse {
                    read_id: r.read_id,
                    index: r.index,
                    request_id: 0,
                }),
            )
        }
    })
}

/// The FNV-1a 64 hash a snapshot's chunks carry of its whole data.
pub fn snapshot_checksum(data: &[u8]) -> u64 {
    let mut hash = core::fnv::Fnv1a::default();
    hash.write(data);
    hash.finish()
}

/// A core `SnapshotRequest` as the chunks of a `Raft.InstallSnapshot` stream, each carrying
/// at most `chunk_bytes` of data (at least one chunk, even for empty data); `None` for any
/// other message.
pub fn snapshot_to_chunks(
    cluster_id: u64,
    m: &Message,
    chunk_bytes: usize,
) -> Option<Vec<pb::InstallSnapshotChunk>> {
    let Payload::SnapshotRequest(r) = &m.payload else {
        return None;
    };
    let data = &r.snapshot.data;
    let meta = &r.snapshot.meta;
    let mut chunks: Vec<pb::InstallSnapshotChunk> = data
        .chunks(chunk_bytes.max(1))
        .map(|piece| pb::InstallSnapshotChunk {
            data: data.slice_ref(piece),
            ..Default::default()
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::InstallSnapshotChunk::default());
    }
    let first = &mut chunks[0];
    first.header = header(cluster_id, m);
    first.index = meta.index;
    first.term = meta.term;
    first.voters = meta.conf_state.voters.iter().copied().collect();
    first.learners = meta.conf_state.learners.iter().copied().collect();
    first.voters_outgoing = meta.conf_state.voters_outgoing.iter().copied().collect();
    first.conf_context = meta.conf_context.clone();
    first.round = r.round;
    first.total_bytes = data.len() as u64;
    first.checksum = snapshot_checksum(data);
    Some(chunks)
}

/// The core message for a received snapshot: `first` is the stream's first chunk, `data` the
/// whole data reassembled (its size and checksum already checked against `first`).
pub fn snapshot_from_chunks(
    first: &pb::InstallSnapshotChunk,
    data: bytes::Bytes,
) -> Result<Message, ConvertError> {
    let h = open(first.header)?;
    let conf_state = core::ConfState {
        voters: first.voters.iter().copied().collect(),
        learners: first.learners.iter().copied().collect(),
        voters_outgoing: first.voters_outgoing.iter().copied().collect(),
    };
    if conf_state.voters.is_empty() {
        return Err(ConvertError::Missing("InstallSnapshotChunk.voters"));
    }
    let snapshot = core::Snapshot {
        meta: core::SnapshotMeta {
            index: first.index,
            term: first.term,
            conf_state,
            conf_context: first.conf_context.clone(),
        },
        data,
    };
    Ok(message(
        &h,
        Payload::SnapshotRequest(core::SnapshotRequest {
            snapshot,
            round: first.round,
            request_id: 0,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn without_request_id(mut m: Message) -> Message {
        m.payload.set_request_id(0);
        m
    }

    fn msg(payload: Payload) -> Message {
        Message {
            from: 1,
            to: 2,
            term: 7,
            payload,
        }
    }

    #[test]
    fn every_request_survives_the_round_trip() {
        let entry = core::Entry {
            index: 5,
            term: 7,
            sequence: 3,
            kind: core::EntryKind::Command,
            data: Bytes::from_static(b"payment"),
        };
        let requests = [
            Payload::VoteRequest(core::VoteRequest {
                pre_vote: true,
                last_log_index: 4,
                last_log_term: 6,
                leadership_transfer: true,
                request_id: 9,
            }),
            Payload::AppendRequest(core::AppendRequest {
                prev_log_index: 4,
                prev_log_term: 6,
                entries: vec![entry],
                leader_commit: 3,
                round: 11,
                request_id: 9,
            }),
            Payload::HeartbeatRequest(core::HeartbeatRequest {
                commit: 3,
                round: 12,
                request_id: 9,
            }),
            Payload::TimeoutNow,
            Payload::ReadIndexRequest(core::ReadIndexRequest {
                read_id: 77,
                mode: core::ReadMode::Lease,
                request_id: 9,
            }),
        ];
        for payload in requests {
            let m = msg(payload);
            let rpc = request_to_proto(42, &m).expect("a request");
            assert_eq!(request_cluster_id(&rpc), Some(42));
            assert_eq!(request_from_proto(rpc).unwrap(), without_request_id(m));
        }
    }

    #[test]
    fn every_response_survives_the_round_trip() {
        let responses = [
            Payload::VoteResponse(core::VoteResponse {
                pre_vote: false,
                granted: false,
                rejection: Some(core::VoteRejection::LeaderAlive),
                request_id: 3,
            }),
            Payload::AppendResponse(core::AppendResponse {
                round: 4,
                outcome: core::AppendOutcome::Accepted { match_index: 9 },
                request_id: 3,
            }),
            Payload::AppendResponse(core::AppendResponse {
                round: 4,
                outcome: core::AppendOutcome::Rejected {
                    rejected_index: 9,
                    hint_index: 6,
                    hint_term: 2,
                },
                request_id: 3,
            }),
            Payload::HeartbeatResponse(core::HeartbeatResponse {
                round: 8,
                request_id: 3,
            }),
            Payload::ReadIndexResponse(core::ReadIndexResponse {
                read_id: 77,
                index: None,
                request_id: 3,
            }),
        ];
        for payload in responses {
            let m = msg(payload);
            let reply = response_to_proto(42, &m).unwrap();
            assert_eq!(response_from_proto(reply).unwrap(), without_request_id(m));
        }
    }

    #[test]
    fn an_unspecified_entry_kind_is_refused() {
        let bad = pb::Entry {
            kind: 0,
            ..Default::default()
        };
        assert!(matches!(
            entry_from_proto(bad),
            Err(ConvertError::InvalidEnum { .. })
        ));
        let missing = pb::HeartbeatRequest::default();
        assert_eq!(
            request_from_proto(PeerRequest::Heartbeat(missing)),
            Err(ConvertError::Missing("header"))
        );
    }
}
