//! A log entry as RocksDB hands it back (any bytes, after a torn write or bit rot): decoding
//! returns an error or an entry, never panics; an entry it accepts encodes back to the same
//! bytes, so nothing read is silently changed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_log_codec::entry::{decode_entry, decode_entry_header, encode_entry, index_of_key};

fuzz_target!(|data: &[u8]| {
    let _ = index_of_key(data);
    let header = decode_entry_header(data);
    if let Ok(entry) = decode_entry(7, data) {
        assert!(header.is_ok(), "an entry whose header does not decode");
        assert_eq!(encode_entry(&entry), data, "decode then encode changed the entry");
    }
});
