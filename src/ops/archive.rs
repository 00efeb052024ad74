//! The backup archive format: one `.tar.zst` holding `crm.db`, `attachments/...`, the call
//! recordings `recordings/...` (unless the shop leaves them out) and, last,
//! `manifest.json` with the crm version, schema version, time and a sha256 for every file.
//! The manifest goes last so every checksum is computed while the file is written (one
//! pass over the data); readers hash every entry and compare at the end.
//!
//! The manifest only covers what the archive decompresses to, and the compressor's own
//! checksum only covers the decompressed stream: bits a decoder ignores could change and the
//! archive still read back identically. So the whole file is sealed too: it starts with a
//! zstd skippable frame (RFC 8878 §3.1.2) holding `CRMS` and the sha256 of every byte of the
//! file, those 32 bytes counted as zeros. Any altered byte anywhere is refused, and `zstd`
//! and `tar --zstd` still read the archive as usual (they skip that frame).
//!
//! Backups made before crm 0.2 are `.tar.gz` with the seal in the gzip header's extra field
//! (`CR`, RFC 1952 FEXTRA); they are still read and restored, never written.

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
pub const RECORDINGS: &str = "recordings";
/// The manifest's layout (the same in both containers).
const FORMAT: u32 = 1;
const SEAL_LEN: usize = 32;

/// The sealing frame in front of a `.tar.zst`: skippable-frame magic `0x184D2A5E`, frame
/// length 36, `CRMS`, then the seal.
const ZSTD_SEAL_HEAD: [u8; 12] = [0x5E, 0x2A, 0x4D, 0x18, 36, 0, 0, 0, b'C', b'R', b'M', b'S'];
/// The gzip header of a `.tar.gz` up to its seal: magic, deflate, FLG = FEXTRA, MTIME 0,
/// XFL, OS; then XLEN 36 and the subfield `CR` of 32 bytes.
const GZIP_SEAL_ID: [u8; 4] = [b'C', b'R', 32, 0];
const GZIP_SEAL_AT: usize = 16;

/// zstd level 1 on two worker threads: a database compresses at several hundred MB/s to
/// about the size gzip -6 gives. Higher levels cost far more time than the disk space they
/// save on a backup disk.
const ZSTD_LEVEL: i32 = 1;
const ZSTD_WORKERS: u32 = 2;

/// How the archive's file is compressed and where its seal sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Zstd,
    /// Backups of crm 0.1: read, never written.
    Gzip,
}

impl Container {
    fn seal_at(self) -> usize {
        match self {
            Container::Zstd => ZSTD_SEAL_HEAD.len(),
            Container::Gzip => GZIP_SEAL_AT,
        }
    }
}

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

/// Counts what passes through it and, with a hasher, hashes it.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R, hash: bool) -> Self {
        HashingReader {
            inner,
            hasher: hash.then(Sha256::new),
            count: 0,
        }
    }

    /// The hex sha256 of what passed (empty when not hashing).
    fn digest(self) -> String {
        self.hasher
            .map(|h| hex::encode(h.finalize()))
            .unwrap_or_default()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads an archive file, hashing every byte with the seal counted as zeros, and keeps the
/// seal it saw.
struct SealReader<R> {
    inner: R,
    hasher: Sha256,
    seal_at: usize,
    pos: usize,
    seal: [u8; SEAL_LEN],
    count: u64,
}

impl<R: Read> Read for SealReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let end = self.seal_at + SEAL_LEN;
        if self.pos < end {
            let mut chunk = buf[..n].to_vec();
            for (i, b) in chunk.iter_mut().enumerate().take(end - self.pos) {
                let at = self.pos + i;
                if at >= self.seal_at {
                    self.seal[at - self.seal_at] = *b;
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

/// The database entry of an archive: `size` bytes read from `content`.
pub struct DbContent<R> {
    pub size: u64,
    pub content: R,
}

/// Writes an archive at `dest` from a database file and an attachments folder (which may
/// be absent). See [`write`].
pub fn write_files(
    dest: &Path,
    db_file: &Path,
    attachments: &Path,
    schema_version: usize,
) -> OpsResult<Manifest> {
    let f = File::open(db_file).map_err(io_ctx("cannot read", db_file))?;
    let size = f.metadata().map_err(io_ctx("cannot read", db_file))?.len();
    let db = DbContent {
        size,
        content: BufReader::with_capacity(1 << 20, f),
    };
    write(dest, db, &[(ATTACHMENTS, attachments)], schema_version)
}

/// Writes an archive at `dest` from the database's bytes and folders (each under its entry
/// name: `attachments`, `recordings`; a folder may be absent), in one pass: every byte is hashed for the manifest as it goes in and for
/// the seal as it comes out of the compressor. Returns the manifest it wrote. `dest` is
/// fsynced before returning; [`verify`] reads it back.
pub fn write<R: Read>(
    dest: &Path,
    db: DbContent<R>,
    dirs: &[(&str, &Path)],
    schema_version: usize,
) -> OpsResult<Manifest> {
    let file = create_private(dest)?;
    let mut out = BufWriter::with_capacity(1 << 20, FileWriter::spawn(file));
    let failed = |source| OpsError::Io {
        what: format!("cannot write {}", dest.display()),
        source,
    };
    out.write_all(&ZSTD_SEAL_HEAD)
        .and_then(|_| out.write_all(&[0; SEAL_LEN]))
        .map_err(failed)?;
    let mut zst = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(failed)?;
    zst.include_checksum(true).map_err(failed)?;
    zst.multithread(ZSTD_WORKERS).map_err(failed)?;
    zst.set_pledged_src_size(None).map_err(failed)?;
    let mut tar = tar::Builder::new(zst);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut files = vec![append_entry(&mut tar, DB_ENTRY, db.size, db.content, dest)?];
    for (entry, dir) in dirs.iter().filter(|(_, d)| d.is_dir()) {
        let mut found = Vec::new();
        walk(dir, &mut found)?;
        found.sort();
        for f in found {
            let rel = f.strip_prefix(dir).expect("walked under the folder");
            let name = format!("{entry}/{}", rel.to_string_lossy());
            let file = File::open(&f).map_err(io_ctx("cannot read", &f))?;
            let size = file.metadata().map_err(io_ctx("cannot read", &f))?.len();
            files.push(append_entry(
                &mut tar,
                &name,
                size,
                BufReader::with_capacity(1 << 20, file),
                &f,
            )?);
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
        .map_err(failed)?;
    let zst = tar.into_inner().map_err(failed)?;
    let out = zst.finish().map_err(failed)?;
    let (mut file, seal) = out
        .into_inner()
        .map_err(|e| failed(e.into_error()))?
        .finish()
        .map_err(failed)?;
    file.seek(SeekFrom::Start(ZSTD_SEAL_HEAD.len() as u64))
        .and_then(|_| file.write_all(&seal))
        .map_err(failed)?;
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
/// file systems (ext4 data=ordered), so a backup that leaves hundreds of megabytes to the
/// page cache stalls the server's fsyncs. Flushing every few megabytes keeps that debt small.
const SYNC_EVERY: u64 = 16 << 20;

/// Writes the archive file on a thread of its own, so the compressor never waits for the
/// disk: it hashes every byte for the seal and flushes to the disk every [`SYNC_EVERY`]
/// bytes. A few chunks are in flight at most.
struct FileWriter {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<(File, Sha256)>>>,
}

impl FileWriter {
    fn spawn(mut file: File) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let thread = std::thread::spawn(move || {
            let (mut hasher, mut unsynced) = (Sha256::new(), 0u64);
            for chunk in rx {
                file.write_all(&chunk)?;
                hasher.update(&chunk);
                unsynced += chunk.len() as u64;
                if unsynced >= SYNC_EVERY {
                    file.sync_data()?;
                    unsynced = 0;
                }
            }
            Ok((file, hasher))
        });
        FileWriter {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Waits for every byte to be written; gives the file and the sha256 of its bytes.
    fn finish(mut self) -> std::io::Result<(File, [u8; SEAL_LEN])> {
        self.tx = None;
        let (file, hasher) = self.join()?;
        Ok((file, hasher.finalize().into()))
    }

    fn join(&mut self) -> std::io::Result<(File, Sha256)> {
        let stopped = || std::io::Error::other("the archive file writer stopped");
        self.thread
            .take()
            .ok_or_else(stopped)?
            .join()
            .map_err(|_| std::io::Error::other("the archive file writer panicked"))?
    }
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sent = self.tx.as_ref().map(|tx| tx.send(buf.to_vec()));
        if let Some(Ok(())) = sent {
            return Ok(buf.len());
        }
        // The thread stopped: its error is the one to report.
        self.tx = None;
        Err(match self.join() {
            Err(e) => e,
            Ok(_) => std::io::Error::other("the archive file writer stopped early"),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `size` bytes from `content` as entry `name`, hashing them. `from` names the
/// source in errors.
fn append_entry<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    content: R,
    from: &Path,
) -> OpsResult<FileEntry> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o640);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut reader = HashingReader::new(content, true);
    // The header promises `size` bytes; tar pads or errors when the source comes up short.
    tar.append_data(&mut header, name, (&mut reader).take(size))
        .map_err(io_ctx("cannot archive", from))?;
    if reader.count != size {
        return Err(OpsError::Io {
            what: format!("{} changed size while being archived", from.display()),
            source: std::io::Error::other("size changed"),
        });
    }
    Ok(FileEntry {
        path: name.to_string(),
        size,
        sha256: reader.digest(),
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

/// Only `crm.db`, `manifest.json` and plain relative paths under `attachments/` and
/// `recordings/`.
fn allowed_name(name: &str) -> bool {
    if name == DB_ENTRY || name == MANIFEST {
        return true;
    }
    let p = Path::new(name);
    (name.starts_with("attachments/") || name.starts_with("recordings/"))
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Reads the whole archive, hashing every entry, and checks it against its manifest and
/// every byte of the file against its seal. With `extract_to`, the files are also written
/// there (the directory must exist and be empty). Any mismatch, missing or extra file, or
/// a truncated stream is an error.
pub fn verify(archive: &Path, extract_to: Option<&Path>) -> OpsResult<Manifest> {
    read_sealed(archive, Entries::Hash { extract_to })
}

/// Reads back an archive [`write`] just made: every byte against the seal, the whole zstd
/// stream against its frame checksum (XXH64 of what went into the compressor), and the
/// entries' names and sizes and the manifest against `written`. The entries are not hashed
/// again: the frame checksum already shows they decompress to the bytes whose sha256 the
/// manifest holds, and that saves a second sha256 of the database per backup. A restore
/// uses [`verify`], which does hash them.
pub fn verify_as_written(archive: &Path, written: &Manifest) -> OpsResult<()> {
    let read = read_sealed(archive, Entries::SizesOnly)?;
    if read != *written {
        return Err(OpsError::BadArchive {
            path: archive.to_path_buf(),
            reason: "it does not read back as written".into(),
        });
    }
    Ok(())
}

/// What [`read_contents`] does with each entry's bytes.
#[derive(Clone, Copy)]
enum Entries<'a> {
    /// Hash each against the manifest, and write them below the folder when given.
    Hash { extract_to: Option<&'a Path> },
    /// Count them only.
    SizesOnly,
}

fn read_sealed(archive: &Path, entries: Entries) -> OpsResult<Manifest> {
    let bad = |reason: String| OpsError::BadArchive {
        path: archive.to_path_buf(),
        reason,
    };
    let (container, sealed_reader, file_len) = open_sealed(archive, &bad)?;
    let input = BufReader::with_capacity(1 << 20, sealed_reader);
    let corrupt = |e: std::io::Error| bad(format!("corrupt compressed stream: {e}"));
    let (manifest, mut rest) = match container {
        Container::Zstd => {
            let mut z = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            let manifest = read_contents(&mut z, entries, &bad)?;
            // To the end of the file: the frame checksum is checked there, and anything
            // after the frame is refused by the decoder.
            std::io::copy(&mut z, &mut std::io::sink()).map_err(corrupt)?;
            (manifest, z.finish())
        }
        Container::Gzip => {
            let mut gz = flate2::bufread::GzDecoder::new(input);
            let manifest = read_contents(&mut gz, entries, &bad)?;
            // To the end of the member, so its CRC and length are checked too.
            std::io::copy(&mut gz, &mut std::io::sink()).map_err(corrupt)?;
            (manifest, gz.into_inner())
        }
    };
    // Bytes after the compressed stream are never decompressed: read them into the seal.
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(io_ctx("cannot read", archive))?;
    seal_matches(rest.into_inner(), file_len, &bad)?;
    Ok(manifest)
}

fn open_sealed(
    archive: &Path,
    bad: &dyn Fn(String) -> OpsError,
) -> OpsResult<(Container, SealReader<File>, u64)> {
    let mut file = File::open(archive).map_err(io_ctx("cannot open", archive))?;
    let file_len = file
        .metadata()
        .map_err(io_ctx("cannot read", archive))?
        .len();
    let mut head = [0u8; GZIP_SEAL_AT];
    let container = if file.read_exact(&mut head).is_err() {
        None
    } else if head[..ZSTD_SEAL_HEAD.len()] == ZSTD_SEAL_HEAD {
        Some(Container::Zstd)
    } else if head[..2] == [0x1f, 0x8b] && head[3] & 0x04 != 0 && head[12..16] == GZIP_SEAL_ID {
        Some(Container::Gzip)
    } else {
        None
    };
    let Some(container) = container else {
        return Err(bad(
            "it is not a sealed crm backup (no checksum at its start)".into(),
        ));
    };
    file.seek(SeekFrom::Start(0))
        .map_err(io_ctx("cannot read", archive))?;
    Ok((
        container,
        SealReader {
            inner: file,
            hasher: Sha256::new(),
            seal_at: container.seal_at(),
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

/// Reads the tar stream from `decompressed`, handling every entry as `entries` says, and
/// checks the entries against the manifest.
fn read_contents<R: Read>(
    decompressed: R,
    entries: Entries,
    bad: &dyn Fn(String) -> OpsError,
) -> OpsResult<Manifest> {
    let (hash, extract_to) = match entries {
        Entries::Hash { extract_to } => (true, extract_to),
        Entries::SizesOnly => (false, None),
    };
    let mut tar = tar::Archive::new(decompressed);
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
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
        let mut reader = HashingReader::new(&mut entry, hash);
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
        seen.insert(name, (reader.count, reader.digest()));
    }
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
            Some((size, digest)) if size != f.size || (hash && digest != f.sha256) => {
                return Err(bad(format!("{}: checksum does not match", f.path)))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(bad(format!("{extra} is not in the manifest")));
    }
    Ok(manifest)
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
        let out = dir.join("a.tar.zst");
        let written = write_files(&out, &db_path, &att, 6).unwrap();
        verify_as_written(&out, &written).expect("reads back as written");
        let mut other = written.clone();
        other.files[1].size += 1;
        assert!(verify_as_written(&out, &other).is_err());
        out
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = sample(dir.path());
        let written = verify(&good, None).expect("the archive as written verifies");
        let bytes = std::fs::read(&good).unwrap();
        let len = bytes.len();
        // Every byte of the sealing frame and the zstd frame header, the last 64 bytes (the
        // last blocks and the frame checksum), and 400 positions spread over the rest; a
        // different bit each time. Bounded: about 530 verifications of a ~0.1 MB archive.
        let mut positions: Vec<usize> = (0..64).chain(len - 64..len).collect();
        positions.extend((0..400).map(|k| 64 + k * (len - 128) / 400));
        let altered = dir.path().join("altered.tar.zst");
        let mut accepted = Vec::new();
        for (k, &at) in positions.iter().enumerate() {
            let mut b = bytes.clone();
            b[at] ^= 1 << (k % 8);
            std::fs::write(&altered, &b).unwrap();
            if verify(&altered, None).is_ok() || verify_as_written(&altered, &written).is_ok() {
                accepted.push(at);
            }
        }
        assert!(
            accepted.is_empty(),
            "altered archives accepted at {accepted:?} of {len}"
        );
        // Bytes appended after the zstd frame, and a truncated copy, too.
        let mut b = bytes.clone();
        b.extend_from_slice(b"\0\0\0\0");
        std::fs::write(&altered, &b).unwrap();
        assert!(verify(&altered, None).is_err(), "trailing bytes accepted");
        std::fs::write(&altered, &bytes[..len - 1]).unwrap();
        assert!(verify(&altered, None).is_err(), "a truncated copy accepted");
    }

    #[test]
    fn the_archive_is_plain_tar_zst_for_other_tools() {
        let dir = tempfile::tempdir().unwrap();
        let good = sample(dir.path());
        let bytes = std::fs::read(&good).unwrap();
        let tar_bytes = zstd::stream::decode_all(bytes.as_slice()).expect("plain zstd");
        let mut names = Vec::new();
        for e in tar::Archive::new(tar_bytes.as_slice()).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            names,
            [
                "crm.db",
                "attachments/2026/a.jpg",
                "attachments/note.txt",
                MANIFEST
            ]
        );
    }

    /// `tests/fixtures/format1-backup.tar.gz` was written by crm 0.1 (`crm backup`): such
    /// backups on the owners' disks must still verify and be refused when altered.
    #[test]
    fn backups_of_crm_0_1_in_gzip_still_verify() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1-backup.tar.gz");
        let dir = tempfile::tempdir().unwrap();
        let m = verify(&fixture, Some(dir.path())).expect("the crm 0.1 backup verifies");
        assert_eq!(m.schema_version, 11);
        assert_eq!(
            std::fs::read(dir.path().join("attachments/2026/screen.jpg")).unwrap(),
            b"photo"
        );
        let mut bytes = std::fs::read(&fixture).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 4;
        let altered = dir.path().join("altered.tar.gz");
        std::fs::write(&altered, &bytes).unwrap();
        assert!(verify(&altered, None).is_err());
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
