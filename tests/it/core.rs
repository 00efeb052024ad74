//! Service-center rules over HTTP: phones, duplicates and merge, numbering, workflow,
//! masters' scope, totals and balances, payments, concurrent edits, search, print.

use crm::model::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

/// An API client for one user (bearer token).
#[derive(Clone)]
pub struct Api {
    pub c: reqwest::Client,
    pub token: String,
    pub base: String,
}

impl Api {
    pub async fn of(app: &TestApp, user: &str) -> Api {
        Api {
            c: reqwest::Client::new(),
            token: app.api_token(user).await,
            base: app.base.clone(),
        }
    }
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let r = self
            .c
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }
}

pub async fn shop(app: &TestApp) -> (Api, Api, Api, Api, i64, i64) {
    let m1 = app.add_user("usta1", Role::Master, "usta-pass-1").await;
    let m2 = app.add_user("usta2", Role::Master, "usta-pass-2").await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    (
        Api::of(app, "admin").await,
        Api::of(app, "oper").await,
        Api::of(app, "usta1").await,
        Api::of(app, "usta2").await,
        m1,
        m2,
    )
}

pub async fn new_customer(api: &Api, name: &str, phone: &str) -> i64 {
    let (s, v) = api
        .post(
            "/api/v1/customers",
            json!({"name": name, "phones": [phone]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

pub async fn new_order(api: &Api, customer: i64, extra: Value) -> Value {
    let mut body = json!({"customer_id": customer, "device_category": "phone", "brand": "Samsung", "model": "Galaxy A52", "serial": "356789104512345", "complaint": "Ekran yorilgan"});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let (s, v) = api.post("/api/v1/orders", body).await;
    assert_eq!(s, 201, "{v}");
    v
}

#[tokio::test]
async fn any_typed_phone_finds_the_same_customer_and_bad_ones_are_refused() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let id = new_customer(&oper, "Aziza Karimova", "90 123 45 67").await;
    for typed in [
        "+998-90-123-45-67",
        "8 90 1234567",
        "(90) 123-45-67",
        "998901234567",
        "90/123/45/67",
    ] {
        let (s, v) = oper
            .get(&format!(
                "/api/v1/customers/lookup?phone={}",
                urlencode(typed)
            ))
            .await;
        assert_eq!(s, 200, "{typed}: {v}");
        assert_eq!(v[0]["id"], id, "{typed}");
        assert_eq!(v[0]["phones"][0], "+998901234567");
    }
    for bad in ["90 123 45", "abc", ""] {
        let (s, v) = oper
            .post("/api/v1/customers", json!({"name": "X", "phones": [bad]}))
            .await;
        assert_eq!(s, 422, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid");
    }
    // The same number typed differently is a duplicate, named in the error.
    let (s, v) = oper
        .post(
            "/api/v1/customers",
            json!({"name": "Aziza K.", "phones": ["+998 90 123 45 67"]}),
        )
        .await;
    assert_eq!(s, 409);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Aziza Karimova"));
    let (_, list) = admin.get("/api/v1/customers").await;
    assert_eq!(list["total"], 1, "nothing half-created");
}

#[tokio::test]
async fn merge_moves_orders_and_phones() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let a = new_customer(&oper, "Bobur", "91 111 11 11").await;
    let b = new_customer(&oper, "Bobur Aliyev", "93 222 22 22").await;
    let o = new_order(&oper, b, json!({})).await;
    let s = app.login_admin().await;
    let r = s
        .post_form(
            &format!("/customers/{a}/merge"),
            &[("other", &b.to_string())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, v) = admin.get(&format!("/api/v1/orders/{}", o["id"])).await;
    assert_eq!(v["order"]["customer_id"], a);
    let (_, c) = admin.get(&format!("/api/v1/customers/{a}")).await;
    assert_eq!(c["phones"].as_array().unwrap().len(), 2);
    assert_eq!(admin.get(&format!("/api/v1/customers/{b}")).await.0, 404);
    // Operators may not merge.
    let so = app.login("oper", "oper-pass-1").await;
    assert_eq!(
        so.post_form(&format!("/customers/{a}/merge"), &[("other", "1")])
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn orders_are_numbered_totalled_paid_and_moved_through_the_workflow() {
    let app = TestApp::spawn().await;
    let (admin, oper, usta1, _usta2, m1, _) = shop(&app).await;
    let cust = new_customer(&oper, "Dilnoza", "97 765 43 21").await;
    let o1 = new_order(
        &oper,
        cust,
        json!({"estimate": 350000, "prepayment": 100000, "master_id": m1}),
    )
    .await;
    let o2 = new_order(&oper, cust, json!({})).await;
    let year = time::OffsetDateTime::now_utc().year() % 100;
    assert_eq!(o1["number"], format!("RM{year:02}-00001"));
    assert_eq!(o2["number"], format!("RM{year:02}-00002"));
    assert_eq!(o1["paid"], 100000);
    let id = o1["id"].as_i64().unwrap();

    // Lines by the master; totals and balance follow.
    let (s, v) = usta1
        .post(
            &format!("/api/v1/orders/{id}/lines"),
            json!({"kind": "part", "name": "Ekran moduli", "qty": 1, "unit_price": 280000}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = usta1
        .post(
            &format!("/api/v1/orders/{id}/lines"),
            json!({"kind": "labour", "name": "Almashtirish", "qty": 1, "unit_price": 70000}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["total"], 350000);
    let (_, view) = admin.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(view["balance"], 250000);

    // Bad amounts: negative, overflowing, zero qty; nothing changes.
    for body in [
        json!({"kind": "part", "name": "x", "qty": 1, "unit_price": -5}),
        json!({"kind": "part", "name": "x", "qty": 10000, "unit_price": 999999999999i64}),
        json!({"kind": "part", "name": "x", "qty": 0, "unit_price": 5}),
        json!({"kind": "gift", "name": "x", "qty": 1, "unit_price": 5}),
    ] {
        let (s, _) = usta1
            .post(&format!("/api/v1/orders/{id}/lines"), body.clone())
            .await;
        assert_eq!(s, 422, "{body}");
    }
    let (s, _) = oper
        .post(
            &format!("/api/v1/orders/{id}/payments"),
            json!({"kind": "payment", "amount": -1}),
        )
        .await;
    assert_eq!(s, 422);
    let (_, view) = admin.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(view["order"]["total"], 350000);
    assert_eq!(view["lines"].as_array().unwrap().len(), 2);

    // Workflow: a jump the admin did not allow is refused with a message.
    let version = |v: &Value| v["order"]["version"].as_i64().unwrap();
    let (s, e) = usta1
        .post(
            &format!("/api/v1/orders/{id}/status"),
            json!({"version": version(&view), "to": "delivered"}),
        )
        .await;
    assert_eq!(s, 409);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("New → Delivered"),
        "{e}"
    );
    let (s, _) = usta1
        .post(
            &format!("/api/v1/orders/{id}/status"),
            json!({"version": version(&view), "to": "teleported"}),
        )
        .await;
    assert_eq!(s, 422);
    let mut v = view.clone();
    for to in ["diagnostics", "in_repair", "ready"] {
        let (s, o) = usta1
            .post(
                &format!("/api/v1/orders/{id}/status"),
                json!({"version": version(&v), "to": to}),
            )
            .await;
        assert_eq!(s, 200, "{to}: {o}");
        v = admin.get(&format!("/api/v1/orders/{id}")).await.1;
    }
    // Closing with a balance due needs the payment or an explicit override.
    let (s, e) = oper
        .post(
            &format!("/api/v1/orders/{id}/status"),
            json!({"version": version(&v), "to": "delivered"}),
        )
        .await;
    assert_eq!(s, 409);
    assert!(
        // The amount reads as money (issue 13): grouped thousands and the currency.
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("250 000 so'm"),
        "{e}"
    );
    let (s, _) = oper
        .post(
            &format!("/api/v1/orders/{id}/payments"),
            json!({"kind": "payment", "amount": 250000, "method": "card"}),
        )
        .await;
    assert_eq!(s, 200);
    let v = admin.get(&format!("/api/v1/orders/{id}")).await.1;
    assert_eq!(v["balance"], 0);
    let (s, o) = oper
        .post(
            &format!("/api/v1/orders/{id}/status"),
            json!({"version": version(&v), "to": "delivered"}),
        )
        .await;
    assert_eq!(s, 200, "{o}");
    assert!(o["closed_at"].is_i64());
    // Refunds: admins only, never above what was paid.
    let (s, _) = oper
        .post(
            &format!("/api/v1/orders/{id}/payments"),
            json!({"kind": "refund", "amount": 1000}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = admin
        .post(
            &format!("/api/v1/orders/{id}/payments"),
            json!({"kind": "refund", "amount": 999999}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, o) = admin
        .post(
            &format!("/api/v1/orders/{id}/payments"),
            json!({"kind": "refund", "amount": 50000}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(o["paid"], 300000);
    // The timeline has every step, with who.
    let v = admin.get(&format!("/api/v1/orders/{id}")).await.1;
    let kinds: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["created", "payment", "assigned", "line_added", "status"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert!(v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"].is_string()));
    // Numbers are never reused.
    let o3 = new_order(&oper, cust, json!({})).await;
    assert_eq!(o3["number"], format!("RM{year:02}-00003"));
}

#[tokio::test]
async fn masters_see_and_touch_only_their_own_orders() {
    let app = TestApp::spawn().await;
    let (_admin, oper, usta1, usta2, m1, _m2) = shop(&app).await;
    let cust = new_customer(&oper, "Jasur", "99 888 77 66").await;
    let mine = new_order(&oper, cust, json!({"master_id": m1})).await;
    let id = mine["id"].as_i64().unwrap();
    assert_eq!(usta1.get(&format!("/api/v1/orders/{id}")).await.0, 200);
    assert_eq!(usta2.get(&format!("/api/v1/orders/{id}")).await.0, 404);
    let (s, _) = usta2
        .post(
            &format!("/api/v1/orders/{id}/comments"),
            json!({"text": "men"}),
        )
        .await;
    assert_eq!(s, 404);
    let (_, l) = usta2.get("/api/v1/orders").await;
    assert_eq!(l["total"], 0);
    let (_, l) = usta2.get(&format!("/api/v1/orders?master_id={m1}")).await;
    assert_eq!(l["total"], 0, "a master cannot filter into others' orders");
    let (_, l) = usta1.get("/api/v1/orders").await;
    assert_eq!(l["total"], 1);
    // Pages too.
    let s2 = app.login("usta2", "usta-pass-2").await;
    assert_eq!(s2.get(&format!("/orders/{id}")).await.status(), 404);
    assert_eq!(s2.get(&format!("/orders/{id}/receipt")).await.status(), 404);
    let s1 = app.login("usta1", "usta-pass-1").await;
    let page = s1.get("/my").await.text().await.unwrap();
    assert!(page.contains(mine["number"].as_str().unwrap()));
    // Masters cannot create orders, see customers, or rewrite intake details.
    let (s, _) = usta1
        .post(
            "/api/v1/orders",
            json!({"customer_id": cust, "device_category": "phone", "complaint": "x"}),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(usta1.get(&format!("/api/v1/customers/{cust}")).await.0, 403);
    let (s, _) = usta1.send(reqwest::Method::PUT, &format!("/api/v1/orders/{id}"), json!({"version": 1, "device_category": "phone", "brand": "", "model": "", "serial": "", "complaint": "x", "condition": "", "accessories": "", "urgent": false, "promised_at": null, "estimate": 0, "warranty_days": 0})).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn the_second_of_two_concurrent_edits_is_refused() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let cust = new_customer(&oper, "Kamola", "94 555 44 33").await;
    let o = new_order(&oper, cust, json!({})).await;
    let id = o["id"].as_i64().unwrap();
    let version = o["version"].as_i64().unwrap();
    let edit = |complaint: &str| json!({"version": version, "device_category": "phone", "brand": "Apple", "model": "iPhone 12", "serial": "", "complaint": complaint, "condition": "", "accessories": "", "urgent": false, "promised_at": null, "estimate": 0, "warranty_days": 30});
    let path = format!("/api/v1/orders/{id}");
    let (a, b) = tokio::join!(
        oper.send(reqwest::Method::PUT, &path, edit("first")),
        admin.send(reqwest::Method::PUT, &path, edit("second"))
    );
    let statuses = [a.0.as_u16(), b.0.as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&409),
        "{statuses:?}"
    );
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert!(loser["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reload"));
    let (_, v) = admin.get(&path).await;
    let winner = if a.0 == 200 { "first" } else { "second" };
    assert_eq!(
        v["order"]["complaint"], winner,
        "the first save stands, nothing overwritten"
    );
    // A stale status change is refused the same way.
    let (s, _) = oper
        .post(
            &format!("{path}/status"),
            json!({"version": version, "to": "diagnostics"}),
        )
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn one_search_box_finds_by_phone_number_imei_model_and_complaint() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let cust = new_customer(&oper, "Shahnoza Rahimova", "90 700 12 34").await;
    let o = new_order(&oper, cust, json!({"brand": "Xiaomi", "model": "Redmi Note 11", "serial": "861234567890123", "complaint": "Zaryad olmayapti"})).await;
    let number = o["number"].as_str().unwrap().to_string();
    for q in [
        "+998 90 700-12-34",
        "7001234",
        "Shahnoza",
        "Rahim",
        &number,
        "861234567890123",
        "Redmi",
        "zaryad",
    ] {
        let (s, v) = admin
            .get(&format!("/api/v1/search?q={}", urlencode(q)))
            .await;
        assert_eq!(s, 200);
        let found = v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == o["id"])
            || v["customers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == cust);
        assert!(found, "{q}: {v}");
    }
    // FTS syntax typed by a user is just text.
    let (s, _) = admin
        .get(&format!("/api/v1/search?q={}", urlencode("\" OR * NEAR(")))
        .await;
    assert_eq!(s, 200);
    // The page search too.
    let s = app.login_admin().await;
    let page = s
        .get(&format!("/orders?q={}", urlencode("90 700 12 34")))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&number));
}

#[tokio::test]
async fn intake_through_the_form_prints_a_receipt_with_a_qr_code() {
    let app = TestApp::spawn().await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let s = app.login("oper", "oper-pass-1").await;
    // A bad form creates nothing, not even the customer.
    let bad = s
        .post_form(
            "/orders",
            &[
                ("phone", "90 111 22 33"),
                ("customer_name", "Nodir"),
                ("device_category", "phone"),
                ("brand", ""),
                ("model", ""),
                ("serial", ""),
                ("complaint", ""),
                ("condition", ""),
                ("accessories", ""),
                ("promised", ""),
                ("estimate", "abc"),
                ("prepayment", ""),
                ("warranty_days", ""),
            ],
        )
        .await;
    assert_eq!(bad.status(), 422);
    assert!(app
        .running()
        .ctx
        .customers
        .find_by_phone(
            &crm::domain::Actor::builtin(
                1,
                "admin",
                crm::model::Role::Admin,
                crm::model::Language::En
            ),
            "901112233"
        )
        .await
        .unwrap()
        .is_empty());
    let r = s
        .post_form(
            "/orders",
            &[
                ("phone", "90 111 22 33"),
                ("customer_name", "Nodir"),
                ("device_category", "laptop"),
                ("brand", "Lenovo"),
                ("model", "IdeaPad 3"),
                ("serial", "PF2ABC12"),
                ("complaint", "Yoqilmaydi"),
                ("condition", "Tirnalgan"),
                ("accessories", "Zaryadlovchi"),
                ("promised", "2030-01-15"),
                ("estimate", "450 000"),
                ("prepayment", "50 000"),
                ("warranty_days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let page = s.get(&loc).await.text().await.unwrap();
    assert!(
        page.contains("IdeaPad 3") && page.contains("450 000 so'm") && page.contains("50 000 so'm"),
        "{page}"
    );
    let receipt = s.get(&format!("{loc}/receipt")).await.text().await.unwrap();
    assert!(receipt.contains("<svg") && receipt.contains("id=\"order-qr\""));
    let thermal = s
        .get(&format!("{loc}/receipt?width=80mm"))
        .await
        .text()
        .await
        .unwrap();
    assert!(thermal.contains("class=\"print thermal\""));
    // The same phone typed differently reuses the customer.
    let r = s
        .post_form(
            "/orders",
            &[
                ("phone", "+998 (90) 111-22-33"),
                ("customer_name", ""),
                ("device_category", "phone"),
                ("brand", ""),
                ("model", ""),
                ("serial", ""),
                ("complaint", "Batareya"),
                ("condition", ""),
                ("accessories", ""),
                ("promised", ""),
                ("estimate", ""),
                ("prepayment", ""),
                ("warranty_days", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        app.running()
            .ctx
            .customers
            .find_by_phone(
                &crm::domain::Actor::builtin(
                    1,
                    "admin",
                    crm::model::Role::Admin,
                    crm::model::Language::En
                ),
                "901112233"
            )
            .await
            .unwrap()
            .len(),
        1
    );
    // CSV export lists both.
    let csv = s.get("/orders/export.csv").await.text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap()
        .trim_start_matches('=')
        .to_string()
}

#[tokio::test]
async fn the_dashboard_counts_orders_and_revenue_for_the_owner_only() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let cust = new_customer(&oper, "Rustam", "90 999 88 77").await;
    new_order(&oper, cust, json!({"prepayment": 1250000})).await;
    new_order(&oper, cust, json!({"promised_at": 1_000_000})).await;
    let _ = admin;
    let s = app.login_admin().await;
    let page = s.get("/").await.text().await.unwrap();
    assert!(page.contains("id=\"chart-intake\"") && page.contains("id=\"chart-revenue\""));
    assert!(page.contains("1 250 000 so'm"), "revenue today shown");
    assert!(
        page.contains("<span class=\"stat-value\" id=\"overdue-count\">1</span>"),
        "one overdue order"
    );
    // Operators see the order counts but not the money.
    let so = app.login("oper", "oper-pass-1").await;
    let page = so.get("/").await.text().await.unwrap();
    assert!(
        page.contains("id=\"chart-intake\"")
            && !page.contains("chart-revenue")
            && !page.contains("1 250 000")
    );
    // A bad range is ignored, not an error.
    assert_eq!(s.get("/?from=garbage&to=2026-13-45").await.status(), 200);
}

#[test]
fn seed_makes_realistic_data_that_the_rules_accept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        "[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crm_bin())
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let indexes = "SELECT count(*) FROM sqlite_schema WHERE type = 'index'";
    assert!(run(&["migrate"]).status.success());
    let index_count =
        |db: &rusqlite::Connection| -> i64 { db.query_row(indexes, [], |r| r.get(0)).unwrap() };
    let before = index_count(&rusqlite::Connection::open(dir.path().join("crm.db")).unwrap());
    let out = run(&["seed", "--customers", "300", "--orders", "1200"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Customers only: the bulk load has no orders to write.
    let out = run(&["seed", "--customers", "20", "--orders", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(dir.path().join("crm.db")).unwrap();
    assert_eq!(
        index_count(&db),
        before,
        "the indexes dropped for the load are back"
    );
    let q = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(q("SELECT count(*) FROM customers"), 320);
    assert_eq!(q("SELECT count(*) FROM orders"), 1200);
    assert_eq!(
        q("SELECT count(*) FROM customer_phones WHERE e164 NOT LIKE '+998_________'"),
        0
    );
    assert_eq!(
        q("SELECT count(DISTINCT number) FROM orders"),
        1200,
        "numbers unique"
    );
    assert!(
        q("SELECT count(DISTINCT status_id) FROM orders") >= 6,
        "spread over the workflow"
    );
    assert!(q("SELECT max(created_at) - min(created_at) FROM orders") > 2 * 365 * 86_400);
    assert_eq!(q("SELECT count(*) FROM search_index"), 1520);
    assert_eq!(
        q("SELECT count(*) FROM orders o JOIN search_index s ON s.rowid = o.id * 2 + 1 AND s.ref = o.id"),
        1200,
        "every order has its search row"
    );
    assert_eq!(
        q("SELECT count(*) FROM orders o WHERE total <> (SELECT coalesce(sum(qty * unit_price), 0) FROM order_lines l WHERE l.order_id = o.id)
             OR paid <> (SELECT coalesce(sum(amount), 0) FROM payments p WHERE p.order_id = o.id)"),
        0,
        "totals match the lines, paid matches the payments"
    );
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[tokio::test]
async fn the_admin_configures_the_shop_and_the_workflow() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let s = app.login_admin().await;
    let r = s
        .post_form(
            "/settings/shop",
            &[
                ("name", "Mobil Servis"),
                ("address", "Toshkent, Chilonzor 5"),
                ("phone", "+998 71 200 00 00"),
                ("hours", "9-18"),
                ("terms", "Kafolat 30 kun"),
                ("order_prefix", "MS"),
                ("currency", "UZS"),
                ("default_country", "998"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let bad = s
        .post_form(
            "/settings/shop",
            &[
                ("name", ""),
                ("address", ""),
                ("phone", ""),
                ("hours", ""),
                ("terms", ""),
                ("order_prefix", "M S!"),
                ("currency", "UZS"),
                ("default_country", "998"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 422);
    let cust = new_customer(&oper, "Zafar", "90 100 20 30").await;
    let o = new_order(&oper, cust, json!({})).await;
    assert!(o["number"].as_str().unwrap().starts_with("MS"), "{o}");
    let receipt = s
        .get(&format!("/orders/{}/receipt", o["id"]))
        .await
        .text()
        .await
        .unwrap();
    assert!(receipt.contains("Mobil Servis") && receipt.contains("Kafolat 30 kun"));
    // Allow New → Ready directly, and nothing else from New.
    let r = s
        .post_form("/settings/workflow", &[("t", "1-6"), ("t", "6-7")])
        .await;
    assert_eq!(r.status(), 303);
    let (st, _) = oper
        .post(
            &format!("/api/v1/orders/{}/status", o["id"]),
            json!({"version": o["version"], "to": "diagnostics"}),
        )
        .await;
    assert_eq!(st, 409);
    let (st, _) = oper
        .post(
            &format!("/api/v1/orders/{}/status", o["id"]),
            json!({"version": o["version"], "to": "ready"}),
        )
        .await;
    assert_eq!(st, 200);
    // Garbage is refused and changes nothing.
    assert_eq!(
        s.post_form("/settings/workflow", &[("t", "1-x")])
            .await
            .status(),
        400
    );
    assert_eq!(
        s.post_form("/settings/workflow", &[("t", "1-99")])
            .await
            .status(),
        422
    );
    let _ = admin;
}

#[tokio::test]
async fn photos_are_type_checked_size_limited_and_scoped() {
    let app = TestApp::spawn().await;
    let (_admin, oper, _u1, _u2, m1, _) = shop(&app).await;
    let cust = new_customer(&oper, "Farida", "90 444 55 66").await;
    let o = new_order(&oper, cust, json!({"master_id": m1})).await;
    let id = o["id"].as_i64().unwrap();
    let s = app.login("usta1", "usta-pass-1").await;
    let upload = |bytes: Vec<u8>, name: &'static str| {
        let form = reqwest::multipart::Form::new().part(
            "photo",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        s.client
            .post(s.url(&format!("/orders/{id}/photos?_csrf={}", s.csrf)))
            .multipart(form)
            .send()
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&[0u8; 64]);
    assert_eq!(upload(png.clone(), "a.png").await.unwrap().status(), 303);
    // A text file named .jpg, and an oversized image: refused, nothing stored.
    assert_eq!(
        upload(b"hello, not an image".to_vec(), "evil.jpg")
            .await
            .unwrap()
            .status(),
        422
    );
    let mut big = vec![0xFFu8, 0xD8, 0xFF];
    big.resize(8_000_001, 0);
    let r = upload(big, "big.jpg").await.unwrap();
    assert_eq!(r.status(), 413);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("8 MB"),
        "the limit is named, in the reader's words"
    );
    // Without the CSRF token: refused.
    let form = reqwest::multipart::Form::new().part(
        "photo",
        reqwest::multipart::Part::bytes(png.clone()).file_name("a.png"),
    );
    assert_eq!(
        s.client
            .post(s.url(&format!("/orders/{id}/photos")))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let files: Vec<_> = std::fs::read_dir(
        app.data_dir()
            .join("attachments/orders")
            .join(id.to_string()),
    )
    .unwrap()
    .collect();
    assert_eq!(files.len(), 1, "only the good photo is on disk");
    let (_, v) = oper.get(&format!("/api/v1/orders/{id}")).await;
    let photo = v["photos"][0]["id"].as_i64().unwrap();
    let r = s.get(&format!("/orders/{id}/photos/{photo}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    // Another master cannot see it.
    let s2 = app.login("usta2", "usta-pass-2").await;
    assert_eq!(
        s2.get(&format!("/orders/{id}/photos/{photo}"))
            .await
            .status(),
        404
    );
}
