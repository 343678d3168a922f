//! The machine's image: every record of a store at one applied index, as a stream of
//! self-delimiting records, so that a snapshot can be cut into chunks at any record boundary
//! and a new replica restored from it.
//!
//! Each record is one length-delimited `ImageRecord` (a protobuf message with a `oneof`: meta,
//! payment, event, idempotency record or lease). The meta record comes first and says which
//! index the image is of (`MetaRecord::applied_index`); the order of the rest does not matter.

use prost::Message;

use super::codec::DecodeError;
use super::compaction::store_hash_events;
use super::mem_store::MemStore;
use super::records::{EventRecord, IdempotencyRecord, LeaseRecord, MetaRecord, PaymentRecord};
use super::store::{Store, StoreError};

/// One record of an image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageRecord {
    /// The record.
    #[prost(oneof = "ImageItem", tags = "1, 2, 3, 4, 5")]
    pub item: Option<ImageItem>,
}

/// What an [`ImageRecord`] holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ImageItem {
    /// The machine's bookkeeping (first in an image).
    #[prost(message, tag = "1")]
    Meta(MetaRecord),
    /// A payment.
    #[prost(message, tag = "2")]
    Payment(PaymentRecord),
    /// An event.
    #[prost(message, tag = "3")]
    Event(EventRecord),
    /// An idempotency record.
    #[prost(message, tag = "4")]
    Idempotency(IdempotencyRecord),
    /// A lease.
    #[prost(message, tag = "5")]
    Lease(LeaseRecord),
}

/// Appends `item` to an image being written.
pub fn push_image_record(out: &mut Vec<u8>, item: ImageItem) {
    ImageRecord { item: Some(item) }
        .encode_length_delimited(out)
        .expect("a Vec grows as needed");
}

/// Takes the next record off the front of `image`.
fn next_record(image: &mut &[u8]) -> Result<ImageRecord, DecodeError> {
    ImageRecord::decode_length_delimited(image).map_err(|source| DecodeError::Protobuf {
        what: "machine image record",
        source,
    })
}

/// Writes every record of `image` into `store`, which must be empty, and returns the meta
/// record (`None` for the image of a machine that applied nothing). Nothing is validated
/// beyond the encoding: an image comes from a replica of the same log.
pub fn restore_image<S: Store + ?Sized>(
    store: &mut S,
    mut image: &[u8],
) -> Result<Option<MetaRecord>, DecodeError> {
    let mut meta = None;
    while !image.is_empty() {
        let record = next_record(&mut image)?;
        match record.item {
            Some(ImageItem::Meta(m)) => {
                meta = Some(m.clone());
                store.put_meta(m);
            }
            Some(ImageItem::Payment(p)) => store.put_payment(p),
            Some(ImageItem::Event(e)) => store.put_event(e),
            Some(ImageItem::Idempotency(i)) => store.put_idempotency(i),
            Some(ImageItem::Lease(l)) => store.put_lease(l),
            None => {
                return Err(DecodeError::UnknownVariant {
                    what: "machine image record",
                })
            }
        }
    }
    Ok(meta)
}

/// The event-log hash an image holds at the index it is of, as `(index, events, hash)`: what
/// `hash_events` gives on a machine restored from it, computed without one.
pub fn image_events_hash(image: &[u8]) -> Result<(u64, u64, u64), StoreError> {
    let mut store = MemStore::new();
    let meta = restore_image(&mut store, image)
        .map_err(|e| StoreError::Inconsistent(format!("undecodable image: {e}")))?
        .unwrap_or_default();
    let (events, hash) = store_hash_events(&store, meta.applied_index)?;
    Ok((meta.applied_index, events, hash))
}

/// The applied index an image is of (its meta record's, which must come first), without
/// decoding the rest; 0 for the empty image of a machine that applied nothing.
pub fn image_applied_index(mut image: &[u8]) -> Result<u64, DecodeError> {
    if image.is_empty() {
        return Ok(0);
    }
    let record = next_record(&mut image)?;
    match record.item {
        Some(ImageItem::Meta(meta)) => Ok(meta.applied_index),
        _ => Err(DecodeError::UnknownVariant {
            what: "machine image (its first record must be the meta record)",
        }),
    }
}
