//! A committed entry's command bytes, as every replica applies them: decoding never panics,
//! and applying whatever decodes (or does not) to the payments machine never panics either:
//! a malformed command is recorded as malformed, deterministically, on every replica.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_payments::machine::{apply, decode_stamped, Applied, Command, MemStore};
use quorate_raft_core::FencingToken;

fuzz_target!(|data: &[u8]| {
    let _ = Command::decode(data);
    let _ = decode_stamped(data);
    let _ = Applied::decode(data);
    let mut store = MemStore::new();
    let token = FencingToken {
        term: 1,
        sequence: 1,
    };
    let first = apply(&mut store, 1, token, data);
    // The same bytes applied to a fresh machine give the same answer (determinism).
    let mut again = MemStore::new();
    assert_eq!(
        first.map(|a| a.encode()).map_err(|e| e.to_string()),
        apply(&mut again, 1, token, data)
            .map(|a| a.encode())
            .map_err(|e| e.to_string())
    );
});
