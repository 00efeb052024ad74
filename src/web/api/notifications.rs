//! Notifications for admins over JSON: the outbox (with each message's last error), retry
//! of stopped messages, and the channel settings with secrets masked.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::notifications::{mask_secret, OutboxRow};
use crate::domain::Actor;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// Comma-separated states: pending, sending, sent, failed, dead. Default
    /// `failed,dead` (the messages that stopped); `all` for every state.
    pub state: Option<String>,
    /// At most this many rows (1-500, default 100).
    pub limit: Option<i64>,
}

/// Outbox messages, newest first, with attempts and the last error (admin).
#[utoipa::path(get, path = "/api/v1/notifications/outbox", tag = "notifications", params(OutboxQuery),
    responses((status = 200, body = [OutboxRow]), (status = 422, body = ErrorBody)))]
pub async fn outbox(state: web::Data<WebState>, q: web::Query<OutboxQuery>) -> ApiResult {
    let q = q.into_inner();
    let states: Vec<String> = match q.state.as_deref().map(str::trim) {
        None | Some("") => vec!["failed".into(), "dead".into()],
        Some("all") => Vec::new(),
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    let rows = state
        .ctx
        .notifications
        .messages(states, q.limit.unwrap_or(100))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

/// One outbox message (admin).
#[utoipa::path(get, path = "/api/v1/notifications/outbox/{id}", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = OutboxRow), (status = 404, body = ErrorBody)))]
pub async fn message(state: web::Data<WebState>, id: web::Path<i64>) -> ApiResult {
    let row = state.ctx.notifications.message(id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// Queues a failed or dead message again, due now, with a fresh attempt count (admin).
#[utoipa::path(post, path = "/api/v1/notifications/outbox/{id}/retry", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = OutboxRow), (status = 404, body = ErrorBody),
              (status = 409, description = "the message is not failed or dead", body = ErrorBody)))]
pub async fn retry(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    let id = id.into_inner();
    let n = &state.ctx.notifications;
    n.retry(&actor, id).await?;
    Ok(HttpResponse::Ok().json(n.message(id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct SmtpView {
    pub host: String,
    pub port: u16,
    /// starttls, tls or plain.
    pub security: String,
    pub username: String,
    /// Whether a password is stored; it is never returned.
    pub password_set: bool,
    pub from: String,
    pub accept_invalid_certs: bool,
    pub custom_ca: bool,
    pub configured: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TelegramView {
    /// The bot token masked (`123456…xY`), empty when none is stored.
    pub token_masked: String,
    pub api_url: String,
    pub bot_username: String,
    pub per_chat_gap_ms: u64,
    pub global_per_sec: u32,
}

#[derive(Serialize, ToSchema)]
pub struct RuleView {
    pub event: String,
    pub channel: String,
    pub on: bool,
}

#[derive(Serialize, ToSchema)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationSettingsView {
    pub smtp: SmtpView,
    pub telegram: TelegramView,
    pub max_attempts: i64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub rules: Vec<RuleView>,
    /// Outbox messages per state.
    pub outbox: Vec<StateCount>,
}

/// The notification settings, secrets masked, with the per-event switches and the outbox
/// counts (admin).
#[utoipa::path(get, path = "/api/v1/notifications/settings", tag = "notifications",
    responses((status = 200, body = NotificationSettingsView)))]
pub async fn settings(state: web::Data<WebState>) -> ApiResult {
    let n = &state.ctx.notifications;
    let s = n.settings().await?;
    let rules = n.rules().await?;
    let counts = n.counts().await?;
    Ok(HttpResponse::Ok().json(NotificationSettingsView {
        smtp: SmtpView {
            configured: s.smtp.configured(),
            host: s.smtp.host,
            port: s.smtp.port,
            security: s.smtp.security.as_str().into(),
            username: s.smtp.username,
            password_set: !s.smtp.password.is_empty(),
            from: s.smtp.from,
            accept_invalid_certs: s.smtp.accept_invalid_certs,
            custom_ca: !s.smtp.ca_pem.trim().is_empty(),
        },
        telegram: TelegramView {
            token_masked: mask_secret(&s.telegram.token),
            api_url: s.telegram.api_url,
            bot_username: s.telegram.bot_username,
            per_chat_gap_ms: s.telegram.per_chat_gap_ms,
            global_per_sec: s.telegram.global_per_sec,
        },
        max_attempts: s.policy.max_attempts,
        retry_base_ms: s.policy.retry_base_ms,
        retry_max_ms: s.policy.retry_max_ms,
        rules: rules
            .into_iter()
            .map(|(e, ch, on)| RuleView {
                event: e.as_str().into(),
                channel: ch.as_str().into(),
                on,
            })
            .collect(),
        outbox: counts
            .into_iter()
            .map(|(state, count)| StateCount { state, count })
            .collect(),
    }))
}
