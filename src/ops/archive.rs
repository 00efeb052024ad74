//! The backup archive format: one `.tar.gz` holding `crm.db`, `attachments/...` and, last,
//! `manifest.json` with the crm version, schema version, time and a sha256 for every file.
//! The manifest goes last so every checksum is computed while the file is written (one
//! pass over the data); readers hash every entry and compare at the end.
//!
//! The manifest only covers what the archive decompresses to, and gzip's CRC only covers
//! the decompressed stream: bits the inflater ignores (the padding after a stored block's
//! header, the rest of the last byte, the header's MTIME/XFL/OS fields) could change and
//! the archive still read back identically. So the whole file is sealed too: the gzip
//! header carries an extra field (`CR`, RFC 1952 FEXTRA) with the sha256 of every byte of
//! the file, those 32 bytes counted as zeros. Any altered byte anywhere is refused, and
//! gzip and tar still read the archive as usual (they skip the extra field).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io_ctx, OpsError, OpsResult};

pub const MANIFEST: &str = "manifest.json";
pub const DB_ENTRY: &str = "crm.db";
pub const ATTACHMENTS: &str = "attachments";
const FORMAT: u32 = 1;
/// The gzip header up to the seal: magic, deflate, FLG = FEXTRA, MTIME 0, XFL, OS; then
/// XLEN 36 and the subfield `CR` of 32 bytes.
const SEAL_ID: [u8; 4] = [b'C', b'R', 32, 0];
const SEAL_AT: usize = 16;
const SEAL_LEN: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    pub crm_version: String,
    pub schema_version: usize,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes and counts what is written through it (the whole archive file, for the seal).
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads an archive file, hashing every byte with the seal counted as zeros, and keeps the
/// seal it saw.
struct SealReader<R> {
    inner: R,
    hasher: Sha256,
    pos: usize,
    seal: [u8; SEAL_LEN],
    count: u64,
}

impl<R: Read> Read for SealReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let end = SEAL_AT + SEAL_LEN;
        if self.pos < end {
            let mut chunk = buf[..n].to_vec();
            for (i, b) in chunk.iter_mut().enumerate().take(end - self.pos) {
                let at = self.pos + i;
                if at >= SEAL_AT {
                    self.seal[at - SEAL_AT] = *b;
                    *b = 0;
                }
            }
            self.hasher.update(&chunk);
        } else {
            self.hasher.update(&buf[..n]);
        }
        self.pos += n;
        self.count += n as u64;
        Ok(n)
    }
}

/// Writes an archive at `dest` from a database copy and an attachments folder (which may
/// be absent). Returns the manifest it wrote. `dest` is fsynced before returning.
pub fn write(
    dest: &Path,
    db_copy: &Path,
    attachments: &Path,
    schema_version: usize,
) -> OpsResult<Manifest> {
    let file = create_private(dest)?;
    let mut extra = SEAL_ID.to_vec();
    extra.extend_from_slice(&[0; SEAL_LEN]);
    // The verifier reads the compressed stream as it is written, on its own thread (the
    // second core), exactly as a restore will: no second pass over the archive afterwards.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    let verifier = {
        let path = dest.to_path_buf();
        std::thread::spawn(move || {
            let bad = |reason: String| OpsError::BadArchive {
                path: path.clone(),
                reason,
            };
            let input = BufReader::with_capacity(
                1 << 20,
                ChannelReader {
                    rx,
                    chunk: Vec::new(),
                    at: 0,
                },
            );
            read_contents(input, None, &bad).map(|(m, _)| m)
        })
    };
    // Fast compression: the database dominates and the goal is to be close to `cp` speed;
    // level 1 still shrinks a typical CRM database to about a third.
    let gz = flate2::GzBuilder::new().extra(extra).write(
        HashingWriter {
            inner: BufWriter::with_capacity(
                1 << 20,
                Tee {
                    file,
                    copy: Some(tx),
                    unsynced: 0,
                },
            ),
            hasher: Sha256::new(),
        },
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut files = Vec::new();
    files.push(append_file(&mut tar, db_copy, DB_ENTRY)?);
    if attachments.is_dir() {
        let mut found = Vec::new();
        walk(attachments, &mut found)?;
        found.sort();
        for f in found {
            let rel = f
                .strip_prefix(attachments)
                .expect("walked under attachments");
            let name = format!("{ATTACHMENTS}/{}", rel.to_string_lossy());
            files.push(append_file(&mut tar, &f, &name)?);
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        crm_version: crate::VERSION.to_string(),
        schema_version,
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats"),
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, MANIFEST, json.as_slice())
        .map_err(io_ctx("cannot write", dest))?;
    let gz = tar.into_inner().map_err(io_ctx("cannot write", dest))?;
    let hashed = gz.finish().map_err(io_ctx("cannot write", dest))?;
    let seal = hashed.hasher.finalize();
    let mut tee = hashed.inner.into_inner().map_err(|e| OpsError::Io {
        what: format!("cannot write {}", dest.display()),
        source: e.into_error(),
    })?;
    tee.copy = None;
    let read_back = verifier.join().map_err(|_| OpsError::Io {
        what: format!("verifying {}", dest.display()),
        source: std::io::Error::other("the verifier thread panicked"),
    })??;
    if read_back != manifest {
        return Err(OpsError::NeedsAttention(format!(
            "{} does not read back as written",
            dest.display()
        )));
    }
    let mut file = tee.file;
    file.seek(SeekFrom::Start(SEAL_AT as u64))
        .and_then(|_| file.write_all(&seal))
        .map_err(io_ctx("cannot write", dest))?;
    file.sync_all().map_err(io_ctx("cannot sync", dest))?;
    Ok(manifest)
}

/// Creates a file only its owner (and group) can read, whatever the caller's umask: the
/// database holds the bot token and the SMTP password in plain text (see README).
fn create_private(path: &Path) -> OpsResult<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(path)
        .map_err(io_ctx("cannot create", path))?;
    // An existing file keeps its old mode through open(); set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .map_err(io_ctx("cannot set the mode of", path))?;
    Ok(f)
}

/// Dirty data written before the server's next commit must reach the disk first on many
/// file systems (ext4 data=ordered), so a backup that leaves gigabytes to the page cache
/// stalls the server's fsyncs. Flushing every few megabytes keeps that debt small.
const SYNC_EVERY: u64 = 16 << 20;

/// Writes to the archive file and hands a copy of every chunk to the verifier.
struct Tee {
    file: File,
    /// None once the verifier is done (or gave up: its error is reported at the end).
    copy: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    unsynced: u64,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(buf)?;
        if let Some(tx) = &self.copy {
            if tx.send(buf.to_vec()).is_err() {
                self.copy = None;
            }
        }
        self.unsynced += buf.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The verifier's end of the [`Tee`]: end of stream when the writer hangs up.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
) -> OpsResult<FileEntry> {
    let f = File::open(path).map_err(io_ctx("cannot read", path))?;
    let size = f.metadata().map_err(io_ctx("cannot read", path))?.len();
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o640);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut reader = HashingReader {
        inner: BufReader::with_capacity(1 << 20, f),
        hasher: Sha256::new(),
        count: 0,
    };
    // The header promises `size` bytes; tar pads or errors when the file changes size.
    tar.append_data(&mut header, name, (&mut reader).take(size))
        .map_err(io_ctx("cannot archive", path))?;
    if reader.count != size {
        return Err(OpsError::Io {
            what: format!("{} changed size while being archived", path.display()),
            source: std::io::Error::other("size changed"),
        });
    }
    Ok(FileEntry {
        path: name.to_string(),
        size,
        sha256: hex::encode(reader.hasher.finalize()),
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> OpsResult<()> {
    for e in std::fs::read_dir(dir).map_err(io_ctx("cannot list", dir))? {
        let e = e.map_err(io_ctx("cannot list", dir))?;
        let t = e.file_type().map_err(io_ctx("cannot list", dir))?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Only `crm.db`, `manifest.json` and plain relative paths under `attachments/`.
fn allowed_name(name: &str) -> bool {
    if name == DB_ENTRY || name == MANIFEST {
        return true;
    }
    let p = Path::new(name);
    name.starts_with("attachments/") && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Reads the whole archive, hashing every entry, and checks it against its manifest.
/// With `extract_to`, the files are also written there (the directory must exist and
/// be empty). Any mismatch, missing or extra file, or a truncated stream is an error.
pub fn verify(archive: &Path, extract_to: Option<&Path>) -> OpsResult<Manifest> {
    let bad = |reason: String| OpsError::BadArchive {
        path: archive.to_path_buf(),
        reason,
    };
    let (sealed_reader, file_len) = open_sealed(archive, &bad)?;
    let (manifest, rest) = read_contents(
        BufReader::with_capacity(1 << 20, sealed_reader),
        extract_to,
        &bad,
    )?;
    // Bytes after the gzip member are never decompressed: read them into the seal too.
    let mut rest = rest;
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(io_ctx("cannot read", archive))?;
    seal_matches(rest.into_inner(), file_len, &bad)?;
    Ok(manifest)
}

/// Reads the archive's bytes once and compares them with its seal (no decompression):
/// after [`write`] verified the content as it streamed, this shows the file holds exactly
/// the bytes written.
pub fn check_seal(archive: &Path) -> OpsResult<()> {
    let bad = |reason: String| OpsError::BadArchive {
        path: archive.to_path_buf(),
        reason,
    };
    let (mut r, file_len) = open_sealed(archive, &bad)?;
    std::io::copy(&mut r, &mut std::io::sink()).map_err(io_ctx("cannot read", archive))?;
    seal_matches(r, file_len, &bad)
}

fn open_sealed(
    archive: &Path,
    bad: &dyn Fn(String) -> OpsError,
) -> OpsResult<(SealReader<File>, u64)> {
    let mut file = File::open(archive).map_err(io_ctx("cannot open", archive))?;
    let file_len = file
        .metadata()
        .map_err(io_ctx("cannot read", archive))?
        .len();
    let mut head = [0u8; SEAL_AT];
    let sealed = file.read_exact(&mut head).is_ok()
        && head[..2] == [0x1f, 0x8b]
        && head[3] & 0x04 != 0
        && head[12..16] == SEAL_ID;
    if !sealed {
        return Err(bad(
            "it is not a sealed crm backup (no checksum in its gzip header)".into(),
        ));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(io_ctx("cannot read", archive))?;
    Ok((
        SealReader {
            inner: file,
            hasher: Sha256::new(),
            pos: 0,
            seal: [0; SEAL_LEN],
            count: 0,
        },
        file_len,
    ))
}

fn seal_matches<R>(
    r: SealReader<R>,
    file_len: u64,
    bad: &dyn Fn(String) -> OpsError,
) -> OpsResult<()> {
    if r.count != file_len || r.hasher.finalize().as_slice() != r.seal {
        return Err(bad(
            "the archive's checksum does not match: it was altered or damaged".into(),
        ));
    }
    Ok(())
}

/// Decompresses a gzip'd archive from `input`, hashing every entry (and writing it below
/// `extract_to` when given), and checks the entries against the manifest. Returns the
/// manifest and `input` positioned after the gzip member.
fn read_contents<R: std::io::BufRead>(
    input: R,
    extract_to: Option<&Path>,
    bad: &dyn Fn(String) -> OpsError,
) -> OpsResult<(Manifest, R)> {
    let mut tar = tar::Archive::new(flate2::bufread::GzDecoder::new(input));
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular || !allowed_name(&name) {
            return Err(bad(format!("unexpected entry {name:?}")));
        }
        if seen.contains_key(&name) || (name == MANIFEST && manifest.is_some()) {
            return Err(bad(format!("entry {name:?} appears twice")));
        }
        if name == MANIFEST {
            let mut text = Vec::new();
            entry
                .read_to_end(&mut text)
                .map_err(|e| bad(format!("unreadable manifest: {e}")))?;
            let m: Manifest = serde_json::from_slice(&text)
                .map_err(|e| bad(format!("manifest is not valid: {e}")))?;
            manifest = Some(m);
            continue;
        }
        let mut reader = HashingReader {
            inner: &mut entry,
            hasher: Sha256::new(),
            count: 0,
        };
        match extract_to {
            Some(root) => {
                let target = root.join(&name);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io_ctx("cannot create", parent))?;
                }
                let mut out = BufWriter::with_capacity(1 << 20, create_private(&target)?);
                std::io::copy(&mut reader, &mut out)
                    .map_err(|e| bad(format!("{name}: unreadable: {e}")))?;
                let f = out.into_inner().map_err(|e| OpsError::Io {
                    what: format!("cannot write {}", target.display()),
                    source: e.into_error(),
                })?;
                f.sync_all().map_err(io_ctx("cannot sync", &target))?;
            }
            None => {
                std::io::copy(&mut reader, &mut std::io::sink())
                    .map_err(|e| bad(format!("{name}: unreadable: {e}")))?;
            }
        }
        let (count, hash) = (reader.count, hex::encode(reader.hasher.finalize()));
        seen.insert(name, (count, hash));
    }
    // The tar reader stops at the end-of-archive blocks; read the gzip stream to its end
    // so its CRC and length are checked too. Without this a changed bit in tar padding
    // would go unnoticed: harmless to the data, but the archive would not be the one made.
    let mut gz = tar.into_inner();
    std::io::copy(&mut gz, &mut std::io::sink())
        .map_err(|e| bad(format!("corrupt compressed stream: {e}")))?;
    let rest = gz.into_inner();
    let manifest = manifest.ok_or_else(|| bad("no manifest (truncated?)".into()))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "archive format {} is not known to this crm",
            manifest.format
        )));
    }
    if !manifest.files.iter().any(|f| f.path == DB_ENTRY) {
        return Err(bad("the manifest lists no database".into()));
    }
    for f in &manifest.files {
        match seen.remove(&f.path) {
            None => return Err(bad(format!("{} is missing", f.path))),
            Some((size, hash)) if size != f.size || hash != f.sha256 => {
                return Err(bad(format!("{}: checksum does not match", f.path)))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(bad(format!("{extra} is not in the manifest")));
    }
    Ok((manifest, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive like a real one: a database-sized file, half incompressible (so the
    /// compressor emits stored blocks too), and attachments.
    fn sample(dir: &Path) -> PathBuf {
        use rand::{Rng, SeedableRng};
        let mut r = rand::rngs::StdRng::seed_from_u64(7);
        let mut db = Vec::new();
        for i in 0..12_000u32 {
            db.extend_from_slice(format!("row {i} ekran almashtirildi; ").as_bytes());
        }
        db.extend((0..60_000).map(|_| r.gen::<u8>()));
        let db_path = dir.join("db");
        std::fs::write(&db_path, &db).unwrap();
        let att = dir.join("att");
        std::fs::create_dir_all(att.join("2026")).unwrap();
        std::fs::write(
            att.join("2026/a.jpg"),
            (0..5000).map(|_| r.gen::<u8>()).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(att.join("note.txt"), b"hello").unwrap();
        let out = dir.join("a.tar.gz");
        write(&out, &db_path, &att, 6).unwrap();
        out
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = sample(dir.path());
        verify(&good, None).expect("the archive as written verifies");
        let bytes = std::fs::read(&good).unwrap();
        let len = bytes.len();
        // Every byte of the gzip header and seal, the last 64 bytes (end of the deflate
        // stream, CRC, length), and 400 positions spread over the rest; a different bit
        // each time. Bounded: about 530 verifications of a ~0.1 MB archive.
        let mut positions: Vec<usize> = (0..64).chain(len - 64..len).collect();
        positions.extend((0..400).map(|k| 64 + k * (len - 128) / 400));
        let altered = dir.path().join("altered.tar.gz");
        let mut accepted = Vec::new();
        for (k, &at) in positions.iter().enumerate() {
            let mut b = bytes.clone();
            b[at] ^= 1 << (k % 8);
            std::fs::write(&altered, &b).unwrap();
            if verify(&altered, None).is_ok() {
                accepted.push(at);
            }
        }
        assert!(
            accepted.is_empty(),
            "altered archives accepted at {accepted:?} of {len}"
        );
        // Bytes appended after the gzip member, and a truncated copy, too.
        let mut b = bytes.clone();
        b.extend_from_slice(b"\0\0\0\0");
        std::fs::write(&altered, &b).unwrap();
        assert!(verify(&altered, None).is_err(), "trailing bytes accepted");
        std::fs::write(&altered, &bytes[..len - 1]).unwrap();
        assert!(verify(&altered, None).is_err(), "a truncated copy accepted");
    }

    #[test]
    fn names_outside_the_layout_are_refused() {
        assert!(allowed_name("crm.db"));
        assert!(allowed_name("attachments/2026/a.jpg"));
        assert!(!allowed_name("attachments/../crm.db"));
        assert!(!allowed_name("/etc/passwd"));
        assert!(!allowed_name("other.txt"));
    }
}
