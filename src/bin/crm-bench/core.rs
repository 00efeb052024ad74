//! `crm-bench core [--customers N] [--orders M] [--data DIR]`: the service-center core on
//! a seeded shop (default 200 000 customers, 1 000 000 orders): seeding speed, order list
//! page latency over HTTP, phone lookup in-process and over HTTP, search over HTTP, and
//! order creation throughput over HTTP with every acknowledged write durable
//! (synchronous=FULL, group commit).
//!
//! `--data DIR` keeps the seeded data dir for later runs (seeding is skipped when it
//! already holds orders).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::httpc::{csrf, request, urlencode};
use crate::server::{add_user, crm, crm_binary, free_addr, serve, stop, wait_healthy};
use crate::stats::{ms, percentile};

struct Args {
    customers: usize,
    orders: usize,
    data: Option<PathBuf>,
    requests: usize,
    create_secs: u64,
    clients: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut a = Args {
        customers: 200_000,
        orders: 1_000_000,
        data: None,
        requests: 1000,
        create_secs: 10,
        clients: 16,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--customers" => a.customers = v.parse()?,
            "--orders" => a.orders = v.parse()?,
            "--data" => a.data = Some(PathBuf::from(v)),
            "--requests" => a.requests = v.parse()?,
            "--create-secs" => a.create_secs = v.parse()?,
            "--clients" => a.clients = v.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!("{name}_p50_ms={}", ms(percentile(&samples, 50.0)));
    println!("{name}_p99_ms={}", ms(percentile(&samples, 99.0)));
}

/// The same number as staff type it in different ways.
fn typed_forms(e164: &str) -> Vec<String> {
    let n = e164.trim_start_matches("+998");
    vec![
        format!("{} {} {} {}", &n[..2], &n[2..5], &n[5..7], &n[7..]),
        format!("8 {} {}", &n[..2], &n[2..]),
        format!("+998-{}-{}-{}-{}", &n[..2], &n[2..5], &n[5..7], &n[7..]),
        format!("({}) {}-{}-{}", &n[..2], &n[2..5], &n[5..7], &n[7..]),
    ]
}

/// A GET with one credential header (`Authorization` for the API, `Cookie` for pages).
fn get(addr: SocketAddr, path: &str, cred: (&str, &str)) -> anyhow::Result<(Duration, String)> {
    let t = Instant::now();
    let r = request(addr, "GET", path, &[cred], "")?;
    let d = t.elapsed();
    anyhow::ensure!(r.status == 200, "GET {path}: {} {}", r.status, r.body);
    Ok((d, r.body))
}

/// Signs in through the form and returns the session cookie, for the HTML pages.
fn session(addr: SocketAddr, user: &str, password: &str) -> anyhow::Result<String> {
    let page = request(addr, "GET", "/login", &[], "")?;
    let token = csrf(&page.body).ok_or_else(|| anyhow::anyhow!("no CSRF field"))?;
    let body = urlencode(&[
        ("username", user),
        ("password", password),
        ("_csrf", &token),
    ]);
    let r = request(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &page.cookies()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )?;
    anyhow::ensure!(r.status == 303, "login answered {}", r.status);
    Ok(r.cookies())
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).expect("encodable")[1..].to_string()
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let a = parse(args)?;
    let bin = crm_binary()?;
    let tmp;
    let dir: &Path = match &a.data {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path()
        }
    };

    // `crm()` writes the bench config the server and the in-process context both load.
    let _ = crm(&bin, dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // In-process context on the same data dir (the server opens it too: WAL lets both).
    let load_ctx = || -> anyhow::Result<crm::app::AppContext> {
        let cfg = crm::config::Config::load(
            Some(&dir.join("bench.toml")),
            &Default::default(),
            &crm::config::Overrides {
                data_dir: Some(dir.to_path_buf()),
                ..Default::default()
            },
        )?;
        crm::app::AppContext::open(cfg)
    };

    let existing = {
        let ctx = load_ctx()?;
        let admin = bench_actor();
        let (_, n) = rt.block_on(ctx.orders.list(&admin, Default::default()))?;
        n
    };
    if existing == 0 {
        let t = Instant::now();
        let out = crm(&bin, dir)?
            .args([
                "seed",
                "--customers",
                &a.customers.to_string(),
                "--orders",
                &a.orders.to_string(),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "seed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secs = t.elapsed().as_secs_f64();
        println!("seed_customers={}", a.customers);
        println!("seed_orders={}", a.orders);
        println!("seed_seconds={secs:.1}");
        println!("seed_orders_per_s={:.0}", a.orders as f64 / secs);
    } else {
        println!("seed_reused_orders={existing}");
    }
    let db_size = std::fs::metadata(dir.join("crm.db"))?.len();
    println!("db_size_mib={:.0}", db_size as f64 / 1_048_576.0);

    let user = format!("bench{}", std::process::id());
    add_user(&bin, dir, &user, "admin", "bench-password-1")?;
    let out = crm(&bin, dir)?.args(["token", "create", &user]).output()?;
    anyhow::ensure!(out.status.success(), "token create failed");
    let auth = format!("Bearer {}", String::from_utf8(out.stdout)?.trim());

    let ctx = load_ctx()?;
    let admin = bench_actor();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);

    // Samples: phones of random customers, masters, statuses.
    let (_, customers_total) = rt.block_on(ctx.customers.list(1, 0))?;
    let customers_total = customers_total.min(a.customers as i64).max(1);
    let mut phones = Vec::new();
    for _ in 0..50 {
        let (rows, _) = rt.block_on(
            ctx.customers
                .list(20, rng.gen_range(0..customers_total.max(21) - 20)),
        )?;
        phones.extend(rows.into_iter().flat_map(|r| r.phones));
    }
    anyhow::ensure!(!phones.is_empty(), "no customers to look up");
    let masters: Vec<i64> = rt
        .block_on(ctx.orders.masters())?
        .into_iter()
        .map(|m| m.0)
        .collect();
    let statuses: Vec<i64> = rt
        .block_on(ctx.orders.statuses())?
        .into_iter()
        .map(|s| s.id)
        .collect();

    // Phone lookup in-process, through the domain (as the web handlers call it).
    let mut samples = Vec::with_capacity(a.requests);
    for i in 0..a.requests {
        let p = &phones[i % phones.len()];
        let typed = typed_forms(p)[i % 4].clone();
        let t = Instant::now();
        let found = rt.block_on(ctx.customers.find_by_phone(&typed))?;
        samples.push(t.elapsed());
        anyhow::ensure!(!found.is_empty(), "{typed} not found");
    }
    report("lookup_inprocess", samples);

    let addr = free_addr()?;
    let child = serve(&bin, dir, addr)?;
    let result = (|| -> anyhow::Result<()> {
        wait_healthy(addr, Duration::from_secs(60))?;

        // Phone lookup over HTTP.
        let mut samples = Vec::with_capacity(a.requests);
        for i in 0..a.requests {
            let typed = &typed_forms(&phones[(i * 7) % phones.len()])[i % 4];
            let (d, body) = get(
                addr,
                &format!("/api/v1/customers/lookup?phone={}", enc(typed)),
                ("Authorization", &auth),
            )?;
            anyhow::ensure!(body.len() > 2, "{typed}: nothing found");
            samples.push(d);
        }
        report("lookup_http", samples);

        // Order list page (HTML, 50 rows) with the filters staff use, as a signed-in user.
        let cookie = session(addr, &user, "bench-password-1")?;
        let mut samples = Vec::with_capacity(a.requests);
        for i in 0..a.requests {
            let path = match i % 8 {
                0 => "/orders".to_string(),
                1 => format!("/orders?group=in_work&page={}", i % 3),
                2 => format!("/orders?group=closed&page={}", i % 50),
                3 => format!("/orders?status={}", statuses[i % statuses.len()]),
                4 => format!(
                    "/orders?master={}&sort=promised",
                    masters.get(i % masters.len().max(1)).copied().unwrap_or(0)
                ),
                5 => "/orders?overdue=1".to_string(),
                6 => format!("/orders?group=ready&sort=oldest&page={}", i % 2),
                _ => format!(
                    "/orders?from=2025-{:02}-01&to=2025-{:02}-28",
                    i % 12 + 1,
                    i % 12 + 1
                ),
            };
            let (d, body) = get(addr, &path, ("Cookie", &cookie))?;
            anyhow::ensure!(body.contains("<table"), "{path}: no table");
            samples.push(d);
        }
        report("order_list_http", samples);

        // Search over HTTP: names, phone fragments, order numbers, IMEIs, models, complaints.
        let words = [
            "Karimov",
            "Dilnoza Rahimova",
            "Redmi Note",
            "iPhone 13",
            "Galaxy A52",
            "Zaryad",
            "Ekran singan",
            "Artel",
            "ThinkPad",
            "suv tushgan",
        ];
        let mut samples = Vec::with_capacity(a.requests);
        for i in 0..a.requests {
            let q = match i % 5 {
                0 | 1 => words[i % words.len()].to_string(),
                2 => {
                    let p = &phones[(i * 13) % phones.len()];
                    typed_forms(p)[i % 4].clone()
                }
                3 => format!("RM25-{:05}", rng.gen_range(1..90_000)),
                _ => format!("35{:04}", rng.gen_range(0..10_000)),
            };
            let (d, _) = get(
                addr,
                &format!("/api/v1/search?q={}", enc(&q)),
                ("Authorization", &auth),
            )?;
            samples.push(d);
        }
        report("search_http", samples);

        // Order creation over HTTP: concurrent clients for a fixed time.
        let customer_ids: Vec<i64> = {
            let mut v = Vec::new();
            for p in phones.iter().take(200) {
                v.extend(
                    rt.block_on(ctx.customers.find_by_phone(p))?
                        .into_iter()
                        .map(|c| c.id),
                );
            }
            v
        };
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop_flag = Arc::new(AtomicBool::new(false));
        let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut threads = Vec::new();
        for t in 0..a.clients {
            let (done, failed, stop_flag, lat) =
                (done.clone(), failed.clone(), stop_flag.clone(), lat.clone());
            let auth = auth.clone();
            let ids = customer_ids.clone();
            threads.push(std::thread::spawn(move || {
                let mut i = t;
                let mut mine = Vec::new();
                while !stop_flag.load(Ordering::Relaxed) {
                    let body = serde_json::json!({
                        "customer_id": ids[i % ids.len()],
                        "device_category": "phone",
                        "brand": "Samsung",
                        "model": "Galaxy A32",
                        "serial": format!("35{:013}", i),
                        "complaint": "Ekran singan",
                        "estimate": 450000,
                        "prepayment": 100000,
                    })
                    .to_string();
                    let t0 = Instant::now();
                    match request(
                        addr,
                        "POST",
                        "/api/v1/orders",
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                        ],
                        &body,
                    ) {
                        Ok(r) if r.status == 201 => {
                            done.fetch_add(1, Ordering::Relaxed);
                            mine.push(t0.elapsed());
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 997;
                }
                lat.lock().expect("lock").extend(mine);
            }));
        }
        std::thread::sleep(Duration::from_secs(a.create_secs));
        stop_flag.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let secs = started.elapsed().as_secs_f64();
        println!("create_clients={}", a.clients);
        println!(
            "create_orders_per_s={:.0}",
            done.load(Ordering::Relaxed) as f64 / secs
        );
        println!("create_failed={}", failed.load(Ordering::Relaxed));
        let v = std::mem::take(&mut *lat.lock().expect("lock"));
        report("create_http", v);
        Ok(())
    })();
    stop(child);
    // The in-process context is dropped last: its writer thread was idle.
    drop(ctx);
    let _ = admin;
    result
}

fn bench_actor() -> crm::domain::Actor {
    crm::domain::Actor {
        user_id: 0,
        username: "bench".into(),
        display_name: "bench".into(),
        role: crm::model::Role::Admin,
        language: crm::model::Language::En,
    }
}
