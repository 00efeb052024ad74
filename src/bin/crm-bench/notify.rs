//! `notify`: the cost `notifications::enqueue` adds inside the change's write transaction
//! (goal < 0.2 ms), and the outbox worker's throughput to a local SMTP server (goal ≥ 200
//! mails/s). Runs the library in-process on a temp data dir with full durability (fsync
//! per commit), as the server does.
//!
//! Throughput is measured against two SMTP servers on loopback, each beside the same
//! number of mails sent straight through lettre (no outbox, no database) to the same
//! server in the same run: Debian's aiosmtpd (a real implementation, but one Python
//! process that tops out near 160 mails/s here) and a minimal SMTP sink in this file,
//! which runs on its own thread and is not the limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm::db::{settings, Db, DbOptions};
use crm::domain::notifications::{self as n, EventKind, Notification, Recipient, TemplateData};

use crate::stats::{median, ms, percentile};

const ENQUEUES: usize = 2000;
const MAILS: usize = 2000;

const SINK: &str = r#"
import sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
print(Count.n, flush=True)
"#;

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn assignment(i: usize, master: i64) -> Notification {
    Notification {
        event: EventKind::OrderAssigned,
        key: format!("order:{i}:assigned"),
        recipients: vec![Recipient::Staff(master)],
        data: TemplateData::from([
            ("order_number".to_string(), format!("A-{i}")),
            ("device".to_string(), "Samsung Galaxy A52".to_string()),
            ("customer_name".to_string(), "Aziz Karimov".to_string()),
        ]),
    }
}

fn mail(i: usize) -> Notification {
    Notification {
        event: EventKind::OrderStatusChanged,
        key: format!("order:{i}:status"),
        recipients: vec![Recipient::Customer {
            customer_id: i as i64,
            email: Some(format!("c{i}@example.uz")),
            language: None,
        }],
        data: TemplateData::from([
            ("order_number".to_string(), format!("A-{i}")),
            ("status".to_string(), "Ready".to_string()),
            ("status_code".to_string(), "ready".to_string()),
        ]),
    }
}

/// Sends MAILS through lettre directly, as many at a time as the worker does.
async fn direct_smtp(port: u16) -> anyhow::Result<Duration> {
    const PARALLEL: usize = crm::notify::SMTP_PARALLEL;
    use futures_util::StreamExt;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(PARALLEL as u32))
        .build();
    let started = Instant::now();
    let results: Vec<bool> = futures_util::stream::iter(0..MAILS)
        .map(|i| {
            let t = t.clone();
            async move {
                let m = Message::builder()
                    .from("shop@example.uz".parse().expect("address"))
                    .to(format!("d{i}@example.uz").parse().expect("address"))
                    .subject(format!("Order A-{i}: Ready"))
                    .body(format!("Your order A-{i} is ready."))
                    .expect("message");
                t.send(m).await.is_ok()
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    anyhow::ensure!(results.iter().all(|ok| *ok), "direct SMTP sends failed");
    Ok(started.elapsed())
}

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async())
}

async fn run_async() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Db::open(&dir.path().join("crm.db"), &DbOptions::default())?;
    let master: i64 = db
        .write(|c| {
            c.execute(
                "INSERT INTO users (username, display_name, role, language, password_hash, created_at, updated_at)
                 VALUES ('usta', 'Usta', 'master', 'uz', 'x', 0, 0)",
                [],
            )?;
            let id = c.last_insert_rowid();
            crm::db::telegram::touch(c, 555, None, 0)?;
            crm::db::telegram::link_user(c, 555, id, 0)?;
            settings::set(c, "shop.name", "Usta Servis", 0)?;
            Ok(id)
        })
        .await?;

    // 1. The change alone vs the change with its notification, sequentially (each write
    //    is its own transaction and fsync); plus the time enqueue takes inside the closure.
    let mut plain = Vec::with_capacity(ENQUEUES);
    let mut with = Vec::with_capacity(ENQUEUES);
    let mut inside = Vec::with_capacity(ENQUEUES);
    for i in 0..ENQUEUES {
        let t = Instant::now();
        db.write(move |c| settings::set(c, "bench.change", &i.to_string(), 0))
            .await?;
        plain.push(t.elapsed());
        let t = Instant::now();
        let took = db
            .write(move |c| {
                settings::set(c, "bench.change", &i.to_string(), 0)?;
                let t = Instant::now();
                let ids = n::enqueue(c, &assignment(i, master))?;
                debug_assert_eq!(ids.len(), 1);
                Ok(t.elapsed())
            })
            .await?;
        with.push(t.elapsed());
        inside.push(took);
    }
    inside.sort();
    println!("enqueue_in_tx_median_us={}", us(median(inside.clone())));
    println!("enqueue_in_tx_p99_us={}", us(percentile(&inside, 99.0)));
    let (mut p, mut w) = (plain.clone(), with.clone());
    p.sort();
    w.sort();
    println!("write_plain_median_ms={}", ms(median(plain)));
    println!("write_with_enqueue_median_ms={}", ms(median(with)));
    println!("write_plain_p99_ms={}", ms(percentile(&p, 99.0)));
    println!("write_with_enqueue_p99_ms={}", ms(percentile(&w, 99.0)));

    // 2. Worker throughput, each server beside lettre straight to it.
    db.write(|c| settings::set(c, "notify.poll_ms", "20", 0))
        .await?;
    let (port, mut sink, mut out) = start_aiosmtpd(dir.path())?;
    let (sent, took) = drain(&db, port, 0).await?;
    let direct = direct_smtp(port).await?;
    drop(sink.stdin.take());
    let mut rest = String::new();
    out.read_to_string(&mut rest)?;
    let _ = sink.wait();
    let received: usize = rest.trim().parse().unwrap_or(0);
    println!("mails_queued={MAILS}");
    println!("aiosmtpd_mails_sent={sent}");
    println!("aiosmtpd_mails_received_by_server={received}");
    println!(
        "aiosmtpd_worker_mails_per_s={:.0}",
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "aiosmtpd_direct_reference_mails_per_s={:.0}",
        MAILS as f64 / direct.as_secs_f64()
    );

    let (port, received) = start_rust_sink()?;
    let (sent, took) = drain(&db, port, MAILS).await?;
    let direct = direct_smtp(port).await?;
    println!("sink_mails_sent={sent}");
    println!(
        "sink_mails_received_by_server={}",
        received.load(Ordering::Relaxed)
    );
    println!(
        "sink_worker_mails_per_s={:.0}",
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "sink_direct_reference_mails_per_s={:.0}",
        MAILS as f64 / direct.as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

fn start_aiosmtpd(
    dir: &std::path::Path,
) -> anyhow::Result<(
    u16,
    std::process::Child,
    BufReader<std::process::ChildStdout>,
)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let script = dir.join("sink.py");
    std::fs::write(&script, SINK)?;
    let mut sink = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut out = BufReader::new(sink.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "ready", "aiosmtpd did not start: {line:?}");
    Ok((port, sink, out))
}

/// Queues MAILS mails (keys from `offset`) while the worker is stopped, points the SMTP
/// settings at `port`, then starts the worker and times until all are marked sent.
async fn drain(db: &Db, port: u16, offset: usize) -> anyhow::Result<(usize, Duration)> {
    let first_id = db
        .write(move |c| {
            let before: i64 =
                c.query_row("SELECT coalesce(max(id), 0) FROM notify_outbox", [], |r| {
                    r.get(0)
                })?;
            for (k, v) in [
                ("smtp.host", "127.0.0.1".to_string()),
                ("smtp.port", port.to_string()),
                ("smtp.security", "plain".into()),
                ("smtp.from", "shop@example.uz".into()),
            ] {
                settings::set(c, k, &v, 0)?;
            }
            for i in offset..offset + MAILS {
                n::enqueue(c, &mail(i))?;
            }
            Ok(before)
        })
        .await?;
    let store = crm::domain::work::Store::new(db.clone(), crm::events::EventBus::default());
    let notifications = n::Notifications::new(store.clone(), Default::default());
    let inbox = crm::domain::conversations::Conversations::new(
        store,
        notifications.clone(),
        &std::env::temp_dir(),
    );
    let started = Instant::now();
    let notifier = crm::notify::start(notifications, inbox).await?;
    let sent = loop {
        let sent: i64 = db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM notify_outbox WHERE channel = 'email' AND state = 'sent' AND id > ?1",
                    [first_id],
                    |r| r.get(0),
                )?)
            })
            .await?;
        if sent as usize >= MAILS || started.elapsed() > Duration::from_secs(120) {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = started.elapsed();
    notifier.stop().await;
    Ok((sent as usize, took))
}

/// A minimal SMTP server on its own thread and runtime: enough of RFC 5321 for lettre
/// (EHLO, MAIL, RCPT, DATA with dot-terminated body, RSET, NOOP, QUIT). Counts the mails
/// it accepted.
fn start_rust_sink() -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = sock.set_nodelay(true);
                    let (r, mut w) = sock.into_split();
                    let mut r = tokio::io::BufReader::new(r);
                    let mut line = Vec::new();
                    w.write_all(b"220 sink ESMTP\r\n").await?;
                    loop {
                        line.clear();
                        if r.read_until(b'\n', &mut line).await? == 0 {
                            break;
                        }
                        let verb = line
                            .get(..4)
                            .map(|v| v.to_ascii_uppercase())
                            .unwrap_or_default();
                        let reply: &[u8] = match verb.as_slice() {
                            b"EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                            b"HELO" | b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => b"250 OK\r\n",
                            b"DATA" => {
                                w.write_all(b"354 end with .\r\n").await?;
                                loop {
                                    line.clear();
                                    if r.read_until(b'\n', &mut line).await? == 0 {
                                        return Ok(());
                                    }
                                    if line == b".\r\n" {
                                        break;
                                    }
                                }
                                counter.fetch_add(1, Ordering::Relaxed);
                                b"250 OK queued\r\n"
                            }
                            b"QUIT" => {
                                w.write_all(b"221 bye\r\n").await?;
                                break;
                            }
                            _ => b"502 not implemented\r\n",
                        };
                        w.write_all(reply).await?;
                    }
                    Ok::<_, std::io::Error>(())
                });
            }
        });
    });
    Ok((port, count))
}
