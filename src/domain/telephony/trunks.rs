//! Trunks (provider accounts), inbound routes by DID, business hours, dial rules and the
//! outbound policy of extensions, as the admin edits them; turned into a `sip::trunk::Plan`
//! and pushed to the SIP server after every change. Click-to-call.

use super::*;

pub use crate::db::sip::{DidRow, TrunkRow};
use crate::sip::trunk::{self as tk, BusinessHours, DialRules, OutboundPolicy, Plan};

/// A trunk as entered in the admin form or the API.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrunk {
    pub name: String,
    pub host: String,
    #[serde(default = "default_sip_port")]
    pub port: u32,
    /// "UDP" or "TCP".
    #[serde(default = "default_transport")]
    pub transport: String,
    pub username: String,
    /// Empty when editing: keep the stored secret.
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub auth_username: String,
    #[serde(default)]
    pub from_domain: String,
    #[serde(default = "default_true")]
    pub register: bool,
    #[serde(default = "default_trunk_expires")]
    pub expires: u32,
    #[serde(default)]
    pub caller_id: String,
    /// Further provider addresses, comma-separated IPs.
    #[serde(default)]
    pub allow: String,
    #[serde(default)]
    pub dids: Vec<DidRow>,
}

fn default_sip_port() -> u32 {
    5060
}
fn default_transport() -> String {
    "UDP".into()
}
fn default_true() -> bool {
    true
}
fn default_trunk_expires() -> u32 {
    600
}

fn is_host(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_sip_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// Checks a trunk form; every problem is named.
pub fn validate_trunk(t: &NewTrunk, creating: bool) -> DomainResult<TrunkRow> {
    let name = t.name.trim();
    if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
        return Err(DomainError::invalid("err.trunk.name"));
    }
    let host = t.host.trim();
    if !is_host(host) {
        return Err(DomainError::invalid("err.trunk.host"));
    }
    if !(1..=65535).contains(&t.port) {
        return Err(DomainError::invalid("err.trunk.port"));
    }
    let transport = t.transport.trim().to_ascii_uppercase();
    if transport != "UDP" && transport != "TCP" {
        return Err(DomainError::invalid("err.trunk.transport"));
    }
    if !is_sip_user(t.username.trim()) {
        return Err(DomainError::invalid("err.trunk.username"));
    }
    let auth_username = t.auth_username.trim();
    if !auth_username.is_empty() && !is_sip_user(auth_username) {
        return Err(DomainError::invalid("err.trunk.auth_username"));
    }
    if t.secret.is_empty() && creating {
        return Err(DomainError::invalid("err.trunk.secret_required"));
    }
    if t.secret.len() > 128
        || !t
            .secret
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(DomainError::invalid("err.trunk.secret_chars"));
    }
    let from_domain = t.from_domain.trim();
    if !from_domain.is_empty() && !is_host(from_domain) {
        return Err(DomainError::invalid("err.trunk.from_domain"));
    }
    if !(60..=86_400).contains(&t.expires) {
        return Err(DomainError::invalid("err.trunk.expiry"));
    }
    let caller_id = t.caller_id.trim();
    if !caller_id.is_empty() && tk::normalise_dialled(caller_id).is_none() {
        return Err(DomainError::invalid("err.trunk.caller_id"));
    }
    let mut allow = Vec::new();
    for a in t
        .allow
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let ip: std::net::IpAddr = a
            .parse()
            .map_err(|_| DomainError::invalid(Msg::new("err.trunk.allow").with("value", a)))?;
        allow.push(ip.to_string());
    }
    let mut dids: Vec<DidRow> = Vec::new();
    for d in &t.dids {
        let did = d.did.trim();
        if tk::normalise_dialled(did).as_deref() != Some(did) {
            return Err(DomainError::invalid(
                Msg::new("err.trunk.did").with("did", did),
            ));
        }
        if dids.iter().any(|x| x.did == did) {
            return Err(DomainError::invalid(
                Msg::new("err.trunk.did_twice").with("did", did),
            ));
        }
        validate_number(d.destination.trim()).map_err(|_| {
            DomainError::invalid(Msg::new("err.trunk.did_destination").with("did", did))
        })?;
        let after = d
            .after_hours
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        if let Some(a) = after {
            validate_number(a).map_err(|_| {
                DomainError::invalid(Msg::new("err.trunk.did_after_hours").with("did", did))
            })?;
        }
        dids.push(DidRow {
            did: did.to_string(),
            destination: d.destination.trim().to_string(),
            after_hours: after.map(str::to_string),
            branch_id: d.branch_id,
        });
    }
    Ok(TrunkRow {
        id: 0,
        name: name.to_string(),
        host: host.to_string(),
        port: t.port as u16,
        transport,
        username: t.username.trim().to_string(),
        secret: t.secret.clone(),
        auth_username: auth_username.to_string(),
        from_domain: from_domain.to_string(),
        register: t.register,
        expires: t.expires,
        caller_id: caller_id.to_string(),
        allow: allow.join(", "),
        dids,
    })
}

/// Parses DID lines `DID DESTINATION [AFTER_HOURS] [@BRANCH]` (the admin form's text
/// area; `@2`: the number belongs to branch 2).
pub fn parse_did_lines(text: &str) -> DomainResult<Vec<DidRow>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts: Vec<&str> = line.split_whitespace().collect();
        let bad = || DomainError::invalid(Msg::new("err.trunk.did_line").with("line", i + 1));
        let branch_id = match parts.last().and_then(|p| p.strip_prefix('@')) {
            Some(b) => {
                let id = b.parse::<i64>().ok().filter(|b| *b > 0).ok_or_else(bad)?;
                parts.pop();
                Some(id)
            }
            None => None,
        };
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        out.push(DidRow {
            did: parts[0].into(),
            destination: parts[1].into(),
            after_hours: parts.get(2).map(|s| s.to_string()),
            branch_id,
        });
    }
    Ok(out)
}

/// Business hours and dial rules, as stored in settings (`sip.hours`, `sip.holidays`,
/// `sip.dial_min_digits`, `sip.dial_prefixes`, `sip.trunk_retry_secs`). The hours are
/// read in the shop's time zone (the shop clock).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRules {
    /// e.g. "mon-fri 09:00-18:00; sat 10:00-14:00"; empty: always open.
    #[serde(default)]
    pub hours: String,
    /// e.g. "2026-01-01, 2026-03-21".
    #[serde(default)]
    pub holidays: String,
    /// Numbers with at least this many digits go out through the trunk (0: never).
    #[serde(default = "default_min_digits")]
    pub dial_min_digits: u32,
    /// Comma-separated prefixes that always go out.
    #[serde(default)]
    pub dial_prefixes: String,
    /// First retry after a failed trunk registration, doubling up to 10 minutes.
    #[serde(default = "default_retry")]
    pub trunk_retry_secs: u32,
}

fn default_min_digits() -> u32 {
    7
}
fn default_retry() -> u32 {
    30
}

impl Default for CallRules {
    fn default() -> CallRules {
        CallRules {
            hours: String::new(),
            holidays: String::new(),
            dial_min_digits: default_min_digits(),
            dial_prefixes: String::new(),
            trunk_retry_secs: default_retry(),
        }
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

/// Parses the weekly schedule: entries `DAYS HH:MM-HH:MM[, HH:MM-HH:MM]` separated by
/// ';' or new lines; DAYS is `mon`, `mon-fri` or `sat,sun`.
pub fn parse_week(text: &str) -> DomainResult<[Vec<(u16, u16)>; 7]> {
    let mut week: [Vec<(u16, u16)>; 7] = Default::default();
    for entry in text
        .split([';', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let bad = || DomainError::invalid(Msg::new("err.rules.hours").with("value", entry));
        let (days, times) = entry.split_once(char::is_whitespace).ok_or_else(bad)?;
        let day = |d: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d.trim()));
        let mut which = Vec::new();
        for part in days.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                    if a > b {
                        return Err(bad());
                    }
                    which.extend(a..=b);
                }
                None => which.push(day(part).ok_or_else(bad)?),
            }
        }
        for span in times.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (a, b) = span.split_once('-').ok_or_else(bad)?;
            let (a, b) = (
                hhmm(a.trim()).ok_or_else(bad)?,
                hhmm(b.trim()).ok_or_else(bad)?,
            );
            if a >= b {
                return Err(bad());
            }
            for d in &which {
                week[*d].push((a, b));
            }
        }
    }
    Ok(week)
}

pub fn parse_holidays(text: &str) -> DomainResult<Vec<(i32, u8, u8)>> {
    let mut out = Vec::new();
    for d in text
        .split([',', ' ', '\n', ';'])
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let bad = || DomainError::invalid(Msg::new("err.rules.holiday").with("value", d));
        let mut it = d.split('-');
        let (y, m, dd) = (it.next(), it.next(), it.next());
        if it.next().is_some() {
            return Err(bad());
        }
        let y: i32 = y.and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let m: u8 = m.and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let dd: u8 = dd.and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        if !(2000..=2200).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&dd) {
            return Err(bad());
        }
        out.push((y, m, dd));
    }
    Ok(out)
}

impl CallRules {
    /// The opening hours for the SIP side, which has no zone database: the shop clock's
    /// offsets are precomputed for ten years from a day before `now`.
    pub fn business_hours(
        &self,
        clock: &crate::domain::clock::ShopClock,
        now: i64,
    ) -> DomainResult<Option<BusinessHours>> {
        let week = parse_week(&self.hours)?;
        let holidays = parse_holidays(&self.holidays)?;
        if self.hours.trim().is_empty() && holidays.is_empty() {
            return Ok(None);
        }
        let offsets = clock.offset_table(now - 86_400, now + 10 * 366 * 86_400);
        if self.hours.trim().is_empty() {
            // Holidays only: open all day otherwise.
            let mut all: [Vec<(u16, u16)>; 7] = Default::default();
            for d in &mut all {
                d.push((0, 1440));
            }
            return Ok(Some(BusinessHours {
                offsets,
                week: all,
                holidays,
            }));
        }
        Ok(Some(BusinessHours {
            offsets,
            week,
            holidays,
        }))
    }

    pub fn validate(&self) -> DomainResult<()> {
        parse_week(&self.hours)?;
        parse_holidays(&self.holidays)?;
        if self.dial_min_digits > 20 {
            return Err(DomainError::invalid("err.rules.dial_digits"));
        }
        for p in split_list(&self.dial_prefixes) {
            if tk::normalise_dialled(&p).as_deref() != Some(p.as_str()) {
                return Err(DomainError::invalid(
                    Msg::new("err.rules.prefix").with("value", &p),
                ));
            }
        }
        if !(1..=3600).contains(&self.trunk_retry_secs) {
            return Err(DomainError::invalid("err.rules.retry"));
        }
        Ok(())
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', ' ', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// The outbound policy of an extension as entered.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    pub outbound_allowed: bool,
    /// Comma-separated prefixes ("+7, +998"); empty: national numbers only.
    #[serde(default)]
    pub outbound_prefixes: String,
    #[serde(default = "default_per_hour")]
    pub max_calls_per_hour: u32,
    #[serde(default)]
    pub auto_answer: bool,
}

fn default_per_hour() -> u32 {
    20
}

const RULE_KEYS: [&str; 5] = [
    "sip.hours",
    "sip.holidays",
    "sip.dial_min_digits",
    "sip.dial_prefixes",
    "sip.trunk_retry_secs",
];

impl Telephony {
    /// Remembers the running SIP server and gives it the current plan.
    pub async fn attach(&self, sip: sip::SipControl) -> DomainResult<()> {
        *self.sip.write().unwrap_or_else(|e| e.into_inner()) = Some(sip);
        self.push_plan().await
    }

    pub(super) fn sip(&self) -> Option<sip::SipControl> {
        self.sip.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rebuilds the plan (resolving trunk hosts, outside any transaction) and hands it
    /// to the SIP server.
    pub async fn push_plan(&self) -> DomainResult<()> {
        let _turn = self.refresh.lock().await;
        self.apply_plan().await
    }

    /// [`Telephony::push_plan`] for a caller already holding the refresh turn.
    pub(super) async fn apply_plan(&self) -> DomainResult<()> {
        let Some(sip) = self.sip() else {
            return Ok(());
        };
        let plan = self.plan().await?;
        sip.set_plan(plan);
        Ok(())
    }

    pub async fn plan(&self) -> DomainResult<Plan> {
        let since_ms = (now() - 3600) * 1000;
        let (trunks, exts, rules, recent_outbound, branches) = self
            .db
            .read(move |c| {
                Ok((
                    q::list_trunks(c)?,
                    q::list_extensions(c)?,
                    q::settings_values(c, &RULE_KEYS)?,
                    crate::db::calls::recent_outbound(c, since_ms)?,
                    crate::db::branches::list(c, false)?,
                ))
            })
            .await?;
        let rules = rules_from(rules);
        let clock = self.clock.get();
        // Branches with business hours of their own (the shop's rules otherwise).
        let mut branch_hours = HashMap::new();
        for b in branches {
            let own = CallRules {
                hours: b.sip_hours,
                holidays: b.sip_holidays,
                ..Default::default()
            };
            if let Ok(Some(h)) = own.business_hours(&clock, clock.now()) {
                branch_hours.insert(b.id, h);
            }
        }
        let mut plan = Plan {
            hours: rules.business_hours(&clock, clock.now()).unwrap_or(None),
            branch_hours,
            dial: DialRules {
                min_digits: rules.dial_min_digits as usize,
                prefixes: split_list(&rules.dial_prefixes),
            },
            retry_base_secs: rules.trunk_retry_secs as u64,
            retry_max_secs: 600,
            recent_outbound,
            ..Default::default()
        };
        for e in exts.iter().filter(|e| e.enabled) {
            plan.policies.insert(
                e.number.clone(),
                OutboundPolicy {
                    allowed: e.outbound_allowed,
                    prefixes: split_list(&e.outbound_prefixes),
                    max_per_hour: e.max_calls_per_hour,
                    auto_answer: e.auto_answer,
                },
            );
        }
        for t in trunks {
            let resolved: Vec<SocketAddr> =
                match tokio::net::lookup_host((t.host.as_str(), t.port)).await {
                    Ok(it) => it.collect(),
                    Err(e) => {
                        tracing::warn!(trunk = %t.name, "SIP trunk: cannot resolve host: {e}");
                        Vec::new()
                    }
                };
            for d in &t.dids {
                plan.routes.push(tk::InboundRoute {
                    trunk_id: t.id,
                    did: d.did.clone(),
                    destination: d.destination.clone(),
                    after_hours: d.after_hours.clone(),
                    branch: d.branch_id,
                });
            }
            plan.trunks.push(tk::Trunk {
                id: t.id,
                name: t.name,
                host: t.host,
                port: t.port,
                transport: if t.transport == "TCP" {
                    Transport::Tcp
                } else {
                    Transport::Udp
                },
                username: t.username,
                secret: t.secret,
                auth_username: t.auth_username,
                from_domain: t.from_domain,
                register: t.register,
                expires: t.expires,
                caller_id: t.caller_id,
                resolved,
                allow: t
                    .allow
                    .split(',')
                    .filter_map(|a| a.trim().parse().ok())
                    .collect(),
            });
        }
        Ok(plan)
    }

    pub async fn list_trunks(&self) -> DomainResult<Vec<TrunkRow>> {
        Ok(self.db.read(q::list_trunks).await?)
    }

    /// Registration state of each trunk (empty when SIP is off).
    pub fn trunk_status(&self) -> Vec<tk::TrunkStatus> {
        self.sip().map(|s| s.trunk_status()).unwrap_or_default()
    }

    /// Creates or replaces a trunk by name.
    pub async fn save_trunk(&self, by: Option<&Actor>, t: NewTrunk) -> DomainResult<()> {
        let name = t.name.trim().to_string();
        let exists = {
            let n = name.clone();
            self.db.read(move |c| q::trunk_has_secret(c, &n)).await?
        };
        let row = validate_trunk(&t, !exists)?;
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                for d in &row.dids {
                    if let Some(b) = d.branch_id {
                        if crate::db::branches::get(c, b)?.is_none() {
                            return Err(DomainError::invalid(
                                Msg::new("err.trunk.did_branch")
                                    .with("did", &d.did)
                                    .with("id", b),
                            ));
                        }
                    }
                    for n in std::iter::once(&d.destination).chain(d.after_hours.as_ref()) {
                        if !q::number_taken(c, n)? {
                            return Err(DomainError::invalid(
                                Msg::new("err.trunk.did_unknown_destination")
                                    .with("did", &d.did)
                                    .with("number", n),
                            ));
                        }
                    }
                }
                let id = q::save_trunk(c, &row, now())?;
                tx.log(
                    "save",
                    "sip_trunk",
                    id,
                    serde_json::json!({ "name": row.name, "host": row.host }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.push_plan().await
    }

    pub async fn remove_trunk(&self, by: Option<&Actor>, id: i64) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                if q::delete_trunk(c, id)? == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log("delete", "sip_trunk", id, serde_json::json!({}));
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.push_plan().await
    }

    pub async fn call_rules(&self) -> DomainResult<CallRules> {
        let v = self.db.read(|c| q::settings_values(c, &RULE_KEYS)).await?;
        Ok(rules_from(v))
    }

    pub async fn save_call_rules(&self, by: Option<&Actor>, r: CallRules) -> DomainResult<()> {
        r.validate()?;
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                let t = now();
                let values = [
                    r.hours.trim().to_string(),
                    r.holidays.trim().to_string(),
                    r.dial_min_digits.to_string(),
                    r.dial_prefixes.trim().to_string(),
                    r.trunk_retry_secs.to_string(),
                ];
                for (k, v) in RULE_KEYS.iter().zip(values.iter()) {
                    crate::db::settings::set(c, k, v, t)?;
                }
                tx.log("update", "sip_call_rules", None, serde_json::json!({}));
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.push_plan().await
    }

    pub async fn set_outbound(
        &self,
        by: Option<&Actor>,
        number: &str,
        s: OutboundSettings,
    ) -> DomainResult<()> {
        let prefixes = split_list(&s.outbound_prefixes);
        for p in &prefixes {
            if tk::normalise_dialled(p).as_deref() != Some(p.as_str()) {
                return Err(DomainError::invalid(
                    Msg::new("err.rules.prefix").with("value", p),
                ));
            }
        }
        if s.max_calls_per_hour > 10_000 {
            return Err(DomainError::invalid("err.ext.calls_per_hour"));
        }
        let n = number.to_string();
        let joined = prefixes.join(", ");
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                let t = now();
                let changed = q::set_extension_outbound(
                    c,
                    &n,
                    s.outbound_allowed,
                    &joined,
                    s.max_calls_per_hour,
                    s.auto_answer,
                    t,
                )?;
                if changed == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log(
                    "update",
                    "sip_extension_outbound",
                    None,
                    serde_json::json!({ "number": n, "allowed": s.outbound_allowed }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.push_plan().await
    }

    /// Click-to-call for `actor`: their linked extension rings first, then `number`.
    /// The softphone the page offers user `id`: (their extension, the SIP domain), when
    /// SIP runs and an enabled extension is linked to them. From memory (every page).
    pub fn softphone_of(&self, id: i64) -> Option<(String, String)> {
        let sip = self.sip()?;
        let ext = self.directory.extension_of(id)?;
        Some((ext, sip.domain()))
    }

    /// The browser softphone's extension: the enabled one linked to the signed-in user,
    /// and the running SIP server it registers with.
    pub async fn softphone(&self, actor: &Actor) -> DomainResult<(String, sip::SipControl)> {
        let uid = actor.user_id;
        let exts = self.db.read(q::list_extensions).await?;
        let ext = exts
            .into_iter()
            .find(|e| e.enabled && e.user_id == Some(uid))
            .ok_or_else(|| DomainError::invalid("softphone.no_extension"))?;
        let sip = self
            .sip()
            .ok_or_else(|| DomainError::invalid("err.call.sip_off"))?;
        Ok((ext.number, sip))
    }

    pub async fn click_to_call(&self, actor: &Actor, number: &str) -> DomainResult<String> {
        let number = tk::normalise_dialled(number)
            .ok_or_else(|| DomainError::invalid("err.call.not_a_number"))?;
        let uid = actor.user_id;
        let exts = self.db.read(q::list_extensions).await?;
        let ext = exts
            .iter()
            .find(|e| e.enabled && e.user_id == Some(uid))
            .ok_or_else(|| DomainError::invalid("err.call.no_desk_phone"))?;
        let sip = self
            .sip()
            .ok_or_else(|| DomainError::invalid("err.call.sip_off"))?;
        sip.click_to_call(&ext.number, &number)
            .await
            .map_err(|why| DomainError::invalid(Msg::new("err.call.dial_failed").with("why", why)))
    }
}

/// Call rules from their stored settings values (in `RULE_KEYS` order).
fn rules_from(v: Vec<Option<String>>) -> CallRules {
    let d = CallRules::default();
    let mut it = v.into_iter();
    let mut next = || it.next().flatten();
    CallRules {
        hours: next().unwrap_or(d.hours),
        holidays: next().unwrap_or(d.holidays),
        dial_min_digits: next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d.dial_min_digits),
        dial_prefixes: next().unwrap_or(d.dial_prefixes),
        trunk_retry_secs: next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d.trunk_retry_secs),
    }
}

#[cfg(test)]
mod trunk_tests {
    use super::*;

    #[test]
    fn schedules_offsets_and_holidays_parse_or_say_why() {
        let w = parse_week("mon-fri 09:00-13:00, 14:00-18:00; sat 10:00-14:00").unwrap();
        assert_eq!(w[0], vec![(540, 780), (840, 1080)]);
        assert_eq!(w[5], vec![(600, 840)]);
        assert!(w[6].is_empty());
        assert!(parse_week("fri-mon 09:00-18:00").is_err());
        assert!(parse_week("mon 18:00-09:00").is_err());
        assert!(parse_week("mon 25:00-26:00").is_err());
        assert!(parse_week("someday 09:00-10:00").is_err());
        assert_eq!(
            parse_holidays("2026-01-01, 2026-03-21").unwrap(),
            vec![(2026, 1, 1), (2026, 3, 21)]
        );
        assert!(parse_holidays("2026-13-01").is_err());
        assert!(parse_holidays("tomorrow").is_err());
    }

    #[test]
    fn malformed_trunks_are_refused_with_the_field_named() {
        let ok = NewTrunk {
            name: "Uztelecom".into(),
            host: "sip.example.uz".into(),
            port: 5060,
            transport: "udp".into(),
            username: "712000000".into(),
            secret: "s3cret".into(),
            register: true,
            expires: 600,
            caller_id: "+998712000000".into(),
            dids: vec![DidRow {
                did: "712000000".into(),
                destination: "100".into(),
                after_hours: Some("".into()),
                branch_id: None,
            }],
            ..Default::default()
        };
        let row = validate_trunk(&ok, true).unwrap();
        assert_eq!(row.transport, "UDP");
        assert_eq!(row.dids[0].after_hours, None);
        let bad = |f: &dyn Fn(&mut NewTrunk), want: &str| {
            let mut t = ok.clone();
            f(&mut t);
            match validate_trunk(&t, true) {
                Err(DomainError::Invalid(m)) => {
                    let m = m.to_string();
                    assert!(m.contains(want), "{m} / {want}")
                }
                other => panic!("{want}: {other:?}"),
            }
        };
        bad(&|t| t.host = "bad host".into(), "host");
        bad(&|t| t.port = 0, "port");
        bad(&|t| t.port = 70000, "port");
        bad(&|t| t.transport = "TLS".into(), "transport");
        bad(&|t| t.username = "a b".into(), "username");
        bad(&|t| t.secret = String::new(), "secret");
        bad(&|t| t.secret = "with\"quote".into(), "secret");
        bad(&|t| t.expires = 10, "expiry");
        bad(&|t| t.caller_id = "abc".into(), "caller ID");
        bad(&|t| t.allow = "10.0.0.1, nope".into(), "allowed address");
        bad(&|t| t.dids[0].did = "71-2".into(), "DID");
        bad(&|t| t.dids[0].destination = "x".into(), "destination");
        bad(&|t| t.name = String::new(), "name");
        assert!(
            parse_did_lines("712000000 100 199\n# c\n\n712000001 101")
                .unwrap()
                .len()
                == 2
        );
        assert!(parse_did_lines("712000000").is_err());
        let d = parse_did_lines("712000000 100 199 @2\n712000001 101 @3").unwrap();
        assert_eq!(
            (d[0].branch_id, d[0].after_hours.as_deref()),
            (Some(2), Some("199"))
        );
        assert_eq!(
            (d[1].branch_id, d[1].after_hours.as_deref()),
            (Some(3), None)
        );
        assert!(parse_did_lines("712000000 100 @x").is_err());
        assert!(parse_did_lines("712000000 @2").is_err());
    }
}
