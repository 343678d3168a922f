//! `quoratectl`: operate and use a Quorate cluster.

mod admin;
mod backup_file;
mod client;
mod members;
mod output;
mod payment;
mod snapshot;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Operate and use a Quorate cluster.
///
/// Every command talks gRPC to the nodes in --endpoints. Writes go to any reachable node
/// (followers forward them to the leader) and are retried on another node, with the same
/// idempotency key, when the outcome is unknown.
#[derive(Parser, Debug)]
#[command(name = "quoratectl", version)]
struct Cli {
    /// Client addresses of the nodes (HOST:PORT, comma-separated).
    #[arg(
        long,
        global = true,
        env = "QUORATECTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    endpoints: Vec<String>,
    /// Deadline of each request.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// CA certificates (PEM) that the nodes' certificates must chain to: talk TLS.
    #[arg(long, global = true, env = "QUORATECTL_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for nodes that require one (--client-cert-auth); its common
    /// name is the identity the node's roles file knows.
    #[arg(long, global = true, env = "QUORATECTL_CERT", value_name = "FILE")]
    cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, global = true, env = "QUORATECTL_KEY", value_name = "FILE")]
    key: Option<std::path::PathBuf>,
    /// File holding a bearer token (for nodes with a roles file, when there is no client
    /// certificate); sent as `authorization: Bearer <token>`.
    #[arg(
        long,
        global = true,
        env = "QUORATECTL_TOKEN_FILE",
        value_name = "FILE"
    )]
    token_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Human-readable text.
    Text,
    /// JSON, one document per result.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Status of every endpoint: role, term, leader, indexes, lease.
    Status(status::StatusArgs),
    /// Submit, read and follow payment events.
    #[command(subcommand)]
    Payment(payment::PaymentCommand),
    /// Cluster membership: list, add, promote, remove, update, replace.
    #[command(subcommand)]
    Members(members::MembersCommand),
    /// Move leadership: transfer to a node, or make the leader step down.
    #[command(subcommand)]
    Leader(admin::LeaderCommand),
    /// Hash of the event log up to an index, on every endpoint (they must agree).
    Hash {
        /// The index (0: each node's applied index).
        #[arg(long, default_value_t = 0)]
        index: u64,
    },
    /// Who leads, who is cut off, whose data diverged, and what to do about it.
    #[command(subcommand, name = "split-brain")]
    SplitBrain(admin::SplitBrainCommand),
    /// Snapshots and backups: take one now, save a backup, check one, restore a new cluster.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, factor) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        return Err(format!("{text:?}: use a unit, e.g. 500ms or 5s"));
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration"))?;
    Ok(Duration::from_secs_f64(value * factor))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let security = match client::Security::load(cli.cacert, cli.cert, cli.key, cli.token_file) {
        Ok(security) => security,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = client::Context {
        endpoints: cli.endpoints,
        timeout: cli.timeout,
        json: cli.output == Output::Json,
        security,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Status(args) => status::run(&ctx, args).await,
            Command::Payment(command) => payment::run(&ctx, command).await,
            Command::Members(command) => members::run(&ctx, command).await,
            Command::Leader(command) => admin::leader(&ctx, command).await,
            Command::Hash { index } => admin::hash(&ctx, index).await,
            Command::SplitBrain(command) => admin::split_brain(&ctx, command).await,
            Command::Snapshot(command) => snapshot::run(&ctx, command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
