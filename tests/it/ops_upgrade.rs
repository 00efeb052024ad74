//! `crm upgrade` with the real binary: signed release archives (zipsign, ed25519) served
//! over loopback HTTP or given as a file, refusal of unsigned/tampered ones, `--rollback`,
//! and automatic rollback when the restarted service does not come up.
//!
//! How the "new version" is made: a test cannot build a second crm with another version
//! number, so the archive's binary is the real crm with a marker appended to the file
//! (an ELF runs unchanged with trailing bytes). It reports the same version, and its
//! release.json says so; the upgrade checks that the two agree before swapping, and the
//! test shows the swap by the file's bytes. Installing a version that is not newer needs
//! `--force`, which these tests pass. The signing key is a test key handed to the debug
//! binary through CRM_UPGRADE_TEST_KEY (compiled out of release builds).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::ops::{stderr, stdout};
use crate::support::*;

fn test_key(seed: u8) -> zipsign_api::SigningKey {
    zipsign_api::SigningKey::from_bytes(&[seed; 32])
}

fn key_hex(k: &zipsign_api::SigningKey) -> String {
    hex::encode(k.verifying_key().to_bytes())
}

/// A release archive `dir/name` holding `binary` and a release.json saying `version`,
/// signed with `key` when given.
fn release(
    dir: &Path,
    name: &str,
    version: &str,
    binary: &[u8],
    key: Option<&zipsign_api::SigningKey>,
) -> PathBuf {
    let unsigned = dir.join(format!("{name}.unsigned"));
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&unsigned).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        let info = serde_json::json!({"version": version, "target": "x86_64-unknown-linux-musl"})
            .to_string();
        for (entry, body, mode) in [
            ("crm", binary, 0o755),
            ("release.json", info.as_bytes(), 0o644),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(mode);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, entry, body).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }
    let out = dir.join(name);
    match key {
        Some(k) => {
            let mut input = std::fs::File::open(&unsigned).unwrap();
            let mut output = std::fs::File::create(&out).unwrap();
            zipsign_api::sign::copy_and_sign_tar(
                &mut input,
                &mut output,
                std::slice::from_ref(k),
                Some(name.as_bytes()),
            )
            .unwrap();
        }
        None => {
            std::fs::copy(&unsigned, &out).unwrap();
        }
    }
    out
}

/// Serves `files` (path -> body) over HTTP on 127.0.0.1 for up to `max` requests.
type Files = std::sync::Arc<std::sync::Mutex<HashMap<String, Vec<u8>>>>;

fn serve_files(files: Files, max: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let found = files.lock().unwrap().get(&path).cloned();
            let (status, body) = match found {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    base
}

/// An installed crm (a copy of the real binary) with a data dir and config.
struct Box {
    dir: tempfile::TempDir,
    exe: PathBuf,
    config: PathBuf,
    /// The binary as first installed.
    original: Vec<u8>,
}

impl Box {
    fn new(extra_config: &str) -> Box {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("crm");
        // Without debug info (as release builds ship): a quarter of a GB less to pack,
        // sign and check in every test.
        let stripped = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&exe)
            .arg(crm_bin())
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(crm_bin(), &exe).unwrap();
        }
        let data = dir.path().join("data");
        let config = dir.path().join("crm.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\nsip = \"off\"\n{extra_config}\n[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
                data.display()
            ),
        )
        .unwrap();
        let original = std::fs::read(&exe).unwrap();
        let b = Box {
            dir,
            exe,
            config,
            original,
        };
        let out = b.crm().arg("migrate").output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        b
    }

    fn crm(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--config").arg(&self.config);
        c.env_remove("CRM_HTTP")
            .env_remove("CRM_DATA_DIR")
            .env_remove("CRM_SIP")
            .env_remove("CRM_UPGRADE_TEST_KEY");
        c
    }

    fn upgrade(&self, key: &zipsign_api::SigningKey, args: &[&str]) -> Output {
        self.crm()
            .arg("upgrade")
            .args(args)
            .env("CRM_UPGRADE_TEST_KEY", key_hex(key))
            .output()
            .unwrap()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn backups(&self) -> usize {
        crm::ops::backup::list(&self.data().join("backups")).len()
    }
}

/// The crm first installed in `b` with a marker appended: "the new build".
fn new_build(b: &Box) -> Vec<u8> {
    let mut b = b.original.clone();
    b.extend_from_slice(b"\n-- crm upgrade test build --\n");
    b
}

#[test]
fn upgrade_over_http_from_a_signed_archive_then_roll_back() {
    let key = test_key(7);
    let work = tempfile::tempdir().unwrap();
    let version = crm::VERSION;
    let name = format!("crm-{version}-x86_64-unknown-linux-musl.tar.gz");
    // The served manifest's URL must be in the config before the box exists: reserve
    // the server first, fill in its files after.
    let files = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let base = serve_files(files.clone(), 20);
    let b = Box::new(&format!("[upgrade]\nurl = \"{base}/manifest.json\""));
    let archive = release(work.path(), &name, version, &new_build(&b), Some(&key));
    let manifest = serde_json::json!({
        "schema": 1,
        "releases": [{"version": version, "assets": [{"name": name, "url": name}]}]
    });
    {
        let mut f = files.lock().unwrap();
        f.insert(
            "/manifest.json".to_string(),
            manifest.to_string().into_bytes(),
        );
        f.insert(format!("/{name}"), std::fs::read(&archive).unwrap());
    }
    let old = std::fs::read(&b.exe).unwrap();

    // The same version is "up to date": --check and a plain upgrade change nothing.
    let out = b.upgrade(&key, &["--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));
    let out = b.upgrade(&key, &[]);
    assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));
    assert_eq!(std::fs::read(&b.exe).unwrap(), old);

    // --force installs it: downloaded, signature checked, backup first, swapped.
    let out = b.upgrade(&key, &["--force"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("upgraded crm {version} -> {version}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(&b.exe).unwrap(), new_build(&b));
    assert_eq!(
        std::fs::read(crm::ops::upgrade::previous_path(&b.exe)).unwrap(),
        old
    );
    assert_eq!(b.backups(), 1, "a backup is taken before the swap");
    let v = b.crm().arg("--version").output().unwrap();
    assert_eq!(stdout(&v).trim(), format!("crm {version}"));

    // --rollback goes back to the kept binary (and again forward).
    let out = b.crm().args(["upgrade", "--rollback"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&b.exe).unwrap(), old);
    assert_eq!(
        std::fs::read(crm::ops::upgrade::previous_path(&b.exe)).unwrap(),
        new_build(&b)
    );

    // A manifest announcing a newer version: --check says so.
    let newer = serde_json::json!({
        "schema": 1,
        "releases": [{"version": "99.0.0", "assets": [{"name": "crm-99.0.0-x86_64-unknown-linux-musl.tar.gz", "url": "x.tar.gz"}]}]
    });
    let base2 = serve_files(
        std::sync::Arc::new(std::sync::Mutex::new(HashMap::from([(
            "/m.json".to_string(),
            newer.to_string().into_bytes(),
        )]))),
        5,
    );
    std::fs::write(
        &b.config,
        std::fs::read_to_string(&b.config)
            .unwrap()
            .replace(&format!("{base}/manifest.json"), &format!("{base2}/m.json")),
    )
    .unwrap();
    let out = b.upgrade(&key, &["--check"]);
    assert!(
        stdout(&out).contains("99.0.0 is available"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn unsigned_tampered_foreign_and_lying_archives_are_refused_before_anything_changes() {
    let key = test_key(7);
    let other = test_key(9);
    let work = tempfile::tempdir().unwrap();
    let version = crm::VERSION;
    let name = format!("crm-{version}-x86_64-unknown-linux-musl.tar.gz");
    let b = Box::new("");
    let old = std::fs::read(&b.exe).unwrap();
    let unchanged = |b: &Box| {
        assert_eq!(std::fs::read(&b.exe).unwrap(), old);
        assert!(!crm::ops::upgrade::previous_path(&b.exe).exists());
        assert_eq!(b.backups(), 0);
    };

    // These are refused before the binary is ever run, or by its --version answer: a
    // small script stands in for crm (packing the real one costs time, proves nothing more).
    let payload = format!("#!/bin/sh\necho crm {version}\n").into_bytes();
    let d = work.path().join("unsigned");
    std::fs::create_dir_all(&d).unwrap();
    let unsigned = release(&d, &name, version, &payload, None);
    let d = work.path().join("foreign");
    std::fs::create_dir_all(&d).unwrap();
    let foreign = release(&d, &name, version, &payload, Some(&other));
    let d = work.path().join("tampered");
    std::fs::create_dir_all(&d).unwrap();
    let tampered = release(&d, &name, version, &payload, Some(&key));
    let mut bytes = std::fs::read(&tampered).unwrap();
    let i = bytes.len() - 100;
    bytes[i] ^= 0x01;
    std::fs::write(&tampered, bytes).unwrap();
    // Signed, but renamed: the signature covers the file name too.
    let d = work.path().join("renamed");
    std::fs::create_dir_all(&d).unwrap();
    let good = release(&d, &name, version, &payload, Some(&key));
    let renamed = d.join("crm-latest.tar.gz");
    std::fs::rename(&good, &renamed).unwrap();

    for bad in [&unsigned, &foreign, &tampered, &renamed] {
        let out = b.upgrade(&key, &["--force", "--from-file", bad.to_str().unwrap()]);
        assert!(!out.status.success(), "{} accepted", bad.display());
        assert!(
            stderr(&out).contains("not signed by the crm release key"),
            "{}: {}",
            bad.display(),
            stderr(&out)
        );
        unchanged(&b);
    }

    // Properly signed, but release.json claims a version its binary does not report.
    let d = work.path().join("lying");
    std::fs::create_dir_all(&d).unwrap();
    let lying_name = "crm-99.0.0-x86_64-unknown-linux-musl.tar.gz";
    let lying = release(&d, lying_name, "99.0.0", &payload, Some(&key));
    let out = b.upgrade(&key, &["--from-file", lying.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("reports version") && stderr(&out).contains("99.0.0"),
        "{}",
        stderr(&out)
    );
    unchanged(&b);

    // Without --force, an archive that is not newer is refused.
    let d = work.path().join("same");
    std::fs::create_dir_all(&d).unwrap();
    let same = release(&d, &name, version, &payload, Some(&key));
    let out = b.upgrade(&key, &["--from-file", same.to_str().unwrap()]);
    assert!(stderr(&out).contains("not newer"), "{}", stderr(&out));
    unchanged(&b);
}

/// A stand-in for `systemctl` (no systemd in the test container): `restart` stops the
/// running `crm serve` (by its pid) and starts the installed binary again, in the
/// background, as systemd would; `is-active` says whether one was started.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
state="$FAKE_STATE"
for a in "$@"; do last="$a"; done
case "$1" in
  is-active) [ -f "$state/pid" ] ;;
  restart)
    if [ -f "$state/pid" ]; then
      pid=$(cat "$state/pid")
      kill "$pid" 2>/dev/null
      n=0
      while kill -0 "$pid" 2>/dev/null && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done
    fi
    "$FAKE_EXE" --config "$FAKE_CONFIG" serve >>"$state/log" 2>&1 &
    echo $! > "$state/pid"
    ;;
  *) exit 0 ;;
esac
"#;

#[tokio::test]
async fn a_new_version_that_does_not_come_up_is_rolled_back() {
    let key = test_key(7);
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let b = Box::new(&format!("http = \"127.0.0.1:{port}\""));
    let old = std::fs::read(&b.exe).unwrap();
    let fake = b.dir.path().join("fakebin");
    let state = b.dir.path().join("state");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let systemctl = fake.join("systemctl");
    std::fs::write(&systemctl, FAKE_SYSTEMCTL).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = |c: &mut Command| {
        c.env("PATH", &path)
            .env("FAKE_STATE", &state)
            .env("FAKE_EXE", &b.exe)
            .env("FAKE_CONFIG", &b.config);
    };
    // The service runs the old version.
    let mut start = Command::new(&systemctl);
    start.arg("restart").arg("crm.service");
    env(&mut start);
    assert!(start.status().unwrap().success());
    let health = format!("http://127.0.0.1:{port}/healthz");
    let up = || {
        let health = health.clone();
        async move {
            let r = reqwest::get(&health).await.ok()?;
            (r.status() == 200).then_some(())
        }
    };
    eventually(Duration::from_secs(30), up)
        .await
        .expect("the old version serves");

    // A signed release whose binary answers --version but cannot serve.
    let version = crm::VERSION;
    let broken = format!(
        "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo \"crm {version}\"; exit 0; fi\necho 'broken release' >&2\nexit 1\n"
    );
    let name = format!("crm-{version}-x86_64-unknown-linux-musl.tar.gz");
    let archive = release(b.dir.path(), &name, version, broken.as_bytes(), Some(&key));
    let mut cmd = b.crm();
    cmd.arg("upgrade")
        .args(["--force", "--health-timeout", "4", "--from-file"])
        .arg(&archive)
        .env("CRM_UPGRADE_TEST_KEY", key_hex(&key));
    env(&mut cmd);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();

    let pid = std::fs::read_to_string(state.join("pid")).unwrap();
    let result = std::panic::catch_unwind(|| {
        assert!(!out.status.success(), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("did not come up") && stderr(&out).contains("rolled back"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("runs again"), "{}", stderr(&out));
        assert_eq!(
            std::fs::read(&b.exe).unwrap(),
            old,
            "old binary back in place"
        );
        assert_eq!(b.backups(), 1);
    });
    let served = eventually(Duration::from_secs(30), up).await;
    // Stop the server the fake systemctl started (by its own pid).
    let _ = Command::new("kill").arg(pid.trim()).status();
    result.unwrap();
    served.expect("the old version serves again after the rollback");
}
