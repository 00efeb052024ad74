//! Branches over HTTP: the admin adds and edits them (logged), bad input is refused with
//! nothing written, every order belongs to one, lists filter by branch, and the map page
//! lists them whatever the tile server does.

use reqwest::Method;
use serde_json::json;

use crate::core::{new_customer, new_order, shop};
use crate::support::*;

#[tokio::test]
async fn admins_keep_branches_orders_belong_to_one_and_bad_input_is_refused() {
    let app = TestApp::spawn().await;
    let (admin, oper, usta1, ..) = shop(&app).await;

    // The migration's default branch holds the orders that name none.
    let (s, list) = admin.get("/api/v1/branches").await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let main = list[0]["id"].as_i64().unwrap();

    let (s, b) = admin
        .post(
            "/api/v1/branches",
            json!({"name": "Chilonzor", "address": "Toshkent, Chilonzor 9", "phone": "71 200 00 01",
                   "lat": 41.2756, "lon": 69.2034}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let chilonzor = b["id"].as_i64().unwrap();
    assert_eq!(b["phone"], "+998712000001");
    assert_eq!(b["active"], true);

    for (bad, why) in [
        (json!({"address": "x"}), "missing name"),
        (json!({"name": "  "}), "blank name"),
        (json!({"name": "A", "lat": 91.0, "lon": 69.0}), "latitude"),
        (
            json!({"name": "B", "lat": 41.0, "lon": -180.5}),
            "longitude",
        ),
        (json!({"name": "C", "lat": 41.0}), "one coordinate"),
        (json!({"name": "D", "phone": "12"}), "phone"),
    ] {
        let (s, v) = admin.post("/api/v1/branches", bad).await;
        assert!(s == 422 || s == 400, "{why}: {s} {v}");
    }
    let (s, v) = admin
        .post("/api/v1/branches", json!({"name": "chilonzor"}))
        .await;
    assert_eq!(s, 201, "names differ in case: {v}");
    let (s, v) = admin
        .post("/api/v1/branches", json!({"name": "Chilonzor"}))
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Chilonzor"));
    let (_, all) = admin.get("/api/v1/branches?all=true").await;
    assert_eq!(all.as_array().unwrap().len(), 3, "nothing half-written");

    // Other roles read branches but do not change them.
    let (s, _) = oper.post("/api/v1/branches", json!({"name": "X"})).await;
    assert_eq!(s, 403);
    let (s, _) = usta1
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{main}"),
            json!({"name": "X"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = usta1.get("/api/v1/branches").await;
    assert_eq!(s, 200);

    // Edit: moved coordinates; an unknown branch is 404; out of range is refused.
    let (s, v) = admin
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{chilonzor}"),
            json!({"name": "Chilonzor", "address": "Toshkent, Chilonzor 10", "lat": 41.28, "lon": 69.21}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["address"], "Toshkent, Chilonzor 10");
    assert_eq!(v["phone"], "", "the form's fields replace the old ones");
    let (s, _) = admin
        .send(
            Method::PUT,
            "/api/v1/branches/999",
            json!({"name": "Nowhere"}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = admin
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{chilonzor}"),
            json!({"name": "Chilonzor", "lat": -95.0, "lon": 0.0}),
        )
        .await;
    assert_eq!(s, 422);

    // Orders: the default branch, a named one, an unknown one refused.
    let cu = new_customer(&oper, "Aziz Karimov", "90 111 22 33").await;
    let o1 = new_order(&oper, cu, json!({})).await;
    assert_eq!(o1["branch_id"], main);
    let o2 = new_order(&oper, cu, json!({"branch_id": chilonzor})).await;
    assert_eq!(o2["branch"], "Chilonzor");
    let (s, v) = oper
        .post(
            "/api/v1/orders",
            json!({"customer_id": cu, "branch_id": 999, "device_category": "phone", "complaint": "x"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("branch"));
    let (_, list) = admin
        .get(&format!("/api/v1/orders?branch_id={chilonzor}"))
        .await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], o2["id"]);

    // The intake form: the branch select, an unknown branch refused before the new
    // customer is created.
    let desk = app.login("oper", "oper-pass-1").await;
    let form = desk.get("/orders/new").await.text().await.unwrap();
    assert!(form.contains("name=\"branch\"") && form.contains("Chilonzor"));
    let r = desk
        .post_form(
            "/orders",
            &[
                ("phone", "93 555 12 34"),
                ("customer_name", "Yangi Mijoz"),
                ("device_category", "phone"),
                ("complaint", "Yoqilmaydi"),
                ("branch", "999"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let (_, found) = oper.get("/api/v1/customers/lookup?phone=935551234").await;
    assert_eq!(found.as_array().unwrap().len(), 0, "no customer half-made");
    let r = desk
        .post_form(
            "/orders",
            &[
                ("phone", "93 555 12 34"),
                ("customer_name", "Yangi Mijoz"),
                ("device_category", "phone"),
                ("complaint", "Yoqilmaydi"),
                ("branch", &chilonzor.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, list) = admin
        .get(&format!("/api/v1/orders?branch_id={chilonzor}"))
        .await;
    assert_eq!(list["total"], 2);
    let page = desk
        .get(&format!("/orders?branch={chilonzor}"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("data-order-id=").count(), 2);

    // The last open branch cannot be closed; a closed one takes no orders.
    let (s, _) = admin
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{chilonzor}"),
            json!({"name": "Chilonzor", "lat": 41.28, "lon": 69.21, "active": false}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = oper
        .post(
            "/api/v1/orders",
            json!({"customer_id": cu, "branch_id": chilonzor, "device_category": "phone", "complaint": "x"}),
        )
        .await;
    assert_eq!(s, 422);
    let (_, open) = admin.get("/api/v1/branches").await;
    for b in open.as_array().unwrap() {
        if b["id"] != main {
            let (s, _) = admin
                .send(
                    Method::PUT,
                    &format!("/api/v1/branches/{}", b["id"]),
                    json!({"name": b["name"], "active": false}),
                )
                .await;
            assert_eq!(s, 200);
        }
    }
    let (s, v) = admin
        .send(
            Method::PUT,
            &format!("/api/v1/branches/{main}"),
            json!({"name": "Asosiy", "active": false}),
        )
        .await;
    assert_eq!(s, 409, "{v}");

    // Every change is in the activity log, with who made it.
    let s = app.login_admin().await;
    let log = s
        .get("/audit/activity?entity=branch")
        .await
        .text()
        .await
        .unwrap();
    assert!(log.matches("class=\"activity-row\"").count() >= 5, "{log}");
    assert!(log.contains("Chilonzor 10"));

    // The admin page: add through the form, bad coordinates refused.
    let r = s
        .post_form(
            "/branches",
            &[
                ("name", "Yunusobod"),
                ("lat", "41,3650"),
                ("lon", "69.2890"),
                ("active", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = s
        .post_form(
            "/branches",
            &[("name", "Sergeli"), ("lat", "north"), ("lon", "1")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = s.post_form("/branches", &[("address", "no name")]).await;
    assert!(r.status() == 400 || r.status() == 422, "{}", r.status());
    let page = s.get("/branches").await.text().await.unwrap();
    assert!(page.contains("Yunusobod") && !page.contains("Sergeli"));
    assert_eq!(
        desk.get("/branches").await.status(),
        403,
        "operators do not manage branches"
    );
}

#[tokio::test]
async fn the_map_page_lists_branches_and_allows_only_the_tile_server() {
    let app = TestApp::spawn().await;
    let (admin, ..) = shop(&app).await;
    let (s, _) = admin
        .post(
            "/api/v1/branches",
            json!({"name": "Chilonzor", "address": "Toshkent, Chilonzor 9", "lat": 41.2756, "lon": 69.2034}),
        )
        .await;
    assert_eq!(s, 201);
    let usta = app.login("usta1", "usta-pass-1").await;
    let r = usta.get("/map").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("img-src 'self' data: blob: https://tile.openstreetmap.org;"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("Toshkent, Chilonzor 9") && html.contains("41.275600, 69.203400"));
    assert!(html.contains("data-tiles=\"https://tile.openstreetmap.org/{z}/{x}/{y}.png\""));
    assert!(html.contains("vendor/leaflet/leaflet.js"));

    // A bad tile URL is refused in the settings.
    let s = app.login_admin().await;
    let shop = |tiles: &'static str| {
        vec![
            ("name", "Mobil Servis"),
            ("address", ""),
            ("phone", ""),
            ("hours", "9-18"),
            ("terms", "x"),
            ("order_prefix", "RM"),
            ("currency", "UZS"),
            ("default_country", "998"),
            ("map_tiles", tiles),
        ]
    };
    let r = s
        .post_form("/settings/shop", &shop("javascript:alert(1)"))
        .await;
    assert_eq!(r.status(), 422);
    let r = s
        .post_form(
            "/settings/shop",
            &shop("http://127.0.0.1:9/{z}/{x}/{y}.png"),
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = usta.get("/map").await;
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("blob: http://127.0.0.1:9;"));
}
