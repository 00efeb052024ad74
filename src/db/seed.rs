//! Bulk inserts for `crm seed`: prepared statements reused across a large batch, search
//! rows written alongside.

use rusqlite::{params, Connection};

use super::DbResult;

pub struct SeedCustomer {
    pub name: String,
    pub phone: String,
    pub created_at: i64,
}

pub struct SeedOrder {
    pub customer_id: i64,
    pub status_id: i64,
    pub master_id: Option<i64>,
    pub category: &'static str,
    pub brand: &'static str,
    pub model: &'static str,
    pub serial: String,
    pub complaint: &'static str,
    pub estimate: i64,
    pub total: i64,
    pub paid: i64,
    pub created_at: i64,
    pub closed_at: Option<i64>,
}

/// Inserts customers; returns their ids in order.
pub fn customers(
    c: &Connection,
    rows: &[SeedCustomer],
    phone_tokens: impl Fn(&str) -> String,
) -> DbResult<Vec<i64>> {
    let mut ins = c.prepare_cached(
        "INSERT INTO customers (name, created_at, updated_at) VALUES (?1, ?2, ?2)",
    )?;
    let mut ph = c.prepare_cached(
        "INSERT OR IGNORE INTO customer_phones (customer_id, e164) VALUES (?1, ?2)",
    )?;
    let mut fts = c.prepare_cached(
        "INSERT INTO search_index (rowid, kind, ref, body) VALUES (?1, 'c', ?2, ?3)",
    )?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in rows {
        ins.execute(params![r.name, r.created_at])?;
        let id = c.last_insert_rowid();
        ph.execute(params![id, r.phone])?;
        fts.execute(params![
            super::customers::fts_rowid(id),
            id,
            format!("{} {}", r.name, phone_tokens(&r.phone))
        ])?;
        ids.push(id);
    }
    Ok(ids)
}

/// Inserts orders with their numbers taken from the yearly counter.
pub fn orders(
    c: &Connection,
    rows: &[SeedOrder],
    prefix: &str,
    year_of: impl Fn(i64) -> i32,
) -> DbResult<usize> {
    let mut ins = c.prepare_cached(
        "INSERT INTO orders (number, branch_id, customer_id, status_id, status_since, master_id, device_category, brand, model,
            serial, complaint, estimate, total, paid, created_at, updated_at, closed_at)
         VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?4, ?15)",
    )?;
    let mut fts = c.prepare_cached(
        "INSERT INTO search_index (rowid, kind, ref, body) VALUES (?1, 'o', ?2, ?3)",
    )?;
    // The total is carried by one labour line, so the order's lines add up to its total
    // (a later line change recomputes the total from the lines).
    let mut line = c.prepare_cached(
        "INSERT INTO order_lines (order_id, kind, name, qty, unit_price, created_at) VALUES (?1, 'labour', 'Taʼmirlash ishi', 1, ?2, ?3)",
    )?;
    for r in rows {
        let number = super::orders::next_number(c, prefix, year_of(r.created_at))?;
        let since = r.closed_at.unwrap_or(r.created_at);
        ins.execute(params![
            number,
            r.customer_id,
            r.status_id,
            since,
            r.master_id,
            r.category,
            r.brand,
            r.model,
            r.serial,
            r.complaint,
            r.estimate,
            r.total,
            r.paid,
            r.created_at,
            r.closed_at
        ])?;
        let id = c.last_insert_rowid();
        if r.total > 0 {
            line.execute(params![id, r.total, r.created_at])?;
        }
        fts.execute(params![
            super::orders::fts_rowid(id),
            id,
            format!(
                "{number} {} {} {} {} {} {}",
                number.replace('-', ""),
                r.category,
                r.brand,
                r.model,
                r.serial,
                r.complaint
            )
        ])?;
    }
    Ok(rows.len())
}

pub fn payment(c: &Connection, order: i64, amount: i64, at: i64) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO payments (order_id, kind, amount, created_at) VALUES (?1, 'payment', ?2, ?3)",
    )?
    .execute(params![order, amount, at])?;
    Ok(())
}

pub fn max_order_id(c: &Connection) -> DbResult<i64> {
    Ok(c.query_row("SELECT coalesce(max(id), 0) FROM orders", [], |r| r.get(0))?)
}
