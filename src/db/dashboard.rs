//! Aggregates for the dashboard, each bounded by an index range (open statuses, a date
//! range) so the page stays fast on a million orders.

use rusqlite::{params, Connection};

use super::DbResult;

/// Seconds east of UTC used for day buckets (Uzbekistan, UTC+5, no daylight saving).
pub const DAY_OFFSET: i64 = 5 * 3600;

/// Orders per status among the statuses not in the closed group.
pub fn open_per_status(c: &Connection) -> DbResult<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT o.status_id, count(*) FROM orders o
         WHERE o.status_id IN (SELECT id FROM statuses WHERE grp <> 'closed')
         GROUP BY o.status_id",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Orders closed in [from, to) per closing status.
pub fn closed_per_status(c: &Connection, from: i64, to: i64) -> DbResult<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT status_id, count(*) FROM orders WHERE closed_at >= ?1 AND closed_at < ?2 GROUP BY status_id",
    )?;
    let rows = st.query_map(params![from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open orders past their status's time limit or their promised date.
pub fn overdue(c: &Connection, now: i64) -> DbResult<i64> {
    Ok(c.prepare_cached(
        "SELECT count(*) FROM orders o JOIN statuses s ON s.id = o.status_id
         WHERE o.status_id IN (SELECT id FROM statuses WHERE grp <> 'closed')
           AND ((s.limit_hours IS NOT NULL AND o.status_since + s.limit_hours * 3600 < ?1)
             OR (o.promised_at IS NOT NULL AND o.promised_at < ?1 AND s.grp <> 'ready'))",
    )?
    .query_row([now], |r| r.get(0))?)
}

/// (day number since the epoch in local time, count) of orders taken in.
pub fn intake_per_day(c: &Connection, from: i64, to: i64) -> DbResult<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT (created_at + ?3) / 86400 AS d, count(*) FROM orders
         WHERE created_at >= ?1 AND created_at < ?2 GROUP BY d ORDER BY d",
    )?;
    let rows = st.query_map(params![from, to, DAY_OFFSET], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (day, count) of orders handed back (closed as delivered).
pub fn completed_per_day(c: &Connection, from: i64, to: i64) -> DbResult<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT (o.closed_at + ?3) / 86400 AS d, count(*) FROM orders o
         WHERE o.closed_at >= ?1 AND o.closed_at < ?2
           AND o.status_id IN (SELECT id FROM statuses WHERE code = 'delivered')
         GROUP BY d ORDER BY d",
    )?;
    let rows = st.query_map(params![from, to, DAY_OFFSET], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (day, money in minus refunds) of payments taken.
pub fn revenue_per_day(c: &Connection, from: i64, to: i64) -> DbResult<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT (created_at + ?3) / 86400 AS d,
                sum(CASE WHEN kind = 'refund' THEN -amount ELSE amount END)
         FROM payments WHERE created_at >= ?1 AND created_at < ?2 GROUP BY d ORDER BY d",
    )?;
    let rows = st.query_map(params![from, to, DAY_OFFSET], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
