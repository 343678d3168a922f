//! `quoratectl snapshot take | save | status | restore`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use quorate_log_store::{LogStore, OpenOptions};
use quorate_node::StateMachine;
use quorate_payments::service::{hash_events, RocksMachine};
use quorate_proto::admin as pb;
use quorate_raft_core::{ConfState, NodeId, Snapshot, SnapshotMeta};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backup_file;
use crate::client::{describe, Context};

/// How long a backup may stream (the image is read, then sent at network speed).
const SAVE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Snapshots and backups.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Take a snapshot now on every endpoint: each node compacts its log behind its applied
    /// index (keeping its catch-up margin), as it does every --snapshot-count entries.
    Take,
    /// Save a consistent, checksummed backup of the cluster's state from the first endpoint
    /// that answers (any node: a follower's is as good as the leader's, up to its index).
    ///
    /// The file is written as FILE.part and renamed to FILE once complete and synced; an
    /// existing FILE is never overwritten.
    Save {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Check a backup file (its checksum and length) and say what it holds.
    Status {
        /// The backup file.
        file: PathBuf,
    },
    /// Build one member of a NEW cluster from a backup, into an empty data directory.
    ///
    /// Run it once per member, with the same FILE and the same --initial-cluster for each,
    /// then start every member with `quorate serve --id N --data-dir DIR --initial-cluster
    /// ...` (the same list). The new cluster gets a new cluster id: members of the cluster
    /// the backup came from are refused by it (CLUSTER_MISMATCH), so an old node pointed at
    /// it by mistake can neither vote in it nor overwrite it. The backup's checksum and its
    /// event hash are checked before anything is written; a failed restore leaves no data
    /// directory behind.
    Restore {
        /// The backup file (`quoratectl snapshot save`).
        file: PathBuf,
        /// The new member's data directory: must not exist, or be empty.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The new member's id (one of --initial-cluster).
        #[arg(long)]
        id: NodeId,
        /// Every member of the new cluster: `1=HOST:PEERPORT,2=...` (all voters).
        #[arg(long, value_name = "ID=HOST:PORT,...")]
        initial_cluster: String,
        /// Mixed into the new cluster's id: give a different one to restore the same backup
        /// into two clusters that must never talk to each other.
        #[arg(long, default_value = "")]
        initial_cluster_token: String,
    },
}

/// Runs a `snapshot` command.
pub async fn run(ctx: &Context, command: SnapshotCommand) -> Result<ExitCode> {
    match command {
        SnapshotCommand::Take => take(ctx).await,
        SnapshotCommand::Save { file } => save(ctx, &file).await,
        SnapshotCommand::Status { file } => status(ctx, &file),
        SnapshotCommand::Restore {
            file,
            data_dir,
            id,
            initial_cluster,
            initial_cluster_token,
        } => {
            let peers =
                quorate_node::parse_initial_cluster(&initial_cluster).map_err(|e| anyhow!(e))?;
            let restored = tokio::task::spawn_blocking(move || {
                restore(&file, &data_dir, id, &peers, &initial_cluster_token)
            })
            .await??;
            restored.print(ctx.json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `snapshot take`: every endpoint, each result on its own line; fails if any failed.
async fn take(ctx: &Context) -> Result<ExitCode> {
    let mut failed = false;
    for endpoint in &ctx.endpoints {
        let result = ctx
            .ask_admin(endpoint, |mut c| async move {
                c.snapshot(pb::SnapshotRequest {}).await
            })
            .await;
        match result {
            Ok(r) if ctx.json => println!(
                "{}",
                json!({
                    "endpoint": endpoint, "index": r.index, "term": r.term,
                    "first_log_index": r.first_log_index,
                    "log_size_bytes_before": r.log_size_bytes_before,
                    "log_size_bytes_after": r.log_size_bytes_after,
                })
            ),
            Ok(r) => println!(
                "{endpoint}: snapshot at index {} (term {}); the log now starts at {}; log {} -> {} \
                 bytes",
                r.index, r.term, r.first_log_index, r.log_size_bytes_before, r.log_size_bytes_after
            ),
            Err(e) => {
                failed = true;
                if ctx.json {
                    println!("{}", json!({"endpoint": endpoint, "error": e}));
                } else {
                    eprintln!("{e}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `snapshot save`: from the first endpoint that streams a whole backup.
async fn save(ctx: &Context, file: &Path) -> Result<ExitCode> {
    let mut errors = Vec::new();
    for endpoint in &ctx.endpoints {
        match save_from(ctx, endpoint, file).await {
            Ok((header, sha256)) => {
                if ctx.json {
                    println!(
                        "{}",
                        json!({
                            "file": file, "endpoint": endpoint, "index": header.index,
                            "term": header.term, "member_id": header.member_id,
                            "cluster_id": format!("{:016x}", header.cluster_id),
                            "image_bytes": header.image_bytes, "events_hash": header.events_hash,
                            "sha256": sha256,
                        })
                    );
                } else {
                    println!(
                        "saved {} from node {} ({endpoint}): index {}, term {}, {} bytes of \
                         image, events hash {}, sha256 {sha256}",
                        file.display(),
                        header.member_id,
                        header.index,
                        header.term,
                        header.image_bytes,
                        header.events_hash
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    bail!("no backup saved: {}", errors.join("; "))
}

async fn save_from(
    ctx: &Context,
    endpoint: &str,
    file: &Path,
) -> Result<(pb::SnapshotHeader, String)> {
    use pb::snapshot_chunk::Part;
    let channel = ctx.channel_with_timeout(endpoint, SAVE_TIMEOUT).await?;
    let mut client = pb::admin_client::AdminClient::new(channel);
    let failed = |s: tonic::Status| anyhow!("{endpoint}: {}", describe(&s));
    let mut stream = client
        .save_snapshot(pb::SaveSnapshotRequest {})
        .await
        .map_err(failed)?
        .into_inner();
    let header = match stream.message().await.map_err(failed)? {
        Some(pb::SnapshotChunk {
            part: Some(Part::Header(header)),
        }) => header,
        _ => bail!("{endpoint}: the backup stream did not start with its header"),
    };
    let mut writer = backup_file::Writer::create(file, &header)?;
    let bar = ProgressBar::new(header.image_bytes).with_style(
        ProgressStyle::with_template(
            "{spinner} saving {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {elapsed_precise}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let mut image_digest = Sha256::new();
    let outcome: Result<()> = async {
        loop {
            match stream.message().await.map_err(failed)? {
                Some(pb::SnapshotChunk {
                    part: Some(Part::Data(data)),
                }) => {
                    writer.image(&data)?;
                    image_digest.update(&data);
                    bar.inc(data.len() as u64);
                }
                Some(pb::SnapshotChunk {
                    part: Some(Part::Sha256(digest)),
                }) => {
                    if digest.as_ref() != image_digest.clone().finalize().as_slice() {
                        bail!("{endpoint}: the image received does not match its SHA-256");
                    }
                    return Ok(());
                }
                Some(_) => bail!("{endpoint}: unexpected message in the backup stream"),
                None => bail!("{endpoint}: the backup stream ended before its checksum"),
            }
        }
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = outcome {
        writer.abandon();
        return Err(e);
    }
    let sha256 = writer.finish()?;
    Ok((header, sha256))
}

/// `snapshot status`: what a backup holds, once its checksum passed.
fn status(ctx: &Context, file: &Path) -> Result<ExitCode> {
    let backup = backup_file::read(file)?;
    let h = &backup.header;
    if ctx.json {
        println!(
            "{}",
            json!({
                "file": file, "index": h.index, "term": h.term, "member_id": h.member_id,
                "cluster_id": format!("{:016x}", h.cluster_id), "voters": h.voters,
                "learners": h.learners, "image_bytes": h.image_bytes,
                "created_unix_ms": h.created_unix_ms, "events_hash": h.events_hash,
                "sha256": backup.sha256,
            })
        );
    } else {
        println!(
            "{}: a complete Quorate backup (sha256 {})",
            file.display(),
            backup.sha256
        );
        println!(
            "  index {} (term {}), {} bytes of image",
            h.index, h.term, h.image_bytes
        );
        println!(
            "  from member {} of cluster {:016x} (voters {:?}, learners {:?})",
            h.member_id, h.cluster_id, h.voters, h.learners
        );
        println!(
            "  events hash {} (what HashEvents answers at {})",
            h.events_hash, h.index
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a restore made.
struct Restored {
    data_dir: PathBuf,
    id: NodeId,
    cluster_id: u64,
    index: u64,
    term: u64,
    events: u64,
    events_hash: String,
    peers: BTreeMap<NodeId, String>,
}

impl Restored {
    fn print(&self, json: bool) {
        let cluster: Vec<String> = self
            .peers
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect();
        let cluster = cluster.join(",");
        if json {
            println!(
                "{}",
                json!({
                    "data_dir": self.data_dir, "id": self.id,
                    "cluster_id": format!("{:016x}", self.cluster_id), "index": self.index,
                    "term": self.term, "events": self.events, "events_hash": self.events_hash,
                    "initial_cluster": cluster,
                })
            );
            return;
        }
        println!(
            "restored member {} of the new cluster {:016x} into {}: index {} (term {}), {} \
             events, events hash {} (as in the backup)",
            self.id,
            self.cluster_id,
            self.data_dir.display(),
            self.index,
            self.term,
            self.events,
            self.events_hash
        );
        println!(
            "start it with: quorate serve --id {} --data-dir {} --initial-cluster {cluster} \
             (restore every other member from the same file with the same --initial-cluster)",
            self.id,
            self.data_dir.display()
        );
    }
}

/// Builds the member in a staging directory beside `data_dir` and renames it into place
/// once complete, so a restore that fails leaves nothing a node could start from.
fn restore(
    file: &Path,
    data_dir: &Path,
    id: NodeId,
    peers: &BTreeMap<NodeId, String>,
    token: &str,
) -> Result<Restored> {
    if !peers.contains_key(&id) {
        bail!(
            "--id {id} is not in --initial-cluster (members {:?})",
            peers.keys().collect::<Vec<_>>()
        );
    }
    let backup = backup_file::read(file)?;
    if data_dir.exists() {
        let empty = std::fs::read_dir(data_dir)
            .with_context(|| format!("--data-dir {}", data_dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "--data-dir {} is not empty: restore into a new directory (a restore never \
                 touches existing data)",
                data_dir.display()
            );
        }
    }
    let mut staging = data_dir.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    if staging.exists() {
        // Left by a restore that did not finish: nothing ever started from it.
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing the unfinished {}", staging.display()))?;
    }
    let result = build(&staging, &backup, id, peers, token);
    let restored = match result {
        Ok(restored) => restored,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if data_dir.exists() {
        std::fs::remove_dir(data_dir)
            .with_context(|| format!("replacing the empty {}", data_dir.display()))?;
    }
    std::fs::rename(&staging, data_dir)
        .with_context(|| format!("renaming {} to {}", staging.display(), data_dir.display()))?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", parent.display()))?;
    }
    Ok(Restored {
        data_dir: data_dir.to_path_buf(),
        ..restored
    })
}

fn build(
    dir: &Path,
    backup: &backup_file::Backup,
    id: NodeId,
    peers: &BTreeMap<NodeId, String>,
    token: &str,
) -> Result<Restored> {
    let h = &backup.header;
    let store = LogStore::open(
        dir,
        OpenOptions {
            bootstrap: ConfState::with_voters(peers.keys().copied()),
            state_column_families: RocksMachine::column_families(),
        },
    )
    .with_context(|| format!("creating {}", dir.display()))?;
    let mut machine = RocksMachine::open(store.clone()).context("opening the payments state")?;
    machine
        .restore(&backup.image)
        .map_err(|e| anyhow!("the backup's image does not restore: {e}"))?;
    if machine.applied_index() != h.index {
        bail!(
            "the backup's header says index {} but its image is of index {}",
            h.index,
            machine.applied_index()
        );
    }
    let (events, hash) = hash_events(&store, h.index).context("hashing the restored events")?;
    let events_hash = format!("{hash:016x}");
    if events_hash != h.events_hash {
        bail!(
            "the restored events hash to {events_hash} but the node that saved the backup \
             reported {}: the backup does not hold what it says",
            h.events_hash
        );
    }
    let cluster_id = quorate_node::restored_cluster_id(peers, backup.sha256.as_bytes(), token);
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index: h.index,
            term: h.term,
            ..SnapshotMeta::default()
        },
        data: backup.image.clone().into(),
    };
    quorate_node::restore_store(&store, &snapshot, id, peers, cluster_id)
        .map_err(|e| anyhow!("{e}"))?;
    store.flush().context("flushing the restored store")?;
    Ok(Restored {
        data_dir: dir.to_path_buf(),
        id,
        cluster_id,
        index: h.index,
        term: h.term,
        events,
        events_hash,
        peers: peers.clone(),
    })
}
