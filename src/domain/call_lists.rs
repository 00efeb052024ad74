//! Call lists (issue 18): lists of customers to call, built once from a segment or a
//! built-in source (open missed calls, ready-not-collected, overdue orders, warranty
//! follow-ups, an import batch), shared out to operators by rules, and worked from the
//! operator's queue: take the next item, call it through the operator's desk phone
//! (click-to-call), record an outcome. The admin's outcome codes decide what an outcome
//! does (done, try again after the list's delay, call back at a time, wrong number). The
//! wrap-up of any call (inbound too) records an outcome and a note on the call. Daily
//! progress per operator is counted live over the shop day, so it starts again at the
//! shop's midnight.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::clock::ShopClock;
use super::telephony::Telephony;
use super::work::{Store, Tx, Who};
use super::{Action, Actor, DomainError, DomainResult, Msg};
use crate::db::call_lists::{self as q, ItemRow, ListRow, OutcomeRow, SourceRow};
pub use crate::db::call_lists::{
    AgentRow, DayCounts, ItemRow as Item, ListRow as List, LoggedOutcome,
    OutcomeRow as OutcomeCode, Targets,
};
use crate::db::DbResult;
use crate::events::{Audience, Event};
use crate::sip::CallEvent;

/// Items one list may hold.
pub const MAX_ITEMS: usize = 200_000;
const MAX_TEXT: usize = 4000;
const DAY: i64 = 86_400;

pub const SOURCES: [&str; 6] = [
    "segment", "missed", "ready", "overdue", "warranty", "import",
];
pub const ASSIGNMENTS: [&str; 4] = ["pool", "round_robin", "branch", "language"];
pub const EFFECTS: [&str; 5] = ["done", "retry_no_answer", "retry_busy", "callback", "wrong"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Scripts {
    pub en: String,
    pub ru: String,
    pub uz: String,
    pub uz_cyrl: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    pub user_id: i64,
    /// For assignment by branch: the branch this operator calls for.
    #[serde(default)]
    pub branch_id: Option<i64>,
}

/// A new call list: where its customers come from and how it is worked.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewList {
    pub name: String,
    /// segment, missed, ready, overdue, warranty or import.
    pub source: String,
    /// The segment id (segment), the import batch id (import), the days (ready: ready
    /// at least N days; warranty: ending within N days, 30 when not given).
    #[serde(default)]
    pub source_ref: Option<i64>,
    /// Only orders of this branch (order sources), and the list's branch.
    #[serde(default)]
    pub branch_id: Option<i64>,
    /// pool (default), round_robin, branch or language.
    #[serde(default)]
    pub assignment: Option<String>,
    /// The operators who work it (none: anyone who may work call lists).
    #[serde(default)]
    pub agents: Vec<AgentInput>,
    #[serde(default)]
    pub settings: ListSettings,
}

/// What can change on a list after it is built.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListSettings {
    /// Items an operator may finish from this list per shop day (0: no cap).
    pub daily_cap: i64,
    pub retry_no_answer_minutes: i64,
    pub retry_busy_minutes: i64,
    pub max_attempts: i64,
    pub scripts: Scripts,
}

impl Default for ListSettings {
    fn default() -> Self {
        ListSettings {
            daily_cap: 0,
            retry_no_answer_minutes: 120,
            retry_busy_minutes: 15,
            max_attempts: 3,
            scripts: Scripts::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListUpdate {
    pub name: String,
    /// active, paused or closed.
    pub state: String,
    #[serde(default)]
    pub settings: ListSettings,
    /// When given, the operators who work it from now on.
    #[serde(default)]
    pub agents: Option<Vec<AgentInput>>,
}

/// A list as shown: its row, its operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallList {
    #[serde(flatten)]
    pub list: ListRow,
    pub agents: Vec<AgentRow>,
}

/// The customer card of a queue item.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Card {
    pub name: Option<String>,
    pub phones: Vec<String>,
    /// What is owed over open orders (so'm; negative: overpaid).
    pub balance: i64,
    pub balance_text: String,
    pub orders: Vec<crate::db::calls::OrderRef>,
    pub language: Option<String>,
}

/// The next item of an operator's queue, with what the call needs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueItem {
    pub item: ItemRow,
    pub card: Card,
    /// The list's script in the operator's language, variables filled in.
    pub script: String,
    pub max_attempts: i64,
}

/// An outcome as recorded from the queue or a wrap-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomeInput {
    /// An outcome code (`GET /api/v1/call-outcomes`).
    pub outcome: String,
    pub note: String,
    /// For "call back at…": the shop's local time, `YYYY-MM-DDTHH:MM`.
    pub callback_at: Option<String>,
    /// A follow-up date (`YYYY-MM-DD`), for a wrap-up.
    pub follow_up: Option<String>,
}

/// One operator's shop day.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub user_id: i64,
    pub name: String,
    /// The shop day (YYYY-MM-DD).
    pub day: String,
    #[serde(flatten)]
    pub counts: DayCounts,
    /// Outcomes marked "reached" recorded by the operator.
    pub reached_outcomes: i64,
    pub targets: Targets,
}

#[derive(Clone)]
pub struct CallLists {
    store: Store,
    telephony: Telephony,
}

/// About list `id` of `branch` (None: a shop-wide list).
fn list_event(id: i64, branch: Option<i64>) -> Event {
    Event::new(
        "call_list.updated",
        serde_json::json!({"id": id}),
        Audience::Staff { masters: vec![] },
    )
    .in_branch_opt(branch)
}

/// Progress moved for `user`; `branch`: the branch of the work that moved it.
fn progress_event(user: Option<i64>, branch: Option<i64>) -> Event {
    Event::new(
        "progress.changed",
        serde_json::json!({"user_id": user}),
        Audience::Staff { masters: vec![] },
    )
    .in_branch_opt(branch)
}

/// Refuses (as not found) a list or item outside the acting user's branches; shop-wide
/// ones (no branch) are everyone's.
fn check_scope(tx: &super::work::Tx<'_>, branch: Option<i64>) -> DomainResult<()> {
    match branch {
        Some(b) => tx.check_branch(b),
        None => Ok(()),
    }
}

fn sees(actor: &Actor, branch: Option<i64>) -> bool {
    branch.is_none_or(|b| actor.branches.contains(b))
}

/// Whether a user of `only` (None: every branch) sees item `it`: of their branches or
/// shop-wide, and, with customers kept per branch, about a customer they see (see
/// [`q::ItemScope`]).
fn sees_item(c: &crate::db::Conn, only: Option<&[i64]>, it: &ItemRow) -> DbResult<bool> {
    if !it
        .branch_id
        .is_none_or(|b| only.is_none_or(|o| o.contains(&b)))
    {
        return Ok(false);
    }
    match it.customer_id {
        Some(cid) => crate::db::customers::in_branches(c, cid, super::customers::scope(c, only)?),
        None => Ok(true),
    }
}

/// Refuses (as not found) an item the acting user does not see.
fn check_item(tx: &Tx<'_>, it: &ItemRow) -> DomainResult<()> {
    let only = tx.who().branches().map(<[i64]>::to_vec);
    if sees_item(tx, only.as_deref(), it)? {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}

/// An event about item `it` reaches the users who see it: of its branch and, with
/// customers kept per branch, of its customer's branches.
fn about_item(c: &crate::db::Conn, e: Event, it: &ItemRow) -> DbResult<Event> {
    let e = e.in_branch_opt(it.branch_id);
    Ok(match it.customer_id {
        Some(cid) if crate::db::customers::per_branch(c)? => {
            e.in_any_branch(crate::db::customers::branches_of(c, cid)?)
        }
        _ => e,
    })
}

/// What a user of `only` (None: every branch) sees of lists and items, owned for the
/// read or write it is used in (see [`q::ItemScope`]).
struct Seen {
    branches: Option<Vec<i64>>,
    customers: Option<Vec<i64>>,
}

impl Seen {
    fn of(c: &crate::db::Conn, only: Option<&[i64]>) -> DbResult<Seen> {
        Ok(Seen {
            branches: only.map(<[i64]>::to_vec),
            customers: super::customers::scope(c, only)?.map(<[i64]>::to_vec),
        })
    }

    fn scope(&self) -> q::ItemScope<'_> {
        q::ItemScope {
            branches: self.branches.as_deref(),
            customers: self.customers.as_deref(),
        }
    }
}

fn text(v: &str, field: &'static str, max: usize) -> DomainResult<String> {
    let t = v.trim();
    if t.chars().count() > max {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", field)
                .with("max", max),
        ));
    }
    Ok(t.to_string())
}

fn clean_name(name: &str) -> DomainResult<String> {
    let n = text(name, "field.name", 100)?;
    if n.is_empty() {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", "field.name")
                .with("max", 100),
        ));
    }
    Ok(n)
}

fn range(v: i64, field: &'static str, min: i64, max: i64) -> DomainResult<i64> {
    if !(min..=max).contains(&v) {
        return Err(DomainError::invalid(
            Msg::new("err.call_list.range")
                .term("field", field)
                .with("min", min)
                .with("max", max),
        ));
    }
    Ok(v)
}

impl ListSettings {
    fn clean(mut self) -> DomainResult<ListSettings> {
        range(self.daily_cap, "call_lists.daily_cap", 0, 10_000)?;
        range(
            self.retry_no_answer_minutes,
            "call_lists.retry_no_answer",
            0,
            43_200,
        )?;
        range(self.retry_busy_minutes, "call_lists.retry_busy", 0, 43_200)?;
        range(self.max_attempts, "call_lists.max_attempts", 1, 50)?;
        let s = &mut self.scripts;
        s.en = text(&s.en, "call_lists.script", MAX_TEXT)?;
        s.ru = text(&s.ru, "call_lists.script", MAX_TEXT)?;
        s.uz = text(&s.uz, "call_lists.script", MAX_TEXT)?;
        s.uz_cyrl = text(&s.uz_cyrl, "call_lists.script", MAX_TEXT)?;
        Ok(self)
    }

    fn apply(&self, l: &mut ListRow) {
        l.daily_cap = self.daily_cap;
        l.retry_no_answer_minutes = self.retry_no_answer_minutes;
        l.retry_busy_minutes = self.retry_busy_minutes;
        l.max_attempts = self.max_attempts;
        l.script_en = self.scripts.en.clone();
        l.script_ru = self.scripts.ru.clone();
        l.script_uz = self.scripts.uz.clone();
        l.script_uz_cyrl = self.scripts.uz_cyrl.clone();
    }

    pub fn of(l: &ListRow) -> ListSettings {
        ListSettings {
            daily_cap: l.daily_cap,
            retry_no_answer_minutes: l.retry_no_answer_minutes,
            retry_busy_minutes: l.retry_busy_minutes,
            max_attempts: l.max_attempts,
            scripts: Scripts {
                en: l.script_en.clone(),
                ru: l.script_ru.clone(),
                uz: l.script_uz.clone(),
                uz_cyrl: l.script_uz_cyrl.clone(),
            },
        }
    }
}

/// Who to call for a source, as of the change's time.
fn source_rows(tx: &Tx, n: &NewList) -> DomainResult<Vec<SourceRow>> {
    use q::OrderSource;
    let now = tx.now();
    let days = |default: i64| -> DomainResult<i64> {
        range(n.source_ref.unwrap_or(default), "call_lists.days", 0, 3650)
    };
    Ok(match n.source.as_str() {
        "segment" => {
            let id = n
                .source_ref
                .ok_or_else(|| DomainError::invalid("err.call_list.no_segment"))?;
            let seg = crate::db::segments::get(tx, id)?
                .ok_or_else(|| DomainError::invalid("err.call_list.no_segment"))?;
            let f: super::segments::SegmentFilter =
                serde_json::from_str(&seg.filter).unwrap_or_default();
            let who = tx.who().branches().map(<[i64]>::to_vec);
            q::from_segment(tx, &f.conditions_for(tx, who.as_deref(), tx.clock(), now)?)?
        }
        "import" => {
            let id = n
                .source_ref
                .ok_or_else(|| DomainError::invalid("err.call_list.no_import"))?;
            if crate::db::imports::get(tx, id)?.is_none() {
                return Err(DomainError::invalid("err.call_list.no_import"));
            }
            q::from_import(tx, id)?
        }
        "missed" => q::from_missed(tx, n.branch_id)?,
        "ready" => q::from_orders(
            tx,
            OrderSource::ReadySince(now - days(0)? * DAY),
            n.branch_id,
        )?,
        "overdue" => q::from_orders(tx, OrderSource::OverdueAt(now), n.branch_id)?,
        "warranty" => q::from_orders(
            tx,
            OrderSource::WarrantyEnds(now, now + days(30)? * DAY),
            n.branch_id,
        )?,
        other => {
            return Err(DomainError::invalid(
                Msg::new("err.call_list.source").with("value", other),
            ))
        }
    })
}

/// Shares items out: round-robin over the operators who fit each item (all of them, the
/// ones of the item's branch, the ones speaking the customer's language); an item no one
/// fits stays with the whole list.
fn assign(rows: &[SourceRow], how: &str, agents: &[AgentRow]) -> Vec<Option<i64>> {
    let mut turn: std::collections::HashMap<Vec<i64>, usize> = Default::default();
    rows.iter()
        .map(|r| {
            let fit: Vec<i64> = match how {
                "round_robin" => agents.iter().map(|a| a.user_id).collect(),
                "branch" => agents
                    .iter()
                    .filter(|a| a.branch_id.is_none() || a.branch_id == r.branch_id)
                    .map(|a| a.user_id)
                    .collect(),
                "language" => agents
                    .iter()
                    .filter(|a| r.language.as_deref() == Some(a.language.as_str()))
                    .map(|a| a.user_id)
                    .collect(),
                _ => Vec::new(),
            };
            if fit.is_empty() {
                return None;
            }
            let t = turn.entry(fit.clone()).or_insert(0);
            let who = fit[*t % fit.len()];
            *t += 1;
            Some(who)
        })
        .collect()
}

fn clean_agents(tx: &Tx, agents: &[AgentInput]) -> DomainResult<Vec<(i64, Option<i64>)>> {
    let ids: Vec<i64> = agents.iter().map(|a| a.user_id).collect();
    let found = q::active_users(tx, &ids)?;
    if let Some(missing) = ids.iter().find(|i| !found.contains(i)) {
        return Err(DomainError::invalid(
            Msg::new("err.call_list.agent").with("id", missing),
        ));
    }
    Ok(agents.iter().map(|a| (a.user_id, a.branch_id)).collect())
}

/// The script with its variables filled in: {name}, {device}, {order}, {balance}.
pub fn fill_script(script: &str, name: &str, device: &str, order: &str, balance: &str) -> String {
    script
        .replace("{name}", name)
        .replace("{device}", device)
        .replace("{order}", order)
        .replace("{balance}", balance)
}

/// A local `YYYY-MM-DDTHH:MM` (or with a space) on the shop clock.
fn parse_local(clock: &ShopClock, v: &str) -> Option<i64> {
    let v = v.trim();
    let (d, t) = v.split_once(['T', ' '])?;
    let date = super::clock::parse_date(d)?;
    let (h, m) = t.get(..5)?.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    Some(clock.at_local(date, h * 60 + m))
}

/// What an outcome does to an item: its new state and when it comes up again.
fn next_state(
    o: &OutcomeRow,
    l: &ListRow,
    attempts_before: i64,
    now: i64,
    callback: Option<i64>,
) -> (&'static str, i64) {
    let retry = |mins: i64| {
        if attempts_before + 1 >= l.max_attempts {
            ("failed", now)
        } else {
            ("pending", now + mins * 60)
        }
    };
    match o.effect.as_str() {
        "retry_no_answer" => retry(l.retry_no_answer_minutes),
        "retry_busy" => retry(l.retry_busy_minutes),
        "callback" => ("pending", callback.unwrap_or(now)),
        "wrong" => ("failed", now),
        _ => ("done", now),
    }
}

struct Recorded {
    item: i64,
    list: i64,
    user: Option<i64>,
}

/// Records `o` on a held item (inside a change): the item's state, the outcome log, the
/// activity entry, the events.
fn record_on_item(
    tx: &mut Tx,
    it: &ItemRow,
    o: &OutcomeRow,
    note: &str,
    callback: Option<i64>,
    user: Option<i64>,
) -> DomainResult<Recorded> {
    let l = q::list_settings(tx, it.list_id)?.ok_or(DomainError::NotFound)?;
    let now = tx.now();
    let (state, next_at) = next_state(o, &l, it.attempts, now, callback);
    q::finish_attempt(tx, it.id, state, next_at, &o.code, note, now)?;
    if o.effect == "callback" {
        // The one who promised the call makes it.
        if let Some(u) = user {
            q::assign_to(tx, it.id, u)?;
        }
    }
    q::log_outcome(
        tx,
        &q::NewOutcome {
            at: now,
            user_id: user,
            outcome: &o.code,
            reached: o.reached,
            note,
            follow_up: callback,
            call_id: it.call_id.as_deref(),
            list_id: Some(it.list_id),
            item_id: Some(it.id),
            customer_id: it.customer_id,
        },
    )?;
    tx.log(
        "outcome",
        "call_list_item",
        it.id,
        serde_json::json!({"list_id": it.list_id, "outcome": o.code, "state": state, "next_at": next_at}),
    );
    tx.emit(list_event(it.list_id, it.branch_id));
    let e = about_item(
        tx,
        Event::new(
            "call_list.item",
            serde_json::json!({"id": it.id, "list_id": it.list_id, "state": state, "outcome": o.code}),
            Audience::Staff { masters: vec![] },
        ),
        it,
    )?;
    tx.emit(e);
    tx.emit(progress_event(user, it.branch_id));
    if let Some(c) = it.customer_id {
        let e = super::customers::updated_event(tx, c)?;
        tx.emit(e);
    }
    Ok(Recorded {
        item: it.id,
        list: it.list_id,
        user,
    })
}

fn outcome_of(tx: &Tx, code: &str) -> DomainResult<OutcomeRow> {
    q::outcome(tx, code.trim())?
        .filter(|o| o.active)
        .ok_or_else(|| DomainError::invalid(Msg::new("err.call_list.outcome").with("value", code)))
}

fn callback_of(tx: &Tx, o: &OutcomeRow, input: &OutcomeInput) -> DomainResult<Option<i64>> {
    if o.effect != "callback" {
        return Ok(None);
    }
    let raw = input.callback_at.as_deref().unwrap_or("").trim();
    if raw.is_empty() {
        return Err(DomainError::invalid("err.call_list.callback_needed"));
    }
    let at = parse_local(tx.clock(), raw).ok_or_else(|| {
        DomainError::invalid(Msg::new("err.call_list.callback_time").with("value", raw))
    })?;
    if at <= tx.now() {
        return Err(DomainError::invalid(
            Msg::new("err.call_list.callback_past").with("value", raw),
        ));
    }
    Ok(Some(at))
}

impl CallLists {
    pub fn new(store: Store, telephony: Telephony) -> CallLists {
        CallLists { store, telephony }
    }

    pub async fn outcomes(&self) -> DomainResult<Vec<OutcomeRow>> {
        self.store.read(q::outcomes).await
    }

    /// Adds or changes an outcome code (by its code).
    pub async fn save_outcome(&self, by: &Actor, mut o: OutcomeRow) -> DomainResult<i64> {
        o.code = o.code.trim().to_lowercase();
        if o.code.is_empty()
            || o.code.len() > 40
            || !o
                .code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(DomainError::invalid(
                Msg::new("err.call_list.code").with("value", &o.code),
            ));
        }
        if !EFFECTS.contains(&o.effect.as_str()) {
            return Err(DomainError::invalid(
                Msg::new("err.call_list.effect").with("value", &o.effect),
            ));
        }
        for n in [
            &mut o.name_en,
            &mut o.name_ru,
            &mut o.name_uz,
            &mut o.name_uz_cyrl,
        ] {
            *n = clean_name(n)?;
        }
        self.store
            .write(by, move |tx| {
                let id = q::save_outcome(tx, &o)?;
                tx.log(
                    "save",
                    "call_outcome",
                    id,
                    serde_json::json!({"code": o.code, "effect": o.effect}),
                );
                tx.emit(Event::new(
                    "call_outcome.updated",
                    serde_json::json!({"code": o.code}),
                    Audience::Everyone,
                ));
                Ok(id)
            })
            .await
    }

    /// Builds a list from its source and shares its items out.
    pub async fn create(&self, by: &Actor, n: NewList) -> DomainResult<i64> {
        let name = clean_name(&n.name)?;
        let settings = n.settings.clone().clean()?;
        let assignment = n.assignment.clone().unwrap_or_else(|| "pool".into());
        if !ASSIGNMENTS.contains(&assignment.as_str()) {
            return Err(DomainError::invalid(
                Msg::new("err.call_list.assignment").with("value", &assignment),
            ));
        }
        if !SOURCES.contains(&n.source.as_str()) {
            return Err(DomainError::invalid(
                Msg::new("err.call_list.source").with("value", &n.source),
            ));
        }
        if assignment != "pool" && n.agents.is_empty() {
            return Err(DomainError::invalid("err.call_list.no_agents"));
        }
        let mut n = n;
        if let (None, Some(ids)) = (n.branch_id, by.branches.only()) {
            // A branch-scoped user's lists are of their branch.
            n.branch_id = ids.first().copied();
        }
        self.store
            .write(by, move |tx| {
                if let Some(b) = n.branch_id {
                    if crate::db::branches::get(tx, b)?.is_none() || !tx.who().sees_branch(b) {
                        return Err(DomainError::invalid(
                            Msg::new("err.call_list.branch").with("id", b),
                        ));
                    }
                }
                let agents = clean_agents(tx, &n.agents)?;
                let rows = source_rows(tx, &n)?;
                if rows.len() > MAX_ITEMS {
                    return Err(DomainError::invalid(
                        Msg::new("err.call_list.too_many").with("max", MAX_ITEMS),
                    ));
                }
                let mut l = ListRow {
                    name: name.clone(),
                    source: n.source.clone(),
                    source_ref: n.source_ref,
                    branch_id: n.branch_id,
                    assignment: assignment.clone(),
                    ..Default::default()
                };
                settings.apply(&mut l);
                let now = tx.now();
                let id = q::insert_list(tx, &l, tx.actor_id(), now)?;
                q::set_agents(tx, id, &agents)?;
                let agent_rows = q::agents(tx, id)?;
                let who = assign(&rows, &assignment, &agent_rows);
                for (r, a) in rows.iter().zip(who) {
                    let mut r = r.clone();
                    if r.branch_id.is_none() {
                        r.branch_id = n.branch_id;
                    }
                    q::insert_item(
                        tx,
                        &q::NewItem {
                            list_id: id,
                            row: &r,
                            assigned_to: a,
                            now,
                        },
                    )?;
                }
                tx.log(
                    "create",
                    "call_list",
                    id,
                    serde_json::json!({"name": name, "source": n.source, "source_ref": n.source_ref,
                        "assignment": assignment, "items": rows.len()}),
                );
                tx.emit(list_event(id, n.branch_id));
                Ok(id)
            })
            .await
    }

    pub async fn update(&self, by: &Actor, id: i64, u: ListUpdate) -> DomainResult<()> {
        let name = clean_name(&u.name)?;
        let settings = u.settings.clone().clean()?;
        if !["active", "paused", "closed"].contains(&u.state.as_str()) {
            return Err(DomainError::invalid(
                Msg::new("err.call_list.state").with("value", &u.state),
            ));
        }
        self.store
            .write(by, move |tx| {
                let mut l = q::list_settings(tx, id)?.ok_or(DomainError::NotFound)?;
                check_scope(tx, l.branch_id)?;
                l.name = name;
                l.state = u.state.clone();
                settings.apply(&mut l);
                q::update_list(tx, &l, tx.now())?;
                if let Some(a) = &u.agents {
                    let agents = clean_agents(tx, a)?;
                    q::set_agents(tx, id, &agents)?;
                }
                tx.log(
                    "update",
                    "call_list",
                    id,
                    serde_json::json!({"name": l.name, "state": l.state, "daily_cap": l.daily_cap}),
                );
                tx.emit(list_event(id, l.branch_id));
                Ok(())
            })
            .await
    }

    /// The lists `actor` sees: their branches' and the shop-wide ones (counting the
    /// items of their branches).
    pub async fn lists(&self, actor: &Actor) -> DomainResult<Vec<ListRow>> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| q::lists(c, Seen::of(c, only.as_deref())?.scope()))
            .await
    }

    pub async fn get(&self, actor: &Actor, id: i64) -> DomainResult<CallList> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .view(move |c| {
                let seen = Seen::of(c, only.as_deref())?;
                let scope = seen.scope();
                let list = q::list(c, id, scope)?.ok_or(DomainError::NotFound)?;
                Ok(CallList {
                    agents: q::agents(c, id)?,
                    list,
                })
            })
            .await
    }

    pub async fn items(
        &self,
        actor: &Actor,
        list: i64,
        state: Option<String>,
        limit: i64,
        offset: i64,
    ) -> DomainResult<Vec<ItemRow>> {
        if let Some(s) = &state {
            if !["pending", "active", "done", "failed"].contains(&s.as_str()) {
                return Err(DomainError::invalid(
                    Msg::new("err.call_list.state").with("value", s),
                ));
            }
        }
        let only = actor.branches.only().map(<[i64]>::to_vec);
        let who = actor.clone();
        self.store
            .view(move |c| {
                let l = q::list_settings(c, list)?.ok_or(DomainError::NotFound)?;
                if !sees(&who, l.branch_id) {
                    return Err(DomainError::NotFound);
                }
                let seen = Seen::of(c, only.as_deref())?;
                let scope = seen.scope();
                Ok(q::items(c, list, state.as_deref(), limit, offset, scope)?)
            })
            .await
    }

    /// The operator's next item: the one they hold, else the next due one they may take
    /// (taken for them in the same change). None when the queue is empty.
    pub async fn next(&self, by: &Actor) -> DomainResult<Option<QueueItem>> {
        let uid = by.user_id;
        let lang = by.language.code().to_string();
        let only = by.branches.only().map(<[i64]>::to_vec);
        let id = self
            .store
            .write(by, move |tx| {
                if let Some(id) = q::held_by(tx, uid)? {
                    return Ok(Some(id));
                }
                let day = tx.clock().start_of_day_of(tx.now());
                let seen = Seen::of(tx, only.as_deref())?;
                let scope = seen.scope();
                let Some(id) = q::next_for(tx, uid, tx.now(), day, scope)? else {
                    return Ok(None);
                };
                if !q::take(tx, id, uid, tx.now())? {
                    return Ok(None);
                }
                let it = q::item(tx, id)?.ok_or(DomainError::NotFound)?;
                let list = it.list_id;
                tx.log(
                    "take",
                    "call_list_item",
                    id,
                    serde_json::json!({"list_id": list}),
                );
                tx.emit(list_event(list, it.branch_id));
                Ok(Some(id))
            })
            .await?;
        match id {
            Some(id) => Ok(Some(self.queue_item(by, id, lang).await?)),
            None => Ok(None),
        }
    }

    /// The item `user` holds now, if any.
    pub async fn held(&self, user: i64) -> DomainResult<Option<i64>> {
        self.store.read(move |c| q::held_by(c, user)).await
    }

    /// The item with its card and script, for `lang`.
    pub async fn queue_item(
        &self,
        actor: &Actor,
        id: i64,
        lang: String,
    ) -> DomainResult<QueueItem> {
        let who = actor.clone();
        self.store
            .view(move |c| {
                let item = q::item(c, id)?.ok_or(DomainError::NotFound)?;
                let list = q::list_settings(c, item.list_id)?.ok_or(DomainError::NotFound)?;
                if !sees_item(c, who.branches.only(), &item)? || !sees(&who, list.branch_id) {
                    return Err(DomainError::NotFound);
                }
                let money =
                    super::shop::parse(crate::db::settings::get(c, super::shop::SETTINGS_KEY)?);
                let (mut card, mut device, mut order) = (
                    Card {
                        name: item.customer_name.clone(),
                        phones: vec![item.phone.clone()],
                        balance: 0,
                        balance_text: money.money(0),
                        orders: Vec::new(),
                        language: item.language.clone(),
                    },
                    String::new(),
                    String::new(),
                );
                if let Some(cid) = item.customer_id {
                    if let Some(cu) = crate::db::customers::get(c, cid)? {
                        card.phones = cu.phones;
                    }
                    let (orders, balance) =
                        crate::db::calls::open_orders_and_balance_in(c, cid, who.branches.only())?;
                    card.balance = balance;
                    card.balance_text = money.money(balance.abs());
                    card.orders = orders
                        .into_iter()
                        .map(|o| crate::db::calls::OrderRef {
                            id: o.id,
                            number: o.number,
                        })
                        .collect();
                    let oid = match item.order_id {
                        Some(o) => Some(o),
                        None => q::latest_order(c, cid)?,
                    };
                    if let Some((n, d)) = oid.map(|o| q::order_facts(c, o)).transpose()?.flatten() {
                        order = n;
                        device = d;
                    }
                }
                let script = fill_script(
                    list.script(&lang),
                    item.customer_name.as_deref().unwrap_or(""),
                    &device,
                    &order,
                    &card.balance_text,
                );
                Ok(QueueItem {
                    item,
                    card,
                    script,
                    max_attempts: list.max_attempts,
                })
            })
            .await
    }

    /// Takes one item for `by`; a second operator asking for the same item is refused.
    pub async fn take(&self, by: &Actor, list: i64, id: i64) -> DomainResult<()> {
        let uid = by.user_id;
        self.store
            .write(by, move |tx| {
                let it = q::item(tx, id)?
                    .filter(|i| i.list_id == list)
                    .ok_or(DomainError::NotFound)?;
                check_item(tx, &it)?;
                if let Some(held) = q::held_by(tx, uid)? {
                    if held != id {
                        return Err(DomainError::conflict("err.call_list.holding"));
                    }
                }
                let l = q::list_settings(tx, list)?.ok_or(DomainError::NotFound)?;
                check_scope(tx, l.branch_id)?;
                if l.state != "active" {
                    return Err(DomainError::conflict("err.call_list.not_active"));
                }
                if it.assigned_to.is_some_and(|a| a != uid)
                    && !tx.who().can(Action::ManageCallLists)
                {
                    return Err(DomainError::conflict("err.call_list.taken"));
                }
                if !q::take(tx, id, uid, tx.now())? {
                    return Err(DomainError::conflict("err.call_list.taken"));
                }
                tx.log(
                    "take",
                    "call_list_item",
                    id,
                    serde_json::json!({"list_id": list}),
                );
                tx.emit(list_event(list, it.branch_id));
                Ok(())
            })
            .await
    }

    /// Puts the held item back for later (skip).
    pub async fn release(&self, by: &Actor, id: i64) -> DomainResult<()> {
        let uid = by.user_id;
        self.store
            .write(by, move |tx| {
                let it = q::item(tx, id)?.ok_or(DomainError::NotFound)?;
                check_item(tx, &it)?;
                if !q::release(tx, id, uid, tx.now())? {
                    return Err(DomainError::conflict("err.call_list.not_held"));
                }
                tx.log(
                    "release",
                    "call_list_item",
                    id,
                    serde_json::json!({"list_id": it.list_id}),
                );
                tx.emit(list_event(it.list_id, it.branch_id));
                Ok(())
            })
            .await
    }

    /// Calls the held item through the operator's desk phone (click-to-call) and links
    /// the call to the item. Returns the call id.
    pub async fn dial(&self, by: &Actor, id: i64) -> DomainResult<String> {
        if !by.can(Action::PlaceCalls) {
            return Err(DomainError::Forbidden);
        }
        let uid = by.user_id;
        let only = by.branches.only().map(<[i64]>::to_vec);
        let it = self
            .store
            .view(move |c| {
                let it = q::item(c, id)?.ok_or(DomainError::NotFound)?;
                if !sees_item(c, only.as_deref(), &it)? {
                    return Err(DomainError::NotFound);
                }
                Ok(it)
            })
            .await?;
        if it.state != "active" || it.taken_by != Some(uid) {
            return Err(DomainError::conflict("err.call_list.not_held"));
        }
        // Network I/O: outside any transaction.
        let call_id = self.telephony.click_to_call(by, &it.phone).await?;
        let cid = call_id.clone();
        self.store
            .write(by, move |tx| {
                q::set_call(tx, id, &cid, tx.now())?;
                tx.log(
                    "dial",
                    "call_list_item",
                    id,
                    serde_json::json!({"list_id": it.list_id, "call_id": cid}),
                );
                tx.emit(
                    Event::new(
                        "call_list.item",
                        serde_json::json!({"id": id, "list_id": it.list_id, "state": "active", "call_id": cid}),
                        Audience::Users(vec![uid]),
                    )
                    .in_branch_opt(it.branch_id),
                );
                Ok(())
            })
            .await?;
        Ok(call_id)
    }

    /// Records the outcome of the item `by` holds.
    pub async fn record(&self, by: &Actor, id: i64, input: OutcomeInput) -> DomainResult<()> {
        let uid = by.user_id;
        let note = text(&input.note, "call_lists.note", MAX_TEXT)?;
        self.store
            .write(by, move |tx| {
                let it = q::item(tx, id)?.ok_or(DomainError::NotFound)?;
                check_item(tx, &it)?;
                if it.state != "active" || it.taken_by != Some(uid) {
                    return Err(DomainError::conflict("err.call_list.not_held"));
                }
                let o = outcome_of(tx, &input.outcome)?;
                let cb = callback_of(tx, &o, &input)?;
                record_on_item(tx, &it, &o, &note, cb, Some(uid))?;
                Ok(())
            })
            .await
    }

    /// The wrap-up of any call: an outcome, a note and a follow-up date on the call (and
    /// on the call-list item it was placed for, when `by` holds it).
    pub async fn wrap_up(
        &self,
        by: &Actor,
        call_id: &str,
        input: OutcomeInput,
    ) -> DomainResult<()> {
        let uid = by.user_id;
        let admin = by.role == crate::model::Role::Admin;
        let note = text(&input.note, "call_lists.note", MAX_TEXT)?;
        let call_id = call_id.to_string();
        self.store
            .write(by, move |tx| {
                let k = q::call_parties(tx, &call_id)?.ok_or(DomainError::NotFound)?;
                check_scope(tx, k.branch_id)?;
                if !admin {
                    let mine = q::extensions_of(tx, uid)?;
                    let rung = k.extensions.split(',').any(|e| mine.iter().any(|m| m == e));
                    if k.answered_user_id != Some(uid) && !mine.contains(&k.from_number) && !rung {
                        return Err(DomainError::Forbidden);
                    }
                }
                let o = outcome_of(tx, &input.outcome)?;
                let follow_up = match input.follow_up.as_deref().map(str::trim) {
                    None | Some("") => callback_of(tx, &o, &input)?,
                    Some(d) => {
                        let date = super::clock::parse_date(d).ok_or_else(|| {
                            DomainError::invalid(
                                Msg::new("err.call_list.follow_up").with("value", d),
                            )
                        })?;
                        if date < tx.clock().today() {
                            return Err(DomainError::invalid(
                                Msg::new("err.call_list.callback_past").with("value", d),
                            ));
                        }
                        Some(tx.clock().day_start(date))
                    }
                };
                if let Some(it) = q::item_by_call(tx, &call_id)?
                    .filter(|i| i.state == "active" && i.taken_by == Some(uid))
                {
                    let cb = if o.effect == "callback" {
                        follow_up
                    } else {
                        None
                    };
                    if o.effect == "callback" && cb.is_none() {
                        return Err(DomainError::invalid("err.call_list.callback_needed"));
                    }
                    record_on_item(tx, &it, &o, &note, cb, Some(uid))?;
                } else {
                    q::log_outcome(
                        tx,
                        &q::NewOutcome {
                            at: tx.now(),
                            user_id: Some(uid),
                            outcome: &o.code,
                            reached: o.reached,
                            note: &note,
                            follow_up,
                            call_id: Some(&call_id),
                            list_id: None,
                            item_id: None,
                            customer_id: k.customer_id,
                        },
                    )?;
                    tx.log(
                        "wrap_up",
                        "call",
                        None,
                        serde_json::json!({"call_id": call_id, "outcome": o.code}),
                    );
                    tx.emit(progress_event(Some(uid), k.branch_id));
                    if let Some(c) = k.customer_id {
                        let e = super::customers::updated_event(tx, c)?;
                        tx.emit(e);
                    }
                }
                tx.emit(
                    Event::new(
                        "call.wrapped",
                        serde_json::json!({"call_id": call_id, "outcome": o.code}),
                        Audience::Staff { masters: vec![] },
                    )
                    .in_branch_opt(k.branch_id),
                );
                Ok(())
            })
            .await
    }

    /// The latest outcome of each of these calls (for the call log).
    pub async fn for_calls(
        &self,
        ids: Vec<String>,
    ) -> DomainResult<std::collections::HashMap<String, LoggedOutcome>> {
        self.store
            .read(move |c| {
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                q::for_calls(c, &refs)
            })
            .await
    }

    /// A customer's outcomes, newest first (for their timeline).
    pub async fn for_customer(&self, customer: i64) -> DomainResult<Vec<LoggedOutcome>> {
        self.store
            .read(move |c| q::for_customer(c, customer, 100))
            .await
    }

    /// Progress of one shop day (today by default): one user, or the whole team.
    pub async fn progress(
        &self,
        actor: &Actor,
        day: Option<&str>,
        user: Option<i64>,
    ) -> DomainResult<Vec<Progress>> {
        let clock = self.store.clock().get();
        let date = match day.map(str::trim).filter(|d| !d.is_empty()) {
            None => clock.today(),
            Some(d) => super::clock::parse_date(d).ok_or_else(|| {
                DomainError::invalid(Msg::new("err.call_list.follow_up").with("value", d))
            })?,
        };
        let (from, to) = (clock.day_start(date), clock.day_end(date));
        let iso = super::clock::iso_date(date);
        let only = actor.branches.only().map(<[i64]>::to_vec);
        let me = actor.user_id;
        self.store
            .view(move |c| {
                let team = q::team(c, only.as_deref())?;
                let users: Vec<(i64, String)> = match user {
                    // Outside the viewer's branches a user does not exist for them.
                    Some(u) if only.is_some() && !team.iter().any(|t| t.0 == u) && u != me => {
                        return Err(DomainError::NotFound)
                    }
                    Some(u) => {
                        let name = crate::db::accounts::user_by_id(c, u)?
                            .map(|x| x.display_name)
                            .ok_or(DomainError::NotFound)?;
                        vec![(u, name)]
                    }
                    None => team.into_iter().map(|(i, n, _)| (i, n)).collect(),
                };
                let mut out = Vec::new();
                for (id, name) in users {
                    out.push(Progress {
                        user_id: id,
                        name,
                        day: iso.clone(),
                        counts: q::day_counts(c, id, from, to)?,
                        reached_outcomes: q::reached_outcomes(c, id, from, to)?,
                        targets: q::targets(c, id)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// Sets a user's daily targets (user 0: everyone's default).
    pub async fn set_targets(&self, by: &Actor, user: i64, t: Targets) -> DomainResult<()> {
        for (v, f) in [
            (t.calls, "progress.calls"),
            (t.reached, "progress.reached"),
            (t.talk_minutes, "progress.talk"),
            (t.orders, "progress.orders"),
            (t.payments, "progress.payments"),
        ] {
            range(v, f, 0, 100_000)?;
        }
        self.store
            .write(by, move |tx| {
                // A user's targets concern the viewers of that user's branches (a user of
                // every branch is watched only by viewers of every branch); the shop's
                // default (user 0) everyone.
                let scope = match user {
                    0 => None,
                    _ => Some(
                        crate::db::accounts::user_by_id(tx, user)?
                            .ok_or(DomainError::NotFound)?
                            .branch_ids,
                    ),
                };
                q::set_targets(tx, user, &t)?;
                tx.log(
                    "targets",
                    "progress",
                    user,
                    serde_json::to_value(&t).unwrap_or_default(),
                );
                tx.emit(progress_event(Some(user), None).in_any_branch(scope));
                Ok(())
            })
            .await
    }

    /// Follows the SIP call events: when a call placed for an item ends unanswered, the
    /// item gets "busy" or "no answer" (and its retry) by itself; any ended call moves
    /// the progress view.
    pub fn start(&self, mut rx: broadcast::Receiver<CallEvent>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(CallEvent::Ended {
                        call_id,
                        cause,
                        talk_ms,
                        ..
                    }) => me.on_ended(call_id, cause, talk_ms).await,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "call lists: fell behind the call events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    async fn on_ended(&self, call_id: String, cause: String, talk_ms: u64) {
        let outcome =
            super::calls::outcome_for(&cause, talk_ms > 0, crate::sip::CallDirection::Outbound);
        let r = self
            .store
            .write(Who::System, move |tx| {
                let it = q::item_by_call(tx, &call_id)?.filter(|i| i.state == "active");
                let Some(it) = it else {
                    let branch =
                        crate::db::calls::by_call_id(tx, &call_id)?.and_then(|k| k.branch_id);
                    tx.emit(progress_event(None, branch));
                    return Ok(None);
                };
                if outcome == super::calls::Outcome::Answered {
                    // The operator records what came of it (the wrap-up).
                    tx.emit(progress_event(it.taken_by, it.branch_id));
                    return Ok(None);
                }
                let code = if outcome == super::calls::Outcome::Busy {
                    "busy"
                } else {
                    "no_answer"
                };
                let Some(o) = q::outcome(tx, code)? else {
                    return Ok(None);
                };
                let user = it.taken_by;
                let r = record_on_item(tx, &it, &o, "", None, user)?;
                Ok(Some(r))
            })
            .await;
        match r {
            Ok(Some(r)) => {
                tracing::debug!(item = r.item, list = r.list, user = ?r.user, "call lists: unanswered call recorded")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "call lists: recording a call's end failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: i64, lang: &str, branch: Option<i64>) -> AgentRow {
        AgentRow {
            user_id: id,
            display_name: format!("u{id}"),
            language: lang.into(),
            branch_id: branch,
        }
    }

    fn row(lang: &str, branch: Option<i64>) -> SourceRow {
        SourceRow {
            customer_id: None,
            phone: "+998901112233".into(),
            order_id: None,
            branch_id: branch,
            language: Some(lang.into()),
        }
    }

    #[test]
    fn assignment_rules_share_items_out() {
        let agents = [agent(1, "uz", Some(1)), agent(2, "ru", Some(2))];
        let rows: Vec<SourceRow> = (0..4).map(|_| row("uz", Some(2))).collect();
        assert_eq!(
            assign(&rows, "round_robin", &agents),
            vec![Some(1), Some(2), Some(1), Some(2)]
        );
        assert_eq!(assign(&rows, "branch", &agents), vec![Some(2); 4]);
        assert_eq!(assign(&rows, "language", &agents), vec![Some(1); 4]);
        assert_eq!(assign(&rows, "pool", &agents), vec![None; 4]);
        assert_eq!(
            assign(&[row("en", None)], "language", &agents),
            vec![None],
            "no one speaks it: the whole list's"
        );
    }

    #[test]
    fn scripts_fill_their_variables() {
        assert_eq!(
            fill_script(
                "Salom, {name}! {device} ({order}) tayyor. Qarz: {balance}",
                "Aziz",
                "Telefon Samsung A52",
                "A-2026-00012",
                "150 000 so'm"
            ),
            "Salom, Aziz! Telefon Samsung A52 (A-2026-00012) tayyor. Qarz: 150 000 so'm"
        );
    }

    #[test]
    fn retries_run_out_after_the_lists_attempts() {
        let l = ListRow {
            max_attempts: 2,
            retry_no_answer_minutes: 60,
            retry_busy_minutes: 5,
            ..Default::default()
        };
        let o = |effect: &str| OutcomeRow {
            id: 1,
            code: effect.into(),
            name_en: String::new(),
            name_ru: String::new(),
            name_uz: String::new(),
            name_uz_cyrl: String::new(),
            effect: effect.into(),
            reached: false,
            position: 0,
            active: true,
        };
        assert_eq!(
            next_state(&o("retry_no_answer"), &l, 0, 1000, None),
            ("pending", 1000 + 3600)
        );
        assert_eq!(
            next_state(&o("retry_busy"), &l, 0, 1000, None),
            ("pending", 1300)
        );
        assert_eq!(
            next_state(&o("retry_busy"), &l, 1, 1000, None),
            ("failed", 1000)
        );
        assert_eq!(
            next_state(&o("callback"), &l, 5, 1000, Some(9000)),
            ("pending", 9000)
        );
        assert_eq!(next_state(&o("wrong"), &l, 0, 1000, None), ("failed", 1000));
        assert_eq!(next_state(&o("done"), &l, 0, 1000, None), ("done", 1000));
    }
}
