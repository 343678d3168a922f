//! `Admin.Snapshot` and `Admin.SaveSnapshot`: a snapshot now, and a backup streamed in chunks.

use bytes::Bytes;
use quorate_node::NodeError;
use quorate_proto::admin as pb;
use quorate_raft_core::Snapshot;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::AdminService;

/// The most image bytes one `SnapshotChunk` carries: well under gRPC's default 4 MiB message
/// limit, so any client reads the stream with its default settings.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The stream `SaveSnapshot` answers with.
pub type ChunkStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

impl AdminService {
    /// Takes a snapshot now and says what it freed.
    pub(crate) async fn snapshot_now(&self) -> Result<pb::SnapshotResponse, Status> {
        let (_, before) = self.sizes().await;
        let taken = self
            .node()
            .take_snapshot()
            .await
            .map_err(|e| e.to_status())?;
        // The space comes back on the store's compaction thread: wait for it, so `after` says
        // what this snapshot freed.
        let store = self.inner.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.wait_for_log_space()).await;
        let (_, after) = self.sizes().await;
        tracing::info!(
            index = taken.index,
            first_log_index = taken.first_log_index,
            "snapshot taken at an operator's request"
        );
        Ok(pb::SnapshotResponse {
            index: taken.index,
            term: taken.term,
            first_log_index: taken.first_log_index,
            log_size_bytes_before: before,
            log_size_bytes_after: after,
        })
    }

    /// Reads a backup image and cuts it into the `SaveSnapshot` stream.
    pub(crate) async fn backup_stream(&self) -> Result<ChunkStream, Status> {
        let node = self.node();
        let snapshot = node.backup().await.map_err(|e| e.to_status())?;
        let index = snapshot.meta.index;
        let events_hash = self
            .image_hash(snapshot.data.clone())
            .await
            .map_err(|e| NodeError::Internal(format!("hash the events up to {index}: {e}")))
            .map_err(|e| e.to_status())?;
        let header = pb::SnapshotHeader {
            index,
            term: snapshot.meta.term,
            cluster_id: node.config().cluster_id,
            member_id: node.id(),
            voters: snapshot.meta.conf_state.voters.iter().copied().collect(),
            learners: snapshot.meta.conf_state.learners.iter().copied().collect(),
            image_bytes: snapshot.data.len() as u64,
            created_unix_ms: quorate_node::wall_clock_ms(),
            events_hash,
        };
        tracing::info!(
            index,
            bytes = snapshot.data.len(),
            "streaming a backup at an operator's request"
        );
        let chunks = backup_chunks(header, &snapshot);
        Ok(Box::pin(futures_util::stream::iter(chunks.map(Ok))))
    }
}

/// The messages of a backup: the header, the image in chunks of at most [`CHUNK_BYTES`]
/// (slices of it, not copies), then the image's SHA-256.
pub fn backup_chunks(
    header: pb::SnapshotHeader,
    snapshot: &Snapshot,
) -> impl Iterator<Item = pb::SnapshotChunk> + Send + 'static {
    use pb::snapshot_chunk::Part;
    let image: Bytes = snapshot.data.clone();
    let sha256 = Bytes::copy_from_slice(&Sha256::digest(&image));
    let pieces = (0..image.len())
        .step_by(CHUNK_BYTES)
        .map(move |start| image.slice(start..(start + CHUNK_BYTES).min(image.len())));
    std::iter::once(Part::Header(header))
        .chain(pieces.map(Part::Data))
        .chain(std::iter::once(Part::Sha256(sha256)))
        .map(|part| pb::SnapshotChunk { part: Some(part) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::snapshot_chunk::Part;
    use quorate_raft_core::SnapshotMeta;

    fn snapshot(bytes: usize) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index: 7,
                term: 2,
                ..SnapshotMeta::default()
            },
            data: (0..bytes)
                .map(|i| (i * 31 % 251) as u8)
                .collect::<Vec<_>>()
                .into(),
        }
    }

    #[test]
    fn a_backup_is_a_header_the_image_in_bounded_chunks_and_its_digest() {
        for size in [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES - 5] {
            let snapshot = snapshot(size);
            let header = pb::SnapshotHeader {
                index: 7,
                image_bytes: size as u64,
                ..Default::default()
            };
            let parts: Vec<Part> = backup_chunks(header.clone(), &snapshot)
                .map(|c| c.part.expect("every chunk has a part"))
                .collect();
            assert_eq!(parts.first(), Some(&Part::Header(header)), "{size}");
            let Some(Part::Sha256(digest)) = parts.last() else {
                panic!("{size}: the last chunk is not the digest");
            };
            let mut image = Vec::new();
            for part in &parts[1..parts.len() - 1] {
                let Part::Data(data) = part else {
                    panic!("{size}: a chunk between header and digest is not data");
                };
                assert!(!data.is_empty() && data.len() <= CHUNK_BYTES, "{size}");
                image.extend_from_slice(data);
            }
            assert_eq!(image, snapshot.data, "{size}: the chunks rebuild the image");
            assert_eq!(digest.as_ref(), Sha256::digest(&image).as_slice(), "{size}");
            assert_eq!(parts.len(), 2 + size.div_ceil(CHUNK_BYTES), "{size}");
        }
    }
}
