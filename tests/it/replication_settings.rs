//! Issue 21: the off-box settings on the backups page. Targets are added, tested, changed
//! and removed and replication is switched on and off over HTTP while the server runs;
//! the settings land in the data directory's remote.toml (mode 0600), secrets are never
//! sent back in a page, an activity entry or an event; bad input is refused in the
//! reader's language and changes nothing; other roles are refused.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crm::model::Role;

use crate::support::*;

const SECRET: &str = "hunter2-S3CRET-never-shown";
const WAIT: Duration = Duration::from_secs(30);

fn overlay(app: &TestApp) -> std::path::PathBuf {
    app.data_dir().join("remote.toml")
}

fn general(key: &str, replication: bool) -> Vec<(&str, &str)> {
    let mut f = vec![
        ("public_key", key),
        ("bandwidth_kbps", "500"),
        ("interval_ms", "300"),
        ("snapshot_every_hours", "6"),
        ("retention_hours", "48"),
        ("warn_lag_secs", "60"),
    ];
    if replication {
        f.push(("replication", "1"));
    }
    f
}

async fn activity_details(app: &TestApp) -> String {
    app.running()
        .ctx
        .db
        .read(|c| {
            let mut st = c.prepare(
                "SELECT action || ' ' || entity || ' ' || detail FROM activity_log ORDER BY id",
            )?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?.join("\n"))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_page_edits_targets_and_replication_keeping_secrets() {
    let app = TestApp::spawn().await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let admin = app.login_admin().await;
    let oper = app.login("oper", "oper-pass-1").await;
    let mut events = app.running().ctx.events.subscribe();
    let (_, public) = crm::ops::remote::keygen();

    // The forms are on the page.
    let page = admin.get("/backups").await.text().await.unwrap();
    for id in ["id=\"remote-settings\"", "id=\"add-target\""] {
        assert!(page.contains(id), "{id} missing");
    }

    // Another role's URLs: refused, nothing written.
    for path in [
        "/backups/remote/settings",
        "/backups/remote/targets",
        "/backups/remote/targets/usb",
        "/backups/remote/targets/usb/delete",
        "/backups/remote/targets/usb/test",
    ] {
        let r = oper.post_form(path, &general(&public, false)).await;
        assert_eq!(r.status(), 403, "{path}");
    }
    assert!(!overlay(&app).exists());

    // A target before the owner's key: refused (copies leave encrypted to it).
    let folder = app.data_dir().join("usb-disk");
    std::fs::create_dir_all(&folder).unwrap();
    let folder_s = folder.to_string_lossy().into_owned();
    let r = admin
        .post_form(
            "/backups/remote/targets",
            &[("name", "usb"), ("kind", "path"), ("path", &folder_s)],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Set the owner's public key first"));
    assert!(!overlay(&app).exists());

    // Bad general settings, in Russian.
    admin
        .post_form("/lang", &[("lang", "ru"), ("back", "/backups")])
        .await;
    let mut bad = general("age1notakey", false);
    let r = admin.post_form("/backups/remote/settings", &bad).await;
    assert_eq!(r.status(), 422);
    assert!(
        r.text().await.unwrap().contains("Это не открытый ключ age"),
        "Russian refusal"
    );
    bad = general(&public, false);
    bad[2] = ("interval_ms", "5");
    let r = admin.post_form("/backups/remote/settings", &bad).await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("целое число от 100 до 60000"));
    admin
        .post_form("/lang", &[("lang", "en"), ("back", "/backups")])
        .await;
    assert!(!overlay(&app).exists(), "a refusal writes nothing");

    // The key (replication still off: no target).
    let r = admin
        .post_form("/backups/remote/settings", &general(&public, true))
        .await;
    assert_eq!(r.status(), 422, "replication without a target");
    let r = admin
        .post_form("/backups/remote/settings", &general(&public, false))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Off-box settings saved"));
    let mode = std::fs::metadata(overlay(&app))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "remote.toml holds secrets");

    // Bad targets: each refused, the file unchanged.
    let before = std::fs::read_to_string(overlay(&app)).unwrap();
    let long = "x".repeat(5000);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("name", "usb"), ("kind", "ftp"), ("path", &folder_s)],
        vec![("name", "bad name!"), ("kind", "path"), ("path", &folder_s)],
        vec![("name", "usb"), ("kind", "path"), ("path", "relative/dir")],
        vec![
            ("name", "s3"),
            ("kind", "s3"),
            ("access_key_id", "AK"),
            ("secret_access_key", SECRET),
        ],
        vec![
            ("name", "s3"),
            ("kind", "s3"),
            ("bucket", "b"),
            ("access_key_id", "AK"),
            ("secret_access_key", SECRET),
            ("endpoint", "ftp://x"),
        ],
        vec![
            ("name", "nas"),
            ("kind", "sftp"),
            ("host", "h"),
            ("user", "u"),
            ("path", "/p"),
            ("host_key", "not a key"),
            ("password", "pw"),
        ],
        vec![
            ("name", "nas"),
            ("kind", "sftp"),
            ("host", "h"),
            ("user", "u"),
            ("path", "/p"),
            ("port", "99999"),
            ("password", "pw"),
        ],
        vec![("name", "usb"), ("kind", "path"), ("path", &long)],
        vec![("name", "Сервер"), ("kind", "path"), ("path", &folder_s)],
    ];
    for c in &cases {
        let r = admin.post_form("/backups/remote/targets", c).await;
        assert_eq!(r.status(), 422, "{c:?}");
        let text = r.text().await.unwrap();
        assert!(text.contains("id=\"remote-error\""), "{c:?}");
        assert!(
            !text.contains(SECRET),
            "a refused secret is not echoed back"
        );
    }
    // Not a form at all.
    let r = admin
        .client
        .post(admin.url("/backups/remote/targets"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_csrf={}&name=%FF%FE&kind=path", admin.csrf))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(std::fs::read_to_string(overlay(&app)).unwrap(), before);

    // A folder target and an S3 target that cannot be reached.
    let r = admin
        .post_form(
            "/backups/remote/targets",
            &[
                ("name", "usb"),
                ("kind", "path"),
                ("path", &folder_s),
                ("keep", "5"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let endpoint = format!("http://127.0.0.1:{dead_port}");
    let r = admin
        .post_form(
            "/backups/remote/targets",
            &[
                ("name", "s3"),
                ("kind", "s3"),
                ("endpoint", &endpoint),
                ("bucket", "crm"),
                ("access_key_id", "AKIDEXAMPLE"),
                ("secret_access_key", SECRET),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("Target s3 added"));
    assert!(!text.contains(SECRET), "the secret is never shown");
    assert!(text.contains("set, hidden"));
    let saved = std::fs::read_to_string(overlay(&app)).unwrap();
    assert!(saved.contains(SECRET), "kept in remote.toml");
    let r = admin
        .post_form(
            "/backups/remote/targets",
            &[("name", "usb"), ("kind", "path"), ("path", &folder_s)],
        )
        .await;
    assert_eq!(r.status(), 422, "a second target named usb");

    // Test the connections: the folder works (its probe is gone again), S3 does not.
    let r = admin
        .post_form("/backups/remote/targets/usb/test", &[])
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Target usb works"));
    let left: Vec<_> = walk(&folder);
    assert!(left.iter().all(|p| !p.contains("crm-test/")), "{left:?}");
    let r = admin
        .post_form("/backups/remote/targets/s3/test", &[])
        .await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(text.contains("Target s3 cannot be used"), "{text}");
    assert!(!text.contains(SECRET));
    let r = admin
        .post_form("/backups/remote/targets/nosuch/test", &[])
        .await;
    assert_eq!(r.status(), 404);

    // Change the S3 target with the secret left empty: the stored one stays.
    let r = admin
        .post_form(
            "/backups/remote/targets/s3",
            &[
                ("kind", "s3"),
                ("endpoint", &endpoint),
                ("bucket", "crm2"),
                ("access_key_id", "AKIDEXAMPLE"),
                ("secret_access_key", ""),
                ("keep", "7"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let saved = std::fs::read_to_string(overlay(&app)).unwrap();
    assert!(saved.contains(SECRET) && saved.contains("crm2"), "{saved}");
    let cfg = app.running().ctx.remote.config();
    let s3 = cfg
        .backup
        .remote
        .targets
        .iter()
        .find(|t| t.name == "s3")
        .unwrap();
    assert_eq!(s3.keep, 7);
    assert_eq!(s3.secret_access_key.as_deref(), Some(SECRET));

    // The S3 target goes (it cannot be reached); replication on to the folder: the running
    // server starts replicating with the new settings, and the page shows the upload.
    let r = admin
        .post_form("/backups/remote/targets/s3/delete", &[])
        .await;
    assert_eq!(r.status(), 200);
    let r = admin
        .post_form("/backups/remote/settings", &general(&public, true))
        .await;
    assert_eq!(r.status(), 200);
    eventually(WAIT, || async {
        walk(&folder)
            .iter()
            .any(|p| p.contains("repl/") && p.ends_with(".snap.age"))
            .then_some(())
    })
    .await
    .expect("a snapshot reached the folder after replication was switched on");
    let shown = eventually(WAIT, || async {
        let page = admin.get("/backups").await.text().await.unwrap();
        let row = page.split("data-target=\"usb\"").nth(1)?.to_string();
        (!row[..row.find("</tr>")?].contains("never")).then_some(page)
    })
    .await
    .expect("the last upload is shown");
    assert!(shown.contains("class=\"lag\""), "the lag column stays");
    assert!(shown.contains("id=\"replication-state\""));
    assert!(!shown.contains(SECRET));

    // Nothing secret in the activity log or the events.
    let log = activity_details(&app).await;
    assert!(log.contains("backup_settings"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    let mut seen = 0;
    while let Ok(e) = events.try_recv() {
        let text = serde_json::to_string(&e.data).unwrap();
        assert!(!text.contains(SECRET), "{text}");
        if e.kind == "backups.settings" {
            seen += 1;
        }
    }
    assert!(seen >= 5, "{seen} settings events");

    // Removing the last target while replicating is refused; with replication off it goes.
    let r = admin
        .post_form("/backups/remote/targets/usb/delete", &[])
        .await;
    assert_eq!(r.status(), 422);
    let r = admin
        .post_form("/backups/remote/settings", &general(&public, false))
        .await;
    assert_eq!(r.status(), 200);
    let r = admin
        .post_form("/backups/remote/targets/usb/delete", &[])
        .await;
    assert_eq!(r.status(), 200);
    let r = admin
        .post_form("/backups/remote/targets/usb/delete", &[])
        .await;
    assert_eq!(r.status(), 404);
    assert!(app
        .running()
        .ctx
        .remote
        .config()
        .backup
        .remote
        .targets
        .is_empty());

    // What was saved is what a restarted server (and the CLI) reads.
    let cfg = crm::config::Config::load(
        None,
        &Default::default(),
        &crm::config::Overrides {
            data_dir: Some(app.data_dir()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        cfg.backup.remote.public_key.as_deref(),
        Some(public.as_str())
    );
    assert_eq!(cfg.backup.remote.bandwidth_kbps, 500);
    assert_eq!(cfg.replication.interval_ms, 300);
    assert_eq!(cfg.replication.retention_hours, 48);
    assert!(!cfg.replication.enabled);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}
