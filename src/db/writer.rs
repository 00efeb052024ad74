//! The single writer thread. Requests queue on a channel; the thread takes whatever has
//! queued (up to a batch limit), runs each in its own savepoint inside one IMMEDIATE
//! transaction, commits once, and only then answers every request of the batch.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{DbError, DbResult};

const MAX_BATCH: usize = 256;

type Completion = Box<dyn FnOnce(Option<&DbError>) + Send>;

enum Job {
    InTransaction(Box<dyn FnOnce(&Connection) -> Completion + Send>),
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
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || run(conn, rx, &c))
            .expect("spawn db writer thread");
        Writer { tx, counters }
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
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::InTransaction(Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit_error: Option<&DbError>| {
                let result = match (result, commit_error) {
                    (Ok(_), Some(e)) => Err(E::from(DbError::Task(format!("commit failed: {e}")))),
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

fn in_savepoint<T, E: From<DbError>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("SAVEPOINT w").map_err(DbError::from)?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(E::from(DbError::Task("write panicked".into()))));
    match &result {
        Ok(_) => conn.execute_batch("RELEASE w").map_err(DbError::from)?,
        Err(_) => conn
            .execute_batch("ROLLBACK TO w; RELEASE w")
            .map_err(DbError::from)?,
    }
    result
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Job>, counters: &Counters) {
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
            // Nothing runs; dropping the job closes its channel, so the caller sees
            // WriterGone rather than a write that happened outside a transaction.
            tracing::error!(error = %e, "could not begin a write transaction");
            drop(first);
            continue;
        }
        completions.push(first(&conn));
        while completions.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::InTransaction(f)) => completions.push(f(&conn)),
                Ok(outside) => {
                    pending = Some(outside);
                    break;
                }
                Err(_) => break,
            }
        }
        let commit = conn.execute_batch("COMMIT").map_err(DbError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
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
