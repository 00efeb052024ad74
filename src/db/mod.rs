//! The only place that talks to SQLite. Reads go through an r2d2 pool; every write goes
//! through one writer thread that batches concurrent requests into a single transaction
//! (one savepoint each), so writers never fight over the lock and one fsync covers many
//! acknowledged writes (group commit).

mod writer;

pub mod accounts;
pub mod activity;
pub mod branches;
pub mod call_lists;
pub mod calls;
pub mod changes;
pub mod conversations;
pub mod customer_links;
pub mod customers;
pub mod imports;
pub mod notices;
pub mod orders;
pub mod outbox;
pub mod promos;
pub mod provisioning;
pub mod recordings;
pub mod replica;
pub mod reports;
pub mod roles;
pub mod search;
pub mod seed;
pub mod segments;
pub mod settings;
pub mod sip;
pub mod snapshot;
pub mod telegram;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use include_dir::{include_dir, Dir};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use rusqlite_migration::{MigrationDefinitionError, Migrations};

pub use rusqlite;
/// A value bound to a statement, for filters whose SQL is assembled from parts.
pub use rusqlite::types::Value as SqlValue;
/// The connection type domain closures receive inside `Db::read`/`Db::write`.
pub type Conn = rusqlite::Connection;
pub use writer::WriteStats;

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations");

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("the database {path} has schema version {db}, but this crm knows only up to {binary}: it was written by a newer crm. Install that version (or restore a backup made by this one); refusing to open it")]
    TooNew {
        path: String,
        db: usize,
        binary: usize,
    },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("database task failed: {0}")]
    Task(String),
    /// The disk under the database refused the write (full, read-only, failing); nothing
    /// of it was written.
    #[error("{1}")]
    Storage(StorageProblem, String),
}

/// What is wrong with the disk under the database, as SQLite (or the OS) reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageProblem {
    DiskFull,
    ReadOnly,
    IoError,
}

impl StorageProblem {
    /// Stable code: `disk_full`, `read_only`, `io_error`.
    pub fn code(self) -> &'static str {
        match self {
            StorageProblem::DiskFull => "disk_full",
            StorageProblem::ReadOnly => "read_only",
            StorageProblem::IoError => "io_error",
        }
    }

    /// For logs, `/healthz` and `crm doctor` (the web UI uses the catalogue).
    pub fn describe(self) -> &'static str {
        match self {
            StorageProblem::DiskFull => "the disk is full",
            StorageProblem::ReadOnly => "the file system is read-only",
            StorageProblem::IoError => "the disk reports input/output errors",
        }
    }

    fn of_sqlite(code: rusqlite::ErrorCode) -> Option<StorageProblem> {
        match code {
            rusqlite::ErrorCode::DiskFull => Some(StorageProblem::DiskFull),
            rusqlite::ErrorCode::ReadOnly => Some(StorageProblem::ReadOnly),
            rusqlite::ErrorCode::SystemIoFailure => Some(StorageProblem::IoError),
            _ => None,
        }
    }

    /// The problem behind an OS error writing a file (attachments, backups), if it is one.
    pub fn of_io(e: &std::io::Error) -> Option<StorageProblem> {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                Some(StorageProblem::DiskFull)
            }
            std::io::ErrorKind::ReadOnlyFilesystem => Some(StorageProblem::ReadOnly),
            _ if e.raw_os_error() == Some(5) => Some(StorageProblem::IoError),
            _ => None,
        }
    }
}

/// The last storage problem a write met, until a write commits again.
#[derive(Default)]
pub(crate) struct StorageHealth {
    problem: std::sync::Mutex<Option<(StorageProblem, i64)>>,
    /// Bumped on every problem noted: a batch that saw one does not clear it.
    noted: std::sync::atomic::AtomicU64,
}

impl StorageHealth {
    pub(crate) fn note(&self, p: StorageProblem) {
        self.noted.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let mut g = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        match *g {
            Some((old, _)) if old == p => {}
            _ => {
                tracing::error!(problem = p.code(), "storage: {}", p.describe());
                *g = Some((p, now()));
            }
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.noted.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn clear(&self) {
        let mut g = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, _)) = g.take() {
            tracing::warn!(problem = p.code(), "storage: writes succeed again");
        }
    }

    pub(crate) fn current(&self) -> Option<(StorageProblem, i64)> {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DbError {
    /// The storage problem behind this error, if it is one.
    pub fn storage_problem(&self) -> Option<StorageProblem> {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                StorageProblem::of_sqlite(e.code)
            }
            DbError::Storage(p, _) => Some(*p),
            _ => None,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// An error type a write closure may return through the writer (`Db::write_as`): it
/// takes storage errors in, and tells whether it is one where the disk refused the write
/// (so the box's health shows it).
pub trait WriteError: From<DbError> + Send + 'static {
    fn storage_problem(&self) -> Option<StorageProblem>;
}

impl WriteError for DbError {
    fn storage_problem(&self) -> Option<StorageProblem> {
        DbError::storage_problem(self)
    }
}

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync the WAL on every commit: survives power loss (default).
    Full,
    /// Survives a crash of the process (kill -9) but not of the machine.
    Normal,
}

#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    read: r2d2::Pool<SqliteConnectionManager>,
    writer: writer::Writer,
    health: Arc<StorageHealth>,
}

fn migrations() -> Migrations<'static> {
    // Strict on purpose: numbers must be consecutive, so a step can never be skipped and
    // recorded as done (branches developed in parallel hold reserved numbers until merged).
    Migrations::from_directory(&MIGRATIONS_DIR).expect("embedded migrations are well-formed")
}

/// Number of migrations this binary knows.
pub fn binary_schema_version() -> usize {
    MIGRATIONS_DIR.dirs().count()
}

fn apply_pragmas(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         PRAGMA synchronous = {sync};
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;"
    ))
}

fn schema_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map(|v| v as usize)
}

/// Applies pending migrations, refusing a database written by a newer binary.
/// Returns (version before, version after).
pub fn migrate_connection(conn: &mut Connection, path: &Path) -> DbResult<(usize, usize)> {
    let before = schema_version(conn)?;
    let known = binary_schema_version();
    if before > known {
        return Err(DbError::TooNew {
            path: path.display().to_string(),
            db: before,
            binary: known,
        });
    }
    migrations().to_latest(conn).map_err(|e| match e {
        rusqlite_migration::Error::MigrationDefinition(
            MigrationDefinitionError::DatabaseTooFarAhead,
        ) => DbError::TooNew {
            path: path.display().to_string(),
            db: before,
            binary: known,
        },
        other => DbError::Migration(other.to_string()),
    })?;
    search::ensure_keys(conn)?;
    Ok((before, schema_version(conn)?))
}

/// Opens (creating if needed) the database file, switches it to WAL and migrates it,
/// without starting the server's pools (for `crm migrate`).
pub fn migrate_file(path: &Path) -> DbResult<(usize, usize)> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    migrate_connection(&mut conn, path)
}

/// Opens a connection to an existing database file, with the same pragmas the server
/// uses, without migrating it (for tools that inspect a database).
pub fn open_raw(path: &Path) -> DbResult<Connection> {
    let conn = Connection::open(path)?;
    apply_pragmas(&conn, Durability::Full)?;
    Ok(conn)
}

/// A read-only connection to a database file, for tools that look without changing
/// anything whether or not a server runs (`crm doctor` reads settings and trunks).
pub fn open_read_only(path: &std::path::Path) -> DbResult<Connection> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub durability: Durability,
    pub read_pool_size: u32,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            durability: Durability::Full,
            read_pool_size: 8,
        }
    }
}

impl Db {
    /// Opens (creating if needed) the database, switches it to WAL, migrates it and
    /// starts the writer thread.
    pub fn open(path: &Path, opts: &DbOptions) -> DbResult<Db> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        apply_pragmas(&conn, opts.durability)?;
        migrate_connection(&mut conn, path)?;
        let durability = opts.durability;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                    | rusqlite::OpenFlags::SQLITE_OPEN_URI
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_init(move |c| {
                apply_pragmas(c, durability)?;
                c.pragma_update(None, "query_only", true)
            });
        let read = r2d2::Pool::builder()
            .max_size(opts.read_pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        let health = Arc::new(StorageHealth::default());
        let writer = writer::Writer::start(conn, health.clone());
        Ok(Db {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                read,
                writer,
                health,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a pooled read-only connection, off the async executor.
    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let pool = self.inner.read.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get()?;
            f(&conn)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// [`Db::read`] with the caller's own error type (a read that may refuse: not found,
    /// not allowed).
    pub async fn read_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.inner.read.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(DbError::from)?;
            f(&conn)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Same as [`Db::read`], for code already running on a blocking thread.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> DbResult<T>) -> DbResult<T> {
        let conn = self.inner.read.get()?;
        f(&conn)
    }

    /// Runs `f` inside the writer's transaction (in a savepoint of its own). The future
    /// resolves only after the transaction holding the change has committed, so an
    /// acknowledged write is durable. An `Err` from `f` rolls back only `f`'s changes.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.write_as(f).await
    }

    /// [`Db::write`] with the caller's own error type: an `Err(E)` from `f` rolls back
    /// `f`'s changes and reaches the caller as it was raised (typed, not a string);
    /// storage failures arrive as `E::from(DbError)`.
    pub async fn write_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: WriteError,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.inner
            .writer
            .submit(f)?
            .await
            .map_err(|_| E::from(DbError::WriterGone))?
    }

    /// Same as [`Db::write`], for code already running on a blocking thread.
    pub fn write_blocking<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.write_blocking_as(f)
    }

    /// [`Db::write_as`] for code already running on a blocking thread.
    pub fn write_blocking_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: WriteError,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.inner
            .writer
            .submit(f)?
            .blocking_recv()
            .map_err(|_| E::from(DbError::WriterGone))?
    }

    /// Read-pool gauges for /metrics: (connections, idle connections).
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.inner.read.state();
        (s.connections, s.idle_connections)
    }

    pub fn write_stats(&self) -> WriteStats {
        self.inner.writer.stats()
    }

    pub fn schema_version(&self) -> DbResult<usize> {
        self.read_blocking(|c| Ok(schema_version(c)?))
    }

    /// Runs `f` on the writer's connection outside any transaction, between batches:
    /// connection settings (pragmas) and maintenance.
    pub async fn maintenance<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    {
        self.inner
            .writer
            .run_outside_transaction(f)?
            .await
            .map_err(|_| DbError::WriterGone)?
    }

    /// Turns the writer's automatic checkpoint (SQLite's default: after a commit that
    /// leaves 1000 pages or more in the WAL) off, when the replicator owns the
    /// checkpoints, or back on.
    pub async fn set_auto_checkpoint(&self, on: bool) -> DbResult<()> {
        self.maintenance(move |c| {
            c.pragma_update(None, "wal_autocheckpoint", if on { 1000 } else { 0 })?;
            Ok(())
        })
        .await
    }

    /// `PRAGMA optimize` alone (when the replicator owns the checkpoints).
    pub async fn optimize(&self) -> DbResult<()> {
        self.inner
            .writer
            .run_outside_transaction(|c| {
                c.execute_batch("PRAGMA optimize")?;
                Ok(())
            })?
            .await
            .map_err(|_| DbError::WriterGone)?
    }

    /// Moves the WAL's content into the main file and truncates the WAL.
    pub async fn checkpoint(&self) -> DbResult<()> {
        self.inner
            .writer
            .run_outside_transaction(|c| {
                // optimize may write statistics, so it goes before the checkpoint.
                c.execute_batch("PRAGMA optimize")?;
                let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                if busy != 0 {
                    tracing::debug!("WAL checkpoint could not finish: readers active");
                }
                Ok(())
            })?
            .await
            .map_err(|_| DbError::WriterGone)?
    }

    /// The storage problem the last writes met (and since when, Unix seconds), until a
    /// write commits again.
    pub fn storage_problem(&self) -> Option<(StorageProblem, i64)> {
        self.inner.health.current()
    }

    /// While writes fail for a storage reason: one small real write (a settings row),
    /// which clears the problem when it commits. Returns the problem that remains.
    pub async fn probe_storage(&self) -> Option<(StorageProblem, i64)> {
        self.storage_problem()?;
        let _ = self
            .write(|c| {
                c.execute(
                    "INSERT INTO settings (key, value, updated_at) VALUES ('health.write_probe', ?1, ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    [now()],
                )?;
                Ok(())
            })
            .await;
        self.storage_problem()
    }

    /// A cheap liveness probe of both paths.
    pub async fn ping(&self) -> DbResult<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 0019 rebuilds the outbox for the 'sms' channel: rows keep their ids and
    /// the conversation replies keep their links to them.
    #[test]
    fn outbox_rebuild_keeps_rows_and_reply_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("m.db")).unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        migrations().to_version(&mut c, 18).unwrap();
        c.execute_batch(
            "INSERT INTO notify_outbox (id, event, dedupe_key, channel, recipient, language, subject, body, next_attempt_at, created_at, updated_at, extra)
               VALUES (41, 'conversation.reply', 'k', 'telegram', '77', 'uz', '', 'Salom', 0, 0, 0, '{}');
             INSERT INTO conversations (id, channel, address, last_message_at, opened_at, created_at) VALUES (1, 'telegram', '77', 0, 0, 0);
             INSERT INTO conversation_messages (id, conversation_id, direction, kind, body, outbox_id, created_at)
               VALUES (5, 1, 'out', 'text', 'Salom', 41, 0);",
        )
        .unwrap();
        migrations().to_latest(&mut c).unwrap();
        let link: Option<i64> = c
            .query_row(
                "SELECT outbox_id FROM conversation_messages WHERE id = 5",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(link, Some(41));
        let (body, extra): (String, String) = c
            .query_row(
                "SELECT body, extra FROM notify_outbox WHERE id = 41",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((body.as_str(), extra.as_str()), ("Salom", "{}"));
        c.execute(
            "INSERT INTO notify_outbox (event, dedupe_key, channel, recipient, language, subject, body, next_attempt_at, created_at, updated_at)
             VALUES ('test', 'k2', 'sms', '+998901234567', 'uz', '', 'x', 0, 0, 0)",
            [],
        )
        .unwrap();
        assert!(c
            .execute(
                "INSERT INTO notify_outbox (event, dedupe_key, channel, recipient, language, subject, body, next_attempt_at, created_at, updated_at)
                 VALUES ('test', 'k3', 'fax', 'x', 'uz', '', 'x', 0, 0, 0)",
                [],
            )
            .is_err());
        // Deleting the outbox row still clears the reply's link (the reference followed
        // the rebuilt table).
        c.execute("DELETE FROM notify_outbox WHERE id = 41", [])
            .unwrap();
        let link: Option<i64> = c
            .query_row(
                "SELECT outbox_id FROM conversation_messages WHERE id = 5",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(link, None);
        let fk: i64 = c
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk, 0);
    }

    #[tokio::test]
    async fn group_commit_isolates_failures() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), &DbOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute(
                        "INSERT INTO settings(key, value, updated_at) VALUES (?1, 'v', 0)",
                        [format!("k{i}")],
                    )?;
                    if i % 10 == 0 {
                        return Err(DbError::Task("refused".into()));
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 45);
        let n: i64 = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM settings WHERE key GLOB 'k[0-9]*'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(n, 45, "rejected writes must leave nothing behind");
    }

    #[test]
    fn refuses_newer_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Db::open(&path, &DbOptions::default()).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        let err = Db::open(&path, &DbOptions::default()).err().unwrap();
        assert!(matches!(err, DbError::TooNew { db: 999, .. }), "{err}");
        assert!(err.to_string().contains("newer crm"));
    }
}
