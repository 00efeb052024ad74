//! Calls: turns the SIP proxy's call events into the call log, the screen-pop, the live
//! call status and missed-call entries.
//!
//! Two tasks, in order of the events: the *pop* task builds the screen-pop from one read
//! (phone lookup, open orders, balance, last call) and publishes `call.ringing` at once —
//! no fsync on that path — then hands every event to the *log* task, which writes the rows
//! through the single writer (batched) and publishes `call.answered`, `call.ended` and
//! `call.live` after each commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::access::Branches;
use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::calls::{self as q, ExtUser, NewCall};
pub use crate::db::calls::{CallFilter, CallRow, MissedRow, OpenOrder, OrderRef};
use crate::db::Db;
use crate::events::{Audience, Event, EventBus};
use crate::model::phone::Country;
use crate::model::{PhoneNumber, Role};
use crate::sip::{CallDirection, CallEvent};

/// How a call ended, as the log and the filters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    /// Nobody picked up before the caller hung up (calls toward the office).
    Missed,
    Busy,
    NoAnswer,
    /// The caller gave up on an outbound call.
    Cancelled,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Answered,
        Outcome::Missed,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Cancelled,
        Outcome::Failed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Missed => "missed",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.code() == s)
    }

    /// Unanswered in a way that leaves someone to call back.
    pub fn is_missed(self) -> bool {
        matches!(self, Outcome::Missed | Outcome::NoAnswer | Outcome::Busy)
    }
}

pub fn direction_code(d: CallDirection) -> &'static str {
    match d {
        CallDirection::Internal => "internal",
        CallDirection::Inbound => "inbound",
        CallDirection::Outbound => "outbound",
    }
}

pub fn parse_direction(s: &str) -> Option<CallDirection> {
    match s {
        "internal" => Some(CallDirection::Internal),
        "inbound" => Some(CallDirection::Inbound),
        "outbound" => Some(CallDirection::Outbound),
        _ => None,
    }
}

/// Maps the proxy's end cause to an outcome. `answered`: an Answered event was seen.
/// A caller hanging up while it rings is a missed call when the call came to the office,
/// but only a cancelled attempt when someone in the office was calling out.
pub fn outcome_for(cause: &str, answered: bool, direction: CallDirection) -> Outcome {
    if answered || cause == "completed" {
        return Outcome::Answered;
    }
    let toward_office = direction != CallDirection::Outbound;
    match cause {
        "cancelled" | "status_487" if toward_office => Outcome::Missed,
        "cancelled" | "status_487" => Outcome::Cancelled,
        "no_answer" | "status_408" | "status_480" => Outcome::NoAnswer,
        "status_486" | "status_600" => Outcome::Busy,
        "status_603" if toward_office => Outcome::Missed,
        "status_603" => Outcome::Busy,
        _ => Outcome::Failed,
    }
}

/// What a call does to the missed-call list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissedAction {
    /// One more unanswered call from this number.
    Record(String),
    /// Close this number's open entry: the caller got through, or it was called back.
    Resolve { number: String, how: &'static str },
}

/// The rules: an unanswered call toward the office opens (or bumps) the caller's entry;
/// an answered call resolves the caller's entry (they got through) and, unless it came in
/// from outside, the callee's (someone called that number back). Outbound calls that fail
/// open nothing: the office was the caller.
pub fn missed_actions(
    direction: CallDirection,
    caller: &str,
    callee: &str,
    outcome: Outcome,
) -> Vec<MissedAction> {
    let mut v = Vec::new();
    match (outcome, direction) {
        (Outcome::Answered, CallDirection::Inbound) => v.push(MissedAction::Resolve {
            number: caller.into(),
            how: "got_through",
        }),
        (Outcome::Answered, CallDirection::Outbound) => v.push(MissedAction::Resolve {
            number: callee.into(),
            how: "called_back",
        }),
        (Outcome::Answered, CallDirection::Internal) => {
            v.push(MissedAction::Resolve {
                number: caller.into(),
                how: "got_through",
            });
            v.push(MissedAction::Resolve {
                number: callee.into(),
                how: "called_back",
            });
        }
        (o, CallDirection::Inbound | CallDirection::Internal) if o.is_missed() => {
            v.push(MissedAction::Record(caller.into()))
        }
        _ => {}
    }
    v
}

/// A number as the log keys it: E.164 when it parses as a phone number, else as sent
/// (an extension, or something odd a provider sent).
pub fn normalise(raw: &str, country: Country) -> String {
    let raw = raw.trim();
    if raw.len() <= 6 && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.to_string();
    }
    PhoneNumber::parse(raw, country)
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|_| raw.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A call in progress, kept in memory for the header and the users list.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    pub direction: &'static str,
    /// The other party (normalised).
    pub number: String,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub answered_ext: Option<String>,
    pub answered_user_id: Option<i64>,
    pub answered_user_name: Option<String>,
    /// Users whose phones ring(ed) for this call.
    #[serde(skip)]
    pub rung: Vec<ExtUser>,
    #[serde(skip)]
    caller: String,
    #[serde(skip)]
    callee: String,
    #[serde(skip)]
    dir: Option<CallDirection>,
    /// The branch the call belongs to (None: shop-wide).
    #[serde(skip)]
    pub branch: Option<i64>,
    /// With customers kept per branch, the branches the caller (as a customer) is of:
    /// users of none of them see the number alone. None: everyone may see the customer.
    #[serde(skip)]
    customer_of: Option<Vec<i64>>,
    /// The screen-pops sent while it rang, with the users each went to: a screen opened
    /// meanwhile (the operator moved to another page) gets them again.
    #[serde(skip)]
    pops: Vec<(Vec<i64>, serde_json::Value)>,
}

impl LiveCall {
    /// The call as users of `scope` see it: the caller's name and id only when the
    /// customer is theirs (see [`LiveCall::customer_of`]).
    fn seen_by(&self, scope: &Branches) -> LiveCall {
        let mut k = self.clone();
        if let Some(of) = &self.customer_of {
            if !of.iter().any(|b| scope.contains(*b)) {
                k.customer_id = None;
                k.customer_name = None;
            }
        }
        k
    }
}

/// A call the box holds on a park orbit, for the operators' live view.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedCall {
    /// The call that was parked (its row ends with cause `parked_<orbit>`).
    pub call_id: String,
    pub orbit: String,
    /// The extension that parked it.
    pub by: String,
    /// Who waits (normalised, as the log keys numbers).
    pub number: String,
    pub since_ms: i64,
    /// The branch of the parked call (None: shop-wide).
    #[serde(skip)]
    pub branch: Option<i64>,
}

/// The call log, missed calls and live status.
#[derive(Clone)]
pub struct Calls {
    db: Db,
    events: EventBus,
    live: Arc<Mutex<HashMap<String, LiveCall>>>,
    parked: Arc<Mutex<Vec<ParkedCall>>>,
    /// Masters on a call at the last `call.live`, so they also hear when it ends.
    live_masters: Arc<Mutex<Vec<i64>>>,
    /// Wakes the live-status publisher: many commits in a burst become one `call.live`.
    live_changed: Arc<tokio::sync::Notify>,
    clock: super::clock::Clock,
}

/// The screen-pop's view of the caller, from one read.
#[derive(Debug, Clone, Serialize)]
pub struct PopCustomer {
    pub id: i64,
    pub name: String,
    pub balance: i64,
    pub balance_text: String,
    pub orders: Vec<PopOrder>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PopOrder {
    pub id: i64,
    pub number: String,
    /// Status name per language code.
    pub status: HashMap<&'static str, String>,
    pub status_group: String,
    pub promised: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PopLastCall {
    pub started_ms: i64,
    /// `dd.mm.yyyy HH:MM` in shop time, as the pages show times.
    pub started_text: String,
    pub outcome: String,
    pub answered_by: Option<String>,
}

struct PopData {
    users: Vec<ExtUser>,
    /// The caller as the call log keeps them (every branch's orders of the call).
    customer: Option<PopCustomer>,
    /// The caller as each recipient branch scope sees them: the pop is per recipient.
    views: Vec<(Branches, Option<PopCustomer>)>,
    open_orders: Vec<OrderRef>,
    last_call: Option<PopLastCall>,
    /// A transferred call: the extension that passed it on and its user's name.
    transferred_by: Option<serde_json::Value>,
    /// The branch the call belongs to ([`q::branch_of_call`]).
    branch: Option<i64>,
    /// The branches of the logged customer when customers are kept per branch
    /// ([`LiveCall::customer_of`]).
    customer_of: Option<Vec<i64>>,
}

enum LogOp {
    Ringing {
        call_id: String,
        direction: CallDirection,
        from: String,
        to: String,
        party: String,
        group: Option<String>,
        extensions: Vec<String>,
        customer_id: Option<i64>,
        open_orders: Vec<OrderRef>,
        transferred_by: Option<String>,
        transferred_from: Option<String>,
        branch: Option<i64>,
        at_ms: i64,
    },
    Answered {
        call_id: String,
        extension: String,
        at_ms: i64,
    },
    Ended {
        call_id: String,
        cause: String,
        ring_ms: u64,
        talk_ms: u64,
        at_ms: i64,
    },
}

/// The running consumer; [`Consumer::stop`] drains what is queued and ends it.
pub struct Consumer {
    stop: watch::Sender<bool>,
    pop: JoinHandle<()>,
    log: JoinHandle<()>,
    live: JoinHandle<()>,
}

impl Consumer {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.pop.await;
        let _ = self.log.await;
        self.live.abort();
        let _ = self.live.await;
    }
}

/// The shortest time between two `call.live` publications. The first change goes out at
/// once; changes during the pause are sent together after it. Each publication carries
/// every call on air, so one per commit would cost O(calls) per call event at a busy
/// moment (measured: most of the server's CPU at 1 600 calls/s).
const LIVE_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

impl Calls {
    pub fn new(db: Db, events: EventBus, clock: super::clock::Clock) -> Calls {
        Calls {
            db,
            events,
            clock,
            live: Arc::default(),
            parked: Arc::default(),
            live_masters: Arc::default(),
            live_changed: Arc::default(),
        }
    }

    /// The shop clock (call lists filter by shop days).
    pub fn clock(&self) -> super::clock::ShopClock {
        self.clock.get()
    }

    fn country(&self) -> Country {
        self.clock.get().country()
    }

    /// Starts turning `rx`'s call events into rows and live events.
    pub async fn start(&self, rx: broadcast::Receiver<CallEvent>) -> Consumer {
        let at_ms = now_ms();
        match self
            .db
            .write(move |c| crate::db::calls::close_interrupted(c, at_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(calls = n, "calls: closed the calls the last run left open"),
            Err(e) => tracing::warn!(error = %e, "calls: could not close interrupted calls"),
        }
        let (stop, stopped) = watch::channel(false);
        let (tx, log_rx) = mpsc::unbounded_channel();
        let pop = tokio::spawn(self.clone().pop_task(rx, tx, stopped));
        let log = tokio::spawn(self.clone().log_task(log_rx));
        let live = tokio::spawn(self.clone().live_task());
        Consumer {
            stop,
            pop,
            log,
            live,
        }
    }

    async fn pop_task(
        self,
        mut rx: broadcast::Receiver<CallEvent>,
        tx: mpsc::UnboundedSender<LogOp>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = stopped.changed() => {
                    // Whatever the proxy emitted before it stopped still gets logged.
                    while let Ok(ev) = rx.try_recv() {
                        self.on_event(ev, &tx).await;
                    }
                    return;
                }
            };
            match ev {
                Ok(ev) => self.on_event(ev, &tx).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "calls: fell behind the SIP call events");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn on_event(&self, ev: CallEvent, tx: &mpsc::UnboundedSender<LogOp>) {
        let at_ms = now_ms();
        let op = match ev {
            CallEvent::Ringing {
                call_id,
                direction,
                from,
                to,
                group,
                extensions,
                transferred_by,
                transferred_from,
            } => {
                let country = self.country();
                let party = match direction {
                    CallDirection::Outbound => normalise(&to, country),
                    _ => normalise(&from, country),
                };
                let how = CallPath {
                    inbound: direction == CallDirection::Inbound,
                    from: &from,
                    to: &to,
                    group: group.as_deref(),
                    transferred_from: transferred_from.as_deref(),
                };
                let pop = match self
                    .pop_data(&party, &extensions, transferred_by.as_deref(), at_ms, how)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "calls: screen-pop lookup failed");
                        PopData {
                            users: Vec::new(),
                            customer: None,
                            views: Vec::new(),
                            open_orders: Vec::new(),
                            last_call: None,
                            transferred_by: None,
                            branch: None,
                            customer_of: None,
                        }
                    }
                };
                let started =
                    self.remember_ringing(&call_id, direction, &from, &to, &party, &pop, at_ms);
                self.publish_ringing(
                    &call_id,
                    direction,
                    &party,
                    &from,
                    &to,
                    &group,
                    &extensions,
                    &pop,
                    started,
                );
                LogOp::Ringing {
                    call_id,
                    direction,
                    from,
                    to,
                    party,
                    group,
                    extensions,
                    customer_id: pop.customer.as_ref().map(|c| c.id),
                    open_orders: pop.open_orders,
                    transferred_by,
                    transferred_from,
                    branch: pop.branch,
                    at_ms,
                }
            }
            CallEvent::Parked {
                call_id,
                orbit,
                by,
                party,
            } => {
                let branch = self.branch_of(&call_id).await;
                let p = ParkedCall {
                    call_id,
                    orbit,
                    by,
                    number: normalise(&party, self.country()),
                    since_ms: at_ms,
                    branch,
                };
                {
                    let mut v = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                    v.retain(|x| x.orbit != p.orbit);
                    v.push(p.clone());
                }
                self.events.publish(
                    Event::new(
                        "call.parked",
                        serde_json::to_value(&p).unwrap_or_default(),
                        Audience::Staff { masters: vec![] },
                    )
                    .in_branch_opt(branch),
                );
                self.live_changed.notify_one();
                return;
            }
            CallEvent::Unparked {
                call_id,
                orbit,
                cause,
                by,
            } => {
                let branch = {
                    let mut v = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                    let b = v.iter().find(|x| x.orbit == orbit).and_then(|x| x.branch);
                    v.retain(|x| x.orbit != orbit);
                    b
                };
                self.events.publish(
                    Event::new(
                        "call.unparked",
                        serde_json::json!({"call_id": call_id, "orbit": orbit, "cause": cause, "by": by}),
                        Audience::Staff { masters: vec![] },
                    )
                    .in_branch_opt(branch),
                );
                self.live_changed.notify_one();
                return;
            }
            CallEvent::Answered { call_id, extension } => LogOp::Answered {
                call_id,
                extension,
                at_ms,
            },
            CallEvent::Ended {
                call_id,
                cause,
                ring_ms,
                talk_ms,
            } => LogOp::Ended {
                call_id,
                cause,
                ring_ms,
                talk_ms,
                at_ms,
            },
        };
        let _ = tx.send(op);
    }

    async fn pop_data(
        &self,
        party: &str,
        exts: &[String],
        transferred_by: Option<&str>,
        at_ms: i64,
        how: CallPath<'_>,
    ) -> DomainResult<PopData> {
        let clock = self.clock.get();
        let (inbound, from, to) = (how.inbound, how.from.to_string(), how.to.to_string());
        let group = how.group.map(str::to_string);
        let prev = how.transferred_from.map(str::to_string);
        let party = party.to_string();
        let exts = exts.to_vec();
        let by = transferred_by.map(str::to_string);
        Ok(self
            .db
            .read(move |c| {
                let date_text = |t: i64| clock.format_date(t);
                // Read here rather than awaited apart: one trip to the pool for the pop.
                let money_fmt =
                    super::shop::parse(crate::db::settings::get(c, super::shop::SETTINGS_KEY)?);
                let branch = q::branch_of_call(
                    c,
                    inbound,
                    &from,
                    &to,
                    group.as_deref(),
                    &exts,
                    prev.as_deref(),
                )?;
                let users = q::users_of_extensions(c, &exts)?;
                let statuses = crate::db::orders::statuses(c)?;
                // The caller as the users of `scope` may see them: with customers kept per
                // branch only their branches' customer; a branch's call shows that branch's
                // orders, a shop-wide call the orders of the recipient's branches.
                let view = |scope: Option<&[i64]>| -> crate::db::DbResult<(Option<PopCustomer>, Vec<OrderRef>)> {
                    if !party.starts_with('+') {
                        return Ok((None, Vec::new()));
                    }
                    let cust_scope = super::customers::scope(c, scope)?;
                    let Some(cu) = crate::db::customers::by_phone_in(c, &party, cust_scope)?
                        .into_iter()
                        .next()
                    else {
                        return Ok((None, Vec::new()));
                    };
                    let only: Option<Vec<i64>> = match branch {
                        Some(b) => Some(vec![b]),
                        None => scope.map(<[i64]>::to_vec),
                    };
                    let (orders, balance) =
                        q::open_orders_and_balance_in(c, cu.id, only.as_deref())?;
                    let refs = orders
                        .iter()
                        .map(|o| OrderRef {
                            id: o.id,
                            number: o.number.clone(),
                        })
                        .collect();
                    let orders = orders
                        .into_iter()
                        .map(|o| {
                            let s = statuses.iter().find(|s| s.id == o.status_id);
                            let mut names = HashMap::new();
                            if let Some(s) = s {
                                names.insert("uz", s.name_uz.clone());
                                names.insert("uz-Cyrl", s.name_uz_cyrl.clone());
                                names.insert("ru", s.name_ru.clone());
                                names.insert("en", s.name_en.clone());
                            }
                            PopOrder {
                                id: o.id,
                                number: o.number,
                                status: names,
                                status_group: s.map(|s| s.group.clone()).unwrap_or_default(),
                                promised: o.promised_at.map(&date_text),
                            }
                        })
                        .collect();
                    Ok((
                        Some(PopCustomer {
                            id: cu.id,
                            name: cu.name,
                            balance,
                            // Unsigned: the card names an overpayment as one.
                            balance_text: money_fmt.money(balance.abs()),
                            orders,
                        }),
                        refs,
                    ))
                };
                // The call log's view: every branch's.
                let (customer, open_orders) = view(None)?;
                let customer_of = match &customer {
                    Some(cu) if crate::db::customers::per_branch(c)? => {
                        crate::db::customers::branches_of(c, cu.id)?
                    }
                    _ => None,
                };
                // Each recipient's: one per distinct branch scope among them.
                let mut views: Vec<(Branches, Option<PopCustomer>)> = Vec::new();
                for u in &users {
                    let scope = Branches::from_ids(u.branch_ids.clone());
                    if !views.iter().any(|(s, _)| *s == scope) {
                        let v = view(scope.only())?.0;
                        views.push((scope, v));
                    }
                }
                let last_call = q::last_call_with(c, &party, at_ms, branch)?.map(|k| PopLastCall {
                    started_ms: k.started_ms,
                    started_text: clock.format_datetime(k.started_ms.div_euclid(1000)),
                    outcome: k.outcome,
                    answered_by: k.answered_user_name,
                });
                // Who passed the call on: their extension and, when linked, their name.
                let transferred_by = match by {
                    Some(ext) => {
                        let name = q::users_of_extensions(c, std::slice::from_ref(&ext))?
                            .into_iter()
                            .next()
                            .map(|u| u.display_name);
                        Some(serde_json::json!({ "extension": ext, "name": name }))
                    }
                    None => None,
                };
                Ok(PopData {
                    users,
                    customer,
                    views,
                    open_orders,
                    last_call,
                    transferred_by,
                    branch,
                    customer_of,
                })
            })
            .await?)
    }

    /// The branch of a logged call (None: shop-wide or unknown).
    async fn branch_of(&self, call_id: &str) -> Option<i64> {
        let id = call_id.to_string();
        self.db
            .read(move |c| Ok(q::by_call_id(c, &id)?.and_then(|k| k.branch_id)))
            .await
            .unwrap_or(None)
    }

    /// Remembers the call; returns its start (the first Ringing's time).
    #[allow(clippy::too_many_arguments)]
    fn remember_ringing(
        &self,
        call_id: &str,
        direction: CallDirection,
        from: &str,
        to: &str,
        party: &str,
        pop: &PopData,
        at_ms: i64,
    ) -> i64 {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        // A call whose end never arrived (events lost while lagging) does not stay "live".
        live.retain(|_, k| at_ms - k.started_ms < STALE_MS);
        let entry = live.entry(call_id.to_string()).or_insert_with(|| LiveCall {
            call_id: call_id.to_string(),
            direction: direction_code(direction),
            number: party.to_string(),
            customer_id: pop.customer.as_ref().map(|c| c.id),
            customer_name: pop.customer.as_ref().map(|c| c.name.clone()),
            started_ms: at_ms,
            answered_ms: None,
            answered_ext: None,
            answered_user_id: None,
            answered_user_name: None,
            rung: Vec::new(),
            caller: from.to_string(),
            callee: to.to_string(),
            dir: Some(direction),
            pops: Vec::new(),
            branch: pop.branch,
            customer_of: pop.customer_of.clone(),
        });
        for u in &pop.users {
            if !entry
                .rung
                .iter()
                .any(|r| r.user_id == u.user_id && r.extension == u.extension)
            {
                entry.rung.push(u.clone());
            }
        }
        entry.started_ms
    }

    #[allow(clippy::too_many_arguments)]
    fn publish_ringing(
        &self,
        call_id: &str,
        direction: CallDirection,
        party: &str,
        from: &str,
        to: &str,
        group: &Option<String>,
        extensions: &[String],
        pop: &PopData,
        started_ms: i64,
    ) {
        let ids = |v: &[&ExtUser]| {
            let mut ids: Vec<i64> = v.iter().map(|u| u.user_id).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let data = |customer: serde_json::Value, last_call: Option<&PopLastCall>| {
            serde_json::json!({
                "call_id": call_id,
                "direction": direction_code(direction),
                "number": party,
                "from": from,
                "to": to,
                "group": group,
                "extensions": extensions,
                "customer": customer,
                "last_call": last_call,
                "transferred_by": pop.transferred_by,
                "started_ms": started_ms,
                "now_ms": now_ms(),
            })
        };
        // What each user's card holds follows the permission table: the customer's
        // account with ViewCustomers (else who calls, on their own phone), the last call
        // (when, who answered) with ViewCalls; and their branch scope: the caller and
        // orders as users of those branches see them (`PopData::views`).
        let mut sent = Vec::new();
        for (scope, customer) in &pop.views {
            for (customers, calls) in [(true, true), (true, false), (false, true), (false, false)] {
                let group: Vec<&ExtUser> = pop
                    .users
                    .iter()
                    .filter(|u| {
                        may(&u.role, super::Action::ViewCustomers) == customers
                            && may(&u.role, super::Action::ViewCalls) == calls
                            && Branches::from_ids(u.branch_ids.clone()) == *scope
                    })
                    .collect();
                let group_ids = ids(&group);
                if group_ids.is_empty() {
                    continue;
                }
                let c = if customers {
                    serde_json::to_value(customer).unwrap_or_default()
                } else {
                    customer
                        .as_ref()
                        .map(|c| serde_json::json!({"id": c.id, "name": c.name, "limited": true}))
                        .unwrap_or(serde_json::Value::Null)
                };
                let d = data(c, pop.last_call.as_ref().filter(|_| calls));
                sent.push((group_ids.clone(), d.clone()));
                self.events.publish(
                    Event::new("call.ringing", d, Audience::Users(group_ids))
                        .in_branch_opt(pop.branch)
                        .for_scope(scope.clone()),
                );
            }
        }
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = live.get_mut(call_id) {
            k.pops = sent;
        }
    }

    /// The screen-pops of calls ringing now on `user`'s phones (none once answered), as
    /// `call.ringing` data: for a screen that opens while they ring.
    pub fn ringing_for(&self, actor: &Actor) -> Vec<serde_json::Value> {
        let user = actor.user_id;
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let mut out: Vec<(i64, serde_json::Value)> = live
            .values()
            .filter(|k| k.answered_ms.is_none())
            .filter(|k| k.branch.is_none_or(|b| actor.branches.contains(b)))
            .flat_map(|k| {
                k.pops
                    .iter()
                    .filter(|(ids, _)| ids.contains(&user))
                    .map(|(_, d)| (k.started_ms, d.clone()))
            })
            .collect();
        out.sort_by_key(|(started, _)| *started);
        out.into_iter()
            .map(|(_, mut d)| {
                d["now_ms"] = serde_json::json!(now);
                d
            })
            .collect()
    }

    async fn live_task(self) {
        loop {
            self.live_changed.notified().await;
            let scopes = self.db.read(q::branch_scopes).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "calls: could not read the users' branches");
                Vec::new()
            });
            self.publish_live(&scopes);
            tokio::time::sleep(LIVE_MIN_INTERVAL).await;
        }
    }

    async fn log_task(self, mut rx: mpsc::UnboundedReceiver<LogOp>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.write_batch(batch).await;
        }
    }

    async fn write_batch(&self, batch: Vec<LogOp>) {
        // Everything the closure needs about each call, taken from memory up front.
        let live: HashMap<String, LiveCall> = {
            let l = self.live.lock().unwrap_or_else(|e| e.into_inner());
            batch
                .iter()
                .filter_map(|op| {
                    let id = match op {
                        LogOp::Ringing { call_id, .. }
                        | LogOp::Answered { call_id, .. }
                        | LogOp::Ended { call_id, .. } => call_id,
                    };
                    l.get(id).map(|c| (id.clone(), c.clone()))
                })
                .collect()
        };
        let country = self.country();
        let result = self
            .db
            .write(move |c| {
                let mut done: Vec<Done> = Vec::new();
                for op in &batch {
                    apply(c, op, &live, country, &mut done)?;
                }
                Ok(done)
            })
            .await;
        match result {
            Ok(done) => self.after_commit(done),
            Err(e) => tracing::error!(error = %e, "calls: writing the call log failed"),
        }
    }

    fn after_commit(&self, done: Vec<Done>) {
        let mut live_changed = false;
        for d in done {
            match d {
                Done::Answered {
                    call_id,
                    ext,
                    user_id,
                    name,
                    at_ms,
                    branch,
                } => {
                    let rung = {
                        let mut l = self.live.lock().unwrap_or_else(|e| e.into_inner());
                        match l.get_mut(&call_id) {
                            Some(k) => {
                                k.answered_ms = Some(at_ms);
                                k.answered_ext = Some(ext.clone());
                                k.answered_user_id = user_id;
                                k.answered_user_name = Some(name.clone());
                                k.rung.clone()
                            }
                            None => Vec::new(),
                        }
                    };
                    // Who answered is call-log information: those who may see calls get
                    // the name; the others (masters) only whether it was them.
                    let (mut ids, mut others): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
                    for u in &rung {
                        if may(&u.role, super::Action::ViewCalls) {
                            ids.push(u.user_id);
                        } else {
                            others.push(u.user_id);
                        }
                    }
                    for v in [&mut ids, &mut others] {
                        v.sort_unstable();
                        v.dedup();
                    }
                    if !ids.is_empty() {
                        self.events.publish(
                            Event::new(
                                "call.answered",
                                serde_json::json!({"call_id": call_id, "extension": ext, "user_id": user_id, "by": name}),
                                Audience::Users(ids),
                            )
                            .in_branch_opt(branch),
                        );
                    }
                    for other in others {
                        let me = (user_id == Some(other)).then_some(other);
                        self.events.publish(
                            Event::new(
                                "call.answered",
                                serde_json::json!({"call_id": call_id, "extension": null, "user_id": me, "by": null}),
                                Audience::Users(vec![other]),
                            )
                            .in_branch_opt(branch),
                        );
                    }
                    live_changed = true;
                }
                Done::Ended {
                    call_id,
                    outcome,
                    branch,
                } => {
                    let gone = self
                        .live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&call_id);
                    let mut ids: Vec<i64> = gone
                        .map(|k| k.rung.iter().map(|u| u.user_id).collect())
                        .unwrap_or_default();
                    ids.sort_unstable();
                    ids.dedup();
                    if !ids.is_empty() {
                        self.events.publish(
                            Event::new(
                                "call.ended",
                                serde_json::json!({"call_id": call_id, "outcome": outcome.code()}),
                                Audience::Users(ids),
                            )
                            .in_branch_opt(branch),
                        );
                    }
                    live_changed = true;
                    if outcome.is_missed() {
                        self.events.publish(
                            Event::new(
                                "call.missed",
                                serde_json::json!({"call_id": call_id}),
                                Audience::Staff { masters: vec![] },
                            )
                            .in_branch_opt(branch),
                        );
                    }
                }
                Done::Resolved { branch } => {
                    self.events.publish(
                        Event::new(
                            "call.missed",
                            serde_json::json!({"resolved": true}),
                            Audience::Staff { masters: vec![] },
                        )
                        .in_branch_opt(branch),
                    );
                }
            }
        }
        if live_changed {
            self.live_changed.notify_one();
        }
    }

    /// Sends the whole live status (small: the calls being talked now) to admins and
    /// operators; a master gets only their own call (and the empty list once it ends).
    ///
    /// Branch scope: one snapshot for the users of every branch, and one cut to each
    /// distinct set of branches users are limited to (`scopes`), each delivered only to
    /// the sockets of exactly that scope.
    fn publish_live(&self, scopes: &[Vec<i64>]) {
        let calls = self.on_calls();
        let now = now_ms();
        let parked = self.parked_calls();
        self.events.publish(
            Event::new(
                "call.live",
                serde_json::json!({"calls": calls, "parked": parked, "now_ms": now}),
                Audience::Staff { masters: vec![] },
            )
            .for_scope(Branches::All),
        );
        for ids in scopes {
            let scope = Branches::from_ids(ids.clone());
            let sees = |b: Option<i64>| b.is_none_or(|b| scope.contains(b));
            let mine: Vec<LiveCall> = calls
                .iter()
                .filter(|k| sees(k.branch))
                .map(|k| k.seen_by(&scope))
                .collect();
            let parked: Vec<&ParkedCall> = parked.iter().filter(|p| sees(p.branch)).collect();
            self.events.publish(
                Event::new(
                    "call.live",
                    serde_json::json!({"calls": mine, "parked": parked, "now_ms": now}),
                    Audience::Staff { masters: vec![] },
                )
                .for_scope(scope.clone()),
            );
        }
        let masters: Vec<i64> = calls
            .iter()
            .filter(|k| {
                k.rung
                    .iter()
                    .any(|u| Some(u.user_id) == k.answered_user_id && u.role == "master")
            })
            .filter_map(|k| k.answered_user_id)
            .collect();
        let before = std::mem::replace(
            &mut *self.live_masters.lock().unwrap_or_else(|e| e.into_inner()),
            masters.clone(),
        );
        let mut all = before;
        all.extend(masters);
        all.sort_unstable();
        all.dedup();
        for m in all {
            // As the master's branches see the caller.
            let own: Vec<LiveCall> = calls
                .iter()
                .filter(|k| k.answered_user_id == Some(m))
                .map(|k| match k.rung.iter().find(|u| u.user_id == m) {
                    Some(u) => k.seen_by(&Branches::from_ids(u.branch_ids.clone())),
                    // Their branches unknown: the number alone, unless anyone may see.
                    None => {
                        let mut k = k.clone();
                        if k.customer_of.is_some() {
                            k.customer_id = None;
                            k.customer_name = None;
                        }
                        k
                    }
                })
                .collect();
            self.events.publish(Event::new(
                "call.live",
                serde_json::json!({"calls": own, "now_ms": now}),
                Audience::Users(vec![m]),
            ));
        }
    }

    /// Calls held on park orbits now, by orbit.
    pub fn parked_calls(&self) -> Vec<ParkedCall> {
        let mut v = self
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v.sort_by(|a, b| a.orbit.cmp(&b.orbit));
        v
    }

    /// Calls being talked now (answered, not ended), oldest first.
    pub fn on_calls(&self) -> Vec<LiveCall> {
        let l = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<LiveCall> = l
            .values()
            .filter(|k| k.answered_ms.is_some())
            .cloned()
            .collect();
        v.sort_by_key(|k| k.answered_ms);
        v
    }

    pub fn now_ms(&self) -> i64 {
        now_ms()
    }

    // ----- reads for pages and the API --------------------------------------------------

    /// The call log as `actor` may see it: a branch-scoped user gets their branches'
    /// calls and the shop-wide ones.
    pub async fn list(
        &self,
        actor: &Actor,
        mut f: CallFilter,
    ) -> DomainResult<(Vec<CallRow>, i64)> {
        f.branch_ids = actor.branches.only().map(<[i64]>::to_vec);
        if !(1..=1000).contains(&f.limit) {
            return Err(DomainError::invalid(
                Msg::new("err.paging.limit").with("max", 1000),
            ));
        }
        Ok(self
            .db
            .read(move |c| {
                f.customers_of = customers_seen(c, f.branch_ids.as_deref())?;
                // Another base's customer's calls are not theirs to find by customer.
                if let Some(id) = f.customer_id {
                    if !crate::db::customers::in_branches(c, id, f.customers_of.as_deref())? {
                        return Ok((Vec::new(), 0));
                    }
                }
                let mut rows = q::list(c, &f)?;
                cut_open_orders(c, &mut rows, f.branch_ids.as_deref())?;
                Ok((rows, q::count(c, &f, COUNT_CAP)?))
            })
            .await?)
    }

    /// One call; another branch's is not found.
    pub async fn get(&self, actor: &Actor, call_id: &str) -> DomainResult<CallRow> {
        let id = call_id.to_string();
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.db
            .read(move |c| {
                let seen = customers_seen(c, only.as_deref())?;
                let mut row: Vec<CallRow> = q::by_call_id_for(c, &id, seen.as_deref())?
                    .into_iter()
                    .collect();
                cut_open_orders(c, &mut row, only.as_deref())?;
                Ok(row.pop())
            })
            .await?
            .filter(|k| k.branch_id.is_none_or(|b| actor.branches.contains(b)))
            .ok_or(DomainError::NotFound)
    }

    /// Calls in progress that `actor` may see (the live status a page renders).
    pub fn on_calls_for(&self, actor: &Actor) -> Vec<LiveCall> {
        self.on_calls()
            .iter()
            .filter(|k| k.branch.is_none_or(|b| actor.branches.contains(b)))
            .map(|k| k.seen_by(&actor.branches))
            .collect()
    }

    /// Parked calls that `actor` may see.
    pub fn parked_calls_for(&self, actor: &Actor) -> Vec<ParkedCall> {
        let mut v = self.parked_calls();
        v.retain(|k| k.branch.is_none_or(|b| actor.branches.contains(b)));
        v
    }

    /// Calls with the customer of this order (the order page's section).
    pub async fn for_order(
        &self,
        actor: &Actor,
        order: i64,
        limit: i64,
    ) -> DomainResult<Vec<CallRow>> {
        if !actor.can(super::Action::ViewCalls) {
            return Err(DomainError::Forbidden);
        }
        let branch_ids = actor.branches.only().map(<[i64]>::to_vec);
        Ok(self
            .db
            .read(move |c| {
                let Some(o) = crate::db::orders::get(c, order)? else {
                    return Ok(Vec::new());
                };
                let customers_of = customers_seen(c, branch_ids.as_deref())?;
                let mut rows = q::list(
                    c,
                    &CallFilter {
                        customer_id: Some(o.customer_id),
                        branch_ids: branch_ids.clone(),
                        customers_of,
                        limit,
                        ..Default::default()
                    },
                )?;
                cut_open_orders(c, &mut rows, branch_ids.as_deref())?;
                Ok(rows)
            })
            .await?)
    }

    pub async fn missed(
        &self,
        actor: &Actor,
        include_resolved: bool,
        limit: i64,
        offset: i64,
    ) -> DomainResult<(Vec<MissedRow>, i64)> {
        if !(1..=1000).contains(&limit) {
            return Err(DomainError::invalid(
                Msg::new("err.paging.limit").with("max", 1000),
            ));
        }
        let only = actor.branches.only().map(<[i64]>::to_vec);
        Ok(self
            .db
            .read(move |c| {
                Ok((
                    q::list_missed(
                        c,
                        include_resolved,
                        limit,
                        offset.max(0),
                        only.as_deref(),
                        customers_seen(c, only.as_deref())?.as_deref(),
                    )?,
                    q::count_open_missed(c, only.as_deref())?,
                ))
            })
            .await?)
    }

    /// Marks a missed-call entry done by hand (the customer was reached another way); the
    /// lists update live. A resolved entry stays as it was.
    pub async fn mark_missed_done(&self, by: &super::Actor, id: i64) -> DomainResult<()> {
        if !by.can(super::access::Action::HandleMissedCalls) {
            return Err(DomainError::Forbidden);
        }
        let user = by.user_id;
        Store::new(self.db.clone(), self.events.clone())
            .write(by, move |tx| {
                // Another branch's entry does not exist for the user.
                let branch = match q::missed_branch(tx, id)? {
                    None => return Err(DomainError::NotFound),
                    Some(b) => b,
                };
                if let Some(b) = branch {
                    tx.check_branch(b)?;
                }
                match q::mark_missed_done(tx, id, user, now_ms())? {
                    q::MarkDone::Done => {
                        tx.log(
                            "resolve",
                            "missed_call",
                            id,
                            serde_json::json!({"how": "done"}),
                        );
                        tx.emit(
                            Event::new(
                                "call.missed",
                                serde_json::json!({"resolved": true}),
                                Audience::Staff { masters: vec![] },
                            )
                            .in_branch_opt(branch),
                        );
                        Ok(())
                    }
                    q::MarkDone::AlreadyResolved => {
                        Err(DomainError::conflict("err.call.missed_resolved"))
                    }
                    q::MarkDone::NotFound => Err(DomainError::NotFound),
                }
            })
            .await
    }

    /// The number typed in a filter, normalised like the log's numbers.
    pub fn normalise_typed(&self, typed: &str) -> DomainResult<String> {
        let t = typed.trim();
        if t.is_empty() || t.chars().count() > 40 {
            return Err(DomainError::invalid(
                Msg::new("err.field.length")
                    .term("field", "field.number")
                    .with("max", 40),
            ));
        }
        if t.len() <= 6 && t.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(t.to_string());
        }
        PhoneNumber::parse(t, self.country())
            .map(|p| p.as_str().to_string())
            .map_err(|e| {
                DomainError::invalid(
                    Msg::new("err.phone.refused")
                        .with("phone", t)
                        .nested("why", e.into()),
                )
            })
    }

    /// Answered and missed calls by local hour and weekday, in [from, to).
    /// The range is cut where the shop zone's offset changes, each stretch bucketed by
    /// its own offset.
    pub async fn counts(
        &self,
        actor: &Actor,
        from_ms: i64,
        to_ms: i64,
    ) -> DomainResult<CallCounts> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        let spans = self
            .clock
            .get()
            .offset_spans(from_ms.div_euclid(1000), to_ms.div_euclid(1000) + 1);
        let (hours, weekdays) = self
            .db
            .read(move |c| {
                let mut hours = [(0i64, 0i64); 24];
                let mut days = [(0i64, 0i64); 7];
                for (a, b, off) in spans {
                    let (h, d) = q::counts_by_hour_and_weekday(
                        c,
                        (a * 1000).max(from_ms),
                        (b * 1000).min(to_ms),
                        off as i64,
                        only.as_deref(),
                    )?;
                    for (x, y) in hours.iter_mut().zip(h) {
                        x.0 += y.0;
                        x.1 += y.1;
                    }
                    for (x, y) in days.iter_mut().zip(d) {
                        x.0 += y.0;
                        x.1 += y.1;
                    }
                }
                Ok((hours, days))
            })
            .await?;
        Ok(CallCounts { hours, weekdays })
    }
}

/// A call older than this is no longer shown as in progress (12 h).
const STALE_MS: i64 = 12 * 3600 * 1000;

/// Lists count at most this many calls (then "10 000+").
pub const COUNT_CAP: i64 = 10_000;

/// (answered, missed) per local hour 0-23 and per weekday (Monday first).
#[derive(Debug, Clone, Serialize)]
pub struct CallCounts {
    pub hours: [(i64, i64); 24],
    pub weekdays: [(i64, i64); 7],
}

enum Done {
    Answered {
        call_id: String,
        ext: String,
        user_id: Option<i64>,
        name: String,
        at_ms: i64,
        branch: Option<i64>,
    },
    Ended {
        call_id: String,
        outcome: Outcome,
        branch: Option<i64>,
    },
    Resolved {
        branch: Option<i64>,
    },
}

/// How a call reached the box, for its branch ([`q::branch_of_call`]).
#[derive(Clone, Copy)]
struct CallPath<'a> {
    inbound: bool,
    from: &'a str,
    to: &'a str,
    group: Option<&'a str>,
    transferred_from: Option<&'a str>,
}

/// The office extension whose user is on the call once it is answered.
pub fn office_extension(direction: CallDirection, answered: &str, from: &str) -> String {
    match direction {
        CallDirection::Outbound => from.to_string(),
        _ => answered.to_string(),
    }
}

fn apply_missed(
    c: &crate::db::Conn,
    actions: Vec<MissedAction>,
    call: i64,
    customer: Option<i64>,
    at_ms: i64,
    branch: Option<i64>,
    done: &mut Vec<Done>,
) -> crate::db::DbResult<()> {
    for a in actions {
        match a {
            MissedAction::Record(n) => q::record_missed(c, &n, customer, call, at_ms, branch)?,
            MissedAction::Resolve { number, how } => {
                if q::resolve_missed(c, &number, call, how, at_ms, branch)? {
                    done.push(Done::Resolved { branch });
                }
            }
        }
    }
    Ok(())
}

fn apply(
    c: &crate::db::Conn,
    op: &LogOp,
    live: &HashMap<String, LiveCall>,
    country: Country,
    done: &mut Vec<Done>,
) -> crate::db::DbResult<()> {
    match op {
        LogOp::Ringing {
            call_id,
            direction,
            from,
            to,
            party,
            group,
            extensions,
            customer_id,
            open_orders,
            transferred_by,
            transferred_from,
            branch,
            at_ms,
        } => {
            q::upsert_ringing(
                c,
                &NewCall {
                    call_id,
                    direction: direction_code(*direction),
                    from_number: from,
                    to_number: to,
                    party_number: party,
                    ring_group: group.as_deref(),
                    extensions,
                    customer_id: *customer_id,
                    open_orders,
                    transferred_by: transferred_by.as_deref(),
                    transferred_from: transferred_from.as_deref(),
                    started_ms: *at_ms,
                    branch_id: *branch,
                },
            )?;
        }
        LogOp::Answered {
            call_id,
            extension,
            at_ms,
        } => {
            let Some(k) = q::by_call_id(c, call_id)? else {
                return Ok(());
            };
            let dir = parse_direction(&k.direction).unwrap_or(CallDirection::Internal);
            // The staff member on the call: whoever picked up, or for a call out through
            // the trunk (answered by the outside party) the extension that dialled.
            let office_ext = office_extension(dir, extension, &k.from_number);
            let linked = q::users_of_extensions(c, std::slice::from_ref(&office_ext))?
                .into_iter()
                .next();
            let user_id = linked.as_ref().map(|u| u.user_id);
            if q::set_answered(c, call_id, extension, user_id, *at_ms)? {
                let name = linked.map(|u| u.display_name).unwrap_or(office_ext);
                let actions = missed_actions(
                    dir,
                    &normalise(&k.from_number, country),
                    &normalise(&k.to_number, country),
                    Outcome::Answered,
                );
                apply_missed(c, actions, k.id, k.customer_id, *at_ms, k.branch_id, done)?;
                done.push(Done::Answered {
                    call_id: call_id.clone(),
                    ext: extension.clone(),
                    user_id,
                    name,
                    at_ms: *at_ms,
                    branch: k.branch_id,
                });
            }
        }
        LogOp::Ended {
            call_id,
            cause,
            ring_ms,
            talk_ms,
            at_ms,
        } => {
            let Some(k) = q::by_call_id(c, call_id)? else {
                return Ok(());
            };
            let dir = live
                .get(call_id)
                .and_then(|l| l.dir)
                .or_else(|| parse_direction(&k.direction))
                .unwrap_or(CallDirection::Internal);
            let outcome = outcome_for(cause, k.answered_ms.is_some(), dir);
            if q::set_ended(
                c,
                call_id,
                outcome.code(),
                cause,
                *ring_ms as i64,
                *talk_ms as i64,
                *at_ms,
            )? {
                if outcome != Outcome::Answered {
                    let caller = live
                        .get(call_id)
                        .map(|l| l.caller.clone())
                        .unwrap_or_else(|| k.from_number.clone());
                    let callee = live
                        .get(call_id)
                        .map(|l| l.callee.clone())
                        .unwrap_or_else(|| k.to_number.clone());
                    let actions = missed_actions(
                        dir,
                        &normalise(&caller, country),
                        &normalise(&callee, country),
                        outcome,
                    );
                    apply_missed(c, actions, k.id, k.customer_id, *at_ms, k.branch_id, done)?;
                }
                done.push(Done::Ended {
                    call_id: call_id.clone(),
                    outcome,
                    branch: k.branch_id,
                });
            }
        }
    }
    Ok(())
}

/// The branches whose customers a user of `only` sees (`customers::scope`), owned: rows
/// and live calls name only those customers.
fn customers_seen(
    c: &crate::db::Conn,
    only: Option<&[i64]>,
) -> crate::db::DbResult<Option<Vec<i64>>> {
    Ok(super::customers::scope(c, only)?.map(<[i64]>::to_vec))
}

/// Keeps, of each row's open orders (every branch's, as the call rang), those in
/// `branches` (None: all): a shop-wide call of a customer of several branches names to a
/// branch-scoped user only their branches' orders.
fn cut_open_orders(
    c: &crate::db::Conn,
    rows: &mut [CallRow],
    branches: Option<&[i64]>,
) -> crate::db::DbResult<()> {
    let Some(branches) = branches else {
        return Ok(());
    };
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.open_orders.iter().map(|o| o.id))
        .collect();
    let keep = q::orders_in_branches(c, &ids, branches)?;
    for r in rows {
        r.open_orders.retain(|o| keep.contains(&o.id));
    }
    Ok(())
}

/// Whether a user with this role (as stored) may do `action`.
fn may(role: &str, action: super::Action) -> bool {
    role.parse::<Role>()
        .is_ok_and(|r| super::access::can(r, action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallDirection::*;

    #[test]
    fn causes_map_to_outcomes() {
        assert_eq!(outcome_for("completed", true, Inbound), Outcome::Answered);
        assert_eq!(outcome_for("completed", false, Internal), Outcome::Answered);
        assert_eq!(outcome_for("cancelled", false, Inbound), Outcome::Missed);
        assert_eq!(outcome_for("cancelled", false, Internal), Outcome::Missed);
        assert_eq!(
            outcome_for("cancelled", false, Outbound),
            Outcome::Cancelled
        );
        assert_eq!(outcome_for("no_answer", false, Inbound), Outcome::NoAnswer);
        assert_eq!(
            outcome_for("status_480", false, Outbound),
            Outcome::NoAnswer
        );
        assert_eq!(outcome_for("status_408", false, Inbound), Outcome::NoAnswer);
        assert_eq!(outcome_for("status_486", false, Inbound), Outcome::Busy);
        assert_eq!(outcome_for("status_600", false, Outbound), Outcome::Busy);
        assert_eq!(outcome_for("status_603", false, Outbound), Outcome::Busy);
        assert_eq!(outcome_for("status_603", false, Inbound), Outcome::Missed);
        assert_eq!(outcome_for("status_404", false, Internal), Outcome::Failed);
        assert_eq!(outcome_for("status_503", false, Outbound), Outcome::Failed);
        assert_eq!(outcome_for("weird", false, Outbound), Outcome::Failed);
        // An answer wins over whatever the end says.
        assert_eq!(outcome_for("status_500", true, Inbound), Outcome::Answered);
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.code()), Some(o));
        }
        assert_eq!(Outcome::parse("ringing"), None);
    }

    #[test]
    fn missed_entries_open_and_resolve_by_the_rules() {
        let rec = |n: &str| MissedAction::Record(n.into());
        let res = |n: &str, how| MissedAction::Resolve {
            number: n.into(),
            how,
        };
        let a = "+998901234567";
        assert_eq!(
            missed_actions(Inbound, a, "100", Outcome::Missed),
            vec![rec(a)]
        );
        assert_eq!(
            missed_actions(Inbound, a, "100", Outcome::NoAnswer),
            vec![rec(a)]
        );
        assert_eq!(
            missed_actions(Inbound, a, "100", Outcome::Busy),
            vec![rec(a)]
        );
        assert_eq!(
            missed_actions(Internal, "1000", "100", Outcome::Missed),
            vec![rec("1000")]
        );
        // Failed or cancelled outbound calls leave nobody to call back.
        assert!(missed_actions(Outbound, "101", a, Outcome::NoAnswer).is_empty());
        assert!(missed_actions(Outbound, "101", a, Outcome::Cancelled).is_empty());
        assert!(missed_actions(Inbound, a, "100", Outcome::Failed).is_empty());
        // The caller getting through, or someone calling them back, resolves the entry.
        assert_eq!(
            missed_actions(Inbound, a, "100", Outcome::Answered),
            vec![res(a, "got_through")]
        );
        assert_eq!(
            missed_actions(Outbound, "101", a, Outcome::Answered),
            vec![res(a, "called_back")]
        );
        assert_eq!(
            missed_actions(Internal, "1501", "1000", Outcome::Answered),
            vec![res("1501", "got_through"), res("1000", "called_back")]
        );
    }

    #[test]
    fn the_office_side_of_an_answered_call() {
        assert_eq!(office_extension(Inbound, "1501", "+998901234567"), "1501");
        assert_eq!(office_extension(Internal, "1501", "1000"), "1501");
        assert_eq!(office_extension(Outbound, "trunk", "1501"), "1501");
    }

    #[test]
    fn numbers_normalise_but_extensions_stay() {
        let uz = crate::model::phone::UZBEKISTAN;
        assert_eq!(normalise("901234567", uz), "+998901234567");
        assert_eq!(normalise("+998901234567", uz), "+998901234567");
        assert_eq!(normalise("8 90 123 45 67", uz), "+998901234567");
        assert_eq!(normalise("1000", uz), "1000");
        assert_eq!(normalise("anonymous", uz), "anonymous");
    }
}
