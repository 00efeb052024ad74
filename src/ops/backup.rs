//! `crm backup`, the backups page and the scheduled job: an online, consistent snapshot of
//! the database plus the attachments, in one verified archive.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::archive::{self, DbContent, Manifest};
use super::{io_ctx, sync_dir, OpsError, OpsResult};
use crate::config::Config;
use crate::db::snapshot::{LiveSnapshot, StreamError};

pub const PREFIX: &str = "crm-backup-";
pub const SUFFIX: &str = ".tar.zst";
/// What backups of crm 0.1 are called: still listed, restored and pruned.
pub const OLD_SUFFIX: &str = ".tar.gz";

/// A finished, verified backup.
#[derive(Debug, Clone)]
pub struct BackupDone {
    pub path: PathBuf,
    pub size: u64,
    pub manifest: Manifest,
    pub seconds: f64,
    /// Where the time went: (phase, seconds), in order.
    pub phases: Vec<(&'static str, f64)>,
}

/// A backup archive found on disk.
#[derive(Debug, Clone)]
pub struct BackupFile {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Unix time it was finished (file mtime).
    pub finished_at: i64,
}

/// Takes a backup while the server may be running and writing. `out` is a file path or an
/// existing directory; default: the configured backup folder.
///
/// Two read transactions on the same committed state give the snapshot: its pages stream
/// from one thread straight into the archive (no temporary copy) while the other runs
/// `PRAGMA integrity_check` on it; then the written archive is read back against its
/// manifest and seal. The archive only gets its final name after both, so a file with a
/// final name is a good backup.
pub fn create(cfg: &Config, out: Option<&Path>) -> OpsResult<BackupDone> {
    let started = Instant::now();
    let db_path = cfg.db_path();
    if !db_path.is_file() {
        return Err(OpsError::Refused(format!(
            "there is no database at {} (wrong --data-dir?); nothing to back up",
            db_path.display()
        )));
    }
    let dest = match out {
        Some(p) if p.is_dir() => unique_name(p),
        Some(p) => p.to_path_buf(),
        None => {
            let dir = cfg.backup_target_dir();
            std::fs::create_dir_all(&dir).map_err(io_ctx("cannot create", &dir))?;
            unique_name(&dir)
        }
    };
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let partial = {
        let mut s = dest.clone().into_os_string();
        s.push(".partial");
        PathBuf::from(s)
    };
    let mut phases = Vec::new();
    let mut lap = Instant::now();
    let mut phase = |name: &'static str| {
        phases.push((name, lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let result = (|| {
        let (snapshot, checker) = LiveSnapshot::begin(&db_path)?;
        let (size, schema_version) = (snapshot.size(), snapshot.schema_version());
        let check = std::thread::spawn(move || checker.run());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        // Ok(false): the stream stopped because the archive writer did (its error says why).
        let pages = std::thread::spawn(move || -> OpsResult<bool> {
            let handed = |chunk| {
                tx.send(chunk)
                    .map_err(|_| std::io::Error::other("the archive writer stopped"))
            };
            match snapshot.stream(handed) {
                Ok(()) => Ok(true),
                Err(StreamError::Sink(_)) => Ok(false),
                Err(StreamError::Db(e)) => Err(e.into()),
            }
        });
        let db = DbContent {
            size,
            content: ChannelReader::new(rx),
        };
        let recordings = cfg.recordings_dir();
        let mut dirs = vec![(archive::ATTACHMENTS, cfg.attachments_dir())];
        if recordings_in_backups(&db_path)? {
            dirs.push((archive::RECORDINGS, recordings));
        }
        let dirs: Vec<(&str, &Path)> = dirs.iter().map(|(n, d)| (*n, d.as_path())).collect();
        let written = archive::write(&partial, db, &dirs, schema_version);
        phase("snapshot_and_archive");
        let read_back = written
            .as_ref()
            .ok()
            .map(|m| archive::verify_as_written(&partial, m));
        phase("verify");
        let panicked = |what: &str| OpsError::Io {
            what: format!("reading {}", db_path.display()),
            source: std::io::Error::other(format!("the {what} thread panicked")),
        };
        let streamed = pages.join().map_err(|_| panicked("snapshot"));
        let check = check.join().map_err(|_| panicked("integrity check"));
        phase("integrity_check_rest");
        // The snapshot's error first: a writer cut short by it only reports a short entry.
        let streamed = streamed??;
        let written = written?;
        debug_assert!(streamed, "the snapshot ran to its end when the writer did");
        let check = check??;
        if !check.intact {
            return Err(OpsError::NeedsAttention(format!(
                "the database fails its integrity check ({}); the live database may be damaged: run `crm doctor`",
                check.problems.join("; ")
            )));
        }
        read_back.expect("read back after a good write")?;
        std::fs::rename(&partial, &dest).map_err(io_ctx("cannot rename", &partial))?;
        super::match_owner(&dest, &parent);
        sync_dir(&parent)?;
        Ok(written)
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let size = std::fs::metadata(&dest)
        .map_err(io_ctx("cannot read", &dest))?
        .len();
    Ok(BackupDone {
        path: dest,
        size,
        manifest,
        seconds: started.elapsed().as_secs_f64(),
        phases,
    })
}

/// Does the shop want the call recordings in its backups (the recording settings page;
/// yes unless it said no)? Read from the live database, as a server may be running.
fn recordings_in_backups(db: &Path) -> OpsResult<bool> {
    let v = crate::db::settings::get_from_file(db, crate::domain::recordings::IN_BACKUPS_KEY)?;
    Ok(v.as_deref() != Some("0"))
}

/// The reading end of a stream of chunks sent by another thread (the snapshot's pages to
/// the archive writer, a download to the restore): end of file when the sender hangs up
/// (whether it ended well is the sender's to say).
pub(crate) struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
    /// Where read chunks go back to be filled again, if the sender reuses them.
    back: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl ChannelReader {
    pub(crate) fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
            back: None,
        }
    }

    /// A reader that hands each chunk it has read back through `back` (when there is
    /// room), so a sender streaming a large object reuses a few buffers instead of
    /// faulting in fresh memory for every chunk.
    pub(crate) fn recycling(
        rx: std::sync::mpsc::Receiver<Vec<u8>>,
        back: std::sync::mpsc::SyncSender<Vec<u8>>,
    ) -> ChannelReader {
        ChannelReader {
            back: Some(back),
            ..ChannelReader::new(rx)
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    let read = std::mem::replace(&mut self.chunk, c);
                    if let Some(back) = &self.back {
                        let _ = back.try_send(read);
                    }
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

/// `crm-backup-YYYYMMDD-HHMMSS.tar.zst` in `dir`, with a counter if taken.
fn unique_name(dir: &Path) -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut path = dir.join(format!("{PREFIX}{stamp}{SUFFIX}"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{PREFIX}{stamp}-{n}{SUFFIX}"));
        n += 1;
    }
    path
}

/// Finished backups in `dir`, newest first. Half-written ones (`.partial`) are not listed.
pub fn list(dir: &Path) -> Vec<BackupFile> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || !(name.ends_with(SUFFIX) || name.ends_with(OLD_SUFFIX)) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let finished_at = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        out.push(BackupFile {
            path: e.path(),
            name,
            size: meta.len(),
            finished_at,
        });
    }
    out.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(b.name.cmp(&a.name)));
    out
}

/// The newest good backup in the configured folder.
pub fn newest(cfg: &Config) -> Option<BackupFile> {
    list(&cfg.backup_target_dir()).into_iter().next()
}

/// How stale the backups are, for `crm doctor` and the dashboard: `None` when fine,
/// else a sentence saying what is wrong.
pub fn staleness_warning(cfg: &Config, now: i64) -> Option<String> {
    let limit = cfg.backup.warn_after_hours as i64 * 3600;
    match newest(cfg) {
        None => Some(format!(
            "no backup in {} yet: run `crm backup`",
            cfg.backup_target_dir().display()
        )),
        Some(b) if now - b.finished_at > limit => Some(format!(
            "the newest backup ({}) is {} old: run `crm backup` and check the [backup] settings",
            b.name,
            super::human_age(now - b.finished_at)
        )),
        Some(_) => None,
    }
}

/// Deletes the oldest backups in `dir` beyond `keep`. Returns what it deleted.
pub fn prune(dir: &Path, keep: usize) -> OpsResult<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for old in list(dir).into_iter().skip(keep) {
        std::fs::remove_file(&old.path).map_err(io_ctx("cannot delete", &old.path))?;
        removed.push(old.path);
    }
    Ok(removed)
}

/// A backup by file name in the configured folder (for downloads): only plain names of
/// finished backups, never a path.
pub fn find(cfg: &Config, name: &str) -> Option<BackupFile> {
    if name.contains('/') || name.contains("..") {
        return None;
    }
    list(&cfg.backup_target_dir())
        .into_iter()
        .find(|b| b.name == name)
}
