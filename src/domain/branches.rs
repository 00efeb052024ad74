//! Branches (service-center locations): the admin keeps the list; every order belongs
//! to one; the map page shows them.

use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
pub use crate::db::branches::BranchRow;
use crate::db::branches::{self as q, BranchFields};
use crate::db::Db;
use crate::events::{Audience, Event};
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
    /// The branch's own order-number prefix (Latin letters and digits, up to 8); empty
    /// for the shop's.
    #[serde(default)]
    pub order_prefix: String,
    /// Opening hours printed on the branch's receipts; empty for the shop's.
    #[serde(default)]
    pub hours: String,
    /// Business hours for calls on the branch's DIDs, e.g. "mon-fri 09:00-18:00; sat
    /// 10:00-14:00"; with `sip_holidays` empty too: the shop's hours.
    #[serde(default)]
    pub sip_hours: String,
    /// Dates the branch is closed for calls (YYYY-MM-DD, comma-separated).
    #[serde(default)]
    pub sip_holidays: String,
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
    order_prefix: String,
    hours: String,
    sip_hours: String,
    sip_holidays: String,
}

fn clean(b: BranchInput, country: crate::model::phone::Country) -> DomainResult<Clean> {
    let name = b.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", "field.branch_name")
                .with("max", 100),
        ));
    }
    let address = b.address.trim().to_string();
    if address.chars().count() > 300 {
        return Err(DomainError::invalid(
            Msg::new("err.field.too_long")
                .term("field", "field.address")
                .with("max", 300),
        ));
    }
    let phone = match b.phone.trim() {
        "" => String::new(),
        p => PhoneNumber::parse(p, country)
            .map_err(|e| {
                DomainError::invalid(
                    Msg::new("err.phone.refused")
                        .with("phone", p)
                        .nested("why", e.into()),
                )
            })?
            .as_str()
            .to_string(),
    };
    match (b.lat, b.lon) {
        (None, None) => {}
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) || !lat.is_finite() {
                return Err(DomainError::invalid("err.branch.latitude"));
            }
            if !(-180.0..=180.0).contains(&lon) || !lon.is_finite() {
                return Err(DomainError::invalid("err.branch.longitude"));
            }
        }
        _ => return Err(DomainError::invalid("err.branch.coordinates_pair")),
    }
    let order_prefix = b.order_prefix.trim().to_uppercase();
    if !order_prefix.chars().all(|c| c.is_ascii_alphanumeric()) || order_prefix.len() > 8 {
        return Err(DomainError::invalid("err.shop.order_prefix"));
    }
    let hours = b.hours.trim().to_string();
    if hours.chars().count() > 100 {
        return Err(DomainError::invalid(
            Msg::new("err.field.too_long")
                .term("field", "field.hours")
                .with("max", 100),
        ));
    }
    let sip_hours = b.sip_hours.trim().to_string();
    let sip_holidays = b.sip_holidays.trim().to_string();
    if sip_hours.chars().count() > 300 || sip_holidays.chars().count() > 4000 {
        return Err(DomainError::invalid(
            Msg::new("err.field.too_long")
                .term("field", "field.hours")
                .with("max", 300),
        ));
    }
    // The same formats as the shop's call rules, checked by the same parser.
    super::telephony::CallRules {
        hours: sip_hours.clone(),
        holidays: sip_holidays.clone(),
        ..Default::default()
    }
    .validate()?;
    Ok(Clean {
        order_prefix,
        hours,
        sip_hours,
        sip_holidays,
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
        order_prefix: &c.order_prefix,
        hours: &c.hours,
        sip_hours: &c.sip_hours,
        sip_holidays: &c.sip_holidays,
    }
}

fn detail(c: &Clean) -> serde_json::Value {
    serde_json::json!({"name": c.name, "address": c.address, "phone": c.phone,
        "lat": c.lat, "lon": c.lon, "active": c.active, "order_prefix": c.order_prefix,
        "hours": c.hours, "sip_hours": c.sip_hours, "sip_holidays": c.sip_holidays})
}

/// A clash on the unique name reads as a conflict that names the branch.
fn taken(e: crate::db::DbError, name: &str) -> DomainError {
    if e.is_unique_violation() {
        DomainError::conflict(Msg::new("err.branch.name_taken").with("name", name))
    } else {
        e.into()
    }
}

fn changed_event(id: i64) -> Event {
    Event::new(
        "branch.updated",
        serde_json::json!({"id": id}),
        Audience::Everyone,
    )
}

pub async fn list(db: &Db, only_active: bool) -> DomainResult<Vec<BranchRow>> {
    Ok(db.read(move |c| q::list(c, only_active)).await?)
}

pub async fn get(db: &Db, id: i64) -> DomainResult<BranchRow> {
    db.read(move |c| q::get(c, id))
        .await?
        .ok_or(DomainError::NotFound)
}

pub async fn create(store: &Store, by: &Actor, input: BranchInput) -> DomainResult<BranchRow> {
    let country = super::shop::load(store.db()).await?.country();
    let b = clean(input, country)?;
    let id = store
        .write(by, move |tx| {
            let id = q::insert(tx, &fields(&b)).map_err(|e| taken(e, &b.name))?;
            tx.log("create", "branch", id, detail(&b));
            tx.emit(changed_event(id));
            Ok(id)
        })
        .await?;
    get(store.db(), id).await
}

pub async fn update(
    store: &Store,
    by: &Actor,
    id: i64,
    input: BranchInput,
) -> DomainResult<BranchRow> {
    let country = super::shop::load(store.db()).await?.country();
    let b = clean(input, country)?;
    store
        .write(by, move |tx| {
            let before = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
            if before.active && !b.active && q::active_count(tx)? <= 1 {
                return Err(DomainError::conflict("err.branch.last_active"));
            }
            q::update(tx, id, &fields(&b)).map_err(|e| taken(e, &b.name))?;
            tx.log(
                "update",
                "branch",
                id,
                serde_json::json!({"before": {"name": before.name, "address": before.address,
                    "phone": before.phone, "lat": before.lat, "lon": before.lon, "active": before.active,
                    "order_prefix": before.order_prefix, "hours": before.hours},
                    "after": detail(&b)}),
            );
            tx.emit(changed_event(id));
            Ok(())
        })
        .await?;
    get(store.db(), id).await
}

/// The shop's settings as a branch presents them: its own address, phone, hours and
/// order-number prefix where it has them (receipts, intake).
pub fn shop_of_branch(
    mut shop: super::shop::ShopSettings,
    b: &BranchRow,
) -> super::shop::ShopSettings {
    if !b.address.is_empty() {
        shop.address = b.address.clone();
    }
    if !b.phone.is_empty() {
        shop.phone = crate::model::PhoneNumber::from_e164_unchecked(b.phone.clone()).display();
    }
    if !b.hours.is_empty() {
        shop.hours = b.hours.clone();
    }
    if !b.order_prefix.is_empty() {
        shop.order_prefix = b.order_prefix.clone();
    }
    shop
}
