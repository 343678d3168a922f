//! Linearizable reads without writing to the log: ReadIndex (Raft thesis §6.4) and lease reads.
//!
//! A read is answered with an index: once the state machine has applied that index, the reader
//! may serve the read from it. The leader records its commit index, confirms with a quorum that
//! it was still leader after the read arrived (a heartbeat round), and answers. A new leader
//! first waits until an entry of its own term is committed, since only then does it know the
//! true commit index. With a valid lease the confirmation round is skipped.
//!
//! Reads that arrive while a `Ready` is being processed share one confirmation round, and a
//! follower forwards them to its leader as one request: every read in the batch began before
//! the request left, so the index the leader confirms for the request serves each of them.

use std::collections::{BTreeMap, VecDeque};

use crate::error::{Error, Result};
use crate::message::{Payload, ReadIndexRequest, ReadIndexResponse, ReadMode};
use crate::quorum;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{Index, NodeId, Role};

/// The answer to a read-index request, handed out in a `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The id the caller gave the read.
    pub read_id: u64,
    /// Serve the read once the applied index reaches this; `None` if leadership could not be
    /// confirmed (the leader stepped down or this node lost its leader): retry elsewhere.
    pub index: Option<Index>,
}

/// Who asked for a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Requester {
    /// A client of this node.
    Local,
    /// A follower, on behalf of one of its clients.
    Peer { id: NodeId, request_id: u64 },
}

#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    read_id: u64,
    /// The commit index when the read arrived.
    index: Index,
    /// The confirmation round that must be acknowledged by a quorum.
    round: u64,
    requester: Requester,
}

/// Reads a leader has not answered yet.
#[derive(Clone, Debug, Default)]
pub struct ReadQueue {
    /// Waiting for their round, in round order.
    pending: VecDeque<PendingRead>,
    /// Arrived before an entry of the current term was committed.
    waiting_for_commit: Vec<(u64, ReadMode, Requester)>,
    /// Some pending read needs a round that has not been started yet.
    pub(crate) needs_round: bool,
    /// A follower's reads to forward with the next `Ready`, as one request per mode.
    pub(crate) to_forward: Vec<(u64, ReadMode)>,
    /// A follower's forwarded batches, by the id the request carried (the batch's first read
    /// id), waiting for the answer.
    forwarded: BTreeMap<u64, Vec<u64>>,
}

/// Forwarded batches a follower keeps waiting for an answer; beyond this the oldest are
/// refused (their callers have long given up: the leader answers within a round trip).
const MAX_FORWARDED_BATCHES: usize = 1024;

#[allow(clippy::len_without_is_empty)]
impl ReadQueue {
    /// Reads not answered yet.
    pub fn len(&self) -> usize {
        self.pending.len()
            + self.waiting_for_commit.len()
            + self.to_forward.len()
            + self.forwarded.values().map(Vec::len).sum::<usize>()
    }
}

impl<S: Storage> Raft<S> {
    /// Asks for a read index. The answer comes as a [`ReadState`] in a later `Ready`.
    pub fn read_index(&mut self, read_id: u64, mode: ReadMode) -> Result<()> {
        if self.role == Role::Leader {
            return self.leader_read(read_id, mode, Requester::Local);
        }
        match self.leader_id {
            Some(_) => {
                // Forwarded with the next Ready, together with every other read until then.
                self.reads.to_forward.push((read_id, mode));
                Ok(())
            }
            None => Err(Error::NotLeader { leader_hint: None }),
        }
    }

    /// Sends the reads gathered since the last Ready to the leader, one request per mode (a
    /// node that became leader meanwhile serves them itself; one that lost its leader refuses
    /// them).
    pub(crate) fn forward_reads(&mut self) -> Result<()> {
        if self.reads.to_forward.is_empty() {
            return Ok(());
        }
        let reads = std::mem::take(&mut self.reads.to_forward);
        if self.role == Role::Leader {
            for (read_id, mode) in reads {
                self.leader_read(read_id, mode, Requester::Local)?;
            }
            return Ok(());
        }
        let Some(leader) = self.leader_id else {
            for (read_id, _) in reads {
                self.read_states.push(ReadState {
                    read_id,
                    index: None,
                });
            }
            return Ok(());
        };
        for mode in [ReadMode::Quorum, ReadMode::Lease] {
            let read_ids: Vec<u64> = reads
                .iter()
                .filter(|(_, m)| *m == mode)
                .map(|(id, _)| *id)
                .collect();
            if read_ids.is_empty() {
                continue;
            }
            // The batch is known by its first read's id: the driver never reuses a read id
            // while a node runs, so an answer to a batch sent before a restart cannot be taken
            // for one sent after (ids restart with the node, but answers to an earlier
            // incarnation's requests go unanswered or arrive on its closed connections).
            let batch = read_ids[0];
            self.reads.forwarded.insert(batch, read_ids);
            while self.reads.forwarded.len() > MAX_FORWARDED_BATCHES {
                if let Some((_, abandoned)) = self.reads.forwarded.pop_first() {
                    for read_id in abandoned {
                        self.read_states.push(ReadState {
                            read_id,
                            index: None,
                        });
                    }
                }
            }
            let request = ReadIndexRequest {
                read_id: batch,
                mode,
                request_id: self.next_request_id(),
            };
            self.send(leader, self.term, Payload::ReadIndexRequest(request));
        }
        Ok(())
    }

    /// The leader answered a forwarded batch: the index serves every read in it.
    pub(crate) fn handle_read_index_response(&mut self, response: ReadIndexResponse) {
        if let Some(read_ids) = self.reads.forwarded.remove(&response.read_id) {
            for read_id in read_ids {
                self.read_states.push(ReadState {
                    read_id,
                    index: response.index,
                });
            }
        }
    }

    /// Whether a lease read may be answered right now.
    pub(crate) fn lease_valid(&self) -> bool {
        self.role == Role::Leader && self.transfer.is_none() && self.lease.is_valid(self.now_tick)
    }

    fn leader_read(&mut self, read_id: u64, mode: ReadMode, requester: Requester) -> Result<()> {
        if !self.committed_in_term {
            self.reads
                .waiting_for_commit
                .push((read_id, mode, requester));
            return Ok(());
        }
        let index = self.log.committed;
        let single_voter = quorum::is_quorum(&self.tracker.conf, |id| id == self.id);
        let lease_ok = mode == ReadMode::Lease && self.config.lease_reads && self.lease_valid();
        if single_voter || lease_ok {
            self.answer_read(read_id, Some(index), requester);
            return Ok(());
        }
        self.reads.pending.push_back(PendingRead {
            read_id,
            index,
            round: self.lease.round() + 1,
            requester,
        });
        self.reads.needs_round = true;
        Ok(())
    }

    fn answer_read(&mut self, read_id: u64, index: Option<Index>, requester: Requester) {
        match requester {
            Requester::Local => self.read_states.push(ReadState { read_id, index }),
            Requester::Peer { id, request_id } => {
                let response = ReadIndexResponse {
                    read_id,
                    index,
                    request_id,
                };
                self.send(id, self.term, Payload::ReadIndexResponse(response));
            }
        }
    }

    /// A follower forwarded a read.
    pub(crate) fn handle_read_index_request(
        &mut self,
        from: NodeId,
        req: ReadIndexRequest,
    ) -> Result<()> {
        let requester = Requester::Peer {
            id: from,
            request_id: req.request_id,
        };
        if self.role == Role::Leader {
            self.leader_read(req.read_id, req.mode, requester)
        } else {
            self.answer_read(req.read_id, None, requester);
            Ok(())
        }
    }

    /// Some peer acknowledged a round: extend the lease and answer reads whose round a quorum
    /// has now confirmed.
    pub(crate) fn on_round_acked(&mut self) {
        let confirmed = self.tracker.quorum_acked_round();
        let lease_ticks = if self.config.lease_reads {
            self.config.lease_ticks()
        } else {
            0
        };
        if !self.lease.confirm(confirmed, lease_ticks) {
            return;
        }
        while self
            .reads
            .pending
            .front()
            .is_some_and(|read| read.round <= confirmed)
        {
            if let Some(read) = self.reads.pending.pop_front() {
                self.answer_read(read.read_id, Some(read.index), read.requester);
            }
        }
    }

    /// The first entry of the term was committed: serve the reads that waited for it.
    pub(crate) fn serve_reads_waiting_for_commit(&mut self) -> Result<()> {
        for (read_id, mode, requester) in std::mem::take(&mut self.reads.waiting_for_commit) {
            self.leader_read(read_id, mode, requester)?;
        }
        Ok(())
    }

    /// Leadership is lost: refuse every read not yet answered.
    pub(crate) fn fail_pending_reads(&mut self) {
        self.reads.needs_round = false;
        for read in std::mem::take(&mut self.reads.pending) {
            self.answer_read(read.read_id, None, read.requester);
        }
        for (read_id, _, requester) in std::mem::take(&mut self.reads.waiting_for_commit) {
            self.answer_read(read_id, None, requester);
        }
    }
}
