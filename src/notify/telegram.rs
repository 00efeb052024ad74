//! Telegram with teloxide: sending queued messages within Telegram's limits, and reading
//! the bot's updates by long polling (getUpdates), which works behind NAT.

use std::collections::HashMap;
use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::{ChatId, UpdateKind};
use teloxide::{ApiError, RequestError};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{settle, ChannelSender, Outcome};
use crate::db::{outbox, settings as kv, telegram as tg, Db};
use crate::domain::conversations::Conversations;
use crate::domain::notifications::{
    IncomingContent, IncomingFile, IncomingMessage, Notifications, NotifySettings, TelegramSettings,
};
use teloxide::types::{
    ButtonRequest, ChatAction, FileMeta, InputFile, KeyboardButton, KeyboardMarkup, Message,
};

/// Telegram's limit on one message's text, in characters.
const MAX_TEXT: usize = 4096;

/// A bot client for the token and API URL.
pub fn bot(s: &TelegramSettings) -> Result<Bot, String> {
    let url = s
        .api_url
        .parse()
        .map_err(|e| format!("Bot API URL {:?}: {e}", s.api_url))?;
    Ok(Bot::new(s.token.clone()).set_api_url(url))
}

/// Keeps the sending pace: a gap per chat, a global rate, and a pause after a 429.
#[derive(Default)]
pub(super) struct TelegramSender {
    /// Replies from the inbox: their files live under its attachments folder, and their
    /// thread hears how delivery went.
    conversations: Option<Conversations>,
    bot: Option<((String, String), Bot)>,
    chat_next: HashMap<i64, Instant>,
    global_next: Option<Instant>,
    paused_until: Option<Instant>,
}

impl TelegramSender {
    pub(super) fn for_inbox(c: Conversations) -> TelegramSender {
        TelegramSender {
            conversations: Some(c),
            ..Default::default()
        }
    }

    fn bot(&mut self, s: &TelegramSettings) -> Result<Bot, String> {
        let key = (s.token.clone(), s.api_url.clone());
        if let Some((k, b)) = &self.bot {
            if *k == key {
                return Ok(b.clone());
            }
        }
        let b = bot(s)?;
        self.bot = Some((key, b.clone()));
        Ok(b)
    }
}

/// What an API error means for the message and the chat.
fn classify(e: RequestError) -> (Outcome, bool) {
    match e {
        RequestError::RetryAfter(s) => (
            Outcome::Deferred {
                after: s.duration(),
                note: format!("Telegram 429: retry after {} s", s.seconds()),
            },
            false,
        ),
        RequestError::Api(
            ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::CantInitiateConversation,
        ) => (
            Outcome::Permanent("Telegram: the chat blocked the bot".into()),
            true,
        ),
        RequestError::Api(ApiError::Unknown(desc))
            if desc.starts_with("Internal Server Error") || desc.starts_with("Bad Gateway") =>
        {
            (Outcome::Transient(format!("Telegram: {desc}")), false)
        }
        RequestError::Api(e) => (Outcome::Permanent(format!("Telegram refused: {e}")), false),
        RequestError::MigrateToChatId(c) => (
            Outcome::Permanent(format!("Telegram: the chat moved to {c}")),
            false,
        ),
        other => (Outcome::Transient(format!("Telegram: {other}")), false),
    }
}

impl ChannelSender for TelegramSender {
    const CHANNEL: &'static str = "telegram";

    async fn deliver(
        &mut self,
        db: &Db,
        settings: &NotifySettings,
        batch: Vec<outbox::Claimed>,
        stop: &watch::Receiver<bool>,
    ) {
        let policy = settings.policy;
        let t = &settings.telegram;
        let per_chat = Duration::from_millis(t.per_chat_gap_ms);
        let global_gap = Duration::from_secs(1) / t.global_per_sec.max(1);
        let bot = if t.token.is_empty() {
            Err("Telegram bot token is not set (Settings → Notifications)".to_string())
        } else {
            self.bot(t)
        };
        let mut sent_ids: Vec<(i64, Option<i64>)> = Vec::new();
        for m in batch {
            let now = Instant::now();
            let defer = |until: Instant, note: &str| Outcome::Deferred {
                after: until.saturating_duration_since(now),
                note: note.to_string(),
            };
            let outcome = 'attempt: {
                if *stop.borrow() {
                    break 'attempt defer(now, "shutting down");
                }
                let bot = match &bot {
                    Ok(b) => b,
                    Err(e) => break 'attempt Outcome::Transient(e.clone()),
                };
                let Ok(chat) = m.recipient.parse::<i64>() else {
                    break 'attempt Outcome::Permanent(format!("not a chat id: {:?}", m.recipient));
                };
                if let Some(p) = self.paused_until.filter(|p| *p > now) {
                    break 'attempt defer(p, "Telegram asked to wait (429)");
                }
                if let Some(next) = self.chat_next.get(&chat).copied().filter(|n| *n > now) {
                    break 'attempt defer(next, "per-chat rate limit");
                }
                match db.read(move |c| tg::is_blocked(c, chat)).await {
                    Ok(true) => {
                        break 'attempt Outcome::Permanent(
                            "Telegram: the chat blocked the bot".into(),
                        )
                    }
                    Ok(false) => {}
                    Err(e) => break 'attempt Outcome::Transient(format!("database: {e}")),
                }
                // The global pace is short (1/30 s): waiting here is cheaper than a round
                // trip through the queue.
                if let Some(g) = self.global_next.filter(|g| *g > now) {
                    tokio::time::sleep_until(g).await;
                }
                self.global_next = Some(Instant::now() + global_gap);
                self.chat_next.insert(chat, Instant::now() + per_chat);
                // Telegram refuses texts over 4096 characters for good; send the start rather
                // than nothing.
                let files = self
                    .conversations
                    .as_ref()
                    .map(|c| c.attachments().to_path_buf());
                match send(bot, chat, &m, files.as_deref()).await {
                    Ok(sent) => {
                        sent_ids.push((m.id, Some(i64::from(sent.id.0))));
                        Outcome::Sent
                    }
                    Err(e) => {
                        let (outcome, blocked) = classify(e);
                        // teloxide already redacts the token from URLs in errors; this
                        // keeps it out of the stored error whatever the error's shape.
                        let outcome = match outcome {
                            Outcome::Transient(s) => {
                                Outcome::Transient(s.replace(&t.token, "<token>"))
                            }
                            Outcome::Permanent(s) => {
                                Outcome::Permanent(s.replace(&t.token, "<token>"))
                            }
                            other => other,
                        };
                        if let Outcome::Deferred { after, .. } = &outcome {
                            self.paused_until = Some(Instant::now() + *after);
                        }
                        if blocked {
                            let at = crate::db::now();
                            if let Err(e) = db.write(move |c| tg::mark_blocked(c, chat, at)).await {
                                tracing::error!(error = %e, "could not mark a chat blocked");
                            }
                        }
                        outcome
                    }
                }
            };
            if let Outcome::Transient(e) | Outcome::Permanent(e) = &outcome {
                tracing::debug!(outbox_id = m.id, error = %e, "Telegram message not delivered");
            }
            let reply = m.event == CONVERSATION_REPLY;
            let id = m.id;
            settle(db, &m, outcome, policy).await;
            if reply {
                if let Some(c) = &self.conversations {
                    let tg_id = sent_ids
                        .iter()
                        .find(|(o, _)| *o == id)
                        .and_then(|(_, t)| *t);
                    if let Err(e) = c.delivery_settled(id, tg_id).await {
                        tracing::error!(error = %e, "recording a reply's delivery failed");
                    }
                }
            }
        }
        // Forget chats whose gap has passed so the map stays small.
        let now = Instant::now();
        self.chat_next.retain(|_, t| *t > now);
    }
}

/// The outbox event of an agent's reply in a conversation.
const CONVERSATION_REPLY: &str = "conversation.reply";
/// Telegram's limit on a file's caption, in characters.
const MAX_CAPTION: usize = 1024;

/// Sends one queued message: text, or a photo or document with the text as its caption,
/// or text with the "share my phone number" button.
async fn send(
    bot: &Bot,
    chat: i64,
    m: &outbox::Claimed,
    files: Option<&std::path::Path>,
) -> Result<Message, RequestError> {
    let extra: serde_json::Value = m
        .extra
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    let file = |key: &str| -> Option<InputFile> {
        let rel = extra.get(key)?.as_str()?;
        let dir = files?;
        let name = extra
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("file")
            .to_string();
        Some(InputFile::file(dir.join(rel)).file_name(name))
    };
    let caption: String = m.body.chars().take(MAX_CAPTION).collect();
    if let Some(photo) = file("photo") {
        let mut r = bot.send_photo(ChatId(chat), photo);
        if !caption.is_empty() {
            r = r.caption(caption);
        }
        return r.await;
    }
    if let Some(doc) = file("document") {
        let mut r = bot.send_document(ChatId(chat), doc);
        if !caption.is_empty() {
            r = r.caption(caption);
        }
        return r.await;
    }
    // Telegram refuses texts over 4096 characters for good; send the start rather than
    // nothing.
    let text: String = m.body.chars().take(MAX_TEXT).collect();
    if let Some(label) = extra.get("request_contact").and_then(|l| l.as_str()) {
        let keyboard =
            KeyboardMarkup::new([[KeyboardButton::new(label).request(ButtonRequest::Contact)]])
                .resize_keyboard()
                .one_time_keyboard();
        return bot
            .send_message(ChatId(chat), text)
            .reply_markup(keyboard)
            .await;
    }
    bot.send_message(ChatId(chat), text).await
}

/// Shows "typing…" in a customer's chat while an agent writes (Telegram shows it for
/// about five seconds). Best effort: a failure is only logged.
pub async fn send_typing(n: &Notifications, chat: i64) {
    let Ok(s) = n.settings().await else { return };
    if s.telegram.token.is_empty() {
        return;
    }
    let Ok(bot) = bot(&s.telegram) else { return };
    if let Err(e) = bot.send_chat_action(ChatId(chat), ChatAction::Typing).await {
        tracing::debug!(error = %e, "sendChatAction failed");
    }
}

/// Fetches the files customers sent (photos, documents, voice notes) into the
/// attachments folder, outside any transaction, then records each outcome.
pub(super) async fn fetch_files(
    n: Notifications,
    c: Conversations,
    mut stop: watch::Receiver<bool>,
) {
    let wake = n.wake_signal();
    let mut pause = Duration::from_secs(1);
    while !*stop.borrow() {
        let pending = c.pending_files(8).await.unwrap_or_default();
        let mut failed = false;
        for f in &pending {
            if *stop.borrow() {
                break;
            }
            let outcome = fetch_one(&n, &c, f).await;
            if let Err((state, e)) = &outcome {
                tracing::warn!(message = f.message_id, error = %e, state, "fetching a Telegram file");
                failed |= *state == "pending";
            }
            if let Err(e) = c.file_fetched(f, outcome).await {
                tracing::error!(error = %e, "recording a fetched file failed");
            }
        }
        if !pending.is_empty() && !failed {
            pause = Duration::from_secs(1);
            continue;
        }
        if failed {
            pause = (pause * 2).min(Duration::from_secs(60));
        }
        tokio::select! {
            _ = tokio::time::sleep(if failed { pause } else { Duration::from_secs(30) }) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Tries a fetch this many times before the file is marked failed.
const FILE_ATTEMPTS: i64 = 5;

async fn fetch_one(
    n: &Notifications,
    c: &Conversations,
    f: &crate::db::conversations::PendingFile,
) -> Result<(String, &'static str, i64), (&'static str, String)> {
    use futures_util::StreamExt;
    use teloxide::net::Download;
    let retry = |e: String| {
        if f.attempts + 1 >= FILE_ATTEMPTS {
            ("failed", e)
        } else {
            ("pending", e)
        }
    };
    let s = n.settings().await.map_err(|e| retry(e.to_string()))?;
    if s.telegram.token.is_empty() {
        return Err(retry("no bot token".into()));
    }
    let bot = bot(&s.telegram).map_err(retry)?;
    let file = bot
        .get_file(teloxide::types::FileId(f.file_id.clone()))
        .await
        .map_err(|e| retry(e.to_string().replace(&s.telegram.token, "<token>")))?;
    let limit = crate::domain::conversations::MAX_FILE_BYTES;
    if file.meta.size as usize > limit {
        return Err(("refused", "too_large".into()));
    }
    let mut stream = bot.download_file_stream(&file.path);
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| retry(e.to_string().replace(&s.telegram.token, "<token>")))?;
        if data.len() + chunk.len() > limit {
            return Err(("refused", "too_large".into()));
        }
        data.extend_from_slice(&chunk);
    }
    let (mime, ext) = match crate::domain::conversations::sniff_file(&data) {
        Some((mime, ext, _)) => (mime, ext),
        None => ("application/octet-stream", "bin"),
    };
    let rel = format!(
        "conversations/{}/{}.{ext}",
        f.conversation_id,
        crate::domain::accounts::random_token(12)
    );
    let size = data.len() as i64;
    crate::domain::conversations::write_file(&c.attachments().join(&rel), data)
        .await
        .map_err(|e| retry(e.to_string()))?;
    Ok((rel, mime, size))
}

/// Reads the bot's updates with getUpdates long polling and hands text messages to the
/// domain, which saves the next offset with their effects. Idles while no token is set.
pub(super) async fn poll_updates(n: Notifications, mut stop: watch::Receiver<bool>) {
    let wake = n.wake_signal();
    let mut failures: u32 = 0;
    while !*stop.borrow() {
        let settings = match n.settings().await {
            Ok(s) => s.telegram,
            Err(e) => {
                tracing::error!(error = %e, "reading Telegram settings");
                empty_settings()
            }
        };
        if settings.token.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let result = async {
            let bot = bot(&settings).map_err(anyhow::Error::msg)?;
            if settings.bot_username.is_empty() {
                let me = bot.get_me().await?;
                let name = me.username.clone().unwrap_or_default();
                let at = crate::db::now();
                n.db()
                    .write(move |c| kv::set(c, "telegram.bot_username", &name, at))
                    .await?;
                tracing::info!(bot = %me.username(), "Telegram bot connected");
            }
            let updates = bot
                .get_updates()
                .offset(settings.offset as i32)
                .timeout(settings.poll_timeout_secs)
                .await?;
            let mut next = settings.offset;
            let mut messages = Vec::new();
            for u in updates {
                next = next.max(u.id.0 as i64 + 1);
                match u.kind {
                    UpdateKind::Message(msg) => {
                        if let Some(m) = incoming(u.id.0 as i64, &msg) {
                            messages.push(m);
                        }
                    }
                    // Edits, reactions, callbacks and the rest carry nothing the inbox
                    // keeps; they are confirmed (the offset moves past them) and counted.
                    other => {
                        tracing::debug!(update_id = u.id.0, kind = ?std::mem::discriminant(&other), "Telegram update ignored");
                    }
                }
            }
            if next != settings.offset {
                n.handle_bot_messages(messages, next).await?;
            }
            Ok::<_, anyhow::Error>(())
        };
        tokio::select! {
            r = result => match r {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = (failures + 1).min(5);
                    tracing::warn!(error = %e, "Telegram getUpdates failed");
                    let pause = Duration::from_millis(500u64 << failures);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = wake.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
            },
            _ = stop.changed() => {}
        }
    }
}

/// What the domain needs of a message: its text or caption, its file, location or
/// contact, and who sent it. None for messages from bots and channels.
fn incoming(update_id: i64, msg: &Message) -> Option<IncomingMessage> {
    let from = msg.from.as_ref()?;
    if from.is_bot {
        return None;
    }
    let file =
        |kind: &'static str, meta: &FileMeta, name: Option<&String>, mime: Option<String>| {
            IncomingContent::File(IncomingFile {
                kind,
                file_id: meta.id.0.clone(),
                name: name.cloned(),
                mime,
                size: Some(i64::from(meta.size)),
            })
        };
    let content = if let Some(p) = msg.photo() {
        // The sizes come smallest first; the largest is the photo itself.
        let big = p.iter().max_by_key(|s| s.width * s.height)?;
        file("photo", &big.file, None, Some("image/jpeg".into()))
    } else if let Some(d) = msg.document() {
        file(
            "document",
            &d.file,
            d.file_name.as_ref(),
            d.mime_type.as_ref().map(|m| m.to_string()),
        )
    } else if let Some(v) = msg.voice() {
        file(
            "voice",
            &v.file,
            None,
            v.mime_type.as_ref().map(|m| m.to_string()),
        )
    } else if let Some(a) = msg.audio() {
        file(
            "audio",
            &a.file,
            a.file_name.as_ref(),
            a.mime_type.as_ref().map(|m| m.to_string()),
        )
    } else if let Some(v) = msg.video() {
        file(
            "video",
            &v.file,
            v.file_name.as_ref(),
            v.mime_type.as_ref().map(|m| m.to_string()),
        )
    } else if let Some(v) = msg.video_note() {
        file("video_note", &v.file, None, Some("video/mp4".into()))
    } else if let Some(a) = msg.animation() {
        file(
            "animation",
            &a.file,
            a.file_name.as_ref(),
            a.mime_type.as_ref().map(|m| m.to_string()),
        )
    } else if let Some(st) = msg.sticker() {
        file("sticker", &st.file, None, None)
    } else if let Some(l) = msg.location() {
        IncomingContent::Location {
            latitude: l.latitude,
            longitude: l.longitude,
        }
    } else if let Some(c) = msg.contact() {
        IncomingContent::Contact {
            phone: c.phone_number.clone(),
            name: [Some(c.first_name.as_str()), c.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            own: c.user_id == Some(from.id),
        }
    } else if msg.text().is_some() {
        IncomingContent::Text
    } else {
        IncomingContent::Other(other_kind(msg).into())
    };
    Some(IncomingMessage {
        update_id,
        chat_id: msg.chat.id.0,
        message_id: i64::from(msg.id.0),
        language_code: from.language_code.clone(),
        text: msg.text().or(msg.caption()).unwrap_or_default().to_string(),
        from_name: from.full_name(),
        reply_to: msg.reply_to_message().map(|r| i64::from(r.id.0)),
        content,
    })
}

fn other_kind(msg: &Message) -> &'static str {
    if msg.poll().is_some() {
        "poll"
    } else if msg.dice().is_some() {
        "dice"
    } else if msg.venue().is_some() {
        "venue"
    } else {
        "message"
    }
}

fn empty_settings() -> TelegramSettings {
    TelegramSettings {
        token: String::new(),
        api_url: String::new(),
        bot_username: String::new(),
        offset: 0,
        poll_timeout_secs: 25,
        per_chat_gap_ms: 1000,
        global_per_sec: 30,
    }
}
