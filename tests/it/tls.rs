//! HTTPS on the LAN (issue 16): `crm tls init` makes a local CA (key 0600) and the box's
//! certificate; `crm serve` then serves HTTPS with it, and a client that trusts only
//! that CA reaches the box by 127.0.0.1 and by localhost (not by a name the certificate
//! does not hold, and not without the CA). `crm tls show` prints the CA's fingerprint;
//! the CA certificate is downloadable at /tls/ca.crt. A certificate set in crm.toml wins.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::support::crm_bin;

fn crm(dir: &std::path::Path, config: &str) -> Command {
    let cfg = dir.join("test.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut c = Command::new(crm_bin());
    c.arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(cfg)
        .env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP");
    c
}

/// A `crm serve`, stopped when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `crm serve` and returns it with the address it logged.
fn serve(dir: &std::path::Path, config: &str) -> (Server, SocketAddr) {
    let mut child = Server(
        crm(dir, config)
            .args(["serve", "--http", "127.0.0.1:0", "--sip", "off"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server logs its address");
        if let Some(i) = line.find("http=") {
            let a = line[i + 5..].split_whitespace().next().unwrap();
            let a = a
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            return (child, a.parse().unwrap_or_else(|e| panic!("{a}: {e}")));
        }
    }
}

fn client(ca: Option<&[u8]>, name: &str, addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve(name, addr)
        .timeout(Duration::from_secs(10));
    if let Some(pem) = ca {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
    }
    b.build().unwrap()
}

const CONFIG: &str = "[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_init_makes_a_ca_and_crm_serve_uses_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No CA yet: show says so.
    let out = crm(d, CONFIG).args(["tls", "show"]).output().unwrap();
    assert!(!out.status.success());
    // Bad names are refused and make nothing.
    let out = crm(d, CONFIG)
        .args(["tls", "init", "--name", "bad name/../x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!d.join("tls/ca.key").exists());
    let out = crm(d, CONFIG).args(["tls", "init"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in ["tls/ca.key", "tls/box.key"] {
        let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let ca = std::fs::read(d.join("tls/ca.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut ca.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let fp = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(text.contains(&fp), "{text}");
    let out = crm(d, CONFIG).args(["tls", "show"]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && shown.contains(&fp), "{shown}");
    assert!(shown.contains("expires"), "{shown}");
    // Again: the CA is kept (devices that installed it keep trusting the box).
    let out = crm(d, CONFIG).args(["tls", "init"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read(d.join("tls/ca.pem")).unwrap(), ca);

    let (child, addr) = serve(d, CONFIG);
    let port = addr.port();
    for name in ["127.0.0.1", "localhost"] {
        let c = client(Some(&ca), "localhost", addr);
        let r = c
            .get(format!("https://{name}:{port}/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(r.status(), 200, "{name}");
    }
    // The CA download: the same certificate, as DER, for anyone.
    let r = client(Some(&ca), "localhost", addr)
        .get(format!("https://localhost:{port}/tls/ca.crt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-x509-ca-cert");
    assert_eq!(r.bytes().await.unwrap().as_ref(), der.as_ref());
    // The login page links to it (staff install it from there).
    let login = client(Some(&ca), "localhost", addr)
        .get(format!("https://localhost:{port}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("href=\"/tls/ca.crt\""), "{login}");
    // Not trusted without the CA, nor under a name it was not made for.
    let e = client(None, "localhost", addr)
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await;
    assert!(e.is_err(), "trusted without the CA");
    let e = client(Some(&ca), "elsewhere.example", addr)
        .get(format!("https://elsewhere.example:{port}/healthz"))
        .send()
        .await;
    assert!(e.is_err(), "trusted for a name not in the certificate");
    drop(child);

    // A certificate the admin sets in crm.toml wins over the local one.
    let own = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (d.join("own.pem"), d.join("own.key"));
    std::fs::write(&cert, own.cert.pem()).unwrap();
    std::fs::write(&key, own.signing_key.serialize_pem()).unwrap();
    // (top-level keys come before the [login] table)
    let config = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n{CONFIG}",
        cert.display(),
        key.display()
    );
    let (child, addr) = serve(d, &config);
    let port = addr.port();
    let r = client(Some(own.cert.pem().as_bytes()), "localhost", addr)
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = client(Some(&ca), "localhost", addr)
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await;
    assert!(
        e.is_err(),
        "the local CA's certificate served instead of the admin's"
    );
    drop(child);
}
