//! Bulk inserts for `crm seed`: many customers and orders per statement cache and per
//! transaction, with their search rows, bypassing the per-row rules of the domain (the
//! generator produces valid data by construction).

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

pub struct SeedCustomer {
    pub name: String,
    pub phones: Vec<String>,
    pub telegram: String,
    pub address: String,
    pub created_at: i64,
}

pub struct SeedLine {
    pub kind: &'static str,
    pub name: String,
    pub qty: i64,
    pub unit_price: i64,
}

pub struct SeedPayment {
    pub kind: &'static str,
    pub amount: i64,
    pub method: &'static str,
    pub at: i64,
}

pub struct SeedOrder {
    pub number: String,
    pub customer_id: i64,
    pub status_id: i64,
    pub status_code: &'static str,
    pub status_since: i64,
    pub master_id: Option<i64>,
    pub device_category: &'static str,
    pub brand: &'static str,
    pub model: &'static str,
    pub serial: String,
    pub complaint: &'static str,
    pub condition: &'static str,
    pub accessories: &'static str,
    pub urgent: bool,
    pub promised_at: Option<i64>,
    pub estimate: i64,
    pub warranty_days: i64,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub lines: Vec<SeedLine>,
    pub payments: Vec<SeedPayment>,
}

/// Inserts customers with their phones and search rows; returns their ids in order.
pub fn insert_customers(c: &Connection, rows: &[SeedCustomer]) -> DbResult<Vec<i64>> {
    let mut cust = c.prepare_cached(
        "INSERT INTO customers (name, telegram, address, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    let mut phone =
        c.prepare_cached("INSERT INTO customer_phones (customer_id, e164) VALUES (?1, ?2)")?;
    let mut fts = c.prepare_cached(
        "INSERT INTO search_index (rowid, kind, ref, body) VALUES (?1, 'c', ?2, ?3)",
    )?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in rows {
        cust.execute(params![r.name, r.telegram, r.address, r.created_at])?;
        let id = c.last_insert_rowid();
        for p in &r.phones {
            phone.execute(params![id, p])?;
        }
        let body = super::customers::search_body(&r.name, &r.phones, &r.telegram);
        fts.execute(params![super::customers::fts_rowid(id), id, body])?;
        ids.push(id);
    }
    Ok(ids)
}

/// Inserts orders with their lines, payments, a timeline (created, final status) and
/// search rows. Totals and paid sums are computed here from the lines and payments.
pub fn insert_orders(c: &Connection, rows: &[SeedOrder]) -> DbResult<()> {
    let mut order = c.prepare_cached(
        "INSERT INTO orders (number, branch_id, customer_id, status_id, status_since, master_id, device_category,
            brand, model, serial, complaint, condition, accessories, urgent, promised_at, estimate, warranty_days,
            total, paid, created_by, created_at, updated_at, closed_at)
         VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
    )?;
    let mut line = c.prepare_cached(
        "INSERT INTO order_lines (order_id, kind, name, qty, unit_price, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut pay = c.prepare_cached(
        "INSERT INTO payments (order_id, kind, amount, method, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut event = c.prepare_cached(
        "INSERT INTO order_events (order_id, at, actor_id, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut fts = c.prepare_cached(
        "INSERT INTO search_index (rowid, kind, ref, body) VALUES (?1, 'o', ?2, ?3)",
    )?;
    for o in rows {
        let total: i64 = o.lines.iter().map(|l| l.qty * l.unit_price).sum();
        let paid: i64 = o
            .payments
            .iter()
            .map(|p| {
                if p.kind == "refund" {
                    -p.amount
                } else {
                    p.amount
                }
            })
            .sum();
        let updated = o.closed_at.unwrap_or(o.status_since);
        order.execute(params![
            o.number,
            o.customer_id,
            o.status_id,
            o.status_since,
            o.master_id,
            o.device_category,
            o.brand,
            o.model,
            o.serial,
            o.complaint,
            o.condition,
            o.accessories,
            o.urgent,
            o.promised_at,
            o.estimate,
            o.warranty_days,
            total,
            paid,
            o.created_by,
            o.created_at,
            updated,
            o.closed_at
        ])?;
        let id = c.last_insert_rowid();
        event.execute(params![
            id,
            o.created_at,
            o.created_by,
            "created",
            format!("{{\"number\":\"{}\"}}", o.number)
        ])?;
        for l in &o.lines {
            line.execute(params![
                id,
                l.kind,
                l.name,
                l.qty,
                l.unit_price,
                o.master_id,
                o.created_at
            ])?;
        }
        for p in &o.payments {
            pay.execute(params![id, p.kind, p.amount, p.method, o.created_by, p.at])?;
        }
        if o.status_code != "new" {
            event.execute(params![
                id,
                o.status_since,
                o.master_id.or(o.created_by),
                "status",
                format!("{{\"from\":\"new\",\"to\":\"{}\"}}", o.status_code)
            ])?;
        }
        let body = format!(
            "{} {} {} {} {} {} {}",
            o.number,
            o.number.replace('-', ""),
            o.device_category,
            o.brand,
            o.model,
            o.serial,
            o.complaint
        );
        fts.execute(params![super::orders::fts_rowid(id), id, body])?;
    }
    Ok(())
}

/// The last number handed out for `year` (0 when none).
pub fn counter(c: &Connection, year: i32) -> DbResult<i64> {
    Ok(c.query_row(
        "SELECT last FROM order_counters WHERE year = ?1",
        [year],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or(0))
}

/// Moves a year's counter forward to `last` (never back).
pub fn advance_counter(c: &Connection, year: i32, last: i64) -> DbResult<()> {
    c.execute(
        "INSERT INTO order_counters (year, last) VALUES (?1, ?2)
         ON CONFLICT(year) DO UPDATE SET last = max(last, excluded.last)",
        params![year, last],
    )?;
    Ok(())
}

/// Every E.164 number already stored, so generated ones never collide.
pub fn existing_phones(c: &Connection) -> DbResult<Vec<String>> {
    let mut st = c.prepare("SELECT e164 FROM customer_phones")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Refreshes the planner's statistics and merges the search index's segments after a
/// bulk load, so the first queries are as fast as later ones.
pub fn finish(c: &Connection) -> DbResult<()> {
    c.execute_batch("INSERT INTO search_index(search_index) VALUES ('optimize'); ANALYZE;")?;
    Ok(())
}
