//! Real-browser tests: headless Chromium driven over chromedriver (Debian packages
//! `chromium`, `chromium-driver`). Other areas reuse [`Browser`].

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::*;

/// A chromedriver process and one headless Chromium session; both end on drop/close.
pub struct Browser {
    pub client: Client,
    driver: Option<Child>,
    driver_url: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        Self::start_with(&[]).await
    }

    /// With fake microphone and camera, permission granted, and loopback ICE candidates
    /// allowed (the softphone's WebRTC on 127.0.0.1).
    pub async fn start_with_media() -> Browser {
        Self::start_with(&[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
        ])
        .await
    }

    pub async fn start_with(extra: &[&str]) -> Browser {
        // Two rustls crypto providers are linked; pick one for the WebDriver client.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(which("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium-driver)");
        let mut b = Self::session(format!("http://127.0.0.1:{port}"), extra).await;
        b.driver = Some(driver);
        b
    }

    /// Another, independent browser (own profile and cookies) on the same driver.
    pub async fn another(&self) -> Browser {
        Self::session(self.driver_url.clone(), &[]).await
    }

    async fn session(url: String, extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": which("chromium"),
                "args": args,
            }),
        );
        let client = eventually(Duration::from_secs(20), || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::rustls()
                    .ok()?
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await
        .expect("chromedriver answers");
        Browser {
            client,
            driver: None,
            driver_url: url,
            _profile: profile,
        }
    }

    /// Signs in through the login form.
    pub async fn sign_in(&self, app: &TestApp, user: &str, password: &str) {
        self.client.goto(&app.url("/login")).await.unwrap();
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("button[type=submit]").await;
        self.client
            .wait()
            .for_element(Locator::Css("#main-nav"))
            .await
            .unwrap();
    }

    /// Waits until the CSS selector matches an element whose text contains `text`.
    pub async fn wait_text(&self, css: &str, text: &str) -> bool {
        eventually(Duration::from_secs(10), || async {
            let el = self.client.find(Locator::Css(css)).await.ok()?;
            let t = el.text().await.ok()?;
            t.contains(text).then_some(())
        })
        .await
        .is_some()
    }

    /// The attribute `name` of the first element matching `css` (which must exist).
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .attr(name)
            .await
            .unwrap()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap();
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    /// Opens `path` and waits (20 s at most) until its live socket has user `uid` online.
    pub async fn goto_live(&self, app: &TestApp, path: &str, uid: i64) {
        self.client.goto(&app.url(path)).await.unwrap();
        let hub = app.running_hub();
        eventually(Duration::from_secs(20), || async {
            hub.online().await.contains(&uid).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{path}: the page's live socket connects"));
    }

    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        if let Some(d) = self.driver.take() {
            kill_group(d);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            kill_group(d);
        }
    }
}

/// Kills chromedriver and every browser process under it, even when a test failed
/// half-way. Only positive PIDs are signalled: procps-ng 4.0.2's `kill` misreads a
/// negative process-group id and signals every process.
fn kill_group(mut driver: Child) {
    let mut pids = descendants(driver.id());
    pids.reverse();
    let _ = driver.kill();
    let _ = driver.wait();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().filter(|&&p| p > 1).map(|p| p.to_string()))
            .stderr(Stdio::null())
            .status();
    }
}

/// Every process below `root`, parents before children, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let rest = &stat[stat.rfind(')').map(|i| i + 2).unwrap_or(0)..];
            if let Some(ppid) = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && child != root && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

fn which(bin: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = format!("{dir}/{bin}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    bin.to_string()
}

#[tokio::test]
async fn first_run_login_and_language_switch_in_chromium() {
    let app = TestApp::spawn_empty().await;
    let setup = app.running().setup_path.clone().unwrap();
    let b = Browser::start().await;
    b.client.goto(&app.url(&setup)).await.unwrap();
    b.fill("#name", "Shahzoda Yusupova").await;
    b.fill("#username", "owner").await;
    b.fill("#password", "owner-pass-42").await;
    b.fill("#password2", "owner-pass-42").await;
    b.click("button[type=submit]").await;
    // Setup signs the admin in and lands on the dashboard, in the browser's language
    // (Chromium asks for English).
    let ok = b.wait_text("#dashboard-title", "Dashboard").await;
    if !ok {
        let src = b.client.source().await.unwrap();
        let url = b.client.current_url().await.unwrap();
        panic!("dashboard after setup; at {url}:\n{src}");
    }

    // Sign out (in the menu under the user's name), then sign in through the form.
    b.click("#user-menu summary").await;
    b.click("form[action='/logout'] button").await;
    b.client
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    b.fill("#username", "owner").await;
    b.fill("#password", "owner-pass-42").await;
    b.click("button[type=submit]").await;
    assert!(b.wait_text("#dashboard-title", "Dashboard").await);
    assert!(b.wait_text(".topbar", "Shahzoda Yusupova").await);

    // Switch to Russian with the header's language select (submits on change).
    let select = b.client.find(Locator::Css("#lang-select")).await.unwrap();
    select.select_by_value("ru").await.unwrap();
    assert!(
        b.wait_text("#dashboard-title", "Сводка").await,
        "dashboard in Russian"
    );
    // Administration is grouped under the Settings menu.
    b.click("#settings-menu summary").await;
    assert!(b.wait_text("#main-nav", "Сотрудники").await);
    // Remembered on the account: a new sign-in stays Russian.
    let u = app
        .running()
        .ctx
        .accounts
        .user_by_username("owner")
        .await
        .unwrap();
    assert_eq!(u.language, crm::model::Language::Ru);
    // Uzbek Cyrillic too.
    let select = b.client.find(Locator::Css("#lang-select")).await.unwrap();
    select.select_by_value("uz-Cyrl").await.unwrap();
    assert!(b.wait_text("#dashboard-title", "Бош саҳифа").await);

    // Narrow phone screen: the menu collapses behind the toggle.
    b.client.set_window_size(390, 844).await.unwrap();
    let nav = b.client.find(Locator::Css("#main-nav")).await.unwrap();
    assert!(!nav.is_displayed().await.unwrap(), "menu hidden on a phone");
    b.click(".nav-toggle").await;
    assert!(
        nav.is_displayed().await.unwrap(),
        "menu opens with the toggle"
    );
    b.close().await;
}

#[tokio::test]
async fn a_change_in_one_browser_shows_in_another_without_reload() {
    let app = TestApp::spawn().await;
    app.add_user("oper", crm::model::Role::Operator, "oper-pass-1")
        .await;
    let admin = Browser::start().await;
    let desk = admin.another().await;
    admin.sign_in(&app, "admin", ADMIN_PASSWORD).await;
    desk.sign_in(&app, "oper", "oper-pass-1").await;
    // Both connect: the indicator turns on, presence counts two people.
    for b in [&admin, &desk] {
        let on = eventually(Duration::from_secs(10), || async {
            let el = b.client.find(Locator::Css("#conn-indicator")).await.ok()?;
            let class = el.attr("class").await.ok()??;
            class.contains("online").then_some(())
        })
        .await;
        assert!(on.is_some(), "live connection indicator");
    }
    assert!(
        desk.wait_text("#presence-count", "2").await,
        "two people online"
    );
    // Mark the operator's page so a reload would be noticed.
    desk.client
        .execute("window.__noReload = true;", vec![])
        .await
        .unwrap();
    // The admin broadcasts; the operator's dashboard shows it in place.
    admin
        .fill("#notices input[name=text]", "Usta Bek bugun 14:00 gacha")
        .await;
    admin.click("#notices button[type=submit]").await;
    assert!(
        desk.wait_text("#notice-list", "Usta Bek bugun 14:00 gacha")
            .await,
        "notice appears without reload"
    );
    let still: serde_json::Value = desk
        .client
        .execute("return window.__noReload === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        still,
        serde_json::Value::Bool(true),
        "the page was not reloaded"
    );
    desk.close().await;
    admin.close().await;
}

#[tokio::test]
async fn an_order_status_change_shows_on_another_screen_without_reload() {
    let app = TestApp::spawn().await;
    let (_admin, oper, ..) = crate::core::shop(&app).await;
    let cust = crate::core::new_customer(&oper, "Malika", "90 555 66 77").await;
    let order = crate::core::new_order(&oper, cust, serde_json::json!({})).await;
    let id = order["id"].as_i64().unwrap();
    let desk = Browser::start().await;
    let boss = desk.another().await;
    desk.sign_in(&app, "oper", "oper-pass-1").await;
    boss.sign_in(&app, "admin", ADMIN_PASSWORD).await;
    // The desk watches the order list; the boss opens the order.
    desk.client.goto(&app.url("/orders")).await.unwrap();
    assert!(desk.wait_text("#orders-region", "New").await);
    desk.client
        .execute("window.__noReload = true;", vec![])
        .await
        .unwrap();
    boss.client
        .goto(&app.url(&format!("/orders/{id}")))
        .await
        .unwrap();
    let select = boss
        .client
        .wait()
        .for_element(Locator::Css("#to"))
        .await
        .unwrap();
    select.select_by_value("diagnostics").await.unwrap();
    boss.click("#status-form button[type=submit]").await;
    assert!(
        desk.wait_text("#orders-region", "Diagnostics").await,
        "the list updated in place"
    );
    let still: serde_json::Value = desk
        .client
        .execute("return window.__noReload === true;", vec![])
        .await
        .unwrap();
    assert_eq!(still, serde_json::Value::Bool(true));
    // The print view of the same order carries its QR code.
    boss.client
        .goto(&app.url(&format!("/orders/{id}/receipt")))
        .await
        .unwrap();
    let qr = boss
        .client
        .wait()
        .for_element(Locator::Css("#order-qr svg"))
        .await;
    assert!(qr.is_ok(), "QR code on the receipt");
    boss.close().await;
    desk.close().await;
}
