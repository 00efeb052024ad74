//! Promotions, broadcasts, archived orders and the SMS gateway over JSON (issue 18), and
//! the public hooks the SMS gateways call back (delivery reports, replies).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::broadcasts::{BroadcastInput, BroadcastView};
use crate::domain::notifications::mask_secret;
use crate::domain::notifications::sms::{self, HookOutcome, SmsForm, SmsProvider};
use crate::domain::promotions::PromotionRow;
use crate::domain::promotions::{Applied, PromotionInput};
use crate::domain::{Actor, DomainError, Msg};
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

/// Promotions, newest first (the front desk sees them to apply them).
#[utoipa::path(get, path = "/api/v1/promotions", tag = "promotions",
    responses((status = 200, body = [PromotionRow])))]
pub async fn list(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.promotions.list().await?))
}

#[utoipa::path(post, path = "/api/v1/promotions", tag = "promotions", request_body = PromotionInput,
    responses((status = 201, body = PromotionRow), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<PromotionInput>,
) -> ApiResult {
    let p = &state.ctx.promotions;
    let id = p.save(&actor, None, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(p.get(id).await?))
}

#[utoipa::path(get, path = "/api/v1/promotions/{id}", tag = "promotions", params(("id" = i64, Path)),
    responses((status = 200, body = PromotionRow), (status = 404, body = ErrorBody)))]
pub async fn get(state: web::Data<WebState>, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.promotions.get(id.into_inner()).await?))
}

#[utoipa::path(put, path = "/api/v1/promotions/{id}", tag = "promotions", params(("id" = i64, Path)), request_body = PromotionInput,
    responses((status = 200, body = PromotionRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<PromotionInput>,
) -> ApiResult {
    let p = &state.ctx.promotions;
    let id = id.into_inner();
    p.save(&actor, Some(id), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(p.get(id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyInput {
    /// The promotion's code, in any case.
    pub code: String,
}

/// Applies a promotion to an order: unknown, expired, switched-off and used-up codes are
/// refused (422 / 409) with a message saying which.
#[utoipa::path(post, path = "/api/v1/orders/{id}/promotion", tag = "promotions", params(("id" = i64, Path)), request_body = ApplyInput,
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn apply(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<ApplyInput>,
) -> ApiResult {
    let a = state
        .ctx
        .promotions
        .apply(&actor, id.into_inner(), &body.code)
        .await?;
    Ok(HttpResponse::Ok().json(a))
}

/// Takes the promotion off an open order (its use is given back).
#[utoipa::path(delete, path = "/api/v1/orders/{id}/promotion", tag = "promotions", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    state.ctx.promotions.remove(&actor, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Broadcasts, newest first, with their results (sent, delivered, failed, pending,
/// redeemed).
#[utoipa::path(get, path = "/api/v1/broadcasts", tag = "broadcasts",
    responses((status = 200, body = [BroadcastView])))]
pub async fn broadcasts(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.broadcasts.list(&actor).await?))
}

/// Queues a broadcast to the segment's opted-in customers, throttled.
#[utoipa::path(post, path = "/api/v1/broadcasts", tag = "broadcasts", request_body = BroadcastInput,
    responses((status = 201, body = BroadcastView), (status = 422, body = ErrorBody)))]
pub async fn send_broadcast(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<BroadcastInput>,
) -> ApiResult {
    let b = state.ctx.broadcasts.send(&actor, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(b))
}

#[utoipa::path(get, path = "/api/v1/broadcasts/{id}", tag = "broadcasts", params(("id" = i64, Path)),
    responses((status = 200, body = BroadcastView), (status = 404, body = ErrorBody)))]
pub async fn broadcast(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.broadcasts.get(&actor, id.into_inner()).await?))
}

/// Archives a closed order: out of lists and search, kept with its history.
#[utoipa::path(post, path = "/api/v1/orders/{id}/archive", tag = "orders", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn archive_order(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
) -> ApiResult {
    state
        .ctx
        .promotions
        .archive_order(Some(&actor), id.into_inner(), true)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/restore", tag = "orders", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn restore_order(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
) -> ApiResult {
    state
        .ctx
        .promotions
        .archive_order(Some(&actor), id.into_inner(), false)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRule {
    /// Archive the orders closed more than this many years ago (1–50).
    pub closed_years: i64,
    /// At most this many at once (default 10 000).
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Archived {
    pub archived: usize,
}

/// Archives the orders closed more than N years ago (by the shop's calendar).
#[utoipa::path(post, path = "/api/v1/archive/orders", tag = "orders", request_body = ArchiveRule,
    responses((status = 200, body = Archived), (status = 422, body = ErrorBody)))]
pub async fn archive_rule(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<ArchiveRule>,
) -> ApiResult {
    let n = state
        .ctx
        .promotions
        .archive_closed(
            Some(&actor),
            body.closed_years,
            body.limit.unwrap_or(10_000),
        )
        .await?;
    Ok(HttpResponse::Ok().json(Archived { archived: n }))
}

#[derive(Serialize, ToSchema)]
pub struct SmsView {
    pub provider: Option<String>,
    pub url: String,
    pub login: String,
    pub password_set: bool,
    pub sender: String,
    pub public_url: String,
    /// The report URL's key, masked.
    pub hook_key_masked: String,
    pub per_second: u32,
    pub invite: bool,
    pub configured: bool,
}

/// The SMS gateway settings, secrets masked (admin).
#[utoipa::path(get, path = "/api/v1/notifications/sms", tag = "notifications",
    responses((status = 200, body = SmsView)))]
pub async fn sms_settings(state: web::Data<WebState>) -> ApiResult {
    let s = state.ctx.notifications.settings().await?.sms;
    Ok(HttpResponse::Ok().json(SmsView {
        configured: s.configured(),
        provider: s.provider.map(|p| p.as_str().to_string()),
        url: s.url,
        login: s.login,
        password_set: !s.password.is_empty(),
        sender: s.sender,
        public_url: s.public_url,
        hook_key_masked: mask_secret(&s.hook_key),
        per_second: s.per_second,
        invite: s.invite,
    }))
}

/// Saves the SMS gateway settings (an empty password keeps the stored one).
#[utoipa::path(put, path = "/api/v1/notifications/sms", tag = "notifications", request_body = SmsForm,
    responses((status = 204), (status = 422, body = ErrorBody)))]
pub async fn save_sms(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<SmsForm>,
) -> ApiResult {
    state
        .ctx
        .notifications
        .save_sms(&actor, body.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The body of a gateway's call: JSON, a form, or the query string.
fn hook_body(req: &HttpRequest, body: &[u8]) -> serde_json::Value {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if v.is_object() || v.is_array() {
            return v;
        }
    }
    let pairs: Vec<(String, String)> = if body.is_empty() {
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default()
    } else {
        serde_urlencoded::from_bytes(body).unwrap_or_default()
    };
    serde_json::Value::Object(
        pairs
            .into_iter()
            .filter(|(k, _)| k != "key")
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    )
}

#[derive(Deserialize)]
pub struct HookQuery {
    /// The report URL's secret key.
    #[serde(default)]
    pub key: String,
}

fn provider(name: &str) -> Result<SmsProvider, ApiError> {
    SmsProvider::parse(name).ok_or_else(|| ApiError::from(DomainError::NotFound))
}

/// A gateway's delivery report (Eskiz: one message's `request_id`/`status`/`sms_count`
/// as a form or JSON; Playmobile: `{"messages": [{"message-id", "status"}]}`). The key in
/// the URL is the box's; a wrong key is 403 and changes nothing.
pub async fn report(
    state: web::Data<WebState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<HookQuery>,
    body: web::Bytes,
) -> ApiResult {
    let p = provider(&path)?;
    let reports = sms::parse_reports(p, &hook_body(&req, &body));
    match state
        .ctx
        .notifications
        .sms_reports(p, &q.key, reports)
        .await?
    {
        HookOutcome::Refused => Err(ApiError::from(DomainError::Forbidden)),
        HookOutcome::Done(n) => Ok(HttpResponse::Ok().json(serde_json::json!({"updated": n}))),
    }
}

/// A reply by SMS that the gateway forwards (`from`/`phone` and `text`/`message`): STOP,
/// СТОП or TO'XTATISH takes the sender off marketing.
pub async fn incoming(
    state: web::Data<WebState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<HookQuery>,
    body: web::Bytes,
) -> ApiResult {
    provider(&path)?;
    let Some((from, text)) = sms::parse_reply(&hook_body(&req, &body)) else {
        return Err(ApiError::from(DomainError::invalid(Msg::new(
            "err.sms.reply",
        ))));
    };
    match state
        .ctx
        .notifications
        .sms_reply(&q.key, &from, &text)
        .await?
    {
        None => Err(ApiError::from(DomainError::Forbidden)),
        Some(n) => Ok(HttpResponse::Ok().json(serde_json::json!({"unsubscribed": n}))),
    }
}
