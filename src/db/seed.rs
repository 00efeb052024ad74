//! Bulk inserts for `crm seed`. The whole load runs in one transaction: the secondary
//! indexes of the filled tables are dropped first and rebuilt at the end (one sort each
//! instead of a million random B-tree inserts), statements are prepared once, and the
//! orders' search rows are filled by one `INSERT … SELECT`. A failure anywhere rolls
//! everything back, indexes included.

use rusqlite::{params, Connection};

use super::DbResult;

pub struct SeedCustomer {
    pub name: String,
    pub phone: String,
    pub created_at: i64,
    /// Comma separated, as typed.
    pub tags: &'static str,
    pub language: &'static str,
    pub kind: &'static str,
    pub marketing_opt_in: bool,
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
    pub warranty_days: i64,
}

/// Tables a seed fills; their secondary indexes are rebuilt after the load.
const FILLED: &[&str] = &[
    "customers",
    "customer_phones",
    "orders",
    "order_lines",
    "payments",
];

/// Page cache for the load (KiB): the FTS segments being merged and the tables' last
/// pages stay in memory instead of being spilled to the WAL and read back.
const LOAD_CACHE_KIB: i64 = 262_144;

/// An open bulk load on the writer's connection, inside the caller's transaction.
pub struct BulkLoad<'c> {
    c: &'c Connection,
    /// `CREATE INDEX` statements of the dropped indexes, to run again at the end.
    indexes: Vec<String>,
    cache_before: i64,
    first_order: i64,
}

impl<'c> BulkLoad<'c> {
    pub fn begin(c: &'c Connection) -> DbResult<BulkLoad<'c>> {
        let cache_before: i64 = c.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        c.execute_batch(&format!("PRAGMA cache_size = -{LOAD_CACHE_KIB}"))?;
        // Explicit indexes only (`sql` is NULL for the ones behind UNIQUE constraints,
        // which stay: they guard the data while it is written).
        let mut st = c.prepare(&format!(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({})",
            FILLED.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(",")
        ))?;
        let found: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (name, _) in &found {
            c.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
        }
        Ok(BulkLoad {
            c,
            indexes: found.into_iter().map(|(_, sql)| sql).collect(),
            cache_before,
            first_order: max_order_id(c)? + 1,
        })
    }

    /// Inserts customers with their phone and search row; returns their ids in order.
    pub fn customers(&self, rows: &[SeedCustomer]) -> DbResult<Vec<i64>> {
        let c = self.c;
        let mut ins = c.prepare_cached(
            "INSERT INTO customers (name, created_at, updated_at, tags, language, kind, marketing_opt_in)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut ph = c.prepare_cached(
            "INSERT OR IGNORE INTO customer_phones (customer_id, e164) VALUES (?1, ?2)",
        )?;
        let mut fts = c.prepare_cached(
            "INSERT INTO search_index (rowid, kind, ref, body) VALUES (?1, 'c', ?2, ?3)",
        )?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            ins.execute(params![
                r.name,
                r.created_at,
                r.tags,
                r.language,
                r.kind,
                r.marketing_opt_in
            ])?;
            let id = c.last_insert_rowid();
            super::segments::set_tags(c, id, r.tags)?;
            ph.execute(params![id, r.phone])?;
            let body = super::customers::search_body(&r.name, std::slice::from_ref(&r.phone), "");
            fts.execute(params![super::customers::fts_rowid(id), id, body])?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Inserts orders (numbers from the yearly counter, in the given order), the labour
    /// line carrying each total and the payment of each paid order. Search rows are
    /// written by [`BulkLoad::finish`].
    pub fn orders(
        &self,
        rows: &[SeedOrder],
        prefix: &str,
        year_of: impl Fn(i64) -> i32,
    ) -> DbResult<()> {
        let c = self.c;
        let mut ins = c.prepare_cached(
            "INSERT INTO orders (number, branch_id, customer_id, status_id, status_since, master_id, device_category, brand, model,
                serial, complaint, estimate, total, paid, created_at, updated_at, closed_at, warranty_days)
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?4, ?15, ?16)",
        )?;
        // The total is carried by one labour line, so the order's lines add up to its
        // total (a later line change recomputes the total from the lines).
        let mut line = c.prepare_cached(
            "INSERT INTO order_lines (order_id, kind, name, qty, unit_price, created_at) VALUES (?1, 'labour', 'Taʼmirlash ishi', 1, ?2, ?3)",
        )?;
        let mut pay = c.prepare_cached(
            "INSERT INTO payments (order_id, kind, amount, created_at) VALUES (?1, 'payment', ?2, ?3)",
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
                r.closed_at,
                r.warranty_days
            ])?;
            let id = c.last_insert_rowid();
            if r.total > 0 {
                line.execute(params![id, r.total, r.created_at])?;
            }
            if r.paid > 0 {
                pay.execute(params![id, r.paid, since])?;
            }
        }
        Ok(())
    }

    /// Writes the new orders' search rows in one statement (rowids as
    /// `orders::fts_rowid`) and rebuilds the dropped indexes.
    pub fn finish(self) -> DbResult<()> {
        let c = self.c;
        c.execute(
            &format!(
                "INSERT INTO search_index (rowid, kind, ref, body)
                 SELECT id * 2 + 1, 'o', id, {} FROM orders WHERE id >= ?1 ORDER BY id",
                super::orders::ORDER_SEARCH_BODY
            ),
            [self.first_order],
        )?;
        for sql in &self.indexes {
            c.execute_batch(sql)?;
        }
        Ok(())
    }
}

impl Drop for BulkLoad<'_> {
    fn drop(&mut self) {
        // Also after a failed load: the writer connection lives on.
        let _ = self
            .c
            .execute_batch(&format!("PRAGMA cache_size = {}", self.cache_before));
    }
}

fn max_order_id(c: &Connection) -> DbResult<i64> {
    Ok(c.query_row("SELECT coalesce(max(id), 0) FROM orders", [], |r| r.get(0))?)
}

/// For benchmarks (`crm-bench core --branches N`): makes `n` branches in all (adding
/// "Filial 2" … "Filial N") and spreads the orders over them by id, round robin. Returns
/// the branch ids.
pub fn spread_over_branches(c: &Connection, n: i64) -> DbResult<Vec<i64>> {
    let have: i64 = c.query_row("SELECT count(*) FROM branches", [], |r| r.get(0))?;
    for k in have + 1..=n {
        c.execute(
            "INSERT INTO branches (name, address) VALUES (?1, '')",
            [format!("Filial {k}")],
        )?;
    }
    let ids: Vec<i64> = {
        let mut st = c.prepare("SELECT id FROM branches ORDER BY id LIMIT ?1")?;
        let rows = st.query_map([n], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let cases: String = ids
        .iter()
        .enumerate()
        .map(|(k, b)| format!(" WHEN {k} THEN {b}"))
        .collect();
    // Rows already in their branch are left alone, so a second run over a spread data
    // dir costs one scan, not a rewrite of every order and its indexes.
    let branch_of = format!("CASE id % {} {cases} END", ids.len());
    c.execute_batch(&format!(
        "UPDATE orders SET branch_id = {branch_of} WHERE branch_id IS NOT {branch_of};
         ANALYZE;"
    ))?;
    Ok(ids)
}
