//! Telephony: extensions (desk phones), ring groups, bulk import, and the adapters that
//! give the SIP server its in-memory directory and persist its registrations.

pub use crate::db::sip::{ExtensionRow, RingGroupRow};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::sip::{self as q, BindingRow};
use crate::db::{now, Db};
use crate::sip::{self, Entry, Peer, RingGroup, StoredBinding, Strategy, Transport};

pub use crate::db::sip::{ExtensionRow as Extension, RingGroupRow as Group};

/// Characters of generated secrets: no look-alikes (0/O, 1/l/I), easy to type on a phone.
const SECRET_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
const SECRET_LEN: usize = 20;

/// A strong random secret (20 chars of a 55-symbol alphabet, ~115 bits).
pub fn generate_secret() -> String {
    let mut rng = rand::thread_rng();
    (0..SECRET_LEN)
        .map(|_| SECRET_ALPHABET[rng.gen_range(0..SECRET_ALPHABET.len())] as char)
        .collect()
}

pub fn validate_number(n: &str) -> DomainResult<()> {
    if (2..=6).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(DomainError::invalid("err.ext.number"))
    }
}

pub fn validate_secret(s: &str) -> DomainResult<()> {
    if s.len() < 8 || s.len() > 64 {
        return Err(DomainError::invalid("err.ext.secret_length"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b'\\')
    {
        return Err(DomainError::invalid("err.ext.secret_chars"));
    }
    Ok(())
}

fn validate_name(n: &str) -> DomainResult<String> {
    let n = n.trim();
    if n.chars().count() > 80 || n.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            Msg::new("err.field.too_long")
                .term("field", "field.name")
                .with("max", 80),
        ));
    }
    Ok(n.to_string())
}

#[derive(Debug, Clone)]
pub struct SipSettings {
    pub realm: String,
    pub domains: Vec<String>,
    pub algorithms: Vec<sip::digest::Algorithm>,
}

#[derive(Debug, Clone, Default)]
pub struct NewExtension {
    pub number: String,
    pub display_name: String,
    pub username: Option<String>,
    /// None: generate a strong one.
    pub secret: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub number: String,
    pub name: String,
    pub strategy: Strategy,
    pub member_timeout_secs: u32,
    pub overall_timeout_secs: u32,
    pub members: Vec<String>,
}

/// Extensions and ring groups; keeps the SIP directory in step with every change.
#[derive(Clone)]
pub struct Telephony {
    db: Db,
    store: Store,
    clock: super::clock::Clock,
    directory: Arc<MemoryDirectory>,
    /// The running SIP server, to push trunk and policy changes to.
    sip: Arc<RwLock<Option<sip::SipControl>>>,
}

impl Telephony {
    pub fn new(store: Store, clock: super::clock::Clock) -> Telephony {
        Telephony {
            db: store.db().clone(),
            store,
            clock,
            directory: Arc::new(MemoryDirectory::default()),
            sip: Arc::default(),
        }
    }

    /// The directory the SIP server reads (loaded by [`Telephony::reload`]).
    pub fn directory(&self) -> Arc<MemoryDirectory> {
        self.directory.clone()
    }

    /// Rebuilds the in-memory directory from the database.
    pub async fn reload(&self) -> DomainResult<()> {
        let (exts, groups) = self
            .db
            .read(|c| Ok((q::list_extensions(c)?, q::list_ring_groups(c)?)))
            .await?;
        self.directory.replace(&exts, &groups);
        self.push_plan().await
    }

    /// After a change made elsewhere (another process, see `domain::changes`): reloads
    /// the directory and the plan, and drops the registrations of extensions that are no
    /// longer in the directory (removed or disabled), so their phones are refused from
    /// now on. Returns how many extensions lost their registrations.
    pub async fn reload_and_prune(&self) -> DomainResult<usize> {
        self.reload().await?;
        let Some(sip) = self.sip() else {
            return Ok(0);
        };
        let mut gone: Vec<String> = sip
            .registrations()
            .into_iter()
            .map(|r| r.extension)
            .filter(|e| {
                !matches!(
                    sip::Directory::lookup(&*self.directory, e),
                    Some(Entry::Extension { .. })
                )
            })
            .collect();
        gone.sort();
        gone.dedup();
        for e in &gone {
            sip.unregister_all(e);
        }
        Ok(gone.len())
    }

    pub async fn list_extensions(&self) -> DomainResult<Vec<ExtensionRow>> {
        Ok(self.db.read(q::list_extensions).await?)
    }

    pub async fn extension(&self, number: &str) -> DomainResult<ExtensionRow> {
        let n = number.to_string();
        self.db
            .read(move |c| q::extension_by_number(c, &n))
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Creates an extension; returns it with its secret (shown once to copy into the phone).
    pub async fn add_extension(
        &self,
        by: Option<&Actor>,
        e: NewExtension,
    ) -> DomainResult<ExtensionRow> {
        validate_number(&e.number)?;
        let name = validate_name(&e.display_name)?;
        let secret = match e.secret {
            Some(s) => {
                validate_secret(&s)?;
                s
            }
            None => generate_secret(),
        };
        let number = e.number.clone();
        let username = e.username.clone();
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                if q::number_taken(c, &number)? {
                    return Err(DomainError::conflict(
                        Msg::new("err.ext.number_taken").with("number", &number),
                    ));
                }
                let user_id = match &username {
                    None => None,
                    Some(u) => Some(
                        crate::db::accounts::user_by_username(c, &u.to_lowercase())?
                            .ok_or_else(|| {
                                DomainError::invalid(
                                    Msg::new("err.ext.no_user").with("username", u),
                                )
                            })?
                            .id,
                    ),
                };
                let id = q::insert_extension(c, &number, &name, user_id, &secret, now())?;
                tx.log(
                    "create",
                    "sip_extension",
                    id,
                    serde_json::json!({ "number": number }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await?;
        self.extension(&e.number).await
    }

    pub async fn update_extension(
        &self,
        by: Option<&Actor>,
        number: &str,
        display_name: &str,
        username: Option<String>,
        enabled: bool,
    ) -> DomainResult<()> {
        let name = validate_name(display_name)?;
        let number = number.to_string();
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                let user_id = match &username {
                    None => None,
                    Some(u) => Some(
                        crate::db::accounts::user_by_username(c, &u.to_lowercase())?
                            .ok_or_else(|| {
                                DomainError::invalid(
                                    Msg::new("err.ext.no_user").with("username", u),
                                )
                            })?
                            .id,
                    ),
                };
                if q::update_extension(c, &number, &name, user_id, enabled, now())? == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log(
                    "update",
                    "sip_extension",
                    None,
                    serde_json::json!({ "number": number, "enabled": enabled }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    /// Chooses the digest algorithms offered to one extension's phone: one of
    /// [`DIGEST_CHOICES`] ("" = the box-wide setting). Takes effect on the phone's next
    /// request.
    pub async fn set_extension_digest(
        &self,
        by: Option<&Actor>,
        number: &str,
        digest: &str,
    ) -> DomainResult<()> {
        let digest = normalise_digest(digest)?;
        let n = number.to_string();
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                if q::set_extension_digest(c, &n, &digest, now())? == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log(
                    "update",
                    "sip_extension_digest",
                    None,
                    serde_json::json!({ "number": n, "digest": digest }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    /// Replaces the secret with a new strong one and returns it.
    pub async fn regenerate_secret(
        &self,
        by: Option<&Actor>,
        number: &str,
    ) -> DomainResult<String> {
        let secret = generate_secret();
        let (n, s) = (number.to_string(), secret.clone());
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                if q::set_extension_secret(c, &n, &s, now())? == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log(
                    "update",
                    "sip_extension_secret",
                    None,
                    serde_json::json!({ "number": n }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await?;
        Ok(secret)
    }

    /// Sets a given secret (e.g. typed into `crm extension passwd --password-stdin`).
    pub async fn set_secret(
        &self,
        by: Option<&Actor>,
        number: &str,
        secret: &str,
    ) -> DomainResult<()> {
        validate_secret(secret)?;
        let (n, s) = (number.to_string(), secret.to_string());
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                if q::set_extension_secret(c, &n, &s, now())? == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log(
                    "update",
                    "sip_extension_secret",
                    None,
                    serde_json::json!({ "number": n }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    pub async fn remove_extension(&self, by: Option<&Actor>, number: &str) -> DomainResult<()> {
        let n = number.to_string();
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                if q::delete_extension(c, &n)? == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log(
                    "delete",
                    "sip_extension",
                    None,
                    serde_json::json!({ "number": n }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    /// Imports `number;secret;` lines (as in the bench kit's users.csv): all or nothing.
    /// A first line `SEQUENTIAL`/`RANDOM` (SIPp's header), blank lines and `#` comments
    /// are skipped. Existing numbers get the new secret. Returns the number of lines
    /// imported.
    pub async fn import(&self, by: Option<&Actor>, text: &str) -> DomainResult<usize> {
        let mut rows: Vec<(String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || (i == 0 && matches!(line, "SEQUENTIAL" | "RANDOM" | "USER"))
            {
                continue;
            }
            let mut parts = line.split(';');
            let number = parts.next().unwrap_or("").trim().to_string();
            let secret = parts.next().unwrap_or("").trim().to_string();
            let at = |e: DomainError| {
                DomainError::invalid(
                    Msg::new("err.import.line")
                        .with("line", i + 1)
                        .nested("why", e.message()),
                )
            };
            validate_number(&number).map_err(at)?;
            validate_secret(&secret).map_err(at)?;
            rows.push((number, secret));
        }
        let count = rows.len();
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                let t = now();
                for (n, s) in &rows {
                    if q::is_ring_group(c, n)? {
                        return Err(DomainError::conflict(
                            Msg::new("err.ext.is_group").with("number", n),
                        ));
                    }
                    q::upsert_extension_secret(c, n, s, t)?;
                }
                tx.log(
                    "import",
                    "sip_extension",
                    None,
                    serde_json::json!({ "count": rows.len() }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await?;
        Ok(count)
    }

    pub async fn list_groups(&self) -> DomainResult<Vec<RingGroupRow>> {
        Ok(self.db.read(q::list_ring_groups).await?)
    }

    /// Creates or replaces a ring group.
    pub async fn save_group(&self, by: Option<&Actor>, g: NewGroup) -> DomainResult<()> {
        validate_number(&g.number)?;
        let name = validate_name(&g.name)?;
        if g.members.is_empty() || g.members.len() > 50 {
            return Err(DomainError::invalid("err.group.members"));
        }
        if !(1..=600).contains(&g.member_timeout_secs)
            || !(1..=600).contains(&g.overall_timeout_secs)
        {
            return Err(DomainError::invalid("err.group.timeouts"));
        }
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                let mut ids = Vec::new();
                for m in &g.members {
                    let e = q::extension_by_number(c, m)?.ok_or_else(|| {
                        DomainError::invalid(Msg::new("err.group.no_extension").with("number", m))
                    })?;
                    if !ids.contains(&e.id) {
                        ids.push(e.id);
                    }
                }
                if q::extension_by_number(c, &g.number)?.is_some() {
                    return Err(DomainError::conflict(
                        Msg::new("err.group.is_extension").with("number", &g.number),
                    ));
                }
                let strategy = match g.strategy {
                    Strategy::RingAll => "ring_all",
                    Strategy::Sequential => "sequential",
                };
                let id = q::save_ring_group(
                    c,
                    &g.number,
                    &name,
                    strategy,
                    g.member_timeout_secs,
                    g.overall_timeout_secs,
                    &ids,
                    now(),
                )?;
                tx.log(
                    "save",
                    "sip_ring_group",
                    id,
                    serde_json::json!({ "number": g.number }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    pub async fn remove_group(&self, by: Option<&Actor>, number: &str) -> DomainResult<()> {
        let n = number.to_string();
        self.store
            .write(by, move |tx| {
                let c = tx.conn();
                if q::delete_ring_group(c, &n)? == 0 {
                    return Err(DomainError::NotFound);
                }
                tx.log(
                    "delete",
                    "sip_ring_group",
                    None,
                    serde_json::json!({ "number": n }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    /// SIP settings from the runtime settings table: `sip.realm`, `sip.domains`
    /// (comma-separated local domain names) and `sip.digest` (offered algorithms in order,
    /// e.g. "SHA-256,MD5"; default "MD5", which every phone supports).
    pub async fn sip_settings(&self) -> DomainResult<SipSettings> {
        let (realm, domains, digest) = self
            .db
            .read(|c| {
                Ok((
                    crate::db::settings::get(c, "sip.realm")?,
                    crate::db::settings::get(c, "sip.domains")?,
                    crate::db::settings::get(c, "sip.digest")?,
                ))
            })
            .await?;
        let realm = realm
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "crm.local".into());
        let mut domains: Vec<String> = domains
            .unwrap_or_default()
            .split(',')
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect();
        if !domains.contains(&realm) {
            domains.push(realm.clone());
        }
        let mut algorithms = Vec::new();
        for a in digest.unwrap_or_default().split(',') {
            let alg = match a.trim().to_ascii_uppercase().as_str() {
                "MD5" => sip::digest::Algorithm::Md5,
                "SHA-256" => sip::digest::Algorithm::Sha256,
                _ => continue,
            };
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            algorithms.push(sip::digest::Algorithm::Md5);
        }
        Ok(SipSettings {
            realm,
            domains,
            algorithms,
        })
    }

    /// Registrations saved before the last stop, for the SIP server to start with.
    pub async fn saved_bindings(&self) -> DomainResult<Vec<StoredBinding>> {
        let t = now();
        let rows = self
            .db
            .write(move |c| {
                q::delete_expired_bindings(c, t)?;
                q::load_bindings(c, t)
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let addr: SocketAddr = r.source.parse().ok()?;
                Some(StoredBinding {
                    extension: r.extension,
                    contact: r.contact,
                    source: Peer {
                        transport: if r.transport == "TCP" {
                            Transport::Tcp
                        } else {
                            Transport::Udp
                        },
                        addr,
                    },
                    expires_at: r.expires_at.max(0) as u64,
                    call_id: r.call_id,
                    cseq: r.cseq,
                    user_agent: r.user_agent,
                })
            })
            .collect())
    }
}

/// The per-extension digest choices ("" = the box-wide `sip.digest` setting). Phones
/// known to need one: baresip (its SIP library fails on a SHA-256 challenge) "MD5";
/// SHA-256 only for phones that answer it (linphone, recent Yealink/Grandstream firmware).
pub const DIGEST_CHOICES: [&str; 5] = ["", "MD5", "SHA-256,MD5", "SHA-256", "MD5,SHA-256"];

/// A digest choice as stored: upper case, no spaces; "default" means "".
pub fn normalise_digest(v: &str) -> DomainResult<String> {
    let v: String = v
        .split(',')
        .map(|a| a.trim().to_ascii_uppercase())
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    let v = if v == "DEFAULT" { String::new() } else { v };
    if DIGEST_CHOICES.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(DomainError::invalid("err.ext.digest"))
    }
}

/// The algorithms of a stored choice; None for "" (the box-wide setting).
pub fn parse_digest(v: &str) -> Option<Vec<sip::digest::Algorithm>> {
    let algs: Vec<sip::digest::Algorithm> = v
        .split(',')
        .filter_map(|a| match a.trim() {
            "MD5" => Some(sip::digest::Algorithm::Md5),
            "SHA-256" => Some(sip::digest::Algorithm::Sha256),
            _ => None,
        })
        .collect();
    (!algs.is_empty()).then_some(algs)
}

/// The SIP directory in memory: looked up on every REGISTER/INVITE without touching
/// SQLite; replaced wholesale after each change.
#[derive(Default)]
pub struct MemoryDirectory {
    map: RwLock<HashMap<String, Entry>>,
}

impl MemoryDirectory {
    fn replace(&self, exts: &[ExtensionRow], groups: &[RingGroupRow]) {
        let mut m = HashMap::with_capacity(exts.len() + groups.len());
        for e in exts.iter().filter(|e| e.enabled) {
            m.insert(
                e.number.clone(),
                Entry::Extension {
                    secret: Arc::from(e.secret.as_str()),
                    algorithms: parse_digest(&e.digest).map(Arc::from),
                },
            );
        }
        for g in groups {
            m.insert(
                g.number.clone(),
                Entry::Group(RingGroup {
                    members: g.members.clone(),
                    strategy: if g.strategy == "sequential" {
                        Strategy::Sequential
                    } else {
                        Strategy::RingAll
                    },
                    member_timeout_secs: g.member_timeout_secs,
                    overall_timeout_secs: g.overall_timeout_secs,
                }),
            );
        }
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = m;
    }
}

impl sip::Directory for MemoryDirectory {
    fn lookup(&self, number: &str) -> Option<Entry> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(number)
            .cloned()
    }
}

enum BindingOp {
    Upsert(BindingRow),
    Remove(String, String),
    Flush(oneshot::Sender<()>),
}

/// Persists registrations write-behind: the SIP engine enqueues without waiting; a task
/// writes whatever has queued up in one transaction through the Db writer, so a burst of
/// REGISTERs costs one commit, not one per packet.
pub struct DbBindingStore {
    tx: mpsc::Sender<BindingOp>,
}

impl DbBindingStore {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(db: Db) -> Arc<DbBindingStore> {
        let (tx, mut rx) = mpsc::channel::<BindingOp>(65_536);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let mut waiters = Vec::new();
                let mut ops = Vec::new();
                for op in batch {
                    match op {
                        BindingOp::Flush(w) => waiters.push(w),
                        other => ops.push(other),
                    }
                }
                if !ops.is_empty() {
                    let r = db
                        .write(move |c| {
                            for op in &ops {
                                match op {
                                    BindingOp::Upsert(b) => q::upsert_binding(c, b)?,
                                    BindingOp::Remove(e, ct) => q::delete_binding(c, e, ct)?,
                                    BindingOp::Flush(_) => {}
                                }
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::error!("SIP: saving registrations failed: {e}");
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            }
        });
        Arc::new(DbBindingStore { tx })
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(BindingOp::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

impl sip::BindingStore for DbBindingStore {
    fn upsert(&self, b: &StoredBinding) {
        let row = BindingRow {
            extension: b.extension.clone(),
            contact: b.contact.clone(),
            transport: b.source.transport.name().into(),
            source: b.source.addr.to_string(),
            expires_at: b.expires_at as i64,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            user_agent: b.user_agent.clone(),
        };
        if self.tx.try_send(BindingOp::Upsert(row)).is_err() {
            tracing::warn!("SIP: registration queue full; binding kept in memory only");
        }
    }

    fn remove(&self, extension: &str, contact: &str) {
        let _ = self
            .tx
            .try_send(BindingOp::Remove(extension.into(), contact.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_choices_normalise_and_parse() {
        use sip::digest::Algorithm::*;
        assert_eq!(normalise_digest("md5").unwrap(), "MD5");
        assert_eq!(normalise_digest(" sha-256 , md5 ").unwrap(), "SHA-256,MD5");
        assert_eq!(normalise_digest("default").unwrap(), "");
        assert_eq!(normalise_digest("").unwrap(), "");
        assert!(normalise_digest("SHA-512").is_err());
        assert!(normalise_digest("MD5,MD5").is_err());
        assert_eq!(parse_digest(""), None);
        assert_eq!(parse_digest("SHA-256,MD5"), Some(vec![Sha256, Md5]));
    }

    #[test]
    fn secrets_are_strong_and_validated() {
        let a = generate_secret();
        assert_eq!(a.len(), SECRET_LEN);
        assert_ne!(a, generate_secret());
        assert!(validate_secret(&a).is_ok());
        assert!(validate_secret("short").is_err());
        assert!(validate_secret("has space here").is_err());
        assert!(validate_number("100").is_ok());
        assert!(validate_number("1").is_err());
        assert!(validate_number("1234567").is_err());
        assert!(validate_number("12a").is_err());
    }
}

// ----- trunks, inbound routes, business hours, outbound policy ------------------------

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

/// Parses DID lines `DID DESTINATION [AFTER_HOURS]` (the admin form's text area).
pub fn parse_did_lines(text: &str) -> DomainResult<Vec<DidRow>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(DomainError::invalid(
                Msg::new("err.trunk.did_line").with("line", i + 1),
            ));
        }
        out.push(DidRow {
            did: parts[0].into(),
            destination: parts[1].into(),
            after_hours: parts.get(2).map(|s| s.to_string()),
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
        clock: &super::clock::ShopClock,
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

    fn sip(&self) -> Option<sip::SipControl> {
        self.sip.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rebuilds the plan (resolving trunk hosts, outside any transaction) and hands it
    /// to the SIP server.
    pub async fn push_plan(&self) -> DomainResult<()> {
        let Some(sip) = self.sip() else {
            return Ok(());
        };
        let plan = self.plan().await?;
        sip.set_plan(plan);
        Ok(())
    }

    pub async fn plan(&self) -> DomainResult<Plan> {
        let since_ms = (now() - 3600) * 1000;
        let (trunks, exts, rules, recent_outbound) = self
            .db
            .read(move |c| {
                Ok((
                    q::list_trunks(c)?,
                    q::list_extensions(c)?,
                    q::settings_values(c, &RULE_KEYS)?,
                    crate::db::calls::recent_outbound(c, since_ms)?,
                ))
            })
            .await?;
        let rules = rules_from(rules);
        let clock = self.clock.get();
        let mut plan = Plan {
            hours: rules.business_hours(&clock, clock.now()).unwrap_or(None),
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
    }
}

/// The telephony page refreshes on it (admins only).
fn telephony_event() -> crate::events::Event {
    crate::events::Event::new(
        "telephony.updated",
        serde_json::json!({}),
        crate::events::Audience::Admins,
    )
}
