//! `quorate.payments.v1.Leases`, and the leader's lease expiry timers.
//!
//! Expiry is decided by the leader and replicated: when the leader's timer for a lease fires
//! it proposes `ExpireLease`, which takes effect only if the lease was not renewed meanwhile.
//! A new leader does not know when its predecessor's timers started, so it re-arms every held
//! lease at `ttl + election timeout` from its election: leases are extended, never shortened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quorate_proto::payments as pb;
use quorate_proto::payments::leases_server::Leases;
use quorate_raft_core::Role;
use tonic::{Request, Response, Status};

use super::{now_ms, status, PaymentsService};
use crate::machine::{self, Applied, Command};

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
            now_ms: now_ms(),
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
            now_ms: now_ms(),
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
            now_ms: now_ms(),
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

/// One armed timer: the lease generation it was armed for, and when it fires.
struct Timer {
    token: u64,
    renewals: u64,
    fires_at: Instant,
}

/// Runs on every node; acts only while the node leads. Scans the held leases every heartbeat
/// interval; a renewal or a new grant (a new `(token, renewals)`) re-arms the timer at
/// `now + ttl`, so a timer may fire late by a scan period, never early.
pub(crate) async fn expire_leases(service: PaymentsService) {
    let node = service.node().clone();
    let period = node.config().heartbeat_interval;
    let extension = node.config().election_timeout;
    let mut stop = service.stop_signal();
    let mut timers: BTreeMap<String, Timer> = BTreeMap::new();
    let mut armed_in_term: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|&s| s) => return,
        }
        let status = node.status();
        if status.raft.role != Role::Leader {
            timers.clear();
            armed_in_term = None;
            continue;
        }
        let new_term = armed_in_term != Some(status.raft.term);
        armed_in_term = Some(status.raft.term);
        let held = match machine::held_leases(&service.state()) {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read leases");
                continue;
            }
        };
        let now = Instant::now();
        let mut armed = BTreeMap::new();
        for lease in held {
            let ttl = Duration::from_millis(lease.ttl_ms);
            let timer = match timers.remove(&lease.name) {
                Some(t) if t.token == lease.token && t.renewals == lease.renewals => t,
                _ => Timer {
                    token: lease.token,
                    renewals: lease.renewals,
                    // A new leader extends every lease by an election timeout.
                    fires_at: now + ttl + if new_term { extension } else { Duration::ZERO },
                },
            };
            armed.insert(lease.name, timer);
        }
        timers = armed;
        for (name, timer) in timers.iter_mut().filter(|(_, t)| t.fires_at <= now) {
            let command = Command::ExpireLease(machine::ExpireLease {
                name: name.clone(),
                token: timer.token,
                renewals: timer.renewals,
                now_ms: now_ms(),
            });
            match service.propose(command).await {
                Ok(outcome) => {
                    tracing::info!(lease = %name, token = timer.token, ?outcome, "lease expiry proposed")
                }
                Err(e) => {
                    tracing::debug!(lease = %name, error = %e, "lease expiry not proposed yet")
                }
            }
            // If the expiry did not take, try again one period later.
            timer.fires_at = Instant::now() + period;
        }
    }
}
