//! `crm-bench sip`: the bench kit's stepped REGISTER and call-rate test (bench.sh) against
//! Kamailio and against our server in the same run, then, against ours, the p99 added
//! latency per forwarded INVITE at 100 calls/s and the memory per registered contact.
//!
//! Env: SIP_KIT (default ../shared/bench/sip), CRM_BIN (default: `crm` next to this
//! binary), DURATION / REG_RATES / CALL_RATES passed to bench.sh (defaults here are
//! shorter than the kit's: 5 s steps), SKIP_KAMAILIO=1.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crm::sip::digest::{self, Algorithm};

/// Not the kit's 5070 (Kamailio) and away from ports other checkouts commonly use.
const CRM_SIP: &str = "127.0.0.1:5182";

fn env_or(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.to_string())
}

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let kit = PathBuf::from(env_or("SIP_KIT", "../shared/bench/sip"));
    let crm_bin = match std::env::var("CRM_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => std::env::current_exe()?.with_file_name("crm"),
    };
    anyhow::ensure!(crm_bin.exists(), "no crm binary at {}", crm_bin.display());
    let bench_env = [
        ("DURATION", env_or("DURATION", "5")),
        (
            "REG_RATES",
            env_or("REG_RATES", "2000 4000 8000 12000 16000"),
        ),
        ("CALL_RATES", env_or("CALL_RATES", "400 800 1600 2400 3200")),
        ("GRACE", env_or("GRACE", "5")),
    ];
    for (k, v) in &bench_env {
        println!("bench_{}={}", k.to_lowercase(), v.replace(' ', ","));
    }

    if std::env::var("SKIP_KAMAILIO").is_err() {
        let out = Command::new(kit.join("run-kamailio.sh"))
            .arg("--bg")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |k: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(k).map(str::to_string))
        };
        let (rundir, pid) = (field("RUNDIR="), field("PID="));
        let (Some(rundir), Some(pid)) = (rundir, pid) else {
            anyhow::bail!("kamailio did not start: {text}");
        };
        let line = bench(&kit, "127.0.0.1:5070", &pid, &bench_env);
        let _ = Command::new(kit.join("run-kamailio.sh"))
            .args(["--stop", &rundir])
            .status();
        print_prefixed("kamailio_", &line?);
    }

    let data = tempdir()?;
    let st = Command::new(&crm_bin)
        .args(["--data-dir", data.to_str().unwrap_or(".")])
        .args(["extension", "import"])
        .arg(kit.join("users.csv"))
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "import failed");
    let mut server = start_crm(&crm_bin, &data)?;
    let result = (|| -> anyhow::Result<()> {
        let line = bench(&kit, CRM_SIP, &server.id().to_string(), &bench_env)?;
        print_prefixed("crm_", &line);
        let (p50, p99) = invite_latency(CRM_SIP.parse()?, 100, 10)?;
        println!("crm_invite_added_latency_p50_us={p50}");
        println!("crm_invite_added_latency_p99_us={p99}");
        let per = memory_per_contact(CRM_SIP.parse()?, server.id())?;
        println!("crm_bytes_per_contact={per}");
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
    result
}

fn print_prefixed(prefix: &str, line: &str) {
    for kv in line.split_whitespace() {
        println!("{prefix}{kv}");
    }
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("crm-bench-sip-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

fn start_crm(bin: &Path, data: &Path) -> anyhow::Result<Child> {
    let mut child = Command::new(bin)
        .args(["--data-dir", data.to_str().unwrap_or(".")])
        .args(["serve", "--http", "127.0.0.1:0", "--sip", CRM_SIP])
        .env("CRM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Ready when OPTIONS is answered.
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let l = sock.local_addr()?;
        let m = format!("OPTIONS sip:{CRM_SIP} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKready{}\r\nFrom: <sip:b@{CRM_SIP}>;tag=1\r\nTo: <sip:{CRM_SIP}>\r\nCall-ID: ready\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", Instant::now().elapsed().as_nanos());
        let _ = sock.send_to(m.as_bytes(), CRM_SIP);
        let mut buf = [0u8; 2048];
        if let Some(st) = child.try_wait()? {
            anyhow::bail!("crm exited at start ({st}); is {CRM_SIP} taken?");
        }
        if sock.recv(&mut buf).is_ok() {
            // Answered, and by our child: it is still running.
            anyhow::ensure!(child.try_wait()?.is_none(), "crm exited");
            return Ok(child);
        }
    }
    anyhow::bail!("crm did not answer SIP OPTIONS within 20 s")
}

fn bench(kit: &Path, target: &str, pid: &str, env: &[(&str, String)]) -> anyhow::Result<String> {
    let mut c = Command::new(kit.join("bench.sh"));
    c.arg(target).env("SERVER_PID", pid);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for l in text.lines().filter(|l| l.starts_with("step")) {
        eprintln!("{target} {l}");
    }
    text.lines()
        .last()
        .filter(|l| l.contains("register_rps="))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("bench.sh gave no result line: {text}"))
}

pub(crate) fn param(resp: &str, header: &str, name: &str) -> String {
    let line = resp
        .lines()
        .find(|l| l.starts_with(header))
        .unwrap_or_default();
    let key = format!("{name}=");
    line.find(&key)
        .map(|i| {
            line[i + key.len()..]
                .trim_start_matches('"')
                .split(['"', ','])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

pub(crate) struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    seq: u64,
}

impl Client {
    pub(crate) fn new(server: SocketAddr) -> anyhow::Result<Client> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(Client {
            sock,
            server,
            seq: 0,
        })
    }

    fn recv(&self) -> anyhow::Result<String> {
        let mut buf = vec![0u8; 65536];
        let n = self.sock.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// REGISTER with digest; `contacts` are full Contact header lines.
    pub(crate) fn register(&mut self, user: &str, contacts: &[String]) -> anyhow::Result<()> {
        let s = self.server;
        let l = self.sock.local_addr()?;
        let mk = |seq: u64, auth: &str| {
            let mut m = format!(
                "REGISTER sip:{s} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bKb{seq}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{s}>;tag=b{seq}\r\nTo: <sip:{user}@{s}>\r\nCall-ID: bench-{user}-{l}\r\nCSeq: {seq} REGISTER\r\nExpires: 3600\r\n{auth}"
            );
            for c in contacts {
                m.push_str(c);
                m.push_str("\r\n");
            }
            m.push_str("Content-Length: 0\r\n\r\n");
            m
        };
        self.seq += 2;
        self.sock.send_to(mk(self.seq, "").as_bytes(), s)?;
        let chal = self.recv()?;
        let realm = param(&chal, "WWW-Authenticate", "realm");
        let nonce = param(&chal, "WWW-Authenticate", "nonce");
        let uri = format!("sip:{s}");
        let secret = format!("secret-{user}");
        let r = digest::response(
            Algorithm::Md5,
            user,
            &realm,
            &secret,
            "REGISTER",
            &uri,
            &nonce,
            "00000001",
            "c",
            "auth",
        );
        let auth = format!("Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, cnonce=\"c\", nc=00000001, qop=auth\r\n");
        self.sock.send_to(mk(self.seq + 1, &auth).as_bytes(), s)?;
        let ok = self.recv()?;
        anyhow::ensure!(ok.starts_with("SIP/2.0 200"), "REGISTER failed: {ok}");
        Ok(())
    }
}

/// Sends authenticated INVITEs at `rate`/s for `secs` to a registered raw UAS and measures
/// the time from our send to the UAS receiving it (two loopback hops plus the proxy's
/// work: an upper bound of the added latency). The UAS answers 486 so transactions end.
fn invite_latency(server: SocketAddr, rate: u32, secs: u32) -> anyhow::Result<(u64, u64)> {
    let uas = UdpSocket::bind("127.0.0.1:0")?;
    uas.set_read_timeout(Some(Duration::from_secs(2)))?;
    let ua = uas.local_addr()?;
    let mut reg = Client::new(server)?;
    reg.register("1997", &[format!("Contact: <sip:1997@{ua}>")])?;
    let caller = Client::new(server)?;
    let l = caller.sock.local_addr()?;
    // One challenge, then increasing nonce-counts on the same nonce.
    let inv = |n: u64, auth: &str| {
        format!(
            "INVITE sip:1997@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bKlat{n}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{server}>;tag=f{n}\r\nTo: <sip:1997@{server}>\r\nCall-ID: lat-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{l}>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    caller.sock.send_to(inv(0, "").as_bytes(), server)?;
    let chal = caller.recv()?;
    let realm = param(&chal, "Proxy-Authenticate", "realm");
    let nonce = param(&chal, "Proxy-Authenticate", "nonce");
    let uri = format!("sip:1997@{server}");
    let total = (rate * secs) as u64;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut lat = Vec::with_capacity(total as usize);
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    for n in 1..=total {
        let nc = format!("{n:08x}");
        let r = digest::response(
            Algorithm::Md5,
            "1000",
            &realm,
            "secret-1000",
            "INVITE",
            &uri,
            &nonce,
            &nc,
            "c",
            "auth",
        );
        let auth = format!("Proxy-Authorization: Digest username=\"1000\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, cnonce=\"c\", nc={nc}, qop=auth\r\n");
        let msg = inv(n, &auth);
        let due = start + gap * n as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t0 = Instant::now();
        caller.sock.send_to(msg.as_bytes(), server)?;
        let k = uas.recv(&mut buf)?;
        lat.push(t0.elapsed().as_micros() as u64);
        // 486 back so the proxy's transaction completes.
        let req = String::from_utf8_lossy(&buf[..k]).into_owned();
        let keep: String = req
            .lines()
            .filter(|h| {
                let h = h.to_ascii_lowercase();
                h.starts_with("via:")
                    || h.starts_with("from:")
                    || h.starts_with("to:")
                    || h.starts_with("call-id:")
                    || h.starts_with("cseq:")
            })
            .map(|h| {
                if h.to_ascii_lowercase().starts_with("to:") {
                    format!("{h};tag=u\r\n")
                } else {
                    format!("{h}\r\n")
                }
            })
            .collect();
        let resp = format!("SIP/2.0 486 Busy Here\r\n{keep}Content-Length: 0\r\n\r\n");
        uas.send_to(resp.as_bytes(), server)?;
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok((pct(0.5), pct(0.99)))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

/// RSS growth of the server while 990 extensions register 10 contacts each.
fn memory_per_contact(server: SocketAddr, pid: u32) -> anyhow::Result<u64> {
    let before = rss_kib(pid)?;
    let mut c = Client::new(server)?;
    let mut n = 0u64;
    for user in 1000..1990u32 {
        let contacts: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    "Contact: <sip:{user}@10.{}.{}.{i}:5060>",
                    user / 256,
                    user % 256
                )
            })
            .collect();
        c.register(&user.to_string(), &contacts)?;
        n += 10;
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid)?;
    println!("crm_contacts_registered={n}");
    println!("crm_rss_before_kib={before}");
    println!("crm_rss_after_kib={after}");
    Ok(after.saturating_sub(before) * 1024 / n)
}
