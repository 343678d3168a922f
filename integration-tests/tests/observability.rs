//! Observability against real processes: a real Prometheus (Debian's) scraping a real cluster
//! with the shipped rules, and a real OTLP/gRPC receiver collecting the traces of three nodes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quorate_integration_tests::client::authorize;
use quorate_integration_tests::otlp::OtlpReceiver;
use quorate_integration_tests::{free_port, http_get, Cluster};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Every `quorate_*` metric name a rule or a dashboard panel uses (recording rules'
/// `quorate:*` names excluded: Prometheus makes those).
fn metrics_used() -> BTreeSet<String> {
    let mut text = String::new();
    for file in [
        "deploy/prometheus/rules/quorate-alerts.yml",
        "deploy/prometheus/rules/quorate-recording.yml",
        "deploy/grafana/quorate.json",
    ] {
        text += &std::fs::read_to_string(repo().join(file)).expect(file);
    }
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("quorate_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let continues_a_word =
            before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if !continues_a_word && bytes.get(end) != Some(&b':') {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Whether a metric named `name` (a histogram's `_bucket`, `_count` or `_sum` included) is
/// declared in an exposition.
fn exposes(exposition: &str, name: &str) -> bool {
    let base = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    exposition.lines().any(|line| {
        line.strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|declared| declared == name || declared == base)
    })
}

struct Prometheus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Debian's `prometheus`, scraping `targets` every second with the shipped rules
    /// evaluated every second.
    fn start(targets: &[String]) -> Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let rules = repo().join("deploy/prometheus/rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: quorate\n    static_configs:\n      - targets: [{}]\n",
            rules.join("quorate-alerts.yml").display(),
            rules.join("quorate-recording.yml").display(),
            targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let address = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus (Debian's `prometheus` package; scripts/ensure-deps installs it)")?;
        Ok(Prometheus {
            child,
            address,
            _dir: dir,
        })
    }

    fn api(&self, path: &str) -> Result<serde_json::Value> {
        let body = http_get(&self.address, path)?;
        Ok(serde_json::from_str(&body)?)
    }

    /// The instances whose `alertname` alert is firing.
    fn firing(&self, alertname: &str) -> Result<BTreeSet<String>> {
        let alerts = self.api("/api/v1/alerts")?;
        Ok(alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == alertname && a["state"] == "firing")
            .filter_map(|a| a["labels"]["instance"].as_str().map(str::to_string))
            .collect())
    }
}

/// Every metric the alert rules and the dashboard use is exported by a running node; a real
/// Prometheus scrapes all three; cutting the leader off makes `NoQuorum` fire for it, and for
/// no other node, as Prometheus's own alerts API reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_no_quorum_for_an_isolated_leader() -> Result<()> {
    let cluster = Cluster::start_in_namespaces(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    // Some traffic, so per-method and per-peer series exist.
    let mut client = cluster.payments(leader).await?;
    for i in 0..5 {
        client
            .submit(authorize(&format!("obs-{i}"), &format!("obs-key-{i}"), 100))
            .await?;
    }
    let targets: Vec<String> = cluster
        .nodes
        .values()
        .map(|n| n.spec.metrics.clone())
        .collect();
    let exposition = http_get(&targets[0], "/metrics")?;
    let used = metrics_used();
    assert!(used.len() > 10, "the rules and dashboard use {used:?}");
    let missing: Vec<&String> = used.iter().filter(|m| !exposes(&exposition, m)).collect();
    assert!(
        missing.is_empty(),
        "metrics a rule or panel uses that a node does not export: {missing:?}\n{exposition}"
    );

    let prometheus = Prometheus::start(&targets)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = prometheus
            .api("/api/v1/query?query=up")
            .map(|v| {
                v["data"]["result"]
                    .as_array()
                    .map_or(0, |r| r.iter().filter(|s| s["value"][1] == "1").count())
            })
            .unwrap_or(0);
        if up == 3 {
            break;
        }
        if Instant::now() > deadline {
            bail!("prometheus scraped {up} of 3 nodes within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(prometheus.firing("NoQuorum")?.is_empty());

    cluster.isolate(leader)?;
    let cut = Instant::now();
    let isolated = cluster.nodes[&leader].spec.metrics.clone();
    // check-quorum (1 s), then the rule's `for: 30s`, then an evaluation.
    let deadline = Instant::now() + Duration::from_secs(75);
    let firing = loop {
        let firing = prometheus.firing("NoQuorum")?;
        if !firing.is_empty() {
            break firing;
        }
        if Instant::now() > deadline {
            bail!(
                "NoQuorum did not fire within 75 s of isolating node {leader}: {}",
                prometheus.api("/api/v1/rules")?
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "NoQuorum firing for {firing:?} {} ms after node {leader} was cut off",
        cut.elapsed().as_millis()
    );
    assert_eq!(firing, BTreeSet::from([isolated]), "only the isolated node");
    // The majority elected another leader and serves.
    let metrics = http_get(&targets[(leader as usize) % 3], "/metrics")?;
    assert!(
        metrics.lines().any(|l| l == "quorate_quorum_reachable 1.0"),
        "{metrics}"
    );
    cluster.heal()?;
    Ok(())
}

/// A `Submit` sent to a follower with a sampled `traceparent` gives one trace with spans from
/// all three nodes: the follower's server span and its forward, the leader's proposal and
/// replication, the other follower's append. The batch work (the leader's fsync and apply,
/// the followers' persist) is linked to the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_to_a_follower_is_one_trace_across_three_nodes() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let cluster = Cluster::start_with_args_and_env(
        3,
        vec![
            "--otlp-endpoint".into(),
            receiver.endpoint.clone(),
            // Nothing the nodes start is kept: only the client's sampled trace.
            "--otlp-sampling-ratio".into(),
            "0".into(),
        ],
        // (Export every 100 ms rather than every 5 s.)
        vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into())],
    )?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let other = (1..=3)
        .find(|&id| id != leader && id != follower)
        .expect("another follower");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(authorize("traced-1", "traced-key-1", 4200));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01").parse()?,
    );
    let mut client = cluster.payments(follower).await?;
    client.submit(request).await?;

    let instance = |id: u64| format!("node-{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = receiver.spans();
        let in_trace: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
        let has = |id: u64, name: &str| {
            in_trace
                .iter()
                .any(|s| s.instance == instance(id) && s.name == name)
        };
        let linked = |id: u64, name: &str| {
            spans.iter().any(|s| {
                s.instance == instance(id)
                    && s.name == name
                    && s.links.iter().any(|(t, _)| t == trace_id)
            })
        };
        let found = [
            (
                "follower's Submit",
                has(follower, "quorate.payments.v1.PaymentEvents/Submit"),
            ),
            ("follower's forward", has(follower, "raft.forward")),
            ("leader's propose", has(leader, "raft.propose")),
            ("leader's replicate", has(leader, "raft.replicate")),
            ("other follower's append", has(other, "raft.append")),
            ("leader's persist, linked", linked(leader, "raft.persist")),
            ("leader's apply, linked", linked(leader, "raft.apply")),
            (
                "follower's persist, linked",
                linked(follower, "raft.persist"),
            ),
            (
                "other follower's persist, linked",
                linked(other, "raft.persist"),
            ),
        ];
        if found.iter().all(|(_, ok)| *ok) {
            // The Submit span continues the client's span, and follows the RPC conventions.
            let submit = in_trace
                .iter()
                .find(|s| s.name.ends_with("/Submit"))
                .expect("found above");
            assert_eq!(submit.parent_span_id, "00f067aa0ba902b7");
            assert_eq!(
                submit.attributes.get("rpc.system").map(String::as_str),
                Some("grpc")
            );
            assert_eq!(
                submit.attributes.get("rpc.method").map(String::as_str),
                Some("Submit")
            );
            assert_eq!(
                submit.resource.get("service.name").map(String::as_str),
                Some("quorate")
            );
            assert_eq!(
                submit
                    .attributes
                    .get("rpc.grpc.status_code")
                    .map(String::as_str),
                Some("0")
            );
            // The service's span under it names the payment and where it was written.
            let handled = in_trace
                .iter()
                .find(|s| s.name == "PaymentEvents.Submit")
                .expect("the service's span");
            assert_eq!(handled.parent_span_id, submit.span_id);
            assert_eq!(
                handled.attributes.get("payment.id").map(String::as_str),
                Some("traced-1")
            );
            for key in ["raft.index", "raft.term", "fencing.token"] {
                assert!(handled.attributes.contains_key(key), "{key}: {handled:?}");
            }
            assert!(submit.resource.contains_key("quorate.cluster.id"));
            return Ok(());
        }
        if Instant::now() > deadline {
            let names: Vec<_> = spans
                .iter()
                .map(|s| (s.instance.as_str(), s.name.as_str(), s.trace_id == trace_id))
                .collect();
            bail!(
                "missing after 20 s: {found:?}\nreceived: {names:?}\n{}",
                cluster.log_tails(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A follower whose stored events were altered while it was stopped raises the corruption
/// alarm on itself within two check periods of starting again: it then refuses reads and
/// writes with `CORRUPT` and a reason naming the index and the majority, `/readyz` and the
/// metrics say so, and the other two keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_tampered_events_raises_the_corruption_alarm() -> Result<()> {
    alarm_after_tampering("the event log up to index", |dir| {
        quorate_integration_tests::tamper_with_first_event(dir, 1_000_000).map(|_| ())
    })
    .await
}

/// The same with a payment record altered and its events untouched: the event logs agree,
/// the machines do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_tampered_payment_raises_the_corruption_alarm() -> Result<()> {
    alarm_after_tampering("the machine state", |dir| {
        quorate_integration_tests::tamper_with_first_payment(dir, 1_000_000).map(|_| ())
    })
    .await
}

/// Stops a follower of a cluster checking every second, lets `tamper` alter its data
/// directory, starts it again, and checks the alarm it raises names `compared`.
async fn alarm_after_tampering(
    compared: &str,
    tamper: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    use quorate_integration_tests::client::{reason, write_authorizations};
    let period = Duration::from_secs(1);
    let mut cluster =
        Cluster::start_with_args(3, vec!["--corruption-check-interval".into(), "1s".into()])?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    write_authorizations(&cluster, "alarm", 20, 11).await;
    let index = cluster.status(leader).await.expect("leader").commit_index;
    cluster.wait_applied(index, Duration::from_secs(10)).await?;
    // Agreeing replicas raise nothing over a few periods.
    tokio::time::sleep(period * 3).await;
    for id in 1..=3 {
        let status = cluster.status(id).await.expect("answers");
        assert_eq!(status.corrupt, "", "node {id}");
    }
    let victim = (1..=3).find(|&id| id != leader).expect("a follower");
    let (exit, _) = cluster.sigterm(victim, Duration::from_secs(15))?;
    assert!(exit.success());
    tamper(&cluster.nodes[&victim].spec.data_dir)?;
    cluster.restart(victim)?;
    // From the moment it answers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.status(victim).await.is_none() {
        if Instant::now() > deadline {
            bail!(
                "node {victim} did not come back:\n{}",
                cluster.log_tails(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = Instant::now();
    let corrupt = loop {
        let status = cluster.status(victim).await;
        if let Some(s) = status.filter(|s| !s.corrupt.is_empty()) {
            break s.corrupt;
        }
        if back.elapsed() > Duration::from_secs(20) {
            bail!("no alarm within 20 s:\n{}", cluster.log_tails(30));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = back.elapsed();
    eprintln!(
        "alarm raised {} ms after node {victim} answered again: {corrupt}",
        took.as_millis()
    );
    // Two periods, plus a wide margin for a loaded machine (the pinger must have heard from
    // the peers first).
    assert!(took < period * 2 + Duration::from_secs(2), "took {took:?}");
    assert!(corrupt.contains("corruption check"), "{corrupt}");
    assert!(corrupt.contains(&format!("node {victim}")), "{corrupt}");
    assert!(corrupt.contains(compared), "{corrupt}");

    // It refuses writes and reads, saying why.
    let mut client = cluster.payments(victim).await?;
    let refused = client
        .submit(quorate_integration_tests::client::authorize(
            "after", "after", 1,
        ))
        .await
        .expect_err("a corrupt node refuses writes");
    assert_eq!(refused.code(), tonic::Code::DataLoss);
    assert_eq!(reason(&refused).as_deref(), Some("CORRUPT"));
    assert!(
        refused.message().contains("corruption check"),
        "{}",
        refused.message()
    );
    let read = client
        .get(quorate_proto::payments::GetRequest {
            payment_id: "alarm-0".into(),
            consistency: quorate_proto::payments::Consistency::Linearizable as i32,
        })
        .await
        .expect_err("a corrupt node refuses reads");
    assert_eq!(reason(&read).as_deref(), Some("CORRUPT"));
    let metrics_address = cluster.nodes[&victim].spec.metrics.clone();
    let metrics = http_get(&metrics_address, "/metrics")?;
    assert!(
        metrics.lines().any(|l| l == "quorate_corruption_alarm 1.0"),
        "{metrics}"
    );
    assert!(http_get(&metrics_address, "/readyz").is_err(), "not ready");

    // The others agree with each other and keep serving.
    let mut client = cluster.payments(leader).await?;
    client
        .submit(quorate_integration_tests::client::authorize(
            "still", "still", 1,
        ))
        .await?;
    for id in (1..=3).filter(|&id| id != victim) {
        assert_eq!(
            cluster.status(id).await.expect("answers").corrupt,
            "",
            "node {id}"
        );
    }
    Ok(())
}

/// Two followers altered differently: three versions of the event log, none held by a
/// majority. No node can tell which is right, so every node refuses writes (CORRUPT, saying
/// so) while reads go on; nobody raises the alarm on itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_all_differ_refuse_writes() -> Result<()> {
    use quorate_integration_tests::client::{authorize, reason, write_authorizations};
    let mut cluster =
        Cluster::start_with_args(3, vec!["--corruption-check-interval".into(), "1s".into()])?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    write_authorizations(&cluster, "split", 10, 13).await;
    let index = cluster.status(leader).await.expect("leader").commit_index;
    cluster.wait_applied(index, Duration::from_secs(10)).await?;
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for (n, &id) in followers.iter().enumerate() {
        let (exit, _) = cluster.sigterm(id, Duration::from_secs(15))?;
        assert!(exit.success());
        quorate_integration_tests::tamper_with_first_event(
            &cluster.nodes[&id].spec.data_dir,
            1_000 * (n as i64 + 1),
        )?;
    }
    for &id in &followers {
        cluster.restart(id)?;
    }
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
        let mut client = cluster.payments(leader).await?;
        match client.submit(authorize("held", "held", 1)).await {
            Err(status) if reason(&status).as_deref() == Some("CORRUPT") => break status,
            _ if Instant::now() > deadline => {
                bail!(
                    "writes were not refused within 20 s:\n{}",
                    cluster.log_tails(30)
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(
        refused
            .message()
            .contains("no version is held by a majority"),
        "{}",
        refused.message()
    );
    // Each node finds it at its own next check.
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in 1..=3 {
        loop {
            let metrics = http_get(&cluster.nodes[&id].spec.metrics, "/metrics")?;
            if metrics
                .lines()
                .any(|l| l == "quorate_divergence_unresolved 1.0")
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {id} does not report the divergence:\n{metrics}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = cluster.status(id).await.expect("answers");
        assert_eq!(status.corrupt, "", "node {id} raised no alarm on itself");
        assert!(
            status
                .writes_held
                .contains("no version is held by a majority"),
            "node {id}: {}",
            status.writes_held
        );
    }
    Ok(())
}
