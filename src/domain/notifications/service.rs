//! The notifications service the web layer, the CLI, the worker and the poller share:
//! settings, templates, the outbox's dead letters, test messages, staff linking.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::*;

/// Notification settings, linking, dead letters; shared by handlers, the worker and the
/// poller. Cheap to clone.
#[derive(Clone)]
pub struct Notifications {
    db: Db,
    pub(super) store: Store,
    clock: crate::domain::clock::Clock,
    orders: Arc<RwLock<Arc<dyn OrderLookup>>>,
    wake: Arc<tokio::sync::Notify>,
    /// Staff with the web app open (kept by the live hub): automatic assignment of new
    /// conversations picks among them.
    online: crate::domain::conversations::OnlineStaff,
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
    pub fn new(store: Store, clock: crate::domain::clock::Clock) -> Notifications {
        Notifications {
            db: store.db().clone(),
            store,
            clock,
            orders: Arc::new(RwLock::new(Arc::new(NoOrders))),
            wake: Arc::new(tokio::sync::Notify::new()),
            online: Default::default(),
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
    pub fn online(&self) -> &crate::domain::conversations::OnlineStaff {
        &self.online
    }

    pub fn wake_signal(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn settings(&self) -> DomainResult<NotifySettings> {
        Ok(self.db.read(load_settings).await?)
    }

    pub(super) async fn put(
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
            Channel::Sms => Recipient::Phone(
                crate::model::phone::PhoneNumber::parse(&to, crate::model::phone::UZBEKISTAN)
                    .map_err(|_| DomainError::invalid("err.sms.test_phone"))?
                    .as_str()
                    .to_string(),
            ),
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
        let code = crate::domain::accounts::random_token(20)
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
    ) -> DomainResult<Option<crate::domain::customer_links::CustomerLink>> {
        crate::domain::customer_links::issue(&self.db, order_number).await
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
        let online = self.online.users();
        self.store
            .write(crate::domain::work::Who::System, move |tx| {
                for m in &messages {
                    handle_message(tx, orders.as_ref(), m, &online)?;
                }
                let now = tx.now();
                Ok(settings::set(
                    tx,
                    "telegram.offset",
                    &next_offset.to_string(),
                    now,
                )?)
            })
            .await?;
        self.wake();
        Ok(())
    }
}

/// Settings screens refresh on it (admins only).
pub(super) fn settings_event(what: &str) -> crate::events::Event {
    crate::events::Event::new(
        "settings.updated",
        serde_json::json!({"key": what}),
        crate::events::Audience::Admins,
    )
}
