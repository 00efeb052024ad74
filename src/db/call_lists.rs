//! Call lists (issue 18): lists, their items and agents, the admin's outcome codes, the
//! outcome log (call-list items and the wrap-up of any call) and the daily targets.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::segments::Conditions;
use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OutcomeRow {
    pub id: i64,
    pub code: String,
    pub name_en: String,
    pub name_ru: String,
    pub name_uz: String,
    pub name_uz_cyrl: String,
    /// done, retry_no_answer, retry_busy, callback or wrong.
    pub effect: String,
    /// The customer was spoken to.
    pub reached: bool,
    pub position: i64,
    pub active: bool,
}

impl OutcomeRow {
    /// The name in a language code (`en`, `ru`, `uz`, `uz-Cyrl`).
    pub fn name(&self, lang: &str) -> &str {
        match lang {
            "ru" => &self.name_ru,
            "uz-Cyrl" => &self.name_uz_cyrl,
            "en" => &self.name_en,
            _ => &self.name_uz,
        }
    }
}

fn outcome_from(r: &Row) -> rusqlite::Result<OutcomeRow> {
    Ok(OutcomeRow {
        id: r.get(0)?,
        code: r.get(1)?,
        name_en: r.get(2)?,
        name_ru: r.get(3)?,
        name_uz: r.get(4)?,
        name_uz_cyrl: r.get(5)?,
        effect: r.get(6)?,
        reached: r.get(7)?,
        position: r.get(8)?,
        active: r.get(9)?,
    })
}

const OUTCOME_SELECT: &str = "SELECT id, code, name_en, name_ru, name_uz, name_uz_cyrl, effect,
    reached, position, active FROM call_outcomes";

pub fn outcomes(c: &Connection) -> DbResult<Vec<OutcomeRow>> {
    let mut st = c.prepare_cached(&format!("{OUTCOME_SELECT} ORDER BY position, id"))?;
    let rows = st.query_map([], outcome_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn outcome(c: &Connection, code: &str) -> DbResult<Option<OutcomeRow>> {
    Ok(
        c.prepare_cached(&format!("{OUTCOME_SELECT} WHERE code = ?1"))?
            .query_row([code], outcome_from)
            .optional()?,
    )
}

/// Adds or changes (by code) an outcome. Returns its id.
pub fn save_outcome(c: &Connection, o: &OutcomeRow) -> DbResult<i64> {
    c.execute(
        "INSERT INTO call_outcomes (code, name_en, name_ru, name_uz, name_uz_cyrl, effect, reached, position, active)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (code) DO UPDATE SET name_en = ?2, name_ru = ?3, name_uz = ?4,
            name_uz_cyrl = ?5, effect = ?6, reached = ?7, position = ?8, active = ?9",
        params![
            o.code,
            o.name_en,
            o.name_ru,
            o.name_uz,
            o.name_uz_cyrl,
            o.effect,
            o.reached,
            o.position,
            o.active
        ],
    )?;
    Ok(c.query_row(
        "SELECT id FROM call_outcomes WHERE code = ?1",
        [&o.code],
        |r| r.get(0),
    )?)
}

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ListRow {
    pub id: i64,
    pub name: String,
    /// segment, missed, ready, overdue, warranty or import.
    pub source: String,
    /// The segment or import batch it was built from; the days for ready and warranty.
    pub source_ref: Option<i64>,
    pub branch_id: Option<i64>,
    /// active, paused or closed.
    pub state: String,
    /// pool, round_robin, branch or language.
    pub assignment: String,
    pub daily_cap: i64,
    pub retry_no_answer_minutes: i64,
    pub retry_busy_minutes: i64,
    pub max_attempts: i64,
    pub script_en: String,
    pub script_ru: String,
    pub script_uz: String,
    pub script_uz_cyrl: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Items by state.
    pub pending: i64,
    pub active: i64,
    pub done: i64,
    pub failed: i64,
}

impl ListRow {
    /// The script in a language, else the first one written.
    pub fn script(&self, lang: &str) -> &str {
        let own = match lang {
            "ru" => &self.script_ru,
            "uz-Cyrl" => &self.script_uz_cyrl,
            "en" => &self.script_en,
            _ => &self.script_uz,
        };
        if !own.trim().is_empty() {
            return own;
        }
        [
            &self.script_uz,
            &self.script_ru,
            &self.script_uz_cyrl,
            &self.script_en,
        ]
        .into_iter()
        .find(|s| !s.trim().is_empty())
        .map_or("", |s| s.as_str())
    }
}

/// Which items a user sees: those of their branches and the shop-wide ones (`branches`,
/// None: every branch), and of those only the ones whose customer is in their customer
/// scope (`customers`, from `domain::customers::scope`; None: every customer). A shop-wide
/// list built from a segment holds every branch's customers: with customers kept per
/// branch each user is shown only theirs.
#[derive(Clone, Copy, Default)]
pub struct ItemScope<'a> {
    pub branches: Option<&'a [i64]>,
    pub customers: Option<&'a [i64]>,
}

impl ItemScope<'_> {
    /// The condition over items aliased `i`.
    fn sql(&self) -> String {
        let mut cond = shared_or_in("i", self.branches);
        if let Some(ids) = self.customers {
            cond.push_str(&format!(
                " AND (i.customer_id IS NULL OR EXISTS (SELECT 1 FROM customers cu
                   WHERE cu.id = i.customer_id AND {}))",
                super::customers::branch_condition("cu", ids)
            ));
        }
        cond
    }
}

/// The lists with their item counts; `scope` limits the lists to a branch-scoped user's
/// branches and the items counted to the ones they see.
fn list_select(scope: ItemScope) -> String {
    let items = scope.sql();
    let mut sql = String::from(
        "SELECT l.id, l.name, l.source, l.source_ref, l.branch_id, l.state,
    l.assignment, l.daily_cap, l.retry_no_answer_minutes, l.retry_busy_minutes, l.max_attempts,
    l.script_en, l.script_ru, l.script_uz, l.script_uz_cyrl, l.created_at, l.updated_at",
    );
    for state in ["pending", "active", "done", "failed"] {
        sql.push_str(&format!(
            ",\n    (SELECT count(*) FROM call_list_items i WHERE i.list_id = l.id AND i.state = '{state}'{items})"
        ));
    }
    sql.push_str(&format!(
        "\n    FROM call_lists l WHERE 1 = 1{}",
        shared_or_in("l", scope.branches)
    ));
    sql
}

use super::calls::shared_or_in;

fn list_from(r: &Row) -> rusqlite::Result<ListRow> {
    Ok(ListRow {
        id: r.get(0)?,
        name: r.get(1)?,
        source: r.get(2)?,
        source_ref: r.get(3)?,
        branch_id: r.get(4)?,
        state: r.get(5)?,
        assignment: r.get(6)?,
        daily_cap: r.get(7)?,
        retry_no_answer_minutes: r.get(8)?,
        retry_busy_minutes: r.get(9)?,
        max_attempts: r.get(10)?,
        script_en: r.get(11)?,
        script_ru: r.get(12)?,
        script_uz: r.get(13)?,
        script_uz_cyrl: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        pending: r.get(17)?,
        active: r.get(18)?,
        done: r.get(19)?,
        failed: r.get(20)?,
    })
}

/// The lists a user of `scope` sees: their branches' and the shop-wide ones, counting only
/// the items they see.
pub fn lists(c: &Connection, scope: ItemScope) -> DbResult<Vec<ListRow>> {
    let mut st = c.prepare_cached(&format!("{} ORDER BY l.id DESC", list_select(scope)))?;
    let rows = st.query_map([], list_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A list's settings without its item counts (the counts walk every item: not for the
/// queue's hot path).
pub fn list_settings(c: &Connection, id: i64) -> DbResult<Option<ListRow>> {
    Ok(c.prepare_cached(
        "SELECT l.id, l.name, l.source, l.source_ref, l.branch_id, l.state,
            l.assignment, l.daily_cap, l.retry_no_answer_minutes, l.retry_busy_minutes, l.max_attempts,
            l.script_en, l.script_ru, l.script_uz, l.script_uz_cyrl, l.created_at, l.updated_at,
            0, 0, 0, 0
         FROM call_lists l WHERE l.id = ?1",
    )?
    .query_row([id], list_from)
    .optional()?)
}

pub fn list(c: &Connection, id: i64, scope: ItemScope) -> DbResult<Option<ListRow>> {
    Ok(
        c.prepare_cached(&format!("{} AND l.id = ?1", list_select(scope)))?
            .query_row([id], list_from)
            .optional()?,
    )
}

pub fn insert_list(c: &Connection, l: &ListRow, by: Option<i64>, now: i64) -> DbResult<i64> {
    c.execute(
        "INSERT INTO call_lists (name, source, source_ref, branch_id, state, assignment, daily_cap,
            retry_no_answer_minutes, retry_busy_minutes, max_attempts, script_en, script_ru,
            script_uz, script_uz_cyrl, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)",
        params![
            l.name,
            l.source,
            l.source_ref,
            l.branch_id,
            l.assignment,
            l.daily_cap,
            l.retry_no_answer_minutes,
            l.retry_busy_minutes,
            l.max_attempts,
            l.script_en,
            l.script_ru,
            l.script_uz,
            l.script_uz_cyrl,
            by,
            now
        ],
    )?;
    Ok(c.last_insert_rowid())
}

/// Changes the settings a list may change after it is built.
pub fn update_list(c: &Connection, l: &ListRow, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE call_lists SET name = ?2, state = ?3, daily_cap = ?4, retry_no_answer_minutes = ?5,
            retry_busy_minutes = ?6, max_attempts = ?7, script_en = ?8, script_ru = ?9,
            script_uz = ?10, script_uz_cyrl = ?11, updated_at = ?12
         WHERE id = ?1",
        params![
            l.id,
            l.name,
            l.state,
            l.daily_cap,
            l.retry_no_answer_minutes,
            l.retry_busy_minutes,
            l.max_attempts,
            l.script_en,
            l.script_ru,
            l.script_uz,
            l.script_uz_cyrl,
            now
        ],
    )? == 1)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AgentRow {
    pub user_id: i64,
    pub display_name: String,
    pub language: String,
    pub branch_id: Option<i64>,
}

pub fn set_agents(c: &Connection, list: i64, agents: &[(i64, Option<i64>)]) -> DbResult<()> {
    c.execute("DELETE FROM call_list_agents WHERE list_id = ?1", [list])?;
    let mut st = c.prepare_cached(
        "INSERT OR REPLACE INTO call_list_agents (list_id, user_id, branch_id) VALUES (?1, ?2, ?3)",
    )?;
    for (u, b) in agents {
        st.execute(params![list, u, b])?;
    }
    Ok(())
}

pub fn agents(c: &Connection, list: i64) -> DbResult<Vec<AgentRow>> {
    let mut st = c.prepare_cached(
        "SELECT a.user_id, u.display_name, u.language, a.branch_id FROM call_list_agents a
         JOIN users u ON u.id = a.user_id WHERE a.list_id = ?1 ORDER BY a.user_id",
    )?;
    let rows = st.query_map([list], |r| {
        Ok(AgentRow {
            user_id: r.get(0)?,
            display_name: r.get(1)?,
            language: r.get(2)?,
            branch_id: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Active users who exist, among `ids`.
pub fn active_users(c: &Connection, ids: &[i64]) -> DbResult<Vec<i64>> {
    let mut out = Vec::new();
    let mut st = c.prepare_cached("SELECT id FROM users WHERE id = ?1 AND active = 1")?;
    for id in ids {
        if let Some(i) = st.query_row([id], |r| r.get(0)).optional()? {
            out.push(i);
        }
    }
    Ok(out)
}

/// Who to call, from a list's source: one row per customer (the first of their orders
/// for the order sources).
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub customer_id: Option<i64>,
    pub phone: String,
    pub order_id: Option<i64>,
    pub branch_id: Option<i64>,
    pub language: Option<String>,
}

const CUSTOMER_COLS: &str = "c.id,
    (SELECT p.e164 FROM customer_phones p WHERE p.customer_id = c.id ORDER BY p.rowid LIMIT 1),
    c.language";

fn source_rows(
    c: &Connection,
    sql: &str,
    args: &[Value],
    with_order: bool,
) -> DbResult<Vec<SourceRow>> {
    let mut st = c.prepare(sql)?;
    let rows = st.query_map(params_from_iter(args.iter()), |r| {
        Ok(SourceRow {
            customer_id: r.get(0)?,
            phone: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            language: r.get(2)?,
            order_id: if with_order { r.get(3)? } else { None },
            branch_id: r.get(4)?,
        })
    })?;
    let mut out: Vec<SourceRow> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        let r = r?;
        if r.phone.is_empty() || !seen.insert(r.phone.clone()) {
            continue;
        }
        out.push(r);
    }
    Ok(out)
}

/// The members of a segment (its WHERE over `customers c`), with their last branch.
pub fn from_segment(c: &Connection, q: &Conditions) -> DbResult<Vec<SourceRow>> {
    let w = q.to_where();
    source_rows(
        c,
        &format!(
            "SELECT {CUSTOMER_COLS}, NULL,
                (SELECT o.branch_id FROM orders o WHERE o.customer_id = c.id ORDER BY o.id DESC LIMIT 1)
             FROM customers c WHERE {} ORDER BY c.id",
            w.sql
        ),
        &w.args,
        false,
    )
}

/// Customers an import batch created or merged into.
pub fn from_import(c: &Connection, batch: i64) -> DbResult<Vec<SourceRow>> {
    source_rows(
        c,
        &format!(
            "SELECT {CUSTOMER_COLS}, NULL, NULL FROM import_effects e
             JOIN customers c ON c.id = e.customer_id
             WHERE e.batch_id = ?1 AND c.merged_into IS NULL AND c.archived_at IS NULL ORDER BY c.id"
        ),
        &[Value::Integer(batch)],
        false,
    )
}

/// Open missed calls: the number called from, with its customer when known.
/// Open missed-call entries; of a branch's list, that branch's and the shop-wide ones.
pub fn from_missed(c: &Connection, branch: Option<i64>) -> DbResult<Vec<SourceRow>> {
    let only = branch.map(|b| vec![b]);
    let mut st = c.prepare(&format!(
        "SELECT m.customer_id, m.number, cu.language, m.branch_id FROM missed_calls m
         LEFT JOIN customers cu ON cu.id = m.customer_id
         WHERE m.resolved_ms IS NULL AND m.number LIKE '+%'{} ORDER BY m.last_ms",
        shared_or_in("m", only.as_deref())
    ))?;
    let rows = st.query_map([], |r| {
        Ok(SourceRow {
            customer_id: r.get(0)?,
            phone: r.get(1)?,
            language: r.get(2)?,
            order_id: None,
            branch_id: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Which orders a built-in order source takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSource {
    /// Ready (status group `ready`) since this instant or earlier.
    ReadySince(i64),
    /// Not closed, promised before this instant.
    OverdueAt(i64),
    /// Closed with a warranty that ends within `[from, to]`.
    WarrantyEnds(i64, i64),
}

/// The orders of a source (of one branch, or all), one row per phone, oldest order first.
pub fn from_orders(
    c: &Connection,
    source: OrderSource,
    branch: Option<i64>,
) -> DbResult<Vec<SourceRow>> {
    use super::segments::{WARRANTY_END, WARRANTY_OPEN};
    let (cond, mut args) = match source {
        OrderSource::ReadySince(t) => (
            "s.grp = 'ready' AND o.status_since <= ?1".to_string(),
            vec![Value::Integer(t)],
        ),
        OrderSource::OverdueAt(t) => (
            "s.grp <> 'closed' AND o.promised_at IS NOT NULL AND o.promised_at < ?1".to_string(),
            vec![Value::Integer(t)],
        ),
        OrderSource::WarrantyEnds(from, to) => (
            format!("{WARRANTY_OPEN} AND {WARRANTY_END} BETWEEN ?1 AND ?2"),
            vec![Value::Integer(from), Value::Integer(to)],
        ),
    };
    let cond = match branch {
        Some(b) => {
            args.push(Value::Integer(b));
            format!("{cond} AND o.branch_id = ?{}", args.len())
        }
        None => cond,
    };
    source_rows(
        c,
        &format!(
            "SELECT {CUSTOMER_COLS}, o.id, o.branch_id FROM orders o
             JOIN statuses s ON s.id = o.status_id
             JOIN customers c ON c.id = o.customer_id
             WHERE c.merged_into IS NULL AND c.archived_at IS NULL AND {cond}
             ORDER BY o.id"
        ),
        &args,
        true,
    )
}

pub struct NewItem<'a> {
    pub list_id: i64,
    pub row: &'a SourceRow,
    pub assigned_to: Option<i64>,
    pub now: i64,
}

pub fn insert_item(c: &Connection, n: &NewItem) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO call_list_items (list_id, customer_id, phone, order_id, branch_id, language,
            assigned_to, next_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8)",
    )?
    .execute(params![
        n.list_id,
        n.row.customer_id,
        n.row.phone,
        n.row.order_id,
        n.row.branch_id,
        n.row.language,
        n.assigned_to,
        n.now
    ])?;
    Ok(c.last_insert_rowid())
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ItemRow {
    pub id: i64,
    pub list_id: i64,
    pub list_name: String,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    pub phone: String,
    pub order_id: Option<i64>,
    pub order_number: Option<String>,
    pub branch_id: Option<i64>,
    pub language: Option<String>,
    /// pending, active, done or failed.
    pub state: String,
    pub assigned_to: Option<i64>,
    pub assigned_name: Option<String>,
    pub taken_by: Option<i64>,
    pub taken_at: Option<i64>,
    pub attempts: i64,
    /// Unix seconds: not before then.
    pub next_at: i64,
    pub outcome: Option<String>,
    pub note: String,
    pub call_id: Option<String>,
    pub updated_at: i64,
}

const ITEM_SELECT: &str = "SELECT i.id, i.list_id, l.name, i.customer_id, cu.name, i.phone,
    i.order_id, o.number, i.branch_id, i.language, i.state, i.assigned_to, u.display_name,
    i.taken_by, i.taken_at, i.attempts, i.next_at, i.outcome, i.note, i.call_id, i.updated_at
    FROM call_list_items i
    JOIN call_lists l ON l.id = i.list_id
    LEFT JOIN customers cu ON cu.id = i.customer_id
    LEFT JOIN orders o ON o.id = i.order_id
    LEFT JOIN users u ON u.id = i.assigned_to";

fn item_from(r: &Row) -> rusqlite::Result<ItemRow> {
    Ok(ItemRow {
        id: r.get(0)?,
        list_id: r.get(1)?,
        list_name: r.get(2)?,
        customer_id: r.get(3)?,
        customer_name: r.get(4)?,
        phone: r.get(5)?,
        order_id: r.get(6)?,
        order_number: r.get(7)?,
        branch_id: r.get(8)?,
        language: r.get(9)?,
        state: r.get(10)?,
        assigned_to: r.get(11)?,
        assigned_name: r.get(12)?,
        taken_by: r.get(13)?,
        taken_at: r.get(14)?,
        attempts: r.get(15)?,
        next_at: r.get(16)?,
        outcome: r.get(17)?,
        note: r.get(18)?,
        call_id: r.get(19)?,
        updated_at: r.get(20)?,
    })
}

pub fn item(c: &Connection, id: i64) -> DbResult<Option<ItemRow>> {
    Ok(c.prepare_cached(&format!("{ITEM_SELECT} WHERE i.id = ?1"))?
        .query_row([id], item_from)
        .optional()?)
}

pub fn items(
    c: &Connection,
    list: i64,
    state: Option<&str>,
    limit: i64,
    offset: i64,
    scope: ItemScope,
) -> DbResult<Vec<ItemRow>> {
    let mut st = c.prepare_cached(&format!(
        "{ITEM_SELECT} WHERE i.list_id = ?1 AND {}{} ORDER BY i.id LIMIT ?3 OFFSET ?4",
        if state.is_some() {
            "i.state = ?2"
        } else {
            "?2 IS NULL"
        },
        scope.sql()
    ))?;
    let rows = st.query_map(params![list, state, limit, offset], item_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn item_by_call(c: &Connection, call_id: &str) -> DbResult<Option<ItemRow>> {
    Ok(
        c.prepare_cached(&format!("{ITEM_SELECT} WHERE i.call_id = ?1"))?
            .query_row([call_id], item_from)
            .optional()?,
    )
}

/// The item `user` holds now, if any.
pub fn held_by(c: &Connection, user: i64) -> DbResult<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT id FROM call_list_items WHERE taken_by = ?1 AND state = 'active' ORDER BY taken_at LIMIT 1",
    )?
    .query_row([user], |r| r.get(0))
    .optional()?)
}

/// The next item `user` may take at `now`: due and pending on an active list, within
/// the list's daily cap (outcomes they recorded on it since `day_start`); first the ones
/// given to them, then the shared ones of lists they work (or lists nobody is named
/// on). Oldest due first. Each step walks the queue index in order and stops at the
/// first that fits.
pub fn next_for(
    c: &Connection,
    user: i64,
    now: i64,
    day_start: i64,
    scope: ItemScope,
) -> DbResult<Option<i64>> {
    // A branch-scoped operator's queue keeps to their branches' lists and the items they see.
    let scope = format!("{}{}", scope.sql(), shared_or_in("l", scope.branches));
    const CAP: &str = "(l.daily_cap = 0 OR (SELECT count(*) FROM call_outcome_log g
        WHERE g.list_id = l.id AND g.user_id = ?1 AND g.at >= ?3) < l.daily_cap)";
    let mine = c
        .prepare_cached(&format!(
            "SELECT i.id FROM call_list_items i INDEXED BY call_list_items_queue
             JOIN call_lists l ON l.id = i.list_id
             WHERE i.assigned_to = ?1 AND i.state = 'pending' AND i.next_at <= ?2
               AND l.state = 'active' AND {CAP}{scope}
             ORDER BY i.next_at, i.id LIMIT 1"
        ))?
        .query_row(params![user, now, day_start], |r| r.get(0))
        .optional()?;
    if mine.is_some() {
        return Ok(mine);
    }
    Ok(c.prepare_cached(&format!(
        "SELECT i.id FROM call_list_items i INDEXED BY call_list_items_queue
         JOIN call_lists l ON l.id = i.list_id
         WHERE i.assigned_to IS NULL AND i.state = 'pending' AND i.next_at <= ?2
           AND l.state = 'active' AND {CAP}
           AND (EXISTS (SELECT 1 FROM call_list_agents a WHERE a.list_id = l.id AND a.user_id = ?1)
                OR NOT EXISTS (SELECT 1 FROM call_list_agents a WHERE a.list_id = l.id)){scope}
         ORDER BY i.next_at, i.id LIMIT 1"
    ))?
    .query_row(params![user, now, day_start], |r| r.get(0))
    .optional()?)
}

/// Takes an item for `user`: only a pending one (or one they hold already). Exactly one of
/// two operators taking the same item at once gets it.
pub fn take(c: &Connection, id: i64, user: i64, now: i64) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE call_list_items SET state = 'active', taken_by = ?2, taken_at = ?3, updated_at = ?3
         WHERE id = ?1 AND (state = 'pending' OR (state = 'active' AND taken_by = ?2))",
    )?
    .execute(params![id, user, now])?
        == 1)
}

pub fn set_call(c: &Connection, id: i64, call_id: &str, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE call_list_items SET call_id = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, call_id, now],
    )?;
    Ok(())
}

/// Stores an item's outcome: its new state and next time; the item is let go.
pub fn finish_attempt(
    c: &Connection,
    id: i64,
    state: &str,
    next_at: i64,
    outcome: &str,
    note: &str,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "UPDATE call_list_items SET state = ?2, next_at = ?3, outcome = ?4, note = ?5,
            attempts = attempts + 1, taken_by = NULL, taken_at = NULL, updated_at = ?6
         WHERE id = ?1",
        params![id, state, next_at, outcome, note, now],
    )?;
    Ok(())
}

/// Gives an item to one operator.
pub fn assign_to(c: &Connection, id: i64, user: i64) -> DbResult<()> {
    c.execute(
        "UPDATE call_list_items SET assigned_to = ?2 WHERE id = ?1",
        params![id, user],
    )?;
    Ok(())
}

/// Puts a held item back (skipped), unchanged otherwise.
pub fn release(c: &Connection, id: i64, user: i64, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE call_list_items SET state = 'pending', taken_by = NULL, taken_at = NULL, updated_at = ?3
         WHERE id = ?1 AND state = 'active' AND taken_by = ?2",
        params![id, user, now],
    )? == 1)
}

pub struct NewOutcome<'a> {
    pub at: i64,
    pub user_id: Option<i64>,
    pub outcome: &'a str,
    pub reached: bool,
    pub note: &'a str,
    pub follow_up: Option<i64>,
    pub call_id: Option<&'a str>,
    pub list_id: Option<i64>,
    pub item_id: Option<i64>,
    pub customer_id: Option<i64>,
}

pub fn log_outcome(c: &Connection, n: &NewOutcome) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO call_outcome_log (at, user_id, outcome, reached, note, follow_up, call_id,
            list_id, item_id, customer_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        n.at,
        n.user_id,
        n.outcome,
        n.reached,
        n.note,
        n.follow_up,
        n.call_id,
        n.list_id,
        n.item_id,
        n.customer_id
    ])?;
    Ok(c.last_insert_rowid())
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LoggedOutcome {
    pub at: i64,
    pub user_id: Option<i64>,
    pub user_name: Option<String>,
    pub outcome: String,
    pub note: String,
    pub follow_up: Option<i64>,
    pub call_id: Option<String>,
    pub list_id: Option<i64>,
}

fn logged_from(r: &Row) -> rusqlite::Result<LoggedOutcome> {
    Ok(LoggedOutcome {
        at: r.get(0)?,
        user_id: r.get(1)?,
        user_name: r.get(2)?,
        outcome: r.get(3)?,
        note: r.get(4)?,
        follow_up: r.get(5)?,
        call_id: r.get(6)?,
        list_id: r.get(7)?,
    })
}

const LOGGED_SELECT: &str = "SELECT g.at, g.user_id, u.display_name, g.outcome, g.note,
    g.follow_up, g.call_id, g.list_id FROM call_outcome_log g LEFT JOIN users u ON u.id = g.user_id";

/// The latest outcome of each of these calls.
pub fn for_calls(c: &Connection, call_ids: &[&str]) -> DbResult<HashMap<String, LoggedOutcome>> {
    let mut out = HashMap::new();
    let mut st = c.prepare_cached(&format!(
        "{LOGGED_SELECT} WHERE g.call_id = ?1 ORDER BY g.id DESC LIMIT 1"
    ))?;
    for id in call_ids {
        if let Some(o) = st.query_row([id], logged_from).optional()? {
            out.insert(id.to_string(), o);
        }
    }
    Ok(out)
}

/// A customer's outcomes, newest first.
pub fn for_customer(c: &Connection, customer: i64, limit: i64) -> DbResult<Vec<LoggedOutcome>> {
    let mut st = c.prepare_cached(&format!(
        "{LOGGED_SELECT} WHERE g.customer_id = ?1 ORDER BY g.at DESC, g.id DESC LIMIT ?2"
    ))?;
    let rows = st.query_map(params![customer, limit], logged_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One operator's day: what the progress view counts.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct DayCounts {
    pub calls: i64,
    pub reached: i64,
    pub talk_seconds: i64,
    pub orders: i64,
    pub payments: i64,
    /// Payments taken, summed (so'm).
    pub payments_amount: i64,
    /// Outcomes recorded, by code.
    pub outcomes: std::collections::BTreeMap<String, i64>,
}

/// Counts `user`'s work in [from, to) (Unix seconds): calls placed from their extensions
/// (reached: answered) and their talk time, outcomes, orders created, payments taken.
pub fn day_counts(c: &Connection, user: i64, from: i64, to: i64) -> DbResult<DayCounts> {
    let (from_ms, to_ms) = (from * 1000, to * 1000);
    let (calls, reached): (i64, i64) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(k.outcome = 'answered'), 0) FROM calls k
             WHERE k.direction <> 'inbound' AND k.started_ms >= ?2 AND k.started_ms < ?3
               AND k.from_number IN (SELECT number FROM sip_extensions WHERE user_id = ?1)",
        )?
        .query_row(params![user, from_ms, to_ms], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let talk_ms: i64 = c
        .prepare_cached(
            "SELECT coalesce(sum(k.talk_ms), 0) FROM calls k
             WHERE k.answered_user_id = ?1 AND k.started_ms >= ?2 AND k.started_ms < ?3",
        )?
        .query_row(params![user, from_ms, to_ms], |r| r.get(0))?;
    let orders: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM orders WHERE created_by = ?1 AND created_at >= ?2 AND created_at < ?3",
        )?
        .query_row(params![user, from, to], |r| r.get(0))?;
    let (payments, amount): (i64, i64) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(amount), 0) FROM payments
             WHERE created_by = ?1 AND kind <> 'refund' AND created_at >= ?2 AND created_at < ?3",
        )?
        .query_row(params![user, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut outcomes = std::collections::BTreeMap::new();
    let mut st = c.prepare_cached(
        "SELECT outcome, count(*) FROM call_outcome_log WHERE user_id = ?1 AND at >= ?2 AND at < ?3
         GROUP BY outcome",
    )?;
    for r in st.query_map(params![user, from, to], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (k, v) = r?;
        outcomes.insert(k, v);
    }
    Ok(DayCounts {
        calls,
        reached,
        talk_seconds: talk_ms / 1000,
        orders,
        payments,
        payments_amount: amount,
        outcomes,
    })
}

/// Outcomes marked "reached" that `user` recorded in [from, to).
pub fn reached_outcomes(c: &Connection, user: i64, from: i64, to: i64) -> DbResult<i64> {
    Ok(c.prepare_cached(
        "SELECT count(*) FROM call_outcome_log WHERE user_id = ?1 AND reached = 1 AND at >= ?2 AND at < ?3",
    )?
    .query_row(params![user, from, to], |r| r.get(0))?)
}

#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct Targets {
    pub calls: i64,
    pub reached: i64,
    pub talk_minutes: i64,
    pub orders: i64,
    pub payments: i64,
}

/// A user's targets: their own, else the default (user 0), else none.
pub fn targets(c: &Connection, user: i64) -> DbResult<Targets> {
    Ok(c.prepare_cached(
        "SELECT calls, reached, talk_minutes, orders, payments FROM progress_targets
         WHERE user_id IN (?1, 0) ORDER BY user_id DESC LIMIT 1",
    )?
    .query_row([user], |r| {
        Ok(Targets {
            calls: r.get(0)?,
            reached: r.get(1)?,
            talk_minutes: r.get(2)?,
            orders: r.get(3)?,
            payments: r.get(4)?,
        })
    })
    .optional()?
    .unwrap_or_default())
}

pub fn set_targets(c: &Connection, user: i64, t: &Targets) -> DbResult<()> {
    c.execute(
        "INSERT INTO progress_targets (user_id, calls, reached, talk_minutes, orders, payments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (user_id) DO UPDATE SET calls = ?2, reached = ?3, talk_minutes = ?4,
            orders = ?5, payments = ?6",
        params![
            user,
            t.calls,
            t.reached,
            t.talk_minutes,
            t.orders,
            t.payments
        ],
    )?;
    Ok(())
}

/// Active users of these roles (the team the progress view shows), by name.
/// For a viewer limited to `branches`: only users who work in one of them (users of every
/// branch are not theirs to watch).
pub fn team(c: &Connection, branches: Option<&[i64]>) -> DbResult<Vec<(i64, String, String)>> {
    let scope = match branches {
        None => String::new(),
        Some(ids) => format!(
            " AND id IN (SELECT user_id FROM user_branches WHERE branch_id IN ({}))",
            if ids.is_empty() {
                "NULL".to_string()
            } else {
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            }
        ),
    };
    let mut st = c.prepare_cached(&format!(
        "SELECT id, display_name, role FROM users WHERE active = 1 AND role IN ('admin', 'operator'){scope}
         ORDER BY display_name COLLATE NOCASE"
    ))?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The call as the wrap-up needs it: who may wrap it up, and its customer.
pub struct CallParties {
    pub customer_id: Option<i64>,
    pub answered_user_id: Option<i64>,
    pub from_number: String,
    pub extensions: String,
    pub branch_id: Option<i64>,
}

pub fn call_parties(c: &Connection, call_id: &str) -> DbResult<Option<CallParties>> {
    Ok(c.prepare_cached(
        "SELECT customer_id, answered_user_id, from_number, extensions, branch_id FROM calls WHERE call_id = ?1",
    )?
    .query_row([call_id], |r| {
        Ok(CallParties {
            customer_id: r.get(0)?,
            answered_user_id: r.get(1)?,
            from_number: r.get(2)?,
            extensions: r.get(3)?,
            branch_id: r.get(4)?,
        })
    })
    .optional()?)
}

/// The extensions linked to a user.
pub fn extensions_of(c: &Connection, user: i64) -> DbResult<Vec<String>> {
    let mut st = c.prepare_cached("SELECT number FROM sip_extensions WHERE user_id = ?1")?;
    let rows = st.query_map([user], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Facts a script's variables name: the device and number of an order, a balance.
pub fn order_facts(c: &Connection, order: i64) -> DbResult<Option<(String, String)>> {
    Ok(c.prepare_cached(
        "SELECT number, trim(device_category || ' ' || brand || ' ' || model) FROM orders WHERE id = ?1",
    )?
    .query_row([order], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

/// The customer's latest open order (for script variables when an item names none).
pub fn latest_order(c: &Connection, customer: i64) -> DbResult<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT o.id FROM orders o JOIN statuses s ON s.id = o.status_id
         WHERE o.customer_id = ?1 ORDER BY (s.grp = 'closed'), o.id DESC LIMIT 1",
    )?
    .query_row([customer], |r| r.get(0))
    .optional()?)
}
