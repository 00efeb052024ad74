//! `chat`: the conversations inbox (issue 17).
//!
//! (a) `inbound`: a Telegram message reaching the inbox's WebSocket. The release `crm`
//! serves with its bot pointed at a Bot API stand-in in this file (getUpdates long
//! polling, like Telegram); updates are queued at `--rate` per second (default 100) for
//! `--seconds` (default 20) over 50 chats; a signed-in WebSocket client on /ws times each
//! from the moment it was queued to its `conversation.message` frame (goal: p99 < 50 ms).
//!
//! (b) `list`: the inbox list over 100 000 conversations and 2 000 000 messages
//! (`--conversations`, `--messages`), seeded in bulk with SQL beside `crm seed`'s
//! customers and orders; times `Conversations::list` for the tabs and a search (goal:
//! p99 < 20 ms), with the order list's first page on the same database as the same-run
//! reference.
//!
//! `crm-bench chat [inbound|list] [--rate R] [--seconds S] [--conversations N]
//! [--messages M] [--data-dir DIR]`

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::server::{add_user, crm, crm_binary, crm_with, free_addr, serve, wait_healthy};
use crate::stats::{ms, percentile};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if which == "inbound" || which == "all" {
        rt.block_on(inbound(args))?;
    }
    if which == "list" || which == "all" {
        rt.block_on(list(args))?;
    }
    Ok(())
}

// ---- (a) Telegram update → WebSocket frame ----

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const CHATS: i64 = 50;

#[derive(Default)]
struct StandIn {
    updates: Vec<serde_json::Value>,
    next_id: i64,
    /// Update text → when it was queued.
    queued: HashMap<String, Instant>,
}

struct Bot {
    state: Mutex<StandIn>,
    new_update: tokio::sync::Notify,
}

impl Bot {
    fn queue(&self, chat: i64, text: &str) {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        s.updates
            .push(serde_json::json!({"update_id": id, "message": {
                "message_id": id, "date": 1_764_662_400, "text": text,
                "chat": {"id": chat, "type": "private", "first_name": "Mijoz"},
                "from": {"id": chat, "is_bot": false, "first_name": "Mijoz", "language_code": "uz"}
            }}));
        s.queued.insert(text.to_string(), Instant::now());
        drop(s);
        self.new_update.notify_waiters();
    }

    /// One Bot API call: getUpdates waits (up to its timeout) for queued updates.
    async fn answer(&self, method: &str, req: serde_json::Value) -> serde_json::Value {
        let ok = |r: serde_json::Value| serde_json::json!({"ok": true, "result": r});
        match method.to_ascii_lowercase().as_str() {
            "getme" => ok(
                serde_json::json!({"id": 4242, "is_bot": true, "first_name": "Shop",
                "username": "bench_bot", "can_join_groups": false,
                "can_read_all_group_messages": false, "supports_inline_queries": false,
                "can_connect_to_business": false, "has_main_web_app": false}),
            ),
            "getupdates" => {
                let offset = req["offset"].as_i64().unwrap_or(0);
                let timeout = req["timeout"].as_u64().unwrap_or(0).min(5);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
                loop {
                    let notified = self.new_update.notified();
                    {
                        let mut s = self.state.lock().unwrap();
                        s.updates
                            .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                        if !s.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                            return ok(serde_json::Value::Array(s.updates.clone()));
                        }
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
            "sendmessage" | "senddocument" | "sendphoto" => {
                let chat = req["chat_id"].as_i64().unwrap_or(0);
                ok(serde_json::json!({"message_id": 1, "date": 1_764_662_400,
                    "chat": {"id": chat, "type": "private", "first_name": "Mijoz"}, "text": "ok"}))
            }
            _ => ok(serde_json::Value::Bool(true)),
        }
    }
}

/// A minimal HTTP/1.1 server (keep-alive, Content-Length bodies): enough for teloxide's
/// client, without a web framework in the load generator.
async fn serve_bot(listener: tokio::net::TcpListener, bot: Arc<Bot>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let bot = bot.clone();
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let method = path.rsplit('/').next().unwrap_or("");
                let resp = bot.answer(method, req).await.to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    resp.len()
                );
                if w.write_all(head.as_bytes()).await.is_err()
                    || w.write_all(resp.as_bytes()).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

async fn inbound(args: &[String]) -> anyhow::Result<()> {
    let rate = arg(args, "--rate", 100);
    let seconds = arg(args, "--seconds", 20);
    let bot = Arc::new(Bot {
        state: Mutex::new(StandIn {
            next_id: 1000,
            ..Default::default()
        }),
        new_update: tokio::sync::Notify::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bot_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(serve_bot(listener, bot.clone()));

    // The server's data dir: an admin with a token, the bot's settings in the database.
    let bin = crm_binary()?;
    let dir = tempfile::tempdir()?;
    crm_with(&bin, dir.path(), "")?;
    add_user(&bin, dir.path(), "bench", "admin", "bench-password-1")?;
    let out = crm(&bin, dir.path())?
        .args(["token", "create", "bench"])
        .output()?;
    anyhow::ensure!(out.status.success(), "token create failed");
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    {
        let db = crm::db::Db::open(&dir.path().join("crm.db"), &crm::db::DbOptions::default())?;
        let url = bot_url.clone();
        db.write(move |c| {
            for (k, v) in [
                ("telegram.token", TOKEN),
                ("telegram.api_url", url.as_str()),
                ("telegram.bot_username", "bench_bot"),
            ] {
                crm::db::settings::set(c, k, v, 0)?;
            }
            Ok(())
        })
        .await?;
    }
    let addr = free_addr()?;
    let child = serve(&bin, dir.path(), addr)?;
    let _server = Guard(Some(child));
    wait_healthy(addr, Duration::from_secs(20))?;

    // The inbox's socket, as an admin's browser holds it.
    let mut req = format!("ws://{addr}/ws").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The same-run reference: an admin notice posted through the API at the same rate,
    // timed from the request to its frame on the same socket (the write → live-event
    // path without Telegram).
    let refs: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let ref_lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let reader = {
        let (lat, seen, bot) = (lat.clone(), seen.clone(), bot.clone());
        let (refs, ref_lat) = (refs.clone(), ref_lat.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let at = Instant::now();
                if let Some(i) = t.find("refnotice-") {
                    let key: String = t[i..].chars().take_while(|c| *c != '"').collect();
                    let sent = refs.lock().unwrap().remove(&key);
                    if let Some(q) = sent {
                        ref_lat.lock().unwrap().push(at - q);
                    }
                    continue;
                }
                if !t.contains("\"conversation.message\"") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                    continue;
                };
                let body = v["data"]["message"]["body"].as_str().unwrap_or("");
                let queued = bot.state.lock().unwrap().queued.remove(body);
                if let Some(q) = queued {
                    if body.starts_with("load ") {
                        lat.lock().unwrap().push(at - q);
                    }
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };

    // Warm-up: each chat's first message opens its thread (and the bot asks for the
    // phone number once); not measured.
    for chat in 0..CHATS {
        bot.queue(700_000 + chat, &format!("warm {chat}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(std::sync::atomic::Ordering::Relaxed) < CHATS as usize {
        anyhow::ensure!(
            Instant::now() < deadline,
            "warm-up messages did not reach the socket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let total = rate * seconds;
    let t0 = Instant::now();
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        bot.queue(
            700_000 + (i as i64 % CHATS),
            &format!("load {i} Salom, telefonim tayyormi?"),
        );
    }
    let wall = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lat.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Reference: notices through the API at the same rate.
    let t0 = Instant::now();
    let (refs2, token2) = (refs.clone(), token.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for i in 0..total {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let key = format!("refnotice-{i}");
            refs2.lock().unwrap().insert(key.clone(), Instant::now());
            let r = crate::httpc::request(
                addr,
                "POST",
                "/api/v1/notices",
                &[
                    ("Authorization", &format!("Bearer {token2}")),
                    ("Content-Type", "application/json"),
                ],
                &format!("{{\"text\":\"{key}\"}}"),
            )?;
            anyhow::ensure!(r.status == 201, "notice answered {}", r.status);
        }
        Ok(())
    })
    .await??;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ref_lat.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    let mut r = ref_lat.lock().unwrap().clone();
    r.sort();
    println!("chat_ref_notice_messages={}", r.len());
    println!(
        "chat_ref_notice_latency_ms_p50={}",
        ms(percentile(&r, 50.0))
    );
    println!(
        "chat_ref_notice_latency_ms_p99={}",
        ms(percentile(&r, 99.0))
    );
    let mut v = lat.lock().unwrap().clone();
    v.sort();
    println!("chat_inbound_messages={} (sent {total})", v.len());
    println!(
        "chat_inbound_rate_per_s={:.1}",
        total as f64 / wall.as_secs_f64()
    );
    println!("chat_inbound_latency_ms_p50={}", ms(percentile(&v, 50.0)));
    println!("chat_inbound_latency_ms_p99={}", ms(percentile(&v, 99.0)));
    println!(
        "chat_inbound_latency_ms_max={}",
        ms(*v.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}

struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            crate::server::stop(c);
        }
    }
}

// ---- (b) the inbox list on a large database ----

async fn timed<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let mut v = Vec::with_capacity(n);
    let mut rows = 0;
    for i in 0..n {
        let t = Instant::now();
        rows += f(i).await?;
        v.push(t.elapsed());
    }
    anyhow::ensure!(rows > 0, "the query returned nothing");
    v.sort();
    Ok(v)
}

fn report(name: &str, v: &[Duration]) {
    println!("{name}_p50_ms={}", ms(percentile(v, 50.0)));
    println!("{name}_p99_ms={}", ms(percentile(v, 99.0)));
}

async fn list(args: &[String]) -> anyhow::Result<()> {
    use crm::domain::conversations::{InboxQuery, Tab};
    let convs = arg(args, "--conversations", 100_000) as i64;
    let msgs = arg(args, "--messages", 2_000_000) as i64;
    // `--data-dir DIR` keeps the seeded database (for EXPLAIN in sqlite3, or a rerun,
    // which then skips seeding).
    let tmp = tempfile::tempdir()?;
    let dir = args
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let config = crm::config::Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    let ctx = crm::app::AppContext::open(config)?;
    let have: i64 = ctx
        .db
        .read(|c| Ok(c.query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))?))
        .await?;
    let t = Instant::now();
    if have == 0 {
        crm::domain::seed::seed(&ctx.db, 50_000, 100_000, 17).await?;
    }
    let seeded_core = t.elapsed();
    let t = Instant::now();
    let (admin, agent) = ctx
        .db
        .write(move |c| {
            if have > 0 {
                let admin: i64 = c.query_row(
                    "SELECT id FROM users WHERE username = 'agent0'",
                    [],
                    |r| r.get(0),
                )?;
                return Ok((admin, admin + 1));
            }
            // One transaction: the writer opened it.
            let mut sql = String::new();
            for (i, role) in ["admin", "operator", "operator", "operator", "operator", "operator"]
                .iter()
                .enumerate()
            {
                sql += &format!(
                    "INSERT INTO users (username, display_name, role, language, password_hash, created_at, updated_at)
                     VALUES ('agent{i}', 'Agent {i}', '{role}', 'uz', 'x', 0, 0);"
                );
            }
            let first_user: i64 = c.query_row(
                "SELECT coalesce(max(id), 0) + 1 FROM users",
                [],
                |r| r.get(0),
            )?;
            let (lo, hi): (i64, i64) =
                c.query_row("SELECT min(id), max(id) FROM customers", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let agents = first_user + 1;
            // Threads: three in four open; a third of those unassigned, the rest spread
            // over five agents; most linked to a customer; newest last.
            sql += &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {convs})
                 INSERT INTO conversations (id, channel, address, customer_id, title, state, assignee_id,
                     unread, waiting_since, last_message_at, last_preview, opened_at, created_at, closed_at)
                 SELECT i, 'telegram', CAST(900000000 + i AS TEXT),
                        CASE WHEN i % 10 < 8 THEN {lo} + (i * 7919) % ({hi} - {lo} + 1) END,
                        'Mijoz ' || i,
                        CASE WHEN i % 4 = 0 THEN 'closed' ELSE 'open' END,
                        CASE WHEN i % 3 = 0 THEN NULL ELSE {agents} + i % 5 END,
                        CASE WHEN i % 7 = 0 THEN 1 + i % 3 ELSE 0 END,
                        CASE WHEN i % 7 = 0 THEN 1700000000 + i * 300 END,
                        1700000000 + i * 300, 'Salom, telefonim tayyormi? ' || i,
                        1700000000 + i * 300 - 3600, 1700000000 + i * 300 - 3600,
                        CASE WHEN i % 4 = 0 THEN 1700000000 + i * 300 END
                 FROM n;"
            );
            // Messages: spread evenly, customer and agent in turn, words the search finds.
            sql += &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {msgs})
                 INSERT INTO conversation_messages (conversation_id, direction, kind, author_id, body, created_at)
                 SELECT 1 + i % {convs}, CASE WHEN i % 2 = 0 THEN 'in' ELSE 'out' END, 'text',
                        CASE WHEN i % 2 = 1 THEN {agents} + i % 5 END,
                        CASE i % 6
                          WHEN 0 THEN 'Salom, telefonim tayyormi? ' || i
                          WHEN 1 THEN 'Ha, ertaga soat 10 da tayyor bo‘ladi ' || i
                          WHEN 2 THEN 'Экран разбит, сколько стоит замена? ' || i
                          WHEN 3 THEN 'Narxi 450 000 so‘m, ekran o‘zgartiriladi ' || i
                          WHEN 4 THEN 'Батарея быстро садится ' || i
                          ELSE 'Rahmat, kelaman ' || i END,
                        1700000000 + (i / {convs}) * 60
                 FROM n;"
            );
            c.execute_batch(&sql)?;
            Ok((first_user, agents))
        })
        .await?;
    let seeded_chat = t.elapsed();
    println!("chat_list_conversations={convs}");
    println!("chat_list_messages={msgs}");
    println!("chat_list_seed_core_s={:.1}", seeded_core.as_secs_f64());
    println!("chat_list_seed_chat_s={:.1}", seeded_chat.as_secs_f64());
    ctx.db
        .write(|c| {
            c.execute_batch("ANALYZE")?;
            Ok(())
        })
        .await?;

    let actor = |id: i64, role: crm::model::Role| crm::domain::Actor {
        display_name: format!("Agent {id}"),
        ..crm::domain::Actor::builtin(
            id,
            &format!("agent{id}"),
            role,
            crm::model::Language::UzLatn,
        )
    };
    let admin = actor(admin, crm::model::Role::Admin);
    let agent = actor(agent, crm::model::Role::Operator);
    const N: usize = 300;
    let conv = &ctx.conversations;
    let q = |tab: Tab, search: Option<&str>| InboxQuery {
        tab,
        search: search.map(str::to_string),
        limit: 50,
        ..Default::default()
    };
    // Reference: the order list's first page (the orders page's query), same database.
    let (orders_svc, admin_ref, agent_ref) = (&ctx.orders, &admin, &agent);
    let orders = timed(N, move |_| async move {
        let f = crm::db::orders::OrderFilter {
            limit: 50,
            ..Default::default()
        };
        Ok(orders_svc.list(admin_ref, f).await?.0.len())
    })
    .await?;
    report("chat_ref_orders_list", &orders);
    for (name, who, tab) in [
        ("chat_list_unassigned", admin_ref, Tab::Unassigned),
        ("chat_list_mine", agent_ref, Tab::Mine),
        ("chat_list_all", admin_ref, Tab::All),
        ("chat_list_closed", admin_ref, Tab::Closed),
    ] {
        let v = timed(N, move |_| async move {
            Ok(conv.list(who, q(tab, None)).await?.len())
        })
        .await?;
        report(name, &v);
    }
    // The second page (keyset) of "all".
    let first = conv.list(&admin, q(Tab::All, None)).await?;
    let last = first.last().map(|c| (c.last_message_at, c.id));
    let v = timed(N, move |_| async move {
        let mut qq = q(Tab::All, None);
        qq.before = last;
        Ok(conv.list(admin_ref, qq).await?.len())
    })
    .await?;
    report("chat_list_all_page2", &v);
    // Searches: a customer's name, a rare word in one message, a common word in a sixth
    // of all messages, a phone number's last digits.
    let name: String = ctx
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT cu.name FROM conversations v JOIN customers cu ON cu.id = v.customer_id
                 WHERE v.state = 'open' LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    let phone: String = ctx
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT p.e164 FROM conversations v JOIN customer_phones p ON p.customer_id = v.customer_id
                 WHERE v.state = 'open' LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    let digits: String = phone
        .chars()
        .rev()
        .take(7)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let rare = format!("{}", msgs - 3);
    for (label, term) in [
        ("name", name.as_str()),
        ("rare_word", rare.as_str()),
        ("common_word", "tayyormi"),
        ("common_word_ru", "Батарея"),
        ("phone", digits.as_str()),
    ] {
        let n = if label.starts_with("common") { 30 } else { 100 };
        let got = conv.list(&admin, q(Tab::All, Some(term))).await?.len();
        let v = timed(n, move |_| async move {
            Ok(conv
                .list(admin_ref, q(Tab::All, Some(term)))
                .await?
                .len()
                .max(1))
        })
        .await?;
        println!("chat_search_{label}_rows={got}");
        report(&format!("chat_search_{label}"), &v);
    }
    std::io::stdout().flush()?;
    Ok(())
}
