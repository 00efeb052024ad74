//! Notifications against real peers on loopback: aiosmtpd (plain, STARTTLS with a test CA,
//! AUTH) and a Telegram Bot API stand-in. The outbox rows are queued exactly as the core
//! will queue them: `notifications::enqueue` inside a `Db::write` with the change.

use std::sync::Arc;
use std::time::Duration;

use crm::db::rusqlite::Connection;
use crm::db::DbResult;
use crm::domain::notifications::{
    self, DailyFigures, EventKind, Notification, OrderBrief, OrderLookup, Recipient, TemplateData,
};
use crm::model::Role;

use crate::notify_peers::*;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

fn data(pairs: &[(&str, &str)]) -> TemplateData {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Queues notifications the way the core will: in the same write as a change.
async fn change_and_notify(app: &TestApp, ns: Vec<Notification>) -> Vec<i64> {
    let ids = app
        .running()
        .ctx
        .db
        .write(move |c| {
            // The change itself (standing in for the core's order update).
            crm::db::settings::set(c, "test.last_change", "x", 0)?;
            let mut ids = Vec::new();
            for n in &ns {
                ids.extend(notifications::enqueue(c, n)?);
            }
            Ok(ids)
        })
        .await
        .unwrap();
    app.running().ctx.notifications.wake();
    ids
}

fn mail_to(key: &str, to: &str, order: &str) -> Notification {
    Notification {
        event: EventKind::OrderStatusChanged,
        key: key.into(),
        recipients: vec![Recipient::Customer {
            customer_id: 1,
            email: Some(to.into()),
            language: Some(crm::model::Language::En),
        }],
        data: data(&[
            ("order_number", order),
            ("status", "Ready for pickup"),
            ("status_code", "ready"),
            ("customer_name", "Aziz"),
        ]),
    }
}

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    state: String,
    attempts: i64,
    last_error: Option<String>,
}

async fn rows(app: &TestApp) -> Vec<Row> {
    app.running()
        .ctx
        .db
        .read(|c| {
            let mut st =
                c.prepare("SELECT id, state, attempts, last_error FROM notify_outbox ORDER BY id")?;
            let r = st.query_map([], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    last_error: r.get(3)?,
                })
            })?;
            Ok(r.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

async fn row(app: &TestApp, id: i64) -> Row {
    rows(app).await.into_iter().find(|r| r.id == id).unwrap()
}

#[tokio::test]
async fn smtp_starttls_with_auth_test_button_and_bad_input() {
    let certs = TestCerts::generate();
    let sink = SmtpSink::start(
        free_port(),
        SmtpOptions {
            mode: "starttls",
            certs: Some(&certs),
            auth: Some("shop:s3cret-pass"),
        },
    );
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    let admin = app.login_admin().await;
    let port = sink.port.to_string();
    let form = |ca: &str, invalid: bool| {
        let mut f = vec![
            ("host", "localhost".to_string()),
            ("port", port.clone()),
            ("security", "starttls".into()),
            ("username", "shop".into()),
            ("password", "s3cret-pass".into()),
            ("from", "Usta Servis <shop@example.uz>".into()),
            ("ca_pem", ca.to_string()),
        ];
        if invalid {
            f.push(("accept_invalid_certs", "1".into()));
        }
        f
    };
    let post = |f: Vec<(&'static str, String)>| {
        let admin = &admin;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            admin.post_form("/settings/notifications/smtp", &f).await
        }
    };

    // Bad input is refused and changes nothing.
    let mut bad = form("", false);
    bad[1].1 = "http".into();
    let r = post(bad).await;
    assert_eq!(r.status(), 422);
    let mut bad = form("", false);
    bad[5].1 = "not an address".into();
    assert_eq!(post(bad).await.status(), 422);
    assert_eq!(post(form("not a pem", false)).await.status(), 422);
    assert!(app
        .running()
        .ctx
        .notifications
        .settings()
        .await
        .unwrap()
        .smtp
        .host
        .is_empty());

    // Without trusting the test CA, the certificate is refused and the page says why.
    assert_eq!(post(form("", false)).await.status(), 200);
    let r = admin
        .post_form(
            "/settings/notifications/smtp/test",
            &[("to", "owner@example.uz")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("Test message failed"), "{body}");
    assert!(sink.mails().is_empty());

    // Trusting the CA: delivered over STARTTLS with AUTH.
    assert_eq!(post(form(&certs.ca_pem, false)).await.status(), 200);
    let r = admin
        .post_form(
            "/settings/notifications/smtp/test",
            &[("to", "owner@example.uz")],
        )
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("Test message delivered."), "{body}");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["owner@example.uz"]);
    assert!(mails[0].tls, "sent after STARTTLS");
    assert!(mails[0].auth, "authenticated");
    assert!(mails[0].header("Subject").unwrap().contains("Usta Servis"));
    // The password is never sent back to the browser.
    let page = admin
        .get("/settings/notifications")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("s3cret-pass"));

    // The "LAN" switch instead of a CA works too.
    assert_eq!(post(form("", true)).await.status(), 200);
    // An empty password keeps the stored one (the form never shows it).
    let ids = change_and_notify(
        &app,
        vec![
            mail_to("order:1:status:1", "aziz@example.uz", "A-1042"),
            // 550 for this mailbox: a permanent failure, stopped at once.
            mail_to("order:2:status:1", "reject@example.uz", "A-1043"),
        ],
    )
    .await;
    assert_eq!(ids.len(), 2);
    let done = eventually(WAIT, || async {
        let r = rows(&app).await;
        let settled = r
            .iter()
            .filter(|r| ids.contains(&r.id) && (r.state == "sent" || r.state == "failed"))
            .count();
        (settled == 2).then_some(r)
    })
    .await
    .expect("both settled");
    let by_id = |id| done.iter().find(|r| r.id == id).unwrap().clone();
    assert_eq!(by_id(ids[0]).state, "sent");
    let rejected = by_id(ids[1]);
    assert_eq!(rejected.state, "failed", "a 5xx is permanent");
    assert_eq!(rejected.attempts, 1, "and not retried");
    assert!(rejected.last_error.unwrap().contains("550"));
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    let m = &mails[1];
    assert_eq!(m.to, vec!["aziz@example.uz"]);
    assert!(
        m.data.contains("A-1042") && m.data.contains("Aziz"),
        "{}",
        m.data
    );
    assert!(m
        .header("Message-ID")
        .unwrap()
        .contains(&format!("crm-outbox-{}@example.uz", ids[0])));
    // The stopped message is listed for the admin with its error.
    let page = admin
        .get("/settings/notifications")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("data-outbox-id=\"{}\"", ids[1])),
        "{page}"
    );
    assert!(page.contains("550"));

    // Implicit TLS (port 465 style), no login: the empty user name means no AUTH.
    let tls_sink = SmtpSink::start(
        free_port(),
        SmtpOptions {
            mode: "tls",
            certs: Some(&certs),
            auth: None,
        },
    );
    let tls_port = tls_sink.port.to_string();
    let r = admin
        .post_form(
            "/settings/notifications/smtp",
            &[
                ("host", "localhost"),
                ("port", &tls_port),
                ("security", "tls"),
                ("username", ""),
                ("clear_password", "1"),
                ("from", "shop@example.uz"),
                ("ca_pem", &certs.ca_pem),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = admin
        .post_form(
            "/settings/notifications/smtp/test",
            &[("to", "owner@example.uz")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains("Test message delivered."), "{body}");
    assert_eq!(tls_sink.mails().len(), 1);
    assert!(app
        .running()
        .ctx
        .notifications
        .settings()
        .await
        .unwrap()
        .smtp
        .password
        .is_empty());

    // Another role cannot open the settings.
    app.add_user("op", Role::Operator, "operator-pass-1").await;
    let op = app.login("op", "operator-pass-1").await;
    assert_eq!(op.get("/settings/notifications").await.status(), 403);
    let r = op
        .post_form(
            "/settings/notifications/smtp/test",
            &[("to", "x@example.uz")],
        )
        .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn smtp_down_then_back_across_a_restart_delivers_every_message_once() {
    let port = free_port();
    let mut app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    app.set_settings(&[("notify.max_attempts", "1000")]).await;
    app.plain_smtp(port).await;
    let mut ns: Vec<Notification> = (0..20)
        .map(|i| {
            mail_to(
                &format!("order:{i}:status:1"),
                &format!("c{i}@example.uz"),
                &format!("N-{i}"),
            )
        })
        .collect();
    // The same cause queued twice is one message.
    ns.push(mail_to("order:0:status:1", "c0@example.uz", "N-0"));
    let ids = change_and_notify(&app, ns).await;
    assert_eq!(ids.len(), 20);
    // Nobody listens: every message is tried and waits for a retry.
    eventually(WAIT, || async {
        rows(&app)
            .await
            .iter()
            .all(|r| r.attempts >= 1 && r.state == "pending")
            .then_some(())
    })
    .await
    .expect("each message attempted and still pending");
    assert!(rows(&app).await[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("SMTP"));

    // Restart while the server is still down: nothing is lost or left mid-send.
    app.stop().await;
    let dir = std::mem::replace(&mut app.dir, tempfile::tempdir().unwrap());
    let conn = Connection::open(dir.path().join("crm.db")).unwrap();
    let in_flight: i64 = conn
        .query_row(
            "SELECT count(*) FROM notify_outbox WHERE state <> 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_flight, 0, "a graceful stop settles in-flight sends");
    drop(conn);
    let app = TestApp::spawn_config(test_config(dir.path()), dir).await;

    // The server comes back.
    let sink = SmtpSink::start(
        port,
        SmtpOptions {
            mode: "plain",
            certs: None,
            auth: None,
        },
    );
    eventually(WAIT, || async {
        rows(&app)
            .await
            .iter()
            .all(|r| r.state == "sent")
            .then_some(())
    })
    .await
    .expect("all delivered after the server came back");
    let mails = sink.mails();
    assert_eq!(mails.len(), 20, "each message exactly once");
    let mut to: Vec<String> = mails.iter().map(|m| m.to[0].clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 20);
    let mut mids: Vec<String> = mails
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    mids.sort();
    mids.dedup();
    assert_eq!(mids.len(), 20);
}

#[tokio::test]
async fn dead_letter_after_the_cap_then_retry_from_the_ui() {
    let port = free_port();
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    app.set_settings(&[("notify.max_attempts", "3")]).await;
    app.plain_smtp(port).await;
    let ids = change_and_notify(
        &app,
        vec![mail_to("order:9:status:2", "late@example.uz", "D-9")],
    )
    .await;
    let id = ids[0];
    let dead = eventually(WAIT, || async {
        let r = row(&app, id).await;
        (r.state == "dead").then_some(r)
    })
    .await
    .expect("dead-lettered");
    assert_eq!(dead.attempts, 3, "exactly the cap");
    let admin = app.login_admin().await;
    let page = admin
        .get("/settings/notifications")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("data-outbox-id=\"{id}\" data-state=\"dead\"")),
        "{page}"
    );
    // Stays dead: no further attempts.
    assert_eq!(row(&app, id).await.attempts, 3);

    let sink = SmtpSink::start(
        port,
        SmtpOptions {
            mode: "plain",
            certs: None,
            auth: None,
        },
    );
    // Bad retries: unknown id, not a number.
    assert_eq!(
        admin
            .post_form("/settings/notifications/outbox/999999/retry", &[])
            .await
            .status(),
        404
    );
    assert_eq!(
        admin
            .post_form("/settings/notifications/outbox/abc/retry", &[])
            .await
            .status(),
        404
    );
    // Without the CSRF token: refused.
    let r = admin
        .client
        .post(admin.url(&format!("/settings/notifications/outbox/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = admin
        .post_form(&format!("/settings/notifications/outbox/{id}/retry"), &[])
        .await;
    assert_eq!(r.status(), 200);
    eventually(WAIT, || async {
        (row(&app, id).await.state == "sent").then_some(())
    })
    .await
    .expect("delivered after retry");
    assert_eq!(sink.mails().len(), 1);
    // A sent message cannot be retried (no accidental second send).
    let r = admin
        .post_form(&format!("/settings/notifications/outbox/{id}/retry"), &[])
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(sink.mails().len(), 1);
}

pub(crate) async fn telegram_app(bot: &BotStandIn) -> TestApp {
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    let admin = app.login_admin().await;
    let r = admin
        .post_form(
            "/settings/notifications/telegram",
            &[("token", TOKEN), ("api_url", &bot.url)],
        )
        .await;
    assert_eq!(r.status(), 200);
    // The poller connects and learns the bot's name.
    eventually(WAIT, || async {
        let s = app.running().ctx.notifications.settings().await.unwrap();
        (s.telegram.bot_username == BOT_USERNAME).then_some(())
    })
    .await
    .expect("getMe answered");
    app
}

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

#[tokio::test]
async fn telegram_staff_link_assignment_templates_429_and_blocked() {
    let bot = BotStandIn::start().await;
    let app = telegram_app(&bot).await;
    let admin = app.login_admin().await;
    // The token is never shown back in full.
    let page = admin
        .get("/settings/notifications")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains(TOKEN));
    assert!(page.contains("123456…saw"));
    // A malformed token is refused and the stored one kept.
    let r = admin
        .post_form(
            "/settings/notifications/telegram",
            &[("token", "nonsense"), ("api_url", &bot.url)],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        app.running()
            .ctx
            .notifications
            .settings()
            .await
            .unwrap()
            .telegram
            .token,
        TOKEN
    );

    // A master links their chat with a one-time deep link.
    let master_id = app.add_user("usta", Role::Master, "master-pass-1").await;
    let master = app.login("usta", "master-pass-1").await;
    let page = master
        .post_form("/profile/telegram/link", &[])
        .await
        .text()
        .await
        .unwrap();
    let start = page.find("/start s").expect("the link command is shown");
    let command: String = page[start..].chars().take_while(|c| *c != '<').collect();
    assert!(
        page.contains(&format!("https://t.me/{BOT_USERNAME}?start=s")),
        "deep link"
    );
    bot.user_says(555, "en", &command);
    eventually(WAIT, || async {
        bot.delivered_to(555)
            .iter()
            .any(|t| t.contains("Linked to usta name"))
            .then_some(())
    })
    .await
    .expect("link confirmed in the chat");
    // The code works once.
    bot.user_says(556, "ru", &command);
    eventually(WAIT, || async {
        bot.delivered_to(556)
            .iter()
            .any(|t| t.contains("устарела"))
            .then_some(())
    })
    .await
    .expect("second use refused, in the client's language");
    let page = master.get("/profile/telegram").await.text().await.unwrap();
    assert!(page.contains("data-chat=\"555\""));
    // /my answers from the orders module: this master has none open yet.
    bot.user_says(555, "en", "/my");
    eventually(WAIT, || async {
        bot.delivered_to(555)
            .iter()
            .any(|t| t.contains("No open orders"))
            .then_some(())
    })
    .await
    .expect("/my answered");

    // The admin's own template is used for an assignment.
    let r = admin
        .post_form(
            "/settings/notifications/templates/order.assigned/en",
            &[
                ("subject", "Job {order_number}"),
                ("body", "Job {order_number}: {device} at {shop_name}"),
                ("op", "save"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = admin
        .post_form(
            "/settings/notifications/templates/order.assigned/en",
            &[("subject", "x"), ("body", " "), ("op", "save")],
        )
        .await;
    assert_eq!(r.status(), 422, "an empty body is refused");
    let r = admin
        .post_form(
            "/settings/notifications/templates/order.assigned/en",
            &[
                ("subject", ""),
                ("body", "№{order_number} {typo}"),
                ("op", "preview"),
            ],
        )
        .await;
    let preview = r.text().await.unwrap();
    assert!(
        preview.contains("№A-1042 {typo}"),
        "preview renders sample data and shows unknown placeholders"
    );
    assert_eq!(
        admin
            .get("/settings/notifications/templates/nope/en")
            .await
            .status(),
        404
    );
    assert_eq!(
        admin
            .get("/settings/notifications/templates/order.assigned/xx")
            .await
            .status(),
        404
    );

    let assign = |key: &str| Notification {
        event: EventKind::OrderAssigned,
        key: key.into(),
        recipients: vec![Recipient::Staff(master_id)],
        data: data(&[("order_number", "B-7"), ("device", "iPhone 12")]),
    };
    change_and_notify(&app, vec![assign("order:7:assigned:1")]).await;
    eventually(WAIT, || async {
        bot.delivered_to(555)
            .iter()
            .any(|t| t == "Job B-7: iPhone 12 at Usta Servis")
            .then_some(())
    })
    .await
    .expect("assignment reaches the master's chat");

    // 429: the next attempt waits for retry_after.
    bot.throttle_next(1);
    let before = bot.calls().len();
    let ids = change_and_notify(&app, vec![assign("order:7:assigned:2")]).await;
    let calls = eventually(WAIT, || async {
        let c = bot.calls();
        c[before..].iter().any(|s| s.status == 200).then_some(c)
    })
    .await
    .expect("delivered after the pause");
    let mine: Vec<&Sent> = calls[before..]
        .iter()
        .filter(|s| s.chat_id == 555)
        .collect();
    assert_eq!(mine[0].status, 429);
    assert_eq!(mine[1].status, 200);
    assert!(
        mine[1].at.duration_since(mine[0].at) >= Duration::from_secs(1),
        "retry_after honoured: {:?}",
        mine[1].at.duration_since(mine[0].at)
    );
    eventually(WAIT, || async {
        (row(&app, ids[0]).await.state == "sent").then_some(())
    })
    .await
    .expect("recorded as sent");

    // 403 "bot was blocked": the message stops, the chat is marked, nothing more is sent.
    bot.block(555);
    let ids = change_and_notify(&app, vec![assign("order:7:assigned:3")]).await;
    let r = eventually(WAIT, || async {
        let r = row(&app, ids[0]).await;
        (r.state == "failed").then_some(r)
    })
    .await
    .expect("failed for good");
    assert!(r.last_error.unwrap().contains("blocked"));
    assert_eq!(r.attempts, 1);
    let attempts_403 = bot.calls().iter().filter(|c| c.status == 403).count();
    assert_eq!(attempts_403, 1);
    let ids = change_and_notify(&app, vec![assign("order:7:assigned:4")]).await;
    assert!(ids.is_empty(), "nothing is queued for a blocked chat");
    let page = master.get("/profile/telegram").await.text().await.unwrap();
    assert!(page.contains("bot blocked"));
    assert_eq!(bot.calls().iter().filter(|c| c.status == 403).count(), 1);
    // Unlinking from the profile ends the link.
    let r = master.post_form("/profile/telegram/unlink", &[]).await;
    assert_eq!(r.status(), 303);
    let page = master.get("/profile/telegram").await.text().await.unwrap();
    assert!(!page.contains("data-chat=\"555\"") && page.contains("Not linked."));
    bot.stop().await;
}

/// An orders module stand-in the test controls.
struct StubOrders;

impl OrderLookup for StubOrders {
    fn by_code(&self, _: &Connection, code: &str) -> DbResult<Option<OrderBrief>> {
        Ok((code == "K7Q2").then(|| OrderBrief {
            order_id: 42,
            customer_id: 9,
            number: "A-1042".into(),
            device: "Redmi Note 9".into(),
            status: "Diagnostics".into(),
        }))
    }
    fn open_for_staff(&self, _: &Connection, _: i64) -> DbResult<Vec<OrderBrief>> {
        Ok(Vec::new())
    }
    fn open_for_customer(&self, c: &Connection, customer_id: i64) -> DbResult<Vec<OrderBrief>> {
        Ok(self
            .by_code(c, "K7Q2")?
            .into_iter()
            .filter(|o| o.customer_id == customer_id)
            .collect())
    }
    fn daily_figures(&self, _: &Connection, _since: i64) -> DbResult<Option<DailyFigures>> {
        Ok(Some(DailyFigures {
            new_orders: 12,
            overdue_orders: 3,
            ready_not_collected: 5,
            missed_calls: 7,
        }))
    }
}

/// A server whose mail goes to a fresh plain-SMTP sink on loopback, retrying fast.
async fn app_mailing_to_plain_smtp() -> (SmtpSink, TestApp) {
    let sink = SmtpSink::start(
        free_port(),
        SmtpOptions {
            mode: "plain",
            certs: None,
            auth: None,
        },
    );
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    app.plain_smtp(sink.port).await;
    (sink, app)
}

#[tokio::test]
async fn daily_summary_goes_to_the_admins_once_a_day() {
    let (sink, app) = app_mailing_to_plain_smtp().await;
    let admin = app.login_admin().await;
    let rules = |emails: &'static str, hour: &'static str| {
        let admin = &admin;
        async move {
            admin
                .post_form(
                    "/settings/notifications/rules",
                    &[
                        ("rule", "summary.daily|email"),
                        ("default_language", "en"),
                        ("summary_emails", emails),
                        ("summary_hour", hour),
                    ],
                )
                .await
                .status()
        }
    };
    assert_eq!(rules("owner@example.uz, not-an-address", "0").await, 422);
    assert_eq!(rules("owner@example.uz", "24").await, 422);
    assert_eq!(rules("owner@example.uz, boss@example.uz", "0").await, 200);
    let n = &app.running().ctx.notifications;
    // Without an orders module: no (empty, misleading) summary.
    n.set_order_lookup(Arc::new(notifications::NoOrders));
    assert!(!n.queue_daily_summary().await.unwrap());
    n.set_order_lookup(Arc::new(StubOrders));
    assert!(n.queue_daily_summary().await.unwrap());
    assert!(!n.queue_daily_summary().await.unwrap(), "once a day");
    let mails = eventually(WAIT, || async {
        let m = sink.mails();
        (m.len() >= 2).then_some(m)
    })
    .await
    .expect("summary delivered to both admins");
    assert_eq!(mails.len(), 2);
    let body = &mails[0].data;
    assert!(
        body.contains("New orders: 12") && body.contains("Missed calls: 7"),
        "{body}"
    );
}

#[tokio::test]
async fn daily_summary_counts_the_real_orders_of_the_day() {
    let (sink, app) = app_mailing_to_plain_smtp().await;
    let admin = app.login_admin().await;
    let saved = admin
        .post_form(
            "/settings/notifications/rules",
            &[
                ("rule", "summary.daily|email"),
                ("default_language", "en"),
                ("summary_emails", "owner@example.uz"),
                ("summary_hour", "0"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 200);
    let (_, oper, ..) = crate::core::shop(&app).await;
    let customer = crate::core::new_customer(&oper, "Aziza Karimova", "90 123 45 67").await;
    for _ in 0..3 {
        crate::core::new_order(&oper, customer, serde_json::json!({})).await;
    }
    // The app's own orders module answers (no stand-in).
    assert!(app
        .running()
        .ctx
        .notifications
        .queue_daily_summary()
        .await
        .unwrap());
    let mail = eventually(WAIT, || async { sink.mails().into_iter().next() })
        .await
        .expect("summary delivered");
    for line in [
        "New orders: 3",
        "Overdue: 0",
        "Ready, not collected: 0",
        "Missed calls: 0",
    ] {
        assert!(mail.data.contains(line), "{line}: {}", mail.data);
    }
}

#[tokio::test]
async fn telegram_customer_links_by_order_code_and_hears_chosen_statuses() {
    let bot = BotStandIn::start().await;
    let app = telegram_app(&bot).await;
    app.running()
        .ctx
        .notifications
        .set_order_lookup(Arc::new(StubOrders));
    assert_eq!(
        notifications::customer_deep_link(BOT_USERNAME, "K7Q2").unwrap(),
        format!("https://t.me/{BOT_USERNAME}?start=oK7Q2")
    );
    bot.user_says(777, "ru", "/start oWRONG");
    bot.user_says(777, "ru", "/status");
    eventually(WAIT, || async {
        let d = bot.delivered_to(777);
        (d.iter().any(|t| t.contains("не найден")) && d.iter().any(|t| t.contains("не привязан")))
            .then_some(())
    })
    .await
    .expect("wrong code and unlinked /status answered");
    // The order number alone links nothing (issue 14): only the receipt's one-time code.
    let link = app
        .running()
        .ctx
        .notifications
        .customer_link("K7Q2")
        .await
        .unwrap()
        .expect("the bot is set up");
    assert_eq!(
        link.url,
        format!("https://t.me/{BOT_USERNAME}?start=o{}", link.code)
    );
    bot.user_says(777, "ru", &format!("/start o{}", link.code));
    eventually(WAIT, || async {
        bot.delivered_to(777)
            .iter()
            .any(|t| t.contains("№A-1042") && t.contains("Diagnostics"))
            .then_some(())
    })
    .await
    .expect("customer linked");
    bot.user_says(777, "ru", "/status");
    eventually(WAIT, || async {
        bot.delivered_to(777)
            .iter()
            .any(|t| t.starts_with("№A-1042 · Redmi Note 9 · Diagnostics"))
            .then_some(())
    })
    .await
    .expect("/status lists the order");

    // The admin chooses which statuses customers hear about.
    let admin = app.login_admin().await;
    let r = admin
        .post_form(
            "/settings/notifications/rules",
            &[
                ("rule", "order.status_changed|telegram"),
                ("customer_statuses", "ready, awaiting_approval"),
                ("default_language", "uz"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = admin
        .post_form(
            "/settings/notifications/rules",
            &[
                ("customer_statuses", "no spaces allowed!"),
                ("default_language", "uz"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let status = |code: &str, label: &str, key: &str| Notification {
        event: EventKind::OrderStatusChanged,
        key: key.into(),
        recipients: vec![Recipient::Customer {
            customer_id: 9,
            email: Some("c@example.uz".into()),
            language: None,
        }],
        data: data(&[
            ("order_number", "A-1042"),
            ("device", "Redmi Note 9"),
            ("status", label),
            ("status_code", code),
            ("customer_name", "Aziz"),
        ]),
    };
    let ids = change_and_notify(
        &app,
        vec![status("repairing", "В ремонте", "order:42:status:1")],
    )
    .await;
    assert!(
        ids.is_empty(),
        "a status the admin did not choose is not sent"
    );
    let ids = change_and_notify(
        &app,
        vec![status("ready", "Готов к выдаче", "order:42:status:2")],
    )
    .await;
    assert_eq!(
        ids.len(),
        1,
        "Telegram only: e-mail for this event was switched off"
    );
    eventually(WAIT, || async {
        bot.delivered_to(777)
            .iter()
            .any(|t| {
                t.contains("Здравствуйте, Aziz")
                    && t.contains("Готов к выдаче")
                    && t.contains("Usta Servis")
            })
            .then_some(())
    })
    .await
    .expect("status change reaches the customer in the chat's language");
    // Updates are handled once: the offset is saved with their effects.
    // Once the stand-in saw the next offset (every update confirmed), each command was
    // answered exactly once.
    eventually(WAIT, || async {
        (bot.pending_updates() == 0).then_some(())
    })
    .await
    .expect("all updates confirmed");
    let d = bot.delivered_to(777);
    assert_eq!(d.iter().filter(|t| t.contains("не найден")).count(), 1);
    assert_eq!(
        d.iter()
            .filter(|t| t.contains("Здесь вы будете получать"))
            .count(),
        1
    );
    bot.stop().await;
}

#[tokio::test]
async fn staff_email_from_profile_and_admin_gets_staff_events_and_the_summary() {
    let (sink, app) = app_mailing_to_plain_smtp().await;
    let acc = &app.running().ctx.accounts;
    let master_id = app.add_user("usta", Role::Master, "usta-pass-1").await;
    let master = app.login("usta", "usta-pass-1").await;

    // The profile: a bad address is refused and nothing is stored; a good one is kept.
    let r = master
        .post_form("/profile/email", &[("email", "not an address")])
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(acc.user(master_id).await.unwrap().email, None);
    let r = master
        .post_form("/profile/email", &[("email", " usta@example.uz ")])
        .await;
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("value=\"usta@example.uz\""));
    assert_eq!(
        acc.user(master_id).await.unwrap().email.as_deref(),
        Some("usta@example.uz")
    );

    // The API: a bad address refuses the whole change; a good one is stored and shown.
    let admin = app.login_admin().await;
    let admin_id = acc.user_by_username("admin").await.unwrap().id;
    let path = format!("/api/v1/users/{admin_id}");
    let r = admin
        .send_json(
            reqwest::Method::PATCH,
            &path,
            &serde_json::json!({"display_name": "Boss", "email": "nope"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_ne!(acc.user(admin_id).await.unwrap().display_name, "Boss");
    let r = admin
        .send_json(
            reqwest::Method::PATCH,
            &path,
            &serde_json::json!({"email": "boss@example.uz"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["email"], "boss@example.uz");
    let r = admin
        .send_json(
            reqwest::Method::POST,
            "/api/v1/users",
            &serde_json::json!({"username": "kassa", "display_name": "Kassa", "role": "operator",
                                "password": "kassa-pass-1", "email": "kassa@@x"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(
        acc.user_by_username("kassa").await.is_err(),
        "nothing created"
    );

    // The admin's user form: a bad address changes nothing, a good one is saved.
    let form = |email: &'static str| {
        vec![
            ("name", "Usta Bek"),
            ("role", "master"),
            ("language", "en"),
            ("active", "1"),
            ("email", email),
        ]
    };
    let r = admin
        .post_form(&format!("/users/{master_id}"), &form("bad@"))
        .await;
    assert_eq!(r.status(), 422);
    let u = acc.user(master_id).await.unwrap();
    assert_eq!(
        (u.display_name.as_str(), u.email.as_deref()),
        ("usta name", Some("usta@example.uz"))
    );
    let page = admin
        .get(&format!("/users/{master_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("value=\"usta@example.uz\""), "{page}");

    // A staff event reaches the master's address (no Telegram linked).
    let assign = |key: &str| Notification {
        event: EventKind::OrderAssigned,
        key: key.into(),
        recipients: vec![Recipient::Staff(master_id)],
        data: data(&[("order_number", "A-5"), ("device", "iPhone 11")]),
    };
    let ids = change_and_notify(&app, vec![assign("order:5:assigned:1")]).await;
    assert_eq!(ids.len(), 1);
    let mail = eventually(WAIT, || async {
        sink.mails()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t == "usta@example.uz"))
    })
    .await
    .expect("assignment mailed to the master");
    assert!(mail.data.contains("A-5"), "{}", mail.data);

    // With its e-mail switch off, the event queues nothing for e-mail.
    let r = admin
        .post_form(
            "/settings/notifications/rules",
            &[
                ("rule", "order.assigned|telegram"),
                ("rule", "summary.daily|email"),
                ("default_language", "en"),
                ("summary_emails", ""),
                ("summary_hour", "0"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let ids = change_and_notify(&app, vec![assign("order:5:assigned:2")]).await;
    assert!(ids.is_empty(), "e-mail for assignments is switched off");

    // The daily summary goes to the admin's own address (no extra addresses set).
    let n = &app.running().ctx.notifications;
    n.set_order_lookup(Arc::new(StubOrders));
    assert!(n.queue_daily_summary().await.unwrap());
    let mail = eventually(WAIT, || async {
        sink.mails()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t == "boss@example.uz"))
    })
    .await
    .expect("summary mailed to the admin");
    assert!(mail.data.contains("New orders: 12"), "{}", mail.data);
    assert!(!sink
        .mails()
        .iter()
        .any(|m| m.to.iter().any(|t| t == "usta@example.uz") && m.data.contains("New orders")));
}

#[tokio::test]
async fn notifications_api_lists_stopped_messages_retries_and_masks_secrets() {
    let app = TestApp::spawn().await;
    app.set_settings(FAST).await;
    let token = "987654321:AAFsecretTokenValueThatMustNotLeak";
    app.set_settings(&[
        ("notify.max_attempts", "2"),
        ("smtp.host", "127.0.0.1"),
        ("smtp.port", &free_port().to_string()),
        ("smtp.security", "plain"),
        ("smtp.username", "shop"),
        ("smtp.password", "s3cret-pass"),
        ("smtp.from", "shop@example.uz"),
        ("telegram.token", token),
        ("telegram.api_url", "http://127.0.0.1:9"),
    ])
    .await;
    let id = change_and_notify(
        &app,
        vec![mail_to("order:3:status:1", "nobody@example.uz", "C-3")],
    )
    .await[0];
    eventually(WAIT, || async {
        (row(&app, id).await.state == "dead").then_some(())
    })
    .await
    .expect("dead-lettered");

    let bearer = app.api_token("admin").await;
    let client = app.client();
    let call = |method: reqwest::Method, path: &str, bearer: &str| {
        client
            .request(method, app.url(path))
            .bearer_auth(bearer)
            .send()
    };
    let list: serde_json::Value = call(
        reqwest::Method::GET,
        "/api/v1/notifications/outbox",
        &bearer,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let dead = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .expect("the dead letter is listed");
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["attempts"], 2);
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("SMTP")),
        "{dead}"
    );
    for bad in ["?state=bogus", "?limit=0", "?limit=501"] {
        let r = call(
            reqwest::Method::GET,
            &format!("/api/v1/notifications/outbox{bad}"),
            &bearer,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
    }

    // Settings: secrets are never returned in full.
    let r = call(
        reqwest::Method::GET,
        "/api/v1/notifications/settings",
        &bearer,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("s3cret-pass") && !text.contains(token),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["smtp"]["password_set"], true);
    assert_eq!(v["smtp"]["username"], "shop");
    assert_eq!(v["telegram"]["token_masked"], "987654…eak");
    assert!(v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["event"] == "order.assigned" && r["channel"] == "email"));

    // Retry: the dead letter is queued again; a second retry is a conflict; unknown is 404.
    // (Retries are slow from now on, so the requeued message stays pending meanwhile.)
    app.set_settings(&[("notify.retry_base_ms", "60000")]).await;
    let path = format!("/api/v1/notifications/outbox/{id}/retry");
    let r = call(reqwest::Method::POST, &path, &bearer).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["state"] == "pending" || v["state"] == "sending",
        "requeued: {v}"
    );
    assert!(v["attempts"].as_i64().unwrap() <= 1, "fresh count: {v}");
    let again = call(reqwest::Method::POST, &path, &bearer).await.unwrap();
    assert_eq!(again.status(), 409);
    let r = call(
        reqwest::Method::POST,
        "/api/v1/notifications/outbox/999999/retry",
        &bearer,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);

    // Another role's token is refused.
    app.add_user("kassa", Role::Operator, "kassa-pass-1").await;
    let other = app.api_token("kassa").await;
    let r = call(reqwest::Method::GET, "/api/v1/notifications/outbox", &other)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Orders where one is overdue for a given master.
struct OverdueOrders {
    master: i64,
}

impl OrderLookup for OverdueOrders {
    fn by_code(&self, _: &Connection, _: &str) -> DbResult<Option<OrderBrief>> {
        Ok(None)
    }
    fn open_for_staff(&self, _: &Connection, _: i64) -> DbResult<Vec<OrderBrief>> {
        Ok(Vec::new())
    }
    fn open_for_customer(&self, _: &Connection, _: i64) -> DbResult<Vec<OrderBrief>> {
        Ok(Vec::new())
    }
    fn overdue_assigned(
        &self,
        _: &Connection,
        _now: i64,
    ) -> DbResult<Vec<notifications::OverdueOrder>> {
        Ok(vec![notifications::OverdueOrder {
            order: OrderBrief {
                order_id: 77,
                customer_id: 1,
                number: "A-77".into(),
                device: "Artel washer".into(),
                status: "Repair".into(),
            },
            master_id: self.master,
            due_date: "28.11.2026".into(),
        }])
    }
}

#[tokio::test]
async fn overdue_orders_remind_their_master_once_a_day() {
    let (sink, app) = app_mailing_to_plain_smtp().await;
    app.set_settings(&[("notify.overdue_hour", "0")]).await;
    let master = app.add_user("usta", Role::Master, "usta-pass-1").await;
    let acc = &app.running().ctx.accounts;
    acc.set_email(None, master, "usta@example.uz")
        .await
        .unwrap();
    let n = &app.running().ctx.notifications;
    n.set_order_lookup(Arc::new(OverdueOrders { master }));
    // The housekeeping task may have queued it already; either way exactly one per day.
    let first = n.queue_overdue_reminders().await.unwrap();
    let second = n.queue_overdue_reminders().await.unwrap();
    assert!(first <= 1 && second == 0, "once a day: {first}, {second}");
    let mail = eventually(WAIT, || async {
        sink.mails()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t == "usta@example.uz"))
    })
    .await
    .expect("reminder mailed to the master");
    assert!(
        mail.data.contains("A-77") && mail.data.contains("28.11.2026"),
        "{}",
        mail.data
    );
    let overdue_rows = app
        .running()
        .ctx
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM notify_outbox WHERE event = 'order.overdue'",
                [],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(overdue_rows, 1);
}
