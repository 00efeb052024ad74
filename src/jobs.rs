//! Periodic work beside the server: WAL checkpoint + `PRAGMA optimize`, expired-session
//! and change-journal cleanup, the daily automatic backup (with pruning), and the systemd watchdog ping.
//! Started by `server::start`, stopped (and awaited) by `Running::stop`.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppContext;

const CHECKPOINT_EVERY: Duration = Duration::from_secs(30 * 60);
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

const RECORDING_SWEEP_EVERY: Duration = Duration::from_secs(3600);

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
            // With replication on, the replicator checkpoints (a TRUNCATE here would
            // wait for its read transaction while holding up writes).
            let done = if c.remote.replicating() {
                c.db.optimize().await
            } else {
                c.db.checkpoint().await
            };
            if let Err(e) = done {
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
            // The change journal is read within a second; an hour is plenty.
            let before = crate::db::now() - 3600;
            if let Err(e) =
                c.db.write(move |x| crate::db::changes::prune(x, before))
                    .await
            {
                tracing::warn!(error = %e, "change journal cleanup failed");
            }
        }
    }));

    // Call recordings past their retention (issue 16): checked every hour, so a day's
    // recordings go within an hour of their last day.
    let c = ctx.clone();
    tasks.push(every(RECORDING_SWEEP_EVERY, stopped.clone(), move || {
        let c = c.clone();
        async move {
            match c.recordings.sweep().await {
                Ok(n) if n > 0 => tracing::info!(recordings = n, "old call recordings deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recording retention sweep failed"),
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
    if ctx.config.backup.utc_offset.is_some() {
        tracing::warn!("backup.utc_offset in the config is ignored: the backup time follows the shop's time zone setting");
    }
    loop {
        // Read each time: the admin may change the shop's zone meanwhile.
        let clock = ctx.clock.get();
        let wait = clock.seconds_until_minute(clock.now(), minute);
        // At most an hour at a time, so a changed zone moves the next run.
        let nap = wait.min(3600);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(nap)) => {}
            _ = stopped.changed() => return,
        }
        if nap < wait {
            continue;
        }
        let cfg = ctx.remote.config();
        let result = tokio::task::spawn_blocking(move || {
            let done = crate::ops::backup::create(&cfg, None)?;
            // Verified: now it may leave the box (queued; the uploaders send it).
            if let Err(e) = crate::ops::remote::replicate::queue_backup(&cfg, &done.path) {
                tracing::error!(error = %e, "queueing the backup for the remote targets FAILED");
            }
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
