//! Who is told what, on which channel: the rules, templates and recipients of
//! notifications, and the one entry point other domain code calls, [`enqueue`], inside its
//! own write transaction. Delivery (SMTP, Telegram) happens later in `crate::notify`.
//!
//! The core calls, e.g. when an order is assigned:
//! ```ignore
//! db.write(move |c| {
//!     orders::assign(c, order_id, master_id)?;               // the change
//!     notifications::enqueue(c, &Notification {             // and its notification
//!         event: EventKind::OrderAssigned,
//!         key: format!("order:{order_id}:assigned:{master_id}:{seq}"),
//!         recipients: vec![Recipient::Staff(master_id)],
//!         data: TemplateData::from([("order_number", number), ("device", device)]),
//!     })?;
//!     Ok(())
//! }).await?;
//! ctx.notifications.wake(); // optional: deliver now rather than at the next poll
//! ```

use std::collections::BTreeMap;

use std::time::Duration;

use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::Conn as Connection;
use crate::db::{outbox, settings, telegram as tg, Db, DbResult};
use crate::i18n::Tr;
use crate::model::{Language, UserId};

pub use crate::db::outbox::OutboxRow;

/// What happened. The string form is stored in the outbox and names templates and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A master was given an order (to the master).
    OrderAssigned,
    /// An order's status changed (to the customer, for the statuses the admin chose).
    OrderStatusChanged,
    /// Someone commented on an order (to its master).
    OrderComment,
    /// An order passed its due date (to its master).
    OrderOverdue,
    /// The evening summary to the admins' addresses.
    DailySummary,
    /// "Send test" from the settings page.
    Test,
    /// The bot answering a command.
    BotReply,
    /// A broadcast to a segment (issue 18); its text is the broadcast's own.
    Broadcast,
}

impl EventKind {
    /// Events with editable templates, in the order the admin page lists them.
    pub const TEMPLATED: [EventKind; 6] = [
        EventKind::OrderAssigned,
        EventKind::OrderStatusChanged,
        EventKind::OrderComment,
        EventKind::OrderOverdue,
        EventKind::DailySummary,
        EventKind::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrderAssigned => "order.assigned",
            EventKind::OrderStatusChanged => "order.status_changed",
            EventKind::OrderComment => "order.comment",
            EventKind::OrderOverdue => "order.overdue",
            EventKind::DailySummary => "summary.daily",
            EventKind::Test => "test",
            EventKind::BotReply => "bot.reply",
            EventKind::Broadcast => "broadcast",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::OrderAssigned,
            EventKind::OrderStatusChanged,
            EventKind::OrderComment,
            EventKind::OrderOverdue,
            EventKind::DailySummary,
            EventKind::Test,
            EventKind::BotReply,
            EventKind::Broadcast,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }

    /// i18n keys of the built-in subject and body.
    fn template_keys(self) -> (&'static str, &'static str) {
        match self {
            EventKind::OrderAssigned => (
                "notify.tpl.order_assigned.subject",
                "notify.tpl.order_assigned.body",
            ),
            EventKind::OrderStatusChanged => (
                "notify.tpl.order_status_changed.subject",
                "notify.tpl.order_status_changed.body",
            ),
            EventKind::OrderComment => (
                "notify.tpl.order_comment.subject",
                "notify.tpl.order_comment.body",
            ),
            EventKind::OrderOverdue => (
                "notify.tpl.order_overdue.subject",
                "notify.tpl.order_overdue.body",
            ),
            EventKind::DailySummary => (
                "notify.tpl.summary_daily.subject",
                "notify.tpl.summary_daily.body",
            ),
            EventKind::Test => ("notify.tpl.test.subject", "notify.tpl.test.body"),
            EventKind::BotReply | EventKind::Broadcast => {
                ("notify.tpl.bot_reply.subject", "notify.tpl.bot_reply.body")
            }
        }
    }

    /// i18n key of the event's name on the settings page.
    pub fn label_key(self) -> &'static str {
        match self {
            EventKind::OrderAssigned => "notify.event.order_assigned",
            EventKind::OrderStatusChanged => "notify.event.order_status_changed",
            EventKind::OrderComment => "notify.event.order_comment",
            EventKind::OrderOverdue => "notify.event.order_overdue",
            EventKind::DailySummary => "notify.event.summary_daily",
            EventKind::Test => "notify.event.test",
            EventKind::BotReply => "notify.event.bot_reply",
            EventKind::Broadcast => "promos.event.broadcast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Telegram,
    /// Text messages through the shop's SMS gateway (Eskiz or Playmobile), for customers
    /// without a linked Telegram chat.
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Telegram => "telegram",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        [Channel::Email, Channel::Telegram, Channel::Sms]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// i18n key of its name.
    pub fn label_key(self) -> &'static str {
        match self {
            Channel::Email => "notify.channel.email",
            Channel::Telegram => "notify.channel.telegram",
            Channel::Sms => "promos.channel.sms",
        }
    }
}

/// The switches the admin sees: (event, channel, on by default). Staff events go to the
/// staff member's linked Telegram chats and, when they gave one, their e-mail address.
pub const RULES: [(EventKind, Channel, bool); 10] = [
    (EventKind::OrderAssigned, Channel::Telegram, true),
    (EventKind::OrderAssigned, Channel::Email, true),
    (EventKind::OrderComment, Channel::Telegram, true),
    (EventKind::OrderComment, Channel::Email, true),
    (EventKind::OrderOverdue, Channel::Telegram, true),
    (EventKind::OrderOverdue, Channel::Email, true),
    (EventKind::OrderStatusChanged, Channel::Telegram, true),
    (EventKind::OrderStatusChanged, Channel::Email, true),
    // Only for customers without a linked chat, and only once a gateway is set up.
    (EventKind::OrderStatusChanged, Channel::Sms, true),
    (EventKind::DailySummary, Channel::Email, true),
];

fn rule_key(event: EventKind, channel: Channel) -> String {
    format!("notify.rule.{}.{}", event.as_str(), channel.as_str())
}

/// Whether an event goes out on a channel. Tests and bot replies always do.
pub fn rule_enabled(c: &Connection, event: EventKind, channel: Channel) -> DbResult<bool> {
    let Some(&(_, _, default)) = RULES
        .iter()
        .find(|(e, ch, _)| *e == event && *ch == channel)
    else {
        return Ok(matches!(
            event,
            EventKind::Test | EventKind::BotReply | EventKind::Broadcast
        ));
    };
    Ok(match settings::get(c, &rule_key(event, channel))? {
        Some(v) => v == "1",
        None => default,
    })
}

/// Who should hear about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A staff member, on the Telegram chats they linked and their e-mail address.
    Staff(UserId),
    /// A customer: the Telegram chats linked to them and, when given, their e-mail.
    /// `language` is the customer's language when known.
    Customer {
        customer_id: i64,
        email: Option<String>,
        language: Option<Language>,
    },
    /// One Telegram chat (bot replies, "send test").
    TelegramChat(i64),
    /// One e-mail address ("send test", summaries).
    Email(String),
    /// One phone number, E.164 ("send test" of the SMS gateway).
    Phone(String),
}

/// Values for the template placeholders, e.g. `order_number` → `A-1042`. Shop name, address
/// and hours are added from the settings.
pub type TemplateData = BTreeMap<String, String>;

/// A notification as the changing code describes it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub event: EventKind,
    /// Names the cause (e.g. `order:42:status:17` with the id of the status change), so
    /// queuing the same cause twice for a recipient stores one message.
    pub key: String,
    pub recipients: Vec<Recipient>,
    pub data: TemplateData,
}

fn default_language(c: &Connection) -> DbResult<Language> {
    Ok(settings::get(c, "notify.default_language")?
        .and_then(|l| Language::from_code(&l))
        .unwrap_or_default())
}

/// Whether a status change goes to customers: the admin's list of status codes (the
/// `status_code` template value); an empty list means every change.
fn customer_wants_status(c: &Connection, data: &TemplateData) -> DbResult<bool> {
    let chosen = settings::get(c, "notify.customer_statuses")?.unwrap_or_default();
    let chosen: Vec<&str> = chosen
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if chosen.is_empty() {
        return Ok(true);
    }
    Ok(data
        .get("status_code")
        .is_some_and(|s| chosen.iter().any(|c| c == s)))
}

/// Every delivery the recipient gets for `event`: each channel the admin has switched on
/// for it, at the addresses that channel knows for them.
fn resolve(
    c: &Connection,
    event: EventKind,
    r: &Recipient,
    fallback: Language,
) -> DbResult<Vec<Target>> {
    let mut out = Vec::new();
    for ch in CHANNELS {
        if rule_enabled(c, event, ch.channel())? {
            out.extend(ch.addresses(c, r, fallback)?);
        }
    }
    Ok(out)
}

/// Queues a notification in the caller's write transaction: it commits (or rolls back)
/// with the change that caused it, and the worker delivers it afterwards. Applies the
/// per-event switches, picks each recipient's language, renders the template, and skips
/// blocked chats. Returns the ids of the queued messages (none when every switch is off
/// or the same `key` was queued before). No network I/O happens here.
///
/// For a bot reply the body is `data["text"]`, used as is.
pub fn enqueue(c: &Connection, n: &Notification) -> DbResult<Vec<i64>> {
    if n.event == EventKind::OrderStatusChanged && !customer_wants_status(c, &n.data)? {
        return Ok(Vec::new());
    }
    let fallback = default_language(c)?;
    let mut data = n.data.clone();
    add_shop_data(c, &mut data)?;
    let now_ms = now_ms();
    let mut ids = Vec::new();
    for r in &n.recipients {
        for t in resolve(c, n.event, r, fallback)? {
            let (subject, mut body) = if n.event == EventKind::BotReply {
                (String::new(), data.get("text").cloned().unwrap_or_default())
            } else {
                let (s, b) = template(c, n.event, t.language)?;
                (render(&s, &data), render(&b, &data))
            };
            if t.channel == Channel::Sms && n.event != EventKind::Test {
                body = sms::with_invitation(c, r, &t.address, t.language, body)?;
            }
            let id = outbox::insert(
                c,
                &outbox::NewMessage {
                    event: n.event.as_str(),
                    dedupe_key: &n.key,
                    channel: t.channel.as_str(),
                    recipient: &t.address,
                    user_id: t.user_id,
                    language: t.language.code(),
                    subject: &subject,
                    body: &body,
                },
                now_ms,
            )?;
            ids.extend(id);
        }
    }
    Ok(ids)
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

mod bot;
mod channels;
mod schedules;
mod service;
mod settings_forms;
pub mod sms;
mod templates;

pub use bot::*;
pub use channels::*;
pub use schedules::*;
pub use service::*;
pub use settings_forms::*;
pub use templates::*;
#[allow(unused_imports)]
use {bot::*, channels::*, schedules::*, service::*, settings_forms::*, templates::*};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_known_and_keeps_unknown() {
        let data = TemplateData::from([("order_number".to_string(), "A-1".to_string())]);
        assert_eq!(render("№{order_number} {nope} {", &data), "№A-1 {nope} {");
        assert_eq!(render("{ x } {order_number}", &data), "{ x } A-1");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = DeliveryPolicy {
            max_attempts: 5,
            retry_base_ms: 100,
            retry_max_ms: 1000,
            poll_ms: 10,
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(10), Duration::from_millis(1000));
        assert_eq!(p.backoff(100), Duration::from_millis(1000));
    }

    #[test]
    fn masks_tokens() {
        assert_eq!(mask_secret("123456789:AAExampleTokenXyz"), "123456…Xyz");
        assert_eq!(mask_secret("short"), "…");
        assert_eq!(mask_secret(""), "");
    }

    #[test]
    fn emails() {
        assert!(valid_email("a@b.uz"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("a b@c.uz"));
        assert_eq!(bare_address("Shop <shop@x.uz>"), "shop@x.uz");
    }

    #[test]
    fn every_default_template_exists_in_every_language() {
        for e in EventKind::TEMPLATED
            .into_iter()
            .chain([EventKind::BotReply])
        {
            for l in Language::ALL {
                let (s, b) = default_template(e, l);
                assert!(!b.starts_with("notify."), "{e:?} {l:?} body missing");
                assert!(!s.starts_with("notify."), "{e:?} {l:?} subject missing");
            }
        }
    }

    #[tokio::test]
    async fn enqueue_applies_rules_dedupes_and_rolls_back_with_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), &Default::default()).unwrap();
        let uid: i64 = db
            .write(|c| {
                c.execute("INSERT INTO users (username, display_name, role, language, password_hash, created_at, updated_at) VALUES ('m', 'Master', 'master', 'ru', 'x', 0, 0)", [])?;
                let id = c.last_insert_rowid();
                tg::touch(c, 77, None, 0)?;
                tg::link_user(c, 77, id, 0)?;
                Ok(id)
            })
            .await
            .unwrap();
        let n = Notification {
            event: EventKind::OrderAssigned,
            key: "order:1:assigned".into(),
            recipients: vec![Recipient::Staff(uid)],
            data: TemplateData::from([("order_number".to_string(), "A-7".to_string())]),
        };
        let n2 = n.clone();
        let ids = db.write(move |c| enqueue(c, &n2)).await.unwrap();
        assert_eq!(ids.len(), 1);
        let n2 = n.clone();
        assert!(
            db.write(move |c| enqueue(c, &n2)).await.unwrap().is_empty(),
            "same key twice is one message"
        );
        // A change that fails takes its notification with it.
        let mut n3 = n.clone();
        n3.key = "order:2:assigned".into();
        let r = db
            .write(move |c| {
                enqueue(c, &n3)?;
                Err::<(), _>(crate::db::DbError::Task("refused".into()))
            })
            .await;
        assert!(r.is_err());
        let (count, body, lang): (i64, String, String) = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*), max(body), max(language) FROM notify_outbox",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(count, 1);
        assert!(body.contains("A-7"), "{body}");
        assert_eq!(lang, "ru", "the master's language is used");
        // Switched off: nothing is queued.
        db.write(|c| settings::set(c, "notify.rule.order.assigned.telegram", "0", 0))
            .await
            .unwrap();
        let mut n4 = n.clone();
        n4.key = "order:3:assigned".into();
        assert!(db.write(move |c| enqueue(c, &n4)).await.unwrap().is_empty());
    }
}
