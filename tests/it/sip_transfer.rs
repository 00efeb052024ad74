//! Transfers of calls through the trunk (issue 15): the box, not the provider, places
//! the new leg, moves the provider's media to it, reports with NOTIFY, and keeps the call
//! log's chain. SIPp plays the provider (on 127.0.0.2) and the phones.

use std::time::Duration;

use crm::sip::{CallDirection, CallEvent};

use crate::sip_trunk::{call_id, inf, trunk_ringing, PROVIDER_IP};
use crate::sipp::*;
use crate::support::{eventually, TestApp};

/// A trunk whose DID 712000000 rings extension 1501 (the operator), and 1501, 1502
/// imported.
pub(crate) async fn office_with_trunk(app: &TestApp) {
    import_users(app, [1501u32, 1502].into_iter()).await;
    trunk_ringing(app, "1501").await;
}

/// The provider (SIPp) calls DID 712000000; once answered and transferred, it checks
/// that the box's re-INVITE carries the transfer target's offer, and hangs up 500 ms
/// later.
pub(crate) async fn provider_call_to_transfer(sip: std::net::SocketAddr) -> SippResult {
    let scen = scenario("xfer_provider.xml");
    let args = ["-sf", &scen, "-s", "712000000", "-d", "500", "-m", "1"];
    sipp_at(PROVIDER_IP, sip, &args).await
}

/// Events until `n` calls have ended (or 20 s), grouped by call id in order of arrival.
pub(crate) async fn calls_ended(
    rx: &mut tokio::sync::broadcast::Receiver<CallEvent>,
    n: usize,
) -> Vec<(String, Vec<CallEvent>)> {
    let mut calls: Vec<(String, Vec<CallEvent>)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let ended = |calls: &Vec<(String, Vec<CallEvent>)>| {
        calls
            .iter()
            .filter(|(_, evs)| evs.iter().any(|e| matches!(e, CallEvent::Ended { .. })))
            .count()
    };
    while ended(&calls) < n {
        let Ok(Ok(e)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        let id = call_id(&e).to_string();
        match calls.iter_mut().find(|(k, _)| *k == id) {
            Some((_, v)) => v.push(e),
            None => calls.push((id, vec![e])),
        }
    }
    calls
}

/// The call-log row of `id` once it has ended, through the API.
pub(crate) async fn log_row(app: &TestApp, id: &str) -> serde_json::Value {
    let token = app.api_token("admin").await;
    let client = app.client();
    eventually(Duration::from_secs(10), || {
        let (client, token, url) = (client.clone(), token.clone(), app.url("/api/v1/calls"));
        let id = id.to_string();
        async move {
            let v: serde_json::Value = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v["items"]
                .as_array()?
                .iter()
                .find(|c| c["call_id"] == id.as_str() && !c["ended_ms"].is_null())
                .cloned()
        }
    })
    .await
    .unwrap_or_else(|| panic!("call {id} in the call log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_transfer_of_a_trunk_call_rings_the_master_from_the_box_and_logs_the_chain() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    office_with_trunk(&app).await;
    let (p_op, p_master) = (free_port(), free_port());
    let op_port = p_op.to_string();
    let box_addr = sip.to_string();
    let op = sipp_cmd(&[
        "-sf",
        &scenario("xfer_operator.xml"),
        "-p",
        &op_port,
        "-key",
        "box",
        &box_addr,
        "-key",
        "target",
        "1502",
        "-m",
        "1",
    ])
    .spawn()
    .unwrap();
    let master = uas("uas_answer.xml", p_master, 1);
    register_contact(sip, "1501", p_op).await;
    register_contact(sip, "1502", p_master).await;
    let mut events = app.running().ctx.call_events.subscribe();
    // The provider checks that the box's re-INVITE carries the master's offer, and hangs
    // up 500 ms later; the master gets the box's BYE.
    let provider = provider_call_to_transfer(sip).await;
    assert_ok(
        &provider,
        1,
        "provider: answered, re-INVITEd with the master's offer",
    );
    assert_ok(
        &wait_sipp(op).await,
        1,
        "operator: 202, NOTIFY 100 and 200, BYE",
    );
    assert_ok(
        &wait_sipp(master).await,
        1,
        "master: rung by the box, then BYE",
    );

    let calls = calls_ended(&mut events, 2).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (first, second) = (&calls[0], &calls[1]);
    match first.1.as_slice() {
        [CallEvent::Ringing {
            direction,
            from,
            to,
            extensions,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, .. }] => {
            assert_eq!(*direction, CallDirection::Inbound);
            assert_eq!(from, "+998901112233");
            assert_eq!(to, "712000000");
            assert_eq!(extensions, &vec!["1501".to_string()]);
            assert_eq!(extension, "1501");
            assert_eq!(cause, "completed");
        }
        other => panic!("the operator's call: {other:?}"),
    }
    match second.1.as_slice() {
        [CallEvent::Ringing {
            direction,
            from,
            to,
            extensions,
            transferred_by,
            transferred_from,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, .. }] => {
            assert_eq!(*direction, CallDirection::Inbound);
            assert_eq!(from, "+998901112233", "the customer rings the master");
            assert_eq!(to, "1502");
            assert_eq!(extensions, &vec!["1502".to_string()]);
            assert_eq!(transferred_by.as_deref(), Some("1501"));
            assert_eq!(transferred_from.as_deref(), Some(first.0.as_str()));
            assert_eq!(extension, "1502");
            assert_eq!(cause, "completed");
        }
        other => panic!("the master's call: {other:?}"),
    }
    let row = log_row(&app, &second.0).await;
    assert_eq!(row["direction"], "inbound", "{row}");
    assert_eq!(row["answered_ext"], "1502", "{row}");
    assert_eq!(row["party_number"], "+998901112233", "{row}");
    assert_eq!(row["transferred_by"], "1501", "{row}");
    assert_eq!(row["transferred_from"], first.0.as_str(), "{row}");
    let row = log_row(&app, &first.0).await;
    assert_eq!(row["answered_ext"], "1501", "{row}");
    assert_eq!(row["outcome"], "answered", "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_transfer_refuses_malformed_unknown_foreign_and_toll_fraud_refer_to() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    office_with_trunk(&app).await;
    // 1501 may not call out at all: a transfer out is a call out, and refused the same.
    let p_op = free_port();
    let op_port = p_op.to_string();
    let op = sipp_cmd(&[
        "-sf",
        &scenario("xfer_operator_bad.xml"),
        "-p",
        &op_port,
        "-key",
        "box",
        &sip.to_string(),
        "-m",
        "1",
    ])
    .spawn()
    .unwrap();
    register_contact(sip, "1501", p_op).await;
    let mut events = app.running().ctx.call_events.subscribe();
    // The provider gets the operator's BYE and nothing else: no REFER passed on, no
    // INVITE out (either fails its scenario).
    let call = [
        "-sf",
        &scenario("xfer_provider_bye.xml"),
        "-s",
        "712000000",
        "-m",
        "1",
    ];
    let provider = sipp_at(PROVIDER_IP, sip, &call).await;
    assert_ok(&provider, 1, "provider: answered, then only the BYE");
    assert_ok(
        &wait_sipp(op).await,
        1,
        "operator: 400, 400, 400, 403, 404, 403, 400, then its BYE",
    );
    let calls = calls_ended(&mut events, 2).await;
    let refused = calls
        .iter()
        .find(|(_, evs)| {
            evs.iter()
                .any(|e| matches!(e, CallEvent::Ended { cause, .. } if cause == "refused"))
        })
        .expect("the transfer out is logged as a refused call out");
    match refused.1.first() {
        Some(CallEvent::Ringing {
            direction, from, ..
        }) => {
            assert_eq!(*direction, CallDirection::Outbound);
            assert_eq!(from, "1501");
        }
        other => panic!("{other:?}"),
    }
    let answered = calls
        .iter()
        .find(|(_, evs)| {
            evs.iter()
                .any(|e| matches!(e, CallEvent::Ended { cause, .. } if cause == "completed"))
        })
        .expect("the call itself went on and ended normally");
    assert!(answered
        .1
        .iter()
        .any(|e| matches!(e, CallEvent::Answered { extension, .. } if extension == "1501")));
    let _ = inf;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_transfer_of_a_call_out_moves_the_far_end_to_the_extension() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    let mut events = app.running().ctx.call_events.subscribe();
    let (prov, users, _) =
        crate::sip_trunk::calling_out(&app, 10, "xfer_provider_uas.xml", None).await;
    import_users(&app, [1502u32].into_iter()).await;
    let p_master = free_port();
    let master = sipp_cmd(&[
        "-sf",
        &scenario("uas_answer_bye.xml"),
        "-p",
        &p_master.to_string(),
        "-d",
        "500",
        "-m",
        "1",
    ])
    .spawn()
    .unwrap();
    register_contact(sip, "1502", p_master).await;
    let box_addr = sip.to_string();
    let scen = scenario("xfer_phone_out.xml");
    let args = [
        "-sf",
        &scen,
        "-inf",
        &users,
        "-s",
        "901234567",
        "-key",
        "box",
        &box_addr,
        "-key",
        "target",
        "1502",
        "-m",
        "1",
    ];
    assert_ok(
        &sipp(sip, &args).await,
        1,
        "phone: call out, REFER, 202, NOTIFY 100 and 200, BYE",
    );
    assert_ok(
        &wait_sipp(master).await,
        1,
        "the extension answers, then hangs up",
    );
    let r = wait_sipp(prov).await;
    assert_eq!(
        (r.ok, r.failed),
        (1, 0),
        "provider: re-INVITEd with the extension's offer, then BYE: {}",
        r.out
    );
    let calls = calls_ended(&mut events, 2).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        matches!(calls[0].1.first(), Some(CallEvent::Ringing { direction: CallDirection::Outbound, from, .. }) if from == "1001"),
        "{calls:?}"
    );
    match calls[1].1.as_slice() {
        [CallEvent::Ringing {
            to,
            transferred_by,
            transferred_from,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, .. }] => {
            assert_eq!(to, "1502");
            assert_eq!(transferred_by.as_deref(), Some("1001"));
            assert_eq!(transferred_from.as_deref(), Some(calls[0].0.as_str()));
            assert_eq!(extension, "1502");
            assert_eq!(cause, "completed");
        }
        other => panic!("{other:?}"),
    }
}

/// linphone answers a customer's call from the trunk, consults a colleague (holding the
/// customer), and transfers the customer in place of the consultation (REFER with
/// Replaces): the box calls the colleague's phone with Replaces itself and moves the
/// provider's media to it.
async fn linphone_attended_transfer_of_a_trunk_call(transport: &str) {
    use crate::phones::Linphone;
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    import_users(&app, [1502u32, 1503].into_iter()).await;
    trunk_ringing(&app, "1502").await;
    let dir = app.data_dir();
    let mut x = Linphone::start(&dir, "1502", sip, transport).await;
    let mut z = Linphone::start(&dir, "1503", sip, transport).await;
    x.registered().await;
    z.registered().await;
    let id_of = |r: &str| {
        r.split("Id: ")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    let mut events = app.running().ctx.call_events.subscribe();
    let scen = scenario("xfer_provider_held.xml");
    let call = ["-sf", &scen, "-s", "712000000", "-d", "1000", "-m", "1"];
    let provider = {
        let mut all = vec![sip.to_string()];
        all.extend(call.iter().map(|s| s.to_string()));
        all.extend(["-p".to_string(), free_port().to_string()]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        sipp_cmd_at(PROVIDER_IP, &refs).spawn().unwrap()
    };
    let xa = x.wait("LinphoneCallIncomingReceived", 0).await;
    let first = x.last_call_id();
    assert!(x
        .cmd(&format!("answer {first}"))
        .await
        .contains("Status: Ok"));
    let xa = x.wait("LinphoneCallStreamsRunning", xa).await;
    // 1502 consults 1503 (linphone holds the customer), 1503 answers.
    let r = x.cmd(&format!("call sip:1503@{sip}")).await;
    assert!(r.contains("Status: Ok"), "{r}");
    let consult = id_of(&r);
    let za = z.wait("LinphoneCallIncomingReceived", 0).await;
    let zc = z.last_call_id();
    assert!(z.cmd(&format!("answer {zc}")).await.contains("Status: Ok"));
    let za = z.wait("LinphoneCallStreamsRunning", za).await;
    let xa = x.wait("LinphoneCallStreamsRunning", xa).await;
    let r = x.cmd(&format!("call-transfer {first} {consult}")).await;
    assert!(r.contains("Status: Ok"), "transfer: {r}");
    // 1503 takes the box's call in place of the consultation; 1502 is out.
    z.wait("LinphoneCallStreamsRunning", za).await;
    x.wait("LinphoneCallEnd", xa).await;
    let r = wait_sipp(provider).await;
    assert_eq!(
        (r.ok, r.failed),
        (1, 0),
        "provider: held, re-INVITEd with 1503's offer, hangs up: {}",
        r.out
    );
    let calls = calls_ended(&mut events, 3).await;
    let transferred = calls
        .iter()
        .find_map(|(id, evs)| match evs.first() {
            Some(CallEvent::Ringing {
                from,
                to,
                transferred_by: Some(by),
                ..
            }) if to == "1503" && from == "+998901112233" => Some((id.clone(), by.clone(), evs)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the customer's call to 1503: {calls:?}"));
    assert_eq!(transferred.1, "1502");
    assert!(transferred
        .2
        .iter()
        .any(|e| matches!(e, CallEvent::Answered { extension, .. } if extension == "1503")));
    assert!(transferred
        .2
        .iter()
        .any(|e| matches!(e, CallEvent::Ended { cause, .. } if cause == "completed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_transfer_linphone_attended_transfer_of_a_trunk_call_over_udp() {
    linphone_attended_transfer_of_a_trunk_call("udp").await;
}
