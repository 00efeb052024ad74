//! The data-directory lock: the server holds an exclusive lock on `<data_dir>/crm.lock`
//! for as long as it runs, and `crm restore` takes the same lock, so a restore can never
//! swap files under a running server (and a server cannot start in the middle of one).
//! It is an advisory `flock`: the kernel drops it when the process dies, so a crash
//! never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::{io_ctx, OpsError, OpsResult};

pub const LOCK_FILE: &str = "crm.lock";

/// Held while alive; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock without waiting; `OpsError::Locked` (naming the holder's pid) when
    /// another process or handle holds it.
    pub fn acquire(data_dir: &Path) -> OpsResult<DataDirLock> {
        std::fs::create_dir_all(data_dir).map_err(io_ctx("cannot create", data_dir))?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_ctx("cannot open lock file", &path))?;
        let got = file
            .try_lock_exclusive()
            .map_err(io_ctx("cannot lock", &path))?;
        if !got {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(OpsError::Locked {
                dir: data_dir.to_path_buf(),
                pid: pid.trim().to_string(),
            });
        }
        // The pid is for people reading the error above; the lock itself is the flock.
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(io_ctx("cannot write", &path))?;
        Ok(DataDirLock { file, path })
    }

    /// Whether some process holds the lock now (without keeping it).
    pub fn is_held(data_dir: &Path) -> bool {
        matches!(Self::acquire(data_dir), Err(OpsError::Locked { .. }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        match &err {
            OpsError::Locked { pid, .. } => assert_eq!(pid, &std::process::id().to_string()),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("systemctl stop crm"));
        assert!(DataDirLock::is_held(dir.path()));
        drop(first);
        assert!(!DataDirLock::is_held(dir.path()));
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
