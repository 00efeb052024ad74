//! The bot's conversation: deep links that link a chat to a staff member or a customer,
//! commands (`/start`, `/status`, `/my`) and the replies queued for them.

use super::*;

/// A message a chat sent to the bot.
#[derive(Debug, Clone, Default)]
pub struct IncomingMessage {
    pub update_id: i64,
    pub chat_id: i64,
    /// Telegram's id of the message in its chat.
    pub message_id: i64,
    /// The Telegram client's language (`ru`, `en`, `uz`), when it said.
    pub language_code: Option<String>,
    /// The text, or a file's caption.
    pub text: String,
    /// The sender's name as their Telegram profile gives it.
    pub from_name: String,
    /// The message of ours this one answers, if any.
    pub reply_to: Option<i64>,
    pub content: IncomingContent,
}

/// What a message carries besides its text.
#[derive(Debug, Clone, Default)]
pub enum IncomingContent {
    #[default]
    Text,
    File(IncomingFile),
    Location {
        latitude: f64,
        longitude: f64,
    },
    /// A contact card; `own` when it is the sender's own number (the "share my phone
    /// number" button), which alone links the chat to a customer.
    Contact {
        phone: String,
        name: String,
        own: bool,
    },
    /// A kind the inbox does not show (a poll, a dice, a game): named, so staff see that
    /// something came.
    Other(String),
}

/// A file Telegram holds for us until we fetch it.
#[derive(Debug, Clone, Default)]
pub struct IncomingFile {
    /// photo, document, voice, audio, video, video_note, animation, sticker.
    pub kind: &'static str,
    pub file_id: String,
    pub name: Option<String>,
    pub mime: Option<String>,
    pub size: Option<i64>,
}

impl IncomingContent {
    /// (kind, text to store, file to fetch).
    pub fn stored(&self, text: &str) -> (&str, String, Option<&IncomingFile>) {
        match self {
            IncomingContent::Text => ("text", text.to_string(), None),
            IncomingContent::File(f) => (f.kind, text.to_string(), Some(f)),
            IncomingContent::Location {
                latitude,
                longitude,
            } => ("location", format!("{latitude:.6}, {longitude:.6}"), None),
            IncomingContent::Contact { phone, name, .. } => (
                "contact",
                format!("{name} {phone}").trim().to_string(),
                None,
            ),
            IncomingContent::Other(kind) => ("other", format!("[{kind}]"), None),
        }
    }
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

pub(super) fn reply(c: &Connection, m: &IncomingMessage, text: String) -> DbResult<()> {
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

pub(super) fn order_lines(tr: Tr, orders: &[OrderBrief]) -> String {
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
/// an update is acted on once): links chats, answers commands by queuing a reply, and
/// files everything else a customer writes in their conversation.
pub fn handle_message(
    tx: &mut crate::domain::work::Tx<'_>,
    orders: &dyn OrderLookup,
    m: &IncomingMessage,
    online: &[crate::model::UserId],
) -> crate::domain::DomainResult<()> {
    let now = tx.now();
    let c: &Connection = tx.conn();
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
    let command = matches!(m.content, IncomingContent::Text) && text.starts_with('/');
    if !command && staff.is_none() {
        return crate::domain::conversations::ingest_telegram(tx, m, lang, online);
    }
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
                let order = match crate::domain::customer_links::consume(c, &arg[1..], now)? {
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
        // A customer's "no more promotions": off marketing, logged as their change.
        "/stop" => match chat.as_ref().and_then(|ch| ch.customer_id) {
            None => tr.t("notify.bot.not_customer").to_string(),
            Some(cid) => {
                crate::db::promos::stop_marketing(c, cid, "telegram", now)?;
                tx.log(
                    "unsubscribe",
                    "customer",
                    cid,
                    serde_json::json!({"via": "telegram"}),
                );
                let e = crate::domain::customers::updated_event(tx, cid)?;
                tx.emit(e);
                tr.t("promos.bot.stopped").to_string()
            }
        },
        "/status" => match chat.as_ref().and_then(|ch| ch.customer_id) {
            None => tr.t("notify.bot.not_customer").to_string(),
            Some(_) if !orders.available() => tr.t("notify.bot.orders_unavailable").to_string(),
            Some(cid) => order_lines(tr, &orders.open_for_customer(c, cid)?),
        },
        _ => tr.t("notify.bot.help").to_string(),
    };
    Ok(reply(c, m, answer)?)
}
