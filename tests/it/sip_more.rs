//! More of the SIP registrar against real peers: resends on a lossy link (raw UDP), and
//! the admin's registrations list kept live over the WebSocket while SIPp registers.
//! Self-contained helpers (tests/it/sip.rs keeps its own) so the two files merge apart.

use std::net::SocketAddr;
use std::time::Duration;

use crm::sip::digest::{self, Algorithm};
use futures_util::StreamExt;
use tokio::net::UdpSocket;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::TestApp;

async fn add_users(app: &TestApp, numbers: &[u32]) {
    let mut text = String::new();
    for n in numbers {
        text.push_str(&format!("{n};secret-{n};\n"));
    }
    app.running()
        .ctx
        .telephony
        .import(None, &text)
        .await
        .expect("import");
}

/// One UDP phone that sends raw requests and reads single replies.
struct Phone {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Phone {
    async fn new(server: SocketAddr) -> Phone {
        Phone::on("127.0.0.1", server).await
    }

    /// A phone on another loopback address (another host, as the server sees it).
    async fn on(ip: &str, server: SocketAddr) -> Phone {
        Phone {
            sock: UdpSocket::bind((ip, 0)).await.unwrap(),
            server,
        }
    }

    /// The next datagram within 1.5 s.
    async fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_millis(1500), self.sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Sends a reply (or any datagram) without waiting for an answer.
    async fn push(&self, msg: &[u8]) {
        self.sock.send_to(msg, self.server).await.unwrap();
    }

    /// Sends `msg`; the reply within 1.5 s, or None (dropped, or banned: silence).
    async fn send(&self, msg: &[u8]) -> Option<Vec<u8>> {
        self.push(msg).await;
        self.recv().await
    }

    fn register(&self, user: &str, branch: &str, cseq: u32, auth: Option<&str>) -> Vec<u8> {
        let l = self.sock.local_addr().unwrap();
        let s = self.server;
        format!(
            "REGISTER sip:{s} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{s}>;tag=lossy\r\nTo: <sip:{user}@{s}>\r\n\
             Call-ID: lossy-{user}-{l}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{l}>\r\n\
             Expires: 600\r\nUser-Agent: lossy-link\r\n{}Content-Length: 0\r\n\r\n",
            auth.map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default()
        )
        .into_bytes()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn status(b: &[u8]) -> u16 {
    text(b)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn challenge(resp: &[u8], name: &str) -> String {
    let t = text(resp);
    let line = t
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") || l.starts_with("Proxy-Authenticate:"))
        .expect("a challenge")
        .to_string();
    let key = format!("{name}=");
    let at = line.find(&key).expect(name) + key.len();
    line[at..]
        .trim_start_matches('"')
        .split(['"', ','])
        .next()
        .unwrap()
        .to_string()
}

fn authorization(chal: &[u8], user: &str, server: SocketAddr, nc: &str) -> String {
    digest_answer(chal, user, "REGISTER", &format!("sip:{server}"), nc)
}

fn digest_answer(chal: &[u8], user: &str, method: &str, uri: &str, nc: &str) -> String {
    let (realm, nonce) = (challenge(chal, "realm"), challenge(chal, "nonce"));
    let secret = format!("secret-{user}");
    let r = digest::response(
        Algorithm::Md5,
        user,
        &realm,
        &secret,
        method,
        uri,
        &nonce,
        nc,
        "lossy",
        "auth",
    );
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{r}\", algorithm=MD5, cnonce=\"lossy\", nc={nc}, qop=auth"
    )
}

/// A phone on a lossy link resends its authenticated REGISTER (same branch, Call-ID,
/// CSeq, Authorization, nonce-count) because the 200 got lost: the transaction layer
/// answers every resend with the same 200, never counts it as a replay or toward the
/// ban, and the phone stays registered. More resends than the ban threshold (10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_udp_resends_of_an_accepted_register_get_the_same_200_and_no_ban() {
    let app = TestApp::spawn_with_sip().await;
    add_users(&app, &[2100, 2101]).await;
    let server = app.sip_addr();
    let sip = app.running().sip.as_ref().unwrap();
    let phone = Phone::new(server).await;

    let chal = phone
        .send(&phone.register("2100", "a1", 1, None))
        .await
        .unwrap();
    assert_eq!(status(&chal), 401);
    let auth = authorization(&chal, "2100", server, "00000001");
    let accepted = phone.register("2100", "a2", 2, Some(&auth));
    let first = phone.send(&accepted).await.unwrap();
    assert_eq!(status(&first), 200, "{}", text(&first));
    for i in 0..15 {
        let again = phone.send(&accepted).await.expect("every resend answered");
        assert_eq!(
            text(&again),
            text(&first),
            "resend {i} gets the very same 200"
        );
    }
    assert!(
        sip.bans().is_empty(),
        "resends ban nobody: {:?}",
        sip.bans()
    );
    let regs = sip.registrations();
    assert!(
        regs.iter()
            .any(|r| r.extension == "2100" && r.user_agent == "lossy-link"),
        "still registered: {regs:?}"
    );

    // A copy of the accepted credentials in a new transaction (new branch, next CSeq:
    // a replay, or a resend whose cached reply is gone) is refused with a fresh nonce
    // (stale=true, so a phone re-authenticates by itself) and bans nobody either.
    for i in 0..12u32 {
        let copy = phone.register("2100", &format!("c{i}"), 3 + i, Some(&auth));
        let r = phone.send(&copy).await.expect("answered, not banned");
        assert_eq!(status(&r), 401, "{}", text(&r));
        assert!(text(&r).contains("stale=true"), "{}", text(&r));
    }
    assert!(sip.bans().is_empty(), "{:?}", sip.bans());
    let fresh = phone
        .send(&phone.register("2100", "f1", 20, None))
        .await
        .unwrap();
    let auth2 = authorization(&fresh, "2100", server, "00000001");
    let ok = phone
        .send(&phone.register("2100", "f2", 21, Some(&auth2)))
        .await
        .unwrap();
    assert_eq!(status(&ok), 200, "{}", text(&ok));

    // Wrong secrets still ban (that extension from that address): 10 failures, then
    // silence.
    let other = Phone::new(server).await;
    for i in 0..10u32 {
        let bad = authorization(&chal, "2101", server, "00000001").replace(
            "response=\"",
            "response=\"0", // a wrong digest
        );
        let r = other
            .send(&other.register("2101", &format!("b{i}"), 1 + i, Some(&bad)))
            .await
            .expect("answered until banned");
        assert_eq!(status(&r), 401);
    }
    assert!(
        other
            .send(&other.register("2101", "b99", 99, None))
            .await
            .is_none(),
        "banned after 10 wrong answers"
    );
    assert_eq!(sip.bans().len(), 1);
}

/// A call on a lossy link, over raw UDP: the caller's INVITE is resent because the
/// challenge got lost, and gets the very same 407 back (same nonce: the caller's stack
/// sees a retransmission, not a second challenge). Then, while the callee rings, a
/// stranger on another address copies the call's branch and Via into a CANCEL: 481, and
/// the call rings on (a resend of the INVITE still gets the 180). The caller's own
/// CANCEL ends it: CANCEL to the callee, its 487 to the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_udp_resent_invite_gets_the_same_407_and_only_the_caller_can_cancel() {
    let app = TestApp::spawn_with_sip().await;
    add_users(&app, &[2110, 2111]).await;
    let server = app.sip_addr();
    let caller = Phone::new(server).await;
    let callee = Phone::new(server).await;
    let chal = callee
        .send(&callee.register("2111", "r1", 1, None))
        .await
        .unwrap();
    let auth = authorization(&chal, "2111", server, "00000001");
    let ok = callee
        .send(&callee.register("2111", "r2", 2, Some(&auth)))
        .await
        .unwrap();
    assert_eq!(status(&ok), 200, "{}", text(&ok));

    let l = caller.sock.local_addr().unwrap();
    let uri = format!("sip:2111@{server}");
    let invite = |branch: &str, cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:2110@{server}>;tag=lossy\r\nTo: <{uri}>\r\n\
             Call-ID: lossy-call-{l}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:2110@{l}>\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let first = caller.send(&invite("i1", 1, "")).await.unwrap();
    assert_eq!(status(&first), 407, "{}", text(&first));
    for i in 0..3 {
        let again = caller.send(&invite("i1", 1, "")).await.expect("answered");
        assert_eq!(text(&again), text(&first), "resend {i}: the same 407");
    }

    let creds = format!(
        "Proxy-Authorization: {}\r\n",
        digest_answer(&first, "2110", "INVITE", &uri, "00000001")
    );
    let authed = invite("i2", 2, &creds);
    let trying = caller.send(&authed).await.unwrap();
    assert_eq!(status(&trying), 100, "{}", text(&trying));
    let fwd = text(&callee.recv().await.expect("the INVITE reaches the callee"));
    assert!(fwd.starts_with("INVITE "), "{fwd}");
    let header = |name: &str| {
        fwd.lines()
            .filter(|h| h.starts_with(name))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\n{}\r\n{}\r\n{}\r\n{};tag=callee\r\n{}\r\n{}\r\n\
         Content-Length: 0\r\n\r\n",
        header("Via:"),
        header("Record-Route:"),
        header("From:"),
        header("To:"),
        header("Call-ID:"),
        header("CSeq:")
    );
    callee.push(ringing.as_bytes()).await;
    let r = caller.recv().await.expect("the 180 reaches the caller");
    assert_eq!(status(&r), 180, "{}", text(&r));

    let cancel = format!(
        "CANCEL {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {l};rport;branch=z9hG4bKi2\r\n\
         Max-Forwards: 70\r\nFrom: <sip:2110@{server}>;tag=lossy\r\nTo: <{uri}>\r\n\
         Call-ID: lossy-call-{l}\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes();
    let stranger = Phone::on("127.0.0.2", server).await;
    let r = stranger.send(&cancel).await.expect("answered");
    assert_eq!(status(&r), 481, "{}", text(&r));
    let r = caller.send(&authed).await.expect("the call rings on");
    assert_eq!(status(&r), 180, "{}", text(&r));

    let r = caller.send(&cancel).await.expect("answered");
    assert_eq!(status(&r), 200, "{}", text(&r));
    let c = text(&callee.recv().await.expect("the CANCEL reaches the callee"));
    assert!(c.starts_with("CANCEL "), "{c}");
    let terminated = ringing.replace("180 Ringing", "487 Request Terminated");
    callee.push(terminated.as_bytes()).await;
    let r = caller.recv().await.expect("the 487 reaches the caller");
    assert_eq!(status(&r), 487, "{}", text(&r));
}

fn scenario(name: &str) -> String {
    format!("{}/tests/sip/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs one SIPp scenario against `target` (bounded: one call, 30 s); true on success.
async fn sipp_once(target: SocketAddr, scen: &str, args: &[&str]) -> bool {
    let port = {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.local_addr().unwrap().port().to_string()
    };
    let out = Command::new("sipp")
        .arg(target.to_string())
        .args(["-i", "127.0.0.1", "-p", &port, "-nostdin", "-m", "1"])
        .args(["-timeout", "30", "-timeout_error", "-sf", &scenario(scen)])
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("sipp finishes in time")
        .expect("sipp is installed (sip-tester)");
    out.status.success()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next `sip.registrations` frame that names `ext`, within 10 s.
async fn registrations_event(ws: &mut Ws, ext: &str) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "sip.registrations"
                && v["data"]["extensions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == ext))
            {
                return Some(v);
            }
        }
    }
}

/// The registrations region of the admin's telephony page, as the live client refetches
/// it.
fn registrations_region(html: &str) -> &str {
    let start = html
        .find("id=\"registrations-region\"")
        .expect("the page has the live registrations region");
    let end = html[start..].find("</table>").map(|e| start + e).unwrap();
    &html[start..end]
}

/// When a phone registers or unregisters, a WebSocket client of an admin gets a
/// `sip.registrations` event naming the extension, and the page region it refreshes
/// (marked with that topic) lists or no longer lists the contact. Operators do not get
/// the event (admins only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_registrations_reach_the_admin_page_live() {
    let app = TestApp::spawn_with_sip().await;
    app.add_user("op", crm::model::Role::Operator, "operator-pass-1")
        .await;
    add_users(&app, &[2200]).await;
    let server = app.sip_addr();
    let connect = |token: String| {
        let mut req = format!("ws://{}/ws", app.running().http_addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        async move { tokio_tungstenite::connect_async(req).await.unwrap().0 }
    };
    let mut ws = connect(app.api_token("admin").await).await;
    let mut op_ws = connect(app.api_token("op").await).await;
    let admin = app.login_admin().await;
    let before = admin.get("/telephony").await.text().await.unwrap();
    assert!(
        before.contains("data-live-topics=\"sip.registrations\""),
        "the region listens to the topic"
    );
    assert!(!registrations_region(&before).contains("2200"));

    let cport = {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.local_addr().unwrap().port().to_string()
    };
    let reg = [
        "-s",
        "2200",
        "-ap",
        "secret-2200",
        "-key",
        "cport",
        &cport,
        "-key",
        "expires",
        "3600",
    ];
    assert!(sipp_once(server, "register_callee.xml", &reg).await);
    let ev = registrations_event(&mut ws, "2200")
        .await
        .expect("the admin's socket hears of the registration");
    assert!(ev["seq"].is_u64());
    let page = admin.get("/telephony").await.text().await.unwrap();
    let region = registrations_region(&page);
    assert!(
        region.contains(&format!("sip:2200@127.0.0.1:{cport}")),
        "the refreshed region lists the new contact: {region}"
    );

    let unreg = ["-s", "2200", "-ap", "secret-2200"];
    assert!(sipp_once(server, "unregister_all.xml", &unreg).await);
    registrations_event(&mut ws, "2200")
        .await
        .expect("and of the removal");
    let page = admin.get("/telephony").await.text().await.unwrap();
    assert!(!registrations_region(&page).contains("2200"));

    // The operator's socket saw neither (admins only): everything it got before a marker
    // sent to everyone afterwards is free of registration events.
    app.running().ctx.events.publish(crm::events::Event::new(
        "notice",
        serde_json::json!({"text": "marker"}),
        crm::events::Audience::Everyone,
    ));
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), op_ws.next())
            .await
            .expect("the marker arrives")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_ne!(v["type"], "sip.registrations", "operators are not told");
            if v["type"] == "notice" {
                break;
            }
        }
    }
}
