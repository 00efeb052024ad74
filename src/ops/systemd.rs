//! Talking to systemd: readiness and watchdog notifications (sd_notify) for the server,
//! and `systemctl` for install, uninstall and upgrade. Without systemd (tests, a shell)
//! the notifications do nothing.

use std::process::Command;
use std::time::Duration;

use sd_notify::NotifyState;

/// The unit file shipped with crm.
pub const UNIT: &str = include_str!("../../systemd/crm.service");
pub const UNIT_NAME: &str = "crm.service";

/// Tells systemd the service is up (Type=notify).
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready]) {
        tracing::warn!(error = %e, "sd_notify READY failed");
    }
}

pub fn notify_stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// How often to ping the watchdog: half of WatchdogSec, `None` without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

pub fn watchdog_ping() {
    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
}

/// Runs `systemctl ARGS`; Ok(true) when it exited 0, Ok(false) otherwise, Err when there
/// is no systemctl.
pub fn systemctl(args: &[&str]) -> std::io::Result<bool> {
    Command::new("systemctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
}

/// Whether the crm service is running under systemd on this machine.
pub fn service_active() -> bool {
    systemctl(&["is-active", "--quiet", UNIT_NAME]).unwrap_or(false)
}
