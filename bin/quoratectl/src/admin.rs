//! `quoratectl leader`, `hash` and `split-brain`.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use quorate_proto::admin as pb;
use serde_json::json;

use crate::client::{describe, Context};

/// Leadership control.
#[derive(Subcommand, Debug)]
pub enum LeaderCommand {
    /// Hand leadership to a node; returns once it leads (or fails after 5 s).
    Transfer {
        /// The node that should lead.
        #[arg(long)]
        to: u64,
    },
    /// Make the leader hand leadership to its most up-to-date follower.
    StepDown,
}

/// Split-brain forensics.
#[derive(Subcommand, Debug)]
pub enum SplitBrainCommand {
    /// Ask a node to ask every member for its view and explain what it finds.
    ///
    /// Exit status: 0 healthy, 2 degraded, 3 stale leader, 4 no majority, 5 diverged,
    /// 1 if no node could build a report.
    Report,
}

/// Runs the call on the first endpoint that answers.
async fn first_answer<T, F, Fut>(ctx: &Context, call: F) -> Result<(String, T)>
where
    F: Fn(quorate_proto::admin::admin_client::AdminClient<crate::client::Conn>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut errors = Vec::new();
    for endpoint in &ctx.endpoints {
        match ctx.admin(endpoint).await {
            Ok(client) => match call(client).await {
                Ok(reply) => return Ok((endpoint.clone(), reply.into_inner())),
                Err(status) => errors.push(format!("{endpoint}: {}", describe(&status))),
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    bail!("no endpoint answered: {}", errors.join("; "))
}

/// `leader transfer` and `leader step-down`.
pub async fn leader(ctx: &Context, command: LeaderCommand) -> Result<ExitCode> {
    let (endpoint, leader, term) = match command {
        LeaderCommand::Transfer { to } => {
            let (endpoint, r) = first_answer(ctx, |mut c| async move {
                c.transfer_leadership(pb::TransferLeadershipRequest { target_id: to })
                    .await
            })
            .await?;
            (endpoint, r.leader_id, r.term)
        }
        LeaderCommand::StepDown => {
            let (endpoint, r) = first_answer(ctx, |mut c| async move {
                c.step_down(pb::StepDownRequest {}).await
            })
            .await?;
            (endpoint, r.new_leader_id, r.term)
        }
    };
    if ctx.json {
        println!(
            "{}",
            json!({"leader_id": leader, "term": term, "answered_by": endpoint})
        );
    } else {
        println!("node {leader} now leads term {term}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `hash --index N`: the hash on every endpoint, so they can be compared.
pub async fn hash(ctx: &Context, index: u64) -> Result<ExitCode> {
    let index = if index == 0 {
        // Nodes apply at their own pace: compare them at the lowest index all have applied,
        // not each at its own (which would differ on any cluster taking writes).
        let common = common_applied_index(ctx).await?;
        if !ctx.json {
            println!("(index {common}: the lowest applied index among the endpoints)");
        }
        common
    } else {
        index
    };
    let mut hashes = Vec::new();
    for endpoint in &ctx.endpoints {
        let answer = ctx
            .ask_admin(endpoint, |mut c| async move {
                c.hash_events(pb::HashEventsRequest { index }).await
            })
            .await;
        hashes.push((endpoint.clone(), answer));
    }
    let distinct: std::collections::BTreeSet<&str> = hashes
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok().map(|h| h.hash.as_str()))
        .collect();
    if ctx.json {
        let docs: Vec<_> = hashes
            .iter()
            .map(|(e, a)| match a {
                Ok(h) => {
                    json!({"endpoint": e, "index": h.index, "hash": h.hash, "events": h.events})
                }
                Err(err) => json!({"endpoint": e, "error": err}),
            })
            .collect();
        println!("{}", json!({"hashes": docs, "agree": distinct.len() <= 1}));
    } else {
        for (endpoint, answer) in &hashes {
            match answer {
                Ok(h) => println!(
                    "{endpoint}: index {} hash {} ({} events)",
                    h.index, h.hash, h.events
                ),
                Err(e) => println!("error: {e}"),
            }
        }
        if distinct.len() > 1 {
            println!("HASHES DIFFER: these nodes do not hold the same event log");
        }
    }
    Ok(
        if distinct.len() > 1 || hashes.iter().any(|(_, a)| a.is_err()) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The lowest applied index among the endpoints that answer `Status`.
async fn common_applied_index(ctx: &Context) -> Result<u64> {
    let mut lowest: Option<u64> = None;
    let mut errors = Vec::new();
    for (_, answer) in crate::status::statuses(ctx).await {
        match answer {
            Ok(s) => lowest = Some(lowest.map_or(s.applied_index, |l| l.min(s.applied_index))),
            Err(e) => errors.push(e),
        }
    }
    match lowest {
        Some(0) => bail!("an endpoint has applied nothing yet: there is no index to compare"),
        Some(index) => Ok(index),
        None => bail!("no endpoint answered: {}", errors.join("; ")),
    }
}

fn verdict_name(v: i32) -> &'static str {
    match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Healthy) => "HEALTHY",
        Ok(pb::Verdict::Degraded) => "DEGRADED",
        Ok(pb::Verdict::StaleLeader) => "STALE_LEADER",
        Ok(pb::Verdict::NoMajority) => "NO_MAJORITY",
        Ok(pb::Verdict::Diverged) => "DIVERGED",
        _ => "UNKNOWN",
    }
}

fn verdict_exit(v: i32) -> ExitCode {
    ExitCode::from(match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Healthy) => 0,
        Ok(pb::Verdict::Degraded) => 2,
        Ok(pb::Verdict::StaleLeader) => 3,
        Ok(pb::Verdict::NoMajority) => 4,
        Ok(pb::Verdict::Diverged) => 5,
        _ => 1,
    })
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Leader) => "leader",
        Ok(pb::Role::Follower) => "follower",
        Ok(pb::Role::PreCandidate) => "pre-candidate",
        Ok(pb::Role::Candidate) => "candidate",
        Ok(pb::Role::Learner) => "learner",
        _ => "?",
    }
}

/// The report of the first endpoint that is in the majority; failing that, of the first that
/// answers. Also returns the endpoints passed over because they reported themselves in a
/// minority: the exit status then does not depend on the order of `--endpoints`.
async fn majority_report(
    ctx: &Context,
) -> Result<(String, pb::SplitBrainReportResponse, Vec<(String, u64)>)> {
    let mut first: Option<(String, pb::SplitBrainReportResponse)> = None;
    let mut minority = Vec::new();
    let mut errors = Vec::new();
    for endpoint in &ctx.endpoints {
        let report = ctx
            .ask_admin(endpoint, |mut c| async move {
                c.split_brain_report(pb::SplitBrainReportRequest {}).await
            })
            .await;
        match report {
            Ok(r) if r.reporter_in_majority => return Ok((endpoint.clone(), r, minority)),
            Ok(r) => {
                minority.push((endpoint.clone(), r.reporter_id));
                first.get_or_insert((endpoint.clone(), r));
            }
            Err(e) => errors.push(e),
        }
    }
    match first {
        // Nobody is in a majority: show the first answer, and do not claim otherwise.
        Some((endpoint, r)) => Ok((endpoint, r, Vec::new())),
        None => Err(anyhow!("no endpoint answered: {}", errors.join("; "))),
    }
}

/// `split-brain report`.
pub async fn split_brain(ctx: &Context, _command: SplitBrainCommand) -> Result<ExitCode> {
    let (endpoint, r, minority) = majority_report(ctx).await?;
    if !ctx.json {
        for (endpoint, reporter) in &minority {
            println!(
                "note: node {reporter} ({endpoint}) reports that it is NOT in the majority; \
                 showing the report of a node that is.\n"
            );
        }
    }
    if ctx.json {
        println!("{}", report_json(&endpoint, &r));
        return Ok(verdict_exit(r.verdict));
    }
    println!(
        "VERDICT: {}   (report by node {} via {endpoint}, {} ms; node {} is {} the majority)\n",
        verdict_name(r.verdict),
        r.reporter_id,
        r.duration_ms,
        r.reporter_id,
        if r.reporter_in_majority {
            "in"
        } else {
            "NOT in"
        }
    );
    println!("Members:");
    for m in &r.members {
        match (&m.status, m.answered) {
            (Some(s), true) => println!(
                "  node {:<3} {:<13} term {:<4} leader {:<4} commit {:<8} applied {:<8} lease {} ms  ({})",
                m.node_id,
                role_name(s.role),
                s.term,
                if s.leader_id == 0 { "none".into() } else { s.leader_id.to_string() },
                s.commit_index,
                s.applied_index,
                s.lease_remaining_ms,
                m.peer_address
            ),
            _ => println!("  node {:<3} DID NOT ANSWER: {}  ({})", m.node_id, m.error, m.peer_address),
        }
    }
    println!("\nReachability (row: that node's own view; ? = unknown):");
    let ids: Vec<u64> = r.members.iter().map(|m| m.node_id).collect();
    print!("  {:>8}", "from\\to");
    for id in &ids {
        print!(" {id:>4}");
    }
    println!();
    for &from in &ids {
        print!("  {from:>8}");
        for &to in &ids {
            let cell = if from == to {
                "-".to_string()
            } else {
                match r.reachability.iter().find(|c| c.from == from && c.to == to) {
                    Some(c) if !c.known => "?".into(),
                    Some(c) if c.reachable => "ok".into(),
                    Some(_) => "NO".into(),
                    None => "?".into(),
                }
            };
            print!(" {cell:>4}");
        }
        println!();
    }
    println!("\nLeaders by term:");
    for l in &r.leaders_by_term {
        println!("  term {}: {:?}", l.term, l.leader_ids);
    }
    println!("\nPartitions:");
    for p in &r.partitions {
        println!(
            "  {:?}{}",
            p.node_ids,
            if p.has_majority { "  <- majority" } else { "" }
        );
    }
    match &r.majority {
        Some(m) if m.leader_id != 0 => {
            println!(
                "Majority: {:?}, leader node {} (term {})",
                m.node_ids, m.leader_id, m.term
            )
        }
        Some(m) => println!("Majority: {:?}, no leader yet", m.node_ids),
        None => println!("Majority: none visible from node {}", r.reporter_id),
    }
    if !r.stale_leaders.is_empty() {
        println!("\nStale leaders:");
        for s in &r.stale_leaders {
            println!(
                "  node {} (term {}, lease {} ms left): {}",
                s.node_id, s.term, s.lease_remaining_ms, s.reason
            );
        }
    }
    if !r.clock_skews.is_empty() {
        println!("\nWall clocks off the cluster's median clock:");
        for c in &r.clock_skews {
            println!(
                "  node {}: {:+} ms (measured by node {})",
                c.node_id, c.offset_ms, c.measured_by
            );
        }
    }
    if let Some(d) = &r.divergence {
        if d.common_index > 0 {
            println!("\nEvent-log hashes at index {}:", d.common_index);
            for h in &d.hashes {
                let mark = if d.diverged_node_ids.contains(&h.node_id) {
                    "  <- DIVERGED"
                } else {
                    ""
                };
                if h.error.is_empty() {
                    println!("  node {}: {}{mark}", h.node_id, h.hash);
                } else {
                    println!("  node {}: error: {}", h.node_id, h.error);
                }
            }
        }
    }
    println!("\nWhat to do:\n  {}", r.recommended_action);
    Ok(verdict_exit(r.verdict))
}

fn report_json(endpoint: &str, r: &pb::SplitBrainReportResponse) -> serde_json::Value {
    json!({
        "answered_by": endpoint,
        "verdict": format!("VERDICT_{}", verdict_name(r.verdict)),
        "reporter_id": r.reporter_id,
        "reporter_in_majority": r.reporter_in_majority,
        "duration_ms": r.duration_ms,
        "members": r.members.iter().map(|m| json!({
            "id": m.node_id, "peer_address": m.peer_address, "answered": m.answered,
            "error": m.error,
            "role": m.status.as_ref().map(|s| role_name(s.role)),
            "term": m.status.as_ref().map(|s| s.term),
            "leader_id": m.status.as_ref().map(|s| s.leader_id),
            "applied_index": m.status.as_ref().map(|s| s.applied_index),
        })).collect::<Vec<_>>(),
        "reachability": r.reachability.iter().map(|c| json!({
            "from": c.from, "to": c.to, "reachable": c.reachable, "known": c.known,
        })).collect::<Vec<_>>(),
        "leaders_by_term": r.leaders_by_term.iter().map(|l| json!({
            "term": l.term, "leader_ids": l.leader_ids})).collect::<Vec<_>>(),
        "partitions": r.partitions.iter().map(|p| json!({
            "node_ids": p.node_ids, "has_majority": p.has_majority})).collect::<Vec<_>>(),
        "majority": r.majority.as_ref().map(|m| json!({
            "node_ids": m.node_ids, "leader_id": m.leader_id, "term": m.term})),
        "stale_leaders": r.stale_leaders.iter().map(|s| json!({
            "node_id": s.node_id, "term": s.term, "lease_remaining_ms": s.lease_remaining_ms,
            "reason": s.reason})).collect::<Vec<_>>(),
        "divergence": r.divergence.as_ref().map(|d| json!({
            "common_index": d.common_index, "diverged_node_ids": d.diverged_node_ids,
            "hashes": d.hashes.iter().map(|h| json!({"node_id": h.node_id, "hash": h.hash,
                "error": h.error})).collect::<Vec<_>>()})),
        "clock_skews": r.clock_skews.iter().map(|c| json!({
            "node_id": c.node_id, "offset_ms": c.offset_ms, "measured_by": c.measured_by,
        })).collect::<Vec<_>>(),
        "recommended_action": r.recommended_action,
    })
}
