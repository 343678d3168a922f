//! The crate's error type.

/// What can go wrong setting up or using the transport.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A peer address cannot be used.
    #[error("invalid peer address {address:?} for node {node}: {reason}")]
    InvalidAddress {
        /// The peer.
        node: u64,
        /// Its configured address.
        address: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The node is not a known peer.
    #[error("node {0} is not a peer")]
    UnknownPeer(u64),
    /// The peer server failed.
    #[error("peer server: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
