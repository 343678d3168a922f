//! `quoratectl members`: list, add, promote, remove, update, and replace a member safely.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::errors::reason as why;
use serde_json::json;
use tonic_types::StatusExt;

use crate::client::{describe, reason, Context};

/// Membership. Changes go to the leader (any node forwards them) and return once committed;
/// a change of voters passes through a joint configuration, which the leader leaves by
/// itself. One change at a time.
#[derive(Subcommand, Debug)]
pub enum MembersCommand {
    /// The members: voters, learners, the outgoing voters of a change in progress, their
    /// addresses, how far behind the leader each is, and this node's view of each.
    List,
    /// Add a member as a learner (it receives the log but does not vote; promote it once it
    /// has caught up). Start the new node before or after: empty --data-dir,
    /// --initial-cluster-state existing, --initial-cluster listing the current members and
    /// itself; it waits until it is added.
    Add {
        /// Its id: never used before in this cluster.
        id: u64,
        /// Its peer address, as the other members reach it (HOST:PORT).
        #[arg(long, value_parser = parse_peer_url)]
        peer_url: String,
    },
    /// Make a learner a voter; refused until it has caught up with the leader.
    Promote {
        /// The learner.
        id: u64,
    },
    /// Remove a member (the leader too: it hands leadership over first). Its id never comes
    /// back; stop the removed node afterwards.
    Remove {
        /// The member.
        id: u64,
    },
    /// Change a member's peer address (restart it listening there afterwards).
    Update {
        /// The member.
        id: u64,
        /// Its new peer address (HOST:PORT).
        #[arg(long, value_parser = parse_peer_url)]
        peer_url: String,
    },
    /// Replace a voter by a new node, never running with fewer voters than now: add the new
    /// node as a learner, wait until it has caught up (with a progress bar), promote it, then
    /// remove the old one. Start the new node first. Safe to run again after a failure: steps
    /// already done are skipped.
    Replace {
        /// The member to remove.
        #[arg(long)]
        old: u64,
        /// The new member's id (never used before in this cluster).
        #[arg(long)]
        new: u64,
        /// The new member's peer address (HOST:PORT).
        #[arg(long, value_parser = parse_peer_url)]
        peer_url: String,
        /// How long to wait for the new member to catch up.
        #[arg(long, default_value = "600s", value_parser = crate::parse_duration)]
        catch_up_timeout: Duration,
    },
}

/// `HOST:PORT`, or an etcd-style `http://HOST:PORT`.
fn parse_peer_url(text: &str) -> Result<String, String> {
    let address = text
        .strip_prefix("http://")
        .unwrap_or(text)
        .trim_end_matches('/');
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(address.to_string())
        }
        _ => Err(format!("{text:?} is not HOST:PORT")),
    }
}

/// Whether an answer says that nothing was proposed and another node may do better: it knows
/// no leader, or cannot reach it, or is stopping, or was removed.
fn nothing_proposed(status: &tonic::Status) -> bool {
    matches!(
        reason(status).as_deref(),
        Some(why::NO_QUORUM | why::NOT_LEADER | why::SHUTTING_DOWN)
    )
}

/// Makes one membership call, on the endpoints in turn. An answer that decided something
/// (success, a refusal, or an unknown outcome) is final and goes to no other node; a node that
/// cannot be reached, or that answers that nothing was proposed (no leader it can reach), is
/// passed over for the next.
async fn change<T, F, Fut>(ctx: &Context, call: F) -> Result<T, tonic::Status>
where
    F: Fn(AdminClient<crate::client::Conn>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut passed_over = Vec::new();
    let mut last = None;
    for endpoint in &ctx.endpoints {
        match ctx.admin(endpoint).await {
            Ok(client) => match call(client).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) if nothing_proposed(&status) => {
                    passed_over.push(format!("{endpoint}: {}", describe(&status)));
                    last = Some(status);
                }
                Err(status) => return Err(status),
            },
            Err(e) => passed_over.push(e.to_string()),
        }
    }
    match last {
        // (The reason stays, so that callers may wait and retry.)
        Some(status) => Err(tonic::Status::with_details(
            status.code(),
            format!(
                "no endpoint could make the change: {}",
                passed_over.join("; ")
            ),
            status.details().to_vec().into(),
        )),
        None => Err(tonic::Status::unavailable(format!(
            "no endpoint could be reached: {}",
            passed_over.join("; ")
        ))),
    }
}

async fn list(ctx: &Context) -> Result<(String, pb::ListMembersResponse)> {
    let mut errors = Vec::new();
    for endpoint in &ctx.endpoints {
        match ctx
            .ask_admin(endpoint, |mut c| async move {
                c.list_members(pb::ListMembersRequest {}).await
            })
            .await
        {
            Ok(reply) => return Ok((endpoint.clone(), reply)),
            Err(e) => errors.push(e),
        }
    }
    bail!("no endpoint answered: {}", errors.join("; "))
}

/// A member's role in words.
fn role(m: &pb::Member) -> &'static str {
    if m.learner {
        "learner"
    } else if m.outgoing {
        "voter (outgoing)"
    } else {
        "voter"
    }
}

fn print_members(ctx: &Context, endpoint: &str, reply: &pb::ListMembersResponse) {
    if ctx.json {
        let members: Vec<_> = reply
            .members
            .iter()
            .map(|m| {
                json!({"id": m.node_id, "peer_address": m.peer_address,
                       "client_address": m.client_address, "voter": m.voter,
                       "learner": m.learner, "outgoing": m.outgoing,
                       "is_leader": m.node_id == reply.leader_id,
                       "match_index": m.view.as_ref().map(|v| v.match_index),
                       "lag": m.view.as_ref().map(|v| v.lag),
                       "reachable": m.view.as_ref().map(|v| v.reachable)})
            })
            .collect();
        println!(
            "{}",
            json!({"answered_by": endpoint, "term": reply.term, "joint": reply.joint,
                   "membership_index": reply.membership_index, "members": members})
        );
        return;
    }
    println!(
        "(as seen by {endpoint}, term {}, membership of index {}{})",
        reply.term,
        reply.membership_index,
        if reply.joint {
            "; a change of voters is in progress: decisions need majorities of both the \
             incoming and the outgoing voters"
        } else {
            ""
        }
    );
    let answered_by_leader = reply
        .members
        .iter()
        .any(|m| m.view.is_none() && m.node_id == reply.leader_id);
    for m in &reply.members {
        let view = match &m.view {
            None => "this node".to_string(),
            // Reachable but refusing (another cluster's settings, not a member): say why.
            Some(v) if v.reachable && v.consecutive_failures > 0 => format!(
                "reachable, rtt {} us, but its last {} request(s) failed: {}",
                v.rtt_us, v.consecutive_failures, v.last_error
            ),
            Some(v) if v.reachable => format!("reachable, rtt {} us", v.rtt_us),
            Some(v) => format!("UNREACHABLE ({})", v.last_error),
        };
        // Only the leader knows how far behind each member is.
        let lag = match &m.view {
            Some(v) if answered_by_leader => format!(" lag={}", v.lag),
            _ => String::new(),
        };
        println!(
            "{}{} peer={} client={} {}{lag} [{view}]",
            m.node_id,
            if m.node_id == reply.leader_id {
                "*"
            } else {
                " "
            },
            m.peer_address,
            if m.client_address.is_empty() {
                "?"
            } else {
                &m.client_address
            },
            role(m),
        );
    }
}

fn report_change(ctx: &Context, what: &str, reply: &pb::MembershipChangeResponse) {
    if ctx.json {
        println!(
            "{}",
            json!({"changed": what, "index": reply.index, "term": reply.term})
        );
        return;
    }
    println!(
        "{what}: committed at index {} (term {})",
        reply.index, reply.term
    );
    if let Some(members) = &reply.members {
        print_members(ctx, "the node that answered", members);
    }
}

/// Runs `members ...`.
pub async fn run(ctx: &Context, command: MembersCommand) -> Result<ExitCode> {
    match command {
        MembersCommand::List => {
            let (endpoint, reply) = list(ctx).await?;
            print_members(ctx, &endpoint, &reply);
        }
        MembersCommand::Add { id, peer_url } => {
            let reply = patiently(ctx.timeout, || add(ctx, id, &peer_url))
                .await
                .map_err(|s| anyhow!("adding node {id}: {}", describe(&s)))?;
            report_change(ctx, &format!("node {id} added as a learner"), &reply);
        }
        MembersCommand::Promote { id } => {
            let reply = patiently(ctx.timeout, || promote(ctx, id))
                .await
                .map_err(|s| anyhow!("promoting node {id}: {}", describe(&s)))?;
            report_change(ctx, &format!("node {id} is a voter"), &reply);
        }
        MembersCommand::Remove { id } => {
            let reply = patiently(ctx.timeout, || remove(ctx, id))
                .await
                .map_err(|s| anyhow!("removing node {id}: {}", describe(&s)))?;
            report_change(ctx, &format!("node {id} removed"), &reply);
        }
        MembersCommand::Update { id, peer_url } => {
            let update = || {
                change(ctx, |mut c| {
                    let peer_address = peer_url.clone();
                    async move {
                        c.update_member(pb::UpdateMemberRequest {
                            node_id: id,
                            peer_address,
                        })
                        .await
                    }
                })
            };
            let reply = patiently(ctx.timeout, update)
                .await
                .map_err(|s| anyhow!("updating node {id}: {}", describe(&s)))?;
            report_change(ctx, &format!("node {id} is now at {peer_url}"), &reply);
        }
        MembersCommand::Replace {
            old,
            new,
            peer_url,
            catch_up_timeout,
        } => replace(ctx, old, new, &peer_url, catch_up_timeout).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(
    ctx: &Context,
    id: u64,
    peer_url: &str,
) -> Result<pb::MembershipChangeResponse, tonic::Status> {
    change(ctx, |mut c| {
        let peer_address = peer_url.to_string();
        async move {
            c.add_member(pb::AddMemberRequest {
                node_id: id,
                peer_address,
                voter: false,
            })
            .await
        }
    })
    .await
}

async fn promote(ctx: &Context, id: u64) -> Result<pb::MembershipChangeResponse, tonic::Status> {
    change(ctx, |mut c| async move {
        c.promote_member(pb::PromoteMemberRequest { node_id: id })
            .await
    })
    .await
}

async fn remove(ctx: &Context, id: u64) -> Result<pb::MembershipChangeResponse, tonic::Status> {
    change(ctx, |mut c| async move {
        c.remove_member(pb::RemoveMemberRequest { node_id: id })
            .await
    })
    .await
}

/// Retries `step` while the cluster says "not now" (another change still being left, an
/// election, a leader that was just removed), up to `patience`: each of those answers means
/// nothing was proposed.
async fn patiently<F, Fut>(
    patience: Duration,
    step: F,
) -> Result<pb::MembershipChangeResponse, tonic::Status>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<pb::MembershipChangeResponse, tonic::Status>>,
{
    let started = Instant::now();
    loop {
        match step().await {
            Err(status)
                if started.elapsed() < patience
                    && matches!(
                        reason(&status).as_deref(),
                        Some(why::MEMBERSHIP_CHANGE_REFUSED | why::NO_QUORUM | why::NOT_LEADER)
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// `members replace`: add the new node as a learner, wait until it caught up, promote it,
/// remove the old one; each step says what it does, and a failure says where the cluster
/// stands and how to go on.
async fn replace(
    ctx: &Context,
    old: u64,
    new: u64,
    peer_url: &str,
    catch_up_timeout: Duration,
) -> Result<()> {
    if old == new {
        bail!("--old and --new must differ");
    }
    let (_, before) = list(ctx).await?;
    let find = |id: u64| before.members.iter().find(|m| m.node_id == id);
    let Some(old_member) = find(old) else {
        bail!("node {old} is not a member: nothing to replace (quoratectl members list)");
    };
    if !old_member.voter && !old_member.outgoing {
        bail!("node {old} is a learner, not a voter: remove it with `quoratectl members remove {old}`");
    }
    let say = |step: &str| {
        if !ctx.json {
            eprintln!("{step}");
        }
    };
    let patience = ctx.timeout * 4;
    let failed = |step: &str, status: tonic::Status, state: &str| {
        anyhow!(
            "{step} failed: {}. {state} Run the same command again to go on from there.",
            describe(&status)
        )
    };
    // 1. The new node as a learner (skipped if it is one already: a second run).
    let promoted_before = match find(new) {
        Some(m) if m.learner => {
            say(&format!("1/4 node {new} is a learner already"));
            false
        }
        Some(_) => {
            say(&format!("1-3/4 node {new} is a voter already"));
            true
        }
        None => {
            say(&format!("1/4 adding node {new} ({peer_url}) as a learner"));
            patiently(patience, || add(ctx, new, peer_url))
                .await
                .map_err(|s| {
                    let state = if reason(&s).as_deref() == Some(why::OUTCOME_UNKNOWN) {
                        format!(
                            "Node {new} may or may not have been added (quoratectl members list)."
                        )
                    } else {
                        "Nothing changed.".to_string()
                    };
                    failed("adding the new node", s, &state)
                })?;
            false
        }
    };
    if !promoted_before {
        promote_when_caught_up(ctx, new, catch_up_timeout, &say, &failed).await?;
    }

    say(&format!("4/4 removing node {old}"));
    let removed = patiently(patience, || remove(ctx, old))
        .await
        .map_err(|s| {
            failed(
                "removing the old node",
                s,
                &format!("Node {new} is a voter and node {old} still a member."),
            )
        })?;
    report_change(
        ctx,
        &format!("node {old} replaced by node {new}; stop node {old} now"),
        &removed,
    );
    Ok(())
}

/// Steps 2 and 3 of `replace`: promotion is refused (LEARNER_BEHIND, with how far the learner
/// got) until it has caught up; the refusals drive the progress bar.
async fn promote_when_caught_up(
    ctx: &Context,
    new: u64,
    catch_up_timeout: Duration,
    say: &dyn Fn(&str),
    failed: &dyn Fn(&str, tonic::Status, &str) -> anyhow::Error,
) -> Result<()> {
    say(&format!("2/4 waiting for node {new} to catch up"));
    let bar = ProgressBar::new(1).with_style(
        ProgressStyle::with_template(
            "{spinner} catching up {pos}/{len} entries [{bar:30}] {elapsed_precise} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let promoted = loop {
        match promote(ctx, new).await {
            Ok(reply) => break reply,
            Err(status) if reason(&status).as_deref() == Some(why::LEARNER_BEHIND) => {
                let info = status.get_details_error_info();
                let number = |key: &str| {
                    info.as_ref()
                        .and_then(|i| i.metadata.get(key))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                bar.set_length(number("last_index").max(1));
                bar.set_position(number("match_index"));
                if started.elapsed() > catch_up_timeout {
                    bar.abandon();
                    return Err(failed(
                        "waiting for the new node to catch up",
                        status,
                        &format!(
                            "Node {new} is a learner (it does not vote) and still behind after \
                             {} s: check its log, disk and network.",
                            catch_up_timeout.as_secs()
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status)
                if matches!(
                    reason(&status).as_deref(),
                    Some(why::MEMBERSHIP_CHANGE_REFUSED | why::NO_QUORUM | why::NOT_LEADER)
                ) && started.elapsed() < catch_up_timeout =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => {
                bar.abandon();
                return Err(failed(
                    "promoting the new node",
                    status,
                    &format!("Node {new} is a learner (it does not vote)."),
                ));
            }
        }
    };
    bar.finish_and_clear();
    say(&format!(
        "3/4 node {new} promoted to voter (index {})",
        promoted.index
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_host_and_port() {
        assert_eq!(parse_peer_url("10.0.0.4:7400"), Ok("10.0.0.4:7400".into()));
        assert_eq!(
            parse_peer_url("http://quorate-4:7400/"),
            Ok("quorate-4:7400".into())
        );
        for bad in ["10.0.0.4", "http://x", ":7400", "host:port", "host:70000"] {
            assert!(parse_peer_url(bad).is_err(), "{bad}");
        }
    }
}
