//! The contract between the node and the replicated state machine it drives.

use bytes::Bytes;
use quorate_raft_core::{Entry, Index};

/// The time the leader gives a command it proposes (see [`StateMachine::stamp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposalTime {
    /// The leader's wall clock, milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// The leader's monotonic clock, milliseconds since an instant of its current term (only
    /// differences between proposals of one term mean anything).
    pub term_ms: u64,
}

/// Reads a state machine's image off the node's loop (see [`StateMachine::image_reader`]).
pub type ImageReader<E> = Box<dyn FnOnce() -> Result<Bytes, E> + Send>;

/// A deterministic state machine fed with committed entries.
///
/// Duties:
/// - **Deterministic**: the output and the resulting state depend only on the entries.
/// - **Durable with its index**: after `apply` returns, the state and the applied index are
///   written together (atomically); after a crash the node replays the log from
///   `applied_index() + 1`, so a state that is behind is fine, one that is ahead of its
///   recorded index is not.
pub trait StateMachine: Send + 'static {
    /// Why the machine failed: its storage, an undecodable image or command, an entry it
    /// cannot apply. The node reports it (a failed `apply` or `restore` stops the node).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The last index applied (0 for a fresh machine).
    fn applied_index(&self) -> Index;

    /// Applies committed entries, in log order (no-op entries included), and returns one
    /// output per entry (empty for no-ops). An error is fatal: the node stops.
    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, Self::Error>;

    /// The bytes the leader appends for `command`, stamped with its time: called by the leader
    /// for every command it proposes, its own and forwarded ones alike, so that no other
    /// node's clock reaches the log. An error (bytes that are not a command) refuses the
    /// proposal with the reason.
    fn stamp(&self, command: Bytes, time: ProposalTime) -> Result<Bytes, Self::Error>;

    /// A reader of the machine's whole state as one image, run on a blocking thread while the
    /// node goes on applying: the image must be of one consistent point (its own index, which
    /// `image_index` reads back, at least the applied index when the reader was made). What a
    /// snapshot sent to a follower carries.
    fn image_reader(&self) -> ImageReader<Self::Error>;

    /// The applied index `image` is of, read from the image itself (the node checks it against
    /// the index a leader's snapshot claims before installing anything).
    fn image_index(&self, image: &[u8]) -> Result<Index, Self::Error>;

    /// Replaces the whole state with `image` (a snapshot's), durably and atomically: after a
    /// crash the machine is either as it was or as the image says, with the image's index.
    fn restore(&mut self, image: &[u8]) -> Result<(), Self::Error>;
}
