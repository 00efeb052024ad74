//! `crm doctor` with the real binary: a healthy running server, a missing backup, a port
//! taken by someone else, a damaged database.

use std::path::Path;
use std::process::{Command, Output};

use crate::ops::{stderr, stdout};
use crate::support::*;

fn doctor(data: &Path, config: &str) -> Output {
    // Inside the data dir, so it goes with the temp dir.
    let cfg = data.join("doctor-test.toml");
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

#[tokio::test]
async fn doctor_probes_the_bot_api_and_the_smtp_server_when_configured() {
    use crate::notify_peers::{free_port, BotStandIn, SmtpOptions, SmtpSink};
    let token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let app = TestApp::spawn().await;
    let data = app.data_dir();
    let cfg = format!("http = \"{}\"\nsip = \"off\"\n", app.running().http_addr);
    let run = || {
        let (data, cfg) = (data.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || stdout(&doctor(&data, &cfg)))
    };
    let set = |pairs: Vec<(&'static str, String)>| {
        app.running().ctx.db.write(move |c| {
            for (k, v) in &pairs {
                crm::db::settings::set(c, k, v, 0)?;
            }
            Ok(())
        })
    };

    // Nothing configured: nothing to probe, and it says so.
    let text = run().await.unwrap();
    assert!(
        line(&text, "telegram")[0].starts_with("ok") && text.contains("Telegram is off"),
        "{text}"
    );
    assert!(
        line(&text, "smtp")[0].starts_with("ok") && text.contains("e-mail is off"),
        "{text}"
    );

    // Both reachable.
    let bot = BotStandIn::start().await;
    let sink = SmtpSink::start(
        free_port(),
        SmtpOptions {
            mode: "plain",
            certs: None,
            auth: None,
        },
    );
    set(vec![
        ("telegram.token", token.into()),
        ("telegram.api_url", bot.url.clone()),
        ("smtp.host", "127.0.0.1".into()),
        ("smtp.port", sink.port.to_string()),
        ("smtp.security", "plain".into()),
        ("smtp.from", "shop@example.uz".into()),
    ])
    .await
    .unwrap();
    let text = run().await.unwrap();
    let tg = line(&text, "telegram")[0];
    assert!(
        tg.starts_with("ok") && tg.contains("answers getMe as @"),
        "{text}"
    );
    let smtp = line(&text, "smtp")[0];
    assert!(
        smtp.starts_with("ok") && smtp.contains("accepts a session"),
        "{text}"
    );
    assert!(!text.contains(token), "the token is never printed");

    // Neither reachable: failures, each with what to do.
    sink.stop();
    let closed = free_port();
    set(vec![(
        "telegram.api_url",
        format!("http://127.0.0.1:{closed}"),
    )])
    .await
    .unwrap();
    let text = run().await.unwrap();
    let tg = line(&text, "telegram")[0];
    assert!(
        tg.starts_with("FAIL") && tg.contains("not reachable"),
        "{text}"
    );
    let smtp = line(&text, "smtp")[0];
    assert!(smtp.starts_with("FAIL"), "{text}");
    assert!(
        text.contains("-> check host, port, security and login"),
        "{text}"
    );
    assert!(!text.contains(token), "the token is never printed");
    bot.stop().await;

    // The database holds those secrets: readable by others is a warning with the fix.
    use std::os::unix::fs::PermissionsExt;
    let chmod = |mode: u32| {
        for f in ["crm.db", "crm.db-wal", "crm.db-shm"] {
            let p = data.join(f);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    };
    chmod(0o644);
    let text = run().await.unwrap();
    let files = line(&text, "files")[0];
    assert!(
        files.starts_with("WARN") && files.contains("crm.db"),
        "{text}"
    );
    assert!(text.contains("-> chmod o-rwx"), "{text}");
    chmod(0o640);
    let text = run().await.unwrap();
    assert!(line(&text, "files")[0].starts_with("ok"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_probes_each_sip_trunk_with_options() {
    use crm::domain::telephony::NewTrunk;
    let app = TestApp::spawn_with_sip().await;
    let data = app.data_dir();
    let cfg = format!("http = \"{}\"\nsip = \"off\"\n", app.running().http_addr);
    let run = || {
        let (data, cfg) = (data.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || stdout(&doctor(&data, &cfg)))
    };
    let text = run().await.unwrap();
    assert!(line(&text, "trunk")[0].starts_with("ok"), "{text}");
    assert!(text.contains("no SIP trunk set"), "{text}");

    let trunk = |name: &str, port: u16| NewTrunk {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: port as u32,
        transport: "UDP".into(),
        username: "trunkuser".into(),
        secret: "trunk-secret".into(),
        register: false,
        expires: 600,
        caller_id: "+998712000000".into(),
        ..Default::default()
    };
    let tel = &app.running().ctx.telephony;
    // A provider that answers SIP (the box's own SIP server answers OPTIONS) and one
    // where nothing listens.
    tel.save_trunk(None, trunk("Answers", app.sip_addr().port()))
        .await
        .unwrap();
    let silent = crate::sipp::free_port();
    tel.save_trunk(None, trunk("Silent", silent)).await.unwrap();
    let text = run().await.unwrap();
    let lines = line(&text, "trunk");
    assert_eq!(lines.len(), 2, "{text}");
    let answers = lines.iter().find(|l| l.contains("Answers")).unwrap();
    assert!(
        answers.starts_with("ok") && answers.contains("answers SIP (200 to OPTIONS)"),
        "{text}"
    );
    let silent_line = lines.iter().find(|l| l.contains("Silent")).unwrap();
    assert!(
        silent_line.starts_with("FAIL") || silent_line.starts_with("fail"),
        "{text}"
    );
    assert!(
        silent_line.contains(&format!("127.0.0.1:{silent}")),
        "{text}"
    );
}
