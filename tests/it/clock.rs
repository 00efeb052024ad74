//! One shop clock: the order-number year, the dashboard's days and its default range,
//! and a shop in another zone, against the real server (the clock frozen through the
//! AppContext, never a global).

use reqwest::Method;
use serde_json::json;

use crate::core::{new_customer, new_order, shop, Api};
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

fn freeze(app: &TestApp, at: i64) {
    app.running().ctx.clock.freeze_at(Some(at));
}

/// The value of the `<input name="NAME" ... value="...">` of a page.
fn input_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name}"));
    let tag_start = html[..at].rfind('<').unwrap();
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').unwrap()];
    let v = &tag[tag.find("value=\"").expect("a value") + 7..];
    v[..v.find('"').unwrap()].to_string()
}

/// The text of the element with `id`.
fn text_of(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[at..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    rest[..rest.find('<').unwrap()].to_string()
}

async fn set_zone(admin: &Api, zone: &str) {
    let (s, mut shop) = admin.get("/api/v1/settings/shop").await;
    assert_eq!(s, 200, "{shop}");
    shop["time_zone"] = json!(zone);
    let (s, v) = admin.send(Method::PUT, "/api/v1/settings/shop", shop).await;
    assert_eq!(s, 204, "{v}");
}

#[tokio::test]
async fn an_order_accepted_at_half_past_midnight_on_new_year_gets_the_new_years_number() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let cu = new_customer(&oper, "Aziz Karimov", "90 111 22 33").await;
    // 23:50 on 31 December in Tashkent (18:50 UTC): still the old year.
    freeze(&app, utc(2026, 12, 31, 18, 50));
    let old = new_order(&admin, cu, json!({})).await;
    assert!(
        old["number"].as_str().unwrap().starts_with("RM26-"),
        "{old}"
    );
    // 00:30 on 1 January in Tashkent is 19:30 UTC on 31 December: the new year's first.
    freeze(&app, utc(2026, 12, 31, 19, 30));
    let new = new_order(&admin, cu, json!({})).await;
    assert_eq!(new["number"], "RM27-00001", "{new}");
    // The order's page shows the shop's time of intake.
    let page = app.login_admin().await;
    let html = page
        .get(&format!("/orders/{}", new["id"]))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("01.01.2027 00:30"),
        "intake time in shop time"
    );
}

#[tokio::test]
async fn the_dashboards_default_range_and_its_filter_button_include_today() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let cu = new_customer(&oper, "Aziz Karimov", "90 111 22 33").await;
    // A prepayment taken now (the real clock).
    new_order(&admin, cu, json!({"prepayment": 123_000})).await;
    let clock = app.running().ctx.clock.get();
    let today = crm::domain::clock::iso_date(clock.today());
    let page = app.login_admin().await;
    let html = page.get("/").await.text().await.unwrap();
    let (from, to) = (input_value(&html, "from"), input_value(&html, "to"));
    assert_eq!(to, today, "the filled-in 'to' date is today");
    assert_eq!(
        from,
        crm::domain::clock::iso_date(crm::domain::clock::add_days(clock.today(), -13)),
        "14 days ending today"
    );
    let want = crm::model::money::group_thousands(123_000);
    assert!(
        text_of(&html, "revenue-total").contains(&want),
        "default range counts today's payment: {}",
        text_of(&html, "revenue-total")
    );
    // Pressing Filter submits the form as it is: the same range, today included.
    let filtered = page
        .get(&format!("/?from={from}&to={to}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text_of(&filtered, "revenue-total").contains(&want),
        "Filter keeps today's revenue: {}",
        text_of(&filtered, "revenue-total")
    );
    assert_eq!(input_value(&filtered, "to"), today);
    // A range that ends yesterday does not count it.
    let yesterday = crm::domain::clock::iso_date(crm::domain::clock::add_days(clock.today(), -1));
    let before = page
        .get(&format!("/?from={from}&to={yesterday}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text_of(&before, "revenue-total").contains(&want));
}

#[tokio::test]
async fn a_shop_in_another_zone_sees_its_own_day_boundaries() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    let cu = new_customer(&oper, "Иван Петров", "90 111 22 33").await;
    set_zone(&admin, "Europe/Moscow").await;
    assert_eq!(app.running().ctx.clock.get().zone_name(), "Europe/Moscow");
    // 20:30 UTC on 31 December: 23:30 in Moscow, already 01:30 on 1 January in Tashkent.
    freeze(&app, utc(2026, 12, 31, 20, 30));
    let o = new_order(&admin, cu, json!({"prepayment": 50_000})).await;
    assert!(o["number"].as_str().unwrap().starts_with("RM26-"), "{o}");
    let page = app.login_admin().await;
    let want = crm::model::money::group_thousands(50_000);
    let day = |html: &str| text_of(html, "revenue-total").contains(&want);
    let html = page.get("/").await.text().await.unwrap();
    assert_eq!(input_value(&html, "to"), "2026-12-31", "Moscow's today");
    let dec31 = "/?from=2026-12-31&to=2026-12-31";
    assert!(day(&page.get(dec31).await.text().await.unwrap()));
    // An hour later it is 00:30 on 1 January in Moscow: a new year, a new day.
    freeze(&app, utc(2026, 12, 31, 21, 30));
    let o = new_order(&admin, cu, json!({})).await;
    assert_eq!(o["number"], "RM27-00001", "{o}");
    let html = page.get("/").await.text().await.unwrap();
    assert_eq!(input_value(&html, "to"), "2027-01-01");
    // The same payment read in Tashkent's days falls on 1 January.
    set_zone(&admin, "Asia/Tashkent").await;
    assert!(!day(&page.get(dec31).await.text().await.unwrap()));
    assert!(day(&page
        .get("/?from=2027-01-01&to=2027-01-01")
        .await
        .text()
        .await
        .unwrap()));
}

#[tokio::test]
async fn an_unknown_time_zone_is_refused_in_the_users_language() {
    let app = TestApp::spawn().await;
    let (admin, ..) = shop(&app).await;
    let (_, mut shop) = admin.get("/api/v1/settings/shop").await;
    assert_eq!(shop["time_zone"], "Asia/Tashkent", "the default zone");
    for (bad, lang, words) in [
        ("Mars/Olympus_Mons", "ru", "Неизвестный часовой пояс"),
        ("+05:00", "uz-Cyrl", "Номаълум вақт минтақаси"),
        ("../../etc/passwd", "en", "Unknown time zone"),
        ("Asia/Ташкент", "uz", "Noma'lum vaqt mintaqasi"),
    ] {
        shop["time_zone"] = json!(bad);
        let r = admin
            .c
            .put(format!("{}/api/v1/settings/shop", admin.base))
            .bearer_auth(&admin.token)
            .header("accept-language", lang)
            .json(&shop)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(words),
            "{lang}: {v}"
        );
    }
    assert_eq!(app.running().ctx.clock.get().zone_name(), "Asia/Tashkent");
    // The settings page: the same refusal, in the admin's language, nothing saved.
    let page = app.login_admin().await;
    let html = page.get("/settings").await.text().await.unwrap();
    assert_eq!(input_value(&html, "time_zone"), "Asia/Tashkent");
    let fields = [
        ("name", "Servis"),
        ("address", ""),
        ("phone", ""),
        ("hours", ""),
        ("terms", ""),
        ("order_prefix", "RM"),
        ("currency", "UZS"),
        ("default_country", "998"),
        ("map_tiles", crm::domain::shop::OSM_TILES),
        ("time_zone", "Nowhere/At_All"),
    ];
    let r = page.post_form("/settings/shop", &fields).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Unknown time zone"));
    let mut ok = fields;
    ok[9].1 = "Asia/Samarkand";
    let r = page.post_form("/settings/shop", &ok).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(app.running().ctx.clock.get().zone_name(), "Asia/Samarkand");
}

/// Saves of the shop settings racing each other leave the running clock on the zone
/// that was stored last, never on the one that lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_zone_saves_leave_the_clock_on_the_stored_zone() {
    let app = TestApp::spawn().await;
    let (admin, ..) = shop(&app).await;
    let zones = [
        "Europe/Moscow",
        "Asia/Tashkent",
        "Asia/Samarkand",
        "Europe/Berlin",
    ];
    for round in 0..60 {
        let saves: Vec<_> = zones
            .iter()
            .map(|z| {
                let (a, z) = (admin.clone(), z.to_string());
                tokio::spawn(async move { set_zone(&a, &z).await })
            })
            .collect();
        for s in saves {
            s.await.unwrap();
        }
        let (_, stored) = admin.get("/api/v1/settings/shop").await;
        assert_eq!(
            app.running().ctx.clock.get().zone_name(),
            stored["time_zone"].as_str().unwrap(),
            "round {round}"
        );
    }
    // The country numbers default to follows the same save (calls normalise with it).
    let (_, mut s) = admin.get("/api/v1/settings/shop").await;
    s["default_country"] = json!("7");
    let (st, v) = admin.send(Method::PUT, "/api/v1/settings/shop", s).await;
    assert_eq!(st, 204, "{v}");
    assert_eq!(app.running().ctx.clock.get().country().calling_code, "7");
}
