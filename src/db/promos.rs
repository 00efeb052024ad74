//! Promotions, broadcasts, SMS delivery state and archived orders (issue 18, part three).

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

// ---------------------------------------------------------------------------------------
// Promotions

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PromotionRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    /// `percent` or `amount`.
    pub kind: String,
    /// A percent (1..100) or an amount in so'm.
    pub value: i64,
    /// `labour`, `parts` or `both`.
    pub applies_to: String,
    /// First and last shop day it is valid (YYYY-MM-DD, inclusive).
    pub starts_on: String,
    pub ends_on: String,
    /// None: no limit.
    pub usage_limit: Option<i64>,
    pub used: i64,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const PROMO_COLS: &str = "id, code, name, kind, value, applies_to, starts_on, ends_on, usage_limit, used, active, created_at, updated_at";

fn promo(r: &rusqlite::Row<'_>) -> rusqlite::Result<PromotionRow> {
    Ok(PromotionRow {
        id: r.get(0)?,
        code: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        value: r.get(4)?,
        applies_to: r.get(5)?,
        starts_on: r.get(6)?,
        ends_on: r.get(7)?,
        usage_limit: r.get(8)?,
        used: r.get(9)?,
        active: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// The fields a promotion is saved with.
#[derive(Debug, Clone)]
pub struct PromotionFields {
    pub code: String,
    pub name: String,
    pub kind: String,
    pub value: i64,
    pub applies_to: String,
    pub starts_on: String,
    pub ends_on: String,
    pub usage_limit: Option<i64>,
    pub active: bool,
}

pub fn list_promotions(c: &Connection) -> DbResult<Vec<PromotionRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {PROMO_COLS} FROM promotions ORDER BY id DESC"
    ))?;
    let rows = st.query_map([], promo)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn promotion(c: &Connection, id: i64) -> DbResult<Option<PromotionRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {PROMO_COLS} FROM promotions WHERE id = ?1"
    ))?
    .query_row([id], promo)
    .optional()?)
}

/// By code, whatever its case.
pub fn promotion_by_code(c: &Connection, code: &str) -> DbResult<Option<PromotionRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {PROMO_COLS} FROM promotions WHERE code = ?1 COLLATE NOCASE"
    ))?
    .query_row([code], promo)
    .optional()?)
}

pub fn code_taken(c: &Connection, code: &str, except: Option<i64>) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM promotions WHERE code = ?1 COLLATE NOCASE AND id IS NOT ?2",
    )?
    .query_row(params![code, except], |_| Ok(()))
    .optional()?
    .is_some())
}

pub fn insert_promotion(
    c: &Connection,
    f: &PromotionFields,
    by: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO promotions (code, name, kind, value, applies_to, starts_on, ends_on, usage_limit, active, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )?
    .execute(params![
        f.code,
        f.name,
        f.kind,
        f.value,
        f.applies_to,
        f.starts_on,
        f.ends_on,
        f.usage_limit,
        f.active,
        by,
        now
    ])?;
    Ok(c.last_insert_rowid())
}

/// Saves new fields; a limit below the uses already made is refused by the table's check.
pub fn update_promotion(c: &Connection, id: i64, f: &PromotionFields, now: i64) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE promotions SET code = ?2, name = ?3, kind = ?4, value = ?5, applies_to = ?6,
                starts_on = ?7, ends_on = ?8, usage_limit = ?9, active = ?10, updated_at = ?11
             WHERE id = ?1",
    )?
    .execute(params![
        id,
        f.code,
        f.name,
        f.kind,
        f.value,
        f.applies_to,
        f.starts_on,
        f.ends_on,
        f.usage_limit,
        f.active,
        now
    ])? == 1)
}

/// Takes one use of the promotion if any is left. The check and the count are one
/// statement, so of two desks taking the last use one gets it.
pub fn take_use(c: &Connection, id: i64, now: i64) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE promotions SET used = used + 1, updated_at = ?2
             WHERE id = ?1 AND (usage_limit IS NULL OR used < usage_limit)",
    )?
    .execute(params![id, now])?
        == 1)
}

/// Gives a use back (the promotion was taken off an order).
pub fn give_back_use(c: &Connection, id: i64, now: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE promotions SET used = max(used - 1, 0), updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

pub fn insert_use(
    c: &Connection,
    promotion: i64,
    order: i64,
    by: Option<i64>,
    now: i64,
) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO promotion_uses (promotion_id, order_id, created_by, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![promotion, order, by, now])?;
    Ok(())
}

pub fn delete_use(c: &Connection, order: i64) -> DbResult<()> {
    c.prepare_cached("DELETE FROM promotion_uses WHERE order_id = ?1")?
        .execute([order])?;
    Ok(())
}

/// Sets or clears an order's promotion and works out its discount.
pub fn set_order_promotion(
    c: &Connection,
    order: i64,
    promotion: Option<i64>,
    now: i64,
) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE orders SET promotion_id = ?2, updated_at = ?3, version = version + 1 WHERE id = ?1",
    )?
    .execute(params![order, promotion, now])?;
    recompute_discount(c, order)
}

/// The discount of the order's promotion over its lines as they are now.
pub fn recompute_discount(c: &Connection, order: i64) -> DbResult<()> {
    let row: Option<(String, i64, String, i64, i64, i64)> = c
        .prepare_cached(
            "SELECT p.kind, p.value, p.applies_to, o.estimate,
                    (SELECT coalesce(sum(qty * unit_price), 0) FROM order_lines WHERE order_id = o.id AND kind = 'labour'),
                    (SELECT coalesce(sum(qty * unit_price), 0) FROM order_lines WHERE order_id = o.id AND kind = 'part')
             FROM orders o JOIN promotions p ON p.id = o.promotion_id WHERE o.id = ?1",
        )?
        .query_row([order], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    let discount = match row {
        None => 0,
        Some((kind, value, to, estimate, labour, parts)) => crate::model::money::discount(
            crate::model::money::DiscountRule {
                percent: kind == "percent",
                value,
                on_labour: to != "parts",
                on_parts: to != "labour",
            },
            labour,
            parts,
            estimate,
        ),
    };
    c.prepare_cached("UPDATE orders SET discount = ?2 WHERE id = ?1 AND discount <> ?2")?
        .execute(params![order, discount])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Broadcasts

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BroadcastRow {
    pub id: i64,
    pub name: String,
    pub segment_id: Option<i64>,
    pub promotion_id: Option<i64>,
    pub body: String,
    /// The channels allowed, comma-separated (`telegram,sms,email`).
    pub channels: String,
    pub per_second: i64,
    /// Messages queued, and customers of the segment who had no allowed channel.
    pub queued: i64,
    pub skipped: i64,
    pub created_at: i64,
}

const BC_COLS: &str = "id, name, segment_id, promotion_id, body, channels, per_second, queued_n, skipped_n, created_at";

fn bc(r: &rusqlite::Row<'_>) -> rusqlite::Result<BroadcastRow> {
    Ok(BroadcastRow {
        id: r.get(0)?,
        name: r.get(1)?,
        segment_id: r.get(2)?,
        promotion_id: r.get(3)?,
        body: r.get(4)?,
        channels: r.get(5)?,
        per_second: r.get(6)?,
        queued: r.get(7)?,
        skipped: r.get(8)?,
        created_at: r.get(9)?,
    })
}

pub struct NewBroadcast<'a> {
    pub name: &'a str,
    pub segment_id: i64,
    pub promotion_id: Option<i64>,
    pub body: &'a str,
    pub channels: &'a str,
    pub per_second: i64,
}

pub fn insert_broadcast(
    c: &Connection,
    b: &NewBroadcast<'_>,
    by: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO broadcasts (name, segment_id, promotion_id, body, channels, per_second, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        b.name,
        b.segment_id,
        b.promotion_id,
        b.body,
        b.channels,
        b.per_second,
        by,
        now
    ])?;
    Ok(c.last_insert_rowid())
}

pub fn set_broadcast_counts(c: &Connection, id: i64, queued: i64, skipped: i64) -> DbResult<()> {
    c.prepare_cached("UPDATE broadcasts SET queued_n = ?2, skipped_n = ?3 WHERE id = ?1")?
        .execute(params![id, queued, skipped])?;
    Ok(())
}

/// The condition keeping `broadcasts` to those a user of `branches` sees (None: every
/// one): made by a user of every branch (or by the CLI), or by a user of one of theirs.
/// The sender's branches are read as they are now.
fn seen_in(branches: Option<&[i64]>) -> String {
    match branches {
        None => String::new(),
        Some(ids) => {
            let list = if ids.is_empty() {
                "NULL".to_string()
            } else {
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            };
            format!(
                " AND (NOT EXISTS (SELECT 1 FROM user_branches ub WHERE ub.user_id = broadcasts.created_by)
                   OR EXISTS (SELECT 1 FROM user_branches ub WHERE ub.user_id = broadcasts.created_by
                              AND ub.branch_id IN ({list})))"
            )
        }
    }
}

/// Broadcasts a user of `branches` sees (None: every one), newest first.
pub fn broadcasts(
    c: &Connection,
    limit: i64,
    branches: Option<&[i64]>,
) -> DbResult<Vec<BroadcastRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {BC_COLS} FROM broadcasts WHERE 1 = 1{} ORDER BY id DESC LIMIT ?1",
        seen_in(branches)
    ))?;
    let rows = st.query_map([limit], bc)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One broadcast, if a user of `branches` sees it (None: any).
pub fn broadcast(
    c: &Connection,
    id: i64,
    branches: Option<&[i64]>,
) -> DbResult<Option<BroadcastRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {BC_COLS} FROM broadcasts WHERE id = ?1{}",
        seen_in(branches)
    ))?
    .query_row([id], bc)
    .optional()?)
}

/// A broadcast's results now.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct BroadcastResults {
    /// Handed to Telegram, the SMTP server or the SMS gateway.
    pub sent: i64,
    /// Of those, the SMS the gateway reported delivered.
    pub delivered: i64,
    /// Refused, dead-lettered, or reported undelivered by the gateway.
    pub failed: i64,
    /// Still queued or being sent.
    pub pending: i64,
    /// Orders of its recipients that used its promotion after it was sent.
    pub redeemed: i64,
    /// Messages per channel.
    pub by_channel: Vec<(String, i64)>,
    /// What the gateway reported the SMS cost, so'm.
    pub cost: i64,
}

/// A broadcast's results, counting only the recipients among the customers of
/// `customers` (None: every recipient; see `customers::of_branches`).
pub fn broadcast_results(
    c: &Connection,
    b: &BroadcastRow,
    customers: Option<&[i64]>,
) -> DbResult<BroadcastResults> {
    let mut r = BroadcastResults::default();
    let mine = match customers {
        None => String::new(),
        Some(_) => format!(
            " AND customer_id IN (SELECT id FROM customers WHERE 1 = 1{})",
            super::customers::of_branches(customers)
        ),
    };
    {
        let mut st = c.prepare_cached(&format!(
            "SELECT state, coalesce(delivery, ''), count(*), coalesce(sum(cost), 0) FROM notify_outbox
             WHERE broadcast_id = ?1{mine} GROUP BY state, delivery"
        ))?;
        let rows = st.query_map([b.id], |x| {
            Ok((
                x.get::<_, String>(0)?,
                x.get::<_, String>(1)?,
                x.get::<_, i64>(2)?,
                x.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (state, delivery, n, cost) = row?;
            r.cost += cost;
            match (state.as_str(), delivery.as_str()) {
                ("sent", "undelivered" | "expired" | "rejected") => r.failed += n,
                ("sent", d) => {
                    r.sent += n;
                    if d == "delivered" {
                        r.delivered += n;
                    }
                }
                ("failed" | "dead", _) => r.failed += n,
                _ => r.pending += n,
            }
        }
    }
    {
        let mut st = c.prepare_cached(&format!(
            "SELECT channel, count(*) FROM notify_outbox WHERE broadcast_id = ?1{mine} GROUP BY channel ORDER BY channel"
        ))?;
        let rows = st.query_map([b.id], |x| Ok((x.get(0)?, x.get(1)?)))?;
        r.by_channel = rows.collect::<Result<_, _>>()?;
    }
    if let Some(p) = b.promotion_id {
        r.redeemed = c
            .prepare_cached(&format!(
                "SELECT count(*) FROM promotion_uses u JOIN orders o ON o.id = u.order_id
                 WHERE u.promotion_id = ?1 AND u.created_at >= ?2
                   AND o.customer_id IN (SELECT customer_id FROM notify_outbox WHERE broadcast_id = ?3{mine})"
            ))?
            .query_row(params![p, b.created_at, b.id], |x| x.get(0))?;
    }
    Ok(r)
}

/// One queued broadcast message, due at `due_ms` (the throttle spreads them out).
pub struct BroadcastMessage<'a> {
    pub broadcast_id: i64,
    pub customer_id: i64,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub language: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub due_ms: i64,
}

pub fn insert_broadcast_message(
    c: &Connection,
    m: &BroadcastMessage<'_>,
    now_ms: i64,
) -> DbResult<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO notify_outbox (event, dedupe_key, channel, recipient, language, subject, body,
                                        next_attempt_at, created_at, updated_at, broadcast_id, customer_id)
             VALUES ('broadcast', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)
             ON CONFLICT (dedupe_key, channel, recipient) DO NOTHING",
        )?
        .execute(params![
            format!("broadcast:{}:{}", m.broadcast_id, m.customer_id),
            m.channel,
            m.recipient,
            m.language,
            m.subject,
            m.body,
            m.due_ms,
            now_ms / 1000,
            m.broadcast_id,
            m.customer_id
        ])?;
    Ok(n == 1)
}

/// What a broadcast needs of each member: language, opt-in, main phone, e-mail, a linked
/// chat that has not blocked the bot.
pub struct Member {
    pub id: i64,
    pub name: String,
    pub language: Option<String>,
    pub opted_in: bool,
    pub phone: Option<String>,
    pub email: String,
    pub chat: Option<(i64, Option<String>)>,
}

pub fn members(c: &Connection, ids: &[i64]) -> DbResult<Vec<Member>> {
    let mut st = c.prepare_cached(
        "SELECT c.id, c.name, c.language, c.marketing_opt_in, c.email,
                (SELECT e164 FROM customer_phones p WHERE p.customer_id = c.id ORDER BY rowid LIMIT 1),
                (SELECT chat_id FROM telegram_chats t WHERE t.customer_id = c.id AND t.blocked_at IS NULL ORDER BY chat_id LIMIT 1),
                (SELECT language FROM telegram_chats t WHERE t.customer_id = c.id AND t.blocked_at IS NULL ORDER BY chat_id LIMIT 1)
         FROM customers c WHERE c.id = ?1",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let m = st
            .query_row([id], |r| {
                let chat: Option<i64> = r.get(6)?;
                Ok(Member {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    language: r.get(2)?,
                    opted_in: r.get(3)?,
                    email: r.get(4)?,
                    phone: r.get(5)?,
                    chat: chat.map(|ch| (ch, r.get(7).ok().flatten())),
                })
            })
            .optional()?;
        out.extend(m);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Opt-out

/// Takes a customer off marketing and records how they asked. Returns false when they
/// were already off.
pub fn stop_marketing(c: &Connection, customer: i64, via: &str, now: i64) -> DbResult<bool> {
    let changed = c
        .prepare_cached(
            "UPDATE customers SET marketing_opt_in = 0, updated_at = ?2, version = version + 1
             WHERE id = ?1 AND marketing_opt_in = 1",
        )?
        .execute(params![customer, now])?
        == 1;
    c.prepare_cached(
        "INSERT INTO marketing_stops (customer_id, via, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![customer, via, now])?;
    Ok(changed)
}

pub fn customer_exists(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(c.prepare_cached("SELECT 1 FROM customers WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Live customers with this phone (E.164).
pub fn customers_with_phone(c: &Connection, e164: &str) -> DbResult<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT p.customer_id FROM customer_phones p JOIN customers c ON c.id = p.customer_id
         WHERE p.e164 = ?1 AND c.merged_into IS NULL",
    )?;
    let rows = st.query_map([e164], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ---------------------------------------------------------------------------------------
// SMS delivery

/// Whether an SMS was ever queued to this number (the first one carries the bot link).
pub fn sms_sent_before(c: &Connection, e164: &str) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM notify_outbox WHERE channel = 'sms' AND recipient = ?1 LIMIT 1",
    )?
    .query_row([e164], |_| Ok(()))
    .optional()?
    .is_some())
}

/// The gateway accepted a message: its id (for the delivery report), parts and cost. A
/// report that came before this is applied now.
pub fn sms_accepted(
    c: &Connection,
    outbox_id: i64,
    provider: &str,
    provider_id: &str,
    parts: Option<i64>,
    cost: Option<i64>,
) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE notify_outbox SET provider = ?2, provider_id = ?3, parts = coalesce(?4, parts), cost = coalesce(?5, cost)
         WHERE id = ?1",
    )?
    .execute(params![outbox_id, provider, provider_id, parts, cost])?;
    let early: Option<(String, Option<i64>, Option<i64>, i64)> = c
        .prepare_cached(
            "DELETE FROM sms_early_reports WHERE provider = ?1 AND provider_id = ?2
             RETURNING delivery, parts, cost, at",
        )?
        .query_row(params![provider, provider_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    if let Some((delivery, parts, cost, at)) = early {
        c.prepare_cached(
            "UPDATE notify_outbox SET delivery = ?2, delivered_at = ?3, parts = coalesce(?4, parts),
                    cost = coalesce(?5, cost) WHERE id = ?1",
        )?
        .execute(params![outbox_id, delivery, at, parts, cost])?;
    }
    Ok(())
}

/// A delivery report: the message's final word from the gateway. Returns the outbox row
/// and its broadcast, or None for an id not (yet) on any row: that report is kept a day
/// in case the sender has not written the id yet.
pub fn sms_report(
    c: &Connection,
    provider: &str,
    provider_id: &str,
    delivery: &str,
    parts: Option<i64>,
    cost: Option<i64>,
    now: i64,
) -> DbResult<Option<(i64, Option<i64>)>> {
    let hit = c
        .prepare_cached(
            "UPDATE notify_outbox SET delivery = ?3, delivered_at = ?4, parts = coalesce(?5, parts),
                    cost = coalesce(?6, cost), updated_at = ?4
             WHERE provider_id = ?2 AND provider = ?1 RETURNING id, broadcast_id",
        )?
        .query_row(params![provider, provider_id, delivery, now, parts, cost], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if hit.is_none() {
        c.prepare_cached("DELETE FROM sms_early_reports WHERE at < ?1")?
            .execute([now - 86_400])?;
        c.prepare_cached(
            "INSERT OR REPLACE INTO sms_early_reports (provider, provider_id, delivery, parts, cost, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![provider, provider_id, delivery, parts, cost, now])?;
    }
    Ok(hit)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SmsRow {
    pub id: i64,
    pub recipient: String,
    pub state: String,
    pub provider: Option<String>,
    pub provider_id: Option<String>,
    pub delivery: Option<String>,
    pub parts: Option<i64>,
    pub cost: Option<i64>,
    pub broadcast_id: Option<i64>,
}

pub fn sms_row(c: &Connection, id: i64) -> DbResult<Option<SmsRow>> {
    Ok(c.prepare_cached(
        "SELECT id, recipient, state, provider, provider_id, delivery, parts, cost, broadcast_id
             FROM notify_outbox WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(SmsRow {
            id: r.get(0)?,
            recipient: r.get(1)?,
            state: r.get(2)?,
            provider: r.get(3)?,
            provider_id: r.get(4)?,
            delivery: r.get(5)?,
            parts: r.get(6)?,
            cost: r.get(7)?,
            broadcast_id: r.get(8)?,
        })
    })
    .optional()?)
}

// ---------------------------------------------------------------------------------------
// Archived orders

/// Archives or restores one order. Returns false when it is already so (or unknown).
pub fn set_order_archived(c: &Connection, id: i64, at: Option<i64>, now: i64) -> DbResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE orders SET archived_at = ?2, updated_at = ?3, version = version + 1
             WHERE id = ?1 AND (archived_at IS NULL) = (?2 IS NOT NULL)",
    )?
    .execute(params![id, at, now])?
        == 1)
}

/// Closed orders (closed before `closed_before`) not yet archived, oldest first.
pub fn closed_before(c: &Connection, closed_before: i64, limit: i64) -> DbResult<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT id FROM orders WHERE closed_at IS NOT NULL AND closed_at < ?1 AND archived_at IS NULL
         ORDER BY closed_at, id LIMIT ?2",
    )?;
    let rows = st.query_map(params![closed_before, limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Drops an archived order from the search index (restoring re-indexes it).
pub fn unindex_order(c: &Connection, id: i64) -> DbResult<()> {
    c.prepare_cached("DELETE FROM search_index WHERE rowid = ?1")?
        .execute([super::orders::fts_rowid(id)])?;
    Ok(())
}

/// The number of the customer's latest order, if any.
pub fn latest_order_number(c: &Connection, customer: i64) -> DbResult<Option<String>> {
    Ok(c.prepare_cached(
        "SELECT number FROM orders WHERE customer_id = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row([customer], |r| r.get(0))
    .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_report_before_the_id_is_applied_when_the_id_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("t.db"), &Default::default()).unwrap();
        db.write(|c| {
            c.execute(
                "INSERT INTO notify_outbox (id, event, dedupe_key, channel, recipient, language, subject, body, next_attempt_at, created_at, updated_at, state)
                 VALUES (9, 'test', 'k', 'sms', '+998901234567', 'uz', '', 'x', 0, 0, 0, 'sent')",
                [],
            )?;
            assert!(sms_report(c, "eskiz", "abc", "delivered", Some(1), Some(50), 1000)?.is_none());
            sms_accepted(c, 9, "eskiz", "abc", None, None)?;
            let (d, cost): (String, i64) = c.query_row(
                "SELECT delivery, cost FROM notify_outbox WHERE id = 9",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            assert_eq!((d.as_str(), cost), ("delivered", 50));
            let left: i64 = c.query_row("SELECT count(*) FROM sms_early_reports", [], |r| r.get(0))?;
            assert_eq!(left, 0);
            // A later report updates the row directly.
            assert_eq!(sms_report(c, "eskiz", "abc", "undelivered", None, None, 1001)?, Some((9, None)));
            Ok(())
        })
        .await
        .unwrap();
    }
}
