//! The on-disk formats of the log store (`quorate-log-store`), as pure functions: encoding and
//! decoding of log entries ([`entry`]) and of the metadata records ([`meta`]: hard state,
//! membership, identity, log base, snapshot). Decoders return an error for any input they
//! cannot read, never panic: the fuzz targets in `fuzz/` hold them to it.
#![deny(missing_docs)]

pub mod entry;
pub mod meta;
pub mod varint;
