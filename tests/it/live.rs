//! Live updates over a real WebSocket: authentication, audience, catch-up, slow clients.

use std::time::Duration;

use crm::events::{Audience, Event};
use crm::model::Role;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn login_cookie(app: &TestApp, user: &str, pw: &str) -> String {
    let c = app.client();
    let page = c.get(app.url("/login")).send().await.unwrap();
    let pre_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let pre = csrf_from_html(&page.text().await.unwrap()).unwrap();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/login"))
        .header("cookie", pre_cookie)
        .form(&[("username", user), ("password", pw), ("_csrf", &pre)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("crm_session="))
        .unwrap()
}

fn ws_url(app: &TestApp, query: &str) -> String {
    format!("ws://{}/ws{query}", app.running().http_addr)
}

pub async fn open(
    app: &TestApp,
    cookie: Option<&str>,
    origin: Option<&str>,
    query: &str,
) -> Result<Ws, u16> {
    let mut req = ws_url(app, query).into_client_request().unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// The next frame of the given type, within the timeout.
pub async fn next_of(ws: &mut Ws, kind: &str, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = next_any(ws, deadline - tokio::time::Instant::now()).await?;
        if v["type"] == kind {
            return Some(v);
        }
    }
}

/// The next text frame, parsed.
pub async fn next_any(ws: &mut Ws, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(t) = msg {
            return Some(serde_json::from_str(&t).unwrap());
        }
    }
}

fn origin(app: &TestApp) -> String {
    format!("http://{}", app.running().http_addr)
}

#[tokio::test]
async fn upgrade_needs_a_session_and_our_origin() {
    let app = TestApp::spawn().await;
    assert_eq!(open(&app, None, None, "").await.err(), Some(401));
    assert_eq!(
        open(&app, Some("crm_session=forged"), None, "").await.err(),
        Some(401)
    );
    let cookie = login_cookie(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        open(&app, Some(&cookie), Some("http://evil.example"), "")
            .await
            .err(),
        Some(403)
    );
    let mut ws = open(&app, Some(&cookie), Some(&origin(&app)), "")
        .await
        .unwrap();
    let hello = next_of(&mut ws, "hello", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(hello["seq"].is_u64());
    // API tokens work too (for integrations; no Origin).
    let token = app.api_token("admin").await;
    let mut req = ws_url(&app, "").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut t, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert!(next_of(&mut t, "hello", Duration::from_secs(5))
        .await
        .is_some());
}

#[tokio::test]
async fn events_reach_only_those_who_may_see_them_and_replay_after_reconnect() {
    let app = TestApp::spawn().await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let m1 = app.add_user("usta1", Role::Master, "usta-pass-1").await;
    app.add_user("usta2", Role::Master, "usta-pass-2").await;
    let o = origin(&app);
    let mut op = open(
        &app,
        Some(&login_cookie(&app, "oper", "oper-pass-1").await),
        Some(&o),
        "",
    )
    .await
    .unwrap();
    let mut w1 = open(
        &app,
        Some(&login_cookie(&app, "usta1", "usta-pass-1").await),
        Some(&o),
        "",
    )
    .await
    .unwrap();
    let c2 = login_cookie(&app, "usta2", "usta-pass-2").await;
    let mut w2 = open(&app, Some(&c2), Some(&o), "").await.unwrap();
    for ws in [&mut op, &mut w1, &mut w2] {
        next_of(ws, "hello", Duration::from_secs(5)).await.unwrap();
    }
    let bus = &app.running().ctx.events;
    bus.publish(Event::new(
        "order.updated",
        serde_json::json!({"id": 42, "status": "ready"}),
        Audience::Staff { masters: vec![m1] },
    ));
    let e = next_of(&mut op, "order.updated", Duration::from_secs(5))
        .await
        .expect("operator sees it");
    assert_eq!(e["data"]["id"], 42);
    assert!(
        next_of(&mut w1, "order.updated", Duration::from_secs(5))
            .await
            .is_some(),
        "assigned master sees it"
    );
    // The unrelated master: a later marker event arrives, the order event never did.
    bus.publish(Event::new(
        "notice",
        serde_json::json!({"text": "marker"}),
        Audience::Everyone,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, w2.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_ne!(v["type"], "order.updated", "another master's order leaked");
        if v["type"] == "notice" {
            break;
        }
    }

    // Operator drops; changes happen; reconnecting with its last seq replays them.
    let last = e["seq"].as_u64().unwrap();
    op.close(None).await.unwrap();
    drop(op);
    for i in 0..3 {
        bus.publish(Event::new(
            "order.updated",
            serde_json::json!({"id": 100 + i}),
            Audience::Staff { masters: vec![] },
        ));
    }
    let oc = login_cookie(&app, "oper", "oper-pass-1").await;
    let mut op = open(&app, Some(&oc), Some(&o), &format!("?last_seq={last}"))
        .await
        .unwrap();
    let hello = next_of(&mut op, "hello", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(hello["data"]["resync"], false);
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let e = next_of(&mut op, "order.updated", Duration::from_secs(5))
            .await
            .expect("replayed");
        assert!(e["seq"].as_u64().unwrap() > last);
        ids.push(e["data"]["id"].as_i64().unwrap());
    }
    assert_eq!(ids, vec![100, 101, 102], "in order, none missed");
    // The master was offline for none of it but may not see those either way.
    let mut w2b = open(&app, Some(&c2), Some(&o), &format!("?last_seq={last}"))
        .await
        .unwrap();
    let h = next_of(&mut w2b, "hello", Duration::from_secs(5))
        .await
        .unwrap();
    let replayed = h["data"]["replayed"].as_u64().unwrap();
    let mut kinds = Vec::new();
    for _ in 0..replayed {
        let m = w2b.next().await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        kinds.push(v["type"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains(&"notice".to_string()), "{kinds:?}");
    assert!(
        !kinds.contains(&"order.updated".to_string()),
        "replay leaked: {kinds:?}"
    );
    // A gap older than the replay buffer asks the page to refetch.
    for i in 0..(crm::web::hub::REPLAY + 5) {
        bus.publish(Event::new(
            "notice",
            serde_json::json!({"i": i}),
            Audience::Admins,
        ));
    }
    let resync = crate::support::eventually(Duration::from_secs(10), || async {
        let mut ws = open(&app, Some(&oc), Some(&o), "?last_seq=1").await.ok()?;
        let h = next_of(&mut ws, "hello", Duration::from_secs(2)).await?;
        (h["data"]["resync"] == true).then_some(())
    })
    .await;
    assert!(resync.is_some());
}

async fn presence_of(ws: &mut Ws, uid: i64) -> serde_json::Value {
    loop {
        let p = next_of(ws, "user.presence", Duration::from_secs(10))
            .await
            .expect("presence event");
        if p["data"]["user_id"] == uid {
            return p;
        }
    }
}

#[tokio::test]
async fn presence_counts_a_user_once_across_tabs() {
    let app = TestApp::spawn().await;
    let uid = app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let o = origin(&app);
    let admin = login_cookie(&app, "admin", ADMIN_PASSWORD).await;
    let mut watcher = open(&app, Some(&admin), Some(&o), "").await.unwrap();
    next_of(&mut watcher, "hello", Duration::from_secs(5))
        .await
        .unwrap();
    let oc = login_cookie(&app, "oper", "oper-pass-1").await;
    let tab1 = open(&app, Some(&oc), Some(&o), "").await.unwrap();
    let p = presence_of(&mut watcher, uid).await;
    assert_eq!(p["data"]["online"], true);
    let tab2 = open(&app, Some(&oc), Some(&o), "").await.unwrap();
    let online: serde_json::Value = reqwest::Client::new()
        .get(app.url("/api/v1/presence"))
        .bearer_auth(app.api_token("admin").await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = online["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.iter().filter(|&&i| i == uid).count(), 1);
    // Closing one tab keeps them online; closing the last makes them offline.
    let hub = app.running_hub();
    drop(tab1);
    eventually(Duration::from_secs(10), || async {
        (hub.stats().await.connections == 2).then_some(())
    })
    .await
    .expect("the closed tab leaves");
    assert!(
        hub.online().await.contains(&uid),
        "still online in the other tab"
    );
    drop(tab2);
    let off = presence_of(&mut watcher, uid).await;
    assert_eq!(
        off["data"]["online"], false,
        "several tabs count once: one change only"
    );
    // The users page shows the dot.
    let s = app.login_admin().await;
    let page = s.get("/users").await.text().await.unwrap();
    assert!(page.contains(&format!("data-presence-user=\"{uid}\"")));
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_without_hurting_others() {
    let app = TestApp::spawn().await;
    let o = origin(&app);
    let cookie = login_cookie(&app, "admin", ADMIN_PASSWORD).await;
    // The stuck client: a tiny receive buffer, and it never reads after the handshake.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(app.running().http_addr).await.unwrap();
    let mut req = ws_url(&app, "").into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", o.parse().unwrap());
    let (_stuck, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let mut good = open(&app, Some(&cookie), Some(&o), "").await.unwrap();
    next_of(&mut good, "hello", Duration::from_secs(5))
        .await
        .unwrap();

    let bus = app.running().ctx.events.clone();
    let hub = app.running_hub();
    let payload = "x".repeat(32 * 1024);
    let mut sent = 0u64;
    let mut received = 0u64;
    let start = std::time::Instant::now();
    while hub.stats().await.dropped_slow == 0 {
        assert!(
            sent < 4000 && start.elapsed() < Duration::from_secs(60),
            "stuck client never dropped"
        );
        for _ in 0..20 {
            bus.publish(Event::new(
                "notice",
                serde_json::json!({"n": sent, "pad": payload}),
                Audience::Everyone,
            ));
            sent += 1;
        }
        // The healthy client keeps up and receives every one.
        while received < sent {
            let e = next_of(&mut good, "notice", Duration::from_secs(10))
                .await
                .expect("healthy client still served");
            assert_eq!(e["data"]["n"].as_u64().unwrap(), received);
            received += 1;
        }
    }
    assert_eq!(
        hub.stats().await.connections,
        1,
        "only the healthy client remains"
    );
    good.send(Message::Ping(vec![1].into())).await.unwrap();
}

#[tokio::test]
async fn a_real_order_change_reaches_the_desk_and_its_master_only() {
    let app = TestApp::spawn().await;
    let (_admin, oper, usta1, _usta2, m1, _m2) = crate::core::shop(&app).await;
    let o = origin(&app);
    let mut desk = open(
        &app,
        Some(&login_cookie(&app, "oper", "oper-pass-1").await),
        Some(&o),
        "",
    )
    .await
    .unwrap();
    let mut w1 = open(
        &app,
        Some(&login_cookie(&app, "usta1", "usta-pass-1").await),
        Some(&o),
        "",
    )
    .await
    .unwrap();
    let mut w2 = open(
        &app,
        Some(&login_cookie(&app, "usta2", "usta-pass-2").await),
        Some(&o),
        "",
    )
    .await
    .unwrap();
    for ws in [&mut desk, &mut w1, &mut w2] {
        next_of(ws, "hello", Duration::from_secs(5)).await.unwrap();
    }
    let cust = crate::core::new_customer(&oper, "Olim", "90 321 00 11").await;
    let order = crate::core::new_order(&oper, cust, serde_json::json!({"master_id": m1})).await;
    let id = order["id"].as_i64().unwrap();
    let created = next_of(&mut desk, "order.created", Duration::from_secs(5))
        .await
        .expect("desk sees the new order");
    assert_eq!(created["data"]["id"], id);
    next_of(&mut w1, "order.created", Duration::from_secs(5))
        .await
        .expect("its master sees it");
    let (s, _) = usta1
        .post(
            &format!("/api/v1/orders/{id}/status"),
            serde_json::json!({"version": order["version"], "to": "diagnostics"}),
        )
        .await;
    assert_eq!(s, 200);
    let upd = next_of(&mut desk, "order.updated", Duration::from_secs(5))
        .await
        .expect("status change reaches the desk");
    assert_eq!(upd["data"]["status"], "diagnostics");
    // The other master saw none of it: a later broadcast arrives first.
    app.running().ctx.events.publish(Event::new(
        "notice",
        serde_json::json!({"text": "marker"}),
        Audience::Everyone,
    ));
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), w2.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert!(
            !v["type"].as_str().unwrap().starts_with("order."),
            "leaked to another master: {v}"
        );
        if v["type"] == "notice" {
            break;
        }
    }
}
