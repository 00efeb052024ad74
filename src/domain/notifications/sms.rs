//! SMS as a channel (issue 18): the gateway settings (Eskiz or Playmobile), the
//! invitation to the bot that a customer's first SMS carries, delivery reports, and the
//! stop keyword of an SMS reply. Sending is `crate::notify::sms`'s; nothing here does
//! network I/O.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::*;
use crate::db::promos as pq;

/// The SMS gateways the box can send through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmsProvider {
    /// notify.eskiz.uz: e-mail and password give a bearer token; form posts.
    Eskiz,
    /// Playmobile's broker API (send.smsxabar.uz): basic auth, JSON messages.
    Playmobile,
}

impl SmsProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsProvider::Eskiz => "eskiz",
            SmsProvider::Playmobile => "playmobile",
        }
    }
    pub fn parse(s: &str) -> Option<SmsProvider> {
        match s {
            "eskiz" => Some(SmsProvider::Eskiz),
            "playmobile" => Some(SmsProvider::Playmobile),
            _ => None,
        }
    }
}

pub const DEFAULT_ESKIZ_URL: &str = "https://notify.eskiz.uz";
pub const DEFAULT_PLAYMOBILE_URL: &str = "https://send.smsxabar.uz";

/// The SMS settings as stored. Secrets (`password`, `token`, `hook_key`) are shown only
/// masked and never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSettings {
    pub provider: Option<SmsProvider>,
    /// Gateway base URL (a test stand-in or a proxy may replace the public one).
    pub url: String,
    /// Eskiz: the account's e-mail; Playmobile: the login.
    pub login: String,
    /// Secret.
    pub password: String,
    /// Eskiz: the sender ("4546" until a name is bought); Playmobile: the originator.
    pub sender: String,
    /// Eskiz's bearer token, kept between sends (renewed on a 401). Secret.
    pub token: String,
    /// The box's public address for delivery reports and replies
    /// (`https://crm.shop.uz`); empty: no reports are asked for.
    pub public_url: String,
    /// The secret in the report URLs the gateway calls. Secret.
    pub hook_key: String,
    /// Messages a second to the gateway.
    pub per_second: u32,
    /// A customer's first SMS carries the link to the shop's Telegram bot.
    pub invite: bool,
}

impl SmsSettings {
    pub fn configured(&self) -> bool {
        self.provider.is_some() && !self.login.is_empty() && !self.password.is_empty()
    }

    /// Where the gateway posts delivery reports (`None` without a public address).
    pub fn report_url(&self) -> Option<String> {
        let p = self.provider?;
        (!self.public_url.is_empty() && !self.hook_key.is_empty()).then(|| {
            format!(
                "{}/hooks/sms/{}/report?key={}",
                self.public_url.trim_end_matches('/'),
                p.as_str(),
                self.hook_key
            )
        })
    }
}

pub(super) fn load(m: &BTreeMap<String, String>) -> SmsSettings {
    let s = |k: &str| m.get(k).cloned().unwrap_or_default();
    let provider = SmsProvider::parse(&s("sms.provider"));
    let url = match provider {
        Some(SmsProvider::Eskiz) => m
            .get("sms.url")
            .filter(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_ESKIZ_URL.into()),
        Some(SmsProvider::Playmobile) => m
            .get("sms.url")
            .filter(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_PLAYMOBILE_URL.into()),
        None => s("sms.url"),
    };
    SmsSettings {
        provider,
        url,
        login: s("sms.login"),
        password: s("sms.password"),
        sender: m
            .get("sms.sender")
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| match provider {
                Some(SmsProvider::Playmobile) => "3700".into(),
                _ => "4546".into(),
            }),
        token: s("sms.token"),
        public_url: s("sms.public_url"),
        hook_key: s("sms.hook_key"),
        per_second: settings_forms::parse_or(m, "sms.per_second", 5u32).clamp(1, 100),
        invite: m.get("sms.invite").is_none_or(|v| v == "1"),
    }
}

/// Whether SMS can be sent (a gateway with credentials is set up).
pub fn configured(c: &Connection) -> DbResult<bool> {
    Ok(
        SmsProvider::parse(&settings::get(c, "sms.provider")?.unwrap_or_default()).is_some()
            && !settings::get(c, "sms.login")?
                .unwrap_or_default()
                .is_empty()
            && !settings::get(c, "sms.password")?
                .unwrap_or_default()
                .is_empty(),
    )
}

/// The admin's SMS form. Empty secrets keep the stored ones.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct SmsForm {
    /// `eskiz`, `playmobile` or empty (off).
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub login: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub clear_password: Option<String>,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub public_url: String,
    #[serde(default)]
    pub per_second: String,
    #[serde(default)]
    pub invite: Option<String>,
}

fn url_ok(u: &str) -> bool {
    u.is_empty()
        || ((u.starts_with("http://") || u.starts_with("https://"))
            && u.len() <= 300
            && !u.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// Checks the form and the values to store.
pub(super) fn form_values(f: SmsForm) -> DomainResult<Vec<(String, String)>> {
    let provider = f.provider.trim();
    if !provider.is_empty() && SmsProvider::parse(provider).is_none() {
        return Err(DomainError::invalid(
            Msg::new("err.sms.provider").with("value", provider),
        ));
    }
    let url = f.url.trim().trim_end_matches('/').to_string();
    let public_url = f.public_url.trim().trim_end_matches('/').to_string();
    if !url_ok(&url) || !url_ok(&public_url) {
        return Err(DomainError::invalid("err.sms.url"));
    }
    let login = f.login.trim().to_string();
    let sender = f.sender.trim().to_string();
    if login.chars().count() > 200
        || sender.chars().count() > 20
        || sender.chars().any(|c| c.is_control())
    {
        return Err(DomainError::invalid("err.sms.sender"));
    }
    let per_second = match f.per_second.trim() {
        "" => 5,
        v => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| DomainError::invalid(Msg::new("err.sms.per_second").with("max", 100)))?,
    };
    let mut v = vec![
        ("sms.provider".to_string(), provider.to_string()),
        ("sms.url".into(), url),
        ("sms.login".into(), login),
        ("sms.sender".into(), sender),
        ("sms.public_url".into(), public_url),
        ("sms.per_second".into(), per_second.to_string()),
        (
            "sms.invite".into(),
            if f.invite.is_some() { "1" } else { "0" }.into(),
        ),
        // New credentials: a new token is fetched at the next send.
        ("sms.token".into(), String::new()),
    ];
    if f.clear_password.is_some() {
        v.push(("sms.password".into(), String::new()));
    } else if !f.password.is_empty() {
        if f.password.len() > 500 {
            return Err(DomainError::invalid("err.sms.sender"));
        }
        v.push(("sms.password".into(), f.password));
    }
    Ok(v)
}

/// The body of an SMS, with the invitation to the bot when this is the first SMS to the
/// number, the admin wants it and the bot is set up. A customer with an order gets a
/// one-time link that also links their chat to it (`customer_links`); anyone else the
/// bot's plain link.
pub fn with_invitation(
    c: &Connection,
    r: &Recipient,
    phone: &str,
    language: Language,
    body: String,
) -> DbResult<String> {
    if settings::get(c, "sms.invite")?.is_some_and(|v| v != "1") || pq::sms_sent_before(c, phone)? {
        return Ok(body);
    }
    let bot = settings::get(c, "telegram.bot_username")?.unwrap_or_default();
    if bot.is_empty() {
        return Ok(body);
    }
    let link = match r {
        Recipient::Customer { customer_id, .. } => {
            match pq::latest_order_number(c, *customer_id)? {
                Some(number) => {
                    crate::domain::customer_links::issue_in(c, &number, now_ms() / 1000)?
                        .map(|l| l.url)
                }
                None => None,
            }
        }
        _ => None,
    }
    .unwrap_or_else(|| format!("https://t.me/{bot}"));
    Ok(format!(
        "{body}\n{}",
        Tr::new(language).f("promos.sms.invite", &[("link", &link)])
    ))
}

/// One delivery report from a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub provider_id: String,
    /// `delivered`, `undelivered`, `expired`, `rejected`, or `sent` (an interim state).
    pub delivery: String,
    pub parts: Option<i64>,
    pub cost: Option<i64>,
}

/// A gateway's status word in ours.
pub fn delivery_word(status: &str) -> &'static str {
    match status.trim().to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" | "DELIVERY_SUCCESS" | "2" => "delivered",
        "UNDELIV" | "UNDELIVERED" | "UNDELIVERABLE" | "FAILED" | "DELIVERY_FAIL" | "5" => {
            "undelivered"
        }
        "EXPIRED" | "3" => "expired",
        "REJECTD" | "REJECTED" | "8" => "rejected",
        _ => "sent",
    }
}

fn field(m: &serde_json::Map<String, serde_json::Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match m.get(*n)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn number(m: &serde_json::Map<String, serde_json::Value>, names: &[&str]) -> Option<i64> {
    field(m, names).and_then(|v| {
        v.parse::<i64>()
            .ok()
            .or_else(|| v.parse::<f64>().ok().map(|f| f.round() as i64))
    })
}

/// Reads a delivery report: Eskiz posts one message's fields (`request_id` — the id its
/// send answered —, `message_id`, `status` `DELIVRD`/`UNDELIV`/…, `sms_count`, and a
/// `price` where the account reports one), as a form or JSON; Playmobile posts
/// `{"messages": [{"message-id", "status", …}]}` (or one such object). Anything without
/// an id and a status is not a report.
pub fn parse_reports(provider: SmsProvider, body: &serde_json::Value) -> Vec<Report> {
    let one = |m: &serde_json::Map<String, serde_json::Value>| -> Option<Report> {
        let id = match provider {
            SmsProvider::Eskiz => field(m, &["request_id", "id", "message_id"]),
            SmsProvider::Playmobile => field(m, &["message-id", "message_id", "id"]),
        }?;
        let status = field(m, &["status", "message-state", "state"])?;
        if id.len() > 100 {
            return None;
        }
        Some(Report {
            provider_id: id,
            delivery: delivery_word(&status).to_string(),
            parts: number(m, &["sms_count", "parts", "sms-count"])
                .filter(|p| (0..1000).contains(p)),
            cost: number(m, &["price", "cost"]).filter(|p| (0..100_000_000).contains(p)),
        })
    };
    match body {
        serde_json::Value::Object(m) => match m.get("messages") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_object().and_then(one))
                .take(1000)
                .collect(),
            _ => one(m).into_iter().collect(),
        },
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_object().and_then(one))
            .take(1000)
            .collect(),
        _ => Vec::new(),
    }
}

/// A reply by SMS: who wrote (any written form of the number) and what.
pub fn parse_reply(body: &serde_json::Value) -> Option<(String, String)> {
    let m = body.as_object()?;
    let from = field(
        m,
        &[
            "from",
            "phone",
            "msisdn",
            "sender",
            "originator",
            "phone_number",
        ],
    )?;
    let text = field(m, &["text", "message", "content", "body"]).or_else(|| {
        m.get("sms")
            .and_then(|s| s.get("content"))
            .and_then(|c| c.get("text"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
    })?;
    Some((from, text))
}

/// Whether a reply asks to stop: STOP, СТОП or TO'XTATISH (and its Cyrillic spelling),
/// in any case, with the punctuation and apostrophes people type around it.
pub fn is_stop_word(text: &str) -> bool {
    let w: String = text
        .trim()
        .chars()
        // Apostrophes of O'zbek (', ʻ, ʼ, ‘, ’) are letters to Unicode.
        .filter(|c| c.is_alphanumeric() && !matches!(c, 'ʻ' | 'ʼ' | 'ʹ'))
        .flat_map(char::to_uppercase)
        .collect();
    matches!(
        w.as_str(),
        "STOP" | "СТОП" | "TOXTATISH" | "ТЎХТАТИШ" | "ТОХТАТИШ" | "STOPP" | "ОТПИСАТЬСЯ"
    )
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
        && !b.is_empty()
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The box's secret for signed links and report URLs, made on first use.
pub fn box_secret(c: &Connection, now: i64) -> DbResult<String> {
    if let Some(k) = settings::get(c, "sms.hook_key")?.filter(|k| !k.is_empty()) {
        return Ok(k);
    }
    let k = crate::domain::accounts::random_token(24);
    settings::set(c, "sms.hook_key", &k, now)?;
    Ok(k)
}

/// The signature of a customer's unsubscribe link.
pub fn unsubscribe_sig(secret: &str, customer_id: i64) -> String {
    hex::encode(
        &hmac(
            secret.as_bytes(),
            format!("unsubscribe:{customer_id}").as_bytes(),
        )[..16],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_in_three_scripts() {
        for w in [
            "STOP",
            "stop",
            " Stop! ",
            "СТОП",
            "стоп",
            "TO'XTATISH",
            "toʻxtatish",
            "ТЎХТАТИШ",
        ] {
            assert!(is_stop_word(w), "{w}");
        }
        for w in ["", "STOP please", "hello", "СТОПКА"] {
            assert!(!is_stop_word(w), "{w}");
        }
    }

    #[test]
    fn reports_of_both_gateways() {
        let eskiz = serde_json::json!({"request_id": "abc-1", "message_id": "9", "status": "DELIVRD", "sms_count": "2", "price": 100});
        assert_eq!(
            parse_reports(SmsProvider::Eskiz, &eskiz),
            vec![Report {
                provider_id: "abc-1".into(),
                delivery: "delivered".into(),
                parts: Some(2),
                cost: Some(100)
            }]
        );
        let pm = serde_json::json!({"messages": [{"message-id": "crm7", "status": "UNDELIV"}, {"junk": 1}]});
        let r = parse_reports(SmsProvider::Playmobile, &pm);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].delivery, "undelivered");
        assert!(parse_reports(SmsProvider::Eskiz, &serde_json::json!("x")).is_empty());
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(same_secret("a", "a"));
        assert!(!same_secret("a", "b"));
        assert!(!same_secret("", ""));
    }
}

/// What a delivery-report call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// The key was wrong (or no key is set): nothing was done.
    Refused,
    /// This many messages were updated.
    Done(usize),
}

impl Notifications {
    pub async fn save_sms(&self, by: &Actor, f: SmsForm) -> DomainResult<()> {
        let mut v = form_values(f)?;
        // The report URLs' secret exists once a gateway is set up.
        let key = self
            .db()
            .read(|c| settings::get(c, "sms.hook_key"))
            .await?
            .unwrap_or_default();
        if key.is_empty() {
            v.push((
                "sms.hook_key".into(),
                crate::domain::accounts::random_token(24),
            ));
        }
        self.put(by, v, "settings_sms").await
    }

    /// Delivery reports a gateway posted: each updates its outbox row (delivery, parts,
    /// cost). Refused without the right key; unknown ids are ignored.
    pub async fn sms_reports(
        &self,
        provider: SmsProvider,
        key: &str,
        reports: Vec<Report>,
    ) -> DomainResult<HookOutcome> {
        let stored = self
            .db()
            .read(|c| settings::get(c, "sms.hook_key"))
            .await?
            .unwrap_or_default();
        if !same_secret(key, &stored) {
            return Ok(HookOutcome::Refused);
        }
        if reports.is_empty() {
            return Ok(HookOutcome::Done(0));
        }
        let now = crate::db::now();
        let p = provider.as_str();
        // The outbox worker's bookkeeping, like its own outcomes: no activity row per
        // message; the admins' screens hear of it.
        let (n, broadcasts) = self
            .db()
            .write(move |c| {
                let mut n = 0;
                let mut bs = Vec::new();
                for r in &reports {
                    if let Some((_, b)) =
                        pq::sms_report(c, p, &r.provider_id, &r.delivery, r.parts, r.cost, now)?
                    {
                        n += 1;
                        bs.extend(b);
                    }
                }
                Ok((n, bs))
            })
            .await?;
        if n > 0 {
            let mut broadcasts = broadcasts;
            broadcasts.sort_unstable();
            broadcasts.dedup();
            self.store.events().publish(crate::events::Event::new(
                "outbox.updated",
                serde_json::json!({"delivery_reports": n, "broadcasts": broadcasts}),
                crate::events::Audience::Admins,
            ));
        }
        Ok(HookOutcome::Done(n))
    }

    /// A reply by SMS the gateway forwarded. A stop word takes every customer with that
    /// number off marketing (logged as their change); anything else is ignored. Returns
    /// how many customers were taken off.
    pub async fn sms_reply(
        &self,
        key: &str,
        from: &str,
        text: &str,
    ) -> DomainResult<Option<usize>> {
        let stored = self
            .db()
            .read(|c| settings::get(c, "sms.hook_key"))
            .await?
            .unwrap_or_default();
        if !same_secret(key, &stored) {
            return Ok(None);
        }
        if !is_stop_word(text) {
            return Ok(Some(0));
        }
        let Ok(phone) =
            crate::model::phone::PhoneNumber::parse(from, crate::model::phone::UZBEKISTAN)
        else {
            return Ok(Some(0));
        };
        let phone = phone.as_str().to_string();
        let n = self
            .store
            .write(crate::domain::work::Who::System, move |tx| {
                let mut n = 0;
                for id in pq::customers_with_phone(tx, &phone)? {
                    if pq::stop_marketing(tx, id, "sms", tx.now())? {
                        n += 1;
                    }
                    tx.log(
                        "unsubscribe",
                        "customer",
                        id,
                        serde_json::json!({"via": "sms"}),
                    );
                    let e = crate::domain::customers::updated_event(tx, id)?;
                    tx.emit(e);
                }
                Ok(n)
            })
            .await?;
        Ok(Some(n))
    }

    /// The e-mail link's unsubscribe: refused (false) when the signature is wrong.
    pub async fn unsubscribe(&self, customer_id: i64, sig: &str) -> DomainResult<bool> {
        let secret = self
            .db()
            .read(|c| settings::get(c, "sms.hook_key"))
            .await?
            .unwrap_or_default();
        if secret.is_empty() || !same_secret(sig, &unsubscribe_sig(&secret, customer_id)) {
            return Ok(false);
        }
        self.store
            .write(crate::domain::work::Who::System, move |tx| {
                if !pq::customer_exists(tx, customer_id)? {
                    return Err(DomainError::NotFound);
                }
                pq::stop_marketing(tx, customer_id, "email", tx.now())?;
                tx.log(
                    "unsubscribe",
                    "customer",
                    customer_id,
                    serde_json::json!({"via": "email"}),
                );
                let e = crate::domain::customers::updated_event(tx, customer_id)?;
                tx.emit(e);
                Ok(())
            })
            .await?;
        Ok(true)
    }
}
