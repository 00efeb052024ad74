//! Conversations with customers, their messages and files, quick replies and the shop's
//! procedures (SOP documents).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConversationRow {
    pub id: i64,
    /// `telegram` or `web`.
    pub channel: String,
    /// The Telegram chat id, or the widget visitor's id.
    pub address: String,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    /// The sender's own name, as the channel gave it.
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    pub assignee_id: Option<i64>,
    pub assignee_name: Option<String>,
    pub unread: i64,
    /// Since when the customer waits for an answer (Unix seconds), if they do.
    pub waiting_since: Option<i64>,
    pub last_message_at: i64,
    pub last_preview: String,
    pub asked_contact_at: Option<i64>,
    pub opened_at: i64,
    pub first_response_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub created_at: i64,
}

const CONV_COLS: &str = "v.id, v.channel, v.address, v.customer_id, cu.name, v.title, v.state,
    v.assignee_id, us.display_name, v.unread, v.waiting_since, v.last_message_at, v.last_preview,
    v.asked_contact_at, v.opened_at, v.first_response_at, v.closed_at, v.created_at";
const CONV_FROM: &str = "conversations v
    LEFT JOIN customers cu ON cu.id = v.customer_id
    LEFT JOIN users us ON us.id = v.assignee_id";

fn conv_row(r: &Row) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        address: r.get(2)?,
        customer_id: r.get(3)?,
        customer_name: r.get(4)?,
        title: r.get(5)?,
        state: r.get(6)?,
        assignee_id: r.get(7)?,
        assignee_name: r.get(8)?,
        unread: r.get(9)?,
        waiting_since: r.get(10)?,
        last_message_at: r.get(11)?,
        last_preview: r.get(12)?,
        asked_contact_at: r.get(13)?,
        opened_at: r.get(14)?,
        first_response_at: r.get(15)?,
        closed_at: r.get(16)?,
        created_at: r.get(17)?,
    })
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<ConversationRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {CONV_COLS} FROM {CONV_FROM} WHERE v.id = ?1"
    ))?
    .query_row([id], conv_row)
    .optional()?)
}

pub fn by_address(c: &Connection, channel: &str, address: &str) -> DbResult<Option<i64>> {
    Ok(
        c.prepare_cached("SELECT id FROM conversations WHERE channel = ?1 AND address = ?2")?
            .query_row(params![channel, address], |r| r.get(0))
            .optional()?,
    )
}

/// The conversation of a chat, created on its first message. Returns (id, created).
pub fn open_for(
    c: &Connection,
    channel: &str,
    address: &str,
    title: &str,
    customer_id: Option<i64>,
    now: i64,
) -> DbResult<(i64, bool)> {
    if let Some(id) = by_address(c, channel, address)? {
        return Ok((id, false));
    }
    c.prepare_cached(
        "INSERT INTO conversations (channel, address, customer_id, title, last_message_at,
                                    opened_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)",
    )?
    .execute(params![channel, address, customer_id, title, now])?;
    Ok((c.last_insert_rowid(), true))
}

/// A customer message arrived: counts as unread, starts the wait, reopens a closed thread.
/// Returns true when the thread was closed and is now open again.
pub fn on_inbound(c: &Connection, id: i64, preview: &str, now: i64) -> DbResult<bool> {
    let was_closed: bool = c
        .prepare_cached("SELECT state = 'closed' FROM conversations WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    c.prepare_cached(
        "UPDATE conversations SET unread = unread + 1,
                waiting_since = coalesce(waiting_since, ?3), last_message_at = ?3,
                last_preview = ?2,
                opened_at = CASE WHEN state = 'closed' THEN ?3 ELSE opened_at END,
                first_response_at = CASE WHEN state = 'closed' THEN NULL ELSE first_response_at END,
                closed_at = NULL, state = 'open'
         WHERE id = ?1",
    )?
    .execute(params![id, preview, now])?;
    Ok(was_closed)
}

/// Staff answered: the customer no longer waits, and the thread counts as read.
pub fn on_reply(c: &Connection, id: i64, preview: &str, now: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE conversations SET unread = 0, waiting_since = NULL, last_message_at = ?3,
                last_preview = ?2, first_response_at = coalesce(first_response_at, ?3)
         WHERE id = ?1",
    )?
    .execute(params![id, preview, now])?;
    Ok(())
}

pub fn mark_read(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(
        c.prepare_cached("UPDATE conversations SET unread = 0 WHERE id = ?1 AND unread > 0")?
            .execute([id])?
            == 1,
    )
}

pub fn set_assignee(c: &Connection, id: i64, user: Option<i64>) -> DbResult<()> {
    c.prepare_cached("UPDATE conversations SET assignee_id = ?2 WHERE id = ?1")?
        .execute(params![id, user])?;
    Ok(())
}

/// Ties a reply to the outbox row that delivers it.
pub fn set_outbox(c: &Connection, message: i64, outbox_id: Option<i64>) -> DbResult<()> {
    c.prepare_cached("UPDATE conversation_messages SET outbox_id = ?2 WHERE id = ?1")?
        .execute(params![message, outbox_id])?;
    Ok(())
}

pub fn delete(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(c.execute("DELETE FROM conversations WHERE id = ?1", [id])? == 1)
}

pub fn set_customer(c: &Connection, id: i64, customer: Option<i64>) -> DbResult<()> {
    c.prepare_cached("UPDATE conversations SET customer_id = ?2 WHERE id = ?1")?
        .execute(params![id, customer])?;
    Ok(())
}

pub fn set_title(c: &Connection, id: i64, title: &str) -> DbResult<()> {
    c.prepare_cached("UPDATE conversations SET title = ?2 WHERE id = ?1 AND title <> ?2")?
        .execute(params![id, title])?;
    Ok(())
}

pub fn asked_contact(c: &Connection, id: i64, now: i64) -> DbResult<()> {
    c.prepare_cached("UPDATE conversations SET asked_contact_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

pub fn close(c: &Connection, id: i64, now: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE conversations SET state = 'closed', closed_at = ?2, unread = 0,
                waiting_since = NULL WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

pub fn reopen(c: &Connection, id: i64, now: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE conversations SET state = 'open', closed_at = NULL, opened_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// Which conversations a list shows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// `open`, `closed` or None for both.
    pub state: Option<String>,
    /// Some(None): unassigned; Some(Some(u)): assigned to u.
    pub assignee: Option<Option<i64>>,
    /// Only these customers' threads (a master's scope); None: no limit.
    pub customers: Option<Vec<i64>>,
    /// A branch-scoped user's branches: threads of those branches and shop-wide ones.
    pub branches: Option<Vec<i64>>,
    /// Matches the sender's name (by prefix), the customer's phone tail, or the text of
    /// the newest matching messages.
    pub search: Option<String>,
    /// The customers' search-index expression for the same words (names in every
    /// script, phones), built by `domain::search::fts_expression`.
    pub customer_match: Option<String>,
    pub customer_id: Option<i64>,
    pub unread_only: bool,
    /// Keyset paging: rows strictly older than (last_message_at, id).
    pub before: Option<(i64, i64)>,
    pub limit: i64,
}

/// A word is looked for in this many newest matching messages (an older thread is found
/// by its customer, or from the customer's card).
const MESSAGE_HITS: i64 = 2000;

/// A thread's branch: the branch of its customer's latest order (none for a thread with
/// no customer, or a customer with no order: shop-wide). As SQL over `v`.
const CONV_BRANCH: &str = "(SELECT o.branch_id FROM orders o WHERE o.customer_id = v.customer_id
    ORDER BY o.id DESC LIMIT 1)";

/// The condition keeping threads to a branch-scoped user's branches (and the shop-wide
/// ones); empty for every branch.
fn in_branches(branches: Option<&[i64]>) -> String {
    match branches {
        None => String::new(),
        Some(ids) => format!(" AND coalesce({CONV_BRANCH} IN ({}), 1)", id_list(ids)),
    }
}

/// The branch of thread `conv` (see [`CONV_BRANCH`]).
pub fn branch_of(c: &Connection, conv: &ConversationRow) -> DbResult<Option<i64>> {
    let Some(cid) = conv.customer_id else {
        return Ok(None);
    };
    Ok(c.prepare_cached(
        "SELECT o.branch_id FROM orders o WHERE o.customer_id = ?1 ORDER BY o.id DESC LIMIT 1",
    )?
    .query_row([cid], |r| r.get(0))
    .optional()?)
}

/// Ids as an SQL list (integers only, so nothing typed reaches the statement).
fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn fts_query(q: &str) -> String {
    // Each word as a quoted prefix term, so punctuation cannot be read as FTS syntax.
    q.split_whitespace()
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn list(c: &Connection, f: &ListFilter) -> DbResult<Vec<ConversationRow>> {
    let mut sql = format!("SELECT {CONV_COLS} FROM {CONV_FROM} WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let arg = |v: rusqlite::types::Value, args: &mut Vec<_>| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(s) = &f.state {
        let p = arg(s.clone().into(), &mut args);
        sql += &format!(" AND v.state = {p}");
    }
    match f.assignee {
        Some(None) => sql += " AND v.assignee_id IS NULL",
        Some(Some(u)) => {
            let p = arg(u.into(), &mut args);
            sql += &format!(" AND v.assignee_id = {p}");
        }
        None => {}
    }
    if let Some(ids) = &f.customers {
        sql += &format!(" AND v.customer_id IN ({})", id_list(ids));
    }
    sql += &in_branches(f.branches.as_deref());
    if let Some(cid) = f.customer_id {
        let p = arg(cid.into(), &mut args);
        sql += &format!(" AND v.customer_id = {p}");
    }
    if f.unread_only {
        sql += " AND v.unread > 0";
    }
    let mut with = String::new();
    if let Some(q) = f.search.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        // Each term reaches its rows through an index (MULTI-INDEX OR): the newest
        // matching messages, customers through the core's search index (names in every
        // script, phones), phone tails, and the sender's own name by prefix.
        let pf = arg(fts_query(q).into(), &mut args);
        with = format!(
            "WITH hits AS (SELECT m.conversation_id AS id FROM conversation_messages_fts f
                           JOIN conversation_messages m ON m.id = f.rowid
                           WHERE conversation_messages_fts MATCH {pf}
                           ORDER BY f.rowid DESC LIMIT {MESSAGE_HITS}) "
        );
        let prefix = format!("{}%", q.replace(['%', '_'], ""));
        let pt = arg(prefix.into(), &mut args);
        let mut cond = format!("v.id IN (SELECT id FROM hits) OR v.title LIKE {pt}");
        if let Some(expr) = &f.customer_match {
            let pc = arg(expr.clone().into(), &mut args);
            cond += &format!(
                " OR v.customer_id IN (SELECT CAST(ref AS INTEGER) FROM search_index
                                       WHERE search_index MATCH {pc} AND kind = 'c')"
            );
        }
        let digits: String = q.chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.len() >= 4 {
            let pd = arg(format!("%{digits}").into(), &mut args);
            cond += &format!(
                " OR v.customer_id IN (SELECT customer_id FROM customer_phones WHERE e164 LIKE {pd})"
            );
        }
        sql += &format!(" AND ({cond})");
    }
    if let Some((at, id)) = f.before {
        let pa = arg(at.into(), &mut args);
        let pi = arg(id.into(), &mut args);
        sql += &format!(" AND (v.last_message_at, v.id) < ({pa}, {pi})");
    }
    let pl = arg(f.limit.into(), &mut args);
    sql += &format!(" ORDER BY v.last_message_at DESC, v.id DESC LIMIT {pl}");
    let sql = with + &sql;
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), conv_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open threads with unread customer messages: unassigned ones and those of `user`
/// (the header badge), limited to `customers` when given.
pub fn unread_count(
    c: &Connection,
    user: i64,
    customers: Option<&[i64]>,
    branches: Option<&[i64]>,
) -> DbResult<i64> {
    let mut sql = "SELECT count(*) FROM conversations v WHERE v.state = 'open' AND v.unread > 0
                   AND (v.assignee_id IS NULL OR v.assignee_id = ?1)"
        .to_string();
    if let Some(ids) = customers {
        sql += &format!(" AND v.customer_id IN ({})", id_list(ids));
    }
    sql += &in_branches(branches);
    Ok(c.prepare_cached(&sql)?.query_row([user], |r| r.get(0))?)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MessageRow {
    pub id: i64,
    pub conversation_id: i64,
    /// `in` (the customer), `out` (a reply), `note` (staff only) or `event`.
    pub direction: String,
    /// text, photo, document, voice, video, audio, sticker, location, contact; for events:
    /// assigned, transferred, closed, reopened, linked.
    pub kind: String,
    pub author_id: Option<i64>,
    pub author_name: Option<String>,
    pub body: String,
    pub order_id: Option<i64>,
    pub order_number: Option<String>,
    pub file_name: Option<String>,
    pub file_mime: Option<String>,
    pub file_size: Option<i64>,
    /// pending, stored, refused, failed.
    pub file_state: Option<String>,
    pub file_error: Option<String>,
    /// A reply's delivery: pending, sending, sent, failed, dead.
    pub delivery: Option<String>,
    pub delivery_error: Option<String>,
    pub created_at: i64,
}

const MSG_COLS: &str = "m.id, m.conversation_id, m.direction, m.kind, m.author_id, u.display_name,
    m.body, m.order_id, o.number, m.file_name, m.file_mime, m.file_size, m.file_state,
    m.file_error, ob.state, ob.last_error, m.created_at";
const MSG_FROM: &str = "conversation_messages m
    LEFT JOIN users u ON u.id = m.author_id
    LEFT JOIN orders o ON o.id = m.order_id
    LEFT JOIN notify_outbox ob ON ob.id = m.outbox_id";

fn msg_row(r: &Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        direction: r.get(2)?,
        kind: r.get(3)?,
        author_id: r.get(4)?,
        author_name: r.get(5)?,
        body: r.get(6)?,
        order_id: r.get(7)?,
        order_number: r.get(8)?,
        file_name: r.get(9)?,
        file_mime: r.get(10)?,
        file_size: r.get(11)?,
        file_state: r.get(12)?,
        file_error: r.get(13)?,
        delivery: r.get(14)?,
        delivery_error: r.get(15)?,
        created_at: r.get(16)?,
    })
}

/// The newest `limit` messages of a thread older than `before` (a message id), oldest first.
pub fn thread(
    c: &Connection,
    conversation: i64,
    before: Option<i64>,
    limit: i64,
) -> DbResult<Vec<MessageRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM {MSG_FROM}
         WHERE m.conversation_id = ?1 AND m.id < ?2 ORDER BY m.id DESC LIMIT ?3"
    ))?;
    let rows = st.query_map(
        params![conversation, before.unwrap_or(i64::MAX), limit],
        msg_row,
    )?;
    let mut v: Vec<MessageRow> = rows.collect::<Result<_, _>>()?;
    v.reverse();
    Ok(v)
}

pub fn message(c: &Connection, id: i64) -> DbResult<Option<MessageRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM {MSG_FROM} WHERE m.id = ?1"
    ))?
    .query_row([id], msg_row)
    .optional()?)
}

/// The customer's messages about an order and the replies to them (the order page).
pub fn about_order(c: &Connection, order: i64, limit: i64) -> DbResult<Vec<MessageRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM {MSG_FROM}
         WHERE m.order_id = ?1 AND m.direction IN ('in', 'out') ORDER BY m.id DESC LIMIT ?2"
    ))?;
    let rows = st.query_map(params![order, limit], msg_row)?;
    let mut v: Vec<MessageRow> = rows.collect::<Result<_, _>>()?;
    v.reverse();
    Ok(v)
}

/// A message to store.
#[derive(Debug, Clone, Default)]
pub struct NewMessage<'a> {
    pub conversation_id: i64,
    pub direction: &'a str,
    pub kind: &'a str,
    pub author_id: Option<i64>,
    pub body: &'a str,
    pub order_id: Option<i64>,
    pub tg_update_id: Option<i64>,
    pub tg_message_id: Option<i64>,
    pub file_id: Option<&'a str>,
    pub file_name: Option<&'a str>,
    pub file_mime: Option<&'a str>,
    pub file_size: Option<i64>,
    pub file_path: Option<&'a str>,
    pub file_state: Option<&'a str>,
    pub file_error: Option<&'a str>,
    pub outbox_id: Option<i64>,
}

/// Stores a message; None when the Telegram update was stored before.
pub fn insert_message(c: &Connection, m: &NewMessage<'_>, now: i64) -> DbResult<Option<i64>> {
    let n = c
        .prepare_cached(
            "INSERT INTO conversation_messages (conversation_id, direction, kind, author_id, body,
                 order_id, tg_update_id, tg_message_id, file_id, file_name, file_mime, file_size,
                 file_path, file_state, file_error, outbox_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (tg_update_id) DO NOTHING",
        )?
        .execute(params![
            m.conversation_id,
            m.direction,
            m.kind,
            m.author_id,
            m.body,
            m.order_id,
            m.tg_update_id,
            m.tg_message_id,
            m.file_id,
            m.file_name,
            m.file_mime,
            m.file_size,
            m.file_path,
            m.file_state,
            m.file_error,
            m.outbox_id,
            now
        ])?;
    Ok((n == 1).then(|| c.last_insert_rowid()))
}

/// The order a Telegram message of ours was about (a customer's reply to it is, too).
pub fn order_of_sent(
    c: &Connection,
    conversation: i64,
    tg_message_id: i64,
) -> DbResult<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT order_id FROM conversation_messages
             WHERE conversation_id = ?1 AND tg_message_id = ?2 AND order_id IS NOT NULL",
    )?
    .query_row(params![conversation, tg_message_id], |r| r.get(0))
    .optional()?)
}

/// Records Telegram's id for a delivered reply (so a customer's reply to it finds its order).
pub fn set_sent_message_id(
    c: &Connection,
    outbox_id: i64,
    tg_message_id: i64,
) -> DbResult<Option<(i64, i64)>> {
    Ok(c.prepare_cached(
        "UPDATE conversation_messages SET tg_message_id = ?2 WHERE outbox_id = ?1
             RETURNING id, conversation_id",
    )?
    .query_row(params![outbox_id, tg_message_id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()?)
}

/// The message (id, conversation) a reply's outbox row belongs to.
pub fn by_outbox(c: &Connection, outbox_id: i64) -> DbResult<Option<(i64, i64)>> {
    Ok(c.prepare_cached(
        "SELECT id, conversation_id FROM conversation_messages WHERE outbox_id = ?1",
    )?
    .query_row([outbox_id], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

/// A file waiting to be fetched from Telegram.
#[derive(Debug, Clone)]
pub struct PendingFile {
    pub message_id: i64,
    pub conversation_id: i64,
    pub file_id: String,
    pub file_name: Option<String>,
    pub file_size: Option<i64>,
    pub attempts: i64,
}

pub fn pending_files(c: &Connection, limit: i64) -> DbResult<Vec<PendingFile>> {
    let mut st = c.prepare_cached(
        "SELECT id, conversation_id, file_id, file_name, file_size, file_attempts
         FROM conversation_messages WHERE file_state = 'pending' ORDER BY file_attempts, id LIMIT ?1",
    )?;
    let rows = st.query_map([limit], |r| {
        Ok(PendingFile {
            message_id: r.get(0)?,
            conversation_id: r.get(1)?,
            file_id: r.get(2)?,
            file_name: r.get(3)?,
            file_size: r.get(4)?,
            attempts: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn file_stored(
    c: &Connection,
    message: i64,
    path: &str,
    mime: &str,
    size: i64,
) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE conversation_messages SET file_state = 'stored', file_path = ?2, file_mime = ?3,
                file_size = ?4, file_error = NULL, file_attempts = file_attempts + 1
         WHERE id = ?1",
    )?
    .execute(params![message, path, mime, size])?;
    Ok(())
}

/// A fetch that did not work: `state` is `pending` (try again), `refused` or `failed`.
pub fn file_problem(c: &Connection, message: i64, state: &str, error: &str) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE conversation_messages SET file_state = ?2, file_error = ?3,
                file_attempts = file_attempts + 1 WHERE id = ?1",
    )?
    .execute(params![message, state, error])?;
    Ok(())
}

/// A stored file: (relative path, mime, name, conversation).
pub fn file_of(c: &Connection, message: i64) -> DbResult<Option<(String, String, String, i64)>> {
    Ok(c.prepare_cached(
        "SELECT file_path, coalesce(file_mime, 'application/octet-stream'),
                    coalesce(file_name, ''), conversation_id
             FROM conversation_messages WHERE id = ?1 AND file_state = 'stored'",
    )?
    .query_row([message], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .optional()?)
}

/// Customers with an order assigned to `master` that is not closed (a master's scope).
pub fn customers_of_master(c: &Connection, master: i64) -> DbResult<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT o.customer_id FROM orders o JOIN statuses s ON s.id = o.status_id
         WHERE o.master_id = ?1 AND s.grp <> 'closed'",
    )?;
    let rows = st.query_map([master], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open orders of a customer, newest first: (id, number).
pub fn open_orders_of(c: &Connection, customer: i64) -> DbResult<Vec<(i64, String)>> {
    let mut st = c.prepare_cached(
        "SELECT o.id, o.number FROM orders o JOIN statuses s ON s.id = o.status_id
         WHERE o.customer_id = ?1 AND s.grp <> 'closed' ORDER BY o.id DESC",
    )?;
    let rows = st.query_map([customer], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Masters of a customer's open orders (they see live events of the thread when allowed).
pub fn masters_of_customer(c: &Connection, customer: i64) -> DbResult<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT o.master_id FROM orders o JOIN statuses s ON s.id = o.status_id
         WHERE o.customer_id = ?1 AND o.master_id IS NOT NULL AND s.grp <> 'closed'",
    )?;
    let rows = st.query_map([customer], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// First-response and resolution times per agent over threads opened since `since`:
/// (user id, name, threads answered, median-free average first response s, threads closed,
/// average resolution s).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AgentTimes {
    pub user_id: i64,
    pub name: String,
    pub answered: i64,
    pub avg_first_response_secs: Option<i64>,
    pub resolved: i64,
    pub avg_resolution_secs: Option<i64>,
}

pub fn agent_times(c: &Connection, since: i64) -> DbResult<Vec<AgentTimes>> {
    let mut st = c.prepare_cached(
        "SELECT u.id, u.display_name,
                count(v.first_response_at),
                CAST(avg(v.first_response_at - v.opened_at) AS INTEGER),
                count(v.closed_at),
                CAST(avg(v.closed_at - v.opened_at) AS INTEGER)
         FROM conversations v JOIN users u ON u.id = v.assignee_id
         WHERE v.opened_at >= ?1
         GROUP BY u.id ORDER BY u.display_name",
    )?;
    let rows = st.query_map([since], |r| {
        Ok(AgentTimes {
            user_id: r.get(0)?,
            name: r.get(1)?,
            answered: r.get(2)?,
            avg_first_response_secs: r.get(3)?,
            resolved: r.get(4)?,
            avg_resolution_secs: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open threads per agent, for automatic assignment (the least loaded online agent).
pub fn open_load(c: &Connection, users: &[i64]) -> DbResult<Vec<(i64, i64)>> {
    let mut out = Vec::with_capacity(users.len());
    let mut st = c.prepare_cached(
        "SELECT count(*) FROM conversations WHERE assignee_id = ?1 AND state = 'open'",
    )?;
    for u in users {
        out.push((*u, st.query_row([u], |r| r.get(0))?));
    }
    Ok(out)
}

// ---- quick replies ----

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct QuickReply {
    #[serde(default)]
    pub id: i64,
    /// Typed after `/` in the reply box.
    pub shortcut: String,
    pub title: String,
    #[serde(default)]
    pub body_uz: String,
    #[serde(default)]
    pub body_uz_cyrl: String,
    #[serde(default)]
    pub body_ru: String,
    #[serde(default)]
    pub body_en: String,
}

impl QuickReply {
    /// The text in a language, falling back to the others in a fixed order.
    pub fn body(&self, lang: &str) -> &str {
        let own = match lang {
            "uz" => &self.body_uz,
            "uz-Cyrl" => &self.body_uz_cyrl,
            "ru" => &self.body_ru,
            _ => &self.body_en,
        };
        [
            own,
            &self.body_uz,
            &self.body_ru,
            &self.body_uz_cyrl,
            &self.body_en,
        ]
        .into_iter()
        .find(|b| !b.trim().is_empty())
        .map(String::as_str)
        .unwrap_or("")
    }
}

fn qr_row(r: &Row) -> rusqlite::Result<QuickReply> {
    Ok(QuickReply {
        id: r.get(0)?,
        shortcut: r.get(1)?,
        title: r.get(2)?,
        body_uz: r.get(3)?,
        body_uz_cyrl: r.get(4)?,
        body_ru: r.get(5)?,
        body_en: r.get(6)?,
    })
}

const QR_COLS: &str = "id, shortcut, title, body_uz, body_uz_cyrl, body_ru, body_en";

pub fn quick_replies(c: &Connection) -> DbResult<Vec<QuickReply>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {QR_COLS} FROM quick_replies ORDER BY shortcut"
    ))?;
    let rows = st.query_map([], qr_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn quick_reply(c: &Connection, id: i64) -> DbResult<Option<QuickReply>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {QR_COLS} FROM quick_replies WHERE id = ?1"
    ))?
    .query_row([id], qr_row)
    .optional()?)
}

pub fn quick_reply_by_shortcut(c: &Connection, shortcut: &str) -> DbResult<Option<i64>> {
    Ok(
        c.prepare_cached("SELECT id FROM quick_replies WHERE shortcut = ?1")?
            .query_row([shortcut], |r| r.get(0))
            .optional()?,
    )
}

/// Inserts (id 0) or updates a quick reply; returns its id.
pub fn save_quick_reply(c: &Connection, q: &QuickReply, now: i64) -> DbResult<i64> {
    if q.id == 0 {
        c.prepare_cached(
            "INSERT INTO quick_replies (shortcut, title, body_uz, body_uz_cyrl, body_ru, body_en, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![q.shortcut, q.title, q.body_uz, q.body_uz_cyrl, q.body_ru, q.body_en, now])?;
        Ok(c.last_insert_rowid())
    } else {
        c.prepare_cached(
            "UPDATE quick_replies SET shortcut = ?2, title = ?3, body_uz = ?4, body_uz_cyrl = ?5,
                    body_ru = ?6, body_en = ?7, updated_at = ?8 WHERE id = ?1",
        )?
        .execute(params![
            q.id,
            q.shortcut,
            q.title,
            q.body_uz,
            q.body_uz_cyrl,
            q.body_ru,
            q.body_en,
            now
        ])?;
        Ok(q.id)
    }
}

pub fn delete_quick_reply(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(c.execute("DELETE FROM quick_replies WHERE id = ?1", [id])? == 1)
}

// ---- procedures ----

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SopDocument {
    pub id: i64,
    pub title: String,
    /// Markdown.
    pub body: String,
    pub updated_by: Option<i64>,
    pub updated_at: i64,
}

fn sop_row(r: &Row) -> rusqlite::Result<SopDocument> {
    Ok(SopDocument {
        id: r.get(0)?,
        title: r.get(1)?,
        body: r.get(2)?,
        updated_by: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

/// Procedures matching `q` (best first), or all by title.
pub fn sop_documents(c: &Connection, q: Option<&str>, limit: i64) -> DbResult<Vec<SopDocument>> {
    match q.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => {
            let mut st = c.prepare_cached(
                "SELECT d.id, d.title, d.body, d.updated_by, d.updated_at
                 FROM sop_documents_fts JOIN sop_documents d ON d.id = sop_documents_fts.rowid
                 WHERE sop_documents_fts MATCH ?1 ORDER BY rank LIMIT ?2",
            )?;
            let rows = st.query_map(params![fts_query(q), limit], sop_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        None => {
            let mut st = c.prepare_cached(
                "SELECT id, title, body, updated_by, updated_at FROM sop_documents
                 ORDER BY title COLLATE NOCASE LIMIT ?1",
            )?;
            let rows = st.query_map([limit], sop_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
    }
}

pub fn sop_document(c: &Connection, id: i64) -> DbResult<Option<SopDocument>> {
    Ok(c.prepare_cached(
        "SELECT id, title, body, updated_by, updated_at FROM sop_documents WHERE id = ?1",
    )?
    .query_row([id], sop_row)
    .optional()?)
}

pub fn save_sop(
    c: &Connection,
    id: Option<i64>,
    title: &str,
    body: &str,
    by: Option<i64>,
    now: i64,
) -> DbResult<Option<i64>> {
    match id {
        None => {
            c.prepare_cached(
                "INSERT INTO sop_documents (title, body, updated_by, updated_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![title, body, by, now])?;
            Ok(Some(c.last_insert_rowid()))
        }
        Some(id) => {
            let n = c
                .prepare_cached(
                    "UPDATE sop_documents SET title = ?2, body = ?3, updated_by = ?4, updated_at = ?5
                     WHERE id = ?1",
                )?
                .execute(params![id, title, body, by, now])?;
            Ok((n == 1).then_some(id))
        }
    }
}

pub fn delete_sop(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(c.execute("DELETE FROM sop_documents WHERE id = ?1", [id])? == 1)
}

// ---- the web chat widget (issue 17) ----

/// Customer messages in a thread (a widget visitor's messages are bounded per session).
pub fn inbound_count(c: &Connection, conversation: i64) -> DbResult<i64> {
    Ok(c.prepare_cached(
        "SELECT count(*) FROM conversation_messages
             WHERE conversation_id = ?1 AND direction = 'in'",
    )?
    .query_row([conversation], |r| r.get(0))?)
}

/// A message as a widget visitor sees it: theirs or the shop's reply (never staff notes
/// or the thread's history).
#[derive(Debug, Clone, serde::Serialize)]
pub struct VisitorMessage {
    pub id: i64,
    /// True for the visitor's own message, false for the shop's reply.
    pub mine: bool,
    pub text: String,
    pub created_at: i64,
}

/// The visitor-visible messages of a thread after message id `after`, oldest first.
pub fn visitor_messages(
    c: &Connection,
    conversation: i64,
    after: i64,
    limit: i64,
) -> DbResult<Vec<VisitorMessage>> {
    let mut st = c.prepare_cached(
        "SELECT id, direction = 'in', body, created_at FROM conversation_messages
         WHERE conversation_id = ?1 AND id > ?2 AND direction IN ('in', 'out')
         ORDER BY id LIMIT ?3",
    )?;
    let rows = st.query_map(params![conversation, after, limit], |r| {
        Ok(VisitorMessage {
            id: r.get(0)?,
            mine: r.get(1)?,
            text: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
