//! `quorate`: run a Quorate node (`serve`) or a local three-node cluster (`dev`).

use std::process::ExitCode;

/// mimalloc, not glibc's malloc: a node allocates and frees per request, per message and per
/// frame from several threads, and glibc's allocator took 13% of the nodes' CPU under load
/// (`_int_malloc`, `_int_free`, `unlink_chunk`, `malloc_consolidate`; the overload profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use quorate::{run, run_dev, run_ready, DevArgs, ReadyArgs, ServeArgs};

/// Quorate: a Raft consensus service for payment events that never splits its brain.
///
/// A node joins the cluster described by --initial-cluster, keeps an fsync-durable log in
/// --data-dir and serves clients (gRPC) on --listen-client. Writes need a majority: a node
/// that cannot reach one refuses them at once with NO_QUORUM.
#[derive(Parser, Debug)]
#[command(name = "quorate", version, propagate_version = true)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. info or quorate_node=debug.
    #[arg(long, global = true, env = "QUORATE_LOG", default_value = "info")]
    log: String,
    /// Log lines as text, or as JSON objects (one per line) that carry the fields of every
    /// span in scope, the trace_id of the request being served among them.
    #[arg(
        long,
        global = true,
        env = "QUORATE_LOG_FORMAT",
        default_value = "text",
        value_name = "text|json"
    )]
    log_format: quorate_telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node of a cluster.
    ///
    /// Example (node 1 of 3):
    ///   quorate serve --id 1 --data-dir /var/lib/quorate \
    ///     --listen-client 0.0.0.0:2379 --listen-peer 0.0.0.0:2380 \
    ///     --listen-metrics 0.0.0.0:9090 \
    ///     --initial-cluster 1=10.0.0.1:2380,2=10.0.0.2:2380,3=10.0.0.3:2380
    #[command(verbatim_doc_comment)]
    Serve(Box<ServeArgs>),
    /// Start a local three-node cluster under ./quorate-data and print how to reach it.
    Dev(DevArgs),
    /// Exit 0 if the node whose metrics port is --metrics is ready to serve (its /readyz),
    /// or with --live, not wedged (its /livez); otherwise print why and exit 1. The
    /// container image's healthcheck.
    Ready(ReadyArgs),
}

fn main() -> ExitCode {
    // The runtime comes first, so that SIGHUP is taken before anything else is done (see
    // keep_hangups_from_stopping_the_node): reading the flags and the files they name takes
    // long enough for a supervisor's SIGHUP to land in it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let _entered = runtime.enter();
        keep_hangups_from_stopping_the_node();
    }
    let cli = Cli::parse();
    // (A node's flags are resolved first: whether it traces, and how much, is part of how its
    // subscriber is built.)
    let serve = match &cli.command {
        Command::Serve(args) => Some(args.resolve()),
        Command::Dev(_) | Command::Ready(_) => None,
    };
    let sampling_ratio = serve
        .as_ref()
        .and_then(|config| config.as_ref().ok())
        .filter(|config| config.otlp_endpoint.is_some())
        .map(|config| config.otlp_sampling_ratio);
    quorate_telemetry::init(&cli.log, cli.log_format, sampling_ratio);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(_) => match serve {
                Some(config) => run(config?, shutdown_signal()).await,
                None => unreachable!("resolved above"),
            },
            Command::Dev(args) => run_dev(args, shutdown_signal()).await,
            Command::Ready(args) => run_ready(args).await,
        }
    });
    // (Inside the runtime's lifetime: the exporter's channel lives on it.)
    quorate_telemetry::shutdown();
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP asks a node to reload its certificates and roles, never to exit; but its default
/// action ends the process, and the reloader listens only once the node runs (and not at all
/// on a node with nothing to reload). So the signal is taken from the first moment: a SIGHUP
/// during start-up, or on a node without TLS or roles, is logged and changes nothing.
fn keep_hangups_from_stopping_the_node() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::info!(
                        "SIGHUP received (certificates and roles, where configured, are reloaded)"
                    );
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
