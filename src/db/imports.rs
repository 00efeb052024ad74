//! Customer import batches and what each did (issue 18; `domain::imports`).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::customers::{fts_rowid, search_body, CustomerFields};
use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BatchRow {
    pub id: i64,
    pub file_name: String,
    /// `csv` or `excel`.
    pub format: String,
    /// The CSV's encoding (`utf-8`, `windows-1251`, `utf-16le`, `utf-16be`).
    pub encoding: Option<String>,
    pub sha256: String,
    /// JSON `{"header": bool, "columns": [...]}`.
    pub mapping: String,
    /// `draft`, `imported`, `cancelled` or `undone`.
    pub state: String,
    pub rows_total: i64,
    pub created_n: i64,
    pub merged_n: i64,
    pub invalid_n: i64,
    pub kept_n: i64,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub imported_at: Option<i64>,
    pub closed_at: Option<i64>,
}

const COLS: &str = "id, file_name, format, encoding, sha256, mapping, state, rows_total, created_n,
    merged_n, invalid_n, kept_n, created_by, created_at, imported_at, closed_at";

fn from_row(r: &Row) -> rusqlite::Result<BatchRow> {
    Ok(BatchRow {
        id: r.get(0)?,
        file_name: r.get(1)?,
        format: r.get(2)?,
        encoding: r.get(3)?,
        sha256: r.get(4)?,
        mapping: r.get(5)?,
        state: r.get(6)?,
        rows_total: r.get(7)?,
        created_n: r.get(8)?,
        merged_n: r.get(9)?,
        invalid_n: r.get(10)?,
        kept_n: r.get(11)?,
        created_by: r.get(12)?,
        created_at: r.get(13)?,
        imported_at: r.get(14)?,
        closed_at: r.get(15)?,
    })
}

pub struct NewBatch<'a> {
    pub file_name: &'a str,
    pub format: &'a str,
    pub encoding: Option<&'a str>,
    pub sha256: &'a str,
    pub content: &'a [u8],
    pub mapping: &'a str,
    pub rows_total: i64,
    pub created_by: Option<i64>,
}

/// A draft batch (with its file).
pub fn insert_batch(c: &Connection, b: &NewBatch, now: i64) -> DbResult<i64> {
    c.execute(
        "INSERT INTO import_batches (file_name, format, encoding, sha256, content, mapping, state,
                                     rows_total, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'draft', ?7, ?8, ?9)",
        params![
            b.file_name,
            b.format,
            b.encoding,
            b.sha256,
            b.content,
            b.mapping,
            b.rows_total,
            b.created_by,
            now
        ],
    )?;
    Ok(c.last_insert_rowid())
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<BatchRow>> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM import_batches WHERE id = ?1"))?
            .query_row([id], from_row)
            .optional()?,
    )
}

/// The newest batches first.
pub fn list(c: &Connection, limit: i64) -> DbResult<Vec<BatchRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM import_batches ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = st.query_map([limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A draft's file.
pub fn content(c: &Connection, id: i64) -> DbResult<Option<Vec<u8>>> {
    Ok(c.query_row(
        "SELECT content FROM import_batches WHERE id = ?1 AND state = 'draft'",
        [id],
        |r| r.get::<_, Option<Vec<u8>>>(0),
    )
    .optional()?
    .flatten())
}

/// Sets a draft's mapping (and encoding); false when it is no longer a draft.
pub fn set_mapping(
    c: &Connection,
    id: i64,
    mapping: &str,
    encoding: Option<&str>,
) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE import_batches SET mapping = ?2, encoding = coalesce(?3, encoding)
         WHERE id = ?1 AND state = 'draft'",
        params![id, mapping, encoding],
    )? == 1)
}

/// Cancels a draft and drops its file; false when it is no longer a draft.
pub fn close_draft(c: &Connection, id: i64, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE import_batches SET state = 'cancelled', content = NULL, closed_at = ?2
         WHERE id = ?1 AND state = 'draft'",
        params![id, now],
    )? == 1)
}

/// Marks a batch imported with its counts and drops its file.
pub fn finish_import(
    c: &Connection,
    id: i64,
    created: i64,
    merged: i64,
    invalid: i64,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "UPDATE import_batches SET state = 'imported', content = NULL, imported_at = ?2,
                created_n = ?3, merged_n = ?4, invalid_n = ?5
         WHERE id = ?1",
        params![id, now, created, merged, invalid],
    )?;
    Ok(())
}

pub fn finish_undo(c: &Connection, id: i64, kept: i64, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE import_batches SET state = 'undone', kept_n = ?2, closed_at = ?3 WHERE id = ?1",
        params![id, kept, now],
    )?;
    Ok(())
}

/// An imported (not undone) batch of the same file, other than `except`.
pub fn imported_with_sha(
    c: &Connection,
    sha: &str,
    except: Option<i64>,
) -> DbResult<Option<BatchRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {COLS} FROM import_batches
             WHERE sha256 = ?1 AND state = 'imported' AND id IS NOT ?2 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row(params![sha, except], from_row)
    .optional()?)
}

/// The first live customer with this E.164 number: (id, name).
pub fn customer_by_phone(
    c: &Connection,
    e164: &str,
    branches: Option<&[i64]>,
) -> DbResult<Option<(i64, String)>> {
    Ok(c.prepare_cached(&format!(
        "SELECT c.id, c.name FROM customer_phones p JOIN customers c ON c.id = p.customer_id
             WHERE p.e164 = ?1 AND c.merged_into IS NULL{} ORDER BY p.customer_id LIMIT 1",
        super::customers::of_branches_as("c", branches)
    ))?
    .query_row([e164], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

/// A new customer with phones and search row, by cached statements only: an import
/// inserts tens of thousands in one transaction.
pub fn insert_customer(
    c: &Connection,
    f: &CustomerFields,
    phones: &[String],
    now: i64,
) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO customers (name, email, telegram, address, notes, tags, created_at, updated_at,
                                language, kind, company, birthday, marketing_opt_in)
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
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO customer_phones (customer_id, e164) VALUES (?1, ?2)",
    )?;
    for p in phones {
        st.execute(params![id, p])?;
    }
    super::segments::set_tags(c, id, f.tags)?;
    c.prepare_cached("INSERT INTO search_index (rowid, kind, ref, body) VALUES (?1, 'c', ?2, ?3)")?
        .execute(params![
            fts_rowid(id),
            id,
            search_body(f.name, phones, f.telegram)
        ])?;
    Ok(id)
}

pub fn add_effect(
    c: &Connection,
    batch: i64,
    customer: i64,
    created: bool,
    before: Option<&str>,
    version_after: i64,
) -> DbResult<()> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO import_effects (batch_id, customer_id, created, before, version_after)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![batch, customer, created, before, version_after])?;
    Ok(())
}

/// The customer's version after the batch's last change to it.
pub fn set_effect_version(c: &Connection, batch: i64, customer: i64, v: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE import_effects SET version_after = ?3 WHERE batch_id = ?1 AND customer_id = ?2",
    )?
    .execute(params![batch, customer, v])?;
    Ok(())
}

pub struct Effect {
    pub customer_id: i64,
    pub created: bool,
    pub before: Option<String>,
    pub version_after: i64,
}

pub fn effects(c: &Connection, batch: i64) -> DbResult<Vec<Effect>> {
    let mut st = c.prepare_cached(
        "SELECT customer_id, created, before, version_after FROM import_effects WHERE batch_id = ?1",
    )?;
    let rows = st.query_map([batch], |r| {
        Ok(Effect {
            customer_id: r.get(0)?,
            created: r.get(1)?,
            before: r.get(2)?,
            version_after: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether a customer has anything beyond their card: orders, calls, missed calls, a
/// linked Telegram chat, a conversation, or customers merged into them.
pub fn has_history(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM orders WHERE customer_id = ?1)
                 OR EXISTS (SELECT 1 FROM calls WHERE customer_id = ?1)
                 OR EXISTS (SELECT 1 FROM missed_calls WHERE customer_id = ?1)
                 OR EXISTS (SELECT 1 FROM telegram_chats WHERE customer_id = ?1)
                 OR EXISTS (SELECT 1 FROM customers WHERE merged_into = ?1)
                 OR EXISTS (SELECT 1 FROM conversations WHERE customer_id = ?1)",
    )?
    .query_row([id], |r| r.get(0))?)
}

/// Removes a customer an import created (the caller checked [`has_history`]).
pub fn delete_customer(c: &Connection, id: i64) -> DbResult<()> {
    c.prepare_cached("DELETE FROM search_index WHERE rowid = ?1")?
        .execute([fts_rowid(id)])?;
    c.prepare_cached("DELETE FROM customer_phones WHERE customer_id = ?1")?
        .execute([id])?;
    c.prepare_cached("DELETE FROM customer_tags WHERE customer_id = ?1")?
        .execute([id])?;
    c.prepare_cached("DELETE FROM customers WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
