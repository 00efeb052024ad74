//! The activity log's filters for admins: actor, entity type, action, date range, each
//! narrowing to exactly the matching rows; other roles cannot see the log.

use serde_json::json;

use crate::core::{new_customer, shop};
use crate::support::*;

fn rows(html: &str) -> Vec<(String, String, String)> {
    html.split("<tr class=\"activity-row\"")
        .skip(1)
        .map(|r| {
            let attr = |name: &str| {
                let s = &r[r.find(&format!("{name}=\"")).unwrap() + name.len() + 2..];
                s[..s.find('"').unwrap()].to_string()
            };
            let actor = &r[r.find("<td class=\"actor\">").unwrap() + 18..];
            (
                attr("data-entity"),
                attr("data-action"),
                actor[..actor.find('<').unwrap()].to_string(),
            )
        })
        .collect()
}

/// A shop date (the default zone) `offset_days` from today, as a date input has it.
fn day(offset_days: i64) -> String {
    use crm::domain::clock::{add_days, iso_date, ShopClock};
    iso_date(add_days(ShopClock::default().today(), offset_days))
}

#[tokio::test]
async fn admins_filter_the_activity_log_by_actor_entity_action_and_dates() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let cu = new_customer(&oper, "Aziz Karimov", "90 111 22 33").await;
    let (s, _) = oper
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/customers/{cu}"),
            json!({"version": 1, "name": "Aziz Karimov", "phones": ["90 111 22 34"]}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = admin
        .post("/api/v1/branches", json!({"name": "Chilonzor"}))
        .await;
    assert_eq!(s, 201);

    let s = app.login_admin().await;
    let get = |q: String| {
        let s = &s;
        async move {
            let r = s.get(&format!("/audit/activity?{q}")).await;
            assert_eq!(r.status(), 200);
            rows(&r.text().await.unwrap())
        }
    };
    let all = get(String::new()).await;
    assert!(all.len() >= 3, "{all:?}");
    let page = s.get("/audit/activity").await.text().await.unwrap();
    let oper_user = page
        .split("<option value=\"")
        .find_map(|o| {
            let (id, rest) = o.split_once('"')?;
            rest.contains(">oper<").then(|| id.to_string())
        })
        .expect("the actor choice lists oper");

    let by_oper = get(format!("actor={oper_user}")).await;
    assert!(!by_oper.is_empty());
    assert!(by_oper.iter().all(|r| r.2 == "oper"), "{by_oper:?}");
    assert_eq!(by_oper.len(), all.iter().filter(|r| r.2 == "oper").count());
    let branches = get("entity=branch".into()).await;
    assert_eq!(
        branches,
        vec![("branch".into(), "create".into(), "admin".into())]
    );
    let updates = get("action=update".into()).await;
    assert!(!updates.is_empty() && updates.iter().all(|r| r.1 == "update"));
    let both = get(format!("actor={oper_user}&entity=customer&action=create")).await;
    assert_eq!(
        both,
        vec![("customer".into(), "create".into(), "oper".into())]
    );
    assert_eq!(get(format!("from={}&to={}", day(0), day(0))).await, all);
    assert!(get(format!("from={}", day(1))).await.is_empty());
    assert!(get(format!("to={}", day(-1))).await.is_empty());
    // Nonsense is no filter rather than an error.
    assert_eq!(get("actor=abc&from=garbage".into()).await, all);

    let desk = app.login("oper", "oper-pass-1").await;
    assert_eq!(
        desk.get("/audit/activity?entity=branch").await.status(),
        403
    );
}
