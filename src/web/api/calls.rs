//! The call log, missed calls and the live call status over JSON.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::calls::{CallRow, MissedRow};
use crate::domain::{Actor, DomainError};
use crate::web::error::{json_error, ApiError, ErrorBody};
use crate::web::pages::calls::CallQuery;
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

/// Filters of the call log; every one optional.
#[derive(Deserialize, IntoParams)]
#[allow(dead_code)] // documents the query for OpenAPI; parsing is CallQuery's
pub struct CallParams {
    /// First day, `YYYY-MM-DD` (shop time).
    pub from: Option<String>,
    /// Last day, inclusive, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// internal, inbound or outbound.
    pub direction: Option<String>,
    /// answered, missed, busy, no_answer, cancelled or failed.
    pub outcome: Option<String>,
    /// Answered by this user id.
    pub operator: Option<i64>,
    /// A number in any typed form, or an extension.
    pub number: Option<String>,
    /// 1-1000, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CallPage {
    pub items: Vec<CallRow>,
    /// Matching calls, counted up to 10 001 (meaning "more than 10 000").
    pub total: i64,
}

/// The call log, newest first. A malformed filter is 400 naming the parameter.
#[utoipa::path(get, path = "/api/v1/calls", tag = "calls", params(CallParams),
    responses((status = 200, body = CallPage), (status = 400, body = ErrorBody)))]
pub async fn list(state: web::Data<WebState>, actor: Actor, q: web::Query<CallQuery>) -> ApiResult {
    let f =
        crate::web::pages::calls::call_filter(&state.ctx.calls, &q).map_err(ApiError::bad_query)?;
    let (items, total) = state.ctx.calls.list(&actor, f).await?;
    Ok(HttpResponse::Ok().json(CallPage { items, total }))
}

/// One call by its SIP Call-ID.
#[utoipa::path(get, path = "/api/v1/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "SIP Call-ID")),
    responses((status = 200, body = CallRow), (status = 404, body = ErrorBody)))]
pub async fn get(state: web::Data<WebState>, actor: Actor, path: web::Path<String>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.calls.get(&actor, &path.into_inner()).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct MissedParams {
    /// Include resolved entries.
    pub all: Option<bool>,
    /// 1-1000, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MissedPage {
    pub items: Vec<MissedRow>,
    /// Open entries (numbers waiting for a callback).
    pub open: i64,
}

/// Marks a missed-call entry done by hand (the customer was reached another way).
#[utoipa::path(post, path = "/api/v1/calls/missed/{id}/done", tag = "calls",
    params(("id" = i64, Path, description = "the entry's id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn mark_missed_done(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<String>,
) -> ApiResult {
    let Ok(id) = path.into_inner().parse::<i64>() else {
        return Err(DomainError::NotFound.into());
    };
    state.ctx.calls.mark_missed_done(&actor, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Missed calls, one entry per caller number: the callback list.
#[utoipa::path(get, path = "/api/v1/calls/missed", tag = "calls", params(MissedParams),
    responses((status = 200, body = MissedPage), (status = 400, body = ErrorBody)))]
pub async fn missed(
    state: web::Data<WebState>,
    actor: Actor,
    q: Result<web::Query<MissedParams>, actix_web::Error>,
) -> ApiResult {
    let q = match q {
        Ok(q) => q,
        Err(e) => {
            return Ok(json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.to_string(),
            ))
        }
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) || q.offset.is_some_and(|o| o < 0) {
        return Ok(json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "limit: 1-1000; offset: 0 or more",
        ));
    }
    let (items, open) = state
        .ctx
        .calls
        .missed(&actor, q.all.unwrap_or(false), limit, q.offset.unwrap_or(0))
        .await?;
    Ok(HttpResponse::Ok().json(MissedPage { items, open }))
}

#[derive(Serialize, ToSchema)]
pub struct LiveEntry {
    pub call_id: String,
    pub direction: String,
    pub number: String,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub answered_ext: Option<String>,
    pub answered_user_id: Option<i64>,
    pub answered_user_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LiveStatus {
    /// Calls being talked now.
    pub calls: Vec<LiveEntry>,
    /// The server's clock (Unix ms), to run timers from.
    pub now_ms: i64,
}

/// Who is on a call, with whom, since when.
#[utoipa::path(get, path = "/api/v1/calls/live", tag = "calls",
    responses((status = 200, body = LiveStatus)))]
pub async fn live(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    let calls = state
        .ctx
        .calls
        .on_calls_for(&actor)
        .into_iter()
        .map(|k| LiveEntry {
            call_id: k.call_id,
            direction: k.direction.to_string(),
            number: k.number,
            customer_id: k.customer_id,
            customer_name: k.customer_name,
            started_ms: k.started_ms,
            answered_ms: k.answered_ms,
            answered_ext: k.answered_ext,
            answered_user_id: k.answered_user_id,
            answered_user_name: k.answered_user_name,
        })
        .collect();
    Ok(HttpResponse::Ok().json(LiveStatus {
        calls,
        now_ms: state.ctx.calls.now_ms(),
    }))
}
