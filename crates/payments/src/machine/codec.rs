//! Wire forms: how commands and outputs are framed as bytes, and what goes wrong decoding them.
//!
//! Commands and outputs are Rust enums whose variants are prost messages. On the wire each is
//! an envelope message with one `oneof` field, exactly what `protoc` would produce for
//! `message Envelope { oneof variant { Submit submit = 1; ... } }`. Encoding writes that
//! framing directly from a borrowed variant (no copy into an envelope); decoding goes through
//! a derived envelope type and moves the variant out.

/// Why bytes could not be decoded into a command or an output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid protobuf encoding of the expected message.
    #[error("invalid protobuf encoding of {what}: {source}")]
    Protobuf {
        /// What was being decoded (`"command"`, `"applied output"`).
        what: &'static str,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
    /// The envelope is valid but carries no variant this version knows: it is empty, or it
    /// was written by a newer version.
    #[error("{what} carries no variant this version knows")]
    UnknownVariant {
        /// What was being decoded.
        what: &'static str,
    },
}

/// Encodes `message` as field `tag` (length-delimited wire type) of an envelope message:
/// the field key, the length, the message bytes. Tags must be below 16 so the key is one byte.
pub(crate) fn encode_variant(tag: u8, message: &impl prost::Message) -> bytes::Bytes {
    debug_assert!(tag > 0 && tag < 16, "one-byte field keys only");
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(1 + prost::length_delimiter_len(len) + len);
    buf.push((tag << 3) | 2);
    message
        .encode_length_delimited(&mut buf)
        .expect("a Vec grows as needed");
    bytes::Bytes::from(buf)
}
