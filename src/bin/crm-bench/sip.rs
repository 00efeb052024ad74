//! `crm-bench sip`: Kamailio (the reference) and our server measured in the same run,
//! alternating K, crm, K, crm ... so the box's noise shows, each time on fresh instances:
//! - the bench kit's stepped REGISTER and call-rate test (`bench.sh`);
//! - latency of a forwarded INVITE at 100 calls/s, proxied and, as the floor, sent straight
//!   to the callee (added = proxied - direct);
//! - memory per registered contact (ours: RSS growth; Kamailio: shm `real_used` growth,
//!   where it keeps its location table), each on a fresh instance.
//!
//! Ends with a side-by-side table (medians over the rounds, crm / Kamailio).
//! Env: SIP_KIT (default ../shared/bench/sip), CRM_BIN (default: `crm` next to this
//! binary), ROUNDS (2), DURATION / REG_RATES / CALL_RATES / GRACE passed to bench.sh
//! (defaults here: 5 s steps), SKIP_KAMAILIO=1, LAT_SECS (10).

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crm::sip::digest::{self, Algorithm};

/// Not the kit's 5070 (Kamailio) and away from ports other checkouts commonly use.
const CRM_SIP: &str = "127.0.0.1:5182";
const KAMAILIO_SIP: &str = "127.0.0.1:5070";

type Figures = BTreeMap<String, String>;

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
    let rounds: usize = env_or("ROUNDS", "2").parse()?;
    let lat_secs: u32 = env_or("LAT_SECS", "10").parse()?;
    let with_kamailio = std::env::var("SKIP_KAMAILIO").is_err();
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
    println!("rounds={rounds}");
    let mut results: Vec<(&str, Figures)> = Vec::new();
    for round in 1..=rounds {
        if with_kamailio {
            let f = kamailio_round(&kit, &bench_env, lat_secs)?;
            print_figures(&format!("round{round}_kamailio_"), &f);
            results.push(("kamailio", f));
        }
        let f = crm_round(&kit, &crm_bin, &bench_env, lat_secs)?;
        print_figures(&format!("round{round}_crm_"), &f);
        results.push(("crm", f));
    }
    print_table(&results);
    Ok(())
}

fn print_figures(prefix: &str, f: &Figures) {
    for (k, v) in f {
        println!("{prefix}{k}={v}");
    }
}

/// Rows of the side-by-side table: figure key, label, higher is better.
const ROWS: &[(&str, &str, bool)] = &[
    ("register_rps", "REGISTER/s with digest, < 1 % failed", true),
    (
        "register_rps_clean",
        "REGISTER/s clean (retrans < 1 %, mean < 100 ms)",
        true,
    ),
    (
        "call_cps",
        "calls/s (INVITE-407-INVITE-180-200-ACK-BYE), < 1 % failed",
        true,
    ),
    ("call_cps_clean", "calls/s clean", true),
    ("failures", "failed calls in the reported steps", false),
    (
        "invite_proxied_p50_us",
        "INVITE at 100/s, caller to callee via the proxy, p50 µs",
        false,
    ),
    ("invite_proxied_p99_us", "same, p99 µs", false),
    (
        "invite_direct_p99_us",
        "same packet straight to the callee (floor), p99 µs",
        false,
    ),
    (
        "invite_added_p99_us",
        "added latency p99 µs (proxied p99 - direct p99)",
        false,
    ),
    (
        "bytes_per_contact",
        "memory per registered contact, bytes",
        false,
    ),
];

fn median_of(results: &[(&str, Figures)], server: &str, key: &str) -> Option<f64> {
    let mut v: Vec<f64> = results
        .iter()
        .filter(|(s, _)| *s == server)
        .filter_map(|(_, f)| f.get(key)?.parse().ok())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A markdown table: every run in order (K, crm, K, crm ...), then medians and the ratio.
fn print_table(results: &[(&str, Figures)]) {
    let mut head = String::from("| figure |");
    let mut rule = String::from("| --- |");
    for (i, (s, _)) in results.iter().enumerate() {
        head.push_str(&format!(" {s} #{} |", i / 2 + 1));
        rule.push_str(" ---: |");
    }
    head.push_str(" Kamailio median | crm median | crm / Kamailio |");
    rule.push_str(" ---: | ---: | ---: |");
    println!("\n{head}\n{rule}");
    for (key, label, _) in ROWS {
        let mut line = format!("| {label} |");
        for (_, f) in results {
            line.push_str(&format!(
                " {} |",
                f.get(*key).map(String::as_str).unwrap_or("-")
            ));
        }
        let (k, c) = (
            median_of(results, "kamailio", key),
            median_of(results, "crm", key),
        );
        let show = |x: Option<f64>| x.map(|x| format!("{x:.0}")).unwrap_or("-".into());
        let ratio = match (k, c) {
            (Some(k), Some(c)) if k > 0.0 => format!("{:.2}", c / k),
            _ => "-".into(),
        };
        line.push_str(&format!(" {} | {} | {ratio} |", show(k), show(c)));
        println!("{line}");
    }
}

/// bench.sh's result line as figures.
fn bench_figures(line: &str, f: &mut Figures) {
    for kv in line.split_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            f.insert(k.to_string(), v.to_string());
        }
    }
}

fn latency_figures(server: SocketAddr, secs: u32, f: &mut Figures) -> anyhow::Result<()> {
    let l = invite_latency(server, 100, secs).context("INVITE latency")?;
    f.insert("invite_proxied_p50_us".into(), l.proxied_p50.to_string());
    f.insert("invite_proxied_p99_us".into(), l.proxied_p99.to_string());
    f.insert("invite_direct_p50_us".into(), l.direct_p50.to_string());
    f.insert("invite_direct_p99_us".into(), l.direct_p99.to_string());
    f.insert(
        "invite_added_p99_us".into(),
        l.proxied_p99.saturating_sub(l.direct_p99).to_string(),
    );
    Ok(())
}

struct Kamailio {
    kit: PathBuf,
    rundir: String,
    pid: String,
}

impl Kamailio {
    fn start(kit: &Path) -> anyhow::Result<Kamailio> {
        let out = Command::new(kit.join("run-kamailio.sh"))
            .arg("--bg")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |k: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(k).map(str::to_string))
        };
        let (Some(rundir), Some(pid)) = (field("RUNDIR="), field("PID=")) else {
            anyhow::bail!(
                "kamailio did not start: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        Ok(Kamailio {
            kit: kit.to_path_buf(),
            rundir,
            pid,
        })
    }

    /// Bytes of shared memory in use (where usrloc keeps contacts).
    fn shm_used(&self) -> anyhow::Result<u64> {
        let out = Command::new("kamcmd")
            .args(["-s", &format!("unix:{}/kamailio_ctl", self.rundir)])
            .arg("core.shmmem")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("real_used:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("kamcmd core.shmmem: {text}"))
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new(self.kit.join("run-kamailio.sh"))
            .args(["--stop", &self.rundir])
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.rundir);
    }
}

fn kamailio_round(kit: &Path, env: &[(&str, String)], lat_secs: u32) -> anyhow::Result<Figures> {
    let mut f = Figures::new();
    let server: SocketAddr = KAMAILIO_SIP.parse()?;
    {
        let k = Kamailio::start(kit)?;
        let before = k.shm_used()?;
        let n = register_many(server).context("kamailio: registering contacts")?;
        let after = k.shm_used()?;
        f.insert("contacts_registered".into(), n.to_string());
        f.insert(
            "bytes_per_contact".into(),
            (after.saturating_sub(before) / n).to_string(),
        );
        latency_figures(server, lat_secs, &mut f)?;
    }
    let k = Kamailio::start(kit)?;
    bench_figures(&bench(kit, KAMAILIO_SIP, &k.pid, env)?, &mut f);
    Ok(f)
}

struct Crm {
    child: Child,
    data: PathBuf,
}

impl Crm {
    fn start(kit: &Path, bin: &Path) -> anyhow::Result<Crm> {
        let data = tempdir()?;
        let st = Command::new(bin)
            .args(["--data-dir", data.to_str().unwrap_or(".")])
            .args(["extension", "import"])
            .arg(kit.join("users.csv"))
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "import failed");
        let child = start_crm(bin, &data)?;
        Ok(Crm { child, data })
    }
}

impl Drop for Crm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn crm_round(
    kit: &Path,
    bin: &Path,
    env: &[(&str, String)],
    lat_secs: u32,
) -> anyhow::Result<Figures> {
    let mut f = Figures::new();
    let server: SocketAddr = CRM_SIP.parse()?;
    {
        let c = Crm::start(kit, bin)?;
        let before = rss_kib(c.child.id())?;
        let n = register_many(server).context("crm: registering contacts")?;
        // The binding store writes to SQLite in the background: let it settle.
        std::thread::sleep(Duration::from_secs(2));
        let after = rss_kib(c.child.id())?;
        f.insert("contacts_registered".into(), n.to_string());
        f.insert("rss_before_kib".into(), before.to_string());
        f.insert("rss_after_kib".into(), after.to_string());
        f.insert(
            "bytes_per_contact".into(),
            (after.saturating_sub(before) * 1024 / n).to_string(),
        );
        latency_figures(server, lat_secs, &mut f)?;
    }
    let c = Crm::start(kit, bin)?;
    bench_figures(
        &bench(kit, CRM_SIP, &c.child.id().to_string(), env)?,
        &mut f,
    );
    Ok(f)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!(
        "crm-bench-sip-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
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

struct Latency {
    proxied_p50: u64,
    proxied_p99: u64,
    direct_p50: u64,
    direct_p99: u64,
}

/// Sends authenticated INVITEs at `rate`/s for `secs` to a registered raw UAS and measures
/// the time from our send to the UAS receiving that INVITE (two loopback hops plus the
/// proxy's work), and, as the floor, the same packet sent straight to the UAS (one hop).
/// The UAS answers 486 and the caller ACKs it, so every transaction ends at once.
fn invite_latency(server: SocketAddr, rate: u32, secs: u32) -> anyhow::Result<Latency> {
    let uas = UdpSocket::bind("127.0.0.1:0")?;
    uas.set_read_timeout(Some(Duration::from_secs(2)))?;
    let ua = uas.local_addr()?;
    let mut reg = Client::new(server)?;
    reg.register("1997", &[format!("Contact: <sip:1997@{ua}>")])?;
    let caller = Client::new(server)?;
    let l = caller.sock.local_addr()?;
    let inv = |n: u64, auth: &str| {
        format!(
            "INVITE sip:1997@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bKlat{n}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{server}>;tag=f{n}\r\nTo: <sip:1997@{server}>\r\nCall-ID: lat-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{l}>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let ack = |n: u64| {
        format!(
            "ACK sip:1997@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bKlat{n}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{server}>;tag=f{n}\r\nTo: <sip:1997@{server}>;tag=u\r\nCall-ID: lat-{n}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // One challenge (ACKed), then increasing nonce-counts on the same nonce.
    caller.sock.send_to(inv(0, "").as_bytes(), server)?;
    let chal = caller.recv()?;
    caller.sock.send_to(ack(0).as_bytes(), server)?;
    let realm = param(&chal, "Proxy-Authenticate", "realm");
    let nonce = param(&chal, "Proxy-Authenticate", "nonce");
    let uri = format!("sip:1997@{server}");
    let total = (rate * secs) as u64;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut proxied = Vec::with_capacity(total as usize);
    let mut direct = Vec::with_capacity(total as usize);
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    // The next message on `sock` that starts with `first` and carries `call_id`.
    let wait_for = |sock: &UdpSocket, buf: &mut [u8], first: &str, call_id: &str| loop {
        let k = sock
            .recv(buf)
            .with_context(|| format!("waiting for {first:?} of {call_id}"))?;
        let m = String::from_utf8_lossy(&buf[..k]).into_owned();
        if m.starts_with(first) && m.contains(&format!("Call-ID: {call_id}\r\n")) {
            return Ok::<String, anyhow::Error>(m);
        }
    };
    for n in 1..=total {
        let auth = invite_auth(&realm, &uri, &nonce, n);
        let msg = inv(n, &auth);
        let due = start + gap * n as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let call_id = format!("lat-{n}");
        let t0 = Instant::now();
        caller.sock.send_to(msg.as_bytes(), server)?;
        let req = match wait_for(&uas, &mut buf, "INVITE ", &call_id) {
            Ok(r) => r,
            Err(e) => {
                let got = caller.recv().unwrap_or_default();
                anyhow::bail!("{e:#}; the caller got instead: {got}");
            }
        };
        proxied.push(t0.elapsed().as_micros() as u64);
        // The floor: the same bytes over one loopback hop, no proxy.
        let t1 = Instant::now();
        caller.sock.send_to(msg.as_bytes(), ua)?;
        wait_for(&uas, &mut buf, "INVITE ", &call_id)?;
        direct.push(t1.elapsed().as_micros() as u64);
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
        wait_for(&caller.sock, &mut buf, "SIP/2.0 486", &call_id)?;
        caller.sock.send_to(ack(n).as_bytes(), server)?;
    }
    let pct = |v: &mut Vec<u64>, p: f64| {
        v.sort_unstable();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    Ok(Latency {
        proxied_p50: pct(&mut proxied, 0.5),
        proxied_p99: pct(&mut proxied, 0.99),
        direct_p50: pct(&mut direct, 0.5),
        direct_p99: pct(&mut direct, 0.99),
    })
}

/// The Proxy-Authorization header extension 1000 (secret `secret-1000`) sends with its
/// `n`-th INVITE under one nonce (nonce-count `n`, MD5, qop=auth).
pub(crate) fn invite_auth(realm: &str, uri: &str, nonce: &str, n: u64) -> String {
    let nc = format!("{n:08x}");
    let r = digest::response(
        Algorithm::Md5,
        "1000",
        realm,
        "secret-1000",
        "INVITE",
        uri,
        nonce,
        &nc,
        "c",
        "auth",
    );
    format!("Proxy-Authorization: Digest username=\"1000\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, cnonce=\"c\", nc={nc}, qop=auth\r\n")
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

/// Registers 9 contacts for each of 990 extensions (Kamailio's config allows 10 per
/// AOR); returns how many contacts that is.
fn register_many(server: SocketAddr) -> anyhow::Result<u64> {
    let mut c = Client::new(server)?;
    let mut n = 0u64;
    for user in 1000..1990u32 {
        let contacts: Vec<String> = (0..9)
            .map(|i| {
                format!(
                    "Contact: <sip:{user}@10.{}.{}.{i}:5060>",
                    user / 256,
                    user % 256
                )
            })
            .collect();
        c.register(&user.to_string(), &contacts)?;
        n += 9;
    }
    Ok(n)
}
