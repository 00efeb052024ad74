//! The SIP registrar/proxy against real peers: SIPp (Debian `sip-tester`) drives the
//! scenarios kept in tests/sip/, plus a small raw client where SIPp cannot (SHA-256
//! digest, RFC 4475 torture messages, bans).

use std::net::SocketAddr;
use std::time::Duration;

use crm::sip::digest::{self, Algorithm};
use crm::sip::CallEvent;
use tokio::net::{TcpStream, UdpSocket};

use crate::sipp::*;
use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_register_call_cancel_404_480_over_udp_and_tcp_with_call_events() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let callers = import_users(&app, (1000..1010).chain([1990, 1998, 1999])).await;
    let callers = callers.to_str().unwrap();
    let mut events = app.running().ctx.call_events.subscribe();

    assert_ok(
        &sipp(sip, &["-sf", &scenario("options.xml"), "-m", "1"]).await,
        1,
        "OPTIONS udp",
    );
    assert_ok(
        &sipp(
            sip,
            &["-sf", &scenario("options.xml"), "-m", "1", "-t", "t1"],
        )
        .await,
        1,
        "OPTIONS tcp",
    );
    let reg = |t: &'static str, m: &'static str| {
        let mut a = vec![
            "-sf",
            scenario("register_auth.xml").leak(),
            "-inf",
            callers,
            "-m",
            m,
        ];
        if t == "tcp" {
            a.extend(["-t", "t1"]);
        }
        a
    };
    assert_ok(&sipp(sip, &reg("udp", "5")).await, 5, "REGISTER md5 udp");
    assert_ok(&sipp(sip, &reg("tcp", "3")).await, 3, "REGISTER md5 tcp");
    let regs = app.running().sip.as_ref().unwrap().registrations();
    assert!(regs
        .iter()
        .any(|r| r.extension == "1000" && r.transport == "UDP"));
    assert!(regs
        .iter()
        .any(|r| r.extension == "1000" && r.transport == "TCP"));
    assert!(regs.iter().all(|r| r.user_agent == "sipp-yardstick"));
    assert_ok(
        &sipp(
            sip,
            &[
                "-sf",
                &scenario("register_badpass.xml"),
                "-s",
                "1000",
                "-m",
                "1",
            ],
        )
        .await,
        1,
        "wrong secret gets 401",
    );

    // Callees: 1999 answers (3 calls), 1998 rings until cancelled (1 call).
    let (pa, pr) = (free_port(), free_port());
    let answer = uas("uas_answer.xml", pa, 3);
    let ring = uas("uas_ring.xml", pr, 1);
    for (ext, port) in [("1999", pa), ("1998", pr), ("1990", free_port())] {
        register_contact(sip, ext, port).await;
    }
    let call = |t: &'static str, m: &'static str| {
        let mut a = vec![
            "-sf",
            scenario("call_auth.xml").leak(),
            "-inf",
            callers,
            "-s",
            "1999",
            "-d",
            "150",
            "-m",
            m,
        ];
        if t == "tcp" {
            a.extend(["-t", "t1"]);
        }
        a
    };
    assert_ok(&sipp(sip, &call("udp", "2")).await, 2, "calls over UDP");
    assert_ok(&sipp(sip, &call("tcp", "1")).await, 1, "call over TCP");
    let cancel = [
        "-sf",
        &scenario("cancel.xml"),
        "-inf",
        callers,
        "-s",
        "1998",
        "-m",
        "1",
    ];
    assert_ok(&sipp(sip, &cancel).await, 1, "cancel before answer");

    // Unregister 1990 (Contact: *), then calls to it get 480; unknown numbers 404.
    let before = app.running().sip.as_ref().unwrap().registrations();
    assert!(before.iter().any(|r| r.extension == "1990"));
    let unreg = [
        "-sf",
        &scenario("unregister_all.xml"),
        "-s",
        "1990",
        "-ap",
        "secret-1990",
        "-m",
        "1",
    ];
    assert_ok(&sipp(sip, &unreg).await, 1, "unregister all");
    let after = app.running().sip.as_ref().unwrap().registrations();
    assert!(!after.iter().any(|r| r.extension == "1990"));
    for (sc, to) in [("invite_480.xml", "1990"), ("invite_404.xml", "9999")] {
        let args = ["-sf", &scenario(sc), "-inf", callers, "-s", to, "-m", "1"];
        assert_ok(&sipp(sip, &args).await, 1, sc);
    }
    let a = wait_sipp(answer).await;
    assert_eq!((a.ok, a.failed), (3, 0), "answering callee: {}", a.out);
    let r = wait_sipp(ring).await;
    assert_eq!((r.ok, r.failed), (1, 0), "ringing callee: {}", r.out);

    // Call events: 3 answered and completed calls to 1999, one cancelled call to 1998,
    // the 480 to 1990 and the 404 to 9999 (no phone rang, but each attempt is logged),
    // each call's events under one call id, in order.
    let evs = drain(&mut events);
    let mut by_call: std::collections::BTreeMap<String, Vec<CallEvent>> = Default::default();
    for e in evs {
        let id = match &e {
            CallEvent::Ringing { call_id, .. }
            | CallEvent::Answered { call_id, .. }
            | CallEvent::Ended { call_id, .. }
            | CallEvent::Parked { call_id, .. }
            | CallEvent::Unparked { call_id, .. } => call_id.clone(),
        };
        by_call.entry(id).or_default().push(e);
    }
    let mut completed = 0;
    let mut cancelled = 0;
    let mut refused = 0;
    for (id, evs) in &by_call {
        match evs.as_slice() {
            [CallEvent::Ringing {
                extensions,
                from,
                to,
                ..
            }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, talk_ms, .. }] => {
                assert_eq!(extensions, &vec!["1999".to_string()], "{id}");
                assert_eq!(to, "1999");
                assert!(from.starts_with("100"), "caller number: {from}");
                assert_eq!(extension, "1999");
                assert_eq!(cause, "completed");
                assert!(*talk_ms >= 100, "talk time {talk_ms} ms");
                completed += 1;
            }
            [CallEvent::Ringing { extensions, to, .. }, CallEvent::Ended { cause, talk_ms, .. }]
                if extensions.is_empty() =>
            {
                let want = if to == "1990" {
                    "status_480"
                } else {
                    "status_404"
                };
                assert!(to == "1990" || to == "9999", "{to}");
                assert_eq!(cause, want);
                assert_eq!(*talk_ms, 0);
                refused += 1;
            }
            [CallEvent::Ringing { extensions, .. }, CallEvent::Ended { cause, talk_ms, .. }] => {
                assert_eq!(extensions, &vec!["1998".to_string()]);
                assert_eq!(cause, "cancelled");
                assert_eq!(*talk_ms, 0);
                cancelled += 1;
            }
            other => panic!("unexpected events for {id}: {other:?}"),
        }
    }
    assert_eq!((completed, cancelled, refused), (3, 1, 2), "{by_call:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_parallel_fork_and_ring_group_cancel_the_others() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let callers = import_users(&app, 1000..1003).await;
    let callers = callers.to_str().unwrap();
    import_users(&app, 1500..1504).await;
    let tel = &app.running().ctx.telephony;
    tel.save_group(
        None,
        crm::domain::telephony::NewGroup {
            number: "100".into(),
            name: "Front desk".into(),
            strategy: crm::sip::Strategy::RingAll,
            member_timeout_secs: 20,
            overall_timeout_secs: 30,
            members: vec!["1501".into(), "1502".into(), "1503".into()],
            branch_id: None,
        },
    )
    .await
    .unwrap();
    let mut events = app.running().ctx.call_events.subscribe();

    // 1500 has two contacts: one answers, the other must get CANCEL "completed elsewhere".
    // Group 100 = 1501 (answers), 1502 and 1503 (ring, then CANCEL).
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let kids = vec![
        uas("uas_answer.xml", ports[0], 1),
        uas("uas_ring_elsewhere.xml", ports[1], 1),
        uas("uas_answer.xml", ports[2], 1),
        uas("uas_ring_elsewhere.xml", ports[3], 1),
        uas("uas_ring_elsewhere.xml", ports[4], 1),
    ];
    for (ext, port) in [
        ("1500", ports[0]),
        ("1500", ports[1]),
        ("1501", ports[2]),
        ("1502", ports[3]),
        ("1503", ports[4]),
    ] {
        register_contact(sip, ext, port).await;
    }
    let regs = app.running().sip.as_ref().unwrap().registrations();
    assert_eq!(regs.iter().filter(|r| r.extension == "1500").count(), 2);
    for target in ["1500", "100"] {
        let args = [
            "-sf",
            &scenario("call_auth.xml"),
            "-inf",
            callers,
            "-s",
            target,
            "-d",
            "100",
            "-m",
            "1",
        ];
        assert_ok(&sipp(sip, &args).await, 1, target);
    }
    for (i, k) in kids.into_iter().enumerate() {
        let r = wait_sipp(k).await;
        assert_eq!((r.ok, r.failed), (1, 0), "callee {i}: {}", r.out);
    }
    let evs = drain(&mut events);
    let ringing: Vec<&CallEvent> = evs
        .iter()
        .filter(|e| matches!(e, CallEvent::Ringing { .. }))
        .collect();
    assert!(
        matches!(ringing[1], CallEvent::Ringing { extensions, to, .. }
        if extensions == &vec!["1501".to_string(), "1502".into(), "1503".into()] && to == "100")
    );
    let answered: Vec<String> = evs
        .iter()
        .filter_map(|e| match e {
            CallEvent::Answered { extension, .. } => Some(extension.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(answered, vec!["1500".to_string(), "1501".into()]);
}

// ----- a raw client for what SIPp cannot do ---------------------------------------------

struct Raw {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Raw {
    async fn new(server: SocketAddr) -> Raw {
        Raw {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&self, msg: &str) -> Option<String> {
        self.sock
            .send_to(msg.as_bytes(), self.server)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_millis(1500), self.sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn register(&self, user: &str, cseq: u32, auth: Option<&str>) -> String {
        let l = self.local();
        let s = self.server;
        format!(
            "REGISTER sip:{s} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bK{user}x{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{s}>;tag=t{cseq}\r\nTo: <sip:{user}@{s}>\r\n\
             Call-ID: raw-{user}-{l}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{l}>\r\n\
             Expires: 600\r\nUser-Agent: raw-test\r\n{}Content-Length: 0\r\n\r\n",
            auth.map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default()
        )
    }
}

fn code(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn challenge_param(resp: &str, name: &str) -> String {
    let line = resp
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .expect("a challenge");
    let key = format!("{name}=");
    let at = line.find(&key).expect(name) + key.len();
    line[at..]
        .trim_start_matches('"')
        .split(['"', ','])
        .next()
        .unwrap()
        .to_string()
}

fn authorization(resp: &str, user: &str, secret: &str, server: SocketAddr, nc: &str) -> String {
    let realm = challenge_param(resp, "realm");
    let nonce = challenge_param(resp, "nonce");
    let alg = if challenge_param(resp, "algorithm") == "SHA-256" {
        Algorithm::Sha256
    } else {
        Algorithm::Md5
    };
    let uri = format!("sip:{server}");
    let r = digest::response(
        alg, user, &realm, secret, "REGISTER", &uri, &nonce, nc, "abc", "auth",
    );
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{r}\", algorithm={}, cnonce=\"abc\", nc={nc}, qop=auth",
        alg.name()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_sha256_digest_replay_restart_and_ban() {
    let mut app = TestApp::spawn_with_sip().await;
    import_users(&app, 2000..2003).await;
    // Offer SHA-256 first (RFC 8760), MD5 second; takes effect on restart.
    app.running()
        .ctx
        .db
        .write(|c| crm::db::settings::set(c, "sip.digest", "SHA-256,MD5", 0))
        .await
        .unwrap();
    // Register 2000 with MD5 via SIPp before the restart.
    let port = free_port().to_string();
    let args = [
        "-sf",
        &scenario("register_callee.xml"),
        "-s",
        "2000",
        "-ap",
        "secret-2000",
        "-key",
        "cport",
        &port,
        "-key",
        "expires",
        "3600",
        "-m",
        "1",
    ];
    assert_ok(
        &sipp(app.sip_addr(), &args).await,
        1,
        "register before restart",
    );

    app.restart(|c| c.sip = "127.0.0.1:0".into()).await;
    let regs = app.running().sip.as_ref().unwrap().registrations();
    assert!(
        regs.iter()
            .any(|r| r.extension == "2000" && r.contact.ends_with(&format!(":{port}"))),
        "binding survives the restart: {regs:?}"
    );

    let raw = Raw::new(app.sip_addr()).await;
    let server = app.sip_addr();
    let r1 = raw.send(&raw.register("2001", 1, None)).await.unwrap();
    assert_eq!(code(&r1), 401);
    let chals: Vec<&str> = r1
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect();
    assert_eq!(chals.len(), 2, "{r1}");
    assert!(chals[0].contains("algorithm=SHA-256") && chals[1].contains("algorithm=MD5"));
    let auth = authorization(&r1, "2001", "secret-2001", server, "00000001");
    assert!(auth.contains("SHA-256"));
    let ok = raw
        .send(&raw.register("2001", 2, Some(&auth)))
        .await
        .unwrap();
    assert_eq!(code(&ok), 200, "{ok}");
    assert!(
        ok.contains("Contact: <sip:2001@"),
        "200 lists the binding: {ok}"
    );
    // Same nonce and nonce-count again: a replay, refused (new branch = new request).
    let replay = raw
        .send(&raw.register("2001", 3, Some(&auth)))
        .await
        .unwrap();
    assert_eq!(code(&replay), 401, "replayed nc refused");
    // The next nonce-count on the same nonce is fine.
    let auth2 = authorization(&r1, "2001", "secret-2001", server, "00000002");
    let ok2 = raw
        .send(&raw.register("2001", 4, Some(&auth2)))
        .await
        .unwrap();
    assert_eq!(code(&ok2), 200, "{ok2}");

    // One extension set to MD5 only (a baresip phone, which fails on SHA-256) is offered
    // MD5 alone while the box offers SHA-256 first.
    app.running()
        .ctx
        .telephony
        .set_extension_digest(None, "2000", "MD5")
        .await
        .unwrap();
    let r = raw.send(&raw.register("2000", 50, None)).await.unwrap();
    let chals: Vec<&str> = r
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect();
    assert_eq!(chals.len(), 1, "{r}");
    assert!(chals[0].contains("algorithm=MD5"), "{r}");

    // Expires below the minimum: 423 with Min-Expires.
    let brief = raw
        .register(
            "2001",
            5,
            Some(&authorization(
                &r1,
                "2001",
                "secret-2001",
                server,
                "00000003",
            )),
        )
        .replace("Expires: 600", "Expires: 5");
    let r = raw.send(&brief).await.unwrap();
    assert_eq!(code(&r), 423, "{r}");
    assert!(r.contains("Min-Expires: 60"));

    // Wrong secrets: 401 each time, then the source is banned (silence), listed, and
    // released. The replay above proved the secret, so it is not one of the 10 failures.
    let handle = app.running().sip.as_ref().unwrap();
    for i in 0..10u32 {
        let bad = authorization(&r1, "2002", "wrong", server, &format!("{:08x}", i + 1));
        let r = raw
            .send(&raw.register("2002", 10 + i, Some(&bad)))
            .await
            .expect("answered until banned");
        assert_eq!(code(&r), 401);
    }
    assert!(
        raw.send(&raw.register("2002", 30, None)).await.is_none(),
        "banned"
    );
    // Only that extension from that address: its neighbour there is still served.
    assert_eq!(
        code(&raw.send(&raw.register("2001", 40, None)).await.unwrap()),
        401
    );
    let bans = handle.bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].address, "127.0.0.1");
    assert_eq!(bans[0].extension.as_deref(), Some("2002"));
    assert!(handle.release_ban("127.0.0.1".parse().unwrap()));
    let r = raw.send(&raw.register("2002", 31, None)).await.unwrap();
    assert_eq!(code(&r), 401, "answered again after release");
}

/// Expected handling per RFC 4475 message (torture/manifest.tsv): the set of acceptable
/// reply codes (0 = no reply / dropped). Most valid messages are for example.com, a
/// foreign domain, so 403 is the right answer for a parsed message there.
fn torture_expect(file: &str) -> &'static [u16] {
    match file {
        f if f.contains("unreason")
            || f.contains("noreason")
            || f.contains("scalarlg")
            || f.contains("bigcode")
            || f.contains("bcast") =>
        {
            &[0]
        }
        f if f.contains("badinv01")
            || f.contains("clerr")
            || f.contains("ncl")
            || f.contains("scalar02")
            || f.contains("mismatch01")
            || f.contains("insuf")
            || f.contains("multi01")
            || f.contains("mcl01") =>
        {
            &[400]
        }
        f if f.contains("badvers") => &[505],
        f if f.contains("mismatch02") => &[400, 501],
        f if f.contains("unkscm") || f.contains("novelsc") => &[416],
        // reject/may: 400, or parsed and refused as foreign (never forwarded)
        f if f.contains("3.1.2.") => &[400, 403],
        f if f.contains("wsinv") => &[481, 403],
        f if f.contains("badbranch") => &[400, 403],
        f if f.contains("unksm2") => &[400, 403],
        _ => &[403],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_rfc4475_torture_over_udp_and_tcp() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sip/torture");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 49);
    let raw = Raw::new(sip).await;
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(f).unwrap();
        let want = torture_expect(&name);
        // UDP: one datagram.
        raw.sock.send_to(&bytes, sip).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let got = match tokio::time::timeout(
            Duration::from_millis(if want == [0] { 300 } else { 1500 }),
            raw.sock.recv(&mut buf),
        )
        .await
        {
            Ok(Ok(n)) => code(&String::from_utf8_lossy(&buf[..n])),
            _ => 0,
        };
        if !want.contains(&got) {
            failures.push(format!("UDP {name}: got {got}, want {want:?}"));
        }
        // TCP: a fresh connection; framing errors may close it without a reply.
        let mut s = TcpStream::connect(sip).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(&bytes).await.unwrap();
        let mut tbuf = vec![0u8; 65536];
        let tgot = match tokio::time::timeout(Duration::from_millis(300), s.read(&mut tbuf)).await {
            Ok(Ok(n)) if n > 0 => code(&String::from_utf8_lossy(&tbuf[..n])),
            _ => 0,
        };
        // On a stream, a missing Content-Length means 0 (inv2543's body then is garbage
        // that closes the connection), and clerr waits for more bytes.
        let tcp_ok = want.contains(&tgot) || tgot == 0 || (tgot == 400 && want.contains(&403));
        if !tcp_ok {
            failures.push(format!("TCP {name}: got {tgot}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Still answering.
    let opt = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKalive\r\nMax-Forwards: 70\r\n\
         From: <sip:x@{sip}>;tag=1\r\nTo: <sip:{sip}>\r\nCall-ID: alive\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        l = raw.local()
    );
    assert_eq!(code(&raw.send(&opt).await.unwrap()), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_sequential_ring_group_moves_on_after_member_timeout() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let callers = import_users(&app, 1000..1002).await;
    let callers = callers.to_str().unwrap();
    import_users(&app, 1600..1603).await;
    app.running()
        .ctx
        .telephony
        .save_group(
            None,
            crm::domain::telephony::NewGroup {
                number: "200".into(),
                name: "Workshop".into(),
                strategy: crm::sip::Strategy::Sequential,
                member_timeout_secs: 1,
                overall_timeout_secs: 20,
                members: vec!["1601".into(), "1602".into()],
                branch_id: None,
            },
        )
        .await
        .unwrap();
    let mut events = app.running().ctx.call_events.subscribe();
    let (p1, p2) = (free_port(), free_port());
    // 1601 only rings (then gets CANCEL when its turn ends), 1602 answers.
    let ring = uas("uas_ring.xml", p1, 1);
    let answer = uas("uas_answer.xml", p2, 1);
    for (ext, port) in [("1601", p1), ("1602", p2)] {
        register_contact(sip, ext, port).await;
    }
    let args = [
        "-sf",
        &scenario("call_auth.xml"),
        "-inf",
        callers,
        "-s",
        "200",
        "-d",
        "100",
        "-m",
        "1",
    ];
    assert_ok(&sipp(sip, &args).await, 1, "call to the sequential group");
    let r = wait_sipp(ring).await;
    assert_eq!((r.ok, r.failed), (1, 0), "first member: {}", r.out);
    let a = wait_sipp(answer).await;
    assert_eq!((a.ok, a.failed), (1, 0), "second member: {}", a.out);
    let evs = drain(&mut events);
    let rung: Vec<Vec<String>> = evs
        .iter()
        .filter_map(|e| match e {
            CallEvent::Ringing { extensions, .. } => Some(extensions.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rung,
        vec![vec!["1601".to_string()], vec!["1602".to_string()]]
    );
    assert!(evs
        .iter()
        .any(|e| matches!(e, CallEvent::Answered { extension, .. } if extension == "1602")));
    assert!(evs
        .iter()
        .any(|e| matches!(e, CallEvent::Ended { cause, .. } if cause == "completed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telephony_api_extensions_groups_registrations_and_bans() {
    let app = TestApp::spawn_with_sip().await;
    app.add_user("op", crm::model::Role::Operator, "operator-pass-1")
        .await;
    let admin = app.api_token("admin").await;
    let op = app.api_token("op").await;
    let http = reqwest::Client::new();
    let url = |p: &str| app.url(p);

    // Operators may not manage telephony.
    let r = http
        .get(url("/api/v1/telephony/extensions"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Create with a generated secret: strong, shown once, never listed.
    let r = http
        .post(url("/api/v1/telephony/extensions"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"number": "301", "display_name": "Front desk", "username": "op"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 20);
    assert_eq!(created["user"], "301");
    let list: serde_json::Value = http
        .get(url("/api/v1/telephony/extensions"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["number"], "301");
    assert_eq!(list[0]["username"], "op");
    assert_eq!(
        list[0]["digest"], "",
        "the box-wide digest setting by default"
    );
    assert!(!list.to_string().contains(&secret), "secret never listed");
    // The digest algorithms offered to one extension's phone (issue 15): a choice from
    // the list, on an extension that exists; "default" goes back to the box's.
    for (number, digest, status) in [
        ("301", "SHA-512", 422),
        ("301", "MD5,MD5", 422),
        ("399", "MD5", 404),
        ("301", "sha-256, md5", 204),
        ("301", "default", 204),
        ("301", "MD5", 204),
    ] {
        let r = http
            .put(url(&format!(
                "/api/v1/telephony/extensions/{number}/digest"
            )))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "digest": digest }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{number} {digest}");
    }
    let r = http
        .put(url("/api/v1/telephony/extensions/301/digest"))
        .bearer_auth(&op)
        .json(&serde_json::json!({ "digest": "MD5" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "operators may not");
    let list: serde_json::Value = http
        .get(url("/api/v1/telephony/extensions"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["digest"], "MD5");
    // Bad input: clear errors, nothing written.
    for (body, status) in [
        (serde_json::json!({"number": "301"}), 409),
        (serde_json::json!({"number": "1"}), 422),
        (serde_json::json!({"number": "302", "secret": "short"}), 422),
        (
            serde_json::json!({"number": "303", "username": "nobody"}),
            422,
        ),
    ] {
        let r = http
            .post(url("/api/v1/telephony/extensions"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
    }
    let r = http
        .post(url("/api/v1/telephony/extensions"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let n = app.running().ctx.telephony.list_extensions().await.unwrap();
    assert_eq!(n.len(), 1);

    // Ring groups: bad strategy refused; a good one listed.
    let r = http
        .put(url("/api/v1/telephony/groups"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"number": "100", "strategy": "loudly", "members": ["301"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = http
        .put(url("/api/v1/telephony/groups"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"number": "100", "strategy": "sequential", "members": ["301"], "member_timeout_secs": 15}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let groups: serde_json::Value = http
        .get(url("/api/v1/telephony/groups"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(groups[0]["members"], serde_json::json!(["301"]));
    assert_eq!(groups[0]["strategy"], "sequential");

    // The phone registers with the secret it was given; the API lists it live.
    let raw = Raw::new(app.sip_addr()).await;
    let server = app.sip_addr();
    let chal = raw.send(&raw.register("301", 1, None)).await.unwrap();
    let auth = authorization(&chal, "301", &secret, server, "00000001");
    let ok = raw
        .send(&raw.register("301", 2, Some(&auth)))
        .await
        .unwrap();
    assert_eq!(code(&ok), 200, "{ok}");
    let regs: serde_json::Value = http
        .get(url("/api/v1/telephony/registrations"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(regs[0]["extension"], "301");
    assert_eq!(regs[0]["transport"], "UDP");
    assert_eq!(regs[0]["user_agent"], "raw-test");

    // Ten wrong answers ban the extension from the address; the API lists (with the
    // extension) and releases the ban.
    for i in 0..10u32 {
        let bad = authorization(
            &chal,
            "301",
            "wrong-secret",
            server,
            &format!("{:08x}", i + 2),
        );
        raw.send(&raw.register("301", 10 + i, Some(&bad))).await;
    }
    let bans: serde_json::Value = http
        .get(url("/api/v1/telephony/bans"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bans[0]["address"], "127.0.0.1");
    assert_eq!(bans[0]["extension"], "301");
    let r = http
        .post(url("/api/v1/telephony/bans/not-an-ip/release"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = http
        .post(url("/api/v1/telephony/bans/127.0.0.1/release"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(raw.send(&raw.register("301", 40, None)).await.is_some());

    // Deleting the extension drops its registrations.
    let r = http
        .delete(url("/api/v1/telephony/extensions/301"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let regs: serde_json::Value = http
        .get(url("/api/v1/telephony/registrations"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(regs, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telephony_page_adds_extension_and_shows_phone_settings() {
    let app = TestApp::spawn_with_sip().await;
    app.add_user("op", crm::model::Role::Operator, "operator-pass-1")
        .await;
    let admin = app.login_admin().await;
    let page = admin.get("/telephony").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"extensions-table\"") && html.contains("href=\"/telephony\""));

    let r = admin
        .post_form(
            "/telephony/extensions",
            &[("number", "305"), ("name", "Kassa <b>"), ("username", "")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"phone-settings\""), "settings shown");
    let ext = app.running().ctx.telephony.extension("305").await.unwrap();
    assert!(
        html.contains(&ext.secret),
        "the generated secret is shown once"
    );
    assert!(html.contains("Kassa &lt;b&gt;"), "names are escaped");
    let again = admin.get("/telephony").await.text().await.unwrap();
    assert!(!again.contains(&ext.secret), "and not again");

    let bad = admin
        .post_form("/telephony/extensions", &[("number", "9")])
        .await;
    assert_eq!(bad.status(), 422);
    let r = admin
        .post_form(
            "/telephony/groups",
            &[
                ("number", "120"),
                ("name", "Desk"),
                ("strategy", "ring_all"),
                ("members", "305"),
                ("member_timeout", "20"),
                ("overall_timeout", "60"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        app.running().ctx.telephony.list_groups().await.unwrap()[0].members,
        vec!["305".to_string()]
    );
    // Without the CSRF token nothing is written.
    let r = admin
        .client
        .post(admin.url("/telephony/extensions"))
        .form(&[("number", "306")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    assert!(app.running().ctx.telephony.extension("306").await.is_err());

    let op = app.login("op", "operator-pass-1").await;
    assert_eq!(op.get("/telephony").await.status(), 403);
    let r = op
        .post_form("/telephony/extensions", &[("number", "307")])
        .await;
    assert_eq!(r.status(), 403);
}
