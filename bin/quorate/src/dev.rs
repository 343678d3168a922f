//! `quorate dev`: a local three-node cluster in one process, for trying Quorate out.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tokio::sync::watch;

use crate::config::{ServeArgs, ServeConfig};

/// Flags of `quorate dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where the three nodes keep their data (one subdirectory each).
    #[arg(long, default_value = "./quorate-data")]
    pub data_dir: PathBuf,
    /// Ports: node N listens for clients on BASE+N, peers on BASE+100+N, metrics on BASE+200+N.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
}

/// Runs three nodes on loopback until `shutdown` completes.
pub async fn run_dev(args: DevArgs, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let port = |offset: u16, node: u16| args.base_port + offset + node;
    let cluster: Vec<String> = (1..=3)
        .map(|n| format!("{n}=127.0.0.1:{}", port(100, n)))
        .collect();
    let mut configs: Vec<ServeConfig> = Vec::new();
    for n in 1..=3u16 {
        let node = ServeArgs {
            id: Some(u64::from(n)),
            data_dir: Some(args.data_dir.join(format!("node{n}"))),
            listen_client: Some(format!("127.0.0.1:{}", port(0, n))),
            listen_peer: Some(format!("127.0.0.1:{}", port(100, n))),
            listen_metrics: Some(format!("127.0.0.1:{}", port(200, n))),
            initial_cluster: Some(cluster.join(",")),
            ..ServeArgs::default()
        };
        configs.push(node.resolve()?);
    }
    let endpoints: Vec<String> = configs.iter().map(|c| c.listen_client.clone()).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut nodes = Vec::new();
    for config in configs {
        let mut stop = stop_rx.clone();
        nodes.push(tokio::spawn(crate::run(config, async move {
            let _ = stop.wait_for(|&s| s).await;
        })));
    }
    // Print the banner once every node answers (or say which did not), rather than after a
    // fixed pause that hides a node that failed to start (a port in use, say).
    let waited = wait_for_clients(&endpoints, Duration::from_secs(10)).await;
    if nodes.iter().any(|node| node.is_finished()) {
        stop_tx.send_replace(true);
        let mut errors = Vec::new();
        for node in nodes {
            if let Ok(Err(e)) = node.await {
                errors.push(format!("{e:#}"));
            }
        }
        anyhow::bail!("a node failed to start: {}", errors.join("; "));
    }
    if let Err(missing) = waited {
        eprintln!("warning: no answer yet from {missing}; the cluster may still be starting");
    }
    let ctl = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("quoratectl")))
        .filter(|ctl| ctl.exists())
        .map_or("quoratectl".to_string(), |ctl| ctl.display().to_string());
    let list = endpoints.join(",");
    println!(
        "\nQuorate dev cluster: 3 nodes, data under {data}\n\n\
         clients:  {list}\n\
         metrics:  http://127.0.0.1:{m1}/metrics (and :{m2}, :{m3})\n\n\
         Try:\n  \
         {ctl} --endpoints {list} status -w table\n  \
         {ctl} --endpoints {list} payment submit --payment-id pay-1 --kind authorized --amount 1000 --currency EUR\n  \
         {ctl} --endpoints {list} payment get pay-1\n  \
         {ctl} --endpoints {list} split-brain report\n  \
         grpcurl -plaintext {first} list\n\n\
         Ctrl-C stops the cluster (the data stays for the next run).\n",
        data = args.data_dir.display(),
        m1 = port(200, 1),
        m2 = port(200, 2),
        m3 = port(200, 3),
        first = endpoints[0],
    );
    shutdown.await;
    stop_tx.send_replace(true);
    let mut result = Ok(());
    for node in nodes {
        match node.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(e.into()),
        }
    }
    result
}

/// Waits until every endpoint accepts a TCP connection, or `limit` passes; returns the ones
/// that did not.
async fn wait_for_clients(endpoints: &[String], limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut missing = Vec::new();
        for endpoint in endpoints {
            if tokio::net::TcpStream::connect(endpoint).await.is_err() {
                missing.push(endpoint.clone());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(missing.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
