//! Snapshots in the Ready loop: images read for followers and for backups, a leader's
//! snapshot installed and restored, and the log compacted behind the applied index
//! (automatically every `snapshot_count` entries, or when an operator asks).

use super::*;

impl<SM: StateMachine> Driver<SM> {
    /// Sends snapshots to followers that need entries this leader compacted. The core names
    /// the stored snapshot, which carries no image (the machine in RocksDB is the image): the
    /// machine's image is read on a blocking thread while the node goes on (see
    /// `StateMachine::image_reader`), and `images_read` sends it, with the index the image
    /// itself says it is of, which covers at least the stored snapshot. One read serves every
    /// follower of this Ready; none starts while another runs, or for a follower a snapshot
    /// still streams to (the core sends one again when it hears nothing back).
    pub(super) fn send_snapshots(&mut self, messages: Vec<Message>) -> Result<(), NodeError> {
        let messages: Vec<Message> = messages
            .into_iter()
            .filter(|m| !self.transport.snapshot_streaming(m.to))
            .collect();
        if messages.is_empty() || self.reading_image {
            return Ok(());
        }
        self.read_image(ImageFor::Followers(messages))?;
        self.reading_image = true;
        Ok(())
    }

    /// Has the machine's image read on a blocking thread while the node goes on; it comes
    /// back through `images_rx` with `purpose`.
    fn read_image(&self, purpose: ImageFor) -> Result<(), NodeError> {
        let read = self
            .sm
            .as_ref()
            .ok_or_else(|| NodeError::Internal("state machine lost".into()))?
            .image_reader();
        let done = self.images_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = done.send((purpose, read().map_err(|e| e.to_string())));
        });
        Ok(())
    }

    /// Reads an image for an operator's backup, on a blocking thread while the node goes on
    /// (`backup_read` answers once it is read). Backups do not count as snapshots being read
    /// for followers: they hold no entries back from compaction.
    pub(super) fn start_backup(
        &mut self,
        reply: oneshot::Sender<Result<Snapshot, NodeError>>,
    ) -> Result<(), NodeError> {
        self.read_image(ImageFor::Backup(reply))
    }

    /// The snapshot an image read off the loop makes: the image with the metadata of the
    /// index the image itself says it is of (for followers and for backups alike).
    fn snapshot_of(&self, image: Bytes) -> Result<Snapshot, NodeError> {
        let sm = self
            .sm
            .as_ref()
            .ok_or_else(|| NodeError::Busy("the state machine is busy".into()))?;
        let index = sm
            .image_index(&image)
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        if index == 0 {
            return Err(NodeError::Busy(
                "this node has applied nothing yet: its image holds nothing to send or back up"
                    .into(),
            ));
        }
        let meta = self.raw.snapshot_meta(index).map_err(|e| {
            NodeError::Busy(format!(
                "the log was compacted past the image of index {index} while it was read ({e})"
            ))
        })?;
        Ok(Snapshot { meta, data: image })
    }

    /// A backup's image is read: see [`Self::snapshot_of`].
    pub(super) fn backup_read(&self, image: Result<Bytes, String>) -> Result<Snapshot, NodeError> {
        let image = image.map_err(|e| NodeError::Internal(format!("read the image: {e}")))?;
        self.snapshot_of(image)
    }

    /// An image read for `messages` is ready: send it to each of their followers.
    pub(super) fn images_read(&mut self, messages: Vec<Message>, image: Result<Bytes, String>) {
        self.reading_image = false;
        let image = match image {
            Ok(image) => image,
            Err(e) => {
                tracing::error!("no snapshot sent: {e}");
                return;
            }
        };
        if image.len() as u64 > MAX_SNAPSHOT_BYTES {
            tracing::error!(
                bytes = image.len(),
                limit = MAX_SNAPSHOT_BYTES,
                "the state machine's image exceeds the snapshot limit: followers that need a \
                 snapshot cannot catch up (raise --snapshot-catch-up-entries, or replace them \
                 from a backup)"
            );
            return;
        }
        let snapshot = match self.snapshot_of(image) {
            Ok(snapshot) => snapshot,
            // (The log was compacted past the image meanwhile: the core asks again.)
            Err(e) => {
                tracing::warn!("no snapshot sent: {e}");
                return;
            }
        };
        for mut message in messages {
            if let Payload::SnapshotRequest(request) = &mut message.payload {
                tracing::info!(
                    to = message.to,
                    index = snapshot.meta.index,
                    bytes = snapshot.data.len(),
                    "sending a snapshot"
                );
                request.snapshot = snapshot.clone();
                self.config.metrics.count_snapshot(SnapshotEvent::Sent);
            }
            self.transport.send(message);
        }
    }

    /// A leader's snapshot must carry an image of exactly the index it claims: installing one
    /// cannot be undone, and an image of another index would silently diverge.
    pub(super) fn check_snapshot_image(&self, message: &Message) -> Result<(), String> {
        let Payload::SnapshotRequest(request) = &message.payload else {
            return Ok(());
        };
        let Some(sm) = self.sm.as_ref() else {
            return Err("the state machine is busy".into());
        };
        let claimed = request.snapshot.meta.index;
        match sm
            .image_index(&request.snapshot.data)
            .map_err(|e| e.to_string())?
        {
            index if index == claimed => Ok(()),
            index => Err(format!(
                "it claims index {claimed} but its image is of index {index}"
            )),
        }
    }

    /// Replaces the machine with a leader's snapshot the last Ready installed in the log.
    pub(super) async fn restore(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let mut sm = self
            .sm
            .take()
            .ok_or_else(|| NodeError::Internal("state machine lost".into()))?;
        let index = snapshot.meta.index;
        let result = sm.restore(&snapshot.data);
        let restored = sm.applied_index();
        self.sm = Some(sm);
        result.map_err(|e| NodeError::Internal(format!("restore the snapshot of {index}: {e}")))?;
        if restored != index {
            return Err(NodeError::Internal(format!(
                "the machine restored from the snapshot of index {index} says it applied {restored}"
            )));
        }
        self.snapshot_index = index;
        self.applied_tx.send_replace(index);
        // Proposals at or before it ended one way or another: their outcome is unknown here.
        if let Some(waiter) = self.membership_waiter.take_if(|w| w.index <= index) {
            let _ = waiter.reply.send(Err(NodeError::OutcomeUnknown {
                reason: format!("this node installed a snapshot of index {index}"),
            }));
        }
        let covered: Vec<Index> = self.proposals.range(..=index).map(|(&i, _)| i).collect();
        for i in covered {
            if let Some(Pending { reply, .. }) = self.proposals.remove(&i) {
                let _ = reply.send(Err(NodeError::OutcomeUnknown {
                    reason: format!("this node installed a snapshot of index {index}"),
                }));
            }
        }
        tracing::info!(index, "installed the leader's snapshot");
        self.config.metrics.count_snapshot(SnapshotEvent::Installed);
        Ok(())
    }

    /// Compacts the log once `snapshot_count` entries were applied since the last time,
    /// keeping `snapshot_catch_up_entries` behind the compaction point. The machine in
    /// RocksDB is the snapshot's image (a follower that needs one gets the machine's image of
    /// the moment, see `send_snapshots`), so the stored snapshot carries none.
    pub(super) async fn maybe_compact(&mut self) -> Result<(), NodeError> {
        let count = self.config.snapshot_count;
        let applied = self.sm.as_ref().map_or(0, |sm| sm.applied_index());
        if count == 0 || applied < self.snapshot_index.saturating_add(count) {
            return Ok(());
        }
        match self.compact(false).await {
            Ok(_) | Err(NodeError::Busy(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes a snapshot at the applied index and compacts the log behind it (see
    /// `maybe_compact`); `Busy` when it cannot now. `forced` (an operator's request) takes one
    /// even if the last is recent, and says so when it cannot.
    pub(super) async fn compact(&mut self, forced: bool) -> Result<SnapshotTaken, NodeError> {
        let applied = self.sm.as_ref().map_or(0, |sm| sm.applied_index());
        if applied == 0 {
            return Err(NodeError::Busy(
                "this node has applied nothing yet: there is nothing to snapshot".into(),
            ));
        }
        // Not while a snapshot is read or streams: a follower that installs it then needs the
        // entries after it, and a compaction now could take those away and send it back for
        // another snapshot (a transfer slower than the catch-up margin would never end).
        let streaming: Vec<NodeId> = self
            .transport
            .peer_ids()
            .into_iter()
            .filter(|&peer| self.transport.snapshot_streaming(peer))
            .collect();
        if self.reading_image || !streaming.is_empty() {
            return Err(NodeError::Busy(format!(
                "a snapshot is being sent to {streaming:?}: the entries after it must stay                  until the transfer ends"
            )));
        }
        let meta = match self.raw.snapshot_meta(applied) {
            Ok(meta) => meta,
            // A member that joined knows no membership before the entry that added it: it
            // compacts once it has applied that entry.
            Err(RaftError::InvalidConfig(why)) => {
                tracing::debug!(%why, "no compaction yet");
                return Err(NodeError::Busy(format!("no membership known yet ({why})")));
            }
            Err(e) => return Err(NodeError::Internal(format!("snapshot at {applied}: {e}"))),
        };
        let term = meta.term;
        if applied <= self.snapshot_index {
            // Nothing applied since the last one: it stands.
            return Ok(SnapshotTaken {
                index: self.snapshot_index,
                term,
                first_log_index: self.raw.first_index(),
            });
        }
        let up_to = applied
            .saturating_sub(self.config.snapshot_catch_up_entries)
            .max(self.raw.first_index() - 1);
        let snapshot = Snapshot {
            meta,
            data: Bytes::new(),
        };
        self.store
            .compact(&snapshot, up_to)
            .map_err(|e| NodeError::Internal(format!("compact the log: {e}")))?;
        tracing::info!(applied, up_to, forced, "compacted the log");
        self.config.metrics.count_snapshot(SnapshotEvent::Taken);
        self.snapshot_index = applied;
        Ok(SnapshotTaken {
            index: applied,
            term,
            first_log_index: up_to + 1,
        })
    }
}
