//! `crm doctor`: checks that the box can do its job and says what to do about each
//! problem. Each check is a [`Check`]; the list is in [`checks`].
//!
//! The Telegram Bot API and the SMTP server are probed when they are configured (probes in
//! `notify::probe`), and every SIP trunk's provider with an OPTIONS (`sip::probe`).

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use super::lock::DataDirLock;
use super::{backup, human_size, probe};
use crate::config::{Config, SipListen};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do, when not Ok.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// One health check of the box.
pub trait Check {
    fn run(&self, cfg: &Config) -> Vec<Finding>;
}

impl<F: Fn(&Config) -> Vec<Finding>> Check for F {
    fn run(&self, cfg: &Config) -> Vec<Finding> {
        self(cfg)
    }
}

/// Every check, in the order printed. Append new ones here.
pub fn checks() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(config),
        Box::new(ports),
        Box::new(database),
        Box::new(disk),
        Box::new(backups),
        Box::new(remote),
        Box::new(clock),
        Box::new(notifications),
        Box::new(trunks),
        Box::new(private_files),
    ]
}

/// The database and the backups hold the bot token and the SMTP password in plain text:
/// nobody but crm (and its group) may read them.
fn private_files(cfg: &Config) -> Vec<Finding> {
    use std::os::unix::fs::PermissionsExt;
    let mut files: Vec<std::path::PathBuf> = ["crm.db", "crm.db-wal", "crm.db-shm"]
        .iter()
        .map(|f| cfg.data_dir.join(f))
        .filter(|p| p.exists())
        .collect();
    files.extend(
        backup::list(&cfg.backup_target_dir())
            .into_iter()
            .map(|b| b.path),
    );
    let open: Vec<String> = files
        .iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o007 != 0)
                .unwrap_or(false)
        })
        .map(|p| p.display().to_string())
        .collect();
    if open.is_empty() {
        vec![Finding::ok(
            "files",
            "database and backups are not readable by other users",
        )]
    } else {
        vec![Finding::warn(
            "files",
            format!(
                "readable by every user on this box (they hold the bot token and SMTP password): {}",
                open.join(", ")
            ),
            format!("chmod o-rwx {}", open.join(" ")),
        )]
    }
}

/// How long each reachability probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The bot and the mail server, as configured in the admin settings (read from the
/// database; nothing is checked when a channel is not set up).
fn notifications(cfg: &Config) -> Vec<Finding> {
    let path = cfg.db_path();
    if !path.exists() {
        return Vec::new();
    }
    let settings = crate::db::open_read_only(&path)
        .and_then(|c| crate::domain::notifications::load_settings(&c));
    let s = match settings {
        Ok(s) => s,
        Err(e) => {
            return vec![Finding::warn(
                "notify",
                format!("cannot read the notification settings: {e}"),
                "see the database finding above",
            )]
        }
    };
    let mut out = Vec::new();
    if s.telegram.token.is_empty() {
        out.push(Finding::ok(
            "telegram",
            "no bot token set (Telegram is off)",
        ));
    } else {
        match crate::notify::probe::telegram(&s.telegram, PROBE_TIMEOUT) {
            Ok(name) => out.push(Finding::ok(
                "telegram",
                format!("{} answers getMe as @{name}", s.telegram.api_url),
            )),
            Err(e) if e.contains("Unauthorized") || e.contains("Not Found") => {
                out.push(Finding::fail(
                    "telegram",
                    format!("the Bot API refuses the token: {e}"),
                    "paste the token from @BotFather again (Settings → Notifications)",
                ))
            }
            Err(e) => out.push(Finding::fail(
                "telegram",
                format!("the Bot API is not reachable: {e}"),
                "check the box's internet connection and DNS, or set a reachable Bot API URL (Settings → Notifications)",
            )),
        }
    }
    if !s.smtp.configured() {
        out.push(Finding::ok("smtp", "no SMTP server set (e-mail is off)"));
    } else {
        match crate::notify::probe::smtp(&s.smtp, PROBE_TIMEOUT) {
            Ok(()) => out.push(Finding::ok(
                "smtp",
                format!(
                    "{}:{} accepts a session ({})",
                    s.smtp.host,
                    s.smtp.port,
                    s.smtp.security.as_str()
                ),
            )),
            Err(e) => out.push(Finding::fail(
                "smtp",
                format!("the mail server is not usable: {e}"),
                "check host, port, security and login (Settings → Notifications → Send test)",
            )),
        }
    }
    out
}

/// Each SIP trunk's provider: does it answer SIP on its host, port and transport?
fn trunks(cfg: &Config) -> Vec<Finding> {
    let path = cfg.db_path();
    if !path.exists() {
        return Vec::new();
    }
    let trunks =
        match crate::db::open_read_only(&path).and_then(|c| crate::db::sip::list_trunks(&c)) {
            Ok(t) => t,
            Err(e) => {
                return vec![Finding::warn(
                    "trunk",
                    format!("cannot read the SIP trunks: {e}"),
                    "see the database finding above",
                )]
            }
        };
    if trunks.is_empty() {
        return vec![Finding::ok(
            "trunk",
            "no SIP trunk set (no calls to or from outside)",
        )];
    }
    trunks
        .iter()
        .map(|t| {
            let transport = if t.transport.eq_ignore_ascii_case("tcp") {
                crate::sip::Transport::Tcp
            } else {
                crate::sip::Transport::Udp
            };
            let at = format!("{}:{} ({})", t.host, t.port, transport.name());
            match crate::sip::probe::options(&t.host, t.port, transport, PROBE_TIMEOUT) {
                Ok(code) => Finding::ok(
                    "trunk",
                    format!("{}: {at} answers SIP ({code} to OPTIONS)", t.name),
                ),
                Err(e) => Finding::fail(
                    "trunk",
                    format!("{}: the provider does not answer at {at}: {e}", t.name),
                    "check the trunk's host, port and transport (Telephony → Trunks) and that the box reaches the provider (internet, firewall)",
                ),
            }
        })
        .collect()
}

pub fn run(cfg: &Config) -> Vec<Finding> {
    checks().iter().flat_map(|c| c.run(cfg)).collect()
}

fn config(cfg: &Config) -> Vec<Finding> {
    let mut out = vec![Finding::ok(
        "config",
        format!("valid; data in {}", cfg.data_dir.display()),
    )];
    for (key, path) in [("tls_cert", &cfg.tls_cert), ("tls_key", &cfg.tls_key)] {
        if let Some(p) = path {
            if let Err(e) = std::fs::File::open(p) {
                out.push(Finding::fail(
                    "config",
                    format!("{key} {}: {e}", p.display()),
                    "fix the path in /etc/crm/crm.toml or give the crm user read access",
                ));
            }
        }
    }
    out
}

/// With a server running on this data dir: it must answer on its HTTP port. Without one:
/// its ports must be free to bind.
fn ports(cfg: &Config) -> Vec<Finding> {
    let running = DataDirLock::is_held(&cfg.data_dir);
    let mut out = Vec::new();
    if running {
        let addr = probe::local_target(cfg.http);
        // A server that answers but cannot write (disk full, read-only, I/O errors)
        // says so in /healthz: name it.
        if let Ok((_, v)) = probe::healthz(addr, Duration::from_secs(3)) {
            if v["status"] == "degraded" {
                out.push(Finding::ok(
                    "ports",
                    format!(
                        "the server (crm {}) answers on {addr}",
                        v["version"].as_str().unwrap_or("?")
                    ),
                ));
                let since = v["since"].as_i64().map(fmt_time).unwrap_or_default();
                out.push(Finding::fail(
                    "storage",
                    format!(
                        "the server cannot save: {} (since {since})",
                        v["reason"].as_str().unwrap_or("storage error")
                    ),
                    storage_fix(v["problem"].as_str().unwrap_or("")),
                ));
                return out;
            }
        }
        match probe::healthz_version(addr, Duration::from_secs(3)) {
            Ok(v) => out.push(Finding::ok(
                "ports",
                format!("the server (crm {v}) answers on {addr}"),
            )),
            Err(e) if cfg.tls() => out.push(Finding::warn(
                "ports",
                format!("cannot probe {addr} over HTTPS from here ({e})"),
                "open the web UI in a browser to check it",
            )),
            Err(e) => out.push(Finding::fail(
                "ports",
                format!("a crm runs on this data dir but {addr} does not answer: {e}"),
                "sudo systemctl restart crm; then journalctl -u crm -n 50",
            )),
        }
        return out;
    }
    match TcpListener::bind(cfg.http) {
        Ok(_) => out.push(Finding::ok("ports", format!("HTTP {} is free", cfg.http))),
        Err(e) => out.push(Finding::fail(
            "ports",
            format!("HTTP {} cannot be used: {e}", cfg.http),
            "another program uses the port (sudo ss -ltnp), or change `http` in the config",
        )),
    }
    if let Ok(SipListen::On(sip)) = cfg.sip_listen() {
        match (UdpSocket::bind(sip), TcpListener::bind(sip)) {
            (Ok(_), Ok(_)) => out.push(Finding::ok("ports", format!("SIP {sip} is free"))),
            (u, t) => out.push(Finding::fail(
                "ports",
                format!(
                    "SIP {sip} cannot be used: {}",
                    u.err()
                        .or(t.err())
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                ),
                "another program uses the port (sudo ss -lunp), or change `sip` in the config",
            )),
        }
    }
    out
}

fn database(cfg: &Config) -> Vec<Finding> {
    let path = cfg.db_path();
    if !path.exists() {
        return vec![Finding::warn(
            "database",
            format!("no database at {} yet", path.display()),
            "start the server once (it creates it), or check --data-dir",
        )];
    }
    match crate::db::snapshot::check_file(&path) {
        Ok(c) if c.intact => {
            let known = crate::db::binary_schema_version();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if c.schema_version > known {
                vec![Finding::fail(
                    "database",
                    format!("schema {} is newer than this crm knows ({known})", c.schema_version),
                    "install the crm version that wrote it, or restore a backup",
                )]
            } else {
                vec![Finding::ok(
                    "database",
                    format!("integrity ok, schema {}, {}", c.schema_version, human_size(size)),
                )]
            }
        }
        Ok(c) => vec![Finding::fail(
            "database",
            format!("integrity check failed: {}", c.problems.join("; ")),
            "stop crm and restore the newest good backup: crm restore <archive>",
        )],
        Err(e) => vec![Finding::fail(
            "database",
            format!("cannot read {}: {e}", path.display()),
            "check the file's owner (crm) and the disk; if it is damaged, stop crm and restore the newest good backup: crm restore <archive>",
        )],
    }
}

/// What to do about a storage problem, by its code.
fn storage_fix(code: &str) -> &'static str {
    match code {
        "disk_full" => "free space now: delete old backups or move them off the box (see `disk` below); the server takes writes again by itself",
        "read_only" => "the file system went read-only (usually after disk errors): check `dmesg`, run fsck, then restart crm",
        _ => "the disk reports I/O errors: check `dmesg` and the disk's health (smartctl -a); make a backup elsewhere and replace the disk",
    }
}

/// Writes and removes a small file in the data folder: names a full, read-only or
/// failing disk even when no server runs.
fn write_probe(cfg: &Config) -> Option<Finding> {
    let path = cfg.tmp_dir().join(".doctor-write-probe");
    let r = std::fs::create_dir_all(cfg.tmp_dir())
        .and_then(|_| std::fs::write(&path, b"crm doctor write probe\n"))
        .and_then(|_| std::fs::File::open(&path)?.sync_all());
    let _ = std::fs::remove_file(&path);
    let e = r.err()?;
    let p = crate::db::StorageProblem::of_io(&e)?;
    Some(Finding::fail(
        "storage",
        format!(
            "cannot write in {}: {} ({e})",
            cfg.data_dir.display(),
            p.describe()
        ),
        storage_fix(p.code()),
    ))
}

fn disk(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(f) = write_probe(cfg) {
        out.push(f);
    }
    let mut dirs = vec![("data", cfg.data_dir.clone())];
    if cfg.backup.dir.is_some() {
        dirs.push(("backup", cfg.backup_target_dir()));
    }
    for (what, dir) in dirs {
        let (Ok(avail), Ok(total)) = (fs4::available_space(&dir), fs4::total_space(&dir)) else {
            out.push(Finding::fail(
                "disk",
                format!("{what} folder {} is not reachable", dir.display()),
                "check that the disk is mounted",
            ));
            continue;
        };
        let db = std::fs::metadata(cfg.db_path())
            .map(|m| m.len())
            .unwrap_or(0);
        let detail = format!(
            "{what} folder {}: {} free of {}",
            dir.display(),
            human_size(avail),
            human_size(total)
        );
        // A backup needs about the database's size again; keep a margin beyond that.
        if avail < 200_000_000 || avail < db {
            out.push(Finding::fail(
                "disk",
                detail,
                "free space now: delete old backups or move them off the box",
            ));
        } else if avail < 1_000_000_000 || avail < total / 10 || avail < 2 * db {
            out.push(Finding::warn(
                "disk",
                detail,
                "free some space soon (old backups, logs: journalctl --vacuum-size=200M)",
            ));
        } else {
            out.push(Finding::ok("disk", detail));
        }
    }
    out
}

fn backups(cfg: &Config) -> Vec<Finding> {
    let now = crate::db::now();
    match backup::staleness_warning(cfg, now) {
        Some(w) => vec![Finding::warn(
            "backup",
            w,
            "crm backup; for automatic backups set [backup] time in the config",
        )],
        None => {
            let b = backup::newest(cfg).expect("not stale means one exists");
            vec![Finding::ok(
                "backup",
                format!(
                    "newest {} is {} old ({})",
                    b.name,
                    super::human_age(now - b.finished_at),
                    human_size(b.size)
                ),
            )]
        }
    }
}

/// Off-box copies and replication (issue 21): each target's lag and last upload.
fn remote(cfg: &Config) -> Vec<Finding> {
    use super::remote::replicate;
    if cfg.backup.remote.targets.is_empty() {
        return Vec::new();
    }
    let now = super::remote::now_ms();
    let status = replicate::read_status(cfg);
    let warnings = replicate::warnings(cfg, status.as_ref(), now);
    if !warnings.is_empty() {
        return warnings
            .into_iter()
            .map(|w| {
                Finding::warn(
                    "remote",
                    w,
                    "check the target (network, credentials, disk) and the [backup.remote] settings; the server keeps the copies queued meanwhile",
                )
            })
            .collect();
    }
    let Some(s) = status else {
        return vec![Finding::ok("remote", "targets configured; no upload yet")];
    };
    s.targets
        .iter()
        .map(|t| {
            Finding::ok(
                "remote",
                format!(
                    "{} ({}): {:.0} s behind, last upload {}",
                    t.name,
                    t.place,
                    t.lag_secs(now),
                    t.last_ok_ms
                        .map(|ms| format!("{} ago", super::human_age((now - ms) / 1000)))
                        .unwrap_or_else(|| "never".into())
                ),
            )
        })
        .collect()
}

/// The clock matters for sessions, call logs and backup ages. Without internet, NTP may
/// never sync; a clock behind the data's own timestamps has certainly gone wrong.
fn clock(cfg: &Config) -> Vec<Finding> {
    let now = crate::db::now();
    // 2026-01-01: earlier than any crm release.
    if now < 1_767_225_600 {
        return vec![Finding::fail(
            "clock",
            format!("the clock says {}", fmt_time(now)),
            "set the date: sudo timedatectl set-time 'YYYY-MM-DD HH:MM:SS'",
        )];
    }
    let newest_file = [cfg.db_path().with_extension("db-wal"), cfg.db_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok()?.modified().ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .max();
    if let Some(t) = newest_file {
        if t > now + 300 {
            return vec![Finding::fail(
                "clock",
                format!(
                    "the clock ({}) is behind the database's last write ({})",
                    fmt_time(now),
                    fmt_time(t)
                ),
                "set the correct time: sudo timedatectl set-time 'YYYY-MM-DD HH:MM:SS'",
            )];
        }
    }
    let synced = std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes");
    match synced {
        Some(false) => vec![Finding::warn(
            "clock",
            format!("{} UTC, not synchronised with NTP", fmt_time(now)),
            "check the internet connection or set the time by hand (timedatectl)",
        )],
        _ => vec![Finding::ok("clock", format!("{} UTC", fmt_time(now)))],
    }
}

fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| unix.to_string())
}
