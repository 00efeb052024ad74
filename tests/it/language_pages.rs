//! In a real browser (headless Chromium): a user whose language is Russian, then one whose
//! language is Uzbek in Cyrillic, opens the main pages and submits a few bad forms; the
//! visible text (`document.body.innerText`) must hold no English (no run of three or more
//! Latin letters) except what is legitimately Latin: brand names in the test data,
//! protocol and format acronyms, usernames, URLs, e-mail addresses and codes with digits
//! (order numbers, serials). Every offending word is printed with its page.

use std::collections::BTreeMap;
use std::time::Duration;

use crm::domain::accounts::NewUser;
use crm::model::{Language, Role};
use fantoccini::Locator;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::core::Api;
use crate::support::*;

/// Latin words that are right in any language: brands in the test data, acronyms of
/// protocols and formats (as written in Russian and Uzbek texts too), the currency code,
/// the product's name, the test's usernames.
const ALLOWED: &[&str] = &[
    "CRM",
    "SIP",
    "UDP",
    "TCP",
    "TLS",
    "SMTP",
    "STARTTLS",
    "API",
    "CSV",
    "QR",
    "IMEI",
    "Telegram",
    "UZS",
    "URL",
    "PEM",
    "DID",
    "IANA",
    "Samsung",
    "Galaxy",
    "Xiaomi",
    "Redmi",
    "Note",
    "ruadmin",
    "cyradmin",
    // Data, not interface: the branch the first migration creates, which the shop renames.
    "Asosiy", // Telegram's own name for its interface ("Bot API" address field).
    "Bot",
    // The SMS gateways' names, and SMS as Russian and Uzbek write it (issue 18).
    "SMS",
    "Eskiz",
    "Playmobile",
    // Picture formats, written so in every language (the logo upload, issue 20).
    "PNG",
    "JPEG",
    // Sound formats and codecs, written so in every language (call recording, issue 16).
    "WAV",
    "PCM",
    "Opus",
];

/// Whole phrases taken out before looking: the language switch names each language in
/// itself, "E-mail" is how both languages write it, and `--sip off` is a command-line
/// option.
const PHRASES: &[&str] = &[
    "--sip off",
    "English",
    "Oʻzbekcha",
    "E-mail",
    "e-mail",
    // A broadcast's placeholders, typed as they are (issue 18).
    "{name}",
    "{code}",
    "{discount}",
    "{ends_on}",
    "{shop_name}",
];

/// Runs of 3+ Latin letters that are not allowed, from visible text.
fn latin_words(text: &str) -> Vec<String> {
    let mut text = text.to_string();
    for p in PHRASES {
        text = text.replace(p, " ");
    }
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let token = token.trim_start_matches(|c: char| "(«\"'[".contains(c));
        // URLs, addresses, paths, command-line flags (`--sip off`), API-token prefixes
        // and codes (anything with a digit) are not words.
        if token.contains("://")
            || token.starts_with("--")
            || token.starts_with("crm_")
            || token.contains('@')
            || is_time_zone(token)
            || token.starts_with('/')
            || token.starts_with("www.")
            || token.chars().any(|c| c.is_ascii_digit())
        {
            continue;
        }
        let mut run = String::new();
        for c in token.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphabetic() {
                run.push(c);
            } else {
                if run.len() >= 3 && !ALLOWED.contains(&run.as_str()) {
                    out.push(run.clone());
                }
                run.clear();
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// An IANA time-zone name (`Asia/Tashkent`): a code, not a word.
fn is_time_zone(token: &str) -> bool {
    let t = token.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut parts = t.split('/');
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return false;
    };
    parts.next().is_none()
        && [a, b]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
}

/// Each word with the first line of `text` it is on (shortened), to find it by.
fn in_context(text: &str, words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|w| {
            let line = text
                .lines()
                .find(|l| latin_words(l).contains(w))
                .unwrap_or("")
                .trim();
            let line: String = line.chars().take(90).collect();
            format!("{w} «{line}»")
        })
        .collect()
}

async fn add_user(app: &TestApp, username: &str, name: &str, language: Language) {
    app.running()
        .ctx
        .accounts
        .create_user(
            None,
            NewUser {
                username: username.into(),
                display_name: name.into(),
                role: Role::Admin,
                language,
                password: "lang-pass-123".into(),
            },
            false,
        )
        .await
        .expect("user created");
}

struct Data {
    order: i64,
    order_with_debt: Value,
    customer: i64,
}

/// A customer with a paid order that moved once, a second order ready with a debt, a
/// missed call and an extension; all written in Cyrillic where a person would type.
async fn seed(app: &TestApp, api: &Api) -> Data {
    let (s, c) = api
        .post(
            "/api/v1/customers",
            json!({"name": "Азиза Каримова", "phones": ["90 123 45 67"], "address": "Тошкент"}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let customer = c["id"].as_i64().unwrap();
    let new_order = |complaint: &'static str| {
        let body = json!({"customer_id": customer, "device_category": "phone", "brand": "Samsung",
                          "model": "Galaxy A52", "serial": "356789104512345", "complaint": complaint});
        async move {
            let (s, o) = api.post("/api/v1/orders", body).await;
            assert_eq!(s, 201, "{o}");
            o
        }
    };
    let o = new_order("Экран разбит").await;
    let order = o["id"].as_i64().unwrap();
    let (s, v) = api
        .post(
            &format!("/api/v1/orders/{order}/lines"),
            json!({"kind": "labour", "name": "Замена экрана", "qty": 1, "unit_price": 200000}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .post(
            &format!("/api/v1/orders/{order}/payments"),
            json!({"kind": "prepayment", "amount": 50000, "method": "cash"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, view) = api.get(&format!("/api/v1/orders/{order}")).await;
    let (s, v) = api
        .post(
            &format!("/api/v1/orders/{order}/status"),
            json!({"version": view["order"]["version"], "to": "diagnostics", "note": "Проверка"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .post(
            &format!("/api/v1/orders/{order}/comments"),
            json!({"text": "Клиенту позвонили"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Ready, with a part not paid for.
    let o2 = new_order("Не заряжается").await;
    let id2 = o2["id"].as_i64().unwrap();
    api.post(
        &format!("/api/v1/orders/{id2}/lines"),
        json!({"kind": "part", "name": "Разъём", "qty": 1, "unit_price": 100000}),
    )
    .await;
    for to in ["diagnostics", "ready"] {
        let (_, view) = api.get(&format!("/api/v1/orders/{id2}")).await;
        let (s, v) = api
            .post(
                &format!("/api/v1/orders/{id2}/status"),
                json!({"version": view["order"]["version"], "to": to}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, view) = api.get(&format!("/api/v1/orders/{id2}")).await;

    // An extension, and a missed call from the customer.
    let (s, v) = api
        .post(
            "/api/v1/telephony/extensions",
            json!({"number": "301", "display_name": "Касса"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    app.running()
        .ctx
        .db
        .write(move |c| {
            let now = crm::db::now() * 1000;
            let exts = vec!["301".to_string()];
            let number = "+998901234567";
            let call = crm::db::calls::upsert_ringing(
                c,
                &crm::db::calls::NewCall {
                    transferred_by: None,
                    branch_id: None,
                    transferred_from: None,
                    call_id: "lang-call-1",
                    direction: "inbound",
                    from_number: number,
                    to_number: "301",
                    party_number: number,
                    ring_group: None,
                    extensions: &exts,
                    customer_id: Some(customer),
                    open_orders: &[],
                    started_ms: now - 20_000,
                },
            )?;
            crm::db::calls::set_ended(c, "lang-call-1", "missed", "cancelled", 15_000, 0, now)?;
            crm::db::calls::record_missed(c, number, Some(customer), call, now, None)?;
            Ok(())
        })
        .await
        .unwrap();
    Data {
        order,
        order_with_debt: view["order"].clone(),
        customer,
    }
}

/// A refused form: what it is, where it posts, its fields.
type BadForm<'a> = (String, String, Vec<(&'a str, String)>);

async fn visible_text(b: &Browser) -> String {
    b.client
        .wait()
        .for_element(Locator::Css("body"))
        .await
        .unwrap();
    let v = b
        .client
        .execute("return document.body.innerText;", vec![])
        .await
        .unwrap();
    v.as_str().unwrap_or_default().to_string()
}

/// Posts a form from the current page (with its CSRF token), as a person pressing a
/// form's button would, and waits for the answer page.
async fn submit(b: &Browser, action: &str, fields: &[(&str, &str)]) {
    let fields: Vec<Value> = fields.iter().map(|(k, v)| json!([k, v])).collect();
    b.client
        .execute(
            r#"
            const [action, fields] = arguments;
            window.__before_submit = true;
            const csrf = document.body.dataset.csrf
                || (document.querySelector('input[name=_csrf]') || {}).value;
            const f = document.createElement('form');
            f.method = 'post';
            f.action = action;
            for (const [k, v] of fields.concat([['_csrf', csrf]])) {
                const i = document.createElement('input');
                i.type = 'hidden'; i.name = k; i.value = v;
                f.appendChild(i);
            }
            document.body.appendChild(f);
            f.submit();
            "#,
            vec![json!(action), json!(fields)],
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        let v = b
            .client
            .execute(
                "return window.__before_submit === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .ok()?;
        (v == json!(true)).then_some(())
    })
    .await
    .expect("the answer page loads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_russian_and_uzbek_cyrillic_show_no_english() {
    let app = TestApp::spawn_empty().await;
    add_user(&app, "ruadmin", "Ольга Петрова", Language::Ru).await;
    add_user(&app, "cyradmin", "Бобур Алиев", Language::UzCyrl).await;
    // The API token named in Russian: its name is shown on the profile and in the log.
    let uid = app
        .running()
        .ctx
        .accounts
        .user_by_username("ruadmin")
        .await
        .unwrap()
        .id;
    let api = Api {
        c: reqwest::Client::new(),
        token: app
            .running()
            .ctx
            .accounts
            .create_token(None, uid, "скрипт")
            .await
            .unwrap(),
        base: app.base.clone(),
    };
    let d = seed(&app, &api).await;
    let first = Browser::start().await;
    let second = first.another().await;
    let order = d.order;
    let customer = d.customer;
    let debt = d.order_with_debt["id"].as_i64().unwrap();
    let pages = [
        "/".to_string(),
        "/orders".into(),
        "/orders/new".into(),
        format!("/orders/{order}"),
        "/customers".into(),
        format!("/customers/{customer}"),
        "/calls".into(),
        "/calls/missed".into(),
        "/audit/activity".into(),
        "/settings".into(),
        "/settings/notifications".into(),
        "/telephony".into(),
        "/telephony/recording".into(),
        "/users".into(),
        "/profile".into(),
        "/promotions".into(),
        "/broadcasts".into(),
        "/archive".into(),
    ];
    // lang -> page -> offending words
    let mut found: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (b, user, lang) in [(&first, "ruadmin", "ru"), (&second, "cyradmin", "uz-Cyrl")] {
        b.sign_in(&app, user, "lang-pass-123").await;
        let per = found.entry(lang).or_default();
        for p in &pages {
            b.client.goto(&app.url(p)).await.unwrap();
            let text = visible_text(b).await;
            let words = latin_words(&text);
            if !words.is_empty() {
                per.insert(p.clone(), in_context(&text, &words));
            }
        }
        // Bad forms: the refusals are shown in the user's language too.
        let version = {
            let (_, v) = api.get(&format!("/api/v1/orders/{debt}")).await;
            v["order"]["version"].as_i64().unwrap().to_string()
        };
        let bad: Vec<BadForm> = vec![
            (
                "customer with a 5-digit phone".into(),
                "/customers".into(),
                vec![("name", "Тест".into()), ("phone1", "12345".into())],
            ),
            (
                "refund larger than paid".into(),
                format!("/orders/{order}/payments"),
                vec![
                    ("amount", "999999".into()),
                    ("kind", "refund".into()),
                    ("method", "cash".into()),
                ],
            ),
            (
                "handing over with a debt".into(),
                format!("/orders/{debt}/status"),
                vec![("version", version.clone()), ("to", "delivered".into())],
            ),
            (
                "a stale status change".into(),
                format!("/orders/{debt}/status"),
                vec![("version", "1".into()), ("to", "in_repair".into())],
            ),
            (
                "a line with no quantity".into(),
                format!("/orders/{order}/lines"),
                vec![
                    ("kind", "part".into()),
                    ("name", "Винт".into()),
                    ("qty", "0".into()),
                    ("price", "1000".into()),
                ],
            ),
            (
                "an unknown digest algorithm".into(),
                "/telephony/extensions/301/digest".into(),
                vec![("digest", "ROT13".into())],
            ),
            (
                "an unknown time zone".into(),
                "/settings/shop".into(),
                vec![
                    ("name", "Мобил Сервис".into()),
                    ("address", "Тошкент".into()),
                    ("phone", "+998 71 200 00 00".into()),
                    ("hours", "9-18".into()),
                    ("terms", "Кафолат 30 кун".into()),
                    ("order_prefix", "RM".into()),
                    ("currency", "UZS".into()),
                    ("default_country", "998".into()),
                    ("time_zone", "Mars/Olympus".into()),
                ],
            ),
            (
                "a user with a short password".into(),
                "/users".into(),
                vec![
                    ("username", "yangi".into()),
                    ("name", "Янги".into()),
                    ("role", "operator".into()),
                    ("language", lang.into()),
                    ("password", "x".into()),
                ],
            ),
        ];
        for (what, action, fields) in bad {
            b.client.goto(&app.url("/profile")).await.unwrap();
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            submit(b, &action, &fields).await;
            let text = visible_text(b).await;
            let shown = b
                .client
                .execute(
                    "return document.title + ' :: ' + Array.from(document.querySelectorAll(\
                     '.flash-error, [role=alert], .error, .field-error')).map(e => e.innerText).join(' | ');",
                    vec![],
                )
                .await
                .unwrap();
            eprintln!("[{lang}] {what}: {}", shown.as_str().unwrap_or_default());
            let words = latin_words(&text);
            if !words.is_empty() {
                per.insert(format!("POST {action} ({what})"), in_context(&text, &words));
            }
        }
    }
    let mut report = String::new();
    for (lang, pages) in &found {
        for (page, words) in pages {
            report.push_str(&format!("[{lang}] {page}:\n"));
            for w in words {
                report.push_str(&format!("    {w}\n"));
            }
        }
    }
    eprintln!("{report}");
    second.close().await;
    first.close().await;
    assert!(
        found.values().all(|p| p.is_empty()),
        "English words on pages in Russian / Uzbek (Cyrillic):\n{report}"
    );
}
