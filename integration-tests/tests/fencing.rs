//! The incident answered: zombie writers are fenced off, retries have exactly one effect, and
//! a minority refuses what it cannot guarantee.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use quorate_integration_tests::client::{all_events, authorize, reason, Clients, Pick};
use quorate_integration_tests::{binary, Cluster, Signal};
use quorate_proto::payments as pb;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `writer` process and the lines it prints.
struct Writer {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Writer {
    fn start(endpoint: &str, holder: &str, ttl_ms: u64) -> Writer {
        let mut child = Command::new(binary("writer"))
            .args(["--endpoint", endpoint, "--lease", "payment-writer"])
            .args(["--holder", holder, "--ttl-ms", &ttl_ms.to_string()])
            .args(["--every-ms", "100", "--max-refusals", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("writer process");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Writer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`.
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no {prefix:?} line within {timeout:?}; saw {:?}", self.seen),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal writer");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.signal(Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_of(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("token="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no token in {line:?}"))
}

/// Two writer processes compete for `payment-writer`. The holder is frozen (SIGSTOP) past its
/// TTL; the other takes over; when the first resumes, every write it makes with its old token
/// is refused with STALE_TOKEN, and no event of it lands after the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_paused_past_its_lease_is_fenced_off() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let endpoint = cluster.nodes[&leader].spec.client.clone();
    let ttl_ms = 2_000;

    let mut a = Writer::start(&endpoint, "pod-a", ttl_ms);
    let a_token = token_of(&a.wait_for("GRANTED", Duration::from_secs(10)));
    a.wait_for("WROTE", Duration::from_secs(10));
    let mut b = Writer::start(&endpoint, "pod-b", ttl_ms);
    b.wait_for("WAITING", Duration::from_secs(10)); // a holds it

    a.signal(Signal::SIGSTOP);
    let frozen_at = Instant::now();
    let b_token = token_of(&b.wait_for("GRANTED", Duration::from_secs(15)));
    eprintln!(
        "pod-a (token {a_token}) frozen; pod-b granted token {b_token} {:?} later",
        frozen_at.elapsed()
    );
    assert!(b_token > a_token, "tokens only grow");
    // The lease runs for its TTL from pod-a's last renewal, which came at most one writer
    // cycle (a renewal, a write, a 100 ms pause) before the freeze: allow that much.
    let last_renewal_bound = Duration::from_millis(100 + 400);
    assert!(
        frozen_at.elapsed() + last_renewal_bound >= Duration::from_millis(ttl_ms),
        "the lease was taken over {:?} after the freeze, before its TTL ({ttl_ms} ms) ran out",
        frozen_at.elapsed()
    );
    b.wait_for("WROTE", Duration::from_secs(10));

    a.signal(Signal::SIGCONT);
    let refused = a.wait_for("REFUSED reason=STALE_TOKEN", Duration::from_secs(10));
    eprintln!("pod-a resumed: {refused}");
    a.wait_for("FENCED OFF", Duration::from_secs(10));
    assert!(
        !a.seen
            .iter()
            .skip_while(|l| !l.starts_with("REFUSED"))
            .any(|l| l.starts_with("WROTE")),
        "pod-a wrote after being refused: {:?}",
        a.seen
    );
    // No event fenced with pod-a's token was recorded after pod-b's grant (its index).
    let events = all_events(&cluster, leader).await;
    let late: Vec<u64> = events
        .iter()
        .filter(|e| e.fence.as_ref().is_some_and(|f| f.token == a_token) && e.index > b_token)
        .map(|e| e.index)
        .collect();
    assert!(
        late.is_empty(),
        "pod-a's events after the takeover: {late:?}"
    );
    assert!(events
        .iter()
        .any(|e| e.fence.as_ref().is_some_and(|f| f.token == b_token)));
    // Operators see it: the refusals are counted in Admin.Status (on every replica).
    for id in 1..=3 {
        let counters = cluster.status(id).await.unwrap().counters.unwrap();
        assert!(
            counters.stale_token_rejections >= 1,
            "node {id}: {counters:?}"
        );
    }
}

/// Twenty clients retry with their idempotency keys while the leader is SIGKILLed: every
/// payment ends with exactly one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_across_a_leader_kill_have_exactly_one_effect() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let acked: RefCell<BTreeMap<String, u64>> = RefCell::default();
    let in_flight = std::cell::Cell::new(0usize);
    let replayed = std::cell::Cell::new(0usize);
    let per_client = 30;
    let client = |c: u64| {
        let cluster = &cluster;
        let acked = &acked;
        let in_flight = &in_flight;
        let replayed = &replayed;
        async move {
            let mut clients = Clients::default();
            let mut pick = Pick::new(c * 31 + 1);
            for i in 0..per_client {
                let id = format!("once-{c}-{i}");
                in_flight.set(in_flight.get() + 1);
                let (reply, _) = clients
                    .submit(
                        cluster,
                        &mut pick,
                        &authorize(&id, &id, 42),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{id}: {e}"));
                in_flight.set(in_flight.get() - 1);
                if reply.replayed {
                    replayed.set(replayed.get() + 1);
                }
                acked.borrow_mut().insert(id, reply.event.unwrap().index);
            }
        }
    };
    // Kill the leader in the middle of the run, with writes in flight (not between batches).
    let killed_with = std::cell::Cell::new((0usize, 0usize));
    let killer = async {
        while acked.borrow().len() < 150 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        killed_with.set((acked.borrow().len(), in_flight.get()));
        cluster.signal(leader, Signal::SIGKILL).unwrap();
        eprintln!(
            "leader {leader} SIGKILLed after {} acknowledged writes, with {} in flight",
            killed_with.get().0,
            killed_with.get().1
        );
    };
    let mut work: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> =
        (0..20).map(|c| Box::pin(client(c)) as _).collect();
    work.push(Box::pin(killer));
    join_all(work).await;
    let acked = acked.into_inner();
    assert_eq!(acked.len(), 20 * per_client);
    let (acked_at_kill, in_flight_at_kill) = killed_with.get();
    assert!(
        acked_at_kill < acked.len() && in_flight_at_kill > 0,
        "the kill must land mid-run with writes in flight ({acked_at_kill} acked, \
         {in_flight_at_kill} in flight)"
    );
    eprintln!(
        "{} retried writes were answered with replayed: true",
        replayed.get()
    );
    let survivor = cluster.live()[0];
    let events = all_events(&cluster, survivor).await;
    let mut per_payment: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &events {
        per_payment.entry(&e.payment_id).or_default().push(e.index);
    }
    for (id, index) in &acked {
        assert_eq!(
            per_payment.get(id.as_str()),
            Some(&vec![*index]),
            "{id} must have exactly its acknowledged event"
        );
    }
    eprintln!(
        "{} payments, {} events, each exactly once",
        acked.len(),
        events.len()
    );
}

/// With two of three nodes frozen, the third refuses writes and linearizable reads (Get, List,
/// Watch) with NO_QUORUM within an election timeout, and still serves stale reads, labelled
/// as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_left_alone_refuses_writes_and_serves_stale_reads() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut clients = Clients::default();
    let mut pick = Pick::new(5);
    let (reply, _) = clients
        .submit(
            &cluster,
            &mut pick,
            &authorize("before", "before", 9),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let index = reply.event.unwrap().index;
    cluster
        .wait_applied(index, Duration::from_secs(10))
        .await
        .unwrap();
    let alone = 3;
    cluster.sigstop(1).unwrap();
    cluster.sigstop(2).unwrap();
    let frozen_at = Instant::now();
    let mut client = cluster.payments(alone).await.unwrap();
    // Writes: refused with NO_QUORUM (one in flight at the freeze may end OUTCOME_UNKNOWN).
    let refused_after = loop {
        match client.submit(authorize("during", "during", 9)).await {
            Err(status) if reason(&status).as_deref() == Some("NO_QUORUM") => {
                break frozen_at.elapsed();
            }
            Err(status) if reason(&status).as_deref() == Some("OUTCOME_UNKNOWN") => {}
            other => panic!("node {alone} did not refuse: {other:?}"),
        }
    };
    eprintln!("write refused with NO_QUORUM {refused_after:?} after the freeze");
    assert!(refused_after <= Duration::from_secs(1), "{refused_after:?}");
    let linearizable = client
        .get(pb::GetRequest {
            payment_id: "before".into(),
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&linearizable).as_deref(), Some("NO_QUORUM"));
    let stale = client
        .get(pb::GetRequest {
            payment_id: "before".into(),
            consistency: pb::Consistency::Stale as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stale.stale);
    assert!(stale.applied_index >= index);
    assert_eq!(stale.payment.unwrap().events.len(), 1);
    // List and Watch choose the same way: linearizable by default (refused here), stale on
    // request, and a stale answer says so.
    let list = |consistency: pb::Consistency| pb::ListRequest {
        after_index: 0,
        limit: 10,
        consistency: consistency as i32,
    };
    let refused = client
        .list(list(pb::Consistency::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused).as_deref(), Some("NO_QUORUM"), "{refused}");
    let page = client
        .list(list(pb::Consistency::Stale))
        .await
        .unwrap()
        .into_inner();
    assert!(page.stale);
    assert!(page.applied_index >= index);
    assert_eq!(page.events.len(), 1);
    let watch = client
        .watch(pb::WatchRequest {
            after_index: 0,
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .expect_err("a linearizable watch is refused without a quorum");
    assert_eq!(reason(&watch).as_deref(), Some("NO_QUORUM"), "{watch}");
    let mut stream = client
        .watch(pb::WatchRequest {
            after_index: 0,
            consistency: pb::Consistency::Stale as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stale watch streams at once")
        .unwrap()
        .expect("an event");
    assert_eq!(first.payment_id, "before");
    drop(stream);
    cluster.sigcont(1).unwrap();
    cluster.sigcont(2).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
}
