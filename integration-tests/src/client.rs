//! Client-side helpers: retries with the same idempotency key, error reasons.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quorate_proto::payments as pb;
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use tonic::transport::Channel;

use crate::Cluster;

/// The contract's reading of a failed call (the one `quoratectl` follows): its reason, and
/// whether a write may be retried with the same idempotency key.
pub use quorate_proto::errors::{reason_of as reason, status_retryable as retryable};

/// A small deterministic generator for picking nodes.
pub struct Pick(u64);

impl Pick {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Pick(seed | 1)
    }

    /// One of `items`.
    pub fn one<T: Copy>(&mut self, items: &[T]) -> T {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        items[(self.0 % items.len() as u64) as usize]
    }
}

/// Cached clients of every node.
#[derive(Default)]
pub struct Clients {
    payments: HashMap<u64, PaymentEventsClient<Channel>>,
}

impl Clients {
    /// The payments client of node `id` (connected on first use).
    pub async fn payments(
        &mut self,
        cluster: &Cluster,
        id: u64,
    ) -> Result<PaymentEventsClient<Channel>, tonic::Status> {
        if let Some(client) = self.payments.get(&id) {
            return Ok(client.clone());
        }
        let client = cluster
            .payments(id)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        self.payments.insert(id, client.clone());
        Ok(client)
    }

    /// Forgets node `id`'s connection (after it was killed or restarted).
    pub fn forget(&mut self, id: u64) {
        self.payments.remove(&id);
    }

    /// Submits through random live nodes, retrying with the same idempotency key while the
    /// outcome is unknown, until `deadline` passes. Returns the answer and the node that gave
    /// it, or the last error.
    pub async fn submit(
        &mut self,
        cluster: &Cluster,
        pick: &mut Pick,
        request: &pb::SubmitRequest,
        deadline: Duration,
    ) -> Result<(pb::SubmitResponse, u64), tonic::Status> {
        self.submit_among(cluster, || cluster.live(), pick, request, deadline)
            .await
    }

    /// [`Clients::submit`] through the nodes `targets` names at each attempt (a client that
    /// follows the membership).
    pub async fn submit_among(
        &mut self,
        cluster: &Cluster,
        targets: impl Fn() -> Vec<u64>,
        pick: &mut Pick,
        request: &pb::SubmitRequest,
        deadline: Duration,
    ) -> Result<(pb::SubmitResponse, u64), tonic::Status> {
        let started = Instant::now();
        loop {
            let live = targets();
            let id = pick.one(&live);
            let result = match self.payments(cluster, id).await {
                Ok(mut client) => client.submit(request.clone()).await.map(|r| r.into_inner()),
                Err(e) => Err(e),
            };
            match result {
                Ok(reply) => return Ok((reply, id)),
                Err(status) if retryable(&status) && started.elapsed() < deadline => {
                    if status.code() == tonic::Code::Unavailable && reason(&status).is_none() {
                        self.forget(id);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => return Err(status),
            }
        }
    }
}

/// A valid authorization request for `payment_id` with idempotency key `key`.
pub fn authorize(payment_id: &str, key: &str, amount_minor: i64) -> pb::SubmitRequest {
    pb::SubmitRequest {
        payment_id: payment_id.to_string(),
        idempotency_key: key.to_string(),
        kind: pb::EventKind::Authorized as i32,
        amount_minor,
        currency: "EUR".into(),
        metadata: HashMap::new(),
        fence: None,
    }
}

/// Writes `events` authorizations named `{prefix}-{n}` from `clients` concurrent clients
/// through random live nodes, each retried with its key until acknowledged (within 30 s),
/// calling `acknowledged(count so far)` after each one. Panics on a write never acknowledged.
pub async fn write_many(
    cluster: &Cluster,
    prefix: &str,
    events: u64,
    clients: usize,
    acknowledged: impl Fn(u64),
) {
    let make = |n: u64| {
        let id = format!("{prefix}-{n}");
        authorize(&id, &id, 100)
    };
    write_many_with(cluster, events, clients, make, acknowledged).await;
}

/// Writes `make(0)`, `make(1)`, ... `make(events - 1)` from `clients` concurrent clients
/// through random live nodes, each retried with its idempotency key until acknowledged
/// (within 30 s), calling `acknowledged(count so far)` after each one. Panics on a write never
/// acknowledged.
pub async fn write_many_with(
    cluster: &Cluster,
    events: u64,
    clients: usize,
    make: impl Fn(u64) -> pb::SubmitRequest,
    acknowledged: impl Fn(u64),
) {
    let next = std::cell::Cell::new(0u64);
    let done = std::cell::Cell::new(0u64);
    let worker = |w: usize| {
        let (next, done, make, acknowledged) = (&next, &done, &make, &acknowledged);
        async move {
            let mut conn = Clients::default();
            let mut pick = Pick::new(w as u64 * 31 + 7);
            loop {
                let n = next.get();
                if n >= events {
                    return;
                }
                next.set(n + 1);
                let request = make(n);
                conn.submit(cluster, &mut pick, &request, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{} never acknowledged: {e}", request.idempotency_key)
                    });
                done.set(done.get() + 1);
                acknowledged(done.get());
            }
        }
    };
    futures_util::future::join_all((0..clients).map(worker)).await;
}

/// Submits `n` authorizations `{prefix}-{i}` one at a time through random live nodes
/// (`seed` picks them), each with its id as idempotency key, retrying until acknowledged.
/// Panics naming the first one never acknowledged within 20 s.
pub async fn write_authorizations(cluster: &Cluster, prefix: &str, n: usize, seed: u64) {
    let mut clients = Clients::default();
    let mut pick = Pick::new(seed);
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        clients
            .submit(
                cluster,
                &mut pick,
                &authorize(&id, &id, 10),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}

/// Every event node `id` holds, paging through `List` in index order.
pub async fn all_events(cluster: &Cluster, id: u64) -> Vec<pb::PaymentEvent> {
    let mut client = cluster.payments(id).await.expect("a client for the node");
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .list(pb::ListRequest {
                after_index: after,
                limit: 1000,
                // This node's own events, whether or not it reaches a quorum.
                consistency: pb::Consistency::Stale as i32,
            })
            .await
            .expect("List answers")
            .into_inner();
        if page.events.is_empty() {
            return events;
        }
        after = page.next_after_index;
        events.extend(page.events);
    }
}

/// Writes through random nodes with `clients` concurrent clients for `duration`, each write the
/// request `make(id)` gives for a fresh id; returns writes per second and every write's latency
/// in milliseconds (a closed loop: each client waits for its answer before the next write).
pub async fn closed_loop(
    cluster: &Cluster,
    label: &str,
    clients: usize,
    duration: Duration,
    make: impl Fn(&str) -> pb::SubmitRequest,
) -> (f64, Vec<f64>) {
    let counter = std::cell::Cell::new(0u64);
    let started = Instant::now();
    let latencies = std::cell::RefCell::new(Vec::new());
    let worker = |w: usize| {
        let (counter, latencies, make) = (&counter, &latencies, &make);
        async move {
            let mut conn = Clients::default();
            let mut pick = Pick::new(w as u64 + 1);
            while started.elapsed() < duration {
                let n = counter.get();
                counter.set(n + 1);
                let id = format!("{label}-{w}-{n}");
                let t = Instant::now();
                conn.submit(cluster, &mut pick, &make(&id), Duration::from_secs(10))
                    .await
                    .expect("write");
                latencies
                    .borrow_mut()
                    .push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    };
    futures_util::future::join_all((0..clients).map(worker)).await;
    let writes = latencies.borrow().len() as f64;
    (
        writes / started.elapsed().as_secs_f64(),
        latencies.into_inner(),
    )
}
