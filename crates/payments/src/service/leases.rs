//! `quorate.payments.v1.Leases`, and the leader's lease expiry timers.
//!
//! Expiry is decided by the leader and replicated: when the leader's timer for a lease fires
//! it proposes `ExpireLease`, which takes effect only if the lease was not renewed meanwhile.
//! A new leader does not know when its predecessor's timers started, so it arms every lease
//! it sees before it has caught up (applied its own term's first entry), and at that scan, at
//! `ttl + election timeout` from when it sees it: leases are extended, never shortened. The
//! timer rules live in [`LeaseTimers`] (pure, shared with the simulator); this task only feeds
//! it the node's role, the held leases and the time, and proposes what it says is due.

use std::time::{Duration, Instant};

use quorate_proto::payments as pb;
use quorate_proto::payments::leases_server::Leases;
use quorate_raft_core::Role;
use tonic::{Request, Response, Status};

use super::{status, PaymentsService};
use crate::machine::{self, Applied, Command, LeaseTimers};

#[tonic::async_trait]
impl Leases for PaymentsService {
    #[tracing::instrument(name = "Leases.Acquire", skip_all, fields(name, holder))]
    async fn acquire(
        &self,
        request: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let r = request.into_inner();
        tracing::Span::current()
            .record("name", r.name.as_str())
            .record("holder", r.holder.as_str());
        let command = machine::AcquireLease {
            name: r.name,
            holder: r.holder,
            ttl_ms: r.ttl_ms,
        };
        machine::validate_acquire(&command).map_err(|v| status::invalid_field(&v))?;
        match self.propose(Command::AcquireLease(command)).await? {
            // For a refusal, the holder's TTL is an upper bound on the time left.
            Applied::LeaseAcquired(a) => Ok(Response::new(pb::AcquireResponse {
                granted: a.granted,
                token: a.token,
                holder: a.holder,
                expires_in_ms: a.ttl_ms,
            })),
            Applied::Malformed(m) => Err(status::invalid("request", &m.message)),
            other => Err(status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    #[tracing::instrument(name = "Leases.KeepAlive", skip_all, fields(name, holder, token))]
    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let r = request.into_inner();
        tracing::Span::current()
            .record("name", r.name.as_str())
            .record("holder", r.holder.as_str())
            .record("token", r.token);
        let command = machine::KeepAliveLease {
            name: r.name,
            holder: r.holder,
            token: r.token,
        };
        machine::validate_keep_alive(&command).map_err(|v| status::invalid_field(&v))?;
        match self.propose(Command::KeepAliveLease(command)).await? {
            Applied::LeaseKeptAlive(k) => Ok(Response::new(pb::KeepAliveResponse {
                expires_in_ms: k.ttl_ms,
            })),
            Applied::KeepAliveRejected(k) => Err(status::stale_token(&k.message)),
            Applied::Malformed(m) => Err(status::invalid("request", &m.message)),
            other => Err(status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    #[tracing::instrument(name = "Leases.Release", skip_all, fields(name, holder, token))]
    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = request.into_inner();
        let command = machine::ReleaseLease {
            name: r.name,
            holder: r.holder,
            token: r.token,
        };
        machine::validate_release(&command).map_err(|v| status::invalid_field(&v))?;
        match self.propose(Command::ReleaseLease(command)).await? {
            Applied::LeaseReleased(r) => Ok(Response::new(pb::ReleaseResponse {
                released: r.released,
            })),
            Applied::Malformed(m) => Err(status::invalid("request", &m.message)),
            other => Err(status::internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

/// Whole milliseconds in `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs on every node; acts only while the node leads. Scans the held leases every heartbeat
/// interval and lets [`LeaseTimers`] decide which to expire: a renewal or a new grant (a new
/// `(token, renewals)`) re-arms a lease's timer at `now + ttl`, so a timer may fire late by a
/// scan period, never early (to the millisecond); a new leader extends every lease by an
/// election timeout. The timers' clock is the whole milliseconds since this task started
/// (monotonic); the leader stamps the expiry commands with its clock, as every command.
pub(crate) async fn expire_leases(service: PaymentsService) {
    let node = service.node().clone();
    let period = node.config().heartbeat_interval;
    let extension = node.config().election_timeout;
    let mut stop = service.stop_signal();
    let mut timers = LeaseTimers::new(millis(extension), millis(period));
    let started = Instant::now();
    let elapsed_ms = || millis(started.elapsed());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|&s| s) => return,
        }
        let status = node.status();
        if status.raft.role != Role::Leader {
            timers.not_leader();
            continue;
        }
        let state = service.state();
        // Caught up first, then the leases: if it has applied its own term's entries, the
        // leases read next include everything its predecessors granted or renewed.
        let caught_up = machine::applied_in_term(&state, status.raft.term).unwrap_or(false);
        let held = match machine::held_leases(&state) {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read leases");
                timers.scan_without_leases(status.raft.term);
                continue;
            }
        };
        for due in timers.scan(status.raft.term, held, elapsed_ms(), caught_up) {
            // The leader's own expiries are not client requests: a refusal must not count in
            // the clients' `no_quorum_refusals`.
            match service.propose_uncounted(due.command()).await {
                Ok(outcome) => {
                    tracing::info!(lease = %due.name, token = due.token, ?outcome, "lease expiry proposed")
                }
                Err(e) => {
                    tracing::debug!(lease = %due.name, error = %e, "lease expiry not proposed yet")
                }
            }
            // If the expiry did not take, try again one period later.
            timers.proposed(&due.name, elapsed_ms());
        }
    }
}
