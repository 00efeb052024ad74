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
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
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
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": which("chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
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
            driver,
            _profile: profile,
        }
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
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
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

    // Sign out, then sign in through the form.
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
