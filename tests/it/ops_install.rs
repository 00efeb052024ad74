//! `crm install --root`, `crm uninstall`, the systemd unit, and sd_notify from the real
//! server process.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ops::{stderr, stdout};
use crate::support::*;

fn crm_plain() -> Command {
    let mut c = Command::new(crm_bin());
    c.env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP");
    c
}

/// `systemd-analyze verify` of the installed unit inside `root`, when the tool exists.
/// The root gets the distribution's standard units (targets, sockets) an image has.
fn verify_unit(root: &Path) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not available: unit not verified");
        return;
    }
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for e in std::fs::read_dir("/usr/lib/systemd/system")
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.ends_with(".target") || name.ends_with(".socket")) && e.path().is_file() {
            std::fs::copy(e.path(), units.join(&name)).unwrap();
        }
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("/etc/systemd/system/crm.service")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn install_root_writes_the_tree_and_a_unit_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = crm_plain()
        .args(["install", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("not started"), "{}", stdout(&out));

    let bin = root.join("usr/local/bin/crm");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(crm_bin()).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/crm.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=crm",
        "StateDirectory=crm",
        "ConfigurationDirectory=crm",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/crm",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        // The relay's threads may run real-time and at nice -10 (`[media] realtime`, `nice`).
        "\nLimitRTPRIO=10\n",
        "\nLimitNICE=-10\n",
        "\nRestrictRealtime=no\n",
        "\nCapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(line), "unit lacks {line:?}");
    }
    assert!(!root
        .join("etc/systemd/system/crm.service.d/low-ports.conf")
        .exists());
    assert!(root.join("var/lib/crm").is_dir());
    let sysusers = std::fs::read_to_string(root.join("usr/lib/sysusers.d/crm.conf")).unwrap();
    assert!(sysusers.starts_with("u crm "));
    let sysctl = std::fs::read_to_string(root.join("usr/lib/sysctl.d/60-crm.conf")).unwrap();
    assert!(
        sysctl.contains("\nnet.core.rmem_max = 4194304\n")
            && sysctl.contains("\nnet.core.wmem_max = 1048576\n"),
        "{sysctl}"
    );

    // The config: commented defaults that the real binary accepts as they are.
    let cfg = root.join("etc/crm/crm.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("# http = \"0.0.0.0:8080\""), "{text}");
    assert!(text.contains("# [backup]"));
    let shown = crm_plain()
        .arg("--config")
        .arg(&cfg)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(stdout(&shown).contains("data_dir = \"/var/lib/crm\""));

    verify_unit(root);

    // Installing again keeps the owner's config edits; a low port adds the capability.
    std::fs::write(&cfg, "data_dir = \"/var/lib/crm\"\nhttp = \"0.0.0.0:80\"\n").unwrap();
    let out = crm_plain()
        .args(["install", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("kept existing"));
    assert!(std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("0.0.0.0:80"));
    let dropin =
        std::fs::read_to_string(root.join("etc/systemd/system/crm.service.d/low-ports.conf"))
            .unwrap();
    assert!(dropin.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE"));
    verify_unit(root);

    // Uninstall keeps config and data; --purge removes them.
    std::fs::write(root.join("var/lib/crm/crm.db"), b"data").unwrap();
    let out = crm_plain()
        .args(["uninstall", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!bin.exists());
    assert!(!root.join("etc/systemd/system/crm.service").exists());
    assert!(!root.join("usr/lib/sysctl.d/60-crm.conf").exists());
    assert!(root.join("var/lib/crm/crm.db").exists());
    assert!(cfg.exists());
    let out = crm_plain()
        .args(["uninstall", "--purge", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!root.join("var/lib/crm").exists());
    assert!(!root.join("etc/crm").exists());
}

/// The real server tells systemd READY=1 once it serves, pings the watchdog, and says
/// STOPPING=1 on SIGTERM.
#[test]
fn serve_notifies_systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let data = dir.path().join("data");
    // systemd sets WATCHDOG_PID to the service's pid; `exec` keeps the shell's pid.
    let cfg = crate::ops::crm_on(&data);
    let args: Vec<String> = cfg
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$@\"")
        .arg("sh")
        .arg(crm_bin())
        .args(args)
        .args(["serve", "--http", "127.0.0.1:0", "--sip", "off"])
        .env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        assert!(Instant::now() < deadline, "notifications so far: {seen:?}");
        let n = sock
            .recv(&mut buf)
            .expect("a notification within the timeout");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready_at = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    assert!(ready_at < seen.iter().position(|m| m.contains("WATCHDOG=1")).unwrap());
    // SIGTERM: a graceful stop announces itself.
    let ok = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    loop {
        let n = sock.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
}
