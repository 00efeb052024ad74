//! `ws`: live-update fan-out. N connected sockets (default 1000), events committed at R
//! per second (default 100) through the API; reports commit-to-delivery latency, memory
//! per idle connection and server CPU.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::httpc::request;
use crate::server::{cpu_ticks, rss_kib, BenchServer};
use crate::stats::{ms, percentile};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let clients = arg(args, "--clients", 1000) as usize;
    let rate = arg(args, "--rate", 100);
    let seconds = arg(args, "--seconds", 20);
    let srv = BenchServer::start_with_admin()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_before = rss_kib(srv.pid())?;
        let lat: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for _ in 0..clients {
            let mut req = format!("ws://{}/ws", srv.addr).into_client_request()?;
            req.headers_mut()
                .insert("authorization", format!("Bearer {}", srv.token).parse()?);
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
            let lat = lat.clone();
            let closed = closed.clone();
            let ready = ready_tx.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(t) = m else { continue };
                    // Cheap parsing keeps the load generator's own CPU use low.
                    if t.contains("\"type\":\"hello\"") {
                        let _ = ready.send(());
                    } else if let Some(i) = t.find("\"committed_at_us\":") {
                        let rest = &t[i + 18..];
                        let end = rest
                            .find(|c: char| !c.is_ascii_digit())
                            .unwrap_or(rest.len());
                        if let Ok(c) = rest[..end].parse::<i64>() {
                            samples.push(Duration::from_micros((now_us() - c).max(0) as u64));
                        }
                        if t.contains("\"text\":\"stop\"") {
                            break;
                        }
                    }
                }
                closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                lat.lock().unwrap().extend(samples);
            });
        }
        for _ in 0..clients {
            ready_rx.recv().await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_idle = rss_kib(srv.pid())?;
        println!("ws_clients={clients}");
        println!(
            "ws_idle_kib_per_connection={:.1}",
            (rss_idle.saturating_sub(rss_before)) as f64 / clients as f64
        );

        // Load: `rate` notices per second through the API, each committed, then fanned out.
        let ticks0 = cpu_ticks(srv.pid())?;
        let t0 = Instant::now();
        let total = rate * seconds;
        let addr = srv.addr;
        let token = srv.token.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for i in 0..total {
                let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let body = format!("{{\"text\":\"load {i}\"}}");
                let r = request(
                    addr,
                    "POST",
                    "/api/v1/notices",
                    &[
                        ("Authorization", &format!("Bearer {token}")),
                        ("Content-Type", "application/json"),
                    ],
                    &body,
                )?;
                anyhow::ensure!(r.status == 201, "notice answered {}", r.status);
            }
            Ok(())
        })
        .await??;
        let wall = t0.elapsed();
        let ticks1 = cpu_ticks(srv.pid())?;
        let hz = 100.0; // USER_HZ on Linux
        println!("ws_events={total}");
        println!(
            "ws_event_rate_per_s={:.1}",
            total as f64 / wall.as_secs_f64()
        );
        println!(
            "ws_server_cpu_pct_of_one_core={:.1}",
            (ticks1 - ticks0) as f64 / hz / wall.as_secs_f64() * 100.0
        );
        // End marker, then collect.
        request(
            addr,
            "POST",
            "/api/v1/notices",
            &[
                ("Authorization", &format!("Bearer {}", srv.token)),
                ("Content-Type", "application/json"),
            ],
            "{\"text\":\"stop\"}",
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while closed.load(std::sync::atomic::Ordering::Relaxed) < clients
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut v = lat.lock().unwrap().clone();
        v.sort();
        let expected = (total + 1) as usize * clients;
        println!("ws_deliveries={} (expected {expected})", v.len());
        println!("ws_fanout_latency_ms_p50={}", ms(percentile(&v, 50.0)));
        println!("ws_fanout_latency_ms_p99={}", ms(percentile(&v, 99.0)));
        println!(
            "ws_fanout_latency_ms_max={}",
            ms(*v.last().unwrap_or(&Duration::ZERO))
        );
        anyhow::Ok(())
    })?;
    Ok(())
}
