//! The off-box settings as they are now, and the threads that act on them: the backups
//! page changes `[backup.remote]` and `[replication]` while the server runs, so everything
//! that reads them (the nightly job, the backups page, /metrics) asks here, and a change
//! restarts the uploaders and the replicator with the new settings.

use std::sync::{Arc, Mutex};

use super::replicate::{self, Replication};
use crate::config::{Config, RemoteConfig, RemoteOverlay, RemoteOverlayBackup, ReplicationConfig};
use crate::ops::OpsError;

struct Live {
    remote: RemoteConfig,
    replication: ReplicationConfig,
    running: Option<Replication>,
}

pub struct Control {
    base: Arc<Config>,
    live: Mutex<Live>,
}

impl Control {
    pub fn new(base: Arc<Config>) -> Control {
        let live = Live {
            remote: base.backup.remote.clone(),
            replication: base.replication.clone(),
            running: None,
        };
        Control {
            base,
            live: Mutex::new(live),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The config with the off-box settings in force now.
    pub fn config(&self) -> Config {
        let live = self.lock();
        let mut c = (*self.base).clone();
        c.backup.remote = live.remote.clone();
        c.replication = live.replication.clone();
        c
    }

    /// Whether the replicator owns the checkpoints (then the writer's automatic ones are
    /// off).
    pub fn replicating(&self) -> bool {
        let live = self.lock();
        live.replication.enabled && !live.remote.targets.is_empty()
    }

    /// Starts the uploaders (and the replicator, when on) for the settings in force.
    pub fn start(&self) -> Result<(), OpsError> {
        let cfg = self.config();
        let mut live = self.lock();
        if live.running.is_none() && !cfg.backup.remote.targets.is_empty() {
            live.running = Some(replicate::start(&cfg)?);
        }
        Ok(())
    }

    /// Ends the threads (what was not uploaded stays queued). Blocking: joins them.
    pub fn stop(&self) {
        let running = self.lock().running.take();
        if let Some(r) = running {
            r.stop();
        }
    }

    /// Puts new settings in force: the threads stop, and start again with them.
    /// Blocking. The settings must have passed [`Config::check_remote`].
    pub fn replace(
        &self,
        remote: RemoteConfig,
        replication: ReplicationConfig,
    ) -> Result<(), OpsError> {
        self.stop();
        {
            let mut live = self.lock();
            live.remote = remote;
            live.replication = replication;
        }
        self.start()
    }
}

/// Writes the off-box settings to the data directory's `remote.toml` (see
/// [`Config::remote_overlay_path`]): a new file beside it, synced, then renamed over it, so
/// a crash leaves the old settings or the new, never half. The file keeps the mode it had
/// (0600 when new: it holds secrets).
pub fn save_overlay(
    cfg: &Config,
    remote: &RemoteConfig,
    replication: &ReplicationConfig,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = cfg.remote_overlay_path();
    let overlay = RemoteOverlay {
        backup: RemoteOverlayBackup {
            remote: remote.clone(),
        },
        replication: replication.clone(),
    };
    let text = toml::to_string_pretty(&overlay).map_err(std::io::Error::other)?;
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let tmp = path.with_extension("toml.new");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(
            b"# Off-box copy settings saved from the backups page. They stand in for\n\
              # crm.toml's [backup.remote] and [replication] while this file exists.\n",
        )?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
    }
    crate::ops::match_owner(&tmp, &cfg.data_dir);
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(&cfg.data_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
