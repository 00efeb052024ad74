//! A customer's preferred language: kept through the API and the form, refused when it
//! is not one of the four, and used for the messages they get about their orders.

use serde_json::json;

use crate::core::{new_order, shop};
use crate::support::*;

async fn outbox(app: &TestApp, to: &'static str) -> Vec<(String, String, String)> {
    app.running()
        .ctx
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT language, subject, body FROM notify_outbox WHERE recipient = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

fn cyrillic(s: &str) -> bool {
    s.chars().any(|c| ('\u{400}'..='\u{4ff}').contains(&c))
}

#[tokio::test]
async fn the_customer_language_round_trips_and_picks_the_message_language() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;

    let (s, v) = oper
        .post(
            "/api/v1/customers",
            json!({"name": "Olga Petrova", "phones": ["90 700 00 01"], "email": "olga@example.test", "language": "ru"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let olga = v["id"].as_i64().unwrap();
    let (_, v) = oper.get(&format!("/api/v1/customers/{olga}")).await;
    assert_eq!(v["language"], "ru");
    let (s, v) = oper
        .post(
            "/api/v1/customers",
            json!({"name": "Aziz Karimov", "phones": ["90 700 00 02"], "email": "aziz@example.test"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let aziz = v["id"].as_i64().unwrap();
    let (_, v) = oper.get(&format!("/api/v1/customers/{aziz}")).await;
    assert_eq!(v["language"], serde_json::Value::Null, "not known");
    let (s, v) = oper
        .post(
            "/api/v1/customers",
            json!({"name": "X", "phones": ["90 700 00 03"], "language": "de"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("uz-Cyrl"));

    // The form shows and keeps it; the code is stored in its canonical form.
    let desk = app.login("oper", "oper-pass-1").await;
    let form = desk
        .get(&format!("/customers/{olga}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(form.contains("<option value=\"ru\" selected>"), "{form}");
    let r = desk
        .post_form(
            &format!("/customers/{aziz}"),
            &[
                ("name", "Aziz Karimov"),
                ("phone1", "90 700 00 02"),
                ("email", "aziz@example.test"),
                ("language", "UZ-CYRL"),
                ("version", "1"),
            ],
        )
        .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let (_, v) = oper.get(&format!("/api/v1/customers/{aziz}")).await;
    assert_eq!(v["language"], "uz-Cyrl");

    // A status change reaches each customer in their own language.
    for cu in [olga, aziz] {
        let o = new_order(&admin, cu, json!({})).await;
        let (s, v) = admin
            .post(
                &format!("/api/v1/orders/{}/status", o["id"]),
                json!({"version": o["version"], "to": "diagnostics"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let to_olga = outbox(&app, "olga@example.test").await;
    assert_eq!(to_olga.len(), 1, "{to_olga:?}");
    assert_eq!(to_olga[0].0, "ru");
    assert!(cyrillic(&to_olga[0].1) && cyrillic(&to_olga[0].2));
    let to_aziz = outbox(&app, "aziz@example.test").await;
    assert_eq!(to_aziz.len(), 1);
    assert_eq!(to_aziz[0].0, "uz-Cyrl");

    // Cleared: back to the shop's default language (Uzbek, Latin).
    let (s, _) = oper
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/customers/{olga}"),
            json!({"version": 1, "name": "Olga Petrova", "phones": ["90 700 00 01"], "email": "olga@example.test", "language": ""}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = admin
        .get(&format!("/api/v1/orders?customer_id={olga}"))
        .await;
    let o = &v["items"][0];
    let (s, _) = admin
        .post(
            &format!("/api/v1/orders/{}/status", o["id"]),
            json!({"version": o["version"], "to": "in_repair"}),
        )
        .await;
    assert_eq!(s, 200);
    let to_olga = outbox(&app, "olga@example.test").await;
    assert_eq!(to_olga.len(), 2);
    assert_eq!(to_olga[1].0, "uz");
    assert!(!cyrillic(&to_olga[1].1));
}
