//! Segments over JSON (issue 18): saved customer filters with live counts.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::customers::CustomerRow;
use crate::domain::filters::Paging;
use crate::domain::segments::{Segment, SegmentFilter};
use crate::domain::Actor;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentInput {
    pub name: String,
    #[serde(default)]
    pub filter: SegmentFilter,
}

/// Segments with their counts now.
#[utoipa::path(get, path = "/api/v1/segments", tag = "segments",
    responses((status = 200, body = [Segment])))]
pub async fn list(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.segments.list(&actor).await?))
}

#[utoipa::path(post, path = "/api/v1/segments", tag = "segments", request_body = SegmentInput,
    responses((status = 201, body = Segment), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<SegmentInput>,
) -> ApiResult {
    let b = body.into_inner();
    let id = state
        .ctx
        .segments
        .save(&actor, None, &b.name, b.filter)
        .await?;
    Ok(HttpResponse::Created().json(state.ctx.segments.get(&actor, id).await?))
}

#[utoipa::path(get, path = "/api/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = Segment), (status = 404, body = ErrorBody)))]
pub async fn get(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.segments.get(&actor, id.into_inner()).await?))
}

#[utoipa::path(put, path = "/api/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)), request_body = SegmentInput,
    responses((status = 200, body = Segment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<SegmentInput>,
) -> ApiResult {
    let b = body.into_inner();
    let id = id.into_inner();
    state
        .ctx
        .segments
        .save(&actor, Some(id), &b.name, b.filter)
        .await?;
    Ok(HttpResponse::Ok().json(state.ctx.segments.get(&actor, id).await?))
}

#[utoipa::path(delete, path = "/api/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    state.ctx.segments.delete(&actor, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The segment's customers, newest first.
#[utoipa::path(get, path = "/api/v1/segments/{id}/customers", tag = "segments", params(("id" = i64, Path), Paging),
    responses((status = 200, body = [CustomerRow]), (status = 404, body = ErrorBody)))]
pub async fn customers(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    q: web::Query<Paging>,
) -> ApiResult {
    let (limit, offset) = q.parse(50)?;
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .segments
            .members(&actor, id.into_inner(), limit, offset)
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
pub struct CountQuery {
    /// The filter as JSON (the `filter` of a segment).
    pub filter: String,
}

/// How many customers an unsaved filter selects now.
#[utoipa::path(get, path = "/api/v1/segments/count", tag = "segments", params(CountQuery),
    responses((status = 200, body = i64), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn count(
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<CountQuery>,
) -> ApiResult {
    let f: SegmentFilter = serde_json::from_str(&q.filter).map_err(|e| {
        ApiError::bad_query(crate::domain::DomainError::invalid(
            crate::domain::Msg::new("error.bad_request").with("detail", e),
        ))
    })?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"count": state.ctx.segments.count(&actor, f).await?})))
}
