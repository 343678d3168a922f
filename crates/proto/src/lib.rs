//! Quorate's protocol: code generated from `proto/` (the public contract) and the conversions
//! between the peer protocol and `quorate-raft-core`'s messages.
#![allow(missing_docs)] // generated code; the .proto files carry the documentation

/// The generated code, nested as the protobuf packages are (cross-package references in
/// generated code need it). Use the short paths below.
pub mod quorate {
    /// `quorate.raft.*`
    pub mod raft {
        /// `quorate.raft.v1`
        pub mod v1 {
            tonic::include_proto!("quorate.raft.v1");
        }
    }
    /// `quorate.payments.*`
    pub mod payments {
        /// `quorate.payments.v1`
        pub mod v1 {
            tonic::include_proto!("quorate.payments.v1");
        }
    }
    /// `quorate.admin.*`
    pub mod admin {
        /// `quorate.admin.v1`
        pub mod v1 {
            tonic::include_proto!("quorate.admin.v1");
        }
    }
}

/// `quorate.raft.v1`: the peer protocol.
pub use quorate::raft::v1 as raft;

/// `quorate.payments.v1`: payment events and writer leases.
pub use quorate::payments::v1 as payments;

/// `quorate.admin.v1`: operating a node.
pub use quorate::admin::v1 as admin;

pub mod errors;
pub mod raft_convert;

/// A gRPC request path `/pkg.Service/Method` → (`pkg.Service`, `Method`).
pub fn service_and_method(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// The file descriptor set of every Quorate service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/quorate_descriptor.bin"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_the_service_and_the_method() {
        assert_eq!(
            service_and_method("/quorate.payments.v1.PaymentEvents/Submit"),
            ("quorate.payments.v1.PaymentEvents", "Submit")
        );
        assert_eq!(service_and_method("/odd"), ("odd", ""));
    }
}
