//! A simulated node's life: crashes that lose what was not synced, lost disks, restarts,
//! and snapshots taken and installed.

use super::*;

impl SimNode {
    /// The process dies: unsynced writes, queued inputs and volatile state are lost.
    pub fn crash(&mut self) {
        if let Some(raw) = self.raw.take() {
            let mut disk = raw.store().clone();
            disk.crash();
            self.disk = Some(disk);
        }
        self.in_progress = None;
        self.inbox.clear();
        self.proposals.clear();
        self.reads.clear();
        self.machine = MemStore::new();
        self.applied_index = 0;
        self.expiry = expiry_task(&self.config);
        self.deferred_expiry = None;
        self.leader_renewals.clear();
        self.role = Role::Follower;
        self.pending_transfer = None;
        self.paused = false;
        self.sync_done_while_paused = false;
        self.after_pause = false;
        self.incarnation += 1;
    }

    /// The machine dies and its disk is replaced by an empty one; the operator will start it
    /// again as `mode` (`--initial-cluster-state`).
    pub fn lose_disk(&mut self, mode: ClusterState) {
        self.crash();
        self.disk = None;
        self.disk_lost = Some(mode);
    }

    /// Starts a node whose disk was lost on an empty disk holding only `hard_state` (what
    /// `bootstrap::decide` said to write; nothing for a new cluster), with the bootstrap
    /// membership, or with none when it joins as a new member (`joining`).
    pub fn start_on_new_disk(&mut self, hard_state: Option<HardState>, joining: bool) {
        if joining {
            self.conf = ConfState::default();
        }
        let mut disk = SimStorage::new(self.conf.clone());
        if let Some(hard_state) = hard_state {
            disk.persist(Some(&hard_state), &[], true)
                .expect("a hard state without entries is always valid");
        }
        self.disk_lost = None;
        self.disk = Some(disk);
        self.restart();
    }

    /// The process starts again from its disk; the state machine replays the log.
    pub fn restart(&mut self) {
        if let Some(disk) = self.disk.take() {
            // The machine comes back from the disk's snapshot and replays the log after it.
            let snapshot = disk.snapshot().expect("a MemStorage snapshot");
            self.machine = MemStore::from_image(&snapshot.data).expect("this node wrote the image");
            self.applied_index = snapshot.meta.index;
            let raw = RawNode::new(self.config.clone(), disk, snapshot.meta.index)
                .expect("restart from disk");
            self.raw = Some(raw);
            self.started_at = self.now;
        }
    }

    /// Snapshots the machine at `wanted` if the core allows, else as far as the machine
    /// applied, and compacts the log up to `margin` entries behind it (left for slow
    /// followers). A real driver does this on a background task while the node runs, so it
    /// may happen in the middle of a Ready. Checks that the image is of the index it claims
    /// (invariant `snapshot-matches-state`).
    pub fn take_snapshot(&mut self, wanted: Index, margin: u64, fx: &mut Effects) {
        if self.paused {
            return;
        }
        let Some(raw) = self.raw.as_mut() else { return };
        let meta = match raw.snapshot_meta(wanted) {
            Err(Error::SnapshotBeyondApplied { applied, .. }) => raw.snapshot_meta(applied),
            other => other,
        };
        let Ok(meta) = meta else { return };
        let stored = raw
            .store()
            .snapshot()
            .expect("a MemStorage snapshot")
            .meta
            .index;
        if meta.index <= stored {
            return; // nothing new
        }
        let up_to = meta
            .index
            .saturating_sub(margin)
            .max(raw.store().first_index() - 1);
        let data = Bytes::from(self.machine.export_image());
        let image_index = machine::image_applied_index(&data).expect("an image this node made");
        if image_index != meta.index {
            fx.violations.push((
                "snapshot-matches-state",
                format!(
                    "node {} took a snapshot claiming index {} (term {}) of a machine that \
                     applied up to {image_index}",
                    self.id, meta.index, meta.term
                ),
            ));
        }
        let taken = (meta.index, meta.term);
        raw.store_mut()
            .compact(&Snapshot { meta, data }, up_to)
            .expect("a compaction the core allowed fits the log");
        fx.snapshot_taken = Some(taken);
    }

    /// Replaces the machine with the leader's snapshot that the last Ready installed.
    /// Checks that it never rewinds what the machine applied (invariant
    /// `snapshot-never-rewinds`).
    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot, fx: &mut Effects) {
        let index = snapshot.meta.index;
        if index < self.applied_index {
            fx.violations.push((
                "snapshot-never-rewinds",
                format!(
                    "node {} replaced its machine, which had applied up to {}, with a \
                     snapshot of index {index}",
                    self.id, self.applied_index
                ),
            ));
        }
        self.machine = MemStore::from_image(&snapshot.data).expect("the leader's image");
        self.applied_index = index;
        // Whatever was proposed at or before the snapshot ended one way or another.
        let covered: Vec<Index> = self.proposals.range(..=index).map(|(&i, _)| i).collect();
        for i in covered {
            if let Some(p) = self.proposals.remove(&i) {
                fx.responses.push(Response {
                    client: p.client,
                    op_id: p.op_id,
                    attempt: p.attempt,
                    reply: Reply::Unknown,
                });
            }
        }
        fx.snapshot_installed = Some((index, snapshot.meta.term));
    }
}
