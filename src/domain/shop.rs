//! The shop's own settings, edited by admins: name, address, terms on receipts, order
//! number prefix, currency, default phone country, time zone (the shop clock).

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
    /// The shop's IANA time zone (`Asia/Tashkent`): every day, hour and year the
    /// product computes is the shop's (see `domain::clock`).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The receipt's terms in other languages (`ru`, `uz-Cyrl`, `en`); `terms` is the
    /// Uzbek (Latin) text and stands in for any left empty.
    #[serde(default)]
    pub terms_ru: String,
    #[serde(default)]
    pub terms_uz_cyrl: String,
    #[serde(default)]
    pub terms_en: String,
    /// Days from intake to the promised date the intake form suggests (0: none).
    #[serde(default = "default_promise_days")]
    pub promise_days: i64,
}

fn default_promise_days() -> i64 {
    3
}

fn default_time_zone() -> String {
    super::clock::DEFAULT_ZONE.into()
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
            time_zone: default_time_zone(),
            promise_days: default_promise_days(),
            terms_ru: String::new(),
            terms_uz_cyrl: String::new(),
            terms_en: String::new(),
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

    /// The receipt's terms in this language, or the main text when none is set.
    pub fn terms_for(&self, lang: crate::model::Language) -> &str {
        let t = match lang {
            crate::model::Language::Ru => &self.terms_ru,
            crate::model::Language::UzCyrl => &self.terms_uz_cyrl,
            crate::model::Language::En => &self.terms_en,
            crate::model::Language::UzLatn => &self.terms,
        };
        if t.trim().is_empty() {
            &self.terms
        } else {
            t
        }
    }

    pub fn money(&self, v: i64) -> String {
        crate::model::money::format(v, &self.currency)
    }

    pub fn validate(&self) -> DomainResult<()> {
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
        if !(0..=90).contains(&self.promise_days) {
            return Err(DomainError::invalid("desk.err_promise_days"));
        }
        self.map_tile_origin()?;
        super::clock::check_zone(&self.time_zone)?;
        Ok(())
    }
}

pub async fn load(db: &Db) -> DomainResult<ShopSettings> {
    Ok(parse(db.read(|c| q::get(c, KEY)).await?))
}

/// Settings from their stored form: stored fields over the defaults (so a row that a
/// migration wrote with only some fields keeps them; defaults when never saved).
pub fn parse(raw: Option<String>) -> ShopSettings {
    let Some(stored) = raw.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()) else {
        return ShopSettings::default();
    };
    let mut merged = serde_json::to_value(ShopSettings::default()).expect("settings serialise");
    if let (Some(m), serde_json::Value::Object(st)) = (merged.as_object_mut(), stored) {
        m.extend(st);
    }
    serde_json::from_value(merged).unwrap_or_default()
}

pub const SETTINGS_KEY: &str = KEY;

/// The shop clock of the stored settings (the default zone when never saved or unknown).
pub fn clock_of(c: &crate::db::Conn) -> crate::db::DbResult<super::clock::ShopClock> {
    let s = parse(q::get(c, KEY)?);
    Ok(super::clock::ShopClock::new(&s.time_zone)
        .unwrap_or_default()
        .in_country(s.country()))
}

/// The country of phone numbers typed without a country code, from the stored settings.
pub fn country_of(c: &crate::db::Conn) -> crate::db::DbResult<crate::model::phone::Country> {
    Ok(parse(q::get(c, KEY)?).country())
}

/// Saves the settings and switches the running shop clock (the store's) to their zone.
pub async fn save(store: &Store, by: &Actor, mut s: ShopSettings) -> DomainResult<()> {
    s.time_zone = s.time_zone.trim().to_string();
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
        .await?;
    store.clock().follow_settings(store.db()).await
}

/// The shop's logo, for receipts and labels: PNG or JPEG (what every printer path and
/// the PDF receipt can carry), judged by its bytes.
#[derive(Debug, Clone)]
pub struct Logo {
    pub mime: &'static str,
    pub bytes: Vec<u8>,
    /// A short hash of the bytes: the logo's URL carries it, so browsers may cache it.
    pub version: String,
}

/// A logo is printed a few centimetres wide; more than this is a photo, not a logo.
pub const MAX_LOGO_BYTES: usize = 512 * 1024;
const LOGO_KEY: &str = "shop.logo";

#[derive(Serialize, Deserialize)]
struct StoredLogo {
    mime: String,
    version: String,
    /// Base64: the settings table holds text, and the logo then travels with the database
    /// (backups, replication) like every other setting.
    data: String,
}

fn logo_mime(b: &[u8]) -> Option<&'static str> {
    match super::orders::sniff_image(b) {
        Some((m @ ("image/png" | "image/jpeg"), _)) => Some(m),
        _ => None,
    }
}

/// The stored logo, if one was uploaded.
pub fn logo_in(c: &crate::db::Conn) -> crate::db::DbResult<Option<Logo>> {
    use base64::Engine;
    let Some(raw) = q::get(c, LOGO_KEY)? else {
        return Ok(None);
    };
    let Ok(s) = serde_json::from_str::<StoredLogo>(&raw) else {
        return Ok(None);
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s.data) else {
        return Ok(None);
    };
    Ok(logo_mime(&bytes).map(|mime| Logo {
        mime,
        bytes,
        version: s.version,
    }))
}

pub async fn logo(db: &Db) -> DomainResult<Option<Logo>> {
    Ok(db.read(logo_in).await?)
}

/// The stored logo's version only, for the pages that link to it: they need its URL, not
/// its bytes, so the picture is neither decoded nor copied while a page is rendered.
pub async fn logo_version(db: &Db) -> DomainResult<Option<String>> {
    #[derive(Deserialize)]
    struct Version {
        version: String,
    }
    Ok(db
        .read(|c| q::get(c, LOGO_KEY))
        .await?
        .and_then(|raw| serde_json::from_str::<Version>(&raw).ok())
        .map(|v| v.version))
}

/// Replaces the logo (`None` removes it).
pub async fn set_logo(store: &Store, by: &Actor, bytes: Option<Vec<u8>>) -> DomainResult<()> {
    use base64::Engine;
    use sha2::Digest;
    if !by.can(super::Action::ManageSettings) {
        return Err(DomainError::Forbidden);
    }
    let stored = match bytes {
        None => None,
        Some(b) if b.len() > MAX_LOGO_BYTES => {
            return Err(DomainError::invalid(
                Msg::new("err.shop.logo_too_large").with("kb", MAX_LOGO_BYTES / 1024),
            ))
        }
        Some(b) => {
            let mime = logo_mime(&b).ok_or_else(|| DomainError::invalid("err.shop.logo_kind"))?;
            let version = hex::encode(&sha2::Sha256::digest(&b)[..6]);
            let s = StoredLogo {
                mime: mime.into(),
                version,
                data: base64::engine::general_purpose::STANDARD.encode(&b),
            };
            Some(serde_json::to_string(&s).expect("logo serialises"))
        }
    };
    store
        .write(by, move |tx| {
            match &stored {
                Some(json) => q::set(tx, LOGO_KEY, json, tx.now())?,
                None if q::get(tx, LOGO_KEY)?.is_none() => {
                    return Err(DomainError::invalid("err.shop.no_logo"))
                }
                None => q::delete(tx, LOGO_KEY)?,
            }
            tx.log(
                if stored.is_some() { "update" } else { "delete" },
                "settings",
                None,
                serde_json::json!({"key": LOGO_KEY}),
            );
            tx.emit(crate::events::Event::new(
                "settings.updated",
                serde_json::json!({"key": LOGO_KEY}),
                crate::events::Audience::Everyone,
            ));
            Ok(())
        })
        .await
}
