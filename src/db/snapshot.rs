//! Consistent copies of a live database and checks of a copied one, for `ops::backup`
//! and `ops::restore` (the only SQLite code those need).

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{DbError, DbResult};

/// Copies the database at `src` into a new file `dest` while other connections keep
/// writing. The SQLite backup API copies every page in ONE step, i.e. inside one read
/// transaction: the copy holds exactly the transactions committed when the step began
/// (every acknowledged write up to then) and, in WAL mode, never blocks the writer.
/// (A multi-step backup would restart whenever another connection writes, and could
/// never finish under a steady write load.) The copy is switched to rollback-journal mode
/// so it is one self-contained file.
pub fn copy_live(src: &Path, dest: &Path) -> DbResult<()> {
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(10))?;
    let mut target = Connection::open(dest)?;
    {
        let backup = Backup::new(&source, &mut target)?;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                // Busy/locked: another connection holds a lock the step needs; try again.
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                StepResult::More => {}
                _ => {}
            }
        }
    }
    target.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// What a check of a database file found.
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// The migrations applied to it (`user_version`).
    pub schema_version: usize,
    /// `PRAGMA integrity_check` said "ok".
    pub intact: bool,
    /// The first problems it reported, when not intact.
    pub problems: Vec<String>,
}

/// Runs `PRAGMA integrity_check` on a database file (read-only) and reads its schema
/// version.
pub fn check_file(path: &Path) -> DbResult<FileCheck> {
    if !path.is_file() {
        return Err(DbError::Task(format!("{} does not exist", path.display())));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    let intact = lines.len() == 1 && lines[0] == "ok";
    let schema_version = super::schema_version(&conn)?;
    Ok(FileCheck {
        schema_version,
        intact,
        problems: if intact { Vec::new() } else { lines },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_is_consistent_and_checks_ok() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.db");
        super::super::migrate_file(&src).unwrap();
        let c = Connection::open(&src).unwrap();
        c.execute_batch("INSERT INTO settings(key, value, updated_at) VALUES ('k', 'v', 1);")
            .unwrap();
        let dest = dir.path().join("b.db");
        copy_live(&src, &dest).unwrap();
        let check = check_file(&dest).unwrap();
        assert!(check.intact, "{:?}", check.problems);
        assert_eq!(check.schema_version, super::super::binary_schema_version());
        let copy = Connection::open(&dest).unwrap();
        let v: String = copy
            .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(v, "v");

        // A damaged file is reported, not accepted.
        let mut bytes = std::fs::read(&dest).unwrap();
        let n = bytes.len();
        for b in &mut bytes[n / 2..n / 2 + 4096.min(n / 2)] {
            *b = 0xA5;
        }
        std::fs::write(&dest, bytes).unwrap();
        let bad = check_file(&dest);
        assert!(bad.map(|c| !c.intact).unwrap_or(true));
    }
}
