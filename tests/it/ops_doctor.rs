//! `crm doctor` with the real binary: a healthy running server, a missing backup, a port
//! taken by someone else, a damaged database.

use std::path::Path;
use std::process::{Command, Output};

use crate::ops::{stderr, stdout};
use crate::support::*;

fn doctor(data: &Path, config: &str) -> Output {
    let cfg = data.with_extension("doctor.toml");
    std::fs::write(&cfg, config).unwrap();
    Command::new(crm_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(&cfg)
        .arg("doctor")
        .env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP")
        .output()
        .unwrap()
}

fn line<'a>(out: &'a str, check: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.get(6..).is_some_and(|r| r.starts_with(check)))
        .collect()
}

#[tokio::test]
async fn doctor_reports_health_backup_age_ports_and_damage() {
    let mut app = TestApp::spawn().await;
    let data = app.data_dir();
    let cfg = format!("http = \"{}\"\nsip = \"off\"\n", app.running().http_addr);

    let out = tokio::task::spawn_blocking({
        let (data, cfg) = (data.clone(), cfg.clone());
        move || doctor(&data, &cfg)
    })
    .await
    .unwrap();
    let text = stdout(&out);
    assert!(
        line(&text, "ports")[0].starts_with("ok") && line(&text, "ports")[0].contains("answers"),
        "{text}"
    );
    assert!(line(&text, "database")[0].starts_with("ok"), "{text}");
    assert!(line(&text, "backup")[0].starts_with("WARN"), "{text}");
    assert!(text.contains("-> crm backup"), "{text}");

    // After a backup, the backup check is fine.
    let b = crate::ops::crm_on(&data).arg("backup").output().unwrap();
    assert!(b.status.success(), "{}", stderr(&b));
    let out = tokio::task::spawn_blocking({
        let (data, cfg) = (data.clone(), cfg.clone());
        move || doctor(&data, &cfg)
    })
    .await
    .unwrap();
    let text = stdout(&out);
    assert!(line(&text, "backup")[0].starts_with("ok"), "{text}");
    app.stop().await;

    // Server stopped, and its HTTP port taken by another program.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = format!(
        "http = \"{}\"\nsip = \"off\"\n",
        squatter.local_addr().unwrap()
    );
    let out = doctor(&data, &taken);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(line(&text, "ports")[0].starts_with("FAIL"), "{text}");

    // A damaged database is a failure with the way out.
    let db = data.join("crm.db");
    let _ = std::fs::remove_file(data.join("crm.db-wal"));
    let _ = std::fs::remove_file(data.join("crm.db-shm"));
    let mut bytes = std::fs::read(&db).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..] {
        *b = 0x5A;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = doctor(&data, "http = \"127.0.0.1:0\"\nsip = \"off\"\n");
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(line(&text, "database")[0].starts_with("FAIL"), "{text}");
    assert!(text.contains("crm restore"), "{text}");

    // An invalid config is reported as such, not as a crash.
    let out = doctor(&data, "[backup]\ntime = \"25:99\"\n");
    assert!(!out.status.success());
    assert!(stdout(&out).starts_with("FAIL  config"), "{}", stdout(&out));
    assert!(stdout(&out).contains("backup.time"));
}
