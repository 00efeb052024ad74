//! Desk phones as an office uses them (issue 15): TCP connections that are slow, idle or
//! many from one address cannot starve the office's phones. Drives `crm::sip::start`
//! directly, with short timeouts, so the waits stay short.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm::sip::{BindingStore, CallEvent, Directory, Entry, EventSink, SipConfig, StoredBinding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Dir;
impl Directory for Dir {
    fn lookup(&self, n: &str) -> Option<Entry> {
        n.starts_with("10").then(|| Entry::Extension {
            secret: Arc::from(format!("secret-{n}").as_str()),
            algorithms: None,
        })
    }
}
struct NoStore;
impl BindingStore for NoStore {
    fn upsert(&self, _: &StoredBinding) {}
    fn remove(&self, _: &str, _: &str) {}
}
struct NoEvents;
impl EventSink for NoEvents {
    fn emit(&self, _: CallEvent) {}
}

async fn server(max_conns: usize) -> crm::sip::SipHandle {
    let mut cfg = SipConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.max_tcp_connections = max_conns;
    cfg.tcp_message_timeout_secs = 1;
    cfg.tcp_unproven_idle_secs = 2;
    crm::sip::start(
        cfg,
        Arc::new(Dir),
        Arc::new(NoStore),
        Arc::new(NoEvents),
        Vec::new(),
    )
    .await
    .unwrap()
}

fn register(server: SocketAddr, local: SocketAddr, user: &str, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKt{user}{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{server}>;tag=t\r\nTo: <sip:{user}@{server}>\r\n\
         Call-ID: tcp-{user}-{local}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local};transport=tcp>\r\n\
         Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
    )
}

/// Reads one response (up to the blank line; our answers here have no body), 3 s at most.
async fn response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let read = async {
        while !buf.ends_with(b"\r\n\r\n") {
            match s.read(&mut b).await {
                Ok(1) => buf.push(b[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .ok()
        .flatten()
}

/// Registers `user` over `s` (challenge, then credentials); the final status line.
async fn register_over(s: &mut TcpStream, server: SocketAddr, user: &str) -> String {
    let local = s.local_addr().unwrap();
    s.write_all(register(server, local, user, 1, "").as_bytes())
        .await
        .unwrap();
    let chal = response(s).await.expect("challenged");
    assert!(chal.starts_with("SIP/2.0 401"), "{chal}");
    let nonce = chal
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let uri = format!("sip:{server}");
    let r = crm::sip::digest::response(
        crm::sip::digest::Algorithm::Md5,
        user,
        "crm.local",
        &format!("secret-{user}"),
        "REGISTER",
        &uri,
        nonce,
        "00000001",
        "c0ffee",
        "auth",
    );
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"crm.local\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
    );
    s.write_all(register(server, local, user, 2, &auth).as_bytes())
        .await
        .unwrap();
    let ok = response(s).await.expect("answered");
    ok.lines().next().unwrap_or("").to_string()
}

/// Waits (polling) until the server closes `s`; how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut b = [0u8; 256];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t0.elapsed()), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_tcp_slow_idle_and_many_connections_cannot_lock_out_an_office() {
    let sip = server(48).await;
    let addr = sip.addr;

    // A sender of one byte a second is cut off once a message takes longer than the
    // read timeout (1 s here), whatever it sends.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let dribble = async {
        for b in b"OPTIONS sip:x SIP/2.0\r\n".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), dribble).await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(3))
            .await
            .is_some(),
        "slow sender cut off"
    );
    // A connection that says nothing is closed after the idle time (2 s here).
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let took = closed_within(&mut idle, Duration::from_secs(6))
        .await
        .expect("idle closed");
    assert!(
        took >= Duration::from_millis(1500),
        "not before the idle time: {took:?}"
    );

    // One phone of the office registers over TCP.
    let mut phone = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        register_over(&mut phone, addr, "1001").await,
        "SIP/2.0 200 OK"
    );

    // Then the office's address (and everyone else's) opens more connections than the
    // server holds, each with half a message: the newest take the oldest unproven
    // connections' places, never the registered phone's.
    let mut hogs = Vec::new();
    for _ in 0..60 {
        let mut h = TcpStream::connect(addr).await.unwrap();
        let _ = h.write_all(b"REGISTER sip:x SIP/2.0\r\nVia: ").await;
        hogs.push(h);
    }
    // A second phone from the same address still gets in and registers...
    let mut phone2 = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        register_over(&mut phone2, addr, "1002").await,
        "SIP/2.0 200 OK"
    );
    // ...and the first phone's connection still works.
    let local = phone.local_addr().unwrap();
    phone
        .write_all(register(addr, local, "1001", 3, "").as_bytes())
        .await
        .unwrap();
    let r = response(&mut phone)
        .await
        .expect("first phone still connected");
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    drop(hogs);
    sip.stop().await;
}
