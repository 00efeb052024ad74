//! Call park (issue 15): a phone transfers its call to the park code, the box holds the
//! caller (a re-INVITE to a=inactive: no media, the dialog kept), names the orbit in the
//! NOTIFY, the events and the log; one phone dialling the orbit gets the call, any other
//! gets 404; an unretrieved park rings the parker back. SIPp plays the provider and the
//! phones.

use std::time::Duration;

use crm::model::Role;
use crm::sip::CallEvent;

use crate::sip_transfer::{calls_ended, log_row, office_with_trunk};
use crate::sip_trunk::{inf, PROVIDER_IP};
use crate::sipp::*;
use crate::support::{TestApp, ADMIN_PASSWORD};

fn provider_parked(sip: std::net::SocketAddr) -> tokio::process::Child {
    let scen = scenario("park_provider.xml");
    sipp_cmd_at(
        PROVIDER_IP,
        &[
            &sip.to_string(),
            "-sf",
            &scen,
            "-s",
            "712000000",
            "-p",
            &free_port().to_string(),
            "-m",
            "1",
        ],
    )
    .spawn()
    .expect("sipp is installed")
}

/// The operator (1501, on `port`) answers the provider's call and parks it with `*70`.
fn operator_parks(sip: std::net::SocketAddr, port: u16) -> tokio::process::Child {
    let box_addr = sip.to_string();
    sipp_cmd(&[
        "-sf",
        &scenario("xfer_operator.xml"),
        "-p",
        &port.to_string(),
        "-key",
        "box",
        &box_addr,
        "-key",
        "target",
        "*70",
        "-m",
        "1",
    ])
    .spawn()
    .unwrap()
}

async fn parked(rx: &mut tokio::sync::broadcast::Receiver<CallEvent>) -> Vec<CallEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the call is parked in time")
            .unwrap();
        let done = matches!(e, CallEvent::Parked { .. });
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_park_holds_the_caller_names_the_orbit_and_one_phone_retrieves_it() {
    let app = TestApp::spawn_with_sip().await;
    let sip = app.sip_addr();
    office_with_trunk(&app).await;
    import_users(&app, [1503u32].into_iter()).await;
    let p_op = free_port();
    let op = operator_parks(sip, p_op);
    register_contact(sip, "1501", p_op).await;
    let mut events = app.running().ctx.call_events.subscribe();
    let provider = provider_parked(sip);
    let before = parked(&mut events).await;
    let first_call = match before.last() {
        Some(CallEvent::Parked {
            call_id,
            orbit,
            by,
            party,
        }) => {
            assert_eq!(orbit, "701", "the first free orbit");
            assert_eq!(by, "1501");
            assert_eq!(party, "+998901112233");
            call_id.clone()
        }
        other => panic!("{other:?}"),
    };
    assert!(before.iter().any(
        |e| matches!(e, CallEvent::Ended { call_id, cause, .. } if *call_id == first_call && cause == "parked_701")
    ), "{before:?}");
    // Operators see it live.
    let calls = app.running().ctx.calls.clone();
    crate::support::eventually(Duration::from_secs(5), || {
        let calls = calls.clone();
        async move {
            calls
                .parked_calls()
                .iter()
                .any(|p| p.orbit == "701")
                .then_some(())
        }
    })
    .await
    .expect("the parked call in the live view");
    assert_ok(
        &wait_sipp(op).await,
        1,
        "operator: 202, NOTIFY 100, NOTIFY 200 Parked on 701, BYE",
    );

    // An empty orbit: 404, logged.
    let users = inf(&app, "1502.csv", &["1502"]);
    let empty = [
        "-sf",
        &scenario("invite_404.xml"),
        "-inf",
        &users,
        "-s",
        "702",
        "-m",
        "1",
    ];
    assert_ok(&sipp(sip, &empty).await, 1, "orbit 702 is empty: 404");

    // Two phones dial 701 at once: one gets the call, the other 404.
    let users3 = inf(&app, "1503.csv", &["1503"]);
    let race = |users: String| async move {
        let scen = scenario("park_retrieve_race.xml");
        let args = [
            "-sf", &scen, "-inf", &users, "-s", "701", "-d", "500", "-m", "1",
        ];
        sipp(sip, &args).await
    };
    let (a, b) = tokio::join!(race(users.clone()), race(users3));
    assert_ok(&a, 1, "1502 dials 701");
    assert_ok(&b, 1, "1503 dials 701");
    assert_ok(
        &wait_sipp(provider).await,
        1,
        "provider: held (a=inactive), then the retriever's offer, then BYE",
    );
    let calls = calls_ended(&mut events, 3).await;
    let retrieved: Vec<_> = calls
        .iter()
        .filter(|(_, evs)| evs.iter().any(|e| matches!(e, CallEvent::Answered { .. })))
        .collect();
    assert_eq!(
        retrieved.len(),
        1,
        "exactly one phone got the call: {calls:?}"
    );
    let lost = calls
        .iter()
        .filter(|(_, evs)| {
            evs.iter()
                .any(|e| matches!(e, CallEvent::Ringing { to, .. } if to == "701"))
                && evs
                    .iter()
                    .any(|e| matches!(e, CallEvent::Ended { cause, .. } if cause == "status_404"))
        })
        .count();
    assert_eq!(lost, 1, "the other got 404: {calls:?}");
    let (id, evs) = retrieved[0];
    let winner = match evs.as_slice() {
        [CallEvent::Ringing {
            from,
            to,
            transferred_by,
            transferred_from,
            ..
        }, CallEvent::Answered { extension, .. }, CallEvent::Ended { cause, .. }] => {
            assert_eq!(from, "+998901112233");
            assert_eq!(to, "701");
            assert_eq!(transferred_by.as_deref(), Some("1501"));
            assert_eq!(transferred_from.as_deref(), Some(first_call.as_str()));
            assert_eq!(cause, "completed");
            extension.clone()
        }
        other => panic!("{other:?}"),
    };
    assert!(winner == "1502" || winner == "1503", "{winner}");
    let row = log_row(&app, id).await;
    assert_eq!(row["answered_ext"], winner.as_str(), "{row}");
    assert_eq!(row["transferred_by"], "1501", "{row}");
    let row = log_row(&app, &first_call).await;
    assert_eq!(row["cause"], "parked_701", "{row}");
    assert_eq!(row["outcome"], "answered", "{row}");
    assert!(app.running().ctx.calls.parked_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_park_nobody_retrieves_rings_the_parker_back() {
    let app = TestApp::spawn_with(|c| {
        c.sip = "127.0.0.1:0".into();
        c.sip_park_timeout_secs = 3;
    })
    .await;
    app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
    let sip = app.sip_addr();
    office_with_trunk(&app).await;
    let p_op = free_port();
    let op = operator_parks(sip, p_op);
    register_contact(sip, "1501", p_op).await;
    let mut events = app.running().ctx.call_events.subscribe();
    let provider = provider_parked(sip);
    let before = parked(&mut events).await;
    let Some(CallEvent::Parked { call_id: first, .. }) = before.last().cloned() else {
        panic!("{before:?}");
    };
    assert_ok(&wait_sipp(op).await, 1, "operator parks");
    // The operator's phone is free again: it answers the ring-back, then hangs up.
    let back = sipp_cmd(&[
        "-sf",
        &scenario("uas_answer_bye.xml"),
        "-p",
        &p_op.to_string(),
        "-d",
        "500",
        "-m",
        "1",
    ])
    .spawn()
    .unwrap();
    assert_ok(&wait_sipp(back).await, 1, "the parker's phone rings again");
    assert_ok(
        &wait_sipp(provider).await,
        1,
        "provider: held, then the parker's offer",
    );
    let calls = calls_ended(&mut events, 1).await;
    let all: Vec<&CallEvent> = calls.iter().flat_map(|(_, v)| v.iter()).collect();
    assert!(all.iter().any(
        |e| matches!(e, CallEvent::Unparked { orbit, cause, call_id, .. } if orbit == "701" && cause == "timed_out" && *call_id == first)
    ), "{all:?}");
    let back_call = calls
        .iter()
        .find(|(_, evs)| evs.iter().any(|e| matches!(e, CallEvent::Answered { .. })))
        .expect("the ring-back was answered");
    match back_call.1.first() {
        Some(CallEvent::Ringing {
            to,
            transferred_by,
            transferred_from,
            from,
            ..
        }) => {
            assert_eq!(to, "1501");
            assert_eq!(from, "+998901112233");
            assert_eq!(transferred_by.as_deref(), Some("1501"));
            assert_eq!(transferred_from.as_deref(), Some(first.as_str()));
        }
        other => panic!("{other:?}"),
    }
}
