//! The browser softphone (issue 16, part 3): SIP over WebSocket on the web port, signed
//! in by the web session, and WebRTC media terminated by the box. First a WebSocket
//! client speaking SIP by hand (the route's rules, registration, bad frames), then
//! headless Chromium with fake media devices and the page's softphone calling a SIPp
//! phone and answering one, with RTP arriving at SIPp from the box.

use std::time::Duration;

use crm::model::Role;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::live::{login_cookie, Ws};
use crate::sipp::*;
use crate::support::*;

/// A server with SIP and the relay on, extension 1501 linked to `oper` (an operator),
/// 1000 to nobody, and `nophone` (an operator with no extension).
async fn app() -> TestApp {
    let app = TestApp::spawn_with(|c| {
        c.sip = "127.0.0.1:0".into();
        c.media.relay = "trunk".into();
        c.media.ports = "43000-43999".into();
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

    let (code, _) = open(&app, None, Some("sip")).await.err().expect("refused");
    assert!(
        code == 401 || code == 303 || code == 302,
        "no session: {code}"
    );
    let nophone = login_cookie(&app, "nophone", "nophone-pass-1").await;
    let (code, body) = open(&app, Some(&nophone), Some("sip"))
        .await
        .err()
        .expect("refused");
    assert_eq!(code, 403);
    assert!(
        body.contains("no extension is linked to your account"),
        "{body}"
    );
    let oper = login_cookie(&app, "oper", "oper-pass-1").await;
    let (code, _) = open(&app, Some(&oper), None).await.err().expect("refused");
    assert_eq!(code, 400, "no sip subprotocol");

    let mut ws = open(&app, Some(&oper), Some("sip")).await.expect("opens");
    ws.send(Message::text(register("1501", &domain, 1, 600)))
        .await
        .unwrap();
    let r = next_sip(&mut ws).await.expect("an answer");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("k7b2@df7jal23ls0d.invalid"), "{r}");
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
