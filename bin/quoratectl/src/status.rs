//! `quoratectl status`: one row per endpoint, like `etcdctl endpoint status`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use indicatif::HumanBytes;
use quorate_proto::admin as pb;
use serde_json::json;

use crate::client::Context;

/// Flags of `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Layout of text output.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Layout::Simple)]
    write_out: Layout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Layout {
    /// One line per endpoint.
    Simple,
    /// An aligned table with a header.
    Table,
    /// JSON (same as -o json).
    Json,
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Follower) => "follower",
        Ok(pb::Role::PreCandidate) => "pre-candidate",
        Ok(pb::Role::Candidate) => "candidate",
        Ok(pb::Role::Leader) => "leader",
        Ok(pb::Role::Learner) => "learner",
        _ => "unknown",
    }
}

/// Every endpoint's status, or why it has none.
pub async fn statuses(ctx: &Context) -> Vec<(String, Result<pb::StatusResponse, String>)> {
    let mut rows = Vec::new();
    for endpoint in &ctx.endpoints {
        let answer = ctx
            .ask_admin(endpoint, |mut c| async move {
                c.status(pb::StatusRequest {}).await
            })
            .await;
        rows.push((endpoint.clone(), answer));
    }
    rows
}

/// Asks every endpoint for its status. Exits non-zero if any endpoint failed to answer.
pub async fn run(ctx: &Context, args: StatusArgs) -> Result<ExitCode> {
    let rows = statuses(ctx).await;
    let failed = rows.iter().any(|(_, r)| r.is_err());
    if ctx.json || args.write_out == Layout::Json {
        let docs: Vec<_> = rows
            .iter()
            .map(|(endpoint, r)| match r {
                Ok(s) => json!({
                    "endpoint": endpoint, "id": s.node_id, "role": role_name(s.role),
                    "is_leader": s.role == pb::Role::Leader as i32, "term": s.term,
                    "leader": s.leader_id, "commit_index": s.commit_index,
                    "applied_index": s.applied_index, "last_log_index": s.last_log_index,
                    "first_log_index": s.first_log_index,
                    "snapshot_index": s.snapshot_index,
                    "data_size_bytes": s.data_size_bytes,
                    "log_size_bytes": s.log_size_bytes,
                    "lease_remaining_ms": s.lease_remaining_ms, "has_leader": s.has_leader,
                    "quorum_active": s.quorum_active,
                    "rejoining_after_term": s.rejoining_after_term,
                    "corrupt": s.corrupt,
                    "writes_held": s.writes_held,
                    "cluster_id": format!("{:016x}", s.cluster_id),
                    "voters": s.voters, "learners": s.learners,
                    "voters_outgoing": s.voters_outgoing,
                    "membership_index": s.membership_index, "removed": s.removed,
                    "wall_clock_unix_ms": s.wall_clock_unix_ms,
                    "machine_clock_unix_ms": s.counters.as_ref().map(|c| c.machine_clock_unix_ms),
                    "leader_clock_corrections":
                        s.counters.as_ref().map(|c| c.leader_clock_corrections),
                    "peer_clock_offset_ms": s.peers.iter()
                        .filter_map(|p| p.clock_offset_ms.map(|o| (p.node_id.to_string(), o)))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                }),
                Err(e) => json!({"endpoint": endpoint, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&docs)?);
    } else {
        let header = [
            "ENDPOINT",
            "ID",
            "ROLE",
            "IS LEADER",
            "RAFT TERM",
            "COMMIT",
            "APPLIED",
            "SNAPSHOT",
            "LOG",
            "LEADER",
            "LEASE",
            "ERRORS",
        ];
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|(endpoint, r)| match r {
                Ok(s) => vec![
                    endpoint.clone(),
                    s.node_id.to_string(),
                    role_name(s.role).to_string(),
                    (s.role == pb::Role::Leader as i32).to_string(),
                    s.term.to_string(),
                    s.commit_index.to_string(),
                    s.applied_index.to_string(),
                    s.snapshot_index.to_string(),
                    format!(
                        "{}..{} ({})",
                        s.first_log_index,
                        s.last_log_index,
                        HumanBytes(s.log_size_bytes)
                    ),
                    if s.leader_id == 0 {
                        "none".into()
                    } else {
                        s.leader_id.to_string()
                    },
                    if s.role == pb::Role::Leader as i32 {
                        format!("{}ms", s.lease_remaining_ms)
                    } else {
                        "-".into()
                    },
                    problems(s),
                ],
                Err(e) => {
                    let mut row = vec![endpoint.clone()];
                    row.extend(std::iter::repeat_n("-".to_string(), header.len() - 2));
                    row.push(e.clone());
                    row
                }
            })
            .collect();
        if args.write_out == Layout::Table {
            print_table(&header, &cells);
        } else {
            for row in &cells {
                println!("{}", row.join(", ").trim_end_matches(", "));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        format!("|{}|", parts.join("|"))
    };
    let rule = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    println!("{rule}");
    println!("{}", line(header.to_vec()));
    println!("{rule}");
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
    println!("{rule}");
}

/// What is wrong with a node that answered, as it sees itself: the ERRORS column.
fn problems(s: &pb::StatusResponse) -> String {
    let mut problems = Vec::new();
    if !s.corrupt.is_empty() {
        problems.push(s.corrupt.clone());
    }
    if !s.writes_held.is_empty() {
        problems.push(s.writes_held.clone());
    }
    if !s.has_leader {
        problems.push(if s.role == pb::Role::Leader as i32 {
            "no quorum".to_string()
        } else {
            "no reachable leader".to_string()
        });
    }
    let unreachable: Vec<String> = s
        .peers
        .iter()
        .filter(|p| !p.reachable)
        .map(|p| p.node_id.to_string())
        .collect();
    if !unreachable.is_empty() {
        problems.push(format!("cannot reach {}", unreachable.join(",")));
    }
    if s.removed {
        problems.push(
            "not a member of the cluster (removed, or not added yet): it takes no part; a \
             removed node must be stopped"
                .to_string(),
        );
    }
    if !s.voters_outgoing.is_empty() {
        problems.push(format!(
            "membership change in progress: voters {:?} replacing {:?}",
            s.voters, s.voters_outgoing
        ));
    }
    if let Some(term) = s.rejoining_after_term {
        problems.push(format!(
            "rejoining after a lost disk: no vote until a leader of a term after {term} has \
             brought it up to date"
        ));
    }
    problems.join("; ")
}
