//! SQL for SIP extensions, ring groups and persisted registrations.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ExtensionRow {
    pub id: i64,
    pub number: String,
    pub display_name: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub enabled: bool,
    #[serde(skip)]
    pub secret: String,
    /// May call out through a trunk.
    pub outbound_allowed: bool,
    /// Comma-separated allowed prefixes; empty: national numbers only.
    pub outbound_prefixes: String,
    pub max_calls_per_hour: u32,
    /// Click-to-call sends auto-answer headers to this phone.
    pub auto_answer: bool,
    /// Digest algorithms offered to this phone, e.g. "MD5" or "SHA-256,MD5"; empty: the
    /// box-wide setting.
    pub digest: String,
    /// The branch the extension is of (none: the whole shop): a call to it with no
    /// other branch is that branch's.
    pub branch_id: Option<i64>,
}

const EXT_COLS: &str = "e.id, e.number, e.display_name, e.user_id, u.username, e.enabled, e.secret,
     e.outbound_allowed, e.outbound_prefixes, e.max_calls_per_hour, e.auto_answer,
     COALESCE(d.value, ''), e.branch_id
     FROM sip_extensions e LEFT JOIN users u ON u.id = e.user_id
     LEFT JOIN settings d ON d.key = 'sip.digest.ext.' || e.number";

fn ext_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExtensionRow> {
    Ok(ExtensionRow {
        id: r.get(0)?,
        number: r.get(1)?,
        display_name: r.get(2)?,
        user_id: r.get(3)?,
        username: r.get(4)?,
        enabled: r.get(5)?,
        secret: r.get(6)?,
        outbound_allowed: r.get(7)?,
        outbound_prefixes: r.get(8)?,
        max_calls_per_hour: r.get(9)?,
        auto_answer: r.get(10)?,
        digest: r.get(11)?,
        branch_id: r.get(12)?,
    })
}

pub fn list_extensions(c: &Connection) -> DbResult<Vec<ExtensionRow>> {
    let mut st = c.prepare_cached(&format!("SELECT {EXT_COLS} ORDER BY e.number"))?;
    let rows = st.query_map([], ext_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn extension_by_number(c: &Connection, number: &str) -> DbResult<Option<ExtensionRow>> {
    Ok(c.query_row(
        &format!("SELECT {EXT_COLS} WHERE e.number = ?1"),
        [number],
        ext_row,
    )
    .optional()?)
}

pub fn insert_extension(
    c: &Connection,
    number: &str,
    display_name: &str,
    user_id: Option<i64>,
    secret: &str,
    now: i64,
) -> DbResult<i64> {
    c.execute(
        "INSERT INTO sip_extensions (number, display_name, user_id, enabled, secret, created_at, updated_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?5)",
        params![number, display_name, user_id, secret, now],
    )?;
    Ok(c.last_insert_rowid())
}

/// Sets the branch an extension is of (None: the whole shop); false when no such number.
pub fn set_extension_branch(
    c: &Connection,
    number: &str,
    branch: Option<i64>,
    now: i64,
) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE sip_extensions SET branch_id = ?2, updated_at = ?3 WHERE number = ?1",
        params![number, branch, now],
    )? > 0)
}

/// Inserts or replaces the secret of an existing number (bulk import).
pub fn upsert_extension_secret(
    c: &Connection,
    number: &str,
    secret: &str,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "INSERT INTO sip_extensions (number, display_name, enabled, secret, created_at, updated_at)
         VALUES (?1, '', 1, ?2, ?3, ?3)
         ON CONFLICT(number) DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
        params![number, secret, now],
    )?;
    Ok(())
}

pub fn update_extension(
    c: &Connection,
    number: &str,
    display_name: &str,
    user_id: Option<i64>,
    enabled: bool,
    now: i64,
) -> DbResult<usize> {
    Ok(c.execute(
        "UPDATE sip_extensions SET display_name = ?2, user_id = ?3, enabled = ?4, updated_at = ?5
         WHERE number = ?1",
        params![number, display_name, user_id, enabled, now],
    )?)
}

pub fn set_extension_secret(
    c: &Connection,
    number: &str,
    secret: &str,
    now: i64,
) -> DbResult<usize> {
    Ok(c.execute(
        "UPDATE sip_extensions SET secret = ?2, updated_at = ?3 WHERE number = ?1",
        params![number, secret, now],
    )?)
}

pub fn delete_extension(c: &Connection, number: &str) -> DbResult<usize> {
    c.execute("DELETE FROM sip_bindings WHERE extension = ?1", [number])?;
    c.execute(
        "DELETE FROM settings WHERE key = ?1",
        [format!("sip.digest.ext.{number}")],
    )?;
    Ok(c.execute("DELETE FROM sip_extensions WHERE number = ?1", [number])?)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RingGroupRow {
    pub id: i64,
    pub number: String,
    pub name: String,
    /// "ring_all" or "sequential"
    pub strategy: String,
    pub member_timeout_secs: u32,
    pub overall_timeout_secs: u32,
    /// Extension numbers, in ringing order.
    pub members: Vec<String>,
    /// The branch the group answers for (none: the whole shop).
    pub branch_id: Option<i64>,
}

pub fn list_ring_groups(c: &Connection) -> DbResult<Vec<RingGroupRow>> {
    let mut st = c.prepare_cached(
        "SELECT id, number, name, strategy, member_timeout_secs, overall_timeout_secs, branch_id
         FROM sip_ring_groups ORDER BY number",
    )?;
    let mut groups: Vec<RingGroupRow> = st
        .query_map([], |r| {
            Ok(RingGroupRow {
                id: r.get(0)?,
                number: r.get(1)?,
                name: r.get(2)?,
                strategy: r.get(3)?,
                member_timeout_secs: r.get(4)?,
                overall_timeout_secs: r.get(5)?,
                members: Vec::new(),
                branch_id: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut m = c.prepare_cached(
        "SELECT e.number FROM sip_ring_group_members m JOIN sip_extensions e ON e.id = m.extension_id
         WHERE m.group_id = ?1 ORDER BY m.position",
    )?;
    for g in &mut groups {
        g.members = m
            .query_map([g.id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    }
    Ok(groups)
}

pub fn is_ring_group(c: &Connection, number: &str) -> DbResult<bool> {
    Ok(c.query_row(
        "SELECT EXISTS(SELECT 1 FROM sip_ring_groups WHERE number = ?1)",
        [number],
        |r| r.get(0),
    )?)
}

pub fn number_taken(c: &Connection, number: &str) -> DbResult<bool> {
    Ok(c.query_row(
        "SELECT EXISTS(SELECT 1 FROM sip_extensions WHERE number = ?1)
             OR EXISTS(SELECT 1 FROM sip_ring_groups WHERE number = ?1)",
        [number],
        |r| r.get(0),
    )?)
}

/// Creates or replaces a ring group (by number) with its members; returns its id.
#[allow(clippy::too_many_arguments)]
pub fn save_ring_group(
    c: &Connection,
    number: &str,
    name: &str,
    strategy: &str,
    member_timeout_secs: u32,
    overall_timeout_secs: u32,
    member_ids: &[i64],
    branch_id: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    c.execute(
        "INSERT INTO sip_ring_groups (number, name, strategy, member_timeout_secs, overall_timeout_secs,
            branch_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6, ?6)
         ON CONFLICT(number) DO UPDATE SET name = excluded.name, strategy = excluded.strategy,
           member_timeout_secs = excluded.member_timeout_secs,
           overall_timeout_secs = excluded.overall_timeout_secs, branch_id = excluded.branch_id,
           updated_at = excluded.updated_at",
        params![number, name, strategy, member_timeout_secs, overall_timeout_secs, now, branch_id],
    )?;
    let id: i64 = c.query_row(
        "SELECT id FROM sip_ring_groups WHERE number = ?1",
        [number],
        |r| r.get(0),
    )?;
    c.execute(
        "DELETE FROM sip_ring_group_members WHERE group_id = ?1",
        [id],
    )?;
    for (pos, ext) in member_ids.iter().enumerate() {
        c.execute(
            "INSERT INTO sip_ring_group_members (group_id, extension_id, position) VALUES (?1, ?2, ?3)",
            params![id, ext, pos as i64],
        )?;
    }
    Ok(id)
}

pub fn delete_ring_group(c: &Connection, number: &str) -> DbResult<usize> {
    Ok(c.execute("DELETE FROM sip_ring_groups WHERE number = ?1", [number])?)
}

#[derive(Debug, Clone)]
pub struct BindingRow {
    pub extension: String,
    pub contact: String,
    pub transport: String,
    pub source: String,
    pub expires_at: i64,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: String,
}

pub fn upsert_binding(c: &Connection, b: &BindingRow) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO sip_bindings (extension, contact, transport, source, expires_at, call_id, cseq, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(extension, contact) DO UPDATE SET transport = excluded.transport,
           source = excluded.source, expires_at = excluded.expires_at, call_id = excluded.call_id,
           cseq = excluded.cseq, user_agent = excluded.user_agent",
    )?
    .execute(params![
        b.extension,
        b.contact,
        b.transport,
        b.source,
        b.expires_at,
        b.call_id,
        b.cseq,
        b.user_agent
    ])?;
    Ok(())
}

pub fn delete_binding(c: &Connection, extension: &str, contact: &str) -> DbResult<()> {
    c.prepare_cached("DELETE FROM sip_bindings WHERE extension = ?1 AND contact = ?2")?
        .execute(params![extension, contact])?;
    Ok(())
}

/// Live bindings; expired ones are deleted on the way.
pub fn load_bindings(c: &Connection, now: i64) -> DbResult<Vec<BindingRow>> {
    let mut st = c.prepare_cached(
        "SELECT extension, contact, transport, source, expires_at, call_id, cseq, user_agent
         FROM sip_bindings WHERE expires_at > ?1",
    )?;
    let rows = st.query_map([now], |r| {
        Ok(BindingRow {
            extension: r.get(0)?,
            contact: r.get(1)?,
            transport: r.get(2)?,
            source: r.get(3)?,
            expires_at: r.get(4)?,
            call_id: r.get(5)?,
            cseq: r.get(6)?,
            user_agent: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete_expired_bindings(c: &Connection, now: i64) -> DbResult<usize> {
    Ok(c.execute("DELETE FROM sip_bindings WHERE expires_at <= ?1", [now])?)
}

pub fn set_extension_outbound(
    c: &Connection,
    number: &str,
    allowed: bool,
    prefixes: &str,
    max_per_hour: u32,
    auto_answer: bool,
    now: i64,
) -> DbResult<usize> {
    Ok(c.execute(
        "UPDATE sip_extensions SET outbound_allowed = ?2, outbound_prefixes = ?3,
           max_calls_per_hour = ?4, auto_answer = ?5, updated_at = ?6 WHERE number = ?1",
        params![number, allowed, prefixes, max_per_hour, auto_answer, now],
    )?)
}

/// The digest choice of an extension lives in `settings` (key `sip.digest.ext.NUMBER`;
/// none: the box-wide `sip.digest`), so it needs no schema change. 0: no such extension.
pub fn set_extension_digest(
    c: &Connection,
    number: &str,
    digest: &str,
    now: i64,
) -> DbResult<usize> {
    let n = c.execute(
        "UPDATE sip_extensions SET updated_at = ?2 WHERE number = ?1",
        params![number, now],
    )?;
    if n == 0 {
        return Ok(0);
    }
    let key = format!("sip.digest.ext.{number}");
    if digest.is_empty() {
        c.execute("DELETE FROM settings WHERE key = ?1", [&key])?;
    } else {
        super::settings::set(c, &key, digest, now)?;
    }
    Ok(n)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DidRow {
    /// The dialled number as the provider delivers it.
    pub did: String,
    /// Extension or ring group in business hours.
    pub destination: String,
    /// Extension or ring group after hours (none: `destination` always).
    pub after_hours: Option<String>,
    /// The branch the number belongs to (none: the whole shop): its calls are the
    /// branch's, and its business hours (when it has its own) decide after hours.
    #[serde(default)]
    pub branch_id: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TrunkRow {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: u16,
    /// "UDP" or "TCP".
    pub transport: String,
    pub username: String,
    #[serde(skip)]
    pub secret: String,
    pub auth_username: String,
    pub from_domain: String,
    pub register: bool,
    pub expires: u32,
    pub caller_id: String,
    /// Further provider addresses (comma-separated IPs).
    pub allow: String,
    pub dids: Vec<DidRow>,
}

pub fn list_trunks(c: &Connection) -> DbResult<Vec<TrunkRow>> {
    let mut st = c.prepare_cached(
        "SELECT id, name, host, port, transport, username, secret, auth_username, from_domain,
                register, expires, caller_id, allow FROM sip_trunks ORDER BY name",
    )?;
    let mut trunks: Vec<TrunkRow> = st
        .query_map([], |r| {
            Ok(TrunkRow {
                id: r.get(0)?,
                name: r.get(1)?,
                host: r.get(2)?,
                port: r.get(3)?,
                transport: r.get(4)?,
                username: r.get(5)?,
                secret: r.get(6)?,
                auth_username: r.get(7)?,
                from_domain: r.get(8)?,
                register: r.get(9)?,
                expires: r.get(10)?,
                caller_id: r.get(11)?,
                allow: r.get(12)?,
                dids: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut d = c.prepare_cached(
        "SELECT did, destination, after_hours, branch_id FROM sip_dids WHERE trunk_id = ?1 ORDER BY did",
    )?;
    for t in &mut trunks {
        t.dids = d
            .query_map([t.id], |r| {
                Ok(DidRow {
                    did: r.get(0)?,
                    destination: r.get(1)?,
                    after_hours: r.get(2)?,
                    branch_id: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(trunks)
}

/// Creates or replaces a trunk (by name) with its DIDs; an empty `secret` keeps the
/// stored one. Returns the id.
pub fn save_trunk(c: &Connection, t: &TrunkRow, now: i64) -> DbResult<i64> {
    c.execute(
        "INSERT INTO sip_trunks (name, host, port, transport, username, secret, auth_username,
            from_domain, register, expires, caller_id, allow, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         ON CONFLICT(name) DO UPDATE SET host = excluded.host, port = excluded.port,
           transport = excluded.transport, username = excluded.username,
           secret = CASE WHEN excluded.secret = '' THEN sip_trunks.secret ELSE excluded.secret END,
           auth_username = excluded.auth_username, from_domain = excluded.from_domain,
           register = excluded.register, expires = excluded.expires,
           caller_id = excluded.caller_id, allow = excluded.allow, updated_at = excluded.updated_at",
        params![
            t.name,
            t.host,
            t.port,
            t.transport,
            t.username,
            t.secret,
            t.auth_username,
            t.from_domain,
            t.register,
            t.expires,
            t.caller_id,
            t.allow,
            now
        ],
    )?;
    let id: i64 = c.query_row(
        "SELECT id FROM sip_trunks WHERE name = ?1",
        [&t.name],
        |r| r.get(0),
    )?;
    c.execute("DELETE FROM sip_dids WHERE trunk_id = ?1", [id])?;
    for d in &t.dids {
        c.execute(
            "INSERT INTO sip_dids (trunk_id, did, destination, after_hours, branch_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, d.did, d.destination, d.after_hours, d.branch_id],
        )?;
    }
    Ok(id)
}

pub fn trunk_has_secret(c: &Connection, name: &str) -> DbResult<bool> {
    Ok(c.query_row(
        "SELECT EXISTS(SELECT 1 FROM sip_trunks WHERE name = ?1 AND secret <> '')",
        [name],
        |r| r.get(0),
    )?)
}

pub fn delete_trunk(c: &Connection, id: i64) -> DbResult<usize> {
    Ok(c.execute("DELETE FROM sip_trunks WHERE id = ?1", [id])?)
}

/// The values of several runtime settings, in the order asked.
pub fn settings_values(c: &Connection, keys: &[&str]) -> DbResult<Vec<Option<String>>> {
    keys.iter().map(|k| super::settings::get(c, k)).collect()
}
