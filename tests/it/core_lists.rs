//! Order lists: every filter returns exactly the orders the rules say (overdue from the
//! stored due time, kept in step with status changes and edits), pages follow cursors
//! without losing or repeating a row, and old `page=N` links still work.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::core::{new_customer, new_order, shop, Api};
use crate::support::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The overdue rule as the issue states it, applied to an order from the API.
fn overdue(o: &Value, now: i64) -> bool {
    let group = o["status_group"].as_str().unwrap();
    if group == "closed" {
        return false;
    }
    let past_limit = o["status_limit_hours"]
        .as_i64()
        .is_some_and(|h| o["status_since"].as_i64().unwrap() + h * 3600 < now);
    let past_promise = o["promised_at"].as_i64().is_some_and(|p| p < now) && group != "ready";
    past_limit || past_promise
}

async fn ids(api: &Api, query: &str) -> Vec<i64> {
    let (s, v) = api.get(&format!("/api/v1/orders?limit=500&{query}")).await;
    assert_eq!(s, 200, "{query}: {v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect()
}

fn page_ids(html: &str) -> Vec<i64> {
    html.split("data-order-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

fn pager_link(html: &str, cursor: &str) -> Option<String> {
    let nav = &html[html.find("class=\"pager\"")?..];
    let nav = &nav[..nav.find("</nav>")?];
    nav.split("href=\"")
        .skip(1)
        .map(|h| h[..h.find('"').unwrap()].replace("&amp;", "&"))
        .find(|h| h.contains(cursor) || (cursor == "before=" && h.ends_with("page=0")))
}

async fn status(api: &Api, id: i64, to: &str) {
    let (_, v) = api.get(&format!("/api/v1/orders/{id}")).await;
    let version = v["order"]["version"].as_i64().unwrap();
    let (s, v) = api
        .post(
            &format!("/api/v1/orders/{id}/status"),
            json!({"version": version, "to": to}),
        )
        .await;
    assert_eq!(s, 200, "{id} → {to}: {v}");
}

#[tokio::test]
async fn every_filter_lists_exactly_its_orders_and_pages_follow_cursors() {
    let app = TestApp::spawn().await;
    let (admin, _oper, usta1, _usta2, m1, m2) = shop(&app).await;
    let cu = new_customer(&admin, "Aziz Karimov", "90 111 22 33").await;
    let t = now();
    let mut made = Vec::new();
    for i in 0..130i64 {
        let mut extra = json!({
            "promised_at": if i % 3 == 0 { t - 3600 } else { t + 3 * 86_400 },
        });
        if i % 4 == 0 {
            extra["master_id"] = json!(m1);
        } else if i % 5 == 0 {
            extra["master_id"] = json!(m2);
        }
        made.push(new_order(&admin, cu, extra).await["id"].as_i64().unwrap());
    }
    for (i, id) in made.iter().enumerate() {
        if i % 7 == 0 || i % 13 == 0 {
            status(&admin, *id, "diagnostics").await;
        }
        if i % 13 == 0 {
            status(&admin, *id, "ready").await;
        } else if i % 11 == 0 {
            status(&admin, *id, "cancelled").await;
        }
    }
    // An edit of the promised date moves an order into the overdue list.
    let edited = made[1];
    let (_, v) = admin.get(&format!("/api/v1/orders/{edited}")).await;
    let (s, v) = admin
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/orders/{edited}"),
            json!({"version": v["order"]["version"], "device_category": "phone", "brand": "Samsung",
                   "model": "Galaxy A52", "serial": "", "complaint": "Ekran yorilgan", "condition": "",
                   "accessories": "", "urgent": false, "promised_at": t - 60, "estimate": 0, "warranty_days": 0}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let (_, all) = admin.get("/api/v1/orders?limit=500").await;
    let all = all["items"].as_array().unwrap().clone();
    assert_eq!(all.len(), 130);
    let at = now();
    let expect = |keep: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        all.iter()
            .filter(|o| keep(o))
            .map(|o| o["id"].as_i64().unwrap())
            .collect()
    };
    let group = |g: &'static str| move |o: &Value| o["status_group"] == g;
    let newest_first = |v: &[i64]| v.windows(2).all(|w| w[0] > w[1]);

    let overdue_ids = ids(&admin, "overdue=true").await;
    assert_eq!(overdue_ids, expect(&|o| overdue(o, at)));
    assert!(overdue_ids.contains(&edited), "the edited promise counts");
    assert!(
        !overdue_ids.contains(&made[0]),
        "ready orders are not late on their promise"
    );
    assert!(overdue_ids.len() > 20 && overdue_ids.len() < 60);
    assert!(newest_first(&overdue_ids));
    for g in ["new", "in_work", "ready", "closed"] {
        assert_eq!(
            ids(&admin, &format!("group={g}")).await,
            expect(&group(g)),
            "{g}"
        );
    }
    let mut oldest = expect(&group("closed"));
    oldest.reverse();
    assert_eq!(ids(&admin, "group=closed&sort=oldest").await, oldest);
    assert_eq!(
        ids(&admin, "status_id=2").await,
        expect(&|o| o["status_code"] == "diagnostics")
    );
    assert_eq!(
        ids(&admin, "status_id=8").await,
        expect(&|o| o["status_code"] == "cancelled")
    );
    assert_eq!(
        ids(&admin, &format!("master_id={m1}")).await,
        expect(&|o| o["master_id"] == m1)
    );
    assert_eq!(
        ids(&admin, &format!("master_id={m1}&group=new")).await,
        expect(&|o| o["master_id"] == m1 && o["status_group"] == "new")
    );
    assert_eq!(
        ids(&admin, &format!("master_id={m2}&overdue=true")).await,
        expect(&|o| o["master_id"] == m2 && overdue(o, at))
    );
    assert!(ids(&admin, "group=nonsense").await.is_empty());
    // A master's list is theirs alone whatever they ask for.
    assert_eq!(
        ids(&usta1, "overdue=true").await,
        expect(&|o| o["master_id"] == m1 && overdue(o, at))
    );
    // The API's cursor.
    let newest = expect(&|_| true);
    assert_eq!(
        ids(&admin, &format!("after={}", newest[49])).await,
        newest[50..]
    );

    // The page: "next" links carry a cursor; walking them shows every order once, in
    // order, and "previous" comes back to the same rows.
    let s = app.login_admin().await;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut url = "/orders".to_string();
    loop {
        let r = s.get(&url).await;
        assert_eq!(r.status(), 200, "{url}");
        let html = r.text().await.unwrap();
        let rows = page_ids(&html);
        assert!(rows.len() <= 50);
        seen.extend(rows.iter().copied());
        pages.push((url.clone(), rows, html.clone()));
        match pager_link(&html, "after=") {
            Some(next) => url = next,
            None => break,
        }
        assert!(pages.len() < 10, "the pager must end");
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(seen, newest, "every order once, newest first");
    let back = pager_link(&pages[2].2, "before=").unwrap();
    let r = s.get(&back).await.text().await.unwrap();
    assert_eq!(page_ids(&r), pages[1].1, "previous page from page 3");
    assert!(r.contains("2 / 3"), "the label keeps the page number");
    let first = pager_link(&pages[1].2, "before=").unwrap();
    assert_eq!(
        page_ids(&s.get(&first).await.text().await.unwrap()),
        pages[0].1
    );
    // An old link straight to a page number still shows that page.
    assert_eq!(
        page_ids(&s.get("/orders?page=1").await.text().await.unwrap()),
        pages[1].1
    );
    // Filters stay in the cursor links.
    let html = s
        .get("/orders?group=closed&sort=oldest")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(page_ids(&html), oldest[..oldest.len().min(50)]);
    let overdue_page = s.get("/orders?overdue=1").await.text().await.unwrap();
    assert_eq!(page_ids(&overdue_page), overdue_ids);
    let wanted: BTreeSet<i64> = overdue_ids.iter().copied().collect();
    assert_eq!(wanted.len(), overdue_ids.len());
}
