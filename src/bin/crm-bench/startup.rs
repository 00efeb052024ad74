//! `startup`: cold start to first served request on an empty database, idle RSS, binary
//! size, and sign-in cost (argon2id) as latency and throughput.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::httpc::{csrf, request, urlencode};
use crate::stats::{median, ms, percentile};

const RUNS: usize = 15;
const LOGINS: usize = 24;

fn crm_binary() -> anyhow::Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name("crm");
    anyhow::ensure!(
        p.exists(),
        "build the crm binary next to crm-bench: {}",
        p.display()
    );
    Ok(p)
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn serve(bin: &Path, dir: &Path, addr: SocketAddr) -> anyhow::Result<Child> {
    let empty = dir.join("bench.toml");
    std::fs::write(&empty, "log = \"warn\"\n")?;
    Ok(Command::new(bin)
        .arg("--config")
        .arg(&empty)
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--http", &addr.to_string(), "--sip", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

fn wait_healthy(addr: SocketAddr, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr).is_ok() {
            if let Ok(r) = request(addr, "GET", "/healthz", &[], "") {
                if r.status == 200 {
                    return Ok(start.elapsed());
                }
            }
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "server did not answer within {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

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
    let mut add = Command::new(&bin)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "user",
            "add",
            "bench",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"bench-password-1\n")?;
    anyhow::ensure!(add.wait()?.success(), "user add failed");
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
