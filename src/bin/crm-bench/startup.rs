//! `startup`: cold start to first served request on an empty database, idle RSS, binary
//! size, and sign-in cost (argon2id) as latency and throughput.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::httpc::{csrf, request, urlencode};
use crate::server::{add_user, crm_binary, free_addr, rss_kib, serve, stop, wait_healthy};
use crate::stats::{median, ms, percentile};

const RUNS: usize = 15;
const LOGINS: usize = 24;

fn login(addr: SocketAddr, user: &str, password: &str) -> anyhow::Result<Duration> {
    let page = request(addr, "GET", "/login", &[], "")?;
    let cookie = page.cookies();
    let token = csrf(&page.body).ok_or_else(|| anyhow::anyhow!("no CSRF field"))?;
    let body = urlencode(&[
        ("username", user),
        ("password", password),
        ("_csrf", &token),
    ]);
    let start = Instant::now();
    let r = request(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )?;
    let took = start.elapsed();
    anyhow::ensure!(r.status == 303, "login answered {}", r.status);
    Ok(took)
}

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let bin = crm_binary()?;
    println!(
        "binary_size_mb={:.2}",
        std::fs::metadata(&bin)?.len() as f64 / 1e6
    );

    // Cold start: fresh empty data dir each time, migration included.
    let mut starts = Vec::new();
    let mut rss = Vec::new();
    for i in 0..RUNS {
        let dir = tempfile::tempdir()?;
        let addr = free_addr()?;
        let t0 = Instant::now();
        let child = serve(&bin, dir.path(), addr)?;
        let _ = wait_healthy(addr, Duration::from_secs(20))?;
        starts.push(t0.elapsed());
        if i < 3 {
            // Idle: a few pages served, then left alone.
            for _ in 0..5 {
                request(addr, "GET", "/login", &[], "")?;
            }
            std::thread::sleep(Duration::from_secs(2));
            rss.push(rss_kib(child.id())?);
        }
        stop(child);
    }
    starts.sort();
    println!("cold_start_ms_median={}", ms(percentile(&starts, 50.0)));
    println!("cold_start_ms_max={}", ms(*starts.last().unwrap()));
    rss.sort();
    println!("idle_rss_mb={:.1}", rss[rss.len() / 2] as f64 / 1024.0);

    // Sign-in cost with the default argon2id parameters.
    let dir = tempfile::tempdir()?;
    add_user(&bin, dir.path(), "bench", "admin", "bench-password-1")?;
    // Lockout is per username and address; the bench signs in successfully only.
    let addr = free_addr()?;
    let child = serve(&bin, dir.path(), addr)?;
    wait_healthy(addr, Duration::from_secs(20))?;
    let mut lat = Vec::new();
    for _ in 0..LOGINS {
        lat.push(login(addr, "bench", "bench-password-1")?);
    }
    println!("login_latency_ms_median={}", ms(median(lat)));
    let threads = 4;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || -> anyhow::Result<()> {
                for _ in 0..LOGINS / threads {
                    login(addr, "bench", "bench-password-1")?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("login thread panicked"))??;
    }
    let per_s = LOGINS as f64 / start.elapsed().as_secs_f64();
    println!("login_throughput_per_s={per_s:.1}");
    println!("login_concurrency={threads}");
    stop(child);
    Ok(())
}
