//! `GET /sip/ws`: SIP over WebSocket (RFC 7118) for the browser softphone, on the web
//! port. The web session is the credential: only a signed-in user with an extension
//! linked to them may open it, and whatever comes over it speaks for that extension (no
//! SIP password in the page). Each text frame is one SIP message for the engine; what the
//! engine sends this contact comes back as text frames. Closing the socket (or signing
//! out) drops its registration.

use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason};
use futures_util::StreamExt;

use super::auth::{Ui, SESSION_COOKIE};
use super::WebState;
use crate::domain::{Actor, DomainError};

const HEARTBEAT: Duration = Duration::from_secs(20);
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Larger than any SIP message the engine accepts.
const MAX_FRAME: usize = 64 * 1024;

pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<WebState>,
    actor: Actor,
    ui: Ui,
) -> Result<HttpResponse, actix_web::Error> {
    if !super::ws::same_origin(&req) {
        return Ok(super::error::json_error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            ui.t("softphone.foreign_origin"),
        ));
    }
    let wants_sip = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("sip")));
    if !wants_sip {
        return Ok(super::error::json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            ui.t("softphone.not_sip"),
        ));
    }
    let (ext, sip) = match state.ctx.telephony.softphone(&actor).await {
        Ok(x) => x,
        Err(DomainError::Invalid(m)) => {
            return Ok(super::error::json_error(
                StatusCode::FORBIDDEN,
                "no_extension",
                ui.msg(&m),
            ))
        }
        Err(e) => {
            return Ok(super::error::json_error(
                super::error::domain_status(&e),
                "unavailable",
                ui.msg(&e.message()),
            ))
        }
    };
    let Some(peer) = req.peer_addr() else {
        return Ok(HttpResponse::BadRequest().finish());
    };
    let (mut resp, session, stream) = actix_ws::handle(&req, body)?;
    resp.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static("sip"),
    );
    let stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    let link = sip.ws_attach(peer, &ext);
    tracing::info!(extension = %ext, peer = %peer, "SIP/WS: softphone connected");
    let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
    actix_web::rt::spawn(run(session, stream, link, state.clone(), cookie));
    Ok(resp)
}

async fn run(
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    link: crate::sip::WsLink,
    state: web::Data<WebState>,
    cookie: Option<String>,
) {
    let crate::sip::WsLink {
        inbound,
        mut outbound,
    } = link;
    let mut last_heard = Instant::now();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.tick().await;
    let mut close: Option<CloseReason> = None;
    loop {
        tokio::select! {
            m = outbound.recv() => match m {
                Some(data) => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    if session.text(text).await.is_err() {
                        break;
                    }
                }
                None => {
                    close = Some(CloseReason { code: CloseCode::Away, description: None });
                    break;
                }
            },
            msg = stream.next() => {
                last_heard = Instant::now();
                let data = match msg {
                    Some(Ok(actix_ws::AggregatedMessage::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(actix_ws::AggregatedMessage::Binary(b))) => b.to_vec(),
                    Some(Ok(actix_ws::AggregatedMessage::Ping(b))) => {
                        if session.pong(&b).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(actix_ws::AggregatedMessage::Close(_))) | None => break,
                    Some(Err(_)) => {
                        close = Some(CloseReason { code: CloseCode::Protocol, description: None });
                        break;
                    }
                };
                if inbound.send(data).await.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    close = Some(CloseReason { code: CloseCode::Away, description: Some("idle".into()) });
                    break;
                }
                // The socket outlives neither its session nor its user's access.
                if let Some(c) = &cookie {
                    if !matches!(state.ctx.accounts.session(c).await, Ok(Some(_))) {
                        close = Some(CloseReason { code: CloseCode::Policy, description: Some("signed out".into()) });
                        break;
                    }
                }
                if session.ping(b"").await.is_err() {
                    break;
                }
            }
        }
    }
    drop(inbound); // the engine forgets the socket and its registration
    let _ = session.close(close).await;
}
