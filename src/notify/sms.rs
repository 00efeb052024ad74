//! SMS through the shop's gateway (issue 18): Eskiz (notify.eskiz.uz: e-mail and password
//! give a bearer token, then form posts to `/api/message/sms/send`) or Playmobile's broker
//! API (send.smsxabar.uz: basic auth, `{"messages": [...]}` to `/broker-api/send`). Both
//! report delivery by calling the box back (`/hooks/sms/{provider}/report`, see
//! `domain::notifications::sms`), so the gateway's id of each message is kept on its
//! outbox row before the row is settled. Sends keep the admin's pace (messages a second).
//! Secrets never reach a log line or a stored error.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{ChannelSender, Outcome};
use crate::db::{outbox, promos as pq, settings as kv, Db};
use crate::domain::notifications::sms::{SmsProvider, SmsSettings};
use crate::domain::notifications::NotifySettings;

/// A message longer than this many characters is refused by the gateways (Eskiz takes
/// up to about 8 parts); the box sends the start rather than nothing.
const MAX_TEXT: usize = 900;

pub(super) struct SmsSender {
    client: reqwest::Client,
    /// Eskiz's token for (url, login, password): the stored one may be older than the
    /// settings this batch was read with.
    token: Option<((String, String, String), String)>,
    next: Option<Instant>,
    paused_until: Option<Instant>,
    /// Checked after every batch (Eskiz reports the balance, not a price per message).
    balance_checked: Option<Instant>,
}

impl Default for SmsSender {
    fn default() -> SmsSender {
        SmsSender {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            token: None,
            next: None,
            paused_until: None,
            balance_checked: None,
        }
    }
}

/// What an accepted send returned.
struct Accepted {
    provider_id: String,
}

/// Keeps secrets out of error texts, whatever the peer echoed.
fn scrub(s: String, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|x| x.len() >= 4)
        .fold(s, |acc, x| acc.replace(x, "<secret>"))
}

fn short(s: &str) -> String {
    let t: String = s.chars().take(300).collect();
    t.replace(['\n', '\r'], " ")
}

/// How an HTTP answer that is not a success counts.
fn by_status(status: reqwest::StatusCode, body: &str, who: &str) -> Outcome {
    let text = format!("{who} {}: {}", status.as_u16(), short(body));
    if status.as_u16() == 429 {
        Outcome::Deferred {
            after: Duration::from_secs(30),
            note: text,
        }
    } else if status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 408) {
        // Down, or the credentials are wrong: may work once the admin fixes them.
        Outcome::Transient(text)
    } else {
        Outcome::Permanent(text)
    }
}

fn digits(e164: &str) -> String {
    e164.chars().filter(char::is_ascii_digit).collect()
}

impl SmsSender {
    /// Eskiz's bearer token: the one in hand, the stored one, or a fresh login (kept and
    /// stored for the next send).
    async fn eskiz_token(
        &mut self,
        db: &Db,
        s: &SmsSettings,
        fresh: bool,
    ) -> Result<String, Outcome> {
        let key = (s.url.clone(), s.login.clone(), s.password.clone());
        if !fresh {
            if let Some((k, t)) = &self.token {
                if *k == key {
                    return Ok(t.clone());
                }
            }
            if !s.token.is_empty() {
                return Ok(s.token.clone());
            }
        }
        let r = self
            .client
            .post(format!("{}/api/auth/login", s.url))
            .form(&[
                ("email", s.login.as_str()),
                ("password", s.password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| Outcome::Transient(format!("Eskiz login: {}", e.without_url())))?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(by_status(status, &body, "Eskiz login"));
        }
        let token = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["data"]["token"].as_str().map(str::to_string))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Outcome::Transient("Eskiz login: no token in the answer".into()))?;
        self.token = Some((key, token.clone()));
        let t = token.clone();
        let now = crate::db::now();
        if let Err(e) = db.write(move |c| kv::set(c, "sms.token", &t, now)).await {
            tracing::error!(error = %e, "could not keep the Eskiz token");
        }
        Ok(token)
    }

    async fn eskiz_send(
        &mut self,
        db: &Db,
        s: &SmsSettings,
        m: &outbox::Claimed,
        text: &str,
    ) -> Result<Accepted, Outcome> {
        let mut token = self.eskiz_token(db, s, false).await?;
        let callback = s.report_url();
        for attempt in 0..2 {
            let mut form = vec![
                ("mobile_phone", digits(&m.recipient)),
                ("message", text.to_string()),
                ("from", s.sender.clone()),
            ];
            if let Some(cb) = &callback {
                form.push(("callback_url", cb.clone()));
            }
            let r = self
                .client
                .post(format!("{}/api/message/sms/send", s.url))
                .bearer_auth(&token)
                .form(&form)
                .send()
                .await
                .map_err(|e| Outcome::Transient(format!("Eskiz: {}", e.without_url())))?;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if status.as_u16() == 401 && attempt == 0 {
                // The token expired (they last 30 days): log in again once.
                token = self.eskiz_token(db, s, true).await?;
                continue;
            }
            if !status.is_success() {
                return Err(by_status(status, &body, "Eskiz"));
            }
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let id = match &v["id"] {
                serde_json::Value::String(x) => x.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            if id.is_empty() {
                return Err(Outcome::Transient(format!(
                    "Eskiz: no message id in the answer: {}",
                    short(&body)
                )));
            }
            return Ok(Accepted { provider_id: id });
        }
        Err(Outcome::Transient("Eskiz: refused the new token".into()))
    }

    async fn playmobile_send(
        &self,
        s: &SmsSettings,
        m: &outbox::Claimed,
        text: &str,
    ) -> Result<Accepted, Outcome> {
        // Playmobile's message id is the client's own (letters and digits, unique).
        let id = format!("crm{}", m.id);
        let body = serde_json::json!({"messages": [{
            "recipient": digits(&m.recipient),
            "message-id": id,
            "sms": {"originator": s.sender, "content": {"text": text}},
        }]});
        let r = self
            .client
            .post(format!("{}/broker-api/send", s.url))
            .basic_auth(&s.login, Some(&s.password))
            .json(&body)
            .send()
            .await
            .map_err(|e| Outcome::Transient(format!("Playmobile: {}", e.without_url())))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(by_status(status, &text, "Playmobile"));
        }
        Ok(Accepted { provider_id: id })
    }

    /// Eskiz's balance (`/api/user/get-limit`), kept for the settings page.
    async fn eskiz_balance(&mut self, db: &Db, s: &SmsSettings) {
        if self
            .balance_checked
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.balance_checked = Some(Instant::now());
        let Ok(token) = self.eskiz_token(db, s, false).await else {
            return;
        };
        let Ok(r) = self
            .client
            .get(format!("{}/api/user/get-limit", s.url))
            .bearer_auth(token)
            .send()
            .await
        else {
            return;
        };
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if let Some(b) = v["data"]["balance"].as_f64() {
            let now = crate::db::now();
            let b = (b.round() as i64).to_string();
            let _ = db.write(move |c| kv::set(c, "sms.balance", &b, now)).await;
        }
    }
}

impl ChannelSender for SmsSender {
    const CHANNEL: &'static str = "sms";

    async fn deliver(
        &mut self,
        db: &Db,
        settings: &NotifySettings,
        batch: Vec<outbox::Claimed>,
        stop: &watch::Receiver<bool>,
    ) {
        let policy = settings.policy;
        let s = &settings.sms;
        let gap = Duration::from_secs(1) / s.per_second.max(1);
        let secrets = [s.password.clone(), s.token.clone(), s.hook_key.clone()];
        let mut sent_any = false;
        // Outcomes are written by a settler beside the sending loop, as many at once as
        // finished meanwhile (one commit for several messages), so the pace is the
        // gateway's and the admin's, not one fsync per message. The gateway's id is
        // written in the same transaction as the row's state.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(
            outbox::Claimed,
            Outcome,
            Option<(String, String)>,
        )>();
        let settling = async {
            let mut done = Vec::new();
            while done_rx.recv_many(&mut done, 256).await > 0 {
                let items = std::mem::take(&mut done);
                let accepted: Vec<(i64, String, String)> = items
                    .iter()
                    .filter_map(|(m, _, a)| a.clone().map(|(p, id)| (m.id, p, id)))
                    .collect();
                if !accepted.is_empty() {
                    let r = db
                        .write(move |c| {
                            for (id, p, pid) in &accepted {
                                pq::sms_accepted(c, *id, p, pid, None, None)?;
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::error!(error = %e, "could not keep the gateway's message ids");
                    }
                }
                super::settle_all(
                    db,
                    items.into_iter().map(|(m, o, _)| (m, o)).collect(),
                    policy,
                )
                .await;
            }
        };
        let sending = async {
            let done_tx = done_tx;
            for m in batch {
                let now = Instant::now();
                let mut accepted = None;
                let outcome = 'attempt: {
                    if *stop.borrow() {
                        break 'attempt Outcome::Deferred {
                            after: Duration::ZERO,
                            note: "shutting down".into(),
                        };
                    }
                    let Some(provider) = s.provider.filter(|_| s.configured()) else {
                        break 'attempt Outcome::Transient(
                            "the SMS gateway is not set up (Settings → Notifications)".into(),
                        );
                    };
                    if let Some(p) = self.paused_until.filter(|p| *p > now) {
                        break 'attempt Outcome::Deferred {
                            after: p - now,
                            note: "the gateway asked to wait (429)".into(),
                        };
                    }
                    if let Some(n) = self.next.filter(|n| *n > now) {
                        tokio::time::sleep_until(n).await;
                    }
                    self.next = Some(Instant::now() + gap);
                    let text: String = m.body.chars().take(MAX_TEXT).collect();
                    let r = match provider {
                        SmsProvider::Eskiz => self.eskiz_send(db, s, &m, &text).await,
                        SmsProvider::Playmobile => self.playmobile_send(s, &m, &text).await,
                    };
                    match r {
                        Ok(a) => {
                            accepted = Some((provider.as_str().to_string(), a.provider_id));
                            sent_any = true;
                            Outcome::Sent
                        }
                        Err(o) => {
                            if let Outcome::Deferred { after, .. } = &o {
                                self.paused_until = Some(Instant::now() + *after);
                            }
                            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                            let current = self
                                .token
                                .as_ref()
                                .map(|(_, t)| t.clone())
                                .unwrap_or_default();
                            let scrubbed =
                                |e: String| scrub(scrub(e, &secrets), &[current.as_str()]);
                            match o {
                                Outcome::Transient(e) => Outcome::Transient(scrubbed(e)),
                                Outcome::Permanent(e) => Outcome::Permanent(scrubbed(e)),
                                other => other,
                            }
                        }
                    }
                };
                if let Outcome::Transient(e) | Outcome::Permanent(e) = &outcome {
                    tracing::debug!(outbox_id = m.id, error = %e, "SMS not delivered");
                }
                let _ = done_tx.send((m, outcome, accepted));
            }
        };
        tokio::join!(sending, settling);
        if sent_any && s.provider == Some(SmsProvider::Eskiz) {
            self.eskiz_balance(db, s).await;
        }
    }
}
