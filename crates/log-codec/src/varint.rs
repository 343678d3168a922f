//! LEB128 variable-length integers: the number encoding of every stored record.
//!
//! Terms, sequences, indexes and node ids are small most of the time, so one or two bytes
//! usually suffice instead of eight; a `u64` never takes more than ten.

/// The most bytes a `u64` takes.
const MAX_LEN: usize = 10;

/// Appends `value` to `out`.
pub fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads one integer from the front of `input` and advances it past the integer.
pub fn take(input: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for (position, &byte) in input.iter().enumerate().take(MAX_LEN) {
        let bits = u64::from(byte & 0x7f);
        if position == MAX_LEN - 1 && byte > 1 {
            return Err("integer overflows 64 bits".to_string());
        }
        value |= bits << (7 * position);
        if byte & 0x80 == 0 {
            // [`put`] never ends an integer with a zero byte after another: such a byte is
            // damage (a flipped continuation bit), not a second spelling of the same number.
            if byte == 0 && position > 0 {
                return Err("integer with a redundant trailing zero byte".to_string());
            }
            *input = &input[position + 1..];
            return Ok(value);
        }
    }
    if input.len() >= MAX_LEN {
        Err("integer overflows 64 bits".to_string())
    } else {
        Err("truncated integer".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_with_their_expected_lengths() {
        for (value, len) in [
            (0u64, 1usize),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::from(u32::MAX), 5),
            (u64::MAX, 10),
        ] {
            let mut out = Vec::new();
            put(&mut out, value);
            assert_eq!(out.len(), len, "{value}");
            out.push(0xaa);
            let mut input = out.as_slice();
            assert_eq!(take(&mut input), Ok(value));
            assert_eq!(input, &[0xaa], "take stops right after the integer");
        }
    }

    #[test]
    fn a_truncated_integer_is_refused_and_the_input_is_not_advanced() {
        let bytes = [0x80u8, 0x80];
        let mut input = &bytes[..];
        assert_eq!(take(&mut input), Err("truncated integer".to_string()));
        assert_eq!(input.len(), 2);
    }

    /// Found by the `log_entry` fuzz target: `[0xe6, 0x00]` read as 102, which is written
    /// `[0x66]`, so a decoded entry encoded back to other bytes than were read.
    #[test]
    fn an_overlong_integer_is_refused() {
        for overlong in [&[0xe6u8, 0x00][..], &[0x80, 0x00], &[0x81, 0x80, 0x00]] {
            let e = take(&mut &overlong[..]).unwrap_err();
            assert!(e.contains("redundant"), "{overlong:?}: {e}");
        }
        assert_eq!(
            take(&mut &[0x00u8][..]),
            Ok(0),
            "zero itself is one zero byte"
        );
    }

    #[test]
    fn an_integer_beyond_64_bits_is_refused() {
        let mut too_long = vec![0xffu8; 9];
        too_long.push(0x02);
        assert!(take(&mut &too_long[..]).is_err());
        let eleven = [0x80u8; 11];
        assert!(take(&mut &eleven[..]).is_err());
    }
}
