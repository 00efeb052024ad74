//! `crm upgrade`: replace the binary with a signed release, safely.
//!
//! A release archive is `crm-<version>-<target>.tar.gz` holding `crm` and `release.json`
//! (`{"version": "...", "target": "..."}`), signed with zipsign (ed25519; the signature
//! sits in the gzip header and covers the archive and its file name). The order below is
//! what makes it safe: nothing changes until the signature, the archive's content and the
//! new binary's own `--version` are all checked; a backup is taken; the swap is a rename
//! that keeps the old binary as `crm.previous`; and when the systemd service runs it is
//! restarted and must answer `/healthz` with the new version, else the old binary is put
//! back and restarted.
//!
//! The verifying key is built in (`packaging/release-key.pub`). Tests inject their own:
//! only a debug build (`cfg(debug_assertions)`, which `cargo test` uses) reads
//! `CRM_UPGRADE_TEST_KEY` (hex); release builds do not contain that code.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::DataDirLock;
use super::{io_ctx, probe, sync_dir, systemd, OpsError, OpsResult};
use crate::config::Config;

pub const RELEASE_INFO: &str = "release.json";
pub const BINARY: &str = "crm";
const RELEASE_KEY: [u8; 32] = *include_bytes!("../../packaging/release-key.pub");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub version: String,
    pub target: String,
}

#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// A release archive on disk instead of the configured release source.
    pub from_file: Option<PathBuf>,
    /// Only report what is available.
    pub check_only: bool,
    /// Install even when the release is not newer (reinstall, or go back a version).
    pub force: bool,
    /// The binary to replace (the running one by default).
    pub exe: PathBuf,
    /// How long the restarted service has to answer `/healthz`.
    pub health_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    UpToDate {
        current: String,
    },
    Available {
        current: String,
        latest: String,
    },
    Upgraded {
        from: String,
        to: String,
        backup: Option<PathBuf>,
        previous: PathBuf,
        /// What happened to the running service.
        service: String,
    },
}

/// The keys a release must be signed with.
pub fn trusted_keys() -> Vec<[u8; 32]> {
    #[cfg(debug_assertions)]
    if let Ok(hexkey) = std::env::var("CRM_UPGRADE_TEST_KEY") {
        if let Some(k) = hex::decode(hexkey.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            return vec![k];
        }
    }
    vec![RELEASE_KEY]
}

/// Whether dpkg lists `path` as a file of an installed package.
pub fn owned_by_dpkg(path: &Path) -> bool {
    path.exists()
        && Command::new("dpkg-query")
            .arg("-S")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

pub fn previous_path(exe: &Path) -> PathBuf {
    sibling(exe, "previous")
}

fn sibling(exe: &Path, ext: &str) -> PathBuf {
    let mut s = exe.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn is_newer(current: &str, other: &str) -> bool {
    self_update::version::bump_is_greater(current, other).unwrap_or(false)
}

pub fn upgrade(cfg: &Config, opts: &UpgradeOptions) -> OpsResult<Outcome> {
    if owned_by_dpkg(&opts.exe) {
        return Err(OpsError::Refused(format!(
            "{} belongs to the Debian package: upgrade with apt (sudo apt update && sudo apt install crm)",
            opts.exe.display()
        )));
    }
    std::fs::create_dir_all(cfg.tmp_dir()).map_err(io_ctx("cannot create", &cfg.tmp_dir()))?;
    let staging = tempfile::Builder::new()
        .prefix("upgrade-")
        .tempdir_in(cfg.tmp_dir())
        .map_err(io_ctx("cannot create a folder in", &cfg.tmp_dir()))?;
    let current = crate::VERSION.to_string();

    let (archive, advertised) = match &opts.from_file {
        Some(p) => (p.clone(), None),
        None => {
            let url = cfg.upgrade.url.clone().ok_or_else(|| {
                OpsError::Refused(
                    "no release source configured: set [upgrade] url in the config, or use --from-file ARCHIVE".into(),
                )
            })?;
            let (version, asset_name, asset_url) = latest_release(&url)?;
            if opts.check_only {
                return Ok(if is_newer(&current, &version) {
                    Outcome::Available {
                        current,
                        latest: version,
                    }
                } else {
                    Outcome::UpToDate { current }
                });
            }
            if !is_newer(&current, &version) && !opts.force {
                return Ok(Outcome::UpToDate { current });
            }
            // Keep the asset's name: the signature covers it.
            let dest = staging.path().join(&asset_name);
            download(&asset_url, &dest)?;
            (dest, Some(version))
        }
    };

    // 1. Signature, before even looking inside.
    let bad = |reason: String| OpsError::BadArchive {
        path: archive.clone(),
        reason,
    };
    self_update::verify_signature(&archive, &trusted_keys()).map_err(|e| {
        bad(format!(
            "it is not signed by the crm release key, or was changed after signing ({e})"
        ))
    })?;
    // 2. Content.
    let unpacked = staging.path().join("unpacked");
    let info = unpack(&archive, &unpacked).map_err(bad)?;
    if let Some(v) = &advertised {
        if v != &info.version {
            return Err(bad(format!(
                "the release source says {v} but the archive says {}",
                info.version
            )));
        }
    }
    let new_bin = unpacked.join(BINARY);
    // 3. The new binary runs here and is the version it claims to be.
    let reported =
        binary_version(&new_bin).map_err(|e| bad(format!("its crm does not run here: {e}")))?;
    if reported != info.version {
        return Err(bad(format!(
            "its crm reports version {reported} but its release.json says {}",
            info.version
        )));
    }
    if opts.check_only {
        return Ok(if is_newer(&current, &info.version) {
            Outcome::Available {
                current,
                latest: info.version,
            }
        } else {
            Outcome::UpToDate { current }
        });
    }
    if !is_newer(&current, &info.version) && !opts.force {
        return Err(OpsError::Refused(format!(
            "{} is not newer than the running {current}; add --force to install it anyway",
            info.version
        )));
    }

    // 4. A backup first, so a new version's migrations can be undone.
    let backup = if cfg.db_path().exists() {
        Some(
            super::backup::create(cfg, None)
                .map_err(|e| {
                    OpsError::Refused(format!(
                        "the backup before upgrading failed, nothing was changed: {e}"
                    ))
                })?
                .path,
        )
    } else {
        None
    };

    // 5. Swap, keeping the old binary. Whether the service runs is decided now: after a
    // failed restart systemd reports it as not active, and the rollback must restart it.
    let managed = systemd::service_active();
    install_binary(&new_bin, &opts.exe)?;
    let previous = previous_path(&opts.exe);

    // 6. Restart and health check; roll back by ourselves when it does not come up.
    let service = match restart_and_check(cfg, managed, &info.version, opts.health_timeout) {
        Ok(s) => s,
        Err(why) => {
            swap_with_previous(&opts.exe)?;
            let back = restart_and_check(cfg, managed, &current, opts.health_timeout);
            return Err(OpsError::RolledBack(format!(
                "crm {} did not come up ({why}); rolled back to {current}{}",
                info.version,
                match back {
                    Ok(_) => " and it runs again".to_string(),
                    Err(e) =>
                        format!(", but it does not answer either ({e}): see journalctl -u crm"),
                }
            )));
        }
    };
    Ok(Outcome::Upgraded {
        from: current,
        to: info.version,
        backup,
        previous,
        service,
    })
}

/// `crm upgrade --rollback`: swap the binary with the kept previous one and restart.
pub fn rollback(cfg: &Config, exe: &Path, health_timeout: Duration) -> OpsResult<String> {
    if owned_by_dpkg(exe) {
        return Err(OpsError::Refused(
            "this crm belongs to the Debian package: use apt to change its version".into(),
        ));
    }
    if !previous_path(exe).is_file() {
        return Err(OpsError::Refused(format!(
            "there is no previous binary ({}) to go back to",
            previous_path(exe).display()
        )));
    }
    let managed = systemd::service_active();
    swap_with_previous(exe)?;
    let version = binary_version(exe)
        .map_err(|e| OpsError::NeedsAttention(format!("the restored binary does not run: {e}")))?;
    let service = restart_and_check(cfg, managed, &version, health_timeout).map_err(|e| {
        OpsError::NeedsAttention(format!(
            "went back to {version} but the service does not answer: {e}; run `crm upgrade --rollback` again to return to the other version"
        ))
    })?;
    Ok(format!("now at crm {version}; {service}"))
}

/// Reads the release manifest (self_update's manifest schema) and returns the newest
/// release's (version, asset name, asset URL) for this machine.
fn latest_release(url: &str) -> OpsResult<(String, String, String)> {
    let mut body = Vec::new();
    self_update::Download::from_url(url)
        .timeout(Duration::from_secs(30))
        .download_to(&mut body)
        .map_err(|e| OpsError::Refused(format!("cannot read the release manifest {url}: {e}")))?;
    let body = String::from_utf8_lossy(&body);
    let releases = self_update::backends::manifest::parse_manifest(&body, url)
        .map_err(|e| OpsError::Refused(format!("the release manifest {url} is not valid: {e}")))?;
    let newest = releases
        .iter()
        .reduce(|a, b| {
            if is_newer(a.version(), b.version()) {
                b
            } else {
                a
            }
        })
        .ok_or_else(|| OpsError::Refused(format!("{url} lists no release")))?;
    let arch = std::env::consts::ARCH;
    let asset = newest
        .assets()
        .iter()
        .find(|a| {
            a.name().ends_with(".tar.gz") && a.name().contains(arch) && a.name().contains("linux")
        })
        .ok_or_else(|| {
            OpsError::Refused(format!(
                "release {} has no archive for {arch} Linux",
                newest.version()
            ))
        })?;
    Ok((
        newest.version().to_string(),
        asset.name().to_string(),
        asset.download_url().to_string(),
    ))
}

fn download(url: &str, dest: &Path) -> OpsResult<()> {
    let mut file = std::fs::File::create(dest).map_err(io_ctx("cannot create", dest))?;
    self_update::Download::from_url(url)
        .timeout(Duration::from_secs(600))
        .max_download_size(200 * 1024 * 1024)
        .download_to(&mut file)
        .map_err(|e| {
            OpsError::Refused(format!(
                "download of {url} failed, nothing was changed: {e}"
            ))
        })
}

/// Extracts exactly `crm` and `release.json`; anything else in the archive is an error.
fn unpack(archive: &Path, into: &Path) -> Result<ReleaseInfo, String> {
    std::fs::create_dir_all(into).map_err(|e| e.to_string())?;
    let f = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut info = None;
    let mut has_bin = false;
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("unreadable: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let name = name.trim_start_matches("./").to_string();
        match name.as_str() {
            RELEASE_INFO => {
                let mut s = String::new();
                entry.read_to_string(&mut s).map_err(|e| e.to_string())?;
                info = Some(
                    serde_json::from_str::<ReleaseInfo>(&s)
                        .map_err(|e| format!("release.json is not valid: {e}"))?,
                );
            }
            BINARY => {
                let dest = into.join(BINARY);
                let mut out = std::fs::File::create(&dest).map_err(|e| e.to_string())?;
                std::io::copy(&mut entry, &mut out).map_err(|e| format!("unreadable: {e}"))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
                has_bin = true;
            }
            "" | "." => {}
            other => return Err(format!("unexpected entry {other:?}")),
        }
    }
    match (info, has_bin) {
        (Some(i), true) => Ok(i),
        (None, _) => Err("no release.json in it".into()),
        (_, false) => Err("no crm binary in it".into()),
    }
}

/// Runs `bin --version` (with a time limit) and returns the version it prints.
pub fn binary_version(bin: &Path) -> Result<String, String> {
    let mut child = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut out = String::new();
            if let Some(mut s) = child.stdout.take() {
                let _ = s.read_to_string(&mut out);
            }
            if !status.success() {
                return Err(format!("`--version` exited with {status}"));
            }
            return out
                .split_whitespace()
                .nth(1)
                .map(str::to_string)
                .ok_or_else(|| format!("`--version` printed {out:?}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("`--version` did not finish in 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Puts `new_bin` at `exe` with one rename; the old file stays as `exe.previous` (a hard
/// link to the same inode, made before the rename, so `exe` is never missing).
fn install_binary(new_bin: &Path, exe: &Path) -> OpsResult<()> {
    let dir = exe.parent().unwrap_or(Path::new("."));
    let incoming = sibling(exe, "new");
    std::fs::copy(new_bin, &incoming).map_err(io_ctx("cannot write", &incoming))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let f = std::fs::File::open(&incoming).map_err(io_ctx("cannot sync", &incoming))?;
        f.sync_all().map_err(io_ctx("cannot sync", &incoming))?;
        std::fs::set_permissions(&incoming, std::fs::Permissions::from_mode(0o755))
            .map_err(io_ctx("cannot chmod", &incoming))?;
    }
    let previous = previous_path(exe);
    let link = sibling(exe, "previous-new");
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(exe, &link).map_err(io_ctx("cannot keep the old binary as", &link))?;
    std::fs::rename(&link, &previous)
        .map_err(io_ctx("cannot keep the old binary as", &previous))?;
    std::fs::rename(&incoming, exe).map_err(io_ctx("cannot replace", exe))?;
    sync_dir(dir)
}

/// Exchanges `exe` and `exe.previous` (each rename atomic; `exe` never missing).
fn swap_with_previous(exe: &Path) -> OpsResult<()> {
    let previous = previous_path(exe);
    let hold = sibling(exe, "swap");
    let _ = std::fs::remove_file(&hold);
    std::fs::hard_link(exe, &hold).map_err(io_ctx("cannot link", exe))?;
    std::fs::rename(&previous, exe).map_err(io_ctx("cannot restore", &previous))?;
    std::fs::rename(&hold, &previous).map_err(io_ctx("cannot keep", &hold))?;
    sync_dir(exe.parent().unwrap_or(Path::new(".")))
}

/// Restarts the systemd service when `managed` (it ran when we started) and waits for
/// `/healthz` to report `version`. Returns what happened, or why it is not healthy.
fn restart_and_check(
    cfg: &Config,
    managed: bool,
    version: &str,
    timeout: Duration,
) -> Result<String, String> {
    if !managed {
        if DataDirLock::is_held(&cfg.data_dir) {
            return Ok(
                "a crm runs on this data dir but not as the systemd service: restart it to use the new binary".into(),
            );
        }
        return Ok("the service is not running; nothing restarted".into());
    }
    // Type=notify: `systemctl restart` returns once the new process said READY=1 (it
    // serves) or failed.
    match systemd::systemctl(&["restart", systemd::UNIT_NAME]) {
        Ok(true) => {}
        Ok(false) => return Err("systemctl restart crm failed".into()),
        Err(e) => return Err(format!("cannot run systemctl: {e}")),
    }
    if cfg.tls() {
        // This probe speaks plain HTTP only; readiness comes from systemd instead.
        return if systemd::service_active() {
            Ok("service restarted and reports ready (HTTPS: /healthz not probed)".into())
        } else {
            Err("the service is not active after the restart".into())
        };
    }
    let addr = probe::local_target(cfg.http);
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match probe::healthz_version(addr, Duration::from_secs(2)) {
            Ok(v) if v == version => {
                return Ok(format!("service restarted; /healthz on {addr} reports {v}"))
            }
            Ok(v) => last = format!("/healthz reports {v}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!(
        "no healthy answer on {addr} within {} s: {last}",
        timeout.as_secs()
    ))
}
