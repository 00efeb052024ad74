//! The single writer thread. Requests queue on a channel; the thread takes whatever has
//! queued (up to a batch limit), runs each in its own savepoint inside one IMMEDIATE
//! transaction, commits once, and only then answers every request of the batch.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{DbError, DbResult, StorageHealth};

const MAX_BATCH: usize = 256;

type Completion = Box<dyn FnOnce(Option<&DbError>) + Send>;

/// A write: given the transaction's connection (or why none could be begun), runs and
/// returns what to do once the commit's outcome is known.
type InTx = Box<dyn FnOnce(Result<&Connection, &DbError>) -> Completion + Send>;

enum Job {
    InTransaction(InTx),
    Outside(Box<dyn FnOnce(&mut Connection) + Send>),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WriteStats {
    pub transactions: u64,
    pub writes: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    writes: AtomicU64,
}

pub(super) struct Writer {
    tx: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    health: Arc<StorageHealth>,
}

impl Writer {
    pub(super) fn start(conn: Connection, health: Arc<StorageHealth>) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let (c, h) = (counters.clone(), health.clone());
        std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || run(conn, rx, &c, &h))
            .expect("spawn db writer thread");
        Writer {
            tx,
            counters,
            health,
        }
    }

    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Queues `f`; its own error type `E` comes back unchanged (a domain rule's error is
    /// not flattened on the way), and storage failures arrive as `E::from(DbError)`.
    pub(super) fn submit<T, E, F>(&self, f: F) -> DbResult<oneshot::Receiver<Result<T, E>>>
    where
        T: Send + 'static,
        E: super::WriteError,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let health = self.health.clone();
        let job = Job::InTransaction(Box::new(move |conn: Result<&Connection, &DbError>| {
            let result = match conn {
                Ok(conn) => in_savepoint(conn, f),
                Err(e) => Err(E::from(failed("could not begin a write", e))),
            };
            if let Some(p) = result.as_ref().err().and_then(E::storage_problem) {
                health.note(p);
            }
            Box::new(move |commit_error: Option<&DbError>| {
                let result = match (result, commit_error) {
                    (Ok(_), Some(e)) => Err(E::from(failed("commit failed", e))),
                    (r, _) => r,
                };
                let _ = tx.send(result);
            }) as Completion
        }));
        self.tx.send(job).map_err(|_| DbError::WriterGone)?;
        Ok(rx)
    }

    pub(super) fn run_outside_transaction<T, F>(
        &self,
        f: F,
    ) -> DbResult<oneshot::Receiver<DbResult<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::Outside(Box::new(move |conn: &mut Connection| {
            let _ = tx.send(f(conn));
        }));
        self.tx.send(job).map_err(|_| DbError::WriterGone)?;
        Ok(rx)
    }
}

/// The error a caller gets when the transaction around its write failed: a storage
/// problem keeps its kind, so the user is told what is wrong.
fn failed(what: &str, e: &DbError) -> DbError {
    match e.storage_problem() {
        Some(p) => DbError::Storage(p, format!("{what}: {e}")),
        None => DbError::Task(format!("{what}: {e}")),
    }
}

fn in_savepoint<T, E: From<DbError>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("SAVEPOINT w").map_err(DbError::from)?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(E::from(DbError::Task("write panicked".into()))));
    match &result {
        Ok(_) => conn.execute_batch("RELEASE w").map_err(DbError::from)?,
        // On a full disk or an I/O error SQLite may roll the whole transaction back
        // itself: then there is no savepoint left, and the caller gets the real reason.
        Err(_) if conn.is_autocommit() => {}
        Err(_) => conn
            .execute_batch("ROLLBACK TO w; RELEASE w")
            .map_err(DbError::from)?,
    }
    result
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Job>, counters: &Counters, health: &StorageHealth) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let first = match first {
            Job::Outside(f) => {
                f(&mut conn);
                continue;
            }
            Job::InTransaction(f) => f,
        };
        let mut completions: Vec<Completion> = Vec::new();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Nothing runs: the caller is told why, and no write happens outside a
            // transaction.
            tracing::error!(error = %e, "could not begin a write transaction");
            let e = DbError::from(e);
            if let Some(p) = e.storage_problem() {
                health.note(p);
            }
            first(Err(&e))(None);
            continue;
        }
        let generation = health.generation();
        completions.push(first(Ok(&conn)));
        // SQLite rolled the transaction back (full disk, I/O error): nothing more runs in
        // this batch, which would otherwise run outside any transaction.
        let mut lost = conn.is_autocommit();
        while !lost && completions.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::InTransaction(f)) => {
                    completions.push(f(Ok(&conn)));
                    lost = conn.is_autocommit();
                }
                Ok(outside) => {
                    pending = Some(outside);
                    break;
                }
                Err(_) => break,
            }
        }
        let commit = if lost {
            let why = "SQLite rolled the transaction back";
            Err(match health.current() {
                Some((p, _)) => DbError::Storage(p, format!("{why}: {}", p.describe())),
                None => DbError::Task(why.into()),
            })
        } else {
            conn.execute_batch("COMMIT").map_err(DbError::from)
        };
        match &commit {
            Err(e) => {
                if let Some(p) = e.storage_problem() {
                    health.note(p);
                }
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
            // A whole batch committed without meeting a storage problem: the disk takes
            // writes again.
            Ok(()) if health.generation() == generation => health.clear(),
            Ok(()) => {}
        }
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        counters
            .writes
            .fetch_add(completions.len() as u64, Ordering::Relaxed);
        let err = commit.err();
        for c in completions {
            c(err.as_ref());
        }
    }
}
