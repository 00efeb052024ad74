//! Running the box: backup, restore, upgrade, install, doctor and the data-dir lock.
//! Shared by the CLI, the web UI and the periodic jobs; each operation is safe to run at
//! any time and reports what it did.

pub mod archive;
pub mod backup;
pub mod doctor;
pub mod install;
pub mod lock;
pub mod probe;
pub mod remote;
pub mod restore;
pub mod systemd;
pub mod tls;
pub mod upgrade;

use std::path::{Path, PathBuf};

use crate::db::DbError;

/// Errors of the operations layer. Messages are written for the shop owner: what went
/// wrong and what state the box is in now.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Another crm (normally the server) holds the data directory.
    #[error("the data directory {dir} is in use by a running crm (pid {pid}); stop it first (sudo systemctl stop crm, or add --stop-service to crm restore), then run this again")]
    Locked { dir: PathBuf, pid: String },
    /// The archive failed verification; nothing was changed.
    #[error("{path}: not a valid crm archive, nothing was changed: {reason}")]
    BadArchive { path: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    /// The operation refused to start; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The operation failed part-way and put the previous state back.
    #[error("{0}")]
    RolledBack(String),
    /// Failed part-way and the previous state could NOT be put back: needs a person.
    #[error("{0}")]
    NeedsAttention(String),
}

pub type OpsResult<T> = Result<T, OpsError>;

/// Attaches what was being done (and to which path) to an I/O error.
pub(crate) fn io_ctx(
    what: impl Into<String>,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> OpsError {
    let what = format!("{} {}", what.into(), path.display());
    move |source| OpsError::Io { what, source }
}

/// fsyncs a directory so a rename inside it survives power loss.
pub(crate) fn sync_dir(dir: &Path) -> OpsResult<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_ctx("cannot sync directory", dir))
}

/// Gives `path` (recursively) the owner of `like`, so files made by `sudo crm ...` in the
/// data directory stay usable by the service's `crm` user. Best effort: as a non-root
/// user the files are already ours and this changes nothing.
pub(crate) fn match_owner(path: &Path, like: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(like) else {
        return;
    };
    fn walk(p: &Path, uid: u32, gid: u32) {
        let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
        if p.is_dir() {
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    walk(&e.path(), uid, gid);
                }
            }
        }
    }
    walk(path, meta.uid(), meta.gid());
}

/// A byte count for people: "512 B", "3.4 MB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An age for people: "5 min", "3 h", "2 days".
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 48 * 3600 {
        format!("{} h", s / 3600)
    } else {
        format!("{} days", s / 86400)
    }
}
