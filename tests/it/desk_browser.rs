//! The front desk's screens in a real browser (headless Chromium), in Russian and Uzbek
//! Cyrillic, at 1366 px and at a 390 px phone: the header is one row, the filter bars are
//! one row and the first order is near the top, money never breaks a line, the header
//! search answers as you type (`/` and Ctrl+K focus it), and the intake form shows the
//! phone's customer at once and asks when the typed name is someone else's.

use std::time::Duration;

use crm::model::{Language, Role};
use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::json;

use crate::browser::Browser;
use crate::core::{new_customer, new_order, shop};
use crate::desk::add_user_in;
use crate::support::*;

async fn num(b: &Browser, js: &str) -> f64 {
    let v = b.client.execute(js, vec![]).await.unwrap();
    v.as_f64().unwrap_or_else(|| panic!("{js} gave {v}"))
}

async fn sign_in_as(b: &Browser, app: &TestApp, user: &str) {
    b.sign_in(app, user, "desk-pass-123").await;
}

/// Fills the shop with enough to see: customers in two scripts and a few orders, one
/// prepaid without lines, one with a large payment for the revenue card.
async fn data(app: &TestApp) {
    let (_, oper, ..) = shop(app).await;
    let a = new_customer(&oper, "Дилноза Каримова", "90 123 45 67").await;
    let b = new_customer(&oper, "Dilnoza Ergasheva", "93 555 12 34").await;
    for i in 0..12 {
        new_order(
            &oper,
            if i % 2 == 0 { a } else { b },
            json!({"estimate": 350000}),
        )
        .await;
    }
    new_order(&oper, a, json!({"prepayment": 100000})).await;
    new_order(
        &oper,
        b,
        json!({"prepayment": 33850000, "estimate": 40000000}),
    )
    .await;
}

#[tokio::test]
async fn desk_screens_fit_and_answer_in_russian_and_uzbek_cyrillic_at_desktop_and_phone_sizes() {
    let app = TestApp::spawn().await;
    data(&app).await;
    add_user_in(&app, "rudesk", Role::Admin, Language::Ru).await;
    add_user_in(&app, "cyrdesk", Role::Admin, Language::UzCyrl).await;
    let b = Browser::start().await;
    for (user, overpaid, currency) in [
        ("rudesk", "переплата", "сум"),
        ("cyrdesk", "ортиқча тўланган", "сўм"),
    ] {
        b.client.set_window_size(1366, 900).await.unwrap();
        sign_in_as(&b, &app, user).await;

        // Header: one row for an admin (everything administrative under one menu).
        let link = num(
            &b,
            "return document.querySelector('#main-nav > a').getBoundingClientRect().height",
        )
        .await;
        let bar = num(
            &b,
            "return document.querySelector('.topbar').getBoundingClientRect().height",
        )
        .await;
        assert!(
            bar < link * 1.9,
            "{user}: header {bar}px for links of {link}px"
        );
        let over = num(
            &b,
            "const t = document.querySelector('.topbar'); return t.scrollWidth - t.clientWidth",
        )
        .await;
        assert!(over <= 0.0, "{user}: header overflows by {over}px");
        // Room to spare for one more item (the conversations inbox): the search box
        // gives way first and is still wider than its minimum.
        let search = num(
            &b,
            "return document.getElementById('global-search').getBoundingClientRect().width",
        )
        .await;
        // The inbox item now takes the room that was kept for it; the box stays usable.
        assert!(search >= 170.0, "{user}: search box {search}px");
        let admin_links = num(
            &b,
            "return document.querySelectorAll('#settings-menu .menu-list a').length",
        )
        .await;
        assert!(
            admin_links >= 6.0,
            "{user}: admin pages grouped: {admin_links}"
        );

        // Dashboard money: formatted, in the language's words, on one line in its card.
        assert!(
            b.wait_text(".stat-money .stat-value", currency).await,
            "{user}"
        );
        let lines = num(&b, "return Math.max(...[...document.querySelectorAll('.stat-money .money')].map(e => e.getClientRects().length))").await;
        assert_eq!(lines, 1.0, "{user}: a money amount never breaks");
        let overflow = num(&b, "return Math.max(...[...document.querySelectorAll('.stat-money')].map(e => e.scrollWidth - e.clientWidth))").await;
        assert!(
            overflow <= 0.0,
            "{user}: amounts fit their cards ({overflow}px over)"
        );

        // Orders: one filter row, the first order near the top, numbers unbroken.
        b.client.goto(&app.url("/orders")).await.unwrap();
        b.client
            .wait()
            .for_element(Locator::Css("table.orders tbody tr"))
            .await
            .unwrap();
        let filters = num(
            &b,
            "return document.getElementById('order-filters').getBoundingClientRect().height",
        )
        .await;
        assert!(filters < 60.0, "{user}: filter bar {filters}px");
        let first = num(
            &b,
            "return document.querySelector('table.orders tbody tr').getBoundingClientRect().top",
        )
        .await;
        assert!(first < 260.0, "{user}: first order at {first}px");
        let wrapped = num(&b, "return [...document.querySelectorAll('td.order-no a')].filter(a => a.getClientRects().length > 1 || a.getBoundingClientRect().height > 30).length").await;
        assert_eq!(wrapped, 0.0, "{user}: order numbers on one line");
        let body = b
            .client
            .find(Locator::Css("table.orders"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains(&format!("{overpaid} 100 000 {currency}")),
            "{user}: {body}"
        );
        assert!(!body.contains("-100 000"), "{user}");

        // The order page: the parts-and-labour row is one line.
        let first_order = b.attr("td.order-no a", "href").await.unwrap();
        b.client.goto(&app.url(&first_order)).await.unwrap();
        b.client
            .wait()
            .for_element(Locator::Css("#line-form"))
            .await
            .unwrap();
        let row = num(
            &b,
            "return document.getElementById('line-form').getBoundingClientRect().height",
        )
        .await;
        assert!(row < 60.0, "{user}: parts-and-labour row {row}px");

        // Calls: the same compact bar.
        b.client.goto(&app.url("/calls")).await.unwrap();
        b.client
            .wait()
            .for_element(Locator::Css("#call-filters"))
            .await
            .unwrap();
        let calls = num(
            &b,
            "return document.getElementById('call-filters').getBoundingClientRect().height",
        )
        .await;
        assert!(calls < 60.0, "{user}: calls filter bar {calls}px");

        // Header search: `/` focuses it, results come as you type, across scripts.
        b.client.goto(&app.url("/orders")).await.unwrap();
        b.client
            .wait()
            .for_element(Locator::Css("#global-search"))
            .await
            .unwrap();
        b.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .send_keys("/")
            .await
            .unwrap();
        let focused = b
            .client
            .execute("return document.activeElement.id", vec![])
            .await
            .unwrap();
        assert_eq!(
            focused,
            json!("global-search"),
            "{user}: / focuses the search"
        );
        b.client
            .find(Locator::Css("#global-search"))
            .await
            .unwrap()
            .send_keys("Dilnoza")
            .await
            .unwrap();
        assert!(
            b.wait_text("#search-suggest", "Дилноза Каримова").await,
            "{user}: Latin finds Cyrillic"
        );
        assert!(b.wait_text("#search-suggest", "Dilnoza Ergasheva").await);
        // Ctrl+K from elsewhere, then a phone's last four digits.
        b.client
            .execute("document.activeElement.blur()", vec![])
            .await
            .unwrap();
        b.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .send_keys(&format!(
                "{}k{}",
                char::from(Key::Control),
                char::from(Key::Control)
            ))
            .await
            .unwrap();
        let focused = b
            .client
            .execute("return document.activeElement.id", vec![])
            .await
            .unwrap();
        assert_eq!(
            focused,
            json!("global-search"),
            "{user}: Ctrl+K focuses the search"
        );
        b.client.execute("const i = document.getElementById('global-search'); i.value = ''; i.dispatchEvent(new Event('input'))", vec![]).await.unwrap();
        b.client
            .find(Locator::Css("#global-search"))
            .await
            .unwrap()
            .send_keys("1234")
            .await
            .unwrap();
        assert!(
            b.wait_text("#search-suggest", "Dilnoza Ergasheva").await,
            "{user}: phone tail"
        );

        // Intake: the phone's customer shows at once; another name asks.
        b.client.goto(&app.url("/orders/new")).await.unwrap();
        b.fill("#phone", "90 123 45 67").await;
        assert!(
            b.wait_text("#intake-customer", "Дилноза Каримова").await,
            "{user}: known at once"
        );
        b.fill("#customer_name", "Akmal Toshev").await;
        assert!(
            b.wait_text("#customer-choice", "Akmal Toshev").await,
            "{user}: the choice is asked"
        );
        b.client
            .find(Locator::Css("#brand"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let shown = b
            .client
            .execute("return document.getElementById('phone').value", vec![])
            .await
            .unwrap();
        assert_eq!(
            shown,
            json!("+998 90 123 45 67"),
            "{user}: phone shown formatted"
        );
        // The unlock pattern is tapped on a 3×3 pad, each dot once, as on the phone.
        for dot in ["1", "5", "9", "5", "6"] {
            b.click(&format!(".pattern-pad button[data-dot='{dot}']"))
                .await;
        }
        let drawn = b
            .client
            .execute(
                "return document.getElementById('unlock_pattern').value",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            drawn,
            json!("1-5-9-6"),
            "{user}: the pad writes the pattern"
        );
        b.click(".pattern-clear").await;

        // Phone size: the search box stays, on its own row, and the menu folds away.
        b.client.set_window_size(390, 844).await.unwrap();
        b.client.goto(&app.url("/orders")).await.unwrap();
        b.client
            .wait()
            .for_element(Locator::Css("#global-search"))
            .await
            .unwrap();
        let search = b.client.find(Locator::Css("#global-search")).await.unwrap();
        assert!(
            search.is_displayed().await.unwrap(),
            "{user}: search on a phone"
        );
        let wide = num(
            &b,
            "return document.getElementById('global-search').getBoundingClientRect().width",
        )
        .await;
        assert!(wide > 300.0, "{user}: search full width on a phone: {wide}");
        let nav = b.client.find(Locator::Css("#main-nav")).await.unwrap();
        assert!(!nav.is_displayed().await.unwrap());
        let scroll = num(
            &b,
            "return document.documentElement.scrollWidth - window.innerWidth",
        )
        .await;
        assert!(
            scroll <= 1.0,
            "{user}: no sideways scrolling on a phone ({scroll}px)"
        );
        search.send_keys("Дилноза").await.unwrap();
        assert!(
            b.wait_text("#search-suggest", "Dilnoza Ergasheva").await,
            "{user}: Cyrillic finds Latin"
        );

        // Sign out through the user menu for the next language.
        b.client.set_window_size(1366, 900).await.unwrap();
        b.click("#user-menu summary").await;
        b.click("form[action='/logout'] button").await;
        eventually(Duration::from_secs(10), || async {
            b.client.find(Locator::Css("#username")).await.ok()
        })
        .await
        .expect("signed out");
    }
    b.close().await;
}
