//! # quorate-transport
//!
//! The gRPC transport between Quorate peers (`quorate.raft.v1.Raft`, served on the peer port).
//!
//! **Sending** ([`Transport`]): one task and one HTTP/2 channel per peer. The Ready loop hands
//! messages to [`Transport::send`], which never blocks: each peer has a bounded queue, and a
//! dead or slow peer only loses its own messages (Raft retransmits), so it never delays the
//! others. Appends are pipelined: up to `max_appends_in_flight` are outstanding per peer, sent
//! in the order the core produced them on one long-lived `AppendStream` per peer (a message
//! each, not a call each; a peer without it gets `AppendEntries` calls). Votes, heartbeats and
//! the rest are calls of their own and bypass the window. Every RPC and every append has a
//! deadline; a peer whose RPCs fail is backed off exponentially,
//! and the channel reconnects by itself. Replies become core messages delivered to the node.
//!
//! The peers change with the membership ([`Transport::set_members`]): links open and close,
//! and the ids removed from the cluster are refused by the peer server ([`PeerDirectory`]).
//!
//! **Receiving** ([`RaftService`]): each RPC is checked (cluster id, recipient, not a removed
//! member), converted to a
//! core message and handed to a [`PeerHandler`] (the node), which steps it and returns the
//! core's response once the Ready that produced it has been persisted.
//!
//! Both directions record per-peer statistics ([`PeerStats`]): last successful RPC each way,
//! round-trip time, the term the peer last reported, failures, dropped messages.
#![deny(missing_docs)]

mod client;
mod config;
mod error;
mod server;
mod stats;

pub use client::{PeerDirectory, Transport, MAX_SNAPSHOT_BYTES};
pub use config::TransportConfig;
pub use error::{Error, Result};
pub use server::{serve, PeerHandler, RaftService};
pub use stats::{PeerStats, StatsTable};
