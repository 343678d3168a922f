//! Quorate's protocol: code generated from `proto/` (the public contract) and the conversions
//! between the peer protocol and `quorate-raft-core`'s messages.
#![allow(missing_docs)] // generated code; the .proto files carry the documentation

/// `quorate.raft.v1`: the peer protocol.
pub mod raft {
    tonic::include_proto!("quorate.raft.v1");
}

/// `quorate.payments.v1`: payment events and writer leases.
pub mod payments {
    tonic::include_proto!("quorate.payments.v1");
}

/// `quorate.admin.v1`: operating a node.
pub mod admin {
    tonic::include_proto!("quorate.admin.v1");
}

pub mod convert;

/// The file descriptor set of every Quorate service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/quorate_descriptor.bin"));
