//! Real protocol peers for the notification tests: an SMTP server (Debian's aiosmtpd, run
//! as a child process, with optional STARTTLS / implicit TLS / AUTH) and a stand-in of
//! the Telegram Bot API's HTTP interface (getMe, getUpdates, sendMessage) that the test
//! scripts: queued updates, 429 with retry_after, 403 "bot was blocked".

#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// Retry and poll timings small enough for tests (production: seconds to an hour), and
/// the shop's name the messages carry.
pub const FAST: &[(&str, &str)] = &[
    ("notify.poll_ms", "50"),
    ("notify.retry_base_ms", "100"),
    ("notify.retry_max_ms", "300"),
    ("telegram.poll_timeout_secs", "1"),
    ("telegram.per_chat_gap_ms", "0"),
    ("shop.name", "Usta Servis"),
];

/// A free loopback port (bound then released), for a peer started later.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SMTP_SINK: &str = r#"
import argparse, json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--dir", required=True)
p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
p.add_argument("--cert"); p.add_argument("--key"); p.add_argument("--auth")
a = p.parse_args()

class Sink:
    def __init__(self): self.n = 0
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        rec = {"from": envelope.mail_from, "to": envelope.rcpt_tos,
               "data": envelope.content.decode("utf-8", "replace"),
               "tls": bool(getattr(session, "ssl", None)) or a.mode == "tls",
               "auth": getattr(session, "authenticated", False)}
        tmp = os.path.join(a.dir, ".%d.tmp" % self.n)
        with open(tmp, "w") as f: json.dump(rec, f)
        os.rename(tmp, os.path.join(a.dir, "%06d.json" % self.n))
        return "250 OK"

def check(server, session, envelope, mechanism, auth_data):
    user, pw = a.auth.split(":", 1)
    ok = auth_data.login.decode() == user and auth_data.password.decode() == pw
    return AuthResult(success=ok)

kw = {}
ctx = None
if a.mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
if a.mode == "starttls":
    kw.update(tls_context=ctx, require_starttls=True)
if a.auth:
    kw.update(authenticator=check, auth_require_tls=a.mode != "plain", auth_required=True)
c = Controller(Sink(), hostname="127.0.0.1", port=a.port,
               ssl_context=ctx if a.mode == "tls" else None,
               server_hostname="localhost", **kw)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

/// A CA and a server certificate for `localhost`/127.0.0.1 signed by it.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=crm test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let ca_pem = std::fs::read_to_string(d.join("ca.pem")).unwrap();
        TestCerts { dir, ca_pem }
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// One received mail.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
    pub tls: bool,
    pub auth: bool,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<String> {
        self.data.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// aiosmtpd on a loopback port; killed (by its own pid) on drop.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

pub struct SmtpOptions<'a> {
    pub mode: &'a str,
    pub certs: Option<&'a TestCerts>,
    pub auth: Option<&'a str>,
}

impl SmtpSink {
    pub fn start(port: u16, o: SmtpOptions<'_>) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("sink.py");
        std::fs::write(&script, SMTP_SINK).unwrap();
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).unwrap();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&out)
            .args(["--mode", o.mode]);
        if let Some(c) = o.certs {
            cmd.arg("--cert").arg(c.cert()).arg("--key").arg(c.key());
        }
        if let Some(a) = o.auth {
            cmd.args(["--auth", a]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its log (e.g. the expected TLS failure when the CA is not trusted) goes to a
            // file beside the mails instead of cluttering the test output.
            .stderr(std::fs::File::create(dir.path().join("sink.log")).unwrap())
            .spawn()
            .expect("python3 with aiosmtpd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        SmtpSink { child, port, dir }
    }

    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                Mail {
                    to: v["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect(),
                    data: v["data"].as_str().unwrap().to_string(),
                    tls: v["tls"].as_bool().unwrap(),
                    auth: v["auth"].as_bool().unwrap_or(false),
                }
            })
            .collect()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Telegram Bot API stand-in

/// One send call (sendMessage, sendPhoto, sendDocument) as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: i64,
    /// The text, or a file's caption.
    pub text: String,
    pub at: Instant,
    /// The HTTP status the stand-in answered.
    pub status: u16,
    /// `sendmessage`, `sendphoto` or `senddocument`.
    pub method: String,
    /// The reply keyboard or inline markup, if any.
    pub markup: Value,
    /// The uploaded file: (file name, bytes).
    pub file: Option<(String, Vec<u8>)>,
}

/// Splits a multipart/form-data body into (name, file name, content) parts.
fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(boundary) = content_type.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let boundary = boundary.trim_matches('"');
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = find(rest, delim.as_bytes()) {
        rest = &rest[start + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content_start = head_end + 4;
        let Some(end) = find(&rest[content_start..], delim.as_bytes()) else {
            break;
        };
        let content = rest[content_start..content_start + end - 2].to_vec();
        let attr = |k: &str| {
            head.split(';')
                .map(str::trim)
                .find_map(|p| p.strip_prefix(&format!("{k}=\"")))
                .map(|v| {
                    v.trim_end_matches(['"', '\r', '\n'])
                        .split('"')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
        };
        out.push((attr("name").unwrap_or_default(), attr("filename"), content));
        rest = &rest[content_start + end..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Default)]
struct BotState {
    updates: Vec<Value>,
    next_update_id: i64,
    calls: Vec<Sent>,
    /// retry_after values for the next sendMessage calls (one 429 each).
    throttle: VecDeque<u32>,
    blocked: HashSet<i64>,
    get_updates_calls: u64,
    /// Files customers "sent", by file id: (bytes).
    files: std::collections::HashMap<String, Vec<u8>>,
    /// sendChatAction calls: (chat, action).
    actions: Vec<(i64, String)>,
}

#[derive(Clone)]
pub struct BotStandIn {
    state: Arc<Mutex<BotState>>,
    new_update: Arc<tokio::sync::Notify>,
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

pub const BOT_USERNAME: &str = "shop_test_bot";

fn ok(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}

async fn bot_file(path: web::Path<(String, String)>, data: web::Data<BotStandIn>) -> HttpResponse {
    let (_bot, file) = path.into_inner();
    let id = file.trim_start_matches("files/");
    match data.state.lock().unwrap().files.get(id) {
        Some(b) => HttpResponse::Ok().body(b.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn bot_api(
    path: web::Path<(String, String)>,
    http: actix_web::HttpRequest,
    body: web::Bytes,
    data: web::Data<BotStandIn>,
) -> HttpResponse {
    let (bot, method) = path.into_inner();
    if !bot.starts_with("bot") {
        return HttpResponse::NotFound().finish();
    }
    let ctype = http
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut upload: Option<(String, Vec<u8>)> = None;
    let req: Value = if ctype.starts_with("multipart/form-data") {
        let mut m = serde_json::Map::new();
        for (name, file_name, content) in multipart_parts(&ctype, &body) {
            match file_name {
                Some(f) => upload = Some((f, content)),
                None => {
                    let v = String::from_utf8_lossy(&content).to_string();
                    let v = v
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::String(v));
                    m.insert(name, v);
                }
            }
        }
        Value::Object(m)
    } else {
        serde_json::from_slice(&body).unwrap_or(json!({}))
    };
    // Telegram's method names are case-insensitive (teloxide sends "GetMe").
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(
            json!({"id": 4242, "is_bot": true, "first_name": "Shop", "username": BOT_USERNAME,
            "can_join_groups": false, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false}),
        ),
        "getupdates" => {
            let offset = req["offset"].as_i64().unwrap_or(0);
            let timeout = req["timeout"].as_u64().unwrap_or(0).min(5);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = data.new_update.notified();
                {
                    let mut s = data.state.lock().unwrap();
                    s.get_updates_calls += 1;
                    // Like Telegram: an offset confirms every update before it.
                    s.updates
                        .retain(|u| u["update_id"].as_i64().unwrap() >= offset);
                    if !s.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                        return ok(Value::Array(s.updates.clone()));
                    }
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        "sendchataction" => {
            let chat_id = req["chat_id"].as_i64().unwrap_or(0);
            let action = req["action"].as_str().unwrap_or("").to_string();
            data.state.lock().unwrap().actions.push((chat_id, action));
            ok(json!(true))
        }
        "getfile" => {
            let id = req["file_id"].as_str().unwrap_or("").to_string();
            let s = data.state.lock().unwrap();
            match s.files.get(&id) {
                Some(b) => ok(json!({"file_id": id, "file_unique_id": format!("u{id}"),
                    "file_size": b.len(), "file_path": format!("files/{id}")})),
                None => HttpResponse::BadRequest().json(json!({"ok": false, "error_code": 400,
                    "description": "Bad Request: invalid file_id"})),
            }
        }
        "sendmessage" | "sendphoto" | "senddocument" => {
            let chat_id = req["chat_id"].as_i64().unwrap_or(0);
            let text = req["text"]
                .as_str()
                .or(req["caption"].as_str())
                .unwrap_or("")
                .to_string();
            let markup = match &req["reply_markup"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                v => v.clone(),
            };
            let mut s = data.state.lock().unwrap();
            let (status, resp) = if s.blocked.contains(&chat_id) {
                (
                    403,
                    HttpResponse::Forbidden().json(json!({"ok": false, "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user"})),
                )
            } else if let Some(after) = s.throttle.pop_front() {
                (
                    429,
                    HttpResponse::TooManyRequests().json(json!({"ok": false, "error_code": 429,
                    "description": format!("Too Many Requests: retry after {after}"),
                    "parameters": {"retry_after": after}})),
                )
            } else {
                let id = s.calls.len() as i64 + 1;
                let mut msg = json!({"message_id": id, "date": 1_700_000_000,
                    "chat": {"id": chat_id, "type": "private", "first_name": "User"}});
                match method.to_ascii_lowercase().as_str() {
                    "sendphoto" => {
                        msg["photo"] = json!([{"file_id": format!("p{id}"), "file_unique_id": format!("up{id}"),
                            "width": 10, "height": 10, "file_size": 10}]);
                        msg["caption"] = json!(text.clone());
                    }
                    "senddocument" => {
                        msg["document"] = json!({"file_id": format!("d{id}"), "file_unique_id": format!("ud{id}"),
                            "file_size": 10});
                        msg["caption"] = json!(text.clone());
                    }
                    _ => msg["text"] = json!(text.clone()),
                }
                (200, ok(msg))
            };
            s.calls.push(Sent {
                chat_id,
                text,
                at: Instant::now(),
                status,
                method: method.to_ascii_lowercase(),
                markup,
                file: upload,
            });
            resp
        }
        _ => HttpResponse::BadRequest().json(json!({"ok": false, "error_code": 400,
            "description": "Bad Request: method not found"})),
    }
}

impl BotStandIn {
    pub async fn start() -> BotStandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(BotState {
            next_update_id: 1000,
            ..Default::default()
        }));
        let new_update = Arc::new(tokio::sync::Notify::new());
        // The handle is only known after the server is built; build the shared data in
        // two steps.
        let cell: Arc<Mutex<Option<BotStandIn>>> = Arc::new(Mutex::new(None));
        let c2 = cell.clone();
        let server = HttpServer::new(move || {
            let me = c2.lock().unwrap().clone().expect("stand-in ready");
            App::new()
                .app_data(web::Data::new(me))
                .route("/file/{bot}/{path:.*}", web::get().to(bot_file))
                .route("/{bot}/{method}", web::post().to(bot_api))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let me = BotStandIn {
            state,
            new_update,
            url: format!("http://{addr}"),
            handle: server.handle(),
        };
        *cell.lock().unwrap() = Some(me.clone());
        tokio::spawn(server);
        me
    }

    /// Queues a text message from a private chat, as getUpdates will return it.
    pub fn user_says(&self, chat_id: i64, language: &str, text: &str) {
        let mut s = self.state.lock().unwrap();
        s.next_update_id += 1;
        let id = s.next_update_id;
        s.updates.push(json!({"update_id": id, "message": {
            "message_id": id, "date": 1_700_000_000, "text": text,
            "chat": {"id": chat_id, "type": "private", "first_name": "User"},
            "from": {"id": chat_id, "is_bot": false, "first_name": "User", "language_code": language}
        }}));
        drop(s);
        self.new_update.notify_waiters();
    }

    /// Queues a message with any content (photo, document, contact, location, a reply):
    /// `fields` are merged into the message object.
    pub fn user_sends(&self, chat_id: i64, language: &str, fields: Value) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.next_update_id += 1;
        let id = s.next_update_id;
        let mut message = json!({
            "message_id": id, "date": 1_700_000_000,
            "chat": {"id": chat_id, "type": "private", "first_name": "User"},
            "from": {"id": chat_id, "is_bot": false, "first_name": "Dilnoza", "last_name": "Karimova", "language_code": language}
        });
        if let (Some(m), Value::Object(f)) = (message.as_object_mut(), fields) {
            m.extend(f);
        }
        s.updates.push(json!({"update_id": id, "message": message}));
        drop(s);
        self.new_update.notify_waiters();
        id
    }

    /// Queues a raw update (of a kind the bot may not know).
    pub fn raw_update(&self, update: Value) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.next_update_id += 1;
        let id = s.next_update_id;
        let mut u = update;
        u["update_id"] = json!(id);
        s.updates.push(u);
        drop(s);
        self.new_update.notify_waiters();
        id
    }

    /// A file a customer "uploaded", served by getFile and the download URL.
    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(file_id.into(), bytes);
    }

    /// sendChatAction calls: (chat, action).
    pub fn actions(&self) -> Vec<(i64, String)> {
        self.state.lock().unwrap().actions.clone()
    }

    /// Repeats updates already confirmed (as Telegram does after a lost offset).
    pub fn redeliver(&self, updates: Vec<Value>) {
        self.state.lock().unwrap().updates.extend(updates);
        self.new_update.notify_waiters();
    }

    pub fn throttle_next(&self, retry_after: u32) {
        self.state.lock().unwrap().throttle.push_back(retry_after);
    }

    pub fn block(&self, chat_id: i64) {
        self.state.lock().unwrap().blocked.insert(chat_id);
    }

    /// Every sendMessage call so far (answered or refused).
    pub fn calls(&self) -> Vec<Sent> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Messages delivered (answered 200) to a chat.
    pub fn delivered_to(&self, chat_id: i64) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.chat_id == chat_id && c.status == 200)
            .map(|c| c.text)
            .collect()
    }

    pub fn pending_updates(&self) -> usize {
        self.state.lock().unwrap().updates.len()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}
