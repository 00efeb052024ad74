//! The CLI and the running server agree: `crm` commands run as child processes on the
//! data directory of a running server, and the server applies their changes within a
//! second (the change journal and its watcher, `domain::changes`). Phones register with
//! SIPp.

use std::time::{Duration, Instant};

use crm::model::Role;
use crm::sip::{Directory, Entry};

use crate::sipp::*;
use crate::support::*;

/// Within this long of the command's exit the server must have applied it.
const SECOND: Duration = Duration::from_secs(1);

/// Runs the real `crm` binary on the app's data directory, with `stdin` as its input.
pub(crate) async fn crm(app: &TestApp, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let dir = app.data_dir();
    let cfg = dir.join("cli.toml");
    std::fs::write(
        &cfg,
        "[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(crm_bin())
        .arg("--data-dir")
        .arg(&dir)
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("crm finishes")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "crm {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Polls `ok` until true; panics unless that happened within a second.
async fn within_a_second(what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    let r = eventually(Duration::from_secs(5), || {
        let v = ok();
        async move { v.then_some(()) }
    })
    .await;
    let took = t0.elapsed();
    assert!(
        r.is_some() && took <= SECOND,
        "{what}: not applied after {took:?}"
    );
    took
}

/// One REGISTER with digest as `ext`/`secret` (expires 3600).
async fn register(app: &TestApp, ext: &str, secret: &str) -> SippResult {
    let csv = app
        .data_dir()
        .join(format!("reg-{ext}-{}.csv", secret.len()));
    std::fs::write(&csv, format!("SEQUENTIAL\n{ext};{secret};\n")).unwrap();
    sipp(
        app.sip_addr(),
        &[
            "-sf",
            &scenario("register_auth.xml"),
            "-inf",
            csv.to_str().unwrap(),
            "-m",
            "1",
        ],
    )
    .await
}

fn secret_of(app: &TestApp, ext: &str) -> Option<String> {
    match app.running().ctx.telephony.directory().lookup(ext) {
        Some(Entry::Extension { secret, .. }) => Some(secret.to_string()),
        _ => None,
    }
}

fn registered(app: &TestApp, ext: &str) -> bool {
    app.running()
        .sip
        .as_ref()
        .unwrap()
        .registrations()
        .iter()
        .any(|r| r.extension == ext)
}

#[tokio::test]
async fn extensions_changed_with_the_cli_take_effect_in_the_running_server() {
    let app = TestApp::spawn_with_sip().await;

    // Added: the phone registers with the printed secret.
    let out = crm(
        &app,
        &["extension", "add", "301", "--name", "Qabulxona"],
        "",
    )
    .await;
    let secret = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("printed secret: {out}"))
        .to_string();
    let took = within_a_second("extension add", || secret_of(&app, "301").is_some()).await;
    eprintln!("extension add applied after {took:?}");
    assert_ok(&register(&app, "301", &secret).await, 1, "register 301");
    assert!(registered(&app, "301"));

    // A new secret: the old one is refused, the new one works.
    crm(
        &app,
        &["extension", "passwd", "301", "--password-stdin"],
        "yangi-sir-301\n",
    )
    .await;
    within_a_second("extension passwd", || {
        secret_of(&app, "301").as_deref() == Some("yangi-sir-301")
    })
    .await;
    let old = register(&app, "301", &secret).await;
    assert!(old.ok == 0, "the old secret is refused:\n{}", old.out);
    assert_ok(
        &register(&app, "301", "yangi-sir-301").await,
        1,
        "new secret",
    );

    // Imported: registers.
    let csv = app.data_dir().join("phones.csv");
    std::fs::write(&csv, "302;secret-302;\n303;secret-303;\n").unwrap();
    crm(&app, &["extension", "import", csv.to_str().unwrap()], "").await;
    within_a_second("extension import", || secret_of(&app, "303").is_some()).await;
    assert_ok(
        &register(&app, "302", "secret-302").await,
        1,
        "register 302",
    );

    // Removed: unregistered at once and refused from then on; others keep theirs.
    crm(&app, &["extension", "remove", "301"], "").await;
    within_a_second("extension remove", || !registered(&app, "301")).await;
    assert!(secret_of(&app, "301").is_none());
    assert!(registered(&app, "302"), "other phones stay registered");
    let gone = register(&app, "301", "yangi-sir-301").await;
    assert!(
        gone.ok == 0,
        "a removed extension is refused:\n{}",
        gone.out
    );
    assert!(!registered(&app, "301"));
}

/// Waits for the internal `user.access_changed` event of `user`.
async fn access_changed(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<crm::events::Event>>,
    user: i64,
) -> Duration {
    let t0 = Instant::now();
    let found = tokio::time::timeout(SECOND, async {
        loop {
            match rx.recv().await {
                Ok(e) if e.kind == "user.access_changed" && e.data["user_id"] == user => {
                    assert!(
                        matches!(&e.audience, crm::events::Audience::Users(u) if u.is_empty()),
                        "internal: no screen receives it"
                    );
                    return;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus: {e}"),
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "user.access_changed for {user} within a second"
    );
    t0.elapsed()
}

#[tokio::test]
async fn users_and_tokens_changed_with_the_cli_take_effect_in_the_running_server() {
    let app = TestApp::spawn().await;
    let id = app.add_user("aziza", Role::Operator, "aziza-pass-1").await;
    let other = app.add_user("bobur", Role::Operator, "bobur-pass-1").await;
    let token = app.api_token("aziza").await;
    let api = |t: String| {
        let url = app.url("/api/v1/me");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(api(token.clone()).await, 200);
    let mut rx = app.running().ctx.events.subscribe();

    // A revoked token is refused on its next request.
    let list = crm(&app, &["token", "list", "aziza"], "").await;
    let token_id = list
        .lines()
        .find(|l| l.contains("active"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("token list: {list}"))
        .to_string();
    crm(&app, &["token", "revoke", &token_id], "").await;
    access_changed(&mut rx, id).await;
    assert_eq!(api(token).await, 401);

    // A new password ends the sessions; the new one signs in.
    let s = app.login("aziza", "aziza-pass-1").await;
    let me = |s: &Session| {
        let r = s.client.get(s.url("/api/v1/me")).send();
        async move { r.await.unwrap().status() }
    };
    assert_eq!(me(&s).await, 200);
    let keeps = app.login("bobur", "bobur-pass-1").await;
    crm(
        &app,
        &["user", "passwd", "aziza", "--password-stdin"],
        "yangi-parol-2\n",
    )
    .await;
    access_changed(&mut rx, id).await;
    assert_eq!(me(&s).await, 401, "the old session is gone");
    let s = app.login("aziza", "yangi-parol-2").await;
    assert_eq!(me(&s).await, 200);

    // Disabled: the next request of the session is refused (401 on the API, the sign-in
    // page for a page), and the hub is told.
    crm(&app, &["user", "disable", "aziza"], "").await;
    let took = access_changed(&mut rx, id).await;
    eprintln!("user disable announced after {took:?}");
    assert_eq!(me(&s).await, 401);
    let page = s.client.get(s.url("/")).send().await.unwrap();
    assert!(page.status().is_redirection(), "{}", page.status());
    assert!(page.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    // Nobody else was touched.
    assert_eq!(me(&keeps).await, 200);
    assert!(
        !std::iter::from_fn(|| rx.try_recv().ok())
            .any(|e| e.kind == "user.access_changed" && e.data["user_id"] == other),
        "no event for another user"
    );
}
