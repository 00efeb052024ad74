//! Periodic work beside the server: WAL checkpoint + `PRAGMA optimize`, expired-session
//! cleanup, the daily automatic backup (with pruning), and the systemd watchdog ping.
//! Started by `server::start`, stopped (and awaited) by `Running::stop`.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppContext;

const CHECKPOINT_EVERY: Duration = Duration::from_secs(30 * 60);
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

/// The running jobs; [`Jobs::stop`] ends them.
pub struct Jobs {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

pub fn start(ctx: &AppContext) -> Jobs {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let c = ctx.clone();
    tasks.push(every(CHECKPOINT_EVERY, stopped.clone(), move || {
        let c = c.clone();
        async move {
            if let Err(e) = c.db.checkpoint().await {
                tracing::warn!(error = %e, "periodic WAL checkpoint failed");
            }
        }
    }));

    let c = ctx.clone();
    tasks.push(every(SESSION_PURGE_EVERY, stopped.clone(), move || {
        let c = c.clone();
        async move {
            match c.accounts.purge_expired_sessions().await {
                Ok(n) if n > 0 => tracing::debug!(sessions = n, "expired sessions removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "session cleanup failed"),
            }
        }
    }));

    if let Ok(Some(minute)) = ctx.config.backup.daily_minute() {
        tasks.push(tokio::spawn(daily_backups(
            ctx.clone(),
            minute,
            stopped.clone(),
        )));
    }

    if let Some(interval) = crate::ops::systemd::watchdog_interval() {
        let c = ctx.clone();
        // Pings only while the database answers, so a wedged server gets restarted.
        tasks.push(every(interval, stopped, move || {
            let c = c.clone();
            async move {
                match tokio::time::timeout(Duration::from_secs(5), c.db.ping()).await {
                    Ok(Ok(())) => crate::ops::systemd::watchdog_ping(),
                    _ => tracing::error!("database does not answer: withholding the watchdog ping"),
                }
            }
        }));
    }
    Jobs { stop, tasks }
}

impl Jobs {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Runs `f` every `period` (first run after one period) until stopped.
fn every<F, Fut>(period: Duration, mut stopped: watch::Receiver<bool>, f: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => f().await,
                _ = stopped.changed() => return,
            }
        }
    })
}

async fn daily_backups(ctx: AppContext, minute: u32, mut stopped: watch::Receiver<bool>) {
    let offset = ctx.config.backup.offset_minutes().unwrap_or(0);
    loop {
        let wait = seconds_until(crate::db::now(), offset, minute);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = stopped.changed() => return,
        }
        let cfg = ctx.config.clone();
        let result = tokio::task::spawn_blocking(move || {
            let done = crate::ops::backup::create(&cfg, None)?;
            let removed = crate::ops::backup::prune(&cfg.backup_target_dir(), cfg.backup.keep)?;
            Ok::<_, crate::ops::OpsError>((done, removed))
        })
        .await;
        match result {
            Ok(Ok((done, removed))) => tracing::info!(
                path = %done.path.display(),
                bytes = done.size,
                seconds = done.seconds,
                pruned = removed.len(),
                "automatic backup written and verified"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "automatic backup FAILED"),
            Err(e) => tracing::error!(error = %e, "automatic backup task failed"),
        }
    }
}

/// Seconds from `now` (unix) until the next `minute` after local midnight, in a zone
/// `offset` minutes east of UTC; a full day when it is exactly now.
pub fn seconds_until(now: i64, offset_minutes: i32, minute: u32) -> u64 {
    let local = (now + offset_minutes as i64 * 60).rem_euclid(86_400);
    let target = minute as i64 * 60;
    let d = (target - local).rem_euclid(86_400);
    if d == 0 {
        86_400
    } else {
        d as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_daily_run_in_the_box_zone() {
        // 2026-11-24 21:00 UTC = 02:00 in Tashkent (+05:00); 03:00 local is one hour away.
        let now = 1_795_554_000;
        assert_eq!(now % 86_400, 21 * 3600);
        assert_eq!(seconds_until(now, 300, 3 * 60), 3600);
        // Just after 03:00 local: tomorrow.
        assert_eq!(seconds_until(now + 3600 + 60, 300, 3 * 60), 86_400 - 60);
        assert_eq!(seconds_until(now + 3600, 300, 3 * 60), 86_400);
        // UTC box.
        assert_eq!(seconds_until(now, 0, 22 * 60), 3600);
    }
}
