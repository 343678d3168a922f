//! How log entries are laid out in the `raft_log` column family.
//!
//! - **Key**: the entry's index as 8 bytes big-endian, so RocksDB's byte order is log order
//!   and a range of indexes is a range of keys.
//! - **Value**, format version 1:
//!
//!   | bytes | field |
//!   | --- | --- |
//!   | 1 | format version, `1` |
//!   | 1 | kind: `0` no-op, `1` command, `2` membership |
//!   | 1..=10 | term, LEB128 |
//!   | 1..=10 | sequence (the fencing token's second half), LEB128 |
//!   | rest | data, opaque |
//!
//! The index is not repeated in the value: the key holds it. The version byte lets a later
//! release add fields while still reading old entries.

use bytes::Bytes;
use quorate_raft_core::{Entry, EntryKind, Index, Term};

use crate::varint;

/// The entry format this release writes.
pub const ENTRY_FORMAT_VERSION: u8 = 1;

const KIND_NOOP: u8 = 0;
const KIND_COMMAND: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// The key of the entry at `index`.
pub fn log_key(index: Index) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index a key of the log column family stands for; `None` when it is not 8 bytes.
pub fn index_of_key(key: &[u8]) -> Option<Index> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(Index::from_be_bytes(bytes))
}

/// The stored value of `entry`.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 * 10 + entry.data.len());
    out.push(ENTRY_FORMAT_VERSION);
    out.push(match entry.kind {
        EntryKind::Noop => KIND_NOOP,
        EntryKind::Command => KIND_COMMAND,
        EntryKind::Membership => KIND_MEMBERSHIP,
    });
    varint::put(&mut out, entry.term);
    varint::put(&mut out, entry.sequence);
    out.extend_from_slice(&entry.data);
    out
}

/// The fixed fields of a stored entry, and where its data starts.
pub struct EntryHeader {
    /// The entry's term.
    pub term: Term,
    /// The entry's sequence within its term.
    pub sequence: u64,
    /// No-op or command.
    pub kind: EntryKind,
    /// How many bytes precede the data.
    pub data_offset: usize,
}

/// Reads and checks everything but the data, without copying anything; recovery and
/// [`quorate_raft_core::Storage::term`] need no more. The error says what is wrong.
pub fn decode_entry_header(value: &[u8]) -> Result<EntryHeader, String> {
    let mut input = value;
    let (&version, rest) = input.split_first().ok_or("the value is empty")?;
    if version != ENTRY_FORMAT_VERSION {
        return Err(format!(
            "unknown entry format version {version} (this release reads version {ENTRY_FORMAT_VERSION})"
        ));
    }
    let (&kind, rest) = rest
        .split_first()
        .ok_or("the value ends before the entry kind")?;
    let kind = match kind {
        KIND_NOOP => EntryKind::Noop,
        KIND_COMMAND => EntryKind::Command,
        KIND_MEMBERSHIP => EntryKind::Membership,
        other => return Err(format!("unknown entry kind {other}")),
    };
    input = rest;
    let term = varint::take(&mut input).map_err(|reason| format!("term: {reason}"))?;
    let sequence = varint::take(&mut input).map_err(|reason| format!("sequence: {reason}"))?;
    Ok(EntryHeader {
        term,
        sequence,
        kind,
        data_offset: value.len() - input.len(),
    })
}

/// The entry stored at `index` with value `value`.
pub fn decode_entry(index: Index, value: &[u8]) -> Result<Entry, String> {
    let header = decode_entry_header(value)?;
    Ok(Entry {
        index,
        term: header.term,
        sequence: header.sequence,
        kind: header.kind,
        data: Bytes::copy_from_slice(&value[header.data_offset..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, term: Term, sequence: u64, data: &'static [u8]) -> Entry {
        Entry {
            index: 42,
            term,
            sequence,
            kind,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn entries_round_trip() {
        for original in [
            entry(EntryKind::Noop, 1, 1, b""),
            entry(EntryKind::Command, 7, 300, b"transfer 10 from a to b"),
            entry(EntryKind::Membership, 8, 1, b"\x01membership"),
            entry(EntryKind::Command, u64::MAX, u64::MAX, &[0, 255, 0]),
        ] {
            let value = encode_entry(&original);
            assert_eq!(decode_entry(42, &value), Ok(original));
        }
    }

    #[test]
    fn small_entries_are_compact() {
        let value = encode_entry(&entry(EntryKind::Command, 3, 5, b"abc"));
        assert_eq!(value, vec![1, 1, 3, 5, b'a', b'b', b'c']);
    }

    #[test]
    fn keys_sort_in_index_order_and_round_trip() {
        assert!(log_key(255) < log_key(256));
        assert!(log_key(1 << 32) > log_key(u64::from(u32::MAX)));
        assert_eq!(index_of_key(&log_key(123_456)), Some(123_456));
        assert_eq!(index_of_key(b"short"), None);
    }

    #[test]
    fn damaged_values_are_refused_with_a_reason() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty"),
            (&[9, 1, 1, 1], "unknown entry format version 9"),
            (&[1], "before the entry kind"),
            (&[1, 7, 1, 1], "unknown entry kind 7"),
            (&[1, 1, 0x80], "term: truncated"),
        ];
        for (value, expected) in cases {
            let error = decode_entry(1, value).unwrap_err();
            assert!(error.contains(expected), "{value:?}: {error}");
        }
        let error = decode_entry(1, &[1, 1, 2]).unwrap_err();
        assert!(error.starts_with("sequence:"), "{error}");
    }
}
