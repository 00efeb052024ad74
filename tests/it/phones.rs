//! Real desk-phone software against the box (issue 15): baresip (Debian `baresip-core`)
//! driven headless through its `ctrl_tcp` module (commands in, events out, as JSON
//! netstrings) and its `cons` module (the one-key commands: hold `x`, resume `X`, DTMF
//! digits), over UDP and TCP. Both phones run on 127.0.0.1: two phones behind one
//! address, as in an office behind NAT or two softphones on one PC. Every wait is a poll
//! with a deadline; the phones are killed when the test ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::{Child, Command};

use crate::sipp::{free_port, import_users};
use crate::support::{eventually, TestApp};

const WAIT: Duration = Duration::from_secs(10);

struct Baresip {
    name: String,
    _child: Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    cons: SocketAddr,
    log: PathBuf,
}

impl Baresip {
    /// Starts baresip for extension `user` (secret `secret-USER`) registering at
    /// `server` over `transport` ("udp" or "tcp").
    async fn start(dir: &Path, user: &str, server: SocketAddr, transport: &str) -> Baresip {
        let home = dir.join(format!("baresip-{user}-{transport}"));
        std::fs::create_dir_all(&home).unwrap();
        let (ctrl_port, cons_port) = (free_port(), free_port());
        // ausine makes a tone (48 kHz stereo only); nothing is played (aufile to
        // /dev/null): no sound card needed.
        std::fs::write(
            home.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:0\n\
                 audio_player aufile,/dev/null\naudio_alert aufile,/dev/null\n\
                 audio_source ausine,440\nausrc_srate 48000\nauplay_srate 48000\n\
                 ausrc_channels 2\nauplay_channels 2\n\
                 module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\n\
                 module aufile.so\nmodule_app account.so\nmodule_app menu.so\n\
                 module_app ctrl_tcp.so\nmodule_app cons.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl_port}\ncons_listen 127.0.0.1:{cons_port}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            home.join("accounts"),
            format!(
                "<sip:{user}@{server};transport={transport}>;auth_pass=secret-{user};\
                 regint=600;answermode=manual\n"
            ),
        )
        .unwrap();
        let log = home.join("trace.log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&home)
            .arg("-s") // SIP trace on stdout: the test reads the SDP of hold/resume there
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("baresip (Debian baresip-core) installed");
        let ctrl = eventually(WAIT, || async move {
            TcpStream::connect(("127.0.0.1", ctrl_port)).await.ok()
        })
        .await
        .expect("baresip's ctrl_tcp listening");
        Baresip {
            name: format!("{user}/{transport}"),
            _child: child,
            ctrl,
            buf: Vec::new(),
            cons: ([127, 0, 0, 1], cons_port).into(),
            log,
        }
    }

    async fn cmd(&mut self, command: &str, params: &str) {
        let d = serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
        let frame = format!("{}:{d},", d.len());
        self.ctrl.write_all(frame.as_bytes()).await.unwrap();
    }

    /// A one-key command of the console (hold `x`, resume `X`, a DTMF digit in a call).
    async fn key(&self, k: &str) {
        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.send_to(k.as_bytes(), self.cons).await.unwrap();
    }

    /// One netstring from the buffer, when complete.
    fn take(&mut self) -> Option<Value> {
        let colon = self.buf.iter().position(|b| *b == b':')?;
        let n: usize = std::str::from_utf8(&self.buf[..colon]).ok()?.parse().ok()?;
        if self.buf.len() < colon + 1 + n + 1 {
            return None;
        }
        let v = serde_json::from_slice(&self.buf[colon + 1..colon + 1 + n]).ok();
        self.buf.drain(..colon + 1 + n + 1);
        v
    }

    /// Waits for the event `kind` (skipping others); its JSON.
    async fn wait(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            while let Some(v) = self.take() {
                if v["type"] == kind {
                    return v;
                }
                seen.push(v["type"].to_string());
            }
            let mut chunk = [0u8; 8192];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ctrl.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => panic!(
                    "{}: no {kind} within {WAIT:?}; saw {seen:?}\n{}",
                    self.name,
                    self.trace()
                ),
            }
        }
    }

    fn trace(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until the SIP trace holds `needle` more than `before` times.
    async fn trace_grows(&self, needle: &str, before: usize) {
        let ok = eventually(WAIT, || async move {
            (self.trace().matches(needle).count() > before).then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "{}: no new {needle:?}\n{}",
            self.name,
            self.trace()
        );
    }
}

async fn registered(app: &TestApp, ext: &str, transport: &str) {
    let sip = app.running().sip.as_ref().unwrap();
    let t = transport.to_ascii_uppercase();
    let ok = eventually(WAIT, || async {
        sip.registrations()
            .iter()
            .any(|r| r.extension == ext && r.transport == t && r.user_agent.contains("baresip"))
            .then_some(())
    })
    .await;
    assert!(
        ok.is_some(),
        "{ext} registered over {t}: {:?}",
        sip.registrations()
    );
}

/// The call log once it holds `n` ended calls.
async fn ended_calls(app: &TestApp, n: usize) -> Vec<crm::db::calls::CallRow> {
    let calls = &app.running().ctx.calls;
    let got = eventually(WAIT, || async {
        let (rows, _) = calls
            .list(crm::db::calls::CallFilter {
                limit: 50,
                ..Default::default()
            })
            .await
            .ok()?;
        (rows.iter().filter(|r| r.ended_ms.is_some()).count() >= n).then_some(rows)
    })
    .await;
    got.expect("call log rows")
}

/// Register, call, answer, hold and resume from either side, DTMF both ways, hang up
/// from either side, and the call-log rows; both phones on one address.
async fn baresip_office_calls(transport: &str) {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    import_users(&app, [1101u32, 1102].into_iter()).await;
    let dir = app.data_dir();
    let mut a = Baresip::start(&dir, "1101", sip, transport).await;
    let mut b = Baresip::start(&dir, "1102", sip, transport).await;
    registered(&app, "1101", transport).await;
    registered(&app, "1102", transport).await;

    // 1101 calls 1102, 1102 answers.
    a.cmd("dial", &format!("sip:1102@{sip}")).await;
    b.wait("CALL_INCOMING").await;
    b.cmd("accept", "").await;
    a.wait("CALL_ESTABLISHED").await;
    b.wait("CALL_ESTABLISHED").await;
    // Hold and resume from the caller's side: the callee gets the re-INVITEs.
    let n = b.trace().matches("a=sendonly").count();
    a.key("x").await;
    b.wait("CALL_REMOTE_SDP").await;
    b.trace_grows("a=sendonly", n).await;
    let n = b.trace().matches("a=sendrecv").count();
    a.key("X").await;
    b.wait("CALL_REMOTE_SDP").await;
    b.trace_grows("a=sendrecv", n).await;
    // And from the callee's side: the caller gets them (through the dialog's tags, though
    // both phones share an address).
    let n = a.trace().matches("a=sendonly").count();
    b.key("x").await;
    a.wait("CALL_REMOTE_SDP").await;
    a.trace_grows("a=sendonly", n).await;
    b.key("X").await;
    a.wait("CALL_REMOTE_SDP").await;
    // DTMF both ways (RFC 4733 in the media the box's SDP exchange set up).
    a.key("5").await;
    assert_eq!(b.wait("CALL_DTMF_START").await["param"], "5");
    b.key("7").await;
    assert_eq!(a.wait("CALL_DTMF_START").await["param"], "7");
    // The callee hangs up: the caller's call ends too.
    b.cmd("hangup", "").await;
    a.wait("CALL_CLOSED").await;
    b.wait("CALL_CLOSED").await;

    // 1102 calls back, 1101 answers and hangs up.
    b.cmd("dial", &format!("sip:1101@{sip}")).await;
    a.wait("CALL_INCOMING").await;
    a.cmd("accept", "").await;
    b.wait("CALL_ESTABLISHED").await;
    a.wait("CALL_ESTABLISHED").await;
    a.cmd("hangup", "").await;
    b.wait("CALL_CLOSED").await;

    // Two rows, both answered and completed by a BYE.
    let mut rows = ended_calls(&app, 2).await;
    rows.sort_by_key(|r| r.started_ms);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (r, (from, to)) in rows.iter().zip([("1101", "1102"), ("1102", "1101")]) {
        assert_eq!(
            (r.from_number.as_str(), r.to_number.as_str()),
            (from, to),
            "{r:?}"
        );
        assert_eq!(r.direction, "internal");
        assert_eq!(r.outcome, "answered", "{r:?}");
        assert_eq!(r.cause.as_deref(), Some("completed"), "{r:?}");
        assert_eq!(r.answered_ext.as_deref(), Some(to));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_baresip_over_udp_register_call_hold_dtmf_hang_up_and_log() {
    baresip_office_calls("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_baresip_over_tcp_register_call_hold_dtmf_hang_up_and_log() {
    baresip_office_calls("tcp").await;
}
