//! The unit of work. Every change runs as `store.write(who, |tx| ...)`: `tx` carries the
//! connection, the acting user and collectors for the change's side effects (activity
//! entries, live events, outbox messages). The writer stores the activity rows and the
//! outbox messages in the change's own savepoint, so they exist exactly when the change
//! does; the events are published only after the commit; a refused change (any `Err`)
//! leaves none of them. Domain errors come back typed, never flattened to a string.
//!
//! A service cannot forget a side effect of a commit it did not declare, and it cannot
//! publish one for a change that rolled back.

use std::ops::Deref;

use super::access::{Branches, Permissions};
use super::clock::{Clock, ShopClock};
use super::notifications::Notification;
use super::{Action, Actor, DomainError, DomainResult};
use crate::db::{Conn, Db, DbError};
use crate::events::{Event, EventBus};
use crate::model::{Role, UserId};

/// Who makes a change: a signed-in user (with their scope: the role their record scope
/// comes from, their permissions and their branches) or the box itself (a periodic job,
/// the SIP server's call log, a message from a customer), which is unscoped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    User {
        id: UserId,
        role: Role,
        perms: Permissions,
        branches: Branches,
    },
    System,
}

impl Who {
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Who::User { id, .. } => Some(*id),
            Who::System => None,
        }
    }

    /// Whether the change may touch a record of `branch`: the box always may, a user
    /// only within their branches. The one place the unit of work decides branch scope.
    pub fn sees_branch(&self, branch: i64) -> bool {
        match self {
            Who::User { branches, .. } => branches.contains(branch),
            Who::System => true,
        }
    }

    /// The acting user's branches; None for every branch (or the box).
    pub fn branches(&self) -> Option<&[i64]> {
        match self {
            Who::User { branches, .. } => branches.only(),
            Who::System => None,
        }
    }

    /// Whether the change's author may do `action` (the box may do anything).
    pub fn can(&self, action: Action) -> bool {
        match self {
            Who::User { perms, .. } => perms.has(action),
            Who::System => true,
        }
    }
}

impl From<Option<&Actor>> for Who {
    fn from(a: Option<&Actor>) -> Who {
        a.map_or(Who::System, Who::from)
    }
}

impl From<&Actor> for Who {
    fn from(a: &Actor) -> Who {
        Who::User {
            id: a.user_id,
            role: a.role,
            perms: a.perms,
            branches: a.branches.clone(),
        }
    }
}

struct Entry {
    action: &'static str,
    entity: &'static str,
    entity_id: Option<i64>,
    detail: serde_json::Value,
}

/// One change in progress. Derefs to the connection, so storage functions take it as
/// they are.
pub struct Tx<'c> {
    conn: &'c Conn,
    who: Who,
    clock: ShopClock,
    now: i64,
    activity: Vec<Entry>,
    events: Vec<Event>,
    outbox: Vec<Notification>,
}

impl Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl<'c> Tx<'c> {
    fn new(conn: &'c Conn, who: Who, clock: ShopClock) -> Tx<'c> {
        Tx {
            conn,
            who,
            now: clock.now(),
            clock,
            activity: Vec::new(),
            events: Vec::new(),
            outbox: Vec::new(),
        }
    }

    pub fn conn(&self) -> &'c Conn {
        self.conn
    }

    pub fn who(&self) -> &Who {
        &self.who
    }

    /// Refuses (as not found: a record out of scope does not exist for the user) when
    /// `branch` is outside the acting user's branches.
    pub fn check_branch(&self, branch: i64) -> DomainResult<()> {
        if self.who.sees_branch(branch) {
            Ok(())
        } else {
            Err(DomainError::NotFound)
        }
    }

    /// The acting user's id; `None` for the box's own changes.
    pub fn actor_id(&self) -> Option<UserId> {
        self.who.user_id()
    }

    /// The instant of this change (Unix seconds, UTC) by the shop clock: one value for
    /// every row it writes.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The shop clock: days, hours and years of this change are the shop's.
    pub fn clock(&self) -> &ShopClock {
        &self.clock
    }

    /// Declares the change's activity-log entry, stored with the change.
    pub fn log(
        &mut self,
        action: &'static str,
        entity: &'static str,
        entity_id: impl Into<Option<i64>>,
        detail: serde_json::Value,
    ) {
        self.activity.push(Entry {
            action,
            entity,
            entity_id: entity_id.into(),
            detail,
        });
    }

    /// Whether this change has declared an activity entry so far: every change that
    /// changes something does, so a write that found nothing to do can say nothing either.
    pub fn has_logged(&self) -> bool {
        !self.activity.is_empty()
    }

    /// Declares a live event, published after the commit.
    pub fn emit(&mut self, e: Event) {
        self.events.push(e);
    }

    /// Declares a notification, queued in the outbox with the change.
    pub fn notify(&mut self, n: Notification) {
        self.outbox.push(n);
    }

    /// Stores what was declared (in the change's savepoint) and hands back the events.
    fn finish(self) -> DomainResult<Vec<Event>> {
        let actor = self.actor_id();
        for e in &self.activity {
            crate::db::activity::insert(
                self.conn,
                actor,
                e.action,
                e.entity,
                e.entity_id,
                &e.detail,
                self.now,
            )?;
        }
        for n in &self.outbox {
            super::notifications::enqueue(self.conn, n)?;
        }
        Ok(self.events)
    }
}

/// The database and the event bus, joined so that a change and its side effects go
/// together.
#[derive(Clone)]
pub struct Store {
    db: Db,
    events: EventBus,
    clock: Clock,
}

impl Store {
    /// A store on the default shop clock (Asia/Tashkent, the real time).
    pub fn new(db: Db, events: EventBus) -> Store {
        Store::with_clock(db, events, Clock::default())
    }

    pub fn with_clock(db: Db, events: EventBus, clock: Clock) -> Store {
        Store { db, events, clock }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Runs `f` as one unit of work: its writes, activity rows and outbox messages commit
    /// together (or, on `Err`, none of them), and its events go out after the commit.
    pub async fn write<T, F>(&self, who: impl Into<Who>, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&mut Tx<'c>) -> DomainResult<T> + Send + 'static,
    {
        let who = who.into();
        let clock = self.clock.get();
        let (value, events) = self.db.write_as(move |c| run(c, who, clock, f)).await?;
        self.publish(events);
        Ok(value)
    }

    /// [`Store::write`] for code already on a blocking thread.
    pub fn write_blocking<T, F>(&self, who: impl Into<Who>, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&mut Tx<'c>) -> DomainResult<T> + Send + 'static,
    {
        let who = who.into();
        let clock = self.clock.get();
        let (value, events) = self.db.write_blocking_as(move |c| run(c, who, clock, f))?;
        self.publish(events);
        Ok(value)
    }

    /// Reads through the pool, with the domain's error type.
    pub async fn read<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> Result<T, DbError> + Send + 'static,
    {
        Ok(self.db.read(f).await?)
    }

    /// Reads through the pool; the closure may refuse with a domain error.
    pub async fn view<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> DomainResult<T> + Send + 'static,
    {
        self.db.read_as(f).await
    }

    fn publish(&self, events: Vec<Event>) {
        for mut e in events {
            // Fan-out latency is measured from the commit (crm-bench ws), so an event that
            // carries the field gets the instant it is published, not the instant it was
            // declared inside the transaction.
            if let Some(at) = e.data.get_mut("committed_at_us") {
                *at = serde_json::json!(
                    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
                );
            }
            self.events.publish(e);
        }
    }
}

fn run<T>(
    c: &Conn,
    who: Who,
    clock: ShopClock,
    f: impl for<'c> FnOnce(&mut Tx<'c>) -> DomainResult<T>,
) -> Result<(T, Vec<Event>), DomainError> {
    let mut tx = Tx::new(c, who, clock);
    let value = f(&mut tx)?;
    let events = tx.finish()?;
    Ok((value, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Audience;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), &Default::default()).unwrap();
        (dir, Store::new(db, EventBus::default()))
    }

    fn activity_rows(s: &Store) -> usize {
        s.db()
            .read_blocking(|c| {
                crate::db::activity::list(c, &Default::default(), 100, 0).map(|v| v.len())
            })
            .unwrap()
    }

    #[tokio::test]
    async fn a_commit_brings_its_activity_and_event_and_a_refusal_neither() {
        let (_d, s) = store();
        let mut rx = s.events().subscribe();
        let id = s
            .write(Who::System, |tx| {
                crate::db::settings::set(tx, "k", "v", 0)?;
                tx.log("create", "setting", None, serde_json::json!({}));
                tx.emit(Event::new("t.ok", serde_json::json!({}), Audience::Admins));
                Ok(7)
            })
            .await
            .unwrap();
        assert_eq!(id, 7);
        assert_eq!(activity_rows(&s), 1);
        assert_eq!(rx.try_recv().unwrap().kind, "t.ok");

        let err = s
            .write(Who::System, |tx| -> DomainResult<()> {
                crate::db::settings::set(tx, "k2", "v", 0)?;
                tx.log("create", "setting", None, serde_json::json!({}));
                tx.emit(Event::new("t.no", serde_json::json!({}), Audience::Admins));
                Err(DomainError::conflict(
                    Msg::new("err.order.balance_due").money("amount", 300_000),
                ))
            })
            .await
            .unwrap_err();
        // The typed error crosses the writer unchanged, arguments and all.
        match err {
            DomainError::Conflict(m) => assert_eq!(m.key(), "err.order.balance_due"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            activity_rows(&s),
            1,
            "a refused change leaves no activity row"
        );
        assert!(rx.try_recv().is_err(), "a refused change publishes nothing");
        let k2 = s
            .db()
            .read_blocking(|c| crate::db::settings::get(c, "k2"))
            .unwrap();
        assert_eq!(k2, None, "the refused change's own write is rolled back");
    }

    use super::super::Msg;
}
