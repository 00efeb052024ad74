//! `notify`: the cost `notifications::enqueue` adds inside the change's write transaction
//! (goal < 0.2 ms), and the outbox worker's throughput to a local SMTP server (Debian's
//! aiosmtpd on loopback; goal ≥ 200 mails/s). Runs the library in-process on a temp data
//! dir with full durability (fsync per commit), as the server does.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
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

/// Sends MAILS through lettre directly, 8 at a time, as the worker does.
async fn direct_smtp(port: u16) -> anyhow::Result<Duration> {
    use futures_util::StreamExt;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(8))
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
        .buffer_unordered(8)
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

    // 2. Worker throughput to aiosmtpd on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let script = dir.path().join("sink.py");
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
    db.write(move |c| {
        for (k, v) in [
            ("smtp.host", "127.0.0.1".to_string()),
            ("smtp.port", port.to_string()),
            ("smtp.security", "plain".into()),
            ("smtp.from", "shop@example.uz".into()),
            ("notify.poll_ms", "20".into()),
        ] {
            settings::set(c, k, &v, 0)?;
        }
        // Queue while the worker is not running, so the run measures draining only.
        for i in 0..MAILS {
            n::enqueue(c, &mail(i))?;
        }
        Ok(())
    })
    .await?;
    let notifications = n::Notifications::new(db.clone());
    let started = Instant::now();
    let notifier = crm::notify::start(notifications).await?;
    let sent = loop {
        let sent: i64 = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM notify_outbox WHERE channel = 'email' AND state = 'sent'",
                    [],
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
    let direct = direct_smtp(port).await?;
    drop(sink.stdin.take());
    let mut rest = String::new();
    out.read_to_string(&mut rest)?;
    let _ = sink.wait();
    let received: usize = rest.trim().parse().unwrap_or(0);
    println!("mails_queued={MAILS}");
    println!("mails_sent={sent}");
    println!("mails_received_by_server={received}");
    println!("smtp_drain_s={:.2}", took.as_secs_f64());
    println!("smtp_mails_per_s={:.0}", sent as f64 / took.as_secs_f64());
    // Reference: the same number of mails straight through lettre (same pool size, no
    // outbox, no database), i.e. what this SMTP server can take on this machine now.
    println!(
        "smtp_direct_reference_mails_per_s={:.0}",
        MAILS as f64 / direct.as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    Ok(())
}
