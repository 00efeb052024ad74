//! Repair orders: the order row, its lines, payments, timeline, the status workflow, the
//! yearly number sequence and the search index rows.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StatusRow {
    pub id: i64,
    pub code: String,
    /// new, in_work, waiting, ready, closed
    pub group: String,
    pub position: i64,
    pub limit_hours: Option<i64>,
    pub name_uz: String,
    pub name_uz_cyrl: String,
    pub name_ru: String,
    pub name_en: String,
}

pub fn statuses(c: &Connection) -> DbResult<Vec<StatusRow>> {
    let mut st = c.prepare_cached(
        "SELECT id, code, grp, position, limit_hours, name_uz, name_uz_cyrl, name_ru, name_en FROM statuses ORDER BY position",
    )?;
    let rows = st.query_map([], |r| {
        Ok(StatusRow {
            id: r.get(0)?,
            code: r.get(1)?,
            group: r.get(2)?,
            position: r.get(3)?,
            limit_hours: r.get(4)?,
            name_uz: r.get(5)?,
            name_uz_cyrl: r.get(6)?,
            name_ru: r.get(7)?,
            name_en: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn transitions(c: &Connection) -> DbResult<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached("SELECT from_id, to_id FROM status_transitions")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn transition_allowed(c: &Connection, from: i64, to: i64) -> DbResult<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM status_transitions WHERE from_id = ?1 AND to_id = ?2")?
            .query_row(params![from, to], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

pub fn set_transitions(c: &Connection, pairs: &[(i64, i64)]) -> DbResult<()> {
    c.execute("DELETE FROM status_transitions", [])?;
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO status_transitions (from_id, to_id) VALUES (?1, ?2)",
    )?;
    for (f, t) in pairs {
        st.execute(params![f, t])?;
    }
    Ok(())
}

/// The next order number for `year`, e.g. `RM26-00042`; the counter row is updated in the
/// caller's transaction, so a number is never handed out twice nor reused.
pub fn next_number(c: &Connection, prefix: &str, year: i32) -> DbResult<String> {
    let n: i64 = c
        .prepare_cached(
            "INSERT INTO order_counters (year, last) VALUES (?1, 1)
             ON CONFLICT(year) DO UPDATE SET last = last + 1 RETURNING last",
        )?
        .query_row([year], |r| r.get(0))?;
    Ok(format!("{prefix}{:02}-{n:05}", year % 100))
}

pub struct NewOrderRow<'a> {
    pub number: &'a str,
    pub branch_id: i64,
    pub customer_id: i64,
    pub status_id: i64,
    pub master_id: Option<i64>,
    pub device_category: &'a str,
    pub brand: &'a str,
    pub model: &'a str,
    pub serial: &'a str,
    pub complaint: &'a str,
    pub condition: &'a str,
    pub accessories: &'a str,
    pub urgent: bool,
    pub promised_at: Option<i64>,
    pub estimate: i64,
    pub warranty_days: i64,
    pub created_by: Option<i64>,
}

pub fn insert(c: &Connection, o: &NewOrderRow, now: i64) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO orders (number, branch_id, customer_id, status_id, status_since, master_id, device_category,
            brand, model, serial, complaint, condition, accessories, urgent, promised_at, estimate, warranty_days,
            created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?5, ?5)",
    )?
    .execute(params![
        o.number, o.branch_id, o.customer_id, o.status_id, now, o.master_id, o.device_category,
        o.brand, o.model, o.serial, o.complaint, o.condition, o.accessories, o.urgent, o.promised_at,
        o.estimate, o.warranty_days, o.created_by
    ])?;
    let id = c.last_insert_rowid();
    reindex(c, id)?;
    Ok(id)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OrderRow {
    pub id: i64,
    pub number: String,
    pub branch_id: i64,
    pub branch: String,
    pub customer_id: i64,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub status_id: i64,
    pub status_code: String,
    pub status_group: String,
    pub status_since: i64,
    pub status_limit_hours: Option<i64>,
    pub master_id: Option<i64>,
    pub master_name: Option<String>,
    pub device_category: String,
    pub brand: String,
    pub model: String,
    pub serial: String,
    pub complaint: String,
    pub condition: String,
    pub accessories: String,
    pub urgent: bool,
    pub promised_at: Option<i64>,
    pub estimate: i64,
    pub warranty_days: i64,
    pub total: i64,
    pub paid: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub version: i64,
    /// What the order's promotion takes off (`model::money::due`).
    pub discount: i64,
    pub promotion_id: Option<i64>,
    pub archived_at: Option<i64>,
}

const ORDER_SELECT: &str = "SELECT o.id, o.number, o.branch_id, b.name, o.customer_id, cu.name,
    (SELECT e164 FROM customer_phones p WHERE p.customer_id = o.customer_id ORDER BY rowid LIMIT 1),
    o.status_id, s.code, s.grp, o.status_since, s.limit_hours, o.master_id, u.display_name,
    o.device_category, o.brand, o.model, o.serial, o.complaint, o.condition, o.accessories, o.urgent,
    o.promised_at, o.estimate, o.warranty_days, o.total, o.paid, o.created_at, o.updated_at, o.closed_at, o.version,
    o.discount, o.promotion_id, o.archived_at
    FROM orders o
    JOIN statuses s ON s.id = o.status_id
    JOIN customers cu ON cu.id = o.customer_id
    JOIN branches b ON b.id = o.branch_id
    LEFT JOIN users u ON u.id = o.master_id";

fn order_from_row(r: &Row) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        id: r.get(0)?,
        number: r.get(1)?,
        branch_id: r.get(2)?,
        branch: r.get(3)?,
        customer_id: r.get(4)?,
        customer_name: r.get(5)?,
        customer_phone: r.get(6)?,
        status_id: r.get(7)?,
        status_code: r.get(8)?,
        status_group: r.get(9)?,
        status_since: r.get(10)?,
        status_limit_hours: r.get(11)?,
        master_id: r.get(12)?,
        master_name: r.get(13)?,
        device_category: r.get(14)?,
        brand: r.get(15)?,
        model: r.get(16)?,
        serial: r.get(17)?,
        complaint: r.get(18)?,
        condition: r.get(19)?,
        accessories: r.get(20)?,
        urgent: r.get(21)?,
        promised_at: r.get(22)?,
        estimate: r.get(23)?,
        warranty_days: r.get(24)?,
        total: r.get(25)?,
        paid: r.get(26)?,
        created_at: r.get(27)?,
        updated_at: r.get(28)?,
        closed_at: r.get(29)?,
        version: r.get(30)?,
        discount: r.get(31)?,
        promotion_id: r.get(32)?,
        archived_at: r.get(33)?,
    })
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<OrderRow>> {
    Ok(
        c.prepare_cached(&format!("{ORDER_SELECT} WHERE o.id = ?1"))?
            .query_row([id], order_from_row)
            .optional()?,
    )
}

pub fn by_number(c: &Connection, number: &str) -> DbResult<Option<OrderRow>> {
    Ok(
        c.prepare_cached(&format!("{ORDER_SELECT} WHERE o.number = ?1"))?
            .query_row([number], order_from_row)
            .optional()?,
    )
}

/// Filters for the order list; `None` = any.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub group: Option<String>,
    pub status_id: Option<i64>,
    pub master_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub branch_id: Option<i64>,
    /// Only these branches (a branch-scoped user's); None for every branch.
    pub branch_ids: Option<Vec<i64>>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Only orders past their status limit or promised date.
    pub overdue_at: Option<i64>,
    /// Only these ids (from a search).
    pub ids: Option<Vec<i64>>,
    pub sort: OrderSort,
    pub limit: i64,
    pub offset: i64,
    /// Keyset page: the rows after this order id in the list's order (number sorts only;
    /// `offset` is then ignored).
    pub after: Option<i64>,
    /// Keyset page: the rows just before this order id in the list's order.
    pub before: Option<i64>,
    /// Archived orders: `Some(true)` only those; otherwise lists leave them out, except a
    /// customer's own list (their history).
    pub archived: Option<bool>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum OrderSort {
    #[default]
    Newest,
    Oldest,
    Promised,
    Updated,
}

impl OrderSort {
    /// Sorted by number (id), so a page can start from the last row of the one before.
    pub fn keyset(self) -> bool {
        matches!(self, OrderSort::Newest | OrderSort::Oldest)
    }
}

/// The WHERE clause over `orders o` alone (no joins: statuses are resolved to ids here)
/// and the index hint it reads best with.
struct Plan {
    from: &'static str,
    /// What the capped count reads, when it differs from the page's `from`.
    count_from: Option<&'static str>,
    wh: String,
    params: Vec<rusqlite::types::Value>,
}

fn plan(c: &Connection, f: &OrderFilter) -> DbResult<Plan> {
    use rusqlite::types::Value;
    let mut w = vec!["1 = 1".to_string()];
    let mut p: Vec<Value> = Vec::new();
    let mut add = |cond: &str, v: Value, w: &mut Vec<String>| {
        p.push(v);
        w.push(cond.replace('?', &format!("?{}", p.len())));
    };
    // The statuses the filters allow (None: all). Overdue orders are open ones.
    let all: Vec<(i64, String)> = {
        let mut st = c.prepare_cached("SELECT id, grp FROM statuses")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let wanted: Vec<&(i64, String)> = all
        .iter()
        .filter(|(id, grp)| {
            f.group.as_deref().is_none_or(|g| g == grp)
                && f.status_id.is_none_or(|s| s == *id)
                && (f.overdue_at.is_none() || grp != "closed")
        })
        .collect();
    let restricted = f.group.is_some() || f.status_id.is_some() || f.overdue_at.is_some();
    let only_open = restricted && wanted.iter().all(|(_, g)| g != "closed");
    // Open orders are few and `orders_open` holds them in id order with the filtered
    // columns; a customer's or a search's orders are fewer still through their own index.
    let mut from = "orders o";
    // One status's orders come from `orders_status`-like ranges; the branch-wide count
    // reads `orders_branch_live` (below) only without such a range.
    let mut one_status = false;
    if restricted {
        match wanted.as_slice() {
            [] => w.push("0".into()),
            _ if only_open => {
                w.push("o.closed_at IS NULL".into());
                let ids: Vec<String> = wanted.iter().map(|(id, _)| id.to_string()).collect();
                if wanted.len() < all.iter().filter(|(_, g)| g != "closed").count() {
                    w.push(format!("o.status_id IN ({})", ids.join(",")));
                }
                if f.customer_id.is_none() && f.ids.is_none() {
                    from = "orders o INDEXED BY orders_open";
                }
            }
            // One status: its index range is already in id order.
            [(id, _)] => {
                one_status = true;
                add("o.status_id = ?", Value::Integer(*id), &mut w)
            }
            // Several statuses with closed ones: most of the table, so read it in list
            // order (unary + keeps the planner from collecting and sorting them all).
            many => {
                let ids: Vec<String> = many.iter().map(|(id, _)| id.to_string()).collect();
                w.push(format!("+o.status_id IN ({})", ids.join(",")));
            }
        }
    }
    if let Some(m) = f.master_id {
        add("o.master_id = ?", Value::Integer(m), &mut w);
    }
    if let Some(cu) = f.customer_id {
        add("o.customer_id = ?", Value::Integer(cu), &mut w);
    }
    match f.archived {
        Some(true) => w.push("o.archived_at IS NOT NULL".into()),
        _ if f.customer_id.is_none() => w.push("o.archived_at IS NULL".into()),
        _ => {}
    }
    if let Some(b) = f.branch_id {
        add("o.branch_id = ?", Value::Integer(b), &mut w);
    }
    match f.branch_ids.as_deref() {
        None => {}
        Some([]) => w.push("0".into()),
        Some([b]) => add("o.branch_id = ?", Value::Integer(*b), &mut w),
        Some(many) => {
            let ids: Vec<String> = many.iter().map(i64::to_string).collect();
            w.push(format!("o.branch_id IN ({})", ids.join(",")));
        }
    }
    if let Some(from) = f.from {
        add("o.created_at >= ?", Value::Integer(from), &mut w);
    }
    if let Some(to) = f.to {
        add("o.created_at < ?", Value::Integer(to), &mut w);
    }
    if let Some(now) = f.overdue_at {
        add("o.due_at < ?", Value::Integer(now), &mut w);
    }
    if let Some(ids) = &f.ids {
        let list = if ids.is_empty() {
            "NULL".to_string()
        } else {
            ids.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        w.push(format!("o.id IN ({list})"));
    }
    // A branch's live orders (every list of a branch-scoped user): the capped count reads
    // the covering partial index (migration 0027) instead of looking up 10 001 rows spread
    // over a twentieth of the table for their `archived_at`, status and master. The page
    // itself keeps reading `orders(branch_id)` in id order.
    // With that index present SQLite would also read the page from it and sort the
    // branch's 50 000 rows, so a one-branch page names the index that is in id order.
    let branch_wide =
        f.branch_id.is_some() || f.branch_ids.as_deref().is_some_and(|b| !b.is_empty());
    let one_branch = f.branch_ids.as_deref().is_none_or(|b| b.len() == 1)
        && (f.branch_id.is_some() || f.branch_ids.is_some());
    let plain = from == "orders o"
        && f.archived != Some(true)
        && f.customer_id.is_none()
        && f.ids.is_none()
        && f.from.is_none()
        && f.to.is_none();
    let count_from =
        (branch_wide && plain && !one_status).then_some("orders o INDEXED BY orders_branch_live");
    if one_branch && plain {
        from = if one_status {
            "orders o INDEXED BY orders_branch_status"
        } else if f.master_id.is_some() {
            "orders o INDEXED BY orders_branch_master"
        } else {
            "orders o INDEXED BY orders_branch_scope"
        };
    }
    Ok(Plan {
        from,
        count_from,
        wh: w.join(" AND "),
        params: p,
    })
}

/// One page of the list. Two steps: the ids from `orders` alone (an index range read
/// in list order), then the page's rows with their joins.
pub fn list(c: &Connection, f: &OrderFilter) -> DbResult<Vec<OrderRow>> {
    let Plan {
        from,
        mut wh,
        params: mut p,
        ..
    } = plan(c, f)?;
    let newest = f.sort == OrderSort::Newest;
    // Paging backwards reads the list in reverse from the cursor, then turns it round.
    let backwards = f.sort.keyset() && f.before.is_some() && f.after.is_none();
    let keyset = f.sort.keyset() && (f.after.is_some() || f.before.is_some());
    if let Some(after) = f.after.filter(|_| f.sort.keyset()) {
        p.push(after.into());
        wh.push_str(&format!(
            " AND o.id {} ?{}",
            if newest { "<" } else { ">" },
            p.len()
        ));
    } else if let Some(before) = f.before.filter(|_| f.sort.keyset()) {
        p.push(before.into());
        wh.push_str(&format!(
            " AND o.id {} ?{}",
            if newest { ">" } else { "<" },
            p.len()
        ));
    }
    let order = match (f.sort, backwards) {
        (OrderSort::Newest, false) | (OrderSort::Oldest, true) => "o.id DESC",
        (OrderSort::Oldest, false) | (OrderSort::Newest, true) => "o.id ASC",
        (OrderSort::Promised, _) => "o.promised_at IS NULL, o.promised_at ASC, o.id DESC",
        (OrderSort::Updated, _) => "o.updated_at DESC, o.id DESC",
    };
    p.push(f.limit.into());
    p.push(if keyset { 0 } else { f.offset }.into());
    let sql = format!(
        "SELECT o.id FROM {from} WHERE {wh} ORDER BY {order} LIMIT ?{} OFFSET ?{}",
        p.len() - 1,
        p.len()
    );
    let mut st = c.prepare_cached(&sql)?;
    let mut ids: Vec<i64> = st
        .query_map(rusqlite::params_from_iter(p), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if backwards {
        ids.reverse();
    }
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = get(c, id)? {
            rows.push(r);
        }
    }
    Ok(rows)
}

/// Lists count at most this many rows: past it a page says "10 000+", because counting
/// a million matching orders exactly costs more than the page itself.
pub const COUNT_CAP: i64 = 10_000;

/// Matching orders, up to `COUNT_CAP + 1` (meaning "more than the cap").
pub fn count(c: &Connection, f: &OrderFilter) -> DbResult<i64> {
    let Plan {
        from,
        count_from,
        wh,
        params,
    } = plan(c, f)?;
    let from = count_from.unwrap_or(from);
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM {from} WHERE {wh} LIMIT {})",
        COUNT_CAP + 1
    );
    Ok(c.prepare_cached(&sql)?
        .query_row(rusqlite::params_from_iter(params), |r| r.get(0))?)
}

pub struct OrderFields<'a> {
    pub device_category: &'a str,
    pub brand: &'a str,
    pub model: &'a str,
    pub serial: &'a str,
    pub complaint: &'a str,
    pub condition: &'a str,
    pub accessories: &'a str,
    pub urgent: bool,
    pub promised_at: Option<i64>,
    pub estimate: i64,
    pub warranty_days: i64,
}

/// Saves the editable fields if `version` is current; false when stale.
pub fn update_fields(
    c: &Connection,
    id: i64,
    version: i64,
    f: &OrderFields,
    now: i64,
) -> DbResult<bool> {
    let n = c.execute(
        "UPDATE orders SET device_category = ?3, brand = ?4, model = ?5, serial = ?6, complaint = ?7,
            condition = ?8, accessories = ?9, urgent = ?10, promised_at = ?11, estimate = ?12, warranty_days = ?13,
            updated_at = ?14, version = version + 1
         WHERE id = ?1 AND version = ?2",
        params![id, version, f.device_category, f.brand, f.model, f.serial, f.complaint, f.condition,
            f.accessories, f.urgent, f.promised_at, f.estimate, f.warranty_days, now],
    )?;
    if n == 1 {
        reindex(c, id)?;
        super::promos::recompute_discount(c, id)?;
    }
    Ok(n == 1)
}

pub fn set_status(
    c: &Connection,
    id: i64,
    version: i64,
    status_id: i64,
    closed: bool,
    now: i64,
) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE orders SET status_id = ?3, status_since = ?4, updated_at = ?4, version = version + 1,
            closed_at = CASE WHEN ?5 THEN ?4 ELSE NULL END
         WHERE id = ?1 AND version = ?2",
        params![id, version, status_id, now, closed],
    )? == 1)
}

pub fn set_master(c: &Connection, id: i64, master: Option<i64>, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE orders SET master_id = ?2, updated_at = ?3, version = version + 1 WHERE id = ?1",
        params![id, master, now],
    )?;
    Ok(())
}

pub fn touch(c: &Connection, id: i64, now: i64) -> DbResult<()> {
    c.prepare_cached("UPDATE orders SET updated_at = ?2, version = version + 1 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LineRow {
    pub id: i64,
    /// part or labour
    pub kind: String,
    pub name: String,
    pub qty: i64,
    pub unit_price: i64,
    pub amount: i64,
}

pub fn lines(c: &Connection, order: i64) -> DbResult<Vec<LineRow>> {
    let mut st = c.prepare_cached(
        "SELECT id, kind, name, qty, unit_price FROM order_lines WHERE order_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([order], |r| {
        let qty: i64 = r.get(3)?;
        let price: i64 = r.get(4)?;
        Ok(LineRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            name: r.get(2)?,
            qty,
            unit_price: price,
            amount: qty.saturating_mul(price),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[allow(clippy::too_many_arguments)] // one argument per column
pub fn insert_line(
    c: &Connection,
    order: i64,
    kind: &str,
    name: &str,
    qty: i64,
    unit_price: i64,
    by: i64,
    now: i64,
) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO order_lines (order_id, kind, name, qty, unit_price, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![order, kind, name, qty, unit_price, by, now])?;
    let id = c.last_insert_rowid();
    recompute_total(c, order)?;
    Ok(id)
}

pub fn delete_line(c: &Connection, order: i64, line: i64) -> DbResult<Option<LineRow>> {
    let found = lines(c, order)?.into_iter().find(|l| l.id == line);
    if found.is_some() {
        c.execute(
            "DELETE FROM order_lines WHERE id = ?1 AND order_id = ?2",
            params![line, order],
        )?;
        recompute_total(c, order)?;
    }
    Ok(found)
}

fn recompute_total(c: &Connection, order: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE orders SET total = (SELECT coalesce(sum(qty * unit_price), 0) FROM order_lines WHERE order_id = ?1) WHERE id = ?1",
    )?
    .execute([order])?;
    // A promotion's discount follows the lines it applies to.
    super::promos::recompute_discount(c, order)?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PaymentRow {
    pub id: i64,
    pub order_id: i64,
    pub order_number: String,
    /// prepayment, payment or refund
    pub kind: String,
    pub amount: i64,
    pub method: String,
    pub note: String,
    pub created_by: Option<String>,
    pub created_at: i64,
}

/// The payments of one order, oldest first.
pub fn payments(c: &Connection, order: i64) -> DbResult<Vec<PaymentRow>> {
    payment_rows(c, "p.order_id = ?1", order)
}

/// The payments of every order of one customer, oldest first.
pub fn payments_of_customer(c: &Connection, customer: i64) -> DbResult<Vec<PaymentRow>> {
    payment_rows(c, "o.customer_id = ?1", customer)
}

/// One condition per statement, so that each is planned on its own index: an
/// `(?1 IS NULL OR …)` filter made SQLite walk every payment of the shop.
fn payment_rows(c: &Connection, condition: &str, key: i64) -> DbResult<Vec<PaymentRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT p.id, p.order_id, o.number, p.kind, p.amount, p.method, p.note, u.display_name, p.created_at
         FROM payments p JOIN orders o ON o.id = p.order_id LEFT JOIN users u ON u.id = p.created_by
         WHERE {condition} ORDER BY p.id"
    ))?;
    let rows = st.query_map([key], |r| {
        Ok(PaymentRow {
            id: r.get(0)?,
            order_id: r.get(1)?,
            order_number: r.get(2)?,
            kind: r.get(3)?,
            amount: r.get(4)?,
            method: r.get(5)?,
            note: r.get(6)?,
            created_by: r.get(7)?,
            created_at: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[allow(clippy::too_many_arguments)]
pub fn insert_payment(
    c: &Connection,
    order: i64,
    kind: &str,
    amount: i64,
    method: &str,
    note: &str,
    by: i64,
    now: i64,
) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO payments (order_id, kind, amount, method, note, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![order, kind, amount, method, note, by, now])?;
    let id = c.last_insert_rowid();
    let delta = if kind == "refund" { -amount } else { amount };
    c.prepare_cached("UPDATE orders SET paid = paid + ?2 WHERE id = ?1")?
        .execute(params![order, delta])?;
    Ok(id)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    /// created, status, assigned, fields, line_added, line_removed, payment, comment
    pub kind: String,
    pub public: bool,
    pub text: String,
    pub detail: String,
}

#[allow(clippy::too_many_arguments)] // one argument per column
pub fn insert_event(
    c: &Connection,
    order: i64,
    actor: Option<i64>,
    kind: &str,
    public: bool,
    text: &str,
    detail: &serde_json::Value,
    now: i64,
) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO order_events (order_id, at, actor_id, kind, public, text, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![order, now, actor, kind, public, text, detail.to_string()])?;
    Ok(c.last_insert_rowid())
}

pub fn events(c: &Connection, order: i64) -> DbResult<Vec<EventRow>> {
    let mut st = c.prepare_cached(
        "SELECT e.id, e.at, u.display_name, e.kind, e.public, e.text, e.detail
         FROM order_events e LEFT JOIN users u ON u.id = e.actor_id WHERE e.order_id = ?1 ORDER BY e.at, e.id",
    )?;
    let rows = st.query_map([order], |r| {
        Ok(EventRow {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            kind: r.get(3)?,
            public: r.get(4)?,
            text: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The order's row in `search_index` (odd rowids; customers take the even ones).
pub fn fts_rowid(id: i64) -> i64 {
    id * 2 + 1
}

/// Rebuilds the order's search row: number (with and without its dash), device,
/// serial/IMEI, complaint.
pub fn reindex(c: &Connection, id: i64) -> DbResult<()> {
    c.prepare_cached("DELETE FROM search_index WHERE rowid = ?1")?
        .execute([fts_rowid(id)])?;
    c.prepare_cached(&format!(
        "INSERT INTO search_index (rowid, kind, ref, body)
         SELECT ?2, 'o', id, {ORDER_SEARCH_BODY} FROM orders WHERE id = ?1 AND archived_at IS NULL"
    ))?
    .execute(params![id, fts_rowid(id)])?;
    Ok(())
}

/// SQL expression (over `orders`) of the text an order is found by.
pub const ORDER_SEARCH_BODY: &str = "number || ' ' || replace(number, '-', '') || ' ' || device_category || ' ' || brand || ' ' || model || ' ' || serial || ' ' || complaint";

/// (kind, id) hits for an FTS5 MATCH expression, newest first. Every typed word must
/// match, so recency is the useful order; unlike `ORDER BY rank` it lets FTS5 stop after
/// `limit` hits instead of scoring every match (a brand name matches 100 000 orders).
pub fn search(c: &Connection, expr: &str, limit: i64) -> DbResult<Vec<(String, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT kind, ref FROM search_index WHERE search_index MATCH ?1 ORDER BY rowid DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![expr, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Masters (active users with the master role), for assignment lists.
pub fn masters(c: &Connection) -> DbResult<Vec<(i64, String)>> {
    let mut st = c.prepare_cached(
        "SELECT id, display_name FROM users WHERE role = 'master' AND active = 1 ORDER BY display_name COLLATE NOCASE",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WorkloadRow {
    pub master_id: i64,
    pub name: String,
    pub open: i64,
    pub in_work: i64,
    /// Orders the master's closed in the period.
    pub closed: i64,
    /// Average hours from intake to closing, over orders closed in the period.
    pub avg_repair_hours: Option<f64>,
}

/// Open orders per master, and orders closed in the whole hours that [from, to) touches,
/// with their average repair time (intake to closing). The open side reads the small
/// index of open orders; the closed side sums `master_closings` (per master, branch and
/// hour, kept by triggers: migration 0026), never the orders themselves.
pub fn workload(
    c: &Connection,
    from: i64,
    to: i64,
    branches: Option<&[i64]>,
) -> DbResult<Vec<WorkloadRow>> {
    let scope = super::reports::in_branches(branches);
    let mut st = c.prepare_cached(&format!(
        "SELECT u.id, u.display_name, coalesce(op.open, 0), coalesce(op.in_work, 0),
                coalesce(cl.closed, 0), cl.avg_h
         FROM users u
         LEFT JOIN (SELECT o.master_id, count(*) AS open, sum(s.grp = 'in_work') AS in_work
                    FROM orders o INDEXED BY orders_open JOIN statuses s ON s.id = o.status_id
                    WHERE o.closed_at IS NULL{scope}
                    GROUP BY o.master_id) op ON op.master_id = u.id
         LEFT JOIN (SELECT o.master_id, sum(o.closed) AS closed,
                           sum(o.repair_secs) / 3600.0 / nullif(sum(o.closed), 0) AS avg_h
                    FROM master_closings o
                    WHERE o.hour >= ?1 / 3600 AND o.hour <= (?2 - 1) / 3600{scope}
                    GROUP BY o.master_id HAVING sum(o.closed) > 0) cl ON cl.master_id = u.id
         WHERE u.role = 'master' AND u.active = 1 ORDER BY u.display_name COLLATE NOCASE"
    ))?;
    let rows = st.query_map(params![from, to], |r| {
        Ok(WorkloadRow {
            master_id: r.get(0)?,
            name: r.get(1)?,
            open: r.get(2)?,
            in_work: r.get(3)?,
            closed: r.get(4)?,
            avg_repair_hours: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn branch_exists(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM branches WHERE id = ?1 AND active = 1")?
            .query_row([id], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PhotoRow {
    pub id: i64,
    pub order_id: i64,
    /// File name under attachments/orders/<order>/.
    pub file: String,
    pub mime: String,
    pub bytes: i64,
    pub created_at: i64,
}

pub fn insert_photo(
    c: &Connection,
    order: i64,
    file: &str,
    mime: &str,
    bytes: i64,
    by: i64,
    now: i64,
) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO order_photos (order_id, file, mime, bytes, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![order, file, mime, bytes, by, now])?;
    Ok(c.last_insert_rowid())
}

pub fn photos(c: &Connection, order: i64) -> DbResult<Vec<PhotoRow>> {
    let mut st = c.prepare_cached(
        "SELECT id, order_id, file, mime, bytes, created_at FROM order_photos WHERE order_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([order], |r| {
        Ok(PhotoRow {
            id: r.get(0)?,
            order_id: r.get(1)?,
            file: r.get(2)?,
            mime: r.get(3)?,
            bytes: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The device's unlock code and pattern (`order_unlock`), read only for those allowed.
pub fn unlock(c: &Connection, order: i64) -> DbResult<Option<(String, String)>> {
    Ok(
        c.prepare_cached("SELECT code, pattern FROM order_unlock WHERE order_id = ?1")?
            .query_row([order], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    )
}

/// Sets the unlock code and pattern; both empty removes the row.
pub fn set_unlock(
    c: &Connection,
    order: i64,
    code: &str,
    pattern: &str,
    by: Option<i64>,
    now: i64,
) -> DbResult<()> {
    if code.is_empty() && pattern.is_empty() {
        c.prepare_cached("DELETE FROM order_unlock WHERE order_id = ?1")?
            .execute([order])?;
    } else {
        c.prepare_cached(
            "INSERT INTO order_unlock (order_id, code, pattern, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (order_id) DO UPDATE SET code = excluded.code,
               pattern = excluded.pattern, updated_at = excluded.updated_at,
               updated_by = excluded.updated_by",
        )?
        .execute(params![order, code, pattern, now, by])?;
    }
    Ok(())
}

#[cfg(test)]
mod workload_tests {
    use super::*;
    use crate::db::accounts::{insert_user, NewUserRow};
    use crate::db::customers::{self, CustomerFields};
    use crate::db::{Db, DbOptions};
    use crate::model::{Language, Role};

    /// What `master_closings` must hold, counted from the orders themselves.
    const DRIFT: &str = "SELECT (SELECT count(*) FROM (
        SELECT closed_at / 3600, master_id, branch_id, count(*), sum(closed_at - created_at)
        FROM orders WHERE closed_at IS NOT NULL AND master_id IS NOT NULL GROUP BY 1, 2, 3
        EXCEPT SELECT hour, master_id, branch_id, closed, repair_secs FROM master_closings WHERE closed > 0))
      + (SELECT count(*) FROM master_closings WHERE closed < 0)";

    /// The triggers keep the masters' closings exact through every kind of order write
    /// (intake already closed, closing, reopening, another master, another branch, moved
    /// dates, deletion), and the workload reads them: its counts and average repair time
    /// equal those computed from the orders.
    #[test]
    fn closings_per_master_follow_every_order_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), &DbOptions::default()).unwrap();
        db.write_blocking(|c| {
            let now = 1_790_000_000;
            let masters: Vec<i64> = (0..3)
                .map(|i| {
                    let name = format!("usta{i}");
                    insert_user(
                        c,
                        &NewUserRow {
                            username: &name,
                            display_name: &name,
                            role: Role::Master,
                            role_id: None,
                            language: Language::Ru,
                            password_hash: "x",
                        },
                        now,
                    )
                    .unwrap()
                })
                .collect();
            c.execute_batch("INSERT INTO branches (id, name) VALUES (2, 'Ikkinchi')")
                .unwrap();
            let fields = CustomerFields {
                name: "Aziz",
                email: "",
                telegram: "",
                address: "",
                notes: "",
                tags: "",
                language: None,
                kind: "person",
                company: "",
                birthday: None,
                marketing_opt_in: false,
            };
            let cu = customers::insert(c, &fields, &[], now).unwrap();
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            let mut next = |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n) as i64
            };
            for i in 0..400 {
                let at = now - next(120 * 86_400);
                let master = masters[next(3) as usize];
                c.execute(
                    "INSERT INTO orders (number, branch_id, customer_id, status_id, status_since, master_id,
                        device_category, complaint, created_at, updated_at, closed_at)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5, 'phone', 'x', ?4, ?4, ?6)",
                    params![
                        format!("W-{i}"),
                        1 + next(2),
                        cu,
                        at,
                        master,
                        (next(2) == 0).then(|| at + next(10 * 86_400)),
                    ],
                )
                .unwrap();
                let id = c.last_insert_rowid();
                let pick = next(6);
                let sql = match pick {
                    0 => "UPDATE orders SET closed_at = created_at + 3600 * ?2 WHERE id = ?1",
                    1 => "UPDATE orders SET closed_at = NULL WHERE id = ?1 AND ?2 >= 0",
                    2 => "UPDATE orders SET master_id = (SELECT min(id) FROM users WHERE id <> master_id) WHERE id = ?1 AND ?2 >= 0",
                    3 => "UPDATE orders SET branch_id = 3 - branch_id WHERE id = ?1 AND ?2 >= 0",
                    4 => "UPDATE orders SET created_at = created_at - ?2 WHERE id = ?1",
                    _ => "DELETE FROM orders WHERE id = ?1 - 1 AND ?2 >= 0",
                };
                c.execute(sql, params![id, next(48)]).unwrap();
                if i % 50 == 0 {
                    let drift: i64 = c.query_row(DRIFT, [], |r| r.get(0)).unwrap();
                    assert_eq!(drift, 0, "after {i} writes");
                }
            }
            let drift: i64 = c.query_row(DRIFT, [], |r| r.get(0)).unwrap();
            assert_eq!(drift, 0);

            // The workload over whole hours, against the orders of the same hours.
            let (from, to) = (now - 90 * 86_400, now + 1);
            for branches in [None, Some(&[2i64][..])] {
                let rows = workload(c, from, to, branches).unwrap();
                for m in &masters {
                    let (n, avg): (i64, Option<f64>) = c
                        .query_row(
                            &format!(
                                "SELECT count(*), avg(o.closed_at - o.created_at) / 3600.0 FROM orders o
                                 WHERE o.master_id = ?1 AND o.closed_at / 3600 >= ?2 / 3600
                                   AND o.closed_at / 3600 <= (?3 - 1) / 3600{}",
                                crate::db::reports::in_branches(branches)
                            ),
                            params![m, from, to],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .unwrap();
                    let row = rows.iter().find(|r| r.master_id == *m).unwrap();
                    assert_eq!(row.closed, n, "master {m}, {branches:?}");
                    match (row.avg_repair_hours, avg) {
                        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{a} {b}"),
                        (a, b) => assert_eq!(a, b),
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    }
}
