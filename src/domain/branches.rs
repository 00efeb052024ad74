//! Branches (service-center locations): the admin keeps the list; every order belongs
//! to one; the map page shows them.

use super::{DomainError, DomainResult};
pub use crate::db::branches::BranchRow;
use crate::db::branches::{self as q, BranchFields};
use crate::db::{now, Db};
use crate::model::PhoneNumber;

/// A branch as typed into the form or the API.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct BranchInput {
    pub name: String,
    #[serde(default)]
    pub address: String,
    /// Any typed form; stored as E.164.
    #[serde(default)]
    pub phone: String,
    /// Degrees, -90…90; give both coordinates or neither.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Degrees, -180…180.
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

struct Clean {
    name: String,
    address: String,
    phone: String,
    lat: Option<f64>,
    lon: Option<f64>,
    active: bool,
}

fn clean(b: BranchInput, country: crate::model::phone::Country) -> DomainResult<Clean> {
    let name = b.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(DomainError::invalid("branch name: 1-100 characters"));
    }
    let address = b.address.trim().to_string();
    if address.chars().count() > 300 {
        return Err(DomainError::invalid("address: up to 300 characters"));
    }
    let phone = match b.phone.trim() {
        "" => String::new(),
        p => PhoneNumber::parse(p, country)
            .map_err(|e| DomainError::invalid(format!("phone: {e}")))?
            .as_str()
            .to_string(),
    };
    match (b.lat, b.lon) {
        (None, None) => {}
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) || !lat.is_finite() {
                return Err(DomainError::invalid("latitude must be between -90 and 90"));
            }
            if !(-180.0..=180.0).contains(&lon) || !lon.is_finite() {
                return Err(DomainError::invalid(
                    "longitude must be between -180 and 180",
                ));
            }
        }
        _ => {
            return Err(DomainError::invalid(
                "give both latitude and longitude, or neither",
            ))
        }
    }
    Ok(Clean {
        name,
        address,
        phone,
        lat: b.lat,
        lon: b.lon,
        active: b.active,
    })
}

fn fields(c: &Clean) -> BranchFields<'_> {
    BranchFields {
        name: &c.name,
        address: &c.address,
        phone: &c.phone,
        lat: c.lat,
        lon: c.lon,
        active: c.active,
    }
}

fn detail(c: &Clean) -> serde_json::Value {
    serde_json::json!({"name": c.name, "address": c.address, "phone": c.phone,
        "lat": c.lat, "lon": c.lon, "active": c.active})
}

fn taken(e: crate::db::DbError, name: &str) -> DomainError {
    if e.is_unique_violation() {
        DomainError::Conflict(format!("a branch named {name:?} already exists"))
    } else {
        super::from_db(e)
    }
}

pub async fn list(db: &Db, only_active: bool) -> DomainResult<Vec<BranchRow>> {
    Ok(db.read(move |c| q::list(c, only_active)).await?)
}

pub async fn get(db: &Db, id: i64) -> DomainResult<BranchRow> {
    db.read(move |c| q::get(c, id))
        .await?
        .ok_or(DomainError::NotFound)
}

pub async fn create(db: &Db, by: i64, input: BranchInput) -> DomainResult<BranchRow> {
    let country = super::shop::load(db).await?.country();
    let b = clean(input, country)?;
    let name = b.name.clone();
    let id = db
        .write(move |c| {
            let id = q::insert(c, &fields(&b))?;
            crate::db::settings::log_activity(
                c,
                Some(by),
                "create",
                "branch",
                Some(id),
                &detail(&b),
                now(),
            )?;
            Ok(id)
        })
        .await
        .map_err(|e| taken(e, &name))?;
    get(db, id).await
}

pub async fn update(db: &Db, by: i64, id: i64, input: BranchInput) -> DomainResult<BranchRow> {
    let country = super::shop::load(db).await?.country();
    let b = clean(input, country)?;
    let name = b.name.clone();
    db.write(move |c| {
        let before = q::get(c, id)?.ok_or(DomainError::NotFound)?;
        if before.active && !b.active && q::active_count(c)? <= 1 {
            return Err(DomainError::Conflict(
                "the last active branch cannot be closed: orders need one".into(),
            )
            .into());
        }
        q::update(c, id, &fields(&b))?;
        crate::db::settings::log_activity(
            c,
            Some(by),
            "update",
            "branch",
            Some(id),
            &serde_json::json!({"before": {"name": before.name, "address": before.address,
                "phone": before.phone, "lat": before.lat, "lon": before.lon, "active": before.active},
                "after": detail(&b)}),
            now(),
        )?;
        Ok(())
    })
    .await
    .map_err(|e| taken(e, &name))?;
    get(db, id).await
}
