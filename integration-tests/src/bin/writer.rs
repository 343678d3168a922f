//! A writer that holds a lease: the client side of the zombie-writer test.
//!
//! It acquires `--lease` as `--holder`, then every `--every-ms` renews the lease and submits
//! one fenced authorization (`{holder}-{n}`) with the token it was granted. It prints one
//! line per outcome (`GRANTED token=T`, `WROTE index=I token=T`, `REFUSED reason=R ...`) and
//! exits with status 3 after `--max-refusals` consecutive refusals: a writer that was paused
//! past its lease must find itself fenced off, whatever it believes.
//!
//!   writer --endpoint 127.0.0.1:2379 --lease payment-writer --holder pod-a --ttl-ms 2000

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use quorate_integration_tests::client::reason;
use quorate_proto::payments as pb;
use quorate_proto::payments::leases_client::LeasesClient;
use quorate_proto::payments::payment_events_client::PaymentEventsClient;

struct Args {
    endpoint: String,
    lease: String,
    holder: String,
    ttl_ms: u64,
    every_ms: u64,
    max_refusals: u32,
}

fn args() -> Result<Args> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        map.insert(flag.trim_start_matches("--").to_string(), value);
    }
    let get = |k: &str| {
        map.get(k)
            .cloned()
            .with_context(|| format!("--{k} is required"))
    };
    Ok(Args {
        endpoint: get("endpoint")?,
        lease: get("lease")?,
        holder: get("holder")?,
        ttl_ms: get("ttl-ms")?.parse()?,
        every_ms: map.get("every-ms").map_or(Ok(100), |v| v.parse())?,
        max_refusals: map.get("max-refusals").map_or(Ok(3), |v| v.parse())?,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = args()?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.endpoint))?
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut leases = LeasesClient::new(channel.clone());
    let mut payments = PaymentEventsClient::new(channel);
    let token = loop {
        let reply = leases
            .acquire(pb::AcquireRequest {
                name: args.lease.clone(),
                holder: args.holder.clone(),
                ttl_ms: args.ttl_ms,
            })
            .await?
            .into_inner();
        if reply.granted {
            println!("GRANTED token={}", reply.token);
            break reply.token;
        }
        println!("WAITING holder={} token={}", reply.holder, reply.token);
        tokio::time::sleep(Duration::from_millis(args.every_ms)).await;
    };
    let mut refusals = 0;
    for n in 0.. {
        let keep = leases
            .keep_alive(pb::KeepAliveRequest {
                name: args.lease.clone(),
                holder: args.holder.clone(),
                token,
            })
            .await;
        if let Err(status) = keep {
            println!(
                "REFUSED reason={:?} keepalive {}",
                reason(&status),
                status.message()
            );
        }
        let id = format!("{}-{n}", args.holder);
        let request = pb::SubmitRequest {
            payment_id: id.clone(),
            idempotency_key: id.clone(),
            kind: pb::EventKind::Authorized as i32,
            amount_minor: 100,
            currency: "EUR".into(),
            metadata: HashMap::new(),
            fence: Some(pb::LeaseFence {
                lease: args.lease.clone(),
                token,
            }),
        };
        match payments.submit(request).await {
            Ok(reply) => {
                let index = reply
                    .into_inner()
                    .event
                    .map(|e| e.index)
                    .unwrap_or_default();
                println!("WROTE index={index} token={token} payment={id}");
                refusals = 0;
            }
            Err(status) => {
                println!(
                    "REFUSED reason={} token={token} payment={id} {}",
                    reason(&status).unwrap_or_default(),
                    status.message()
                );
                refusals += 1;
                if refusals >= args.max_refusals {
                    println!("FENCED OFF");
                    std::process::exit(3);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(args.every_ms)).await;
    }
    bail!("unreachable")
}
