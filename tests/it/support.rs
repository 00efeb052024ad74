//! The test harness: starts the real server in-process on 127.0.0.1:0 with a temp data dir
//! and a real SQLite file, and gives signed-in HTTP clients.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crm::config::Config;
use crm::domain::accounts::NewUser;
use crm::model::{Language, Role};
use crm::server::Running;

pub const ADMIN_PASSWORD: &str = "admin-pass-123";

pub struct TestApp {
    pub running: Option<Running>,
    pub base: String,
    pub dir: tempfile::TempDir,
}

/// A config for tests: loopback, temp data dir, SIP off, cheap argon2.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        sip: "off".into(),
        log: "warn".into(),
        ..Config::default()
    };
    c.login.argon2_memory_kib = 8 * 1024;
    c.login.argon2_iterations = 1;
    // Tests drive the API faster than any shop; the limits have their own tests.
    c.api_limits.per_token = 0;
    c.api_limits.per_address = 0;
    // Signalling tests see the parties' own SDP; tests/it/media.rs turns the relay on.
    c.media.relay = "off".into();
    c.media.ports = media_ports();
    c
}

/// A relay port range of its own for each server of the test process: servers running
/// side by side never hand out each other's ports, so no test's phones keep sending into
/// a port another test's call has just been given.
fn media_ports() -> String {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 80;
    let lo = 20_000 + k * 250;
    format!("{lo}-{}", lo + 249)
}

impl TestApp {
    /// A fresh server with no users (first-run state).
    pub async fn spawn_empty() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        Self::spawn_config(cfg, dir).await
    }

    pub async fn spawn_config(cfg: Config, dir: tempfile::TempDir) -> TestApp {
        let running = crm::server::start(cfg).await.expect("server starts");
        let base = format!("http://{}", running.http_addr);
        TestApp {
            running: Some(running),
            base,
            dir,
        }
    }

    /// A fresh server with SIP on 127.0.0.1 (a free port, UDP and TCP) and an admin.
    pub async fn spawn_with_sip() -> TestApp {
        let app = Self::spawn_with(|c| c.sip = "127.0.0.1:0".into()).await;
        app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
        app
    }

    /// The SIP address of a server started with [`TestApp::spawn_with_sip`].
    pub fn sip_addr(&self) -> std::net::SocketAddr {
        self.running().sip_addr.expect("SIP is on")
    }

    /// Stops the server and starts it again on the same data directory (new ports).
    pub async fn restart(&mut self, tweak: impl FnOnce(&mut Config)) {
        let mut cfg = test_config(self.dir.path());
        tweak(&mut cfg);
        self.stop().await;
        let running = crm::server::start(cfg).await.expect("server restarts");
        self.base = format!("http://{}", running.http_addr);
        self.running = Some(running);
    }

    /// A fresh server with an admin `admin` / ADMIN_PASSWORD.
    pub async fn spawn() -> TestApp {
        let app = Self::spawn_empty().await;
        app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
        app
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("server running")
    }

    pub fn running_hub(&self) -> crm::web::hub::Hub {
        self.running().hub.clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn add_user(&self, username: &str, role: Role, password: &str) -> i64 {
        self.running()
            .ctx
            .accounts
            .create_user(
                None,
                NewUser {
                    username: username.into(),
                    display_name: format!("{username} name"),
                    role,
                    language: Language::En,
                    password: password.into(),
                },
                false,
            )
            .await
            .expect("user created")
    }

    /// A client with a cookie jar that does not follow redirects.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The sign-in form's pre-session CSRF token, for `client` (which keeps the cookie).
    pub async fn login_csrf(&self, client: &reqwest::Client) -> String {
        let page = client.get(self.url("/login")).send().await.unwrap();
        csrf_from_html(&page.text().await.unwrap()).expect("login form has a CSRF field")
    }

    /// One sign-in attempt through the form, as `client`, with its pre-session token.
    pub async fn try_login(
        &self,
        client: &reqwest::Client,
        pre: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        client
            .post(self.url("/login"))
            .form(&[
                ("username", username),
                ("password", password),
                ("_csrf", pre),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Signs in through the login form; returns the client and its CSRF token.
    pub async fn login(&self, username: &str, password: &str) -> Session {
        let client = self.client();
        let page = client.get(self.url("/login")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let pre = csrf_from_html(&page.text().await.unwrap()).expect("login form has a CSRF field");
        let resp = client
            .post(self.url("/login"))
            .form(&[
                ("username", username),
                ("password", password),
                ("_csrf", &pre),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "login as {username} should succeed");
        let home = client.get(self.url("/")).send().await.unwrap();
        assert_eq!(home.status(), 200);
        let csrf = csrf_from_html(&home.text().await.unwrap()).expect("shell has a CSRF token");
        Session {
            client,
            csrf,
            base: self.base.clone(),
        }
    }

    pub async fn login_admin(&self) -> Session {
        self.login("admin", ADMIN_PASSWORD).await
    }

    pub async fn api_token(&self, username: &str) -> String {
        let acc = &self.running().ctx.accounts;
        let u = acc.user_by_username(username).await.unwrap();
        acc.create_token(None, u.id, "test").await.unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    /// Writes these settings straight to the database, then wakes the notifier (it reads
    /// its settings each round, and would otherwise sleep out its poll).
    pub async fn set_settings<V: AsRef<str>>(&self, pairs: &[(&str, V)]) {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_ref().to_string()))
            .collect();
        self.running()
            .ctx
            .db
            .write(move |c| {
                for (k, v) in &pairs {
                    crm::db::settings::set(c, k, v, 0)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        self.running().ctx.notifications.wake();
    }

    /// E-mail out through a plain SMTP server on 127.0.0.1:`port`, from the shop's address.
    pub async fn plain_smtp(&self, port: u16) {
        self.set_settings(&[
            ("smtp.host", "127.0.0.1"),
            ("smtp.port", &port.to_string()),
            ("smtp.security", "plain"),
            ("smtp.from", "shop@example.uz"),
        ])
        .await;
    }
}

/// A signed-in browser-like client.
pub struct Session {
    pub client: reqwest::Client,
    pub csrf: String,
    pub base: String,
}

impl Session {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Posts a form with the session's CSRF token added.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut f: Vec<(&str, &str)> = fields.to_vec();
        f.push(("_csrf", &self.csrf));
        self.client
            .post(self.url(path))
            .form(&f)
            .send()
            .await
            .unwrap()
    }

    /// Sends JSON with the CSRF header (as the page scripts do).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .header("x-csrf-token", &self.csrf)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// The value of the first `_csrf` hidden field or `data-csrf` attribute in a page.
pub fn csrf_from_html(html: &str) -> Option<String> {
    for marker in ["name=\"_csrf\" value=\"", "data-csrf=\""] {
        if let Some(i) = html.find(marker) {
            let rest = &html[i + marker.len()..];
            let v = &rest[..rest.find('"')?];
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Polls `f` until it returns Some or the timeout passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Path of the built `crm` binary (cargo builds it for integration tests).
pub fn crm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crm"))
}

/// Branch A (the shop's first) and a new branch B made from `branch_b` (its JSON: name
/// and any other fields), and users of them, each `(username, role, in_b)` with the
/// password `branch-pass-1`: the fixture of the branch tests (roles, branches).
pub async fn two_branches(
    admin: &crate::core::Api,
    branch_b: serde_json::Value,
    users: &[(&str, &str, bool)],
) -> (i64, i64) {
    let (s, branches) = admin.get("/api/v1/branches").await;
    assert_eq!(s, 200, "{branches}");
    let a = branches[0]["id"].as_i64().unwrap();
    let (s, v) = admin.post("/api/v1/branches", branch_b).await;
    assert_eq!(s, 201, "{v}");
    let b = v["id"].as_i64().unwrap();
    for (user, role, in_b) in users {
        let branch = if *in_b { b } else { a };
        let (s, v) = admin
            .post(
                "/api/v1/users",
                serde_json::json!({"username": user, "display_name": user, "role": role,
                    "branch_ids": [branch], "password": "branch-pass-1"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["branch_ids"], serde_json::json!([branch]));
    }
    (a, b)
}
