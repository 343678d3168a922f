//! `quorate-sim`: sweep seeds or replay one.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use quorate_sim::{run, RunReport, SimConfig};

/// Deterministic simulation of Quorate clusters under faults.
///
/// Every run is fully determined by its seed. A sweep ends with the line
/// `seeds=N violations=V` and exits non-zero iff V > 0; every violation prints the invariant,
/// the seed and the command that replays it.
#[derive(Parser, Debug)]
#[command(name = "quorate-sim", version)]
struct Cli {
    /// Sweep this many seeds (starting at --start).
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<u64>,
    /// First seed of a sweep.
    #[arg(long, default_value_t = 1)]
    start: u64,
    /// Replay exactly one seed and print its trace-hash.
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size, 3 or 5 (default: 3 for odd seeds, 5 for even ones).
    #[arg(long, value_parser = parse_nodes)]
    nodes: Option<usize>,
    /// Length of the chaos phase, in ticks.
    #[arg(long, default_value_t = 800)]
    chaos_ticks: u64,
    /// Inject a bug (needs `--features bug-injection`): election-without-quorum,
    /// commit-old-term-by-count, vote-not-persisted, lease-read-without-check-quorum,
    /// follower-clock-trusted, leader-clock-unbounded, amnesiac-voter, ticks-once-per-turn,
    /// ack-before-persist, snapshot-overwrites-newer-log, compact-beyond-applied,
    /// single-step-two-voters, learner-counted-in-quorum, conf-effective-on-commit.
    #[arg(long)]
    bug: Option<String>,
    /// Worker threads for a sweep (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print every event of a replayed seed to stderr.
    #[arg(long)]
    verbose: bool,
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err("the simulator runs clusters of 3 or 5 nodes".into()),
    }
}

#[cfg(feature = "bug-injection")]
use quorate_sim::world::Bug;
#[cfg(not(feature = "bug-injection"))]
type Bug = ();

#[cfg(feature = "bug-injection")]
fn parse_bug(name: &str) -> Result<Bug, String> {
    use quorate_raft_core::InjectedBug::*;
    Ok(match name {
        "election-without-quorum" => Bug::Raft(ElectionWithoutQuorum),
        "commit-old-term-by-count" => Bug::Raft(CommitOldTermByCount),
        "vote-not-persisted" => Bug::Raft(VoteNotPersisted),
        "lease-read-without-check-quorum" => Bug::Raft(LeaseReadWithoutCheckQuorum),
        "amnesiac-voter" => Bug::Raft(AmnesiacVoter),
        "ack-before-persist" => Bug::Raft(AckBeforePersist),
        "snapshot-overwrites-newer-log" => Bug::Raft(SnapshotOverwritesNewerLog),
        "compact-beyond-applied" => Bug::Raft(CompactBeyondApplied),
        "single-step-two-voters" => Bug::Raft(SingleStepTwoVoters),
        "learner-counted-in-quorum" => Bug::Raft(LearnerCountedInQuorum),
        "conf-effective-on-commit" => Bug::Raft(ConfEffectiveOnCommit),
        "ticks-once-per-turn" => Bug::TicksOncePerTurn,
        "follower-clock-trusted" => Bug::FollowerClockTrusted,
        "leader-clock-unbounded" => Bug::LeaderClockUnbounded,
        "compaction-skips-hash" => Bug::CompactionSkipsHash,
        other => return Err(format!("unknown bug {other:?}")),
    })
}

#[cfg(not(feature = "bug-injection"))]
fn parse_bug(_: &str) -> Result<Bug, String> {
    Err("this binary was built without bug injection; rebuild with \
         `cargo run --release -p quorate-sim --features bug-injection -- ...`"
        .into())
}

fn config_for(cli: &Cli, seed: u64, #[allow(unused)] bug: Option<Bug>) -> SimConfig {
    let mut config = SimConfig::for_seed(seed);
    if let Some(nodes) = cli.nodes {
        config.nodes = nodes;
    }
    config.chaos_ticks = cli.chaos_ticks;
    #[cfg(feature = "bug-injection")]
    {
        config.bug = bug;
    }
    config
}

fn replay_command(cli: &Cli, report: &RunReport) -> String {
    let features = if cli.bug.is_some() {
        " --features bug-injection"
    } else {
        ""
    };
    let mut cmd = format!(
        "cargo run --release -p quorate-sim{features} -- --seed {} --nodes {}",
        report.seed, report.nodes
    );
    if cli.chaos_ticks != 800 {
        cmd += &format!(" --chaos-ticks {}", cli.chaos_ticks);
    }
    if let Some(bug) = &cli.bug {
        cmd += &format!(" --bug {bug}");
    }
    cmd
}

/// Runs a seed, turning a panic inside the nodes into a violation.
fn run_caught(config: SimConfig) -> RunReport {
    let (seed, nodes) = (config.seed, config.nodes);
    match std::panic::catch_unwind(|| run(config)) {
        Ok(report) => report,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            RunReport {
                seed,
                nodes,
                steps: 0,
                trace_hash: 0,
                violation: Some(quorate_sim::invariants::Violation {
                    invariant: "panic",
                    detail: message,
                    at: 0,
                }),
                operations: 0,
                unknown: 0,
                refused: 0,
                leases: Default::default(),
                failed: 0,
                elections: 0,
                crashes: 0,
                committed: 0,
                inconclusive: false,
                zombie_checked: 0,
                heal_backlog: 0,
                snapshots_taken: 0,
                snapshots_installed: 0,
                membership_changes: 0,
                members_at_end: 0,
                events_compacted: 0,
                compacted_reads: 0,
            }
        }
    }
}

fn print_violation(cli: &Cli, report: &RunReport) {
    if let Some(v) = &report.violation {
        println!(
            "VIOLATION invariant={} seed={} nodes={} at={}: {}",
            v.invariant, report.seed, report.nodes, v.at, v.detail
        );
        println!("  replay: {}", replay_command(cli, report));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let bug = match cli.bug.as_deref().map(parse_bug).transpose() {
        Ok(bug) => bug,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = cli.seed {
        let mut config = config_for(&cli, seed, bug);
        config.verbose = cli.verbose;
        let report = run_caught(config);
        println!(
            "seed={} nodes={} steps={} operations={} unknown={} refused={} failed={} \
             elections={} crashes={} committed={} lease-grants={} zombie-writes={} \
             zombie-refused={} snapshots={} snapshot-installs={} membership-changes={} \
             members-at-end={} events-compacted={}",
            report.seed,
            report.nodes,
            report.steps,
            report.operations,
            report.unknown,
            report.refused,
            report.failed,
            report.elections,
            report.crashes,
            report.committed,
            report.leases.grants,
            report.leases.zombie_writes,
            report.leases.zombie_refusals,
            report.snapshots_taken,
            report.snapshots_installed,
            report.membership_changes,
            report.members_at_end,
            report.events_compacted
        );
        print_violation(&cli, &report);
        println!("trace-hash={:016x}", report.trace_hash);
        return if report.violation.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let count = cli.seeds.unwrap_or(100);
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Panics are reported as violations with their seed; keep stderr quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let next = AtomicU64::new(cli.start);
    let end = cli.start + count;
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let report = run_caught(config_for(&cli, seed, bug));
                print_violation(&cli, &report);
                reports.lock().expect("no poisoned lock").push(report);
            });
        }
    });
    let mut reports = reports.into_inner().expect("no poisoned lock");
    reports.sort_by_key(|r| r.seed);
    let elapsed = started.elapsed();
    let violations = reports.iter().filter(|r| r.violation.is_some()).count();
    let mut by_invariant: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &reports {
        if let Some(v) = &r.violation {
            *by_invariant.entry(v.invariant).or_default() += 1;
        }
    }
    let steps: Vec<u64> = reports.iter().map(|r| r.steps).collect();
    let mean_steps = steps.iter().sum::<u64>() / steps.len().max(1) as u64;
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    let median_steps = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let operations: usize = reports.iter().map(|r| r.operations).sum();
    let unknown: usize = reports.iter().map(|r| r.unknown).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    let elections: usize = reports.iter().map(|r| r.elections).sum();
    let inconclusive = reports.iter().filter(|r| r.inconclusive).count();
    let refused: u64 = reports.iter().map(|r| r.refused).sum();
    let snapshots: u64 = reports.iter().map(|r| r.snapshots_taken).sum();
    let installs: u64 = reports.iter().map(|r| r.snapshots_installed).sum();
    let membership: u64 = reports.iter().map(|r| r.membership_changes).sum();
    let with_membership = reports.iter().filter(|r| r.membership_changes > 0).count();
    let compacted: u64 = reports.iter().map(|r| r.events_compacted).sum();
    let with_compaction = reports.iter().filter(|r| r.events_compacted > 0).count();
    let compacted_reads: u64 = reports.iter().map(|r| r.compacted_reads).sum();
    let mut leases = quorate_sim::workload::LeaseStats::default();
    for r in &reports {
        leases += r.leases;
    }
    println!(
        "elapsed={:.1}s threads={threads} steps/seed: mean={mean_steps} median={median_steps} \
         operations={operations} unknown-outcome={unknown} refused={refused} crashes={crashes} \
         elections={elections} snapshots={snapshots} snapshot-installs={installs} \
         membership-changes={membership} seeds-with-membership-changes={with_membership} \
         events-compacted={compacted} seeds-with-compaction={with_compaction} \
         compacted-reads-unchecked={compacted_reads} \
         linearizability-inconclusive={inconclusive}",
        elapsed.as_secs_f64()
    );
    let zombie_checked: u64 = reports.iter().map(|r| r.zombie_checked).sum();
    println!(
        "leases: grants={} stalls={} zombie-writes={} zombie-refused={} zombie-accepted={} \
         zombie-checked={zombie_checked} (zombie-accepted counts writes whose lease had not \
         expired yet, legitimately; zombie-checked ones had to be refused)",
        leases.grants,
        leases.stalls,
        leases.zombie_writes,
        leases.zombie_refusals,
        leases.zombie_accepted
    );
    if !by_invariant.is_empty() {
        let summary: Vec<String> = by_invariant
            .iter()
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        println!("violations by invariant: {}", summary.join(" "));
    }
    println!("seeds={count} violations={violations}");
    if violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
