//! SIP trunks against SIPp playing the provider (on 127.0.0.2, so its address differs
//! from the phones' on 127.0.0.1): registration with digest auth and backoff, inbound
//! calls by DID with business hours, refusal of strangers posing as the provider,
//! outbound calls with toll-fraud guards and the provider's 407, click-to-call.

use std::time::Duration;

use crm::domain::telephony::{CallRules, DidRow, NewTrunk, OutboundSettings};
use crm::model::Role;
use crm::sip::trunk::TrunkState;
use crm::sip::{CallDirection, CallEvent};

use crate::sipp::*;
use crate::support::{eventually, TestApp};

pub(crate) const PROVIDER_IP: &str = "127.0.0.2";

/// Ring group 100, "Desk": 1501 and 1502 at once.
async fn desk_group(tel: &crm::domain::telephony::Telephony) {
    tel.save_group(
        None,
        crm::domain::telephony::NewGroup {
            number: "100".into(),
            name: "Desk".into(),
            strategy: crm::sip::Strategy::RingAll,
            member_timeout_secs: 20,
            overall_timeout_secs: 30,
            members: vec!["1501".into(), "1502".into()],
            branch_id: None,
        },
    )
    .await
    .unwrap();
}

/// Extension `ext` may call out anywhere, up to `per_hour` calls an hour; with
/// `auto_answer`, its phone answers the box's click-to-call leg by itself.
pub(crate) async fn allow_calls_out(app: &TestApp, ext: &str, per_hour: u32, auto_answer: bool) {
    app.running()
        .ctx
        .telephony
        .set_outbound(
            None,
            ext,
            OutboundSettings {
                outbound_allowed: true,
                outbound_prefixes: String::new(),
                max_calls_per_hour: per_hour,
                auto_answer,
            },
        )
        .await
        .unwrap();
}

/// The provider's trunk (SIPp on `port`) with no DIDs: for calls out only.
pub(crate) async fn trunk_out(app: &TestApp, port: u16) {
    let mut t = trunk(port, false);
    t.dids.clear();
    save_trunk(app, t).await;
}

/// The provider's trunk whose DID 712000000 rings extension `ext`, at all hours.
pub(crate) async fn trunk_ringing(app: &TestApp, ext: &str) {
    let mut t = trunk(free_port(), false);
    t.dids[0].destination = ext.into();
    t.dids[0].after_hours = None;
    save_trunk(app, t).await;
}

async fn save_trunk(app: &TestApp, t: NewTrunk) {
    app.running()
        .ctx
        .telephony
        .save_trunk(None, t)
        .await
        .unwrap();
}

/// The provider (SIPp) calls DID 712000000 and hangs up 2.5 s after the answer;
/// extension `ext`'s phone (SIPp) answers. Both, and the call's id once answered.
pub(crate) async fn trunk_call_answered(
    app: &TestApp,
    ext: &str,
) -> (tokio::process::Child, tokio::process::Child, String) {
    let sip = app.sip_addr();
    let phone_port = free_port();
    let phone = uas("uas_answer.xml", phone_port, 1);
    register_contact(sip, ext, phone_port).await;
    let mut events = app.running().ctx.call_events.subscribe();
    let scen = scenario("trunk_inbound_call.xml");
    let target = sip.to_string();
    let provider = sipp_cmd_at(
        PROVIDER_IP,
        &[
            &target,
            "-sf",
            &scen,
            "-s",
            "712000000",
            "-d",
            "2500",
            "-m",
            "1",
            "-p",
            &free_port().to_string(),
        ],
    )
    .spawn()
    .expect("sipp is installed");
    let call_id = loop {
        let e = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("the call rings")
            .unwrap();
        if let CallEvent::Answered { call_id, .. } = e {
            break call_id;
        }
    };
    (phone, provider, call_id)
}

pub(crate) fn trunk(port: u16, register: bool) -> NewTrunk {
    NewTrunk {
        name: "Provider".into(),
        host: PROVIDER_IP.into(),
        port: port as u32,
        transport: "UDP".into(),
        username: "trunkuser".into(),
        secret: "trunk-secret".into(),
        register,
        expires: 600,
        caller_id: "+998712000000".into(),
        dids: vec![DidRow {
            did: "712000000".into(),
            destination: "100".into(),
            after_hours: Some("1503".into()),
            branch_id: None,
        }],
        ..Default::default()
    }
}

fn provider(scen: &str, port: u16, log: Option<&std::path::Path>) -> tokio::process::Child {
    let p = port.to_string();
    let mut args = vec![
        "-sf".to_string(),
        scenario(scen),
        "-p".into(),
        p,
        "-m".into(),
        "1".into(),
    ];
    if let Some(l) = log {
        args.extend([
            "-trace_msg".into(),
            "-message_file".into(),
            l.display().to_string(),
        ]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sipp_cmd_at(PROVIDER_IP, &refs)
        .spawn()
        .expect("sipp is installed")
}

/// Extension 1001 may call out (up to `max_per_hour`) through a trunk to SIPp playing
/// the provider's `scen` on a free port (messages logged to `log`, when given). Returns
/// the provider, the phone's injection file and the trunk's port.
pub(crate) async fn calling_out(
    app: &TestApp,
    max_per_hour: u32,
    scen: &str,
    log: Option<&std::path::Path>,
) -> (tokio::process::Child, String, u16) {
    import_users(app, [1001u32].into_iter()).await;
    allow_calls_out(app, "1001", max_per_hour, false).await;
    let port = free_port();
    let prov = provider(scen, port, log);
    trunk_out(app, port).await;
    (prov, inf(app, "1001.csv", &["1001"]), port)
}

/// Extension 1001 (credentials in `users`) runs the phone's `scen` once, calling the
/// national number 901234567 out through the trunk (holding 100 ms where it pauses).
async fn phone_calls_out(sip: std::net::SocketAddr, users: &str, scen: &str) -> SippResult {
    let scen = scenario(scen);
    let args = [
        "-sf",
        &scen,
        "-inf",
        users,
        "-s",
        "901234567",
        "-d",
        "100",
        "-m",
        "1",
    ];
    sipp(sip, &args).await
}

pub(crate) fn call_id(e: &CallEvent) -> &str {
    match e {
        CallEvent::Ringing { call_id, .. }
        | CallEvent::Answered { call_id, .. }
        | CallEvent::Ended { call_id, .. }
        | CallEvent::Parked { call_id, .. }
        | CallEvent::Unparked { call_id, .. } => call_id,
    }
}

/// Waits until the events of one call end; returns them.
async fn one_call(rx: &mut tokio::sync::broadcast::Receiver<CallEvent>) -> Vec<CallEvent> {
    let mut evs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("call events in time")
            .expect("event channel open");
        let end = matches!(e, CallEvent::Ended { .. });
        evs.push(e);
        if end {
            return evs;
        }
    }
}

pub(crate) fn inf(app: &TestApp, name: &str, users: &[&str]) -> String {
    let mut text = String::from("SEQUENTIAL\n");
    for u in users {
        text.push_str(&format!("{u};secret-{u};\n"));
    }
    let p = app.data_dir().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_registers_with_digest_after_a_failure_and_backs_off() {
    let app = TestApp::spawn_with_sip().await;
    let tel = &app.running().ctx.telephony;
    tel.save_call_rules(
        None,
        CallRules {
            trunk_retry_secs: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    import_users(&app, [1503u32, 1501, 1502].into_iter()).await;
    desk_group(tel).await;
    let port = free_port();
    let prov = provider("trunk_provider_register.xml", port, None);
    tel.save_trunk(None, trunk(port, true)).await.unwrap();

    // 503 first: failed with the reason and a next attempt within the 1 s base delay.
    let failed = eventually(Duration::from_secs(10), || async {
        tel.trunk_status().into_iter().find_map(|s| match s.state {
            TrunkState::Failed { reason, retry_in } => Some((reason, retry_in)),
            _ => None,
        })
    })
    .await
    .expect("the 503 is reported");
    assert!(failed.0.contains("503"), "{failed:?}");
    assert!(failed.1 <= 1, "{failed:?}");
    // Then 401, credentials, 200: registered with the provider's expiry.
    let expires = eventually(Duration::from_secs(15), || async {
        tel.trunk_status().into_iter().find_map(|s| match s.state {
            TrunkState::Registered { expires_in } => Some(expires_in),
            _ => None,
        })
    })
    .await
    .expect("registered after the retry");
    assert!(expires > 3000 && expires <= 3600, "{expires}");
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);

    // The admin sees it on the page and in the API.
    let admin = app.login_admin().await;
    let page = admin.get("/telephony").await.text().await.unwrap();
    assert!(page.contains("data-trunk-state=\"registered\""), "{page}");
    let list: serde_json::Value = admin
        .get("/api/v1/telephony/trunks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["status"]["state"], "registered", "{list}");
    assert_eq!(list[0]["name"], "Provider");
    assert!(list[0].get("secret").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_inbound_did_rings_the_group_after_hours_elsewhere_and_strangers_are_challenged() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let tel = &app.running().ctx.telephony;
    import_users(&app, [1501u32, 1502, 1503].into_iter()).await;
    desk_group(tel).await;
    // The provider does not register here; its address is the trunk's host.
    tel.save_trunk(None, trunk(free_port(), false))
        .await
        .unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let answer = uas("uas_answer.xml", ports[0], 1);
    let elsewhere = uas("uas_ring_elsewhere.xml", ports[1], 1);
    let night = uas("uas_answer.xml", ports[2], 1);
    for (ext, port) in [("1501", ports[0]), ("1502", ports[1]), ("1503", ports[2])] {
        register_contact(sip, ext, port).await;
    }
    let mut events = app.running().ctx.call_events.subscribe();
    let call = [
        "-sf",
        &scenario("trunk_inbound_call.xml"),
        "-s",
        "712000000",
        "-d",
        "200",
        "-m",
        "1",
    ];
    assert_ok(&sipp_at(PROVIDER_IP, sip, &call).await, 1, "inbound call");
    let evs = one_call(&mut events).await;
    match evs.as_slice() {
        [CallEvent::Ringing {
            direction,
            from,
            to,
            group,
            extensions,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, .. }] => {
            assert_eq!(*direction, CallDirection::Inbound);
            assert_eq!(from, "+998901112233");
            assert_eq!(to, "712000000");
            assert_eq!(group.as_deref(), Some("100"));
            assert_eq!(extensions, &vec!["1501".to_string(), "1502".into()]);
            assert_eq!(extension, "1501");
            assert_eq!(cause, "completed");
        }
        other => panic!("unexpected events {other:?}"),
    }
    let one_id = call_id(&evs[0]).to_string();
    assert!(evs.iter().all(|e| call_id(e) == one_id));
    // The call log keeps it as an inbound call from the customer's number, answered.
    let row = crate::sip_transfer::log_row(&app, &one_id).await;
    assert_eq!(row["direction"], "inbound", "{row}");
    assert_eq!(row["outcome"], "answered", "{row}");
    assert_eq!(row["party_number"], "+998901112233", "{row}");
    assert_eq!(row["ring_group"], "100", "{row}");
    assert_eq!(row["answered_ext"], "1501", "{row}");
    for (k, what) in [(answer, "answering member"), (elsewhere, "other member")] {
        let r = wait_sipp(k).await;
        assert_eq!((r.ok, r.failed), (1, 0), "{what}: {}", r.out);
    }

    // Closed today (a holiday around now, in the shop's offset): the after-hours
    // destination 1503 rings instead of the group.
    let today = time::OffsetDateTime::now_utc().date();
    let days: Vec<String> = [today.previous_day(), Some(today), today.next_day()]
        .into_iter()
        .flatten()
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .collect();
    tel.save_call_rules(
        None,
        CallRules {
            hours: "mon-sun 00:00-24:00".into(),
            holidays: days.join(", "),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_ok(
        &sipp_at(PROVIDER_IP, sip, &call).await,
        1,
        "after-hours call",
    );
    let evs = one_call(&mut events).await;
    match evs.as_slice() {
        [CallEvent::Ringing {
            direction,
            to,
            group,
            extensions,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { .. }] => {
            assert_eq!(*direction, CallDirection::Inbound);
            assert_eq!(to, "712000000");
            assert_eq!(*group, None);
            assert_eq!(extensions, &vec!["1503".to_string()]);
            assert_eq!(extension, "1503");
        }
        other => panic!("unexpected events {other:?}"),
    }
    let r = wait_sipp(night).await;
    assert_eq!((r.ok, r.failed), (1, 0), "after-hours phone: {}", r.out);

    // The same INVITE from an address that is not the provider's: challenged, not routed.
    let spoof = [
        "-sf",
        &scenario("trunk_spoof.xml"),
        "-s",
        "712000000",
        "-m",
        "1",
    ];
    assert_ok(
        &sipp_at("127.0.0.3", sip, &spoof).await,
        1,
        "stranger gets 407",
    );
    assert!(
        drain(&mut events).is_empty(),
        "nothing rang for the stranger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_outbound_guards_refuse_before_the_provider_and_allowed_calls_pass_its_407() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    import_users(&app, [1000u32, 1001].into_iter()).await;
    allow_calls_out(&app, "1001", 1, false).await;
    let port = free_port();
    let log = app.data_dir().join("provider-messages.log");
    let prov = provider("trunk_provider_uas.xml", port, Some(&log));
    trunk_out(&app, port).await;
    let mut events = app.running().ctx.call_events.subscribe();
    let (no, yes) = (
        inf(&app, "1000.csv", &["1000"]),
        inf(&app, "1001.csv", &["1001"]),
    );
    let refused = |users: &str, number: &str| {
        vec![
            "-sf".to_string(),
            scenario("trunk_outbound_refused.xml"),
            "-inf".into(),
            users.to_string(),
            "-s".into(),
            number.into(),
            "-m".into(),
            "1".into(),
        ]
    };
    let run = |a: Vec<String>| async move {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        sipp(sip, &refs).await
    };
    // 1000 may not call out at all; 1001 may, but not abroad.
    assert_ok(
        &run(refused(&no, "901234567")).await,
        1,
        "no outbound permission: 403",
    );
    assert_ok(
        &run(refused(&yes, "+79161234567")).await,
        1,
        "international: 403",
    );
    // 1001 to a national number: out through the trunk, which challenges with 407.
    let ok = vec![
        "-sf".to_string(),
        scenario("call_auth.xml"),
        "-inf".into(),
        yes.clone(),
        "-s".into(),
        "901234567".into(),
        "-d".into(),
        "200".into(),
        "-m".into(),
        "1".into(),
    ];
    assert_ok(&run(ok).await, 1, "allowed outbound call");
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    // The hourly limit (1) is used up now.
    assert_ok(
        &run(refused(&yes, "901234567")).await,
        1,
        "hourly limit: 403",
    );

    // The provider saw exactly the allowed call's two INVITEs (challenged, then with
    // credentials): nothing of the refused ones.
    let text = std::fs::read_to_string(&log).unwrap();
    let invites: Vec<&str> = text.lines().filter(|l| l.starts_with("INVITE ")).collect();
    assert_eq!(invites.len(), 2, "{invites:?}");
    assert!(
        invites
            .iter()
            .all(|l| l.starts_with("INVITE sip:901234567@")),
        "{invites:?}"
    );

    // Each refused attempt has its row in the call log ("refused"), besides the call.
    let mut evs = drain(&mut events);
    let refused: Vec<String> = evs
        .iter()
        .filter_map(|e| match e {
            CallEvent::Ended { call_id, cause, .. } if cause == "refused" => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 3, "{evs:?}");
    evs.retain(|e| !refused.iter().any(|id| id == call_id(e)));
    match evs.as_slice() {
        [CallEvent::Ringing {
            direction,
            from,
            to,
            extensions,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, talk_ms, .. }] => {
            assert_eq!(*direction, CallDirection::Outbound);
            assert_eq!((from.as_str(), to.as_str()), ("1001", "901234567"));
            assert!(extensions.is_empty());
            assert_eq!(extension, "1001");
            assert_eq!(cause, "completed");
            assert!(*talk_ms >= 150, "{talk_ms}");
        }
        other => panic!("unexpected events {other:?}"),
    }
}

/// The hourly limit survives a restart: the call placed before it counts (from the call
/// log), so the next one in the same hour is refused before the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_hourly_limit_counts_the_calls_made_before_a_restart() {
    let mut app = TestApp::spawn_with_sip().await;
    let (prov, users, _) = calling_out(&app, 1, "trunk_provider_uas.xml", None).await;
    assert_ok(
        &phone_calls_out(app.sip_addr(), &users, "call_auth.xml").await,
        1,
        "the hour's one call",
    );
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    // In the call log before the restart.
    let calls = &app.running().ctx.calls;
    let logged = eventually(Duration::from_secs(10), || async {
        let (rows, _) = calls
            .list(
                &crm::domain::Actor::builtin(
                    1,
                    "admin",
                    crm::model::Role::Admin,
                    crm::model::Language::En,
                ),
                crm::domain::calls::CallFilter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .ok()?;
        rows.iter()
            .any(|k| k.direction == "outbound" && k.ended_ms.is_some())
            .then_some(())
    })
    .await;
    assert!(logged.is_some(), "the call out is in the log");

    app.restart(|c| c.sip = "127.0.0.1:0".into()).await;
    let refused = [
        "-sf",
        &scenario("trunk_outbound_refused.xml"),
        "-inf",
        &users,
        "-s",
        "901234567",
        "-m",
        "1",
    ];
    assert_ok(
        &sipp(app.sip_addr(), &refused).await,
        1,
        "hourly limit after the restart: 403",
    );
}

/// The phone hangs up a call out; the provider answers the box's BYE only after 1.2 s, as
/// if the first ones were lost on the way: the box sends it again meanwhile (UDP timer E)
/// and stops once answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_bye_to_the_provider_is_sent_again_until_answered() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let log = app.data_dir().join("provider-messages.log");
    let (prov, users, _) = calling_out(&app, 10, "trunk_provider_slow_bye.xml", Some(&log)).await;
    assert_ok(
        &phone_calls_out(sip, &users, "call_auth.xml").await,
        1,
        "phone call out",
    );
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    let text = std::fs::read_to_string(&log).unwrap();
    let byes = text.lines().filter(|l| l.starts_with("BYE ")).count();
    // At 0, 0.5 and 1.5 s after the first; the answer at 1.2 s stops the one at 1.5 s.
    assert!((2..=3).contains(&byes), "{byes} BYEs:\n{text}");
}

/// Inside an answered call out through the trunk, the phone's hold and resume re-INVITEs
/// and a DTMF INFO pass the B2BUA both ways: the provider gets them in its own dialog
/// (CSeq, Content-Type and body kept) and its answers come back to the phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_outbound_call_holds_resumes_and_passes_dtmf_info_across_the_b2bua() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let mut events = app.running().ctx.call_events.subscribe();
    let (prov, users, port) = calling_out(&app, 10, "trunk_provider_hold.xml", None).await;
    assert_ok(
        &phone_calls_out(sip, &users, "trunk_phone_hold.xml").await,
        1,
        "phone: hold, INFO, resume",
    );
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    let evs = one_call(&mut events).await;
    assert!(
        matches!(evs.last(), Some(CallEvent::Ended { cause, .. }) if cause == "completed"),
        "{evs:?}"
    );

    // The other way: the provider holds the caller; the box asks the phone in its dialog.
    let prov = provider("trunk_provider_holds.xml", port, None);
    assert_ok(
        &phone_calls_out(sip, &users, "trunk_phone_held.xml").await,
        1,
        "phone: held by the far end",
    );
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_click_to_call_rings_the_operator_with_auto_answer_then_the_target() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let tel = &app.running().ctx.telephony;
    app.add_user("aziza", Role::Operator, "operator-pass-1")
        .await;
    app.add_user("bobur", Role::Operator, "operator-pass-2")
        .await;
    import_users(&app, [1002u32, 1503].into_iter()).await;
    tel.update_extension(None, "1002", "Aziza", Some("aziza".into()), true)
        .await
        .unwrap();
    tel.set_outbound(
        None,
        "1002",
        OutboundSettings {
            outbound_allowed: false,
            outbound_prefixes: String::new(),
            max_calls_per_hour: 0,
            auto_answer: true,
        },
    )
    .await
    .unwrap();
    let (po, pt) = (free_port(), free_port());
    let op = sipp_cmd(&[
        "-sf",
        &scenario("trunk_c2c_operator.xml"),
        "-p",
        &po.to_string(),
        "-d",
        "300",
        "-m",
        "1",
    ])
    .spawn()
    .unwrap();
    let target = uas("uas_answer.xml", pt, 1);
    register_contact(sip, "1002", po).await;
    register_contact(sip, "1503", pt).await;
    let mut events = app.running().ctx.call_events.subscribe();

    let token = app.api_token("aziza").await;
    let resp = app
        .client()
        .post(app.url("/api/v1/calls/dial"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "number": "1503" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    let id = body["call_id"].as_str().unwrap().to_string();
    let r = wait_sipp(op).await;
    assert_eq!((r.ok, r.failed), (1, 0), "operator phone: {}", r.out);
    let r = wait_sipp(target).await;
    assert_eq!((r.ok, r.failed), (1, 0), "target phone: {}", r.out);
    let evs = one_call(&mut events).await;
    match evs.as_slice() {
        [CallEvent::Ringing {
            call_id,
            direction,
            from,
            to,
            extensions,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, .. }] => {
            assert_eq!(call_id, &id);
            assert_eq!(*direction, CallDirection::Internal);
            assert_eq!((from.as_str(), to.as_str()), ("1002", "1503"));
            assert_eq!(extensions, &vec!["1002".to_string()]);
            assert_eq!(extension, "1002");
            assert_eq!(cause, "completed");
        }
        other => panic!("unexpected events {other:?}"),
    }
    assert!(
        evs.iter().all(|e| call_id(e) == id),
        "one call id for both legs"
    );

    // Out through the trunk is under the operator's outbound policy (not allowed here):
    // refused with the reason, nothing rings.
    let resp = app
        .client()
        .post(app.url("/api/v1/calls/dial"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "number": "+998 90 123 45 67" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body = resp.text().await.unwrap();
    assert!(body.contains("not allowed"), "{body}");

    // From the page, a user without a desk phone gets a clear error.
    let bobur = app.login("bobur", "operator-pass-2").await;
    let r = bobur.post_form("/calls/dial", &[("number", "1503")]).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("no desk phone"));
    assert!(drain(&mut events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_malformed_settings_are_refused_with_clear_errors_and_nothing_saved() {
    let app = TestApp::spawn_with_sip().await;
    import_users(&app, [1501u32].into_iter()).await;
    let admin = app.login_admin().await;
    let good = serde_json::json!({
        "name": "Provider", "host": "sip.example.uz", "port": 5060, "transport": "UDP",
        "username": "712000000", "secret": "s3cret", "caller_id": "+998712000000",
        "dids": [{ "did": "712000000", "destination": "1501", "after_hours": null }]
    });
    let cases: &[(&str, serde_json::Value, &str)] = &[
        ("port", serde_json::json!(0), "port"),
        ("transport", serde_json::json!("SCTP"), "transport"),
        ("host", serde_json::json!("not a host!"), "host"),
        ("username", serde_json::json!(""), "username"),
        ("caller_id", serde_json::json!("call me"), "caller ID"),
        ("allow", serde_json::json!("10.0.0.1, x"), "allowed address"),
        (
            "dids",
            serde_json::json!([{ "did": "712000000", "destination": "4444", "after_hours": null }]),
            "no extension or ring group 4444",
        ),
    ];
    for (field, value, want) in cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let r = admin
            .send_json(reqwest::Method::PUT, "/api/v1/telephony/trunks", &body)
            .await;
        assert_eq!(r.status(), 422, "{field}");
        let text = r.text().await.unwrap();
        assert!(text.contains(want), "{field}: {text}");
    }
    let mut unknown = good.clone();
    unknown["surprise"] = serde_json::json!(1);
    let r = admin
        .send_json(reqwest::Method::PUT, "/api/v1/telephony/trunks", &unknown)
        .await;
    assert_eq!(r.status(), 400);
    let list: serde_json::Value = admin
        .get("/api/v1/telephony/trunks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, serde_json::json!([]), "nothing half-written");
    // Bad call rules name the problem too.
    let r = admin
        .send_json(
            reqwest::Method::PUT,
            "/api/v1/telephony/rules",
            &serde_json::json!({ "hours": "mon-fri 18:00-09:00" }),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("business hours"));
    // The page form: a bad port is shown on the page, nothing saved.
    let r = admin
        .post_form(
            "/telephony/trunks",
            &[
                ("name", "P"),
                ("host", "sip.example.uz"),
                ("port", "eighty"),
                ("username", "u"),
                ("secret", "s"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("port: a whole number"));
    // A good one is saved (secret never listed).
    let r = admin
        .send_json(reqwest::Method::PUT, "/api/v1/telephony/trunks", &good)
        .await;
    assert_eq!(r.status(), 204);
    let list: serde_json::Value = admin
        .get("/api/v1/telephony/trunks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["host"], "sip.example.uz");
    assert!(!list.to_string().contains("s3cret"));
}

/// dial.js in a real browser: a click on a customer's number posts to /calls/dial with
/// the CSRF token and shows the server's answer beside the number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_dial_js_turns_numbers_into_click_to_call_buttons() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let (_, oper, ..) = crate::core::shop(&app).await;
    let customer = crate::core::new_customer(&oper, "Dilnoza Karimova", "90 123 45 67").await;
    let tel = &app.running().ctx.telephony;
    import_users(&app, [1002u32].into_iter()).await;
    tel.update_extension(None, "1002", "Desk", Some("oper".into()), true)
        .await
        .unwrap();
    register_contact(sip, "1002", free_port()).await;

    let b = crate::browser::Browser::start().await;
    b.sign_in(&app, "oper", "oper-pass-1").await;
    b.client
        .goto(&app.url(&format!("/customers/{customer}")))
        .await
        .unwrap();
    b.click("#customer-phones a[data-dial='+998901234567']")
        .await;
    // 1002 may not call out (the default): the refusal comes back and is shown; the
    // page did not navigate to the tel: link.
    assert!(
        b.wait_text(".dial-status", "not allowed").await,
        "{}",
        b.client.source().await.unwrap()
    );
    let url = b.client.current_url().await.unwrap();
    assert!(url.path().starts_with("/customers/"), "{url}");
    b.close().await;
    // The order page marks the customer's number the same way.
    let order = crate::core::new_order(&oper, customer, serde_json::json!({})).await;
    let s = app.login("oper", "oper-pass-1").await;
    let html = s
        .get(&format!("/orders/{}", order["id"]))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"href="tel:+998901234567" data-dial="+998901234567""#),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_click_to_call_out_through_the_trunk_passes_the_providers_challenge() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let tel = &app.running().ctx.telephony;
    app.add_user("aziza", Role::Operator, "operator-pass-1")
        .await;
    import_users(&app, [1002u32].into_iter()).await;
    tel.update_extension(None, "1002", "Aziza", Some("aziza".into()), true)
        .await
        .unwrap();
    allow_calls_out(&app, "1002", 5, true).await;
    let port = free_port();
    let prov = provider("trunk_provider_uas.xml", port, None);
    trunk_out(&app, port).await;
    let po = free_port();
    let op = sipp_cmd(&[
        "-sf",
        &scenario("trunk_c2c_operator.xml"),
        "-p",
        &po.to_string(),
        "-d",
        "300",
        "-m",
        "1",
    ])
    .spawn()
    .unwrap();
    register_contact(sip, "1002", po).await;
    let mut events = app.running().ctx.call_events.subscribe();
    let token = app.api_token("aziza").await;
    let resp = app
        .client()
        .post(app.url("/api/v1/calls/dial"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "number": "90 123 45 67" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let r = wait_sipp(op).await;
    assert_eq!((r.ok, r.failed), (1, 0), "operator phone: {}", r.out);
    let r = wait_sipp(prov).await;
    assert_eq!((r.ok, r.failed), (1, 0), "provider: {}", r.out);
    let evs = one_call(&mut events).await;
    match evs.as_slice() {
        [CallEvent::Ringing {
            direction,
            from,
            to,
            extensions,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, .. }] => {
            assert_eq!(*direction, CallDirection::Outbound);
            assert_eq!((from.as_str(), to.as_str()), ("1002", "901234567"));
            assert_eq!(extensions, &vec!["1002".to_string()]);
            assert_eq!(extension, "1002");
            assert_eq!(cause, "completed");
        }
        other => panic!("unexpected events {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_page_forms_save_trunks_rules_and_outbound_policy() {
    let app = TestApp::spawn_with_sip().await;
    import_users(&app, [1501u32].into_iter()).await;
    let admin = app.login_admin().await;
    let r = admin
        .post_form(
            "/telephony/trunks",
            &[
                ("name", "Uztelecom"),
                ("host", "127.0.0.2"),
                ("port", "5070"),
                ("transport", "TCP"),
                ("username", "712000000"),
                ("secret", "trunk-secret"),
                ("expires", "600"),
                ("caller_id", "+998712000000"),
                ("allow", "127.0.0.4"),
                ("dids", "712000000 1501\n"),
            ],
        )
        .await;
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let r = admin
        .post_form(
            "/telephony/extensions/1501/outbound",
            &[
                ("outbound_allowed", "on"),
                ("outbound_prefixes", "+7"),
                ("max_calls_per_hour", "3"),
            ],
        )
        .await;
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let r = admin
        .post_form(
            "/telephony/rules",
            &[
                ("hours", "mon-fri 09:00-18:00"),
                ("holidays", "2026-03-21"),
                ("dial_min_digits", "7"),
                ("dial_prefixes", ""),
                ("trunk_retry_secs", "30"),
            ],
        )
        .await;
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let page = admin.get("/telephony").await.text().await.unwrap();
    assert!(page.contains("data-trunk=\"Uztelecom\""), "{page}");
    assert!(page.contains("127.0.0.2:5070"));
    assert!(!page.contains("trunk-secret"), "the secret is never shown");
    assert!(page.contains("value=\"mon-fri 09:00-18:00\""));
    assert!(page.contains("value=\"+7\""));
    let t = &app.running().ctx.telephony;
    let e = t.extension("1501").await.unwrap();
    assert!(e.outbound_allowed && e.max_calls_per_hour == 3 && !e.auto_answer);
    let trunks = t.list_trunks().await.unwrap();
    assert_eq!(trunks[0].transport, "TCP");
    assert_eq!(trunks[0].allow, "127.0.0.4");
    // Saving again without a secret keeps the stored one.
    admin
        .post_form(
            "/telephony/trunks",
            &[
                ("name", "Uztelecom"),
                ("host", "127.0.0.2"),
                ("username", "712000000"),
            ],
        )
        .await;
    assert_eq!(t.list_trunks().await.unwrap()[0].secret, "trunk-secret");
    // Delete.
    let id = trunks[0].id.to_string();
    admin
        .post_form(&format!("/telephony/trunks/{id}/delete"), &[])
        .await;
    assert!(t.list_trunks().await.unwrap().is_empty());
}

/// A change made here and the change watcher's reload each read the rows and hand
/// them to the SIP server; the one that read older rows must never land last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_racing_a_trunk_save_never_undoes_it() {
    let app = TestApp::spawn_with_sip().await;
    let tel = app.running().ctx.telephony.clone();
    for i in 0..40 {
        let reloads: Vec<_> = (0..4)
            .map(|_| {
                let t = tel.clone();
                tokio::spawn(async move { t.reload().await.unwrap() })
            })
            .collect();
        let mut t = trunk(free_port(), false);
        t.name = format!("Provider {i}");
        t.dids.clear();
        tel.save_trunk(None, t).await.unwrap();
        for r in reloads {
            r.await.unwrap();
        }
        let names: Vec<String> = tel.trunk_status().into_iter().map(|s| s.name).collect();
        assert!(
            names.iter().any(|n| *n == format!("Provider {i}")),
            "round {i}: the SIP server's trunks are {names:?}"
        );
    }
}
