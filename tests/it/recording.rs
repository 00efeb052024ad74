//! Call recording (issue 16, part 2). Two baresip phones (Debian `baresip-core`) call
//! each other through the box; each plays its own tone from a WAV file (`ausrc aufile`):
//! 440 Hz from the caller, 1000 Hz from the callee. The recording must be a stereo 8 kHz
//! WAV with the caller's tone on the left and the callee's on the right, as long as the
//! call's talk time. Then the player's route: Range, download, who may fetch it, bad ids.
//! On demand: the feature code *1 (RFC 4733 from baresip) and the call-card button.
//! Retention: the sweep deletes old recordings by the shop clock and logs each one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crm::model::Role;
use serde_json::Value;
use tokio::net::UdpSocket;

use crate::baresip::{Baresip, Setup};
use crate::sipp::import_users;
use crate::support::{eventually, Session, TestApp, ADMIN_PASSWORD};

const WAIT: Duration = Duration::from_secs(15);

async fn registered(app: &TestApp, ext: &str) {
    let sip = app.running().sip.as_ref().unwrap();
    let ok = eventually(WAIT, || async {
        sip.registrations()
            .iter()
            .any(|r| r.extension == ext && r.user_agent.contains("baresip"))
            .then_some(())
    })
    .await;
    assert!(ok.is_some(), "{ext} registered");
}

/// The call id of the call now answered between the phones (from the call log).
async fn answered_call(app: &TestApp, from: &str) -> crm::db::calls::CallRow {
    let calls = &app.running().ctx.calls;
    let admin = crm::domain::Actor::builtin(1, "admin", Role::Admin, crm::model::Language::En);
    eventually(WAIT, || async {
        let (rows, _) = calls
            .list(
                &admin,
                crm::db::calls::CallFilter {
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .ok()?;
        rows.into_iter()
            .find(|r| r.from_number == from && r.answered_ms.is_some() && r.ended_ms.is_none())
    })
    .await
    .expect("the answered call in the log")
}

/// Waits until the relay has passed `n` more packets of call `id` than `from`.
async fn relayed(app: &TestApp, id: &str, n: u64) -> u64 {
    let media = app.running().media.clone().expect("the relay runs");
    eventually(WAIT, || async {
        media.counts(id).map(|c| c.0).filter(|p| *p >= n)
    })
    .await
    .unwrap_or_else(|| panic!("{n} packets relayed for {id}: {:?}", media.counts(id)))
}

/// The call-log row once it is ended and (when `recorded`) its recording filed.
async fn ended(app: &TestApp, call_id: &str, recorded: bool) -> crm::db::calls::CallRow {
    let calls = &app.running().ctx.calls;
    let admin = crm::domain::Actor::builtin(1, "admin", Role::Admin, crm::model::Language::En);
    eventually(WAIT, || async {
        let r = calls.get(&admin, call_id).await.ok()?;
        (r.ended_ms.is_some() && r.recorded == recorded).then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("{call_id} ended (recorded: {recorded})"))
}

struct Wav {
    channels: u16,
    rate: u32,
    /// Interleaved frames.
    left: Vec<i16>,
    right: Vec<i16>,
}

fn parse_wav(b: &[u8]) -> Wav {
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..16], b"WAVEfmt ");
    let channels = u16::from_le_bytes([b[22], b[23]]);
    let rate = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    assert_eq!(u16::from_le_bytes([b[34], b[35]]), 16, "16-bit");
    assert_eq!(&b[36..40], b"data");
    let size = u32::from_le_bytes([b[40], b[41], b[42], b[43]]) as usize;
    assert_eq!(
        size,
        b.len() - 44,
        "the data size in the header is the file's"
    );
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for f in b[44..].chunks_exact(4) {
        left.push(i16::from_le_bytes([f[0], f[1]]));
        right.push(i16::from_le_bytes([f[2], f[3]]));
    }
    Wav {
        channels,
        rate,
        left,
        right,
    }
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

/// The tone's frequency from its zero crossings (samples at `rate`).
fn hz_at(s: &[i16], rate: u32) -> f64 {
    let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (s.len() as f64 / rate as f64)
}

/// The recording of the two phones' tones: stereo at `rate`, as long as the talk time,
/// the caller's 440 Hz on the left and the callee's 1000 Hz on the right, neither silent
/// (the second in the middle of the call).
fn assert_two_tones(w: &Wav, rate: u32, talk_ms: i64, codec: &str) {
    assert_eq!((w.channels, w.rate), (2, rate), "{codec}");
    let secs = w.left.len() as f64 / rate as f64;
    assert!(
        (secs * 1000.0 - talk_ms as f64).abs() < 1500.0 && secs > 2.5,
        "{codec}: recording {secs:.2} s, talk {talk_ms} ms"
    );
    let (mid, half) = (w.left.len() / 2, rate as usize / 2);
    let (l, r) = (
        &w.left[mid - half..mid + half],
        &w.right[mid - half..mid + half],
    );
    assert!(
        rms(l) > 2000.0 && rms(r) > 2000.0,
        "{codec}: rms {} {}",
        rms(l),
        rms(r)
    );
    let (hl, hr) = (hz_at(l, rate), hz_at(r, rate));
    assert!((hl - 440.0).abs() < 40.0, "{codec}: left {hl:.0} Hz");
    assert!((hr - 1000.0).abs() < 80.0, "{codec}: right {hr:.0} Hz");
}

/// Phones (baresip) of extensions `from` and `to`, each with its set-up, registered.
async fn phones(
    app: &TestApp,
    (from, to): (&str, &str),
    (of_a, of_b): (Setup, Setup),
) -> (Baresip, Baresip) {
    let (dir, sip) = (app.data_dir(), app.sip_addr());
    let a = Baresip::start(&dir, from, sip, of_a).await;
    let b = Baresip::start(&dir, to, sip, of_b).await;
    registered(app, from).await;
    registered(app, to).await;
    (a, b)
}

/// `a` (extension `from`) dials `to`, whose phone `b` answers: the call-log row once
/// the call is answered.
async fn call(
    app: &TestApp,
    a: &mut Baresip,
    b: &mut Baresip,
    (from, to): (&str, &str),
) -> crm::db::calls::CallRow {
    a.cmd("dial", &format!("sip:{to}@{}", app.sip_addr())).await;
    b.wait("CALL_INCOMING").await;
    b.cmd("accept", "").await;
    a.wait("CALL_ESTABLISHED").await;
    b.wait("CALL_ESTABLISHED").await;
    answered_call(app, from).await
}

/// `by` hangs up; the other phone hears the call close.
async fn hang_up(by: &mut Baresip, other: &mut Baresip) {
    by.cmd("hangup", "").await;
    other.wait("CALL_CLOSED").await;
}

/// Two phones on `codec` call each other (440 Hz from the caller, 1000 Hz from the
/// callee), about three seconds; the call-log row and the recording's WAV.
async fn recorded_call(
    app: &TestApp,
    admin: &Session,
    parties: (&str, &str),
    codec: &'static str,
) -> (crm::db::calls::CallRow, Wav) {
    let tones = (Setup::tone(440.0, codec), Setup::tone(1000.0, codec));
    let (mut a, mut b) = phones(app, parties, tones).await;
    let answered = call(app, &mut a, &mut b, parties).await;
    relayed(app, &answered.call_id, 300).await;
    hang_up(&mut a, &mut b).await;
    let row = ended(app, &answered.call_id, true).await;
    let r = admin.get(&format!("/calls/{}/recording", row.id)).await;
    assert_eq!(r.status(), 200, "{codec}");
    (row, parse_wav(&r.bytes().await.unwrap()))
}

/// The recording settings page as the admin sees it.
async fn recording_page(admin: &Session) -> String {
    admin
        .get("/telephony/recording")
        .await
        .text()
        .await
        .unwrap()
}

async fn set_policy(admin: &Session, pairs: &[(&str, &str)]) {
    let r = admin.post_form("/telephony/recording", pairs).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_two_baresip_phones_make_a_stereo_wav_for_the_player() {
    let app = TestApp::spawn_with_sip().await;
    import_users(&app, [1201u32, 1202].into_iter()).await;
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    // Everything the caller's extension does is recorded (the relay is off in tests:
    // the recorded call is anchored anyway).
    set_policy(
        &admin,
        &[("extension:1201", "all"), ("retention_days", "30")],
    )
    .await;
    let page = recording_page(&admin).await;
    assert!(page.contains("value=\"all\" selected"), "{page}");

    let parties = ("1201", "1202");
    let tones = (Setup::tone(440.0, "PCMU"), Setup::tone(1000.0, "PCMU"));
    let (mut a, mut b) = phones(&app, parties, tones).await;
    let call = call(&app, &mut a, &mut b, parties).await;
    // About three seconds of audio both ways (50 packets a second each way).
    relayed(&app, &call.call_id, 300).await;
    hang_up(&mut a, &mut b).await;
    let row = ended(&app, &call.call_id, true).await;
    let talk = row.talk_ms.unwrap();

    // The file: stereo, 8 kHz, the talk time long, caller left (440 Hz), callee right
    // (1000 Hz), neither silent.
    let r = admin.get(&format!("/calls/{}/recording", row.id)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    let body = r.bytes().await.unwrap().to_vec();
    assert_two_tones(&parse_wav(&body), 8000, talk, "PCMU");
    // Recorded under recordings/YYYY/MM/ by the shop clock.
    let rec = app.running().ctx.recordings.file(row.id).await.unwrap();
    let year = app.running().ctx.clock.get().today().year().to_string();
    assert!(
        rec.0.path.starts_with(&format!("{year}/")),
        "{}",
        rec.0.path
    );
    assert_eq!(rec.1.metadata().unwrap().len(), body.len() as u64);

    // Range: a part, the tail, garbage (the whole file), past the end (416).
    let url = admin.url(&format!("/calls/{}/recording", row.id));
    let part = admin
        .client
        .get(&url)
        .header("range", "bytes=0-43")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-43/{}", body.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &body[..44]);
    let tail = admin
        .client
        .get(&url)
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &body[body.len() - 100..]
    );
    for junk in [
        "bytes=abc-def",
        "lines=1-2",
        "bytes=5-1",
        "bytes=0-1,4-5",
        "bytes=--1",
        "чепуха",
    ] {
        let r = admin
            .client
            .get(&url)
            .header("range", junk)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{junk}");
        assert_eq!(r.bytes().await.unwrap().len(), body.len(), "{junk}");
    }
    let past = admin
        .client
        .get(&url)
        .header("range", format!("bytes={}-", body.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    // Download.
    let d = admin
        .get(&format!("/calls/{}/recording/download", row.id))
        .await;
    assert_eq!(d.status(), 200);
    assert!(d.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(d.bytes().await.unwrap().len(), body.len());

    // Bad ids: never a path, never another call's file.
    for bad in [
        "abc",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "1%2F..%2F..",
        "999999",
        "-1",
        "99999999999999999999999",
    ] {
        let r = admin.get(&format!("/calls/{bad}/recording")).await;
        assert_eq!(r.status(), 404, "{bad}");
    }
    let r = admin.get("/calls/../../etc/passwd/recording").await;
    assert_eq!(r.status(), 404);

    // The call log (page and API) shows it to the admin; others get 403.
    let log = admin.get("/calls").await.text().await.unwrap();
    assert!(
        log.contains(&format!("src=\"/calls/{}/recording\"", row.id)),
        "player on the call log"
    );
    let api: Value = admin.get("/api/v1/calls").await.json().await.unwrap();
    let item = api["items"]
        .as_array()
        .or(api.as_array())
        .and_then(|a| a.iter().find(|c| c["call_id"] == call.call_id.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("{api}"));
    assert_eq!(item["recorded"], true);
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    app.add_user("usta", Role::Master, "usta-pass-1").await;
    let oper = app.login("oper", "oper-pass-1").await;
    let usta = app.login("usta", "usta-pass-1").await;
    for s in [&oper, &usta] {
        for p in ["recording", "recording/download"] {
            let r = s.get(&format!("/calls/{}/{p}", row.id)).await;
            assert_eq!(r.status(), 403);
        }
    }
    let log = oper.get("/calls").await.text().await.unwrap();
    assert!(!log.contains("<audio"), "no player for the operator");
    let r = oper
        .post_form("/calls/record", &[("call_id", &call.call_id)])
        .await;
    assert_eq!(r.status(), 403);
    let r = app
        .client()
        .get(app.url(&format!("/calls/{}/recording", row.id)))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 401 || r.status() == 303, "{}", r.status());
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_on_demand_starts_by_feature_code_or_button() {
    let app = TestApp::spawn_with_sip().await;
    import_users(&app, [1301u32, 1302].into_iter()).await;
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    set_policy(&admin, &[("extension:1302", "on_demand")]).await;
    let parties = ("1301", "1302");
    let tones = (Setup::tone(440.0, "PCMU"), Setup::tone(1000.0, "PCMU"));
    let (mut a, mut b) = phones(&app, parties, tones).await;

    // 1. No code, no button: no recording.
    let id = call(&app, &mut a, &mut b, parties).await.call_id;
    relayed(&app, &id, 150).await;
    hang_up(&mut a, &mut b).await;
    let row = ended(&app, &id, false).await;
    let r = admin.get(&format!("/calls/{}/recording", row.id)).await;
    assert_eq!(r.status(), 404);

    // 2. The caller dials *1 a while into the call: recorded from then on only.
    let id = call(&app, &mut a, &mut b, parties).await.call_id;
    relayed(&app, &id, 150).await;
    a.key("*").await;
    assert_eq!(b.wait("CALL_DTMF_START").await["param"], "*");
    a.key("1").await;
    assert_eq!(b.wait("CALL_DTMF_START").await["param"], "1");
    // About two more seconds after the code (while the key is down the caller sends
    // telephone-event as well as audio: 150 packets a second).
    let now = relayed(&app, &id, 0).await;
    relayed(&app, &id, now + 320).await;
    hang_up(&mut a, &mut b).await;
    let row = ended(&app, &id, true).await;
    let (rec, _) = app.running().ctx.recordings.file(row.id).await.unwrap();
    let talk = row.talk_ms.unwrap();
    assert!(
        rec.duration_ms >= 1500 && rec.duration_ms + 1000 <= talk,
        "recorded {} ms of {talk} ms",
        rec.duration_ms
    );

    // 3. The call-card button (admin): refused for a call that is not live, then works.
    let id = call(&app, &mut a, &mut b, parties).await.call_id;
    let r = admin
        .post_form("/calls/record", &[("call_id", "no-such-call")])
        .await;
    assert_eq!(r.status(), 404);
    let r = admin.post_form("/calls/record", &[("call_id", "")]).await;
    assert_eq!(r.status(), 404);
    let before = relayed(&app, &id, 100).await;
    let r = admin.post_form("/calls/record", &[("call_id", &id)]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    relayed(&app, &id, before + 200).await;
    hang_up(&mut b, &mut a).await;
    let row = ended(&app, &id, true).await;
    let n: i64 = app
        .running()
        .ctx
        .db
        .read(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM activity_log WHERE action = 'recording.started' AND entity_id = ?1",
                [row.id],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(n, 1, "the button press is in the activity log");
}

#[tokio::test]
async fn recording_retention_sweep_deletes_old_files_by_the_shop_clock_and_logs_each() {
    use crm::media::record::Finished;
    let app = TestApp::spawn().await;
    let ctx = &app.running().ctx;
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    // Bad settings are refused and change nothing.
    for (k, v) in [
        ("retention_days", "-1"),
        ("retention_days", "abc"),
        ("retention_days", "99999"),
        ("extension:101", "sometimes"),
        ("moon:101", "all"),
    ] {
        let r = admin.post_form("/telephony/recording", &[(k, v)]).await;
        assert_eq!(r.status(), 400, "{k}={v}");
    }
    assert_eq!(ctx.recordings.stored().await.unwrap().retention_days, 0);

    let now = ctx.clock.get().now();
    let dir: PathBuf = ctx.recordings.dir().to_path_buf();
    let mut ids = Vec::new();
    for (name, days_ago) in [("old", 10i64), ("new", 0)] {
        let rel = format!("2026/01/{name}.wav");
        std::fs::create_dir_all(dir.join("2026/01")).unwrap();
        std::fs::write(dir.join(&rel), b"RIFF").unwrap();
        let id = ctx
            .recordings
            .finished(Finished {
                call: format!("{name}-call"),
                path: rel,
                started_ms: (now - days_ago * 86_400) * 1000,
                duration_ms: 1000,
                bytes: 4,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    // A path that climbs out is never filed.
    let bad = ctx
        .recordings
        .finished(Finished {
            call: "evil".into(),
            path: "../../etc/passwd.wav".into(),
            started_ms: 0,
            duration_ms: 1,
            bytes: 1,
        })
        .await;
    assert!(bad.is_err());
    // Retention 0 keeps everything.
    assert_eq!(ctx.recordings.sweep().await.unwrap(), 0);
    set_policy(&admin, &[("retention_days", "30")]).await;
    // 25 days on, by the shop clock: "old" is 35 days old, "new" 25.
    ctx.clock.freeze_at(Some(now + 25 * 86_400));
    assert_eq!(ctx.recordings.sweep().await.unwrap(), 1);
    assert!(!dir.join("2026/01/old.wav").exists());
    assert!(dir.join("2026/01/new.wav").exists());
    let logged: Vec<String> = ctx
        .db
        .read(|c| {
            let mut st = c.prepare(
                "SELECT detail FROM activity_log WHERE action = 'recording.deleted' ORDER BY id",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
        .unwrap();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("2026/01/old.wav"), "{logged:?}");
    // Again: nothing more to do.
    assert_eq!(ctx.recordings.sweep().await.unwrap(), 0);
    ctx.clock.freeze_at(None);
}

/// A box with SIP, the relay off (recordings anchor calls anyway), the admin signed in,
/// and the provider's trunk whose DID rings extension `ext`: the app, the admin, the
/// media plane and the trunk's id.
async fn trunk_recording_box(ext: u32) -> (TestApp, Session, crm::media::Media, i64) {
    let app = TestApp::spawn_with(|c| {
        c.sip = "127.0.0.1:0".into();
        c.media.relay = "off".into();
    })
    .await;
    app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    let media = app.running().media.clone().expect("the relay runs");
    import_users(&app, [ext].into_iter()).await;
    crate::sip_trunk::trunk_ringing(&app, &ext.to_string()).await;
    let id = app.running().ctx.telephony.list_trunks().await.unwrap()[0].id;
    (app, admin, media, id)
}

/// A call from the provider to an extension with the trunk's policy "all calls" and the
/// relay off (`[media] relay = "off"`): the recording anchors the call anyway. SIPp plays
/// both sides' signalling, the test's sockets their RTP (G.711 µ-law, a different level
/// each); the WAV has the provider (the caller) left and the phone right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_trunk_policy_anchors_and_records_an_inbound_call_with_the_relay_off() {
    use crate::sip_trunk::trunk_call_answered;
    use crate::sipp::wait_sipp;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (app, admin, media, id) = trunk_recording_box(1601).await;
    set_policy(&admin, &[(&format!("trunk:{id}"), "all")]).await;
    // The caller is a customer with an order: the card and the order page list the call.
    let api = crate::core::Api::of(&app, "admin").await;
    let customer = crate::core::new_customer(&api, "Азиз Каримов", "+998901112233").await;
    let order = crate::core::new_order(&api, customer, serde_json::json!({})).await["id"]
        .as_i64()
        .unwrap();

    let (phone, provider, call_id) = trunk_call_answered(&app, "1601").await;
    let [to_caller_end, to_callee_end] = media.ports(&call_id).expect("anchored")[0];
    let stop = Arc::new(AtomicBool::new(false));
    trunk_parties_talk([to_caller_end, to_callee_end], &stop).await;
    let r = wait_sipp(provider).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    let r = wait_sipp(phone).await;
    assert_eq!((r.ok, r.failed), (1, 0), "phone: {}", r.out);
    stop.store(true, Ordering::Relaxed);
    let row = ended(&app, &call_id, true).await;
    let r = admin.get(&format!("/calls/{}/recording", row.id)).await;
    assert_eq!(r.status(), 200);
    let w = parse_wav(&r.bytes().await.unwrap());
    assert_eq!((w.channels, w.rate), (2, 8000));
    let secs = w.left.len() as f64 / 8000.0;
    assert!((1.0..4.0).contains(&secs), "{secs:.2} s");
    let mid = w.left.len() / 2;
    // µ-law 0x90 and 0x10 are opposite levels: each channel holds its own party's.
    let (l, rr) = (w.left[mid], w.right[mid]);
    assert_eq!(l, crm::media::record::ULAW[0x90], "left: the provider");
    assert_eq!(rr, crm::media::record::ULAW[0x10], "right: the phone");
    assert!(l != 0 && rr != 0 && l == -rr);
    // The player on the customer card and on the order page.
    let src = format!("src=\"/calls/{}/recording\"", row.id);
    for page in [format!("/customers/{customer}"), format!("/orders/{order}")] {
        let html = admin.get(&page).await.text().await.unwrap();
        assert!(html.contains(&src), "player on {page}");
    }
}

/// The provider (at PROVIDER_IP, µ-law 0x90) and the phone (0x10) of a trunk call send
/// G.711 to the relay's ends every 20 ms until `stop`, each draining what comes back.
async fn trunk_parties_talk(ends: [u16; 2], stop: &std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use crate::sip_trunk::PROVIDER_IP;
    use std::sync::atomic::Ordering;
    for (ip, port, ssrc, level) in [
        (PROVIDER_IP, ends[0], 0x2222_2222u32, 0x90u8),
        ("127.0.0.1", ends[1], 0x1111_1111, 0x10),
    ] {
        let sock = UdpSocket::bind((ip, 0)).await.unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seq = 0u16;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let mut p = vec![0x80, 0x00];
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
                p.extend_from_slice(&ssrc.to_be_bytes());
                p.extend(std::iter::repeat_n(level, 160));
                let _ = sock.send_to(&p, to).await;
                // Drain what the relay sends back.
                while let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::ZERO, sock.recv_from(&mut buf)).await
                {
                }
                seq = seq.wrapping_add(1);
            }
        });
    }
}

/// Recordings stored as Opus: the setting is a choice on the recording page (a value
/// that is not one is refused and changes nothing); a trunk call recorded after it is an
/// Ogg Opus file, served as `audio/ogg` under its `.opus` name with Range support, and
/// the call's row gives its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_stored_as_opus_is_served_as_ogg() {
    use crate::sip_trunk::trunk_call_answered;
    use crate::sipp::wait_sipp;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (app, admin, media, id) = trunk_recording_box(1621).await;
    let trunk = format!("trunk:{id}");
    let raw = |body: String| {
        admin
            .client
            .post(admin.url("/telephony/recording"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let csrf = admin.csrf.clone();
    // Not a format: refused with the catalogue's words in the admin's language.
    for (value, lang, says) in [
        ("mp3", "en", "Unknown recording setting"),
        (
            "%D0%BE%D0%BF%D1%83%D1%81",
            "ru",
            "Неизвестная настройка записи",
        ), // "опус"
        (
            "%D0%B2%D0%B0%D0%B2",
            "uz-Cyrl",
            "Номаълум ёзиб олиш созламаси",
        ), // "вав"
        ("%FF%FEopus", "ru", "UTF-8"),
    ] {
        let r = admin
            .post_form("/lang", &[("lang", lang), ("back", "/")])
            .await;
        assert!(r.status().is_redirection(), "{lang}");
        let body = format!("{trunk}=all&format={value}&retention_days=5&_csrf={csrf}");
        let r = raw(body).await.unwrap();
        assert_eq!(r.status(), 400, "{value}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{value}: {text}");
    }
    admin
        .post_form("/lang", &[("lang", "en"), ("back", "/")])
        .await;
    let page = recording_page(&admin).await;
    assert!(page.contains("value=\"wav\" selected"), "WAV until set");
    assert!(
        page.contains("value=\"0\""),
        "nothing else was saved either"
    );
    assert!(
        page.contains("value=\"0\""),
        "nothing else was saved either"
    );

    // Saves racing each other: the files made afterwards are in the format stored last.
    let saves = (0..8).map(|i| {
        let f = if i % 2 == 0 { "opus" } else { "wav" };
        let body = format!("{trunk}=all&format={f}&_csrf={csrf}");
        async move { raw(body).await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(saves).await;
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    let page = recording_page(&admin).await;
    let stored = if page.contains("value=\"opus\" selected") {
        ".opus"
    } else {
        ".wav"
    };
    let record = |ext: &'static str| {
        let (app, media, admin) = (&app, &media, &admin);
        async move {
            let (phone, provider, call_id) = trunk_call_answered(app, "1621").await;
            let [to_caller_end, to_callee_end] = media.ports(&call_id).expect("anchored")[0];
            let stop = Arc::new(AtomicBool::new(false));
            trunk_parties_talk([to_caller_end, to_callee_end], &stop).await;
            assert_eq!(wait_sipp(provider).await.failed, 0);
            assert_eq!(wait_sipp(phone).await.failed, 0);
            stop.store(true, Ordering::Relaxed);
            let row = ended(app, &call_id, true).await;
            let r = admin
                .get(&format!("/calls/{}/recording/download", row.id))
                .await;
            let name = r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(name.contains(ext), "stored {ext}, made {name}");
            row
        }
    };
    record(stored).await;

    set_policy(&admin, &[(&trunk, "all"), ("format", "opus")]).await;
    let page = recording_page(&admin).await;
    assert!(page.contains("value=\"opus\" selected"), "{page}");
    let row = record(".opus").await;
    let r = admin.get(&format!("/calls/{}/recording", row.id)).await;
    assert_eq!(r.status(), 200);
    let h = |k: &str| r.headers().get(k).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("content-type"), "audio/ogg; codecs=opus");
    assert!(
        h("content-disposition").contains(".opus"),
        "{}",
        h("content-disposition")
    );
    let b = r.bytes().await.unwrap();
    assert_eq!(&b[..4], b"OggS");
    assert_eq!(&b[28..36], b"OpusHead");
    // About 2 s of stereo: a WAV would be 64 kB.
    assert!(b.len() < 20_000, "{} bytes", b.len());
    let part = admin
        .client
        .get(admin.url(&format!("/calls/{}/recording", row.id)))
        .header("Range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(&part.bytes().await.unwrap()[..], b"OggS");
}

/// G.722 and Opus calls between two baresip phones are recorded too: decoded to 16 kHz
/// PCM (the wideband rate), as long as the talk time, each party's tone on its channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_g722_and_opus_calls_are_decoded_to_a_16_khz_wav() {
    let app = TestApp::spawn_with_sip().await;
    import_users(&app, [1901u32, 1902, 1903, 1904].into_iter()).await;
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    set_policy(
        &admin,
        &[("extension:1901", "all"), ("extension:1903", "all")],
    )
    .await;
    for (parties, codec) in [(("1901", "1902"), "G722"), (("1903", "1904"), "opus")] {
        let (row, w) = recorded_call(&app, &admin, parties, codec).await;
        assert_two_tones(&w, 16_000, row.talk_ms.unwrap(), codec);
    }
}

/// A WAV of `secs` seconds of `hz` at `rate`, `channels`.
fn wav_bytes(rate: u32, channels: u16, hz: f64, secs: f64) -> Vec<u8> {
    let n = (rate as f64 * secs) as u32 * channels as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + n * 2).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
    b.extend_from_slice(&(2 * channels).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(n * 2).to_le_bytes());
    for i in 0..n {
        let t = (i / channels as u32) as f64 / rate as f64;
        let v = (f64::sin(2.0 * std::f64::consts::PI * hz * t) * 10_000.0) as i16;
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

async fn upload_announcement(admin: &Session, bytes: Vec<u8>) -> (u16, String) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name("prompt.wav")
            .mime_str("audio/wav")
            .unwrap(),
    );
    let r = admin
        .client
        .post(admin.url(&format!(
            "/telephony/recording/announcement?_csrf={}",
            admin.csrf
        )))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// What a phone set up with `hear: Some(dir)` heard: its rate and the first channel's
/// samples of the WAV baresip dumped in `dir` (PCM16 at the codec's rate, mono or
/// stereo as the codec decodes; the chunks are read, not assumed).
fn heard(dir: &std::path::Path) -> (u32, Vec<i16>) {
    let b = crate::baresip::heard_wav(dir)
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    let (mut rate, mut channels, mut at) = (8000, 1usize, 12);
    while at + 8 <= b.len() {
        let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        let body = &b[at + 8..(at + 8 + len).min(b.len())];
        match &b[at..at + 4] {
            b"fmt " if body.len() >= 16 => {
                channels = u16::from_le_bytes([body[2], body[3]]).max(1) as usize;
                rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            }
            // baresip writes the data chunk's size only when the call ends.
            b"data" => {
                let pcm = b[at + 8..]
                    .chunks_exact(2 * channels)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect();
                return (rate, pcm);
            }
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
    (rate, Vec::new())
}

/// The announcement: uploads are checked (a WAV, 8 kHz mono 16-bit, at most 30 s, each
/// refusal with its message); with the beep set, both phones of an all-calls recording
/// hear it (1400 Hz) at the start of the call while they both send silence, and the
/// recording starts after it. On a G.711 call and on an Opus one (the beep then goes
/// out as Opus frames in place of the phones' own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_announcement_plays_to_both_parties_before_recording() {
    let app = TestApp::spawn_with_sip().await;
    import_users(&app, [1801u32, 1802, 1803, 1804].into_iter()).await;
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    // Uploads: refused with a message that says why, then a good one.
    for (bytes, says) in [
        (b"not a wav at all".to_vec(), "must be a WAV file"),
        (wav_bytes(16_000, 1, 600.0, 0.5), "8 kHz, mono, 16-bit"),
        (wav_bytes(8000, 2, 600.0, 0.5), "8 kHz, mono, 16-bit"),
        (wav_bytes(8000, 1, 600.0, 31.0), "30 seconds"),
        (wav_bytes(8000, 1, 600.0, 0.0), "30 seconds"),
    ] {
        let (status, page) = upload_announcement(&admin, bytes).await;
        assert_eq!(status, 400, "{says}");
        assert!(page.contains(says), "{says}: {page}");
    }
    assert!(!app.data_dir().join("prompts/announcement.wav").exists());
    // "The uploaded announcement" with none uploaded is refused.
    let r = admin
        .post_form("/telephony/recording", &[("announce", "file")])
        .await;
    assert_eq!(r.status(), 400);
    let (status, _) = upload_announcement(&admin, wav_bytes(8000, 1, 600.0, 0.5)).await;
    assert_eq!(status, 303);
    assert!(app.data_dir().join("prompts/announcement.wav").is_file());
    let page = recording_page(&admin).await;
    assert!(page.contains("value=\"file\" selected"), "{page}");
    // The beep, for every call of 1801 and 1803.
    set_policy(
        &admin,
        &[
            ("extension:1801", "all"),
            ("extension:1803", "all"),
            ("announce", "beep"),
        ],
    )
    .await;
    let r = admin
        .post_form("/telephony/recording", &[("announce", "loud")])
        .await;
    assert_eq!(r.status(), 400);

    let dir = app.data_dir();
    for (parties, codec) in [(("1801", "1802"), "PCMU"), (("1803", "1804"), "opus")] {
        let quiet = |hear: &str| Setup {
            hear: Some(dir.join(hear)),
            ..Setup::tone(0.0, codec)
        };
        let heard_by = [
            format!("{}-heard", parties.0),
            format!("{}-heard", parties.1),
        ];
        let setups = (quiet(&heard_by[0]), quiet(&heard_by[1]));
        let (mut a, mut b) = phones(&app, parties, setups).await;
        let call = call(&app, &mut a, &mut b, parties).await;
        relayed(&app, &call.call_id, 250).await;
        hang_up(&mut a, &mut b).await;
        a.wait("CALL_CLOSED").await;
        let row = ended(&app, &call.call_id, true).await;
        for f in &heard_by {
            let (rate, s) = eventually(WAIT, || async {
                let (rate, s) = heard(&dir.join(f));
                (s.len() > rate as usize * 2).then_some((rate, s))
            })
            .await
            .unwrap_or_else(|| heard(&dir.join(f)));
            let r = rate as usize;
            assert!(
                s.len() > r * 2,
                "{codec} {f}: {} samples at {rate}",
                s.len()
            );
            // The loudest 0.2 s window in the first 1.5 s is the beep; the last second
            // is the other party's silence.
            let first = &s[..(r * 3 / 2).min(s.len())];
            let best = first
                .windows(r / 5)
                .step_by(r / 50)
                .max_by(|x, y| rms(x).total_cmp(&rms(y)))
                .unwrap();
            assert!(
                rms(best) > 2000.0,
                "{codec} {f}: no beep (rms {})",
                rms(best)
            );
            let h = hz_at(best, rate);
            assert!((h - 1400.0).abs() < 100.0, "{codec} {f}: {h:.0} Hz");
            let tail = &s[s.len() - r..];
            assert!(
                rms(tail) < 300.0,
                "{codec} {f}: the tail is not silent ({})",
                rms(tail)
            );
        }
        // Recorded after the announcement: shorter than the talk time by about its
        // length, and what was recorded is the parties' silence (the beep is not in it).
        let (rec, path) = app.running().ctx.recordings.file(row.id).await.unwrap();
        let talk = row.talk_ms.unwrap();
        assert!(
            rec.duration_ms + 400 <= talk,
            "{codec}: recorded {} ms of {talk} ms",
            rec.duration_ms
        );
        let w = parse_wav(&std::fs::read(path).unwrap());
        assert!(
            rms(&w.left) < 300.0 && rms(&w.right) < 300.0,
            "{codec}: the beep was recorded"
        );
    }
}

/// Backups hold the recordings unless the settings leave them out; restoring a backup
/// made without them keeps the call rows and the player says the file is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_backups_hold_the_recordings_unless_left_out() {
    use crm::media::record::Finished;
    let mut app = TestApp::spawn().await;
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    let ctx = app.running().ctx.clone();
    let call_id = "backup-call-1".to_string();
    let id = call_id.clone();
    let row_id = ctx
        .db
        .write(move |c| {
            crm::db::calls::upsert_ringing(
                c,
                &crm::db::calls::NewCall {
                    call_id: &id,
                    direction: "internal",
                    from_number: "101",
                    to_number: "102",
                    party_number: "101",
                    ring_group: None,
                    extensions: &["102".to_string()],
                    customer_id: None,
                    open_orders: &[],
                    transferred_by: None,
                    transferred_from: None,
                    started_ms: 1_767_000_000_000,
                    branch_id: None,
                },
            )
        })
        .await
        .unwrap();
    let rel = "2026/01/backup-call-1.wav";
    let dir = ctx.recordings.dir().to_path_buf();
    std::fs::create_dir_all(dir.join("2026/01")).unwrap();
    std::fs::write(dir.join(rel), wav_bytes(8000, 2, 440.0, 0.5)).unwrap();
    ctx.recordings
        .finished(Finished {
            call: call_id.clone(),
            path: rel.into(),
            started_ms: 1_767_000_000_000,
            duration_ms: 500,
            bytes: 8044,
        })
        .await
        .unwrap();
    let r = admin.get(&format!("/calls/{row_id}/recording")).await;
    assert_eq!(r.status(), 200);
    let cfg = crate::support::test_config(&app.data_dir());
    let entries = |m: &crm::ops::archive::Manifest| -> Vec<String> {
        m.files.iter().map(|f| f.path.clone()).collect()
    };
    // By default: in the backup.
    let out = tempfile::tempdir().unwrap();
    let with = crm::ops::backup::create(&cfg, Some(out.path())).unwrap();
    let names = entries(&with.manifest);
    assert!(names.contains(&format!("recordings/{rel}")), "{names:?}");
    // Left out: not in it (attachments and the database still are).
    set_policy(&admin, &[("backups", "leave_out")]).await;
    let page = recording_page(&admin).await;
    assert!(page.contains("value=\"leave_out\" selected"), "{page}");
    let r = admin
        .post_form("/telephony/recording", &[("backups", "sometimes")])
        .await;
    assert_eq!(r.status(), 400);
    let without = crm::ops::backup::create(&cfg, Some(out.path())).unwrap();
    let names = entries(&without.manifest);
    assert!(
        names.iter().all(|n| !n.starts_with("recordings/")),
        "{names:?}"
    );
    assert!(names.contains(&"crm.db".to_string()));
    app.stop().await;

    // A new box restored from the backup without recordings: the call is listed, the
    // player says the recording is not on this box (410, not a 500).
    let fresh = tempfile::tempdir().unwrap();
    let cfg2 = crate::support::test_config(fresh.path());
    crm::ops::restore::restore(&cfg2, &without.path).unwrap();
    assert!(!fresh.path().join("recordings").join(rel).exists());
    let restored = TestApp::spawn_config(cfg2, fresh).await;
    let admin = restored.login("admin", ADMIN_PASSWORD).await;
    let r = admin.get(&format!("/calls/{row_id}/recording")).await;
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("not on this box"));
    let log = admin.get("/calls").await;
    assert_eq!(log.status(), 200);
    // The one with recordings brings the file back.
    let fresh = tempfile::tempdir().unwrap();
    let cfg3 = crate::support::test_config(fresh.path());
    crm::ops::restore::restore(&cfg3, &with.path).unwrap();
    assert!(fresh.path().join("recordings").join(rel).is_file());
}

/// A party that falls silent while the announcement plays (Opus DTX, G.711 with voice
/// activity detection) still gives the other party the whole prompt: the relay sends the
/// packets it misses in its place, and its own packets after the silence are renumbered
/// after them, so the far end sees one stream with no gap in time and none in sequence.
/// Here the phone goes quiet for 500 ms once the provider hears the prompt from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_announcement_fills_a_silent_partys_gaps() {
    use crate::sip_trunk::{trunk_call_answered, PROVIDER_IP};
    use crate::sipp::wait_sipp;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    const PHONE_SSRC: u32 = 0x1111_1111;
    const PHONE_LEVEL: u8 = 0x10;
    let (app, admin, media, id) = trunk_recording_box(1611).await;
    let (status, _) = upload_announcement(&admin, wav_bytes(8000, 1, 1000.0, 1.2)).await;
    assert_eq!(status, 303);
    set_policy(
        &admin,
        &[(&format!("trunk:{id}"), "all"), ("announce", "file")],
    )
    .await;

    let (phone, provider, call_id) = trunk_call_answered(&app, "1611").await;
    let [to_caller_end, to_callee_end] = media.ports(&call_id).expect("anchored")[0];
    let relay = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let stop = Arc::new(AtomicBool::new(false));
    let prompt_heard = Arc::new(AtomicBool::new(false));
    // What the provider receives of the phone's stream: arrival, sequence number, and
    // whether it is the phone's own audio.
    let got: Arc<Mutex<Vec<(Instant, u16, bool)>>> = Default::default();
    let prov = Arc::new(UdpSocket::bind((PROVIDER_IP, 0)).await.unwrap());
    let phone_sock = Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await.unwrap());
    let packet = |seq: u16, ts: u32, ssrc: u32, level: u8| {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend(std::iter::repeat_n(level, 160));
        p
    };
    {
        let (prov, stop, got, heard) = (
            prov.clone(),
            stop.clone(),
            got.clone(),
            prompt_heard.clone(),
        );
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_millis(50), prov.recv_from(&mut buf)).await
                else {
                    continue;
                };
                let p = &buf[..n];
                if n != 172 || p[8..12] != PHONE_SSRC.to_be_bytes() {
                    continue;
                }
                let own = p[12..].iter().all(|b| *b == PHONE_LEVEL);
                if !own {
                    heard.store(true, Ordering::Relaxed);
                }
                let seq = u16::from_be_bytes([p[2], p[3]]);
                got.lock().unwrap().push((Instant::now(), seq, own));
            }
        });
    }
    // The provider talks all along; the phone too, but for 25 packets' time once the
    // prompt reached the provider (its sequence numbers go on where they stopped, its
    // timestamps jump the silence, as a phone's do).
    for (sock, to, ssrc, level, quiet) in [
        (
            prov.clone(),
            relay(to_caller_end),
            0x2222_2222u32,
            0x90u8,
            None,
        ),
        (
            phone_sock.clone(),
            relay(to_callee_end),
            PHONE_SSRC,
            PHONE_LEVEL,
            Some(prompt_heard.clone()),
        ),
    ] {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut seq, mut tick_no, mut silent) = (0u16, 0u32, None::<u32>);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                tick_no += 1;
                if let Some(q) = &quiet {
                    if silent.is_none() && q.load(Ordering::Relaxed) {
                        silent = Some(tick_no);
                    }
                    if silent.is_some_and(|s| tick_no < s + 25) {
                        continue;
                    }
                }
                let _ = sock
                    .send_to(&packet(seq, tick_no * 160, ssrc, level), to)
                    .await;
                seq = seq.wrapping_add(1);
                if quiet.is_some() {
                    while let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::ZERO, sock.recv_from(&mut buf)).await
                    {
                    }
                }
            }
        });
    }
    let r = wait_sipp(provider).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    let r = wait_sipp(phone).await;
    assert_eq!((r.ok, r.failed), (1, 0), "phone: {}", r.out);
    stop.store(true, Ordering::Relaxed);
    ended(&app, &call_id, true).await;

    let got = got.lock().unwrap().clone();
    let first = got
        .iter()
        .position(|p| !p.2)
        .expect("the prompt reached the provider");
    let last = got.iter().rposition(|p| !p.2).unwrap();
    for w in got.windows(2) {
        assert_eq!(
            w[1].1,
            w[0].1.wrapping_add(1),
            "one unbroken sequence: {:?}",
            got.iter().map(|p| p.1).collect::<Vec<_>>()
        );
    }
    let gap = got[first..=last]
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap();
    assert!(
        gap < Duration::from_millis(200),
        "the prompt had a {gap:?} hole"
    );
    // 1.2 s of prompt in 20 ms packets, all of it heard.
    assert!(
        last - first + 1 >= 55,
        "{} prompt packets",
        last - first + 1
    );
    assert!(
        got[last + 1..].iter().filter(|p| p.2).count() >= 10,
        "the phone's own audio follows the prompt"
    );
}
