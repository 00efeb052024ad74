//! `crm install` / `crm uninstall`: put crm on a Debian box as a systemd service. With a
//! root other than "/" everything is written below it as if it were "/" (for tests and
//! image builds) and nothing is run (no user creation, no systemctl).

use std::path::{Path, PathBuf};

use super::{io_ctx, systemd, OpsError, OpsResult};
use crate::config::Config;

pub const BIN_PATH: &str = "usr/local/bin/crm";
pub const UNIT_PATH: &str = "etc/systemd/system/crm.service";
pub const PORTS_DROPIN_PATH: &str = "etc/systemd/system/crm.service.d/low-ports.conf";
pub const CONFIG_PATH: &str = "etc/crm/crm.toml";
pub const DATA_PATH: &str = "var/lib/crm";
pub const SYSUSERS_PATH: &str = "usr/lib/sysusers.d/crm.conf";
/// Declares the `crm` system user; systemd-sysusers creates it (at boot in an image).
pub const SYSUSERS: &str = "u crm - \"crm service\" /var/lib/crm /usr/sbin/nologin\n";

pub const SYSCTL_PATH: &str = "usr/lib/sysctl.d/60-crm.conf";

/// Lets the SIP server have the UDP buffers it asks for: a stock kernel caps them at
/// 208 KiB, which drops datagrams in a burst of desk-phone traffic (see sip::transport).
pub fn sysctl_text() -> String {
    use crate::sip::transport::{UDP_RECV_BUFFER, UDP_SEND_BUFFER};
    format!(
        "# Written by crm: room for the UDP buffers its SIP server asks for (the kernel\n\
         # default of 208 KiB drops datagrams when many phones talk at once).\n\
         net.core.rmem_max = {UDP_RECV_BUFFER}\nnet.core.wmem_max = {UDP_SEND_BUFFER}\n"
    )
}

/// One line of what was done, for the report.
pub type Steps = Vec<String>;

fn under(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

fn live(root: &Path) -> bool {
    root == Path::new("/")
}

/// Writes `content` to `path` atomically (temp file + rename) with `mode`.
fn write_file(path: &Path, content: &[u8], mode: u32) -> OpsResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let parent = path.parent().expect("absolute path");
    std::fs::create_dir_all(parent).map_err(io_ctx("cannot create", parent))?;
    let tmp = path.with_extension("crm-new");
    std::fs::write(&tmp, content).map_err(io_ctx("cannot write", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io_ctx("cannot chmod", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_ctx("cannot write", path))
}

/// The config file written on install: every setting at its default, commented out, so
/// the owner sees what exists and uncomments what to change. Only `data_dir` is set.
pub fn default_config_text() -> String {
    let defaults = Config {
        data_dir: PathBuf::from("/var/lib/crm"),
        ..Config::default()
    };
    let mut out = String::from(
        "# crm configuration. Every setting is shown at its default, commented out:\n\
         # uncomment a line (and its [section] line) to change it, then\n\
         # `sudo systemctl restart crm`. `crm config show` prints the effective values.\n\
         # Environment variables CRM_HTTP, CRM_SIP, CRM_DATA_DIR, CRM_LOG override this file.\n\n\
         data_dir = \"/var/lib/crm\"\n\n",
    );
    let mut section = String::new();
    for line in defaults.to_redacted_toml().lines() {
        if line.starts_with("data_dir") {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
        }
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&format!("# {line}\n"));
        }
        // Settings without a default value do not serialise; show them too.
        let optional: &[&str] = match (section.as_str(), line.starts_with('[')) {
            ("", false) if line.starts_with("log ") => &[
                "tls_cert = \"/etc/crm/cert.pem\"   # HTTPS: set both",
                "tls_key = \"/etc/crm/key.pem\"",
                "metrics_token = \"a-long-secret\"   # required by /metrics when set",
            ],
            ("backup", true) => &["dir = \"/media/backup\"   # default: <data_dir>/backups; see `systemctl edit crm` for ReadWritePaths"],
            ("upgrade", true) => &["url = \"https://example.org/crm/manifest.json\"   # release manifest; unset: only --from-file"],
            _ => &[],
        };
        for o in optional {
            out.push_str(&format!("# {o}\n"));
        }
    }
    if !out.contains("[upgrade]") {
        out.push_str("\n# [upgrade]\n# url = \"https://example.org/crm/manifest.json\"   # release manifest; unset: only --from-file\n");
    }
    out
}

/// Ports below 1024 in the effective config (they need CAP_NET_BIND_SERVICE).
fn low_ports(cfg: &Config) -> Vec<u16> {
    let mut ports = vec![cfg.http.port()];
    if let Ok(crate::config::SipListen::On(a)) = cfg.sip_listen() {
        ports.push(a.port());
    }
    ports.retain(|p| *p < 1024);
    ports
}

pub fn install(root: &Path, exe: &Path) -> OpsResult<Steps> {
    let mut steps = Vec::new();
    if live(root) {
        refuse_if_packaged()?;
    }

    // The user, declared for systemd-sysusers (and created now on a live system).
    let sysusers = under(root, SYSUSERS_PATH);
    write_file(&sysusers, SYSUSERS.as_bytes(), 0o644)?;
    if live(root) {
        create_user()?;
        steps.push("system user crm exists".into());
    } else {
        steps.push(format!("declared user crm in {}", sysusers.display()));
    }

    // The config, only when absent: never overwrite the owner's settings.
    let config = under(root, CONFIG_PATH);
    if config.exists() {
        steps.push(format!("kept existing {}", config.display()));
    } else {
        write_file(&config, default_config_text().as_bytes(), 0o640)?;
        steps.push(format!("wrote {} (defaults, commented)", config.display()));
    }
    let data = under(root, DATA_PATH);
    std::fs::create_dir_all(&data).map_err(io_ctx("cannot create", &data))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750))
            .map_err(io_ctx("cannot chmod", &data))?;
    }
    if live(root) {
        chown_crm(&[&data, &config])?;
    }
    steps.push(format!("data directory {}", data.display()));

    // The binary, replaced atomically.
    let bin = under(root, BIN_PATH);
    let same = std::fs::canonicalize(exe).ok() == std::fs::canonicalize(&bin).ok();
    if !same {
        let bytes = std::fs::read(exe).map_err(io_ctx("cannot read", exe))?;
        write_file(&bin, &bytes, 0o755)?;
    }
    steps.push(format!("binary {}", bin.display()));

    // The kernel's UDP buffer limits, applied now on a live system (a container may refuse:
    // crm still runs, with smaller buffers, and says so in its log).
    let sysctl = under(root, SYSCTL_PATH);
    write_file(&sysctl, sysctl_text().as_bytes(), 0o644)?;
    if live(root) {
        let applied = std::process::Command::new("sysctl")
            .arg("-q")
            .arg("-p")
            .arg(&sysctl)
            .status()
            .is_ok_and(|s| s.success());
        steps.push(if applied {
            format!("UDP buffer limits {} (applied)", sysctl.display())
        } else {
            format!(
                "UDP buffer limits {} (not applied here: applies at boot)",
                sysctl.display()
            )
        });
    } else {
        steps.push(format!("UDP buffer limits {}", sysctl.display()));
    }

    // The unit, plus a capability drop-in only when the config asks for a low port.
    let unit = under(root, UNIT_PATH);
    write_file(&unit, systemd::UNIT.as_bytes(), 0o644)?;
    steps.push(format!("unit {}", unit.display()));
    let effective = Config::from_file(&config).map_err(|e| OpsError::Refused(e.to_string()))?;
    let dropin = under(root, PORTS_DROPIN_PATH);
    let low = low_ports(&effective);
    if low.is_empty() {
        if dropin.exists() {
            std::fs::remove_file(&dropin).map_err(io_ctx("cannot remove", &dropin))?;
        }
    } else {
        write_file(
            &dropin,
            format!(
                "# Written by `crm install`: the config listens on port(s) {low:?} below 1024.\n\
                 [Service]\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"
            )
            .as_bytes(),
            0o644,
        )?;
        steps.push(format!(
            "{} (ports {low:?} need CAP_NET_BIND_SERVICE)",
            dropin.display()
        ));
    }

    if live(root) {
        for args in [
            &["daemon-reload"][..],
            &["enable", "--now", systemd::UNIT_NAME],
            &["restart", systemd::UNIT_NAME],
        ] {
            run_systemctl(args)?;
        }
        steps.push("service enabled and started (systemctl status crm)".into());
    } else {
        steps.push("not started: --root given".into());
    }
    Ok(steps)
}

pub fn uninstall(root: &Path, purge: bool) -> OpsResult<Steps> {
    let mut steps = Vec::new();
    if live(root) {
        refuse_if_packaged()?;
        let _ = systemd::systemctl(&["disable", "--now", systemd::UNIT_NAME]);
        steps.push("service stopped and disabled".into());
    }
    for rel in [
        UNIT_PATH,
        PORTS_DROPIN_PATH,
        BIN_PATH,
        SYSUSERS_PATH,
        SYSCTL_PATH,
    ] {
        let p = under(root, rel);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io_ctx("cannot remove", &p))?;
            steps.push(format!("removed {}", p.display()));
        }
    }
    let dropin_dir = under(root, "etc/systemd/system/crm.service.d");
    let _ = std::fs::remove_dir(&dropin_dir);
    for keep in [under(root, "etc/crm"), under(root, DATA_PATH)] {
        if !keep.exists() {
            continue;
        }
        if purge {
            std::fs::remove_dir_all(&keep).map_err(io_ctx("cannot remove", &keep))?;
            steps.push(format!("removed {}", keep.display()));
        } else {
            steps.push(format!("kept {} (use --purge to delete)", keep.display()));
        }
    }
    if live(root) {
        let _ = systemd::systemctl(&["daemon-reload"]);
        if purge {
            let _ = std::process::Command::new("userdel").arg("crm").status();
            steps.push("removed user crm".into());
        }
    }
    Ok(steps)
}

fn run_systemctl(args: &[&str]) -> OpsResult<()> {
    match systemd::systemctl(args) {
        Ok(true) => Ok(()),
        Ok(false) => Err(OpsError::NeedsAttention(format!(
            "`systemctl {}` failed; see `journalctl -u crm`",
            args.join(" ")
        ))),
        Err(e) => Err(OpsError::NeedsAttention(format!(
            "cannot run systemctl ({e}); is this a systemd machine? Use --root to only write the files"
        ))),
    }
}

fn create_user() -> OpsResult<()> {
    let exists = std::process::Command::new("id")
        .arg("crm")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if exists {
        return Ok(());
    }
    let via_sysusers = std::process::Command::new("systemd-sysusers")
        .arg(Path::new("/").join(SYSUSERS_PATH))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if via_sysusers {
        return Ok(());
    }
    let ok = std::process::Command::new("useradd")
        .args(["--system", "--home-dir", "/var/lib/crm", "--no-create-home"])
        .args(["--shell", "/usr/sbin/nologin", "crm"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(OpsError::NeedsAttention(
            "cannot create the system user crm (run as root: sudo crm install)".into(),
        ))
    }
}

fn chown_crm(paths: &[&Path]) -> OpsResult<()> {
    for p in paths {
        let ok = std::process::Command::new("chown")
            .arg("-R")
            .arg("crm:crm")
            .arg(p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err(OpsError::NeedsAttention(format!(
                "cannot give {} to the crm user",
                p.display()
            )));
        }
    }
    Ok(())
}

/// The Debian package owns /usr/bin/crm and its unit; apt manages those.
fn refuse_if_packaged() -> OpsResult<()> {
    if super::upgrade::owned_by_dpkg(Path::new("/usr/bin/crm")) {
        return Err(OpsError::Refused(
            "crm is installed from the Debian package; use apt (sudo apt install crm / apt remove crm) instead".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_uncommented_is_the_default() {
        let text = default_config_text();
        assert!(text.contains("# [backup]"), "{text}");
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| {
                !l.starts_with("crm configuration")
                    && !l.starts_with("uncomment")
                    && !l.starts_with("`sudo")
                    && !l.starts_with("Environment")
                    && !l.starts_with("tls_")
                    && !l.starts_with("metrics_token")
                    && !l.starts_with("dir =")
                    && !l.starts_with("url =")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed = Config::from_toml(&uncommented).unwrap();
        assert_eq!(
            parsed.to_redacted_toml(),
            Config {
                data_dir: "/var/lib/crm".into(),
                ..Config::default()
            }
            .to_redacted_toml()
        );
        // As written (all commented), it parses and sets only data_dir.
        assert_eq!(
            Config::from_toml(&text).unwrap().data_dir,
            PathBuf::from("/var/lib/crm")
        );
    }
}
