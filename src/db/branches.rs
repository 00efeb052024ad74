//! Branches: the shop's service-center locations.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BranchRow {
    pub id: i64,
    pub name: String,
    pub address: String,
    /// E.164, or empty.
    pub phone: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub active: bool,
    /// The branch's own order-number prefix; empty: the shop's.
    pub order_prefix: String,
    /// Opening hours as printed on the branch's receipts; empty: the shop's.
    pub hours: String,
    /// Business hours for calls on the branch's DIDs (the `sip.hours` format); empty
    /// with no holidays: the shop's.
    pub sip_hours: String,
    /// Closed dates for calls (`sip.holidays` format).
    pub sip_holidays: String,
}

pub struct BranchFields<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub phone: &'a str,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub active: bool,
    pub order_prefix: &'a str,
    pub hours: &'a str,
    pub sip_hours: &'a str,
    pub sip_holidays: &'a str,
}

fn from_row(r: &Row) -> rusqlite::Result<BranchRow> {
    Ok(BranchRow {
        id: r.get(0)?,
        name: r.get(1)?,
        address: r.get(2)?,
        phone: r.get(3)?,
        lat: r.get(4)?,
        lon: r.get(5)?,
        active: r.get(6)?,
        order_prefix: r.get(7)?,
        hours: r.get(8)?,
        sip_hours: r.get(9)?,
        sip_holidays: r.get(10)?,
    })
}

const COLS: &str =
    "id, name, address, phone, lat, lon, active, order_prefix, hours, sip_hours, sip_holidays";

/// All branches (active first, then by name), or only the active ones.
pub fn list(c: &Connection, only_active: bool) -> DbResult<Vec<BranchRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM branches WHERE active = 1 OR ?1 = 0 ORDER BY active DESC, name COLLATE NOCASE"
    ))?;
    let rows = st.query_map([only_active], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<BranchRow>> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM branches WHERE id = ?1"))?
            .query_row([id], from_row)
            .optional()?,
    )
}

pub fn insert(c: &Connection, f: &BranchFields) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO branches (name, address, phone, lat, lon, active, order_prefix, hours,
            sip_hours, sip_holidays)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        f.name,
        f.address,
        f.phone,
        f.lat,
        f.lon,
        f.active,
        f.order_prefix,
        f.hours,
        f.sip_hours,
        f.sip_holidays
    ])?;
    Ok(c.last_insert_rowid())
}

/// False when there is no such branch.
pub fn update(c: &Connection, id: i64, f: &BranchFields) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE branches SET name = ?2, address = ?3, phone = ?4, lat = ?5, lon = ?6, active = ?7,
             order_prefix = ?8, hours = ?9, sip_hours = ?10, sip_holidays = ?11 WHERE id = ?1",
    )?
    .execute(params![
        id,
        f.name,
        f.address,
        f.phone,
        f.lat,
        f.lon,
        f.active,
        f.order_prefix,
        f.hours,
        f.sip_hours,
        f.sip_holidays
    ])? == 1)
}

pub fn active_count(c: &Connection) -> DbResult<i64> {
    Ok(
        c.query_row("SELECT count(*) FROM branches WHERE active = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// Where an order goes when the desk names no branch: the oldest active one.
pub fn default_id(c: &Connection) -> DbResult<Option<i64>> {
    Ok(
        c.query_row("SELECT min(id) FROM branches WHERE active = 1", [], |r| {
            r.get(0)
        })?,
    )
}
