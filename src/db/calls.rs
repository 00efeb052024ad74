//! SQL for the call log, missed calls and the numbers the screen-pop shows.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

/// An order as a call row or screen-pop names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OrderRef {
    pub id: i64,
    pub number: String,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CallRow {
    pub id: i64,
    pub call_id: String,
    /// internal, inbound or outbound.
    pub direction: String,
    pub from_number: String,
    pub to_number: String,
    /// The other party: E.164 when the number parses, else as sent (an extension).
    pub party_number: String,
    pub ring_group: Option<String>,
    pub extensions: Vec<String>,
    pub answered_ext: Option<String>,
    pub answered_user_id: Option<i64>,
    pub answered_user_name: Option<String>,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    /// The customer's open orders when the call rang.
    pub open_orders: Vec<OrderRef>,
    /// Unix milliseconds.
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub ring_ms: Option<i64>,
    pub talk_ms: Option<i64>,
    /// ringing, answered, missed, busy, no_answer, cancelled or failed.
    pub outcome: String,
    /// The proxy's end cause: completed, cancelled, no_answer, status_NNN, refused (a
    /// call out the box's policy stopped).
    pub cause: Option<String>,
    /// A transfer: the extension that passed the call on, and the call id of the call it
    /// continues (the chain in the log).
    pub transferred_by: Option<String>,
    pub transferred_from: Option<String>,
    /// A recording of the call exists (`GET /calls/{id}/recording`).
    pub recorded: bool,
    /// The branch the call belongs to (its DID's, ring group's or extension's); None: a
    /// shop-wide call, seen in every branch.
    pub branch_id: Option<i64>,
}

/// The condition keeping `alias`'s rows (a `branch_id` column, NULL = shop-wide) to a
/// branch-scoped user's branches: empty for every branch. Ids are integers, written in.
pub fn shared_or_in(alias: &str, branches: Option<&[i64]>) -> String {
    match branches {
        None => String::new(),
        Some(ids) => format!(
            " AND ({alias}.branch_id IS NULL OR {alias}.branch_id IN ({}))",
            if ids.is_empty() {
                "NULL".to_string()
            } else {
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            }
        ),
    }
}

/// The call log's columns, the customer's id and name as a viewer who sees the customers
/// of `customers` may see them (None: every one): a customer of another base is left out,
/// and the row names the viewer's own customer with that number, if any.
fn call_select(customers: Option<&[i64]>) -> String {
    format!(
        "SELECT k.id, k.call_id, k.direction, k.from_number, k.to_number,
    k.party_number, k.ring_group, k.extensions, k.answered_ext, k.answered_user_id, u.display_name,
    {}, k.open_orders, k.started_ms, k.answered_ms, k.ended_ms, k.ring_ms,
    k.talk_ms, k.outcome, k.cause, k.transferred_by, k.transferred_from, k.branch_id,
    EXISTS (SELECT 1 FROM recordings rec WHERE rec.call_id = k.call_id)
    FROM calls k
    LEFT JOIN users u ON u.id = k.answered_user_id
    LEFT JOIN customers cu ON cu.id = k.customer_id",
        customer_cols("k.customer_id", "k.party_number", customers)
    )
}

/// A row's customer id (`id_col`) and name (`cu.name`, `cu` joined), kept only when the
/// customer is of one of `customers`' branches (None: always). Otherwise, with customers
/// kept per branch, two branches may each have a customer with the caller's number
/// (`number_col`) while the row stored one: the viewer's own one (the lowest id, as the
/// screen-pop picks) is named instead.
fn customer_cols(id_col: &str, number_col: &str, customers: Option<&[i64]>) -> String {
    match customers {
        None => format!("{id_col}, cu.name"),
        Some(ids) => {
            let seen = super::customers::branch_condition("cu", ids);
            let theirs = |col: &str| {
                format!(
                    "(SELECT {col} FROM customer_phones p JOIN customers own ON own.id = p.customer_id
                      WHERE p.e164 = {number_col} AND own.merged_into IS NULL AND {}
                      ORDER BY own.id LIMIT 1)",
                    super::customers::branch_condition("own", ids)
                )
            };
            format!(
                "CASE WHEN {seen} THEN {id_col} ELSE {} END,
                 CASE WHEN {seen} THEN cu.name ELSE {} END",
                theirs("own.id"),
                theirs("own.name")
            )
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn call_from_row(r: &Row) -> rusqlite::Result<CallRow> {
    let exts: String = r.get(7)?;
    let orders: String = r.get(13)?;
    Ok(CallRow {
        id: r.get(0)?,
        call_id: r.get(1)?,
        direction: r.get(2)?,
        from_number: r.get(3)?,
        to_number: r.get(4)?,
        party_number: r.get(5)?,
        ring_group: r.get(6)?,
        extensions: split_list(&exts),
        answered_ext: r.get(8)?,
        answered_user_id: r.get(9)?,
        answered_user_name: r.get(10)?,
        customer_id: r.get(11)?,
        customer_name: r.get(12)?,
        open_orders: serde_json::from_str(&orders).unwrap_or_default(),
        started_ms: r.get(14)?,
        answered_ms: r.get(15)?,
        ended_ms: r.get(16)?,
        ring_ms: r.get(17)?,
        talk_ms: r.get(18)?,
        outcome: r.get(19)?,
        cause: r.get(20)?,
        transferred_by: r.get(21)?,
        transferred_from: r.get(22)?,
        branch_id: r.get(23)?,
        recorded: r.get(24)?,
    })
}

pub struct NewCall<'a> {
    pub call_id: &'a str,
    pub direction: &'a str,
    pub from_number: &'a str,
    pub to_number: &'a str,
    pub party_number: &'a str,
    pub ring_group: Option<&'a str>,
    pub extensions: &'a [String],
    pub customer_id: Option<i64>,
    pub open_orders: &'a [OrderRef],
    pub transferred_by: Option<&'a str>,
    pub transferred_from: Option<&'a str>,
    pub started_ms: i64,
    pub branch_id: Option<i64>,
}

/// Records a ringing call. A second Ringing for the same call (a sequential ring group
/// moving on) adds the newly alerted extensions. Returns the row id.
pub fn upsert_ringing(c: &Connection, n: &NewCall) -> DbResult<i64> {
    if let Some((id, exts)) = c
        .prepare_cached("SELECT id, extensions FROM calls WHERE call_id = ?1")?
        .query_row([n.call_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?
    {
        let mut all = split_list(&exts);
        for e in n.extensions {
            if !all.contains(e) {
                all.push(e.clone());
            }
        }
        c.prepare_cached("UPDATE calls SET extensions = ?2 WHERE id = ?1")?
            .execute(params![id, all.join(",")])?;
        return Ok(id);
    }
    c.prepare_cached(
        "INSERT INTO calls (call_id, direction, from_number, to_number, party_number, ring_group,
            extensions, customer_id, open_orders, started_ms, transferred_by, transferred_from,
            branch_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        n.call_id,
        n.direction,
        n.from_number,
        n.to_number,
        n.party_number,
        n.ring_group,
        n.extensions.join(","),
        n.customer_id,
        serde_json::to_string(n.open_orders).unwrap_or_else(|_| "[]".into()),
        n.started_ms,
        n.transferred_by,
        n.transferred_from,
        n.branch_id
    ])?;
    Ok(c.last_insert_rowid())
}

/// Marks the call answered (the first answer wins). Returns false for an unknown call.
pub fn set_answered(
    c: &Connection,
    call_id: &str,
    ext: &str,
    user_id: Option<i64>,
    at_ms: i64,
) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE calls SET answered_ext = ?2, answered_user_id = ?3, answered_ms = ?4, outcome = 'answered'
         WHERE call_id = ?1 AND answered_ms IS NULL",
    )?
    .execute(params![call_id, ext, user_id, at_ms])?
        == 1)
}

pub fn set_ended(
    c: &Connection,
    call_id: &str,
    outcome: &str,
    cause: &str,
    ring_ms: i64,
    talk_ms: i64,
    at_ms: i64,
) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE calls SET outcome = ?2, cause = ?3, ring_ms = ?4, talk_ms = ?5, ended_ms = ?6
         WHERE call_id = ?1 AND ended_ms IS NULL",
    )?
    .execute(params![call_id, outcome, cause, ring_ms, talk_ms, at_ms])?
        == 1)
}

/// Closes the calls a previous run left open: the proxy's dialogs do not outlive the
/// process, so no end event will ever come for them. Answered ones keep their outcome;
/// ones still ringing failed. Their end is the restart (`at_ms`), cause `interrupted`.
pub fn close_interrupted(c: &Connection, at_ms: i64) -> DbResult<usize> {
    Ok(c.execute(
        "UPDATE calls SET ended_ms = max(?1, coalesce(answered_ms, started_ms)), cause = 'interrupted',
                outcome = CASE WHEN answered_ms IS NULL THEN 'failed' ELSE 'answered' END
         WHERE ended_ms IS NULL",
        [at_ms],
    )?)
}

pub fn by_call_id(c: &Connection, call_id: &str) -> DbResult<Option<CallRow>> {
    by_call_id_for(c, call_id, None)
}

/// One call as a viewer who sees the customers of `customers` (None: every one) sees it.
pub fn by_call_id_for(
    c: &Connection,
    call_id: &str,
    customers: Option<&[i64]>,
) -> DbResult<Option<CallRow>> {
    Ok(
        c.prepare_cached(&format!("{} WHERE k.call_id = ?1", call_select(customers)))?
            .query_row([call_id], call_from_row)
            .optional()?,
    )
}

/// Calls still ringing or talking (ended_ms unset), for the live status after a restart
/// of the page: newest first.
pub fn unfinished(c: &Connection, since_ms: i64) -> DbResult<Vec<CallRow>> {
    let mut st = c.prepare_cached(&format!(
        "{} WHERE k.ended_ms IS NULL AND k.started_ms >= ?1 ORDER BY k.id DESC LIMIT 200",
        call_select(None)
    ))?;
    let rows = st.query_map([since_ms], call_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Filters for the call log; `None` = any.
#[derive(Debug, Default, Clone)]
pub struct CallFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub direction: Option<String>,
    pub outcome: Option<String>,
    /// Answered by this user.
    pub user_id: Option<i64>,
    /// The other party's number (normalised), or an extension on either end.
    pub number: Option<String>,
    pub customer_id: Option<i64>,
    /// A branch-scoped user's branches: their calls and the shop-wide ones.
    pub branch_ids: Option<Vec<i64>>,
    /// The branches whose customers the viewer sees (`domain::customers::scope`; None:
    /// every one): another base's customer is left out of the rows, the number stays.
    pub customers_of: Option<Vec<i64>>,
    pub limit: i64,
    pub offset: i64,
}

fn filter_sql(f: &CallFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut w = vec!["1 = 1".to_string()];
    let mut p: Vec<Value> = Vec::new();
    let mut add = |cond: &str, v: Value, w: &mut Vec<String>| {
        p.push(v);
        w.push(cond.replace('?', &format!("?{}", p.len())));
    };
    if let Some(v) = f.from_ms {
        add("k.started_ms >= ?", Value::Integer(v), &mut w);
    }
    if let Some(v) = f.to_ms {
        add("k.started_ms < ?", Value::Integer(v), &mut w);
    }
    if let Some(v) = &f.direction {
        add("k.direction = ?", Value::Text(v.clone()), &mut w);
    }
    if let Some(v) = &f.outcome {
        add("k.outcome = ?", Value::Text(v.clone()), &mut w);
    }
    if let Some(v) = f.user_id {
        add("k.answered_user_id = ?", Value::Integer(v), &mut w);
    }
    if let Some(v) = &f.number {
        // Every `?` becomes the same numbered parameter.
        add(
            "(k.party_number = ? OR k.from_number = ? OR k.to_number = ?)",
            Value::Text(v.clone()),
            &mut w,
        );
    }
    if let Some(v) = f.customer_id {
        add("k.customer_id = ?", Value::Integer(v), &mut w);
    }
    let scope = shared_or_in("k", f.branch_ids.as_deref());
    if let Some(cond) = scope.strip_prefix(" AND ") {
        w.push(cond.to_string());
    }
    (w.join(" AND "), p)
}

pub fn list(c: &Connection, f: &CallFilter) -> DbResult<Vec<CallRow>> {
    let (wh, mut p) = filter_sql(f);
    p.push(f.limit.into());
    p.push(f.offset.into());
    let sql = format!(
        "{} WHERE {wh} ORDER BY k.started_ms DESC, k.id DESC LIMIT ?{} OFFSET ?{}",
        call_select(f.customers_of.as_deref()),
        p.len() - 1,
        p.len()
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(p), call_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Of these orders, the ids of those in `branches`: a call's open orders as a viewer of
/// those branches may see them.
pub fn orders_in_branches(
    c: &Connection,
    ids: &[i64],
    branches: &[i64],
) -> DbResult<std::collections::HashSet<i64>> {
    if ids.is_empty() || branches.is_empty() {
        return Ok(Default::default());
    }
    let join = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let mut st = c.prepare(&format!(
        "SELECT id FROM orders WHERE id IN ({}) AND branch_id IN ({})",
        join(ids),
        join(branches)
    ))?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Matching calls, up to `cap + 1`.
pub fn count(c: &Connection, f: &CallFilter, cap: i64) -> DbResult<i64> {
    let (wh, p) = filter_sql(f);
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM calls k WHERE {wh} LIMIT {})",
        cap + 1
    );
    Ok(c.prepare_cached(&sql)?
        .query_row(rusqlite::params_from_iter(p), |r| r.get(0))?)
}

/// The last call with this party before `before_ms` (for the screen-pop).
/// Of a branch's call, only that branch's and shop-wide calls.
pub fn last_call_with(
    c: &Connection,
    party: &str,
    before_ms: i64,
    branch: Option<i64>,
) -> DbResult<Option<CallRow>> {
    let branches = branch.map(|b| vec![b]);
    Ok(c.prepare_cached(&format!(
        "{} WHERE k.party_number = ?1 AND k.started_ms < ?2{} ORDER BY k.started_ms DESC LIMIT 1",
        call_select(None),
        shared_or_in("k", branches.as_deref())
    ))?
    .query_row(params![party, before_ms], call_from_row)
    .optional()?)
}

/// The branch a new call belongs to, by the first rule that gives one: a transferred
/// call keeps the branch of the call it continues; an inbound call takes its DID's; a
/// call to a ring group the group's; else the calling extension's (internal and
/// outbound), then the first alerted extension's — an extension's branch being its
/// user's when the user works in exactly one. None: a shop-wide call.
pub fn branch_of_call(
    c: &Connection,
    inbound: bool,
    from: &str,
    to: &str,
    group: Option<&str>,
    extensions: &[String],
    transferred_from: Option<&str>,
) -> DbResult<Option<i64>> {
    if let Some(prev) = transferred_from {
        if let Some(b) = c
            .prepare_cached("SELECT branch_id FROM calls WHERE call_id = ?1")?
            .query_row([prev], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten()
        {
            return Ok(Some(b));
        }
    }
    if inbound {
        if let Some(b) = c
            .prepare_cached(
                "SELECT branch_id FROM sip_dids WHERE did = ?1 AND branch_id IS NOT NULL LIMIT 1",
            )?
            .query_row([to], |r| r.get::<_, i64>(0))
            .optional()?
        {
            return Ok(Some(b));
        }
    }
    if let Some(g) = group {
        if let Some(b) = c
            .prepare_cached("SELECT branch_id FROM sip_ring_groups WHERE number = ?1")?
            .query_row([g], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten()
        {
            return Ok(Some(b));
        }
    }
    // An extension's branch: its own (`sip_extensions.branch_id`), else that of its user
    // when the user works in exactly one.
    let mut st = c.prepare_cached(
        "SELECT coalesce(e.branch_id,
                    (SELECT CASE count(*) WHEN 1 THEN min(ub.branch_id) END
                     FROM user_branches ub WHERE ub.user_id = e.user_id))
         FROM sip_extensions e WHERE e.number = ?1",
    )?;
    let caller = (!inbound).then_some(from);
    for e in caller
        .into_iter()
        .chain(extensions.iter().map(String::as_str))
    {
        let b: Option<i64> = st.query_row([e], |r| r.get(0)).optional()?.flatten();
        if b.is_some() {
            return Ok(b);
        }
    }
    Ok(None)
}

// ----- missed calls ---------------------------------------------------------------------

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MissedRow {
    pub id: i64,
    pub number: String,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    /// Unanswered calls from this number since the entry opened.
    pub attempts: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub resolved_ms: Option<i64>,
    /// called_back, got_through or done.
    pub resolved_how: Option<String>,
    pub resolved_by: Option<String>,
    /// The branch whose calls were missed (None: shop-wide calls).
    pub branch_id: Option<i64>,
}

/// The missed-call columns, the customer as a viewer who sees the customers of
/// `customers` may see them (see [`call_select`]).
fn missed_select(customers: Option<&[i64]>) -> String {
    format!(
        "SELECT m.id, m.number, {}, m.attempts, m.first_ms,
    m.last_ms, m.resolved_ms, m.resolved_how, coalesce(d.display_name, u.display_name), m.branch_id
    FROM missed_calls m
    LEFT JOIN customers cu ON cu.id = m.customer_id
    LEFT JOIN calls k ON k.id = m.resolved_call
    LEFT JOIN users u ON u.id = k.answered_user_id
    LEFT JOIN users d ON d.id = m.resolved_user",
        customer_cols("m.customer_id", "m.number", customers)
    )
}

fn missed_from_row(r: &Row) -> rusqlite::Result<MissedRow> {
    Ok(MissedRow {
        id: r.get(0)?,
        number: r.get(1)?,
        customer_id: r.get(2)?,
        customer_name: r.get(3)?,
        attempts: r.get(4)?,
        first_ms: r.get(5)?,
        last_ms: r.get(6)?,
        resolved_ms: r.get(7)?,
        resolved_how: r.get(8)?,
        resolved_by: r.get(9)?,
        branch_id: r.get(10)?,
    })
}

/// Counts one more unanswered call from `number` to `branch` (None: shop-wide): opens
/// its entry or bumps it.
pub fn record_missed(
    c: &Connection,
    number: &str,
    customer_id: Option<i64>,
    call: i64,
    at_ms: i64,
    branch: Option<i64>,
) -> DbResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE missed_calls SET attempts = attempts + 1, last_ms = ?2, last_call = ?3,
                customer_id = coalesce(?4, customer_id)
             WHERE number = ?1 AND resolved_ms IS NULL AND branch_id IS ?5",
        )?
        .execute(params![number, at_ms, call, customer_id, branch])?;
    if n == 0 {
        c.prepare_cached(
            "INSERT INTO missed_calls (number, customer_id, attempts, first_ms, last_ms, last_call, branch_id)
             VALUES (?1, ?2, 1, ?3, ?3, ?4, ?5)",
        )?
        .execute(params![number, customer_id, at_ms, call, branch])?;
    }
    Ok(())
}

/// Closes the open entries of `number` that a call of `branch` answers: that branch's and
/// the shop-wide one (a shop-wide call closes every branch's). Returns whether any was
/// closed.
pub fn resolve_missed(
    c: &Connection,
    number: &str,
    call: i64,
    how: &str,
    at_ms: i64,
    branch: Option<i64>,
) -> DbResult<bool> {
    Ok(c.prepare_cached(&format!(
        "UPDATE missed_calls SET resolved_ms = ?2, resolved_call = ?3, resolved_how = ?4
         WHERE number = ?1 AND resolved_ms IS NULL AND {}",
        if branch.is_some() {
            "(branch_id IS NULL OR branch_id = ?5)"
        } else {
            "?5 IS NULL"
        }
    ))?
    .execute(params![number, at_ms, call, how, branch])?
        >= 1)
}

/// The branch of missed-call entry `id`: None when there is no such entry, Some(None) for
/// a shop-wide one.
pub fn missed_branch(c: &Connection, id: i64) -> DbResult<Option<Option<i64>>> {
    Ok(
        c.prepare_cached("SELECT branch_id FROM missed_calls WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}

/// Calls out through a trunk since `since_ms`, by the extension that placed them, as unix
/// seconds (for the hourly limit after a restart).
pub fn recent_outbound(c: &Connection, since_ms: i64) -> DbResult<HashMap<String, Vec<u64>>> {
    let mut st = c.prepare_cached(
        "SELECT from_number, started_ms FROM calls WHERE started_ms >= ?1 AND direction = 'outbound'
           AND COALESCE(cause, '') <> 'refused'",
    )?;
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    let rows = st.query_map([since_ms], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (ext, ms) = row?;
        out.entry(ext).or_default().push((ms / 1000) as u64);
    }
    Ok(out)
}

/// What marking a missed-call entry done found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkDone {
    Done,
    AlreadyResolved,
    NotFound,
}

/// Resolves entry `id` as done by `user_id`, unless it is resolved already.
pub fn mark_missed_done(c: &Connection, id: i64, user_id: i64, at_ms: i64) -> DbResult<MarkDone> {
    let n = c
        .prepare_cached(
            "UPDATE missed_calls SET resolved_ms = ?2, resolved_how = 'done', resolved_user = ?3
             WHERE id = ?1 AND resolved_ms IS NULL",
        )?
        .execute(params![id, at_ms, user_id])?;
    if n == 1 {
        return Ok(MarkDone::Done);
    }
    let exists = c
        .prepare_cached("SELECT 1 FROM missed_calls WHERE id = ?1")?
        .exists([id])?;
    Ok(if exists {
        MarkDone::AlreadyResolved
    } else {
        MarkDone::NotFound
    })
}

pub fn open_missed(c: &Connection, number: &str) -> DbResult<Option<MissedRow>> {
    Ok(c.prepare_cached(&format!(
        "{} WHERE m.number = ?1 AND m.resolved_ms IS NULL ORDER BY m.id LIMIT 1",
        missed_select(None)
    ))?
    .query_row([number], missed_from_row)
    .optional()?)
}

/// Open entries (latest attempt first), or resolved ones too.
pub fn list_missed(
    c: &Connection,
    include_resolved: bool,
    limit: i64,
    offset: i64,
    branches: Option<&[i64]>,
    customers: Option<&[i64]>,
) -> DbResult<Vec<MissedRow>> {
    let wh = if include_resolved {
        "1 = 1"
    } else {
        "m.resolved_ms IS NULL"
    };
    let scope = shared_or_in("m", branches);
    let mut st = c.prepare_cached(&format!(
        "{} WHERE {wh}{scope} ORDER BY m.last_ms DESC, m.id DESC LIMIT ?1 OFFSET ?2",
        missed_select(customers)
    ))?;
    let rows = st.query_map(params![limit, offset], missed_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn count_open_missed(c: &Connection, branches: Option<&[i64]>) -> DbResult<i64> {
    Ok(c.query_row(
        &format!(
            "SELECT count(*) FROM missed_calls m WHERE m.resolved_ms IS NULL{}",
            shared_or_in("m", branches)
        ),
        [],
        |r| r.get(0),
    )?)
}

// ----- for the screen-pop and the dashboard ---------------------------------------------

/// A user linked to an alerted extension.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtUser {
    pub extension: String,
    pub user_id: i64,
    pub display_name: String,
    pub role: String,
    /// The branches the user works in; empty for every branch.
    pub branch_ids: Vec<i64>,
}

/// The active users linked to these extensions.
pub fn users_of_extensions(c: &Connection, exts: &[String]) -> DbResult<Vec<ExtUser>> {
    let mut st = c.prepare_cached(
        "SELECT e.number, u.id, u.display_name, u.role,
                (SELECT group_concat(b.branch_id, ' ') FROM user_branches b WHERE b.user_id = u.id)
         FROM sip_extensions e
         JOIN users u ON u.id = e.user_id WHERE e.number = ?1 AND u.active = 1",
    )?;
    let mut out = Vec::new();
    for e in exts {
        let rows = st.query_map([e], |r| {
            let branches: Option<String> = r.get(4)?;
            Ok(ExtUser {
                extension: r.get(0)?,
                user_id: r.get(1)?,
                display_name: r.get(2)?,
                role: r.get(3)?,
                branch_ids: branches
                    .unwrap_or_default()
                    .split(' ')
                    .filter_map(|b| b.parse().ok())
                    .collect(),
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

/// An open order as the screen-pop shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OpenOrder {
    pub id: i64,
    pub number: String,
    pub status_id: i64,
    pub status_code: String,
    pub promised_at: Option<i64>,
    pub balance: i64,
}

/// The customer's orders that are not closed (newest first) and what they owe overall
/// (as on the customer card: open orders plus closed ones not fully paid).
pub fn open_orders_and_balance(c: &Connection, customer: i64) -> DbResult<(Vec<OpenOrder>, i64)> {
    open_orders_and_balance_in(c, customer, None)
}

/// [`open_orders_and_balance`] within `branches` (None: every branch).
pub fn open_orders_and_balance_in(
    c: &Connection,
    customer: i64,
    branches: Option<&[i64]>,
) -> DbResult<(Vec<OpenOrder>, i64)> {
    let scope = super::reports::in_branches(branches);
    let mut st = c.prepare_cached(&format!(
        "SELECT o.id, o.number, o.status_id, s.code, o.promised_at, {due}
         FROM orders o JOIN statuses s ON s.id = o.status_id
         WHERE o.customer_id = ?1 AND s.grp <> 'closed'{scope} ORDER BY o.id DESC LIMIT 20",
        due = crate::model::money::DUE_SQL
    ))?;
    let rows = st.query_map([customer], |r| {
        Ok(OpenOrder {
            id: r.get(0)?,
            number: r.get(1)?,
            status_id: r.get(2)?,
            status_code: r.get(3)?,
            promised_at: r.get(4)?,
            balance: r.get(5)?,
        })
    })?;
    let orders: Vec<OpenOrder> = rows.collect::<Result<_, _>>()?;
    let balance: i64 = c
        .prepare_cached(
            // Open orders owe against their estimate until work lines exist (as on the
            // order page); a closed order owes only what its lines came to.
            &format!(
                "SELECT coalesce(sum(CASE WHEN s.grp <> 'closed' THEN {due} ELSE o.total - o.paid END), 0)
                 FROM orders o JOIN statuses s ON s.id = o.status_id
                 WHERE o.customer_id = ?1 AND (s.grp <> 'closed' OR o.total > o.paid){scope}",
                due = crate::model::money::DUE_SQL
            ),
        )?
        .query_row([customer], |r| r.get(0))?;
    Ok((orders, balance))
}

/// (answered, missed) per local hour 0-23.
pub type ByHour = [(i64, i64); 24];
/// (answered, missed) per weekday, Monday first.
pub type ByWeekday = [(i64, i64); 7];

/// Answered and missed calls toward the office (not outbound) in [from, to), bucketed by
/// local hour (0-23) and weekday (0 = Monday).
pub fn counts_by_hour_and_weekday(
    c: &Connection,
    from_ms: i64,
    to_ms: i64,
    tz_secs: i64,
    branches: Option<&[i64]>,
) -> DbResult<(ByHour, ByWeekday)> {
    let mut hours = [(0i64, 0i64); 24];
    let mut days = [(0i64, 0i64); 7];
    let mut st = c.prepare_cached(&format!(
        "SELECT ((started_ms / 1000 + ?3) / 3600) % 24,
                ((started_ms / 1000 + ?3) / 86400 + 3) % 7,
                outcome = 'answered', count(*)
         FROM calls k WHERE started_ms >= ?1 AND started_ms < ?2 AND direction <> 'outbound'
           AND outcome IN ('answered', 'missed', 'no_answer', 'busy'){}
         GROUP BY 1, 2, 3",
        shared_or_in("k", branches)
    ))?;
    let rows = st.query_map(params![from_ms, to_ms, tz_secs], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for r in rows {
        let (h, d, answered, n) = r?;
        let (h, d) = (h.rem_euclid(24) as usize, d.rem_euclid(7) as usize);
        if answered {
            hours[h].0 += n;
            days[d].0 += n;
        } else {
            hours[h].1 += n;
            days[d].1 += n;
        }
    }
    Ok((hours, days))
}

/// Every distinct set of branches a user is limited to (users of every branch list none).
pub fn branch_scopes(c: &Connection) -> DbResult<Vec<Vec<i64>>> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT ids FROM (SELECT group_concat(branch_id) AS ids FROM
            (SELECT user_id, branch_id FROM user_branches ORDER BY user_id, branch_id)
         GROUP BY user_id)",
    )?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        let mut ids: Vec<i64> = r?.split(',').filter_map(|x| x.parse().ok()).collect();
        ids.sort_unstable();
        if !out.contains(&ids) {
            out.push(ids);
        }
    }
    Ok(out)
}
