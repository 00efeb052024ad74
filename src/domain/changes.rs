//! The CLI and the running server agree: a change that another process commits — a `crm`
//! command on the same data directory — reaches the server's memory within a second.
//!
//! Triggers write a row to `change_journal` for every change the server keeps in memory
//! (see migration 0013). A thread of the server polls `PRAGMA data_version` on a
//! read-only connection of its own every 200 ms (a few microseconds: SQLite compares a
//! counter in the WAL index); when it moved, the thread reads the journal rows after the
//! last one it saw and hands them to an async task that applies them:
//!
//! - `sip`: the SIP directory and plan are reloaded (a new extension can register, a new
//!   secret counts at once) and the bindings of extensions that are gone or disabled are
//!   dropped (their phones are refused from then on);
//! - `user`: an internal `user.access_changed` event (`{"user_id": N}`, audience
//!   `Users([])`, so no screen receives it) tells the live-update hub to close or re-scope
//!   that user's sockets; sessions and tokens are checked against the database on every
//!   request anyway, so a disabled user's next request is refused;
//! - `shop`: the shop clock takes the stored time zone.
//!
//! The server's own changes come through the journal too; applying them again is
//! harmless (a reload, an event the hub handles idempotently).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::clock::Clock;
use super::telephony::Telephony;
use super::DomainResult;
use crate::db::changes::{Change, Watch};
use crate::db::Db;
use crate::events::{Audience, Event, EventBus};

/// How often the data version is polled.
pub const POLL: Duration = Duration::from_millis(200);

/// The event kind published when a user's access changed (disabled, password, role,
/// token revoked).
pub const USER_ACCESS_CHANGED: &str = "user.access_changed";

/// What the watcher applies changes to.
#[derive(Clone)]
pub struct Targets {
    pub db: Db,
    pub telephony: Telephony,
    pub clock: Clock,
    pub events: EventBus,
}

/// The newest journal row now: the watcher applies what comes after it. Taken before the
/// server loads what it keeps in memory, so nothing committed in between is missed.
pub async fn mark(db: &Db) -> DomainResult<i64> {
    Ok(db.read(crate::db::changes::last_id).await?)
}

/// The running watcher; [`Watcher::stop`] ends it.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts watching the database at `path` for journal rows after `after`.
pub fn start(path: &std::path::Path, after: i64, targets: Targets) -> DomainResult<Watcher> {
    let watch = Watch::open(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel::<Vec<Change>>(64);
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("crm-changes".into())
        .spawn(move || poll(watch, after, tx, stopped))
        .map_err(|e| {
            super::DomainError::Db(crate::db::DbError::Task(format!(
                "cannot start the change watcher: {e}"
            )))
        })?;
    let task = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            apply(&targets, batch).await;
        }
    });
    Ok(Watcher {
        stop,
        thread: Some(thread),
        task,
    })
}

impl Watcher {
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The thread dropped its sender: the task ends after the last batch.
        let _ = self.task.await;
    }
}

fn poll(watch: Watch, mut after: i64, tx: mpsc::Sender<Vec<Change>>, stop: Arc<AtomicBool>) {
    let mut version = watch.data_version().unwrap_or(0);
    // Rows committed between the mark and this connection's first look.
    let mut pending = true;
    while !stop.load(Ordering::Relaxed) {
        if pending {
            match watch.since(after) {
                Ok(rows) => {
                    pending = rows.len() >= 10_000;
                    if let Some(last) = rows.last() {
                        after = last.id;
                        if tx.blocking_send(rows).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "change watcher: cannot read the journal"),
            }
        }
        std::thread::sleep(POLL);
        match watch.data_version() {
            Ok(v) if v != version => {
                version = v;
                pending = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "change watcher: PRAGMA data_version failed"),
        }
    }
}

/// Applies one batch of journal rows (each kind once).
async fn apply(t: &Targets, batch: Vec<Change>) {
    let mut sip = false;
    let mut shop = false;
    let mut users = BTreeSet::new();
    for c in &batch {
        match c.kind.as_str() {
            "sip" => sip = true,
            "shop" => shop = true,
            "user" => {
                if let Some(id) = c.reference {
                    users.insert(id);
                }
            }
            _ => {}
        }
    }
    if shop {
        if let Err(e) = t.clock.follow_settings(&t.db).await {
            tracing::warn!(error = %e, "change watcher: the shop's time zone");
        }
    }
    if sip {
        match t.telephony.reload_and_prune().await {
            Ok(dropped) if dropped > 0 => {
                tracing::info!(
                    extensions = dropped,
                    "SIP: registrations of removed or disabled extensions dropped"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "change watcher: cannot reload the SIP directory"),
        }
    }
    for id in users {
        t.events.publish(Event::new(
            USER_ACCESS_CHANGED,
            serde_json::json!({ "user_id": id }),
            Audience::Users(vec![]),
        ));
    }
}
