//! The side-by-side benchmark still runs: Quorate alone, one client, one second, and its table
//! reports writes that happened and the fsyncs they took (the figures themselves are not
//! bounded: they are the benchmark's to print, not a test's to bound).

use std::process::Command;

use quorate_integration_tests::binary;

/// Quorate's rows of the write table, each with its cells (`cells[3]` writes/s, `cells[8]`
/// fsyncs per 1k, `cells[9]` mean fsync, `cells[10]` errors).
fn write_rows(stdout: &str) -> Vec<(&str, Vec<&str>)> {
    stdout
        .lines()
        .filter(|l| l.contains("quorate (Submit)"))
        .map(|row| (row, row.split('|').map(str::trim).collect()))
        .collect()
}

#[test]
fn vs_etcd_runs_and_prints_its_table() {
    let out = Command::new(binary("vs-etcd"))
        .args(["--clients", "1,4", "--seconds", "1", "--no-reads"])
        .output()
        .expect("vs-etcd starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vs-etcd failed:\n{stdout}\n{stderr}");
    let rows = write_rows(&stdout);
    assert_eq!(rows.len(), 2, "one row per level:\n{stdout}");
    for (row, cells) in rows {
        let writes: f64 = cells[3].parse().expect("writes/s is a number");
        // The fsync figures come from the nodes' own histograms, scraped around the cell.
        let fsyncs: f64 = cells[8].parse().expect("fsyncs / 1k ops is a number");
        let fsync_ms: f64 = cells[9].parse().expect("fsync ms is a number");
        let errors: u64 = cells[10].parse().expect("errors is a number");
        assert!(writes > 0.0, "no write succeeded: {row}");
        assert!(fsyncs > 0.0, "durable writes without an fsync: {row}");
        assert!(fsync_ms > 0.0, "an fsync took no time: {row}");
        assert_eq!(errors, 0, "writes failed: {row}");
    }
    assert!(
        stdout.contains("Floor: fdatasync"),
        "no floor line:\n{stdout}"
    );
}

/// `--route followers` sends every write through a follower (the forwarding hop alone), and
/// says so above its table.
#[test]
fn vs_etcd_can_load_the_followers_only() {
    let out = Command::new(binary("vs-etcd"))
        .args([
            "--clients",
            "2",
            "--seconds",
            "1",
            "--no-reads",
            "--route",
            "followers",
        ])
        .output()
        .expect("vs-etcd starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vs-etcd failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("closed loop over Quorate's followers only"),
        "the table does not say where the clients went:\n{stdout}"
    );
    let rows = write_rows(&stdout);
    let Some((row, cells)) = rows.first() else {
        panic!("no row:\n{stdout}");
    };
    let writes: f64 = cells[3].parse().expect("writes/s is a number");
    let errors: u64 = cells[10].parse().expect("errors is a number");
    assert!(writes > 0.0, "no forwarded write succeeded: {row}");
    assert_eq!(errors, 0, "forwarded writes failed: {row}");
}
