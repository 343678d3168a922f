//! Interaction scripts, in the style of etcd-io/raft's `testdata/*.txt`: each file in
//! `testdata/` is a series of commands with the full expected trace under each one. Run with
//! `REWRITE=1` to regenerate the expectations, then review the diff.
//!
//! Commands:
//! - `cluster nodes=N [pre-vote=false] [check-quorum=false]`: a fresh cluster
//! - `campaign id=N`, `tick id=N [times=K]`, `tick-all [times=K]`: inputs
//! - `propose id=N data=TEXT`, `read-index id=N read=R [lease]`, `transfer from=N to=M`
//! - `isolate id=N`, `heal`: partitions
//! - `stabilize`: deliver every message until none is left, printing each one
//! - `status`: one line per node

use std::fmt::Write;

use bytes::Bytes;

use super::Cluster;
use crate::{AppendOutcome, Message, Payload, ReadMode};

fn describe(m: &Message) -> String {
    let detail = match &m.payload {
        Payload::VoteRequest(r) => format!(
            "last={}/{}{}",
            r.last_log_index,
            r.last_log_term,
            if r.leadership_transfer {
                " transfer"
            } else {
                ""
            }
        ),
        Payload::VoteResponse(r) => match r.rejection {
            None => "granted".to_string(),
            Some(why) => format!("rejected ({why:?})"),
        },
        Payload::AppendRequest(r) => format!(
            "prev={}/{} entries={:?} commit={}",
            r.prev_log_index, r.prev_log_term, r.entries, r.leader_commit
        ),
        Payload::AppendResponse(r) => match r.outcome {
            AppendOutcome::Accepted { match_index } => format!("match={match_index}"),
            AppendOutcome::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => format!("reject={rejected_index} hint={hint_index}/{hint_term}"),
        },
        Payload::HeartbeatRequest(r) => format!("commit={} round={}", r.commit, r.round),
        Payload::HeartbeatResponse(r) => format!("round={}", r.round),
        Payload::TimeoutNow => String::new(),
        Payload::ReadIndexRequest(r) => format!("read={} {:?}", r.read_id, r.mode),
        Payload::ReadIndexResponse(r) => format!("read={} index={:?}", r.read_id, r.index),
        Payload::SnapshotRequest(r) => format!("{:?}", r.snapshot),
    };
    format!(
        "{}->{} {} term={} {}",
        m.from,
        m.to,
        m.payload.kind(),
        m.term,
        detail
    )
    .trim_end()
    .to_string()
}

fn status_lines(cluster: &Cluster) -> String {
    let mut out = String::new();
    for node in cluster.nodes.values() {
        let s = node.status();
        let _ = writeln!(
            out,
            "{}: {} term={} leader={:?} commit={} last={} lease={}",
            s.id,
            s.role,
            s.term,
            s.leader_id,
            s.commit_index,
            s.last_log_index,
            if node.has_valid_lease() {
                "held"
            } else {
                "none"
            }
        );
    }
    out
}

/// Delivers everything, one message at a time, tracing each delivery and each role change.
fn stabilize(cluster: &mut Cluster) -> String {
    let mut out = String::new();
    cluster.flush_all();
    let mut roles: Vec<_> = cluster
        .nodes
        .values()
        .map(|n| (n.status().role, n.status().term))
        .collect();
    for _ in 0..10_000 {
        if cluster.in_flight.is_empty() {
            break;
        }
        let m = cluster.in_flight.remove(0);
        let _ = writeln!(out, "{}", describe(&m));
        let to = m.to;
        cluster.node(to).step(m).unwrap();
        cluster.flush(to);
        for (i, node) in cluster.nodes.values().enumerate() {
            let now = (node.status().role, node.status().term);
            if now != roles[i] {
                let _ = writeln!(out, "  node {} is {} in term {}", i + 1, now.0, now.1);
                roles[i] = now;
            }
        }
    }
    for read in cluster.reads.values_mut() {
        for r in read.drain(..) {
            let _ = writeln!(out, "  read {} ready at {:?}", r.read_id, r.index);
        }
    }
    out
}

fn arg<T: std::str::FromStr>(case: &datadriven::TestCase, name: &str) -> T {
    case.args
        .get(name)
        .and_then(|v| v.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("argument {name}= of {}", case.directive))
}

#[test]
fn interaction_scripts() {
    datadriven::walk("testdata", |file| {
        let mut cluster: Option<Cluster> = None;
        file.run(|case| -> String {
            let flag = |name: &str| case.args.get(name).map(|v| v[0] != "false");
            let times: u32 = case.args.get("times").map_or(1, |v| v[0].parse().unwrap());
            if case.directive == "cluster" {
                let nodes: u64 = case.args["nodes"][0].parse().unwrap();
                let pre_vote = flag("pre-vote").unwrap_or(true);
                let check_quorum = flag("check-quorum").unwrap_or(true);
                cluster = Some(Cluster::new(nodes, |c| {
                    c.pre_vote = pre_vote;
                    c.check_quorum = check_quorum;
                    c.lease_reads = check_quorum;
                }));
                return "ok\n".into();
            }
            let c = cluster.as_mut().expect("a cluster command first");
            match case.directive.as_str() {
                "campaign" => {
                    c.node(arg(case, "id")).campaign().unwrap();
                    stabilize(c)
                }
                "tick" => {
                    let id = arg(case, "id");
                    for _ in 0..times {
                        c.tick(id);
                    }
                    stabilize(c)
                }
                "tick-all" => {
                    let mut out = String::new();
                    for _ in 0..times {
                        let ids: Vec<u64> = c.nodes.keys().copied().collect();
                        for id in ids {
                            c.tick(id);
                        }
                        out += &stabilize(c);
                    }
                    out
                }
                "propose" => {
                    let id = arg(case, "id");
                    let data: String = arg(case, "data");
                    match c.node(id).propose(Bytes::from(data)) {
                        Ok(p) => format!("index={} token={}\n", p.index, p.token),
                        Err(e) => format!("error: {e}\n"),
                    }
                }
                "read-index" => {
                    let id = arg(case, "id");
                    let read_id = arg(case, "read");
                    let mode = if case.args.contains_key("lease") {
                        ReadMode::Lease
                    } else {
                        ReadMode::Quorum
                    };
                    match c.node(id).read_index(read_id, mode) {
                        Ok(()) => stabilize(c),
                        Err(e) => format!("error: {e}\n"),
                    }
                }
                "transfer" => {
                    let from = arg(case, "from");
                    let to = arg(case, "to");
                    match c.node(from).transfer_leadership(to) {
                        Ok(()) => stabilize(c),
                        Err(e) => format!("error: {e}\n"),
                    }
                }
                "isolate" => {
                    c.isolate(arg(case, "id"));
                    "ok\n".into()
                }
                "heal" => {
                    c.heal();
                    "ok\n".into()
                }
                "stabilize" => stabilize(c),
                "status" => status_lines(c),
                other => panic!("unknown command {other}"),
            }
        })
    });
}
