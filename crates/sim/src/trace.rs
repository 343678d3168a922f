//! The trace hash: a fingerprint of everything a run did, equal on every replay of a seed.

use quorate_raft_core::fnv::Fnv1a;

/// FNV-1a over everything a run did (raft-core's [`Fnv1a`]: stable across platforms and Rust
/// versions).
#[derive(Clone, Debug, Default)]
pub struct TraceHash(Fnv1a);

impl TraceHash {
    /// Mixes `bytes` in.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// Mixes a number in.
    pub fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }

    /// The fingerprint so far.
    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// FNV-1a of `bytes` alone (entry fingerprints).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = TraceHash::default();
    h.bytes(bytes);
    h.finish()
}
