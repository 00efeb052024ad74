//! Issue 18, part three: SMS through the Eskiz and Playmobile stand-ins (delivery reports,
//! expired tokens, the bot invitation), broadcasts through Telegram, SMS and a real SMTP
//! server honouring opt-out, `/stop`, the STOP keyword and the e-mail link; promotions
//! (limits, dates, two desks at once, bad input); archived orders.

use std::time::{Duration, Instant};

use crm::model::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::core::{new_order, Api};
use crate::notify_peers::*;
use crate::promos_peers::*;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

async fn sql<T: Send + 'static>(
    app: &TestApp,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> T {
    app.running()
        .ctx
        .db
        .write(move |c| Ok(f(c)?))
        .await
        .unwrap()
}

/// Sets the gateway up from the admin page, reports to this server.
async fn use_gateway(app: &TestApp, gw: &SmsStandIn, provider: &str, per_second: &str) {
    let admin = app.login_admin().await;
    let (login, password) = match provider {
        "eskiz" => (ESKIZ_EMAIL, ESKIZ_PASSWORD),
        _ => (PM_LOGIN, PM_PASSWORD),
    };
    let r = admin
        .post_form(
            "/settings/notifications/sms",
            &[
                ("provider", provider),
                ("url", &gw.url),
                ("login", login),
                ("password", password),
                ("sender", "4546"),
                ("public_url", &app.base),
                ("per_second", per_second),
                ("invite", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(!page.contains(password), "the password is never shown");
}

async fn hook_key(app: &TestApp) -> String {
    app.running()
        .ctx
        .notifications
        .settings()
        .await
        .unwrap()
        .sms
        .hook_key
}

async fn customer(api: &Api, name: &str, phone: &str, email: &str, opt_in: bool) -> i64 {
    let (s, v) = api
        .post(
            "/api/v1/customers",
            json!({"name": name, "phones": [phone], "email": email, "language": "en",
                   "marketing_opt_in": opt_in}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

async fn link_chat(app: &TestApp, chat: i64, customer: i64) {
    sql(app, move |c| {
        c.execute(
            "INSERT INTO telegram_chats (chat_id, language, linked_at, customer_id) VALUES (?1, 'en', 0, ?2)",
            rusqlite::params![chat, customer],
        )
    })
    .await;
}

async fn opted_in(app: &TestApp, id: i64) -> bool {
    sql(app, move |c| {
        c.query_row(
            "SELECT marketing_opt_in FROM customers WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
    })
    .await
}

async fn segment(api: &Api, name: &str, filter: Value) -> i64 {
    let (s, v) = api
        .post("/api/v1/segments", json!({"name": name, "filter": filter}))
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

async fn results(api: &Api, id: i64) -> Value {
    let (s, v) = api.get(&format!("/api/v1/broadcasts/{id}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn promotion(api: &Api, code: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"code": code, "name": "Bahor chegirmasi", "kind": "percent", "value": 10,
        "applies_to": "both", "starts_on": "2020-01-01", "ends_on": "2099-12-31"});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    api.post("/api/v1/promotions", body).await
}

#[tokio::test]
async fn broadcast_goes_by_telegram_sms_and_email_and_honours_opt_out_and_stop() {
    let bot = BotStandIn::start().await;
    let gw = SmsStandIn::start().await;
    let sink = SmtpSink::start(
        free_port(),
        SmtpOptions {
            mode: "plain",
            certs: None,
            auth: None,
        },
    );
    let app = crate::notify::telegram_app(&bot).await;
    app.set_settings(FAST).await;
    app.plain_smtp(sink.port).await;
    use_gateway(&app, &gw, "eskiz", "50").await;
    let admin = Api::of(&app, "admin").await;

    // Telegram linked; SMS only; e-mail only on the second broadcast; opted out; /stop.
    let tg = customer(&admin, "Aziza Karimova", "+998 90 111 22 33", "", true).await;
    let sms = customer(
        &admin,
        "Bobur Aliyev",
        "90 222 33 44",
        "bobur@example.uz",
        true,
    )
    .await;
    let out = customer(
        &admin,
        "Dilnoza Yusupova",
        "90 333 44 55",
        "dilnoza@example.uz",
        false,
    )
    .await;
    let stopper = customer(&admin, "Jasur Rahimov", "90 444 55 66", "", true).await;
    link_chat(&app, 7001, tg).await;
    link_chat(&app, 7004, stopper).await;

    // /stop in the bot takes the customer off marketing, with its answer.
    bot.user_says(7004, "en", "/stop");
    eventually(WAIT, || async {
        (!opted_in(&app, stopper).await).then_some(())
    })
    .await
    .expect("/stop takes the customer off marketing");
    eventually(WAIT, || async {
        bot.delivered_to(7004)
            .iter()
            .any(|t| t.contains("not get offers"))
            .then_some(())
    })
    .await
    .expect("the bot answers /stop");

    let (s, p) = promotion(&admin, "BAHOR10", json!({})).await;
    assert_eq!(s, 201, "{p}");
    let seg = segment(&admin, "Everyone", json!({})).await;
    let (s, b) = admin
        .post(
            "/api/v1/broadcasts",
            json!({"name": "Spring", "segment_id": seg, "promotion_id": p["id"],
                   "body": "Hello {name}! Code {code}: {discount} off until {ends_on}."}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let bid = b["id"].as_i64().unwrap();
    assert_eq!(b["queued"], 2, "{b}");

    // Telegram for the linked chat, SMS for the other; nothing for the opted-out ones.
    eventually(WAIT, || async {
        bot.delivered_to(7001)
            .iter()
            .find(|t| t.contains("Code BAHOR10"))
            .cloned()
    })
    .await
    .map(|t| {
        assert!(
            t.contains("Hello Aziza Karimova") && t.contains("10%") && t.contains("/stop"),
            "{t}"
        )
    })
    .expect("the linked customer hears by Telegram");
    let first = eventually(WAIT, || async { gw.to("998902223344").into_iter().next() })
        .await
        .expect("the other customer hears by SMS");
    assert!(first.text.contains("Code BAHOR10"), "{}", first.text);
    assert!(first.text.contains("STOP"), "{}", first.text);
    assert!(
        first.text.contains(&format!("https://t.me/{BOT_USERNAME}")),
        "the first SMS invites to the bot: {}",
        first.text
    );
    let cb = first.callback.clone().expect("a report URL is given");
    assert!(
        cb.starts_with(&format!("{}/hooks/sms/eskiz/report?key=", app.base)),
        "{cb}"
    );
    assert!(gw.to("998903334455").is_empty() && gw.to("998904445566").is_empty());
    assert!(!opted_in(&app, out).await, "never opted in, never messaged");
    assert!(bot
        .delivered_to(7004)
        .iter()
        .all(|t| !t.contains("BAHOR10")));

    // The delivery report updates the message: delivered, its parts and cost.
    let client = reqwest::Client::new();
    let r = client
        .post(&cb)
        .form(&[
            ("request_id", first.id.as_str()),
            ("message_id", "1"),
            ("status", "DELIVRD"),
            ("sms_count", "1"),
            ("price", "50"),
            ("status_date", "2026-12-02 10:00:00"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A wrong key changes nothing.
    let r = client
        .post(format!("{}/hooks/sms/eskiz/report?key=wrong", app.base))
        .json(&json!({"request_id": first.id, "status": "UNDELIV"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v = eventually(WAIT, || async {
        let v = results(&admin, bid).await;
        (v["results"]["sent"] == 2 && v["results"]["delivered"] == 1).then_some(v)
    })
    .await
    .expect("results count the sends and the report");
    assert_eq!(v["results"]["failed"], 0, "{v}");
    assert_eq!(v["results"]["cost"], 50, "{v}");

    // An order that uses the code after the broadcast counts as redeemed.
    let o = new_order(&admin, sms, json!({"estimate": 200000})).await;
    let (s, a) = admin
        .post(
            &format!("/api/v1/orders/{}/promotion", o["id"]),
            json!({"code": "bahor10"}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(results(&admin, bid).await["results"]["redeemed"], 1);

    // A second broadcast by Telegram and e-mail only: the SMS customer gets an e-mail with
    // a signed unsubscribe link, which works once and not when tampered with.
    let (s, b2) = admin
        .post(
            "/api/v1/broadcasts",
            json!({"name": "Reminder", "segment_id": seg, "channels": ["email", "telegram"],
                   "body": "Dear {name}, your warranty check is due."}),
        )
        .await;
    assert_eq!(s, 201, "{b2}");
    assert_eq!(b2["queued"], 2, "{b2}");
    let mail = eventually(WAIT, || async {
        sink.mails()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t == "bobur@example.uz"))
    })
    .await
    .expect("the e-mail arrives over real SMTP");
    // The body may come quoted-printable: soft line breaks and "=3D" for "=".
    let body = mail
        .data
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(body.contains("Dear Bobur Aliyev"), "{body}");
    let start = body.find("/unsubscribe?c=").expect("an unsubscribe link");
    let link: String = body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let (c, sig) = {
        let q = link.split_once('?').unwrap().1;
        let mut c = "";
        let mut s = "";
        for kv in q.split('&') {
            match kv.split_once('=') {
                Some(("c", v)) => c = v,
                Some(("s", v)) => s = v,
                _ => {}
            }
        }
        (c.to_string(), s.to_string())
    };
    assert_eq!(c, sms.to_string());
    let page = client
        .get(format!("{}{link}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        opted_in(&app, sms).await,
        "opening the link alone changes nothing"
    );
    let bad = client
        .post(format!("{}/unsubscribe", app.base))
        .form(&[("c", c.as_str()), ("s", &sig.replace(&sig[..2], "00"))])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    assert!(opted_in(&app, sms).await);
    let ok = client
        .post(format!("{}/unsubscribe", app.base))
        .form(&[("c", c.as_str()), ("s", sig.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(!opted_in(&app, sms).await, "the signed link unsubscribes");
    let (s, b3) = admin
        .post(
            "/api/v1/broadcasts",
            json!({"name": "Again", "segment_id": seg, "body": "Hi {name}"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(b3["queued"], 1, "only the Telegram customer is left: {b3}");
    sink.stop();
    bot.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn sms_stop_keyword_expired_token_refused_numbers_and_customer_status_by_sms() {
    let gw = SmsStandIn::start().await;
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    use_gateway(&app, &gw, "eskiz", "50").await;
    let admin = Api::of(&app, "admin").await;
    let c = customer(&admin, "Малика Турсунова", "+998 91 555 66 77", "", true).await;

    // A status change of an order reaches a customer without Telegram by SMS (Cyrillic).
    let o = new_order(&admin, c, json!({})).await;
    let id = o["id"].as_i64().unwrap();
    let (s, v) = admin
        .post(
            &format!("/api/v1/orders/{id}/status"),
            json!({"version": o["version"], "to": "diagnostics"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let m = eventually(WAIT, || async { gw.to("998915556677").into_iter().next() })
        .await
        .expect("the status change goes by SMS");
    assert!(m.text.contains(o["number"].as_str().unwrap()), "{}", m.text);
    assert_eq!(gw.logins(), 1);

    // The token expires: one new login, the message still goes, once.
    gw.expire_token();
    let r = app
        .login_admin()
        .await
        .post_form(
            "/settings/notifications/sms/test",
            &[("to", "91 555 66 77")],
        )
        .await;
    assert_eq!(r.status(), 200);
    eventually(WAIT, || async {
        (gw.to("998915556677").len() == 2).then_some(())
    })
    .await
    .expect("sent after a fresh login");
    assert_eq!(gw.logins(), 2);
    let invites = gw
        .to("998915556677")
        .iter()
        .filter(|m| m.text.contains("t.me/"))
        .count();
    assert!(invites <= 1, "only the first SMS may carry the invitation");

    // A number the gateway refuses stops (failed), with the gateway's answer kept and no
    // secret in it.
    let other = customer(&admin, "Refused", "+998 93 000 00 01", "", true).await;
    gw.refuse("998930000001");
    let o2 = new_order(&admin, other, json!({})).await;
    admin
        .post(
            &format!("/api/v1/orders/{}/status", o2["id"]),
            json!({"version": o2["version"], "to": "diagnostics"}),
        )
        .await;
    let (_, rows) = eventually(WAIT, || async {
        let (s, v) = admin.get("/api/v1/notifications/outbox?state=failed").await;
        (s == 200
            && v.as_array()
                .is_some_and(|a| a.iter().any(|r| r["recipient"] == "+998930000001")))
        .then_some((s, v))
    })
    .await
    .expect("a refused number fails for good");
    let err = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["recipient"] == "+998930000001")
        .unwrap()["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("Eskiz 400"), "{err}");
    assert!(
        !err.contains(ESKIZ_PASSWORD) && !err.contains("eyJ.token"),
        "{err}"
    );

    // The STOP keyword by SMS reply, in Cyrillic, takes the sender off marketing; a wrong
    // key or a message that is not a reply changes nothing.
    let key = hook_key(&app).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/hooks/sms/eskiz/incoming?key=nope", app.base))
        .json(&json!({"from": "998915556677", "text": "СТОП"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(format!("{}/hooks/sms/eskiz/incoming?key={key}", app.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(opted_in(&app, c).await);
    let r = client
        .post(format!("{}/hooks/sms/eskiz/incoming?key={key}", app.base))
        .json(&json!({"from": "998915556677", "text": "Rahmat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(opted_in(&app, c).await, "a thank-you is not a stop");
    let r = client
        .post(format!("{}/hooks/sms/eskiz/incoming?key={key}", app.base))
        .json(&json!({"from": "998915556677", "text": " стоп "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!opted_in(&app, c).await, "СТОП unsubscribes");
    // An unknown gateway name is not a hook.
    let r = client
        .post(format!("{}/hooks/sms/nope/report?key={key}", app.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn playmobile_sends_json_with_basic_auth_and_takes_batched_delivery_reports() {
    let gw = SmsStandIn::start().await;
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    use_gateway(&app, &gw, "playmobile", "50").await;
    let admin = Api::of(&app, "admin").await;
    let a = customer(&admin, "Odil", "90 700 00 01", "", true).await;
    let b = customer(&admin, "Zarina", "90 700 00 02", "", true).await;
    let seg = segment(&admin, "Both", json!({"opted_in": true})).await;
    let (s, bc) = admin
        .post(
            "/api/v1/broadcasts",
            json!({"name": "PM", "segment_id": seg, "channels": ["sms"], "body": "Salom, {name}!"}),
        )
        .await;
    assert_eq!(s, 201, "{bc}");
    let bid = bc["id"].as_i64().unwrap();
    let sent = eventually(WAIT, || async {
        let s = gw.sent();
        (s.len() == 2).then_some(s)
    })
    .await
    .expect("both SMS go through Playmobile");
    assert!(sent
        .iter()
        .all(|m| m.from == "4546" && m.id.starts_with("crm")));
    assert!(sent.iter().any(|m| m.text.starts_with("Salom, Odil!")));
    assert_eq!(gw.unauthorized(), 0);
    let _ = (a, b);
    let key = hook_key(&app).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/hooks/sms/playmobile/report?key={key}",
            app.base
        ))
        .json(&json!({"messages": [
            {"message-id": sent[0].id, "status": "DELIVERED"},
            {"message-id": sent[1].id, "status": "UNDELIV"},
            {"message-id": "crm999999", "status": "DELIVERED"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // The gateway's ids are written by the sender in batches: a report may come first, and
    // is applied when they are.
    assert!(v["updated"].as_i64().unwrap() <= 2, "{v}");
    let v = eventually(WAIT, || async {
        let v = results(&admin, bid).await;
        (v["results"]["delivered"] == 1 && v["results"]["failed"] == 1).then_some(v)
    })
    .await
    .expect("both reports applied");
    assert_eq!(v["results"]["sent"], 1, "{v}");
    // Reports through GET with the query string work too.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/hooks/sms/playmobile/report?key={key}&message-id={}&status=DELIVERED",
            app.base, sent[1].id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(WAIT, || async {
        (results(&admin, bid).await["results"]["delivered"] == 2).then_some(())
    })
    .await
    .expect("the GET report applied");

    // Wrong credentials: the message waits (transient) and goes once they are fixed.
    let admin_s = app.login_admin().await;
    admin_s
        .post_form(
            "/settings/notifications/sms",
            &[
                ("provider", "playmobile"),
                ("url", &gw.url),
                ("login", PM_LOGIN),
                ("password", "wrong"),
                ("public_url", &app.base),
                ("per_second", "50"),
            ],
        )
        .await;
    let r = admin_s
        .post_form(
            "/settings/notifications/sms/test",
            &[("to", "90 700 00 09")],
        )
        .await;
    assert_eq!(r.status(), 422, "the test shows the gateway's refusal");
    assert!(gw.unauthorized() >= 1);
    gw.stop().await;
}

#[tokio::test]
async fn broadcasts_are_throttled_and_queued_fast() {
    let gw = SmsStandIn::start().await;
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    use_gateway(&app, &gw, "eskiz", "100").await;
    let admin = Api::of(&app, "admin").await;
    // 5 000 opted-in customers with phones, written directly.
    let n = 5000;
    sql(&app, move |c| {
        let mut ins = c.prepare("INSERT INTO customers (name, marketing_opt_in, language, created_at, updated_at) VALUES (?1, 1, 'uz', 0, 0)")?;
        let mut ph = c.prepare("INSERT INTO customer_phones (customer_id, e164) VALUES (?1, ?2)")?;
        for i in 0..n {
            ins.execute([format!("Mijoz {i}")])?;
            ph.execute(rusqlite::params![c.last_insert_rowid(), format!("+99890{:07}", i)])?;
        }
        Ok(())
    })
    .await;
    let seg = segment(&admin, "All", json!({"opted_in": true})).await;
    let started = Instant::now();
    let (s, b) = admin
        .post(
            "/api/v1/broadcasts",
            json!({"name": "Big", "segment_id": seg, "channels": ["sms"], "per_second": 100,
                   "body": "Salom {name}, yangi chegirmalar!"}),
        )
        .await;
    let enqueue = started.elapsed();
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["queued"], n);
    eprintln!(
        "broadcast enqueue: {n} messages in {:.0} ms ({:.0} messages/s)",
        enqueue.as_secs_f64() * 1000.0,
        n as f64 / enqueue.as_secs_f64()
    );
    // The first 300 go at the pace asked for (100 a second), not faster.
    let first = eventually(WAIT, || async { gw.sent().first().map(|m| m.at) })
        .await
        .expect("sending starts");
    let s300 = eventually(WAIT, || async {
        let s = gw.sent();
        (s.len() >= 300).then(|| s[299].at)
    })
    .await
    .expect("300 sent");
    let took = s300 - first;
    eprintln!(
        "SMS to the Eskiz stand-in at 100/s: 300 in {:.2} s ({:.1}/s)",
        took.as_secs_f64(),
        299.0 / took.as_secs_f64()
    );
    assert!(took >= Duration::from_millis(2_800), "throttled: {took:?}");
    assert!(took <= Duration::from_secs(20), "not starved: {took:?}");
    gw.stop().await;
}

#[tokio::test]
async fn promotions_limits_dates_concurrency_and_bad_input() {
    let app = TestApp::spawn().await;
    let (admin, oper, master, ..) = crate::core::shop(&app).await;
    let cust = crate::core::new_customer(&oper, "Aziza", "90 123 45 67").await;

    // Bad input: Cyrillic or malformed codes, wrong kinds, oversized, not JSON.
    let (s, v) = promotion(&admin, "ВЕСНА10", json!({})).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("Latin"),
        "{v}"
    );
    for bad in [
        json!({"kind": "gift"}),
        json!({"value": 150}),
        json!({"value": 0}),
        json!({"applies_to": "everything"}),
        json!({"ends_on": "2019-01-01"}),
        json!({"starts_on": "31.12.2020"}),
        json!({"usage_limit": 0}),
        json!({"name": "x".repeat(300)}),
        json!({"unknown_field": 1}),
    ] {
        let (s, v) = promotion(&admin, "GOOD10", bad.clone()).await;
        assert!(s == 422 || s == 400, "{bad}: {s} {v}");
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/promotions", app.base))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .header("accept-language", "ru")
        .body("{\"code\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Another role's URLs: the operator applies but does not create; a master neither.
    assert_eq!(promotion(&oper, "OPER10", json!({})).await.0, 403);
    assert_eq!(promotion(&master, "MASTER10", json!({})).await.0, 403);

    let (s, p) = promotion(
        &admin,
        "LAST1",
        json!({"usage_limit": 1, "kind": "amount",
        "value": 50000, "applies_to": "labour"}),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(
        promotion(&admin, "last1", json!({})).await.0,
        409,
        "codes are unique in any case"
    );

    // The discount follows the labour lines and changes what the order owes.
    let o = new_order(&oper, cust, json!({"estimate": 300000})).await;
    let oid = o["id"].as_i64().unwrap();
    let (s, a) = oper
        .post(
            &format!("/api/v1/orders/{oid}/promotion"),
            json!({"code": " last1 "}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a["discount"], 0,
        "labour only: nothing until there is labour"
    );
    for (kind, price) in [("part", 280000), ("labour", 30000)] {
        let (s, v) = oper
            .post(
                &format!("/api/v1/orders/{oid}/lines"),
                json!({"kind": kind, "name": "x", "qty": 1, "unit_price": price}),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    let (_, view) = oper.get(&format!("/api/v1/orders/{oid}")).await;
    assert_eq!(
        view["order"]["discount"], 30000,
        "capped at the labour: {view}"
    );
    assert_eq!(view["balance"], 280000, "{view}");
    assert_eq!(
        master
            .post(
                &format!("/api/v1/orders/{oid}/promotion"),
                json!({"code": "LAST1"})
            )
            .await
            .0,
        403
    );
    // The page shows the discount; the timeline logs it.
    let sess = app.login("oper", "oper-pass-1").await;
    let page = sess
        .get(&format!("/orders/{oid}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("order-discount") && page.contains("LAST1"),
        "the order page shows it"
    );
    let receipt = sess
        .get(&format!("/orders/{oid}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(receipt.contains("receipt-discount"), "the receipt shows it");

    // Used up, already applied, unknown, malformed: clear refusals in the reader's language.
    let o2 = new_order(&oper, cust, json!({})).await;
    let o2id = o2["id"].as_i64().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/orders/{o2id}/promotion", app.base))
        .bearer_auth(&oper.token)
        .header("accept-language", "ru")
        .json(&json!({"code": "LAST1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("исчерпана"),
        "{v}"
    );
    for (code, status) in [("NOSUCH", 422), ("a;b", 422), ("", 422), ("ЖЖЖЖ", 422)] {
        let (s, v) = oper
            .post(
                &format!("/api/v1/orders/{o2id}/promotion"),
                json!({"code": code}),
            )
            .await;
        assert_eq!(s, status, "{code}: {v}");
    }
    let (s, _) = oper
        .post(
            &format!("/api/v1/orders/{o2id}/promotion"),
            json!({"code": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(s, 422);

    // Dates by the shop clock: not yet, expired.
    promotion(&admin, "FUTURE", json!({"starts_on": "2098-01-01"})).await;
    promotion(
        &admin,
        "PAST",
        json!({"starts_on": "2020-01-01", "ends_on": "2020-12-31"}),
    )
    .await;
    let (s, v) = oper
        .post(
            &format!("/api/v1/orders/{o2id}/promotion"),
            json!({"code": "future"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2098-01-01"),
        "{v}"
    );
    let (s, v) = oper
        .post(
            &format!("/api/v1/orders/{o2id}/promotion"),
            json!({"code": "PAST"}),
        )
        .await;
    assert_eq!(s, 422);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("ended"),
        "{v}"
    );

    // Two desks take the last use at once: exactly one gets it.
    let (s, p2) = promotion(&admin, "DUEL", json!({"usage_limit": 3})).await;
    assert_eq!(s, 201);
    let mut orders = Vec::new();
    for _ in 0..8 {
        orders.push(
            new_order(&oper, cust, json!({"estimate": 100000})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let admin2 = Api::of(&app, "admin").await;
    let tasks: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (c, token, base) = if i % 2 == 0 {
                (oper.c.clone(), oper.token.clone(), oper.base.clone())
            } else {
                (admin2.c.clone(), admin2.token.clone(), admin2.base.clone())
            };
            let id = *id;
            tokio::spawn(async move {
                c.post(format!("{base}/api/v1/orders/{id}/promotion"))
                    .bearer_auth(token)
                    .json(&json!({"code": "DUEL"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 5, "{codes:?}");
    let (_, p2v) = admin.get(&format!("/api/v1/promotions/{}", p2["id"])).await;
    assert_eq!(p2v["used"], 3);

    // Taking it off gives the use back; a limit below the uses is refused.
    let taken = orders[codes.iter().position(|c| *c == 200).unwrap()];
    let (s, _) = oper
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/orders/{taken}/promotion"),
            json!({}),
        )
        .await;
    assert_eq!(s, 204);
    let (_, p2v) = admin.get(&format!("/api/v1/promotions/{}", p2["id"])).await;
    assert_eq!(p2v["used"], 2);
    let (s, _) = admin
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/promotions/{}", p2["id"]),
            json!({"code": "DUEL", "name": "x", "kind": "percent", "value": 5,
                     "starts_on": "2020-01-01", "ends_on": "2099-01-01", "usage_limit": 1}),
        )
        .await;
    assert_eq!(s, 409);
    // Every application is in the activity log.
    let n: i64 = sql(&app, |c| {
        c.query_row(
            "SELECT count(*) FROM activity_log WHERE entity = 'promotion' AND action = 'apply'",
            [],
            |r| r.get(0),
        )
    })
    .await;
    assert_eq!(n, 4);
}

#[tokio::test]
async fn orders_archive_one_at_a_time_by_rule_and_from_the_cli() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = crate::core::shop(&app).await;
    let cust = crate::core::new_customer(&oper, "Sardor Qodirov", "90 765 43 21").await;
    let mut ids = Vec::new();
    for model in ["Redmi Note 8", "iPhone 11", "Galaxy S9"] {
        let o = new_order(&oper, cust, json!({"model": model})).await;
        ids.push((
            o["id"].as_i64().unwrap(),
            o["number"].as_str().unwrap().to_string(),
        ));
    }
    let (open_id, _) = ids[2].clone();
    // Two closed: one three years ago, one last month.
    let now = crm::db::now();
    let (old, recent) = (ids[0].0, ids[1].0);
    sql(&app, move |c| {
        c.execute(
            "UPDATE orders SET status_id = 7, closed_at = ?2 WHERE id = ?1",
            [old, now - 3 * 366 * 86400],
        )?;
        c.execute(
            "UPDATE orders SET status_id = 7, closed_at = ?2 WHERE id = ?1",
            [recent, now - 30 * 86400],
        )
    })
    .await;
    // An open order cannot be archived; another role cannot archive.
    let (s, _) = admin
        .post(&format!("/api/v1/orders/{open_id}/archive"), json!({}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = oper
        .post(&format!("/api/v1/orders/{recent}/archive"), json!({}))
        .await;
    assert_eq!(s, 403);
    // One at a time: out of the list and the search, kept with its history.
    let (s, _) = admin
        .post(&format!("/api/v1/orders/{recent}/archive"), json!({}))
        .await;
    assert_eq!(s, 204);
    let (s, _) = admin
        .post(&format!("/api/v1/orders/{recent}/archive"), json!({}))
        .await;
    assert_eq!(s, 409, "already archived");
    let listed = |v: &Value, id: i64| v["items"].as_array().unwrap().iter().any(|o| o["id"] == id);
    let (_, list) = admin.get("/api/v1/orders").await;
    assert!(!listed(&list, recent) && listed(&list, old));
    let (_, found) = admin.get("/api/v1/search?q=iPhone").await;
    assert!(
        !found.to_string().contains(&format!("\"id\":{recent}")),
        "{found}"
    );
    let (_, arch) = admin.get("/api/v1/orders?archived=1").await;
    assert!(listed(&arch, recent) && !listed(&arch, old));
    let (s, v) = admin.get("/api/v1/orders?archived=maybe").await;
    assert_eq!(s, 422, "{v}");
    let (_, view) = admin.get(&format!("/api/v1/orders/{recent}")).await;
    assert!(
        view["order"]["archived_at"].is_i64(),
        "still readable with its history"
    );
    // The customer's own list keeps their history.
    let (_, mine) = admin
        .get(&format!("/api/v1/orders?customer_id={cust}"))
        .await;
    assert!(listed(&mine, recent));
    // Restore.
    let (s, _) = admin
        .post(&format!("/api/v1/orders/{recent}/restore"), json!({}))
        .await;
    assert_eq!(s, 204);
    let (_, found) = admin.get("/api/v1/search?q=iPhone").await;
    assert!(
        found.to_string().contains(&format!("\"id\":{recent}")),
        "{found}"
    );

    // By rule: closed more than two years ago; bad input refused.
    let (s, _) = admin
        .post("/api/v1/archive/orders", json!({"closed_years": 0}))
        .await;
    assert_eq!(s, 422);
    let (s, _) = admin
        .post("/api/v1/archive/orders", json!({"closed_years": "two"}))
        .await;
    assert_eq!(s, 400);
    let (s, v) = admin
        .post("/api/v1/archive/orders", json!({"closed_years": 2}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["archived"], 1);
    let (_, arch) = admin.get("/api/v1/orders?archived=1").await;
    assert!(listed(&arch, old) && !listed(&arch, recent));

    // The page and the CLI.
    let sess = app.login_admin().await;
    let page = sess.get("/archive").await.text().await.unwrap();
    assert!(page.contains(&ids[0].1), "the archive page lists it");
    let number = ids[0].1.clone();
    let mut app = app;
    let dir = app.data_dir();
    app.stop().await;
    let out = std::process::Command::new(crm_bin())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "archive",
            "restore",
            &number,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(crm_bin())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "archive",
            "orders",
            "--closed-years",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("1 orders archived"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = std::process::Command::new(crm_bin())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "archive",
            "orders",
            "--closed-years",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn operator_cannot_send_broadcasts_and_bad_broadcasts_are_refused() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = crate::core::shop(&app).await;
    let seg = segment(&admin, "Any", json!({})).await;
    let (s, _) = oper
        .post(
            "/api/v1/broadcasts",
            json!({"name": "x", "segment_id": seg, "body": "hi"}),
        )
        .await;
    assert_eq!(s, 403);
    for bad in [
        json!({"name": "", "segment_id": seg, "body": "hi"}),
        json!({"name": "x", "segment_id": 999, "body": "hi"}),
        json!({"name": "x", "segment_id": seg, "body": ""}),
        json!({"name": "x", "segment_id": seg, "body": "я".repeat(1001)}),
        json!({"name": "x", "segment_id": seg, "body": "hi", "channels": ["fax"]}),
        json!({"name": "x", "segment_id": seg, "body": "hi", "per_second": 0}),
        json!({"name": "x", "segment_id": seg, "body": "hi", "promotion_id": 999}),
    ] {
        let (s, v) = admin.post("/api/v1/broadcasts", bad.clone()).await;
        assert_eq!(s, 422, "{bad}: {v}");
    }
    let n: i64 = sql(&app, |c| {
        c.query_row("SELECT count(*) FROM broadcasts", [], |r| r.get(0))
    })
    .await;
    assert_eq!(n, 0, "nothing is half-queued");
    let _ = Role::Admin;
}

/// Not part of the suite: screenshots of the new pages for a person to look at
/// (`cargo test --test it promos::screenshots -- --ignored`; files in /tmp/promos-*.png).
#[tokio::test]
#[ignore]
async fn screenshots() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = crate::core::shop(&app).await;
    let cust = crate::core::new_customer(&oper, "Aziza Karimova", "90 123 45 67").await;
    promotion(&admin, "BAHOR10", json!({"usage_limit": 50})).await;
    let o = new_order(&oper, cust, json!({"estimate": 300000})).await;
    let oid = o["id"].as_i64().unwrap();
    oper.post(
        &format!("/api/v1/orders/{oid}/lines"),
        json!({"kind": "labour", "name": "Ekran almashtirish", "qty": 1, "unit_price": 150000}),
    )
    .await;
    oper.post(
        &format!("/api/v1/orders/{oid}/promotion"),
        json!({"code": "BAHOR10"}),
    )
    .await;
    segment(&admin, "Hammasi", json!({})).await;
    let b = crate::browser::Browser::start().await;
    b.sign_in(&app, "admin", ADMIN_PASSWORD).await;
    for (path, name) in [
        (format!("/orders/{oid}"), "order"),
        ("/promotions".into(), "promotions"),
        ("/broadcasts".into(), "broadcasts"),
        ("/settings/notifications".into(), "settings"),
    ] {
        b.client.goto(&app.url(&path)).await.unwrap();
        let png = b.client.screenshot().await.unwrap();
        std::fs::write(format!("/tmp/promos-{name}.png"), png).unwrap();
    }
    b.close().await;
}
