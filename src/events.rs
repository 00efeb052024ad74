//! The in-process event bus: domain code publishes a change after its transaction has
//! committed; the WebSocket hub (and later other listeners) deliver it to those allowed
//! to see it.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::domain::access::{Action, Actor, Branches, Permissions};
use crate::model::{Role, UserId};

/// Whom an event is offered to: a user with their role, permissions and branches (the
/// scope on their [`Actor`]). The hub keeps one per socket.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: UserId,
    pub role: Role,
    pub perms: Permissions,
    pub branches: Branches,
}

impl Viewer {
    /// A built-in role's viewer in every branch (tests, benchmarks).
    pub fn builtin(user: UserId, role: Role) -> Viewer {
        Viewer {
            user,
            role,
            perms: Permissions::defaults(role),
            branches: Branches::All,
        }
    }
}

impl From<&Actor> for Viewer {
    fn from(a: &Actor) -> Viewer {
        Viewer {
            user: a.user_id,
            role: a.role,
            perms: a.perms,
            branches: a.branches.clone(),
        }
    }
}

/// Who may receive an event.
#[derive(Debug, Clone, Serialize)]
pub enum Audience {
    /// Every signed-in user.
    Everyone,
    /// Admins only.
    Admins,
    /// Admins and operators, plus these masters (e.g. the order's current and previous
    /// master). Other masters never see it.
    Staff { masters: Vec<UserId> },
    /// Exactly these users.
    Users(Vec<UserId>),
    /// Users whose role has this permission (e.g. the users list: those who manage users).
    #[serde(serialize_with = "action_key")]
    Can(Action),
}

fn action_key<S: serde::Serializer>(a: &Action, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.key())
}

impl Audience {
    pub fn includes(&self, user: UserId, role: Role) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::Admins => role == Role::Admin,
            Audience::Staff { masters } => role != Role::Master || masters.contains(&user),
            Audience::Users(ids) => ids.contains(&user),
            Audience::Can(_) => false,
        }
    }

    /// Whether `v` may receive it, by audience alone (see [`Event::visible_to`]).
    pub fn admits(&self, v: &Viewer) -> bool {
        match self {
            Audience::Can(a) => v.perms.has(*a),
            other => other.includes(v.user, v.role),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// e.g. `order.created`, `order.updated`, `call.ringing`.
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
    #[serde(skip)]
    pub audience: Audience,
    /// The branch of the record it is about (an order's branch): only users of that
    /// branch receive it. None for events that belong to no branch.
    #[serde(skip)]
    pub branch: Option<i64>,
    /// Only viewers whose branch scope is exactly this get it: a snapshot cut to one
    /// scope (e.g. `call.live` for users of branches 1 and 2). None: any scope.
    #[serde(skip)]
    pub scope: Option<Branches>,
    /// The record belongs to several branches at once (a customer kept per branch who
    /// has orders in two): only users of at least one of them receive it. None: any.
    #[serde(skip)]
    pub any_of: Option<Arc<[i64]>>,
}

impl Event {
    pub fn new(kind: impl Into<String>, data: serde_json::Value, audience: Audience) -> Event {
        Event {
            kind: kind.into(),
            data,
            audience,
            branch: None,
            scope: None,
            any_of: None,
        }
    }

    /// The event is about a record of `branch`, or (None) of no branch: shop-wide.
    pub fn in_branch_opt(self, branch: Option<i64>) -> Event {
        match branch {
            Some(b) => self.in_branch(b),
            None => self,
        }
    }

    /// Only viewers whose branches are exactly `scope` receive it.
    pub fn for_scope(mut self, scope: Branches) -> Event {
        self.scope = Some(scope);
        self
    }

    /// The event is about a record of these branches (None: of none, shop-wide): users
    /// of none of them never get it.
    pub fn in_any_branch(mut self, branches: Option<Vec<i64>>) -> Event {
        self.any_of = branches.map(Into::into);
        self
    }

    /// The event is about a record of `branch`: users of other branches never get it.
    pub fn in_branch(mut self, branch: i64) -> Event {
        self.branch = Some(branch);
        self
    }

    /// The one check of who receives an event, live and on replay: the audience, then
    /// the branch scope.
    pub fn visible_to(&self, v: &Viewer) -> bool {
        self.audience.admits(v)
            && self.branch.is_none_or(|b| v.branches.contains(b))
            && self.scope.as_ref().is_none_or(|s| *s == v.branches)
            && self
                .any_of
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|b| v.branches.contains(*b)))
    }
}

/// Internal event (never sent as a frame): a user's access changed — role, disabled,
/// sessions ended, a token revoked. Data `{"user_id": N}`. The live hub re-checks that
/// user's open sockets on it: closes those whose session or token is no longer valid (or
/// whose user is disabled) and re-scopes the others to the current role. Published after
/// the change's commit, by the domain and by the CLI.
pub const USER_ACCESS_CHANGED: &str = "user.access_changed";

impl Event {
    /// A [`USER_ACCESS_CHANGED`] event for `user`.
    pub fn access_changed(user: UserId) -> Event {
        Event::new(
            USER_ACCESS_CHANGED,
            serde_json::json!({ "user_id": user }),
            Audience::Users(vec![]),
        )
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        EventBus {
            tx: broadcast::channel(capacity).0,
        }
    }

    /// Publishes an event. Call only after the change it describes has committed.
    pub fn publish(&self, e: Event) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(Arc::new(e));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
