//! `signin`: a flood of parallel sign-ins against the release server with the shipped
//! argon2 cost (32 MiB, 3 passes): peak server memory (VmHWM) and how many attempts got a
//! real password verification (401) rather than 429. Three floods, each on a fresh server:
//! unknown names from one address with the shipped limits; the same with the address limit
//! off (only the bound on parallel hashing holds memory); one account with time enough
//! for every verification (only the attempt counting holds). `--with-reference` adds the
//! same flood without the bound, for comparison (needs ~32 MiB × attempts of memory).

use std::sync::{Arc, Barrier};

use crate::httpc::{csrf, request, urlencode};
use crate::server::BenchServer;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn flood(label: &str, extra: &str, n: usize, user: impl Fn(usize) -> String) -> anyhow::Result<()> {
    let srv = BenchServer::start_with_admin_config(extra)?;
    let idle = peak_rss_kib(srv.pid())?;
    // Each attempt has its form (pre-session cookie and CSRF token) first.
    let mut ready = Vec::new();
    for i in 0..n {
        let page = request(srv.addr, "GET", "/login", &[], "")?;
        let token = csrf(&page.body).ok_or_else(|| anyhow::anyhow!("no CSRF field"))?;
        ready.push((page.cookies(), token, user(i)));
    }
    let gate = Arc::new(Barrier::new(n));
    let started = std::time::Instant::now();
    let threads: Vec<_> = ready
        .into_iter()
        .map(|(cookie, token, name)| {
            let (gate, addr) = (gate.clone(), srv.addr);
            std::thread::spawn(move || {
                let body = urlencode(&[
                    ("username", &name),
                    ("password", "wrong-password-1"),
                    ("_csrf", &token),
                ]);
                gate.wait();
                request(
                    addr,
                    "POST",
                    "/login",
                    &[
                        ("Cookie", &cookie),
                        ("Content-Type", "application/x-www-form-urlencoded"),
                    ],
                    &body,
                )
                .map(|r| r.status)
                .unwrap_or(0)
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap_or(0)).collect();
    let took = started.elapsed();
    let peak = peak_rss_kib(srv.pid())?;
    let count = |c: u16| codes.iter().filter(|x| **x == c).count();
    println!("flood={label}");
    println!("  attempts={n}");
    println!("  verified_401={}", count(401));
    println!("  refused_429={}", count(429));
    println!("  other={}", n - count(401) - count(429));
    println!("  rss_before_mib={:.0}", idle as f64 / 1024.0);
    println!("  peak_rss_mib={:.0}", peak as f64 / 1024.0);
    println!("  seconds={:.1}", took.as_secs_f64());
    Ok(())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let n = arg(args, "--attempts", 200);
    flood("unknown-names-shipped-limits", "", n, |i| {
        format!("nobody{i}")
    })?;
    flood(
        "unknown-names-no-address-limit",
        "[login]\nmax_failures_per_ip = 100000\n",
        n,
        |i| format!("nobody{i}"),
    )?;
    flood(
        "one-account-long-wait",
        "[login]\nhash_wait_ms = 120000\n",
        n,
        |_| "bench".to_string(),
    )?;
    if args.iter().any(|a| a == "--with-reference") {
        // What the bound prevents: every attempt hashing at once (~32 MiB each).
        flood(
            "reference-unbounded-hashing",
            "[login]\nmax_failures_per_ip = 100000\nmax_parallel_hashes = 100000\nhash_wait_ms = 120000\n",
            n,
            |i| format!("nobody{i}"),
        )?;
    }
    Ok(())
}
