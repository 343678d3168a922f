//! The backup file `quoratectl snapshot save` writes and `snapshot restore` reads.
//!
//! | bytes | what |
//! | --- | --- |
//! | 16 | magic: `QUORATE-BACKUP`, a zero byte, the format version (`1`) |
//! | 4 | length of the header, big-endian |
//! | that many | the header: a protobuf `quorate.admin.v1.SnapshotHeader` |
//! | `header.image_bytes` | the machine's image, as the node streamed it |
//! | 32 | SHA-256 of every byte before it |
//!
//! A file is written under a temporary name and renamed into place once complete and synced,
//! so a file with the final name is never half written; a damaged or truncated one fails its
//! checksum or its length, and nothing is restored from it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prost::Message;
use quorate_proto::admin::SnapshotHeader;
use sha2::{Digest, Sha256};

/// The first bytes of every backup file (format version 1).
pub const MAGIC: &[u8; 16] = b"QUORATE-BACKUP\x00\x01";

/// The largest header a file may claim (a header is a few hundred bytes).
const MAX_HEADER_BYTES: u32 = 1 << 20;

/// A backup file being written: bytes go to `FILE.part` and through the digest.
pub struct Writer {
    file: BufWriter<File>,
    digest: Sha256,
    partial: PathBuf,
    path: PathBuf,
    image_left: u64,
}

impl Writer {
    /// Starts `path` (refusing to replace an existing file) with `header`.
    pub fn create(path: &Path, header: &SnapshotHeader) -> Result<Writer> {
        if path.exists() {
            bail!(
                "{} exists: choose a new file name (a backup is never overwritten)",
                path.display()
            );
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".part");
        let partial = PathBuf::from(partial);
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        let mut writer = Writer {
            file: BufWriter::new(file),
            digest: Sha256::new(),
            partial,
            path: path.to_path_buf(),
            image_left: header.image_bytes,
        };
        let header = header.encode_to_vec();
        writer.put(MAGIC)?;
        writer.put(&(header.len() as u32).to_be_bytes())?;
        writer.put(&header)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.digest.update(bytes);
        self.file
            .write_all(bytes)
            .with_context(|| format!("writing {}", self.partial.display()))
    }

    /// Appends image bytes.
    pub fn image(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.image_left {
            bail!("the node sent more image bytes than its header announced");
        }
        self.image_left -= bytes.len() as u64;
        self.put(bytes)
    }

    /// Ends the file with its checksum, syncs it and gives it its name. Returns the file's
    /// SHA-256 (hex). On failure the partial file is removed.
    pub fn finish(self) -> Result<String> {
        let partial = self.partial.clone();
        let result = self.complete();
        if result.is_err() {
            let _ = std::fs::remove_file(partial);
        }
        result
    }

    fn complete(mut self) -> Result<String> {
        if self.image_left != 0 {
            bail!(
                "the stream ended {} image bytes short of what its header announced",
                self.image_left
            );
        }
        let digest = self.digest.clone().finalize();
        self.file
            .write_all(&digest)
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.get_ref().sync_all())
            .with_context(|| format!("writing {}", self.partial.display()))?;
        std::fs::rename(&self.partial, &self.path).with_context(|| {
            format!(
                "renaming {} to {}",
                self.partial.display(),
                self.path.display()
            )
        })?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
        Ok(hex(&digest))
    }

    /// Removes the partial file (after a failed save).
    pub fn abandon(self) {
        let partial = self.partial.clone();
        drop(self);
        let _ = std::fs::remove_file(partial);
    }
}

/// A backup read back and checked: its header, its image, and the file's SHA-256 (hex).
#[derive(Debug)]
pub struct Backup {
    pub header: SnapshotHeader,
    pub image: Vec<u8>,
    pub sha256: String,
}

/// Reads and checks `path`: magic, header, image length and checksum. Nothing in a file that
/// fails any check is used.
pub fn read(path: &Path) -> Result<Backup> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = Checked {
        inner: BufReader::new(file),
        digest: Sha256::new(),
    };
    let damaged = |what: &str| {
        anyhow::anyhow!(
            "{} is not a complete Quorate backup ({what}); nothing was restored",
            path.display()
        )
    };
    let mut magic = [0u8; 16];
    reader
        .read_exact(&mut magic)
        .map_err(|_| damaged("too short"))?;
    if magic[..15] != MAGIC[..15] {
        bail!("{} is not a Quorate backup file", path.display());
    }
    if magic[15] != MAGIC[15] {
        bail!(
            "{} is a Quorate backup of format {}, which this quoratectl does not read (it \
             reads format {})",
            path.display(),
            magic[15],
            MAGIC[15]
        );
    }
    let mut length = [0u8; 4];
    reader
        .read_exact(&mut length)
        .map_err(|_| damaged("truncated in its header"))?;
    let length = u32::from_be_bytes(length);
    if length > MAX_HEADER_BYTES {
        return Err(damaged("its header length is implausible"));
    }
    let mut header = vec![0u8; length as usize];
    reader
        .read_exact(&mut header)
        .map_err(|_| damaged("truncated in its header"))?;
    let header =
        SnapshotHeader::decode(header.as_slice()).map_err(|_| damaged("its header is damaged"))?;
    let expected = 16 + 4 + u64::from(length) + header.image_bytes + 32;
    if size != expected {
        return Err(damaged(&format!(
            "{size} bytes, where its header announces {expected}"
        )));
    }
    let mut image = vec![0u8; header.image_bytes as usize];
    reader
        .read_exact(&mut image)
        .map_err(|_| damaged("truncated in its image"))?;
    let computed = reader.digest.finalize();
    let mut stored = [0u8; 32];
    reader
        .inner
        .read_exact(&mut stored)
        .map_err(|_| damaged("truncated in its checksum"))?;
    if computed.as_slice() != stored {
        return Err(damaged(
            "its SHA-256 does not match its contents: it was damaged",
        ));
    }
    Ok(Backup {
        header,
        image,
        sha256: hex(&stored),
    })
}

/// A reader that hashes what it reads.
struct Checked<R> {
    inner: R,
    digest: Sha256,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(image_bytes: u64) -> SnapshotHeader {
        SnapshotHeader {
            index: 42,
            term: 3,
            cluster_id: 0xfeed,
            member_id: 2,
            voters: vec![1, 2, 3],
            image_bytes,
            events_hash: "00ff".into(),
            ..Default::default()
        }
    }

    fn save(path: &Path, image: &[u8]) -> String {
        let mut writer = Writer::create(path, &header(image.len() as u64)).unwrap();
        for chunk in image.chunks(7) {
            writer.image(chunk).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn a_backup_round_trips_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.qbk");
        let image: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();
        let sha = save(&path, &image);
        assert!(!dir.path().join("b.qbk.part").exists());
        let back = read(&path).unwrap();
        assert_eq!(back.header, header(1000));
        assert_eq!(back.image, image);
        assert_eq!(back.sha256, sha);
        let again = Writer::create(&path, &header(0)).err().unwrap().to_string();
        assert!(again.contains("never overwritten"), "{again}");
    }

    #[test]
    fn any_damaged_byte_or_missing_tail_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.qbk");
        save(&path, b"the machine's image, in bytes");
        let good = std::fs::read(&path).unwrap();
        // Every single-bit flip anywhere (magic, length, header, image, checksum) is caught.
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            let damaged = dir.path().join(format!("bad-{at}"));
            std::fs::write(&damaged, &bad).unwrap();
            assert!(
                read(&damaged).is_err(),
                "a flip at byte {at} went unnoticed"
            );
        }
        for cut in [0, 10, 20, good.len() - 33, good.len() - 1] {
            let short = dir.path().join(format!("short-{cut}"));
            std::fs::write(&short, &good[..cut]).unwrap();
            let error = read(&short).unwrap_err().to_string();
            assert!(error.contains("not"), "{cut}: {error}");
        }
    }

    #[test]
    fn a_stream_shorter_or_longer_than_announced_makes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.qbk");
        let mut writer = Writer::create(&path, &header(10)).unwrap();
        writer.image(b"12345").unwrap();
        let short = writer.finish().unwrap_err().to_string();
        assert!(short.contains("5 image bytes short"), "{short}");
        assert!(!path.exists() && !dir.path().join("b.qbk.part").exists());
        let mut writer = Writer::create(&path, &header(3)).unwrap();
        assert!(writer.image(b"1234").is_err());
        writer.abandon();
        assert!(!path.exists() && !dir.path().join("b.qbk.part").exists());
    }
}
