//! The documentation names code that must exist: the write path's hop table in
//! ARCHITECTURE.md names a file and a function for every hop.

use std::path::{Path, PathBuf};

/// `(file, function)` of every row of the hop table.
fn hops(architecture: &str) -> Vec<(String, String)> {
    let start = architecture
        .find("| Hop | File | Function |")
        .expect("ARCHITECTURE.md has the hop table");
    architecture[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_string();
            (unquote(cells[2]), unquote(cells[3]))
        })
        .collect()
}

/// The rows whose file does not define the function.
fn missing(root: &Path, hops: &[(String, String)]) -> Vec<String> {
    hops.iter()
        .filter(|(file, function)| {
            let source = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            !(source.contains(&format!("fn {function}("))
                || source.contains(&format!("fn {function}<")))
        })
        .map(|(file, function)| format!("{file}: fn {function}"))
        .collect()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_hop_of_the_write_path_names_a_function_that_exists() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let hops = hops(&architecture);
    assert!(hops.len() >= 15, "the table lost rows: {hops:?}");
    let missing = missing(&root(), &hops);
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what does not exist: {missing:?}"
    );
}

#[test]
fn the_hop_check_reports_a_function_that_is_gone() {
    let table = "| Hop | File | Function |\n| --- | --- | --- |\n\
                 | x | `crates/node/src/driver/mod.rs` | `process_ready` |\n\
                 | y | `crates/node/src/driver/mod.rs` | `process_everything` |\n";
    assert_eq!(
        missing(&root(), &hops(table)),
        vec!["crates/node/src/driver/mod.rs: fn process_everything".to_string()]
    );
}
