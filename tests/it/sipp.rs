//! Driving SIPp from the tests: scenarios in tests/sip/, free ports, running a client or
//! a UAS with bounded time, reading its counts. Shared by the SIP and calls test files.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crm::sip::CallEvent;
use tokio::process::{Child, Command};

use crate::support::TestApp;

pub fn scenario(name: &str) -> String {
    format!("{}/tests/sip/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A local port free for both UDP and TCP (SIPp binds both with -t t1).
pub fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[derive(Debug)]
pub struct SippResult {
    pub rc: i32,
    pub ok: u64,
    pub failed: u64,
    pub out: String,
}

pub fn counts(out: &str) -> (u64, u64) {
    let field = |label: &str| {
        out.lines()
            .rfind(|l| l.contains(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("Successful call"), field("Failed call"))
}

pub fn sipp_cmd(args: &[&str]) -> Command {
    sipp_cmd_at("127.0.0.1", args)
}

/// SIPp bound to `ip` (another loopback address plays a host that is not the phones').
pub fn sipp_cmd_at(ip: &str, args: &[&str]) -> Command {
    let mut c = Command::new("sipp");
    c.args(["-i", ip, "-nostdin", "-timeout", "30", "-timeout_error"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs a SIPp client against `target` on its own local port; bounded in time.
pub async fn sipp(target: SocketAddr, args: &[&str]) -> SippResult {
    let port = free_port().to_string();
    let mut all = vec![target.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    all.push("-p".into());
    all.push(port);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let child = sipp_cmd(&refs)
        .spawn()
        .expect("sipp is installed (sip-tester)");
    wait_sipp(child).await
}

pub async fn wait_sipp(child: Child) -> SippResult {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("sipp finishes in time")
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let (ok, failed) = counts(&text);
    SippResult {
        rc: out.status.code().unwrap_or(-1),
        ok,
        failed,
        out: text,
    }
}

/// A SIPp UAS on `port` running `scen` for `calls` calls.
pub fn uas(scen: &str, port: u16, calls: u32) -> Child {
    let p = port.to_string();
    let m = calls.to_string();
    sipp_cmd(&["-sf", &scenario(scen), "-p", &p, "-m", &m])
        .spawn()
        .expect("sipp is installed")
}

#[track_caller]
pub fn assert_ok(r: &SippResult, want: u64, what: &str) {
    assert!(
        r.rc == 0 && r.ok == want && r.failed == 0,
        "{what}: rc={} ok={}/{want} failed={}\n{}",
        r.rc,
        r.ok,
        r.failed,
        &r.out[r.out.len().saturating_sub(3000)..]
    );
}

/// Users as in the bench kit: NUMBER with secret `secret-NUMBER`.
pub async fn import_users(app: &TestApp, numbers: impl Iterator<Item = u32>) -> PathBuf {
    let mut text = String::from("SEQUENTIAL\n");
    for n in numbers {
        text.push_str(&format!("{n};secret-{n};\n"));
    }
    let tel = &app.running().ctx.telephony;
    tel.import(None, &text).await.expect("import");
    let path = app.data_dir().join("users.csv");
    std::fs::write(&path, &text).unwrap();
    path
}

pub fn drain(rx: &mut tokio::sync::broadcast::Receiver<CallEvent>) -> Vec<CallEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

/// Runs a SIPp client bound to `ip` against `target`; bounded in time.
pub async fn sipp_at(ip: &str, target: SocketAddr, args: &[&str]) -> SippResult {
    let port = free_port().to_string();
    let mut all = vec![target.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    all.push("-p".into());
    all.push(port);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let child = sipp_cmd_at(ip, &refs).spawn().expect("sipp is installed");
    wait_sipp(child).await
}

/// Registers `ext` (secret `secret-EXT`) with its contact at 127.0.0.1:`port`.
pub async fn register_contact(sip: SocketAddr, ext: &str, port: u16) {
    let secret = format!("secret-{ext}");
    let port = port.to_string();
    let args = [
        "-sf",
        &scenario("register_callee.xml"),
        "-s",
        ext,
        "-ap",
        &secret,
        "-key",
        "cport",
        &port,
        "-key",
        "expires",
        "3600",
        "-m",
        "1",
    ];
    assert_ok(&sipp(sip, &args).await, 1, "register callee");
}
