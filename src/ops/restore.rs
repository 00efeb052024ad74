//! `crm restore ARCHIVE`: verify everything first, keep the current data aside, swap the
//! backup in, migrate it when it is older, and put the kept data back if any step fails.

use std::path::{Path, PathBuf};

use super::archive::{self, Manifest};
use super::lock::DataDirLock;
use super::{io_ctx, sync_dir, OpsError, OpsResult};
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct RestoreDone {
    pub manifest: Manifest,
    /// Where the data that was replaced now lives (delete it when satisfied).
    pub kept_aside: PathBuf,
    pub schema_before: usize,
    pub schema_after: usize,
}

/// The files that make up the live data, moved as one unit.
const DB_FILES: [&str; 3] = ["crm.db", "crm.db-wal", "crm.db-shm"];

pub fn restore(cfg: &Config, archive_path: &Path) -> OpsResult<RestoreDone> {
    // Refuse before touching anything while a server (or another restore) runs here,
    // and keep the lock so no server can start half-way through.
    let _lock = DataDirLock::acquire(&cfg.data_dir)?;
    let bad = |reason: String| OpsError::BadArchive {
        path: archive_path.to_path_buf(),
        reason,
    };
    if !archive_path.is_file() {
        return Err(bad("no such file".into()));
    }
    std::fs::create_dir_all(cfg.tmp_dir()).map_err(io_ctx("cannot create", &cfg.tmp_dir()))?;
    let staging = tempfile::Builder::new()
        .prefix("restore-")
        .tempdir_in(cfg.tmp_dir())
        .map_err(io_ctx("cannot create a folder in", &cfg.tmp_dir()))?;
    let manifest = archive::verify(archive_path, Some(staging.path()))?;
    let staged_db = staging.path().join(archive::DB_ENTRY);
    let check = crate::db::snapshot::check_file(&staged_db)
        .map_err(|e| bad(format!("the database in it cannot be read: {e}")))?;
    if !check.intact {
        return Err(bad(format!(
            "the database in it fails its integrity check: {}",
            check.problems.join("; ")
        )));
    }
    let known = crate::db::binary_schema_version();
    if check.schema_version > known {
        return Err(OpsError::Refused(format!(
            "this backup was made by a newer crm ({}, schema {}) than this one ({}, schema {known}); upgrade crm first. Nothing was changed",
            manifest.crm_version, check.schema_version, crate::VERSION
        )));
    }

    let aside = aside_dir(&cfg.data_dir);
    std::fs::create_dir_all(&aside).map_err(io_ctx("cannot create", &aside))?;
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    // The box's recordings stay when the archive has none (a backup made without them):
    // rows of the restored database still find the files that are there.
    let staged_rec = staging.path().join(archive::RECORDINGS);
    let with_recordings = staged_rec.is_dir();
    let swap = (|| -> OpsResult<(usize, usize)> {
        let rec_too = with_recordings.then_some(archive::RECORDINGS);
        for name in DB_FILES
            .iter()
            .copied()
            .chain([archive::ATTACHMENTS])
            .chain(rec_too)
        {
            let from = cfg.data_dir.join(name);
            if from.exists() {
                let to = aside.join(name);
                std::fs::rename(&from, &to).map_err(io_ctx("cannot move aside", &from))?;
                moved.push((from, to));
            }
        }
        let db = cfg.db_path();
        std::fs::rename(&staged_db, &db).map_err(io_ctx("cannot move into place", &db))?;
        let staged_att = staging.path().join(archive::ATTACHMENTS);
        let att = cfg.attachments_dir();
        if staged_att.is_dir() {
            std::fs::rename(&staged_att, &att).map_err(io_ctx("cannot move into place", &att))?;
        } else {
            std::fs::create_dir_all(&att).map_err(io_ctx("cannot create", &att))?;
        }
        if rec_too.is_some() {
            let rec = cfg.recordings_dir();
            std::fs::rename(&staged_rec, &rec).map_err(io_ctx("cannot move into place", &rec))?;
            super::match_owner(&rec, &cfg.data_dir);
        }
        super::match_owner(&db, &cfg.data_dir);
        super::match_owner(&att, &cfg.data_dir);
        sync_dir(&cfg.data_dir)?;
        let versions = crate::db::migrate_file(&db)?;
        let after = crate::db::snapshot::check_file(&db)?;
        if !after.intact {
            return Err(OpsError::NeedsAttention(format!(
                "the restored database fails its integrity check after migrating: {}",
                after.problems.join("; ")
            )));
        }
        Ok(versions)
    })();
    match swap {
        Ok((schema_before, schema_after)) => Ok(RestoreDone {
            manifest,
            kept_aside: aside,
            schema_before,
            schema_after,
        }),
        Err(e) => match revert(cfg, &moved, with_recordings) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&aside);
                Err(OpsError::RolledBack(format!(
                    "restore failed ({e}); the previous data was put back unchanged"
                )))
            }
            Err(revert_error) => Err(OpsError::NeedsAttention(format!(
                "restore failed ({e}) and putting the previous data back failed too ({revert_error}); the previous data is in {}: move its files back into {} by hand",
                aside.display(),
                cfg.data_dir.display()
            ))),
        },
    }
}

/// Removes whatever the failed swap put in place and moves the kept files back.
fn revert(cfg: &Config, moved: &[(PathBuf, PathBuf)], with_recordings: bool) -> OpsResult<()> {
    // Recordings the swap put in place go (the kept ones, if any, come back below).
    let rec = cfg.recordings_dir();
    if with_recordings && rec.exists() {
        std::fs::remove_dir_all(&rec).map_err(io_ctx("cannot remove", &rec))?;
    }
    for name in DB_FILES {
        let p = cfg.data_dir.join(name);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io_ctx("cannot remove", &p))?;
        }
    }
    let att = cfg.attachments_dir();
    if att.exists() {
        std::fs::remove_dir_all(&att).map_err(io_ctx("cannot remove", &att))?;
    }
    for (original, kept) in moved.iter().rev() {
        std::fs::rename(kept, original).map_err(io_ctx("cannot move back", kept))?;
    }
    sync_dir(&cfg.data_dir)
}

fn aside_dir(data_dir: &Path) -> PathBuf {
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
    let mut p = data_dir.join(format!("before-restore-{stamp}"));
    let mut n = 2;
    while p.exists() {
        p = data_dir.join(format!("before-restore-{stamp}-{n}"));
        n += 1;
    }
    p
}
