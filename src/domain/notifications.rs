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
use std::sync::{Arc, RwLock};
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
            EventKind::BotReply => ("notify.tpl.bot_reply.subject", "notify.tpl.bot_reply.body"),
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Telegram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Telegram => "telegram",
        }
    }
}

/// The switches the admin sees: (event, channel, on by default). Staff events go to the
/// staff member's linked Telegram chats and, when they gave one, their e-mail address.
pub const RULES: [(EventKind, Channel, bool); 9] = [
    (EventKind::OrderAssigned, Channel::Telegram, true),
    (EventKind::OrderAssigned, Channel::Email, true),
    (EventKind::OrderComment, Channel::Telegram, true),
    (EventKind::OrderComment, Channel::Email, true),
    (EventKind::OrderOverdue, Channel::Telegram, true),
    (EventKind::OrderOverdue, Channel::Email, true),
    (EventKind::OrderStatusChanged, Channel::Telegram, true),
    (EventKind::OrderStatusChanged, Channel::Email, true),
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
        return Ok(matches!(event, EventKind::Test | EventKind::BotReply));
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

/// The placeholders templates may use, shown in the editor.
pub const PLACEHOLDERS: [&str; 16] = [
    "customer_name",
    "order_number",
    "device",
    "status",
    "amount_due",
    "master_name",
    "comment",
    "due_date",
    "shop_name",
    "shop_address",
    "shop_hours",
    "date",
    "new_orders",
    "overdue_orders",
    "ready_not_collected",
    "missed_calls",
];

/// Replaces `{name}` with the value from `data`; unknown placeholders stay visible so a
/// typo shows in the preview instead of vanishing.
pub fn render(template: &str, data: &TemplateData) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close)
                if after[..close]
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
            {
                let name = &after[..close];
                match data.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The subject and body used for an event in a language: the admin's version, or the
/// built-in one.
pub fn template(c: &Connection, event: EventKind, lang: Language) -> DbResult<(String, String)> {
    if let Some(t) = tg::template(c, event.as_str(), lang.code())? {
        return Ok(t);
    }
    Ok(default_template(event, lang))
}

pub fn default_template(event: EventKind, lang: Language) -> (String, String) {
    let (s, b) = event.template_keys();
    let tr = Tr::new(lang);
    (tr.t(s).to_string(), tr.t(b).to_string())
}

/// Shop details every template may use.
fn add_shop_data(c: &Connection, data: &mut TemplateData) -> DbResult<()> {
    for (placeholder, key) in [
        ("shop_name", "shop.name"),
        ("shop_address", "shop.address"),
        ("shop_hours", "shop.hours"),
    ] {
        if !data.contains_key(placeholder) {
            data.insert(
                placeholder.into(),
                settings::get(c, key)?.unwrap_or_default(),
            );
        }
    }
    Ok(())
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

/// One resolved delivery: channel, address, language, staff user.
struct Target {
    channel: Channel,
    address: String,
    language: Language,
    user_id: Option<i64>,
}

fn resolve(
    c: &Connection,
    event: EventKind,
    r: &Recipient,
    fallback: Language,
) -> DbResult<Vec<Target>> {
    let mut out = Vec::new();
    let tg_on = rule_enabled(c, event, Channel::Telegram)?;
    let mail_on = rule_enabled(c, event, Channel::Email)?;
    match r {
        Recipient::Staff(user_id) => {
            let Some((lang, _, active)) = tg::user_brief(c, *user_id)? else {
                return Ok(out);
            };
            if !active {
                return Ok(out);
            }
            let language = Language::from_code(&lang).unwrap_or(fallback);
            if tg_on {
                for chat in tg::chats_of_user(c, *user_id)? {
                    out.push(Target {
                        channel: Channel::Telegram,
                        address: chat.to_string(),
                        language,
                        user_id: Some(*user_id),
                    });
                }
            }
            if mail_on {
                if let Some(address) = crate::db::accounts::active_user_email(c, *user_id)? {
                    out.push(Target {
                        channel: Channel::Email,
                        address,
                        language,
                        user_id: Some(*user_id),
                    });
                }
            }
        }
        Recipient::Customer {
            customer_id,
            email,
            language,
        } => {
            if tg_on {
                for (chat, chat_lang) in tg::chats_of_customer(c, *customer_id)? {
                    let language = language
                        .or_else(|| chat_lang.as_deref().and_then(Language::from_code))
                        .unwrap_or(fallback);
                    out.push(Target {
                        channel: Channel::Telegram,
                        address: chat.to_string(),
                        language,
                        user_id: None,
                    });
                }
            }
            if let Some(e) = email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
                if mail_on {
                    out.push(Target {
                        channel: Channel::Email,
                        address: e.to_string(),
                        language: language.unwrap_or(fallback),
                        user_id: None,
                    });
                }
            }
        }
        Recipient::TelegramChat(chat) => {
            if tg_on && !tg::is_blocked(c, *chat)? {
                let language = tg::chat(c, *chat)?
                    .and_then(|ch| ch.language)
                    .and_then(|l| Language::from_code(&l))
                    .unwrap_or(fallback);
                out.push(Target {
                    channel: Channel::Telegram,
                    address: chat.to_string(),
                    language,
                    user_id: None,
                });
            }
        }
        Recipient::Email(e) => {
            if mail_on {
                out.push(Target {
                    channel: Channel::Email,
                    address: e.trim().to_string(),
                    language: fallback,
                    user_id: None,
                });
            }
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
            let (subject, body) = if n.event == EventKind::BotReply {
                (String::new(), data.get("text").cloned().unwrap_or_default())
            } else {
                let (s, b) = template(c, n.event, t.language)?;
                (render(&s, &data), render(&b, &data))
            };
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

// ---------------------------------------------------------------------------------------
// Settings

/// How SMTP is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server lacks it.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the shop's own LAN.
    Plain,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::Plain => "plain",
        }
    }
    pub fn parse(s: &str) -> Option<SmtpSecurity> {
        match s {
            "starttls" => Some(SmtpSecurity::StartTls),
            "tls" => Some(SmtpSecurity::Tls),
            "plain" => Some(SmtpSecurity::Plain),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    /// Secret: never rendered back.
    pub password: String,
    pub from: String,
    /// Accept any certificate (a LAN relay with a self-signed one). Prefer `ca_pem`.
    pub accept_invalid_certs: bool,
    /// Extra trusted CA certificate(s), PEM, for a relay with a private CA.
    pub ca_pem: String,
    pub timeout_secs: u64,
}

impl SmtpSettings {
    pub fn configured(&self) -> bool {
        !self.host.is_empty() && !self.from.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramSettings {
    /// Secret: shown only masked.
    pub token: String,
    /// Bot API base URL; a local mirror or a test stand-in may replace the public one.
    pub api_url: String,
    /// Learned from getMe; used to build deep links.
    pub bot_username: String,
    /// The next getUpdates offset (saved with the handled updates).
    pub offset: i64,
    /// Long-poll wait per getUpdates call.
    pub poll_timeout_secs: u32,
    /// Minimum gap between two messages to one chat (Telegram: about 1 s).
    pub per_chat_gap_ms: u64,
    /// Messages per second over all chats (Telegram: about 30).
    pub global_per_sec: u32,
}

pub const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";

/// Retry policy of the delivery worker. Read at every cycle, so changes apply at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts before a message is dead-lettered.
    pub max_attempts: i64,
    /// First retry delay; doubles each attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How often the worker looks for due messages when not woken.
    pub poll_ms: u64,
}

impl DeliveryPolicy {
    /// Delay before the next attempt after `attempts` failed ones (1-based): base·2^(n-1),
    /// capped.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exp = (attempts.max(1) - 1).min(30) as u32;
        let ms = self
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_ms);
        Duration::from_millis(ms)
    }
}

#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub smtp: SmtpSettings,
    pub telegram: TelegramSettings,
    pub policy: DeliveryPolicy,
}

fn parse_or<T: std::str::FromStr>(m: &BTreeMap<String, String>, key: &str, default: T) -> T {
    m.get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Reads every notification setting (one query over the small settings table).
pub fn load_settings(c: &Connection) -> DbResult<NotifySettings> {
    let m: BTreeMap<String, String> = settings::all(c)?.into_iter().collect();
    let s = |k: &str| m.get(k).cloned().unwrap_or_default();
    Ok(NotifySettings {
        smtp: SmtpSettings {
            host: s("smtp.host"),
            port: parse_or(&m, "smtp.port", 587),
            security: SmtpSecurity::parse(&s("smtp.security")).unwrap_or(SmtpSecurity::StartTls),
            username: s("smtp.username"),
            password: s("smtp.password"),
            from: s("smtp.from"),
            accept_invalid_certs: s("smtp.accept_invalid_certs") == "1",
            ca_pem: s("smtp.ca_pem"),
            timeout_secs: parse_or(&m, "smtp.timeout_secs", 20),
        },
        telegram: TelegramSettings {
            token: s("telegram.token"),
            api_url: m
                .get("telegram.api_url")
                .filter(|u| !u.is_empty())
                .cloned()
                .unwrap_or_else(|| DEFAULT_TELEGRAM_API.into()),
            bot_username: s("telegram.bot_username"),
            offset: parse_or(&m, "telegram.offset", 0i64),
            poll_timeout_secs: parse_or(&m, "telegram.poll_timeout_secs", 25),
            per_chat_gap_ms: parse_or(&m, "telegram.per_chat_gap_ms", 1000),
            global_per_sec: parse_or(&m, "telegram.global_per_sec", 30u32).max(1),
        },
        policy: DeliveryPolicy {
            max_attempts: parse_or(&m, "notify.max_attempts", 10i64).max(1),
            retry_base_ms: parse_or(&m, "notify.retry_base_ms", 5_000),
            retry_max_ms: parse_or(&m, "notify.retry_max_ms", 3_600_000),
            poll_ms: parse_or(&m, "notify.poll_ms", 1_000u64).max(10),
        },
    })
}

/// "123456:AAE…xY": enough to recognise a token, not to use it.
pub fn mask_secret(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    if chars.len() <= 10 {
        return "…".into();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}…{tail}")
}

/// The admin's SMTP form. An empty password keeps the stored one.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SmtpForm {
    pub host: String,
    pub port: String,
    pub security: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub clear_password: Option<String>,
    pub from: String,
    #[serde(default)]
    pub accept_invalid_certs: Option<String>,
    #[serde(default)]
    pub ca_pem: String,
}

/// The non-secret rule settings the admin page shows besides the switches.
#[derive(Debug, Clone)]
pub struct AudienceSettings {
    pub customer_statuses: String,
    pub default_language: String,
    pub summary_emails: String,
    pub summary_hour: String,
}

/// Who gets the daily summary and when (shop time).
#[derive(Debug, Clone, Default)]
pub struct SummaryForm {
    pub emails: String,
    pub hour: String,
}

/// The admin's Telegram form. An empty token keeps the stored one.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TelegramForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub clear_token: Option<String>,
    #[serde(default)]
    pub api_url: String,
}

// ---------------------------------------------------------------------------------------
// Orders, as the bot needs them

/// An order as the bot shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBrief {
    pub order_id: i64,
    pub customer_id: i64,
    pub number: String,
    pub device: String,
    pub status: String,
}

/// What the bot needs from the orders module; the core implements it over its tables
/// (the `&Connection` is the caller's transaction) and installs it with
/// [`Notifications::set_order_lookup`].
pub trait OrderLookup: Send + Sync {
    /// False while no orders module is wired in: the bot then says so instead of
    /// pretending there are no orders.
    fn available(&self) -> bool {
        true
    }
    /// The order numbered `code` (a customer link code resolves to it).
    fn by_code(&self, c: &Connection, code: &str) -> DbResult<Option<OrderBrief>>;
    /// Open orders assigned to a staff member (`/my`).
    fn open_for_staff(&self, c: &Connection, user_id: UserId) -> DbResult<Vec<OrderBrief>>;
    /// A customer's open orders (`/status`).
    fn open_for_customer(&self, c: &Connection, customer_id: i64) -> DbResult<Vec<OrderBrief>>;
    /// Figures for the daily summary of the day starting at `since` (Unix seconds); None
    /// while the modules that know them are not wired in (no summary is sent then).
    fn daily_figures(&self, _c: &Connection, _since: i64) -> DbResult<Option<DailyFigures>> {
        Ok(None)
    }
    /// Open orders with a master that are overdue at `now` (Unix seconds), with the master
    /// and the date they were due (shown to the master).
    fn overdue_assigned(&self, _c: &Connection, _now: i64) -> DbResult<Vec<OverdueOrder>> {
        Ok(Vec::new())
    }
}

/// An overdue order to remind its master of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueOrder {
    pub order: OrderBrief,
    pub master_id: UserId,
    /// As shown in the reminder, e.g. `28.11.2026`; empty when only the status limit passed.
    pub due_date: String,
}

/// Queues one reminder per overdue order to its master, once per shop day, from the
/// configured hour on (`notify.overdue_hour`, shop time, default 9). The order and the date
/// are the dedupe key, so calling this every minute (and across restarts) reminds once a
/// day. Returns how many reminders this call queued.
pub fn queue_overdue_reminders_if_due(
    c: &Connection,
    orders: &dyn OrderLookup,
    clock: &super::clock::ShopClock,
) -> DbResult<usize> {
    let now = clock.now();
    let hour: i64 = settings::get(c, "notify.overdue_hour")?
        .and_then(|h| h.trim().parse().ok())
        .filter(|h| (0..24).contains(h))
        .unwrap_or(9);
    if (clock.local(now).hour as i64) < hour {
        return Ok(0);
    }
    let today = super::clock::iso_date(clock.date_of(now));
    let mut queued = 0;
    for o in orders.overdue_assigned(c, now)? {
        let data: TemplateData = [
            ("order_number", o.order.number.clone()),
            ("device", o.order.device.clone()),
            ("status", o.order.status.clone()),
            ("due_date", o.due_date.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        queued += enqueue(
            c,
            &Notification {
                event: EventKind::OrderOverdue,
                key: format!("order:{}:overdue:{today}", o.order.order_id),
                recipients: vec![Recipient::Staff(o.master_id)],
                data,
            },
        )?
        .len();
    }
    Ok(queued)
}

/// What the evening summary tells the admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DailyFigures {
    pub new_orders: i64,
    pub overdue_orders: i64,
    pub ready_not_collected: i64,
    pub missed_calls: i64,
}

/// Queues today's summary once the configured hour has passed (`notify.summary_hour`,
/// shop time, default 19) to every active admin with an e-mail address and the extra
/// addresses in `notify.summary_emails`. The date is the
/// dedupe key, so calling this often (and across restarts) sends one summary a day.
/// Returns whether a summary was queued by this call.
pub fn queue_daily_summary_if_due(
    c: &Connection,
    orders: &dyn OrderLookup,
    clock: &super::clock::ShopClock,
) -> DbResult<bool> {
    let now = clock.now();
    let emails_setting = settings::get(c, "notify.summary_emails")?.unwrap_or_default();
    let mut emails: Vec<String> = crate::db::accounts::active_admin_emails(c)?;
    for e in emails_setting_list(&emails_setting) {
        if !emails.iter().any(|have| have.eq_ignore_ascii_case(&e)) {
            emails.push(e);
        }
    }
    if emails.is_empty() {
        return Ok(false);
    }
    let hour: i64 = settings::get(c, "notify.summary_hour")?
        .and_then(|h| h.trim().parse().ok())
        .filter(|h| (0..24).contains(h))
        .unwrap_or(19);
    if (clock.local(now).hour as i64) < hour {
        return Ok(false);
    }
    let since = clock.start_of_day_of(now);
    let Some(f) = orders.daily_figures(c, since)? else {
        return Ok(false);
    };
    let date = clock.format_date(now);
    let data: TemplateData = [
        ("date", date.clone()),
        ("new_orders", f.new_orders.to_string()),
        ("overdue_orders", f.overdue_orders.to_string()),
        ("ready_not_collected", f.ready_not_collected.to_string()),
        ("missed_calls", f.missed_calls.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let ids = enqueue(
        c,
        &Notification {
            event: EventKind::DailySummary,
            key: format!("summary:{date}"),
            recipients: emails.into_iter().map(Recipient::Email).collect(),
            data,
        },
    )?;
    Ok(!ids.is_empty())
}

fn emails_setting_list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|e| valid_email(e))
        .map(str::to_string)
        .collect()
}

/// Until the orders module exists: finds nothing and says it is unavailable.
pub struct NoOrders;

impl OrderLookup for NoOrders {
    fn available(&self) -> bool {
        false
    }
    fn by_code(&self, _: &Connection, _: &str) -> DbResult<Option<OrderBrief>> {
        Ok(None)
    }
    fn open_for_staff(&self, _: &Connection, _: UserId) -> DbResult<Vec<OrderBrief>> {
        Ok(Vec::new())
    }
    fn open_for_customer(&self, _: &Connection, _: i64) -> DbResult<Vec<OrderBrief>> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------------------------------
// The bot's conversation

/// A text message a chat sent to the bot.
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    pub update_id: i64,
    pub chat_id: i64,
    /// The Telegram client's language (`ru`, `en`, `uz`), when it said.
    pub language_code: Option<String>,
    pub text: String,
}

/// Deep-link payload prefixes: `/start s<code>` links staff, `/start o<order code>` a
/// customer's chat to an order.
pub const STAFF_LINK_PREFIX: char = 's';
pub const ORDER_LINK_PREFIX: char = 'o';

/// `https://t.me/<bot>?start=o<code>` for a one-time customer link code
/// (`domain::customer_links`): for the intake receipt's QR code. None until the bot's name
/// is known (a token was saved and getMe answered).
pub fn customer_deep_link(bot_username: &str, order_code: &str) -> Option<String> {
    (!bot_username.is_empty())
        .then(|| format!("https://t.me/{bot_username}?start={ORDER_LINK_PREFIX}{order_code}"))
}

fn reply(c: &Connection, m: &IncomingMessage, text: String) -> DbResult<()> {
    enqueue(
        c,
        &Notification {
            event: EventKind::BotReply,
            key: format!("tg-update:{}", m.update_id),
            recipients: vec![Recipient::TelegramChat(m.chat_id)],
            data: TemplateData::from([("text".to_string(), text)]),
        },
    )?;
    Ok(())
}

fn order_lines(tr: Tr, orders: &[OrderBrief]) -> String {
    if orders.is_empty() {
        return tr.t("notify.bot.no_open_orders").to_string();
    }
    orders
        .iter()
        .map(|o| {
            let mut line = format!("№{} · {}", o.number, o.status);
            if !o.device.is_empty() {
                line = format!("№{} · {} · {}", o.number, o.device, o.status);
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Handles one message inside the poller's write transaction (with the saved offset, so
/// an update is acted on once): links chats, answers commands by queuing a reply.
pub fn handle_message(
    c: &Connection,
    orders: &dyn OrderLookup,
    m: &IncomingMessage,
    now: i64,
) -> DbResult<()> {
    let client_lang = m
        .language_code
        .as_deref()
        .and_then(Language::from_accept_language);
    tg::touch(c, m.chat_id, client_lang.map(|l| l.code()), now)?;
    let chat = tg::chat(c, m.chat_id)?;
    let staff = match chat.as_ref().and_then(|ch| ch.user_id) {
        Some(u) => tg::user_brief(c, u)?.map(|b| (u, b)),
        None => None,
    };
    let lang = staff
        .as_ref()
        .and_then(|(_, (l, _, _))| Language::from_code(l))
        .or_else(|| {
            chat.as_ref()
                .and_then(|ch| ch.language.as_deref())
                .and_then(Language::from_code)
        })
        .or(client_lang)
        .unwrap_or(default_language(c)?);
    let tr = Tr::new(lang);
    let text = m.text.trim();
    let (command, arg) = match text.split_once(char::is_whitespace) {
        Some((cmd, a)) => (cmd, a.trim()),
        None => (text, ""),
    };
    // "/my@shop_bot" in groups: drop the mention.
    let command = command.split('@').next().unwrap_or(command);
    let answer = match command {
        "/start" if arg.starts_with(STAFF_LINK_PREFIX) => {
            match tg::consume_link_code(c, &arg[1..], now)? {
                Some(user_id) => {
                    tg::link_user(c, m.chat_id, user_id, now)?;
                    let (ulang, name, _) = tg::user_brief(c, user_id)?.unwrap_or_default();
                    let utr = Tr::new(Language::from_code(&ulang).unwrap_or(lang));
                    utr.f("notify.bot.linked_staff", &[("name", &name)])
                }
                None => tr.t("notify.bot.link_invalid").to_string(),
            }
        }
        "/start" if arg.starts_with(ORDER_LINK_PREFIX) => {
            if !orders.available() {
                tr.t("notify.bot.orders_unavailable").to_string()
            } else {
                // Only a live one-time code from a receipt links (issue 14): an order
                // number alone is refused like any wrong code.
                let order = match super::customer_links::consume(c, &arg[1..], now)? {
                    Some(number) => orders.by_code(c, &number)?,
                    None => None,
                };
                match order {
                    Some(o) => {
                        tg::link_customer(c, m.chat_id, o.customer_id, now)?;
                        tr.f(
                            "notify.bot.linked_customer",
                            &[("order_number", &o.number), ("status", &o.status)],
                        )
                    }
                    None => tr.t("notify.bot.order_not_found").to_string(),
                }
            }
        }
        "/my" => match &staff {
            None => tr.t("notify.bot.not_staff").to_string(),
            Some(_) if !orders.available() => tr.t("notify.bot.orders_unavailable").to_string(),
            Some((u, _)) => order_lines(tr, &orders.open_for_staff(c, *u)?),
        },
        "/status" => match chat.as_ref().and_then(|ch| ch.customer_id) {
            None => tr.t("notify.bot.not_customer").to_string(),
            Some(_) if !orders.available() => tr.t("notify.bot.orders_unavailable").to_string(),
            Some(cid) => order_lines(tr, &orders.open_for_customer(c, cid)?),
        },
        _ => tr.t("notify.bot.help").to_string(),
    };
    reply(c, m, answer)
}

// ---------------------------------------------------------------------------------------
// The service the web layer and the worker use

/// Notification settings, linking, dead letters; shared by handlers, the worker and the
/// poller. Cheap to clone.
#[derive(Clone)]
pub struct Notifications {
    db: Db,
    store: Store,
    clock: super::clock::Clock,
    orders: Arc<RwLock<Arc<dyn OrderLookup>>>,
    wake: Arc<tokio::sync::Notify>,
}

/// A staff link code and the deep link that carries it.
#[derive(Debug, Clone)]
pub struct LinkCode {
    pub code: String,
    /// `/start s<code>`, to type if the link cannot be opened.
    pub command: String,
    /// None until the bot's username is known.
    pub url: Option<String>,
    pub expires_at: i64,
}

/// How long a staff link code stays valid.
pub const LINK_CODE_TTL_SECS: i64 = 15 * 60;

impl Notifications {
    pub fn new(store: Store, clock: super::clock::Clock) -> Notifications {
        Notifications {
            db: store.db().clone(),
            store,
            clock,
            orders: Arc::new(RwLock::new(Arc::new(NoOrders))),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Installs the orders module's lookup (the core calls this when wiring the app).
    pub fn set_order_lookup(&self, lookup: Arc<dyn OrderLookup>) {
        *self.orders.write().unwrap_or_else(|e| e.into_inner()) = lookup;
    }

    pub fn order_lookup(&self) -> Arc<dyn OrderLookup> {
        self.orders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells the worker that messages were committed, so it need not wait for its poll.
    pub fn wake(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// What the worker waits on between polls.
    pub fn wake_signal(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn settings(&self) -> DomainResult<NotifySettings> {
        Ok(self.db.read(load_settings).await?)
    }

    async fn put(
        &self,
        by: &Actor,
        values: Vec<(String, String)>,
        what: &'static str,
    ) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                let keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
                for (k, v) in &values {
                    settings::set(tx, k, v, tx.now())?;
                }
                tx.log("update", what, None, serde_json::json!({ "keys": keys }));
                tx.emit(settings_event(what));
                Ok(())
            })
            .await?;
        self.wake();
        Ok(())
    }

    pub async fn save_smtp(&self, by: &Actor, f: SmtpForm) -> DomainResult<()> {
        let host = f.host.trim().to_string();
        let port: u16 = f
            .port
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| DomainError::invalid("err.notify.smtp_port"))?;
        let security = SmtpSecurity::parse(f.security.trim())
            .ok_or_else(|| DomainError::invalid("err.notify.smtp_security"))?;
        let from = f.from.trim().to_string();
        if !host.is_empty() && !valid_email(bare_address(&from)) {
            return Err(DomainError::invalid("err.notify.smtp_from"));
        }
        if host.len() > 253 || host.contains(char::is_whitespace) {
            return Err(DomainError::invalid("err.notify.smtp_host"));
        }
        let ca = f.ca_pem.trim().to_string();
        if !ca.is_empty() && !ca.contains("-----BEGIN CERTIFICATE-----") {
            return Err(DomainError::invalid("err.notify.smtp_ca"));
        }
        let mut v = vec![
            ("smtp.host".to_string(), host),
            ("smtp.port".into(), port.to_string()),
            ("smtp.security".into(), security.as_str().into()),
            ("smtp.username".into(), f.username.trim().to_string()),
            ("smtp.from".into(), from),
            (
                "smtp.accept_invalid_certs".into(),
                if f.accept_invalid_certs.is_some() {
                    "1"
                } else {
                    "0"
                }
                .into(),
            ),
            ("smtp.ca_pem".into(), ca),
        ];
        if f.clear_password.is_some() {
            v.push(("smtp.password".into(), String::new()));
        } else if !f.password.is_empty() {
            v.push(("smtp.password".into(), f.password));
        }
        self.put(by, v, "settings_smtp").await
    }

    pub async fn save_telegram(&self, by: &Actor, f: TelegramForm) -> DomainResult<()> {
        let mut v = Vec::new();
        let url = f.api_url.trim().trim_end_matches('/').to_string();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(DomainError::invalid("err.notify.bot_url"));
        }
        v.push(("telegram.api_url".to_string(), url));
        let token = f.token.trim().to_string();
        if f.clear_token.is_some() {
            v.push(("telegram.token".into(), String::new()));
            v.push(("telegram.bot_username".into(), String::new()));
        } else if !token.is_empty() {
            // Bot tokens look like 123456789:AA…; anything else is a paste error.
            let ok = token.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty()
                    && id.chars().all(|ch| ch.is_ascii_digit())
                    && rest.len() >= 20
                    && rest
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            });
            if !ok {
                return Err(DomainError::invalid("err.notify.bot_token"));
            }
            v.push(("telegram.token".into(), token));
            // A new bot: its name and update offset are learned afresh.
            v.push(("telegram.bot_username".into(), String::new()));
            v.push(("telegram.offset".into(), "0".into()));
        }
        self.put(by, v, "settings_telegram").await
    }

    /// Saves the per-event switches: `on` lists the (event, channel) pairs switched on;
    /// `customer_statuses` the status codes customers hear about (empty = all).
    pub async fn save_rules(
        &self,
        by: &Actor,
        on: &[(String, String)],
        customer_statuses: &str,
        default_language: &str,
        summary: &SummaryForm,
    ) -> DomainResult<()> {
        let mut v = Vec::new();
        for (e, ch, _) in RULES {
            let enabled = on
                .iter()
                .any(|(oe, och)| oe == e.as_str() && och == ch.as_str());
            v.push((rule_key(e, ch), if enabled { "1" } else { "0" }.to_string()));
        }
        let statuses: Vec<String> = customer_statuses
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if statuses.iter().any(|s| {
            s.len() > 40
                || !s
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        }) {
            return Err(DomainError::invalid("err.notify.status_codes"));
        }
        v.push(("notify.customer_statuses".into(), statuses.join(",")));
        let lang = Language::from_code(default_language).ok_or_else(|| {
            DomainError::invalid(Msg::new("err.language.unknown").with("value", default_language))
        })?;
        v.push(("notify.default_language".into(), lang.code().into()));
        let emails: Vec<&str> = summary
            .emails
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if let Some(bad) = emails.iter().find(|e| !valid_email(e)) {
            return Err(DomainError::invalid(
                Msg::new("err.notify.summary_recipient").with("value", bad),
            ));
        }
        v.push(("notify.summary_emails".into(), emails.join(",")));
        let hour: u8 = summary
            .hour
            .trim()
            .parse()
            .ok()
            .filter(|h| *h < 24)
            .ok_or_else(|| DomainError::invalid("err.notify.summary_hour"))?;
        v.push(("notify.summary_hour".into(), hour.to_string()));
        self.put(by, v, "settings_notify_rules").await
    }

    pub async fn rules(&self) -> DomainResult<Vec<(EventKind, Channel, bool)>> {
        Ok(self
            .db
            .read(|c| {
                RULES
                    .iter()
                    .map(|(e, ch, _)| Ok((*e, *ch, rule_enabled(c, *e, *ch)?)))
                    .collect()
            })
            .await?)
    }

    pub async fn audience_settings(&self) -> DomainResult<AudienceSettings> {
        Ok(self
            .db
            .read(|c| {
                Ok(AudienceSettings {
                    customer_statuses: settings::get(c, "notify.customer_statuses")?
                        .unwrap_or_default(),
                    default_language: default_language(c)?.code().to_string(),
                    summary_emails: settings::get(c, "notify.summary_emails")?.unwrap_or_default(),
                    summary_hour: settings::get(c, "notify.summary_hour")?
                        .unwrap_or_else(|| "19".into()),
                })
            })
            .await?)
    }

    /// Current template and whether it is the admin's own.
    pub async fn template(
        &self,
        event: EventKind,
        lang: Language,
    ) -> DomainResult<(String, String, bool)> {
        Ok(self
            .db
            .read(move |c| {
                Ok(match tg::template(c, event.as_str(), lang.code())? {
                    Some((s, b)) => (s, b, true),
                    None => {
                        let (s, b) = default_template(event, lang);
                        (s, b, false)
                    }
                })
            })
            .await?)
    }

    pub async fn save_template(
        &self,
        by: &Actor,
        event: EventKind,
        lang: Language,
        subject: &str,
        body: &str,
    ) -> DomainResult<()> {
        let subject = subject.trim().to_string();
        let body = body.trim().to_string();
        if body.is_empty() || body.chars().count() > 4000 || subject.chars().count() > 200 {
            return Err(DomainError::invalid("err.notify.template"));
        }
        self.store
            .write(by, move |tx| {
                tg::set_template(tx, event.as_str(), lang.code(), &subject, &body, tx.now())?;
                tx.log(
                    "update",
                    "notify_template",
                    None,
                    serde_json::json!({"event": event.as_str(), "language": lang.code()}),
                );
                tx.emit(settings_event("notify_template"));
                Ok(())
            })
            .await
    }

    /// Goes back to the built-in template.
    pub async fn reset_template(
        &self,
        by: &Actor,
        event: EventKind,
        lang: Language,
    ) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                tg::delete_template(tx, event.as_str(), lang.code())?;
                tx.log(
                    "reset",
                    "notify_template",
                    None,
                    serde_json::json!({"event": event.as_str(), "language": lang.code()}),
                );
                tx.emit(settings_event("notify_template"));
                Ok(())
            })
            .await
    }

    /// The template rendered with sample data and the shop's real details.
    pub async fn preview(
        &self,
        subject: String,
        body: String,
        tr: Tr,
    ) -> DomainResult<(String, String)> {
        let mut data = sample_data(tr);
        let data = self
            .db
            .read(move |c| {
                add_shop_data(c, &mut data)?;
                Ok(data)
            })
            .await?;
        Ok((render(&subject, &data), render(&body, &data)))
    }

    pub async fn stopped(&self, limit: i64) -> DomainResult<Vec<OutboxRow>> {
        Ok(self
            .db
            .read(move |c| outbox::list_stopped(c, limit))
            .await?)
    }

    /// Messages in the given outbox states (all when empty), newest first.
    pub async fn messages(&self, states: Vec<String>, limit: i64) -> DomainResult<Vec<OutboxRow>> {
        const KNOWN: [&str; 5] = ["pending", "sending", "sent", "failed", "dead"];
        if let Some(bad) = states.iter().find(|s| !KNOWN.contains(&s.as_str())) {
            return Err(DomainError::invalid(
                Msg::new("err.notify.state")
                    .with("value", bad)
                    .with("known", KNOWN.join(", ")),
            ));
        }
        if !(1..=500).contains(&limit) {
            return Err(DomainError::invalid(
                Msg::new("err.paging.limit").with("max", 500),
            ));
        }
        Ok(self
            .db
            .read(move |c| {
                let states: Vec<&str> = states.iter().map(String::as_str).collect();
                outbox::list_in_states(c, &states, limit)
            })
            .await?)
    }

    pub async fn counts(&self) -> DomainResult<Vec<(String, i64)>> {
        Ok(self.db.read(outbox::counts).await?)
    }

    pub async fn message(&self, id: i64) -> DomainResult<OutboxRow> {
        self.db
            .read(move |c| outbox::get(c, id))
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Puts a failed or dead message back in the queue.
    pub async fn retry(&self, by: &Actor, id: i64) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                if outbox::get(tx, id)?.is_none() {
                    return Err(DomainError::NotFound);
                }
                if !outbox::requeue(tx, id, now_ms())? {
                    return Err(DomainError::conflict("err.notify.retry_state"));
                }
                tx.log("retry", "notify_outbox", id, serde_json::json!({}));
                tx.emit(crate::events::Event::new(
                    "outbox.updated",
                    serde_json::json!({"id": id}),
                    crate::events::Audience::Admins,
                ));
                Ok(())
            })
            .await?;
        self.wake();
        Ok(())
    }

    /// Queues a test message to one address or chat and waits (up to `wait`) for its
    /// outcome, so the page can show the server's answer.
    pub async fn send_test(
        &self,
        by: &Actor,
        channel: Channel,
        to: &str,
        wait: Duration,
    ) -> DomainResult<OutboxRow> {
        let to = to.trim().to_string();
        let recipient = match channel {
            Channel::Email => {
                if !valid_email(&to) {
                    return Err(DomainError::invalid("err.notify.test_email"));
                }
                Recipient::Email(to)
            }
            Channel::Telegram => {
                if to.is_empty() {
                    // The admin's own linked chat.
                    let uid = by.user_id;
                    let chats = self.db.read(move |c| tg::chats_of_user(c, uid)).await?;
                    let Some(chat) = chats.first() else {
                        return Err(DomainError::invalid("err.notify.test_no_chat"));
                    };
                    Recipient::TelegramChat(*chat)
                } else {
                    Recipient::TelegramChat(
                        to.parse()
                            .map_err(|_| DomainError::invalid("err.notify.chat_id"))?,
                    )
                }
            }
        };
        let mut data = sample_data(Tr::new(by.language));
        data.insert("master_name".into(), by.display_name.clone());
        let n = Notification {
            event: EventKind::Test,
            key: format!("test:{}:{}", by.user_id, now_ms()),
            recipients: vec![recipient],
            data,
        };
        // A test message is queued as the admin's own change, so it is in the log too.
        let ids = self
            .store
            .write(by, move |tx| {
                let ids = enqueue(tx, &n)?;
                tx.log(
                    "test",
                    "notify_outbox",
                    ids.first().copied(),
                    serde_json::json!({}),
                );
                tx.emit(crate::events::Event::new(
                    "outbox.updated",
                    serde_json::json!({"ids": ids}),
                    crate::events::Audience::Admins,
                ));
                Ok(ids)
            })
            .await?;
        let Some(id) = ids.first().copied() else {
            return Err(DomainError::invalid("err.notify.blocked"));
        };
        self.wake();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let row = self.message(id).await?;
            // A first failed attempt is shown at once; the worker keeps retrying it.
            if row.state != "pending" && row.state != "sending"
                || row.attempts > 0
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(row);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fresh one-time code for linking the user's Telegram.
    pub async fn create_link_code(&self, by: &Actor) -> DomainResult<LinkCode> {
        let user_id = by.user_id;
        let code = super::accounts::random_token(20)
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>();
        let now = crate::db::now();
        let expires_at = now + LINK_CODE_TTL_SECS;
        let c2 = code.clone();
        let bot = self
            .store
            .write(by, move |tx| {
                tg::insert_link_code(tx, &c2, user_id, expires_at)?;
                tx.log("create", "telegram_link_code", None, serde_json::json!({}));
                tx.emit(settings_event("telegram_link_code"));
                Ok(settings::get(tx, "telegram.bot_username")?)
            })
            .await?
            .unwrap_or_default();
        let payload = format!("{STAFF_LINK_PREFIX}{code}");
        Ok(LinkCode {
            command: format!("/start {payload}"),
            url: (!bot.is_empty()).then(|| format!("https://t.me/{bot}?start={payload}")),
            code,
            expires_at,
        })
    }

    pub async fn chats_of(&self, user_id: UserId) -> DomainResult<Vec<tg::Chat>> {
        Ok(self
            .db
            .read(move |c| tg::all_chats_of_user(c, user_id))
            .await?)
    }

    pub async fn unlink(&self, by: &Actor, user_id: UserId) -> DomainResult<usize> {
        self.store
            .write(by, move |tx| {
                let n = tg::unlink_user(tx, user_id)?;
                tx.log(
                    "unlink",
                    "telegram_chat",
                    user_id,
                    serde_json::json!({"chats": n}),
                );
                tx.emit(settings_event("telegram_chat"));
                Ok(n)
            })
            .await
    }

    /// A one-time link for an intake receipt's QR code that links the customer's chat to
    /// the order (`https://t.me/<bot>?start=o<code>`); None until the bot is set up.
    pub async fn customer_link(
        &self,
        order_number: &str,
    ) -> DomainResult<Option<super::customer_links::CustomerLink>> {
        super::customer_links::issue(&self.db, order_number).await
    }

    /// Queues today's summary if it is due (see [`queue_daily_summary_if_due`]).
    /// Reminds masters of their overdue orders (once a day per order).
    pub async fn queue_overdue_reminders(&self) -> DomainResult<usize> {
        let orders = self.order_lookup();
        let clock = self.clock.get();
        let queued = self
            .db
            .write(move |c| queue_overdue_reminders_if_due(c, orders.as_ref(), &clock))
            .await?;
        if queued > 0 {
            self.wake();
        }
        Ok(queued)
    }

    pub async fn queue_daily_summary(&self) -> DomainResult<bool> {
        let orders = self.order_lookup();
        let clock = self.clock.get();
        let queued = self
            .db
            .write(move |c| queue_daily_summary_if_due(c, orders.as_ref(), &clock))
            .await?;
        if queued {
            self.wake();
        }
        Ok(queued)
    }

    /// Acts on a batch of bot messages and stores the next update offset in the same
    /// transaction, so each update is handled exactly once even across restarts.
    pub async fn handle_bot_messages(
        &self,
        messages: Vec<IncomingMessage>,
        next_offset: i64,
    ) -> DomainResult<()> {
        let orders = self.order_lookup();
        let now = crate::db::now();
        self.db
            .write(move |c| {
                for m in &messages {
                    handle_message(c, orders.as_ref(), m, now)?;
                }
                settings::set(c, "telegram.offset", &next_offset.to_string(), now)
            })
            .await?;
        self.wake();
        Ok(())
    }
}

/// Settings screens refresh on it (admins only).
fn settings_event(what: &str) -> crate::events::Event {
    crate::events::Event::new(
        "settings.updated",
        serde_json::json!({"key": what}),
        crate::events::Audience::Admins,
    )
}

/// Sample values for previews and tests, in the viewer's language.
pub fn sample_data(tr: Tr) -> TemplateData {
    [
        ("customer_name", "Aziz Karimov"),
        ("order_number", "A-1042"),
        ("device", "Samsung Galaxy A52"),
        ("status", tr.t("notify.sample.status")),
        ("status_code", "ready"),
        ("amount_due", "350 000 so'm"),
        ("master_name", "Sherzod"),
        ("comment", tr.t("notify.sample.comment")),
        ("due_date", "25.11.2026"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The address part of `Name <addr>`.
pub fn bare_address(s: &str) -> &str {
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    }
}

/// A plausible address: one @, something on each side, a dot in the domain, no spaces.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.len() <= 254
        && !s
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '<' || ch == '>')
}

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
