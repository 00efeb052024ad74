//! Accounts: users, passwords (argon2id), sign-in with rate limiting and audit, sessions
//! and API tokens.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::config::{LoginConfig, SessionConfig};
use crate::db::accounts::{self as q, AuditEntry, NewUserRow, UserUpdate};
pub use crate::db::accounts::{LoginAuditRow, TokenRow, UserRow};
use crate::db::{now, Db};
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

pub fn actor_of(u: &UserRow) -> Actor {
    Actor {
        user_id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role,
        language: u.language,
    }
}

/// Account operations over the database.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    store: Store,
    hasher: PasswordHasherCfg,
    login: LoginConfig,
    session: SessionConfig,
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
            db: store.db().clone(),
            store,
            login,
            session,
        }
    }

    pub fn hasher(&self) -> &PasswordHasherCfg {
        &self.hasher
    }

    async fn hash(&self, password: String) -> DomainResult<String> {
        let h = self.hasher.clone();
        tokio::task::spawn_blocking(move || h.hash(&password))
            .await
            .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))
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
                let id = q::insert_user(
                    tx,
                    &NewUserRow {
                        username: &username,
                        display_name: &display_name,
                        role: u.role,
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
                tx.log(
                    "create",
                    "user",
                    id,
                    serde_json::json!({"username": username, "role": u.role}),
                );
                tx.emit(user_event(id));
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

    /// Changes name, role, active flag and language. Keeps at least one active admin.
    pub async fn update_user(
        &self,
        by: Option<&Actor>,
        id: UserId,
        display_name: &str,
        role: Role,
        active: bool,
        language: Language,
    ) -> DomainResult<()> {
        let display_name = validate_display_name(display_name)?;
        self.store
            .write(by, move |tx| {
                let before = q::user_by_id(tx, id)?.ok_or(DomainError::NotFound)?;
                let was_admin = before.role == Role::Admin && before.active;
                let stays_admin = role == Role::Admin && active;
                if was_admin && !stays_admin && q::count_active_admins(tx)? <= 1 {
                    return Err(DomainError::conflict("err.user.last_admin"));
                }
                q::update_user(
                    tx,
                    id,
                    &UserUpdate {
                        display_name: &display_name,
                        role,
                        active,
                        language,
                    },
                    tx.now(),
                )?;
                if !active {
                    q::delete_user_sessions(tx, id)?;
                }
                tx.log(
                    "update",
                    "user",
                    id,
                    serde_json::json!({
                        "display_name": [before.display_name, display_name],
                        "role": [before.role, role],
                        "active": [before.active, active],
                    }),
                );
                tx.emit(user_event(id));
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
                tx.emit(user_event(id));
                Ok(())
            })
            .await
    }

    pub async fn disable_user(&self, by: Option<&Actor>, username: &str) -> DomainResult<()> {
        let u = self.user_by_username(username).await?;
        self.update_user(by, u.id, &u.display_name, u.role, false, u.language)
            .await
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
                tx.emit(user_event(id));
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

    /// Checks the rate limits, then the password; records the attempt either way.
    pub async fn sign_in(&self, s: SignIn<'_>) -> DomainResult<NewSession> {
        let username = s.username.trim().to_lowercase();
        let ip = s.ip.to_string();
        let window = (self.login.window_minutes * 60) as i64;
        let (max_user, max_ip) = (
            self.login.max_failures_per_user as i64,
            self.login.max_failures_per_ip as i64,
        );
        let (u2, ip2) = (username.clone(), ip.clone());
        let (user, limited) = self
            .db
            .read(move |c| {
                let since = now() - window;
                let (uf, u_oldest) = q::recent_failures_for_user(c, &u2, since)?;
                let (ipf, ip_oldest) = q::recent_failures_for_ip(c, &ip2, since)?;
                let limited = if uf >= max_user {
                    u_oldest
                } else if ipf >= max_ip {
                    ip_oldest
                } else {
                    None
                };
                Ok((q::user_by_username(c, &u2)?, limited))
            })
            .await?;
        let audit = |success: bool, reason: &'static str, user_id: Option<UserId>| {
            let (username, ip, ua) = (username.clone(), ip.clone(), s.user_agent.to_string());
            async move {
                self.db
                    .write(move |c| {
                        q::insert_login_audit(
                            c,
                            &AuditEntry {
                                username: &username,
                                user_id,
                                success,
                                reason,
                                ip: &ip,
                                user_agent: &ua,
                            },
                            now(),
                        )
                    })
                    .await
            }
        };
        if let Some(oldest) = limited {
            audit(false, "locked", user.as_ref().map(|u| u.id)).await?;
            let retry = (oldest + window - now()).max(1) as u64;
            return Err(DomainError::RateLimited {
                retry_after_secs: retry,
            });
        }
        let hasher = self.hasher.clone();
        let password = s.password.to_string();
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || match stored {
            Some(h) => hasher.verify(&h, &password),
            None => {
                hasher.verify(&hasher.dummy_hash, &password);
                false
            }
        })
        .await
        .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))?;
        let user = match (ok, user) {
            (true, Some(u)) if u.active => u,
            (true, Some(u)) => {
                audit(false, "disabled", Some(u.id)).await?;
                return Err(DomainError::Unauthenticated(Msg::new("login.failed")));
            }
            (_, u) => {
                audit(false, "bad_credentials", u.map(|u| u.id)).await?;
                return Err(DomainError::Unauthenticated(Msg::new("login.failed")));
            }
        };
        let token = random_token(32);
        let csrf = random_token(24);
        let hash = token_hash(&token);
        let (uid, csrf2, ua, ip2) = (user.id, csrf.clone(), s.user_agent.to_string(), ip.clone());
        let uname = username.clone();
        self.db
            .write(move |c| {
                let now = now();
                q::insert_session(c, &hash, uid, &csrf2, &ip2, &ua, now)?;
                q::insert_login_audit(
                    c,
                    &AuditEntry {
                        username: &uname,
                        user_id: Some(uid),
                        success: true,
                        reason: "ok",
                        ip: &ip2,
                        user_agent: &ua,
                    },
                    now,
                )
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
        Ok(self.db.write(move |c| q::delete_session(c, &hash)).await?)
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
                tx.emit(user_event(user_id));
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
                tx.emit(user_event(owner));
                Ok(())
            })
            .await
    }
}

/// Admin screens listing staff and tokens refresh on it.
fn user_event(id: UserId) -> crate::events::Event {
    crate::events::Event::new(
        "user.updated",
        serde_json::json!({"id": id}),
        crate::events::Audience::Admins,
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
