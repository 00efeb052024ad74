//! Off-box copies and continuous replication (issue 21) against real servers on loopback:
//! moto's S3 server (PyPI `moto[server]`: the S3 API for real, multipart included, one
//! pip install, no Docker) and Debian's OpenSSH sshd with its own config, port and host
//! key in a temp dir (no root login: as root the test uses a user `crmsftp` it creates).
//! The real `crm serve` takes orders through the API and is killed with SIGKILL.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crm::db::rusqlite;
use serde_json::{json, Value};

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what} starts");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto's S3 server on loopback with a bucket `crm`.
fn moto() -> (Killed, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with moto[server] (scripts/test installs it)");
    let k = Killed(child);
    wait_port(port, "moto");
    let st = Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("http://127.0.0.1:{port}/crm")])
        .status()
        .unwrap();
    assert!(st.success(), "bucket created");
    (k, port)
}

/// sshd on loopback: (process, port, host key line, user, client key file, folder).
struct Sftp {
    _p: Killed,
    port: u16,
    host_key: String,
    user: String,
    key: PathBuf,
    root: PathBuf,
}

fn sshd(dir: &Path) -> Sftp {
    let run = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let root_user = run(&["id", "-u"]) == "0";
    let user = if root_user {
        if Command::new("id")
            .arg("crmsftp")
            .output()
            .unwrap()
            .status
            .success()
        {
        } else {
            run(&["useradd", "--create-home", "--shell", "/bin/sh", "crmsftp"]);
        }
        // No password, but not "locked" ('!'), which sshd refuses without PAM.
        run(&["usermod", "-p", "*", "crmsftp"]);
        "crmsftp".to_string()
    } else {
        run(&["id", "-un"])
    };
    let host = dir.join("host_ed25519");
    let key = dir.join("client_ed25519");
    for k in [&host, &key] {
        run(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            k.to_str().unwrap(),
        ]);
    }
    let host_key = std::fs::read_to_string(host.with_extension("pub")).unwrap();
    let host_key = host_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::copy(key.with_extension("pub"), dir.join("authorized_keys")).unwrap();
    let root = dir.join("sftp-root");
    std::fs::create_dir_all(&root).unwrap();
    if root_user {
        run(&["chown", "crmsftp", root.to_str().unwrap()]);
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let port = free_port();
    let conf = dir.join("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nStrictModes no\nPermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nAllowUsers {user}\nSubsystem sftp internal-sftp\n",
            host.display(),
            dir.join("sshd.pid").display(),
            dir.join("authorized_keys").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (openssh-server; scripts/test installs it)");
    let p = Killed(child);
    wait_port(port, "sshd");
    Sftp {
        _p: p,
        port,
        host_key,
        user,
        key,
        root,
    }
}

/// A TCP relay the test can cut: the S3 target "goes away" and "comes back".
struct Relay {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let up2 = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inc, _)) = l.accept().await else {
                    return;
                };
                let up = up2.clone();
                tokio::spawn(async move {
                    if !up.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    else {
                        return;
                    };
                    let (mut ri, mut wi) = inc.split();
                    let (mut ro, mut wo) = out.split();
                    let a = tokio::io::copy(&mut ri, &mut wo);
                    let b = tokio::io::copy(&mut ro, &mut wi);
                    let cut = async {
                        while up.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! { _ = a => {}, _ = b => {}, _ = cut => {} }
                });
            }
        });
        Relay { port, up }
    }
    fn set(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}

fn config(s3_port: u16, sftp: &Sftp, folder: &Path, public: &str) -> String {
    format!(
        r#"log = "warn"
sip = "off"
[login]
argon2_memory_kib = 8192
argon2_iterations = 1
[api_limits]
per_token = 0
per_address = 0
[replication]
enabled = true
interval_ms = 500
snapshot_every_secs = 15
warn_lag_secs = 5
[backup.remote]
public_key = "{public}"
[[backup.remote.targets]]
name = "s3"
kind = "s3"
endpoint = "http://127.0.0.1:{s3_port}"
bucket = "crm"
prefix = "shop1"
access_key_id = "testing"
secret_access_key = "testing-secret"
[[backup.remote.targets]]
name = "nas"
kind = "sftp"
host = "127.0.0.1"
port = {}
user = "{}"
key_file = "{}"
host_key = "{}"
path = "{}/crm"
[[backup.remote.targets]]
name = "usb"
kind = "path"
path = "{}"
"#,
        sftp.port,
        sftp.user,
        sftp.key.display(),
        sftp.host_key,
        sftp.root.display(),
        folder.display()
    )
}

fn crm(data: &Path, cfg: &Path) -> Command {
    let mut c = Command::new(crm_bin());
    c.arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(cfg)
        .env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP");
    c
}

fn out(c: &mut Command) -> (bool, String) {
    let o = c.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn orders_in(db: &Path) -> HashSet<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let ids = c
        .prepare("SELECT id FROM orders")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ids
}

type Acked = Arc<Mutex<Vec<(i64, Instant, std::time::SystemTime)>>>;

/// Writers creating orders as fast as the server takes them until `until`.
async fn load(base: &str, token: &str, customer: i64, until: Instant, acked: Acked) {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (base, token, acked) = (base.to_string(), token.to_string(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            while Instant::now() < until {
                let r = c
                    .post(format!("{base}/api/v1/orders"))
                    .bearer_auth(&token)
                    .json(&json!({"customer_id": customer, "device_category": "phone", "brand": "Samsung", "model": "A52", "complaint": "Ekran singan"}))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status() != 201 {
                    return;
                }
                let v: Value = r.json().await.unwrap();
                acked.lock().unwrap().push((
                    v["id"].as_i64().unwrap(),
                    Instant::now(),
                    std::time::SystemTime::now(),
                ));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_box_is_rebuilt_from_every_target_to_the_last_seconds_and_to_a_moment() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, moto_port) = moto();
    let relay = Relay::start(moto_port).await;
    let sftp = sshd(dir.path());
    let folder = dir.path().join("usb");
    std::fs::create_dir_all(&folder).unwrap();

    // The owner's key pair: the private half stays here, never in the box's config.
    let keyfile = dir.path().join("owner.key");
    let data = dir.path().join("data");
    let cfg = dir.path().join("crm.toml");
    std::fs::write(&cfg, "").unwrap();
    let (ok, text) = out(crm(&data, &cfg)
        .args(["backup", "keygen", "--out"])
        .arg(&keyfile));
    assert!(ok, "{text}");
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .trim()
        .to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&cfg, config(relay.port, &sftp, &folder, &public)).unwrap();
    let shown = out(crm(&data, &cfg).args(["config", "show"])).1;
    assert!(!shown.contains("testing-secret"), "{shown}");

    let mut add = crm(&data, &cfg)
        .args([
            "user",
            "add",
            "admin",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"admin-pass-1\n")
        .unwrap();
    add.wait().unwrap();
    let (ok, token) = out(crm(&data, &cfg).args(["token", "create", "admin"]));
    assert!(ok, "{token}");
    let token = token.lines().next().unwrap().trim().to_string();

    let port = free_port();
    let server = crm(&data, &cfg)
        .args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Killed(server);
    wait_port(port, "crm");
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/api/v1/customers"))
        .bearer_auth(&token)
        .json(&json!({"name": "Aziza Karimova", "phones": ["+998901234567"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let customer = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // Phase A, a quiet moment, phase B with the S3 target cut off for a while.
    let acked: Acked = Arc::default();
    load(
        &base,
        &token,
        customer,
        Instant::now() + Duration::from_secs(5),
        acked.clone(),
    )
    .await;
    let phase_a: HashSet<i64> = acked.lock().unwrap().iter().map(|a| a.0).collect();
    assert!(phase_a.len() > 50, "orders were taken: {}", phase_a.len());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let moment = time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_secs(2)).await;

    relay.set(false);
    load(
        &base,
        &token,
        customer,
        Instant::now() + Duration::from_secs(12),
        acked.clone(),
    )
    .await;
    let during_outage = acked.lock().unwrap().len() - phase_a.len();
    assert!(
        during_outage > 50,
        "the server kept taking orders while S3 was away"
    );
    let status: Value =
        serde_json::from_slice(&std::fs::read(data.join("replication/status.json")).unwrap())
            .unwrap();
    let s3 = &status["targets"][0];
    assert!(s3["pending"].as_u64().unwrap() > 0, "{status}");
    assert!(s3["last_error"].is_string(), "{status}");
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lag: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("crm_replication_lag_seconds{target=\"s3\"} "))
        .expect("lag in /metrics")
        .parse()
        .unwrap();
    assert!(lag > 5.0, "{metrics}");
    let (_, doctor) = out(crm(&data, &cfg).arg("doctor"));
    assert!(
        doctor.contains("target s3") && doctor.contains("behind"),
        "{doctor}"
    );
    relay.set(true);
    // Catches up.
    eventually(Duration::from_secs(60), || {
        let p = data.join("replication/status.json");
        async move {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            (v["targets"][0]["pending"].as_u64()? <= 2 && v["targets"][0]["last_error"].is_null())
                .then_some(())
        }
    })
    .await
    .expect("the S3 target catches up when it comes back");

    load(
        &base,
        &token,
        customer,
        Instant::now() + Duration::from_secs(12),
        acked.clone(),
    )
    .await;
    let _ = server.0.kill(); // SIGKILL
    let killed = Instant::now();
    server.0.wait().unwrap();
    let acked = acked.lock().unwrap().clone();
    let must: HashSet<i64> = acked
        .iter()
        .filter(|a| killed.duration_since(a.1) > Duration::from_secs(10))
        .map(|a| a.0)
        .collect();
    assert!(must.len() > phase_a.len());

    for target in ["s3", "nas", "usb"] {
        let fresh = dir.path().join(format!("fresh-{target}"));
        let (ok, text) = out(crm(&fresh, &cfg)
            .args(["restore", "--from-remote", target, "--identity"])
            .arg(&keyfile));
        assert!(
            ok && text.contains("quick check passed"),
            "{target}: {text}"
        );
        let present = orders_in(&fresh.join("crm.db"));
        let lost: Vec<_> = must.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "{target}: lost {} acknowledged orders",
            lost.len()
        );
    }

    // To a moment: exactly the orders acknowledged before it.
    let fresh = dir.path().join("fresh-at");
    let at = moment
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (ok, text) = out(crm(&fresh, &cfg)
        .args([
            "restore",
            "--from-remote",
            "s3",
            "--at",
            &at,
            "--full-check",
        ])
        .arg("--identity")
        .arg(&keyfile));
    assert!(ok && text.contains("full check passed"), "{text}");
    assert_eq!(orders_in(&fresh.join("crm.db")), phase_a);

    // Without the private key there is no restore.
    let other = dir.path().join("other.key");
    out(crm(&data, &cfg)
        .args(["backup", "keygen", "--out"])
        .arg(&other));
    let (ok, text) = out(crm(&dir.path().join("fresh-x"), &cfg)
        .args(["restore", "--from-remote", "usb", "--identity"])
        .arg(&other));
    assert!(!ok && text.contains("damaged or was tampered"), "{text}");

    // A changed byte, or a cut object, is refused and nothing is written.
    let mut segs: Vec<PathBuf> = walk(&folder)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".seg.age"))
        .collect();
    segs.sort();
    let victim = segs.last().unwrap().clone();
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    for (what, bytes) in [
        ("flipped", bad),
        ("truncated", good[..good.len() - 20].to_vec()),
    ] {
        std::fs::write(&victim, &bytes).unwrap();
        let fresh = dir.path().join(format!("fresh-{what}"));
        let (ok, text) = out(crm(&fresh, &cfg)
            .args(["restore", "--from-remote", "usb", "--identity"])
            .arg(&keyfile));
        assert!(!ok, "{what}: {text}");
        assert!(text.contains("damaged or was tampered"), "{what}: {text}");
        assert!(!fresh.join("crm.db").exists(), "{what}: nothing written");
    }
    std::fs::write(&victim, &good).unwrap();
    // A segment removed after the newest snapshot breaks the chain.
    let mut all: Vec<PathBuf> = walk(victim.parent().unwrap());
    all.sort();
    let last_snap = all
        .iter()
        .rposition(|p| p.to_string_lossy().ends_with(".snap.age"))
        .unwrap();
    let after: Vec<_> = all[last_snap + 1..].to_vec();
    assert!(after.len() >= 2, "segments after the snapshot: {after:?}");
    let gap = after[after.len() / 2 - 1].clone();
    std::fs::remove_file(&gap).unwrap();
    let fresh = dir.path().join("fresh-gap");
    let (ok, text) = out(crm(&fresh, &cfg)
        .args(["restore", "--from-remote", "usb", "--identity"])
        .arg(&keyfile));
    assert!(!ok && text.contains("missing"), "{text}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
