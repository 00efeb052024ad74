//! Issue 14, the outside review's findings: each test here fails without its fix.

use std::time::Duration;

use crm::model::Role;
use reqwest::StatusCode;
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

#[allow(dead_code)]
fn _uses(_: Role, _: StatusCode) {}
