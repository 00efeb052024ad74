//! In a real browser (headless Chromium): the screen-pop card appears when the operator's
//! phone rings and disappears when the call ends; an unknown number offers "new
//! customer" and "new order" with the number filled in, and Alt+O opens the order form.

use std::time::Duration;

use crm::model::Role;
use fantoccini::Locator;

use crate::browser::Browser;
use crate::core::{new_customer, Api};
use crate::sipp::*;
use crate::support::*;

async fn gone(b: &Browser, css: &str) -> bool {
    eventually(Duration::from_secs(15), || async {
        b.client
            .find(Locator::Css(css))
            .await
            .is_err()
            .then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_screen_pop_card_appears_and_disappears_in_the_browser() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    import_users(&app, [1000u32, 1501].into_iter()).await;
    let oper = app.add_user("oper", Role::Operator, "oper-pass-1").await;
    app.running()
        .ctx
        .telephony
        .update_extension(None, "1501", "Desk", Some("oper".into()), true)
        .await
        .unwrap();
    let api = Api::of(&app, "admin").await;
    new_customer(&api, "Dilnoza Rahimova", "90 123 45 67").await;

    let b = Browser::start().await;
    b.sign_in(&app, "oper", "oper-pass-1").await;
    // The page's WebSocket is up before the phone rings.
    b.goto_live(&app, "/orders", oper).await;

    let port = free_port();
    let phone = uas("uas_answer.xml", port, 2);
    register_contact(sip, "1501", port).await;
    let place = |from: &str| crate::calls::spawn_call(&app, from, "1501", 2500);

    // A known customer: the card names them and links to their card.
    let c = place("+998901234567");
    assert!(
        b.wait_text(".call-pop", "+998 90 123 45 67").await,
        "the card appears"
    );
    assert!(
        b.wait_text(".call-pop .pop-customer", "Dilnoza Rahimova")
            .await
    );
    let href = b
        .attr(".call-pop .pop-open-customer", "href")
        .await
        .unwrap();
    assert!(href.starts_with("/customers/"), "{href}");
    let dial = b.attr(".call-pop a[data-dial]", "data-dial").await;
    assert_eq!(dial.as_deref(), Some("+998901234567"));
    // The call this user answered ends: the card turns into the wrap-up form (issue 18),
    // and closes when dismissed.
    assert!(
        b.wait_text(".call-pop.wrap-up .wrap-form", "").await,
        "the card turns into the wrap-up form when the call ends"
    );
    b.click(".call-pop.wrap-up .pop-close").await;
    assert!(
        gone(&b, ".call-pop").await,
        "the card closes when dismissed"
    );
    assert_ok(&c.await.unwrap(), 1, "first call");

    // An unknown number: buttons to create the customer or the order with it.
    let c = place("+998977654321");
    assert!(
        b.wait_text(".call-pop .pop-unknown", "").await,
        "unknown caller card"
    );
    let href = b.attr(".call-pop .pop-new-order", "href").await.unwrap();
    assert_eq!(href, "/orders/new?phone=%2B998977654321");
    let href = b.attr(".call-pop .pop-new-customer", "href").await.unwrap();
    assert_eq!(href, "/customers/new?phone=%2B998977654321");
    // Alt+O starts an order from the call, the number filled in.
    b.client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E00A}o\u{E000}")
        .await
        .unwrap();
    let phone_field = b
        .client
        .wait()
        .for_element(Locator::Css("#new-order #phone"))
        .await
        .expect("Alt+O opens the intake form");
    assert_eq!(
        phone_field.prop("value").await.unwrap().as_deref(),
        Some("+998977654321")
    );
    assert_ok(&c.await.unwrap(), 1, "second call");
    let r = wait_sipp(phone).await;
    assert_eq!((r.ok, r.failed), (2, 0), "{}", r.out);
    b.close().await;
}
