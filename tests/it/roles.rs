//! Roles the owner can shape and staff who work in a branch (issue 19): the branch
//! matrix (nothing of branch B reaches branch A's user: reads, writes, search, exports,
//! live events and their replay), the last-admin rule, bad input, live user events.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::core::{new_customer, new_order, Api};
use crate::live::{login_cookie, next_any, next_of, open};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

/// Two branches (A = the first, B = a new one), an operator of each, and an order in
/// each taken in by the admin.
struct Chain {
    app: TestApp,
    admin: Api,
    a: i64,
    b: i64,
    order_a: Value,
    order_b: Value,
}

async fn chain() -> Chain {
    let app = TestApp::spawn().await;
    let admin = Api::of(&app, "admin").await;
    let (a, b) = two_branches(
        &admin,
        json!({"name": "Chilonzor filiali", "address": "Chilonzor 5-mavze, 12",
            "phone": "71 200 00 05", "order_prefix": "ch", "hours": "Du–Sh 9:00–19:00"}),
        &[("opa", "operator", false), ("opb", "operator", true)],
    )
    .await;
    let ca = new_customer(&admin, "Aziz Karimov", "90 111 22 33").await;
    let cb = new_customer(&admin, "Botir Qodirov", "90 444 55 66").await;
    let order_a = new_order(&admin, ca, json!({"branch_id": a, "model": "Redmi Alfa"})).await;
    let order_b = new_order(&admin, cb, json!({"branch_id": b, "model": "Redmi Beta"})).await;
    Chain {
        app,
        admin,
        a,
        b,
        order_a,
        order_b,
    }
}

/// A concrete URL for a route pattern, with `id` for the order.
fn url_for(pattern: &str, id: i64) -> String {
    pattern
        .replace("{id}", &id.to_string())
        .replace("{line}", "1")
        .replace("{photo}", "1")
}

#[tokio::test]
async fn nothing_of_branch_b_reaches_branch_a() {
    let ch = chain().await;
    let app = &ch.app;
    let (na, nb) = (
        ch.order_a["number"].as_str().unwrap().to_string(),
        ch.order_b["number"].as_str().unwrap().to_string(),
    );
    let (ida, idb) = (
        ch.order_a["id"].as_i64().unwrap(),
        ch.order_b["id"].as_i64().unwrap(),
    );
    let opa = Api::of(app, "opa").await;
    let sa = app.login("opa", "branch-pass-1").await;

    // Lists, exports and search: A's order, never B's.
    let (s, v) = opa.get("/api/v1/orders").await;
    assert_eq!(s, 200);
    let numbers: Vec<&str> = v["items"]
        .as_array()
        .or(v.as_array())
        .unwrap()
        .iter()
        .map(|o| o["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, vec![na.as_str()], "{v}");
    // B's order as a page shows it (its link) or as data (its number, its model); a
    // page that echoes the typed query is checked by link and model only.
    let link = format!("/orders/{idb}\"");
    for path in [
        "/orders".to_string(),
        "/orders/export.csv".to_string(),
        "/my".to_string(),
        format!("/search?q={nb}"),
        "/search?q=Redmi".to_string(),
        format!("/search/suggest?q={nb}"),
        "/search/suggest?q=Redmi".to_string(),
        format!("/api/v1/search?q={nb}"),
        "/api/v1/search?q=Redmi".to_string(),
        format!("/orders?q={nb}"),
        "/".to_string(),
    ] {
        let r = sa.get(&path).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status}");
        let echoes = path.contains("q=") && !path.starts_with("/api/");
        assert!(
            echoes || !text.contains(&nb),
            "{path} shows branch B's order {nb}"
        );
        assert!(!text.contains(&link), "{path} links branch B's order");
        assert!(
            !text.contains("Redmi Beta"),
            "{path} shows branch B's order"
        );
    }
    assert!(sa.get("/orders").await.text().await.unwrap().contains(&na));
    assert!(sa
        .get("/orders/export.csv")
        .await
        .text()
        .await
        .unwrap()
        .contains(&na));
    let (_, found) = opa.get("/api/v1/search?q=Redmi").await;
    assert!(found.to_string().contains("Redmi Alfa"), "{found}");

    // Every order route, on B's order: it does not exist for A's user. On A's order the
    // reads work.
    let version_b = ch.order_b["version"].as_i64().unwrap();
    for spec in crm::web::routes::specs() {
        if !spec.path.contains("/orders/{id}") {
            continue;
        }
        let method = Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
        let body = json!({"version": version_b, "text": "x", "status": "diagnosis",
            "kind": "labour", "name": "Ish", "qty": 1, "unit_price": 1000, "amount": 1000,
            "master_id": null, "complaint": "o'zgardi"});
        let resp = if spec.path.starts_with("/api/") {
            opa.send(method.clone(), &url_for(spec.path, idb), body.clone())
                .await
                .0
        } else {
            let mut req = sa
                .client
                .request(method.clone(), sa.url(&url_for(spec.path, idb)));
            if method != Method::GET {
                req = req.header("x-csrf-token", &sa.csrf).form(&[
                    ("version", version_b.to_string()),
                    ("text", "x".into()),
                    ("amount", "1000".into()),
                ]);
            }
            req.send().await.unwrap().status()
        };
        // Reads: not found. Writes: refused before anything is written (not found, or
        // the input refused first), never done.
        let refused = if method == Method::GET {
            resp == StatusCode::NOT_FOUND
        } else {
            resp.is_client_error()
        };
        assert!(
            refused,
            "{} {} on branch B's order: {resp}",
            spec.method, spec.path
        );
        if method == Method::GET && !spec.path.contains("{photo}") {
            let r = sa.get(&url_for(spec.path, ida)).await;
            assert!(
                r.status().is_success(),
                "{} on A's own order: {}",
                spec.path,
                r.status()
            );
        }
    }
    // Nothing was written to B's order.
    let (_, b_now) = ch.admin.get(&format!("/api/v1/orders/{idb}")).await;
    assert_eq!(b_now["order"]["version"], ch.order_b["version"], "{b_now}");
    assert_eq!(b_now["order"]["total"], ch.order_b["total"]);
    assert_eq!(b_now["timeline"].as_array().unwrap().len(), 1, "{b_now}");

    // Customers are shared across branches, their orders and payments are not: B's
    // customer's card shows A's user neither B's order nor its payment.
    let (s, v) = ch
        .admin
        .post(
            &format!("/api/v1/orders/{idb}/payments"),
            json!({"kind": "payment", "amount": 777_000, "note": "filial-b-tolov"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let cb = ch.order_b["customer_id"].as_i64().unwrap();
    let card = sa.get(&format!("/customers/{cb}")).await;
    assert_eq!(card.status(), 200);
    let card = card.text().await.unwrap();
    assert!(card.contains("Botir Qodirov"), "the shared customer shows");
    assert!(
        !card.contains(&link) && !card.contains(&nb),
        "B's order on the card"
    );
    assert!(!card.contains("filial-b-tolov"), "B's payment on the card");
    let admin_card = ch
        .app
        .login_admin()
        .await
        .get(&format!("/customers/{cb}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        admin_card.contains("filial-b-tolov") || admin_card.contains("777"),
        "the admin sees it"
    );

    // Intake in B by A's user is refused; by default it lands in A's branch.
    let cust = ch.order_a["customer_id"].as_i64().unwrap();
    let (s, v) = opa
        .post(
            "/api/v1/orders",
            json!({"customer_id": cust, "branch_id": ch.b, "device_category": "phone",
                "complaint": "Yoqilmaydi"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let mine = new_order(&opa, cust, json!({})).await;
    assert_eq!(mine["branch_id"], ch.a);

    // The dashboard counts only A's orders.
    let accounts = &app.running().ctx.accounts;
    let actor = crm::domain::accounts::actor_of(&accounts.user_by_username("opa").await.unwrap());
    let clock = app.running().ctx.clock.get();
    let now = clock.now();
    let d = crm::domain::dashboard::load(
        &app.running().ctx.db,
        &clock,
        &actor,
        now - 86_400,
        now + 86_400,
        true,
        Default::default(),
    )
    .await
    .unwrap();
    let open: i64 = d.open_by_group.iter().map(|(_, n)| n).sum();
    assert_eq!(open, 2, "A's two open orders: {:?}", d.open_by_group);
    let admin_actor =
        crm::domain::accounts::actor_of(&accounts.user_by_username("admin").await.unwrap());
    let all = crm::domain::dashboard::load(
        &app.running().ctx.db,
        &clock,
        &admin_actor,
        now - 86_400,
        now + 86_400,
        true,
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(all.open_by_group.iter().map(|(_, n)| n).sum::<i64>(), 3);
}

#[tokio::test]
async fn live_events_and_replay_keep_to_the_branch() {
    let ch = chain().await;
    let app = &ch.app;
    let (ida, idb) = (
        ch.order_a["id"].as_i64().unwrap(),
        ch.order_b["id"].as_i64().unwrap(),
    );
    let origin = format!("http://{}", app.running().http_addr);
    let cookie_a = login_cookie(app, "opa", "branch-pass-1").await;
    let cookie_b = login_cookie(app, "opb", "branch-pass-1").await;
    let mut wa = open(app, Some(&cookie_a), Some(&origin), "").await.unwrap();
    let mut wb = open(app, Some(&cookie_b), Some(&origin), "").await.unwrap();
    let hello = next_of(&mut wa, "hello", WAIT).await.unwrap();
    let start = hello["seq"].as_u64().unwrap();
    next_of(&mut wb, "hello", WAIT).await.unwrap();
    // B's order changes first, then A's: A's socket must see A's change and nothing of B.
    for id in [idb, ida] {
        let (s, v) = ch
            .admin
            .post(
                &format!("/api/v1/orders/{id}/comments"),
                json!({"text": "Qo‘ng‘iroq qilindi"}),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    let mut seen_a = Vec::new();
    loop {
        let f = next_any(&mut wa, WAIT).await.expect("A's event arrives");
        if f["type"].as_str().unwrap().starts_with("order.") {
            seen_a.push(f["data"]["id"].as_i64().unwrap());
            if f["data"]["id"] == ida {
                break;
            }
        }
    }
    assert_eq!(seen_a, vec![ida], "branch A's socket got B's order events");
    let f = next_of(&mut wb, "order.comment", WAIT).await.unwrap();
    assert_eq!(f["data"]["id"], idb, "B's user gets B's event first");
    // Replay after a reconnect: the same rule.
    let mut again = open(
        app,
        Some(&cookie_a),
        Some(&origin),
        &format!("?last_seq={start}"),
    )
    .await
    .unwrap();
    let mut replayed = Vec::new();
    while let Some(f) = next_any(&mut again, Duration::from_millis(700)).await {
        if f["type"].as_str().unwrap().starts_with("order.") {
            replayed.push(f["data"]["id"].as_i64().unwrap());
        }
    }
    assert!(
        replayed.contains(&ida),
        "replay has A's event: {replayed:?}"
    );
    assert!(
        !replayed.contains(&idb),
        "replay leaked B's event: {replayed:?}"
    );
}

#[tokio::test]
async fn the_last_admin_keeps_the_right_to_manage_users() {
    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    let admin_id = app
        .running()
        .ctx
        .accounts
        .user_by_username("admin")
        .await
        .unwrap()
        .id;
    // Demoted, disabled, or given a role without users.manage: refused, and unchanged.
    for body in [
        json!({"role": "operator"}),
        json!({"active": false}),
        json!({"role": "master", "active": false}),
    ] {
        let r = admin
            .send_json(Method::PATCH, &format!("/api/v1/users/{admin_id}"), &body)
            .await;
        assert_eq!(r.status(), 409, "{body}");
    }
    let r = admin
        .send_json(
            Method::POST,
            "/api/v1/roles",
            &json!({"key": "boss", "name": "Boss", "base": "admin",
                "permissions": ["users.manage", "orders.view"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let boss: Value = r.json().await.unwrap();
    let r = admin
        .send_json(
            Method::POST,
            "/api/v1/roles",
            &json!({"key": "nobody", "name": "Nobody", "base": "admin", "permissions": []}),
        )
        .await;
    let nobody: Value = r.json().await.unwrap();
    let r = admin
        .send_json(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            &json!({"role": "nobody"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    // The page says why, in the user's language.
    let r = admin
        .post_form(
            &format!("/users/{admin_id}"),
            &[
                ("name", "Admin"),
                ("role", "operator"),
                ("language", "ru"),
                ("active", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    // A custom role that can manage users is enough: the admin may then move to it…
    let r = admin
        .send_json(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            &json!({"role": "boss"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // …but that role cannot then lose users.manage, since it is the last one with it.
    let r = admin
        .send_json(
            Method::PUT,
            &format!("/api/v1/roles/{}", boss["id"]),
            &json!({"key": "boss", "name": "Boss", "base": "admin", "permissions": ["orders.view"]}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let me: Value = admin.get("/api/v1/me").await.json().await.unwrap();
    assert!(me["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("users.manage")));
    // With a second admin, the first may be demoted.
    app.add_user("admin2", crm::model::Role::Admin, "admin2-pass-1")
        .await;
    let r = admin
        .send_json(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            &json!({"role": nobody["key"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // And now the admin's own session lost the right at once.
    assert_eq!(admin.get("/api/v1/users").await.status(), 403);
}

#[tokio::test]
async fn bad_role_and_user_input_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    let roles = |s: &Session| {
        let s = s.client.clone();
        let url = app.url("/api/v1/roles");
        async move {
            let v: Value = s.get(url).send().await.unwrap().json().await.unwrap();
            v["roles"].as_array().unwrap().len()
        }
    };
    let before = roles(&admin).await;
    assert_eq!(before, 3, "three built-in roles");
    for (body, status) in [
        (
            json!({"key": "kassir", "name": "Kassir", "base": "operator", "permissions": ["orders.fly"]}),
            422,
        ),
        (
            json!({"key": "master", "name": "Usta", "base": "master", "permissions": []}),
            422,
        ),
        (
            json!({"key": "кассир", "name": "Кассир", "base": "operator", "permissions": []}),
            422,
        ),
        (
            json!({"key": "kassir", "name": "", "base": "operator", "permissions": []}),
            422,
        ),
        (
            json!({"key": "kassir", "name": "Kassir", "base": "owner", "permissions": []}),
            400,
        ),
        (
            json!({"key": "kassir", "name": "Kassir", "base": "operator", "permissions": "orders.view"}),
            400,
        ),
        (
            json!({"key": "kassir", "name": "Kassir", "base": "operator", "extra": 1}),
            400,
        ),
    ] {
        let r = admin.send_json(Method::POST, "/api/v1/roles", &body).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
    }
    let r = admin
        .client
        .post(app.url("/api/v1/roles"))
        .header("x-csrf-token", &admin.csrf)
        .header("content-type", "application/json")
        .body("{\"key\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(roles(&admin).await, before, "nothing was created");
    // A Cyrillic name is fine; the same key twice is a conflict.
    let body = json!({"key": "kassir", "name": "Кассир", "base": "operator", "permissions": ["orders.view"]});
    let r = admin.send_json(Method::POST, "/api/v1/roles", &body).await;
    assert_eq!(r.status(), 201);
    let r = admin.send_json(Method::POST, "/api/v1/roles", &body).await;
    assert_eq!(r.status(), 409);
    // Users: an unknown role or branch is refused and creates nobody.
    for body in [
        json!({"username": "ali", "display_name": "Ali", "role": "owner", "password": "ali-pass-12"}),
        json!({"username": "ali", "display_name": "Ali", "role": "operator", "branch_ids": [999], "password": "ali-pass-12"}),
    ] {
        let r = admin.send_json(Method::POST, "/api/v1/users", &body).await;
        assert_eq!(r.status(), 422, "{body}");
    }
    let r = admin
        .post_form(
            "/users",
            &[
                ("username", "ali"),
                ("name", "Ali"),
                ("role", "operator"),
                ("branch", "abc"),
                ("language", "uz"),
                ("password", "ali-pass-12"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(app
        .running()
        .ctx
        .accounts
        .user_by_username("ali")
        .await
        .is_err());
    // Another role's URLs: an operator cannot reach roles.
    app.add_user("oper", crm::model::Role::Operator, "oper-pass-1")
        .await;
    let oper = app.login("oper", "oper-pass-1").await;
    assert_eq!(oper.get("/roles").await.status(), 403);
    let r = oper.send_json(Method::POST, "/api/v1/roles", &body).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn creating_changing_and_disabling_a_user_reaches_open_screens() {
    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    let origin = format!("http://{}", app.running().http_addr);
    let cookie = login_cookie(&app, "admin", ADMIN_PASSWORD).await;
    let mut ws = open(&app, Some(&cookie), Some(&origin), "").await.unwrap();
    next_of(&mut ws, "hello", WAIT).await.unwrap();
    let r = admin
        .send_json(
            Method::POST,
            "/api/v1/users",
            &json!({"username": "nodir", "display_name": "Nodir", "role": "master",
                "password": "nodir-pass-1"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let f = next_of(&mut ws, "user.created", WAIT)
        .await
        .expect("user.created");
    assert_eq!(f["data"]["id"], id);
    // The users list page is subscribed to these events.
    let page = admin.get("/users").await.text().await.unwrap();
    assert!(page.contains("data-live-topics=\"user.created user.updated role.updated\""));
    // The user signs in (presence), then is disabled: their socket closes, presence goes
    // offline and the list hears of it.
    let ucookie = login_cookie(&app, "nodir", "nodir-pass-1").await;
    let mut uws = open(&app, Some(&ucookie), Some(&origin), "").await.unwrap();
    next_of(&mut uws, "hello", WAIT).await.unwrap();
    presence(&mut ws, id, true).await;
    let r = admin
        .send_json(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            &json!({"active": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Both reach the list, in either order: the change is published after its commit and
    // the closed socket's presence as the hub notices it.
    let (mut updated, mut offline) = (false, false);
    while !(updated && offline) {
        let f = next_any(&mut ws, WAIT)
            .await
            .unwrap_or_else(|| panic!("user.updated {updated}, offline {offline}"));
        if f["data"]["user_id"] == id && f["type"] == "user.presence" {
            assert_eq!(f["data"]["online"], false, "{f}");
            offline = true;
        }
        updated |= f["type"] == "user.updated" && f["data"]["id"] == id;
    }
    // An operator's screen does not get user events (they are for those who manage users).
    app.add_user("oper", crm::model::Role::Operator, "oper-pass-1")
        .await;
    let ocookie = login_cookie(&app, "oper", "oper-pass-1").await;
    let mut ows = open(&app, Some(&ocookie), Some(&origin), "").await.unwrap();
    next_of(&mut ows, "hello", WAIT).await.unwrap();
    let r = admin
        .send_json(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            &json!({"display_name": "Nodir aka"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    next_of(&mut ws, "user.updated", WAIT).await.unwrap();
    assert!(
        next_of(&mut ows, "user.updated", Duration::from_millis(500))
            .await
            .is_none()
    );
}

/// Waits for `user`'s presence to become `online` (skipping other users' frames).
async fn presence(ws: &mut crate::live::Ws, user: i64, online: bool) {
    loop {
        let p = next_any(ws, WAIT).await.expect("presence frame");
        if p["type"] != "user.presence" {
            continue;
        }
        if p["data"]["user_id"] == user {
            assert_eq!(p["data"]["online"], online);
            return;
        }
    }
}

#[tokio::test]
async fn a_branch_numbers_its_orders_and_heads_its_receipts() {
    let ch = chain().await;
    let nb = ch.order_b["number"].as_str().unwrap();
    let na = ch.order_a["number"].as_str().unwrap();
    assert!(nb.starts_with("CH"), "branch B's own prefix: {nb}");
    assert!(na.starts_with("RM"), "branch A keeps the shop's: {na}");
    let admin = ch.app.login_admin().await;
    let idb = ch.order_b["id"].as_i64().unwrap();
    let receipt = admin
        .get(&format!("/orders/{idb}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(receipt.contains("Chilonzor 5-mavze, 12"), "branch address");
    assert!(receipt.contains("Du–Sh 9:00–19:00"), "branch hours");
    // The number as typed finds the order.
    let (_, found) = ch.admin.get(&format!("/api/v1/search?q={nb}")).await;
    assert_eq!(found["orders"][0]["id"], idb, "{found}");
    // A prefix that is not Latin letters and digits is refused.
    let (s, _) = ch
        .admin
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{}", ch.b),
            json!({"name": "Chilonzor filiali", "order_prefix": "ЧЛ"}),
        )
        .await;
    assert_eq!(s, 422);
}
