//! Aggregates for the dashboard.

use rusqlite::{params, Connection};

use super::DbResult;

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct DayPoint {
    /// Unix seconds at the start of the shop's day.
    pub day: i64,
    pub intake: i64,
    pub completed: i64,
    /// Payments minus refunds.
    pub revenue: i64,
}

/// The condition limiting `o` (orders) to a branch-scoped user's branches: empty for
/// every branch. The ids are integers, written into the SQL as they are.
pub fn in_branches(branches: Option<&[i64]>) -> String {
    match branches {
        None => String::new(),
        Some(ids) => format!(
            " AND o.branch_id IN ({})",
            if ids.is_empty() {
                "NULL".to_string()
            } else {
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            }
        ),
    }
}

/// The join and condition limiting `p` (payments) to a branch-scoped user's branches:
/// nothing at all for every branch, so that sums over payments read the payments index
/// alone.
fn payments_in_branches(branches: Option<&[i64]>) -> (&'static str, String) {
    match branches {
        None => ("", String::new()),
        Some(_) => (" JOIN orders o ON o.id = p.order_id", in_branches(branches)),
    }
}

/// Open orders per status group (from the small index of open orders).
pub fn open_by_group(c: &Connection, branches: Option<&[i64]>) -> DbResult<Vec<(String, i64)>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT s.grp, count(*) FROM orders o INDEXED BY orders_open JOIN statuses s ON s.id = o.status_id
         WHERE o.closed_at IS NULL{} GROUP BY s.grp",
        in_branches(branches)
    ))?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open orders past their due time (see `orders.due_at`).
pub fn overdue_count(c: &Connection, now: i64, branches: Option<&[i64]>) -> DbResult<i64> {
    Ok(c.query_row(
        &format!(
            "SELECT count(*) FROM orders o INDEXED BY orders_open WHERE o.closed_at IS NULL AND o.due_at < ?1{}",
            in_branches(branches)
        ),
        [now],
        |r| r.get(0),
    )?)
}

/// Counts per local day, keyed by days since 1970-01-01 of the local date.
#[derive(Debug, Default)]
pub struct DayBuckets {
    pub intake: Vec<(i64, i64)>,
    pub completed: Vec<(i64, i64)>,
    /// Payments minus refunds.
    pub revenue: Vec<(i64, i64)>,
}

/// Intake, completions and revenue in [from, to) per local day, for a stretch of time in
/// which the shop's zone is `offset_secs` east of UTC (the caller cuts the range where
/// the offset changes).
pub fn day_buckets(
    c: &Connection,
    from: i64,
    to: i64,
    offset_secs: i64,
    branches: Option<&[i64]>,
) -> DbResult<DayBuckets> {
    let scope = in_branches(branches);
    let bucket = |sql: &str| -> DbResult<Vec<(i64, i64)>> {
        let sql = sql.replace("{scope}", &scope);
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map(params![from, to, offset_secs], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    Ok(DayBuckets {
        intake: bucket(
            "SELECT (o.created_at + ?3) / 86400, count(*) FROM orders o WHERE o.created_at >= ?1 AND o.created_at < ?2{scope} GROUP BY 1",
        )?,
        completed: bucket(
            "SELECT (o.closed_at + ?3) / 86400, count(*) FROM orders o WHERE o.closed_at >= ?1 AND o.closed_at < ?2{scope} GROUP BY 1",
        )?,
        revenue: revenue_by_day(c, from, to, offset_secs, branches)?,
    })
}

/// Payments minus refunds per local day in [from, to): (days since 1970-01-01 of the
/// local date, sum), only days with payments, for a stretch in which the shop's zone is
/// `offset_secs` east of UTC.
pub fn revenue_by_day(
    c: &Connection,
    from: i64,
    to: i64,
    offset_secs: i64,
    branches: Option<&[i64]>,
) -> DbResult<Vec<(i64, i64)>> {
    let (join, scope) = payments_in_branches(branches);
    let mut st = c.prepare_cached(&format!(
        "SELECT (p.created_at + ?3) / 86400, sum(CASE WHEN p.kind = 'refund' THEN -p.amount ELSE p.amount END)
         FROM payments p{join} WHERE p.created_at >= ?1 AND p.created_at < ?2{scope} GROUP BY 1 ORDER BY 1"
    ))?;
    let rows = st.query_map(params![from, to, offset_secs], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The admins' daily summary: orders taken in since `since`, open orders overdue at `now`,
/// orders ready but not collected, and callers missed since `since` still waiting for a
/// call back (one per number, as the callback list counts them).
pub fn daily_figures(c: &Connection, since: i64, now: i64) -> DbResult<(i64, i64, i64, i64)> {
    let new_orders: i64 = c.query_row(
        "SELECT count(*) FROM orders WHERE created_at >= ?1",
        [since],
        |r| r.get(0),
    )?;
    let ready: i64 = c.query_row(
        "SELECT count(*) FROM orders o INDEXED BY orders_open JOIN statuses s ON s.id = o.status_id
         WHERE o.closed_at IS NULL AND s.grp = 'ready'",
        [],
        |r| r.get(0),
    )?;
    let missed: i64 = c.query_row(
        "SELECT count(*) FROM missed_calls WHERE resolved_ms IS NULL AND last_ms >= ?1",
        [since * 1000],
        |r| r.get(0),
    )?;
    Ok((new_orders, overdue_count(c, now, None)?, ready, missed))
}
