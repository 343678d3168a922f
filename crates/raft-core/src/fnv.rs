//! FNV-1a, 64 bit: a tiny hash whose value is the same on every platform, Rust version and
//! release (unlike `std`'s `DefaultHasher`). Quorate uses it wherever a value must compare
//! equal across nodes or across replays: cluster ids, event-log hashes, the simulator's trace.

/// An FNV-1a hasher.
#[derive(Clone, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// A hasher that goes on from `state`, the [`finish`](Self::finish) of an earlier one
    /// (FNV-1a's state is its hash): hashing `a` then, resumed, `b` equals hashing `a ++ b`.
    pub fn resume(state: u64) -> Self {
        Fnv1a(state)
    }

    /// Mixes `bytes` in.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(bytes: &[u8]) -> u64 {
        let mut h = Fnv1a::default();
        h.write(bytes);
        h.finish()
    }

    /// The published FNV-1a 64 test vectors.
    #[test]
    fn matches_the_reference_vectors() {
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_resumed_hash_equals_one_over_the_whole_input() {
        let mut resumed = Fnv1a::resume(hash(b"foo"));
        resumed.write(b"bar");
        assert_eq!(resumed.finish(), hash(b"foobar"));
    }
}
