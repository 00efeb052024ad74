//! In a real browser (headless Chromium): the operator's queue takes the next customer,
//! shows the card and the script with its variables filled in, records the outcome from
//! its form and brings up the next one; and the screen-pop card of an answered call
//! turns into the wrap-up form when the call ends, whose outcome lands on the call.

use std::time::Duration;

use crm::model::Role;
use fantoccini::Locator;
use serde_json::json;

use crate::browser::Browser;
use crate::core::Api;
use crate::sipp::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_the_wrap_up_form_work_in_the_browser() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let oper = app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let admin = Api::of(&app, "admin").await;
    for (name, phone) in [
        ("Dilnoza Rahimova", "90 123 45 67"),
        ("Sardor Aliyev", "91 765 43 21"),
    ] {
        let (s, v) = admin
            .post(
                "/api/v1/customers",
                json!({"name": name, "phones": [phone], "tags": "brauzer"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (_, seg) = admin
        .post(
            "/api/v1/segments",
            json!({"name": "Brauzer", "filter": {"tags": ["brauzer"]}}),
        )
        .await;
    let (s, l) = admin
        .post(
            "/api/v1/call-lists",
            json!({"name": "Brauzer", "source": "segment", "source_ref": seg["id"],
                   "settings": {"scripts": {"uz": "Assalomu alaykum, {name}! Qarzingiz: {balance}.",
                                            "ru": "Здравствуйте, {name}!", "en": "Hello, {name}!"}}}),
        )
        .await;
    assert_eq!(s, 201, "{l}");
    let lid = l["id"].as_i64().unwrap();

    let b = Browser::start().await;
    b.sign_in(&app, "oper", "oper-pass-1").await;
    b.goto_live(&app, "/queue", oper).await;
    b.click("#queue-next").await;
    assert!(
        b.wait_text("#queue-customer", "Dilnoza Rahimova").await,
        "the first customer's card"
    );
    // The operator's language picks the script; the variables are filled in.
    let script = b
        .client
        .wait()
        .for_element(Locator::Css("#queue-script"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        script.contains("Dilnoza Rahimova!")
            && !script.contains("{name}")
            && !script.contains("{balance}"),
        "{script}"
    );
    let select = b
        .client
        .find(Locator::Css("#queue-outcome select[name=outcome]"))
        .await
        .unwrap();
    select.select_by_value("will_come_in").await.unwrap();
    b.fill("#queue-outcome textarea[name=note]", "Ertaga keladi")
        .await;
    b.click("#queue-outcome button[type=submit]").await;
    assert!(
        b.wait_text("#queue-customer", "Sardor Aliyev").await,
        "the next customer comes up"
    );
    let (_, items) = admin.get(&format!("/api/v1/call-lists/{lid}/items")).await;
    let first = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["customer_name"] == "Dilnoza Rahimova")
        .unwrap()
        .clone();
    assert_eq!(first["state"], "done");
    assert_eq!(first["outcome"], "will_come_in");
    assert_eq!(first["note"], "Ertaga keladi");
    // "Call back at" shows its time field only for that outcome.
    let cb = b
        .client
        .find(Locator::Css("#queue-callback-label"))
        .await
        .unwrap();
    assert!(!cb.is_displayed().await.unwrap());
    let select = b
        .client
        .find(Locator::Css("#queue-outcome select[name=outcome]"))
        .await
        .unwrap();
    select.select_by_value("call_back").await.unwrap();
    assert!(
        cb.is_displayed().await.unwrap(),
        "the call-back time appears"
    );
    b.click("#queue-outcome button[type=submit]").await;
    assert!(b.wait_text("#queue-status", "").await);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let t = b
                .client
                .find(Locator::Css("#queue-status"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (!t.is_empty()).then_some(t)
        })
        .await
        .is_some(),
        "a missing call-back time is refused with a message"
    );

    // The wrap-up: an inbound call answered on the operator's phone.
    import_users(&app, [1000u32, 1501].into_iter()).await;
    app.running()
        .ctx
        .telephony
        .update_extension(None, "1501", "Desk", Some("oper".into()), true)
        .await
        .unwrap();
    let port = free_port();
    let phone = uas("uas_answer.xml", port, 1);
    register_contact(sip, "1501", port).await;
    let caller = crate::calls::spawn_call(&app, "+998901234567", "1501", 1500);
    assert!(
        b.wait_text(".call-pop", "+998 90 123 45 67").await,
        "the card appears"
    );
    let form = b
        .client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(".call-pop.wrap-up form.wrap-form"))
        .await
        .expect("the card turns into the wrap-up form when the call ends");
    let call_id = form.attr("data-call-id").await.unwrap().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            let opts = b
                .client
                .find_all(Locator::Css(".wrap-form select option"))
                .await
                .ok()?;
            (opts.len() >= 7).then_some(())
        })
        .await
        .is_some(),
        "the admin's outcome codes are offered"
    );
    let select = b
        .client
        .find(Locator::Css(".wrap-form select[name=outcome]"))
        .await
        .unwrap();
    select.select_by_value("not_interested").await.unwrap();
    b.fill(".wrap-form textarea[name=note]", "Narx qimmat dedi")
        .await;
    b.click(".wrap-form button[type=submit]").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.client
                .find(Locator::Css(".call-pop"))
                .await
                .is_err()
                .then_some(())
        })
        .await
        .is_some(),
        "the card goes once the wrap-up is saved"
    );
    assert_ok(&caller.await.unwrap(), 1, "caller");
    let r = wait_sipp(phone).await;
    assert_eq!((r.ok, r.failed), (1, 0), "{}", r.out);
    let wrapped = app
        .running()
        .ctx
        .call_lists
        .for_calls(vec![call_id.clone()])
        .await
        .unwrap();
    let w = wrapped.get(&call_id).expect("the outcome is on the call");
    assert_eq!(
        (w.outcome.as_str(), w.note.as_str()),
        ("not_interested", "Narx qimmat dedi")
    );
    assert_eq!(w.user_id, Some(oper));
    b.close().await;
}
