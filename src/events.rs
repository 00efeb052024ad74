//! The in-process event bus: domain code publishes a change after its transaction has
//! committed; the WebSocket hub (and later other listeners) deliver it to those allowed
//! to see it.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::{Role, UserId};

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
}

impl Audience {
    pub fn includes(&self, user: UserId, role: Role) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::Admins => role == Role::Admin,
            Audience::Staff { masters } => role != Role::Master || masters.contains(&user),
            Audience::Users(ids) => ids.contains(&user),
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
}

impl Event {
    pub fn new(kind: impl Into<String>, data: serde_json::Value, audience: Audience) -> Event {
        Event {
            kind: kind.into(),
            data,
            audience,
        }
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
