//! The appliance: first run, sign-in, sessions, CSRF, tokens, API shape, bad input.

use std::time::Duration;

use crm::model::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn healthz_and_metrics_answer() {
    let app = TestApp::spawn().await;
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], crm::VERSION);
    let m = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(m.status(), 200);
    let text = m.text().await.unwrap();
    assert!(text.contains("crm_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/healthz\""), "{text}");
    assert!(text.contains("crm_db_read_pool_connections"), "{text}");
}

#[tokio::test]
async fn first_run_setup_creates_the_admin_once() {
    let app = TestApp::spawn_empty().await;
    let setup = app
        .running()
        .setup_path
        .clone()
        .expect("first run has a setup link");
    let c = app.client();
    // Without or with a wrong token there is nothing to see.
    assert_eq!(c.get(app.url("/setup")).send().await.unwrap().status(), 404);
    assert_eq!(
        c.get(app.url("/setup?token=nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let page = c.get(app.url(&setup)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csrf = csrf_from_html(&page.text().await.unwrap()).unwrap();
    let token = setup.split("token=").nth(1).unwrap().to_string();
    let form = |pw2: &str| {
        vec![
            ("_csrf", csrf.clone()),
            ("token", token.clone()),
            ("name", "Dilshod Karimov".to_string()),
            ("username", "owner".to_string()),
            ("password", "owner-pass-1".to_string()),
            ("password2", pw2.to_string()),
        ]
    };
    // Mismatched passwords: refused, nothing created.
    let r = c
        .post(app.url("/setup"))
        .form(&form("other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(app.running().ctx.accounts.user_count().await.unwrap(), 0);

    let r = c
        .post(app.url("/setup"))
        .form(&form("owner-pass-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    // Signed in straight away, as an admin.
    let home = c.get(app.url("/users")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("Dilshod Karimov"));
    let u = app
        .running()
        .ctx
        .accounts
        .user_by_username("owner")
        .await
        .unwrap();
    assert_eq!(u.role, Role::Admin);

    // The link is spent, for anyone.
    let again = app.client().get(app.url(&setup)).send().await.unwrap();
    assert_eq!(again.status(), 404);
    let again = c
        .post(app.url("/setup"))
        .form(&form("owner-pass-1"))
        .send()
        .await
        .unwrap();
    assert!(
        again.status() == 404 || again.status() == 403,
        "{}",
        again.status()
    );
    assert_eq!(app.running().ctx.accounts.user_count().await.unwrap(), 1);
}

#[tokio::test]
async fn login_success_failure_and_audit() {
    let app = TestApp::spawn().await;
    let c = app.client();
    let pre = app.login_csrf(&c).await;
    let bad = app.try_login(&c, &pre, "admin", "wrong-password").await;
    assert_eq!(bad.status(), 401);
    // No Accept-Language: the default UI language, Uzbek.
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("Login yoki parol notoʻgʻri"));
    assert_eq!(c.get(app.url("/")).send().await.unwrap().status(), 303);

    let ok = c
        .post(app.url("/login"))
        .form(&[
            ("username", "ADMIN"),
            ("password", ADMIN_PASSWORD),
            ("_csrf", &pre),
            ("next", "/users"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/users");
    let cookie = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("crm_session="))
        .expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: no Secure flag ({cookie})"
    );
    assert_eq!(c.get(app.url("/")).send().await.unwrap().status(), 200);

    // An open redirect through `next` is not followed.
    let s = app.login_admin().await;
    let r = s
        .client
        .get(s.url("/login?next=//evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");

    let audit = app
        .running()
        .ctx
        .accounts
        .login_audit(Some("admin".into()), false, 10, 0)
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|r| !r.success && r.reason == "bad_credentials" && r.ip == "127.0.0.1"));
    assert!(audit.iter().any(|r| r.success));
    // Admins browse it.
    let page = s.get("/audit/logins?failures=1").await;
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("wrong username or password"));

    // Logout ends the session server-side.
    let r = s.post_form("/logout", &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(s.get("/").await.status(), 303);
}

#[tokio::test]
async fn repeated_failures_lock_the_username() {
    let app = TestApp::spawn().await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let c = app.client();
    let pre = app.login_csrf(&c).await;
    let attempt = |pw: &'static str| {
        c.post(app.url("/login"))
            .form(&[("username", "oper"), ("password", pw), ("_csrf", &pre)])
            .send()
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong-pass").await.unwrap().status(), 401);
    }
    // Locked now: even the right password is refused, with a Retry-After.
    let locked = attempt("oper-pass-1").await.unwrap();
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    // Other users are unaffected.
    app.login_admin().await;
}

#[tokio::test]
async fn sessions_expire_when_idle_and_at_their_absolute_limit() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    assert_eq!(s.get("/").await.status(), 200);
    // Age the session in the real database file, as if 9 hours had passed.
    let db = rusqlite::Connection::open(app.data_dir().join("crm.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE sessions SET last_seen_at = last_seen_at - 9 * 3600",
        [],
    )
    .unwrap();
    let r = s.get("/").await;
    assert_eq!(r.status(), 303, "idle session must end");
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    let left: i64 = db
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the expired session is deleted");

    let s = app.login_admin().await;
    db.execute(
        "UPDATE sessions SET created_at = created_at - 8 * 24 * 3600",
        [],
    )
    .unwrap();
    assert_eq!(s.get("/").await.status(), 303, "absolute limit");
}

#[tokio::test]
async fn csrf_is_required_for_state_changes() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    let fields = [
        ("username", "newbie"),
        ("name", "New Bie"),
        ("role", "operator"),
        ("language", "ru"),
        ("password", "newbie-pass-1"),
    ];
    // No token.
    let r = s
        .client
        .post(s.url("/users"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Wrong token.
    let mut f = fields.to_vec();
    f.push(("_csrf", "forged"));
    let r = s
        .client
        .post(s.url("/users"))
        .form(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Right token from a foreign origin.
    let mut f = fields.to_vec();
    f.push(("_csrf", &s.csrf));
    let r = s
        .client
        .post(s.url("/users"))
        .header("origin", "http://evil.example")
        .form(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // JSON API through the session cookie needs the header too.
    let r = s
        .client
        .post(s.url("/api/v1/users"))
        .json(&json!({"username":"x1","display_name":"X","role":"master","password":"xxxxxxxx1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(app
        .running()
        .ctx
        .accounts
        .user_by_username("newbie")
        .await
        .is_err());
    assert!(app
        .running()
        .ctx
        .accounts
        .user_by_username("x1")
        .await
        .is_err());
    // Login without the pre-session cookie is refused too.
    let r = app
        .client()
        .post(app.url("/login"))
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("_csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // And with the token it works.
    let r = s.post_form("/users", &fields).await;
    assert_eq!(r.status(), 303);
    assert!(app
        .running()
        .ctx
        .accounts
        .user_by_username("newbie")
        .await
        .is_ok());
}

#[tokio::test]
async fn api_tokens_authenticate_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let token = app.api_token("oper").await;
    let c = reqwest::Client::new();
    let me = c
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let v: serde_json::Value = me.json().await.unwrap();
    assert_eq!(v["username"], "oper");
    assert_eq!(v["role"], "operator");
    // Token users get the same permission rules: operators cannot list users.
    let r = c
        .get(app.url("/api/v1/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "forbidden");
    // Tokens need no CSRF (browsers never send them on their own).
    let admin_token = app.api_token("admin").await;
    let r = c
        .post(app.url("/api/v1/users"))
        .bearer_auth(&admin_token)
        .json(&json!({"username":"m1","display_name":"Usta Bek","role":"master","password":"master-pass-1","language":"uz-Cyrl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(created["language"], "uz-Cyrl");
    assert!(created.get("password_hash").is_none());

    // Wrong token.
    let r = c
        .get(app.url("/api/v1/me"))
        .bearer_auth("crm_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Stored hashed, never in clear.
    let db = rusqlite::Connection::open(app.data_dir().join("crm.db")).unwrap();
    let stored: i64 = db
        .query_row(
            "SELECT count(*) FROM api_tokens WHERE instr(CAST(token_hash AS TEXT), ?1) > 0",
            [&token],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);

    // Revoked by its owner through the API.
    let list: serde_json::Value = c
        .get(app.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list[0]["id"].as_i64().unwrap();
    let r = c
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    let token = app.api_token("admin").await;
    let c = reqwest::Client::new();
    let users_before = app.running().ctx.accounts.list_users().await.unwrap().len();

    // Oversized body.
    let big = "x".repeat(300 * 1024);
    let r = c
        .post(app.url("/api/v1/users"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"username\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"]["message"].is_string());
    let r = s.post_form("/users", &[("name", &big)]).await;
    assert_eq!(r.status(), 413);

    // Malformed JSON, wrong types, unknown fields, wrong content type.
    for body in ["{", "[]", "{\"username\":1}", "{\"username\":\"abc\",\"display_name\":\"b\",\"role\":\"master\",\"password\":\"xxxxxxxx\",\"extra\":1}"] {
        let r = c
            .post(app.url("/api/v1/users"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "bad_request", "{body}");
    }
    // A role is a key (issue 19: custom roles): an unknown one is refused by name.
    let r = c
        .post(app.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"username": "abc", "display_name": "b", "role": "boss",
            "password": "xxxxxxxx"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"].as_str().unwrap().contains("boss"),
        "{e}"
    );
    let r = c
        .post(app.url("/api/v1/users"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Rule violations: 422 with a message.
    let r = c
        .post(app.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({"username":"ok-name","display_name":"N","role":"master","password":"short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Duplicate: 409.
    let r = c
        .post(app.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({"username":"Admin","display_name":"N","role":"master","password":"long-enough-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Malformed form: missing fields, bad choices.
    let r = s.post_form("/users", &[("username", "zz")]).await;
    assert_eq!(r.status(), 400);
    let r = s
        .post_form(
            "/users",
            &[
                ("username", "zz"),
                ("name", "Z"),
                ("role", "boss"),
                ("language", "en"),
                ("password", "zz-pass-123"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    // Non-numeric ids.
    assert_eq!(s.get("/users/abc").await.status(), 404);
    assert_eq!(s.get("/users/99999").await.status(), 404);

    // Unknown routes: HTML for pages, the JSON shape for the API.
    assert_eq!(s.get("/no/such/page").await.status(), 404);
    let r = c
        .get(app.url("/api/v1/nothing"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "not_found");
    // Wrong method on a known route.
    let r = c
        .put(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status() == 405 || r.status() == 404, "{}", r.status());

    assert_eq!(
        app.running().ctx.accounts.list_users().await.unwrap().len(),
        users_before,
        "nothing was created"
    );
}

#[tokio::test]
async fn assets_are_hashed_cached_typed_and_not_traversable() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    let html = s.get("/").await.text().await.unwrap();
    let css = html
        .split('"')
        .find(|p| p.starts_with("/assets/") && p.ends_with("/css/app.css"))
        .expect("hashed stylesheet URL")
        .to_string();
    let r = reqwest::get(app.url(&css)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    // A stale hash is served but not cached as immutable.
    let stale = reqwest::get(app.url("/assets/0000000000/css/app.css"))
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["cache-control"], "no-cache");
    // Traversal, raw and encoded: refused, nothing outside the embedded set is served.
    for path in [
        "/assets/x/..%2f..%2fCargo.toml",
        "/assets/x/%2e%2e/%2e%2e/etc/passwd",
        "/assets/x/..%5csrc%5cmain.rs",
    ] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{path}"
        );
    }
    let raw = raw_http(
        &app,
        "GET /assets/x/../../Cargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!raw.contains("[package]"), "{raw}");
    assert_eq!(
        reqwest::get(app.url("/assets/x/nope.css"))
            .await
            .unwrap()
            .status(),
        404
    );
}

async fn raw_http(app: &TestApp, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.running().http_addr)
        .await
        .unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn openapi_document_lists_exactly_the_api_routes() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = reqwest::get(app.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut routed: Vec<(String, String)> = crm::web::routes::specs()
        .into_iter()
        .filter(|s| s.path.starts_with("/api/v1/") && s.path != "/api/v1/openapi.json")
        .map(|s| (s.method.to_string(), s.path.to_string()))
        .collect();
    routed.sort();
    assert_eq!(documented, routed, "OpenAPI paths and API routes differ");
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn users_are_managed_in_the_web_ui() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    let r = s
        .post_form(
            "/users",
            &[
                ("username", "usta1"),
                ("name", "Usta Bir"),
                ("role", "master"),
                ("language", "uz"),
                ("password", "usta-pass-1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let id: i64 = loc
        .trim_start_matches("/users/")
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let m = app.login("usta1", "usta-pass-1").await;
    // Disabling ends their sessions at once.
    let r = s
        .post_form(
            &format!("/users/{id}"),
            &[("name", "Usta Bir"), ("role", "master"), ("language", "uz")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(m.get("/").await.status(), 303);
    let c = app.client();
    let pre = app.login_csrf(&c).await;
    let r = app.try_login(&c, &pre, "usta1", "usta-pass-1").await;
    assert_eq!(r.status(), 401, "disabled users cannot sign in");
    // The last admin cannot demote themselves.
    let me = app
        .running()
        .ctx
        .accounts
        .user_by_username("admin")
        .await
        .unwrap();
    let r = s
        .post_form(
            &format!("/users/{}", me.id),
            &[
                ("name", "A"),
                ("role", "operator"),
                ("language", "en"),
                ("active", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        app.running().ctx.accounts.user(me.id).await.unwrap().role,
        Role::Admin
    );
    // The activity log shows who did it.
    let log = s
        .get("/audit/activity?entity=user")
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("admin") && log.contains("update"), "{log}");
}

#[tokio::test]
async fn concurrent_writes_are_all_durable() {
    let app = TestApp::spawn().await;
    let token = app.api_token("admin").await;
    let c = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = c.clone();
        let url = app.url("/api/v1/users");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .bearer_auth(token)
                .json(&json!({"username": format!("u{i}"), "display_name": "U", "role": "master", "password": "password-123"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    let db = rusqlite::Connection::open(app.data_dir().join("crm.db")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM users WHERE username LIKE 'u%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 40);
    let _ = Method::GET;
}

#[tokio::test]
async fn many_failures_from_one_address_lock_it() {
    let app = TestApp::spawn().await;
    let c = app.client();
    let pre = app.login_csrf(&c).await;
    // Spread over many usernames (so no single username locks), all from 127.0.0.1.
    for i in 0..20 {
        let user = format!("guess{i}");
        let r = c
            .post(app.url("/login"))
            .form(&[
                ("username", user.as_str()),
                ("password", "nope-nope"),
                ("_csrf", &pre),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app.try_login(&c, &pre, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 429, "the address is locked out");
}

#[tokio::test]
async fn tls_serves_https_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = test_config(data.path());
    cfg.tls_cert = Some(cert_path);
    cfg.tls_key = Some(key_path);
    let app = TestApp::spawn_config(cfg, data).await;
    app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
    let port = app.running().http_addr.port();
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let page = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let pre = csrf_from_html(&page.text().await.unwrap()).unwrap();
    let r = c
        .post(format!("{base}/login"))
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("_csrf", &pre),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("crm_session="))
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    // Plain HTTP on the TLS port does not get a page.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}
