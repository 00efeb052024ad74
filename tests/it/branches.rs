//! Branches as scope beyond orders (issue 19, part two): calls (log, export, search,
//! missed calls, live events and their replay) and call lists, with calls arriving
//! through SIPp on each branch's DID; per-branch business hours routing those DIDs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crm::domain::telephony::{CallRules, DidRow, NewTrunk};
use crm::sip::CallEvent;

use crate::calls::link;
use crate::core::{new_customer, new_order, Api};
use crate::live::{login_cookie, next_any, open};
use crate::sip_trunk::PROVIDER_IP;
use crate::sipp::*;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);
const DID_A: &str = "712000001";
const DID_B: &str = "712000002";

struct Shop {
    app: TestApp,
    admin: Api,
    a: i64,
    b: i64,
}

/// Two branches (A = the first, B = a new one); operators `opa` and `opb` of each, an
/// admin `mga` of A only; extensions 1501 (opa's) and 1502 (opb's); a trunk whose DID
/// 712000001 (branch A) rings 1501 and 712000002 (branch B) rings 1502, after hours 1503.
async fn shop() -> Shop {
    let app = TestApp::spawn_with_sip().await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = two_branches_with(&admin, OPERATORS_AND_MGA).await;
    import_users(&app, [1501u32, 1502, 1503].into_iter()).await;
    link(&app, "1501", "opa").await;
    link(&app, "1502", "opb").await;
    let tel = &app.running().ctx.telephony;
    let did = |did: &str, dest: &str, branch| DidRow {
        did: did.into(),
        destination: dest.into(),
        after_hours: Some("1503".into()),
        branch_id: Some(branch),
    };
    tel.save_trunk(
        None,
        NewTrunk {
            name: "Provider".into(),
            host: PROVIDER_IP.into(),
            port: free_port() as u32,
            transport: "UDP".into(),
            username: "trunkuser".into(),
            secret: "trunk-secret".into(),
            register: false,
            expires: 600,
            caller_id: "+998712000000".into(),
            dids: vec![did(DID_A, "1501", a), did(DID_B, "1502", b)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Shop { app, admin, a, b }
}

/// The provider calls `did`: answered (held `hold_ms`) or, with `answered` false, to a
/// phone that is offline.
async fn provider_calls(app: &TestApp, did: &str, answered: bool, hold_ms: u32) {
    let scen = scenario(if answered {
        "trunk_inbound_call.xml"
    } else {
        "trunk_inbound_unanswered.xml"
    });
    let hold = hold_ms.to_string();
    let args = ["-sf", &scen, "-s", did, "-d", &hold, "-m", "1"];
    assert_ok(
        &sipp_at(PROVIDER_IP, app.sip_addr(), &args).await,
        1,
        "provider's call",
    );
}

/// The ended calls to `did` in the admin's log, once there are `n`.
async fn calls_to(admin: &Api, did: &str, n: usize) -> Vec<Value> {
    eventually(WAIT, || async {
        let (s, v) = admin.get("/api/v1/calls?limit=100").await;
        assert_eq!(s, 200, "{v}");
        let rows: Vec<Value> = v["items"]
            .as_array()?
            .iter()
            .filter(|c| c["to_number"] == did && !c["ended_ms"].is_null())
            .cloned()
            .collect();
        (rows.len() >= n).then_some(rows)
    })
    .await
    .unwrap_or_else(|| panic!("{n} ended calls to {did} never reached the log"))
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every frame a socket gets until it is quiet for `quiet`.
async fn frames(ws: &mut crate::live::Ws, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(f) = next_any(ws, quiet).await {
        out.push(f);
    }
    out
}

/// An operator of each branch: `opa` of A, `opb` of B.
const OPERATORS: &[(&str, &str, bool)] = &[("opa", "operator", false), ("opb", "operator", true)];
/// The operators and `mga`, an admin of A only.
const OPERATORS_AND_MGA: &[(&str, &str, bool)] = &[
    ("opa", "operator", false),
    ("opb", "operator", true),
    ("mga", "admin", false),
];

/// Branches A (the first) and B (a new one, "Chilonzor filiali") with these users (of
/// B where marked).
async fn two_branches_with(admin: &Api, users: &[(&str, &str, bool)]) -> (i64, i64) {
    two_branches(admin, json!({"name": "Chilonzor filiali"}), users).await
}

/// Turns "keep customers per branch" on (as the shop's admin): the answer.
async fn keep_customers_per_branch(admin: &Api) -> Value {
    let (s, v) = admin
        .send(
            Method::PUT,
            "/api/v1/customer-scope",
            json!({"per_branch": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// A new customer (`name`, `phone`) with an order of `branch`: the customer's id.
async fn customer_with_order(admin: &Api, name: &str, phone: &str, branch: i64) -> i64 {
    let (s, o) = admin
        .post(
            "/api/v1/orders",
            json!({"customer": {"name": name, "phone": phone}, "branch_id": branch,
                "device_category": "phone", "brand": "Samsung", "complaint": "Ekran singan"}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    o["customer_id"].as_i64().unwrap()
}

/// A user's id by their username.
async fn user_id(admin: &Api, username: &str) -> i64 {
    let (_, users) = admin.get("/api/v1/users").await;
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("{username}: {users}"))["id"]
        .as_i64()
        .unwrap()
}

/// A user's socket past its hello, and what it takes to reconnect and replay from there.
struct Listener {
    ws: crate::live::Ws,
    cookie: String,
    origin: String,
    start: u64,
}

async fn listen(app: &TestApp, user: &str) -> Listener {
    let origin = format!("http://{}", app.running().http_addr);
    let cookie = login_cookie(app, user, "branch-pass-1").await;
    let mut ws = open(app, Some(&cookie), Some(&origin), "").await.unwrap();
    let hello = next_any(&mut ws, WAIT).await.expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    let start = hello["seq"].as_u64().unwrap();
    Listener {
        ws,
        cookie,
        origin,
        start,
    }
}

impl Listener {
    /// What a new socket of the same session replays from the first one's hello on.
    async fn replay(&self, app: &TestApp) -> Vec<Value> {
        let mut again = open(
            app,
            Some(&self.cookie),
            Some(&self.origin),
            &format!("?last_seq={}", self.start),
        )
        .await
        .unwrap();
        frames(&mut again, Duration::from_millis(700)).await
    }
}

/// An inbound call from `from` ringing these extensions.
fn inbound_ringing(call_id: &str, from: &str, extensions: &[&str]) -> CallEvent {
    CallEvent::Ringing {
        call_id: call_id.into(),
        direction: crm::sip::CallDirection::Inbound,
        from: from.into(),
        to: "100".into(),
        group: None,
        extensions: extensions.iter().map(|e| e.to_string()).collect(),
        transferred_by: None,
        transferred_from: None,
    }
}

/// The end of a call that rang a second and was not talked on.
fn call_ended(call_id: &str, cause: &str) -> CallEvent {
    CallEvent::Ended {
        call_id: call_id.into(),
        cause: cause.into(),
        ring_ms: 1000,
        talk_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_call_lists_of_branch_b_do_not_reach_branch_a() {
    let sh = shop().await;
    let app = &sh.app;
    let mut la = listen(app, "opa").await;
    let mut wb = socket(app, "opb").await;

    // Both phones answer: A's call, and a longer one of B (live while A listens).
    let sip = app.sip_addr();
    let (pa, pb) = (free_port(), free_port());
    let ua = uas("uas_answer.xml", pa, 1);
    let ub = uas("uas_answer.xml", pb, 1);
    register_contact(sip, "1501", pa).await;
    register_contact(sip, "1502", pb).await;
    let (ra, rb) = tokio::join!(
        provider_calls(app, DID_A, true, 300),
        provider_calls(app, DID_B, true, 1500)
    );
    let _ = (ra, rb);
    for k in [ua, ub] {
        let r = wait_sipp(k).await;
        assert_eq!((r.ok, r.failed), (1, 0), "phone: {}", r.out);
    }
    calls_to(&sh.admin, DID_B, 1).await;
    // Then B's phone goes offline and B's DID rings it: a missed call of branch B.
    let unreg = scenario("unregister_all.xml");
    assert_ok(
        &sipp(
            sip,
            &["-sf", &unreg, "-s", "1502", "-ap", "secret-1502", "-m", "1"],
        )
        .await,
        1,
        "unregister 1502",
    );
    provider_calls(app, DID_B, false, 0).await;
    let a_calls = calls_to(&sh.admin, DID_A, 1).await;
    let b_calls = calls_to(&sh.admin, DID_B, 2).await;
    let missed_b: Vec<String> = ids(&b_calls)
        .into_iter()
        .zip(&b_calls)
        .filter(|(_, c)| c["outcome"] != "answered")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(missed_b.len(), 1, "{b_calls:?}");
    assert_eq!(a_calls[0]["branch_id"], sh.a, "{a_calls:?}");
    assert!(
        b_calls.iter().all(|c| c["branch_id"] == sh.b),
        "{b_calls:?}"
    );
    assert!(
        b_calls.iter().any(|c| c["outcome"] == "answered"),
        "{b_calls:?}"
    );
    let (ida, idb) = (ids(&a_calls), ids(&b_calls));
    assert!(idb.contains(&missed_b[0]));

    // The log, one call, search by number, the CSV export: A's calls only.
    let opa = Api::of(app, "opa").await;
    let opb = Api::of(app, "opb").await;
    for (api, mine, theirs) in [(&opa, &ida, &idb), (&opb, &idb, &ida)] {
        for q in ["", "?number=%2B998901112233", "?direction=inbound"] {
            let (s, v) = api.get(&format!("/api/v1/calls{q}")).await;
            assert_eq!(s, 200, "{v}");
            let got: Vec<String> = ids(v["items"].as_array().unwrap());
            assert!(mine.iter().all(|i| got.contains(i)), "{q}: {got:?}");
            assert!(
                theirs.iter().all(|i| !got.contains(i)),
                "{q} leaks: {got:?}"
            );
        }
        for i in theirs {
            let (s, _) = api.get(&format!("/api/v1/calls/{i}")).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "another branch's call {i}");
        }
        for i in mine {
            let (s, v) = api.get(&format!("/api/v1/calls/{i}")).await;
            assert_eq!(s, 200, "{v}");
        }
    }
    let sa = app.login("opa", "branch-pass-1").await;
    for path in ["/calls/export.csv", "/calls", "/calls?number=901112233"] {
        let r = sa.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        for i in &idb {
            assert!(!text.contains(i.as_str()), "{path} leaks B's call {i}");
        }
        if path.ends_with(".csv") {
            assert!(text.contains(ida[0].as_str()), "{path} lacks A's call");
        }
    }

    // Missed calls: B's entry is B's; A's user neither sees nor resolves it.
    let (s, v) = opb.get("/api/v1/calls/missed?all=true").await;
    assert_eq!(s, 200);
    let entry = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["branch_id"] == sh.b)
        .cloned()
        .unwrap_or_else(|| panic!("B's missed entry: {v}"));
    let missed_id = entry["id"].as_i64().unwrap();
    let (s, v) = opa.get("/api/v1/calls/missed?all=true").await;
    assert_eq!(s, 200);
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != missed_id),
        "{v}"
    );
    let page = sa.get("/calls/missed?all=1").await.text().await.unwrap();
    assert!(!page.contains(&format!("data-missed-done=\"{missed_id}\"")));
    let (s, _) = opa
        .post(&format!("/api/v1/calls/missed/{missed_id}/done"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = sa
        .post_form(&format!("/calls/missed/{missed_id}/done"), &[])
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let (_, v) = opb.get("/api/v1/calls/missed").await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == missed_id && m["resolved_ms"].is_null()),
        "A's refused write changed B's entry: {v}"
    );

    // Call lists: B's list (built from B's missed calls) is not A's.
    let (s, list) = sh
        .admin
        .post(
            "/api/v1/call-lists",
            json!({"name": "Qayta qo‘ng‘iroq B", "source": "missed", "branch_id": sh.b}),
        )
        .await;
    assert_eq!(s, 201, "{list}");
    let list_id = list["id"].as_i64().unwrap();
    let (s, items) = opb
        .get(&format!("/api/v1/call-lists/{list_id}/items"))
        .await;
    assert_eq!(s, 200, "{items}");
    let item = items[0]["id"]
        .as_i64()
        .expect("B's list has B's missed caller");
    let mga = Api::of(app, "mga").await;
    for api in [&opa, &mga] {
        let (s, v) = api.get("/api/v1/call-lists").await;
        assert_eq!(s, 200);
        assert!(
            v.as_array().unwrap().iter().all(|l| l["id"] != list_id),
            "{v}"
        );
        for path in [
            format!("/api/v1/call-lists/{list_id}"),
            format!("/api/v1/call-lists/{list_id}/items"),
        ] {
            let (s, _) = api.get(&path).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        }
        let (s, _) = api
            .post(
                &format!("/api/v1/call-lists/{list_id}/items/{item}/take"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, v) = api.post("/api/v1/queue/next", json!({})).await;
        assert!(s.is_success(), "{v}");
        assert!(v.is_null() || v["item"]["id"] != item, "{v}");
    }
    let (s, _) = mga
        .send(
            Method::PUT,
            &format!("/api/v1/call-lists/{list_id}"),
            json!({"name": "Hijacked", "state": "closed"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A branch-A admin's own list is A's, and B's branch is not theirs to give.
    let (s, v) = mga
        .post(
            "/api/v1/call-lists",
            json!({"name": "Boshqa filial", "source": "missed", "branch_id": sh.b}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = mga
        .post(
            "/api/v1/call-lists",
            json!({"name": "A ro‘yxati", "source": "missed"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["branch_id"], sh.a, "{v}");
    // The team's progress: B's operator is not in A's view.
    let (s, v) = mga.get("/api/v1/progress").await;
    assert_eq!(s, 200, "{v}");
    let opb_id = user_id(&sh.admin, "opb").await;
    assert!(
        v.as_array().unwrap().iter().all(|p| p["user_id"] != opb_id),
        "{v}"
    );
    let (s, _) = mga.get(&format!("/api/v1/progress?user={opb_id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = sh.admin.get(&format!("/api/v1/call-lists/{list_id}")).await;
    assert_eq!(v["name"], "Qayta qo‘ng‘iroq B", "{v}");
    let (s, v) = opb
        .post(
            &format!("/api/v1/call-lists/{list_id}/items/{item}/take"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "B's operator takes B's item: {v}");

    // Live: A's socket got A's calls and nothing of B's (calls, missed, call lists);
    // B's socket got B's.
    let got_a = frames(&mut la.ws, Duration::from_millis(1500)).await;
    let got_b = frames(&mut wb, Duration::from_millis(500)).await;
    let leaks = |fs: &[Value], theirs: &[String], list: Option<i64>| -> Vec<String> {
        fs.iter()
            .map(|f| f.to_string())
            .filter(|t| {
                theirs.iter().any(|i| t.contains(i.as_str()))
                    || list.is_some_and(|l| {
                        t.contains("call_list") && t.contains(&format!("\"list_id\":{l}"))
                            || t.contains("call_list.updated") && t.contains(&format!("\"id\":{l}"))
                    })
            })
            .collect()
    };
    assert!(
        leaks(&got_a, &idb, Some(list_id)).is_empty(),
        "A's socket got B's: {:?}",
        leaks(&got_a, &idb, Some(list_id))
    );
    assert!(
        !leaks(&got_a, &ida, None).is_empty(),
        "A's socket got A's call events: {got_a:?}"
    );
    assert!(
        got_b
            .iter()
            .any(|f| f["type"] == "call.missed" && f["data"]["call_id"] == missed_b[0].as_str()),
        "B's socket got B's missed call: {got_b:?}"
    );
    assert!(
        leaks(&got_b, &ida, None).is_empty(),
        "B's socket got A's: {:?}",
        leaks(&got_b, &ida, None)
    );
    // A live snapshot of B's answered call reached B, not A.
    assert!(
        got_b
            .iter()
            .any(|f| f["type"] == "call.live"
                && idb.iter().any(|i| f.to_string().contains(i.as_str()))),
        "B's live status: {got_b:?}"
    );
    // Replay after a reconnect: the same rule.
    let replay = la.replay(app).await;
    assert!(
        leaks(&replay, &idb, Some(list_id)).is_empty(),
        "replay leaked B's: {:?}",
        leaks(&replay, &idb, Some(list_id))
    );
    assert!(
        !leaks(&replay, &ida, None).is_empty(),
        "replay has A's calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_did_routes_after_hours_by_the_branch_hours() {
    let sh = shop().await;
    let app = &sh.app;
    let tel = &app.running().ctx.telephony;
    // The shop is open round the clock; branch B is closed today (a holiday around now).
    tel.save_call_rules(
        None,
        CallRules {
            hours: "mon-sun 00:00-24:00".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let days: Vec<String> = [today.previous_day(), Some(today), today.next_day()]
        .into_iter()
        .flatten()
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .collect();
    // Bad hours are refused, naming the value.
    let (s, v) = sh
        .admin
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{}", sh.b),
            json!({"name": "Chilonzor filiali", "sip_hours": "someday 09:00-10:00"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = sh
        .admin
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{}", sh.b),
            json!({"name": "Chilonzor filiali", "sip_hours": "mon-sun 00:00-24:00",
                "sip_holidays": days.join(", ")}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sip_holidays"], days.join(", "), "{v}");
    let mut events = app.running().ctx.call_events.subscribe();
    // Nobody's phone is registered: each call rings its destination and fails.
    let ringing = |evs: &[CallEvent], did: &str| -> Vec<String> {
        evs.iter()
            .filter_map(|e| match e {
                CallEvent::Ringing { to, extensions, .. } if to == did => Some(extensions.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let sip = app.sip_addr();
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let answer_a = uas("uas_answer.xml", ports[0], 1);
    let night = uas("uas_answer.xml", ports[1], 1);
    register_contact(sip, "1501", ports[0]).await;
    register_contact(sip, "1503", ports[1]).await;
    provider_calls(app, DID_A, true, 100).await;
    provider_calls(app, DID_B, true, 100).await;
    for k in [answer_a, night] {
        let r = wait_sipp(k).await;
        assert_eq!((r.ok, r.failed), (1, 0), "phone: {}", r.out);
    }
    let evs = drain(&mut events);
    assert_eq!(ringing(&evs, DID_A), vec!["1501".to_string()], "{evs:?}");
    assert_eq!(
        ringing(&evs, DID_B),
        vec!["1503".to_string()],
        "B is closed: its DID goes after hours: {evs:?}"
    );
    // The calls are still the DIDs' branches'.
    let b_calls = calls_to(&sh.admin, DID_B, 1).await;
    assert_eq!(b_calls[0]["branch_id"], sh.b);
    // The telephony page shows each DID's branch.
    let admin = app.login("admin", crate::support::ADMIN_PASSWORD).await;
    let page = admin.get("/telephony").await.text().await.unwrap();
    assert!(
        page.contains(&format!("data-did-branch=\"{}\"", sh.b)),
        "the DID's branch on the page"
    );
    let _ = sh.a;
}

/// The branches' operators and a customer of each (an order taken in their branch),
/// each writing to the bot from their own chat and sharing their phone.
#[tokio::test]
async fn conversations_of_branch_b_do_not_reach_branch_a() {
    let bot = crate::notify_peers::BotStandIn::start().await;
    let app = crate::notify::telegram_app(&bot).await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = two_branches_with(&admin, OPERATORS).await;
    let mut la = listen(&app, "opa").await;
    let mut convs = Vec::new();
    for (chat, phone, branch, name) in [
        (8101i64, "+998907650001", a, "Aziza Alieva"),
        (8102, "+998907650002", b, "Bobur Botirov"),
    ] {
        let customer = customer_with_order(&admin, name, phone, branch).await;
        bot.user_sends(
            chat,
            "uz",
            json!({"contact": {"phone_number": phone, "first_name": name, "user_id": chat}}),
        );
        bot.user_sends(
            chat,
            "uz",
            json!({"text": format!("Salom, {name} — телефон тайёрми?")}),
        );
        let conv = eventually(WAIT, || async {
            let (_, v) = admin.get("/api/v1/conversations?tab=all").await;
            v.as_array()?
                .iter()
                .find(|c| {
                    c["customer_id"] == customer
                        && c["last_preview"]
                            .as_str()
                            .is_some_and(|p| p.contains("Salom"))
                })
                .cloned()
        })
        .await
        .unwrap_or_else(|| panic!("the thread of chat {chat}"));
        convs.push(conv["id"].as_i64().unwrap());
    }
    let (ca, cb) = (convs[0], convs[1]);
    let opa = Api::of(&app, "opa").await;
    let opb = Api::of(&app, "opb").await;
    for (api, mine, theirs) in [(&opa, ca, cb), (&opb, cb, ca)] {
        for q in [
            "tab=all",
            "tab=unassigned",
            "tab=all&q=Salom",
            "tab=all&q=0002",
        ] {
            let (s, v) = api.get(&format!("/api/v1/conversations?{q}")).await;
            assert_eq!(s, 200, "{v}");
            let got: Vec<i64> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap())
                .collect();
            assert!(!got.contains(&theirs), "{q} leaks: {got:?}");
            if !q.ends_with("0002") {
                assert!(got.contains(&mine), "{q}: {got:?}");
            }
        }
        for path in [
            format!("/api/v1/conversations/{theirs}"),
            format!("/api/v1/conversations/{theirs}/messages"),
        ] {
            let (s, _) = api.get(&path).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        }
        for (path, body) in [
            (
                format!("/api/v1/conversations/{theirs}/messages"),
                json!({"text": "Tayyor"}),
            ),
            (format!("/api/v1/conversations/{theirs}/close"), json!({})),
            (
                format!("/api/v1/conversations/{theirs}/assign"),
                json!({"user_id": null}),
            ),
        ] {
            let (s, v) = api.post(&path, body).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        }
    }
    // The unread badge counts A's thread only; the pages neither list nor open B's.
    let (_, v) = opa.get("/api/v1/conversations/unread").await;
    assert_eq!(v["unread"].as_i64().or(v.as_i64()), Some(1), "{v}");
    let sa = app.login("opa", "branch-pass-1").await;
    let inbox = sa.get("/inbox").await.text().await.unwrap();
    assert!(
        !inbox.contains("Bobur Botirov"),
        "the inbox lists B's thread"
    );
    assert!(inbox.contains("Aziza Alieva"));
    let r = sa.get(&format!("/inbox/{cb}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = sa
        .post_form(&format!("/inbox/{cb}/reply"), &[("text", "Tayyor")])
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    // B's thread is unchanged: no reply from A.
    let (_, msgs) = opb
        .get(&format!("/api/v1/conversations/{cb}/messages"))
        .await;
    assert!(
        msgs.as_array()
            .unwrap()
            .iter()
            .all(|m| m["direction"] != "out"),
        "{msgs}"
    );
    // B's operator answers B's customer: A's socket hears nothing of it (nor of B's
    // thread arriving), on the wire or on replay.
    let (s, v) = opb
        .post(
            &format!("/api/v1/conversations/{cb}/messages"),
            json!({"text": "Ha, tayyor — забирайте"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let about = |f: &Value, id: i64| {
        f["data"]["conversation"]["id"] == id || f["data"]["conversation_id"] == id
    };
    let got = frames(&mut la.ws, Duration::from_millis(1500)).await;
    assert!(
        got.iter().any(|f| about(f, ca)),
        "A's thread events: {got:?}"
    );
    assert!(
        !got.iter().any(|f| about(f, cb)),
        "A got B's thread: {got:?}"
    );
    let replay = la.replay(&app).await;
    assert!(replay.iter().any(|f| about(f, ca)), "replay: {replay:?}");
    assert!(
        !replay.iter().any(|f| about(f, cb)),
        "replay leaked B's: {replay:?}"
    );
}

/// Customers are shared by default; with "keep customers per branch" on, a user of
/// branch A neither sees, finds, exports nor changes a customer of branch B (one with an
/// order there, or one created there).
#[tokio::test]
async fn customers_kept_per_branch_stay_in_their_branch() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = two_branches_with(&admin, OPERATORS).await;
    let opa = Api::of(&app, "opa").await;
    let opb = Api::of(&app, "opb").await;
    let mut ids = Vec::new();
    for (name, phone, branch) in [
        ("Aziza Alieva", "+998907650011", a),
        ("Bobur Botirov", "+998907650022", b),
    ] {
        ids.push(customer_with_order(&admin, name, phone, branch).await);
    }
    // B's operator adds a customer with no order yet: created in B.
    let cn = new_customer(&opb, "Baxtiyor Bekov", "+998907650033").await;
    let (ca, cb) = (ids[0], ids[1]);
    // Shared (the default): A's operator opens B's customer.
    let (s, _) = opa.get(&format!("/api/v1/customers/{cb}")).await;
    assert_eq!(s, 200);
    // Only an admin turns it on; bad input changes nothing.
    let (s, _) = opa
        .send(
            Method::PUT,
            "/api/v1/customer-scope",
            json!({"per_branch": true}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = admin
        .send(
            Method::PUT,
            "/api/v1/customer-scope",
            json!({"per_branch": "ha"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = opa.get(&format!("/api/v1/customers/{cb}")).await;
    assert_eq!(s, 200, "still shared");
    let v = keep_customers_per_branch(&admin).await;
    assert_eq!(v["per_branch"], true);

    for (api, mine, theirs) in [
        (&opa, vec![ca], vec![cb, cn]),
        (&opb, vec![cb, cn], vec![ca]),
    ] {
        let (s, v) = api.get("/api/v1/customers?limit=100").await;
        assert_eq!(s, 200, "{v}");
        let got: Vec<i64> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        assert!(mine.iter().all(|i| got.contains(i)), "{got:?}");
        assert!(theirs.iter().all(|i| !got.contains(i)), "leak: {got:?}");
        for id in &theirs {
            let (s, _) = api.get(&format!("/api/v1/customers/{id}")).await;
            assert_eq!(s, StatusCode::NOT_FOUND);
            let (s, _) = api
                .send(
                    Method::PUT,
                    &format!("/api/v1/customers/{id}"),
                    json!({"version": 1, "name": "Boshqa", "phones": ["+998907659999"]}),
                )
                .await;
            assert_eq!(s, StatusCode::NOT_FOUND);
        }
        for id in &mine {
            let (s, _) = api.get(&format!("/api/v1/customers/{id}")).await;
            assert_eq!(s, 200);
        }
    }
    let (_, v) = opa.get("/api/v1/customers/lookup?phone=907650022").await;
    assert_eq!(v, json!([]), "lookup finds B's customer");
    let (_, v) = opa.get("/api/v1/search?q=Botirov").await;
    assert!(
        !v.to_string().contains("Botirov"),
        "search finds B's customer: {v}"
    );
    let (_, v) = opb.get("/api/v1/search?q=Botirov").await;
    assert!(v.to_string().contains("Botirov"), "B's search: {v}");
    let sa = app.login("opa", "branch-pass-1").await;
    for path in ["/customers", "/customers/export.csv"] {
        let text = sa.get(path).await.text().await.unwrap();
        assert!(text.contains("Aziza Alieva"), "{path}");
        assert!(
            !text.contains("Botirov") && !text.contains("Bekov"),
            "{path} leaks"
        );
    }
    assert_eq!(sa.get(&format!("/customers/{cb}")).await.status(), 404);
    // Unchanged by A's refused writes.
    let (_, v) = admin.get(&format!("/api/v1/customers/{cb}")).await;
    assert_eq!(v["name"], "Bobur Botirov");
    // Off again: shared.
    let r = app
        .login_admin()
        .await
        .post_form("/branches/customer-scope", &[])
        .await;
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let (s, _) = opa.get(&format!("/api/v1/customers/{cb}")).await;
    assert_eq!(s, 200);
}

/// A user's socket, opened and past its hello.
async fn socket(app: &TestApp, user: &str) -> crate::live::Ws {
    listen(app, user).await.ws
}

/// The frames of `kind` a socket gets until one matches `last` (sent after the others).
async fn until(ws: &mut crate::live::Ws, kind: &str, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = next_any(ws, WAIT)
            .await
            .unwrap_or_else(|| panic!("no {kind} after {out:?}"));
        if f["type"] == kind {
            let done = last(&f);
            out.push(f);
            if done {
                return out;
            }
        }
    }
}

async fn customer_version(admin: &Api, id: i64) -> i64 {
    let (s, v) = admin.get(&format!("/api/v1/customers/{id}")).await;
    assert_eq!(s, 200, "{v}");
    v["version"].as_i64().unwrap()
}

/// With customers kept per branch, nothing about a customer of branch B reaches a user
/// of branch A: their live events, a phone conflict's message, an import's match, a
/// segment's count and members, a broadcast's recipients. Extensions have a branch of
/// their own; a shop-wide call's screen-pop shows each recipient only their branches'
/// orders; a user's new targets reach only the viewers of that user's branches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_per_branch_extensions_and_pops_keep_to_the_branch() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = two_branches_with(&admin, OPERATORS_AND_MGA).await;
    let (s, v) = admin
        .post("/api/v1/branches", json!({"name": "Yunusobod filiali"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let c = v["id"].as_i64().unwrap();
    // Two users of two branches each: their phones make a call shop-wide.
    for (user, branches) in [("opac", [a, c]), ("opbc", [b, c])] {
        let (s, v) = admin
            .post(
                "/api/v1/users",
                json!({"username": user, "display_name": user, "role": "operator",
                    "branch_ids": branches, "password": "branch-pass-1"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    // Aziza of A, Bobur of B, Karim of both; every one agreed to offers.
    let mut ids = Vec::new();
    let mut orders = Vec::new();
    for (name, phone, branches) in [
        ("Aziza Alieva", "+998907650011", vec![a]),
        ("Bobur Botirov", "+998907650022", vec![b]),
        ("Karim Ikkiyev", "+998907650044", vec![a, b]),
    ] {
        let (s, v) = admin
            .post(
                "/api/v1/customers",
                json!({"name": name, "phones": [phone], "marketing_opt_in": true}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_i64().unwrap();
        for br in branches {
            let o = new_order(&admin, id, json!({"branch_id": br})).await;
            orders.push((id, br, o["number"].as_str().unwrap().to_string()));
        }
        ids.push(id);
    }
    let (ca, cb, ck) = (ids[0], ids[1], ids[2]);
    keep_customers_per_branch(&admin).await;

    // Live: a change of B's customer reaches B's operator, not A's.
    let mut wa = socket(&app, "opa").await;
    let mut wb = socket(&app, "opb").await;
    for id in [cb, ca] {
        let version = customer_version(&admin, id).await;
        let (s, v) = admin
            .send(
                Method::PUT,
                &format!("/api/v1/customers/{id}"),
                json!({"version": version, "name": if id == ca { "Aziza Aliyeva" } else { "Bobur Botirov" },
                    "phones": [if id == ca { "+998907650011" } else { "+998907650022" }],
                    "marketing_opt_in": true}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let got = until(&mut wa, "customer.updated", |f| f["data"]["id"] == ca).await;
    assert!(
        got.iter().all(|f| f["data"]["id"] != cb),
        "B's customer reached A: {got:?}"
    );
    let got = until(&mut wb, "customer.updated", |f| f["data"]["id"] == cb).await;
    assert!(got.iter().all(|f| f["data"]["id"] != ca), "{got:?}");

    // A phone of B's customer is no conflict for A's operator (another base), and the
    // answer names nobody of B; B's own operator is told whose it is.
    let opa = Api::of(&app, "opa").await;
    let opb = Api::of(&app, "opb").await;
    let (s, v) = opa
        .post(
            "/api/v1/customers",
            json!({"name": "Boshqa Mijoz", "phones": ["+998907650022"]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains("Botirov"), "{v}");
    let a_own = v["id"].as_i64().unwrap();
    let (s, v) = opb
        .post(
            "/api/v1/customers",
            json!({"name": "Boshqa Mijoz", "phones": ["+998907650022"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("Bobur Botirov"), "{v}");
    let (s, _) = opb.get(&format!("/api/v1/customers/{a_own}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "A's new customer is A's");
    // The page's message too.
    let page = app.login("opa", "branch-pass-1").await;
    let r = page
        .post_form(
            "/customers",
            &[("name", "Uchinchi"), ("phone1", "+998907650022")],
        )
        .await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("Botirov"), "the form names B's customer");

    // Import by A's admin: B's phone matches A's own customer with it (never B's), A's
    // merges, a new one is of A.
    let mga = Api::of(&app, "mga").await;
    let csv = "name,phone\nBobur Yangi,+998 90 765 00 22\nAziza Yangi,+998 90 765 00 11\n\
               Yangi Mijoz,+998 90 765 00 77\n";
    let (s, v) = crate::imports::import(&mga, "?file_name=a.csv", csv.as_bytes().to_vec()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["outcome"]["created"], 1, "{v}");
    assert_eq!(v["outcome"]["merged"], 2, "{v}");
    assert_eq!(v["rows"][0]["customer_id"], a_own, "{v}");
    assert!(!v.to_string().contains("Botirov"), "{v}");
    let (_, v) = admin.get(&format!("/api/v1/customers/{cb}")).await;
    assert_eq!(v["name"], "Bobur Botirov", "B's customer untouched");
    let (_, found) = opb.get("/api/v1/customers/lookup?phone=907650022").await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["id"], cb, "{found}");
    let (_, found) = opa.get("/api/v1/customers/lookup?phone=907650077").await;
    assert_eq!(
        found.as_array().unwrap().len(),
        1,
        "A's new customer: {found}"
    );
    let (_, found) = opb.get("/api/v1/customers/lookup?phone=907650077").await;
    assert_eq!(found, json!([]), "A's new customer reaches B");

    // Segments and broadcasts: A's users count and reach A's customers only.
    let (s, seg) = mga
        .post(
            "/api/v1/segments",
            json!({"name": "Rozilar", "filter": {"opted_in": true}}),
        )
        .await;
    assert_eq!(s, 201, "{seg}");
    let sid = seg["id"].as_i64().unwrap();
    assert_eq!(seg["count"], 2, "Aziza and Karim: {seg}");
    let (_, all) = admin.get(&format!("/api/v1/segments/{sid}")).await;
    assert_eq!(all["count"], 3, "{all}");
    let (_, v) = opa
        .get("/api/v1/segments/count?filter=%7B%22opted_in%22%3Atrue%7D")
        .await;
    assert_eq!(v["count"], 2, "{v}");
    let (_, v) = opb.get(&format!("/api/v1/segments/{sid}")).await;
    assert_eq!(v["count"], 2, "Bobur and Karim: {v}");
    let (_, members) = mga.get(&format!("/api/v1/segments/{sid}/customers")).await;
    let mut got: Vec<i64> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![ca, ck], "{members}");
    for (api, want) in [(&mga, 2), (&admin, 3)] {
        let (s, v) = api
            .post(
                "/api/v1/broadcasts",
                json!({"name": "Bahor", "segment_id": sid, "body": "Salom {name}!"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(
            v["queued"].as_i64().unwrap() + v["skipped"].as_i64().unwrap(),
            want,
            "{v}"
        );
    }

    // Extensions of their own branch: A's admin sees A's and shop-wide ones only; an
    // unknown branch is refused.
    for (number, user, branch) in [
        ("1601", Some("opac"), None),
        ("1602", Some("opbc"), None),
        ("1603", None, Some(b)),
        ("1604", None, Some(a)),
    ] {
        let (s, v) = admin
            .post(
                "/api/v1/telephony/extensions",
                json!({"number": number, "username": user, "branch_id": branch}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, _) = admin
        .post(
            "/api/v1/telephony/extensions",
            json!({"number": "1605", "branch_id": 999}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, v) = mga.get("/api/v1/telephony/extensions").await;
    let numbers: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["1601", "1602", "1604"], "{v}");
    let (_, v) = admin.get("/api/v1/telephony/extensions").await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["number"] == "1603" && e["branch_id"] == b),
        "{v}"
    );
    let page = app.login("mga", "branch-pass-1").await;
    let html = page.get("/telephony").await.text().await.unwrap();
    assert!(
        html.contains("1604") && !html.contains("<code>1603</code>"),
        "the page"
    );

    // A shop-wide call to both two-branch users: each pop lists their branches' orders.
    let mut wac = socket(&app, "opac").await;
    let mut wbc = socket(&app, "opbc").await;
    let events = app.running().ctx.call_events.clone();
    let ring = |call_id: &str, exts: &[&str]| inbound_ringing(call_id, "+998907650044", exts);
    events.send(ring("pop-1", &["1601", "1602"])).unwrap();
    let number = |br: i64| {
        orders
            .iter()
            .find(|(id, b, _)| *id == ck && *b == br)
            .map(|(_, _, n)| n.clone())
            .unwrap()
    };
    for (ws, mine, theirs) in [(&mut wac, a, b), (&mut wbc, b, a)] {
        let pop = crate::live::next_of(ws, "call.ringing", WAIT)
            .await
            .expect("the pop");
        let listed: Vec<&str> = pop["data"]["customer"]["orders"]
            .as_array()
            .unwrap_or_else(|| panic!("{pop}"))
            .iter()
            .map(|o| o["number"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [number(mine).as_str()], "{pop}");
        assert!(!pop.to_string().contains(&number(theirs)), "{pop}");
    }
    events.send(call_ended("pop-1", "cancelled")).unwrap();
    // An extension's own branch is the branch of a call to it with no other.
    events.send(ring("ext-b", &["1603"])).unwrap();
    events.send(call_ended("ext-b", "cancelled")).unwrap();
    let row = eventually(WAIT, || async {
        let (_, v) = admin.get("/api/v1/calls?limit=100").await;
        v["items"]
            .as_array()?
            .iter()
            .find(|k| k["call_id"] == "ext-b" && !k["ended_ms"].is_null())
            .cloned()
    })
    .await
    .expect("the call is logged");
    assert_eq!(row["branch_id"], b, "{row}");
    let (_, v) = mga.get("/api/v1/calls?limit=100").await;
    assert!(!v.to_string().contains("ext-b"), "B's call reaches A: {v}");

    // Targets for B's operator: B's viewers hear it, A's do not.
    let (opb_id, opa_id) = (user_id(&admin, "opb").await, user_id(&admin, "opa").await);
    let targets =
        json!({"calls": 40, "reached": 20, "talk_minutes": 60, "orders": 5, "payments": 0});
    for user in [opb_id, opa_id] {
        let (s, v) = admin
            .send(
                Method::PUT,
                "/api/v1/progress/targets",
                json!({"user_id": user, "targets": targets}),
            )
            .await;
        assert_eq!(s, 204, "{v}");
    }
    let got = until(&mut wa, "progress.changed", |f| {
        f["data"]["user_id"] == opa_id
    })
    .await;
    assert!(
        got.iter().all(|f| f["data"]["user_id"] != opb_id),
        "B's targets reached A: {got:?}"
    );
    let got = until(&mut wb, "progress.changed", |f| {
        f["data"]["user_id"] == opb_id
    })
    .await;
    assert!(
        got.iter()
            .all(|f| f["data"]["user_id"].is_null() || f["data"]["user_id"] == opb_id),
        "{got:?}"
    );
}

/// With customers kept per branch, a shop-wide call (a number no branch owns) from B's
/// customer shows A's users the number alone, never the name or id: the call log, one
/// call, the CSV export, the missed calls, the live status (`call.live`, the header, the
/// API) and its replay. B's users see the customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_wide_call_names_the_customer_only_where_they_are_seen() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (_a, b) = two_branches_with(&admin, OPERATORS).await;
    let cb = new_customer(&admin, "Bobur Botirov", "+998907650022").await;
    let order_b = new_order(&admin, cb, json!({"branch_id": b})).await["number"]
        .as_str()
        .unwrap()
        .to_string();
    keep_customers_per_branch(&admin).await;
    let mut la = listen(&app, "opa").await;
    let mut wb = socket(&app, "opb").await;

    // Bobur rings an extension of no branch, and it is answered: a shop-wide call.
    let events = app.running().ctx.call_events.clone();
    let ring = |call_id: &str| inbound_ringing(call_id, "+998907650022", &["1699"]);
    events.send(ring("wide-1")).unwrap();
    events
        .send(CallEvent::Answered {
            call_id: "wide-1".into(),
            extension: "1699".into(),
        })
        .unwrap();
    let on_call = |f: &Value| f.to_string().contains("wide-1");
    let got = until(&mut wb, "call.live", on_call).await;
    assert!(
        got.last().unwrap().to_string().contains("Bobur Botirov"),
        "B sees their customer: {got:?}"
    );
    let got = until(&mut la.ws, "call.live", on_call).await;
    let live = got.last().unwrap();
    assert!(
        !live.to_string().contains("Botirov"),
        "call.live leaks: {live}"
    );
    let call = &live["data"]["calls"][0];
    assert_eq!(call["number"], "+998907650022", "{live}");
    assert!(call["customer_id"].is_null(), "{live}");
    let opa = Api::of(&app, "opa").await;
    let opb = Api::of(&app, "opb").await;
    let (_, v) = opa.get("/api/v1/calls/live").await;
    assert!(v.to_string().contains("wide-1"), "{v}");
    assert!(
        !v.to_string().contains("Botirov"),
        "the live API leaks: {v}"
    );
    let (_, v) = opb.get("/api/v1/calls/live").await;
    assert!(v.to_string().contains("Bobur Botirov"), "{v}");
    let pa = app.login("opa", "branch-pass-1").await;
    let pb = app.login("opb", "branch-pass-1").await;
    let html = pa.get("/orders").await.text().await.unwrap();
    assert!(!html.contains("Botirov"), "the header's live call leaks");
    let html = pb.get("/orders").await.text().await.unwrap();
    assert!(html.contains("Bobur Botirov"), "B's header");
    events.send(call_ended("wide-1", "completed")).unwrap();
    // A second call nobody answers: a shop-wide missed call.
    events.send(ring("wide-2")).unwrap();
    events.send(call_ended("wide-2", "no_answer")).unwrap();
    for id in ["wide-1", "wide-2"] {
        eventually(WAIT, || async {
            let (_, v) = admin.get(&format!("/api/v1/calls/{id}")).await;
            (!v["ended_ms"].is_null()).then_some(())
        })
        .await
        .expect("the call is logged");
    }

    // The log, one call, the export, the missed calls: the number alone for A.
    let (_, v) = opa.get("/api/v1/calls?limit=100").await;
    let rows = v["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "A sees the shop-wide calls: {v}");
    for r in rows {
        assert_eq!(r["party_number"], "+998907650022", "{r}");
        assert!(
            r["customer_id"].is_null() && r["customer_name"].is_null(),
            "{r}"
        );
        // Nor B's order of that customer.
        assert_eq!(r["open_orders"], json!([]), "{r}");
    }
    let (_, v) = opa.get("/api/v1/calls/wide-1").await;
    assert!(
        v["customer_id"].is_null() && v["customer_name"].is_null(),
        "{v}"
    );
    assert_eq!(v["open_orders"], json!([]), "{v}");
    let (_, v) = opa.get("/api/v1/calls/missed").await;
    assert_eq!(v["items"][0]["number"], "+998907650022", "{v}");
    assert!(!v.to_string().contains("Botirov"), "missed calls leak: {v}");
    assert!(v["items"][0]["customer_id"].is_null(), "{v}");
    for path in ["/calls", "/calls/export.csv", "/calls/missed"] {
        let text = pa.get(path).await.text().await.unwrap();
        assert!(
            !text.contains("Botirov") && !text.contains(&order_b),
            "{path} leaks"
        );
        let text = pb.get(path).await.text().await.unwrap();
        assert!(text.contains("Bobur Botirov"), "{path} for B");
    }
    let (_, v) = opb.get("/api/v1/calls?limit=100").await;
    assert_eq!(
        v["items"][0]["open_orders"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["customer_id"] == cb),
        "{v}"
    );
    let (_, v) = opb.get("/api/v1/calls/missed").await;
    assert_eq!(v["items"][0]["customer_id"], cb, "{v}");

    // A's own customer with the same number: A's log names them, B's still B's.
    let ca2 = new_customer(&opa, "Anvar Aliyev", "+998907650022").await;
    for (api, id, name) in [(&opa, ca2, "Anvar Aliyev"), (&opb, cb, "Bobur Botirov")] {
        let (_, v) = api.get("/api/v1/calls?limit=100").await;
        let rows = v["items"].as_array().unwrap();
        assert!(
            rows.iter()
                .all(|r| r["customer_id"] == id && r["customer_name"] == name),
            "{v}"
        );
        let (_, v) = api.get("/api/v1/calls/missed").await;
        assert_eq!(v["items"][0]["customer_id"], id, "{v}");
    }
    let text = pa.get("/calls").await.text().await.unwrap();
    assert!(text.contains("Anvar Aliyev") && !text.contains("Botirov"));

    // Replay after a reconnect: the same snapshots, the same rule.
    let replay = la.replay(&app).await;
    assert!(
        replay
            .iter()
            .any(|f| f["type"] == "call.live" && f.to_string().contains("wide-1")),
        "replay: {replay:?}"
    );
    assert!(
        replay.iter().all(|f| !f.to_string().contains("Botirov")),
        "replay leaks: {replay:?}"
    );
}

/// A customer's PUT by `api` with these phones (the version read first).
async fn set_phones(
    api: &Api,
    admin: &Api,
    id: i64,
    name: &str,
    phones: &[&str],
) -> (StatusCode, Value) {
    let version = customer_version(admin, id).await;
    api.send(
        Method::PUT,
        &format!("/api/v1/customers/{id}"),
        json!({"version": version, "name": name, "phones": phones}),
    )
    .await
}

/// Aziza's own phone and Жасур's.
const AZIZA_WITH_JASURS: &[&str] = &["+998907653333", "+998907651111"];

/// Editing a customer's phones checks them as creating one does: a phone of a customer
/// the editor sees is a conflict naming them (in the editor's language), a phone of
/// another branch's customer is another base's; a refused edit writes nothing, and of
/// two edits racing for one phone exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_phones_checks_them_as_creating_does() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = two_branches_with(&admin, OPERATORS).await;
    let mut ids = Vec::new();
    for (name, phone, branch) in [
        ("Жасур Каримов", "+998907651111", a),
        ("Bobur Botirov", "+998907652222", b),
        ("Aziza Alieva", "+998907653333", a),
        ("Dilnoza Rahimova", "+998907655555", a),
    ] {
        let id = new_customer(&admin, name, phone).await;
        new_order(&admin, id, json!({"branch_id": branch})).await;
        ids.push(id);
    }
    let (cj, ca, cd) = (ids[0], ids[2], ids[3]);
    keep_customers_per_branch(&admin).await;
    let opa = Api::of(&app, "opa").await;

    // A's operator gives Aziza Жасур's phone: refused, naming Жасур, in Russian too.
    let (s, v) = set_phones(&opa, &admin, ca, "Aziza Alieva", AZIZA_WITH_JASURS).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("Жасур Каримов"), "{v}");
    let version = customer_version(&admin, ca).await;
    let r = opa
        .c
        .put(format!("{}/api/v1/customers/{ca}", opa.base))
        .bearer_auth(&opa.token)
        .header("Accept-Language", "ru")
        .json(&json!({"version": version, "name": "Aziza", "phones": ["+998 90 765 11 11"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("уже записан за клиентом") && text.contains("Жасур Каримов"),
        "{text}"
    );
    // Nothing written: the name, the phones and the version as they were.
    let (_, v) = admin.get(&format!("/api/v1/customers/{ca}")).await;
    assert_eq!(v["name"], "Aziza Alieva", "{v}");
    assert_eq!(v["phones"], json!(["+998907653333"]), "{v}");
    assert_eq!(v["version"], version, "{v}");
    // The card's form says the same.
    let page = app.login("opa", "branch-pass-1").await;
    let r = page
        .post_form(
            &format!("/customers/{ca}"),
            &[
                ("version", &version.to_string()),
                ("name", "Aziza Alieva"),
                ("phone1", "+998907653333"),
                ("phone2", "+998907651111"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let text = r.text().await.unwrap();
    assert!(text.contains("Жасур Каримов"), "the form's message");
    // A form without its version is refused in the user's language.
    let r = page
        .post_form(
            &format!("/customers/{ca}"),
            &[("name", "Aziza Alieva"), ("phone1", "+998907653333")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!r.text().await.unwrap().contains("version missing"));
    // B's customer's phone is another base's: allowed, and Bobur is never named.
    let (s, v) = set_phones(
        &opa,
        &admin,
        ca,
        "Aziza Alieva",
        &["+998907653333", "+998907652222"],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains("Botirov"), "{v}");
    // An admin of every branch sees Bobur: giving Жасур B's phone names him.
    let (s, v) = set_phones(
        &admin,
        &admin,
        cj,
        "Жасур Каримов",
        &["+998907651111", "+998907652222"],
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("Bobur Botirov"), "{v}");
    // A role that may edit customers but not view them is told "another customer",
    // never who, on an edit and on a new customer alike.
    let (s, v) = admin
        .post(
            "/api/v1/roles",
            json!({"key": "tahrirchi", "name": "Tahrirchi", "base": "operator",
                "permissions": ["customers.edit"]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin
        .post(
            "/api/v1/users",
            json!({"username": "tahrir", "display_name": "Tahrir", "role": "tahrirchi",
                "password": "branch-pass-1"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let editor = Api::of(&app, "tahrir").await;
    let (s, v) = set_phones(&editor, &admin, ca, "Aziza Alieva", AZIZA_WITH_JASURS).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("another customer") && text.contains("+998907651111"),
        "{v}"
    );
    assert!(
        !text.contains("Жасур") && !text.contains(&format!("#{cj}")),
        "{v}"
    );
    let (s, v) = editor
        .post(
            "/api/v1/customers",
            json!({"name": "Yangi", "phones": ["+998907651111"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(!v.to_string().contains("Жасур"), "{v}");

    // Keeping one's own phones and renaming is no conflict; a bad phone is refused.
    let (s, v) = set_phones(&opa, &admin, cj, "Жасур Каримович", &["+998907651111"]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Жасур Каримович", "{v}");
    let (s, v) = set_phones(&opa, &admin, cj, "Жасур", &["12"]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Two edits race to give one new phone to Жасур and to Dilnoza: one wins.
    let (vj, vd) = (
        customer_version(&admin, cj).await,
        customer_version(&admin, cd).await,
    );
    let put = |id: i64, version: i64, name: &'static str, own: &'static str| {
        let opa = &opa;
        async move {
            opa.send(
                Method::PUT,
                &format!("/api/v1/customers/{id}"),
                json!({"version": version, "name": name, "phones": [own, "+998907657777"]}),
            )
            .await
        }
    };
    let ((sj, rj), (sd, rd)) = tokio::join!(
        put(cj, vj, "Жасур Каримович", "+998907651111"),
        put(cd, vd, "Dilnoza Rahimova", "+998907655555"),
    );
    let mut statuses = [sj.as_u16(), sd.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{rj} {rd}");
    let (_, found) = opa.get("/api/v1/customers/lookup?phone=907657777").await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let (loser, before, named) = if sj == 200 {
        (cd, vd, "Жасур")
    } else {
        (cj, vj, "Dilnoza")
    };
    assert!((if sj == 200 { &rd } else { &rj })
        .to_string()
        .contains(named));
    let (_, v) = admin.get(&format!("/api/v1/customers/{loser}")).await;
    assert_eq!(v["version"], before, "the loser is untouched: {v}");
    assert!(!v["phones"].to_string().contains("+998907657777"), "{v}");
}

/// An extension's branch is changed on the telephony page and through the API (a
/// branch-scoped admin only among their branches' and shop-wide extensions, into their
/// branches), and `crm extension list` shows it (or `shop`).
#[tokio::test]
async fn an_extensions_branch_changes_on_the_page_the_api_and_shows_in_the_cli() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = two_branches_with(&admin, &[("mga", "admin", false)]).await;
    for (number, branch) in [("1701", None), ("1702", Some(b)), ("1703", None)] {
        let (s, v) = admin
            .post(
                "/api/v1/telephony/extensions",
                json!({"number": number, "branch_id": branch}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let branch_of = |number: &'static str| {
        let admin = &admin;
        async move {
            let (_, v) = admin.get("/api/v1/telephony/extensions").await;
            v.as_array()
                .unwrap()
                .iter()
                .find(|e| e["number"] == number)
                .unwrap_or_else(|| panic!("{number}: {v}"))["branch_id"]
                .clone()
        }
    };
    // The shop's admin moves 1701 to B.
    let (s, v) = put_ext_branch(&admin, "1701", json!({"branch_id": b})).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(branch_of("1701").await, json!(b));
    // A's admin: B's extensions are not found, B is not theirs to give, nor is a branch
    // that does not exist; a bad body and an unknown extension are refused.
    let mga = Api::of(&app, "mga").await;
    for number in ["1701", "1702"] {
        let (s, v) = put_ext_branch(&mga, number, json!({"branch_id": a})).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{number}: {v}");
    }
    let (s, v) = put_ext_branch(&mga, "1703", json!({"branch_id": b})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = put_ext_branch(&mga, "1703", json!({"branch_id": 999})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _) = put_ext_branch(&mga, "1703", json!({"branch_id": "A"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = put_ext_branch(&mga, "1799", json!({"branch_id": a})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(branch_of("1703").await, Value::Null, "unchanged");
    assert_eq!(branch_of("1702").await, json!(b), "unchanged");
    // A's admin cannot touch B's extension another way either.
    let (s, _) = mga
        .send(
            Method::DELETE,
            "/api/v1/telephony/extensions/1702",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Into A: theirs.
    let (s, v) = put_ext_branch(&mga, "1703", json!({"branch_id": a})).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(branch_of("1703").await, json!(a));

    // The page: a choice per extension; empty is the whole shop, junk is refused.
    let page = app.login_admin().await;
    let html = page.get("/telephony").await.text().await.unwrap();
    assert!(
        html.contains("data-branch-of=\"1701\""),
        "the page's choice"
    );
    let r = page
        .post_form("/telephony/extensions/1701/branch", &[("branch", "")])
        .await;
    assert!(
        r.status().is_redirection() || r.status().is_success(),
        "{}",
        r.status()
    );
    assert_eq!(branch_of("1701").await, Value::Null);
    let r = page
        .post_form("/telephony/extensions/1701/branch", &[("branch", "abc")])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(branch_of("1701").await, Value::Null);
    let mine = app.login("mga", "branch-pass-1").await;
    let r = mine
        .post_form(
            "/telephony/extensions/1701/branch",
            &[("branch", &b.to_string())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(branch_of("1701").await, Value::Null);
    let html = mine.get("/telephony").await.text().await.unwrap();
    let choice = html
        .split("data-branch-of=\"1703\"")
        .nth(1)
        .and_then(|rest| rest.split("</select>").next())
        .expect("1703's choice");
    assert!(choice.contains(&format!("value=\"{a}\"")), "{choice}");
    assert!(
        !choice.contains(&format!("value=\"{b}\"")),
        "A's admin is offered B: {choice}"
    );

    // The CLI lists each extension's branch, or `shop`.
    let out = crate::changes::crm(&app, &["extension", "list"], "").await;
    let line = |n: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{n}\t")))
            .unwrap_or_else(|| panic!("{n}: {out}"))
            .split('\t')
            .nth(4)
            .unwrap()
            .to_string()
    };
    assert_eq!(line("1701"), "shop", "{out}");
    assert_eq!(line("1702"), b.to_string(), "{out}");
    assert_eq!(line("1703"), a.to_string(), "{out}");
}

/// `PUT /api/v1/telephony/extensions/{number}/branch` by `api`.
async fn put_ext_branch(api: &Api, number: &str, body: Value) -> (StatusCode, Value) {
    api.send(
        Method::PUT,
        &format!("/api/v1/telephony/extensions/{number}/branch"),
        body,
    )
    .await
}

/// Broadcasts keep to their sender's branches: one sent by A's admin is listed (and
/// announced live) only to users who see A, and every viewer counts only the recipients
/// among the customers they see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_keep_to_their_senders_branches() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) =
        two_branches_with(&admin, &[("mga", "admin", false), ("mgb", "admin", true)]).await;
    // E-mail set up (nobody listens: the messages wait in the outbox, which is all the
    // results count).
    app.plain_smtp(free_port()).await;
    for (name, phone, email, branch) in [
        ("Aziza Alieva", "+998907650011", "aziza@example.uz", a),
        ("Bobur Botirov", "+998907650022", "bobur@example.uz", b),
    ] {
        let (s, v) = admin
            .post(
                "/api/v1/customers",
                json!({"name": name, "phones": [phone], "email": email, "marketing_opt_in": true}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        new_order(
            &admin,
            v["id"].as_i64().unwrap(),
            json!({"branch_id": branch}),
        )
        .await;
    }
    keep_customers_per_branch(&admin).await;
    let (s, seg) = admin
        .post(
            "/api/v1/segments",
            json!({"name": "Rozilar", "filter": {"opted_in": true}}),
        )
        .await;
    assert_eq!(s, 201, "{seg}");
    let mut wb = socket(&app, "mgb").await;
    let mga = Api::of(&app, "mga").await;
    let mgb = Api::of(&app, "mgb").await;
    let mut sent = Vec::new();
    for (api, name, want) in [(&mga, "A aksiyasi", 1), (&admin, "Hammaga", 2)] {
        let (s, v) = api
            .post(
                "/api/v1/broadcasts",
                json!({"name": name, "segment_id": seg["id"], "body": "Salom {name}!",
                    "channels": ["email"]}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["queued"], want, "{v}");
        sent.push(v["id"].as_i64().unwrap());
    }
    let (of_a, everyone) = (sent[0], sent[1]);
    // Live: B's admin hears of the shop's broadcast, never of A's.
    let got = until(&mut wb, "broadcast.created", |f| {
        f["data"]["id"] == everyone
    })
    .await;
    assert!(
        got.iter().all(|f| f["data"]["id"] != of_a),
        "A's broadcast reached B: {got:?}"
    );
    // Listed: B's admin sees the shop's broadcast with B's recipient only; A's is not
    // found (API and pages).
    let row = |v: &Value, id: i64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .cloned()
    };
    let (_, v) = mgb.get("/api/v1/broadcasts").await;
    assert!(row(&v, of_a).is_none(), "B lists A's broadcast: {v}");
    let mine = row(&v, everyone).expect("the shop's broadcast");
    assert_eq!(mine["queued"], 1, "{mine}");
    assert_eq!(
        mine["results"]["by_channel"],
        json!([["email", 1]]),
        "{mine}"
    );
    let (s, _) = mgb.get(&format!("/api/v1/broadcasts/{of_a}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let page = app.login("mgb", "branch-pass-1").await;
    let html = page.get("/broadcasts").await.text().await.unwrap();
    assert!(
        html.contains("Hammaga") && !html.contains("A aksiyasi"),
        "the page"
    );
    assert_eq!(page.get(&format!("/broadcasts/{of_a}")).await.status(), 404);
    // A's admin sees both, each counted among A's customers; the shop's admin all.
    let (_, v) = mga.get("/api/v1/broadcasts").await;
    assert_eq!(row(&v, of_a).expect("A's own")["queued"], 1, "{v}");
    assert_eq!(row(&v, everyone).expect("the shop's")["queued"], 1, "{v}");
    let (_, v) = admin.get("/api/v1/broadcasts").await;
    assert_eq!(row(&v, of_a).expect("A's")["queued"], 1, "{v}");
    assert_eq!(row(&v, everyone).expect("the shop's")["queued"], 2, "{v}");
    let (_, v) = admin.get(&format!("/api/v1/broadcasts/{everyone}")).await;
    assert_eq!(v["results"]["by_channel"], json!([["email", 2]]), "{v}");
}

/// With customers kept per branch, a shop-wide call list built from a segment of every
/// branch's customers shows each branch's user only the customers they see: the items,
/// the counts, the queue, taking, and the live item events. Everyone's customers (created
/// by a user of every branch, no order) stay on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_wide_call_list_keeps_to_each_branchs_customers() {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    two_branches_with(&admin, OPERATORS).await;
    let opa = Api::of(&app, "opa").await;
    let opb = Api::of(&app, "opb").await;
    let mut ids = Vec::new();
    for (api, name, phone) in [
        (&opa, "Aziza Alieva", "+998907651011"),
        (&opb, "Bobur Botirov", "+998907651022"),
        (&opb, "Баxтиёр Беков", "+998907651033"),
        (&admin, "Umumiy Mijoz", "+998907651044"),
    ] {
        let (s, v) = api
            .post(
                "/api/v1/customers",
                json!({"name": name, "phones": [phone], "tags": "qaytaqongiroq"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    keep_customers_per_branch(&admin).await;
    let (s, seg) = admin
        .post(
            "/api/v1/segments",
            json!({"name": "Hammasi", "filter": {"tags": ["qaytaqongiroq"]}}),
        )
        .await;
    assert_eq!(s, 201, "{seg}");
    let (s, list) = admin
        .post(
            "/api/v1/call-lists",
            json!({"name": "Butun do‘kon", "source": "segment", "source_ref": seg["id"]}),
        )
        .await;
    assert_eq!(s, 201, "{list}");
    let lid = list["id"].as_i64().unwrap();
    let all = items_of(&admin, lid).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let item_of = |cid: i64| all.iter().find(|(c, _)| *c == cid).unwrap().1;
    let (ca, cb, cn, cs) = (ids[0], ids[1], ids[2], ids[3]);
    let seen = |v: Vec<(i64, i64)>| v.into_iter().map(|(c, _)| c).collect::<Vec<_>>();
    assert_eq!(seen(items_of(&opa, lid).await), vec![ca, cs], "A's items");
    assert_eq!(
        seen(items_of(&opb, lid).await),
        vec![cb, cn, cs],
        "B's items"
    );
    for (api, want) in [(&opa, 2), (&opb, 3), (&admin, 4)] {
        let (_, v) = api.get(&format!("/api/v1/call-lists/{lid}")).await;
        assert_eq!(v["pending"], want, "{v}");
        let (_, v) = api.get("/api/v1/call-lists").await;
        let row = v
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == lid)
            .cloned();
        assert_eq!(row.unwrap()["pending"], want);
    }
    let sa = app.login("opa", "branch-pass-1").await;
    let page = sa
        .get(&format!("/call-lists/{lid}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Aziza Alieva"), "A's list page");
    assert!(
        !page.contains("Botirov") && !page.contains("Беков"),
        "A's list page shows B's customers"
    );

    // A's operator may not take B's customer, and the queue never offers one.
    let (s, _) = opa
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{}/take", item_of(cb)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // B works Bobur while A's socket listens; A then finishes its own two.
    let mut wsa = socket(&app, "opa").await;
    let (s, v) = opb
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{}/take", item_of(cb)),
            json!({}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = opb
        .post(
            &format!("/api/v1/call-lists/{lid}/items/{}/outcome", item_of(cb)),
            json!({"outcome": "will_come_in", "note": "Ertaga"}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let mut worked = Vec::new();
    for _ in 0..4 {
        let (s, v) = opa.post("/api/v1/queue/next", json!({})).await;
        assert!(s.is_success(), "{v}");
        if v.is_null() {
            break;
        }
        let id = v["item"]["id"].as_i64().unwrap();
        assert!(
            [item_of(ca), item_of(cs)].contains(&id),
            "the queue offers A another branch's customer: {v}"
        );
        let (s, v) = opa
            .post(
                &format!("/api/v1/call-lists/{lid}/items/{id}/outcome"),
                json!({"outcome": "will_come_in", "note": "Keladi"}),
            )
            .await;
        assert_eq!(s, 204, "{v}");
        worked.push(id);
    }
    let last = *worked.last().expect("A's queue offers A's items");
    worked.sort();
    assert_eq!(worked, vec![item_of(ca), item_of(cs)]);
    let got = until(&mut wsa, "call_list.item", |f| f["data"]["id"] == last).await;
    assert!(
        got.iter().all(|f| f["data"]["id"] != item_of(cb)),
        "B's customer's item event reached A: {got:?}"
    );
}

/// A list's items as `api` sees them: (customer, item) pairs, by customer.
async fn items_of(api: &Api, list: i64) -> Vec<(i64, i64)> {
    let (s, v) = api
        .get(&format!("/api/v1/call-lists/{list}/items?limit=50"))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut got: Vec<(i64, i64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["customer_id"].as_i64().unwrap(),
                i["id"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    got
}
