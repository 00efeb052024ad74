//! `crm-bench calls`: the screen-pop latency. With N customers (default 1 000 000, seeded
//! in bulk through the db layer) and calls at R per second (default 20) from their
//! numbers (one in ten unknown), the time from sending the authenticated INVITE to the
//! release server until `call.ringing` for that call reaches an operator's WebSocket.
//!
//! References measured in the same run, interleaved with the calls: a raw UDP round trip
//! to the SIP server (OPTIONS → 200, the noise floor), and a committed hub event (an API
//! notice, written with fsync, until it reaches the same WebSocket).
//!
//! `crm-bench calls [--customers N] [--rate R] [--seconds S] [--data-dir DIR]`
//! (--data-dir reuses a directory seeded by an earlier run: it keeps `calls-seeded`).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::httpc::request;
use crate::server::{crm, crm_binary, free_addr, stop, wait_healthy};
use crate::sip::{invite_auth, param, Client};
use crate::stats::{ms, percentile};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn phone(i: u64) -> String {
    format!("+99890{i:07}")
}

/// Users, extensions and a token through the domain layer; customers in bulk batches.
/// Returns the operator's and the admin's API tokens.
fn prepare(dir: &Path, customers: u64) -> anyhow::Result<(String, String)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cfg = crm::config::Config {
            data_dir: dir.to_path_buf(),
            ..crm::config::Config::default()
        };
        let ctx = crm::app::AppContext::open(cfg)?;
        let marker = dir.join("calls-seeded");
        if !marker.exists() {
            let t = Instant::now();
            let mut rng = rand::rngs::StdRng::seed_from_u64(6);
            let base = crm::db::now() - 3 * 365 * 86_400;
            let rows: Vec<crm::db::seed::SeedCustomer> = (0..customers)
                .map(|k| crm::db::seed::SeedCustomer {
                    name: format!("Mijoz {k}"),
                    phone: phone(k),
                    created_at: base + rng.gen_range(0..3 * 365 * 86_400),
                    tags: "",
                    language: "uz",
                    kind: "person",
                    marketing_opt_in: false,
                })
                .collect();
            // One bulk load (indexes rebuilt once at the end), as `crm seed` does.
            ctx.db
                .write(move |c| {
                    let load = crm::db::seed::BulkLoad::begin(c)?;
                    for chunk in rows.chunks(20_000) {
                        load.customers(chunk)?;
                    }
                    load.finish()
                })
                .await?;
            println!("seed_customers={customers}");
            println!("seed_seconds={:.1}", t.elapsed().as_secs_f64());
            for (u, role) in [
                ("bench", crm::model::Role::Admin),
                ("oper", crm::model::Role::Operator),
            ] {
                ctx.accounts
                    .create_user(
                        None,
                        crm::domain::accounts::NewUser {
                            username: u.into(),
                            display_name: format!("{u} name"),
                            role,
                            language: crm::model::Language::En,
                            password: "bench-password-1".into(),
                        },
                        false,
                    )
                    .await?;
            }
            ctx.telephony
                .import(None, "1000;secret-1000;\n1501;secret-1501;\n")
                .await?;
            ctx.telephony
                .update_extension(None, "1501", "Desk", Some("oper".into()), true)
                .await?;
            std::fs::write(&marker, customers.to_string())?;
        }
        let oper = ctx.accounts.user_by_username("oper").await?;
        let token = ctx.accounts.create_token(None, oper.id, "bench").await?;
        let admin = ctx.accounts.user_by_username("bench").await?;
        let admin = ctx.accounts.create_token(None, admin.id, "bench").await?;
        ctx.db.checkpoint().await?;
        anyhow::Ok((token, admin))
    })
}

/// Echoes 486 to every INVITE the proxy forks to the registered phone.
fn busy_phone(uas: UdpSocket, server: SocketAddr, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok(k) = uas.recv(&mut buf) else { continue };
        let req = String::from_utf8_lossy(&buf[..k]).into_owned();
        if !req.starts_with("INVITE ") {
            continue;
        }
        let _ = uas.send_to(reply(&req, "486 Busy Here", true).as_bytes(), server);
    }
}

/// A response (or, with `ack`, the ACK for one) carrying the dialog headers of `msg`.
fn reply(msg: &str, status: &str, tag: bool) -> String {
    let keep: String = msg
        .lines()
        .filter(|h| {
            let h = h.to_ascii_lowercase();
            ["via:", "from:", "to:", "call-id:", "cseq:"]
                .iter()
                .any(|p| h.starts_with(p))
        })
        .map(|h| {
            if tag && h.to_ascii_lowercase().starts_with("to:") {
                format!("{h};tag=u\r\n")
            } else {
                format!("{h}\r\n")
            }
        })
        .collect();
    format!("SIP/2.0 {status}\r\n{keep}Content-Length: 0\r\n\r\n")
}

/// The caller ACKs every final response so the proxy's transactions end quietly.
fn acker(sock: UdpSocket, server: SocketAddr, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok(k) = sock.recv(&mut buf) else { continue };
        let resp = String::from_utf8_lossy(&buf[..k]).into_owned();
        let code: u16 = resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
        if code < 300 {
            continue;
        }
        let hdr = |name: &str| {
            resp.lines()
                .find(|l| l.to_ascii_lowercase().starts_with(name))
                .unwrap_or("")
                .to_string()
        };
        let ack = format!(
            "ACK sip:1501@{server} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n{}\r\n{}\r\n{}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            hdr("via:"),
            hdr("from:"),
            hdr("to:"),
            hdr("call-id:")
        );
        let _ = sock.send_to(ack.as_bytes(), server);
    }
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let customers: u64 = arg(args, "--customers")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rate: u64 = arg(args, "--rate")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seconds: u64 = arg(args, "--seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let (dir, _tmp) = match arg(args, "--data-dir") {
        Some(d) => (std::path::PathBuf::from(d), None),
        None => {
            let t = tempfile::tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let (token, admin) = prepare(&dir, customers)?;
    let bin = crm_binary()?;
    let http = free_addr()?;
    let sip: SocketAddr = {
        let u = UdpSocket::bind("127.0.0.1:0")?;
        u.local_addr()?
    };
    let child = crm(&bin, &dir)?
        .args([
            "serve",
            "--http",
            &http.to_string(),
            "--sip",
            &sip.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = (|| {
        wait_healthy(http, Duration::from_secs(60))?;
        measure(http, sip, &token, &admin, customers, rate, seconds)
    })();
    stop(child);
    result
}

fn measure(
    http: SocketAddr,
    server: SocketAddr,
    token: &str,
    admin: &str,
    customers: u64,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    // SIP listens a moment after HTTP answers: wait for OPTIONS.
    let probe = UdpSocket::bind("127.0.0.1:0")?;
    probe.set_read_timeout(Some(Duration::from_millis(200)))?;
    let pl = probe.local_addr()?;
    let options = |n: u64| {
        format!("OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {pl};branch=z9hG4bKopt{n}\r\nFrom: <sip:probe@{server}>;tag=p{n}\r\nTo: <sip:{server}>\r\nCall-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    };
    let mut buf = vec![0u8; 65536];
    let ready_by = Instant::now() + Duration::from_secs(20);
    loop {
        probe.send_to(options(0).as_bytes(), server)?;
        if probe.recv(&mut buf).is_ok() {
            break;
        }
        anyhow::ensure!(Instant::now() < ready_by, "SIP did not answer OPTIONS");
    }
    probe.set_read_timeout(Some(Duration::from_secs(1)))?;

    // The phone of extension 1501 (linked to "oper"): answers busy.
    let uas = UdpSocket::bind("127.0.0.1:0")?;
    uas.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut reg = Client::new(server)?;
    reg.register(
        "1501",
        &[format!("Contact: <sip:1501@{}>", uas.local_addr()?)],
    )?;
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let phone_thread = {
        let s = stopping.clone();
        std::thread::spawn(move || busy_phone(uas, server, s))
    };

    // Call ids sent, and when; the WebSocket task stamps arrivals.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pops: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let notices: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let notice_lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    {
        let mut req = format!("ws://{http}/ws").into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (sent, pops, notices, notice_lat) = (
            sent.clone(),
            pops.clone(),
            notices.clone(),
            notice_lat.clone(),
        );
        rt.spawn(async move {
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                let now = Instant::now();
                let Message::Text(t) = m else { continue };
                if t.contains("\"type\":\"hello\"") {
                    let _ = ready_tx.send(());
                    continue;
                }
                let v: serde_json::Value = match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if v["type"] == "call.ringing" {
                    let id = v["data"]["call_id"].as_str().unwrap_or("");
                    if let Some(t0) = sent.lock().unwrap().remove(id) {
                        pops.lock().unwrap().push(now - t0);
                    }
                } else if v["type"] == "notice" {
                    let text = v["data"]["text"].as_str().unwrap_or("");
                    if let Some(t0) = notices.lock().unwrap().remove(text) {
                        notice_lat.lock().unwrap().push(now - t0);
                    }
                }
            }
        });
    }
    ready_rx.recv_timeout(Duration::from_secs(10))?;

    // The caller, authenticated once; nonce-counts advance on the same nonce.
    let caller = UdpSocket::bind("127.0.0.1:0")?;
    caller.set_read_timeout(Some(Duration::from_secs(2)))?;
    let l = caller.local_addr()?;
    let inv = |n: u64, from: &str, auth: &str| {
        format!(
            "INVITE sip:1501@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bKcall{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@{server}>;tag=f{n}\r\nTo: <sip:1501@{server}>\r\nCall-ID: bench-call-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{l}>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    caller.send_to(inv(0, "1000", "").as_bytes(), server)?;
    let k = caller.recv(&mut buf)?;
    let chal = String::from_utf8_lossy(&buf[..k]).into_owned();
    anyhow::ensure!(
        chal.starts_with("SIP/2.0 407"),
        "expected a challenge: {chal}"
    );
    let realm = param(&chal, "Proxy-Authenticate", "realm");
    let nonce = param(&chal, "Proxy-Authenticate", "nonce");
    let uri = format!("sip:1501@{server}");
    let ack_thread = {
        let s = stopping.clone();
        let sock = caller.try_clone()?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        std::thread::spawn(move || acker(sock, server, s))
    };

    // The UDP reference: OPTIONS round trips from their own socket.
    let mut udp_rtt = Vec::new();

    // The committed-event reference: a notice every 250 ms from its own thread.
    let notice_thread = {
        let (s, notices, admin) = (stopping.clone(), notices.clone(), admin.to_string());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut n = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let text = format!("ref {n}");
                notices.lock().unwrap().insert(text.clone(), Instant::now());
                let r = request(
                    http,
                    "POST",
                    "/api/v1/notices",
                    &[
                        ("Authorization", &format!("Bearer {admin}")),
                        ("Content-Type", "application/json"),
                    ],
                    &format!("{{\"text\":\"{text}\"}}"),
                )?;
                anyhow::ensure!(r.status == 201, "notice answered {}", r.status);
                std::thread::sleep(Duration::from_millis(250));
            }
            Ok(())
        })
    };

    let total = rate * seconds;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let start = Instant::now();
    for n in 1..=total {
        let due = start + gap * n as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let from = if rng.gen_range(0..10) == 0 {
            format!("+99833{:07}", rng.gen_range(0..10_000_000))
        } else {
            phone(rng.gen_range(0..customers.max(1)))
        };
        let auth = invite_auth(&realm, &uri, &nonce, n);
        let msg = inv(n, &from, &auth);
        sent.lock()
            .unwrap()
            .insert(format!("bench-call-{n}"), Instant::now());
        caller.send_to(msg.as_bytes(), server)?;

        // Half a gap later: the references.
        std::thread::sleep(gap / 2);
        let o = options(n);
        let t0 = Instant::now();
        probe.send_to(o.as_bytes(), server)?;
        if probe.recv(&mut buf).is_ok() {
            udp_rtt.push(t0.elapsed());
        }
    }
    // Let the last pops arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sent.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = phone_thread.join();
    let _ = ack_thread.join();
    notice_thread
        .join()
        .map_err(|_| anyhow::anyhow!("notice thread panicked"))??;
    let lost = sent.lock().unwrap().len();
    let mut v = pops.lock().unwrap().clone();
    v.sort();
    udp_rtt.sort();
    let mut nl = notice_lat.lock().unwrap().clone();
    nl.sort();
    println!("calls_customers={customers}");
    println!("calls_rate_per_s={rate}");
    println!("calls_sent={total}");
    println!("calls_pops_received={} (missing {lost})", v.len());
    println!(
        "calls_invite_to_ringing_ws_ms_p50={}",
        ms(percentile(&v, 50.0))
    );
    println!(
        "calls_invite_to_ringing_ws_ms_p99={}",
        ms(percentile(&v, 99.0))
    );
    println!(
        "calls_invite_to_ringing_ws_ms_max={}",
        ms(*v.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "ref_udp_options_rtt_ms_p50={}",
        ms(percentile(&udp_rtt, 50.0))
    );
    println!(
        "ref_udp_options_rtt_ms_p99={}",
        ms(percentile(&udp_rtt, 99.0))
    );
    println!(
        "ref_committed_notice_to_ws_ms_p50={}",
        ms(percentile(&nl, 50.0))
    );
    println!(
        "ref_committed_notice_to_ws_ms_p99={}",
        ms(percentile(&nl, 99.0))
    );
    println!("ref_committed_notice_samples={}", nl.len());
    drop(rt);
    Ok(())
}
