//! Delivery of queued notifications: one worker per channel takes due messages from the
//! outbox, sends them, and settles each row (sent, retry later, failed, dead). The
//! Telegram poller reads the bot's updates by long polling (no public address needed)
//! and hands them to the domain. The only module with lettre and teloxide, and the only
//! one that talks to an SMS gateway (reqwest).

mod email;
pub mod probe;
mod sms;
mod telegram;

pub use email::PARALLEL as SMTP_PARALLEL;
pub use telegram::send_typing;

use crate::domain::conversations::Conversations;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{outbox, Db};
use crate::domain::notifications::{
    now_ms, DeliveryPolicy, EventKind, Notifications, NotifySettings,
};

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// May work later (peer down, timeout, 4xx): retried with backoff, dead after the cap.
    Transient(String),
    /// Will not work (bad address, 5xx, blocked bot): stops and is shown to the admin.
    Permanent(String),
    /// Not attempted yet (rate limit, 429 retry_after, shutting down): due again at `after`.
    Deferred {
        after: Duration,
        note: String,
    },
}

/// Writes the outcome of one attempt. Returns true if the message was dead-lettered.
async fn settle(db: &Db, m: &outbox::Claimed, outcome: Outcome, policy: DeliveryPolicy) -> bool {
    settle_all(db, vec![(m.clone(), outcome)], policy).await > 0
}

/// Writes the outcomes of several attempts in one writer transaction (the worker's
/// database cost per batch is then one commit, not one per message). Returns how many
/// were dead-lettered.
async fn settle_all(
    db: &Db,
    items: Vec<(outbox::Claimed, Outcome)>,
    policy: DeliveryPolicy,
) -> usize {
    let items: Vec<(i64, Outcome)> = items
        .into_iter()
        .map(|(m, outcome)| {
            let outcome = match outcome {
                // A "send test" gets one attempt: the admin is watching the answer, and a
                // test that succeeds an hour later surprises everyone.
                Outcome::Transient(e) if m.event == EventKind::Test.as_str() => {
                    Outcome::Permanent(e)
                }
                o => o,
            };
            (m.id, outcome)
        })
        .collect();
    let ids: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
    let now = now_ms();
    let r = db
        .write(move |c| {
            let mut dead = Vec::new();
            for (id, outcome) in items {
                let is_dead = match outcome {
                    Outcome::Sent => outbox::mark_sent(c, id, now).map(|_| false),
                    Outcome::Permanent(e) => outbox::mark_failed(c, id, &e, now).map(|_| false),
                    Outcome::Deferred { after, note } => {
                        outbox::defer(c, id, &note, now + after.as_millis() as i64, now)
                            .map(|_| false)
                    }
                    Outcome::Transient(e) => {
                        let attempts = outbox::attempts(c, id)?;
                        let next = now + policy.backoff(attempts + 1).as_millis() as i64;
                        outbox::mark_retry(c, id, &e, next, policy.max_attempts, now)
                    }
                }?;
                if is_dead {
                    dead.push(id);
                }
            }
            Ok(dead)
        })
        .await;
    match r {
        Ok(dead) => {
            for id in &dead {
                tracing::warn!(
                    outbox_id = id,
                    "notification dead-lettered after the retry cap"
                );
            }
            dead.len()
        }
        Err(e) => {
            // The rows stay 'sending' and are released at the next start.
            tracing::error!(outbox_ids = ?ids, error = %e, "could not record delivery outcomes");
            0
        }
    }
}

/// The running workers; [`Notifier::stop`] lets in-flight sends settle, then ends them.
pub struct Notifier {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Messages taken per claim.
const BATCH: i64 = 64;

/// Starts the e-mail and Telegram workers and the Telegram poller (which idles until a
/// bot token is set). Messages left mid-send by a crash are queued again first.
pub async fn start(n: Notifications, conversations: Conversations) -> anyhow::Result<Notifier> {
    let released = n
        .db()
        .write(|c| outbox::release_in_flight(c, now_ms()))
        .await?;
    if released > 0 {
        tracing::warn!(
            released,
            "notifications interrupted mid-send are queued again"
        );
    }
    let (stop, rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(run_channel(
            n.clone(),
            email::EmailSender::default(),
            rx.clone(),
        )),
        tokio::spawn(run_channel(
            n.clone(),
            telegram::TelegramSender::for_inbox(conversations.clone()),
            rx.clone(),
        )),
        tokio::spawn(run_channel(
            n.clone(),
            sms::SmsSender::default(),
            rx.clone(),
        )),
        tokio::spawn(telegram::poll_updates(n.clone(), rx.clone())),
        tokio::spawn(telegram::fetch_files(n.clone(), conversations, rx.clone())),
        tokio::spawn(housekeeping(n, rx)),
    ];
    Ok(Notifier { stop, tasks })
}

impl Notifier {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Delivered messages are kept this long (for the admin's view), then deleted.
const KEEP_SENT_SECS: i64 = 30 * 86_400;

/// Once a minute: queue the daily summary and the overdue reminders when due; once an
/// hour: forget old deliveries.
async fn housekeeping(n: Notifications, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut minutes = 0u64;
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = n.queue_daily_summary().await {
            tracing::error!(error = %e, "queuing the daily summary failed");
        }
        if let Err(e) = n.queue_overdue_reminders().await {
            tracing::error!(error = %e, "queuing overdue reminders failed");
        }
        if minutes.is_multiple_of(60) {
            let before = crate::db::now() - KEEP_SENT_SECS;
            if let Err(e) = n.db().write(move |c| outbox::purge_sent(c, before)).await {
                tracing::error!(error = %e, "purging delivered notifications failed");
            }
        }
        minutes += 1;
    }
}

/// A channel's sender: configures itself from the settings and delivers a claimed batch,
/// settling every message of it.
trait ChannelSender: Send + 'static {
    const CHANNEL: &'static str;
    fn deliver(
        &mut self,
        db: &Db,
        settings: &NotifySettings,
        batch: Vec<outbox::Claimed>,
        stop: &watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send;
}

async fn run_channel<S: ChannelSender>(
    n: Notifications,
    mut sender: S,
    mut stop: watch::Receiver<bool>,
) {
    let db = n.db().clone();
    let wake = n.wake_signal();
    let mut failures = 0u32;
    while !*stop.borrow() {
        let step = async {
            let settings = n.settings().await?;
            let now = now_ms();
            let batch = db
                .write(move |c| outbox::claim_due(c, S::CHANNEL, now, BATCH))
                .await?;
            Ok::<_, anyhow::Error>((settings, batch))
        }
        .await;
        let (settings, batch) = match step {
            Ok(v) => {
                failures = 0;
                v
            }
            Err(e) => {
                failures = (failures + 1).min(6);
                tracing::error!(channel = S::CHANNEL, error = %e, "notification worker step failed");
                let pause = Duration::from_millis(200 << failures);
                tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = stop.changed() => {} }
                continue;
            }
        };
        if batch.is_empty() {
            let poll = Duration::from_millis(settings.policy.poll_ms);
            let until_due = db
                .read(|c| outbox::next_due(c, S::CHANNEL))
                .await
                .ok()
                .flatten()
                .map(|due| Duration::from_millis((due - now_ms()).max(0) as u64));
            let wait = until_due.map_or(poll, |d| d.min(poll));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        sender.deliver(&db, &settings, batch, &stop).await;
    }
}
