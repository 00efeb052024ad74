//! The live-update hub: numbers committed events, keeps a short replay buffer, and fans
//! each event out to the connections whose user may see it. One task owns all state, so
//! there are no locks; connections talk to it over channels. A connection whose queue is
//! full (a slow or stuck client) is dropped instead of slowing everyone else.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::domain::accounts::{Accounts, Credential};
use crate::events::{Audience, Event, EventBus, Viewer, USER_ACCESS_CHANGED};
use crate::model::{Role, UserId};

/// How long re-checking one user's sockets may take before they are closed to be safe.
const RECHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Frames queued per connection before it counts as stuck.
pub const CLIENT_QUEUE: usize = 256;
/// Events kept for catch-up after a reconnect.
pub const REPLAY: usize = 2048;

pub type ConnId = u64;

/// A frame ready to send: the event serialised once, shared by every recipient.
pub type Frame = bytestring::ByteString;

struct Stored {
    seq: u64,
    frame: Frame,
    /// The event (its audience and branch decide who may replay it).
    event: Arc<Event>,
}

struct Conn {
    user: UserId,
    /// Whom the socket belongs to: role, permissions and branches.
    viewer: Viewer,
    tx: mpsc::Sender<Frame>,
    /// What the socket signed in with; re-checked when the user's access changes.
    cred: Option<Credential>,
    /// Set when the hub closes the socket because its access ended.
    revoked: Arc<AtomicBool>,
}

/// What a new connection gets back.
pub struct Joined {
    pub id: ConnId,
    pub rx: mpsc::Receiver<Frame>,
    /// The last sequence number issued.
    pub seq: u64,
    /// Frames missed since `last_seq`, oldest first.
    pub replay: Vec<Frame>,
    /// The gap was older than the buffer: the client must refetch.
    pub resync: bool,
    /// True once the hub closed the queue because the socket's access ended (its
    /// session or token is no longer valid, or its user was disabled).
    pub revoked: Arc<AtomicBool>,
}

enum Cmd {
    Join {
        viewer: Viewer,
        cred: Option<Credential>,
        last_seq: Option<u64>,
        reply: oneshot::Sender<Joined>,
    },
    Leave(ConnId),
    Presence(oneshot::Sender<Vec<UserId>>),
    Stats(oneshot::Sender<HubStats>),
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HubStats {
    pub connections: usize,
    pub users_online: usize,
    pub seq: u64,
    pub dropped_slow: u64,
}

#[derive(Clone)]
pub struct Hub {
    cmd: mpsc::UnboundedSender<Cmd>,
    /// The last sequence number issued, readable without a round trip: pages render it
    /// so their script can ask for anything that happened after the page was built.
    seq: Arc<AtomicU64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a serde_json::Value,
}

impl Hub {
    /// Starts the hub task, fed by `bus`, without access re-checks (tests, benchmarks).
    pub fn start(bus: &EventBus) -> Hub {
        Self::start_with(bus, None)
    }

    /// Starts the hub task, fed by `bus`; on [`USER_ACCESS_CHANGED`] it re-checks that
    /// user's sockets with `accounts`.
    pub fn start_with(bus: &EventBus, accounts: Option<Accounts>) -> Hub {
        let (cmd, rx) = mpsc::unbounded_channel();
        let events = bus.subscribe();
        let seq = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(rx, events, bus.clone(), seq.clone(), accounts));
        Hub { cmd, seq }
    }

    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Joins a socket of a built-in role in every branch (tests, benchmarks).
    pub async fn join(&self, user: UserId, role: Role, last_seq: Option<u64>) -> Option<Joined> {
        self.join_with(Viewer::builtin(user, role), None, last_seq)
            .await
    }

    /// Joins a socket of `viewer` that signed in with `cred` (re-checked on access
    /// changes).
    pub async fn join_with(
        &self,
        viewer: Viewer,
        cred: Option<Credential>,
        last_seq: Option<u64>,
    ) -> Option<Joined> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Join {
                viewer,
                cred,
                last_seq,
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    pub fn leave(&self, id: ConnId) {
        let _ = self.cmd.send(Cmd::Leave(id));
    }

    /// Users with at least one open connection.
    pub async fn online(&self) -> Vec<UserId> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Presence(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    pub async fn stats(&self) -> HubStats {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Stats(tx)).is_err() {
            return HubStats::default();
        }
        rx.await.unwrap_or_default()
    }
}

struct State {
    seq: u64,
    next_id: ConnId,
    buffer: VecDeque<Stored>,
    conns: HashMap<ConnId, Conn>,
    dropped_slow: u64,
    bus: EventBus,
    shared_seq: Arc<AtomicU64>,
}

impl State {
    fn per_user(&self, user: UserId) -> usize {
        self.conns.values().filter(|c| c.user == user).count()
    }

    fn publish(&mut self, e: Arc<Event>) {
        self.seq += 1;
        let json = serde_json::to_string(&Envelope {
            seq: self.seq,
            kind: &e.kind,
            data: &e.data,
        })
        .expect("event serialises");
        let frame: Frame = Frame::from(json);
        let mut slow = Vec::new();
        for (id, c) in &self.conns {
            if e.visible_to(&c.viewer) {
                match c.tx.try_send(frame.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        self.shared_seq.store(self.seq, Ordering::Release);
        if self.buffer.len() == REPLAY {
            self.buffer.pop_front();
        }
        self.buffer.push_back(Stored {
            seq: self.seq,
            frame,
            event: e,
        });
        for id in slow {
            // Dropping the sender ends the connection's queue: it closes itself.
            self.dropped_slow += 1;
            self.remove(id);
        }
    }

    fn remove(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            if self.per_user(c.user) == 0 {
                self.presence(c.user, false);
            }
        }
    }

    fn presence(&self, user: UserId, online: bool) {
        // Through the bus, so it is numbered and replayed like any other event.
        self.bus.publish(Event::new(
            "user.presence",
            serde_json::json!({"user_id": user, "online": online}),
            Audience::Everyone,
        ));
    }

    /// A user's access changed: each of their sockets is closed when what it signed in
    /// with no longer signs anyone in (or the check fails), else re-scoped to the user's
    /// current role, permissions and branches. Runs inside the hub loop, so no event after
    /// the change is offered under the old scope.
    async fn access_changed(&mut self, e: &Event, accounts: Option<&Accounts>) {
        let (Some(user), Some(accounts)) = (e.data["user_id"].as_i64(), accounts) else {
            return;
        };
        let mine: Vec<(ConnId, Option<Credential>)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.user == user)
            .map(|(id, c)| (*id, c.cred.clone()))
            .collect();
        let mut verdicts: Vec<(Credential, Option<Viewer>)> = Vec::new();
        for (id, cred) in mine {
            let Some(cred) = cred else { continue };
            let role = match verdicts.iter().find(|(c, _)| *c == cred) {
                Some((_, r)) => r.clone(),
                None => {
                    let r = match tokio::time::timeout(
                        RECHECK_TIMEOUT,
                        accounts.credential_actor(&cred),
                    )
                    .await
                    {
                        Ok(Ok(Some(a))) if a.user_id == user => Some(Viewer::from(&a)),
                        Ok(Ok(_)) => None,
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, user, "live socket re-check failed: closing");
                            None
                        }
                        Err(_) => {
                            tracing::warn!(user, "live socket re-check timed out: closing");
                            None
                        }
                    };
                    verdicts.push((cred, r.clone()));
                    r
                }
            };
            match role {
                Some(viewer) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.viewer = viewer;
                    }
                }
                None => {
                    if let Some(c) = self.conns.get(&id) {
                        c.revoked.store(true, Ordering::Release);
                    }
                    self.remove(id);
                }
            }
        }
    }

    fn join(&mut self, viewer: Viewer, cred: Option<Credential>, last_seq: Option<u64>) -> Joined {
        let user = viewer.user;
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = self.next_id;
        self.next_id += 1;
        let (replay, resync) = match last_seq {
            None => (Vec::new(), false),
            Some(last) if last >= self.seq => (Vec::new(), false),
            Some(last) => {
                let oldest = self.buffer.front().map(|s| s.seq).unwrap_or(self.seq + 1);
                if last + 1 < oldest {
                    (Vec::new(), true)
                } else {
                    let frames = self
                        .buffer
                        .iter()
                        .filter(|s| s.seq > last && s.event.visible_to(&viewer))
                        .map(|s| s.frame.clone())
                        .collect();
                    (frames, false)
                }
            }
        };
        let first = self.per_user(user) == 0;
        let revoked = Arc::new(AtomicBool::new(false));
        self.conns.insert(
            id,
            Conn {
                user,
                viewer,
                tx,
                cred,
                revoked: revoked.clone(),
            },
        );
        if first {
            self.presence(user, true);
        }
        Joined {
            id,
            rx,
            seq: self.seq,
            replay,
            resync,
            revoked,
        }
    }
}

async fn run(
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    mut events: broadcast::Receiver<Arc<Event>>,
    bus: EventBus,
    shared_seq: Arc<AtomicU64>,
    accounts: Option<Accounts>,
) {
    let mut st = State {
        seq: 0,
        next_id: 1,
        buffer: VecDeque::with_capacity(REPLAY),
        conns: HashMap::new(),
        dropped_slow: 0,
        bus,
        shared_seq,
    };
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Join { viewer, cred, last_seq, reply }) => {
                    let _ = reply.send(st.join(viewer, cred, last_seq));
                }
                Some(Cmd::Leave(id)) => st.remove(id),
                Some(Cmd::Presence(reply)) => {
                    let mut users: Vec<UserId> = st.conns.values().map(|c| c.user).collect();
                    users.sort_unstable();
                    users.dedup();
                    let _ = reply.send(users);
                }
                Some(Cmd::Stats(reply)) => {
                    let mut users: Vec<UserId> = st.conns.values().map(|c| c.user).collect();
                    users.sort_unstable();
                    users.dedup();
                    let _ = reply.send(HubStats {
                        connections: st.conns.len(),
                        users_online: users.len(),
                        seq: st.seq,
                        dropped_slow: st.dropped_slow,
                    });
                }
            },
            ev = events.recv() => match ev {
                // Internal: never numbered nor sent.
                Ok(e) if e.kind == USER_ACCESS_CHANGED => {
                    st.access_changed(&e, accounts.as_ref()).await
                }
                Ok(e) => st.publish(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // The hub itself fell behind the bus: everyone must refetch.
                    tracing::warn!(missed = n, "live hub lagged behind the event bus");
                    st.publish(Arc::new(Event::new("resync", serde_json::json!({}), Audience::Everyone)));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut mpsc::Receiver<Frame>) -> serde_json::Value {
        let f = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv())
            .await
            .expect("frame in time")
            .expect("open");
        serde_json::from_str(&f).unwrap()
    }

    #[tokio::test]
    async fn audience_replay_and_slow_clients() {
        let bus = EventBus::default();
        let hub = Hub::start(&bus);
        let mut op = hub.join(1, Role::Operator, None).await.unwrap();
        let mut m2 = hub.join(2, Role::Master, None).await.unwrap();
        let mut m3 = hub.join(3, Role::Master, None).await.unwrap();
        // Presence of each joiner (operator sees all three).
        for _ in 0..3 {
            assert_eq!(next(&mut op.rx).await["type"], "user.presence");
        }
        bus.publish(Event::new(
            "order.updated",
            serde_json::json!({"id": 7}),
            Audience::Staff { masters: vec![2] },
        ));
        let e = next(&mut op.rx).await;
        assert_eq!(e["type"], "order.updated");
        let seq = e["seq"].as_u64().unwrap();
        // Master 2 gets it (after presence frames); master 3 never does.
        loop {
            let e = next(&mut m2.rx).await;
            if e["type"] == "order.updated" {
                break;
            }
        }
        while let Ok(f) = m3.rx.try_recv() {
            let v: serde_json::Value = serde_json::from_str(&f).unwrap();
            assert_ne!(v["type"], "order.updated");
        }
        // Replay after a reconnect: only what this user may see, after last_seq.
        let r = hub.join(3, Role::Master, Some(seq - 1)).await.unwrap();
        assert!(r.replay.iter().all(|f| !f.contains("order.updated")));
        let r = hub.join(1, Role::Operator, Some(seq - 1)).await.unwrap();
        assert_eq!(r.replay.len(), 1);
        assert!(!r.resync);

        // A client that never reads is dropped once its queue fills; a client that keeps
        // reading gets everything.
        for batch in 0..3 {
            for i in 0..100 {
                bus.publish(Event::new(
                    "notice",
                    serde_json::json!({"i": batch * 100 + i}),
                    Audience::Everyone,
                ));
            }
            let mut got = 0;
            while got < 100 {
                if next(&mut op.rx).await["type"] == "notice" {
                    got += 1;
                }
            }
        }
        let stats = hub.stats().await;
        assert!(stats.dropped_slow >= 2, "{stats:?}");
        // The dropped master's queue is closed after what it had buffered.
        let mut closed = false;
        for _ in 0..=CLIENT_QUEUE {
            if m3.rx.recv().await.is_none() {
                closed = true;
                break;
            }
        }
        assert!(closed, "a stuck client is disconnected");
        // A gap older than the buffer asks for a resync.
        let target = hub.stats().await.seq + REPLAY as u64;
        for i in 0..REPLAY {
            bus.publish(Event::new(
                "notice",
                serde_json::json!({"i": i}),
                Audience::Everyone,
            ));
        }
        while hub.stats().await.seq < target {
            tokio::task::yield_now().await;
        }
        let r = hub.join(1, Role::Operator, Some(1)).await.unwrap();
        assert!(r.resync);
    }
}
