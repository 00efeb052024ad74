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
use crate::domain::notifications::{
    IncomingMessage, Notifications, NotifySettings, TelegramSettings,
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
    bot: Option<((String, String), Bot)>,
    chat_next: HashMap<i64, Instant>,
    global_next: Option<Instant>,
    paused_until: Option<Instant>,
}

impl TelegramSender {
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
                let text: String = m.body.chars().take(MAX_TEXT).collect();
                match bot.send_message(ChatId(chat), text).await {
                    Ok(_) => Outcome::Sent,
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
            settle(db, &m, outcome, policy).await;
        }
        // Forget chats whose gap has passed so the map stays small.
        let now = Instant::now();
        self.chat_next.retain(|_, t| *t > now);
    }
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
                if let UpdateKind::Message(msg) = u.kind {
                    if let Some(text) = msg.text() {
                        messages.push(IncomingMessage {
                            update_id: u.id.0 as i64,
                            chat_id: msg.chat.id.0,
                            language_code: msg.from.as_ref().and_then(|f| f.language_code.clone()),
                            text: text.to_string(),
                        });
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
