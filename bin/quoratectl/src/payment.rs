//! `quoratectl payment ...`

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::{Subcommand, ValueEnum};
use quorate_proto::payments as pb;
use serde_json::json;

use crate::client::{describe, retryable, Context};
use crate::output::{event_json, event_line, payment_json, state_name};

/// Payment commands.
#[derive(Subcommand, Debug)]
pub enum PaymentCommand {
    /// Record an event of a payment (authorized, captured, voided, refunded).
    Submit {
        /// The payment.
        #[arg(long)]
        payment_id: String,
        /// What happened.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Amount in minor units (cents).
        #[arg(long)]
        amount: i64,
        /// ISO 4217 currency code (three uppercase letters).
        #[arg(long)]
        currency: String,
        /// Idempotency key: retrying with the same key and request returns the original
        /// outcome. [default: a fresh key]
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Metadata, KEY=VALUE (repeatable).
        #[arg(long = "metadata", value_parser = parse_pair)]
        metadata: Vec<(String, String)>,
        /// Writer lease fencing the write (with --fence-token).
        #[arg(long, requires = "fence_token")]
        fence_lease: Option<String>,
        /// The token the lease was granted with.
        #[arg(long, requires = "fence_lease")]
        fence_token: Option<u64>,
    },
    /// Show a payment and its events.
    Get {
        /// The payment.
        payment_id: String,
        /// Read this node's state without confirming leadership (works without a quorum).
        #[arg(long)]
        stale: bool,
    },
    /// List events in log order.
    List {
        /// Only events after this index.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// List this node's events without confirming leadership (works without a quorum;
        /// may be behind).
        #[arg(long)]
        stale: bool,
    },
    /// Print events as they are applied (after --after), until interrupted.
    Watch {
        /// Start after this index.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Start from this node's state without confirming leadership (works without a
        /// quorum; may start behind).
        #[arg(long)]
        stale: bool,
    },
}

/// The read consistency for `--stale`.
fn consistency(stale: bool) -> i32 {
    if stale {
        pb::Consistency::Stale as i32
    } else {
        pb::Consistency::Linearizable as i32
    }
}

/// Event kinds.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Funds reserved.
    Authorized,
    /// Funds taken (partial captures allowed).
    Captured,
    /// Authorization cancelled (nothing captured).
    Voided,
    /// Captured funds returned.
    Refunded,
}

impl Kind {
    fn to_proto(self) -> pb::EventKind {
        match self {
            Kind::Authorized => pb::EventKind::Authorized,
            Kind::Captured => pb::EventKind::Captured,
            Kind::Voided => pb::EventKind::Voided,
            Kind::Refunded => pb::EventKind::Refunded,
        }
    }
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn fresh_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("qctl-{nanos:x}-{}", std::process::id())
}

/// Runs a payment command.
pub async fn run(ctx: &Context, command: PaymentCommand) -> Result<ExitCode> {
    match command {
        PaymentCommand::Submit {
            payment_id,
            kind,
            amount,
            currency,
            idempotency_key,
            metadata,
            fence_lease,
            fence_token,
        } => {
            let request = pb::SubmitRequest {
                payment_id,
                idempotency_key: idempotency_key.unwrap_or_else(fresh_key),
                kind: kind.to_proto() as i32,
                amount_minor: amount,
                currency,
                metadata: metadata.into_iter().collect::<HashMap<_, _>>(),
                fence: fence_lease
                    .zip(fence_token)
                    .map(|(lease, token)| pb::LeaseFence { lease, token }),
            };
            submit(ctx, request).await
        }
        PaymentCommand::Get { payment_id, stale } => {
            let request = pb::GetRequest {
                payment_id,
                consistency: consistency(stale),
            };
            let mut last_error = None;
            for endpoint in &ctx.endpoints {
                let mut client = match ctx.payments(endpoint).await {
                    Ok(c) => c,
                    Err(e) => {
                        last_error = Some(e.to_string());
                        continue;
                    }
                };
                match client.get(request.clone()).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        let payment = reply.payment.unwrap_or_default();
                        if ctx.json {
                            println!(
                                "{}",
                                json!({"endpoint": endpoint, "payment": payment_json(&payment),
                                       "applied_index": reply.applied_index, "stale": reply.stale})
                            );
                        } else {
                            println!(
                                "{} {} currency={} authorized={} captured={} refunded={} \
                                 (applied_index={}{})",
                                payment.payment_id,
                                state_name(payment.state),
                                payment.currency,
                                payment.authorized_minor,
                                payment.captured_minor,
                                payment.refunded_minor,
                                reply.applied_index,
                                if reply.stale { ", STALE read" } else { "" }
                            );
                            for event in &payment.events {
                                println!("  {}", event_line(event));
                            }
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(status) if retryable(&status) => {
                        last_error = Some(format!("{endpoint}: {}", describe(&status)));
                    }
                    Err(status) => bail!("{endpoint}: {}", describe(&status)),
                }
            }
            Err(anyhow!(
                "no endpoint could answer: {}",
                last_error.unwrap_or_default()
            ))
        }
        PaymentCommand::List {
            after,
            limit,
            stale,
        } => {
            let endpoint = first_reachable(ctx).await?;
            let mut client = ctx.payments(&endpoint).await?;
            let reply = client
                .list(pb::ListRequest {
                    after_index: after,
                    limit,
                    consistency: consistency(stale),
                })
                .await
                .map_err(|s| anyhow!("{endpoint}: {}", describe(&s)))?
                .into_inner();
            if ctx.json {
                println!(
                    "{}",
                    json!({"events": reply.events.iter().map(event_json).collect::<Vec<_>>(),
                           "next_after_index": reply.next_after_index})
                );
            } else {
                for event in &reply.events {
                    println!("{}", event_line(event));
                }
                println!("next: --after {}", reply.next_after_index);
            }
            Ok(ExitCode::SUCCESS)
        }
        PaymentCommand::Watch { after, stale } => {
            let endpoint = first_reachable(ctx).await?;
            let channel = ctx.channel(&endpoint).await?;
            // A watch outlives any request deadline.
            let mut client =
                quorate_proto::payments::payment_events_client::PaymentEventsClient::new(channel);
            let mut stream = client
                .watch(pb::WatchRequest {
                    after_index: after,
                    consistency: consistency(stale),
                })
                .await
                .map_err(|s| anyhow!("{endpoint}: {}", describe(&s)))?
                .into_inner();
            while let Some(event) = stream
                .message()
                .await
                .map_err(|s| anyhow!("{endpoint}: {}", describe(&s)))?
            {
                if ctx.json {
                    println!("{}", event_json(&event));
                } else {
                    println!("{}", event_line(&event));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn first_reachable(ctx: &Context) -> Result<String> {
    let mut errors = Vec::new();
    for endpoint in &ctx.endpoints {
        match ctx.channel(endpoint).await {
            Ok(_) => return Ok(endpoint.clone()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    bail!("no endpoint reachable: {}", errors.join("; "))
}

/// Submits, trying each endpoint in turn with the same idempotency key while the outcome is
/// unknown or the node has no quorum.
async fn submit(ctx: &Context, request: pb::SubmitRequest) -> Result<ExitCode> {
    let mut last_error = String::new();
    for round in 0..3 {
        for endpoint in &ctx.endpoints {
            let mut client = match ctx.payments(endpoint).await {
                Ok(client) => client,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            match client.submit(request.clone()).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    let event = reply.event.unwrap_or_default();
                    if ctx.json {
                        println!(
                            "{}",
                            json!({"endpoint": endpoint, "event": event_json(&event),
                                   "replayed": reply.replayed})
                        );
                    } else {
                        println!(
                            "{}{}",
                            event_line(&event),
                            if reply.replayed { " (replayed)" } else { "" }
                        );
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Err(status) if retryable(&status) => {
                    last_error = format!("{endpoint}: {}", describe(&status));
                    eprintln!("retrying elsewhere ({last_error})");
                }
                Err(status) => {
                    eprintln!("error: {endpoint}: {}", describe(&status));
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * (round + 1))).await;
    }
    eprintln!(
        "error: no node accepted the write (idempotency key {}): {last_error}",
        request.idempotency_key
    );
    Ok(ExitCode::FAILURE)
}
