//! Runs the HTTP server (and, as they arrive, SIP and background jobs) side by side, and
//! shuts them down gracefully.

use std::net::SocketAddr;
use std::time::Instant;

use actix_web::dev::ServerHandle;
use tokio::task::JoinHandle;

use crate::app::AppContext;
use crate::config::Config;

pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // journald adds its own timestamps; keep lines compact and uncoloured.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// A started server. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub ctx: AppContext,
    pub http_addr: SocketAddr,
    /// Set on first run: the one-time URL (path and query) that creates the first admin.
    pub setup_path: Option<String>,
    /// The live-update hub (for tests and benchmarks that watch it).
    pub hub: crate::web::hub::Hub,
    /// Where SIP listens (UDP and TCP), when it is on.
    pub sip_addr: Option<SocketAddr>,
    /// The running SIP server (registrations, bans), when it is on.
    pub sip: Option<crate::sip::SipHandle>,
    /// The RTP relay, when SIP is on and `[media] relay` is not "off".
    pub media: Option<crate::media::Media>,
    sip_store: Option<std::sync::Arc<crate::domain::telephony::DbBindingStore>>,
    http: ServerHandle,
    http_task: JoinHandle<std::io::Result<()>>,
    notifier: crate::notify::Notifier,
    jobs: crate::jobs::Jobs,
    calls: crate::domain::calls::Consumer,
    call_lists: tokio::task::JoinHandle<()>,
    /// Applies changes committed by `crm` commands (see `domain::changes`).
    changes: crate::domain::changes::Watcher,
    /// Held until stopped: `crm restore` refuses while it is held.
    data_dir_lock: crate::ops::lock::DataDirLock,
}

/// Starts the SIP registrar/proxy with the directory, persisted bindings and call-event
/// channel of `ctx`.
async fn start_sip(
    ctx: &AppContext,
    listen: SocketAddr,
) -> anyhow::Result<(
    crate::sip::SipHandle,
    std::sync::Arc<crate::domain::telephony::DbBindingStore>,
    Option<crate::media::Media>,
)> {
    ctx.telephony.reload().await?;
    let settings = ctx.telephony.sip_settings().await?;
    let mut cfg = crate::sip::SipConfig::new(listen);
    cfg.realm = settings.realm;
    cfg.domains = settings.domains;
    cfg.algorithms = settings.algorithms;
    cfg.advertise = ctx.config.sip_advertise.as_ref().map(|a| match a.parse() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => a.clone(),
    });
    cfg.trusted = ctx
        .config
        .sip_trusted_networks
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let (park_code, park_orbits) = ctx.config.sip_park()?;
    cfg.park_code = park_code;
    cfg.park_orbits = park_orbits;
    cfg.park_timeout_secs = ctx.config.sip_park_timeout_secs.max(1);
    let restored = ctx.telephony.saved_bindings().await?;
    let store = crate::domain::telephony::DbBindingStore::start(ctx.db.clone());
    let live = crate::domain::live_registrations::LiveRegistrations::start(
        store.clone(),
        ctx.events.clone(),
    );
    let anchor = ctx.config.media.anchor()?;
    cfg.anchor_trunk = anchor != crate::media::Anchor::Off;
    cfg.anchor_internal = anchor == crate::media::Anchor::All;
    let media = match ctx.config.media.relay_config()? {
        Some(m) => Some(crate::media::Media::start(m)?),
        None => None,
    };
    if let Some(m) = &media {
        m.set_recording(
            recorder_config(ctx),
            std::sync::Arc::new(ctx.recordings.policy_map()),
        )?;
        ctx.recordings.attach(m.clone());
        ctx.recordings.reload().await?;
    }
    let plane = media
        .clone()
        .map(|m| std::sync::Arc::new(m) as std::sync::Arc<dyn crate::sip::MediaPlane>);
    let handle = crate::sip::start_with_media(
        cfg,
        ctx.telephony.directory(),
        live,
        std::sync::Arc::new(ctx.call_events.clone()),
        restored,
        plane,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen for SIP on {listen}: {e}"))?;
    ctx.telephony.attach(handle.control()).await?;
    Ok((handle, store, media))
}

/// Where the media plane's recorder files recordings and whom it tells (the call log,
/// through the unit of work, on the app's runtime: the writer thread never waits).
fn recorder_config(ctx: &AppContext) -> crate::media::record::RecorderConfig {
    let clock = ctx.clock.clone();
    let recordings = ctx.recordings.clone();
    let rt = tokio::runtime::Handle::current();
    crate::media::record::RecorderConfig {
        dir: ctx.recordings.dir().to_path_buf(),
        subdir: std::sync::Arc::new(move || {
            let c = clock.get();
            let d = c.date_of(c.now());
            format!("{:04}/{:02}", d.year(), d.month())
        }),
        done: std::sync::Arc::new(move |f| {
            let r = recordings.clone();
            rt.spawn(async move {
                let call = f.call.clone();
                if let Err(e) = r.finished(f).await {
                    tracing::warn!(call, error = %e, "recording: cannot file the recording");
                }
            });
        }),
        feature: crate::media::record::FEATURE_CODE.into(),
    }
}

pub async fn start(config: Config) -> anyhow::Result<Running> {
    let started = Instant::now();
    let data_dir_lock = crate::ops::lock::DataDirLock::acquire(&config.data_dir)?;
    let ctx = AppContext::open(config)?;
    let setup_token = if ctx.accounts.user_count().await? == 0 {
        Some(crate::domain::accounts::random_token(24))
    } else {
        None
    };
    // Before the web server takes sockets, so no presence change is missed.
    ctx.notifications.online().follow(&ctx.events);
    let bound = crate::web::bind(ctx.clone(), setup_token.clone())?;
    let http_addr = bound.addr;
    let http = bound.server.handle();
    let http_task = tokio::spawn(bound.server);
    let notifier =
        crate::notify::start(ctx.notifications.clone(), ctx.conversations.clone()).await?;
    // Before SIP loads its directory: journal rows after this are applied by the watcher.
    let journal_mark = crate::domain::changes::mark(&ctx.db).await?;
    // Subscribed before SIP starts, so no call event is missed.
    let calls = ctx.calls.start(ctx.call_events.subscribe()).await;
    // Unanswered calls placed for call-list items get their outcome and retry.
    let call_lists = ctx.call_lists.start(ctx.call_events.subscribe());
    let (sip, sip_store, media) = match ctx.config.sip_listen()? {
        crate::config::SipListen::Off => (None, None, None),
        crate::config::SipListen::On(listen) => {
            let (h, s, m) = start_sip(&ctx, listen).await?;
            (Some(h), Some(s), m)
        }
    };
    let sip_addr = sip.as_ref().map(|h| h.addr);
    *ctx.sip.write().unwrap_or_else(|e| e.into_inner()) = sip.as_ref().map(|h| h.control());
    let changes = crate::domain::changes::start(
        &ctx.config.db_path(),
        journal_mark,
        crate::domain::changes::Targets {
            db: ctx.db.clone(),
            telephony: ctx.telephony.clone(),
            clock: ctx.clock.clone(),
            events: ctx.events.clone(),
        },
    )?;
    let scheme = if ctx.config.tls() { "https" } else { "http" };
    tracing::info!(
        version = crate::VERSION,
        http = %http_addr,
        data_dir = %ctx.config.data_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "crm started"
    );
    let jobs = crate::jobs::start(&ctx);
    start_remote(&ctx).await?;
    // Type=notify: systemd counts the service as started only now that it serves.
    crate::ops::systemd::notify_ready();
    let setup_path = setup_token.map(|t| format!("/setup?token={t}"));
    if let Some(p) = &setup_path {
        // The one place the setup token is printed: the operator needs it to finish setup.
        tracing::warn!("no users yet: open {scheme}://{http_addr}{p} to create the first admin");
    }
    Ok(Running {
        ctx,
        http_addr,
        setup_path,
        hub: bound.hub,
        sip_addr,
        sip,
        media,
        sip_store,
        http,
        http_task,
        notifier,
        jobs,
        calls,
        call_lists,
        changes,
        data_dir_lock,
    })
}

/// Starts the uploaders and the replicator for the off-box settings in force (none: no
/// thread). With replication on, the replicator checkpoints (it must read the log before
/// SQLite may restart it): the writer's own attempts after every commit could only fail
/// while the replicator's read transaction holds the log, and cost each commit a scan.
pub async fn start_remote(ctx: &AppContext) -> anyhow::Result<()> {
    ctx.db
        .set_auto_checkpoint(!ctx.remote.replicating())
        .await?;
    let remote = ctx.remote.clone();
    tokio::task::spawn_blocking(move || remote.start()).await??;
    Ok(())
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, then checkpoints the WAL.
    pub async fn stop(self) -> anyhow::Result<()> {
        crate::ops::systemd::notify_stopping();
        self.jobs.stop().await;
        self.changes.stop().await;
        *self.ctx.sip.write().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(sip) = self.sip {
            sip.stop().await;
        }
        if let Some(m) = self.media {
            m.stop();
        }
        // After SIP: the last events it emitted are logged before the checkpoint.
        self.calls.stop().await;
        self.call_lists.abort();
        if let Some(store) = self.sip_store {
            store.flush().await;
        }
        self.http.stop(true).await;
        let _ = self.http_task.await;
        // After HTTP: no new test sends; in-flight deliveries settle before the checkpoint.
        self.notifier.stop().await;
        // Its last read of the WAL, and its read transaction released, before the
        // checkpoint (which waits for readers).
        let remote = self.ctx.remote.clone();
        let _ = tokio::task::spawn_blocking(move || remote.stop()).await;
        self.ctx.db.checkpoint().await?;
        drop(self.data_dir_lock);
        tracing::info!("crm stopped");
        Ok(())
    }

    pub async fn wait_for_shutdown_signal(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        self.stop().await
    }
}
