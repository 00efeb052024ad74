//! Backup and restore with the real `crm` binary against a real, running server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crm::db::rusqlite;

use crate::support::*;

/// The real binary on `data_dir`, with a config file outside it (the machine's
/// /etc/crm/crm.toml must not leak in).
pub fn crm_on(data_dir: &Path) -> Command {
    let mut c = Command::new(crm_bin());
    let cfg = data_dir.with_extension("toml");
    if !cfg.exists() {
        std::fs::write(
            &cfg,
            "[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
        )
        .unwrap();
    }
    c.arg("--data-dir").arg(data_dir).arg("--config").arg(cfg);
    c.env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP");
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn run(cmd: Command) -> Output {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Every row of every table, in a stable order, as text: equal dumps = identical data.
fn dump(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = format!("{t}:");
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!("{v:?}|"));
                }
                Ok(line)
            })
            .unwrap();
        for row in rows {
            out.push(row.unwrap());
        }
    }
    out.push(format!(
        "user_version:{}",
        c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .unwrap()
    ));
    out
}

fn integrity(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Names and contents of everything in a folder tree (to show "nothing changed").
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

async fn put(app: &TestApp, key: String, value: String) {
    app.running()
        .ctx
        .db
        .write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO settings(key, value, updated_at) VALUES (?1, ?2, 0)",
                [key, value],
            )?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_write_load_restores_every_acknowledged_write() {
    let mut app = TestApp::spawn().await;
    let data = app.data_dir();
    std::fs::create_dir_all(data.join("attachments/2026")).unwrap();
    std::fs::write(data.join("attachments/2026/photo.jpg"), b"\xff\xd8 a photo").unwrap();

    // A steady write load: 4 writers, each write acknowledged (committed) before the next.
    let acked = Arc::new(AtomicI64::new(-1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    let next = Arc::new(AtomicI64::new(0));
    for _ in 0..4 {
        let db = app.running().ctx.db.clone();
        let (acked, stop, next) = (acked.clone(), stop.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) && mine.len() < 20_000 {
                let i = next.fetch_add(1, Ordering::Relaxed);
                db.write(move |c| {
                    c.execute(
                        "INSERT INTO settings(key, value, updated_at) VALUES (?1, 'x', ?2)",
                        rusqlite::params![format!("load-{i:08}"), i],
                    )?;
                    Ok(())
                })
                .await
                .unwrap();
                acked.fetch_max(i, Ordering::Relaxed);
                mine.push(i);
            }
            mine
        }));
    }
    eventually(Duration::from_secs(20), || {
        let n = acked.load(Ordering::Relaxed);
        async move { (n > 300).then_some(()) }
    })
    .await
    .expect("the write load runs");

    // Every write acknowledged by now must be in the backup.
    let acknowledged_before: Vec<i64> = {
        // `acked` is a max; with 4 writers some lower numbers may still be in flight, so
        // collect the exact set from a read of committed rows instead.
        let db = app.running().ctx.db.clone();
        db.read(|c| {
            let mut s = c.prepare("SELECT updated_at FROM settings WHERE key LIKE 'load-%'")?;
            let v = s
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await
        .unwrap()
    };
    let archive = app.dir.path().join("online.tar.zst");
    let mut cmd = crm_on(&data);
    cmd.arg("backup").arg("--out").arg(&archive);
    let out = run(cmd).await;
    let written_during = acked.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap().len();
    }
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&archive.display().to_string()),
        "the path is printed: {}",
        stdout(&out)
    );
    assert!(written_during > *acknowledged_before.iter().max().unwrap());
    assert!(
        total > acknowledged_before.len(),
        "writes went on during the backup"
    );

    // While the server runs, restore is refused and changes nothing.
    let before = tree(&data.join("attachments"));
    let mut cmd = crm_on(&data);
    cmd.arg("restore").arg(&archive);
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in use by a running crm"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(&data.join("attachments")), before);
    app.stop().await;

    // Restore into a fresh data dir: every write acknowledged before the backup began.
    let fresh = tempfile::tempdir().unwrap();
    let target = fresh.path().join("data");
    let mut cmd = crm_on(&target);
    cmd.arg("restore").arg(&archive);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = target.join("crm.db");
    assert_eq!(integrity(&restored), "ok");
    let c = rusqlite::Connection::open(&restored).unwrap();
    let present: std::collections::HashSet<i64> = c
        .prepare("SELECT updated_at FROM settings WHERE key LIKE 'load-%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let missing: Vec<_> = acknowledged_before
        .iter()
        .filter(|i| !present.contains(i))
        .collect();
    assert!(missing.is_empty(), "lost acknowledged writes: {missing:?}");
    assert_eq!(
        std::fs::read(target.join("attachments/2026/photo.jpg")).unwrap(),
        b"\xff\xd8 a photo"
    );
    // The admin account came along: the restored data dir serves sign-ins.
    let app2 = TestApp::spawn_config(test_config(&target), fresh).await;
    app2.login_admin().await;
}

#[tokio::test]
async fn restore_round_trip_is_identical_and_bad_archives_change_nothing() {
    let mut app = TestApp::spawn().await;
    let data = app.data_dir();
    std::fs::create_dir_all(data.join("attachments/a")).unwrap();
    std::fs::write(data.join("attachments/a/one.pdf"), b"%PDF one").unwrap();
    for i in 0..50 {
        put(&app, format!("k{i}"), format!("v{i}")).await;
    }
    let out = run({
        let mut c = crm_on(&data);
        c.arg("backup");
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let archive = crm::ops::backup::list(&data.join("backups"))
        .first()
        .expect("backup in the default folder")
        .path
        .clone();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o640,
            "a backup holds secrets: not readable by others"
        );
    }
    app.stop().await;
    let original = dump(&data.join("crm.db"));
    let original_files = tree(&data.join("attachments"));

    // Change things after the backup.
    let app = TestApp::spawn_config(test_config(&data), tempfile::tempdir().unwrap()).await;
    put(&app, "k1".into(), "changed".into()).await;
    put(&app, "extra".into(), "new".into()).await;
    std::fs::write(data.join("attachments/a/one.pdf"), b"changed").unwrap();
    std::fs::write(data.join("attachments/a/two.pdf"), b"new file").unwrap();
    let mut app = app;
    app.stop().await;
    let changed = dump(&data.join("crm.db"));
    assert_ne!(changed, original);
    let changed_files = tree(&data.join("attachments"));

    // A truncated and an altered copy are refused, and nothing changes.
    let bytes = std::fs::read(&archive).unwrap();
    let truncated = data.join("truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    // Altered copies: one flipped bit each, in the sealing frame, the middle and the last
    // bytes through the real command; many more positions in-process (bounded: 300).
    let len = bytes.len();
    let flip = |at: usize, bit: usize| {
        let mut b = bytes.clone();
        b[at] ^= 1 << (bit % 8);
        b
    };
    let mut altered = Vec::new();
    for (k, at) in [5, len / 2, len - 20].into_iter().enumerate() {
        let p = data.join(format!("altered-{k}.tar.zst"));
        std::fs::write(&p, flip(at, k + 6)).unwrap();
        altered.push(p);
    }
    let probe = data.join("probe.tar.zst");
    for k in 0..300 {
        let at = k * (len - 1) / 299;
        std::fs::write(&probe, flip(at, k)).unwrap();
        assert!(
            crm::ops::archive::verify(&probe, None).is_err(),
            "bit {} of byte {at} of {len} flipped and the archive was accepted",
            k % 8
        );
    }
    let garbage = data.join("garbage.tar.zst");
    std::fs::write(&garbage, b"not an archive at all").unwrap();
    for bad in altered.iter().chain([&truncated, &garbage]) {
        let out = run({
            let mut c = crm_on(&data);
            c.arg("restore").arg(bad);
            c
        })
        .await;
        assert!(!out.status.success(), "{} accepted", bad.display());
        assert!(
            stderr(&out).contains("not a valid crm archive, nothing was changed"),
            "{}",
            stderr(&out)
        );
        assert_eq!(dump(&data.join("crm.db")), changed);
        assert_eq!(tree(&data.join("attachments")), changed_files);
    }
    // An archive whose manifest lies about a checksum (a well-formed tar.zst) is refused.
    let forged = data.join("forged.tar.zst");
    forge_manifest(&archive, &forged);
    let out = run({
        let mut c = crm_on(&data);
        c.arg("restore").arg(&forged);
        c
    })
    .await;
    assert!(
        stderr(&out).contains("checksum does not match"),
        "{}",
        stderr(&out)
    );
    assert_eq!(dump(&data.join("crm.db")), changed);

    // The real one restores the data exactly as it was.
    let out = run({
        let mut c = crm_on(&data);
        c.arg("restore").arg(&archive);
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("kept in"), "{}", stdout(&out));
    assert_eq!(dump(&data.join("crm.db")), original);
    assert_eq!(tree(&data.join("attachments")), original_files);
}

/// Rewrites an archive with one attachment's bytes changed but the manifest kept, and
/// seals it again the way crm does (sha256 of the file with the seal counted as zeros, in
/// the skippable `CRMS` frame in front), so only the manifest check can catch it.
fn forge_manifest(src: &Path, dest: &Path) {
    use sha2::Digest;
    let bytes = std::fs::read(src).unwrap();
    let (head, seal_at) = (&bytes[..12], 12);
    assert_eq!(&head[8..], b"CRMS", "a crm .tar.zst");
    let mut input = tar::Archive::new(zstd::stream::read::Decoder::new(&bytes[..]).unwrap());
    let mut sealed = head.to_vec();
    sealed.extend_from_slice(&[0; 32]);
    let out = zstd::stream::write::Encoder::new(sealed, 1).unwrap();
    let mut b = tar::Builder::new(out);
    for e in input.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        if name.starts_with("attachments/") {
            body[0] ^= 1;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &name, body.as_slice()).unwrap();
    }
    let mut bytes = b.into_inner().unwrap().finish().unwrap();
    let seal = sha2::Sha256::digest(&bytes);
    bytes[seal_at..seal_at + 32].copy_from_slice(&seal);
    std::fs::write(dest, bytes).unwrap();
}

#[tokio::test]
async fn backups_page_creates_lists_and_downloads_for_admins_only() {
    let app = TestApp::spawn().await;
    app.add_user("oper", crm::model::Role::Operator, "oper-pass-1")
        .await;
    let admin = app.login_admin().await;
    let page = admin.get("/backups").await;
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(
        text.contains("id=\"backup-warning\""),
        "no backup yet: a warning"
    );

    let resp = admin.post_form("/backups", &[]).await;
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with("/backups?done=crm-backup-"), "{to}");
    let files = crm::ops::backup::list(&app.data_dir().join("backups"));
    assert_eq!(files.len(), 1);
    crm::ops::archive::verify(&files[0].path, None).expect("a valid archive");

    let text = admin.get(&to).await.text().await.unwrap();
    assert!(text.contains(&files[0].name));
    assert!(
        !text.contains("id=\"backup-warning\""),
        "fresh backup: no warning"
    );

    let dl = admin
        .get(&format!("/backups/{}/download", files[0].name))
        .await;
    assert_eq!(dl.status(), 200);
    assert_eq!(
        dl.headers()["content-type"].to_str().unwrap(),
        "application/zstd"
    );
    assert_eq!(
        dl.bytes().await.unwrap().to_vec(),
        std::fs::read(&files[0].path).unwrap()
    );
    // Only plain names of finished backups: no paths, no other files.
    std::fs::write(app.data_dir().join("crm-backup-x.tar.gz"), b"secret").unwrap();
    for bad in [
        "..%2Fcrm.db",
        "crm.db",
        "..%2Fcrm-backup-x.tar.gz",
        "nope.tar.gz",
    ] {
        let r = admin.get(&format!("/backups/{bad}/download")).await;
        assert_eq!(r.status(), 404, "{bad}");
    }

    let oper = app.login("oper", "oper-pass-1").await;
    assert_eq!(oper.get("/backups").await.status(), 403);
    assert_eq!(
        oper.get(&format!("/backups/{}/download", files[0].name))
            .await
            .status(),
        403
    );
}

/// A backup whose database fails to migrate: the restore puts the previous data back.
#[tokio::test]
async fn a_restore_that_fails_to_migrate_reverts_to_the_previous_data() {
    let mut app = TestApp::spawn().await;
    let data = app.data_dir();
    put(&app, "mine".into(), "kept".into()).await;
    std::fs::create_dir_all(data.join("attachments")).unwrap();
    std::fs::write(data.join("attachments/a.txt"), b"current").unwrap();
    app.stop().await;
    let before = dump(&data.join("crm.db"));
    let files_before = tree(&data.join("attachments"));

    // A well-formed, correctly checksummed archive whose database claims an older schema
    // than its tables have, so migrating it fails half-way (a table already exists).
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("old.db");
    crm::db::migrate_file(&db).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", 4).unwrap();
    c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(c);
    let archive = work.path().join("crm-backup-old.tar.zst");
    crm::ops::archive::write_files(&archive, &db, &work.path().join("none"), 4).unwrap();

    let out = run({
        let mut c = crm_on(&data);
        c.arg("restore").arg(&archive);
        c
    })
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("previous data was put back unchanged"),
        "{}",
        stderr(&out)
    );
    assert_eq!(dump(&data.join("crm.db")), before);
    assert_eq!(tree(&data.join("attachments")), files_before);
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("before-restore")
        })
        .collect();
    assert!(leftovers.is_empty());
}

/// A backup made by crm 0.1 (`.tar.gz`, `tests/fixtures/format1-backup.tar.gz`) sitting in
/// the backups folder is listed and restores through the real command.
#[tokio::test]
async fn a_crm_0_1_gzip_backup_is_listed_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let backups = data.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let old = backups.join("crm-backup-20261101-020000.tar.gz");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1-backup.tar.gz"),
        &old,
    )
    .unwrap();
    let listed = crm::ops::backup::list(&backups);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "crm-backup-20261101-020000.tar.gz");

    let out = run({
        let mut c = crm_on(&data);
        c.arg("restore").arg(&old);
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let c = rusqlite::Connection::open(data.join("crm.db")).unwrap();
    let number: String = c
        .query_row("SELECT number FROM sip_extensions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(number, "201");
    assert_eq!(
        std::fs::read(data.join("attachments/2026/screen.jpg")).unwrap(),
        b"photo"
    );
}
