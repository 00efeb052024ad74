//! Customers, their phones, and their rows in the search index.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CustomerRow {
    pub id: i64,
    pub name: String,
    /// E.164 numbers.
    pub phones: Vec<String>,
    pub email: String,
    pub telegram: String,
    pub address: String,
    pub notes: String,
    pub tags: String,
    /// Preferred language for messages (`uz`, `uz-Cyrl`, `ru`, `en`), when known.
    pub language: Option<String>,
    /// `person` or `company`.
    pub kind: String,
    pub company: String,
    /// ISO date, when known.
    pub birthday: Option<String>,
    /// Said yes to promotions and broadcasts.
    pub marketing_opt_in: bool,
    /// When archived: out of lists and search, kept with its history.
    pub archived_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct CustomerFields<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub telegram: &'a str,
    pub address: &'a str,
    pub notes: &'a str,
    pub tags: &'a str,
    pub language: Option<&'a str>,
    pub kind: &'a str,
    pub company: &'a str,
    pub birthday: Option<&'a str>,
    pub marketing_opt_in: bool,
}

const COLS: &str =
    "id, name, email, telegram, address, notes, tags, version, created_at, updated_at, language,
     kind, company, birthday, marketing_opt_in, archived_at";

fn from_row(r: &Row) -> rusqlite::Result<CustomerRow> {
    Ok(CustomerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        phones: Vec::new(),
        email: r.get(2)?,
        telegram: r.get(3)?,
        address: r.get(4)?,
        notes: r.get(5)?,
        tags: r.get(6)?,
        version: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        language: r.get(10)?,
        kind: r.get(11)?,
        company: r.get(12)?,
        birthday: r.get(13)?,
        marketing_opt_in: r.get(14)?,
        archived_at: r.get(15)?,
    })
}

pub fn phones_of(c: &Connection, id: i64) -> DbResult<Vec<String>> {
    let mut st =
        c.prepare_cached("SELECT e164 FROM customer_phones WHERE customer_id = ?1 ORDER BY rowid")?;
    let rows = st.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<CustomerRow>> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM customers WHERE id = ?1 AND merged_into IS NULL"
        ))?
        .query_row([id], from_row)
        .optional()?;
    match row {
        Some(mut r) => {
            r.phones = phones_of(c, id)?;
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

/// Customers (not merged away) that have this E.164 number.
pub fn by_phone(c: &Connection, e164: &str) -> DbResult<Vec<CustomerRow>> {
    let ids: Vec<i64> = c
        .prepare_cached(
            "SELECT p.customer_id FROM customer_phones p JOIN customers c ON c.id = p.customer_id
             WHERE p.e164 = ?1 AND c.merged_into IS NULL ORDER BY p.customer_id",
        )?
        .query_map([e164], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = get(c, id)? {
            out.push(r);
        }
    }
    Ok(out)
}

pub fn insert(c: &Connection, f: &CustomerFields, phones: &[String], now: i64) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO customers (name, email, telegram, address, notes, tags, created_at, updated_at, language,
                                kind, company, birthday, marketing_opt_in)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        f.name,
        f.email,
        f.telegram,
        f.address,
        f.notes,
        f.tags,
        now,
        f.language,
        f.kind,
        f.company,
        f.birthday,
        f.marketing_opt_in
    ])?;
    let id = c.last_insert_rowid();
    set_phones(c, id, phones)?;
    super::segments::set_tags(c, id, f.tags)?;
    reindex(c, id)?;
    Ok(id)
}

/// Updates when `version` matches; returns false on a stale version.
pub fn update(
    c: &Connection,
    id: i64,
    version: i64,
    f: &CustomerFields,
    phones: &[String],
    now: i64,
) -> DbResult<bool> {
    let n = c.execute(
        "UPDATE customers SET name = ?3, email = ?4, telegram = ?5, address = ?6, notes = ?7, tags = ?8,
                updated_at = ?9, language = ?10, kind = ?11, company = ?12, birthday = ?13,
                marketing_opt_in = ?14, version = version + 1
         WHERE id = ?1 AND version = ?2 AND merged_into IS NULL",
        params![
            id,
            version,
            f.name,
            f.email,
            f.telegram,
            f.address,
            f.notes,
            f.tags,
            now,
            f.language,
            f.kind,
            f.company,
            f.birthday,
            f.marketing_opt_in
        ],
    )?;
    if n == 1 {
        set_phones(c, id, phones)?;
        super::segments::set_tags(c, id, f.tags)?;
        reindex(c, id)?;
    }
    Ok(n == 1)
}

pub(crate) fn set_phones(c: &Connection, id: i64, phones: &[String]) -> DbResult<()> {
    c.execute("DELETE FROM customer_phones WHERE customer_id = ?1", [id])?;
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO customer_phones (customer_id, e164) VALUES (?1, ?2)",
    )?;
    for p in phones {
        st.execute(params![id, p])?;
    }
    Ok(())
}

/// The customer's row in `search_index`: customers take even rowids, orders odd ones, so
/// a row is replaced by rowid (a lookup) instead of by its UNINDEXED columns (a scan of
/// the whole index).
pub fn fts_rowid(id: i64) -> i64 {
    id * 2
}

/// The text a customer is found by: name, phones in every searchable form, Telegram.
pub fn search_body(name: &str, phones: &[String], telegram: &str) -> String {
    let mut body = name.to_string();
    super::search::push_customer_keys(&mut body, name, phones);
    for p in phones {
        body.push(' ');
        body.push_str(&crate::model::PhoneNumber::from_e164_unchecked(p.clone()).search_tokens());
    }
    if !telegram.is_empty() {
        body.push(' ');
        body.push_str(telegram);
    }
    body
}

/// Rebuilds the customer's search row: name, phones in every searchable form.
pub fn reindex(c: &Connection, id: i64) -> DbResult<()> {
    c.prepare_cached("DELETE FROM search_index WHERE rowid = ?1")?
        .execute([fts_rowid(id)])?;
    let Some(row) = get(c, id)? else {
        return Ok(());
    };
    if row.archived_at.is_some() {
        return Ok(());
    }
    let body = search_body(&row.name, &row.phones, &row.telegram);
    c.prepare_cached("INSERT INTO search_index (rowid, kind, ref, body) VALUES (?1, 'c', ?2, ?3)")?
        .execute(params![fts_rowid(id), id, body])?;
    Ok(())
}

/// Moves everything of `from` to `into` and retires `from`.
pub fn merge(c: &Connection, into: i64, from: i64, now: i64) -> DbResult<usize> {
    let moved = c.execute(
        "UPDATE orders SET customer_id = ?1 WHERE customer_id = ?2",
        params![into, from],
    )?;
    c.execute(
        "INSERT OR IGNORE INTO customer_phones (customer_id, e164) SELECT ?1, e164 FROM customer_phones WHERE customer_id = ?2",
        params![into, from],
    )?;
    c.execute("DELETE FROM customer_phones WHERE customer_id = ?1", [from])?;
    c.execute(
        "UPDATE customers SET merged_into = ?1, updated_at = ?3, version = version + 1 WHERE id = ?2",
        params![into, from, now],
    )?;
    c.execute(
        "UPDATE customers SET updated_at = ?2, version = version + 1 WHERE id = ?1",
        params![into, now],
    )?;
    c.execute(
        "DELETE FROM search_index WHERE rowid = ?1",
        [fts_rowid(from)],
    )?;
    reindex(c, into)?;
    Ok(moved)
}

/// The setting that keeps customers per branch ("1": on); off, one customer base.
pub const PER_BRANCH_KEY: &str = "customers.per_branch";

/// Whether customers are kept per branch.
pub fn per_branch(c: &Connection) -> DbResult<bool> {
    Ok(super::settings::get(c, PER_BRANCH_KEY)?.is_some_and(|v| v == "1"))
}

/// The condition keeping `customers` (unaliased) to those "of" `branches`: created in one
/// of them, or with an order in one; a customer created outside any branch scope with no
/// order belongs to none and is everyone's. Empty for every branch.
pub fn of_branches(branches: Option<&[i64]>) -> String {
    of_branches_as("customers", branches)
}

/// [`of_branches`] over `customers` named `alias`. Read from the kept facts (migration
/// 0024: `only_branch_id` is NULL with no order, 0 with orders at several branches), so
/// only customers of several branches look at their orders.
pub fn of_branches_as(alias: &str, branches: Option<&[i64]>) -> String {
    match branches {
        None => String::new(),
        Some(ids) => format!(" AND {}", branch_condition(alias, ids)),
    }
}

/// The bare condition of [`of_branches_as`] for these branches (none: no customer of a
/// branch, only everyone's).
pub fn branch_condition(alias: &str, ids: &[i64]) -> String {
    let list = if ids.is_empty() {
        "NULL".to_string()
    } else {
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    };
    format!(
        "({alias}.branch_id IN ({list}) OR {alias}.only_branch_id IN ({list})
          OR ({alias}.only_branch_id = 0 AND EXISTS (SELECT 1 FROM orders o
               WHERE o.customer_id = {alias}.id AND o.branch_id IN ({list})))
          OR ({alias}.branch_id IS NULL AND {alias}.only_branch_id IS NULL))"
    )
}

/// The branches customer `id` is of (created in, or with an order in); None when of
/// none (everyone's). Live events about them go to users of these branches.
pub fn branches_of(c: &Connection, id: i64) -> DbResult<Option<Vec<i64>>> {
    let ids: Vec<i64> = c
        .prepare_cached(
            "SELECT branch_id FROM customers WHERE id = ?1 AND branch_id IS NOT NULL
             UNION SELECT DISTINCT branch_id FROM orders WHERE customer_id = ?1",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((!ids.is_empty()).then_some(ids))
}

/// Customers of `branches` (None: any) with this E.164 number, lowest id first.
pub fn by_phone_in(
    c: &Connection,
    e164: &str,
    branches: Option<&[i64]>,
) -> DbResult<Vec<CustomerRow>> {
    let mut out = by_phone(c, e164)?;
    if branches.is_some() {
        let mut keep = Vec::with_capacity(out.len());
        for r in out.drain(..) {
            if in_branches(c, r.id, branches)? {
                keep.push(r);
            }
        }
        out = keep;
    }
    Ok(out)
}

/// Whether customer `id` is of `branches` (see [`of_branches`]).
pub fn in_branches(c: &Connection, id: i64, branches: Option<&[i64]>) -> DbResult<bool> {
    if branches.is_none() {
        return Ok(true);
    }
    Ok(c.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM customers WHERE id = ?1{})",
        of_branches(branches)
    ))?
    .query_row([id], |r| r.get(0))?)
}

/// Records the branch a customer was created in.
pub fn set_branch(c: &Connection, id: i64, branch: i64) -> DbResult<()> {
    c.prepare_cached("UPDATE customers SET branch_id = ?2 WHERE id = ?1")?
        .execute(params![id, branch])?;
    Ok(())
}

pub fn list(
    c: &Connection,
    limit: i64,
    offset: i64,
    branches: Option<&[i64]>,
) -> DbResult<Vec<CustomerRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM customers WHERE merged_into IS NULL{} ORDER BY id DESC LIMIT ?1 OFFSET ?2",
        of_branches(branches)
    ))?;
    let mut rows: Vec<CustomerRow> = st
        .query_map(params![limit, offset], from_row)?
        .collect::<Result<_, _>>()?;
    for r in &mut rows {
        r.phones = phones_of(c, r.id)?;
    }
    Ok(rows)
}

/// Customers, up to `orders::COUNT_CAP + 1` (meaning "more than the cap").
pub fn count(c: &Connection, branches: Option<&[i64]>) -> DbResult<i64> {
    Ok(c.query_row(
        &format!(
            "SELECT count(*) FROM (SELECT 1 FROM customers WHERE merged_into IS NULL{} LIMIT ?1)",
            of_branches(branches)
        ),
        [super::orders::COUNT_CAP + 1],
        |r| r.get(0),
    )?)
}

/// What a customer list shows (issue 18): archived customers only when asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    /// One tag (lower-case): customers whose tag list has it.
    pub tag: Option<String>,
    /// `person` or `company`.
    pub kind: Option<String>,
    pub opted_in: Option<bool>,
    /// true: only archived customers; false: only live ones.
    pub archived: bool,
}

impl CustomerFilter {
    fn sql(&self) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut w = vec!["merged_into IS NULL".to_string()];
        let mut args: Vec<Value> = Vec::new();
        w.push(if self.archived {
            "archived_at IS NOT NULL".into()
        } else {
            "archived_at IS NULL".into()
        });
        if let Some(t) = &self.tag {
            args.push(Value::Text(format!("%,{},%", like_escape(t))));
            w.push(format!(
                "(',' || tags || ',') LIKE ?{} ESCAPE '\\'",
                args.len()
            ));
        }
        if let Some(k) = &self.kind {
            args.push(Value::Text(k.clone()));
            w.push(format!("kind = ?{}", args.len()));
        }
        if let Some(o) = self.opted_in {
            args.push(Value::Integer(o as i64));
            w.push(format!("marketing_opt_in = ?{}", args.len()));
        }
        (w.join(" AND "), args)
    }
}

/// `%`, `_` and `\` of a tag taken literally in a `LIKE ... ESCAPE '\'`.
pub fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Customers matching `f`, newest first, and their count (capped like [`count`]).
pub fn list_filtered(
    c: &Connection,
    f: &CustomerFilter,
    limit: i64,
    offset: i64,
    branches: Option<&[i64]>,
) -> DbResult<(Vec<CustomerRow>, i64)> {
    let (mut w, mut args) = f.sql();
    w.push_str(&of_branches(branches));
    let total: i64 = c.query_row(
        &format!(
            "SELECT count(*) FROM (SELECT 1 FROM customers WHERE {w} LIMIT {})",
            super::orders::COUNT_CAP + 1
        ),
        rusqlite::params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    args.push(limit.into());
    args.push(offset.into());
    let n = args.len();
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM customers WHERE {w} ORDER BY id DESC LIMIT ?{} OFFSET ?{n}",
        n - 1
    ))?;
    let mut rows: Vec<CustomerRow> = st
        .query_map(rusqlite::params_from_iter(args.iter()), from_row)?
        .collect::<Result<_, _>>()?;
    for r in &mut rows {
        r.phones = phones_of(c, r.id)?;
    }
    Ok((rows, total))
}

/// Archives (`Some(now)`) or restores (`None`) a customer; false when it is not there.
/// An archived customer leaves the search index and comes back on restore.
pub fn set_archived(c: &Connection, id: i64, at: Option<i64>, now: i64) -> DbResult<bool> {
    let n = c.execute(
        "UPDATE customers SET archived_at = ?2, updated_at = ?3, version = version + 1
         WHERE id = ?1 AND merged_into IS NULL AND (archived_at IS NULL) = (?2 IS NOT NULL)",
        params![id, at, now],
    )?;
    if n == 1 {
        if at.is_some() {
            c.prepare_cached("DELETE FROM search_index WHERE rowid = ?1")?
                .execute([fts_rowid(id)])?;
        } else {
            reindex(c, id)?;
        }
    }
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, DbOptions};

    /// Reindexing replaces a row by its rowid: after edits and a merge each live
    /// customer and order has exactly one search row, and the merged-away one none.
    #[test]
    fn search_rows_are_replaced_not_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), &DbOptions::default()).unwrap();
        db.write_blocking(|c| {
            let f = |name| CustomerFields {
                name,
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
            let a = insert(c, &f("Aziz"), &["+998901112233".into()], 1)?;
            let b = insert(c, &f("Aziz K"), &["+998901112244".into()], 1)?;
            assert!(update(
                c,
                a,
                1,
                &f("Aziz Karimov"),
                &["+998901112233".into()],
                2
            )?);
            reindex(c, a)?;
            merge(c, a, b, 3)?;
            let rows = |kind: &str, id: i64| -> i64 {
                c.query_row(
                    "SELECT count(*) FROM search_index WHERE kind = ?1 AND ref = ?2",
                    params![kind, id],
                    |r| r.get(0),
                )
                .unwrap()
            };
            assert_eq!(rows("c", a), 1);
            assert_eq!(rows("c", b), 0);
            let hits = crate::db::orders::search(c, "\"998901112244\"*", 10)?;
            assert_eq!(
                hits,
                vec![("c".to_string(), a)],
                "the merged phone finds the kept customer"
            );
            Ok(())
        })
        .unwrap();
    }
}
