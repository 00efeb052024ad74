//! Accounts: users, passwords (argon2id), sign-in with rate limiting and audit, sessions
//! and API tokens.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::access::Branches;
use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::config::{LoginConfig, SessionConfig};
use crate::db::accounts::{self as q, AuditEntry, NewUserRow, UserUpdate};
pub use crate::db::accounts::{LoginAuditRow, TokenRow, UserRow};
use crate::db::{now, Db};
use crate::events::Event;
use crate::model::{Language, Role, UserId};

pub const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 256;
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY_SECS: i64 = 60;

/// Hashes and checks passwords with the configured argon2id cost.
#[derive(Clone)]
pub struct PasswordHasherCfg {
    params: Params,
    /// A hash of a random password, verified when the username is unknown so that both
    /// paths take the same time.
    dummy_hash: String,
}

impl PasswordHasherCfg {
    pub fn new(cfg: &LoginConfig) -> PasswordHasherCfg {
        let params = Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, 1, None)
            .expect("argon2 params validated by config");
        let mut h = PasswordHasherCfg {
            params,
            dummy_hash: String::new(),
        };
        h.dummy_hash = h.hash(&random_token(16));
        h
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    pub fn hash(&self, password: &str) -> String {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 hashing with valid params")
            .to_string()
    }

    pub fn verify(&self, hash: &str, password: &str) -> bool {
        match PasswordHash::new(hash) {
            // Verification uses the parameters stored in the hash itself.
            Ok(parsed) => self
                .argon()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn validate_username(u: &str) -> DomainResult<()> {
    let ok = (2..=32).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid("err.user.username"))
    }
}

/// A staff e-mail address as stored: trimmed, None when empty; refused when it is not
/// one address.
pub fn normalize_email(e: &str) -> DomainResult<Option<String>> {
    let e = e.trim();
    if e.is_empty() {
        return Ok(None);
    }
    if e.len() > 254 || !super::notifications::valid_email(e) {
        return Err(DomainError::invalid(
            Msg::new("err.email.not_an_address").with("value", e),
        ));
    }
    Ok(Some(e.to_string()))
}

pub fn validate_password(p: &str) -> DomainResult<()> {
    let n = p.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(DomainError::invalid(
            Msg::new("err.user.password_short").with("min", MIN_PASSWORD_LEN),
        ));
    }
    if p.len() > MAX_PASSWORD_LEN {
        return Err(DomainError::invalid(
            Msg::new("err.user.password_long").with("max", MAX_PASSWORD_LEN),
        ));
    }
    Ok(())
}

fn validate_display_name(n: &str) -> DomainResult<String> {
    let n = n.trim();
    if n.is_empty() || n.chars().count() > 100 {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", "field.name")
                .with("max", 100),
        ));
    }
    Ok(n.to_string())
}

/// The signed-in user with their scope: their role's permissions and their branches.
pub fn actor_of(u: &UserRow) -> Actor {
    Actor {
        user_id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role,
        language: u.language,
        perms: super::roles::perms_of(u),
        branches: Branches::from_ids(u.branch_ids.clone()),
    }
}

/// A user's role and branches as given on the form or in the API.
#[derive(Debug, Clone, Default)]
pub struct UserAccess {
    /// `admin`, `operator`, `master` or a custom role's key.
    pub role: String,
    /// Empty: every branch.
    pub branches: Vec<i64>,
}

/// What an edit of a user changes; `access: None` keeps their role and branches.
#[derive(Debug, Clone)]
pub struct UserChange {
    pub display_name: String,
    pub access: Option<UserAccess>,
    pub active: bool,
    pub language: Language,
}

/// Refuses branch ids that name no branch (or too many of them).
fn check_branches(tx: &super::work::Tx, ids: &[i64]) -> DomainResult<Vec<i64>> {
    if ids.len() > 1000 {
        return Err(DomainError::invalid("err.user.branch_unknown"));
    }
    let mut out = ids.to_vec();
    out.sort_unstable();
    out.dedup();
    for b in &out {
        if crate::db::branches::get(tx, *b)?.is_none() {
            return Err(DomainError::invalid(
                Msg::new("err.user.branch_unknown").with("id", b),
            ));
        }
    }
    Ok(out)
}

/// Account operations over the database.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    store: Store,
    hasher: PasswordHasherCfg,
    login: LoginConfig,
    session: SessionConfig,
    /// Bounds the argon2 computations running at once: each holds `argon2_memory_kib`,
    /// and a flood of sign-ins must not take the box's memory.
    gate: Arc<tokio::sync::Semaphore>,
}

/// How a connection proved who it is: the hash of its session cookie or of its API
/// token. Re-checked when the user's access changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session(Vec<u8>),
    Token(Vec<u8>),
}

pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub language: Language,
    pub password: String,
}

pub struct SignIn<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub actor: Actor,
}

pub struct SessionInfo {
    pub actor: Actor,
    pub csrf_token: String,
}

impl Accounts {
    pub fn new(store: Store, login: LoginConfig, session: SessionConfig) -> Accounts {
        Accounts {
            hasher: PasswordHasherCfg::new(&login),
            gate: Arc::new(tokio::sync::Semaphore::new(login.parallel_hashes())),
            db: store.db().clone(),
            store,
            login,
            session,
        }
    }

    /// Tells open screens that `user`'s access changed (after a commit that is not a
    /// unit of work, e.g. a session ended).
    fn access_changed(&self, user: UserId) {
        self.store.events().publish(Event::access_changed(user));
    }

    /// Whom `cred` still signs in, without touching anything: None when the session is
    /// gone or expired, the token revoked, or the user disabled.
    pub async fn credential_actor(&self, cred: &Credential) -> DomainResult<Option<Actor>> {
        let idle = (self.session.idle_minutes * 60) as i64;
        let absolute = (self.session.absolute_hours * 3600) as i64;
        let cred = cred.clone();
        let user = self
            .db
            .read(move |c| {
                Ok(match &cred {
                    Credential::Session(h) => q::session_by_hash(c, h)?.and_then(|row| {
                        let now = now();
                        (now - row.last_seen_at <= idle && now - row.created_at <= absolute)
                            .then_some(row.user)
                    }),
                    Credential::Token(h) => q::user_by_token_hash(c, h)?.map(|(_, u)| u),
                })
            })
            .await?;
        Ok(user.filter(|u| u.active).map(|u| actor_of(&u)))
    }

    /// Runs an argon2 computation on the blocking pool once a slot is free; with `wait`,
    /// gives up (429, retry in a second) when none frees up in time.
    async fn argon<T: Send + 'static>(
        &self,
        wait: Option<std::time::Duration>,
        f: impl FnOnce(&PasswordHasherCfg) -> T + Send + 'static,
    ) -> DomainResult<T> {
        let permit = match wait {
            Some(w) => tokio::time::timeout(w, self.gate.clone().acquire_owned())
                .await
                .map_err(|_| DomainError::RateLimited {
                    retry_after_secs: 1,
                })?,
            None => self.gate.clone().acquire_owned().await,
        }
        .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))?;
        let h = self.hasher.clone();
        tokio::task::spawn_blocking(move || {
            let out = f(&h);
            drop(permit);
            out
        })
        .await
        .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))
    }

    /// Checks `password` against the user's (for re-authentication, e.g. before a
    /// password change), within the same bound on parallel hashing as sign-in.
    pub async fn verify_password(&self, id: UserId, password: &str) -> DomainResult<bool> {
        let stored = self.user(id).await?.password_hash;
        let password = password.to_string();
        let wait = std::time::Duration::from_millis(self.login.hash_wait_ms);
        self.argon(Some(wait), move |h| h.verify(&stored, &password))
            .await
    }

    pub fn hasher(&self) -> &PasswordHasherCfg {
        &self.hasher
    }

    async fn hash(&self, password: String) -> DomainResult<String> {
        self.argon(None, move |h| h.hash(&password)).await
    }

    pub async fn user_count(&self) -> DomainResult<i64> {
        Ok(self.db.read(q::user_count).await?)
    }

    /// Creates a user. With `only_if_none`, refuses when any user exists (first-run setup).
    pub async fn create_user(
        &self,
        by: Option<&Actor>,
        u: NewUser,
        only_if_none: bool,
    ) -> DomainResult<UserId> {
        let access = UserAccess {
            role: u.role.as_str().to_string(),
            branches: Vec::new(),
        };
        self.create_user_with(by, u, access, only_if_none).await
    }

    /// Creates a user with a role (built-in or custom; `u.role` is ignored) and branches.
    pub async fn create_user_with(
        &self,
        by: Option<&Actor>,
        u: NewUser,
        access: UserAccess,
        only_if_none: bool,
    ) -> DomainResult<UserId> {
        validate_username(&u.username)?;
        validate_password(&u.password)?;
        let display_name = validate_display_name(&u.display_name)?;
        let hash = self.hash(u.password).await?;
        let username = u.username.to_lowercase();
        self.store
            .write(by, move |tx| {
                if only_if_none && q::user_count(tx)? > 0 {
                    return Err(DomainError::conflict("err.user.setup_done"));
                }
                let (role, role_id) = super::roles::resolve(tx, &access.role)?;
                let branches = check_branches(tx, &access.branches)?;
                let id = q::insert_user(
                    tx,
                    &NewUserRow {
                        username: &username,
                        display_name: &display_name,
                        role,
                        role_id,
                        language: u.language,
                        password_hash: &hash,
                    },
                    tx.now(),
                )
                .map_err(|e| {
                    if e.is_unique_violation() {
                        DomainError::conflict(
                            Msg::new("err.user.username_taken").with("username", &username),
                        )
                    } else {
                        e.into()
                    }
                })?;
                q::set_user_branches(tx, id, &branches)?;
                tx.log(
                    "create",
                    "user",
                    id,
                    serde_json::json!({"username": username, "role": access.role.trim(),
                        "branch_ids": branches}),
                );
                tx.emit(user_event("user.created", id));
                Ok(id)
            })
            .await
    }

    pub async fn list_users(&self) -> DomainResult<Vec<UserRow>> {
        Ok(self.db.read(q::list_users).await?)
    }

    pub async fn user(&self, id: UserId) -> DomainResult<UserRow> {
        self.db
            .read(move |c| q::user_by_id(c, id))
            .await?
            .ok_or(DomainError::NotFound)
    }

    pub async fn user_by_username(&self, username: &str) -> DomainResult<UserRow> {
        let u = username.to_string();
        self.db
            .read(move |c| q::user_by_username(c, &u))
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Changes name, role and branches, active flag and language. Keeps at least one
    /// active user who can manage users.
    pub async fn update_user(
        &self,
        by: Option<&Actor>,
        id: UserId,
        change: UserChange,
    ) -> DomainResult<()> {
        let display_name = validate_display_name(&change.display_name)?;
        let (active, language) = (change.active, change.language);
        self.store
            .write(by, move |tx| {
                let before = q::user_by_id(tx, id)?.ok_or(DomainError::NotFound)?;
                let managers = super::roles::user_managers(tx)?;
                let (role, role_id, branches) = match &change.access {
                    Some(a) => {
                        let (role, role_id) = super::roles::resolve(tx, &a.role)?;
                        (role, role_id, check_branches(tx, &a.branches)?)
                    }
                    None => (before.role, before.role_id, before.branch_ids.clone()),
                };
                q::update_user(
                    tx,
                    id,
                    &UserUpdate {
                        display_name: &display_name,
                        role,
                        role_id,
                        active,
                        language,
                    },
                    tx.now(),
                )?;
                q::set_user_branches(tx, id, &branches)?;
                super::roles::ensure_a_user_manager(tx, managers)?;
                let after = q::user_by_id(tx, id)?.ok_or(DomainError::NotFound)?;
                // Open screens of this user re-check what they may see.
                if before.role_key != after.role_key
                    || before.active != active
                    || before.branch_ids != after.branch_ids
                {
                    tx.emit(Event::access_changed(id));
                }
                if !active {
                    q::delete_user_sessions(tx, id)?;
                }
                tx.log(
                    "update",
                    "user",
                    id,
                    serde_json::json!({
                        "display_name": [before.display_name, display_name],
                        "role": [before.role_key, after.role_key],
                        "branch_ids": [before.branch_ids, after.branch_ids],
                        "active": [before.active, active],
                    }),
                );
                tx.emit(user_event("user.updated", id));
                Ok(())
            })
            .await
    }

    /// Sets a user's e-mail address (empty clears it). Checked before anything is written.
    pub async fn set_email(&self, by: Option<&Actor>, id: UserId, email: &str) -> DomainResult<()> {
        let email = normalize_email(email)?;
        self.store
            .write(by, move |tx| {
                let before = q::user_by_id(tx, id)?.ok_or(DomainError::NotFound)?;
                if before.email == email {
                    return Ok(());
                }
                q::set_email(tx, id, email.as_deref(), tx.now())?;
                tx.log(
                    "update",
                    "user",
                    id,
                    serde_json::json!({ "email": [before.email, email] }),
                );
                tx.emit(user_event("user.updated", id));
                Ok(())
            })
            .await
    }

    pub async fn disable_user(&self, by: Option<&Actor>, username: &str) -> DomainResult<()> {
        let u = self.user_by_username(username).await?;
        let change = UserChange {
            display_name: u.display_name,
            access: None,
            active: false,
            language: u.language,
        };
        self.update_user(by, u.id, change).await
    }

    /// Sets a new password and ends the user's other sessions.
    pub async fn set_password(
        &self,
        by: Option<&Actor>,
        id: UserId,
        password: String,
    ) -> DomainResult<()> {
        validate_password(&password)?;
        let hash = self.hash(password).await?;
        self.store
            .write(by, move |tx| {
                if !q::set_password_hash(tx, id, &hash, tx.now())? {
                    return Err(DomainError::NotFound);
                }
                q::delete_user_sessions(tx, id)?;
                tx.log("password", "user", id, serde_json::json!({}));
                tx.emit(user_event("user.updated", id));
                // Every session ended: their sockets close.
                tx.emit(Event::access_changed(id));
                Ok(())
            })
            .await
    }

    pub async fn set_language(&self, id: UserId, lang: Language) -> DomainResult<()> {
        Ok(self
            .db
            .write(move |c| q::set_language(c, id, lang, now()))
            .await?)
    }

    /// Counts the attempt against the rate limits first (atomically, in the writer: no
    /// number of parallel attempts gets past the limit), then checks the password within
    /// the bound on parallel hashing, then settles the attempt's audit row.
    pub async fn sign_in(&self, s: SignIn<'_>) -> DomainResult<NewSession> {
        let username = s.username.trim().to_lowercase();
        let ip = s.ip.to_string();
        let ua = s.user_agent.to_string();
        let window = (self.login.window_minutes * 60) as i64;
        let (max_user, max_ip) = (
            self.login.max_failures_per_user as i64,
            self.login.max_failures_per_ip as i64,
        );
        let (u2, ip2, ua2) = (username.clone(), ip.clone(), ua.clone());
        // The attempt is recorded as a failure ("pending") before anything is verified.
        let begun = self
            .db
            .write(move |c| {
                let now = now();
                let since = now - window;
                let (uf, u_oldest) = q::recent_failures_for_user(c, &u2, since)?;
                let (ipf, ip_oldest) = q::recent_failures_for_ip(c, &ip2, since)?;
                let limited = if uf >= max_user {
                    u_oldest
                } else if ipf >= max_ip {
                    ip_oldest
                } else {
                    None
                };
                let user = q::user_by_username(c, &u2)?;
                let entry = |reason| AuditEntry {
                    username: &u2,
                    user_id: user.as_ref().map(|u| u.id),
                    success: false,
                    reason,
                    ip: &ip2,
                    user_agent: &ua2,
                };
                if let Some(oldest) = limited {
                    q::insert_login_audit(c, &entry("locked"), now)?;
                    return Ok(Err((oldest + window - now).max(1) as u64));
                }
                let id = q::insert_login_audit(c, &entry("pending"), now)?;
                Ok(Ok((id, user)))
            })
            .await?;
        let (attempt, user) = match begun {
            Ok(v) => v,
            Err(retry_after_secs) => return Err(DomainError::RateLimited { retry_after_secs }),
        };
        let settle = |success: bool, reason: &'static str| {
            let db = self.db.clone();
            async move {
                db.write(move |c| q::settle_login_attempt(c, attempt, success, reason, None))
                    .await
            }
        };
        let password = s.password.to_string();
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let wait = std::time::Duration::from_millis(self.login.hash_wait_ms);
        let verified = self
            .argon(Some(wait), move |h| match stored {
                Some(stored) => h.verify(&stored, &password),
                None => {
                    // The same work for an unknown name, so timing tells nothing.
                    h.verify(&h.dummy_hash, &password);
                    false
                }
            })
            .await;
        let ok = match verified {
            Ok(ok) => ok,
            Err(e) => {
                // Busy: the attempt stays counted (a flood gains nothing by it).
                settle(false, "busy").await?;
                return Err(e);
            }
        };
        let user = match (ok, user) {
            (true, Some(u)) if u.active => u,
            (true, Some(_)) => {
                settle(false, "disabled").await?;
                return Err(DomainError::Unauthenticated(Msg::new("login.failed")));
            }
            _ => {
                settle(false, "bad_credentials").await?;
                return Err(DomainError::Unauthenticated(Msg::new("login.failed")));
            }
        };
        let token = random_token(32);
        let csrf = random_token(24);
        let hash = token_hash(&token);
        let (uid, csrf2) = (user.id, csrf.clone());
        self.db
            .write(move |c| {
                q::insert_session(c, &hash, uid, &csrf2, &ip, &ua, now())?;
                q::settle_login_attempt(c, attempt, true, "ok", Some(uid))
            })
            .await?;
        Ok(NewSession {
            token,
            csrf_token: csrf,
            actor: actor_of(&user),
        })
    }

    /// The session's user, if the session exists, is within its idle and absolute limits,
    /// and its user is active.
    pub async fn session(&self, token: &str) -> DomainResult<Option<SessionInfo>> {
        let hash = token_hash(token);
        let idle = (self.session.idle_minutes * 60) as i64;
        let absolute = (self.session.absolute_hours * 3600) as i64;
        let h2 = hash.clone();
        let row = self.db.read(move |c| q::session_by_hash(c, &h2)).await?;
        let Some(row) = row else { return Ok(None) };
        let now = now();
        if !row.user.active || now - row.last_seen_at > idle || now - row.created_at > absolute {
            self.db.write(move |c| q::delete_session(c, &hash)).await?;
            return Ok(None);
        }
        if now - row.last_seen_at >= TOUCH_EVERY_SECS {
            self.db
                .write(move |c| q::touch_session(c, &hash, now))
                .await?;
        }
        Ok(Some(SessionInfo {
            actor: actor_of(&row.user),
            csrf_token: row.csrf_token,
        }))
    }

    pub async fn sign_out(&self, token: &str) -> DomainResult<()> {
        let hash = token_hash(token);
        let h2 = hash.clone();
        let user = self
            .db
            .read(move |c| Ok(q::session_by_hash(c, &h2)?.map(|r| r.user.id)))
            .await?;
        self.db.write(move |c| q::delete_session(c, &hash)).await?;
        // The session's sockets close at once rather than at their next check.
        if let Some(u) = user {
            self.access_changed(u);
        }
        Ok(())
    }

    pub async fn purge_expired_sessions(&self) -> DomainResult<usize> {
        let idle = (self.session.idle_minutes * 60) as i64;
        let absolute = (self.session.absolute_hours * 3600) as i64;
        Ok(self
            .db
            .write(move |c| {
                let now = now();
                q::purge_sessions(c, now - idle, now - absolute)
            })
            .await?)
    }

    pub async fn login_audit(
        &self,
        username: Option<String>,
        only_failures: bool,
        limit: i64,
        offset: i64,
    ) -> DomainResult<Vec<LoginAuditRow>> {
        Ok(self
            .db
            .read(move |c| {
                q::list_login_audit(c, username.as_deref(), only_failures, limit, offset)
            })
            .await?)
    }

    /// Creates an API token for `user_id` and returns it in clear, once.
    pub async fn create_token(
        &self,
        by: Option<&Actor>,
        user_id: UserId,
        name: &str,
    ) -> DomainResult<String> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 80 {
            return Err(DomainError::invalid(
                Msg::new("err.field.length")
                    .term("field", "field.token_name")
                    .with("max", 80),
            ));
        }
        if let Some(a) = by {
            if a.user_id != user_id && !a.can(super::Action::ManageUsers) {
                return Err(DomainError::Forbidden);
            }
        }
        let token = format!("crm_{}", random_token(32));
        let hash = token_hash(&token);
        let prefix: String = token.chars().take(10).collect();
        let name = name.to_string();
        self.store
            .write(by, move |tx| {
                let u = q::user_by_id(tx, user_id)?.ok_or(DomainError::NotFound)?;
                if !u.active {
                    return Err(DomainError::invalid("err.user.disabled"));
                }
                let id = q::insert_token(tx, user_id, &name, &hash, &prefix, tx.now())?;
                tx.log(
                    "create",
                    "api_token",
                    id,
                    serde_json::json!({"user": u.username, "name": name}),
                );
                tx.emit(user_event("user.updated", user_id));
                Ok(())
            })
            .await?;
        Ok(token)
    }

    pub async fn actor_for_token(&self, token: &str) -> DomainResult<Option<Actor>> {
        let hash = token_hash(token);
        let found = self
            .db
            .read(move |c| q::user_by_token_hash(c, &hash))
            .await?;
        let Some((id, user)) = found else {
            return Ok(None);
        };
        // Last-use time is informative; do not make every API call wait for a write.
        let db = self.db.clone();
        tokio::spawn(async move {
            let _ = db.write(move |c| q::touch_token(c, id, now())).await;
        });
        Ok(Some(actor_of(&user)))
    }

    pub async fn list_tokens(&self, user_id: Option<UserId>) -> DomainResult<Vec<TokenRow>> {
        Ok(self.db.read(move |c| q::list_tokens(c, user_id)).await?)
    }

    /// Revokes a token: its owner or an admin; `None` is the shell (`crm token revoke`).
    pub async fn revoke_token(&self, by: Option<&Actor>, id: i64) -> DomainResult<()> {
        let actor = by.cloned();
        self.store
            .write(by, move |tx| {
                let owner = q::token_owner(tx, id)?.ok_or(DomainError::NotFound)?;
                if let Some(a) = &actor {
                    if owner != a.user_id && !a.can(super::Action::ManageUsers) {
                        return Err(DomainError::NotFound);
                    }
                }
                q::revoke_token(tx, id, tx.now())?;
                tx.log("revoke", "api_token", id, serde_json::json!({}));
                tx.emit(user_event("user.updated", owner));
                // Sockets opened with the token close.
                tx.emit(Event::access_changed(owner));
                Ok(())
            })
            .await
    }
}

/// Screens listing staff and tokens (and presence) refresh on it: `user.created` or
/// `user.updated`, to those who manage users.
pub(crate) fn user_event(kind: &'static str, id: UserId) -> crate::events::Event {
    crate::events::Event::new(
        kind,
        serde_json::json!({"id": id}),
        crate::events::Audience::Can(super::Action::ManageUsers),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("ali.valiyev").is_ok());
        assert!(validate_username("a").is_err());
        assert!(validate_username("-x").is_err());
        assert!(validate_username("али").is_err());
    }

    #[test]
    fn hash_roundtrip() {
        let h = PasswordHasherCfg::new(&LoginConfig {
            argon2_memory_kib: 8192,
            argon2_iterations: 1,
            ..Default::default()
        });
        let hash = h.hash("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(h.verify(&hash, "correct horse"));
        assert!(!h.verify(&hash, "wrong horse"));
        assert!(!h.verify("garbage", "x"));
    }
}
