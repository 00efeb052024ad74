//! `GET /ws`: the live-update socket. Authenticated like any page (session cookie, or a
//! bearer token), refused before the upgrade for a foreign Origin. Frames are
//! `{"seq": N, "type": "...", "data": {...}}`; the first is `hello` with the current
//! sequence and whether the client must refetch (its `last_seq` was too old).

use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason};
use futures_util::StreamExt;
use serde::Deserialize;

use super::auth::{Identity, Via, SESSION_COOKIE};
use super::hub::Joined;
use super::WebState;
use crate::domain::accounts::{token_hash, Credential};
use crate::domain::Actor;
use actix_web::HttpMessage;

const HEARTBEAT: Duration = Duration::from_secs(20);
/// A client silent for this long (no pong, no message) is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_FRAME: usize = 16 * 1024;

#[derive(Deserialize)]
pub struct WsQuery {
    last_seq: Option<u64>,
}

pub(super) fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        // Non-browser clients (with a token) send no Origin.
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    host == req.connection_info().host()
}

pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<WsQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    if !same_origin(&req) {
        return Ok(super::error::json_error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "WebSocket from a foreign origin",
        ));
    }
    let (resp, session, stream) = actix_ws::handle(&req, body)?;
    // What the socket signed in with, re-checked when its user's access changes.
    let via = req.extensions().get::<Identity>().map(|i| i.via);
    let cred = match via {
        Some(Via::Token) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .map(|(_, t)| Credential::Token(token_hash(t.trim()))),
        _ => req
            .cookie(SESSION_COOKIE)
            .map(|c| Credential::Session(token_hash(c.value()))),
    };
    let Some(joined) = state
        .hub
        .join_with((&actor).into(), cred.clone(), q.last_seq)
        .await
    else {
        return Ok(super::error::json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "live updates are shutting down",
        ));
    };
    let cookie = match via {
        Some(Via::Token) => None,
        _ => req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()),
    };
    let stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    actix_web::rt::spawn(run(
        session,
        stream,
        joined,
        state.clone(),
        cookie,
        cred,
        actor,
    ));
    Ok(resp)
}

async fn run(
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    joined: Joined,
    state: web::Data<WebState>,
    cookie: Option<String>,
    cred: Option<Credential>,
    actor: Actor,
) {
    let Joined {
        id,
        mut rx,
        seq,
        replay,
        resync,
        revoked,
    } = joined;
    let hello = serde_json::json!({
        "seq": seq,
        "type": "hello",
        "data": {"resync": resync, "user_id": actor.user_id, "replayed": replay.len()},
    });
    let mut ok = session.text(hello.to_string()).await.is_ok();
    for f in replay {
        if !ok {
            break;
        }
        ok = session.text(f).await.is_ok();
    }
    // A phone of this user rings right now (the page was opened or reloaded meanwhile):
    // its card again. Pages drop a card they already show (same call id).
    for d in state.ctx.calls.ringing_for(&actor) {
        if !ok {
            break;
        }
        let frame = serde_json::json!({"seq": seq, "type": "call.ringing", "data": d});
        ok = session.text(frame.to_string()).await.is_ok();
    }
    let mut last_heard = Instant::now();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.tick().await;
    let mut close: Option<CloseReason> = None;
    while ok {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => {
                    ok = session.text(f).await.is_ok();
                    // Frames that queued up meanwhile go with it, without a round through
                    // the select: the connection's writer then sends them in one write.
                    while ok {
                        match rx.try_recv() {
                            Ok(f) => ok = session.text(f).await.is_ok(),
                            Err(_) => break,
                        }
                    }
                }
                None if revoked.load(std::sync::atomic::Ordering::Acquire) => {
                    close = Some(CloseReason {
                        code: CloseCode::Policy,
                        description: Some("access changed".into()),
                    });
                    break;
                }
                None => {
                    close = Some(CloseReason {
                        code: CloseCode::Again,
                        description: Some("too slow: reconnect and catch up".into()),
                    });
                    break;
                }
            },
            msg = stream.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(actix_ws::AggregatedMessage::Ping(b))) => ok = session.pong(&b).await.is_ok(),
                    Some(Ok(actix_ws::AggregatedMessage::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        close = Some(CloseReason { code: CloseCode::Protocol, description: None });
                        break;
                    }
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    close = Some(CloseReason { code: CloseCode::Away, description: Some("idle".into()) });
                    break;
                }
                // A socket outlives neither its session nor its user's access.
                // (The session check also keeps an open page's session alive; a token is
                // only checked.)
                let valid = match (&cookie, &cred) {
                    (Some(c), _) => matches!(state.ctx.accounts.session(c).await, Ok(Some(_))),
                    (None, Some(cred)) => matches!(state.ctx.accounts.credential_actor(cred).await, Ok(Some(_))),
                    (None, None) => true,
                };
                if !valid {
                    close = Some(CloseReason { code: CloseCode::Policy, description: Some("signed out".into()) });
                    break;
                }
                ok = session.ping(b"").await.is_ok();
            }
        }
    }
    state.hub.leave(id);
    let _ = session.close(close).await;
}
