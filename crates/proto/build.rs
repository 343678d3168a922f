//! Generates Rust code from `proto/` with the vendored protoc (no system protoc needed), and
//! a file descriptor set for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "quorate/raft/v1/raft.proto",
        "quorate/payments/v1/payments.proto",
        "quorate/admin/v1/admin.proto",
    ]
    .map(|f| root.join(f));
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .bytes(".quorate.raft.v1")
        // (A backup's chunks are slices of one image: no copy.)
        .bytes(".quorate.admin.v1.SnapshotChunk")
        .file_descriptor_set_path(out.join("quorate_descriptor.bin"))
        .compile_with_config(config, &files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
