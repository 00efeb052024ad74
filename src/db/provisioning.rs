//! Desk phones to provision: MAC, model, the extension they carry.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PhoneRow {
    pub mac: String,
    pub model: String,
    pub extension: String,
    /// The phone's HTTP credential for its file (shown to the admin to enter).
    pub password: String,
    pub created_at: i64,
    pub last_fetch_at: Option<i64>,
}

/// What a phone's file is made of.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    pub phone: PhoneRow,
    pub display_name: String,
    pub secret: String,
    /// The linked staff user's language (uz, uz-Cyrl, ru, en), if any.
    pub language: Option<String>,
    pub enabled: bool,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PhoneRow> {
    Ok(PhoneRow {
        mac: r.get(0)?,
        model: r.get(1)?,
        extension: r.get(2)?,
        password: r.get(3)?,
        created_at: r.get(4)?,
        last_fetch_at: r.get(5)?,
    })
}

pub fn list_phones(c: &Connection) -> DbResult<Vec<PhoneRow>> {
    let mut st = c.prepare_cached(
        "SELECT mac, model, extension, password, created_at, last_fetch_at FROM sip_phones
         ORDER BY extension, mac",
    )?;
    let rows = st.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn phone_config(c: &Connection, mac: &str) -> DbResult<Option<PhoneConfig>> {
    Ok(c.query_row(
        "SELECT p.mac, p.model, p.extension, p.password, p.created_at, p.last_fetch_at,
                e.display_name, e.secret, u.language, e.enabled
         FROM sip_phones p JOIN sip_extensions e ON e.number = p.extension
         LEFT JOIN users u ON u.id = e.user_id
         WHERE p.mac = ?1",
        [mac],
        |r| {
            Ok(PhoneConfig {
                phone: row(r)?,
                display_name: r.get(6)?,
                secret: r.get(7)?,
                language: r.get(8)?,
                enabled: r.get(9)?,
            })
        },
    )
    .optional()?)
}

pub fn insert_phone(
    c: &Connection,
    mac: &str,
    model: &str,
    extension: &str,
    password: &str,
    now: i64,
) -> DbResult<i64> {
    c.execute(
        "INSERT INTO sip_phones (mac, model, extension, password, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![mac, model, extension, password, now],
    )?;
    Ok(c.last_insert_rowid())
}

pub fn delete_phone(c: &Connection, mac: &str) -> DbResult<usize> {
    Ok(c.execute("DELETE FROM sip_phones WHERE mac = ?1", [mac])?)
}

pub fn touch_phone(c: &Connection, mac: &str, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE sip_phones SET last_fetch_at = ?2 WHERE mac = ?1",
        params![mac, now],
    )?;
    Ok(())
}
