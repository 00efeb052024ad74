//! Call lists (issue 18) against the real server: a list built from a segment, shared
//! out, worked through from the operator's queue with SIPp playing the operator's desk
//! phone and the customer (through the provider's trunk), outcomes recorded and retries
//! scheduled; two operators taking the same item at once; daily progress starting again
//! at the shop's midnight; wrap-ups of any call; bad input.

use std::time::Duration;

use crm::model::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::core::{new_customer, new_order, Api};
use crate::sip_trunk::{allow_calls_out, trunk_out, PROVIDER_IP};
use crate::sipp::*;
use crate::support::*;

/// Unix seconds of a UTC wall time.
fn utc(y: i16, m: i8, d: i8, h: i8, min: i8) -> i64 {
    jiff::civil::date(y, m, d)
        .at(h, min, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second()
}

async fn tagged_customers(admin: &Api, tag: &str, phones: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (i, p) in phones.iter().enumerate() {
        let (s, v) = admin
            .post(
                "/api/v1/customers",
                json!({"name": format!("Mijoz {i} {tag}"), "phones": [p], "tags": tag}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    ids
}

async fn segment(admin: &Api, name: &str, tag: &str) -> i64 {
    let (s, v) = admin
        .post(
            "/api/v1/segments",
            json!({"name": name, "filter": {"tags": [tag]}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

async fn item(api: &Api, list: i64, id: i64) -> Value {
    let (s, v) = api
        .get(&format!("/api/v1/call-lists/{list}/items?limit=500"))
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("item {id} in {v}"))
}

async fn next(api: &Api) -> (StatusCode, Value) {
    let r = api
        .c
        .post(format!("{}/api/v1/queue/next", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn operator_phone(scen: &str, port: u16) -> tokio::process::Child {
    sipp_cmd(&[
        "-sf",
        &scenario(scen),
        "-p",
        &port.to_string(),
        "-d",
        "300",
        "-m",
        "1",
    ])
    .spawn()
    .unwrap()
}

fn provider(scen: &str, port: u16) -> tokio::process::Child {
    sipp_cmd_at(
        PROVIDER_IP,
        &["-sf", &scenario(scen), "-p", &port.to_string(), "-m", "1"],
    )
    .spawn()
    .expect("sipp is installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_from_a_segment_is_worked_through_with_sipp_phones_and_retries_scheduled() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let tel = &app.running().ctx.telephony;
    let aziza = app
        .add_user("aziza", Role::Operator, "operator-pass-1")
        .await;
    import_users(&app, [1002u32].into_iter()).await;
    tel.update_extension(None, "1002", "Aziza", Some("aziza".into()), true)
        .await
        .unwrap();
    allow_calls_out(&app, "1002", 20, true).await;
    let port = free_port();
    trunk_out(&app, port).await;

    let admin = Api::of(&app, "admin").await;
    let oper = Api::of(&app, "aziza").await;
    let ids = tagged_customers(
        &admin,
        "qayta",
        &["90 123 45 67", "91 234 56 78", "93 345 67 89"],
    )
    .await;
    new_customer(&admin, "Boshqa mijoz", "94 111 22 33").await;
    let order = new_order(&admin, ids[0], json!({})).await;
    let seg = segment(&admin, "Qayta qo'ng'iroq", "qayta").await;

    let (s, list) = admin
        .post(
            "/api/v1/call-lists",
            json!({
                "name": "Qayta qo'ng'iroq",
                "source": "segment",
                "source_ref": seg,
                "assignment": "round_robin",
                "agents": [{"user_id": aziza}],
                "settings": {"retry_busy_minutes": 15, "retry_no_answer_minutes": 60, "max_attempts": 3,
                    "scripts": {"uz": "Assalomu alaykum, {name}! {device} ({order}) bo'yicha qo'ng'iroq qilyapmiz.",
                                "ru": "Здравствуйте, {name}!"}}
            }),
        )
        .await;
    assert_eq!(s, 201, "{list}");
    let lid = list["id"].as_i64().unwrap();
    assert_eq!(list["pending"], 3, "the segment's three customers: {list}");
    assert_eq!(list["agents"][0]["user_id"], aziza);
    let (_, items) = oper.get(&format!("/api/v1/call-lists/{lid}/items")).await;
    let items = items.as_array().unwrap().clone();
    assert_eq!(items.len(), 3);
    assert!(items
        .iter()
        .all(|i| i["assigned_to"] == aziza && i["state"] == "pending"));

    // 1. Answered: the customer is reached, the operator records "will come in".
    let (s, q) = next(&oper).await;
    assert_eq!(s, 200, "{q}");
    let first = q["item"]["id"].as_i64().unwrap();
    assert_eq!(q["item"]["customer_id"], ids[0]);
    let script = q["script"].as_str().unwrap();
    assert!(
        script.starts_with("Assalomu alaykum, Mijoz 0 qayta!")
            && script.contains(order["number"].as_str().unwrap())
            && script.contains("Samsung Galaxy A52"),
        "{script}"
    );
    let (s, again) = next(&oper).await;
    assert_eq!(
        (s, again["item"]["id"].as_i64()),
        (StatusCode::OK, Some(first)),
        "the held item comes back"
    );

    let po = free_port();
    let op = operator_phone("trunk_c2c_operator.xml", po);
    let prov = provider("trunk_provider_uas.xml", port);
    register_contact(sip, "1002", po).await;
    let (s, d) = oper
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{first}/dial"),
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{d}");
    let call_id = d["call_id"].as_str().unwrap().to_string();
    let r = wait_sipp(op).await;
    assert_eq!((r.ok, r.failed), (1, 0), "operator phone: {}", r.out);
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "customer (provider): {}", r.out);
    let logged = eventually(Duration::from_secs(10), || async {
        let (s, v) = admin
            .get(&format!("/api/v1/calls/{}", call_id.replace('@', "%40")))
            .await;
        (s == 200 && v["outcome"] == "answered").then_some(v)
    })
    .await;
    assert!(logged.is_some(), "the call is in the log, answered");
    assert_eq!(
        item(&oper, lid, first).await["state"],
        "active",
        "answered: waits for the operator"
    );
    let (s, v) = oper
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{first}/outcome"),
            json!({"outcome": "will_come_in", "note": "Ертага соат 10 да келади"}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let done = item(&oper, lid, first).await;
    assert_eq!(
        (
            done["state"].as_str(),
            done["outcome"].as_str(),
            done["attempts"].as_i64()
        ),
        (Some("done"), Some("will_come_in"), Some(1))
    );
    assert_eq!(done["note"], "Ертага соат 10 да келади");

    // 2. Busy: the server records it by itself and schedules the retry.
    let (s, q) = next(&oper).await;
    assert_eq!(s, 200, "{q}");
    let second = q["item"]["id"].as_i64().unwrap();
    assert_ne!(second, first);
    let po = free_port();
    let op = operator_phone("trunk_c2c_operator_dropped.xml", po);
    let prov = provider("trunk_provider_busy.xml", port);
    register_contact(sip, "1002", po).await;
    let before = crm::db::now();
    let (s, d) = oper
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{second}/dial"),
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{d}");
    let r = wait_sipp(prov).await;
    assert_eq!(
        (r.ok, r.failed),
        (1, 0),
        "customer busy (provider): {}",
        r.out
    );
    let r = wait_sipp(op).await;
    assert_eq!(
        (r.ok, r.failed),
        (1, 0),
        "operator phone hung up: {}",
        r.out
    );
    let busy = eventually(Duration::from_secs(10), || async {
        let i = item(&oper, lid, second).await;
        (i["state"] == "pending").then_some(i)
    })
    .await
    .expect("the busy call is recorded by itself");
    assert_eq!(busy["outcome"], "busy");
    assert_eq!(busy["attempts"], 1);
    let next_at = busy["next_at"].as_i64().unwrap();
    assert!(
        (before + 15 * 60..=crm::db::now() + 15 * 60).contains(&next_at),
        "retry in 15 minutes: {next_at} vs {before}"
    );

    // 3. "Call back at…": refused in the past, scheduled in the future for the same operator.
    let (s, q) = next(&oper).await;
    assert_eq!(s, 200, "{q}");
    let third = q["item"]["id"].as_i64().unwrap();
    assert_eq!(
        q["item"]["customer_id"], ids[2],
        "the busy one is not due yet"
    );
    let (s, v) = oper
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{third}/outcome"),
            json!({"outcome": "call_back", "callback_at": "2020-01-01T10:00"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = oper
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{third}/outcome"),
            json!({"outcome": "call_back"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = oper
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{third}/outcome"),
            json!({"outcome": "call_back", "callback_at": "2099-03-21T15:30", "note": "Kechqurun"}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let cb = item(&oper, lid, third).await;
    assert_eq!(cb["state"], "pending");
    let clock = app.running().ctx.clock.get();
    let want = clock.at_local(jiff::civil::date(2099, 3, 21), 15 * 60 + 30);
    assert_eq!(cb["next_at"].as_i64(), Some(want), "at 15:30 shop time");

    // Nothing is due now.
    let (s, _) = next(&oper).await;
    assert_eq!(s, 204);

    // The outcome is on the call log row and in the customer's timeline.
    let admin_page = app.login_admin().await;
    let calls = admin_page.get("/calls").await.text().await.unwrap();
    assert!(
        calls.contains("call-wrap"),
        "the call log shows the outcome"
    );
    let card = admin_page
        .get(&format!("/customers/{}", ids[0]))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        card.contains("customer-outcomes") && card.contains("Ертага соат 10 да келади"),
        "timeline"
    );

    // Progress today: two calls placed, one reached, the outcomes.
    let (s, p) = oper.get("/api/v1/progress").await;
    assert_eq!(s, 200, "{p}");
    let me = &p[0];
    assert_eq!(me["user_id"], aziza);
    assert_eq!(me["calls"], 2, "{me}");
    assert_eq!(me["reached"], 1, "{me}");
    assert_eq!(me["outcomes"]["will_come_in"], 1);
    assert_eq!(me["outcomes"]["busy"], 1);
    assert_eq!(me["outcomes"]["call_back"], 1);
    // The admin sees the team.
    let (_, team) = admin.get("/api/v1/progress").await;
    assert!(team.as_array().unwrap().len() >= 2, "{team}");
}

async fn pool_list(admin: &Api, tag: &str, n: usize, extra: Value) -> i64 {
    let phones: Vec<String> = (0..n)
        .map(|i| format!("97 {:03} {:02} {:02}", 100 + i, i % 100, (i * 7) % 100))
        .collect();
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    tagged_customers(admin, tag, &refs).await;
    let seg = segment(admin, &format!("Seg {tag}"), tag).await;
    let mut body = json!({"name": format!("List {tag}"), "source": "segment", "source_ref": seg});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let (s, v) = admin.post("/api/v1/call-lists", body).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_taking_the_same_item_at_once_exactly_one_gets_it() {
    let app = TestApp::spawn().await;
    app.add_user("oper1", Role::Operator, "oper-pass-1").await;
    app.add_user("oper2", Role::Operator, "oper-pass-2").await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = (Api::of(&app, "oper1").await, Api::of(&app, "oper2").await);
    let lid = pool_list(&admin, "birga", 6, json!({})).await;
    let (_, items) = admin.get(&format!("/api/v1/call-lists/{lid}/items")).await;
    let ids: Vec<i64> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    let target = ids[0];
    let path = format!("/api/v1/call-lists/{lid}/items/{target}/take");
    let (ra, rb) = tokio::join!(a.post(&path, json!({})), b.post(&path, json!({})));
    let mut statuses = [ra.0.as_u16(), rb.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{ra:?} {rb:?}");
    let loser = if ra.0 == 409 { &ra.1 } else { &rb.1 };
    assert!(
        loser["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another operator"),
        "{loser}"
    );

    // "Next" from both at once, many times: never the same item twice.
    let mut got = vec![target];
    let winner = if ra.0 == 200 { &a } else { &b };
    let other = if ra.0 == 200 { &b } else { &a };
    let (s, _) = winner
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{target}/outcome"),
            json!({"outcome": "reached"}),
        )
        .await;
    assert_eq!(s, 204);
    for _ in 0..2 {
        let ((sa, va), (sb, vb)) = tokio::join!(next(winner), next(other));
        assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{va} {vb}");
        let (x, y) = (
            va["item"]["id"].as_i64().unwrap(),
            vb["item"]["id"].as_i64().unwrap(),
        );
        assert_ne!(x, y, "one item, one operator");
        got.extend([x, y]);
        for (api, id) in [(winner, x), (other, y)] {
            let (s, v) = api
                .post(
                    &format!("/api/v1/call-lists/{lid}/items/{id}/outcome"),
                    json!({"outcome": "not_interested"}),
                )
                .await;
            assert_eq!(s, 204, "{v}");
        }
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 5, "five different items");
    // The other operator cannot record an outcome on an item they do not hold.
    let (s, q) = next(winner).await;
    assert_eq!(s, 200);
    let held = q["item"]["id"].as_i64().unwrap();
    let (s, v) = other
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{held}/outcome"),
            json!({"outcome": "reached"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_the_daily_cap_start_again_at_the_shops_midnight() {
    let app = TestApp::spawn().await;
    let oid = app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let admin = Api::of(&app, "admin").await;
    let oper = Api::of(&app, "oper").await;
    let lid = pool_list(&admin, "tun", 3, json!({"settings": {"daily_cap": 1}})).await;
    let (s, v) = admin
        .send(
            Method::PUT,
            "/api/v1/progress/targets",
            json!({"user_id": 0, "targets": {"calls": 40, "reached": 20, "talk_minutes": 60, "orders": 5, "payments": 5}}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    // 23:50 on 1 March in Tashkent (18:50 UTC).
    app.running()
        .ctx
        .clock
        .freeze_at(Some(utc(2027, 3, 1, 18, 50)));
    let (s, q) = next(&oper).await;
    assert_eq!(s, 200, "{q}");
    let id = q["item"]["id"].as_i64().unwrap();
    let (s, _) = oper
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{id}/outcome"),
            json!({"outcome": "reached"}),
        )
        .await;
    assert_eq!(s, 204);
    let cu = new_customer(&oper, "Kechki mijoz", "99 765 43 21").await;
    new_order(&oper, cu, json!({})).await;
    let (_, p) = oper.get("/api/v1/progress").await;
    assert_eq!(p[0]["day"], "2027-03-01");
    assert_eq!(p[0]["outcomes"]["reached"], 1, "{p}");
    assert_eq!(p[0]["orders"], 1, "{p}");
    assert_eq!(p[0]["targets"]["calls"], 40, "the default targets: {p}");
    let (s, _) = next(&oper).await;
    assert_eq!(s, 204, "the daily cap of one is reached");

    // 00:10 on 2 March: a new shop day.
    app.running()
        .ctx
        .clock
        .freeze_at(Some(utc(2027, 3, 1, 19, 10)));
    let (_, p) = oper.get("/api/v1/progress").await;
    assert_eq!(p[0]["day"], "2027-03-02");
    assert_eq!(p[0]["outcomes"], json!({}), "{p}");
    assert_eq!(
        (p[0]["orders"].as_i64(), p[0]["calls"].as_i64()),
        (Some(0), Some(0))
    );
    let (_, y) = oper.get("/api/v1/progress?day=2027-03-01").await;
    assert_eq!(y[0]["outcomes"]["reached"], 1, "yesterday keeps its count");
    let (s, q) = next(&oper).await;
    assert_eq!(s, 200, "the cap starts again: {q}");
    assert_eq!(q["item"]["list_id"], lid);
    // The team view shows the operator, live topics on the page.
    let page = app
        .login_admin()
        .await
        .get("/progress")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("data-user=\"{oid}\""))
            && page.contains("data-live-topics=\"progress."),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrap_up_puts_an_outcome_on_any_call_inbound_too() {
    let app = TestApp::spawn().await;
    let uid = app.add_user("oper", Role::Operator, "oper-pass-1").await;
    app.add_user("other", Role::Operator, "oper-pass-2").await;
    let admin = Api::of(&app, "admin").await;
    let cu = new_customer(&admin, "Zarina Yusupova", "90 555 44 33").await;
    let ctx = &app.running().ctx;
    ctx.telephony
        .import(None, "SEQUENTIAL\n1501;secret-1501;\n")
        .await
        .unwrap();
    ctx.telephony
        .update_extension(None, "1501", "Desk", Some("oper".into()), true)
        .await
        .unwrap();
    // An inbound call answered on the operator's phone, as the call log stores one.
    ctx.db
        .write(move |c| {
            let now = crm::db::now() * 1000;
            let exts = vec!["1501".to_string()];
            crm::db::calls::upsert_ringing(
                c,
                &crm::db::calls::NewCall {
                    transferred_by: None,
                    branch_id: None,
                    transferred_from: None,
                    call_id: "inbound-wrap-1",
                    direction: "inbound",
                    from_number: "+998905554433",
                    to_number: "1501",
                    party_number: "+998905554433",
                    ring_group: None,
                    extensions: &exts,
                    customer_id: Some(cu),
                    open_orders: &[],
                    started_ms: now,
                },
            )?;
            crm::db::calls::set_answered(c, "inbound-wrap-1", "1501", Some(uid), now + 2000)?;
            Ok(())
        })
        .await
        .unwrap();
    let other = Api::of(&app, "other").await;
    let (s, v) = other
        .post(
            "/api/v1/calls/wrap-up",
            json!({"call_id": "inbound-wrap-1", "outcome": "reached"}),
        )
        .await;
    assert_eq!(s, 403, "not their call: {v}");
    let oper = Api::of(&app, "oper").await;
    for (body, want) in [
        (json!({"call_id": "nope", "outcome": "reached"}), 404),
        (
            json!({"call_id": "inbound-wrap-1", "outcome": "teleported"}),
            422,
        ),
        (
            json!({"call_id": "inbound-wrap-1", "outcome": "reached", "follow_up": "31.02.2027"}),
            422,
        ),
        (
            json!({"call_id": "inbound-wrap-1", "outcome": "reached", "note": "x".repeat(4001)}),
            422,
        ),
        (
            json!({"call_id": "inbound-wrap-1", "outcome": "reached", "surprise": 1}),
            400,
        ),
    ] {
        let (s, v) = oper.post("/api/v1/calls/wrap-up", body.clone()).await;
        assert_eq!(s.as_u16(), want, "{body}: {v}");
    }
    let (s, v) = oper
        .post(
            "/api/v1/calls/wrap-up",
            json!({"call_id": "inbound-wrap-1", "outcome": "will_come_in", "note": "Экран алмаштириш нархини сўради", "follow_up": "2099-01-05"}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let s = app.login("oper", "oper-pass-1").await;
    let calls = s.get("/calls").await.text().await.unwrap();
    assert!(
        calls.contains("Экран алмаштириш нархини сўради"),
        "the note on the call-log row"
    );
    let card = s
        .get(&format!("/customers/{cu}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        card.contains("customer-outcomes") && card.contains("Экран алмаштириш"),
        "timeline"
    );
    let (_, p) = oper.get("/api/v1/progress").await;
    assert_eq!(p[0]["outcomes"]["will_come_in"], 1, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_answer_and_nothing_half_made() {
    let app = TestApp::spawn().await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    app.add_user("usta", Role::Master, "usta-pass-1").await;
    let admin = Api::of(&app, "admin").await;
    let oper = Api::of(&app, "oper").await;
    let usta = Api::of(&app, "usta").await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": "X", "source": "moon"}), 422, "not a source"),
        (json!({"name": "X", "source": "segment"}), 422, "segment"),
        (
            json!({"name": "X", "source": "segment", "source_ref": 999}),
            422,
            "segment",
        ),
        (
            json!({"name": "X", "source": "import", "source_ref": 999}),
            422,
            "import",
        ),
        (
            json!({"name": "X", "source": "missed", "assignment": "round_robin"}),
            422,
            "operators",
        ),
        (
            json!({"name": "X", "source": "missed", "assignment": "random"}),
            422,
            "assign",
        ),
        (
            json!({"name": "X", "source": "missed", "agents": [{"user_id": 999}]}),
            422,
            "999",
        ),
        (
            json!({"name": "X", "source": "missed", "settings": {"daily_cap": -1}}),
            422,
            "0",
        ),
        (
            json!({"name": "X", "source": "missed", "settings": {"max_attempts": 0}}),
            422,
            "1",
        ),
        (json!({"name": " ", "source": "missed"}), 422, ""),
        (
            json!({"name": "X", "source": "ready", "source_ref": 99999}),
            422,
            "3650",
        ),
        (
            json!({"name": "X", "source": "missed", "colour": "red"}),
            400,
            "",
        ),
    ];
    for (body, want, says) in cases {
        let (s, v) = admin.post("/api/v1/call-lists", body.clone()).await;
        assert_eq!(s.as_u16(), want, "{body}: {v}");
        assert!(v.to_string().contains(says), "{body}: {v}");
    }
    let (_, lists) = admin.get("/api/v1/call-lists").await;
    assert_eq!(lists, json!([]), "nothing half-made");
    // Malformed JSON.
    let r = admin
        .c
        .post(format!("{}/api/v1/call-lists", admin.base))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Operators work lists but do not build them; masters do neither.
    let (s, _) = oper
        .post(
            "/api/v1/call-lists",
            json!({"name": "X", "source": "missed"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = usta.get("/api/v1/call-lists").await;
    assert_eq!(s, 403);
    let (s, _) = next(&usta).await;
    assert_eq!(s, 403);
    // Another user's progress is the team view's.
    let (s, _) = oper.get("/api/v1/progress?user=1").await;
    assert_eq!(s, 403);
    let (s, _) = oper.get("/api/v1/progress?day=yesterday").await;
    assert_eq!(s, 400);
    // Outcome codes: a bad code or effect is refused; a new one in four languages works.
    let bad = json!({"id": 0, "code": "Bad Code!", "name_en": "x", "name_ru": "x", "name_uz": "x", "name_uz_cyrl": "x", "effect": "done", "reached": false, "position": 9, "active": true});
    let (s, _) = admin
        .send(Method::PUT, "/api/v1/call-outcomes", bad.clone())
        .await;
    assert_eq!(s, 422);
    let mut good = bad.clone();
    good["code"] = json!("paid_debt");
    good["effect"] = json!("explode");
    let (s, _) = admin
        .send(Method::PUT, "/api/v1/call-outcomes", good.clone())
        .await;
    assert_eq!(s, 422);
    good["effect"] = json!("done");
    good["name_uz_cyrl"] = json!("Қарзини тўлади");
    let (s, v) = admin.send(Method::PUT, "/api/v1/call-outcomes", good).await;
    assert_eq!(s, 204, "{v}");
    let (_, all) = oper.get("/api/v1/call-outcomes").await;
    assert!(all.to_string().contains("Қарзини тўлади"));
    // Page forms: a bad number is shown on the page in the user's language.
    let page = app.login_admin().await;
    let r = page
        .post_form(
            "/call-lists",
            &[("name", "X"), ("source", "missed"), ("daily_cap", "many")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(
        r.text().await.unwrap().contains("many"),
        "the typed value is named"
    );
    let (_, lists) = admin.get("/api/v1/call-lists").await;
    assert_eq!(lists, json!([]));
}
