//! `crm restore --from-remote TARGET [--at TIME] --identity KEYFILE`: rebuilds the
//! database onto a fresh data directory from a target's replication objects: the newest
//! snapshot at or before the moment, then every segment of its generation up to the
//! moment, each decrypted with the owner's key and checked (authenticated encryption,
//! header against name, hash chain) before a byte of it is used. Also fetches a sealed
//! backup archive (`--backup NAME`) for the ordinary `crm restore`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::store::Store;
use super::{open, open_ahead, parse_repl_key};
use crate::config::Config;
use crate::ops::backup::ChannelReader;
use crate::ops::lock::DataDirLock;
use crate::ops::{io_ctx, OpsError, OpsResult};

pub use crate::db::snapshot::CheckDepth;

#[derive(Debug, Clone)]
pub struct RemoteRestoreDone {
    pub generation: u64,
    pub snapshot_seq: u64,
    pub segments: u64,
    /// Unix ms of the last segment (or the snapshot) applied.
    pub state_at_ms: i64,
    pub bytes: u64,
    pub seconds: f64,
    /// Of which the snapshot streamed in (download, decryption, decompression, writes),
    /// the final flush of the file to disk, and the check of the rebuilt file.
    pub snapshot_seconds: f64,
    pub sync_seconds: f64,
    pub check_seconds: f64,
    pub check: CheckDepth,
}

fn target<'a>(cfg: &'a Config, name: &str) -> OpsResult<&'a crate::config::RemoteTarget> {
    cfg.backup
        .remote
        .targets
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            OpsError::Refused(format!(
                "no target {name:?} in [[backup.remote.targets]] of the config"
            ))
        })
}

fn connect(cfg: &Config, name: &str) -> OpsResult<Store> {
    Store::connect(target(cfg, name)?)
        .map_err(|e| OpsError::Refused(format!("target {name}: {e}; nothing was changed")))
}

/// Chunks of a download handed from the network thread to the reader. `hung_up` says
/// the download stopped because the reader did (so the reader's reason is the one).
struct ChannelWriter<'a> {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Chunks the reader is done with, to fill again.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    hung_up: &'a std::sync::atomic::AtomicBool,
}

impl Write for ChannelWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut chunk = self.spare.try_recv().unwrap_or_default();
        chunk.clear();
        chunk.extend_from_slice(buf);
        if self.tx.send(chunk).is_err() {
            self.hung_up
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(std::io::Error::other("the reader stopped"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams `key` through `consume` while it downloads: the network on one thread, the
/// decryption, decompression and writing on this one (no copy of the object on disk).
/// The download's own failure wins over what the consumer saw of the cut stream, unless
/// the download stopped because the consumer gave up first (a wrong key, a bad header).
fn stream<T>(
    store: &mut Store,
    key: &str,
    consume: impl FnOnce(ChannelReader) -> OpsResult<T>,
) -> OpsResult<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
    let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(66);
    let hung_up = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let hung_up = &hung_up;
        let net = s.spawn(move || {
            let mut w =
                std::io::BufWriter::with_capacity(1 << 20, ChannelWriter { tx, spare, hung_up });
            store.get_to(key, &mut w)?;
            w.flush().map_err(|e| e.to_string())
        });
        // The consumer drops the reader when it is done (or gives up), which a download
        // still running then notices.
        let consumed = consume(ChannelReader::recycling(rx, back));
        let downloaded = net
            .join()
            .unwrap_or_else(|_| Err("the download thread panicked".into()));
        match (downloaded, consumed) {
            (Err(_), Err(e)) if hung_up.load(std::sync::atomic::Ordering::Relaxed) => Err(e),
            (Err(e), Err(_)) | (Err(e), Ok(_)) => Err(OpsError::Refused(format!(
                "download {key}: {e}; nothing was changed"
            ))),
            (Ok(()), r) => r,
        }
    })
}

/// How much of the snapshot is written before the writer flushes it to disk. Without
/// flushing as it goes, the kernel keeps the whole file dirty in memory (far under its
/// writeback thresholds on a box with a few GB of RAM) and writes all of it in the final
/// sync, after the download: the disk and the network would take turns instead of working
/// at once.
const SYNC_EVERY: usize = 64 << 20;

/// Why a [`write_behind`] copy stopped.
enum CopyError {
    /// Reading (downloading, decrypting, decompressing) failed: the object is bad.
    Read(std::io::Error),
    /// Writing the new file failed.
    Write(std::io::Error),
}

/// Copies `from` into `to` with the writing on a thread of its own, which has every
/// [`SYNC_EVERY`] bytes flushed (see there), while this thread decompresses. The flushes
/// run on a third thread, so the writer never waits for the disk: a flush asked for while
/// one is under way is folded into the next one, which covers all written by then.
fn write_behind(from: &mut dyn Read, to: &mut std::fs::File) -> Result<u64, CopyError> {
    const CHUNK: usize = 1 << 20;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    // Written buffers go back to be filled again: no fresh megabyte to fault in and zero
    // for every megabyte of the database.
    let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(18);
    let flushing = to.try_clone().map_err(CopyError::Write)?;
    let (kick, kicks) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::scope(|s| {
        let flusher = s.spawn(move || -> std::io::Result<()> {
            for () in kicks {
                flushing.sync_data()?;
            }
            Ok(())
        });
        let writer = s.spawn(move || -> std::io::Result<()> {
            let mut unflushed = 0usize;
            for buf in rx {
                to.write_all(&buf)?;
                unflushed += buf.len();
                let _ = back.try_send(buf);
                if unflushed >= SYNC_EVERY {
                    // Full: a flush is pending and will cover this. Gone: the flusher
                    // failed, and says why when joined.
                    let _ = kick.try_send(());
                    unflushed = 0;
                }
            }
            Ok(())
        });
        let read = (|| {
            let mut n = 0u64;
            loop {
                let mut buf = spare.try_recv().unwrap_or_default();
                buf.resize(CHUNK, 0);
                let k = super::read_up_to(from, &mut buf)?;
                if k == 0 {
                    return Ok(n);
                }
                buf.truncate(k);
                n += k as u64;
                if tx.send(buf).is_err() {
                    // The writer stopped: its error is the one to report.
                    return Ok(n);
                }
            }
        })();
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")))
            .and(
                flusher
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the flush thread panicked"))),
            );
        match (read, written) {
            (_, Err(e)) => Err(CopyError::Write(e)),
            (Err(e), Ok(())) => Err(CopyError::Read(e)),
            (Ok(n), Ok(())) => Ok(n),
        }
    })
}

/// Downloads `key` into a temporary file (objects can be large).
fn fetch(store: &mut Store, key: &str, dir: &Path) -> OpsResult<std::fs::File> {
    let mut f = tempfile::tempfile_in(dir).map_err(io_ctx("cannot create a file in", dir))?;
    store
        .get_to(key, &mut f)
        .map_err(|e| OpsError::Refused(format!("download {key}: {e}; nothing was changed")))?;
    f.seek(SeekFrom::Start(0))
        .map_err(io_ctx("cannot read", dir))?;
    Ok(f)
}

/// Rebuilds the database at the newest state, or the state at `at_ms`, into the (empty)
/// data directory, and checks the rebuilt file to `check` depth. Every byte is already
/// authenticated (age) and chained (SHA-256) on the way in, so what the check can still
/// find is a fault of the replicator itself: a page lost, torn or misplaced breaks the
/// b-tree structure the quick check walks; a page left at an older version shows only
/// as an index that no longer matches its rows, which the full check compares.
pub fn restore_from_remote(
    cfg: &Config,
    target_name: &str,
    identity: &Path,
    at_ms: Option<i64>,
    check: CheckDepth,
) -> OpsResult<RemoteRestoreDone> {
    let started = std::time::Instant::now();
    let identities = super::read_identity(identity)?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(io_ctx("cannot create", &cfg.data_dir))?;
    let _lock = DataDirLock::acquire(&cfg.data_dir)?;
    if cfg.db_path().exists() {
        return Err(OpsError::Refused(format!(
            "{} already has a database: restore from a remote target goes onto an empty data directory (move the old one away first). Nothing was changed",
            cfg.data_dir.display()
        )));
    }
    let mut store = connect(cfg, target_name)?;
    let keys = store
        .list("repl/")
        .map_err(|e| OpsError::Refused(format!("target {target_name}: {e}")))?;
    let objects: Vec<_> = keys
        .iter()
        .filter_map(|k| parse_repl_key(k).map(|p| (k.clone(), p)))
        .collect();
    let at = at_ms.unwrap_or(i64::MAX);
    let snap = objects
        .iter()
        .filter(|(_, (_, _, time, kind))| kind == "snap" && *time <= at)
        .max_by_key(|(_, (gen, seq, time, _))| (*time, *gen, *seq))
        .cloned()
        .ok_or_else(|| {
            OpsError::Refused(format!(
                "target {target_name} has no snapshot{}; nothing was changed",
                at_ms
                    .map(|_| " from before that moment")
                    .unwrap_or_default()
            ))
        })?;
    let (snap_key, (gen, snap_seq, snap_time, _)) = snap;
    let mut segments: Vec<_> = objects
        .iter()
        .filter(|(_, (g, seq, time, kind))| {
            kind == "seg" && *g == gen && *seq > snap_seq && *time <= at
        })
        .cloned()
        .collect();
    segments.sort_by_key(|(_, (_, seq, _, _))| *seq);

    let tmp = cfg.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(io_ctx("cannot create", &tmp))?;
    let staging = tempfile::Builder::new()
        .prefix("remote-restore-")
        .tempdir_in(&tmp)
        .map_err(io_ctx("cannot create a folder in", &tmp))?;
    let staged = staging.path().join("crm.db");
    let mut db = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&staged)
        .map_err(io_ctx("cannot create", &staged))?;

    // The snapshot, streamed straight into the new file.
    let (meta, digest, copied) = stream(&mut store, &snap_key, |sealed| {
        let mut opened = open_ahead(&identities, &snap_key, sealed)?;
        let meta = opened.meta.clone();
        if meta.kind != "snap" || meta.generation != gen || meta.seq != snap_seq {
            return Err(OpsError::Refused(format!(
                "remote object {snap_key} is damaged or was tampered with: its header does not match"
            )));
        }
        let copied = write_behind(opened.body(), &mut db).map_err(|e| match e {
            CopyError::Read(e) => OpsError::Refused(format!(
                "remote object {snap_key} is damaged or was tampered with, refusing it: {e}"
            )),
            CopyError::Write(e) => io_ctx("cannot write", &staged)(e),
        })?;
        let digest = opened.finish(&snap_key)?;
        Ok((meta, digest, copied))
    })?;
    let snapshot_seconds = started.elapsed().as_secs_f64();
    let page_size = meta.page_size as u64;
    if copied != meta.db_pages as u64 * page_size {
        return Err(OpsError::Refused(format!(
            "remote object {snap_key} is damaged: {copied} bytes where {} pages were announced",
            meta.db_pages
        )));
    }
    let mut chain = if meta.prev.is_empty() {
        digest
    } else {
        meta.prev
    };
    let mut state_at = snap_time;
    let mut pages = meta.db_pages;

    // The segments after it, each continuing the chain.
    let mut applied = 0u64;
    for (expected, (key, (_, seq, time, _))) in (snap_seq + 1..).zip(segments.iter()) {
        if *seq != expected {
            return Err(OpsError::Refused(format!(
                "segment {expected} of generation {gen:016x} is missing on target {target_name} (next found: {seq}); nothing was changed. Restore to an earlier moment with --at"
            )));
        }
        let sealed = fetch(&mut store, key, staging.path())?;
        let mut opened = open(&identities, key, sealed)?;
        let meta = opened.meta.clone();
        if meta.prev != chain {
            return Err(OpsError::Refused(format!(
                "remote object {key} does not follow the one before it (hash chain broken): refused; nothing was changed"
            )));
        }
        if meta.page_size as u64 != page_size {
            return Err(OpsError::Refused(format!(
                "remote object {key}: the page size changed"
            )));
        }
        let body = opened.body();
        let mut no = [0u8; 4];
        let mut page = vec![0u8; page_size as usize];
        loop {
            match body.read_exact(&mut no) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => {
                    return Err(OpsError::Refused(format!(
                        "remote object {key} is damaged or was tampered with, refusing it: {e}"
                    )))
                }
            }
            body.read_exact(&mut page).map_err(|e| {
                OpsError::Refused(format!(
                    "remote object {key} is damaged or was tampered with, refusing it: {e}"
                ))
            })?;
            let pgno = u32::from_be_bytes(no) as u64;
            db.seek(SeekFrom::Start((pgno - 1) * page_size))
                .and_then(|_| db.write_all(&page))
                .map_err(io_ctx("cannot write", &staged))?;
        }
        chain = opened.finish(key)?;
        pages = meta.db_pages;
        db.set_len(pages as u64 * page_size)
            .map_err(io_ctx("cannot write", &staged))?;
        state_at = *time;
        applied += 1;
    }
    db.set_len(pages as u64 * page_size)
        .map_err(io_ctx("cannot write", &staged))?;
    // A self-contained file (rollback journal); the server switches it to WAL again.
    let syncing = std::time::Instant::now();
    db.seek(SeekFrom::Start(18))
        .and_then(|_| db.write_all(&[1, 1]))
        .and_then(|_| db.sync_all())
        .map_err(io_ctx("cannot write", &staged))?;
    drop(db);
    let sync_seconds = syncing.elapsed().as_secs_f64();
    let checking = std::time::Instant::now();
    let checked = crate::db::snapshot::check_file_to(&staged, check)?;
    let check_seconds = checking.elapsed().as_secs_f64();
    if !checked.intact {
        return Err(OpsError::Refused(format!(
            "the rebuilt database fails its integrity check ({}); nothing was changed",
            checked.problems.join("; ")
        )));
    }
    let bytes = std::fs::metadata(&staged).map(|m| m.len()).unwrap_or(0);
    let dest = cfg.db_path();
    std::fs::rename(&staged, &dest).map_err(io_ctx("cannot move into place", &dest))?;
    std::fs::create_dir_all(cfg.attachments_dir())
        .map_err(io_ctx("cannot create", &cfg.attachments_dir()))?;
    crate::ops::match_owner(&dest, &cfg.data_dir);
    crate::ops::sync_dir(&cfg.data_dir)?;
    crate::db::migrate_file(&dest)?;
    Ok(RemoteRestoreDone {
        generation: gen,
        snapshot_seq: snap_seq,
        segments: applied,
        state_at_ms: state_at,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        snapshot_seconds,
        sync_seconds,
        check_seconds,
        check,
    })
}

/// Fetches and decrypts the sealed backup `name` (or the newest) from a target into
/// `dir`, for `ops::restore::restore`. Returns the archive's path.
pub fn fetch_backup(
    cfg: &Config,
    target_name: &str,
    identity: &Path,
    name: Option<&str>,
    dir: &Path,
) -> OpsResult<PathBuf> {
    let identities = super::read_identity(identity)?;
    let mut store = connect(cfg, target_name)?;
    let keys = store
        .list("backups/")
        .map_err(|e| OpsError::Refused(format!("target {target_name}: {e}")))?;
    let key = match name {
        Some(n) => format!("backups/{n}.age"),
        None => keys
            .last()
            .cloned()
            .ok_or_else(|| OpsError::Refused(format!("target {target_name} holds no backup")))?,
    };
    if !keys.contains(&key) {
        return Err(OpsError::Refused(format!(
            "target {target_name} has no {key}"
        )));
    }
    let sealed = fetch(&mut store, &key, dir)?;
    let mut opened = open(&identities, &key, sealed)?;
    let n = opened.meta.name.clone();
    if n.is_empty() || n.contains('/') || n.contains("..") {
        return Err(OpsError::Refused(format!(
            "remote object {key}: a bad name in it"
        )));
    }
    let out = dir.join(n);
    let mut f = std::fs::File::create(&out).map_err(io_ctx("cannot create", &out))?;
    std::io::copy(opened.body(), &mut f).map_err(|e| {
        OpsError::Refused(format!(
            "remote object {key} is damaged or was tampered with, refusing it: {e}"
        ))
    })?;
    opened.finish(&key)?;
    f.sync_all().map_err(io_ctx("cannot write", &out))?;
    Ok(out)
}
