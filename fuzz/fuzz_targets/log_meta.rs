//! The metadata records (hard state, membership, identity, log base, snapshot), as read back
//! from disk: the first byte picks the record, the rest is its value. Decoding never panics;
//! what it accepts encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_log_codec::meta::*;

fuzz_target!(|data: &[u8]| {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(h) = decode_hard_state(value) {
                assert_eq!(encode_hard_state(&h), value);
            }
        }
        1 => {
            if let Ok(c) = decode_conf_state(value) {
                assert_eq!(decode_conf_state(&encode_conf_state(&c)), Ok(c));
            }
        }
        2 => {
            if let Ok(i) = decode_identity(value) {
                assert_eq!(encode_identity(&i), value);
            }
        }
        3 => {
            if let Ok((index, term)) = decode_log_base(value) {
                assert_eq!(encode_log_base(index, term), value);
            }
        }
        _ => {
            if let Ok(s) = decode_snapshot(value) {
                assert_eq!(decode_snapshot(&encode_snapshot(&s)).as_ref(), Ok(&s));
            }
        }
    }
});
