//! Issue 17: the web chat widget. Off by default; an allowed site embeds it; visitors'
//! messages land in the inbox; agents' replies reach the widget by long-poll; other sites,
//! oversized messages and floods are refused with clear errors.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use crm::domain::conversations::{InboxQuery, ReplyInput, Tab, MAX_WEB_MESSAGES};
use fantoccini::Locator;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::chat_export::actor;
use crate::support::*;

const VISITOR: &str = "visitor-abcdefghijklmnop";

async fn enable(app: &TestApp, origins: &str) {
    let admin = app.login_admin().await;
    let r = admin
        .post_form(
            "/settings/widget",
            &[("enabled", "1"), ("origins", origins)],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
}

async fn post(app: &TestApp, origin: Option<&str>, body: Value) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(app.url("/widget/messages"))
        .header("accept-language", "en")
        .json(&body);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

fn message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

/// The web threads in the inbox (unassigned tab), as the admin sees them.
async fn web_threads(app: &TestApp) -> Vec<crm::domain::conversations::ConversationRow> {
    let admin = actor(app, "admin").await;
    app.running()
        .ctx
        .conversations
        .list(
            &admin,
            InboxQuery {
                tab: Tab::All,
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.channel == "web")
        .collect()
}

#[tokio::test]
async fn the_widget_is_off_by_default_then_checks_sites_sizes_counts_and_floods() {
    let app = TestApp::spawn().await;
    // Off: nothing under /widget answers, whatever the request.
    for path in ["/widget/widget.js", "/widget/frame"] {
        let r = app.client().get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let (s, body, _) = post(&app, None, json!({"visitor": VISITOR, "text": "hi"})).await;
    assert_eq!(s, 404);
    assert_eq!(message(&body), "The shop's chat is turned off.");

    // The admin's settings refuse what is not a site origin (a CSP header must not be
    // injectable through them).
    let admin = app.login_admin().await;
    let r = admin
        .post_form(
            "/settings/widget",
            &[
                ("enabled", "1"),
                ("origins", "https://shop.uz; script-src *"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("is not a site address"));
    enable(&app, "https://Shop.uz/\nhttp://127.0.0.1:9").await;
    let page = admin.get("/settings/widget").await.text().await.unwrap();
    assert!(page.contains("/widget/widget.js"), "the snippet is shown");

    let r = app
        .client()
        .get(app.url("/widget/frame"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'self' https://shop.uz http://127.0.0.1:9"),
        "{csp}"
    );
    let r = app
        .client()
        .get(app.url("/widget/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));

    // Another site's page cannot post in a visitor's name.
    let (s, body, _) = post(
        &app,
        Some("https://evil.example"),
        json!({"visitor": VISITOR, "text": "spam"}),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(message(&body), "This site may not use the shop's chat.");
    // The allowed site can; Cyrillic and Uzbek Latin text is kept as written.
    let text = "Salom! Telefonim tayyormi? G‘ildirak o‘zgardimi? Когда забрать?";
    let (s, body, _) = post(
        &app,
        Some("https://shop.uz"),
        json!({"visitor": VISITOR, "text": text, "name": "Dilnoza"}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["message"]["text"], text);
    let threads = web_threads(&app).await;
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].address, VISITOR);
    assert_eq!(threads[0].title, "Dilnoza");
    assert_eq!(threads[0].last_preview, text);
    assert_eq!(threads[0].unread, 1);
    let conv = threads[0].id;

    // Bad input: a made-up visitor id, an empty message, one over the limit, a body over
    // the server's limit.
    let (s, body, _) = post(&app, None, json!({"visitor": "short", "text": "x"})).await;
    assert_eq!(s, 400);
    assert_eq!(
        message(&body),
        "The chat session is not valid: reload the page."
    );
    let (s, body, _) = post(&app, None, json!({"visitor": VISITOR, "text": "   "})).await;
    assert_eq!(s, 422);
    assert_eq!(message(&body), "Write a message first.");
    let (s, body, _) = post(
        &app,
        None,
        json!({"visitor": VISITOR, "text": "я".repeat(2001)}),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        message(&body),
        "The message is too long: at most 2000 characters."
    );
    let (s, _, _) = post(
        &app,
        None,
        json!({"visitor": VISITOR, "text": "x".repeat(300_000)}),
    )
    .await;
    assert_eq!(s, 413);

    // The agent answers; the visitor's long-poll returns with the answer, not after its
    // wait. A staff note never reaches the visitor.
    let last = body_last_id(&app, VISITOR).await;
    let poll = {
        let url = app.url(&format!(
            "/widget/messages?visitor={VISITOR}&after={last}&wait=20"
        ));
        tokio::spawn(async move {
            let t = Instant::now();
            let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            (v, t.elapsed())
        })
    };
    let ctx = &app.running().ctx;
    let admin_actor = actor(&app, "admin").await;
    ctx.conversations
        .reply(
            &admin_actor,
            conv,
            ReplyInput {
                text: "ichki izoh: mijoz qayta qo‘ng‘iroq qildi".into(),
                note: true,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    ctx.conversations
        .reply(
            &admin_actor,
            conv,
            ReplyInput {
                text: "Ha, tayyor — заходите после 15:00".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let (v, took) = poll.await.unwrap();
    assert!(took < Duration::from_secs(10), "long-poll took {took:?}");
    let got: Vec<(bool, String)> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mine"].as_bool().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(false, "Ha, tayyor — заходите после 15:00".to_string())]
    );

    // A visitor's thread holds a bounded number of messages.
    let other = "visitor-count-limit-0001";
    let (s, _, _) = post(&app, None, json!({"visitor": other, "text": "first"})).await;
    assert_eq!(s, 201);
    ctx.db
        .write(move |c| {
            let conv: i64 = c.query_row(
                "SELECT id FROM conversations WHERE channel = 'web' AND address = ?1",
                [other],
                |r| r.get(0),
            )?;
            for i in 1..MAX_WEB_MESSAGES {
                c.execute(
                    "INSERT INTO conversation_messages (conversation_id, direction, kind, body, created_at)
                     VALUES (?1, 'in', 'text', ?2, 1764662400)",
                    rusqlite::params![conv, format!("m{i}")],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let (s, body, _) = post(&app, None, json!({"visitor": other, "text": "one more"})).await;
    assert_eq!(s, 409);
    assert_eq!(
        message(&body),
        "This chat has reached its limit of 200 messages. Please call the shop."
    );

    // A flood from one visitor is cut off, with when to try again.
    let flood = "visitor-flood-000000001";
    let mut refused = None;
    for i in 0..12 {
        let (s, body, retry) = post(
            &app,
            None,
            json!({"visitor": flood, "text": format!("flood {i}")}),
        )
        .await;
        if s == 429 {
            refused = Some((i, body, retry));
            break;
        }
        assert_eq!(s, 201);
    }
    let (i, body, retry) = refused.expect("a flood is refused");
    assert!(i <= 6, "refused only after {i} messages");
    assert!(
        message(&body).starts_with("Too many messages: try again in"),
        "{body}"
    );
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    let stored = ctx
        .db
        .read(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM conversation_messages m JOIN conversations v ON v.id = m.conversation_id
                 WHERE v.address = ?1",
                [flood],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(stored, i as i64, "nothing past the limit is stored");

    // Turned off again: the widget's routes are gone at once.
    let r = admin
        .post_form("/settings/widget", &[("origins", "")])
        .await;
    assert_eq!(r.status(), 303);
    let (s, _, _) = post(&app, None, json!({"visitor": VISITOR, "text": "hi"})).await;
    assert_eq!(s, 404);
}

async fn body_last_id(app: &TestApp, visitor: &str) -> i64 {
    let v: Value = reqwest::get(app.url(&format!("/widget/messages?visitor={visitor}&after=0")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .max()
        .unwrap()
}

/// A page of "the shop's website": the one line the settings page tells the shop to add.
async fn site(app_base: String) -> (u16, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Shop site</title></head>\
         <body><h1>Ustaxona</h1><script src=\"{app_base}/widget/widget.js\" data-lang=\"uz\" async></script></body></html>"
    );
    let server = HttpServer::new(move || {
        let html = html.clone();
        App::new().default_service(web::to(move || {
            let html = html.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("text/html; charset=utf-8")
                    .body(html)
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_an_allowed_site_chats_with_the_shop_and_other_sites_cannot_embed_it() {
    let app = TestApp::spawn().await;
    let (port, site_handle) = site(app.base.clone()).await;
    // The site is allowed at 127.0.0.1; the same page at "localhost" is another origin,
    // not in the list.
    enable(&app, &format!("http://127.0.0.1:{port}")).await;
    let b = Browser::start().await;
    let c = &b.client;
    c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
    let frame = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#crm-widget-frame"))
        .await
        .expect("the script adds the chat frame");
    frame.enter_frame().await.unwrap();
    // In the language the site asked for (data-lang="uz").
    assert!(b.wait_text("#w-open", "Chat").await);
    b.click("#w-open").await;
    assert!(b.wait_text("#w-panel h1", "Bizga yozing").await);
    let text = "Assalomu alaykum! Telefonim tayyormi? Экран поменяли?";
    b.fill("#w-text", text).await;
    b.click("#w-send").await;
    assert!(
        b.wait_text("li.w-mine", text).await,
        "the visitor sees their message"
    );

    // It is in the inbox, as a web conversation.
    let conv = eventually(Duration::from_secs(10), || async {
        web_threads(&app)
            .await
            .into_iter()
            .find(|t| t.last_preview == text)
            .map(|t| t.id)
    })
    .await
    .expect("the message is in the inbox");

    // The agent answers; the widget shows it without a reload (long-poll).
    let admin = actor(&app, "admin").await;
    let reply = "Ha, tayyor. Ertaga soat 10 dan keyin keling — ждём вас.";
    app.running()
        .ctx
        .conversations
        .reply(
            &admin,
            conv,
            ReplyInput {
                text: reply.into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(
        b.wait_text("li.w-shop", reply).await,
        "the reply reaches the widget"
    );

    // An oversized message is refused with a message the visitor can read.
    b.fill("#w-text", &"x".repeat(2100)).await;
    b.click("#w-send").await;
    assert!(
        b.wait_text("#w-error", "koʻpi bilan 2000 belgi").await,
        "the visitor is told the limit"
    );
    // A flood (the form sent many times at once): the visitor is told to wait.
    c.execute(
        "var t = document.getElementById('w-text'), f = document.getElementById('w-form');\n\
         for (var i = 0; i < 10; i++) {\n\
           t.value = 'yana ' + i; document.getElementById('w-send').disabled = false; f.requestSubmit();\n\
         }",
        vec![],
    )
    .await
    .unwrap();
    assert!(
        b.wait_text("#w-error", "soniyadan keyin").await,
        "a flood is refused with a clear error"
    );

    // The same page at another origin: the browser refuses to show the chat frame
    // (frame-ancestors), so the visitor there has no chat box.
    c.enter_parent_frame().await.unwrap();
    c.goto(&format!("http://localhost:{port}/")).await.unwrap();
    let frame = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#crm-widget-frame"))
        .await
        .expect("the script still adds the frame");
    frame.enter_frame().await.unwrap();
    let shown = eventually(Duration::from_secs(4), || async {
        c.find(Locator::Css("#w-open")).await.ok()
    })
    .await;
    assert!(
        shown.is_none(),
        "a site not in the list must not show the chat"
    );
    c.enter_parent_frame().await.unwrap();
    b.close().await;
    site_handle.stop(false).await;
}
