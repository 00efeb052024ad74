//! A consistent stream of a live database's pages and checks of a copied one, for
//! `ops::backup` and `ops::restore` (the only SQLite code those need).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{DbError, DbResult};

/// One read transaction on the live database: the exact state committed when it began
/// (every acknowledged write up to then), held while its pages are streamed out. A
/// [`SnapshotCheck`] begun with it checks the very same state on another connection, so
/// the slow `integrity_check` runs beside the stream instead of after it. In WAL mode the
/// writer goes on meanwhile; the snapshots do not move.
///
/// The pages come from the `sqlite_dbpage` table (built in: `.cargo/config.toml`), i.e.
/// through SQLite's own pager, never from the file underneath it. Streamed in page order
/// they ARE the database file, so a backup needs no temporary copy on disk.
pub struct LiveSnapshot {
    conn: Connection,
    page_size: usize,
    page_count: u64,
    schema_version: usize,
}

/// File header offsets 18 and 19: the write and read format versions, 2 in WAL mode. The
/// stream sets them to 1 (rollback journal), as `PRAGMA journal_mode = DELETE` would, so the
/// copy is one self-contained file that opens read-only without a `-wal` or `-shm`.
const FORMAT_VERSION_AT: std::ops::Range<usize> = 18..20;

/// Pages handed to the sink at once.
const PAGES_PER_CHUNK: usize = 64;

/// `PRAGMA integrity_check` of the state a [`LiveSnapshot`] streams.
pub struct SnapshotCheck {
    conn: Connection,
}

impl SnapshotCheck {
    pub fn run(&self) -> DbResult<FileCheck> {
        integrity(&self.conn)
    }
}

impl LiveSnapshot {
    /// Begins the two read transactions on the same state: while a third connection holds
    /// the write lock (`BEGIN IMMEDIATE`, for well under a millisecond) nobody can commit,
    /// so both start from the same last commit. The server's writes wait that long at most.
    pub fn begin(src: &Path) -> DbResult<(Self, SnapshotCheck)> {
        let open_read_only = || -> DbResult<Connection> {
            let c = Connection::open_with_flags(
                src,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(Duration::from_secs(10))?;
            Ok(c)
        };
        let (conn, checker) = (open_read_only()?, open_read_only()?);
        let lock = Connection::open_with_flags(
            src,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        lock.busy_timeout(Duration::from_secs(10))?;
        lock.execute_batch("BEGIN IMMEDIATE")?;
        // The first read starts a read transaction; everything after sees that snapshot.
        let started = (|| -> DbResult<(u64, usize, usize)> {
            conn.execute_batch("BEGIN")?;
            let page_count =
                conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64;
            checker.execute_batch("BEGIN")?;
            checker.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))?;
            let page_size =
                conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as usize;
            Ok((page_count, page_size, super::schema_version(&conn)?))
        })();
        lock.execute_batch("ROLLBACK")?;
        let (page_count, page_size, schema_version) = started?;
        Ok((
            LiveSnapshot {
                conn,
                page_size,
                page_count,
                schema_version,
            },
            SnapshotCheck { conn: checker },
        ))
    }

    /// The size of the database file the stream makes.
    pub fn size(&self) -> u64 {
        self.page_count * self.page_size as u64
    }

    pub fn schema_version(&self) -> usize {
        self.schema_version
    }

    /// Hands every page, in order, to `sink`, in chunks of a few hundred KB (owned, so a
    /// sink can pass them to another thread without a copy). An error from the sink stops
    /// the stream and is returned as is.
    pub fn stream(
        &self,
        mut sink: impl FnMut(Vec<u8>) -> std::io::Result<()>,
    ) -> Result<(), StreamError> {
        let mut stmt = self
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")?;
        let mut rows = stmt.query([])?;
        let chunk_len = self.page_size * PAGES_PER_CHUNK;
        let mut chunk = Vec::with_capacity(chunk_len);
        let mut expected = 1u64;
        while let Some(row) = rows.next()? {
            let pgno = row.get::<_, i64>(0)? as u64;
            let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            if pgno != expected || data.len() != self.page_size {
                return Err(StreamError::Db(DbError::Task(format!(
                    "sqlite_dbpage gave page {pgno} of {} bytes where page {expected} of {} was due",
                    data.len(),
                    self.page_size
                ))));
            }
            let at = chunk.len();
            chunk.extend_from_slice(data);
            if pgno == 1 {
                chunk[at + FORMAT_VERSION_AT.start..at + FORMAT_VERSION_AT.end]
                    .copy_from_slice(&[1, 1]);
            }
            expected += 1;
            if chunk.len() >= chunk_len {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_len));
                sink(full).map_err(StreamError::Sink)?;
            }
        }
        if !chunk.is_empty() {
            sink(chunk).map_err(StreamError::Sink)?;
        }
        if expected - 1 != self.page_count {
            return Err(StreamError::Db(DbError::Task(format!(
                "sqlite_dbpage gave {} pages of {}",
                expected - 1,
                self.page_count
            ))));
        }
        Ok(())
    }
}

/// Why [`LiveSnapshot::stream`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Sink(std::io::Error),
}

impl From<rusqlite::Error> for StreamError {
    fn from(e: rusqlite::Error) -> Self {
        StreamError::Db(e.into())
    }
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

/// How deep a check of a database file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDepth {
    /// `PRAGMA quick_check`: every page and b-tree well formed, none lost or used twice,
    /// records and constraints sound; not whether each index matches its table's rows,
    /// which costs about ten times as much on a large shop's database.
    Quick,
    /// `PRAGMA integrity_check`: all of it.
    Full,
}

/// Runs `PRAGMA integrity_check` on a database file (read-only) and reads its schema
/// version.
pub fn check_file(path: &Path) -> DbResult<FileCheck> {
    check_file_to(path, CheckDepth::Full)
}

/// [`check_file`] to the given depth.
pub fn check_file_to(path: &Path, depth: CheckDepth) -> DbResult<FileCheck> {
    if !path.is_file() {
        return Err(DbError::Task(format!("{} does not exist", path.display())));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    integrity_to(&conn, depth)
}

fn integrity(conn: &Connection) -> DbResult<FileCheck> {
    integrity_to(conn, CheckDepth::Full)
}

fn integrity_to(conn: &Connection, depth: CheckDepth) -> DbResult<FileCheck> {
    let mut stmt = conn.prepare(match depth {
        CheckDepth::Quick => "PRAGMA quick_check(20)",
        CheckDepth::Full => "PRAGMA integrity_check(20)",
    })?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    let intact = lines.len() == 1 && lines[0] == "ok";
    let schema_version = super::schema_version(conn)?;
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
    fn the_stream_is_the_snapshot_as_one_file_and_checks_ok() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.db");
        super::super::migrate_file(&src).unwrap();
        let c = Connection::open(&src).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("INSERT INTO settings(key, value, updated_at) VALUES ('k', 'v', 1);")
            .unwrap();
        let (snap, checker) = LiveSnapshot::begin(&src).unwrap();
        // Written after the snapshot began (into the WAL): not in the copy.
        c.execute_batch("INSERT INTO settings(key, value, updated_at) VALUES ('later', 'x', 1);")
            .unwrap();
        let mut bytes = Vec::new();
        snap.stream(|chunk| {
            bytes.extend_from_slice(&chunk);
            Ok(())
        })
        .unwrap();
        assert_eq!(bytes.len() as u64, snap.size());
        assert_eq!(&bytes[18..20], &[1, 1], "a rollback-journal file");
        let check = checker.run().unwrap();
        assert!(check.intact, "{:?}", check.problems);
        assert_eq!(snap.schema_version(), super::super::binary_schema_version());
        // The checker sees the snapshot too, not the later write.
        let later: i64 = checker
            .conn
            .query_row(
                "SELECT count(*) FROM settings WHERE key = 'later'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(later, 0);
        drop((snap, checker));

        let dest = dir.path().join("b.db");
        std::fs::write(&dest, &bytes).unwrap();
        let check = check_file(&dest).unwrap();
        assert!(check.intact, "{:?}", check.problems);
        let copy = Connection::open(&dest).unwrap();
        let keys: Vec<String> = copy
            .prepare("SELECT key FROM settings WHERE key IN ('k', 'later')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["k"]);
        assert_eq!(
            copy.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
                .unwrap(),
            "delete"
        );

        // A damaged file is reported, not accepted.
        let n = bytes.len();
        for b in &mut bytes[n / 2..n / 2 + 4096.min(n / 2)] {
            *b = 0xA5;
        }
        std::fs::write(&dest, bytes).unwrap();
        let bad = check_file(&dest);
        assert!(bad.map(|c| !c.intact).unwrap_or(true));
    }
}
