//! The simulator's own guarantees: one seed, one run; a small sweep is clean.

use quorate_sim::{run, SimConfig};

#[test]
fn replaying_a_seed_reproduces_the_run_exactly() {
    for seed in [7, 4242] {
        let first = run(SimConfig::for_seed(seed));
        let second = run(SimConfig::for_seed(seed));
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.steps, second.steps, "seed {seed}");
        assert!(
            first.steps > 5_000,
            "a realistic run has thousands of steps"
        );
        let other = run(SimConfig::for_seed(seed + 1));
        assert_ne!(first.trace_hash, other.trace_hash);
    }
}

#[test]
fn a_small_sweep_finds_no_violation_and_does_real_work() {
    let mut operations = 0;
    let mut unknown = 0;
    let mut refused = 0;
    let mut leases = quorate_sim::workload::LeaseStats::default();
    let (mut snapshots, mut installs) = (0, 0);
    let (mut membership_changes, mut resized) = (0, 0);
    for seed in 1..=24 {
        let report = run(SimConfig::for_seed(seed));
        assert!(
            report.violation.is_none(),
            "seed {seed}: {:?}\nreplay: cargo run --release -p quorate-sim -- --seed {seed}",
            report.violation
        );
        assert!(
            report.committed > 50,
            "seed {seed} committed only {}",
            report.committed
        );
        operations += report.operations;
        unknown += report.unknown;
        refused += report.refused;
        leases += report.leases;
        snapshots += report.snapshots_taken;
        installs += report.snapshots_installed;
        membership_changes += report.membership_changes;
        resized += usize::from(report.members_at_end != report.nodes);
    }
    // Members are added, promoted, removed and replaced (and the clusters end other sizes).
    assert!(
        membership_changes > 20,
        "only {membership_changes} membership changes committed"
    );
    assert!(resized > 2, "only {resized} runs ended with another size");
    // Snapshots are taken and compact logs, and lagging followers install the leader's.
    assert!(snapshots > 500, "only {snapshots} snapshots taken");
    assert!(installs > 20, "only {installs} snapshots installed");
    assert!(
        operations > 5_000,
        "only {operations} client operations checked"
    );
    // Retries across leader changes (what exactly-once is about) and definite refusals.
    assert!(
        unknown > 100,
        "only {unknown} operations with unknown outcome"
    );
    assert!(refused > 50, "only {refused} submits refused");
    // Zombie writers (what lease-fencing is about): stalls past the TTL, writes with the old
    // token afterwards, most of them refused because the lease expired or changed hands.
    assert!(leases.grants > 50, "{leases:?}");
    assert!(leases.zombie_writes > 30, "{leases:?}");
    assert!(leases.zombie_refusals > 15, "{leases:?}");
}
