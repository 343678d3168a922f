//! Messages from peers: protobuf bytes of every request and response of the peer protocol,
//! decoded and converted into the Raft core's messages. Never a panic: a peer that sends
//! garbage gets an error back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use quorate_proto::raft as pb;
use quorate_proto::raft_convert::{
    entry_from_proto, request_from_proto, response_from_proto, snapshot_from_chunks, PeerRequest,
    PeerResponse,
};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let _ = match which % 11 {
        0 => pb::RequestVoteRequest::decode(bytes)
            .map(|r| request_from_proto(PeerRequest::Vote(r)).is_ok()),
        1 => pb::AppendEntriesRequest::decode(bytes)
            .map(|r| request_from_proto(PeerRequest::Append(r)).is_ok()),
        2 => pb::HeartbeatRequest::decode(bytes)
            .map(|r| request_from_proto(PeerRequest::Heartbeat(r)).is_ok()),
        3 => pb::TimeoutNowRequest::decode(bytes)
            .map(|r| request_from_proto(PeerRequest::TimeoutNow(r)).is_ok()),
        4 => pb::ReadIndexRequest::decode(bytes)
            .map(|r| request_from_proto(PeerRequest::ReadIndex(r)).is_ok()),
        5 => pb::RequestVoteResponse::decode(bytes)
            .map(|r| response_from_proto(PeerResponse::Vote(r)).is_ok()),
        6 => pb::AppendEntriesResponse::decode(bytes)
            .map(|r| response_from_proto(PeerResponse::Append(r)).is_ok()),
        7 => pb::HeartbeatResponse::decode(bytes)
            .map(|r| response_from_proto(PeerResponse::Heartbeat(r)).is_ok()),
        8 => pb::ReadIndexResponse::decode(bytes)
            .map(|r| response_from_proto(PeerResponse::ReadIndex(r)).is_ok()),
        9 => pb::Entry::decode(bytes).map(|e| entry_from_proto(e).is_ok()),
        _ => pb::InstallSnapshotChunk::decode(bytes).map(|first| {
            let data = first.data.clone();
            snapshot_from_chunks(&first, data).is_ok()
        }),
    };
});
