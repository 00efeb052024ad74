//! The appliance: first run, sign-in, sessions, CSRF, permissions, tokens, bad input.

use crate::support::*;

#[tokio::test]
async fn healthz_answers() {
    let app = TestApp::spawn().await;
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
}
