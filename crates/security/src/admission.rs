//! The client port's limits, as a tower layer: a node under more load than it can serve keeps
//! serving what it can, at a bounded latency and in bounded memory, and refuses the rest at
//! once with `RESOURCE_EXHAUSTED` and a retry hint (a `RetryInfo` detail), instead of queueing
//! without bound until every caller times out.
//!
//! - Unary calls: at most `max_in_flight` run at once; up to `max_queued` more wait, each at
//!   most `queue_timeout`; any beyond are refused.
//! - A unary call's own deadline (`grpc-timeout`) is answered here with `DEADLINE_EXCEEDED`:
//!   `RESOURCE_EXHAUSTED` as the reason if the call was still waiting for a slot (nothing was
//!   done), `OUTCOME_UNKNOWN` if it was being served (a write may have been committed: retry
//!   it with the same idempotency key). tonic enforces the same deadline around this layer but
//!   answers `CANCELLED` ("Timeout expired"), which tells a caller nothing of what happened;
//!   this layer's timer is set [`DEADLINE_LEAD`] earlier, so its answer is the one sent.
//! - `Watch` streams: at most `max_watches` open on the node, and `max_watches_per_client`
//!   per client (its identity when it has one, else its IP address); they do not count as
//!   calls in flight, since a stream stays open for as long as its client likes.
//! - Health checks and reflection are never limited: an overloaded node must still answer
//!   its probes.
//!
//! Proposals have a bound of their own in the node (`--max-pending-proposals`), which also
//! covers writes forwarded by followers.
//!
//! A node under overload refuses many calls for each one it serves, so a refusal must cost
//! next to nothing: the unary limits run as the outermost layer of the client port
//! ([`AdmissionLayer::for_calls`]: a refused call gets no span and no role check), and
//! their answers are encoded once, when the layer is made. The `Watch` limits run inside the
//! role layer ([`AdmissionLayer::for_watches`]), where the caller's identity is known.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use quorate_proto::errors::reason;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Identity;
use crate::tls::ConnInfo;

/// The client port's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Unary calls served at once.
    pub max_in_flight: usize,
    /// Unary calls waiting for one of those slots.
    pub max_queued: usize,
    /// How long a call may wait for a slot.
    pub queue_timeout: Duration,
    /// Open `Watch` streams on the node.
    pub max_watches: usize,
    /// Open `Watch` streams per client.
    pub max_watches_per_client: usize,
}

/// The defaults, once: `quorate serve` and its `--help` use these.
pub mod defaults {
    use std::time::Duration;

    /// Calls served at once per node. Measured on a 2-vCPU machine (medians of
    /// `overload --rounds 3`, a 10x open-loop overload with the nodes on one CPU): 128 per
    /// node served 0.79 of the capacity with a p99 of 683 ms, 256 served 0.90 with 974 ms
    /// and recovered to 0.98 of capacity (128: 0.85), for about 25 MiB more memory over
    /// three nodes; 512 let the p99 reach 4.8 s. Closed-loop, `vs-etcd --clients 1000` (333 callers per node)
    /// went from 13,624-14,257 writes/s and a p99 of 153-158 ms with 128 to 14,254-15,102
    /// and 126-141 ms with 256 (three rounds each).
    pub const MAX_IN_FLIGHT: usize = 256;
    /// Calls waiting per node: enough that 1,000 closed-loop clients spread over three nodes
    /// are all served (with a queue of 256, `vs-etcd --clients 1000` had thousands refused);
    /// what a served call waited is bounded by the timeout below, not by this.
    pub const MAX_QUEUED: usize = 1_024;
    /// The longest wait for a slot: it bounds what a served call waited before its turn.
    pub const QUEUE_TIMEOUT: Duration = Duration::from_millis(200);
    /// Open `Watch` streams per node.
    pub const MAX_WATCHES: usize = 1_000;
    /// Open `Watch` streams per client.
    pub const MAX_WATCHES_PER_CLIENT: usize = 100;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: defaults::MAX_IN_FLIGHT,
            max_queued: defaults::MAX_QUEUED,
            queue_timeout: defaults::QUEUE_TIMEOUT,
            max_watches: defaults::MAX_WATCHES,
            max_watches_per_client: defaults::MAX_WATCHES_PER_CLIENT,
        }
    }
}

/// How long a refused caller is asked to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// The same for a refused `Watch` (streams end rarely: no point asking again at once).
const WATCH_RETRY_AFTER: Duration = Duration::from_secs(2);

/// How much sooner than tonic's own timer this layer answers a call whose deadline passed:
/// tonic's timer starts a few microseconds before this layer's, and both round up to the
/// timer wheel's millisecond.
pub const DEADLINE_LEAD: Duration = Duration::from_millis(1);

/// What the limits see now, and what they refused so far (for `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Unary calls being served.
    pub in_flight: u64,
    /// Unary calls waiting for a slot.
    pub queued: u64,
    /// Open `Watch` streams.
    pub watches: u64,
    /// Calls refused because the queue was full, or their wait ran out.
    pub shed_requests: u64,
    /// `Watch` streams refused at the node's limit.
    pub shed_watches: u64,
    /// `Watch` streams refused at a client's limit.
    pub shed_client_watches: u64,
    /// Unary calls answered `DEADLINE_EXCEEDED`: their `grpc-timeout` ran out while they
    /// waited for a slot.
    pub deadline_queued: u64,
    /// The same, while they were being served.
    pub deadline_serving: u64,
}

/// A refusal's HTTP response headers (`grpc-status`, message, details), encoded once.
#[derive(Debug)]
struct Refusal(http::HeaderMap);

impl Refusal {
    fn new(status: tonic::Status) -> Self {
        Refusal(crate::refusal(status).into_parts().0.headers)
    }

    fn response(&self) -> http::Response<tonic::body::Body> {
        let mut response = http::Response::new(tonic::body::Body::empty());
        *response.headers_mut() = self.0.clone();
        response
    }
}

#[derive(Debug)]
struct Admission {
    limits: Limits,
    /// The answer when the queue is full.
    queue_full: Refusal,
    /// The answer when a call's wait ran out.
    wait_over: Refusal,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    watches: Arc<Semaphore>,
    watches_by_client: Mutex<HashMap<String, usize>>,
    shed_requests: AtomicU64,
    shed_watches: AtomicU64,
    shed_client_watches: AtomicU64,
    deadline_queued: AtomicU64,
    deadline_serving: AtomicU64,
}

/// Why a unary call was refused.
#[derive(Clone, Copy, Debug)]
enum Shed {
    /// The queue was full (`limit=queued_requests`).
    QueueFull,
    /// Its wait for a slot ran out (`limit=queue_timeout`).
    WaitOver,
}

/// Which limits a layer enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    All,
    Calls,
    Watches,
}

/// The layer; clone it freely (clones share the limits).
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    admission: Arc<Admission>,
    scope: Scope,
}

impl AdmissionLayer {
    /// A layer enforcing `limits`, all of them.
    pub fn new(limits: Limits) -> Self {
        AdmissionLayer {
            scope: Scope::All,
            admission: Arc::new(Admission {
                limits,
                queue_full: Refusal::new(Admission::refuse(
                    "queued_requests",
                    format!(
                        "the node is serving {} calls and {} more are waiting \
                         (--max-concurrent-requests, --max-queued-requests): retry later or on \
                         another node",
                        limits.max_in_flight, limits.max_queued
                    ),
                    RETRY_AFTER,
                )),
                wait_over: Refusal::new(Admission::refuse(
                    "queue_timeout",
                    format!(
                        "no slot came free within {} ms while the node served {} calls \
                         (--max-concurrent-requests): retry later or on another node",
                        limits.queue_timeout.as_millis(),
                        limits.max_in_flight
                    ),
                    RETRY_AFTER,
                )),
                slots: Arc::new(Semaphore::new(limits.max_in_flight)),
                queued: AtomicUsize::new(0),
                watches: Arc::new(Semaphore::new(limits.max_watches)),
                watches_by_client: Mutex::default(),
                shed_requests: AtomicU64::new(0),
                shed_watches: AtomicU64::new(0),
                shed_client_watches: AtomicU64::new(0),
                deadline_queued: AtomicU64::new(0),
                deadline_serving: AtomicU64::new(0),
            }),
        }
    }

    /// The same limits, only those of unary calls: the outermost layer of the client port.
    pub fn for_calls(&self) -> Self {
        AdmissionLayer {
            admission: self.admission.clone(),
            scope: Scope::Calls,
        }
    }

    /// The same limits, only those of `Watch` streams: inside the role layer, which tells
    /// who the client is.
    pub fn for_watches(&self) -> Self {
        AdmissionLayer {
            admission: self.admission.clone(),
            scope: Scope::Watches,
        }
    }

    /// What the limits see now.
    pub fn stats(&self) -> AdmissionStats {
        let a = &self.admission;
        AdmissionStats {
            in_flight: (a.limits.max_in_flight - a.slots.available_permits()) as u64,
            queued: a.queued.load(Ordering::Relaxed) as u64,
            watches: (a.limits.max_watches - a.watches.available_permits()) as u64,
            shed_requests: a.shed_requests.load(Ordering::Relaxed),
            shed_watches: a.shed_watches.load(Ordering::Relaxed),
            shed_client_watches: a.shed_client_watches.load(Ordering::Relaxed),
            deadline_queued: a.deadline_queued.load(Ordering::Relaxed),
            deadline_serving: a.deadline_serving.load(Ordering::Relaxed),
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            admission: self.admission.clone(),
            scope: self.scope,
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<Admission>,
    scope: Scope,
}

/// What kind of call, for the limits.
enum Kind {
    /// Never limited.
    Probe,
    /// A `Watch` stream.
    Watch,
    /// Anything else.
    Unary,
}

fn kind(path: &str) -> Kind {
    let (service, method) = crate::service_and_method(path);
    match (service, method) {
        (s, _) if crate::is_probe(s) => Kind::Probe,
        ("quorate.payments.v1.PaymentEvents", "Watch") => Kind::Watch,
        _ => Kind::Unary,
    }
}

/// Holds a `Watch` stream's place until the stream ends.
struct WatchPlace {
    _permit: OwnedSemaphorePermit,
    client: String,
    admission: Arc<Admission>,
}

impl Drop for WatchPlace {
    fn drop(&mut self) {
        let mut by_client = self
            .admission
            .watches_by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

impl Admission {
    fn refuse(limit: &str, message: String, retry_after: Duration) -> tonic::Status {
        crate::status(
            tonic::Code::ResourceExhausted,
            reason::RESOURCE_EXHAUSTED,
            message,
            &[("limit", limit.to_string())],
            Some(retry_after),
        )
    }

    /// A slot for a unary call, waiting in the queue if there is room in it.
    async fn slot(self: Arc<Self>) -> Result<OwnedSemaphorePermit, Shed> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let limits = self.limits;
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _leave = Leave(&self.queued);
        if queued >= limits.max_queued {
            self.shed_requests.fetch_add(1, Ordering::Relaxed);
            return Err(Shed::QueueFull);
        }
        match tokio::time::timeout(limits.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.shed_requests.fetch_add(1, Ordering::Relaxed);
                Err(Shed::WaitOver)
            }
        }
    }

    /// The answer to a call refused for `why`.
    fn refusal(&self, why: Shed) -> http::Response<tonic::body::Body> {
        match why {
            Shed::QueueFull => self.queue_full.response(),
            Shed::WaitOver => self.wait_over.response(),
        }
    }

    /// The answer to a call whose own deadline (`timeout`, from its `grpc-timeout`) passed
    /// while it waited for a slot or, if `serving`, while it was served.
    fn deadline_passed(&self, timeout: Duration, serving: bool) -> tonic::Status {
        let took = format!("the call's deadline (grpc-timeout {timeout:?}) passed");
        if serving {
            self.deadline_serving.fetch_add(1, Ordering::Relaxed);
            crate::status(
                tonic::Code::DeadlineExceeded,
                reason::OUTCOME_UNKNOWN,
                format!(
                    "{took} before the node finished it: a write may or may not have been \
                     committed; retry it with the same idempotency key"
                ),
                &[("stage", "serving".to_string())],
                None,
            )
        } else {
            self.deadline_queued.fetch_add(1, Ordering::Relaxed);
            crate::status(
                tonic::Code::DeadlineExceeded,
                reason::RESOURCE_EXHAUSTED,
                format!(
                    "{took} while it waited for one of the {} slots \
                     (--max-concurrent-requests): nothing was done; retry later or on another \
                     node",
                    self.limits.max_in_flight
                ),
                &[
                    ("stage", "queued".to_string()),
                    ("limit", "deadline".to_string()),
                ],
                Some(RETRY_AFTER),
            )
        }
    }

    /// A place for a `Watch` stream of `client`.
    fn watch_place(self: &Arc<Self>, client: String) -> Result<WatchPlace, tonic::Status> {
        let Ok(permit) = self.watches.clone().try_acquire_owned() else {
            self.shed_watches.fetch_add(1, Ordering::Relaxed);
            return Err(Admission::refuse(
                "watches",
                format!(
                    "{} Watch streams are open on this node (--max-watches): watch from another \
                     node, or later",
                    self.limits.max_watches
                ),
                WATCH_RETRY_AFTER,
            ));
        };
        let mut by_client = self
            .watches_by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let open = by_client.entry(client.clone()).or_insert(0);
        if *open >= self.limits.max_watches_per_client {
            drop(by_client);
            self.shed_client_watches.fetch_add(1, Ordering::Relaxed);
            return Err(Admission::refuse(
                "watches_per_client",
                format!(
                    "{client} has {} Watch streams open on this node \
                     (--max-watches-per-client): close some, or share one",
                    self.limits.max_watches_per_client
                ),
                WATCH_RETRY_AFTER,
            ));
        }
        *open += 1;
        Ok(WatchPlace {
            _permit: permit,
            client,
            admission: self.clone(),
        })
    }
}

/// Who a caller is for the per-client limits: its identity, else its IP address.
fn client_of<B>(request: &http::Request<B>) -> String {
    if let Some(Identity(name)) = request.extensions().get::<Identity>() {
        return name.clone();
    }
    request
        .extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.remote)
        .map(|a| match a.ip() {
            IpAddr::V6(v6) => v6.to_canonical().to_string(),
            v4 => v4.to_string(),
        })
        .unwrap_or_else(|| "an unknown client".to_string())
}

/// A call's `grpc-timeout` (gRPC over HTTP/2: at most 8 digits and a unit, one of `H M S m u
/// n`), if it has a valid one. tonic does not export its parser.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AdmissionService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match (kind(request.uri().path()), self.scope) {
            (Kind::Probe, _) | (Kind::Watch, Scope::Calls) | (Kind::Unary, Scope::Watches) => {
                Box::pin(self.inner.call(request))
            }
            (Kind::Watch, _) => {
                let place = match self.admission.watch_place(client_of(&request)) {
                    Ok(place) => place,
                    Err(status) => return Box::pin(std::future::ready(Ok(crate::refusal(status)))),
                };
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await?;
                    // The place is held until the stream's body is dropped: when the stream
                    // ends, or its client goes away.
                    Ok(response.map(|body| {
                        tonic::body::Body::new(body.map_frame(move |frame| {
                            let _held = &place;
                            frame
                        }))
                    }))
                })
            }
            (Kind::Unary, _) => {
                // The service that was polled ready serves this call; a clone takes its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let admission = self.admission.clone();
                let deadline = grpc_timeout(request.headers()).map(|timeout| {
                    let at = tokio::time::Instant::now() + timeout.saturating_sub(DEADLINE_LEAD);
                    (timeout, at)
                });
                Box::pin(async move {
                    let mut serving = false;
                    let serve = async {
                        let slot = match admission.clone().slot().await {
                            Ok(slot) => slot,
                            Err(why) => return Ok(admission.refusal(why)),
                        };
                        serving = true;
                        let response = inner.call(request).await;
                        drop(slot);
                        response
                    };
                    let Some((timeout, at)) = deadline else {
                        return serve.await;
                    };
                    let outcome = tokio::time::timeout_at(at, serve).await;
                    match outcome {
                        Ok(response) => response,
                        Err(_) => Ok(crate::refusal(admission.deadline_passed(timeout, serving))),
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;
    use tower::{Layer, Service, ServiceExt};

    /// A service that answers each call when `gate` lets it, so calls stay in flight; health
    /// checks are answered at once.
    fn gated(
        gate: Arc<Semaphore>,
    ) -> impl Service<
        http::Request<()>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
           + Send
           + 'static {
        tower::service_fn(move |request: http::Request<()>| {
            let gate = gate.clone();
            async move {
                let path = request.uri().path();
                if path.ends_with("/Watch") {
                    // A stream that stays open until its client goes away.
                    let open = futures_util::stream::pending::<
                        Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
                    >();
                    let body = tonic::body::Body::new(http_body_util::StreamBody::new(open));
                    return Ok(http::Response::new(body));
                }
                if !path.starts_with("/grpc.health") {
                    gate.acquire().await.unwrap().forget();
                }
                Ok(http::Response::new(tonic::body::Body::empty()))
            }
        })
    }

    fn request(path: &str) -> http::Request<()> {
        let mut r = http::Request::new(());
        *r.uri_mut() = path.parse().unwrap();
        r.extensions_mut().insert(ConnInfo {
            remote: Some("10.0.0.7:5000".parse().unwrap()),
            certs: None,
        });
        r
    }

    fn refusal(response: &http::Response<tonic::body::Body>) -> Option<(String, String)> {
        let status = tonic::Status::from_header_map(response.headers())?;
        let info = status.get_details_error_info()?;
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let delay = status.get_details_retry_info().and_then(|r| r.retry_delay);
        assert!(delay.is_some(), "a retry hint");
        Some((info.reason, info.metadata["limit"].clone()))
    }

    /// Waits (in real time, briefly) until `stats` says `done`.
    async fn until(layer: &AdmissionLayer, done: impl Fn(AdmissionStats) -> bool) {
        for _ in 0..200 {
            if done(layer.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("not reached: {:?}", layer.stats());
    }

    const SUBMIT: &str = "/quorate.payments.v1.PaymentEvents/Submit";

    #[tokio::test]
    async fn calls_beyond_the_slots_and_the_queue_are_refused_at_once() {
        let limits = Limits {
            max_in_flight: 2,
            max_queued: 1,
            queue_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let layer = AdmissionLayer::new(limits);
        let gate = Arc::new(Semaphore::new(0));
        let service = layer.layer(gated(gate.clone()));
        let calls: Vec<_> = (0..3)
            .map(|_| tokio::spawn(service.clone().oneshot(request(SUBMIT))))
            .collect();
        until(&layer, |s| s.in_flight == 2 && s.queued == 1).await;
        // The fourth finds the queue full: refused at once.
        let refused = service.clone().oneshot(request(SUBMIT)).await.unwrap();
        assert_eq!(
            refusal(&refused),
            Some(("RESOURCE_EXHAUSTED".into(), "queued_requests".into()))
        );
        // Health checks are never limited.
        let probe = service
            .clone()
            .oneshot(request("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        assert!(refusal(&probe).is_none());
        // Slots free up: the queued call is served, nothing else refused.
        gate.add_permits(3);
        for call in calls {
            assert!(refusal(&call.await.unwrap().unwrap()).is_none());
        }
        let stats = layer.stats();
        assert_eq!(
            (stats.shed_requests, stats.in_flight, stats.queued),
            (1, 0, 0)
        );
    }

    /// The client port's order: credentials checked outside the limits, roles inside. Calls
    /// without credentials are refused as such even when every slot is taken, and never take
    /// a slot or a place in the queue from an authorised caller.
    #[tokio::test]
    async fn calls_without_credentials_never_take_a_slot_from_authorised_ones() {
        use crate::auth::{AuthLayer, Policy};
        let policy = crate::reload::Reloadable::new("roles", Vec::new(), || {
            // sha256("test")
            Policy::parse(
                "[[identity]]\nname = \"api\"\nroles = [\"writer\"]\ntoken_sha256 = \
                 \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
            )
        })
        .unwrap();
        let limits = Limits {
            max_in_flight: 1,
            max_queued: 1,
            queue_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let layer = AdmissionLayer::new(limits);
        let authenticate = AuthLayer::authenticate(Some(policy));
        let gate = Arc::new(Semaphore::new(0));
        let service = tower::ServiceBuilder::new()
            .layer(authenticate.clone())
            .layer(layer.for_calls())
            .layer(authenticate.authorize())
            .service(gated(gate.clone()));
        let authorised = || {
            let mut r = request(SUBMIT);
            r.headers_mut()
                .insert(http::header::AUTHORIZATION, "Bearer test".parse().unwrap());
            r
        };
        // An authorised call holds the one slot.
        let held = tokio::spawn(service.clone().oneshot(authorised()));
        until(&layer, |s| s.in_flight == 1).await;
        // A flood of anonymous calls: each refused for what it lacks, none queued or shed.
        for _ in 0..50 {
            let refused = service.clone().oneshot(request(SUBMIT)).await.unwrap();
            let status = tonic::Status::from_header_map(refused.headers()).unwrap();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        }
        assert_eq!(authenticate.unauthenticated(), 50);
        assert_eq!((layer.stats().queued, layer.stats().shed_requests), (0, 0));
        // The queue's one place is still free for an authorised caller, who is served.
        let waiting = tokio::spawn(service.clone().oneshot(authorised()));
        until(&layer, |s| s.queued == 1).await;
        gate.add_permits(2);
        for call in [held, waiting] {
            assert!(refusal(&call.await.unwrap().unwrap()).is_none());
        }
        assert_eq!(layer.stats().shed_requests, 0);
    }

    #[tokio::test]
    async fn each_half_of_a_split_layer_enforces_only_its_own_limits() {
        let limits = Limits {
            max_in_flight: 1,
            max_queued: 0,
            max_watches: 1,
            max_watches_per_client: 1,
            ..Limits::default()
        };
        let layer = AdmissionLayer::new(limits);
        let gate = Arc::new(Semaphore::new(0));
        let calls = layer.for_calls().layer(gated(gate.clone()));
        let watches = layer.for_watches().layer(gated(gate.clone()));
        let watch = "/quorate.payments.v1.PaymentEvents/Watch";
        // The calls' half lets every Watch through; the watches' half every unary call.
        let w1 = calls.clone().oneshot(request(watch)).await.unwrap();
        let w2 = calls.clone().oneshot(request(watch)).await.unwrap();
        assert!(refusal(&w1).is_none() && refusal(&w2).is_none());
        let blocker = tokio::spawn(watches.clone().oneshot(request(SUBMIT)));
        let through = tokio::spawn(watches.clone().oneshot(request(SUBMIT)));
        // Each half enforces its own, on the limits they share.
        let held = tokio::spawn(calls.clone().oneshot(request(SUBMIT)));
        until(&layer, |s| s.in_flight == 1).await;
        let refused = calls.clone().oneshot(request(SUBMIT)).await.unwrap();
        assert_eq!(
            refusal(&refused),
            Some(("RESOURCE_EXHAUSTED".into(), "queued_requests".into()))
        );
        let w3 = watches.clone().oneshot(request(watch)).await.unwrap();
        assert!(refusal(&w3).is_none());
        let w4 = watches.clone().oneshot(request(watch)).await.unwrap();
        assert_eq!(
            refusal(&w4),
            Some(("RESOURCE_EXHAUSTED".into(), "watches".into()))
        );
        gate.add_permits(3);
        for call in [blocker, through, held] {
            assert!(refusal(&call.await.unwrap().unwrap()).is_none());
        }
        drop(w3);
        assert_eq!(layer.stats().shed_requests, 1);
    }

    #[tokio::test]
    async fn a_call_whose_wait_runs_out_is_refused() {
        let limits = Limits {
            max_in_flight: 1,
            max_queued: 5,
            queue_timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        let layer = AdmissionLayer::new(limits);
        let gate = Arc::new(Semaphore::new(0));
        let service = layer.layer(gated(gate.clone()));
        let blocker = tokio::spawn(service.clone().oneshot(request(SUBMIT)));
        until(&layer, |s| s.in_flight == 1).await;
        let waited = service.clone().oneshot(request(SUBMIT)).await.unwrap();
        assert_eq!(
            refusal(&waited),
            Some(("RESOURCE_EXHAUSTED".into(), "queue_timeout".into()))
        );
        gate.add_permits(1);
        assert!(refusal(&blocker.await.unwrap().unwrap()).is_none());
        assert_eq!(layer.stats().queued, 0);
    }

    #[tokio::test]
    async fn a_call_whose_own_deadline_passes_is_answered_deadline_exceeded_with_its_stage() {
        let limits = Limits {
            max_in_flight: 1,
            max_queued: 5,
            queue_timeout: Duration::from_secs(10),
            ..Limits::default()
        };
        let layer = AdmissionLayer::new(limits);
        let gate = Arc::new(Semaphore::new(0));
        let service = layer.layer(gated(gate.clone()));
        let timed = |timeout: &'static str| {
            let mut r = request(SUBMIT);
            r.headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_static(timeout));
            r
        };
        let answer = |response: http::Response<tonic::body::Body>| {
            let status = tonic::Status::from_header_map(response.headers()).expect("a status");
            let info = status.get_details_error_info().expect("a reason");
            (status.code(), info.reason, info.metadata["stage"].clone())
        };
        let started = tokio::time::Instant::now();
        let served = tokio::spawn(service.clone().oneshot(timed("80m")));
        until(&layer, |s| s.in_flight == 1).await;
        let queued = service.clone().oneshot(timed("30m")).await.unwrap();
        assert_eq!(
            answer(queued),
            (
                tonic::Code::DeadlineExceeded,
                "RESOURCE_EXHAUSTED".into(),
                "queued".into()
            )
        );
        assert_eq!(
            answer(served.await.unwrap().unwrap()),
            (
                tonic::Code::DeadlineExceeded,
                "OUTCOME_UNKNOWN".into(),
                "serving".into()
            )
        );
        assert!(started.elapsed() >= Duration::from_millis(79));
        let stats = layer.stats();
        assert_eq!((stats.deadline_queued, stats.deadline_serving), (1, 1));
        assert_eq!((stats.in_flight, stats.queued), (0, 0), "{stats:?}");
        // Without a deadline, or with one that is not ours to parse, the call waits.
        gate.add_permits(2);
        for r in [request(SUBMIT), timed("1x")] {
            let response = service.clone().oneshot(r).await.unwrap();
            assert!(tonic::Status::from_header_map(response.headers()).is_none());
        }
    }

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_spells_them() {
        let parse = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", http::HeaderValue::from_static(v));
            grpc_timeout(&h)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "12", "1.5S", "-1S", "10s"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn watches_are_capped_per_node_and_per_client_until_their_stream_ends() {
        let limits = Limits {
            max_watches: 3,
            max_watches_per_client: 2,
            ..Limits::default()
        };
        let layer = AdmissionLayer::new(limits);
        let service = layer.layer(gated(Arc::new(Semaphore::new(100))));
        let watch = "/quorate.payments.v1.PaymentEvents/Watch";
        let from = |ip: &str| {
            let mut r = request(watch);
            r.extensions_mut().insert(ConnInfo {
                remote: Some(format!("{ip}:1").parse().unwrap()),
                certs: None,
            });
            r
        };
        let a1 = service.clone().oneshot(from("10.0.0.1")).await.unwrap();
        let a2 = service.clone().oneshot(from("10.0.0.1")).await.unwrap();
        let a3 = service.clone().oneshot(from("10.0.0.1")).await.unwrap();
        assert_eq!(
            refusal(&a3),
            Some(("RESOURCE_EXHAUSTED".into(), "watches_per_client".into()))
        );
        let b1 = service.clone().oneshot(from("10.0.0.2")).await.unwrap();
        assert!(refusal(&b1).is_none());
        let c1 = service.clone().oneshot(from("10.0.0.3")).await.unwrap();
        assert_eq!(
            refusal(&c1),
            Some(("RESOURCE_EXHAUSTED".into(), "watches".into()))
        );
        assert_eq!(layer.stats().watches, 3);
        // A stream that ends gives its place back.
        drop(a1);
        assert_eq!(layer.stats().watches, 2);
        let a4 = service.clone().oneshot(from("10.0.0.1")).await.unwrap();
        assert!(refusal(&a4).is_none());
        drop((a2, a4, b1));
        assert_eq!(layer.stats().watches, 0);
        assert!(layer.admission.watches_by_client.lock().unwrap().is_empty());
    }
}
