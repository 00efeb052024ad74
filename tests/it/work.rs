//! The unit of work, route by route: every state-changing route of the server (every
//! non-GET row of the permission matrix in `matrix.rs`) is run against the real server
//! with a request that must succeed and one that must be refused. A success must leave
//! at least one activity-log row and publish at least one live event (events go out
//! after the commit and before the handler answers, so a `try_recv` right after the
//! response sees them); a refusal must leave neither. A route added to the matrix
//! without a case here fails the test; the few routes that are not domain changes are
//! exempt, each with its reason.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crm::domain::notifications::{self, EventKind, Notification, Recipient};
use crm::events::Audience;
use crm::model::Role;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::TryRecvError;

use crate::core::{new_customer, new_order, Api};
use crate::matrix::{
    BRANCHES, CALLS, CALL_LISTS, CHAT_EXTRAS, CORE, FOUNDATION, INBOX, NOTIFY, OPS, OUTBOUND,
    PROMOTIONS, RECORDINGS, REPLICA, ROLES, TELEPHONY, TRUNK,
};
use crate::notify_peers::*;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
const BOT_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

/// Routes that change no domain row, with the reason.
const EXEMPT: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/login",
        "a session and the login audit, not a domain change",
    ),
    ("POST", "/logout", "ends a session only"),
    (
        "POST",
        "/setup",
        "first run only (an empty server); covered by foundation.rs",
    ),
    (
        "POST",
        "/lang",
        "a personal display preference (cookie and account language)",
    ),
    ("POST", "/backups", "writes a backup file, not a row"),
    (
        "POST",
        "/inbox/{id}/typing",
        "a passing indicator: an event and a Telegram chat action, no row",
    ),
    (
        "POST",
        "/calls/dial",
        "places a call; its rows come from the SIP call events",
    ),
    (
        "POST",
        "/api/v1/calls/dial",
        "places a call; its rows come from the SIP call events",
    ),
    (
        "POST",
        "/hooks/sms/{provider}/report",
        "an SMS gateway's delivery report: the outbox worker's bookkeeping, like its own \
         outcomes (no activity row per message); tests/it/promos.rs checks it",
    ),
    (
        "POST",
        "/telephony/bans/{address}/release",
        "the ban list is in memory (SIP server)",
    ),
    (
        "POST",
        "/api/v1/telephony/bans/{address}/release",
        "the ban list is in memory (SIP server)",
    ),
];

/// Off-box copies (issue 21): routes that change nothing, with the reason.
const REPLICA_EXEMPT: &[(&str, &str, &str)] = &[(
    "POST",
    "/backups/remote/targets/{name}/test",
    "tests a target (its probe object is deleted again); changes no setting or row; \
     tests/it/replication_settings.rs checks it",
)];

/// Call lists (issue 18): routes that change no domain row here, with the reason.
const CALL_LISTS_EXEMPT: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/queue/items/{item}/dial",
        "places a call (needs a registered desk phone); covered by call_lists.rs with SIPp",
    ),
    (
        "POST",
        "/api/v1/call-lists/{id}/items/{item}/dial",
        "places a call (needs a registered desk phone); covered by call_lists.rs with SIPp",
    ),
];

/// Call recording (issue 16).
const RECORDINGS_EXEMPT: &[(&str, &str, &str)] = &[(
    "POST",
    "/calls/record",
    "needs a live call tapped by the media relay; tests/it/recording.rs checks its \
     activity row and event (and the refusal of a call that is not tapped)",
)];

#[derive(Clone)]
enum Body {
    Empty,
    Form(Vec<(String, String)>),
    Json(Value),
    /// A multipart upload of one `photo` file.
    Photo(Vec<u8>, &'static str),
    /// A file in the named multipart field: (field, bytes, file name).
    Upload(&'static str, Vec<u8>, &'static str),
    /// A multipart form of text fields.
    Multipart(Vec<(String, String)>),
    /// A multipart upload of one `file` (customer imports).
    File(Vec<u8>, &'static str),
    /// The request body as it is (an API file upload).
    Raw(Vec<u8>),
}

#[derive(Clone, Copy, PartialEq)]
enum As {
    Admin,
    /// A second, ordinary user (for changes to one's own account).
    Oper,
    /// A user who changes their own password (which ends their sessions).
    SelfPw,
}

struct Step {
    method: Method,
    path: String,
    body: Body,
    who: As,
    /// Must succeed (true) or be refused (false).
    ok: bool,
}

enum Case {
    Steps(Vec<Step>),
    /// Success and refusal run, except the refusal is impossible (the route takes no
    /// input that could be wrong): the reason.
    NoRefusal(Vec<Step>, &'static str),
}

fn form(pairs: &[(&str, &str)]) -> Body {
    Body::Form(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn step(method: Method, path: impl Into<String>, body: Body, ok: bool) -> Step {
    Step {
        method,
        path: path.into(),
        body,
        who: As::Admin,
        ok,
    }
}

fn post(path: impl Into<String>, body: Body, ok: bool) -> Step {
    step(Method::POST, path, body, ok)
}

fn good(path: impl Into<String>, body: Body) -> Step {
    post(path, body, true)
}

fn bad(path: impl Into<String>, body: Body) -> Step {
    post(path, body, false)
}

/// The route `pattern` (one `{…}` in it) posted with no body: refused for an id that
/// does not exist, done for `id`.
fn unknown_then_known(pattern: &str, id: impl std::fmt::Display) -> Vec<Step> {
    let (head, rest) = pattern.split_once('{').expect("a placeholder");
    let tail = rest.split_once('}').expect("a placeholder").1;
    vec![
        bad(format!("{head}999999{tail}"), Body::Empty),
        good(format!("{head}{id}{tail}"), Body::Empty),
    ]
}

struct Fx {
    app: TestApp,
    admin: Session,
    oper: Session,
    selfpw: Session,
    api: Api,
    master_id: i64,
    admin_id: i64,
    sink: SmtpSink,
    bot: BotStandIn,
    n: AtomicU32,
}

impl Fx {
    fn next(&self) -> u32 {
        self.n.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A fresh, valid mobile number.
    fn phone(&self) -> String {
        format!("90{:07}", 1_000_000 + self.next())
    }

    /// A small CSV of two new customers.
    fn import_csv(&self) -> Vec<u8> {
        format!(
            "Ism;Telefon\nAziz Karimov;{}\nЎткир Қодиров;{}\n",
            self.phone(),
            self.phone()
        )
        .into_bytes()
    }

    /// A draft import batch (uploaded, not imported).
    async fn import_draft(&self) -> i64 {
        let part = reqwest::multipart::Part::bytes(self.import_csv()).file_name("c.csv");
        let r = self
            .admin
            .client
            .post(
                self.admin
                    .url(&format!("/imports?_csrf={}", self.admin.csrf)),
            )
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "upload");
        self.app
            .running()
            .ctx
            .db
            .read(|c| Ok(c.query_row("SELECT max(id) FROM import_batches", [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    /// An imported batch.
    async fn import_done(&self) -> i64 {
        let r = reqwest::Client::new()
            .post(self.app.url("/api/v1/imports/customers"))
            .bearer_auth(&self.api.token)
            .body(self.import_csv())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.unwrap();
        v["outcome"]["batch_id"].as_i64().unwrap()
    }

    async fn segment(&self) -> i64 {
        let (s, v) = self
            .api
            .post(
                "/api/v1/segments",
                json!({"name": format!("Segment {}", self.next()), "filter": {"opted_in": true}}),
            )
            .await;
        assert_eq!(s.as_u16(), 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// A fresh custom role (key `rol<id>`).
    async fn role(&self) -> i64 {
        let admin = crm::domain::Actor::builtin(1, "admin", Role::Admin, Default::default());
        let key = format!("tmp{}", self.next());
        let r = crm::domain::roles::create(
            &self.app.running().ctx.store,
            &admin,
            crm::domain::roles::RoleInput {
                key,
                name: "Tmp".into(),
                base: Role::Operator,
                permissions: vec!["orders.view".into()],
            },
        )
        .await
        .unwrap();
        let id = r.id.unwrap();
        // Renamed to the key the cases use.
        crm::domain::roles::update(
            &self.app.running().ctx.store,
            &admin,
            id,
            crm::domain::roles::RoleInput {
                key: format!("rol{id}"),
                name: "Tmp".into(),
                base: Role::Operator,
                permissions: vec!["orders.view".into()],
            },
        )
        .await
        .unwrap();
        id
    }

    async fn customer(&self) -> i64 {
        let p = self.phone();
        new_customer(&self.api, &format!("Mijoz {p}"), &p).await
    }

    async fn order(&self) -> Value {
        let c = self.customer().await;
        new_order(&self.api, c, json!({})).await
    }

    async fn order_id(&self) -> i64 {
        self.order().await["id"].as_i64().unwrap()
    }

    async fn extension(&self) -> String {
        let number = format!("{}", 400 + self.next());
        let (s, v) = self
            .api
            .post(
                "/api/v1/telephony/extensions",
                json!({"number": number, "display_name": "Desk"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        number
    }

    async fn group(&self) -> String {
        let ext = self.extension().await;
        let number = format!("{}", 600 + self.next());
        let (s, v) = self
            .api
            .send(
                Method::PUT,
                "/api/v1/telephony/groups",
                json!({"number": number, "strategy": "ring_all", "members": [ext]}),
            )
            .await;
        assert_eq!(s, 204, "{v}");
        number
    }

    async fn trunk(&self) -> i64 {
        let name = format!("trunk{}", self.next());
        let (s, v) = self
            .api
            .send(Method::PUT, "/api/v1/telephony/trunks", trunk_json(&name))
            .await;
        assert_eq!(s, 204, "{v}");
        let (_, list) = self.api.get("/api/v1/telephony/trunks").await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name.as_str())
            .unwrap_or_else(|| panic!("trunk {name} listed: {list}"))["id"]
            .as_i64()
            .unwrap()
    }

    async fn token(&self) -> i64 {
        let name = format!("tok{}", self.next());
        let acc = &self.app.running().ctx.accounts;
        acc.create_token(None, self.admin_id, &name).await.unwrap();
        let (_, list) = self.api.get("/api/v1/tokens").await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name.as_str())
            .unwrap_or_else(|| panic!("token {name} listed: {list}"))["id"]
            .as_i64()
            .unwrap()
    }

    /// An open missed-call entry, stored as the call log stores one.
    async fn missed(&self) -> i64 {
        let number = format!("+99893{:07}", 1_000_000 + self.next());
        let call_id = format!("work-test-{}", self.next());
        self.app
            .running()
            .ctx
            .db
            .write(move |c| {
                let now = crm::db::now() * 1000;
                let exts = vec!["1501".to_string()];
                let call = crm::db::calls::upsert_ringing(
                    c,
                    &crm::db::calls::NewCall {
                        transferred_by: None,
                        branch_id: None,
                        transferred_from: None,
                        call_id: &call_id,
                        direction: "inbound",
                        from_number: &number,
                        to_number: "1501",
                        party_number: &number,
                        ring_group: None,
                        extensions: &exts,
                        customer_id: None,
                        open_orders: &[],
                        started_ms: now,
                    },
                )?;
                crm::db::calls::record_missed(c, &number, None, call, now, None)?;
                Ok(c.query_row(
                    "SELECT id FROM missed_calls WHERE number = ?1 AND resolved_ms IS NULL",
                    [&number],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await
            .unwrap()
    }

    /// A conversation: a customer wrote to the bot from a chat of their own.
    async fn conversation(&self) -> i64 {
        let chat = 90_000 + i64::from(self.next());
        // The thread is readable once committed, and its event is published just after:
        // wait for the event too, or it lands in the next step's drain.
        let mut rx = self.app.running().ctx.events.subscribe();
        self.bot.user_sends(chat, "uz", json!({"text": "Salom"}));
        tokio::time::timeout(WAIT, async {
            loop {
                match rx.recv().await {
                    Ok(e) if e.kind == "conversation.message" => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("event bus closed: {e}"),
                }
            }
        })
        .await
        .expect("the new thread's event is published");
        eventually(WAIT, || async {
            let (_, v) = self.api.get("/api/v1/conversations?tab=all").await;
            v.as_array()?
                .iter()
                .find(|c| c["address"].as_str() == Some(chat.to_string().as_str()))
                .and_then(|c| c["id"].as_i64())
        })
        .await
        .expect("the bot files the message")
    }

    async fn quick_reply(&self) -> i64 {
        let (s, v) = self
            .api
            .send(
                Method::POST,
                "/api/v1/quick-replies",
                json!({"shortcut": format!("q{}", self.next()), "title": "Tayyor", "body_uz": "Tayyor"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["id"].as_i64().unwrap()
    }

    async fn procedure(&self) -> i64 {
        let r = self
            .admin
            .post_form(
                "/procedures",
                &[("title", "Qabul"), ("body", "# Qabul\n1. Telefon")],
            )
            .await;
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        loc.rsplit('=').next().unwrap().parse().unwrap()
    }

    /// A dead-lettered outbox message (a test e-mail), as the worker leaves one.
    async fn dead_message(&self) -> i64 {
        let key = format!("work-test:{}", self.next());
        self.app
            .running()
            .ctx
            .db
            .write(move |c| {
                let n = Notification {
                    event: EventKind::Test,
                    key,
                    recipients: vec![Recipient::Email("dead@example.uz".into())],
                    data: Default::default(),
                };
                let id = notifications::enqueue(c, &n)?[0];
                c.execute(
                    "UPDATE notify_outbox SET state = 'dead', attempts = 3 WHERE id = ?1",
                    [id],
                )?;
                Ok(id)
            })
            .await
            .unwrap()
    }
}

fn trunk_json(name: &str) -> Value {
    json!({"name": name, "host": "127.0.0.1", "port": 5070, "transport": "UDP",
           "username": "shop", "secret": "trunk-secret-1", "register": false})
}

async fn fixture() -> Fx {
    let sink = SmtpSink::start(
        free_port(),
        SmtpOptions {
            mode: "plain",
            certs: None,
            auth: None,
        },
    );
    let bot = BotStandIn::start().await;
    let app = TestApp::spawn().await;
    app.set_settings(&[
        ("notify.poll_ms", "50"),
        ("notify.retry_base_ms", "100"),
        ("notify.retry_max_ms", "300"),
        ("telegram.poll_timeout_secs", "1"),
        ("telegram.per_chat_gap_ms", "0"),
    ])
    .await;
    app.plain_smtp(sink.port).await;
    let master_id = app.add_user("usta", Role::Master, "usta-pass-1").await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let admin_id = app
        .running()
        .ctx
        .accounts
        .user_by_username("admin")
        .await
        .unwrap()
        .id;
    let admin = app.login_admin().await;
    let oper = app.login("oper", "oper-pass-1").await;
    app.add_user("selfpw", Role::Operator, "selfpw-pass-1")
        .await;
    let selfpw = app.login("selfpw", "selfpw-pass-1").await;
    let api = Api::of(&app, "admin").await;
    // The bot, so that its settings, the test message and linking work.
    let r = admin
        .post_form(
            "/settings/notifications/telegram",
            &[("token", BOT_TOKEN), ("api_url", &bot.url)],
        )
        .await;
    assert_eq!(r.status(), 200);
    eventually(WAIT, || async {
        let s = app.running().ctx.notifications.settings().await.unwrap();
        (s.telegram.bot_username == BOT_USERNAME).then_some(())
    })
    .await
    .expect("getMe answered");
    Fx {
        app,
        admin,
        oper,
        selfpw,
        api,
        master_id,
        admin_id,
        sink,
        bot,
        n: AtomicU32::new(0),
    }
}

/// The requests for one route; `None` when the test has no case for it.
async fn case(fx: &Fx, method: &str, pattern: &str) -> Option<Case> {
    use Body::*;
    let m = |s: &str| Method::from_bytes(s.as_bytes()).unwrap();
    let json_step = |meth: &str, path: String, body: Value, ok: bool| Step {
        method: m(meth),
        path,
        body: Json(body),
        who: As::Admin,
        ok,
    };
    let steps = match (method, pattern) {
        // ---- Foundation: one's own account, users, tokens, notices
        ("POST", "/profile/password") => {
            let mut g = good(
                "/profile/password",
                form(&[
                    ("current", "selfpw-pass-1"),
                    ("password", "selfpw-pass-2-new"),
                    ("password2", "selfpw-pass-2-new"),
                ]),
            );
            let mut b = bad(
                "/profile/password",
                form(&[
                    ("current", "wrong-password"),
                    ("password", "oper-pass-3-new"),
                    ("password2", "oper-pass-3-new"),
                ]),
            );
            // Changing one's password ends one's sessions: a user of its own.
            g.who = As::SelfPw;
            b.who = As::SelfPw;
            vec![b, g]
        }
        ("POST", "/profile/email") => {
            let mut b = bad("/profile/email", form(&[("email", "not an address")]));
            let mut g = good("/profile/email", form(&[("email", "oper@example.uz")]));
            b.who = As::Oper;
            g.who = As::Oper;
            vec![b, g]
        }
        ("POST", "/profile/tokens") => {
            let mut b = bad("/profile/tokens", form(&[("name", "")]));
            let mut g = good("/profile/tokens", form(&[("name", "script")]));
            b.who = As::Oper;
            g.who = As::Oper;
            vec![b, g]
        }
        ("POST", "/tokens/{id}/revoke") => {
            let t = fx.token().await;
            unknown_then_known(pattern, t)
        }
        ("DELETE", "/api/v1/tokens/{id}") => {
            let t = fx.token().await;
            vec![
                json_step("DELETE", "/api/v1/tokens/999999".into(), json!({}), false),
                json_step("DELETE", format!("/api/v1/tokens/{t}"), json!({}), true),
            ]
        }
        // ---- Off-box copies (issue 21)
        ("POST", "/backups/remote/settings") => {
            let (_, public) = crm::ops::remote::keygen();
            let settings = |key: &str| {
                form(&[
                    ("public_key", key),
                    ("bandwidth_kbps", "0"),
                    ("interval_ms", "1000"),
                    ("snapshot_every_hours", "6"),
                    ("retention_hours", "72"),
                    ("warn_lag_secs", "60"),
                ])
            };
            vec![
                bad("/backups/remote/settings", settings("age1-not-a-key")),
                good("/backups/remote/settings", settings(&public)),
            ]
        }
        ("POST", "/backups/remote/targets") => {
            let (name, dir) = fx.remote_ready().await;
            vec![
                bad(
                    "/backups/remote/targets",
                    form(&[("name", &name), ("kind", "ftp"), ("path", &dir)]),
                ),
                good(
                    "/backups/remote/targets",
                    form(&[("name", &name), ("kind", "path"), ("path", &dir)]),
                ),
            ]
        }
        ("POST", "/backups/remote/targets/{name}") => {
            let name = fx.remote_target().await;
            let path = format!("/backups/remote/targets/{name}");
            let dir = std::env::temp_dir().to_string_lossy().into_owned();
            vec![
                bad(
                    &path,
                    form(&[("kind", "path"), ("path", &dir), ("keep", "0")]),
                ),
                good(
                    &path,
                    form(&[("kind", "path"), ("path", &dir), ("keep", "3")]),
                ),
            ]
        }
        ("POST", "/backups/remote/targets/{name}/delete") => {
            let name = fx.remote_target().await;
            vec![
                bad("/backups/remote/targets/no-such-target/delete", Empty),
                good(format!("/backups/remote/targets/{name}/delete"), Empty),
            ]
        }
        // ---- Inbox (issue 17)
        ("POST", "/inbox/settings") => {
            return Some(Case::NoRefusal(
                vec![good("/inbox/settings", form(&[("auto_assign", "1")]))],
                "two checkboxes: every form is a valid setting",
            ))
        }
        ("POST", "/inbox/quick-replies") => vec![
            bad(
                "/inbox/quick-replies",
                form(&[("shortcut", "no spaces!"), ("title", "x"), ("body_uz", "x")]),
            ),
            good(
                "/inbox/quick-replies",
                form(&[
                    ("shortcut", "salom"),
                    ("title", "Salom"),
                    ("body_ru", "Здравствуйте, {customer_name}!"),
                ]),
            ),
        ],
        ("POST", "/inbox/quick-replies/{id}/delete") => {
            let q = fx.quick_reply().await;
            unknown_then_known(pattern, q)
        }
        ("POST", "/inbox/{id}/reply") => {
            let c = fx.conversation().await;
            let text = |t: &str| Multipart(vec![("text".into(), t.into())]);
            vec![
                bad(format!("/inbox/{c}/reply"), text("   ")),
                good(
                    format!("/inbox/{c}/reply"),
                    text("Assalomu alaykum! Чем помочь?"),
                ),
            ]
        }
        ("POST", "/inbox/{id}/assign") => {
            let c = fx.conversation().await;
            vec![
                bad(
                    format!("/inbox/{c}/assign"),
                    form(&[("user_id", &fx.master_id.to_string())]),
                ),
                good(
                    format!("/inbox/{c}/assign"),
                    form(&[
                        ("user_id", &fx.admin_id.to_string()),
                        ("note", "Men olaman"),
                    ]),
                ),
            ]
        }
        ("POST", "/inbox/{id}/close") => {
            let c = fx.conversation().await;
            unknown_then_known(pattern, c)
        }
        ("POST", "/inbox/{id}/reopen") => {
            let c = fx.conversation().await;
            let r = fx.admin.post_form(&format!("/inbox/{c}/close"), &[]).await;
            assert!(r.status().is_redirection());
            unknown_then_known(pattern, c)
        }
        ("POST", "/inbox/{id}/link") => {
            let c = fx.conversation().await;
            let cu = fx.customer().await;
            vec![
                bad(
                    format!("/inbox/{c}/link"),
                    form(&[("customer", "+998 90 000 00 01")]),
                ),
                good(
                    format!("/inbox/{c}/link"),
                    form(&[("customer", &format!("#{cu}"))]),
                ),
            ]
        }
        ("POST", "/inbox/{id}/delete") => {
            let c = fx.conversation().await;
            unknown_then_known(pattern, c)
        }
        ("POST", "/procedures") => vec![
            bad("/procedures", form(&[("title", " "), ("body", "x")])),
            good(
                "/procedures",
                form(&[("title", "Qaytarish tartibi"), ("body", "Порядок возврата")]),
            ),
        ],
        ("POST", "/procedures/{id}/delete") => {
            let d = fx.procedure().await;
            unknown_then_known(pattern, d)
        }
        ("POST", "/api/v1/conversations/{id}/messages") => {
            let c = fx.conversation().await;
            let p = format!("/api/v1/conversations/{c}/messages");
            vec![
                json_step("POST", p.clone(), json!({"text": ""}), false),
                json_step("POST", p, json!({"text": "Ertaga tayyor bo‘ladi"}), true),
            ]
        }
        ("POST", "/api/v1/conversations/{id}/assign") => {
            let c = fx.conversation().await;
            let p = format!("/api/v1/conversations/{c}/assign");
            vec![
                json_step("POST", p.clone(), json!({"user_id": fx.master_id}), false),
                json_step(
                    "POST",
                    p,
                    json!({"user_id": fx.admin_id, "note": "olaman"}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/conversations/{id}/close") => {
            let c = fx.conversation().await;
            vec![
                json_step(
                    "POST",
                    "/api/v1/conversations/999999/close".into(),
                    json!({}),
                    false,
                ),
                json_step(
                    "POST",
                    format!("/api/v1/conversations/{c}/close"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/quick-replies") => vec![
            json_step(
                "POST",
                pattern.into(),
                json!({"shortcut": "", "title": "x", "body_en": "x"}),
                false,
            ),
            json_step(
                "POST",
                pattern.into(),
                json!({"shortcut": "hours", "title": "Soatlar", "body_uz": "{shop_hours}"}),
                true,
            ),
        ],
        ("DELETE", "/api/v1/quick-replies/{id}") => {
            let q = fx.quick_reply().await;
            vec![
                json_step(
                    "DELETE",
                    "/api/v1/quick-replies/999999".into(),
                    json!({}),
                    false,
                ),
                json_step(
                    "DELETE",
                    format!("/api/v1/quick-replies/{q}"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("POST", "/notices") => vec![
            bad("/notices", form(&[("text", "  ")])),
            good("/notices", form(&[("text", "Yangi eʼlon")])),
        ],
        ("POST", "/api/v1/notices") => vec![
            json_step("POST", pattern.into(), json!({"text": ""}), false),
            json_step(
                "POST",
                pattern.into(),
                json!({"text": "Ҳаммага салом"}),
                true,
            ),
        ],
        ("POST", "/users") => {
            let user = |name: &str, pw: &str| {
                form(&[
                    ("username", name),
                    ("name", "Yangi xodim"),
                    ("role", "operator"),
                    ("language", "uz"),
                    ("password", pw),
                ])
            };
            vec![
                bad("/users", user("oper", "long-enough-pass-1")),
                good("/users", user("newdesk", "long-enough-pass-1")),
            ]
        }
        ("POST", "/users/{id}") => {
            let id = fx
                .app
                .add_user(&format!("u{}", fx.next()), Role::Operator, "pass-pass-1")
                .await;
            let f = |name: &str| {
                form(&[
                    ("name", name),
                    ("role", "operator"),
                    ("language", "ru"),
                    ("active", "1"),
                    ("email", ""),
                ])
            };
            vec![
                bad(format!("/users/{id}"), f("  ")),
                good(format!("/users/{id}"), f("Новое имя")),
            ]
        }
        ("POST", "/users/{id}/password") => {
            let id = fx
                .app
                .add_user(&format!("u{}", fx.next()), Role::Operator, "pass-pass-1")
                .await;
            vec![
                bad(format!("/users/{id}/password"), form(&[("password", "x")])),
                good(
                    format!("/users/{id}/password"),
                    form(&[("password", "new-pass-123456")]),
                ),
            ]
        }
        ("POST", "/api/v1/users") => {
            let u = |name: &str| {
                json!({"username": name, "display_name": "API user", "role": "operator",
                       "password": "long-enough-pass-1"})
            };
            vec![
                json_step("POST", pattern.into(), u("oper"), false),
                json_step("POST", pattern.into(), u("apiuser"), true),
            ]
        }
        ("PATCH", "/api/v1/users/{id}") => {
            let id = fx
                .app
                .add_user(&format!("u{}", fx.next()), Role::Operator, "pass-pass-1")
                .await;
            let p = format!("/api/v1/users/{id}");
            vec![
                json_step("PATCH", p.clone(), json!({"display_name": " "}), false),
                json_step("PATCH", p, json!({"display_name": "Renamed"}), true),
            ]
        }

        // ---- Core: orders
        ("POST", "/orders") => {
            let phone = fx.phone();
            let f = |complaint: &str, phone: &str| {
                form(&[
                    ("phone", phone),
                    ("customer_name", "Sardor"),
                    ("device_category", "phone"),
                    ("brand", "Samsung"),
                    ("model", "A52"),
                    ("complaint", complaint),
                ])
            };
            vec![
                bad("/orders", f("Ekran", "12345")),
                good("/orders", f("Ekran", &phone)),
            ]
        }
        ("POST", "/orders/{id}") => {
            let o = fx.order().await;
            let id = o["id"].as_i64().unwrap();
            let v = o["version"].as_i64().unwrap();
            let f = |version: i64| {
                let version = version.to_string();
                form(&[
                    ("version", &version),
                    ("device_category", "phone"),
                    ("brand", "Apple"),
                    ("model", "iPhone 12"),
                    ("serial", "356789104512345"),
                    ("complaint", "Batareya"),
                    ("condition", ""),
                    ("accessories", ""),
                    ("promised", ""),
                    ("estimate", ""),
                    ("warranty_days", "30"),
                ])
            };
            vec![
                bad(format!("/orders/{id}"), f(v + 100)),
                good(format!("/orders/{id}"), f(v)),
            ]
        }
        ("POST", "/orders/{id}/status") => {
            let o = fx.order().await;
            let id = o["id"].as_i64().unwrap();
            let v = o["version"].as_i64().unwrap().to_string();
            vec![
                bad(
                    format!("/orders/{id}/status"),
                    form(&[("version", &v), ("to", "delivered")]),
                ),
                good(
                    format!("/orders/{id}/status"),
                    form(&[("version", &v), ("to", "diagnostics")]),
                ),
            ]
        }
        ("POST", "/orders/{id}/assign") => {
            let id = fx.order_id().await;
            vec![
                bad(
                    format!("/orders/{id}/assign"),
                    form(&[("master", "999999")]),
                ),
                good(
                    format!("/orders/{id}/assign"),
                    form(&[("master", &fx.master_id.to_string())]),
                ),
            ]
        }
        ("POST", "/orders/{id}/unlock") => {
            let id = fx.order_id().await;
            vec![
                bad(
                    format!("/orders/{id}/unlock"),
                    form(&[("unlock_code", "1234"), ("unlock_pattern", "1-1-2-3")]),
                ),
                good(
                    format!("/orders/{id}/unlock"),
                    form(&[("unlock_code", "1234"), ("unlock_pattern", "1-5-9-6")]),
                ),
            ]
        }
        ("POST", "/orders/{id}/lines") => {
            let id = fx.order_id().await;
            let l = |qty: &str| {
                form(&[
                    ("kind", "part"),
                    ("name", "Ekran"),
                    ("qty", qty),
                    ("price", "150000"),
                ])
            };
            vec![
                bad(format!("/orders/{id}/lines"), l("0")),
                good(format!("/orders/{id}/lines"), l("1")),
            ]
        }
        ("POST", "/orders/{id}/lines/{line}/delete") => {
            let id = fx.order_id().await;
            let (s, v) = fx
                .api
                .post(
                    &format!("/api/v1/orders/{id}/lines"),
                    json!({"kind": "labour", "name": "Ish", "qty": 1, "unit_price": 50000}),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            let (_, view) = fx.api.get(&format!("/api/v1/orders/{id}")).await;
            let line = view["lines"][0]["id"].as_i64().expect("a line id");
            vec![
                bad(format!("/orders/{id}/lines/999999/delete"), Empty),
                good(format!("/orders/{id}/lines/{line}/delete"), Empty),
            ]
        }
        ("POST", "/orders/{id}/payments") => {
            let id = fx.order_id().await;
            let p = |kind: &str| {
                form(&[
                    ("amount", "50000"),
                    ("kind", kind),
                    ("method", "cash"),
                    ("note", ""),
                ])
            };
            vec![
                bad(format!("/orders/{id}/payments"), p("refund")),
                good(format!("/orders/{id}/payments"), p("prepayment")),
            ]
        }
        ("POST", "/orders/{id}/comments") => {
            let id = fx.order_id().await;
            vec![
                bad(format!("/orders/{id}/comments"), form(&[("text", " ")])),
                good(
                    format!("/orders/{id}/comments"),
                    form(&[("text", "Mijozga qoʻngʻiroq qilindi")]),
                ),
            ]
        }
        ("POST", "/orders/{id}/photos") => {
            let id = fx.order_id().await;
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.extend_from_slice(&[0u8; 64]);
            vec![
                bad(
                    format!("/orders/{id}/photos"),
                    Photo(b"hello, not an image".to_vec(), "evil.jpg"),
                ),
                good(format!("/orders/{id}/photos"), Photo(png, "a.png")),
            ]
        }

        // ---- Core: customers, branches, settings
        ("POST", "/customers") => {
            let phone = fx.phone();
            vec![
                bad(
                    "/customers",
                    form(&[("name", "Dilnoza"), ("phone1", "12345")]),
                ),
                good(
                    "/customers",
                    form(&[("name", "Dilnoza"), ("phone1", &phone)]),
                ),
            ]
        }
        ("POST", "/customers/{id}") => {
            let id = fx.customer().await;
            let (_, c) = fx.api.get(&format!("/api/v1/customers/{id}")).await;
            let v = c["version"].as_i64().expect("customer version");
            let phone = fx.phone();
            let f = |version: i64| {
                let version = version.to_string();
                form(&[
                    ("name", "Dilnoza Karimova"),
                    ("phone1", &phone),
                    ("version", &version),
                ])
            };
            vec![
                bad(format!("/customers/{id}"), f(v + 100)),
                good(format!("/customers/{id}"), f(v)),
            ]
        }
        ("POST", "/customers/{id}/merge") => {
            let a = fx.customer().await;
            let b = fx.customer().await;
            vec![
                bad(
                    format!("/customers/{a}/merge"),
                    form(&[("other", &a.to_string())]),
                ),
                good(
                    format!("/customers/{a}/merge"),
                    form(&[("other", &b.to_string())]),
                ),
            ]
        }
        ("POST", "/branches") => {
            let name = format!("Filial {}", fx.next());
            vec![
                bad("/branches", form(&[("name", "  ")])),
                good("/branches", form(&[("name", &name), ("active", "1")])),
            ]
        }
        ("POST", "/branches/{id}") => {
            let (s, b) = fx
                .api
                .post(
                    "/api/v1/branches",
                    json!({"name": format!("Filial {}", fx.next())}),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            let id = b["id"].as_i64().unwrap();
            vec![
                bad(format!("/branches/{id}"), form(&[("name", " ")])),
                good(
                    format!("/branches/{id}"),
                    form(&[("name", "Yunusobod"), ("active", "1")]),
                ),
            ]
        }
        ("POST", "/settings/logo") => {
            let mut png = Vec::new();
            {
                let mut e = png::Encoder::new(&mut png, 2, 2);
                e.set_color(png::ColorType::Rgb);
                let mut w = e.write_header().unwrap();
                w.write_image_data(&[0u8; 12]).unwrap();
            }
            vec![
                bad(
                    "/settings/logo",
                    Upload("logo", b"GIF89a not ours".to_vec(), "l.gif"),
                ),
                good("/settings/logo", Upload("logo", png, "logo.png")),
            ]
        }
        // The upload's case (just before) left a logo: removed once, then nothing to remove.
        ("POST", "/settings/logo/remove") => vec![
            good("/settings/logo/remove", Empty),
            bad("/settings/logo/remove", Empty),
        ],
        ("POST", "/settings/shop") => {
            let f = |prefix: &str| {
                form(&[
                    ("name", "Mobil Servis"),
                    ("address", "Toshkent"),
                    ("phone", "+998 71 200 00 00"),
                    ("hours", "9-18"),
                    ("terms", "Kafolat 30 kun"),
                    ("order_prefix", prefix),
                    ("currency", "UZS"),
                    ("default_country", "998"),
                ])
            };
            vec![
                bad("/settings/shop", f("M S!")),
                good("/settings/shop", f("MS")),
            ]
        }
        ("POST", "/settings/workflow") => {
            // The default transitions plus New → Ready.
            let all = [
                "1-2", "1-8", "1-6", "2-3", "2-5", "2-6", "2-8", "3-4", "3-5", "3-6", "3-8", "4-5",
                "4-8", "5-3", "5-4", "5-6", "5-8", "6-5", "6-7", "6-8", "8-1",
            ];
            let ok: Vec<(&str, &str)> = all.iter().map(|t| ("t", *t)).collect();
            vec![
                bad("/settings/workflow", form(&[("t", "1-99")])),
                good("/settings/workflow", form(&ok)),
            ]
        }
        ("POST", "/api/v1/customers") => {
            let taken = fx.phone();
            new_customer(&fx.api, "Band", &taken).await;
            let free = fx.phone();
            vec![
                json_step(
                    "POST",
                    pattern.into(),
                    json!({"name": "Aziza", "phones": [taken]}),
                    false,
                ),
                json_step(
                    "POST",
                    pattern.into(),
                    json!({"name": "Aziza", "phones": [free]}),
                    true,
                ),
            ]
        }
        ("PUT", "/api/v1/customers/{id}") => {
            let id = fx.customer().await;
            let (_, c) = fx.api.get(&format!("/api/v1/customers/{id}")).await;
            let v = c["version"].as_i64().expect("customer version");
            let phone = fx.phone();
            let p = format!("/api/v1/customers/{id}");
            vec![
                json_step(
                    "PUT",
                    p.clone(),
                    json!({"version": v + 100, "name": "Aziza", "phones": [phone]}),
                    false,
                ),
                json_step(
                    "PUT",
                    p,
                    json!({"version": v, "name": "Aziza", "phones": [phone]}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/orders") => {
            let c = fx.customer().await;
            let o = |complaint: &str| {
                json!({"customer_id": c, "device_category": "phone", "brand": "Xiaomi",
                       "complaint": complaint})
            };
            vec![
                json_step("POST", pattern.into(), o(" "), false),
                json_step("POST", pattern.into(), o("Zaryad olmaydi"), true),
            ]
        }
        ("PUT", "/api/v1/orders/{id}") => {
            let o = fx.order().await;
            let v = o["version"].as_i64().unwrap();
            let p = format!("/api/v1/orders/{}", o["id"]);
            vec![
                json_step(
                    "PUT",
                    p.clone(),
                    json!({"version": v + 100, "brand": "Apple"}),
                    false,
                ),
                json_step("PUT", p, json!({"version": v, "brand": "Apple"}), true),
            ]
        }
        ("POST", "/api/v1/orders/{id}/status") => {
            let o = fx.order().await;
            let v = o["version"].as_i64().unwrap();
            let p = format!("/api/v1/orders/{}/status", o["id"]);
            vec![
                json_step(
                    "POST",
                    p.clone(),
                    json!({"version": v, "to": "delivered"}),
                    false,
                ),
                json_step("POST", p, json!({"version": v, "to": "diagnostics"}), true),
            ]
        }
        ("POST", "/api/v1/orders/{id}/assign") => {
            let p = format!("/api/v1/orders/{}/assign", fx.order_id().await);
            vec![
                json_step("POST", p.clone(), json!({"master_id": 999999}), false),
                json_step("POST", p, json!({"master_id": fx.master_id}), true),
            ]
        }
        ("PUT", "/api/v1/orders/{id}/unlock") => {
            let p = format!("/api/v1/orders/{}/unlock", fx.order_id().await);
            vec![
                json_step("PUT", p.clone(), json!({"pattern": "12"}), false),
                json_step(
                    "PUT",
                    p,
                    json!({"code": "2580", "pattern": "2-5-8-6"}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/orders/{id}/lines") => {
            let p = format!("/api/v1/orders/{}/lines", fx.order_id().await);
            let l =
                |qty: i64| json!({"kind": "part", "name": "Ekran", "qty": qty, "unit_price": 1000});
            vec![
                json_step("POST", p.clone(), l(0), false),
                json_step("POST", p, l(1), true),
            ]
        }
        ("POST", "/api/v1/orders/{id}/payments") => {
            let p = format!("/api/v1/orders/{}/payments", fx.order_id().await);
            vec![
                json_step(
                    "POST",
                    p.clone(),
                    json!({"kind": "refund", "amount": 1000}),
                    false,
                ),
                json_step(
                    "POST",
                    p,
                    json!({"kind": "prepayment", "amount": 1000}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/orders/{id}/comments") => {
            let p = format!("/api/v1/orders/{}/comments", fx.order_id().await);
            vec![
                json_step("POST", p.clone(), json!({"text": ""}), false),
                json_step("POST", p, json!({"text": "Qism buyurtma qilindi"}), true),
            ]
        }
        ("POST", "/api/v1/branches") => {
            let name = format!("Filial {}", fx.next());
            let (s, v) = fx.api.post("/api/v1/branches", json!({"name": name})).await;
            assert_eq!(s, 201, "{v}");
            let fresh = format!("Filial {}", fx.next());
            vec![
                json_step("POST", pattern.into(), json!({"name": name}), false),
                json_step("POST", pattern.into(), json!({"name": fresh}), true),
            ]
        }
        ("PUT", "/api/v1/branches/{id}") => {
            let (s, b) = fx
                .api
                .post(
                    "/api/v1/branches",
                    json!({"name": format!("Filial {}", fx.next())}),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            let p = format!("/api/v1/branches/{}", b["id"]);
            vec![
                json_step(
                    "PUT",
                    p.clone(),
                    json!({"name": "A", "lat": 91.0, "lon": 69.0}),
                    false,
                ),
                json_step(
                    "PUT",
                    p,
                    json!({"name": format!("Filial {}", fx.next())}),
                    true,
                ),
            ]
        }

        // ---- Notifications
        ("POST", "/settings/notifications/smtp") => {
            let port = fx.sink.port.to_string();
            let f = |port: &str| {
                form(&[
                    ("host", "127.0.0.1"),
                    ("port", port),
                    ("security", "plain"),
                    ("username", ""),
                    ("from", "shop@example.uz"),
                ])
            };
            vec![
                bad("/settings/notifications/smtp", f("http")),
                good("/settings/notifications/smtp", f(&port)),
            ]
        }
        ("POST", "/settings/notifications/smtp/test") => vec![
            bad(
                "/settings/notifications/smtp/test",
                form(&[("to", "not an address")]),
            ),
            good(
                "/settings/notifications/smtp/test",
                form(&[("to", "owner@example.uz")]),
            ),
        ],
        ("POST", "/settings/notifications/telegram") => {
            let url = fx.bot.url.clone();
            vec![
                bad(
                    "/settings/notifications/telegram",
                    form(&[("token", "nonsense"), ("api_url", &url)]),
                ),
                good(
                    "/settings/notifications/telegram",
                    form(&[("token", BOT_TOKEN), ("api_url", &url)]),
                ),
            ]
        }
        ("POST", "/settings/notifications/telegram/test") => vec![
            bad(
                "/settings/notifications/telegram/test",
                form(&[("chat", "not-a-chat")]),
            ),
            good(
                "/settings/notifications/telegram/test",
                form(&[("chat", "555")]),
            ),
        ],
        ("POST", "/settings/notifications/rules") => {
            let f = |hour: &str| {
                form(&[
                    ("rule", "order.status_changed|email"),
                    ("rule", "order.status_changed|telegram"),
                    ("rule", "summary.daily|email"),
                    ("default_language", "uz"),
                    ("summary_emails", "owner@example.uz"),
                    ("summary_hour", hour),
                ])
            };
            vec![
                bad("/settings/notifications/rules", f("24")),
                good("/settings/notifications/rules", f("19")),
            ]
        }
        ("POST", "/settings/notifications/templates/{event}/{lang}") => {
            let p = "/settings/notifications/templates/order.assigned/en";
            vec![
                bad(p, form(&[("subject", "x"), ("body", " "), ("op", "save")])),
                good(
                    p,
                    form(&[
                        ("subject", "Job {order_number}"),
                        ("body", "Job {order_number}: {device}"),
                        ("op", "save"),
                    ]),
                ),
            ]
        }
        ("POST", "/settings/notifications/outbox/{id}/retry") => {
            let id = fx.dead_message().await;
            let p = format!("/settings/notifications/outbox/{id}/retry");
            // The second retry finds it queued again: a conflict.
            vec![good(p.clone(), Empty), bad(p, Empty)]
        }
        ("POST", "/api/v1/notifications/outbox/{id}/retry") => {
            let id = fx.dead_message().await;
            let p = format!("/api/v1/notifications/outbox/{id}/retry");
            vec![
                json_step("POST", p.clone(), json!({}), true),
                json_step("POST", p, json!({}), false),
            ]
        }
        ("POST", "/profile/telegram/link") => {
            return Some(Case::NoRefusal(
                vec![good("/profile/telegram/link", Empty)],
                "takes no input",
            ))
        }
        ("POST", "/profile/telegram/unlink") => {
            return Some(Case::NoRefusal(
                vec![good("/profile/telegram/unlink", Empty)],
                "takes no input; unlinking when nothing is linked is allowed",
            ))
        }

        // ---- Telephony
        ("POST", "/telephony/extensions") => {
            let n = format!("{}", 400 + fx.next());
            vec![
                bad("/telephony/extensions", form(&[("number", "9")])),
                good(
                    "/telephony/extensions",
                    form(&[("number", &n), ("name", "Kassa"), ("username", "")]),
                ),
            ]
        }
        ("POST", "/telephony/extensions/{number}/secret") => {
            let n = fx.extension().await;
            unknown_then_known(pattern, n)
        }
        ("POST", "/telephony/extensions/{number}/delete") => {
            let n = fx.extension().await;
            unknown_then_known(pattern, n)
        }
        ("POST", "/telephony/groups") => {
            let ext = fx.extension().await;
            let n = format!("{}", 600 + fx.next());
            let g = |strategy: &str| {
                form(&[
                    ("number", &n),
                    ("name", "Desk"),
                    ("strategy", strategy),
                    ("members", &ext),
                    ("member_timeout", "20"),
                    ("overall_timeout", "60"),
                ])
            };
            vec![
                bad("/telephony/groups", g("loudly")),
                good("/telephony/groups", g("ring_all")),
            ]
        }
        ("POST", "/telephony/groups/{number}/delete") => {
            let g = fx.group().await;
            unknown_then_known(pattern, g)
        }
        ("POST", "/api/v1/telephony/extensions") => {
            let n = format!("{}", 400 + fx.next());
            vec![
                json_step("POST", pattern.into(), json!({"number": "1"}), false),
                json_step("POST", pattern.into(), json!({"number": n}), true),
            ]
        }
        ("DELETE", "/api/v1/telephony/extensions/{number}") => {
            let n = fx.extension().await;
            vec![
                json_step(
                    "DELETE",
                    "/api/v1/telephony/extensions/999999".into(),
                    json!({}),
                    false,
                ),
                json_step(
                    "DELETE",
                    format!("/api/v1/telephony/extensions/{n}"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("PUT", "/api/v1/telephony/groups") => {
            let ext = fx.extension().await;
            let n = format!("{}", 600 + fx.next());
            vec![
                json_step(
                    "PUT",
                    pattern.into(),
                    json!({"number": n, "strategy": "loudly", "members": [ext]}),
                    false,
                ),
                json_step(
                    "PUT",
                    pattern.into(),
                    json!({"number": n, "strategy": "sequential", "members": [ext]}),
                    true,
                ),
            ]
        }
        ("DELETE", "/api/v1/telephony/groups/{number}") => {
            let g = fx.group().await;
            vec![
                json_step(
                    "DELETE",
                    "/api/v1/telephony/groups/999999".into(),
                    json!({}),
                    false,
                ),
                json_step(
                    "DELETE",
                    format!("/api/v1/telephony/groups/{g}"),
                    json!({}),
                    true,
                ),
            ]
        }

        // ---- Calls
        ("POST", "/calls/missed/{id}/done") => {
            let id = fx.missed().await;
            // A second mark is a conflict the page deliberately answers with the list
            // (303: "resolved meanwhile"), so the refusal here is an unknown entry.
            unknown_then_known(pattern, id)
        }
        ("POST", "/api/v1/calls/missed/{id}/done") => {
            let id = fx.missed().await;
            let p = format!("/api/v1/calls/missed/{id}/done");
            vec![
                json_step("POST", p.clone(), json!({}), true),
                json_step("POST", p, json!({}), false),
            ]
        }

        // ---- Trunks, call rules, outbound policy
        ("POST", "/telephony/trunks") => {
            let name = format!("trunk{}", fx.next());
            let t = |port: &str| {
                form(&[
                    ("name", &name),
                    ("host", "127.0.0.1"),
                    ("port", port),
                    ("transport", "UDP"),
                    ("username", "shop"),
                    ("secret", "trunk-secret-1"),
                ])
            };
            vec![
                bad("/telephony/trunks", t("0")),
                good("/telephony/trunks", t("5070")),
            ]
        }
        ("POST", "/telephony/trunks/{id}/delete") => {
            let id = fx.trunk().await;
            unknown_then_known(pattern, id)
        }
        ("POST", "/telephony/rules") => {
            let r = |hours: &str| {
                form(&[
                    ("hours", hours),
                    ("holidays", ""),
                    ("dial_min_digits", "7"),
                    ("dial_prefixes", ""),
                    ("trunk_retry_secs", "30"),
                ])
            };
            vec![
                bad("/telephony/rules", r("sometimes")),
                good("/telephony/rules", r("mon-fri 09:00-18:00")),
            ]
        }
        ("POST", "/telephony/extensions/{number}/digest") => {
            let n = fx.extension().await;
            let p = format!("/telephony/extensions/{n}/digest");
            vec![
                bad(p.clone(), form(&[("digest", "ROT13")])),
                good(p, form(&[("digest", "SHA-256,MD5")])),
            ]
        }
        ("PUT", "/api/v1/telephony/extensions/{number}/digest") => {
            let n = fx.extension().await;
            let p = format!("/api/v1/telephony/extensions/{n}/digest");
            vec![
                json_step("PUT", p.clone(), json!({"digest": "ROT13"}), false),
                json_step("PUT", p, json!({"digest": "MD5"}), true),
            ]
        }
        ("POST", "/telephony/extensions/{number}/branch") => {
            let n = fx.extension().await;
            let p = format!("/telephony/extensions/{n}/branch");
            vec![
                bad(p.clone(), form(&[("branch", "999999")])),
                good(p, form(&[("branch", "")])),
            ]
        }
        ("PUT", "/api/v1/telephony/extensions/{number}/branch") => {
            let n = fx.extension().await;
            let p = format!("/api/v1/telephony/extensions/{n}/branch");
            vec![
                json_step("PUT", p.clone(), json!({"branch_id": 999999}), false),
                json_step("PUT", p, json!({"branch_id": null}), true),
            ]
        }
        ("POST", "/telephony/phones") => {
            let n = fx.extension().await;
            let mac = format!("00:15:65:aa:bb:{:02x}", fx.next() % 256);
            vec![
                bad(
                    "/telephony/phones",
                    form(&[
                        ("mac", "not-a-mac"),
                        ("model", "yealink"),
                        ("extension", &n),
                    ]),
                ),
                good(
                    "/telephony/phones",
                    form(&[("mac", &mac), ("model", "yealink"), ("extension", &n)]),
                ),
            ]
        }
        ("POST", "/telephony/phones/{mac}/delete") => {
            let n = fx.extension().await;
            let mac = format!("001565aacc{:02x}", fx.next() % 256);
            let added = fx
                .admin
                .post_form(
                    "/telephony/phones",
                    &[("mac", &mac), ("model", "snom"), ("extension", &n)],
                )
                .await;
            assert!(added.status().is_success() || added.status().is_redirection());
            vec![
                bad("/telephony/phones/0000000000ff/delete", form(&[])),
                good(format!("/telephony/phones/{mac}/delete"), form(&[])),
            ]
        }
        ("PUT", "/api/v1/settings/shop") => {
            let shop = |zone: &str| {
                json!({"name": "Mobil Servis", "address": "Toshkent", "phone": "+998 71 200 00 00",
                       "hours": "9-18", "terms": "Kafolat 30 kun", "order_prefix": "MS",
                       "currency": "UZS", "default_country": "998", "time_zone": zone})
            };
            vec![
                json_step("PUT", pattern.into(), shop("Mars/Olympus"), false),
                json_step("PUT", pattern.into(), shop("Asia/Tashkent"), true),
            ]
        }
        ("POST", "/telephony/extensions/{number}/outbound") => {
            let n = fx.extension().await;
            let p = format!("/telephony/extensions/{n}/outbound");
            vec![
                bad(
                    p.clone(),
                    form(&[("outbound_allowed", "1"), ("max_calls_per_hour", "many")]),
                ),
                good(
                    p,
                    form(&[("outbound_allowed", "1"), ("max_calls_per_hour", "10")]),
                ),
            ]
        }
        ("PUT", "/api/v1/telephony/trunks") => {
            let name = format!("trunk{}", fx.next());
            let mut bad_t = trunk_json(&name);
            bad_t["port"] = json!(0);
            vec![
                json_step("PUT", pattern.into(), bad_t, false),
                json_step("PUT", pattern.into(), trunk_json(&name), true),
            ]
        }
        ("DELETE", "/api/v1/telephony/trunks/{id}") => {
            let id = fx.trunk().await;
            vec![
                json_step(
                    "DELETE",
                    "/api/v1/telephony/trunks/999999".into(),
                    json!({}),
                    false,
                ),
                json_step(
                    "DELETE",
                    format!("/api/v1/telephony/trunks/{id}"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("PUT", "/api/v1/telephony/rules") => {
            let r = |hours: &str| json!({"hours": hours, "dial_min_digits": 7});
            vec![
                json_step("PUT", pattern.into(), r("sometimes"), false),
                json_step("PUT", pattern.into(), r("mon-sat 09:00-19:00"), true),
            ]
        }
        // ---- Outbound (issue 18): imports, the archive
        ("POST", "/imports") => vec![
            bad(
                "/imports",
                File(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), "x.csv"),
            ),
            good("/imports", File(fx.import_csv(), "customers.csv")),
        ],
        ("POST", "/imports/{id}/mapping") => {
            let id = fx.import_draft().await;
            let p = format!("/imports/{id}/mapping");
            vec![
                bad(
                    p.clone(),
                    form(&[("header", "1"), ("col0", "name"), ("col1", "")]),
                ),
                good(
                    p,
                    form(&[("header", "1"), ("col0", "name"), ("col1", "phone")]),
                ),
            ]
        }
        ("POST", "/imports/{id}/run") => {
            let id = fx.import_draft().await;
            vec![
                bad(format!("/imports/{}/run", fx.import_done().await), Empty),
                good(format!("/imports/{id}/run"), Empty),
            ]
        }
        ("POST", "/imports/{id}/cancel") => {
            let id = fx.import_draft().await;
            vec![
                bad(format!("/imports/{}/cancel", fx.import_done().await), Empty),
                good(format!("/imports/{id}/cancel"), Empty),
            ]
        }
        ("POST", "/imports/{id}/undo") => {
            let draft = fx.import_draft().await;
            let id = fx.import_done().await;
            vec![
                bad(format!("/imports/{draft}/undo"), Empty),
                good(format!("/imports/{id}/undo"), Empty),
            ]
        }
        ("POST", "/api/v1/imports/customers") => vec![
            step(
                Method::POST,
                pattern,
                Raw(b"Ism,Telefon\n\"Aziz,90\n".to_vec()),
                false,
            ),
            step(Method::POST, pattern, Raw(fx.import_csv()), true),
        ],
        ("POST", "/api/v1/imports/{id}/undo") => {
            let draft = fx.import_draft().await;
            let id = fx.import_done().await;
            vec![
                json_step(
                    "POST",
                    format!("/api/v1/imports/{draft}/undo"),
                    json!({}),
                    false,
                ),
                json_step(
                    "POST",
                    format!("/api/v1/imports/{id}/undo"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("POST", "/customers/{id}/archive") => {
            let id = fx.customer().await;
            vec![
                good(format!("/customers/{id}/archive"), Empty),
                bad(format!("/customers/{id}/archive"), Empty),
            ]
        }
        ("POST", "/customers/{id}/restore") => {
            let id = fx.customer().await;
            fx.api
                .post(&format!("/api/v1/customers/{id}/archive"), json!({}))
                .await;
            vec![
                good(format!("/customers/{id}/restore"), Empty),
                bad(format!("/customers/{id}/restore"), Empty),
            ]
        }
        ("POST", "/api/v1/customers/{id}/archive") => {
            let id = fx.customer().await;
            let p = format!("/api/v1/customers/{id}/archive");
            vec![
                json_step("POST", p.clone(), json!({}), true),
                json_step("POST", p, json!({}), false),
            ]
        }
        ("POST", "/api/v1/customers/{id}/restore") => {
            let id = fx.customer().await;
            let p = format!("/api/v1/customers/{id}/restore");
            vec![
                json_step("POST", p.clone(), json!({}), false),
                json_step(
                    "POST",
                    format!("/api/v1/customers/{id}/archive"),
                    json!({}),
                    true,
                ),
                json_step("POST", p, json!({}), true),
            ]
        }
        ("POST", "/segments") => vec![
            bad(
                "/segments",
                form(&[("name", "Eski"), ("ready_days", "ko'p")]),
            ),
            good(
                "/segments",
                form(&[
                    ("name", &format!("Tayyor {}", fx.next())),
                    ("ready_days", "7"),
                ]),
            ),
        ],
        ("POST", "/segments/{id}") => {
            let id = fx.segment().await;
            let p = format!("/segments/{id}");
            vec![
                bad(p.clone(), form(&[("name", "X"), ("kind", "robot")])),
                good(
                    p,
                    form(&[("name", &format!("VIP {}", fx.next())), ("tags", "vip")]),
                ),
            ]
        }
        ("POST", "/segments/{id}/delete") => {
            let id = fx.segment().await;
            unknown_then_known(pattern, id)
        }
        ("POST", "/api/v1/segments") => vec![
            json_step(
                "POST",
                pattern.into(),
                json!({"name": "X", "filter": {"warranty_ending_days": -1}}),
                false,
            ),
            json_step(
                "POST",
                pattern.into(),
                json!({"name": format!("Kafolat {}", fx.next()), "filter": {"warranty_ending_days": 30}}),
                true,
            ),
        ],
        ("PUT", "/api/v1/segments/{id}") => {
            let id = fx.segment().await;
            let p = format!("/api/v1/segments/{id}");
            vec![
                json_step("PUT", p.clone(), json!({"name": " ", "filter": {}}), false),
                json_step(
                    "PUT",
                    p,
                    json!({"name": format!("Hammasi {}", fx.next()), "filter": {}}),
                    true,
                ),
            ]
        }
        ("DELETE", "/api/v1/segments/{id}") => {
            let id = fx.segment().await;
            vec![
                json_step("DELETE", "/api/v1/segments/999999".into(), json!({}), false),
                json_step("DELETE", format!("/api/v1/segments/{id}"), json!({}), true),
            ]
        }
        ("PUT", "/api/v1/telephony/extensions/{number}/outbound") => {
            let n = fx.extension().await;
            let p = format!("/api/v1/telephony/extensions/{n}/outbound");
            vec![
                json_step(
                    "PUT",
                    p.clone(),
                    json!({"outbound_allowed": true, "outbound_prefixes": "abc!"}),
                    false,
                ),
                json_step(
                    "PUT",
                    p,
                    json!({"outbound_allowed": true, "max_calls_per_hour": 10}),
                    true,
                ),
            ]
        }
        // ---- Conversations: the web chat widget and its settings
        ("POST", "/settings/widget") => vec![
            bad(
                "/settings/widget",
                form(&[("enabled", "1"), ("origins", "not a site")]),
            ),
            good(
                "/settings/widget",
                form(&[("enabled", "1"), ("origins", "https://shop.uz")]),
            ),
        ],
        ("POST", "/widget/messages") => {
            let admin = crm::domain::accounts::actor_of(
                &fx.app
                    .running()
                    .ctx
                    .accounts
                    .user_by_username("admin")
                    .await
                    .unwrap(),
            );
            crm::domain::widget::save(&fx.app.running().ctx.store, &admin, true, "")
                .await
                .unwrap();
            let visitor = format!("work-visitor-{:08}", fx.next());
            vec![
                json_step(
                    "POST",
                    "/widget/messages".into(),
                    json!({"visitor": visitor, "text": ""}),
                    false,
                ),
                json_step(
                    "POST",
                    "/widget/messages".into(),
                    json!({"visitor": visitor, "text": "Salom, telefonim tayyormi?"}),
                    true,
                ),
            ]
        }
        // ---- Promotions, broadcasts, SMS, archived orders (issue 18, part three)
        ("POST", "/promotions") => vec![
            bad("/promotions", form(&promo_form("ВЕСНА"))),
            good(
                "/promotions",
                form(&promo_form(&format!("SPRING{}", fx.next()))),
            ),
        ],
        ("POST", "/promotions/{id}") => {
            let (id, code) = work_promotion(fx).await;
            let p = format!("/promotions/{id}");
            let mut wrong = promo_form(&code);
            wrong.retain(|(k, _)| *k != "value");
            wrong.push(("value", "250"));
            vec![
                bad(p.clone(), form(&wrong)),
                good(p, form(&promo_form(&code))),
            ]
        }
        ("POST", "/orders/{id}/promotion") => {
            let (_, code) = work_promotion(fx).await;
            let o = fx.order_id().await;
            let p = format!("/orders/{o}/promotion");
            vec![
                bad(p.clone(), form(&[("code", "NOSUCH")])),
                good(p, form(&[("code", &code.to_lowercase())])),
            ]
        }
        ("POST", "/orders/{id}/promotion/remove") => {
            let (_, code) = work_promotion(fx).await;
            let o = fx.order_id().await;
            vec![
                bad(format!("/orders/{o}/promotion/remove"), Empty),
                good(format!("/orders/{o}/promotion"), form(&[("code", &code)])),
                good(format!("/orders/{o}/promotion/remove"), Empty),
            ]
        }
        ("POST", "/broadcasts") => {
            let seg = fx.segment().await;
            vec![
                bad(
                    "/broadcasts",
                    form(&[
                        ("name", ""),
                        ("segment_id", &seg.to_string()),
                        ("body", "x"),
                        ("telegram", "1"),
                    ]),
                ),
                good(
                    "/broadcasts",
                    form(&[
                        ("name", "Bahor"),
                        ("segment_id", &seg.to_string()),
                        ("body", "Salom {name}!"),
                        ("telegram", "1"),
                        ("sms", "1"),
                        ("email", "1"),
                    ]),
                ),
            ]
        }
        ("POST", "/archive/rule") => {
            closed_order(fx, 3 * 366).await;
            vec![
                bad("/archive/rule", form(&[("closed_years", "nol")])),
                good("/archive/rule", form(&[("closed_years", "2")])),
            ]
        }
        ("POST", "/orders/{id}/archive") => {
            let open = fx.order_id().await;
            let closed = closed_order(fx, 10).await;
            vec![
                bad(format!("/orders/{open}/archive"), Empty),
                good(format!("/orders/{closed}/archive"), Empty),
            ]
        }
        ("POST", "/orders/{id}/restore") => {
            let closed = closed_order(fx, 10).await;
            vec![
                bad(format!("/orders/{closed}/restore"), Empty),
                good(format!("/orders/{closed}/archive"), Empty),
                good(format!("/orders/{closed}/restore"), Empty),
            ]
        }
        ("POST", "/settings/notifications/sms") => vec![
            bad("/settings/notifications/sms", form(&[("provider", "smsc")])),
            good(
                "/settings/notifications/sms",
                form(&[("provider", ""), ("per_second", "5")]),
            ),
        ],
        ("POST", "/settings/notifications/sms/test") => {
            let gw = crate::promos_peers::SmsStandIn::start().await;
            fx.app
                .set_settings(&[
                    ("sms.provider", "eskiz"),
                    ("sms.url", &gw.url),
                    ("sms.login", crate::promos_peers::ESKIZ_EMAIL),
                    ("sms.password", crate::promos_peers::ESKIZ_PASSWORD),
                ])
                .await;
            vec![
                bad("/settings/notifications/sms/test", form(&[("to", "12")])),
                good(
                    "/settings/notifications/sms/test",
                    form(&[("to", "90 111 22 33")]),
                ),
            ]
        }
        ("POST", "/unsubscribe") => {
            let c = fx.customer().await;
            let secret = fx
                .app
                .running()
                .ctx
                .db
                .write(|c| crm::domain::notifications::sms::box_secret(c, 0))
                .await
                .unwrap();
            let sig = crm::domain::notifications::sms::unsubscribe_sig(&secret, c);
            vec![
                bad(
                    "/unsubscribe",
                    form(&[("c", &c.to_string()), ("s", "00ff")]),
                ),
                good("/unsubscribe", form(&[("c", &c.to_string()), ("s", &sig)])),
            ]
        }
        ("POST", "/hooks/sms/{provider}/incoming") => {
            let phone = fx.phone();
            new_customer(&fx.api, &format!("Mijoz {phone}"), &phone).await;
            let key = fx
                .app
                .running()
                .ctx
                .db
                .write(|c| crm::domain::notifications::sms::box_secret(c, 0))
                .await
                .unwrap();
            vec![
                json_step(
                    "POST",
                    "/hooks/sms/eskiz/incoming?key=wrong".into(),
                    json!({"from": phone, "text": "STOP"}),
                    false,
                ),
                json_step(
                    "POST",
                    format!("/hooks/sms/eskiz/incoming?key={key}"),
                    json!({"from": phone, "text": "TO'XTATISH"}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/promotions") => vec![
            json_step(
                "POST",
                pattern.into(),
                json!({"code": "x", "name": "n", "kind": "percent",
                "value": 5, "starts_on": "2026-01-01", "ends_on": "2026-12-31"}),
                false,
            ),
            json_step(
                "POST",
                pattern.into(),
                json!({"code": format!("API{}", fx.next()), "name": "n",
                "kind": "amount", "value": 20000, "starts_on": "2026-01-01", "ends_on": "2099-12-31"}),
                true,
            ),
        ],
        ("PUT", "/api/v1/promotions/{id}") => {
            let (id, code) = work_promotion(fx).await;
            let p = format!("/api/v1/promotions/{id}");
            vec![
                json_step(
                    "PUT",
                    p.clone(),
                    json!({"code": code, "name": "n", "kind": "percent",
                    "value": 101, "starts_on": "2026-01-01", "ends_on": "2099-12-31"}),
                    false,
                ),
                json_step(
                    "PUT",
                    p,
                    json!({"code": code, "name": "Yangi nom", "kind": "percent",
                    "value": 15, "starts_on": "2026-01-01", "ends_on": "2099-12-31"}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/orders/{id}/promotion") => {
            let (_, code) = work_promotion(fx).await;
            let o = fx.order_id().await;
            let p = format!("/api/v1/orders/{o}/promotion");
            vec![
                json_step("POST", p.clone(), json!({"code": "Ж"}), false),
                json_step("POST", p, json!({"code": code}), true),
            ]
        }
        ("DELETE", "/api/v1/orders/{id}/promotion") => {
            let (_, code) = work_promotion(fx).await;
            let o = fx.order_id().await;
            let p = format!("/api/v1/orders/{o}/promotion");
            vec![
                json_step("DELETE", p.clone(), json!({}), false),
                json_step("POST", p.clone(), json!({"code": code}), true),
                json_step("DELETE", p, json!({}), true),
            ]
        }
        ("POST", "/api/v1/broadcasts") => {
            let seg = fx.segment().await;
            vec![
                json_step(
                    "POST",
                    pattern.into(),
                    json!({"name": "x", "segment_id": seg, "body": "hi", "channels": ["pigeon"]}),
                    false,
                ),
                json_step(
                    "POST",
                    pattern.into(),
                    json!({"name": "x", "segment_id": seg, "body": "hi {name}"}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/archive/orders") => {
            closed_order(fx, 3 * 366).await;
            vec![
                json_step("POST", pattern.into(), json!({"closed_years": 99}), false),
                json_step("POST", pattern.into(), json!({"closed_years": 2}), true),
            ]
        }
        ("POST", "/api/v1/orders/{id}/archive") => {
            let open = fx.order_id().await;
            let closed = closed_order(fx, 10).await;
            vec![
                json_step(
                    "POST",
                    format!("/api/v1/orders/{open}/archive"),
                    json!({}),
                    false,
                ),
                json_step(
                    "POST",
                    format!("/api/v1/orders/{closed}/archive"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/orders/{id}/restore") => {
            let closed = closed_order(fx, 10).await;
            vec![
                json_step(
                    "POST",
                    format!("/api/v1/orders/{closed}/restore"),
                    json!({}),
                    false,
                ),
                json_step(
                    "POST",
                    format!("/api/v1/orders/{closed}/archive"),
                    json!({}),
                    true,
                ),
                json_step(
                    "POST",
                    format!("/api/v1/orders/{closed}/restore"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("PUT", "/api/v1/notifications/sms") => vec![
            json_step(
                "PUT",
                pattern.into(),
                json!({"provider": "eskiz", "url": "ftp://x"}),
                false,
            ),
            json_step(
                "PUT",
                pattern.into(),
                json!({"provider": "", "per_second": "10"}),
                true,
            ),
        ],
        // ---- Roles (issue 19)
        ("POST", "/roles") => {
            let key = format!("kassir{}", fx.next());
            let f = |key: &str, perm: &str| {
                form(&[
                    ("key", key),
                    ("name", "Kassir"),
                    ("base", "operator"),
                    ("perm", "orders.view"),
                    ("perm", perm),
                ])
            };
            vec![
                bad("/roles", f(&key, "orders.fly")),
                bad("/roles", f("admin", "orders.payments")),
                good("/roles", f(&key, "orders.payments")),
            ]
        }
        ("POST", "/roles/{id}") => {
            let id = fx.role().await;
            let p = format!("/roles/{id}");
            let f = |name: &str| {
                form(&[
                    ("key", &format!("rol{id}")),
                    ("name", name),
                    ("base", "master"),
                    ("perm", "orders.view"),
                ])
            };
            vec![bad(p.clone(), f("")), good(p, f("Katta usta"))]
        }
        ("POST", "/api/v1/roles") => vec![
            json_step(
                "POST",
                pattern.into(),
                json!({"key": "x", "name": "X", "base": "operator", "permissions": []}),
                false,
            ),
            json_step(
                "POST",
                pattern.into(),
                json!({"key": format!("menejer{}", fx.next()), "name": "Menejer",
                    "base": "admin", "permissions": ["orders.view", "reports.view"]}),
                true,
            ),
        ],
        ("PUT", "/api/v1/roles/{id}") => {
            let id = fx.role().await;
            let p = format!("/api/v1/roles/{id}");
            vec![
                json_step(
                    "PUT",
                    p.clone(),
                    json!({"key": format!("rol{id}"), "name": "Y", "base": "operator",
                        "permissions": ["users.fly"]}),
                    false,
                ),
                json_step(
                    "PUT",
                    p,
                    json!({"key": format!("rol{id}"), "name": "Y", "base": "operator",
                        "permissions": ["calls.view"]}),
                    true,
                ),
            ]
        }
        // Issue 19: customers shared or kept per branch.
        ("POST", "/branches/customer-scope") => vec![
            bad(pattern, form(&[("per_branch", "maybe")])),
            good(pattern, form(&[("per_branch", "1")])),
        ],
        ("PUT", "/api/v1/customer-scope") => vec![
            json_step("PUT", pattern.into(), json!({"per_branch": "yes"}), false),
            json_step("PUT", pattern.into(), json!({"per_branch": false}), true),
        ],
        _ => return call_list_case(fx, method, pattern).await,
    };
    Some(Case::Steps(steps))
}

/// A promotion's form fields with this code, valid now.
fn promo_form(code: &str) -> Vec<(&'static str, &str)> {
    let code: &'static str = Box::leak(code.to_string().into_boxed_str());
    vec![
        ("code", code),
        ("name", "Bahor"),
        ("kind", "percent"),
        ("value", "10"),
        ("applies_to", "both"),
        ("starts_on", "2020-01-01"),
        ("ends_on", "2099-12-31"),
        ("active", "1"),
    ]
}

/// A fresh promotion (id, code).
async fn work_promotion(fx: &Fx) -> (i64, String) {
    let code = format!("WORK{}", fx.next());
    let (s, v) = fx
        .api
        .post(
            "/api/v1/promotions",
            json!({"code": code, "name": "Ish", "kind": "percent", "value": 10,
                   "starts_on": "2020-01-01", "ends_on": "2099-12-31"}),
        )
        .await;
    assert_eq!(s.as_u16(), 201, "{v}");
    (v["id"].as_i64().unwrap(), code)
}

/// An order closed this many days ago.
async fn closed_order(fx: &Fx, days_ago: i64) -> i64 {
    let id = fx.order_id().await;
    let at = crm::db::now() - days_ago * 86_400;
    fx.app
        .running()
        .ctx
        .db
        .write(move |c| {
            c.execute(
                "UPDATE orders SET status_id = 7, closed_at = ?2 WHERE id = ?1",
                [id, at],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    id
}

async fn send(fx: &Fx, s: &Step) -> (u16, String) {
    let sess = match s.who {
        As::Admin => &fx.admin,
        As::Oper => &fx.oper,
        As::SelfPw => &fx.selfpw,
    };
    let resp = if let (true, Body::Raw(bytes)) = (s.path.starts_with("/api/"), &s.body) {
        reqwest::Client::new()
            .request(s.method.clone(), fx.app.url(&s.path))
            .bearer_auth(&fx.api.token)
            .header("content-type", "text/csv")
            .body(bytes.clone())
            .send()
            .await
            .unwrap()
    } else if s.path.starts_with("/api/") {
        let Body::Json(body) = &s.body else {
            panic!("API steps send JSON")
        };
        let req = reqwest::Client::new()
            .request(s.method.clone(), fx.app.url(&s.path))
            .bearer_auth(&fx.api.token);
        let req = if s.method == Method::DELETE {
            req
        } else {
            req.json(body)
        };
        req.send().await.unwrap()
    } else {
        match &s.body {
            Body::Empty => sess.post_form(&s.path, &[]).await,
            Body::Form(f) => {
                let f: Vec<(&str, &str)> =
                    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                sess.post_form(&s.path, &f).await
            }
            Body::Json(v) => sess.send_json(s.method.clone(), &s.path, v).await,
            Body::Multipart(fields) => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields {
                    form = form.text(k.clone(), v.clone());
                }
                sess.client
                    .post(sess.url(&format!("{}?_csrf={}", s.path, sess.csrf)))
                    .multipart(form)
                    .send()
                    .await
                    .unwrap()
            }
            Body::Raw(_) => panic!("raw bodies go to the API"),
            Body::File(bytes, name) => {
                let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(*name);
                sess.client
                    .post(sess.url(&format!("{}?_csrf={}", s.path, sess.csrf)))
                    .multipart(reqwest::multipart::Form::new().part("file", part))
                    .send()
                    .await
                    .unwrap()
            }
            Body::Photo(bytes, name) => {
                let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(*name);
                sess.client
                    .post(sess.url(&format!("{}?_csrf={}", s.path, sess.csrf)))
                    .multipart(reqwest::multipart::Form::new().part("photo", part))
                    .send()
                    .await
                    .unwrap()
            }
            Body::Upload(field, bytes, name) => {
                let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(*name);
                sess.client
                    .post(sess.url(&format!("{}?_csrf={}", s.path, sess.csrf)))
                    .multipart(reqwest::multipart::Form::new().part(*field, part))
                    .send()
                    .await
                    .unwrap()
            }
        }
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, text)
}

async fn last_activity(app: &TestApp) -> i64 {
    app.running()
        .ctx
        .db
        .read(|c| {
            Ok(
                c.query_row("SELECT coalesce(max(id), 0) FROM activity_log", [], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        })
        .await
        .unwrap()
}

async fn activity_after(app: &TestApp, after: i64) -> Vec<String> {
    app.running()
        .ctx
        .db
        .read(move |c| {
            let mut st =
                c.prepare("SELECT action, entity FROM activity_log WHERE id > ?1 ORDER BY id")?;
            let rows = st.query_map([after], |r| {
                Ok(format!(
                    "{}:{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

/// The kinds of the events published since the last call. Internal events (audience
/// `Users([])`: no screen receives them) are left out: the change watcher
/// (`domain::changes`) re-publishes `user.access_changed` for every committed user change
/// some 200 ms later, so one can arrive while the next route's refusal is checked.
fn drain(rx: &mut tokio::sync::broadcast::Receiver<Arc<crm::events::Event>>) -> Vec<String> {
    let mut kinds = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) if matches!(&e.audience, Audience::Users(u) if u.is_empty()) => {}
            // The delivery worker reports a reply's delivery whenever Telegram answers:
            // it belongs to an earlier step's message, never to the request under test.
            Ok(e) if e.kind == "conversation.message_updated" => {}
            Ok(e) => kinds.push(e.kind.clone()),
            Err(TryRecvError::Lagged(_)) => continue,
            Err(_) => return kinds,
        }
    }
}

fn short(text: &str) -> String {
    let t: String = text.chars().take(160).collect();
    t.replace('\n', " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_logs_and_publishes_and_every_refusal_leaves_nothing() {
    let fx = fixture().await;
    let mut rx = fx.app.running().ctx.events.subscribe();
    let areas: &[&[(&str, &str, crate::matrix::Who)]] = &[
        FOUNDATION,
        CORE,
        NOTIFY,
        OPS,
        TELEPHONY,
        CALLS,
        TRUNK,
        INBOX,
        CHAT_EXTRAS,
        OUTBOUND,
        CALL_LISTS,
        PROMOTIONS,
        ROLES,
        RECORDINGS,
        BRANCHES,
        REPLICA,
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, pattern, _) in areas.iter().flat_map(|a| a.iter()) {
        if *method == "GET" {
            continue;
        }
        if let Some((_, _, why)) = EXEMPT
            .iter()
            .chain(CALL_LISTS_EXEMPT)
            .chain(RECORDINGS_EXEMPT)
            .chain(REPLICA_EXEMPT)
            .find(|(m, p, _)| m == method && p == pattern)
        {
            eprintln!("exempt {method} {pattern}: {why}");
            continue;
        }
        let Some(c) = case(&fx, method, pattern).await else {
            failures.push(format!(
                "{method} {pattern}: no case in tests/it/work.rs (add one or exempt it)"
            ));
            continue;
        };
        let (steps, no_refusal) = match c {
            Case::Steps(s) => (s, None),
            Case::NoRefusal(s, why) => (s, Some(why)),
        };
        if no_refusal.is_none() {
            assert!(
                steps.iter().any(|s| s.ok) && steps.iter().any(|s| !s.ok),
                "{method} {pattern}: a case needs a success and a refusal"
            );
        }
        if let Some(why) = no_refusal {
            eprintln!("no refusal for {method} {pattern}: {why}");
        }
        checked += 1;
        for s in &steps {
            // Whatever the setup did is done: start from here.
            drain(&mut rx);
            let before = last_activity(&fx.app).await;
            let (status, text) = send(&fx, s).await;
            let events = drain(&mut rx);
            let rows = activity_after(&fx.app, before).await;
            let what = if s.ok { "success" } else { "refusal" };
            let label = format!("{method} {pattern} ({what}, {} {})", s.method, s.path);
            eprintln!("{label}: {status}, activity {rows:?}, events {events:?}");
            if s.ok {
                if !(200..400).contains(&status) {
                    failures.push(format!(
                        "{label}: expected success, got {status}: {}",
                        short(&text)
                    ));
                    continue;
                }
                if rows.is_empty() {
                    failures.push(format!("{label}: NO ACTIVITY ROW (events: {events:?})"));
                }
                if events.is_empty() {
                    failures.push(format!("{label}: NO EVENT (activity: {rows:?})"));
                }
            } else {
                if !(400..500).contains(&status) {
                    failures.push(format!(
                        "{label}: expected a 4xx refusal, got {status}: {}",
                        short(&text)
                    ));
                }
                if !rows.is_empty() {
                    failures.push(format!("{label}: ACTIVITY ROW ON REFUSAL: {rows:?}"));
                }
                if !events.is_empty() {
                    failures.push(format!("{label}: EVENT ON REFUSAL: {events:?}"));
                }
            }
        }
    }
    eprintln!("checked {checked} state-changing routes");
    assert!(checked > 50, "only {checked} routes checked");
    assert!(
        failures.is_empty(),
        "{} unit-of-work failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

impl Fx {
    /// The owner's public key set (so targets may be added); a fresh target name and an
    /// existing folder for it.
    async fn remote_ready(&self) -> (String, String) {
        let has_key = self
            .app
            .running()
            .ctx
            .remote
            .config()
            .backup
            .remote
            .public_key
            .is_some();
        if !has_key {
            let (_, public) = crm::ops::remote::keygen();
            let r = self
                .admin
                .post_form(
                    "/backups/remote/settings",
                    &[
                        ("public_key", public.as_str()),
                        ("interval_ms", "1000"),
                        ("snapshot_every_hours", "6"),
                        ("retention_hours", "72"),
                        ("warn_lag_secs", "60"),
                    ],
                )
                .await;
            assert_eq!(r.status(), 200);
        }
        let name = format!("usb{}", self.next());
        let dir = self.app.data_dir().join("remote-targets").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        (
            name,
            dir.canonicalize().unwrap().to_string_lossy().into_owned(),
        )
    }

    /// An existing folder target's name.
    async fn remote_target(&self) -> String {
        let (name, dir) = self.remote_ready().await;
        let r = self
            .admin
            .post_form(
                "/backups/remote/targets",
                &[("name", &name), ("kind", "path"), ("path", &dir)],
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        name
    }

    /// A fresh one-customer call list with its pending item, the admin holding nothing.
    async fn call_list_item(&self) -> (i64, i64) {
        let admin = self.admin_id;
        self.app
            .running()
            .ctx
            .db
            .write(move |c| {
                c.execute(
                    "UPDATE call_list_items SET state = 'pending', taken_by = NULL WHERE taken_by = ?1",
                    [admin],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let tag = format!("work{}", self.next());
        let p = self.phone();
        let (s, v) = self
            .api
            .post(
                "/api/v1/customers",
                json!({"name": format!("Mijoz {p}"), "phones": [p], "tags": tag}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = self
            .api
            .post(
                "/api/v1/segments",
                json!({"name": format!("Seg {tag}"), "filter": {"tags": [tag]}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, l) = self
            .api
            .post(
                "/api/v1/call-lists",
                json!({"name": format!("List {tag}"), "source": "segment", "source_ref": v["id"]}),
            )
            .await;
        assert_eq!(s, 201, "{l}");
        let list = l["id"].as_i64().unwrap();
        let (_, items) = self
            .api
            .get(&format!("/api/v1/call-lists/{list}/items"))
            .await;
        (list, items[0]["id"].as_i64().unwrap())
    }

    /// An item the admin holds.
    async fn call_list_held(&self) -> (i64, i64) {
        let (list, item) = self.call_list_item().await;
        let (s, v) = self
            .api
            .post(
                &format!("/api/v1/call-lists/{list}/items/{item}/take"),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (list, item)
    }

    /// A call answered on the box, for wrap-ups.
    async fn answered_call(&self) -> String {
        let call_id = format!("work-wrap-{}", self.next());
        let id = call_id.clone();
        let admin = self.admin_id;
        self.app
            .running()
            .ctx
            .db
            .write(move |c| {
                let now = crm::db::now() * 1000;
                let exts = vec!["1501".to_string()];
                crm::db::calls::upsert_ringing(
                    c,
                    &crm::db::calls::NewCall {
                        transferred_by: None,
                        branch_id: None,
                        transferred_from: None,
                        call_id: &id,
                        direction: "inbound",
                        from_number: "+998935556677",
                        to_number: "1501",
                        party_number: "+998935556677",
                        ring_group: None,
                        extensions: &exts,
                        customer_id: None,
                        open_orders: &[],
                        started_ms: now,
                    },
                )?;
                crm::db::calls::set_answered(c, &id, "1501", Some(admin), now + 1000)?;
                Ok(())
            })
            .await
            .unwrap();
        call_id
    }
}

/// The call-list routes (issue 18), kept apart from `case` so merges stay easy.
async fn call_list_case(fx: &Fx, method: &str, pattern: &str) -> Option<Case> {
    use Body::*;
    let json_step = |meth: &str, path: String, body: Value, ok: bool| Step {
        method: Method::from_bytes(meth.as_bytes()).unwrap(),
        path,
        body: Json(body),
        who: As::Admin,
        ok,
    };
    let steps = match (method, pattern) {
        ("POST", "/call-lists") => vec![
            bad("/call-lists", form(&[("name", "X"), ("source", "moon")])),
            good(
                "/call-lists",
                form(&[
                    ("name", &format!("Qayta {}", fx.next())),
                    ("source", "missed"),
                ]),
            ),
        ],
        ("POST", "/call-lists/{id}") => {
            let (list, _) = fx.call_list_item().await;
            let p = format!("/call-lists/{list}");
            vec![
                bad(p.clone(), form(&[("name", "X"), ("state", "asleep")])),
                good(p, form(&[("name", "Yangi nom"), ("state", "paused")])),
            ]
        }
        ("POST", "/queue/next") => {
            fx.call_list_item().await;
            return Some(Case::NoRefusal(
                vec![good("/queue/next", Empty)],
                "takes whatever is due; an empty queue is an answer, not a refusal",
            ));
        }
        ("POST", "/queue/items/{item}/outcome") => {
            let (_, item) = fx.call_list_held().await;
            let p = format!("/queue/items/{item}/outcome");
            vec![
                bad(p.clone(), form(&[("outcome", "teleported")])),
                good(p, form(&[("outcome", "reached"), ("note", "Келади")])),
            ]
        }
        ("POST", "/queue/items/{item}/release") => {
            let (_, item) = fx.call_list_held().await;
            let p = format!("/queue/items/{item}/release");
            vec![good(p.clone(), Empty), bad(p, Empty)]
        }
        ("POST", "/call-outcomes") => vec![
            bad(
                "/call-outcomes",
                form(&[
                    ("code", "Bad!"),
                    ("name_en", "x"),
                    ("name_ru", "x"),
                    ("name_uz", "x"),
                    ("name_uz_cyrl", "x"),
                    ("effect", "done"),
                ]),
            ),
            good(
                "/call-outcomes",
                form(&[
                    ("code", &format!("code_{}", fx.next())),
                    ("name_en", "Paid"),
                    ("name_ru", "Оплатил"),
                    ("name_uz", "To'ladi"),
                    ("name_uz_cyrl", "Тўлади"),
                    ("effect", "done"),
                    ("reached", "1"),
                    ("active", "1"),
                ]),
            ),
        ],
        ("POST", "/calls/wrap-up") => {
            let id = fx.answered_call().await;
            vec![
                bad(
                    "/calls/wrap-up",
                    form(&[("call_id", &id), ("outcome", "nope")]),
                ),
                good(
                    "/calls/wrap-up",
                    form(&[
                        ("call_id", &id),
                        ("outcome", "reached"),
                        ("note", "Narxini so'radi"),
                    ]),
                ),
            ]
        }
        ("POST", "/progress/targets") => vec![
            bad(
                "/progress/targets",
                form(&[("user_id", "0"), ("calls", "-5")]),
            ),
            good(
                "/progress/targets",
                form(&[("user_id", "0"), ("calls", "40"), ("reached", "20")]),
            ),
        ],
        ("POST", "/api/v1/calls/wrap-up") => {
            let id = fx.answered_call().await;
            vec![
                json_step(
                    "POST",
                    pattern.into(),
                    json!({"call_id": id, "outcome": "reached", "follow_up": "1999-01-01"}),
                    false,
                ),
                json_step(
                    "POST",
                    pattern.into(),
                    json!({"call_id": id, "outcome": "will_come_in"}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/call-lists") => vec![
            json_step(
                "POST",
                pattern.into(),
                json!({"name": "X", "source": "missed", "settings": {"max_attempts": 0}}),
                false,
            ),
            json_step(
                "POST",
                pattern.into(),
                json!({"name": format!("Kafolat {}", fx.next()), "source": "warranty", "source_ref": 30}),
                true,
            ),
        ],
        ("PUT", "/api/v1/call-lists/{id}") => {
            let (list, _) = fx.call_list_item().await;
            let p = format!("/api/v1/call-lists/{list}");
            vec![
                json_step(
                    "PUT",
                    p.clone(),
                    json!({"name": "X", "state": "asleep"}),
                    false,
                ),
                json_step(
                    "PUT",
                    p,
                    json!({"name": "Yopildi", "state": "closed"}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/call-lists/{id}/items/{item}/take") => {
            let (list, item) = fx.call_list_item().await;
            vec![
                json_step(
                    "POST",
                    format!("/api/v1/call-lists/{list}/items/999999/take"),
                    json!({}),
                    false,
                ),
                json_step(
                    "POST",
                    format!("/api/v1/call-lists/{list}/items/{item}/take"),
                    json!({}),
                    true,
                ),
            ]
        }
        ("POST", "/api/v1/call-lists/{id}/items/{item}/release") => {
            let (list, item) = fx.call_list_held().await;
            let p = format!("/api/v1/call-lists/{list}/items/{item}/release");
            vec![
                json_step("POST", p.clone(), json!({}), true),
                json_step("POST", p, json!({}), false),
            ]
        }
        ("POST", "/api/v1/call-lists/{id}/items/{item}/outcome") => {
            let (list, item) = fx.call_list_held().await;
            let p = format!("/api/v1/call-lists/{list}/items/{item}/outcome");
            vec![
                json_step("POST", p.clone(), json!({"outcome": "call_back"}), false),
                json_step("POST", p, json!({"outcome": "busy"}), true),
            ]
        }
        ("POST", "/api/v1/queue/next") => {
            fx.call_list_item().await;
            return Some(Case::NoRefusal(
                vec![json_step("POST", pattern.into(), json!({}), true)],
                "takes whatever is due; an empty queue is an answer, not a refusal",
            ));
        }
        ("PUT", "/api/v1/call-outcomes") => {
            let o = |code: &str, effect: &str| json!({"id": 0, "code": code, "name_en": "Moved", "name_ru": "Переехал", "name_uz": "Ko'chgan", "name_uz_cyrl": "Кўчган", "effect": effect, "reached": false, "position": 20, "active": true});
            vec![
                json_step("PUT", pattern.into(), o("moved", "vanish"), false),
                json_step(
                    "PUT",
                    pattern.into(),
                    o(&format!("moved_{}", fx.next()), "wrong"),
                    true,
                ),
            ]
        }
        ("PUT", "/api/v1/progress/targets") => vec![
            json_step(
                "PUT",
                pattern.into(),
                json!({"user_id": 999999, "targets": {"calls": 5}}),
                false,
            ),
            json_step(
                "PUT",
                pattern.into(),
                json!({"user_id": fx.admin_id, "targets": {"calls": 5, "orders": 2}}),
                true,
            ),
        ],
        _ => return recording_case(method, pattern),
    };
    Some(Case::Steps(steps))
}

/// Call recording (issue 16): the settings form.
fn recording_case(method: &str, pattern: &str) -> Option<Case> {
    let steps = match (method, pattern) {
        ("POST", "/telephony/recording") => vec![
            bad(
                "/telephony/recording",
                form(&[("retention_days", "-1"), ("extension:201", "all")]),
            ),
            bad(
                "/telephony/recording",
                form(&[("retention_days", "30"), ("extension:201", "sometimes")]),
            ),
            good(
                "/telephony/recording",
                form(&[("retention_days", "30"), ("extension:201", "all")]),
            ),
        ],
        ("POST", "/telephony/recording/announcement") => {
            // Half a second of an 8 kHz mono 16-bit tone; a 16 kHz one is refused.
            let wav = |rate: u32| {
                let n = rate / 2;
                let mut b = b"RIFF".to_vec();
                b.extend_from_slice(&(36 + n * 2).to_le_bytes());
                b.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0");
                b.extend_from_slice(&rate.to_le_bytes());
                b.extend_from_slice(&(rate * 2).to_le_bytes());
                b.extend_from_slice(b"\x02\0\x10\0data");
                b.extend_from_slice(&(n * 2).to_le_bytes());
                b.extend((0..n).flat_map(|i| (((i % 20) as i16 - 10) * 1000).to_le_bytes()));
                b
            };
            vec![
                bad(
                    "/telephony/recording/announcement",
                    Body::Upload("file", wav(16_000), "a.wav"),
                ),
                good(
                    "/telephony/recording/announcement",
                    Body::Upload("file", wav(8000), "a.wav"),
                ),
            ]
        }
        _ => return None,
    };
    Some(Case::Steps(steps))
}
