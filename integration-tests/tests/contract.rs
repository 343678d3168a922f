//! The payments contract against three real `quorate serve` processes, reached only through
//! gRPC: the lifecycle rules, idempotency (replays of events and of rejections, key reuse),
//! bad input naming its field and writing nothing, `Get`/`List`/`Watch`, and lease fencing.

use std::collections::HashMap;
use std::time::Duration;

use quorate_integration_tests::client::{all_events, authorize};
use quorate_integration_tests::Cluster;
use quorate_proto::payments as pb;
use quorate_proto::payments::leases_client::LeasesClient;
use tonic::Code;
use tonic_types::StatusExt;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn event(payment_id: &str, key: &str, kind: pb::EventKind, amount: i64) -> pb::SubmitRequest {
    pb::SubmitRequest {
        kind: kind as i32,
        ..authorize(payment_id, key, amount)
    }
}

/// The ErrorInfo reason and metadata of a status.
fn info(status: &tonic::Status) -> (String, HashMap<String, String>) {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "quorate");
    (info.reason, info.metadata)
}

struct Api {
    /// Clients on every node: writes go through followers too (they forward).
    nodes: Vec<pb::payment_events_client::PaymentEventsClient<tonic::transport::Channel>>,
    next: usize,
}

impl Api {
    async fn new(cluster: &Cluster) -> Api {
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(cluster.payments(id).await.unwrap());
        }
        Api { nodes, next: 0 }
    }

    /// Submits on the next node in turn.
    async fn submit(&mut self, r: pb::SubmitRequest) -> Result<pb::SubmitResponse, tonic::Status> {
        self.next = (self.next + 1) % self.nodes.len();
        self.nodes[self.next]
            .submit(r)
            .await
            .map(|r| r.into_inner())
    }

    async fn ok(&mut self, r: pb::SubmitRequest) -> pb::PaymentEvent {
        let what = format!("{r:?}");
        let reply = self
            .submit(r)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert!(!reply.replayed, "a first submit is not a replay");
        reply.event.unwrap()
    }

    /// Expects a rejection with `code` and `reason`; returns its message and metadata.
    async fn refused(
        &mut self,
        r: pb::SubmitRequest,
        code: Code,
        reason: &str,
    ) -> (String, HashMap<String, String>) {
        let what = format!("{r:?}");
        let status = self.submit(r).await.expect_err(&what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        let (got, metadata) = info(&status);
        assert_eq!(got, reason, "{what}: {status:?}");
        (status.message().to_string(), metadata)
    }

    async fn get(&mut self, node: usize, payment_id: &str) -> pb::Payment {
        self.nodes[node]
            .get(pb::GetRequest {
                payment_id: payment_id.into(),
                consistency: pb::Consistency::Linearizable as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap()
    }
}

/// AUTHORIZED → partial CAPTUREs up to the authorized amount → REFUNDs up to what was
/// captured; VOID only with nothing captured; one currency per payment. Every refusal is
/// FAILED_PRECONDITION / INVALID_TRANSITION and writes no event; every node agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_lifecycle_holds_through_the_grpc_contract() {
    use pb::EventKind::{Authorized, Captured, Refunded, Voided};
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut api = Api::new(&cluster).await;

    let auth = api.ok(event("life-1", "l1", Authorized, 1000)).await;
    assert_eq!(auth.payment_seq, 1);
    let token = auth.token.unwrap();
    assert!(token.term > 0 && token.sequence > 0, "{token:?}");
    let c1 = api.ok(event("life-1", "l2", Captured, 400)).await;
    assert!(c1.index > auth.index);
    let t1 = c1.token.unwrap();
    assert!(
        (t1.term, t1.sequence) > (token.term, token.sequence),
        "fencing tokens grow"
    );
    let (message, _) = api
        .refused(
            event("life-1", "l3", Captured, 601),
            Code::FailedPrecondition,
            "INVALID_TRANSITION",
        )
        .await;
    assert!(message.contains("600"), "{message}");
    api.ok(event("life-1", "l4", Captured, 600)).await;
    api.refused(
        event("life-1", "l5", Voided, 1000),
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
    )
    .await;
    api.refused(
        event("life-1", "l6", Refunded, 1001),
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
    )
    .await;
    api.ok(event("life-1", "l7", Refunded, 700)).await;
    api.refused(
        event("life-1", "l8", Refunded, 301),
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
    )
    .await;
    api.refused(
        pb::SubmitRequest {
            currency: "USD".into(),
            ..event("life-1", "l9", Refunded, 1)
        },
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
    )
    .await;
    api.refused(
        event("life-1", "l10", Authorized, 5),
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
    )
    .await;
    api.refused(
        event("never-authorized", "l11", Captured, 5),
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
    )
    .await;

    // A second payment is voided while nothing is captured; then nothing more can happen.
    api.ok(event("life-2", "v1", Authorized, 250)).await;
    api.ok(event("life-2", "v2", Voided, 250)).await;
    api.refused(
        event("life-2", "v3", Captured, 1),
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
    )
    .await;

    // Every node, read linearizably, holds the same totals and only the accepted events.
    for node in 0..3 {
        let p = api.get(node, "life-1").await;
        assert_eq!(
            (p.authorized_minor, p.captured_minor, p.refunded_minor),
            (1000, 1000, 700),
            "node {}",
            node + 1
        );
        assert_eq!(p.currency, "EUR");
        assert_eq!(p.state, pb::PaymentState::PartiallyRefunded as i32);
        assert_eq!(p.events.len(), 4, "only accepted events are recorded");
        let seqs: Vec<u64> = p.events.iter().map(|e| e.payment_seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        let voided = api.get(node, "life-2").await;
        assert_eq!(voided.state, pb::PaymentState::Voided as i32);
    }
    let status = api.nodes[0]
        .get(pb::GetRequest {
            payment_id: "no-such-payment".into(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(info(&status).0, "NOT_FOUND");
    // Operators see the refusals counted.
    let counters = cluster.status(1).await.unwrap().counters.unwrap();
    assert!(counters.invalid_transitions >= 8, "{counters:?}");
}

/// Stripe's semantics: the same key with the same request returns the original outcome (the
/// event, or the original rejection) with `replayed: true`, on any node; the same key with a
/// different request is ALREADY_EXISTS / IDEMPOTENCY_KEY_REUSED; nothing is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_the_original_outcome() {
    use pb::EventKind::{Authorized, Captured};
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut api = Api::new(&cluster).await;

    let original = api.ok(event("idem-1", "k-auth", Authorized, 500)).await;
    for _ in 0..3 {
        // Each retry goes to another node.
        let replay = api
            .submit(event("idem-1", "k-auth", Authorized, 500))
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(
            replay.event.unwrap(),
            original,
            "the original event, unchanged"
        );
    }
    // The same key with another request: refused, and the original stands.
    for changed in [
        event("idem-1", "k-auth", Authorized, 501),
        event("idem-2", "k-auth", Authorized, 500),
        event("idem-1", "k-auth", Captured, 500),
    ] {
        api.refused(changed, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED")
            .await;
    }
    // A rejection is replayed too, even after the state changed so that the same request
    // would now succeed: the key stands for the first outcome.
    let (first, metadata) = api
        .refused(
            event("idem-3", "k-early-capture", Captured, 10),
            Code::FailedPrecondition,
            "INVALID_TRANSITION",
        )
        .await;
    assert_eq!(metadata.get("replayed").map(String::as_str), Some("false"));
    api.ok(event("idem-3", "k-auth-3", Authorized, 100)).await;
    let (again, metadata) = api
        .refused(
            event("idem-3", "k-early-capture", Captured, 10),
            Code::FailedPrecondition,
            "INVALID_TRANSITION",
        )
        .await;
    assert_eq!(metadata.get("replayed").map(String::as_str), Some("true"));
    assert_eq!(first, again);

    let payment = api.get(0, "idem-1").await;
    assert_eq!(payment.events.len(), 1, "applied exactly once");
    assert_eq!(payment.authorized_minor, 500);
    assert_eq!(api.get(0, "idem-3").await.captured_minor, 0);
    let counters = cluster.status(2).await.unwrap().counters.unwrap();
    assert!(counters.idempotent_replays >= 4, "{counters:?}");
    assert!(counters.key_reuse_rejections >= 3, "{counters:?}");
}

/// Bad input is INVALID_ARGUMENT naming the field (ErrorInfo metadata `field` and a BadRequest
/// violation), before anything is proposed: no event and no log entry is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_its_field_and_writes_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut api = Api::new(&cluster).await;
    api.ok(authorize("valid-1", "valid-1", 100)).await;
    let log_before = cluster.status(leader).await.unwrap().last_log_index;
    let events_before = all_events(&cluster, 1).await.len();

    let valid = || authorize("bad-1", "bad-key-1", 100);
    let too_many: HashMap<String, String> =
        (0..1000).map(|i| (format!("k{i}"), "v".into())).collect();
    let cases: Vec<(&str, pb::SubmitRequest)> = vec![
        (
            "amount_minor",
            pb::SubmitRequest {
                amount_minor: 0,
                ..valid()
            },
        ),
        (
            "amount_minor",
            pb::SubmitRequest {
                amount_minor: -5,
                ..valid()
            },
        ),
        (
            "currency",
            pb::SubmitRequest {
                currency: "eur".into(),
                ..valid()
            },
        ),
        (
            "currency",
            pb::SubmitRequest {
                currency: "EURO".into(),
                ..valid()
            },
        ),
        (
            "payment_id",
            pb::SubmitRequest {
                payment_id: String::new(),
                ..valid()
            },
        ),
        (
            "payment_id",
            pb::SubmitRequest {
                payment_id: "x".repeat(256),
                ..valid()
            },
        ),
        (
            "payment_id",
            pb::SubmitRequest {
                payment_id: "pay\u{0}1".into(),
                ..valid()
            },
        ),
        (
            "idempotency_key",
            pb::SubmitRequest {
                idempotency_key: String::new(),
                ..valid()
            },
        ),
        (
            "idempotency_key",
            pb::SubmitRequest {
                idempotency_key: "k\u{200B}".into(),
                ..valid()
            },
        ),
        (
            "kind",
            pb::SubmitRequest {
                kind: pb::EventKind::Unspecified as i32,
                ..valid()
            },
        ),
        (
            "kind",
            pb::SubmitRequest {
                kind: 42,
                ..valid()
            },
        ),
        (
            "metadata",
            pb::SubmitRequest {
                metadata: too_many,
                ..valid()
            },
        ),
    ];
    for (field, request) in cases {
        let what = format!("{field}: {:?}", &request.payment_id);
        let status = api.submit(request).await.expect_err(&what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let (reason, metadata) = info(&status);
        assert_eq!(reason, "INVALID_ARGUMENT", "{what}");
        assert_eq!(
            metadata.get("field").map(String::as_str),
            Some(field),
            "{what}: {status:?}"
        );
        let violations = status
            .get_details_bad_request()
            .expect("a BadRequest detail")
            .field_violations;
        assert_eq!(violations[0].field, field, "{what}");
        assert!(status.message().starts_with(field), "{what}: {status:?}");
    }
    // Leases validate too.
    let mut leases = LeasesClient::new(cluster.channel(1).await.unwrap());
    let status = leases
        .acquire(pb::AcquireRequest {
            name: String::new(),
            holder: "h".into(),
            ttl_ms: 5_000,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        info(&status).1.get("field").map(String::as_str),
        Some("name")
    );

    assert_eq!(
        all_events(&cluster, 1).await.len(),
        events_before,
        "no event written"
    );
    assert_eq!(
        cluster.status(leader).await.unwrap().last_log_index,
        log_before,
        "bad input never reaches the log"
    );
    // And the nodes are all still up.
    for id in 1..=3 {
        assert!(cluster.status(id).await.is_some(), "node {id} answers");
    }
}

/// `Watch` streams events after an index as they commit; `List` pages through them in index
/// order; a fenced submit whose lease moved on is STALE_TOKEN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_and_lease_fences_through_the_contract() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut api = Api::new(&cluster).await;
    let first = api.ok(authorize("watch-0", "watch-0", 1)).await;
    let mut stream = api.nodes[2]
        .clone()
        .watch(pb::WatchRequest {
            after_index: first.index,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut written = Vec::new();
    for i in 1..=5 {
        let id = format!("watch-{i}");
        written.push(api.ok(authorize(&id, &id, 1)).await.index);
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("watch delivers within 10 s")
            .unwrap()
            .expect("stream open");
        seen.push(e.index);
    }
    assert_eq!(seen, written, "every event after the index, in order");

    let page = api.nodes[1]
        .list(pb::ListRequest {
            after_index: 0,
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 3);
    assert!(page.events.windows(2).all(|w| w[0].index < w[1].index));
    assert_eq!(page.next_after_index, page.events[2].index);

    // Writer leases: a newer grant makes the old token stale, checked at apply.
    let mut leases = LeasesClient::new(cluster.channel(2).await.unwrap());
    let acquire = |holder: &str| pb::AcquireRequest {
        name: "contract-writer".into(),
        holder: holder.into(),
        ttl_ms: 60_000,
    };
    let a = leases.acquire(acquire("pod-a")).await.unwrap().into_inner();
    assert!(a.granted);
    let refused = leases.acquire(acquire("pod-b")).await.unwrap().into_inner();
    assert!(!refused.granted);
    assert_eq!(refused.holder, "pod-a", "a refusal names the holder");
    let fenced = |token: u64| pb::SubmitRequest {
        fence: Some(pb::LeaseFence {
            lease: "contract-writer".into(),
            token,
        }),
        ..authorize(&format!("fenced-{token}"), &format!("fenced-{token}"), 1)
    };
    api.ok(fenced(a.token)).await;
    leases
        .release(pb::ReleaseRequest {
            name: "contract-writer".into(),
            holder: "pod-a".into(),
            token: a.token,
        })
        .await
        .unwrap();
    let b = leases.acquire(acquire("pod-b")).await.unwrap().into_inner();
    assert!(b.granted && b.token > a.token, "tokens only grow");
    let mut stale = fenced(a.token);
    stale.payment_id = "late-write".into();
    stale.idempotency_key = "late-write".into();
    api.refused(stale, Code::FailedPrecondition, "STALE_TOKEN")
        .await;
    let status = leases
        .keep_alive(pb::KeepAliveRequest {
            name: "contract-writer".into(),
            holder: "pod-a".into(),
            token: a.token,
        })
        .await
        .unwrap_err();
    assert_eq!(info(&status).0, "STALE_TOKEN");
    api.ok(fenced(b.token)).await;
}
