//! Starting the release `crm` binary for a benchmark, and reading its resource use.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::httpc::request;

pub fn crm_binary() -> anyhow::Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name("crm");
    anyhow::ensure!(
        p.exists(),
        "build the crm binary next to crm-bench: {}",
        p.display()
    );
    Ok(p)
}

pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `crm` with a bench config (warnings-only log, SIP off) on a data dir.
pub fn crm(bin: &Path, dir: &Path) -> anyhow::Result<Command> {
    crm_with(bin, dir, "")
}

/// Same, with `extra` TOML appended to the bench config (when the data dir is new).
pub fn crm_with(bin: &Path, dir: &Path, extra: &str) -> anyhow::Result<Command> {
    let cfg = dir.join("bench.toml");
    if !cfg.exists() {
        // Benchmarks drive the API far beyond the shop's request limits.
        std::fs::write(
            &cfg,
            format!("log = \"warn\"\n{extra}\n[api_limits]\nper_token = 0\nper_address = 0\n"),
        )?;
    }
    let mut c = Command::new(bin);
    c.arg("--config").arg(cfg).arg("--data-dir").arg(dir);
    Ok(c)
}

pub fn serve(bin: &Path, dir: &Path, addr: SocketAddr) -> anyhow::Result<Child> {
    Ok(crm(bin, dir)?
        .args(["serve", "--http", &addr.to_string(), "--sip", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

pub fn wait_healthy(addr: SocketAddr, limit: Duration) -> anyhow::Result<Duration> {
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

pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')').unwrap_or(0) + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

pub fn add_user(
    bin: &Path,
    dir: &Path,
    user: &str,
    role: &str,
    password: &str,
) -> anyhow::Result<()> {
    let mut add = crm(bin, dir)?
        .args(["user", "add", user, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    add.stdin
        .take()
        .expect("piped")
        .write_all(format!("{password}\n").as_bytes())?;
    anyhow::ensure!(add.wait()?.success(), "user add failed");
    Ok(())
}

/// A running release server on a fresh data dir, with an admin and its API token.
pub struct BenchServer {
    pub addr: SocketAddr,
    pub token: String,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl BenchServer {
    pub fn start_with_admin() -> anyhow::Result<BenchServer> {
        Self::start_with_admin_config("")
    }

    /// Same, with `extra` TOML in the server's config (top-level keys, then sections).
    pub fn start_with_admin_config(extra: &str) -> anyhow::Result<BenchServer> {
        let bin = crm_binary()?;
        let dir = tempfile::tempdir()?;
        crm_with(&bin, dir.path(), extra)?;
        add_user(&bin, dir.path(), "bench", "admin", "bench-password-1")?;
        let out = crm(&bin, dir.path())?
            .args(["token", "create", "bench"])
            .output()?;
        anyhow::ensure!(out.status.success(), "token create failed");
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        let addr = free_addr()?;
        let child = serve(&bin, dir.path(), addr)?;
        wait_healthy(addr, Duration::from_secs(20))?;
        Ok(BenchServer {
            addr,
            token,
            _dir: dir,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c);
        }
    }
}
