//! Segments (issue 18): saved filters over customers and their orders, counted live.

use crm::model::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::core::{new_customer, new_order, Api};
use crate::support::*;

async fn count(api: &Api, filter: Value) -> i64 {
    let q = serde_urlencoded::to_string([("filter", filter.to_string())]).unwrap();
    let (s, v) = api.get(&format!("/api/v1/segments/count?{q}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["count"].as_i64().unwrap()
}

#[tokio::test]
async fn segments_filter_customers_by_their_orders_and_count_live() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let make = |name: &'static str, phone: &'static str, extra: Value| {
        let api = &api;
        async move {
            let mut body = json!({"name": name, "phones": [phone]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (s, v) = api.post("/api/v1/customers", body).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["id"].as_i64().unwrap()
        }
    };
    let vip = make(
        "Aziz VIP",
        "90 700 00 01",
        json!({"tags": "VIP", "marketing_opt_in": true, "language": "ru"}),
    )
    .await;
    let company = make(
        "Artel",
        "90 700 00 02",
        json!({"kind": "company", "tags": "optom"}),
    )
    .await;
    let ready = new_customer(&api, "Tayyor Bek", "90 700 00 03").await;
    let warranty = new_customer(&api, "Kafolat Gulnora", "90 700 00 04").await;
    let _idle = new_customer(&api, "Jim Jasur", "90 700 00 05").await;
    let ready_order = new_order(&api, ready, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let w_order = new_order(&api, warranty, json!({})).await["id"]
        .as_i64()
        .unwrap();
    new_order(&api, vip, json!({})).await;
    // The ready order has waited ten days; the other one closed 80 days ago with a
    // 90-day warranty (so it ends in ten days).
    let now = app.running().ctx.clock.get().now();
    app.running()
        .ctx
        .db
        .write(move |c| {
            c.execute(
                "UPDATE orders SET status_id = 6, status_since = ?2 WHERE id = ?1",
                [ready_order, now - 10 * 86400],
            )?;
            c.execute(
                "UPDATE orders SET status_id = (SELECT id FROM statuses WHERE grp = 'closed' LIMIT 1),
                        closed_at = ?2, warranty_days = 90, created_at = ?2 WHERE id = ?1",
                [w_order, now - 80 * 86400],
            )?;
            Ok(())
        })
        .await
        .unwrap();

    assert_eq!(count(&api, json!({})).await, 5);
    assert_eq!(count(&api, json!({"tags": ["vip", "optom"]})).await, 2);
    assert_eq!(count(&api, json!({"kind": "company"})).await, 1);
    assert_eq!(count(&api, json!({"language": "ru"})).await, 1);
    assert_eq!(count(&api, json!({"opted_in": true})).await, 1);
    assert_eq!(count(&api, json!({"ready_days": 7})).await, 1);
    assert_eq!(count(&api, json!({"ready_days": 14})).await, 0);
    assert_eq!(count(&api, json!({"warranty_ending_days": 14})).await, 1);
    assert_eq!(count(&api, json!({"warranty_ending_days": 5})).await, 0);
    assert_eq!(count(&api, json!({"has_open_order": true})).await, 2);
    assert_eq!(count(&api, json!({"has_open_order": false})).await, 3);
    assert_eq!(count(&api, json!({"visited_within_days": 30})).await, 2);
    assert_eq!(count(&api, json!({"not_visited_days": 30})).await, 1);
    assert_eq!(count(&api, json!({"branch_id": 1})).await, 3);
    let _ = company;

    // A saved segment counts live: a new matching customer and an archived one.
    let (s, seg) = api
        .post(
            "/api/v1/segments",
            json!({"name": "VIP mijozlar", "filter": {"tags": ["VIP"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{seg}");
    assert_eq!(seg["count"], 1);
    let id = seg["id"].as_i64().unwrap();
    make("Yana VIP", "90 700 00 06", json!({"tags": "vip"})).await;
    assert_eq!(
        api.get(&format!("/api/v1/segments/{id}")).await.1["count"],
        2
    );
    api.post(&format!("/api/v1/customers/{vip}/archive"), json!({}))
        .await;
    assert_eq!(
        api.get(&format!("/api/v1/segments/{id}")).await.1["count"],
        1
    );
    let (_, members) = api.get(&format!("/api/v1/segments/{id}/customers")).await;
    assert_eq!(members[0]["name"], "Yana VIP");
    // Same name again: refused. Bad values: refused.
    let (s, _) = api
        .post(
            "/api/v1/segments",
            json!({"name": "VIP mijozlar", "filter": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = api
        .post(
            "/api/v1/segments",
            json!({"name": "X", "filter": {"ready_days": 99999}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api
        .post(
            "/api/v1/segments",
            json!({"name": "X", "filter": {"colour": "red"}}),
        )
        .await;
    assert_eq!(s.as_u16() / 100, 4);
    let q = serde_urlencoded::to_string([("filter", "{not json")]).unwrap();
    assert_eq!(
        api.get(&format!("/api/v1/segments/count?{q}")).await.0,
        StatusCode::BAD_REQUEST
    );

    // The page shows the live count; a master may not see segments.
    let admin = app.login_admin().await;
    let page = admin
        .get(&format!("/segments/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"segment-count\">1<"), "{page}");
    let r = admin
        .post_form("/segments", &[("name", "Tayyor 7"), ("ready_days", "7")])
        .await;
    assert_eq!(r.status(), 303);
    let list = admin.get("/segments").await.text().await.unwrap();
    assert!(list.contains("Tayyor 7"));
    app.add_user("usta", Role::Master, "usta-pass-1").await;
    let m = app.login("usta", "usta-pass-1").await;
    assert_eq!(m.get("/segments").await.status(), 403);
}

/// Customers whose kept facts (last visit, paid total, order count, branch, tags) differ
/// from a count over their orders and tags: 0 after every write.
async fn drift(app: &TestApp) -> i64 {
    app.running()
        .ctx
        .db
        .read(crm::db::segments::facts_drift)
        .await
        .unwrap()
}

/// The facts a segment reads are kept by the order and payment writes (migration 0025);
/// through every kind of write the counts stay exact: orders made at two branches, paid,
/// refunded, edited, archived, customers merged, an import with tags undone, and many
/// orders and payments at once.
#[tokio::test]
async fn segment_counts_stay_exact_through_every_kind_of_write() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let (s, b) = api
        .post("/api/v1/branches", json!({"name": "Chilonzor"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let chilonzor = b["id"].as_i64().unwrap();
    let (_, c) = api
        .post(
            "/api/v1/customers",
            json!({"name": "Aziz", "phones": ["90 701 00 01"], "tags": "VIP, Дўкон"}),
        )
        .await;
    let aziz = c["id"].as_i64().unwrap();
    let bobur = new_customer(&api, "Bobur", "90 701 00 02").await;
    let third = new_customer(&api, "Hech kim", "90 701 00 03").await;
    assert_eq!(count(&api, json!({"tags": ["vip"]})).await, 1);
    assert_eq!(count(&api, json!({"tags": ["Дўкон"]})).await, 1);

    let o1 = new_order(&api, aziz, json!({"estimate": 400000})).await["id"]
        .as_i64()
        .unwrap();
    let o2 = new_order(&api, bobur, json!({"branch_id": chilonzor})).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(drift(&app).await, 0);
    assert_eq!(count(&api, json!({"branch_id": 1})).await, 1);
    assert_eq!(count(&api, json!({"branch_id": chilonzor})).await, 1);
    assert_eq!(count(&api, json!({"visited_within_days": 0})).await, 2);
    assert_eq!(count(&api, json!({"not_visited_days": 0})).await, 0);

    // Payment and refund.
    let pay = |id: i64, kind: &'static str, amount: i64| {
        let api = &api;
        async move {
            let (s, v) = api
                .post(
                    &format!("/api/v1/orders/{id}/payments"),
                    json!({"kind": kind, "amount": amount}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    };
    pay(o1, "payment", 300_000).await;
    assert_eq!(count(&api, json!({"min_spent": 300000})).await, 1);
    pay(o1, "refund", 50_000).await;
    assert_eq!(drift(&app).await, 0);
    assert_eq!(count(&api, json!({"min_spent": 300000})).await, 0);
    assert_eq!(count(&api, json!({"min_spent": 250000})).await, 1);

    // An edit of the order and of the customer's tags.
    let version = api.get(&format!("/api/v1/orders/{o1}")).await.1["order"]["version"].clone();
    let (s, v) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/orders/{o1}"),
            json!({"version": version, "device_category": "phone", "brand": "Apple", "model": "iPhone 12",
                   "serial": "", "complaint": "Ekran", "condition": "", "accessories": "",
                   "urgent": false, "promised_at": null, "estimate": 500000, "warranty_days": 0}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let (s, v) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/customers/{aziz}"),
            json!({"version": 1, "name": "Aziz", "phones": ["90 701 00 01"], "tags": "optom"}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(count(&api, json!({"tags": ["vip"]})).await, 0);
    assert_eq!(count(&api, json!({"tags": ["OPTOM"]})).await, 1);
    assert_eq!(drift(&app).await, 0);

    // Archived (closed first): the order still counts as a visit and a payment.
    let closed_at = app.running().ctx.clock.get().now();
    app.running()
        .ctx
        .db
        .write(move |c| {
            c.execute(
                "UPDATE orders SET status_id = 7, closed_at = ?2 WHERE id = ?1",
                [o1, closed_at],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let (s, v) = api
        .post(&format!("/api/v1/orders/{o1}/archive"), json!({}))
        .await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(count(&api, json!({"min_spent": 250000})).await, 1);
    assert_eq!(drift(&app).await, 0);

    // Bobur merged into Aziz: one customer with orders at both branches.
    let admin = app.login_admin().await;
    let r = admin
        .post_form(
            &format!("/customers/{aziz}/merge"),
            &[("other", &bobur.to_string())],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(drift(&app).await, 0);
    assert_eq!(count(&api, json!({"branch_id": 1})).await, 1);
    assert_eq!(count(&api, json!({"branch_id": chilonzor})).await, 1);
    assert_eq!(count(&api, json!({"visited_within_days": 0})).await, 1);
    assert_eq!(count(&api, json!({"min_spent": 250000})).await, 1);
    let _ = o2;

    // An import with tags (one new customer, one merged into Aziz), then its undo.
    let csv = "Name,Phone,Tags\nYangi Mijoz,90 701 00 09,\"yangi,VIP\"\nAziz,90 701 00 01,import\n";
    let r = api
        .c
        .post(format!("{}/api/v1/imports/customers", api.base))
        .bearer_auth(&api.token)
        .body(csv.as_bytes().to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let batch = v["outcome"]["batch_id"].as_i64().unwrap();
    assert_eq!(count(&api, json!({"tags": ["yangi"]})).await, 1);
    assert_eq!(count(&api, json!({"tags": ["vip", "import"]})).await, 2);
    assert_eq!(drift(&app).await, 0);
    let (s, v) = api
        .post(&format!("/api/v1/imports/{batch}/undo"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(count(&api, json!({"tags": ["yangi"]})).await, 0);
    assert_eq!(count(&api, json!({"tags": ["import"]})).await, 0);
    assert_eq!(count(&api, json!({"tags": ["optom"]})).await, 1);
    assert_eq!(drift(&app).await, 0);

    // Many writers at once: 8 clients each make 5 orders for Aziz or the third
    // customer and pay 10 000 on each.
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let api = Api {
                c: reqwest::Client::new(),
                token: api.token.clone(),
                base: api.base.clone(),
            };
            tokio::spawn(async move {
                for _ in 0..5 {
                    let who = if k % 2 == 0 { aziz } else { third };
                    let o = new_order(&api, who, json!({"estimate": 10000})).await["id"]
                        .as_i64()
                        .unwrap();
                    let (s, v) = api
                        .post(
                            &format!("/api/v1/orders/{o}/payments"),
                            json!({"kind": "payment", "amount": 10000}),
                        )
                        .await;
                    assert_eq!(s, StatusCode::OK, "{v}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(drift(&app).await, 0);
    let (paid, n): (i64, i64) = app
        .running()
        .ctx
        .db
        .read(move |c| {
            Ok(c.query_row(
                "SELECT paid_total, order_count FROM customers WHERE id = ?1",
                [third],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!((paid, n), (200_000, 20));
    assert_eq!(count(&api, json!({"min_spent": 200000})).await, 2);
    assert_eq!(count(&api, json!({"min_spent": 450001})).await, 0);
    assert_eq!(count(&api, json!({"min_spent": 450000})).await, 1);
}
