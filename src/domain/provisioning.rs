//! Desk-phone provisioning (issue 15): the admin enters a phone's MAC address and model
//! and picks its extension; the phone fetches its configuration file from the box's web
//! port at boot (`/provision/<file>`, the URL set in the phone or in DHCP option 66),
//! with the server address, account, secret, time zone and language filled in. Only
//! requests from the trusted LAN ranges (`sip_trusted_networks`) are answered, each with
//! the phone's own HTTP credentials (user: the MAC, password: generated per phone), and
//! every fetch — served or refused — goes to the activity log.
//!
//! The file formats follow each vendor's provisioning guide (Yealink `.cfg`, Grandstream
//! `cfg<mac>.xml` P-values, Fanvil `<<VOIP CONFIG FILE>>`, Snom `settings` XML); they
//! were not tried on hardware here (see docs/PHONES.md).

use std::net::IpAddr;

use super::work::{Store, Who};
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::provisioning::{self as q, PhoneConfig, PhoneRow};
use crate::db::Db;
use crate::events::{Audience, Event};

/// The models the box writes files for.
pub const MODELS: [&str; 4] = ["yealink", "grandstream", "fanvil", "snom"];

/// A MAC address as stored: 12 lower-case hex digits. Accepts `00:15:65:AA:BB:CC`,
/// `00-15-65-aa-bb-cc`, `001565aabbcc`.
pub fn normalise_mac(v: &str) -> DomainResult<String> {
    let hex: String = v
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(DomainError::invalid("err.phone_device.mac"))
    }
}

/// The MAC a phone's request names: the first run of 12 hex digits in the file name
/// (`001565aabbcc.cfg`, `cfg001565aabbcc.xml`, `snomD785-001565AABBCC.htm`).
pub fn mac_in_file_name(name: &str) -> Option<String> {
    let b = name.as_bytes();
    (0..b.len().saturating_sub(11)).find_map(|i| {
        let w = &b[i..i + 12];
        let before_ok = i == 0 || !b[i - 1].is_ascii_hexdigit();
        let after_ok = b.get(i + 12).is_none_or(|c| !c.is_ascii_hexdigit());
        (before_ok && after_ok && w.iter().all(u8::is_ascii_hexdigit))
            .then(|| String::from_utf8_lossy(w).to_ascii_lowercase())
    })
}

fn new_password() -> String {
    // The same alphabet as SIP secrets: easy to type on a phone's keypad menu.
    super::telephony::generate_secret()
}

pub async fn list(db: &Db) -> DomainResult<Vec<PhoneRow>> {
    Ok(db.read(q::list_phones).await?)
}

/// The phones page refreshes on it (admins only).
fn phones_event() -> Event {
    Event::new("telephony.phones", serde_json::json!({}), Audience::Admins)
}

/// Adds a phone; its row, with the generated fetch password.
pub async fn add(
    store: &Store,
    by: Option<&Actor>,
    mac: &str,
    model: &str,
    extension: &str,
) -> DomainResult<PhoneRow> {
    let mac = normalise_mac(mac)?;
    let model = model.trim().to_ascii_lowercase();
    if !MODELS.contains(&model.as_str()) {
        return Err(DomainError::invalid(
            Msg::new("err.phone_device.model").with("known", MODELS.join(", ")),
        ));
    }
    let ext = extension.trim().to_string();
    let password = new_password();
    let (m, md, e, p) = (mac.clone(), model.clone(), ext.clone(), password);
    store
        .write(by, move |tx| {
            if crate::db::sip::extension_by_number(tx, &e)?.is_none() {
                return Err(DomainError::invalid(
                    Msg::new("err.group.no_extension").with("number", &e),
                ));
            }
            if q::phone_config(tx, &m)?.is_some() {
                return Err(DomainError::conflict(
                    Msg::new("err.phone_device.taken").with("mac", &m),
                ));
            }
            let id = q::insert_phone(tx, &m, &md, &e, &p, tx.now())?;
            tx.log(
                "create",
                "sip_phone",
                id,
                serde_json::json!({ "mac": m, "model": md, "extension": e }),
            );
            tx.emit(phones_event());
            Ok(())
        })
        .await?;
    let m = mac.clone();
    store
        .db()
        .read(move |c| q::phone_config(c, &m))
        .await?
        .map(|p| p.phone)
        .ok_or(DomainError::NotFound)
}

pub async fn remove(store: &Store, by: Option<&Actor>, mac: &str) -> DomainResult<()> {
    let mac = normalise_mac(mac)?;
    store
        .write(by, move |tx| {
            if q::delete_phone(tx, &mac)? == 0 {
                return Err(DomainError::NotFound);
            }
            tx.log(
                "delete",
                "sip_phone",
                None,
                serde_json::json!({ "mac": mac }),
            );
            tx.emit(phones_event());
            Ok(())
        })
        .await
}

/// A fetch by a phone: who asks (its address, the HTTP Basic credentials it sent), for
/// which file, and what the box answers with.
pub struct Fetch<'a> {
    pub file: &'a str,
    pub from: IpAddr,
    pub trusted: bool,
    pub basic: Option<(String, String)>,
    /// The host the phone reached the web port at: the SIP server to write in the file.
    pub server_host: &'a str,
    pub sip_port: u16,
}

/// Why a fetch was refused (each maps to a status code in the web layer).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not from a trusted LAN range (403).
    Untrusted,
    /// No or wrong credentials (401).
    Credentials,
    /// No phone with that MAC (404).
    Unknown,
}

/// Serves a phone's file: (content type, body), or why not. Every call is logged.
pub async fn fetch(
    store: &Store,
    f: Fetch<'_>,
) -> DomainResult<Result<(&'static str, String), Refused>> {
    let db = store.db();
    let mac = mac_in_file_name(f.file);
    let (file, from) = (
        crate::sip::message::log_safe(f.file.as_bytes(), 80),
        f.from.to_string(),
    );
    let m = mac.clone();
    let found = match &m {
        Some(m) => {
            let m = m.clone();
            db.read(move |c| q::phone_config(c, &m)).await?
        }
        None => None,
    };
    // The phones' clocks: the shop's zone, as its offset now (minutes east of UTC).
    let clock = store.clock().get();
    let offset = clock.offset_at(clock.now()) / 60;
    let outcome = if !f.trusted {
        Err(Refused::Untrusted)
    } else {
        match &found {
            None => Err(Refused::Unknown),
            Some(p) => match &f.basic {
                Some((u, pw))
                    if normalise_mac(u).ok().as_deref() == Some(p.phone.mac.as_str())
                        && constant_eq(pw.as_bytes(), p.phone.password.as_bytes()) =>
                {
                    Ok(render(p, f.server_host, f.sip_port, offset))
                }
                _ => Err(Refused::Credentials),
            },
        }
    };
    let result = match &outcome {
        Ok(_) => "served",
        Err(Refused::Untrusted) => "refused: not a trusted network",
        Err(Refused::Credentials) => "refused: credentials",
        Err(Refused::Unknown) => "refused: unknown phone",
    };
    let served = outcome.is_ok();
    let logged_mac = mac.clone();
    store
        .write(Who::System, move |tx| {
            if served {
                if let Some(m) = &logged_mac {
                    q::touch_phone(tx, m, tx.now())?;
                }
            }
            tx.log(
                "fetch",
                "sip_phone",
                None,
                serde_json::json!({ "file": file, "mac": logged_mac, "from": from, "result": result }),
            );
            tx.emit(phones_event());
            Ok(())
        })
        .await?;
    Ok(outcome)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value on one line of a key = value file: no line breaks.
fn line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The phone's file in its vendor's format.
pub fn render(p: &PhoneConfig, host: &str, port: u16, offset_min: i32) -> (&'static str, String) {
    let ext = &p.phone.extension;
    let name = if p.display_name.is_empty() {
        ext.clone()
    } else {
        p.display_name.clone()
    };
    let lang = p.language.as_deref().unwrap_or("ru");
    let hours = offset_min as f32 / 60.0;
    let tz = if offset_min % 60 == 0 {
        format!("{:+}", offset_min / 60)
    } else {
        format!("{hours:+.1}")
    };
    let enabled = if p.enabled { 1 } else { 0 };
    match p.phone.model.as_str() {
        "yealink" => {
            // Yealink T4x/T5x: <mac>.cfg, "key = value" after the version line.
            let language = match lang {
                "ru" => "Russian",
                "en" => "English",
                // No Uzbek UI on Yealink: Russian is the closest the staff read.
                _ => "Russian",
            };
            (
                "text/plain; charset=utf-8",
                format!(
                    "#!version:1.0.0.1\n\
                     account.1.enable = {enabled}\n\
                     account.1.label = {ext}\n\
                     account.1.display_name = {}\n\
                     account.1.auth_name = {ext}\n\
                     account.1.user_name = {ext}\n\
                     account.1.password = {}\n\
                     account.1.sip_server.1.address = {host}\n\
                     account.1.sip_server.1.port = {port}\n\
                     account.1.sip_server.1.transport_type = 0\n\
                     local_time.time_zone = {tz}\n\
                     local_time.summer_time = 0\n\
                     lang.gui = {language}\n\
                     lang.wui = {language}\n",
                    line(&name),
                    line(&p.secret),
                ),
            )
        }
        "grandstream" => {
            // Grandstream GXP/GRP: cfg<mac>.xml with P-values.
            let language = match lang {
                "ru" => "ru",
                "en" => "en",
                _ => "ru",
            };
            // Custom time zone in POSIX form: the sign is reversed ("<+05>-5").
            let posix = format!("<{:+03}>{}", offset_min / 60, -offset_min / 60);
            (
                "application/xml; charset=utf-8",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <gs_provision version=\"1\">\n  <mac>{}</mac>\n  <config version=\"1\">\n\
                     \x20   <P271>{enabled}</P271>\n\
                     \x20   <P270>{}</P270>\n\
                     \x20   <P47>{}:{port}</P47>\n\
                     \x20   <P35>{ext}</P35>\n\
                     \x20   <P36>{ext}</P36>\n\
                     \x20   <P34>{}</P34>\n\
                     \x20   <P3>{}</P3>\n\
                     \x20   <P130>0</P130>\n\
                     \x20   <P64>customize</P64>\n\
                     \x20   <P246>{}</P246>\n\
                     \x20   <P1362>{language}</P1362>\n\
                     \x20 </config>\n</gs_provision>\n",
                    p.phone.mac,
                    xml(ext),
                    xml(host),
                    xml(&p.secret),
                    xml(&name),
                    xml(&posix),
                ),
            )
        }
        "fanvil" => (
            // Fanvil X-series: <mac>.cfg, "<<VOIP CONFIG FILE>>" sections.
            "text/plain; charset=utf-8",
            format!(
                "<<VOIP CONFIG FILE>>Version:2.0000000000\n\n\
                 <GLOBAL CONFIG MODULE>\n\
                 Time Zone          :{}\n\
                 Enable DST         :0\n\
                 Language           :{}\n\n\
                 <SIP CONFIG MODULE>\n\
                 --SIP Line List--  :\n\
                 SIP1 Phone Number  :{ext}\n\
                 SIP1 Display Name  :{}\n\
                 SIP1 Register Addr :{host}\n\
                 SIP1 Register Port :{port}\n\
                 SIP1 Register User :{ext}\n\
                 SIP1 Register Pswd :{}\n\
                 SIP1 Register TTL  :3600\n\
                 SIP1 Enable Reg    :{enabled}\n\
                 SIP1 Transport Type:0\n\
                 <<END OF FILE>>\n",
                offset_min / 60,
                if lang == "en" { "en" } else { "ru" },
                line(&name),
                line(&p.secret),
            ),
        ),
        _ => {
            // Snom D-series: settings XML (the phone asks for <MAC>.xml or its model's
            // file name with the MAC in it).
            let language = if lang == "en" { "English" } else { "Russian" };
            (
                "application/xml; charset=utf-8",
                format!(
                    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<settings>\n  <phone-settings>\n\
                     \x20   <language perm=\"\">{language}</language>\n\
                     \x20   <web_language perm=\"\">{language}</web_language>\n\
                     \x20   <utc_offset perm=\"\">{}</utc_offset>\n\
                     \x20   <user_active idx=\"1\" perm=\"\">{}</user_active>\n\
                     \x20   <user_realname idx=\"1\" perm=\"\">{}</user_realname>\n\
                     \x20   <user_name idx=\"1\" perm=\"\">{}</user_name>\n\
                     \x20   <user_pname idx=\"1\" perm=\"\">{}</user_pname>\n\
                     \x20   <user_pass idx=\"1\" perm=\"\">{}</user_pass>\n\
                     \x20   <user_host idx=\"1\" perm=\"\">{}:{port}</user_host>\n\
                     \x20 </phone-settings>\n</settings>\n",
                    offset_min * 60,
                    if p.enabled { "on" } else { "off" },
                    xml(&name),
                    xml(ext),
                    xml(ext),
                    xml(&p.secret),
                    xml(host),
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_normalise_and_are_found_in_file_names() {
        assert_eq!(normalise_mac("00:15:65:AA:bb:cc").unwrap(), "001565aabbcc");
        assert_eq!(normalise_mac("00-15-65-aa-bb-cc").unwrap(), "001565aabbcc");
        assert!(normalise_mac("00:15:65:aa:bb").is_err());
        assert!(normalise_mac("00:15:65:aa:bb:cg").is_err());
        assert_eq!(
            mac_in_file_name("001565aabbcc.cfg").as_deref(),
            Some("001565aabbcc")
        );
        assert_eq!(
            mac_in_file_name("cfg001565AABBCC.xml").as_deref(),
            Some("001565aabbcc")
        );
        assert_eq!(
            mac_in_file_name("snomD785-001565AABBCC.htm").as_deref(),
            Some("001565aabbcc")
        );
        assert_eq!(
            mac_in_file_name("y000000000044.cfg").as_deref(),
            Some("000000000044")
        );
        assert_eq!(
            mac_in_file_name("0015651234567.cfg"),
            None,
            "13 hex digits: no MAC"
        );
        assert_eq!(mac_in_file_name("../../etc/passwd"), None);
    }

    #[test]
    fn offsets_and_files() {
        let p = PhoneConfig {
            phone: PhoneRow {
                mac: "001565aabbcc".into(),
                model: "yealink".into(),
                extension: "101".into(),
                password: "pw".into(),
                created_at: 0,
                last_fetch_at: None,
            },
            display_name: "Ресепшн <1>".into(),
            secret: "s3cret&x".into(),
            language: Some("uz".into()),
            enabled: true,
        };
        let (_, y) = render(&p, "192.168.1.10", 5060, 300);
        assert!(y.starts_with("#!version:1.0.0.1\n"));
        assert!(y.contains("account.1.password = s3cret&x\n"));
        assert!(y.contains("account.1.sip_server.1.address = 192.168.1.10\n"));
        assert!(y.contains("local_time.time_zone = +5\n"));
        for model in ["grandstream", "snom"] {
            let mut q = p.clone();
            q.phone.model = model.into();
            let (kind, x) = render(&q, "192.168.1.10", 5060, 300);
            assert!(kind.starts_with("application/xml"));
            assert!(x.contains("s3cret&amp;x"), "{x}");
            assert!(x.contains("Ресепшн &lt;1&gt;"), "{x}");
        }
        let mut f = p.clone();
        f.phone.model = "fanvil".into();
        let (_, x) = render(&f, "192.168.1.10", 5060, 300);
        assert!(x.starts_with("<<VOIP CONFIG FILE>>"));
        assert!(x.contains("SIP1 Register Pswd :s3cret&x\n"));
    }
}
