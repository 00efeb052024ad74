//! Call lists over JSON (issue 18): lists and their items, the operator's queue, outcome
//! codes, the wrap-up of a call, daily progress and targets.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::call_lists::{
    CallList, Item as ItemRow, List as ListRow, ListUpdate, NewList, OutcomeCode as OutcomeRow,
    OutcomeInput, Progress, QueueItem, Targets,
};
use crate::domain::{Action, Actor, DomainError};
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

/// Call lists, newest first, with their items counted by state.
#[utoipa::path(get, path = "/api/v1/call-lists", tag = "call-lists",
    responses((status = 200, body = [ListRow])))]
pub async fn list(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.call_lists.lists(&actor).await?))
}

/// Builds a list from a segment or a built-in source and shares its items out.
#[utoipa::path(post, path = "/api/v1/call-lists", tag = "call-lists", request_body = NewList,
    responses((status = 201, body = CallList), (status = 422, body = ErrorBody)))]
pub async fn create(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<NewList>,
) -> ApiResult {
    let id = state
        .ctx
        .call_lists
        .create(&actor, body.into_inner())
        .await?;
    Ok(HttpResponse::Created().json(state.ctx.call_lists.get(&actor, id).await?))
}

#[utoipa::path(get, path = "/api/v1/call-lists/{id}", tag = "call-lists", params(("id" = i64, Path)),
    responses((status = 200, body = CallList), (status = 404, body = ErrorBody)))]
pub async fn get(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.call_lists.get(&actor, id.into_inner()).await?))
}

/// Changes a list's name, state (active, paused, closed), rules, scripts and operators.
#[utoipa::path(put, path = "/api/v1/call-lists/{id}", tag = "call-lists", params(("id" = i64, Path)),
    request_body = ListUpdate,
    responses((status = 200, body = CallList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<ListUpdate>,
) -> ApiResult {
    let id = id.into_inner();
    state
        .ctx
        .call_lists
        .update(&actor, id, body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(state.ctx.call_lists.get(&actor, id).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct ItemQuery {
    /// pending, active, done or failed.
    pub state: Option<String>,
    /// 1-500, default 100.
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// A list's items.
#[utoipa::path(get, path = "/api/v1/call-lists/{id}/items", tag = "call-lists",
    params(("id" = i64, Path), ItemQuery),
    responses((status = 200, body = [ItemRow]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn items(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    q: web::Query<ItemQuery>,
) -> ApiResult {
    let q = q.into_inner();
    let (limit, offset) = crate::domain::filters::Paging {
        limit: q.limit,
        offset: q.offset,
    }
    .parse(100)
    .map_err(ApiError::bad_query)?;
    let st = q.state.filter(|s| !s.is_empty());
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .call_lists
            .items(&actor, id.into_inner(), st, limit, offset)
            .await
            .map_err(ApiError::bad_query)?,
    ))
}

/// Takes one item; of two operators taking the same item at once, one gets 409.
#[utoipa::path(post, path = "/api/v1/call-lists/{id}/items/{item}/take", tag = "call-lists",
    params(("id" = i64, Path), ("item" = i64, Path)),
    responses((status = 200, body = QueueItem), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn take(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<(i64, i64)>,
) -> ApiResult {
    let (list, item) = path.into_inner();
    state.ctx.call_lists.take(&actor, list, item).await?;
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .call_lists
            .queue_item(&actor, item, actor.language.code().to_string())
            .await?,
    ))
}

/// Puts the held item back for later.
#[utoipa::path(post, path = "/api/v1/call-lists/{id}/items/{item}/release", tag = "call-lists",
    params(("id" = i64, Path), ("item" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn release(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<(i64, i64)>,
) -> ApiResult {
    let (_, item) = path.into_inner();
    state.ctx.call_lists.release(&actor, item).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Calls the held item through the operator's desk phone (click-to-call).
#[utoipa::path(post, path = "/api/v1/call-lists/{id}/items/{item}/dial", tag = "call-lists",
    params(("id" = i64, Path), ("item" = i64, Path)),
    responses((status = 202, body = crate::web::api::telephony::Dialling), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn dial(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<(i64, i64)>,
) -> ApiResult {
    let (_, item) = path.into_inner();
    let call_id = state.ctx.call_lists.dial(&actor, item).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "call_id": call_id })))
}

/// Records the outcome of the held item: done, again later (no answer, busy), call back
/// at a time, wrong number.
#[utoipa::path(post, path = "/api/v1/call-lists/{id}/items/{item}/outcome", tag = "call-lists",
    params(("id" = i64, Path), ("item" = i64, Path)), request_body = OutcomeInput,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn outcome(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<(i64, i64)>,
    body: web::Json<OutcomeInput>,
) -> ApiResult {
    let (_, item) = path.into_inner();
    state
        .ctx
        .call_lists
        .record(&actor, item, body.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The operator's next item (the one they hold, else the next due one, taken for them);
/// 204 when the queue is empty.
#[utoipa::path(post, path = "/api/v1/queue/next", tag = "call-lists",
    responses((status = 200, body = QueueItem), (status = 204)))]
pub async fn next(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    Ok(match state.ctx.call_lists.next(&actor).await? {
        Some(q) => HttpResponse::Ok().json(q),
        None => HttpResponse::NoContent().finish(),
    })
}

/// The admin's outcome codes, in the four languages.
#[utoipa::path(get, path = "/api/v1/call-outcomes", tag = "call-lists",
    responses((status = 200, body = [OutcomeRow])))]
pub async fn outcomes(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.call_lists.outcomes().await?))
}

/// Adds or changes an outcome code (by its `code`; `id` is ignored).
#[utoipa::path(put, path = "/api/v1/call-outcomes", tag = "call-lists", request_body = OutcomeRow,
    responses((status = 204), (status = 422, body = ErrorBody)))]
pub async fn save_outcome(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<OutcomeRow>,
) -> ApiResult {
    state
        .ctx
        .call_lists
        .save_outcome(&actor, body.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WrapUp {
    pub call_id: String,
    #[serde(flatten)]
    pub outcome: OutcomeInput,
}

/// The wrap-up of a call the user took or placed (inbound too): an outcome, a note, a
/// follow-up date.
#[utoipa::path(post, path = "/api/v1/calls/wrap-up", tag = "calls", request_body = WrapUp,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn wrap_up(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    // Flattened fields cannot deny unknown ones: checked here by hand.
    let v = body.into_inner();
    if let Some(o) = v.as_object() {
        if let Some(k) = o.keys().find(|k| {
            !["call_id", "outcome", "note", "callback_at", "follow_up"].contains(&k.as_str())
        }) {
            return Err(ApiError::bad_query(DomainError::invalid(
                crate::domain::Msg::new("error.bad_request")
                    .with("detail", format!("unknown field `{k}`")),
            )));
        }
    }
    let w: WrapUp = serde_json::from_value(v).map_err(|e| {
        ApiError::bad_query(DomainError::invalid(
            crate::domain::Msg::new("error.bad_request").with("detail", e),
        ))
    })?;
    state
        .ctx
        .call_lists
        .wrap_up(&actor, &w.call_id, w.outcome)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
pub struct ProgressQuery {
    /// The shop day (YYYY-MM-DD), today when not given.
    pub day: Option<String>,
    /// One user; without it, the team (with ViewTeamProgress) or oneself.
    pub user: Option<i64>,
}

/// Daily progress per operator over a shop day, against their targets.
#[utoipa::path(get, path = "/api/v1/progress", tag = "call-lists", params(ProgressQuery),
    responses((status = 200, body = [Progress]), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn progress(
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<ProgressQuery>,
) -> ApiResult {
    let team = actor.can(Action::ViewTeamProgress);
    let user = match q.user {
        Some(u) if u != actor.user_id && !team => return Err(DomainError::Forbidden.into()),
        Some(u) => Some(u),
        None if team => None,
        None => Some(actor.user_id),
    };
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .call_lists
            .progress(&actor, q.day.as_deref(), user)
            .await
            .map_err(ApiError::bad_query)?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsInput {
    /// 0: the default for everyone without their own.
    pub user_id: i64,
    pub targets: Targets,
}

/// Sets daily targets.
#[utoipa::path(put, path = "/api/v1/progress/targets", tag = "call-lists", request_body = TargetsInput,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_targets(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<TargetsInput>,
) -> ApiResult {
    let b = body.into_inner();
    state
        .ctx
        .call_lists
        .set_targets(&actor, b.user_id, b.targets)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
