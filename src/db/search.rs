//! The search index's extra keys: a customer's name in other scripts' spellings and the
//! last four digits of each phone (what a caller reads out), so the one search box finds
//! `Дилноза` for `Dilnoza` and a customer by `4567`.

use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;

use super::DbResult;

/// Adds a customer's extra search keys to the text of their search row.
pub fn push_customer_keys(body: &mut String, name: &str, phones: &[String]) {
    let keys = crate::model::translit::name_keys(name);
    if !keys.is_empty() {
        body.push(' ');
        body.push_str(&keys);
    }
    for p in phones {
        let d: String = p.chars().filter(|c| c.is_ascii_digit()).collect();
        if d.len() > 4 {
            body.push(' ');
            body.push_str(&d[d.len() - 4..]);
        }
    }
}

/// `crm_name_keys(name)`: [`crate::model::translit::name_keys`] for SQL, so a migration
/// can re-key rows that were indexed before the keys existed.
pub fn register_functions(c: &Connection) -> DbResult<()> {
    c.create_scalar_function(
        "crm_name_keys",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let name: String = ctx.get::<Option<String>>(0)?.unwrap_or_default();
            Ok(crate::model::translit::name_keys(&name))
        },
    )?;
    Ok(())
}

/// The version of the keys [`push_customer_keys`] writes; rows indexed by an older
/// binary are re-keyed once, on open.
const KEYS_VERSION: &str = "1";
const KEYS_SETTING: &str = "search_keys";

/// Adds the extra keys to customer rows indexed before they existed, once per database
/// (a data step rather than a numbered migration: it needs the Rust transliteration).
pub fn ensure_keys(c: &Connection) -> DbResult<()> {
    if super::settings::get(c, KEYS_SETTING)?.as_deref() == Some(KEYS_VERSION) {
        return Ok(());
    }
    register_functions(c)?;
    let tx = c.unchecked_transaction()?;
    tx.execute_batch(
        "UPDATE search_index
         SET body = body
             || ' ' || crm_name_keys((SELECT name FROM customers WHERE id = search_index.ref))
             || ' ' || coalesce((SELECT group_concat(substr(e164, -4), ' ') FROM customer_phones
                                 WHERE customer_id = search_index.ref), '')
         WHERE kind = 'c'",
    )?;
    super::settings::set(&tx, KEYS_SETTING, KEYS_VERSION, super::now())?;
    tx.commit()?;
    Ok(())
}

/// An order's id by its exact number (`RM26-00123`).
pub fn order_by_number(c: &Connection, number: &str) -> DbResult<Option<i64>> {
    use rusqlite::OptionalExtension;
    Ok(
        c.prepare_cached("SELECT id FROM orders WHERE number = ?1 AND archived_at IS NULL")?
            .query_row([number], |r| r.get(0))
            .optional()?,
    )
}
