//! Order intake as one unit of work, partial order updates, and refusals in the reader's
//! language (issue 13, items 2, 4 and 7), against the real server.

use crm::model::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::core::Api;
use crate::support::*;

async fn customers_with(api: &Api, phone: &str) -> usize {
    let (s, v) = api
        .get(&format!("/api/v1/customers/lookup?phone={phone}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().map_or(0, |a| a.len())
}

fn order(customer: Value, complaint: &str) -> Value {
    json!({
        "customer": customer,
        "device_category": "phone",
        "brand": "Samsung",
        "complaint": complaint,
        "prepayment": 50000,
    })
}

#[tokio::test]
async fn a_refused_order_leaves_no_customer_and_an_accepted_one_brings_it_with_the_prepayment() {
    let app = TestApp::spawn().await;
    app.add_user("desk", Role::Operator, "desk-pass-1").await;
    let api = Api::of(&app, "desk").await;
    let phone = "%2B998901112233";

    // Refused after the customer would have been created (the master does not exist):
    // nothing of the intake is left behind.
    let mut bad = order(
        json!({"name": "Oʻlmas Gʻayratov", "phone": "90 111 22 33"}),
        "Ekran",
    );
    bad["master_id"] = json!(999);
    let admin = Api::of(&app, "admin").await;
    let (s, v) = admin.send(Method::POST, "/api/v1/orders", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(customers_with(&api, phone).await, 0, "no orphan customer");

    // Refused by a rule of the order itself (no complaint).
    let (s, v) = api
        .send(
            Method::POST,
            "/api/v1/orders",
            order(json!({"name": "Oʻlmas", "phone": "90 111 22 33"}), "  "),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(customers_with(&api, phone).await, 0);

    // Accepted: customer, order and prepayment in one go.
    let (s, o) = api
        .send(
            Method::POST,
            "/api/v1/orders",
            order(
                json!({"name": "Oʻlmas Gʻayratov", "phone": "90 111 22 33"}),
                "Ekran",
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(customers_with(&api, phone).await, 1);
    assert_eq!(o["paid"], 50000, "{o}");

    // The same number again finds that customer; no name is needed then.
    let (s, o2) = api
        .send(
            Method::POST,
            "/api/v1/orders",
            order(
                json!({"name": "", "phone": "+998 90 111-22-33"}),
                "Batareya",
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o2}");
    assert_eq!(o2["customer_id"], o["customer_id"]);
    assert_eq!(customers_with(&api, phone).await, 1);
}

#[tokio::test]
async fn an_order_update_takes_partial_json_and_ignores_fields_it_does_not_know() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let (s, o) = api
        .send(
            Method::POST,
            "/api/v1/orders",
            order(
                json!({"name": "Ali", "phone": "90 222 33 44"}),
                "Ekran singan",
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["id"].as_i64().unwrap();
    let (s, u) = api
        .send(
            Method::PUT,
            &format!("/api/v1/orders/{id}"),
            json!({"version": o["version"], "model": "A52", "a_field_from_a_newer_client": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["model"], "A52");
    assert_eq!(
        u["complaint"], "Ekran singan",
        "a field left out keeps its value"
    );
    assert_eq!(u["brand"], "Samsung");
    // A stale version is still refused.
    let (s, _) = api
        .send(
            Method::PUT,
            &format!("/api/v1/orders/{id}"),
            json!({"version": o["version"], "model": "A53"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn api_refusals_keep_their_code_and_speak_the_request_language() {
    let app = TestApp::spawn().await;
    let token = app.api_token("admin").await;
    let c = reqwest::Client::new();
    let post = |lang: Option<&'static str>| {
        let mut r = c
            .post(app.url("/api/v1/customers"))
            .bearer_auth(&token)
            .json(&json!({"name": "Ali", "phones": ["12345"]}));
        if let Some(l) = lang {
            r = r.header("Accept-Language", l);
        }
        r.send()
    };
    let cyrillic = |s: &str| s.chars().any(|c| ('\u{400}'..='\u{4ff}').contains(&c));
    let en: Value = post(None).await.unwrap().json().await.unwrap();
    assert_eq!(en["error"]["code"], "invalid");
    assert_eq!(
        en["error"]["message"],
        "phone \"12345\": the phone number has the wrong number of digits"
    );
    for lang in ["ru-RU,ru;q=0.9", "uz-Cyrl"] {
        let r = post(Some(lang)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid", "{lang}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(cyrillic(m) && m.contains("12345"), "{lang}: {m}");
    }
    let uz: Value = post(Some("uz")).await.unwrap().json().await.unwrap();
    let m = uz["error"]["message"].as_str().unwrap();
    assert!(!cyrillic(m) && m != en["error"]["message"], "{m}");
    // A refusal with an amount shows it as money in the reader's language.
    let api = Api::of(&app, "admin").await;
    let (_, o) = api
        .send(
            Method::POST,
            "/api/v1/orders",
            order(json!({"name": "Vali", "phone": "90 333 44 55"}), "Ekran"),
        )
        .await;
    let id = o["id"].as_i64().unwrap();
    let (_, l) = api
        .send(
            Method::POST,
            &format!("/api/v1/orders/{id}/lines"),
            json!({"kind": "labour", "name": "Ekran", "qty": 1, "unit_price": 1300000}),
        )
        .await;
    let r = c
        .post(app.url(&format!("/api/v1/orders/{id}/payments")))
        .bearer_auth(&token)
        .header("Accept-Language", "ru")
        .json(&json!({"kind": "refund", "amount": 900000, "method": "cash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{l}");
    let v: Value = r.json().await.unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("50 000 сум"), "{m}");
}
