//! Telephony: extensions (desk phones), ring groups, bulk import, and the adapters that
//! give the SIP server its in-memory directory and persist its registrations. Trunks,
//! call rules and the outbound policy are in `trunks`.

pub use crate::db::sip::{ExtensionRow, RingGroupRow};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::sip::{self as q, BindingRow};
use crate::db::{now, Conn, Db, DbResult};
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
    /// The branch the extension is of (none: the whole shop).
    pub branch_id: Option<i64>,
}

/// Whether a user of `branches` sees the extension: shop-wide, or of one of theirs.
pub fn sees_extension(branches: &super::access::Branches, e: &ExtensionRow) -> bool {
    e.branch_id.is_none_or(|b| branches.contains(b))
}

/// Refuses a branch that does not exist or that the acting user does not work in.
fn check_branch(tx: &super::work::Tx<'_>, branch: Option<i64>) -> DomainResult<()> {
    if let Some(b) = branch {
        if crate::db::branches::get(tx, b)?.is_none() || !tx.who().sees_branch(b) {
            return Err(DomainError::invalid(
                Msg::new("err.group.branch").with("id", b),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub number: String,
    pub name: String,
    pub strategy: Strategy,
    pub member_timeout_secs: u32,
    pub overall_timeout_secs: u32,
    pub members: Vec<String>,
    /// The branch the group answers for (none: the whole shop).
    pub branch_id: Option<i64>,
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
    /// Held from reading the rows to handing them to the SIP server, so two refreshes
    /// (a change made here and the change watcher's reload) cannot cross: the one that
    /// read older rows would otherwise land last and undo the newer one.
    refresh: Arc<tokio::sync::Mutex<()>>,
}

impl Telephony {
    pub fn new(store: Store, clock: super::clock::Clock) -> Telephony {
        Telephony {
            db: store.db().clone(),
            store,
            clock,
            directory: Arc::new(MemoryDirectory::default()),
            sip: Arc::default(),
            refresh: Arc::default(),
        }
    }

    /// The directory the SIP server reads (loaded by [`Telephony::reload`]).
    pub fn directory(&self) -> Arc<MemoryDirectory> {
        self.directory.clone()
    }

    /// Rebuilds the in-memory directory from the database.
    pub async fn reload(&self) -> DomainResult<()> {
        let _turn = self.refresh.lock().await;
        let (exts, groups) = self
            .db
            .read(|c| Ok((q::list_extensions(c)?, q::list_ring_groups(c)?)))
            .await?;
        self.directory.replace(&exts, &groups);
        self.apply_plan().await
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

    /// The extensions `actor` sees: their branches' and the shop-wide ones.
    pub async fn extensions_for(&self, actor: &Actor) -> DomainResult<Vec<ExtensionRow>> {
        let mut v = self.list_extensions().await?;
        v.retain(|e| sees_extension(&actor.branches, e));
        Ok(v)
    }

    /// Puts an extension in a branch (None: the whole shop).
    pub async fn set_extension_branch(
        &self,
        by: Option<&Actor>,
        number: &str,
        branch: Option<i64>,
    ) -> DomainResult<()> {
        let number = number.to_string();
        self.store
            .write(by, move |tx| {
                check_branch(tx, branch)?;
                let before = q::extension_by_number(tx, &number)?.ok_or(DomainError::NotFound)?;
                if before.branch_id.is_some_and(|b| !tx.who().sees_branch(b)) {
                    return Err(DomainError::NotFound);
                }
                q::set_extension_branch(tx, &number, branch, now())?;
                tx.log(
                    "update",
                    "sip_extension",
                    before.id,
                    serde_json::json!({ "number": number, "branch_id": [before.branch_id, branch] }),
                );
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
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
        let branch = e.branch_id;
        self.store
            .write(by, move |tx| {
                check_branch(tx, branch)?;
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
                if branch.is_some() {
                    q::set_extension_branch(c, &number, branch, now())?;
                }
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
        let d = digest.clone();
        self.change_by_number(
            by,
            "update",
            "sip_extension_digest",
            number,
            serde_json::json!({ "digest": digest }),
            move |c, n, now| q::set_extension_digest(c, n, &d, now),
        )
        .await
    }

    /// Replaces the secret with a new strong one and returns it.
    pub async fn regenerate_secret(
        &self,
        by: Option<&Actor>,
        number: &str,
    ) -> DomainResult<String> {
        let secret = generate_secret();
        let s = secret.clone();
        self.change_by_number(
            by,
            "update",
            "sip_extension_secret",
            number,
            serde_json::json!({}),
            move |c, n, now| q::set_extension_secret(c, n, &s, now),
        )
        .await?;
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
        let s = secret.to_string();
        self.change_by_number(
            by,
            "update",
            "sip_extension_secret",
            number,
            serde_json::json!({}),
            move |c, n, now| q::set_extension_secret(c, n, &s, now),
        )
        .await
    }

    /// One change of the directory by number, as a unit of work: `change` touches the
    /// number's row (none touched: not found), the activity row names the number, and the
    /// SIP directory is reloaded after the commit.
    async fn change_by_number(
        &self,
        by: Option<&Actor>,
        action: &'static str,
        entity: &'static str,
        number: &str,
        detail: serde_json::Value,
        change: impl FnOnce(&Conn, &str, i64) -> DbResult<usize> + Send + 'static,
    ) -> DomainResult<()> {
        let n = number.to_string();
        self.store
            .write(by, move |tx| {
                // Another branch's extension does not exist for a branch-scoped user.
                if q::extension_by_number(tx, &n)?
                    .and_then(|e| e.branch_id)
                    .is_some_and(|b| !tx.who().sees_branch(b))
                {
                    return Err(DomainError::NotFound);
                }
                if change(tx, &n, tx.now())? == 0 {
                    return Err(DomainError::NotFound);
                }
                let mut detail = detail;
                detail["number"] = serde_json::json!(n);
                tx.log(action, entity, None, detail);
                tx.emit(telephony_event());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    pub async fn remove_extension(&self, by: Option<&Actor>, number: &str) -> DomainResult<()> {
        self.change_by_number(
            by,
            "delete",
            "sip_extension",
            number,
            serde_json::json!({}),
            |c, n, _| q::delete_extension(c, n),
        )
        .await
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
                if let Some(b) = g.branch_id {
                    if crate::db::branches::get(c, b)?.is_none() {
                        return Err(DomainError::invalid(
                            Msg::new("err.group.branch").with("id", b),
                        ));
                    }
                }
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
                    g.branch_id,
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
        self.change_by_number(
            by,
            "delete",
            "sip_ring_group",
            number,
            serde_json::json!({}),
            |c, n, _| q::delete_ring_group(c, n),
        )
        .await
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
        Err(DomainError::invalid(
            Msg::new("err.ext.digest").term("default", "telephony.digest_default"),
        ))
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
    /// The enabled extension linked to each user (the page shows the softphone to them
    /// without a database read).
    by_user: RwLock<HashMap<i64, String>>,
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
        let mut u = HashMap::new();
        for e in exts.iter().filter(|e| e.enabled) {
            if let Some(id) = e.user_id {
                u.entry(id).or_insert_with(|| e.number.clone());
            }
        }
        *self.by_user.write().unwrap_or_else(|e| e.into_inner()) = u;
    }

    /// The enabled extension linked to user `id`.
    pub fn extension_of(&self, id: i64) -> Option<String> {
        self.by_user
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
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

mod trunks;
pub use trunks::*;

/// The telephony page refreshes on it (admins only).
fn telephony_event() -> crate::events::Event {
    crate::events::Event::new(
        "telephony.updated",
        serde_json::json!({}),
        crate::events::Audience::Admins,
    )
}
