//! The browser softphone (issue 16, part 3): SIP over WebSocket on the web port, signed
//! in by the web session, and WebRTC media terminated by the box. First a WebSocket
//! client speaking SIP by hand (the route's rules, registration, bad frames), then
//! headless Chromium with fake media devices and the page's softphone calling a SIPp
//! phone and answering one, with RTP arriving at SIPp from the box.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crm::model::Role;
use futures_util::{SinkExt, StreamExt};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::browser::Browser;
use crate::live::{login_cookie, Ws};
use crate::sip_trunk::inf;
use crate::sipp::*;
use crate::support::*;

/// A server with SIP and the relay on, extension 1501 linked to `oper` (an operator),
/// 1000 to nobody, and `nophone` (an operator with no extension).
async fn app() -> TestApp {
    let app = TestApp::spawn_with(|c| {
        c.sip = "127.0.0.1:0".into();
        c.media.relay = "trunk".into();
    })
    .await;
    app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
    import_users(&app, [1000u32, 1501].into_iter()).await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    app.add_user("nophone", Role::Operator, "nophone-pass-1")
        .await;
    app.running()
        .ctx
        .telephony
        .update_extension(None, "1501", "Desk", Some("oper".into()), true)
        .await
        .unwrap();
    app
}

async fn open(
    app: &TestApp,
    cookie: Option<&str>,
    protocol: Option<&str>,
) -> Result<Ws, (u16, String)> {
    let url = format!("ws://{}/sip/ws", app.running().http_addr);
    let mut req = url.into_client_request().unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            assert_eq!(
                resp.headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok()),
                Some("sip"),
                "the server picks the sip subprotocol (browsers insist)"
            );
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("{e}"),
    }
}

/// The next SIP message on the socket, within 5 s.
async fn next_sip(ws: &mut Ws) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

fn register(ext: &str, domain: &str, cseq: u32, expires: u32) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKws{ext}{cseq}\r\n\
         Max-Forwards: 69\r\n\
         To: <sip:{ext}@{domain}>\r\n\
         From: <sip:{ext}@{domain}>;tag=ws{ext}\r\n\
         Call-ID: ws-reg-{ext}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:k7b2@df7jal23ls0d.invalid;transport=ws>;expires={expires}\r\n\
         User-Agent: test-ws\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn ws_registrations(app: &TestApp, ext: &str) -> usize {
    app.running()
        .sip
        .as_ref()
        .unwrap()
        .registrations()
        .iter()
        .filter(|r| r.extension == ext && r.transport == "WS")
        .count()
}

/// Only a signed-in user with an extension opens the socket (no session: refused
/// before the upgrade; no extension: 403 with the catalogue's words; no `sip`
/// subprotocol: 400). Over it, that user registers as their own extension without any
/// digest challenge, and as no other; a malformed frame gets a 400 (or nothing) and
/// the socket carries on; closing it drops the registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_ws_registers_by_session_only_as_ones_own_extension() {
    let app = app().await;
    let domain = app.running().sip.as_ref().unwrap().control().domain();

    let (code, _) = open(&app, None, Some("sip")).await.expect_err("refused");
    assert!(
        code == 401 || code == 303 || code == 302,
        "no session: {code}"
    );
    let nophone = login_cookie(&app, "nophone", "nophone-pass-1").await;
    let (code, body) = open(&app, Some(&nophone), Some("sip"))
        .await
        .expect_err("refused");
    assert_eq!(code, 403);
    assert!(
        body.contains("no extension is linked to your account"),
        "{body}"
    );
    let oper = login_cookie(&app, "oper", "oper-pass-1").await;
    let (code, _) = open(&app, Some(&oper), None).await.expect_err("refused");
    assert_eq!(code, 400, "no sip subprotocol");

    let mut ws = open(&app, Some(&oper), Some("sip")).await.expect("opens");
    ws.send(Message::text(register("1501", &domain, 1, 600)))
        .await
        .unwrap();
    let r = next_sip(&mut ws).await.expect("an answer");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("k7b2@df7jal23ls0d.invalid"), "{r}");
    assert!(!r.contains(";;"), "a Via browsers parse: {r}");
    assert_eq!(ws_registrations(&app, "1501"), 1);
    // Not as another extension.
    ws.send(Message::text(register("1000", &domain, 1, 600)))
        .await
        .unwrap();
    let r = next_sip(&mut ws).await.expect("an answer");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert_eq!(ws_registrations(&app, "1000"), 0);

    // Garbage and a request with a broken header: at most a 400, and the socket lives.
    ws.send(Message::text("\u{1}\u{2} not sip at all\r\n\r\n"))
        .await
        .unwrap();
    ws.send(Message::text(
        "OPTIONS sip:crm.local SIP/2.0\r\nVia: SIP/2.0/WSS x.invalid;branch=z9hG4bKbad\r\nCSeq: nope\r\nCall-ID: bad\r\nContent-Length: 0\r\n\r\n",
    ))
    .await
    .unwrap();
    ws.send(Message::text(format!(
        "OPTIONS sip:{domain} SIP/2.0\r\nVia: SIP/2.0/WSS x.invalid;branch=z9hG4bKgood\r\nMax-Forwards: 70\r\nTo: <sip:{domain}>\r\nFrom: <sip:1501@{domain}>;tag=o1\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )))
    .await
    .unwrap();
    let mut seen = Vec::new();
    while let Some(m) = next_sip(&mut ws).await {
        let ok = m.starts_with("SIP/2.0 200") && m.contains("opt-1");
        seen.push(m);
        if ok {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|m| m.starts_with("SIP/2.0 200")),
        "the socket still works after bad frames: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|m| m.starts_with("SIP/2.0 400") || m.contains("opt-1")),
        "{seen:?}"
    );

    ws.close(None).await.unwrap();
    drop(ws);
    assert!(
        eventually(Duration::from_secs(5), || async {
            (ws_registrations(&app, "1501") == 0).then_some(())
        })
        .await
        .is_some(),
        "the registration dies with its socket"
    );
}

/// RTP packets from the box on `sock` within `within`: how many, and where from.
async fn hear(sock: &UdpSocket, n: usize, within: Duration) -> (usize, Option<SocketAddr>) {
    let mut buf = [0u8; 2048];
    let (mut got, mut from) = (0, None);
    let deadline = tokio::time::Instant::now() + within;
    while got < n {
        match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Ok(Ok((len, src))) if len >= 12 && buf[0] >> 6 == 2 && buf[1] & 0x7f != 101 => {
                got += 1;
                from = Some(src);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (got, from)
}

/// Plays the desk phone's side of the audio: PCMU every 20 ms to `to` until `stop`.
fn talk(sock: Arc<UdpSocket>, to: SocketAddr, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut seq = 0u16;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let mut p = vec![0x80, 0x00];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
            p.extend_from_slice(&0x3333_3333u32.to_be_bytes());
            p.extend(std::iter::repeat_n(0x55u8, 160));
            let _ = sock.send_to(&p, to).await;
            seq = seq.wrapping_add(1);
        }
    });
}

/// Headless Chromium with a fake microphone, signed in as `oper` (extension 1501), once
/// the header softphone says it is registered and ready.
async fn softphone_page(app: &TestApp) -> Browser {
    let b = Browser::start_with_media().await;
    b.sign_in(app, "oper", "oper-pass-1").await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            (b.attr("#sp-state", "data-state").await.as_deref() == Some("ready")).then_some(())
        })
        .await
        .is_some(),
        "the page's softphone registers and says it is ready: {:?} {:?}",
        b.attr("#sp-state", "data-state").await,
        b.client.execute("return (async () => { window.logs=[]; JsSIP.debug.enable('JsSIP:*'); JsSIP.debug.log = (...a) => window.logs.push(a.join(' ')); var ua = document.getElementById('softphone').softphone.ua; ua.register(); await new Promise(r => setTimeout(r, 3000)); return window.logs; })()", vec![]).await
    );
    b
}

/// Desk phone 1000: SIPp running `scen` once, its RTP at the returned socket.
async fn desk_phone(sip: SocketAddr, scen: &str) -> (Arc<UdpSocket>, tokio::process::Child) {
    let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let rtp_port = rtp.local_addr().unwrap().port().to_string();
    let port = free_port();
    let phone = sipp_cmd(&[
        "-sf",
        &scenario(scen),
        "-p",
        &port.to_string(),
        "-m",
        "1",
        "-set",
        "rtp",
        &rtp_port,
    ])
    .spawn()
    .expect("sipp is installed");
    register_contact(sip, "1000", port).await;
    (rtp, phone)
}

/// The page's softphone calls `number`: the panel opened as a person would (a click on
/// ☎), then kept open (other menus' scripts close a menu when focus moves elsewhere).
async fn dial_from_the_page(b: &Browser, number: &str) {
    b.click("#softphone > summary").await;
    js(b, "document.getElementById('softphone').open = true").await;
    b.fill("#sp-number", number).await;
    b.click("#sp-call").await;
}

/// How call `id` ended, by the call log's event (within 10 s of the events from here on).
async fn end_cause(
    mut events: tokio::sync::broadcast::Receiver<crm::sip::CallEvent>,
    id: String,
) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(crm::sip::CallEvent::Ended { call_id, cause, .. }) = events.recv().await {
                if call_id == id {
                    return cause;
                }
            }
        }
    })
    .await
    .expect("the call log ends the call")
}

/// Audio packets the browser's call received so far (its WebRTC statistics).
async fn browser_heard(b: &Browser) -> u64 {
    let v = b
        .client
        .execute(
            "return (async () => {
               const s = document.getElementById('softphone').softphone.current();
               if (!s || !s.connection) return 0;
               let n = 0;
               (await s.connection.getStats()).forEach(r => {
                 if (r.type === 'inbound-rtp' && r.kind === 'audio') n = r.packetsReceived;
               });
               return n;
             })()",
            vec![],
        )
        .await
        .unwrap();
    v.as_u64().unwrap_or(0)
}

/// Headless Chromium with a fake microphone signs in as `oper` (extension 1501): the
/// header softphone registers over /sip/ws; it calls desk phone 1000 (SIPp), whose
/// INVITE carries plain RTP pointing at the box, and the browser's audio reaches the
/// phone as RTP from the box while the phone's reaches the browser (its WebRTC
/// statistics count it); hang-up from the page ends it. Then the phone calls 1501, the
/// page rings and is answered from the screen-pop card; audio flows both ways again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_in_chromium_calls_a_phone_and_answers_one_with_audio_both_ways() {
    let app = app().await;
    let sip = app.sip_addr();
    let b = softphone_page(&app).await;
    assert_eq!(
        ws_registrations(&app, "1501"),
        1,
        "the page's softphone registers"
    );

    // 1. The browser calls the desk phone.
    let (rtp, phone) = desk_phone(sip, "softphone_phone_uas.xml").await;
    dial_from_the_page(&b, "1000").await;
    let (got, from) = hear(&rtp, 25, Duration::from_secs(20)).await;
    assert!(
        got >= 25,
        "the browser's audio reaches the phone from the box: {got} {:?}",
        b.client.execute("var s = document.getElementById('softphone').softphone.current(); return s ? [s.status, s.connection && s.connection.iceConnectionState, s.connection && s.connection.connectionState, s.connection && s.connection.remoteDescription && s.connection.remoteDescription.sdp, document.getElementById('sp-status').textContent] : ['none', document.getElementById('sp-status').textContent]", vec![]).await
    );
    let stop = Arc::new(AtomicBool::new(false));
    talk(rtp.clone(), from.unwrap(), stop.clone());
    assert!(
        eventually(Duration::from_secs(10), || async {
            (browser_heard(&b).await >= 25).then_some(())
        })
        .await
        .is_some(),
        "the phone's audio reaches the browser"
    );
    stop.store(true, Ordering::Relaxed);
    b.click("#sp-hangup").await;
    assert_ok(
        &wait_sipp(phone).await,
        1,
        "the phone answered and got the BYE",
    );

    // 2. The desk phone calls the browser; answered on the screen-pop card.
    let inf = inf(&app, "caller.csv", &["1000"]);
    let rtp2 = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let rtp2_port = rtp2.local_addr().unwrap().port().to_string();
    let call = tokio::spawn(async move {
        sipp(
            sip,
            &[
                "-sf",
                &scenario("softphone_phone_call.xml"),
                "-inf",
                &inf,
                "-s",
                "1501",
                "-set",
                "rtp",
                &rtp2_port,
                "-d",
                "12000",
                "-m",
                "1",
            ],
        )
        .await
    });
    b.click(".call-pop .sp-card-answer").await;
    let (got, from) = hear(&rtp2, 25, Duration::from_secs(20)).await;
    assert!(
        got >= 25,
        "the answered browser's audio reaches the phone: {got}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    talk(rtp2.clone(), from.unwrap(), stop.clone());
    assert!(
        eventually(Duration::from_secs(10), || async {
            (browser_heard(&b).await >= 25).then_some(())
        })
        .await
        .is_some(),
        "the phone's audio reaches the browser that answered"
    );
    // A key on the page's keypad reaches the phone as RFC 4733 telephone-event (the
    // payload type the phone offered).
    b.client
        .execute("document.getElementById('softphone').open = true", vec![])
        .await
        .unwrap();
    b.click("#sp-keypad button[data-dtmf='5']").await;
    let mut buf = [0u8; 2048];
    let dtmf = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (n, _) = rtp2.recv_from(&mut buf).await.unwrap();
            if n >= 16 && buf[1] & 0x7f == 101 {
                return buf[12];
            }
        }
    })
    .await;
    assert_eq!(dtmf.ok(), Some(5), "the keypad's 5 as telephone-event");
    stop.store(true, Ordering::Relaxed);
    assert_ok(&call.await.unwrap(), 1, "the phone's call to the softphone");
}

/// A response to `req` (a SIP request as text) with `code`, as a phone would build it.
fn respond(req: &str, code: &str) -> String {
    let mut r = format!("SIP/2.0 {code}\r\n");
    for l in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let k = l.split(':').next().unwrap_or("").to_ascii_lowercase();
        match k.as_str() {
            "via" | "from" | "call-id" | "cseq" | "record-route" => r.push_str(&format!("{l}\r\n")),
            "to" => r.push_str(&format!("{l};tag=b1\r\n")),
            _ => {}
        }
    }
    r + "Content-Length: 0\r\n\r\n"
}

fn invite(domain: &str, id: &str, sdp: &str) -> String {
    format!(
        "INVITE sip:1000@{domain} SIP/2.0\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK{id}\r\nMax-Forwards: 70\r\nTo: <sip:1000@{domain}>\r\nFrom: <sip:1501@{domain}>;tag=a{id}\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@a.invalid;transport=ws>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// A phone's plain offer of G.711 µ-law alone.
const PCMU_OFFER: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Registers `ext` over the socket (CSeq `cseq`): the box answers 200.
async fn register_over(ws: &mut Ws, ext: &str, domain: &str, cseq: u32) {
    ws.send(Message::text(register(ext, domain, cseq, 600)))
        .await
        .unwrap();
    let r = next_of(ws, "SIP/2.0 ").await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
}

/// The INVITE (or final response) the socket gets next, skipping provisional answers.
async fn next_of(ws: &mut Ws, start: &str) -> String {
    loop {
        let m = next_sip(ws).await.unwrap_or_else(|| panic!("no {start}"));
        if m.starts_with(start) {
            return m;
        }
    }
}

/// A plain (RTP/AVP) offer to a browser contact: with G.711 in it the box sends the
/// browser its own WebRTC offer (ICE-lite, DTLS fingerprint, SAVPF); with no codec the
/// browser and the phones share (G.729 alone) it passes unchanged, the browser refuses
/// it (488), and the caller hears so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_a_plain_offer_to_a_browser_becomes_webrtc_or_is_refused_cleanly() {
    let app = app().await;
    let domain = app.running().sip.as_ref().unwrap().control().domain();
    app.running()
        .ctx
        .telephony
        .update_extension(None, "1000", "Desk", Some("nophone".into()), true)
        .await
        .unwrap();
    let mut a = open(
        &app,
        Some(&login_cookie(&app, "oper", "oper-pass-1").await),
        Some("sip"),
    )
    .await
    .unwrap();
    let mut b = open(
        &app,
        Some(&login_cookie(&app, "nophone", "nophone-pass-1").await),
        Some("sip"),
    )
    .await
    .unwrap();
    for (ws, ext) in [(&mut a, "1501"), (&mut b, "1000")] {
        register_over(ws, ext, &domain, 1).await;
    }

    let g711 = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    a.send(Message::text(invite(&domain, "plain1", g711)))
        .await
        .unwrap();
    let inv = next_of(&mut b, "INVITE ").await;
    for want in [
        "UDP/TLS/RTP/SAVPF",
        "a=fingerprint:",
        "a=ice-lite",
        "a=candidate:",
        "PCMU/8000",
    ] {
        assert!(inv.contains(want), "{want} in the browser's offer:\n{inv}");
    }
    assert!(
        !inv.contains("40000"),
        "the caller's own port is not given away:\n{inv}"
    );
    b.send(Message::text(respond(&inv, "486 Busy Here")))
        .await
        .unwrap();
    assert!(next_of(&mut a, "SIP/2.0 4")
        .await
        .starts_with("SIP/2.0 486"));

    let g729 = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    a.send(Message::text(invite(&domain, "plain2", g729)))
        .await
        .unwrap();
    let inv = next_of(&mut b, "INVITE ").await;
    assert!(
        !inv.contains("a=fingerprint:"),
        "nothing to make WebRTC of:\n{inv}"
    );
    b.send(Message::text(respond(&inv, "488 Not Acceptable Here")))
        .await
        .unwrap();
    assert!(next_of(&mut a, "SIP/2.0 4")
        .await
        .starts_with("SIP/2.0 488"));
}

/// RTP audio (PCMU) at `sock` for `dur`: (packets, packets with sound in them). µ-law
/// silence is 0xFF/0x7F; a byte of segment 4 or more is a sample over ~500 of 8159.
async fn loudness(sock: &UdpSocket, dur: Duration) -> (usize, usize) {
    let mut buf = [0u8; 2048];
    let (mut n, mut loud) = (0, 0);
    let deadline = tokio::time::Instant::now() + dur;
    while let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        if len < 12 || buf[1] & 0x7f != 0 {
            continue;
        }
        n += 1;
        let strong = buf[12..len].iter().filter(|b| (!**b >> 4) & 7 >= 4).count();
        if strong >= 8 {
            loud += 1;
        }
    }
    (n, loud)
}

/// Runs `code` on the page with `s`, the softphone's current call (or null), in scope.
async fn on_call(b: &Browser, code: &str) -> serde_json::Value {
    let current = "const s = document.getElementById('softphone').softphone.current();";
    js(b, &format!("{current} {code}")).await
}

/// Whether `code` (run as by [`on_call`]) returns true within `within`.
async fn call_becomes(b: &Browser, within: Duration, code: &str) -> bool {
    eventually(within, || async {
        (on_call(b, code).await == true).then_some(())
    })
    .await
    .is_some()
}

/// Runs `js` (the body of a function) on the page and returns its value.
async fn js(b: &Browser, code: &str) -> serde_json::Value {
    b.client.execute(code, vec![]).await.unwrap()
}

/// The page's call, in Chromium, to a SIPp desk phone: a keypad key reaches the phone as
/// telephone-event with the phone's own payload type (101) though Chromium offered
/// another (126); mute leaves only silence at the phone, unmute brings the sound back;
/// hold sends the phone a=sendonly, resume a=sendrecv, and audio flows again. Then the
/// tab goes without a word (its `beforeunload` hang-up disabled, as when the network or
/// the browser dies): the box sends the phone the BYE, the call log ends the call and
/// the relay lets its ports go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_in_chromium_dtmf_mute_hold_and_a_closed_tab_hangs_up() {
    let app = app().await;
    let sip = app.sip_addr();
    let media = app.running().media.clone().expect("the relay runs");
    let events = app.running().ctx.call_events.subscribe();
    let b = softphone_page(&app).await;
    let (rtp, phone) = desk_phone(sip, "softphone_phone_hold.xml").await;
    let open_panel = || async {
        js(&b, "document.getElementById('softphone').open = true").await;
    };
    dial_from_the_page(&b, "1000").await;
    let (got, _) = hear(&rtp, 25, Duration::from_secs(20)).await;
    assert!(got >= 25, "the browser's audio reaches the phone: {got}");

    // DTMF: Chromium sends telephone-event/8000 with the number of the box's answer to
    // it (its own offer's), which is not the phone's 101: the box renumbers.
    let sends_with = on_call(
        &b,
        "const m = /a=rtpmap:(\\d+) telephone-event\\/8000/.exec(s.connection.remoteDescription.sdp); return m ? Number(m[1]) : null;",
    )
    .await;
    assert!(
        sends_with.as_u64().is_some_and(|p| p != 101),
        "the browser's leg numbers telephone-event its own way: {sends_with}"
    );
    open_panel().await;
    b.click("#sp-keypad button[data-dtmf='7']").await;
    let mut buf = [0u8; 2048];
    let dtmf = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (n, _) = rtp.recv_from(&mut buf).await.unwrap();
            let pt = buf[1] & 0x7f;
            if n >= 16 && pt != 0 {
                return (pt, buf[12]);
            }
        }
    })
    .await;
    assert_eq!(
        dtmf.ok(),
        Some((101, 7)),
        "the keypad's 7 as the phone's telephone-event"
    );

    // Mute: only silence reaches the phone; unmute: sound again.
    let (n, loud) = loudness(&rtp, Duration::from_secs(3)).await;
    assert!(
        n >= 100 && loud >= 1,
        "the fake microphone is heard: {n} {loud}"
    );
    open_panel().await;
    b.click("#sp-mute").await;
    assert!(
        call_becomes(&b, Duration::from_secs(5), "return s.isMuted().audio;").await,
        "muted"
    );
    // What was on its way when the button went.
    let _ = loudness(&rtp, Duration::from_millis(300)).await;
    let (n, loud) = loudness(&rtp, Duration::from_secs(3)).await;
    assert_eq!(loud, 0, "muted: nothing but silence ({n} packets)");
    open_panel().await;
    b.click("#sp-mute").await;
    let (n, loud) = loudness(&rtp, Duration::from_secs(3)).await;
    assert!(loud >= 1, "unmuted: heard again ({n} packets, {loud} loud)");

    // Hold and resume (the phone's scenario checks a=sendonly, then a=sendrecv).
    open_panel().await;
    b.click("#sp-hold").await;
    assert!(
        call_becomes(&b, Duration::from_secs(10), "return s.isOnHold().local;").await,
        "the phone accepted the hold"
    );
    open_panel().await;
    b.click("#sp-hold").await;
    assert!(
        call_becomes(&b, Duration::from_secs(10), "return !s.isOnHold().local;").await,
        "the phone accepted the resume"
    );
    let (got, _) = hear(&rtp, 25, Duration::from_secs(10)).await;
    assert!(got >= 25, "audio after the resume: {got}");
    let call_id = on_call(&b, "return (s.request || s._request).call_id;")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(media.counts(&call_id).is_some(), "the call is anchored");

    // The tab goes without hanging up.
    js(
        &b,
        "document.getElementById('softphone').softphone.ua.stop = function () {}; location.href = 'about:blank';",
    )
    .await;
    assert_ok(
        &wait_sipp(phone).await,
        1,
        "the phone: held, resumed, and the box's BYE when the tab closed",
    );
    assert_eq!(end_cause(events, call_id.clone()).await, "completed");
    assert!(
        eventually(Duration::from_secs(5), || async {
            media.counts(&call_id).is_none().then_some(())
        })
        .await
        .is_some(),
        "the relay freed the call's ports"
    );
    assert_eq!(ws_registrations(&app, "1501"), 0);
}

/// The socket of a browser that rings or is rung closes before anyone answers (the
/// WebSocket client by hand): the phone it was calling gets a CANCEL (and the call log
/// says cancelled), and a phone calling it gets 480 (no answer), not a ring that never
/// ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_a_closed_socket_cancels_its_ringing_calls() {
    let app = app().await;
    let sip = app.sip_addr();
    let domain = app.running().sip.as_ref().unwrap().control().domain();
    let oper = login_cookie(&app, "oper", "oper-pass-1").await;
    let events = app.running().ctx.call_events.subscribe();

    // 1. The browser calls desk phone 1000, which rings; the socket closes.
    let port = free_port();
    let phone = uas("uas_ring.xml", port, 1);
    register_contact(sip, "1000", port).await;
    let mut ws = open(&app, Some(&oper), Some("sip")).await.unwrap();
    register_over(&mut ws, "1501", &domain, 1).await;
    ws.send(Message::text(invite(&domain, "gone1", PCMU_OFFER)))
        .await
        .unwrap();
    assert!(next_of(&mut ws, "SIP/2.0 18")
        .await
        .starts_with("SIP/2.0 180"));
    let cause = end_cause(events.resubscribe(), "gone1".into());
    ws.close(None).await.unwrap();
    drop(ws);
    assert_ok(&wait_sipp(phone).await, 1, "the phone: rung, then CANCEL");
    assert_eq!(cause.await, "cancelled");

    // 2. Desk phone 1000 calls the browser; its socket closes while it rings.
    let mut ws = open(&app, Some(&oper), Some("sip")).await.unwrap();
    register_over(&mut ws, "1501", &domain, 2).await;
    let inf = inf(&app, "caller.csv", &["1000"]);
    let call = tokio::spawn(async move {
        sipp(
            sip,
            &[
                "-sf",
                &scenario("calls_480.xml"),
                "-inf",
                &inf,
                "-key",
                "caller",
                "1000",
                "-s",
                "1501",
                "-m",
                "1",
            ],
        )
        .await
    });
    let inv = next_of(&mut ws, "INVITE ").await;
    let id = inv
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .expect("a Call-ID")
        .trim()
        .to_string();
    let cause = end_cause(events.resubscribe(), id);
    ws.close(None).await.unwrap();
    drop(ws);
    assert_ok(
        &call.await.unwrap(),
        1,
        "the caller: 480 when the rung browser's socket closed",
    );
    assert_eq!(cause.await, "no_answer");
}

/// A customer's call from the trunk rings the page (DID -> 1501), is answered there, and
/// the panel's transfer form sends it on to 1502 (blind): the REFER reaches the box,
/// which carries it out (the provider is never asked to follow a REFER), the target
/// SIPp phone rings and answers, the provider is re-INVITEd with that phone's offer, and
/// the page's call ends; the call log keeps the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_in_chromium_blind_transfers_a_customer_call_to_a_desk_phone() {
    let app = app().await;
    let sip = app.sip_addr();
    import_users(&app, [1502u32].into_iter()).await;
    crate::sip_trunk::trunk_ringing(&app, "1501").await;
    let mut events = app.running().ctx.call_events.subscribe();
    let b = softphone_page(&app).await;
    let p_master = free_port();
    let master = uas("uas_answer.xml", p_master, 1);
    register_contact(sip, "1502", p_master).await;
    let provider = tokio::spawn(crate::sip_transfer::provider_call_to_transfer(sip));
    b.click(".call-pop .sp-card-answer").await;
    assert!(
        call_becomes(
            &b,
            Duration::from_secs(10),
            "return !!s && s.isEstablished();"
        )
        .await,
        "the page answered the customer"
    );
    js(&b, "document.getElementById('softphone').open = true").await;
    b.fill("#sp-transfer-to", "1502").await;
    b.click("#sp-transfer button[type=submit]").await;
    assert_ok(
        &provider.await.unwrap(),
        1,
        "provider: answered by the page, re-INVITEd with the target's offer",
    );
    assert_ok(
        &wait_sipp(master).await,
        1,
        "the target: rung by the box, answered, then BYE",
    );
    assert!(
        call_becomes(&b, Duration::from_secs(10), "return s === null;").await,
        "the page's call ended after the transfer"
    );
    let calls = crate::sip_transfer::calls_ended(&mut events, 2).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    let transferred = calls[1].1.iter().find_map(|e| match e {
        crm::sip::CallEvent::Ringing {
            to, transferred_by, ..
        } => Some((to.clone(), transferred_by.clone())),
        _ => None,
    });
    assert_eq!(
        transferred,
        Some(("1502".to_string(), Some("1501".to_string()))),
        "{calls:?}"
    );
}

/// The browser's call out through the trunk (the box's B2BUA: the browser is the
/// phone's side) is answered by the provider, then the browser's socket closes: the box
/// sends the provider the BYE (SIPp plays the provider, expecting it) and the call log
/// ends the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_a_closed_socket_hangs_up_its_call_out_through_the_trunk() {
    let app = app().await;
    let domain = app.running().sip.as_ref().unwrap().control().domain();
    let (provider, _, _) =
        crate::sip_trunk::calling_out(&app, 10, "softphone_provider_uas.xml", None).await;
    crate::sip_trunk::allow_calls_out(&app, "1501", 10, false).await;
    let events = app.running().ctx.call_events.subscribe();
    let mut ws = operator_softphone(&app, &domain).await;
    let inv = invite(&domain, "out1", PCMU_OFFER).replace("sip:1000@", "sip:901234567@");
    ws.send(Message::text(inv)).await.unwrap();
    let ok = next_of(&mut ws, "SIP/2.0 2").await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    ws.close(None).await.unwrap();
    drop(ws);
    assert_ok(
        &wait_sipp(provider).await,
        1,
        "the provider: answered, then the box's BYE when the socket closed",
    );
    assert_eq!(end_cause(events, "out1".into()).await, "completed");
}

/// The operator's signed-in SIP socket, registered as extension 1501.
async fn operator_softphone(app: &TestApp, domain: &str) -> Ws {
    let cookie = login_cookie(app, "oper", "oper-pass-1").await;
    let mut ws = open(app, Some(&cookie), Some("sip")).await.unwrap();
    register_over(&mut ws, "1501", domain, 1).await;
    ws
}

/// What a phone's raw UDP socket receives next: (the message, its source), within `within`.
async fn udp_sip(sock: &UdpSocket, within: Duration) -> Option<(String, SocketAddr)> {
    let mut buf = vec![0u8; 8192];
    let (n, from) = tokio::time::timeout(within, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

/// The next request with `method` at the socket (other messages skipped), within 5 s.
async fn udp_request(sock: &UdpSocket, method: &str) -> (String, SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (m, from) = udp_sip(sock, left)
            .await
            .unwrap_or_else(|| panic!("no {method} at the phone"));
        if m.starts_with(&format!("{method} ")) {
            return (m, from);
        }
    }
}

/// A header's value in a SIP message (the first one of that name).
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{msg}"))
}

/// The browser's proxied call to desk phone 1000 (a raw UDP socket here, answering by
/// hand) is answered, then the browser's socket closes: the box takes the dialog over
/// and hangs up the phone with a BYE of its own. The phone ignores the first BYE (lost
/// on the way, as far as the box can tell): the box resends it (same branch, Call-ID
/// and CSeq: a retransmission of one transaction, Timer E) until the phone answers the
/// second; none comes after the 200, and the call log ends the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_a_closed_socket_resends_the_box_bye_until_the_phone_answers() {
    let app = app().await;
    let sip = app.sip_addr();
    let domain = app.running().sip.as_ref().unwrap().control().domain();
    let port = free_port();
    let phone = UdpSocket::bind(("127.0.0.1", port)).await.unwrap();
    register_contact(sip, "1000", port).await;
    let events = app.running().ctx.call_events.subscribe();
    let mut ws = operator_softphone(&app, &domain).await;
    ws.send(Message::text(invite(&domain, "lostbye1", PCMU_OFFER)))
        .await
        .unwrap();

    // The phone answers (G.711 at a port nobody listens on: no media is needed).
    let (inv, box_addr) = udp_request(&phone, "INVITE").await;
    let sdp = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for l in inv.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let k = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match k.as_str() {
            "via" | "from" | "call-id" | "cseq" | "record-route" => {
                ok.push_str(l);
                ok.push_str("\r\n");
            }
            "to" => ok.push_str(&format!("{l};tag=ph1\r\n")),
            _ => {}
        }
    }
    ok.push_str(&format!(
        "Contact: <sip:1000@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    phone.send_to(ok.as_bytes(), box_addr).await.unwrap();
    let answered = next_of(&mut ws, "SIP/2.0 2").await;
    assert!(answered.starts_with("SIP/2.0 200"), "{answered}");
    // The browser acknowledges, then its socket closes mid-call.
    let mut ack = format!(
        "ACK sip:1000@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bKlostbyeack\r\nMax-Forwards: 70\r\n"
    );
    for l in answered.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        if let Some(v) = l.strip_prefix("Record-Route:") {
            ack.push_str(&format!("Route:{v}\r\n"));
        }
    }
    for h in ["To", "From", "Call-ID"] {
        ack.push_str(&format!("{h}: {}\r\n", header(&answered, h)));
    }
    ack.push_str("CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    ws.send(Message::text(ack)).await.unwrap();
    udp_request(&phone, "ACK").await;
    let cause = tokio::spawn(end_cause(events, "lostbye1".into()));
    ws.close(None).await.unwrap();
    drop(ws);

    // The box's BYE: the first one is "lost" (not answered).
    let (first, from) = udp_request(&phone, "BYE").await;
    assert_eq!(header(&first, "Call-ID"), "lostbye1");
    assert!(header(&first, "To").contains("tag=ph1"), "{first}");
    let (again, from2) = udp_request(&phone, "BYE").await;
    assert_eq!(from2, from, "from the same place");
    for h in ["Via", "Call-ID", "CSeq", "From", "To"] {
        assert_eq!(
            header(&again, h),
            header(&first, h),
            "{h}: a retransmission, not a new BYE"
        );
    }
    assert!(header(&again, "CSeq").ends_with(" BYE"));
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        ok.push_str(&format!("{h}: {}\r\n", header(&again, h)));
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    phone.send_to(ok.as_bytes(), from2).await.unwrap();
    // Answered: no third BYE (the next resend would come a second after the second).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match udp_sip(&phone, left).await {
            Some((m, _)) => assert!(!m.starts_with("BYE "), "BYE resent after its 200:\n{m}"),
            None => break,
        }
    }
    assert_eq!(cause.await.unwrap(), "completed");
    let calls = &app.running().ctx.calls;
    let admin = crm::domain::Actor::builtin(1, "admin", Role::Admin, crm::model::Language::En);
    let row = eventually(Duration::from_secs(10), || async {
        calls
            .get(&admin, "lostbye1")
            .await
            .ok()
            .filter(|r| r.ended_ms.is_some())
    })
    .await
    .expect("the call log row ended");
    assert!(row.answered_ms.is_some(), "{row:?}");
}
