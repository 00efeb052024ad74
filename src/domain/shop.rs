//! The shop's own settings, edited by admins: name, address, terms on receipts, order
//! number prefix, currency, default phone country.

use serde::{Deserialize, Serialize};

use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::{settings as q, Db};
use crate::model::phone::{Country, UZBEKISTAN};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShopSettings {
    pub name: String,
    pub address: String,
    pub phone: String,
    pub hours: String,
    /// Printed on the intake receipt.
    pub terms: String,
    pub order_prefix: String,
    pub currency: String,
    /// Calling code used for numbers typed without one, e.g. "998".
    pub default_country: String,
    /// Map tiles for the branches map: a URL with {z}, {x} and {y}.
    #[serde(default = "default_map_tiles")]
    pub map_tiles: String,
}

/// OpenStreetMap's tile server (needs the internet; a shop may run its own).
pub const OSM_TILES: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

fn default_map_tiles() -> String {
    OSM_TILES.into()
}

impl Default for ShopSettings {
    fn default() -> Self {
        ShopSettings {
            name: "Servis markazi".into(),
            address: String::new(),
            phone: String::new(),
            hours: "09:00–19:00".into(),
            terms: "Qurilma 30 kun ichida olib ketilmasa, markaz javobgar emas. Kafolat faqat bajarilgan ishga beriladi.".into(),
            order_prefix: "RM".into(),
            currency: "UZS".into(),
            default_country: "998".into(),
            map_tiles: default_map_tiles(),
        }
    }
}

const KEY: &str = "shop";

impl ShopSettings {
    pub fn country(&self) -> Country {
        Country::from_calling_code(&self.default_country).unwrap_or(UZBEKISTAN)
    }

    /// The tile server's origin (`https://tile.example`), which the map page's
    /// Content-Security-Policy lets images come from.
    pub fn map_tile_origin(&self) -> DomainResult<String> {
        let bad = || DomainError::invalid("err.shop.map_tiles");
        let t = self.map_tiles.trim();
        let rest = t
            .strip_prefix("https://")
            .or_else(|| t.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let host = rest.split('/').next().unwrap_or("");
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]{}".contains(c));
        if !host_ok || !["{z}", "{x}", "{y}"].iter().all(|p| t.contains(p)) || t.len() > 300 {
            return Err(bad());
        }
        Ok(t[..t.len() - rest.len() + host.len()].to_string())
    }

    pub fn money(&self, v: i64) -> String {
        crate::model::money::format(v, &self.currency)
    }

    fn validate(&self) -> DomainResult<()> {
        if self.name.trim().is_empty() || self.name.chars().count() > 120 {
            return Err(DomainError::invalid(
                Msg::new("err.field.length")
                    .term("field", "field.shop_name")
                    .with("max", 120),
            ));
        }
        if !self.order_prefix.chars().all(|c| c.is_ascii_alphanumeric())
            || self.order_prefix.len() > 8
        {
            return Err(DomainError::invalid("err.shop.order_prefix"));
        }
        if Country::from_calling_code(&self.default_country).is_none() {
            return Err(DomainError::invalid("err.shop.country"));
        }
        if self.currency.len() != 3 {
            return Err(DomainError::invalid("err.shop.currency"));
        }
        self.map_tile_origin()?;
        Ok(())
    }
}

pub async fn load(db: &Db) -> DomainResult<ShopSettings> {
    Ok(parse(db.read(|c| q::get(c, KEY)).await?))
}

/// Settings from their stored form (defaults when never saved).
pub fn parse(raw: Option<String>) -> ShopSettings {
    raw.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

pub const SETTINGS_KEY: &str = KEY;

pub async fn save(store: &Store, by: &Actor, s: ShopSettings) -> DomainResult<()> {
    s.validate()?;
    let json = serde_json::to_string(&s).expect("settings serialise");
    store
        .write(by, move |tx| {
            q::set(tx, KEY, &json, tx.now())?;
            tx.log("update", "settings", None, serde_json::json!({"key": KEY}));
            tx.emit(crate::events::Event::new(
                "settings.updated",
                serde_json::json!({"key": KEY}),
                crate::events::Audience::Everyone,
            ));
            Ok(())
        })
        .await
}
