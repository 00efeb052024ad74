//! The inbox (issue 17): customer messages over the Telegram Bot API stand-in land in
//! threads (text, photos, documents, contacts, locations), each update once; replies go
//! out through the outbox with their delivery state; typing, 429 and 403; assignment and
//! transfer; public order comments; permissions and bad input; and the page live in
//! Chromium.

use std::time::Duration;

use crm::model::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::core::Api;
use crate::notify::telegram_app;
use crate::notify_peers::BotStandIn;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
/// A real JPEG header: enough for the type sniffing.
const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1,
];

async fn conversations(api: &Api, query: &str) -> Vec<Value> {
    let (s, v) = api.get(&format!("/api/v1/conversations?{query}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

async fn conversation_of(api: &Api, chat: i64) -> Value {
    eventually(WAIT, || async {
        conversations(api, "tab=all")
            .await
            .into_iter()
            .find(|c| c["address"].as_str() == Some(chat.to_string().as_str()))
    })
    .await
    .unwrap_or_else(|| panic!("a conversation for chat {chat}"))
}

async fn thread(api: &Api, id: i64) -> Vec<Value> {
    let (s, v) = api
        .get(&format!("/api/v1/conversations/{id}/messages"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

/// Waits until the thread has a message matching `f`.
async fn message_where(api: &Api, id: i64, f: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, || async {
        thread(api, id).await.into_iter().find(|m| f(m))
    })
    .await
    .unwrap_or_else(|| panic!("no such message in thread {id}"))
}

async fn new_customer_with_order(api: &Api, phone: &str) -> (i64, Value) {
    let (s, o) = api
        .send(
            Method::POST,
            "/api/v1/orders",
            json!({
                "customer": {"name": "Dilnoza Karimova", "phone": phone},
                "device_category": "phone", "brand": "Samsung", "complaint": "Ekran singan",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    (o["customer_id"].as_i64().unwrap(), o)
}

#[tokio::test]
async fn customer_messages_of_every_kind_land_once_and_link_by_shared_phone() {
    let bot = BotStandIn::start().await;
    let app = telegram_app(&bot).await;
    let api = Api::of(&app, "admin").await;
    let (customer, _order) = new_customer_with_order(&api, "90 123 45 67").await;
    let chat = 5001;

    // An unknown sender: a thread of its own, and the "share my phone number" button once.
    let first = bot.user_sends(chat, "uz", json!({"text": "Salom, telefonim tayyormi?"}));
    let c = conversation_of(&api, chat).await;
    assert_eq!(c["title"], "Dilnoza Karimova");
    assert!(c["customer_id"].is_null(), "{c}");
    assert_eq!(c["unread"], 1);
    assert!(c["waiting_since"].is_i64());
    let id = c["id"].as_i64().unwrap();
    let ask = eventually(WAIT, || async {
        bot.calls()
            .into_iter()
            .find(|s| s.chat_id == chat && !s.markup.is_null())
    })
    .await
    .expect("the bot asks for the phone number");
    assert_eq!(
        ask.markup["keyboard"][0][0]["request_contact"], true,
        "{:?}",
        ask.markup
    );
    assert!(
        ask.text.contains("telefon"),
        "in the client's language: {}",
        ask.text
    );

    // The customer shares their own number: the thread (and the chat) link to them.
    bot.user_sends(
        chat,
        "uz",
        json!({"contact": {"phone_number": "998901234567", "first_name": "Dilnoza", "user_id": chat}}),
    );
    let linked = eventually(WAIT, || async {
        let c = conversation_of(&api, chat).await;
        (c["customer_id"] == customer).then_some(c)
    })
    .await
    .expect("linked by the shared number");
    assert_eq!(linked["customer_name"], "Dilnoza Karimova");
    message_where(&api, id, |m| {
        m["direction"] == "event" && m["kind"] == "linked"
    })
    .await;
    // A forwarded card (someone else's contact) links nobody.
    bot.user_sends(
        5002,
        "ru",
        json!({"contact": {"phone_number": "998901234567", "first_name": "Друг", "user_id": 777}}),
    );
    let other = conversation_of(&api, 5002).await;
    assert!(other["customer_id"].is_null(), "{other}");

    // A photo with a caption: stored, fetched from Telegram, served as an image.
    bot.add_file("ph1", JPEG.to_vec());
    bot.user_sends(
        chat,
        "uz",
        json!({"caption": "Ekran singan", "photo": [
            {"file_id": "ph1s", "file_unique_id": "u1s", "width": 90, "height": 90, "file_size": 10},
            {"file_id": "ph1", "file_unique_id": "u1", "width": 800, "height": 600, "file_size": JPEG.len()}
        ]}),
    );
    let photo = message_where(&api, id, |m| {
        m["kind"] == "photo" && m["file_state"] == "stored"
    })
    .await;
    assert_eq!(photo["body"], "Ekran singan");
    assert_eq!(photo["order_id"], _order["id"], "their only open order");
    let admin = app.login_admin().await;
    let r = admin.get(&format!("/inbox/files/{}", photo["id"])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), JPEG);

    // A document claiming to be HTML is stored by what its bytes are, and downloaded,
    // never shown as a page.
    bot.add_file("doc1", b"<html><script>alert(1)</script></html>".to_vec());
    bot.user_sends(
        chat,
        "uz",
        json!({"document": {"file_id": "doc1", "file_unique_id": "ud1", "file_name": "x.html",
                            "mime_type": "text/html", "file_size": 40}}),
    );
    let doc = message_where(&api, id, |m| {
        m["kind"] == "document" && m["file_state"] == "stored"
    })
    .await;
    assert_ne!(doc["file_mime"], "text/html", "{doc}");
    let r = admin.get(&format!("/inbox/files/{}", doc["id"])).await;
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(!ctype.contains("html"), "{ctype}");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));

    // Over the size limit: refused at once, visibly, and the thread still has the message.
    bot.user_sends(
        chat,
        "uz",
        json!({"document": {"file_id": "big", "file_unique_id": "ub", "file_name": "video.mp4",
                            "file_size": 30_000_000}}),
    );
    message_where(&api, id, |m| m["file_state"] == "refused").await;

    // A location, a poll (a kind the inbox does not show: named), an edit (ignored);
    // the offset moves past all of them.
    bot.user_sends(
        chat,
        "uz",
        json!({"location": {"latitude": 41.311081, "longitude": 69.240562}}),
    );
    bot.user_sends(
        chat,
        "uz",
        json!({"poll": {"id": "p1", "question": "?", "options": [], "total_voter_count": 0,
            "is_closed": false, "is_anonymous": true, "type": "regular", "allows_multiple_answers": false}}),
    );
    bot.raw_update(
        json!({"edited_message": {"message_id": 1, "date": 1, "edit_date": 2,
        "chat": {"id": chat, "type": "private", "first_name": "D"},
        "from": {"id": chat, "is_bot": false, "first_name": "D"}, "text": "edited"}}),
    );
    let loc = message_where(&api, id, |m| m["kind"] == "location").await;
    assert_eq!(loc["body"], "41.311081, 69.240562");
    message_where(&api, id, |m| m["kind"] == "other").await;
    eventually(WAIT, || async {
        (bot.pending_updates() == 0).then_some(())
    })
    .await
    .expect("every update confirmed");

    // Telegram repeats an update (a lost offset): stored once.
    let before = thread(&api, id).await.len();
    bot.redeliver(vec![json!({"update_id": first, "message": {
        "message_id": first, "date": 1_700_000_000, "text": "Salom, telefonim tayyormi?",
        "chat": {"id": chat, "type": "private", "first_name": "User"},
        "from": {"id": chat, "is_bot": false, "first_name": "Dilnoza", "language_code": "uz"}}})]);
    eventually(WAIT, || async {
        (bot.pending_updates() == 0).then_some(())
    })
    .await
    .unwrap();
    // One more message after it proves the poller went past the repeat.
    bot.user_sends(chat, "uz", json!({"text": "Oxirgi"}));
    message_where(&api, id, |m| m["body"] == "Oxirgi").await;
    let texts: Vec<Value> = thread(&api, id)
        .await
        .into_iter()
        .filter(|m| m["body"] == "Salom, telefonim tayyormi?")
        .collect();
    assert_eq!(texts.len(), 1, "the repeated update is stored once");
    assert_eq!(thread(&api, id).await.len(), before + 1);

    // Search finds the thread by message text (Latin), by the customer's name and by the
    // last four digits of their phone.
    for q in ["singan", "Dilnoza", "4567"] {
        let found = conversations(&api, &format!("tab=all&q={q}")).await;
        assert!(found.iter().any(|c| c["id"] == id), "search {q}");
    }
    assert!(conversations(&api, "tab=all&q=zzzqqq").await.is_empty());
    bot.stop().await;
}

#[tokio::test]
async fn replies_with_files_typing_429_and_a_blocked_bot_are_visible_in_the_thread() {
    let bot = BotStandIn::start().await;
    let app = telegram_app(&bot).await;
    let api = Api::of(&app, "admin").await;
    let chat = 6001;
    bot.user_sends(chat, "ru", json!({"text": "Здравствуйте! Телефон готов?"}));
    let c = conversation_of(&api, chat).await;
    let id = c["id"].as_i64().unwrap();

    // A reply: queued, delivered, its state in the thread; the replier takes the thread
    // and the customer no longer waits.
    let (s, m) = api
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"text": "Да, готов. Tayyor — Дилноза, ждём вас!"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let sent = eventually(WAIT, || async {
        bot.delivered_to(chat)
            .into_iter()
            .find(|t| t.contains("Tayyor — Дилноза"))
    })
    .await;
    assert!(sent.is_some(), "{:?}", bot.calls());
    message_where(&api, id, |x| x["id"] == m["id"] && x["delivery"] == "sent").await;
    let c = conversation_of(&api, chat).await;
    assert!(c["waiting_since"].is_null(), "{c}");
    assert_eq!(c["unread"], 0);
    assert!(
        c["assignee_id"].is_i64(),
        "the first replier takes the thread: {c}"
    );

    // A file from the agent's form (multipart): sent as a photo with its caption.
    let admin = app.login_admin().await;
    let form = reqwest::multipart::Form::new()
        .text("text", "Mana chek")
        .part(
            "file",
            reqwest::multipart::Part::bytes(JPEG.to_vec()).file_name("chek.jpg"),
        );
    let r = admin
        .client
        .post(admin.url(&format!("/inbox/{id}/reply?_csrf={}", admin.csrf)))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let photo = eventually(WAIT, || async {
        bot.calls()
            .into_iter()
            .find(|s| s.method == "sendphoto" && s.status == 200)
    })
    .await
    .expect("sendPhoto");
    assert_eq!(photo.text, "Mana chek");
    assert_eq!(photo.file.as_ref().unwrap().1, JPEG);
    // A file that is not a known type is refused with a reason, and nothing is queued.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![0u8, 1, 2, 3, 0, 9]).file_name("x.exe"),
    );
    let r = admin
        .client
        .post(admin.url(&format!("/inbox/{id}/reply?_csrf={}", admin.csrf)))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // Typing: the customer sees "typing…".
    let r = admin
        .client
        .post(admin.url(&format!("/inbox/{id}/typing")))
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(WAIT, || async {
        bot.actions()
            .into_iter()
            .any(|(c, a)| c == chat && a == "typing")
            .then_some(())
    })
    .await
    .expect("sendChatAction typing");

    // 429: the reply waits and goes out after retry_after.
    bot.throttle_next(1);
    let (s, m) = api
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"text": "Keyinroq"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    message_where(&api, id, |x| x["id"] == m["id"] && x["delivery"] == "sent").await;
    assert!(bot.calls().iter().any(|s| s.status == 429));

    // 403: the customer blocked the bot; the reply fails with the reason, and the next
    // one is refused before it is queued.
    bot.block(chat);
    let (_, m) = api
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"text": "Salom?"}),
        )
        .await;
    let failed = message_where(&api, id, |x| {
        x["id"] == m["id"] && x["delivery"] == "failed"
    })
    .await;
    assert!(
        failed["delivery_error"]
            .as_str()
            .unwrap()
            .contains("blocked"),
        "{failed}"
    );
    let (s, v) = api
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"text": "Yana"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Close; a new customer message reopens it (and clears the block).
    let (s, v) = api
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/close"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "closed");
    bot.user_sends(chat, "ru", json!({"text": "Я снова тут"}));
    message_where(&api, id, |x| x["kind"] == "reopened").await;
    let c = conversation_of(&api, chat).await;
    assert_eq!(c["state"], "open");
    bot.stop().await;
}

#[tokio::test]
async fn transfers_order_comments_and_permissions() {
    let bot = BotStandIn::start().await;
    let app = telegram_app(&bot).await;
    app.add_user("desk1", Role::Operator, "desk1-pass-1").await;
    app.add_user("desk2", Role::Operator, "desk2-pass-1").await;
    let master_id = app.add_user("usta", Role::Master, "usta-pass-11").await;
    let admin = Api::of(&app, "admin").await;
    let d1 = Api::of(&app, "desk1").await;
    let d2 = Api::of(&app, "desk2").await;
    let usta = Api::of(&app, "usta").await;
    let (customer, order) = new_customer_with_order(&admin, "90 765 43 21").await;
    let chat = 7001;
    bot.user_sends(
        chat,
        "uz",
        json!({"contact": {"phone_number": "+998907654321", "first_name": "D", "user_id": chat}}),
    );
    let c = eventually(WAIT, || async {
        let c = conversation_of(&admin, chat).await;
        (c["customer_id"] == customer).then_some(c)
    })
    .await
    .unwrap();
    let id = c["id"].as_i64().unwrap();

    // desk1 takes it; desk2 may not move it; desk1 transfers it to desk2 with a note.
    let me1 = d1.get("/api/v1/me").await.1["id"].as_i64().unwrap();
    let me2 = d2.get("/api/v1/me").await.1["id"].as_i64().unwrap();
    let (s, v) = d1
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/assign"),
            json!({"user_id": me1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d2
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/assign"),
            json!({"user_id": me2}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // An agent must be an active operator or admin, not a master.
    let (s, _) = d1
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/assign"),
            json!({"user_id": master_id}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = d1
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/assign"),
            json!({"user_id": me2, "note": "Usta bilan gaplashib qo‘ying — узнайте цену"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["assignee_id"], me2);
    let t = message_where(&d2, id, |m| m["kind"] == "transferred").await;
    assert!(t["body"].as_str().unwrap().contains("узнайте цену"), "{t}");
    assert_eq!(
        conversations(&d2, "tab=mine").await.len(),
        1,
        "the thread is desk2's now"
    );
    assert!(conversations(&d1, "tab=mine").await.is_empty());

    // A public order comment reaches the customer's chat and the thread, under the order;
    // the customer's answer to it is filed under the order too.
    let oid = order["id"].as_i64().unwrap();
    let desk = app.login("desk1", "desk1-pass-1").await;
    let r = desk
        .post_form(
            &format!("/orders/{oid}/comments"),
            &[
                ("text", "Ekran almashtirildi, olib ketishingiz mumkin"),
                ("public", "1"),
            ],
        )
        .await;
    assert!(r.status().is_success() || r.status().is_redirection());
    let delivered = eventually(WAIT, || async {
        bot.calls().into_iter().find(|s| {
            s.chat_id == chat && s.text.contains("Ekran almashtirildi") && s.status == 200
        })
    })
    .await
    .expect("the public comment reaches the customer");
    let out = message_where(&admin, id, |m| {
        m["direction"] == "out" && m["order_id"] == oid && m["delivery"] == "sent"
    })
    .await;
    assert!(out["body"]
        .as_str()
        .unwrap()
        .contains(order["number"].as_str().unwrap()));
    // A staff-only comment does not.
    let r = desk
        .post_form(
            &format!("/orders/{oid}/comments"),
            &[("text", "ichki izoh")],
        )
        .await;
    assert!(r.status().is_success() || r.status().is_redirection());
    let tg_id = bot
        .calls()
        .iter()
        .position(|s| s.text == delivered.text)
        .unwrap() as i64
        + 1;
    bot.user_sends(
        chat,
        "uz",
        json!({"text": "Rahmat, ertaga kelaman", "reply_to_message": {"message_id": tg_id, "date": 1,
            "chat": {"id": chat, "type": "private", "first_name": "D"}, "text": delivered.text}}),
    );
    let answer = message_where(&admin, id, |m| m["body"] == "Rahmat, ertaga kelaman").await;
    assert_eq!(answer["order_id"], oid);
    let page = desk
        .get(&format!("/orders/{oid}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Rahmat, ertaga kelaman"),
        "the order page shows the customer's answer"
    );
    assert!(!bot.calls().iter().any(|s| s.text.contains("ichki izoh")));

    // The order's receipt goes out as a PDF document from the reply box.
    let form = reqwest::multipart::Form::new()
        .text("text", "Kvitansiyangiz")
        .text("order_id", oid.to_string())
        .text("receipt", "1");
    let r = desk
        .client
        .post(desk.url(&format!("/inbox/{id}/reply?_csrf={}", desk.csrf)))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let doc = eventually(WAIT, || async {
        bot.calls()
            .into_iter()
            .find(|s| s.method == "senddocument" && s.chat_id == chat && s.status == 200)
    })
    .await
    .expect("the receipt is sent as a document");
    let (name, bytes) = doc.file.unwrap();
    assert!(bytes.starts_with(b"%PDF-"), "a PDF");
    assert!(name.contains(order["number"].as_str().unwrap()), "{name}");
    // Invalid UTF-8 in the text is refused with a reason, and nothing is queued.
    let before = bot.calls().len();
    let form = reqwest::multipart::Form::new().part(
        "text",
        reqwest::multipart::Part::bytes(vec![0xC3, 0x28, 0xFF, 0xFE]),
    );
    let r = desk
        .client
        .post(desk.url(&format!("/inbox/{id}/reply?_csrf={}", desk.csrf)))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(bot.calls().len(), before);
    // Without an order there is no receipt to attach.
    let form = reqwest::multipart::Form::new().text("receipt", "1");
    let r = desk
        .client
        .post(desk.url(&format!("/inbox/{id}/reply?_csrf={}", desk.csrf)))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // Masters see nothing until the admin opens the inbox to them; then only the threads
    // of customers whose open orders they work on.
    assert!(conversations(&usta, "tab=all").await.is_empty());
    let (s, _) = usta.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let admin_page = app.login_admin().await;
    let r = admin_page
        .post_form("/inbox/settings", &[("masters_see_own", "1")])
        .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(
        conversations(&usta, "tab=all").await.is_empty(),
        "no order of theirs yet"
    );
    let (s, v) = admin
        .send(
            Method::POST,
            &format!("/api/v1/orders/{oid}/assign"),
            json!({"master_id": master_id}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    assert_eq!(conversations(&usta, "tab=all").await.len(), 1);

    // Operators may not delete a thread or manage quick replies; bad input is refused.
    let r = desk.post_form(&format!("/inbox/{id}/delete"), &[]).await;
    assert_eq!(r.status(), 403);
    let (s, _) = d1
        .send(
            Method::POST,
            "/api/v1/quick-replies",
            json!({"shortcut": "x", "title": "x", "body_uz": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = d1
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"text": "   "}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _) = d1
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"text": "я".repeat(4097)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d1
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"txt": "typo"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = d1.get("/api/v1/conversations?tab=nonsense").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = d1.get("/api/v1/conversations/999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = admin
        .send(
            Method::POST,
            "/api/v1/quick-replies",
            json!({"shortcut": "bad shortcut!", "title": "x", "body_uz": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = admin
        .send(
            Method::POST,
            "/api/v1/quick-replies",
            json!({"shortcut": "tayyor", "title": "Tayyor",
            "body_uz": "{customer_name}, №{order_number} tayyor. To‘lov: {balance_due}",
            "body_ru": "{customer_name}, заказ №{order_number} готов. К оплате: {balance_due}"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = admin
        .send(
            Method::POST,
            "/api/v1/quick-replies",
            json!({"shortcut": "TAYYOR", "title": "x", "body_en": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // First-response and resolution times per agent (desk1 answered nothing; the admin
    // replied nowhere either, but desk2 holds the thread).
    let r = admin_page.get("/inbox/settings").await;
    let html = r.text().await.unwrap();
    assert!(html.contains("agent-times"), "the agents' times table");
    bot.stop().await;
}

#[tokio::test]
async fn procedures_are_searchable_in_any_script_and_render_no_markup() {
    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    app.add_user("desk", Role::Operator, "desk-pass-11").await;
    let desk = app.login("desk", "desk-pass-11").await;
    let r = admin
        .post_form(
            "/procedures",
            &[
                ("title", "Порядок возврата"),
                ("body", "## Qaytarish\n1. Chekni tekshiring\n2. Деньги возвращаются в течение 3 дней\n<script>alert(1)</script>\n[x](javascript:alert(1))"),
            ],
        )
        .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    for q in ["возврат", "Chekni", "tekshir", "деньги"] {
        let html = desk
            .get(&format!("/procedures?q={}", urlencode(q)))
            .await
            .text()
            .await
            .unwrap();
        assert!(html.contains("Порядок возврата"), "search {q}");
    }
    let html = desk.get("/procedures?q=zzzz").await.text().await.unwrap();
    assert!(!html.contains("Порядок возврата"));
    let html = desk.get(&loc).await.text().await.unwrap();
    assert!(html.contains("<h2>Qaytarish</h2>"), "Markdown rendered");
    assert!(!html.contains("<script>alert"), "raw HTML is shown as text");
    assert!(!html.contains("javascript:"), "no script links");
    // Operators read procedures but do not edit them; a blank title is refused.
    let r = desk
        .post_form("/procedures", &[("title", "x"), ("body", "y")])
        .await;
    assert_eq!(r.status(), 403);
    let r = admin
        .post_form("/procedures", &[("title", " "), ("body", "y")])
        .await;
    assert_eq!(r.status(), 422);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_message_arrives_live_the_agent_answers_with_a_quick_reply_and_transfers_it() {
    use crate::browser::Browser;
    use fantoccini::Locator;
    let bot = BotStandIn::start().await;
    let app = telegram_app(&bot).await;
    let oper = app.add_user("desk", Role::Operator, "desk-pass-11").await;
    let admin_api = Api::of(&app, "admin").await;
    let (s, v) = admin_api
        .send(
            Method::POST,
            "/api/v1/quick-replies",
            json!({"shortcut": "tayyor", "title": "Tayyor",
                   "body_ru": "{customer_name}, ваш телефон готов. Ждём вас: {shop_hours}",
                   "body_uz": "{customer_name}, telefoningiz tayyor."}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let b = Browser::start().await;
    b.sign_in(&app, "desk", "desk-pass-11").await;
    b.goto_live(&app, "/inbox", oper).await;

    // A customer writes: the thread appears in the open list, with the unread badge.
    let chat = 8001;
    bot.user_sends(
        chat,
        "ru",
        json!({"text": "Добрый день! Мой телефон готов?"}),
    );
    assert!(
        b.wait_text("#inbox-list-region", "Мой телефон готов").await,
        "live in the list"
    );
    assert!(
        b.wait_text("#inbox-badge", "1").await,
        "the header badge counts it"
    );

    // The agent opens it and answers with a quick reply typed as "/tay" + Enter.
    b.click(".conv-item a").await;
    b.client
        .wait()
        .for_element(Locator::Css("#reply-text"))
        .await
        .unwrap();
    b.fill("#reply-text", "/tay").await;
    let list_shown = eventually(WAIT, || async {
        let el = b.client.find(Locator::Css("#quick-list")).await.ok()?;
        el.is_displayed().await.ok()?.then_some(())
    })
    .await;
    assert!(list_shown.is_some(), "typing / lists the quick replies");
    b.client
        .find(Locator::Css("#reply-text"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    let filled = eventually(WAIT, || async {
        let v = b
            .client
            .find(Locator::Css("#reply-text"))
            .await
            .ok()?
            .prop("value")
            .await
            .ok()??;
        v.contains("ваш телефон готов").then_some(v)
    })
    .await
    .expect("the quick reply is inserted in the customer's language");
    assert!(filled.starts_with("Dilnoza Karimova,"), "{filled}");
    b.click("#reply-form button.primary").await;
    let sent = eventually(WAIT, || async {
        bot.delivered_to(chat)
            .into_iter()
            .find(|t| t.contains("ваш телефон готов"))
    })
    .await;
    assert!(
        sent.is_some(),
        "the reply reaches Telegram: {:?}",
        bot.calls()
    );
    assert!(b.wait_text("#thread-region", "ваш телефон готов").await);

    // The admin watches their own queue in another browser; the agent transfers the
    // thread to them with a note, and it shows up there live.
    let b2 = b.another().await;
    b2.sign_in(&app, "admin", ADMIN_PASSWORD).await;
    let admin_id = admin_api.get("/api/v1/me").await.1["id"].as_i64().unwrap();
    b2.goto_live(&app, "/inbox?tab=mine", admin_id).await;
    b.click("details.transfer summary").await;
    b.client
        .find(Locator::Css("#transfer-form select"))
        .await
        .unwrap()
        .select_by_value(&admin_id.to_string())
        .await
        .unwrap();
    b.fill("#transfer-form textarea", "Narxini siz aytasiz")
        .await;
    b.click("#transfer-form button").await;
    assert!(
        b.wait_text("#thread-region", "Narxini siz aytasiz").await,
        "the note is in the history"
    );
    assert!(
        b2.wait_text("#inbox-list-region", "Dilnoza Karimova").await,
        "the thread appears in the admin's queue live"
    );
    b2.click(".conv-item a").await;
    assert!(b2.wait_text("#thread-region", "Narxini siz aytasiz").await);
    b2.close().await;
    b.close().await;
    bot.stop().await;
}

#[tokio::test]
async fn new_threads_go_to_the_least_busy_agent_online_when_the_admin_turns_it_on() {
    let bot = BotStandIn::start().await;
    let app = telegram_app(&bot).await;
    let busy = app.add_user("busy", Role::Operator, "busy-pass-11").await;
    let free = app.add_user("free", Role::Operator, "free-pass-11").await;
    let away = app.add_user("away", Role::Operator, "away-pass-11").await;
    let admin = Api::of(&app, "admin").await;
    let page = app.login_admin().await;

    // Off by default: a new thread waits unassigned.
    bot.user_sends(9001, "uz", json!({"text": "Salom"}));
    let c = conversation_of(&admin, 9001).await;
    assert!(c["assignee_id"].is_null(), "{c}");

    // "busy" already holds that thread; "away" is not online.
    let (s, v) = admin
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{}/assign", c["id"]),
            json!({"user_id": busy}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = page
        .post_form("/inbox/settings", &[("auto_assign", "1")])
        .await;
    assert!(r.status().is_redirection());
    // Presence as the live hub announces it when a user's screen connects or leaves.
    let events = &app.running().ctx.events;
    for (u, on) in [(busy, true), (free, true), (away, false)] {
        events.publish(crm::events::Event::new(
            "user.presence",
            json!({"user_id": u, "online": on}),
            crm::events::Audience::Everyone,
        ));
    }
    let online = app.running().ctx.notifications.online().clone();
    eventually(WAIT, || async {
        let u = online.users();
        (u.contains(&busy) && u.contains(&free)).then_some(())
    })
    .await
    .expect("presence followed");

    bot.user_sends(9002, "ru", json!({"text": "Здравствуйте"}));
    let c2 = conversation_of(&admin, 9002).await;
    assert_eq!(c2["assignee_id"], free, "the least busy online agent: {c2}");
    let auto = message_where(&admin, c2["id"].as_i64().unwrap(), |m| {
        m["kind"] == "assigned"
    })
    .await;
    assert!(
        auto["body"].as_str().unwrap().contains("\"auto\":true"),
        "{auto}"
    );
    assert_ne!(c2["assignee_id"], away);
    bot.stop().await;
}
