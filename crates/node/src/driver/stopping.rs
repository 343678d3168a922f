//! How the Ready loop stops: for good on a corrupt log (taking no further part), or
//! gracefully at shutdown (leadership handed over first, in-flight work finished).

use super::*;

impl<SM: StateMachine> Driver<SM> {
    /// A committed entry is in conflict: stop taking part in the cluster, keep everything as it
    /// is on disk, and say so loudly and in every answer.
    pub(super) fn stop_taking_part(&mut self, what: String) {
        let reason = format!(
            "{what}. This node no longer takes part in the cluster and refuses every request; \
             its data directory is kept as it is. Run `quoratectl split-brain report` to see \
             which members agree, and keep this directory for forensics"
        );
        tracing::error!(%reason, "CORRUPT: this node's state differs from the cluster's");
        let error = NodeError::Corrupt(reason.clone());
        for (_, Pending { reply, .. }) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, waiter) in std::mem::take(&mut self.reads) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        if let Some(waiter) = self.membership_waiter.take() {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        self.rpc_waiters.clear();
        self.corrupt = Some(reason);
    }

    /// Graceful shutdown: a leader hands leadership to the best follower first, so the cluster
    /// does not wait an election timeout for a new leader.
    pub(super) fn begin_stopping(&mut self) {
        self.stopping_since = Some(Instant::now());
        if self.role == Role::Leader {
            match self.raw.step_down() {
                Ok(target) => tracing::info!(target, "shutting down: handing leadership over"),
                Err(e) => tracing::info!(error = %e, "shutting down without a handover"),
            }
        }
    }

    pub(super) fn done_stopping(&self) -> bool {
        let Some(since) = self.stopping_since else {
            return false;
        };
        let grace = self.config.election_timeout.max(Duration::from_millis(500));
        let handed_over = self.role != Role::Leader;
        (handed_over && self.proposals.is_empty()) || since.elapsed() > grace
    }

    pub(super) fn finish(mut self, result: Result<(), NodeError>) -> Result<(), NodeError> {
        for (_, Pending { reply, .. }) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(NodeError::OutcomeUnknown {
                reason: "the node shut down before the write was applied".into(),
            }));
        }
        for (_, waiter) in std::mem::take(&mut self.reads) {
            let _ = waiter.reply.send(Err(NodeError::ShuttingDown));
        }
        if let Some(waiter) = self.membership_waiter.take() {
            let _ = waiter.reply.send(Err(NodeError::OutcomeUnknown {
                reason: "the node shut down during the membership change".into(),
            }));
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "flush at shutdown failed");
        }
        let mut status = self.status_tx.borrow().clone();
        status.stopping = true;
        self.status_tx.send_replace(status);
        result
    }
}
