//! The gRPC handlers of `quorate.admin.v1.Admin`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use quorate_node::{error_status, MemberOp, NodeError};
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_server::Admin;
use quorate_proto::errors::reason;
use quorate_raft_core::{ConfState, Role};
use tonic::{Code, Request, Response, Status};

use crate::report::{analyze, Hashes, Observation, Settings};
use crate::AdminService;

/// A member whose wall clock is further than this from the cluster's median clock is named in
/// the report: NTP keeps a LAN's clocks within milliseconds of each other.
const CLOCK_SKEW_THRESHOLD: Duration = Duration::from_secs(1);

/// A member id from a request: non-zero.
fn checked_id(id: u64) -> Result<u64, Status> {
    if id == 0 {
        return Err(error_status(
            Code::InvalidArgument,
            reason::INVALID_ARGUMENT,
            "node_id: must be non-zero".into(),
            Some("node_id"),
        ));
    }
    Ok(id)
}

/// How long a leadership change may take before the call gives up.
const LEADERSHIP_DEADLINE: Duration = Duration::from_secs(5);

impl AdminService {
    /// Waits until this node sees `done` hold for its status (leadership moved).
    async fn wait_for_leader(
        &self,
        done: impl Fn(&quorate_node::NodeStatus) -> bool,
        what: String,
    ) -> Result<quorate_node::NodeStatus, Status> {
        let mut status = self.node().subscribe_status();
        let waited = tokio::time::timeout(LEADERSHIP_DEADLINE, async {
            loop {
                let current = status.borrow_and_update().clone();
                if done(&current) {
                    return Ok(current);
                }
                if status.changed().await.is_err() {
                    return Err(NodeError::ShuttingDown.to_status());
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err(error_status(
                Code::DeadlineExceeded,
                reason::OUTCOME_UNKNOWN,
                format!(
                    "{what} did not happen within {} s: is the target caught up and reachable? \
                     (quoratectl split-brain report shows each node's view)",
                    LEADERSHIP_DEADLINE.as_secs()
                ),
                None,
            )),
        }
    }

    /// Runs a transfer (target 0: step down) on the leader, here or forwarded.
    async fn transfer_on_leader(&self, target: u64) -> Result<u64, Status> {
        let node = self.node();
        let status = node.status();
        if status.raft.role == Role::Leader {
            return if target == 0 {
                node.step_down().await
            } else {
                node.transfer_leadership(target).await.map(|()| target)
            }
            .map_err(|e| e.to_status());
        }
        let Some(leader) = status.raft.leader_id else {
            return Err(NodeError::NoQuorum {
                reason: "this node knows no leader to ask".into(),
            }
            .to_status());
        };
        node.transport()
            .transfer(leader, target, LEADERSHIP_DEADLINE)
            .await
    }

    async fn observe(&self) -> (Vec<Observation>, ConfState) {
        let node = self.node();
        let mut me = self.local_status().await;
        let conf = node.status().raft.conf;
        // Half an election timeout: a live peer answers in milliseconds, and the report of a
        // degraded cluster should not wait long for the dead.
        let deadline = node.config().election_timeout / 2;
        let peers: Vec<(u64, String)> = node
            .status()
            .peers
            .iter()
            .filter(|(&id, _)| id != node.id())
            .map(|(&id, a)| (id, a.clone()))
            .collect();
        let probes = peers
            .iter()
            .map(|(id, _)| node.transport().probe(*id, None, deadline));
        let answers = join_all(probes).await;
        // A probe that just failed is first-hand evidence: this node cannot reach that peer
        // now, whatever its older view says.
        for ((id, _), answer) in peers.iter().zip(&answers) {
            if answer.is_err() {
                if let Some(view) = me.peers.iter_mut().find(|v| v.node_id == *id) {
                    view.reachable = false;
                }
            }
        }
        let mut observations = vec![Observation {
            node_id: me.node_id,
            peer_address: me.peer_address.clone(),
            answer: Ok(me),
            last_seen: None,
        }];
        for ((id, address), answer) in peers.into_iter().zip(answers) {
            let last_seen = self.last_seen(id);
            let answer = match answer {
                Ok(reply) => match reply.status {
                    Some(status) => {
                        self.remember(status.clone());
                        Ok(status)
                    }
                    None => Err("empty probe answer".to_string()),
                },
                Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
            };
            observations.push(Observation {
                node_id: id,
                peer_address: address,
                answer,
                last_seen,
            });
        }
        observations.sort_by_key(|o| o.node_id);
        (observations, conf)
    }

    /// The members as this node sees them: the membership in force with the member table.
    async fn members(&self) -> pb::ListMembersResponse {
        let me = self.local_status().await;
        let status = self.node().status();
        let conf = &status.raft.conf;
        let mut members = Vec::new();
        for id in conf.members() {
            let (client_address, view) = if id == me.node_id {
                (me.client_address.clone(), None)
            } else {
                let client = self
                    .last_seen(id)
                    .map(|(s, _)| s.client_address)
                    .unwrap_or_default();
                (client, me.peers.iter().find(|p| p.node_id == id).cloned())
            };
            members.push(pb::Member {
                node_id: id,
                peer_address: status.peers.get(&id).cloned().unwrap_or_default(),
                client_address,
                voter: conf.voters.contains(&id),
                view,
                learner: conf.learners.contains(&id),
                outgoing: conf.voters_outgoing.contains(&id) && !conf.voters.contains(&id),
            });
        }
        pb::ListMembersResponse {
            members,
            leader_id: me.leader_id,
            term: me.term,
            joint: !conf.voters_outgoing.is_empty(),
            membership_index: status.membership_index,
        }
    }

    /// Runs an operator's membership change (on the leader, forwarded there when this node
    /// follows) and answers with the membership afterwards.
    async fn change(&self, op: MemberOp) -> Result<Response<pb::MembershipChangeResponse>, Status> {
        let what = format!("{op:?}");
        let applied = self
            .node()
            .change_membership(vec![op])
            .await
            .map_err(|e| e.to_status())?;
        tracing::info!(change = %what, index = applied.index, "membership changed");
        // This node applies the change once it learns the commit (at the latest with the
        // leader's next heartbeat).
        let _ = tokio::time::timeout(LEADERSHIP_DEADLINE, self.node().wait_applied(applied.index))
            .await;
        Ok(Response::new(pb::MembershipChangeResponse {
            index: applied.index,
            term: applied.term,
            members: Some(self.members().await),
        }))
    }

    async fn compare_hashes(&self, observations: &[Observation]) -> Option<Hashes> {
        let applied: Vec<u64> = observations
            .iter()
            .filter_map(|o| o.answer.as_ref().ok().map(|s| s.applied_index))
            .collect();
        // A member that has applied nothing has nothing to compare; the others are compared
        // at the lowest index they have all applied.
        let common_index = applied.iter().copied().filter(|&i| i > 0).min()?;
        let node = self.node();
        let deadline = node.config().election_timeout * 3;
        let jobs = observations
            .iter()
            .filter(|o| o.answer.as_ref().is_ok_and(|s| s.applied_index > 0))
            .map(|o| async move {
                let result = if o.node_id == node.id() {
                    self.hash(common_index)
                        .await
                        .map(|h| h.hash)
                        .map_err(|e| e.to_string())
                } else {
                    match node
                        .transport()
                        .probe(o.node_id, Some(common_index), deadline)
                        .await
                    {
                        Ok(reply) => match reply.hash {
                            Some(h) => Ok(h.hash),
                            None => Err(reply.hash_error),
                        },
                        Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
                    }
                };
                (o.node_id, result)
            });
        let by_node: BTreeMap<u64, Result<String, String>> =
            join_all(jobs).await.into_iter().collect();
        Some(Hashes {
            common_index,
            by_node,
        })
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    type SaveSnapshotStream = crate::snapshot::ChunkStream;

    #[tracing::instrument(name = "Admin.Snapshot", skip_all)]
    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        self.snapshot_now().await.map(Response::new)
    }

    #[tracing::instrument(name = "Admin.SaveSnapshot", skip_all)]
    async fn save_snapshot(
        &self,
        _request: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<Self::SaveSnapshotStream>, Status> {
        self.backup_stream().await.map(Response::new)
    }

    #[tracing::instrument(name = "Admin.Status", skip_all)]
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.local_status().await))
    }

    #[tracing::instrument(name = "Admin.ListMembers", skip_all)]
    async fn list_members(
        &self,
        _request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        Ok(Response::new(self.members().await))
    }

    #[tracing::instrument(name = "Admin.AddMember", skip_all)]
    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::MembershipChangeResponse>, Status> {
        let r = request.into_inner();
        let op = MemberOp::from_proto(&quorate_proto::raft::MemberChange {
            kind: quorate_proto::raft::member_change::Kind::Add as i32,
            node_id: r.node_id,
            peer_address: r.peer_address,
            voter: r.voter,
        })
        .map_err(|e| e.to_status())?;
        self.change(op).await
    }

    #[tracing::instrument(name = "Admin.PromoteMember", skip_all)]
    async fn promote_member(
        &self,
        request: Request<pb::PromoteMemberRequest>,
    ) -> Result<Response<pb::MembershipChangeResponse>, Status> {
        let id = checked_id(request.into_inner().node_id)?;
        self.change(MemberOp::Promote(id)).await
    }

    #[tracing::instrument(name = "Admin.RemoveMember", skip_all)]
    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MembershipChangeResponse>, Status> {
        let id = checked_id(request.into_inner().node_id)?;
        self.change(MemberOp::Remove(id)).await
    }

    #[tracing::instrument(name = "Admin.UpdateMember", skip_all)]
    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::MembershipChangeResponse>, Status> {
        let r = request.into_inner();
        let op = MemberOp::from_proto(&quorate_proto::raft::MemberChange {
            kind: quorate_proto::raft::member_change::Kind::Update as i32,
            node_id: r.node_id,
            peer_address: r.peer_address,
            voter: false,
        })
        .map_err(|e| e.to_status())?;
        self.change(op).await
    }

    #[tracing::instrument(name = "Admin.TransferLeadership", skip_all)]
    async fn transfer_leadership(
        &self,
        request: Request<pb::TransferLeadershipRequest>,
    ) -> Result<Response<pb::TransferLeadershipResponse>, Status> {
        let target = request.into_inner().target_id;
        let voters = self.node().status().raft.conf.voters;
        if !voters.contains(&target) {
            return Err(error_status(
                Code::InvalidArgument,
                reason::INVALID_ARGUMENT,
                format!("target_id: node {target} is not a voter (voters: {voters:?})"),
                Some("target_id"),
            ));
        }
        if self.node().status().raft.leader_id != Some(target) {
            self.transfer_on_leader(target).await?;
        }
        let status = self
            .wait_for_leader(
                |s| s.raft.leader_id == Some(target),
                format!("the transfer of leadership to node {target}"),
            )
            .await?;
        Ok(Response::new(pb::TransferLeadershipResponse {
            leader_id: target,
            term: status.raft.term,
        }))
    }

    #[tracing::instrument(name = "Admin.StepDown", skip_all)]
    async fn step_down(
        &self,
        _request: Request<pb::StepDownRequest>,
    ) -> Result<Response<pb::StepDownResponse>, Status> {
        let target = self.transfer_on_leader(0).await?;
        let status = self
            .wait_for_leader(
                |s| s.raft.leader_id == Some(target),
                format!("the step-down in favour of node {target}"),
            )
            .await?;
        Ok(Response::new(pb::StepDownResponse {
            new_leader_id: target,
            term: status.raft.term,
        }))
    }

    #[tracing::instrument(name = "Admin.HashEvents", skip_all)]
    async fn hash_events(
        &self,
        request: Request<pb::HashEventsRequest>,
    ) -> Result<Response<pb::HashEventsResponse>, Status> {
        let index = request.into_inner().index;
        match self.hash(index).await {
            Ok(hash) => Ok(Response::new(hash)),
            Err(e @ crate::HashError::NotApplied { .. }) => Err(error_status(
                Code::OutOfRange,
                reason::INVALID_ARGUMENT,
                e.to_string(),
                Some("index"),
            )),
            Err(
                e @ crate::HashError::Compacted {
                    first_available, ..
                },
            ) => Err(quorate_proto::errors::status(
                Code::OutOfRange,
                reason::COMPACTED,
                e.to_string(),
                &[("first_available_index", first_available.to_string())],
            )),
            Err(e) => Err(NodeError::Internal(e.to_string()).to_status()),
        }
    }

    #[tracing::instrument(name = "Admin.SplitBrainReport", skip_all)]
    async fn split_brain_report(
        &self,
        _request: Request<pb::SplitBrainReportRequest>,
    ) -> Result<Response<pb::SplitBrainReportResponse>, Status> {
        let started = Instant::now();
        let (observations, conf) = self.observe().await;
        let hashes = self.compare_hashes(&observations).await;
        let settings = Settings {
            election_timeout: self.node().config().election_timeout,
            lag_threshold: 1_000,
            clock_skew_threshold: CLOCK_SKEW_THRESHOLD,
        };
        let mut report = analyze(
            self.node().id(),
            &conf,
            &observations,
            hashes.as_ref(),
            &settings,
        );
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(Response::new(report))
    }
}
