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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = endpoints.join(",");
    println!(
        "\nQuorate dev cluster: 3 nodes, data under {data}\n\n\
         clients:  {list}\n\
         metrics:  http://127.0.0.1:{m1}/metrics (and :{m2}, :{m3})\n\n\
         Try:\n  \
         quoratectl --endpoints {list} status -w table\n  \
         quoratectl --endpoints {list} payment submit --payment-id pay-1 --kind authorized --amount 1000 --currency EUR\n  \
         quoratectl --endpoints {list} payment get pay-1\n  \
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
