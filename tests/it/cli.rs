//! The real `crm` binary: user and token commands, config, migrations, serve + logs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn crm(dir: &std::path::Path) -> Command {
    let mut c = Command::new(crm_bin());
    c.arg("--data-dir").arg(dir);
    // The machine's /etc/crm/crm.toml must not leak into tests; a cheap password hash
    // keeps the debug build fast.
    let cfg = dir.join("test.toml");
    std::fs::write(
        &cfg,
        "[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
    )
    .unwrap();
    c.arg("--config").arg(cfg);
    c.env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP");
    c
}

fn run_with_stdin(mut cmd: Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_add_with_password_stdin_then_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crm(dir.path());
    cmd.args([
        "user",
        "add",
        "Bobur",
        "--role",
        "operator",
        "--name",
        "Bobur Aliyev",
        "--password-stdin",
    ]);
    let out = run_with_stdin(cmd, "bobur-secret-9\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user bobur"));

    // Duplicate and bad role: clear errors, non-zero exit.
    let mut cmd = crm(dir.path());
    cmd.args([
        "user",
        "add",
        "bobur",
        "--role",
        "operator",
        "--password-stdin",
    ]);
    let out = run_with_stdin(cmd, "another-pass-1\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));
    let out = crm(dir.path())
        .args(["user", "add", "x2", "--role", "boss"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
    let mut cmd = crm(dir.path());
    cmd.args([
        "user",
        "add",
        "shorty",
        "--role",
        "master",
        "--password-stdin",
    ]);
    let out = run_with_stdin(cmd, "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));

    let list = crm(dir.path()).args(["user", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("bobur") && text.contains("operator") && text.contains("Bobur Aliyev"),
        "{text}"
    );
    assert!(!text.contains("shorty"));

    let token = crm(dir.path())
        .args(["token", "create", "bobur"])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    assert!(token.starts_with("crm_"));

    // The same data dir, served: the password and the token work.
    let cfg = test_config(dir.path());
    let app = TestApp::spawn_config(cfg, tempfile::tempdir().unwrap()).await;
    let s = app.login("bobur", "bobur-secret-9").await;
    assert_eq!(s.get("/profile").await.status(), 200);
    let me: serde_json::Value = reqwest::Client::new()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["display_name"], "Bobur Aliyev");
}

#[test]
fn passwd_and_disable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crm(dir.path());
    cmd.args(["user", "add", "ali", "--role", "master", "--password-stdin"]);
    assert!(run_with_stdin(cmd, "first-pass-1\n").status.success());
    let mut cmd = crm(dir.path());
    cmd.args(["user", "passwd", "ali", "--password-stdin"]);
    let out = run_with_stdin(cmd, "second-pass-2\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crm(dir.path())
        .args(["user", "disable", "ali"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(
        &crm(dir.path())
            .args(["user", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    let line = text.lines().find(|l| l.contains("ali")).unwrap();
    assert!(line.contains(" no "), "{line}");
    let out = crm(dir.path())
        .args(["user", "passwd", "nobody", "--password-stdin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn config_show_precedence_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm.toml");
    std::fs::write(
        &file,
        "http = \"127.0.0.1:1001\"\nsip = \"127.0.0.1:5999\"\nlog = \"debug\"\nmetrics_token = \"hunter2\"\n",
    )
    .unwrap();
    let out = Command::new(crm_bin())
        .args(["--config"])
        .arg(&file)
        .args(["config", "show"])
        .env("CRM_HTTP", "127.0.0.1:1002")
        .env("CRM_SIP", "off")
        .env_remove("CRM_DATA_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("http = \"127.0.0.1:1002\""),
        "env beats file: {text}"
    );
    assert!(text.contains("sip = \"off\""), "{text}");
    assert!(
        text.contains("log = \"debug\""),
        "file beats default: {text}"
    );
    assert!(!text.contains("hunter2"), "secrets are redacted: {text}");

    std::fs::write(&file, "[session]\nidle_minutes = 5\nidel = 3\n").unwrap();
    let out = Command::new(crm_bin())
        .arg("--config")
        .arg(&file)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("idel"), "the unknown key is named: {err}");
}

#[test]
fn migrate_applies_and_refuses_a_newer_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = crm(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated schema from version 0"));
    let out = crm(dir.path()).arg("migrate").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema is current"));
    let db = rusqlite::Connection::open(dir.path().join("crm.db")).unwrap();
    let tables: i64 = db
        .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('users','sessions','login_audit','api_tokens')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 4);
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    db.pragma_update(None, "user_version", 999).unwrap();
    drop(db);
    for args in [vec!["migrate"], vec!["user", "list"]] {
        let out = crm(dir.path()).args(&args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("newer crm") && err.contains("999"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn version_flag() {
    let out = Command::new(crm_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("crm {}", crm::VERSION)
    );
}

/// `crm serve` as a process: logs one line per request, never secrets; SIGTERM stops it
/// gracefully with the WAL checkpointed.
#[tokio::test]
async fn serve_logs_requests_without_secrets_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crm(dir.path());
    cmd.args([
        "user",
        "add",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
    ]);
    assert!(run_with_stdin(cmd, "very-secret-pw-1\n").status.success());
    let mut child = crm(dir.path())
        .args(["serve", "--http", "127.0.0.1:0", "--sip", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let line = rx
            .recv_timeout(deadline - Instant::now())
            .expect("server logs its address");
        log.push(line.clone());
        if let Some(i) = line.find("http=") {
            break line[i + 5..].split_whitespace().next().unwrap().to_string();
        }
    };
    let base = format!("http://{addr}");
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = c
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pre = csrf_from_html(&page).unwrap();
    let r = c
        .post(format!("{base}/login"))
        .form(&[
            ("username", "admin"),
            ("password", "very-secret-pw-1"),
            ("_csrf", &pre),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str()
                .unwrap()
                .strip_prefix("crm_session=")
                .map(|s| s.split(';').next().unwrap().to_string())
        })
        .unwrap();
    c.get(format!("{base}/?token=query-secret"))
        .send()
        .await
        .unwrap();

    // SIGTERM: graceful stop.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        log.push(line);
    }
    let all = log.join("\n");
    assert!(all.contains("method=POST path=/login status=303"), "{all}");
    assert!(all.contains("ms="), "{all}");
    for secret in [
        "very-secret-pw-1",
        session.as_str(),
        "query-secret",
        pre.as_str(),
    ] {
        assert!(
            !all.contains(secret),
            "a secret reached the log: {secret}\n{all}"
        );
    }
    assert!(all.contains("crm stopped"), "{all}");
    let wal = dir.path().join("crm.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL checkpointed and truncated on shutdown");
}

/// Every write the server acknowledged is on disk after `kill -9`.
#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crm(dir.path());
    cmd.args([
        "user",
        "add",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
    ]);
    assert!(run_with_stdin(cmd, "very-secret-pw-1\n").status.success());
    let token = String::from_utf8(
        crm(dir.path())
            .args(["token", "create", "admin"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let mut child = crm(dir.path())
        .args(["serve", "--http", "127.0.0.1:0", "--sip", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server logs its address");
        if let Some(i) = line.find("http=") {
            break line[i + 5..].split_whitespace().next().unwrap().to_string();
        }
    };
    // Concurrent writers; keep every name the server acknowledged.
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, token, addr) = (client.clone(), token.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("w{i}");
            let r = client
                .post(format!("http://{addr}/api/v1/users"))
                .bearer_auth(token)
                .json(&serde_json::json!({"username": name, "display_name": "W", "role": "master", "password": "password-123"}))
                .send()
                .await;
            matches!(r, Ok(r) if r.status() == 201).then_some(name)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        if let Some(n) = t.await.unwrap() {
            acked.push(n);
        }
    }
    assert!(!acked.is_empty());
    // No graceful anything: SIGKILL right after the last acknowledgement.
    child.kill().unwrap();
    child.wait().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("crm.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    for name in &acked {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM users WHERE username = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "acknowledged user {name} lost after kill -9");
    }
}
