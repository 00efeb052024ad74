//! The media plane (issue 16): a call out through the trunk with the box relaying RTP.
//! SIPp plays the phone and the provider (signalling); the test's own UDP sockets play
//! their RTP (real RTP packets, 20 ms apart, each side with its own SSRC), so it can
//! see where every packet lands.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crm::sip::CallEvent;
use tokio::net::UdpSocket;

use crate::sip_trunk::{
    allow_calls_out, inf, trunk_call_answered, trunk_out, trunk_ringing, PROVIDER_IP,
};
use crate::sipp::*;
use crate::support::TestApp;

const PHONE_SSRC: u32 = 0x1111_1111;
const PROVIDER_SSRC: u32 = 0x2222_2222;
const STRANGER_SSRC: u32 = 0x3333_3333;

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(0xffu8, 160));
    p
}

fn ssrc_of(p: &[u8]) -> Option<u32> {
    (p.len() >= 12 && p[0] >> 6 == 2).then(|| u32::from_be_bytes([p[8], p[9], p[10], p[11]]))
}

/// Sends RTP from `sock` to `to` every 20 ms until `stop`.
fn talk(sock: Arc<UdpSocket>, to: SocketAddr, ssrc: u32, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut seq = 0u16;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let _ = sock.send_to(&rtp(seq, ssrc), to).await;
            seq = seq.wrapping_add(1);
        }
    });
}

/// Waits for `n` packets from `ssrc` on `sock`; returns how many came in time.
async fn hear(sock: &UdpSocket, ssrc: u32, n: usize, within: Duration) -> usize {
    let mut buf = [0u8; 2048];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + within;
    while got < n {
        match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Ok(Ok((len, _))) if ssrc_of(&buf[..len]) == Some(ssrc) => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

async fn bind(ip: &str) -> (Arc<UdpSocket>, u16) {
    let s = UdpSocket::bind((ip, 0)).await.unwrap();
    let p = s.local_addr().unwrap().port();
    (Arc::new(s), p)
}

/// A call out through the trunk, relayed: each side's RTP reaches the other (the SDP
/// each one gets names the box); the phone advertises a port nobody listens on and
/// sends from another, and still hears the provider (latching); its hold re-INVITE
/// moves the provider's stream to the new port; when both stop sending, the box hangs
/// up both legs and the call log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_relay_latches_follows_hold_and_hangs_up_dead_calls() {
    let app = TestApp::spawn_with(|c| {
        c.sip = "127.0.0.1:0".into();
        c.media.relay = "trunk".into();
        c.media.timeout_secs = 2;
        c.media.hold_timeout_secs = 2;
    })
    .await;
    app.add_user(
        "admin",
        crm::model::Role::Admin,
        crate::support::ADMIN_PASSWORD,
    )
    .await;
    let sip = app.sip_addr();
    let media = app.running().media.clone().expect("the relay runs");
    import_users(&app, [1001u32].into_iter()).await;
    allow_calls_out(&app, "1001", 10, false).await;
    let port = free_port();
    trunk_out(&app, port).await;
    let users = inf(&app, "1001.csv", &["1001"]);

    // The parties' media: the provider at 127.0.0.2; the phone sends from `phone` but
    // its SDP names `wrong`, and after the hold `held`.
    let (prov_sock, prov_port) = bind(PROVIDER_IP).await;
    let (phone_sock, _) = bind("127.0.0.1").await;
    let (wrong_sock, wrong_port) = bind("127.0.0.1").await;
    let (held_sock, held_port) = bind("127.0.0.1").await;

    let mut events = app.running().ctx.call_events.subscribe();
    let prov_scen = scenario("media_provider_uas.xml");
    let pp = port.to_string();
    let prov_rtp = prov_port.to_string();
    let provider = sipp_cmd_at(
        PROVIDER_IP,
        &[
            "-sf", &prov_scen, "-p", &pp, "-m", "1", "-set", "prov", &prov_rtp,
        ],
    )
    .spawn()
    .expect("sipp is installed");
    let phone_scen = scenario("media_phone_call.xml");
    let (w, h) = (wrong_port.to_string(), held_port.to_string());
    let phone_port = free_port().to_string();
    let target = sip.to_string();
    let phone = sipp_cmd(&[
        &target,
        "-sf",
        &phone_scen,
        "-inf",
        &users,
        "-s",
        "901234567",
        "-d",
        "3000",
        "-m",
        "1",
        "-p",
        &phone_port,
        "-set",
        "wrong",
        &w,
        "-set",
        "held",
        &h,
    ])
    .spawn()
    .expect("sipp is installed");

    // The call's id, then the relay's ports once the provider has answered.
    let call_id = loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the call rings")
            .unwrap();
        if let CallEvent::Ringing { call_id, .. } = e {
            break call_id;
        }
    };
    let ports = crate::support::eventually(Duration::from_secs(10), || {
        let m = media.clone();
        let id = call_id.clone();
        async move { m.ports(&id).filter(|p| !p.is_empty()).map(|p| p[0]) }
    })
    .await
    .expect("the call is anchored");
    let [to_caller_end, to_callee_end] = ports;
    let stop_phone = Arc::new(AtomicBool::new(false));
    let stop_prov = Arc::new(AtomicBool::new(false));
    let relay = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    // The tail of a stream the phone's port served before (two packets from a stranger)
    // comes first: it must not take the call (the phone is latched after its probation).
    let (stranger, _) = bind("127.0.0.1").await;
    for seq in 0..2 {
        stranger
            .send_to(&rtp(seq, STRANGER_SSRC), relay(to_caller_end))
            .await
            .unwrap();
    }
    talk(
        phone_sock.clone(),
        relay(to_caller_end),
        PHONE_SSRC,
        stop_phone.clone(),
    );
    talk(
        prov_sock.clone(),
        relay(to_callee_end),
        PROVIDER_SSRC,
        stop_prov.clone(),
    );

    // Both ways, and the phone hears the provider on the port it sends from.
    let secs = Duration::from_secs(5);
    assert_eq!(
        hear(&prov_sock, PHONE_SSRC, 25, secs).await,
        25,
        "phone -> provider"
    );
    assert_eq!(
        hear(&phone_sock, PROVIDER_SSRC, 25, secs).await,
        25,
        "provider -> phone"
    );
    assert_eq!(
        hear(&stranger, PROVIDER_SSRC, 1, Duration::from_millis(200)).await,
        0,
        "the stale stream's source got the provider's audio"
    );
    let mut buf = [0u8; 2048];
    // Before the phone's first packet the relay can only send to the address its SDP
    // names; what arrived then is not the question. Once latched, nothing more may.
    while wrong_sock.try_recv_from(&mut buf).is_ok() {}
    assert!(
        tokio::time::timeout(Duration::from_millis(200), wrong_sock.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing goes to the address the phone's SDP names once it has latched"
    );

    // The phone stops and holds (after -d): the provider's stream moves to `held`.
    stop_phone.store(true, Ordering::Relaxed);
    assert_eq!(
        hear(&held_sock, PROVIDER_SSRC, 10, Duration::from_secs(10)).await,
        10,
        "the hold re-INVITE moves the provider's stream"
    );
    let (relayed, _) = media.counts(&call_id).unwrap();
    assert!(relayed >= 60, "{relayed} packets relayed");

    // Silence: the box hangs up both legs and logs why.
    stop_prov.store(true, Ordering::Relaxed);
    let ended = loop {
        let e = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("the silent call ends")
            .unwrap();
        if let CallEvent::Ended {
            call_id: c, cause, ..
        } = e
        {
            if c == call_id {
                break cause;
            }
        }
    };
    assert_eq!(ended, "media_timeout");
    let r = wait_sipp(phone).await;
    assert_eq!((r.ok, r.failed), (1, 0), "phone: {}", r.out);
    let r = wait_sipp(provider).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    assert!(media.ports(&call_id).is_none(), "the ports went back");
    assert_eq!(media.calls(), 0);
}

/// A call from the provider to an extension passes the proxy (not the B2BUA): its SDP
/// is anchored there too, RTP flows both ways through the relay, and the call's ports
/// go back when it is hung up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_relay_anchors_an_inbound_call_through_the_proxy() {
    let app = TestApp::spawn_with(|c| {
        c.sip = "127.0.0.1:0".into();
        c.media.relay = "trunk".into();
    })
    .await;
    app.add_user(
        "admin",
        crm::model::Role::Admin,
        crate::support::ADMIN_PASSWORD,
    )
    .await;
    let media = app.running().media.clone().expect("the relay runs");
    import_users(&app, [1501u32].into_iter()).await;
    trunk_ringing(&app, "1501").await;
    let (phone, provider, call_id) = trunk_call_answered(&app, "1501").await;
    let [to_caller_end, to_callee_end] = media.ports(&call_id).expect("anchored")[0];
    let (prov_sock, _) = bind(PROVIDER_IP).await;
    let (phone_sock, _) = bind("127.0.0.1").await;
    let stop = Arc::new(AtomicBool::new(false));
    let relay = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    talk(
        prov_sock.clone(),
        relay(to_caller_end),
        PROVIDER_SSRC,
        stop.clone(),
    );
    talk(
        phone_sock.clone(),
        relay(to_callee_end),
        PHONE_SSRC,
        stop.clone(),
    );
    let secs = Duration::from_secs(5);
    assert_eq!(
        hear(&phone_sock, PROVIDER_SSRC, 25, secs).await,
        25,
        "provider -> phone"
    );
    assert_eq!(
        hear(&prov_sock, PHONE_SSRC, 25, secs).await,
        25,
        "phone -> provider"
    );
    let r = wait_sipp(provider).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    let r = wait_sipp(phone).await;
    assert_eq!((r.ok, r.failed), (1, 0), "phone: {}", r.out);
    stop.store(true, Ordering::Relaxed);
    let gone = crate::support::eventually(Duration::from_secs(5), || {
        let m = media.clone();
        async move { (m.calls() == 0).then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "the call's ports went back after its BYE");
}
