//! The side-by-side benchmark still runs: Quorate alone, one client, one second, and its table
//! reports writes that happened (the figures themselves are not checked: they are the
//! benchmark's to print, not a test's to bound).

use std::process::Command;

use quorate_integration_tests::binary;

#[test]
fn vs_etcd_runs_and_prints_its_table() {
    let out = Command::new(binary("vs-etcd"))
        .args(["--clients", "1,4", "--seconds", "1", "--no-reads"])
        .output()
        .expect("vs-etcd starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vs-etcd failed:\n{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("quorate (Submit)"))
        .collect();
    assert_eq!(rows.len(), 2, "one row per level:\n{stdout}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let writes: f64 = cells[3].parse().expect("writes/s is a number");
        let errors: u64 = cells[8].parse().expect("errors is a number");
        assert!(writes > 0.0, "no write succeeded: {row}");
        assert_eq!(errors, 0, "writes failed: {row}");
    }
    assert!(
        stdout.contains("Floor: fdatasync"),
        "no floor line:\n{stdout}"
    );
}
