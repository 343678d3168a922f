//! A client flood does not cost the cluster its leader. The overload benchmark runs briefly:
//! nodes on one CPU, its open loop on the other offering 10x what the cluster served, each
//! call with a 2 s deadline. The leader must keep its term (no election: heartbeats and
//! appends run on the peer runtime, not behind the flood on the client port), no call may
//! fail for want of a quorum, and the excess is refused with RESOURCE_EXHAUSTED. (The served
//! rate and latency are the benchmark's to print, not a test's to bound.)

use std::process::Command;

use quorate_integration_tests::binary;

#[test]
fn a_client_flood_keeps_the_leader_and_is_shed() {
    let out = Command::new(binary("overload"))
        .args(["--seconds", "3", "--factor", "10", "--warmup", "1"])
        .output()
        .expect("overload starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "overload failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("leadership during the overload: kept"),
        "the leader changed:\n{stdout}"
    );
    for lost in ["NO_QUORUM", "NOT_LEADER", "OUTCOME_UNKNOWN"] {
        assert!(
            !stdout.contains(lost),
            "calls failed with {lost}:\n{stdout}"
        );
    }
    let row = stdout
        .lines()
        .find(|l| l.contains("overload ("))
        .expect("the overload row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let served: f64 = cells[3].parse().expect("served/s is a number");
    let shed: f64 = cells[5].parse().expect("shed/s is a number");
    assert!(served > 0.0, "nothing served under overload: {row}");
    assert!(shed > 0.0, "nothing refused at 10x: {row}");
}
