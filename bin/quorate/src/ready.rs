//! `quorate ready`: asks a node's metrics port whether it is ready (`/readyz`) or live
//! (`/livez`), and exits 0 only if it is. The container image's healthcheck: the image holds
//! the binaries and nothing else (no shell, no curl).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use http_body_util::{BodyExt, Empty};

/// Flags of `quorate ready`.
#[derive(Args, Debug)]
pub struct ReadyArgs {
    /// The node's --listen-metrics address.
    #[arg(
        long,
        env = "QUORATE_READY_ADDRESS",
        default_value = "127.0.0.1:9090",
        value_name = "HOST:PORT"
    )]
    pub metrics: String,
    /// Ask whether the process is live (not wedged) rather than ready to serve
    /// linearizable requests.
    #[arg(long)]
    pub live: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

/// Runs the check; an error says why the node is not ready.
pub async fn run_ready(args: ReadyArgs) -> Result<()> {
    let path = if args.live { "/livez" } else { "/readyz" };
    let deadline = Duration::from_secs_f64(args.timeout.max(0.1));
    let (status, body) = tokio::time::timeout(deadline, get(&args.metrics, path))
        .await
        .with_context(|| format!("{}{path}: no answer within {deadline:?}", args.metrics))??;
    if !status.is_success() {
        bail!("{}{path}: {status}: {}", args.metrics, body.trim());
    }
    println!("{}", body.trim());
    Ok(())
}

async fn get(address: &str, path: &str) -> Result<(http::StatusCode, String)> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, address)
        .body(Empty::<hyper::body::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
