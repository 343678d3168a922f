//! Elections: pre-vote, campaigns, granting votes and counting them (Raft §5.2, §5.4.1;
//! thesis §9.6 for pre-vote).

use crate::error::Result;
use crate::message::{Payload, VoteRejection, VoteRequest, VoteResponse};
use crate::quorum::VoteResult;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{EntryKind, NodeId, Role, Term};

#[cfg(feature = "bug-injection")]
use crate::config::InjectedBug;

impl<S: Storage> Raft<S> {
    /// Starts an election: a pre-vote round first (unless disabled, or the campaign follows a
    /// leadership transfer, whose target is known to be wanted).
    pub(crate) fn start_election(&mut self, leadership_transfer: bool) -> Result<()> {
        if !self.may_elect() {
            return Ok(());
        }
        if self.config.pre_vote && !leadership_transfer {
            self.become_pre_candidate();
            self.request_votes(true, false)
        } else {
            self.become_candidate();
            self.request_votes(false, leadership_transfer)
        }
    }

    fn become_pre_candidate(&mut self) {
        // A pre-candidate keeps its term and vote: nothing it does here is persistent.
        self.become_follower(self.term, None);
        self.role = Role::PreCandidate;
        self.ticks_since_leader_contact = u32::MAX;
        self.events.pre_elections_started += 1;
    }

    fn become_candidate(&mut self) {
        self.become_follower(self.term + 1, None);
        self.role = Role::Candidate;
        self.vote = Some(self.id);
        self.ticks_since_leader_contact = u32::MAX;
        self.events.elections_started += 1;
    }

    /// Sends (pre-)vote requests to every other voter and counts this node's own vote.
    fn request_votes(&mut self, pre_vote: bool, leadership_transfer: bool) -> Result<()> {
        let term = if pre_vote { self.term + 1 } else { self.term };
        let last_log_index = self.log.last_index();
        let last_log_term = self.log.last_term()?;
        let me = self.id;
        let voters = self.tracker.voter_ids();
        for &voter in voters.iter().filter(|&&v| v != me) {
            let request = VoteRequest {
                pre_vote,
                last_log_index,
                last_log_term,
                leadership_transfer,
                request_id: self.next_request_id(),
            };
            self.send(voter, term, Payload::VoteRequest(request));
        }
        self.tracker.record_vote(self.id, true);
        #[cfg(feature = "bug-injection")]
        if self.config.has_bug(InjectedBug::ElectionWithoutQuorum) {
            // The incident's bug: ask for votes, then act as if they had all been granted.
            return self.election_won(pre_vote, leadership_transfer);
        }
        if self.tracker.tally() == VoteResult::Won {
            self.election_won(pre_vote, leadership_transfer)?;
        }
        Ok(())
    }

    fn election_won(&mut self, pre_vote: bool, leadership_transfer: bool) -> Result<()> {
        if pre_vote {
            self.become_candidate();
            self.request_votes(false, leadership_transfer)
        } else {
            self.become_leader()
        }
    }

    /// Takes over: reset every follower's progress, append an empty entry of the new term (the
    /// only way to commit, and so to learn, everything before it) and announce it.
    pub(crate) fn become_leader(&mut self) -> Result<()> {
        debug_assert!(self.role == Role::Candidate || cfg!(feature = "bug-injection"));
        let term = self.term;
        self.become_follower(term, None);
        self.role = Role::Leader;
        self.leader_id = Some(self.id);
        self.events.elections_won += 1;
        self.note_leader();
        self.quorum_lost = false;
        self.next_sequence = 1;
        let last = self.log.last_index();
        self.tracker.reset_progress(last + 1);
        let persisted = self.log.persisted;
        // The first confirmation round rides on the announcement, so the lease and waiting
        // reads can be confirmed by the first answers.
        let round = self.lease.start_round(self.now_tick);
        if let Some(me) = self.tracker.progress.get_mut(&self.id) {
            me.match_index = persisted;
            me.acked_round = round;
            me.become_replicate();
        }
        self.append_local(EntryKind::Noop, bytes::Bytes::new())?;
        self.broadcast_append()?;
        // A single-voter cluster commits as soon as the entry is persisted (in `advance`).
        Ok(())
    }

    /// Answers a (pre-)vote request. The term has been reconciled already.
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        msg_term: Term,
        req: VoteRequest,
    ) -> Result<()> {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader_id.is_none())
            || (req.pre_vote && msg_term > self.term);
        // Leader stickiness holds whatever the request's term: a node can reach a later term
        // without a leader (a refusal from a newer node, say) while it still honours the lease
        // of the leader it acknowledged. Checking only later-term requests (as on arrival)
        // would let such a node vote inside that lease.
        let sticky = !req.leadership_transfer
            && self.vote != Some(from)
            && self.leader_id != Some(from)
            && self.leader_recently_heard();
        let rejection = if !self.may_vote() {
            Some(VoteRejection::Rejoining)
        } else if sticky {
            Some(VoteRejection::LeaderAlive)
        } else if !can_vote {
            Some(VoteRejection::AlreadyVoted)
        } else if !self
            .log
            .is_up_to_date(req.last_log_index, req.last_log_term)?
        {
            Some(VoteRejection::StaleLog)
        } else {
            None
        };
        let granted = rejection.is_none();
        if !granted {
            if req.pre_vote {
                self.events.pre_votes_refused += 1;
            } else {
                self.events.votes_refused += 1;
            }
        }
        if granted && !req.pre_vote {
            // Granting resets the timer so this node does not compete with the candidate it
            // just voted for. The vote is persisted before the response leaves (Ready order).
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        let response = VoteResponse {
            pre_vote: req.pre_vote,
            granted,
            rejection,
            request_id: req.request_id,
        };
        // A grant is for the requested term; a refusal carries ours so a stale candidate
        // can catch up.
        let term = if granted { msg_term } else { self.term };
        self.send(from, term, Payload::VoteResponse(response));
        Ok(())
    }

    /// Counts a vote.
    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        msg_term: Term,
        resp: VoteResponse,
    ) -> Result<()> {
        let counts = match self.role {
            Role::PreCandidate if resp.pre_vote => {
                if resp.granted {
                    msg_term == self.term + 1
                } else {
                    msg_term == self.term
                }
            }
            Role::Candidate if !resp.pre_vote => msg_term == self.term,
            _ => false,
        };
        if !counts {
            return Ok(());
        }
        self.tracker.record_vote(from, resp.granted);
        match self.tracker.tally() {
            VoteResult::Won => self.election_won(resp.pre_vote, false),
            VoteResult::Lost => {
                self.become_follower(self.term, None);
                Ok(())
            }
            VoteResult::Pending => Ok(()),
        }
    }
}
