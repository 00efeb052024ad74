//! The front desk's screens (issue 20), over HTTP: what a customer owes against the
//! estimate, the header search across scripts and phone tails, the intake form's
//! known-phone choice, checklist and default promise, a refused status change that keeps
//! its choice, styled error pages.

use crm::domain::accounts::NewUser;
use crm::model::{Language, Role};
use serde_json::json;

use crate::core::{new_customer, new_order, shop, urlencode};
use crate::support::*;

pub async fn add_user_in(app: &TestApp, username: &str, role: Role, language: Language) {
    app.running()
        .ctx
        .accounts
        .create_user(
            None,
            NewUser {
                username: username.into(),
                display_name: format!("{username} name"),
                role,
                language,
                password: "desk-pass-123".into(),
            },
            false,
        )
        .await
        .expect("user created");
}

/// The text of the element with this id (up to its first child tag's end).
fn inner(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[at..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    let end = rest.find("</dd>").unwrap_or(rest.len().min(600));
    rest[..end].to_string()
}

#[tokio::test]
async fn a_prepaid_new_order_owes_the_rest_of_its_estimate_and_an_overpayment_is_named() {
    let app = TestApp::spawn().await;
    let (_, oper, ..) = shop(&app).await;
    add_user_in(&app, "rudesk", Role::Operator, Language::Ru).await;
    add_user_in(&app, "cyrdesk", Role::Operator, Language::UzCyrl).await;
    let cu = new_customer(&oper, "Dilnoza Karimova", "90 123 45 67").await;
    let estimated = new_order(&oper, cu, json!({"estimate": 350000, "prepayment": 100000})).await;
    let prepaid = new_order(&oper, cu, json!({"prepayment": 100000})).await;
    let (e, p) = (
        estimated["id"].as_i64().unwrap(),
        prepaid["id"].as_i64().unwrap(),
    );

    let ru = app.login("rudesk", "desk-pass-123").await;
    let page = ru.get(&format!("/orders/{e}")).await.text().await.unwrap();
    let bal = inner(&page, "order-balance");
    assert!(bal.contains("data-due=\"250000\""), "{bal}");
    assert!(
        bal.contains("250 000 сум"),
        "the rest of the estimate, in rubles' words: {bal}"
    );
    assert!(page.contains("К оплате"), "labelled as what is to pay");
    let page = ru.get(&format!("/orders/{p}")).await.text().await.unwrap();
    let bal = inner(&page, "order-balance");
    assert!(
        bal.contains("overpaid") && bal.contains("100 000 сум"),
        "{bal}"
    );
    assert!(!bal.contains("-100 000") && !bal.contains("−100"), "{bal}");
    assert!(page.contains("Переплата"), "named an overpayment");

    // The list says the same in each row.
    let list = ru.get("/orders").await.text().await.unwrap();
    assert!(list.contains("переплата 100 000 сум"), "overpaid row");
    assert!(list.contains("data-due=\"250000\""), "estimate row");
    assert!(!list.contains(">-100 000"), "no negative balance due");
    assert!(
        list.contains("class=\"order-no\""),
        "order numbers kept on one line"
    );
    let cyr = app.login("cyrdesk", "desk-pass-123").await;
    let list = cyr.get("/orders").await.text().await.unwrap();
    assert!(
        list.contains("ортиқча тўланган 100 000 сўм"),
        "Uzbek Cyrillic words"
    );

    // The call card and customer card count the same way: 250 000 owed, 100 000 over.
    let (_, owed) = app
        .running()
        .ctx
        .db
        .read(move |c| crm::db::calls::open_orders_and_balance(c, cu))
        .await
        .unwrap();
    assert_eq!(
        owed, 150_000,
        "250 000 owed on one, 100 000 over on the other"
    );
    let card = ru
        .get(&format!("/customers/{cu}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(inner(&card, "customer-balance").contains("data-due=\"150000\""));

    // Once work lines exist they are what is owed, not the estimate.
    let (s, _) = oper
        .post(
            &format!("/api/v1/orders/{e}/lines"),
            json!({"kind": "labour", "name": "Ekran", "qty": 1, "unit_price": 80000}),
        )
        .await;
    assert_eq!(s, 200);
    let page = ru.get(&format!("/orders/{e}")).await.text().await.unwrap();
    assert!(inner(&page, "order-balance").contains("data-due=\"-20000\""));
}

#[tokio::test]
async fn dashboard_money_is_formatted_in_the_readers_words_and_an_empty_range_says_what_to_do() {
    let app = TestApp::spawn().await;
    let (_, oper, ..) = shop(&app).await;
    add_user_in(&app, "ruboss", Role::Admin, Language::Ru).await;
    let ru = app.login("ruboss", "desk-pass-123").await;
    // No orders yet: no blank charts, a next step instead.
    let page = ru.get("/").await.text().await.unwrap();
    assert!(page.contains("id=\"dashboard-empty\"") && !page.contains("id=\"chart-intake\""));
    assert!(page.contains("href=\"/orders/new\""));
    let cu = new_customer(&oper, "Rustam", "90 999 88 77").await;
    new_order(&oper, cu, json!({"prepayment": 33850000})).await;
    let page = ru.get("/").await.text().await.unwrap();
    assert!(page.contains("id=\"chart-revenue\""));
    assert!(
        page.contains("<span class=\"money\">33 850 000 сум</span>"),
        "revenue card as money"
    );
    assert!(!page.contains(">33850000<"), "no raw amount on a bar");
    assert!(page.contains("33,9 млн"), "bar label in short money words");
    assert!(
        page.contains("33 850 000 сум</title>"),
        "the bar's tooltip in full"
    );
}

#[tokio::test]
async fn header_search_finds_names_across_scripts_phone_tails_and_order_numbers() {
    let app = TestApp::spawn().await;
    let (_, oper, usta1, ..) = shop(&app).await;
    let a = new_customer(&oper, "Дилноза Каримова", "90 123 45 67").await;
    let b = new_customer(&oper, "Dilnoza Ergasheva", "93 555 12 34").await;
    let c = new_customer(&oper, "Xurshid Qodirov", "94 000 77 88").await;
    let o = new_order(&oper, a, json!({})).await;
    let number = o["number"].as_str().unwrap().to_string();
    let s = app.login("oper", "oper-pass-1").await;
    let ask = |q: &str| {
        let path = format!("/search/suggest?q={}", urlencode(q));
        let s = &s;
        async move {
            let r = s.get(&path).await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    for q in ["Dilnoza", "Дилноза", "дильноза", "DILNOZA"] {
        let html = ask(q).await;
        assert!(
            html.contains(&format!("/customers/{a}\""))
                && html.contains(&format!("/customers/{b}\"")),
            "{q} finds both spellings: {html}"
        );
    }
    for q in ["Хуршид", "Khurshid", "Қодиров", "kodirov"] {
        assert!(ask(q).await.contains(&format!("/customers/{c}\"")), "{q}");
    }
    // The last four digits a caller reads out.
    let html = ask("4567").await;
    assert!(
        html.contains(&format!("/customers/{a}\"")) && !html.contains(&format!("/customers/{b}\"")),
        "{html}"
    );
    assert!(ask("1234").await.contains(&format!("/customers/{b}\"")));
    // An order by its number, whole or as the bare sequence of this year.
    let seq: u32 = number.rsplit('-').next().unwrap().parse().unwrap();
    for q in [number.clone(), number.to_lowercase(), seq.to_string()] {
        assert!(
            ask(&q).await.contains(&format!("/orders/{}\"", o["id"])),
            "{q}"
        );
    }
    // Nothing found says so; odd input is not an error.
    let none: serde_json::Value = serde_json::from_str(&ask("Zzyzx").await).unwrap();
    assert_eq!(none["hits"], json!([]));
    assert!(none["empty"].is_string(), "nothing found says so: {none}");
    for q in [
        "\"*(",
        "x OR y NOT",
        "'",
        "Samsung экран",
        "O'lmas (",
        &"я".repeat(5000),
    ] {
        ask(q).await;
    }
    let blank: serde_json::Value = serde_json::from_str(&ask("   ").await).unwrap();
    assert_eq!(blank["hits"], json!([]));
    // A master sees no customers and only their own orders.
    let _ = usta1;
    let m = app.login("usta1", "usta-pass-1").await;
    let html = m
        .get(&format!("/search/suggest?q={}", urlencode("Dilnoza")))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("/customers/"), "{html}");
}

#[test]
fn a_database_indexed_before_the_keys_gets_them_once_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    crm::db::migrate_file(&path).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "INSERT INTO customers (id, name, created_at, updated_at) VALUES (7, 'Дилноза', 0, 0);
             INSERT INTO customer_phones (customer_id, e164) VALUES (7, '+998901234567');
             INSERT INTO search_index (rowid, kind, ref, body) VALUES (14, 'c', 7, 'Дилноза 998901234567');
             DELETE FROM settings WHERE key = 'search_keys';",
        )
        .unwrap();
    }
    crm::db::migrate_file(&path).unwrap();
    crm::db::migrate_file(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let body: String = c
        .query_row("SELECT body FROM search_index WHERE rowid = 14", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(body.matches("dilnoza").count(), 1, "keyed once: {body}");
    assert!(body.contains(" 4567"), "{body}");
    let hit: i64 = c
        .query_row(
            "SELECT count(*) FROM search_index WHERE search_index MATCH '\"dilnoza\"*'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hit, 1);
}

#[tokio::test]
async fn intake_shows_the_phones_customer_and_asks_when_the_typed_name_is_someone_elses() {
    let app = TestApp::spawn().await;
    let (_, oper, ..) = shop(&app).await;
    let known = new_customer(&oper, "Дилноза Каримова", "90 123 45 67").await;
    let s = app.login("oper", "oper-pass-1").await;

    // The customer box for the number being typed, in any form.
    let box_for = |phone: &str, name: &str| {
        format!(
            "/orders/new/customer?phone={}&name={}",
            urlencode(phone),
            urlencode(name)
        )
    };
    let get = |path: String| {
        let s = &s;
        async move {
            let r = s.get(&path).await;
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let v = get(box_for("8 (90) 123-45-67", "")).await;
    assert_eq!(v["customer"]["name"], "Дилноза Каримова", "{v}");
    assert_eq!(
        v["customer"]["phone"], "+998 90 123 45 67",
        "shown formatted"
    );
    assert_eq!(v["differs"], false);
    // The same name in Latin letters is the same person: nothing to choose.
    assert_eq!(
        get(box_for("901234567", "Dilnoza Karimova")).await["differs"],
        false
    );
    let v = get(box_for("901234567", "Akmal")).await;
    assert_eq!(v["differs"], true);
    assert!(v["t"]["new"].as_str().unwrap().contains("Akmal"), "{v}");
    assert_eq!(
        get(box_for("90", "")).await["customer"],
        serde_json::Value::Null
    );
    assert_eq!(
        get(box_for("<b>", "<i>")).await["customer"],
        serde_json::Value::Null
    );

    // The form: the shop's usual promise (3 days) filled in, the checklist.
    let form = s.get("/orders/new").await.text().await.unwrap();
    let clock = app.running().ctx.clock.get();
    let due = crm::domain::clock::iso_date(crm::domain::clock::add_days(clock.today(), 3));
    assert!(form.contains(&format!("name=\"promised\" type=\"date\" value=\"{due}\"")));
    assert!(form.contains("name=\"cond_screen\""));

    let order = |name: &'static str, choice: Option<&'static str>| {
        let s = &s;
        async move {
            let mut f = vec![
                ("phone", "90 123 45 67"),
                ("customer_name", name),
                ("device_category", "phone"),
                ("complaint", "Ekran"),
                ("condition", "orqasi tirnalgan"),
                ("cond_screen", "1"),
            ];
            if let Some(c) = choice {
                f.push(("customer_choice", c));
            }
            s.post_form("/orders", &f).await
        }
    };
    // A different name is not dropped silently: the form comes back asking.
    let r = order("Akmal Toshev", None).await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"customer-choice\"") && html.contains("value=\"Akmal Toshev\""));
    let count = || async {
        app.running()
            .ctx
            .customers
            .list(
                &crm::domain::Actor::builtin(
                    1,
                    "admin",
                    crm::model::Role::Admin,
                    crm::model::Language::En,
                ),
                100,
                0,
            )
            .await
            .unwrap()
            .1
    };
    assert_eq!(count().await, 1, "nothing created yet");
    // Chosen: the phone's customer.
    let r = order("Akmal Toshev", Some("existing")).await;
    assert_eq!(r.status(), 303);
    let (_, v) = oper.get("/api/v1/orders?per_page=10").await;
    let first = &v["items"][0];
    assert_eq!(first["customer_id"].as_i64(), Some(known), "{v}");
    assert_eq!(
        first["condition"].as_str(),
        Some("Screen cracked, orqasi tirnalgan"),
        "checklist before the typed text"
    );
    // Chosen: a new customer sharing the phone.
    let r = order("Akmal Toshev", Some("new")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(count().await, 2);
    let (_, v) = oper.get("/api/v1/orders?per_page=10").await;
    assert_eq!(
        v["items"][0]["customer_name"].as_str(),
        Some("Akmal Toshev"),
        "{v}"
    );
    // The known name, or none: straight to the known customer.
    assert_eq!(order("", None).await.status(), 303);
    assert_eq!(order("Dilnoza Karimova", None).await.status(), 303);
    assert_eq!(count().await, 2);
}

#[tokio::test]
async fn a_refused_status_change_keeps_the_choice_and_the_note() {
    let app = TestApp::spawn().await;
    let (_, oper, ..) = shop(&app).await;
    let cu = new_customer(&oper, "Rustam", "90 999 88 77").await;
    let o = new_order(&oper, cu, json!({})).await;
    let id = o["id"].as_i64().unwrap();
    let s = app.login("oper", "oper-pass-1").await;
    let page = s.get(&format!("/orders/{id}")).await.text().await.unwrap();
    // The last status offered (not the one preselected by default).
    let select = &page[page.find("id=\"to\"").unwrap()..];
    let select = &select[..select.find("</select>").unwrap()];
    let last = select.rsplit("option value=\"").next().unwrap();
    let code = &last[..last.find('"').unwrap()];
    // A stale version: refused, and the page keeps what was chosen and typed.
    let r = s
        .post_form(
            &format!("/orders/{id}/status"),
            &[
                ("version", "999"),
                ("to", code),
                ("note", "Mijoz qo‘ng‘iroq qildi"),
            ],
        )
        .await;
    assert_eq!(r.status(), 409);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(&format!("<option value=\"{code}\" selected>")),
        "{code} still chosen"
    );
    assert!(page.contains("value=\"Mijoz qo‘ng‘iroq qildi\""));
    // The hand-over override is not offered when nothing is owed on work lines.
    assert!(!page.contains("name=\"allow_debt\""));
}

#[tokio::test]
async fn unknown_pages_and_a_used_setup_link_are_styled_pages() {
    let app = TestApp::spawn().await;
    let c = app.client();
    for path in ["/no-such-page", "/setup?token=used"] {
        let r = c.get(app.url(path)).send().await.unwrap();
        assert!(r.status().is_client_error(), "{path}");
        let html = r.text().await.unwrap();
        let css = html
            .split("rel=\"stylesheet\" href=\"")
            .nth(1)
            .map(|s| s[..s.find('"').unwrap()].to_string())
            .unwrap_or_default();
        assert!(
            css.starts_with("/assets/") && css.ends_with("app.css"),
            "{path}: {html}"
        );
        let r = c.get(app.url(&css)).send().await.unwrap();
        assert_eq!(r.status(), 200, "the stylesheet loads");
        assert!(html.contains("error-page") && html.contains("href=\"/\""));
    }
}

#[tokio::test]
async fn receipts_show_what_is_left_to_pay_in_terms_of_the_language_on_three_papers_and_a_device_label(
) {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = shop(&app).await;
    add_user_in(&app, "rudesk", Role::Operator, Language::Ru).await;
    let (s, mut settings) = admin.get("/api/v1/settings/shop").await;
    assert_eq!(s, 200);
    settings["terms_ru"] = json!("Устройство хранится 30 дней.");
    settings["promise_days"] = json!(5);
    let (s, v) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/settings/shop",
            settings.clone(),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    settings["promise_days"] = json!(400);
    let (s, _) = admin
        .send(reqwest::Method::PUT, "/api/v1/settings/shop", settings)
        .await;
    assert_eq!(s, 422, "a promise of 400 days is refused");

    let cu = new_customer(&oper, "Rustam", "90 999 88 77").await;
    let o = new_order(&oper, cu, json!({"estimate": 350000, "prepayment": 100000})).await;
    let id = o["id"].as_i64().unwrap();
    let ru = app.login("rudesk", "desk-pass-123").await;
    let form = ru.get("/orders/new").await.text().await.unwrap();
    let clock = app.running().ctx.clock.get();
    let due = crm::domain::clock::iso_date(crm::domain::clock::add_days(clock.today(), 5));
    assert!(
        form.contains(&format!("value=\"{due}\"")),
        "the shop's 5 days"
    );

    for (width, class) in [
        ("a4", "print a4"),
        ("80mm", "print thermal"),
        ("58mm", "print thermal w58"),
    ] {
        let page = ru
            .get(&format!("/orders/{id}/receipt?width={width}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains(&format!("<body class=\"{class}\">")),
            "{width}"
        );
        assert!(
            page.contains("id=\"print-button\""),
            "{width}: a print button"
        );
        let due = &page[page.find("id=\"receipt-due\"").expect("to-pay row")..];
        let due = &due[..due.find("</tr>").unwrap()];
        assert!(
            due.contains("К оплате") && due.contains("250 000 сум"),
            "{due}"
        );
        assert!(
            page.contains("Устройство хранится 30 дней."),
            "Russian terms"
        );
    }
    // Another language without its own terms falls back to the main text.
    let s = app.login("oper", "oper-pass-1").await;
    let page = s
        .get(&format!("/orders/{id}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Qurilma 30 kun"), "main terms");

    let label = ru.get(&format!("/orders/{id}/label")).await;
    assert_eq!(label.status(), 200);
    let label = label.text().await.unwrap();
    assert!(
        label.contains("id=\"label-qr\"")
            && label.contains("<svg")
            && label.contains(o["number"].as_str().unwrap())
    );
    assert!(label.contains("Rustam"));
    assert_eq!(ru.get("/orders/999999/label").await.status(), 404);
    let page = ru.get(&format!("/orders/{id}")).await.text().await.unwrap();
    assert!(page.contains(&format!("href=\"/orders/{id}/label\"")));
}

#[tokio::test]
async fn the_masters_queue_is_sorted_by_promised_date_and_pages() {
    let app = TestApp::spawn().await;
    let (admin, oper, _, _, m1, _) = shop(&app).await;
    let cu = new_customer(&oper, "Rustam", "90 999 88 77").await;
    let now = app.running().ctx.clock.get().now();
    let mut numbers = Vec::new();
    // 51 orders for usta1, promised in shuffled order; one has no promise (last).
    for i in 0..51i64 {
        let promised = if i == 0 {
            json!(null)
        } else {
            json!(now + ((i * 37) % 51) * 86_400)
        };
        let o = new_order(
            &admin,
            cu,
            json!({"master_id": m1, "promised_at": promised}),
        )
        .await;
        numbers.push((i, o["number"].as_str().unwrap().to_string()));
    }
    let s = app.login("usta1", "usta-pass-1").await;
    let first = s.get("/my").await.text().await.unwrap();
    let pos = |html: &str, n: &str| html.find(&format!(">{n}<"));
    // The soonest promise first; the order without one is not on the first page.
    let soonest = &numbers.iter().find(|(i, _)| (i * 37) % 51 == 1).unwrap().1;
    let later = &numbers.iter().find(|(i, _)| (i * 37) % 51 == 2).unwrap().1;
    assert!(pos(&first, soonest).unwrap() < pos(&first, later).unwrap());
    assert!(
        pos(&first, &numbers[0].1).is_none(),
        "no promise: last, on page 2"
    );
    assert!(first.contains("1 / 2"), "paged");
    let second = s.get("/my?page=1").await.text().await.unwrap();
    assert!(pos(&second, &numbers[0].1).is_some());
}

#[tokio::test]
async fn telephony_picks_staff_from_a_list_and_the_phone_settings_can_be_copied() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let admin = app.login_admin().await;
    let html = admin.get("/telephony").await.text().await.unwrap();
    let select = &html[html.find("<select id=\"username\"").expect("staff list")..];
    let select = &select[..select.find("</select>").unwrap()];
    assert!(
        select.contains("value=\"oper\"") && select.contains("value=\"usta1\""),
        "{select}"
    );
    let r = admin
        .post_form(
            "/telephony/extensions",
            &[("number", "305"), ("name", "Kassa"), ("username", "oper")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let ext = app.running().ctx.telephony.extension("305").await.unwrap();
    assert_eq!(ext.username.as_deref(), Some("oper"));
    assert!(
        html.contains(&format!("data-copy=\"{}\"", ext.secret)),
        "the secret has a copy button"
    );
    assert!(html.contains("id=\"copy-all\""));
    // "New password" and "Delete" are two different-looking buttons; delete asks first.
    assert!(
        html.contains("class=\"small secret-button\"")
            && html.contains("class=\"small danger-button\"")
    );
    assert!(html.contains("data-confirm=\""));
    // A staff user that does not exist is refused, not silently dropped.
    let r = admin
        .post_form(
            "/telephony/extensions",
            &[("number", "306"), ("name", "X"), ("username", "nobody")],
        )
        .await;
    assert_eq!(r.status(), 422);
}

/// The device's unlock code: taken at intake, shown to the assigned master and the
/// admin only, never in lists, events, the activity log, search or receipts.
#[tokio::test]
async fn an_unlock_code_reaches_the_master_and_no_one_else() {
    let app = TestApp::spawn().await;
    let (admin, oper, usta1, usta2, m1, _) = shop(&app).await;
    let code = "Ёж-7781-qz";
    let mut events = app.running().ctx.events.subscribe();
    let s = app.login("oper", "oper-pass-1").await;
    let intake = |pattern: &'static str| {
        let s = &s;
        let m1 = m1.to_string();
        async move {
            s.post_form(
                "/orders",
                &[
                    ("phone", "90 765 43 21"),
                    ("customer_name", "Jasur Aliyev"),
                    ("device_category", "phone"),
                    ("complaint", "Zaryad olmaydi"),
                    ("master", &m1),
                    ("unlock_code", code),
                    ("unlock_pattern", pattern),
                ],
            )
            .await
        }
    };
    // A pattern that reuses a dot is refused with a reason, and nothing is written.
    let r = intake("1-1-2-3").await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("4 to 9 different dots"),
        "the reason is given"
    );
    assert!(
        html.contains(&format!("value=\"{code}\"")),
        "the form keeps what was typed"
    );
    let (_, v) = oper.get("/api/v1/orders?per_page=10").await;
    assert_eq!(v["total"].as_i64(), Some(0), "{v}");

    let r = intake("1-5-9-6").await;
    assert_eq!(r.status(), 303);
    let (_, v) = oper.get("/api/v1/orders?per_page=10").await;
    let id = v["items"][0]["id"].as_i64().unwrap();
    assert!(!v.to_string().contains(code), "not in the list: {v}");

    // The desk that took it in does not see it back, on the page or over the API.
    let page = s.get(&format!("/orders/{id}")).await.text().await.unwrap();
    assert!(!page.contains(code) && !page.contains("unlock-box"));
    assert!(page.contains("id=\"unlock-form\""), "but may change it");
    let (st, v) = oper.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(st, 200);
    assert!(v.get("unlock").is_none(), "{v}");
    // Another master does not even see the order; the assigned one sees the code.
    assert_eq!(usta2.get(&format!("/api/v1/orders/{id}")).await.0, 404);
    let (_, v) = usta1.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(v["unlock"], json!({"code": code, "pattern": "1596"}));
    let (_, v) = admin.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(v["unlock"]["pattern"], "1596");
    let master = app.login("usta1", "usta-pass-1").await;
    let page = master
        .get(&format!("/orders/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"unlock-box\"") && page.contains(code));
    assert!(
        page.contains("1-5-9-6") && page.contains("<polyline"),
        "the pattern is drawn"
    );

    // Nowhere else: live events, the activity log, search, the receipt.
    let mut seen = String::new();
    while let Ok(e) = events.try_recv() {
        seen.push_str(&serde_json::to_string(&e.data).unwrap());
    }
    assert!(!seen.is_empty(), "events were published");
    assert!(!seen.contains(code) && !seen.contains("1596"), "{seen}");
    let audit = app.login_admin().await;
    let log = audit.get("/audit/activity").await.text().await.unwrap();
    assert!(!log.contains(code));
    let (_, found) = admin.get("/api/v1/search?q=7781").await;
    assert!(!found.to_string().contains(code), "{found}");
    let receipt = audit
        .get(&format!("/orders/{id}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!receipt.contains(code) && !receipt.contains("unlock"));

    // The master changes it (the customer gave a new one); the timeline says so, not what.
    let (st, v) = usta1
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/orders/{id}/unlock"),
            json!({"code": "0000", "pattern": ""}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = usta1.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(v["unlock"], json!({"code": "0000", "pattern": ""}));
    let changed = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "unlock")
        .expect("a timeline entry");
    assert!(!changed.to_string().contains("0000"), "{changed}");
    // Bad input over the API: a too long code, dots outside 1-9, too few dots.
    let put = |body: serde_json::Value| {
        let usta1 = &usta1;
        async move {
            usta1
                .send(
                    reqwest::Method::PUT,
                    &format!("/api/v1/orders/{id}/unlock"),
                    body,
                )
                .await
        }
    };
    assert_eq!(put(json!({"code": "x".repeat(65)})).await.0, 422);
    assert_eq!(put(json!({"pattern": "0123"})).await.0, 422);
    assert_eq!(put(json!({"pattern": "12"})).await.0, 422);
    // Both empty removes it: the master then sees no unlock block.
    assert_eq!(put(json!({"code": "", "pattern": ""})).await.0, 200);
    let (_, v) = usta1.get(&format!("/api/v1/orders/{id}")).await;
    assert!(v.get("unlock").is_none(), "{v}");
}

fn png_logo(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(png::ColorType::Rgba);
        e.set_depth(png::BitDepth::Eight);
        let mut wr = e.write_header().unwrap();
        wr.write_image_data(&vec![200u8; (w * h * 4) as usize])
            .unwrap();
    }
    out
}

/// Uploads a logo as the settings page's form does.
fn upload(
    s: &Session,
    bytes: Vec<u8>,
    name: &'static str,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    let form = reqwest::multipart::Form::new().part(
        "logo",
        reqwest::multipart::Part::bytes(bytes).file_name(name),
    );
    s.client
        .post(s.url(&format!("/settings/logo?_csrf={}", s.csrf)))
        .multipart(form)
        .send()
}

/// The shop's logo: uploaded by the admin (PNG or JPEG by its bytes, at most 512 KB),
/// printed at the top of every receipt paper and in the PDF receipt.
#[tokio::test]
async fn the_shop_logo_is_checked_and_printed_on_receipts() {
    let app = TestApp::spawn().await;
    let (_, oper, ..) = shop(&app).await;
    let cu = new_customer(&oper, "Dilnoza", "90 123 45 67").await;
    let id = new_order(&oper, cu, json!({"estimate": 100000})).await["id"]
        .as_i64()
        .unwrap();
    let admin = app.login_admin().await;
    // Refused: text named .png, a WebP, an oversized file, an operator.
    let r = upload(&admin, b"<svg onload=alert(1)>".to_vec(), "logo.png")
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("PNG or JPEG"));
    let mut webp = b"RIFF\0\0\0\0WEBPVP8 ".to_vec();
    webp.resize(64, 0);
    assert_eq!(
        upload(&admin, webp, "logo.webp").await.unwrap().status(),
        422
    );
    let mut big = png_logo(4, 4);
    big.resize(600 * 1024, 0);
    let r = upload(&admin, big, "big.png").await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("512 KB"));
    let desk = app.login("oper", "oper-pass-1").await;
    assert_eq!(
        upload(&desk, png_logo(4, 4), "l.png")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        admin.get("/shop/logo").await.status(),
        404,
        "nothing stored"
    );

    let logo = png_logo(120, 40);
    assert_eq!(
        upload(&admin, logo.clone(), "logo.png")
            .await
            .unwrap()
            .status(),
        303
    );
    let page = admin.get("/settings").await.text().await.unwrap();
    assert!(page.contains("id=\"logo-preview\""));
    let r = desk.get("/shop/logo").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().to_vec(), logo);
    for width in ["a4", "80mm", "58mm"] {
        let receipt = desk
            .get(&format!("/orders/{id}/receipt?width={width}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(receipt.contains("id=\"shop-logo\""), "{width}");
    }
    // The PDF receipt (what the inbox attaches) carries it too, with its transparency.
    let ctx = &app.running().ctx;
    let actor = crm::domain::Actor::builtin(1, "admin", Role::Admin, Language::Ru);
    let pdf = crm::domain::documents::receipt_pdf(
        &ctx.orders,
        &ctx.db,
        ctx.clock.get(),
        &actor,
        id,
        Language::Ru,
    )
    .await
    .unwrap();
    let raw = String::from_utf8_lossy(&pdf);
    assert!(raw.contains("/Subtype /Image") && raw.contains("/SMask"));

    // Removed: gone from the receipts.
    let r = admin.post_form("/settings/logo/remove", &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(desk.get("/shop/logo").await.status(), 404);
    let receipt = desk
        .get(&format!("/orders/{id}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!receipt.contains("shop-logo"));
}

/// The unlock code under bad input and racing edits: a form with bytes that are not
/// UTF-8 is refused and changes nothing; parallel saves each land whole (the last one
/// wins, one timeline entry and one live event each); saving the same code again is no
/// change at all.
#[tokio::test]
async fn unlock_edits_refuse_bad_bytes_and_race_cleanly() {
    let app = TestApp::spawn().await;
    let (_, oper, usta1, _, m1, _) = shop(&app).await;
    let cu = new_customer(&oper, "Дилноза", "90 111 22 33").await;
    let id = new_order(&oper, cu, json!({"master_id": m1})).await["id"]
        .as_i64()
        .unwrap();
    let put = |code: String| {
        let usta1 = &usta1;
        async move {
            usta1
                .send(
                    reqwest::Method::PUT,
                    &format!("/api/v1/orders/{id}/unlock"),
                    json!({"code": code, "pattern": ""}),
                )
                .await
        }
    };
    assert_eq!(put("2468".into()).await.0, 200);

    // Not UTF-8, on the page form: refused, the stored code unchanged.
    let s = app.login("usta1", "usta-pass-1").await;
    let r = s
        .client
        .post(s.url(&format!("/orders/{id}/unlock")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "unlock_code=%FF%FE12&unlock_pattern=&_csrf={}",
            s.csrf
        ))
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == 400 || r.status() == 422,
        "answered {}",
        r.status()
    );
    let (_, v) = usta1.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(v["unlock"]["code"], "2468", "{v}");

    // Eight saves at once, each a different code.
    let mut events = app.running().ctx.events.subscribe();
    let codes: Vec<String> = (0..8).map(|i| format!("70{i}0")).collect();
    let answers = futures_util::future::join_all(codes.iter().cloned().map(put)).await;
    assert!(answers.iter().all(|(st, _)| *st == 200), "{answers:?}");
    let (_, v) = usta1.get(&format!("/api/v1/orders/{id}")).await;
    let last = v["unlock"]["code"].as_str().unwrap().to_string();
    assert!(codes.contains(&last), "a whole code won: {last}");
    let entries = |v: &serde_json::Value| {
        v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "unlock")
            .count()
    };
    assert_eq!(entries(&v), 1 + 8, "one timeline entry per save: {v}");
    let mut published = 0;
    while let Ok(e) = events.try_recv() {
        if e.kind == "order.updated" && e.data["change"] == "unlock" {
            published += 1;
        }
    }
    assert_eq!(published, 8, "one event per save");

    // The same code again: no entry, no event.
    assert_eq!(put(last.clone()).await.0, 200);
    let (_, v) = usta1.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(entries(&v), 9);
    while let Ok(e) = events.try_recv() {
        assert!(
            !(e.kind == "order.updated" && e.data["change"] == "unlock"),
            "a save that changed nothing published {e:?}"
        );
    }
}

/// Uploading the logo while it is being removed: whatever order they land in, the shop
/// ends with one whole logo (exactly the bytes of one upload, on the settings page and
/// the receipt alike) or none, never a link to a missing or mixed picture.
#[tokio::test]
async fn a_logo_upload_racing_its_removal_leaves_one_whole_state() {
    let app = TestApp::spawn().await;
    let (_, oper, ..) = shop(&app).await;
    let cu = new_customer(&oper, "Dilnoza", "90 123 45 68").await;
    let id = new_order(&oper, cu, json!({"estimate": 100000})).await["id"]
        .as_i64()
        .unwrap();
    let admin = app.login_admin().await;
    let logos: Vec<Vec<u8>> = (0..4).map(|i| png_logo(40 + i * 10, 20)).collect();
    for round in 0..3 {
        let uploads = logos
            .iter()
            .cloned()
            .map(|bytes| upload(&admin, bytes, "logo.png"));
        let removals = (0..4).map(|_| admin.post_form("/settings/logo/remove", &[]));
        let (up, rm) = futures_util::future::join(
            futures_util::future::join_all(uploads),
            futures_util::future::join_all(removals),
        )
        .await;
        for r in up {
            assert_eq!(r.unwrap().status(), 303, "round {round}");
        }
        for r in rm {
            // 422: the logo was already gone (another removal came first).
            assert!(
                [303, 422].contains(&r.status().as_u16()),
                "round {round}: {}",
                r.status()
            );
        }
        let served = admin.get("/shop/logo").await;
        let receipt = admin
            .get(&format!("/orders/{id}/receipt"))
            .await
            .text()
            .await
            .unwrap();
        let settings = admin.get("/settings").await.text().await.unwrap();
        if served.status() == 200 {
            let bytes = served.bytes().await.unwrap().to_vec();
            assert!(logos.contains(&bytes), "round {round}: a whole upload");
            assert!(receipt.contains("id=\"shop-logo\""), "round {round}");
            assert!(settings.contains("id=\"logo-preview\""), "round {round}");
        } else {
            assert_eq!(served.status(), 404, "round {round}");
            assert!(!receipt.contains("shop-logo"), "round {round}");
            assert!(!settings.contains("id=\"logo-preview\""), "round {round}");
        }
    }
}
