//! Users, sessions, login audit and API tokens.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;
use crate::model::{Language, Role, UserId};

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserRow {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    /// The built-in role whose record scope the user follows (their custom role's base).
    #[serde(rename = "base_role")]
    pub role: Role,
    /// The role's key: `admin`, `operator`, `master` or a custom role's key.
    #[serde(rename = "role")]
    pub role_key: String,
    /// The custom role, when the user has one.
    #[serde(skip)]
    pub role_id: Option<i64>,
    /// The custom role's permission keys as stored (None for a built-in role).
    #[serde(skip)]
    pub role_permissions: Option<String>,
    /// The branches the user works in; empty for every branch.
    pub branch_ids: Vec<i64>,
    pub active: bool,
    pub language: Language,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
    /// Optional address for staff notifications and the daily summary.
    pub email: Option<String>,
}

/// The user columns (and their custom role and branches) of the row aliased `u`.
const USER_COLS_U: &str = "u.id, u.username, u.display_name, u.role, u.active, u.language, u.password_hash, u.created_at, u.email, u.role_id, \
     (SELECT r.key FROM roles r WHERE r.id = u.role_id), \
     (SELECT r.permissions FROM roles r WHERE r.id = u.role_id), \
     (SELECT group_concat(b.branch_id, ' ') FROM user_branches b WHERE b.user_id = u.id)";

fn user_from_row(r: &Row) -> rusqlite::Result<UserRow> {
    user_at(r, 0)
}

/// A user whose USER_COLS_U start at column `at` (joins put other columns first).
fn user_at(r: &Row, at: usize) -> rusqlite::Result<UserRow> {
    let role: String = r.get(at + 3)?;
    let lang: String = r.get(at + 5)?;
    // The CHECK constraint admits only known roles.
    let role: Role = role.parse().unwrap_or(Role::Master);
    let custom_key: Option<String> = r.get(at + 10)?;
    let branches: Option<String> = r.get(at + 12)?;
    Ok(UserRow {
        id: r.get(at)?,
        username: r.get(at + 1)?,
        display_name: r.get(at + 2)?,
        role,
        role_key: custom_key.unwrap_or_else(|| role.as_str().to_string()),
        role_id: r.get(at + 9)?,
        role_permissions: r.get(at + 11)?,
        branch_ids: branches
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|b| b.parse().ok())
            .collect(),
        active: r.get(at + 4)?,
        language: Language::from_code(&lang).unwrap_or_default(),
        password_hash: r.get(at + 6)?,
        created_at: r.get(at + 7)?,
        email: r.get(at + 8)?,
    })
}

/// USER_COLS_U (kept as a function for the joins that build their SQL).
fn user_cols_u() -> &'static str {
    USER_COLS_U
}

pub struct NewUserRow<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    /// A custom role (whose base is `role`), or None for the built-in one.
    pub role_id: Option<i64>,
    pub language: Language,
    pub password_hash: &'a str,
}

pub fn insert_user(c: &Connection, u: &NewUserRow, now: i64) -> DbResult<UserId> {
    c.execute(
        "INSERT INTO users (username, display_name, role, active, language, password_hash, created_at, updated_at, role_id)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?6, ?7)",
        params![u.username, u.display_name, u.role.as_str(), u.language.code(), u.password_hash, now, u.role_id],
    )?;
    Ok(c.last_insert_rowid())
}

pub fn user_count(c: &Connection) -> DbResult<i64> {
    Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

pub fn user_by_username(c: &Connection, username: &str) -> DbResult<Option<UserRow>> {
    Ok(c.query_row(
        &format!("SELECT {USER_COLS_U} FROM users u WHERE u.username = ?1"),
        [username],
        user_from_row,
    )
    .optional()?)
}

pub fn user_by_id(c: &Connection, id: UserId) -> DbResult<Option<UserRow>> {
    Ok(c.query_row(
        &format!("SELECT {USER_COLS_U} FROM users u WHERE u.id = ?1"),
        [id],
        user_from_row,
    )
    .optional()?)
}

pub fn list_users(c: &Connection) -> DbResult<Vec<UserRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {USER_COLS_U} FROM users u ORDER BY u.active DESC, u.display_name COLLATE NOCASE"
    ))?;
    let rows = st.query_map([], user_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub struct UserUpdate<'a> {
    pub display_name: &'a str,
    pub role: Role,
    pub role_id: Option<i64>,
    pub active: bool,
    pub language: Language,
}

pub fn update_user(c: &Connection, id: UserId, u: &UserUpdate, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE users SET display_name = ?2, role = ?3, active = ?4, language = ?5, updated_at = ?6, role_id = ?7 WHERE id = ?1",
        params![id, u.display_name, u.role.as_str(), u.active, u.language.code(), now, u.role_id],
    )? == 1)
}

/// Replaces the branches a user works in (empty: every branch).
pub fn set_user_branches(c: &Connection, id: UserId, branches: &[i64]) -> DbResult<()> {
    c.prepare_cached("DELETE FROM user_branches WHERE user_id = ?1")?
        .execute([id])?;
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO user_branches (user_id, branch_id) VALUES (?1, ?2)",
    )?;
    for b in branches {
        st.execute([id, *b])?;
    }
    Ok(())
}

pub fn set_password_hash(c: &Connection, id: UserId, hash: &str, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, hash, now],
    )? == 1)
}

pub fn set_language(c: &Connection, id: UserId, lang: Language, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE users SET language = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, lang.code(), now],
    )?;
    Ok(())
}

/// Sets or clears (None) a user's e-mail address. False when there is no such user.
pub fn set_email(c: &Connection, id: UserId, email: Option<&str>, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE users SET email = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, email, now],
    )? == 1)
}

/// An active user's e-mail address, if they gave one.
pub fn active_user_email(c: &Connection, id: UserId) -> DbResult<Option<String>> {
    Ok(c.query_row(
        "SELECT email FROM users WHERE id = ?1 AND active = 1 AND email IS NOT NULL AND email <> ''",
        [id],
        |r| r.get(0),
    )
    .optional()?)
}

/// The addresses of active admins who gave one (the daily summary goes to them).
pub fn active_admin_emails(c: &Connection) -> DbResult<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT email FROM users WHERE role = 'admin' AND active = 1 AND email IS NOT NULL AND email <> '' ORDER BY id",
    )?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn count_active_admins(c: &Connection) -> DbResult<i64> {
    Ok(c.query_row(
        "SELECT count(*) FROM users WHERE role = 'admin' AND active = 1",
        [],
        |r| r.get(0),
    )?)
}

// ---- sessions ----

pub struct SessionRow {
    pub user: UserRow,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

pub fn insert_session(
    c: &Connection,
    token_hash: &[u8],
    user_id: UserId,
    csrf: &str,
    ip: &str,
    ua: &str,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, ip, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
        params![token_hash, user_id, csrf, now, ip, ua],
    )?;
    Ok(())
}

pub fn session_by_hash(c: &Connection, token_hash: &[u8]) -> DbResult<Option<SessionRow>> {
    let sql = format!(
        "SELECT s.csrf_token, s.created_at, s.last_seen_at, {} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
        user_cols_u()
    );
    let mut st = c.prepare_cached(&sql)?;
    Ok(st
        .query_row([token_hash], |r| {
            Ok(SessionRow {
                csrf_token: r.get(0)?,
                created_at: r.get(1)?,
                last_seen_at: r.get(2)?,
                user: user_at(r, 3)?,
            })
        })
        .optional()?)
}

pub fn touch_session(c: &Connection, token_hash: &[u8], now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
        params![token_hash, now],
    )?;
    Ok(())
}

pub fn delete_session(c: &Connection, token_hash: &[u8]) -> DbResult<()> {
    c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
    Ok(())
}

pub fn delete_user_sessions(c: &Connection, user_id: UserId) -> DbResult<usize> {
    Ok(c.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?)
}

pub fn purge_sessions(c: &Connection, idle_before: i64, created_before: i64) -> DbResult<usize> {
    Ok(c.execute(
        "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
        params![idle_before, created_before],
    )?)
}

// ---- login audit ----

pub struct AuditEntry<'a> {
    pub username: &'a str,
    pub user_id: Option<UserId>,
    pub success: bool,
    pub reason: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

pub fn insert_login_audit(c: &Connection, e: &AuditEntry, now: i64) -> DbResult<i64> {
    c.execute(
        "INSERT INTO login_audit (at, username, user_id, success, reason, ip, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            now,
            e.username,
            e.user_id,
            e.success,
            e.reason,
            e.ip,
            e.user_agent
        ],
    )?;
    Ok(c.last_insert_rowid())
}

/// Settles a sign-in attempt recorded (as a failure, reason `pending`) before its password
/// was checked.
pub fn settle_login_attempt(
    c: &Connection,
    id: i64,
    success: bool,
    reason: &str,
    user_id: Option<UserId>,
) -> DbResult<()> {
    c.execute(
        "UPDATE login_audit SET success = ?2, reason = ?3, user_id = coalesce(?4, user_id) WHERE id = ?1",
        params![id, success, reason, user_id],
    )?;
    Ok(())
}

/// Failures for `username` since `since` and after its last success; and the time of the
/// oldest of them.
pub fn recent_failures_for_user(
    c: &Connection,
    username: &str,
    since: i64,
) -> DbResult<(i64, Option<i64>)> {
    Ok(c.query_row(
        "SELECT count(*), min(at) FROM login_audit
         WHERE username = ?1 AND at >= ?2 AND success = 0
           AND at >= coalesce((SELECT max(at) FROM login_audit WHERE username = ?1 AND success = 1), 0)",
        params![username, since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

pub fn recent_failures_for_ip(
    c: &Connection,
    ip: &str,
    since: i64,
) -> DbResult<(i64, Option<i64>)> {
    Ok(c.query_row(
        "SELECT count(*), min(at) FROM login_audit WHERE ip = ?1 AND at >= ?2 AND success = 0",
        params![ip, since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LoginAuditRow {
    pub id: i64,
    pub at: i64,
    pub username: String,
    pub success: bool,
    pub reason: String,
    pub ip: String,
    pub user_agent: String,
}

pub fn list_login_audit(
    c: &Connection,
    username: Option<&str>,
    only_failures: bool,
    limit: i64,
    offset: i64,
) -> DbResult<Vec<LoginAuditRow>> {
    // Only the filters given become conditions (see `activity::list`).
    let mut cond = vec!["1"];
    if username.is_some() {
        cond.push("username = ?1");
    }
    if only_failures {
        cond.push("success = 0");
    }
    let mut st = c.prepare_cached(&format!(
        "SELECT id, at, username, success, reason, ip, user_agent FROM login_audit
         WHERE {} ORDER BY at DESC, id DESC LIMIT ?2 OFFSET ?3",
        cond.join(" AND ")
    ))?;
    let rows = st.query_map(params![username, limit, offset], |r| {
        Ok(LoginAuditRow {
            id: r.get(0)?,
            at: r.get(1)?,
            username: r.get(2)?,
            success: r.get(3)?,
            reason: r.get(4)?,
            ip: r.get(5)?,
            user_agent: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ---- API tokens ----

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenRow {
    pub id: i64,
    pub user_id: UserId,
    pub username: String,
    pub name: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub fn insert_token(
    c: &Connection,
    user_id: UserId,
    name: &str,
    hash: &[u8],
    prefix: &str,
    now: i64,
) -> DbResult<i64> {
    c.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user_id, name, hash, prefix, now],
    )?;
    Ok(c.last_insert_rowid())
}

/// The active user owning an unrevoked token, and the token's id.
pub fn user_by_token_hash(c: &Connection, hash: &[u8]) -> DbResult<Option<(i64, UserRow)>> {
    let sql = format!(
        "SELECT t.id, {} FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND u.active = 1",
        user_cols_u()
    );
    let mut st = c.prepare_cached(&sql)?;
    Ok(st
        .query_row([hash], |r| Ok((r.get(0)?, user_at(r, 1)?)))
        .optional()?)
}

pub fn touch_token(c: &Connection, id: i64, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn list_tokens(c: &Connection, user_id: Option<UserId>) -> DbResult<Vec<TokenRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT t.id, t.user_id, u.username, t.name, t.prefix, t.created_at, t.last_used_at, t.revoked_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE {} ORDER BY t.revoked_at IS NOT NULL, t.created_at DESC",
        if user_id.is_some() { "t.user_id = ?1" } else { "?1 IS NULL" }
    ))?;
    let rows = st.query_map([user_id], |r| {
        Ok(TokenRow {
            id: r.get(0)?,
            user_id: r.get(1)?,
            username: r.get(2)?,
            name: r.get(3)?,
            prefix: r.get(4)?,
            created_at: r.get(5)?,
            last_used_at: r.get(6)?,
            revoked_at: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn token_owner(c: &Connection, id: i64) -> DbResult<Option<UserId>> {
    Ok(
        c.query_row("SELECT user_id FROM api_tokens WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub fn revoke_token(c: &Connection, id: i64, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )? == 1)
}
