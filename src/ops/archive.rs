//! The backup archive format: one `.tar.gz` holding `crm.db`, `attachments/...` and, last,
//! `manifest.json` with the crm version, schema version, time and a sha256 for every file.
//! The manifest goes last so every checksum is computed while the file is written (one
//! pass over the data); readers hash every entry and compare at the end.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io_ctx, OpsError, OpsResult};

pub const MANIFEST: &str = "manifest.json";
pub const DB_ENTRY: &str = "crm.db";
pub const ATTACHMENTS: &str = "attachments";
const FORMAT: u32 = 1;

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

/// Writes an archive at `dest` from a database copy and an attachments folder (which may
/// be absent). Returns the manifest it wrote. `dest` is fsynced before returning.
pub fn write(
    dest: &Path,
    db_copy: &Path,
    attachments: &Path,
    schema_version: usize,
) -> OpsResult<Manifest> {
    let file = File::create(dest).map_err(io_ctx("cannot create", dest))?;
    // Fast compression: the database dominates and the goal is to be close to `cp` speed;
    // level 1 still shrinks a typical CRM database to about a third.
    let gz = GzEncoder::new(
        BufWriter::with_capacity(1 << 20, file),
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
    let buf = gz.finish().map_err(io_ctx("cannot write", dest))?;
    let file = buf.into_inner().map_err(|e| OpsError::Io {
        what: format!("cannot write {}", dest.display()),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_ctx("cannot sync", dest))?;
    Ok(manifest)
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
    let file = File::open(archive).map_err(io_ctx("cannot open", archive))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(1 << 20, file)));
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
                let mut out = BufWriter::with_capacity(
                    1 << 20,
                    File::create(&target).map_err(io_ctx("cannot create", &target))?,
                );
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
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink())
        .map_err(|e| bad(format!("corrupt compressed stream: {e}")))?;
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
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_layout_are_refused() {
        assert!(allowed_name("crm.db"));
        assert!(allowed_name("attachments/2026/a.jpg"));
        assert!(!allowed_name("attachments/../crm.db"));
        assert!(!allowed_name("/etc/passwd"));
        assert!(!allowed_name("other.txt"));
    }
}
