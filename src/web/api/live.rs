use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::notices::{self, Notice};
use crate::domain::Actor;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

#[derive(serde::Serialize, ToSchema)]
pub struct Presence {
    /// Users with at least one open live connection.
    pub online: Vec<i64>,
}

/// Who is online now.
#[utoipa::path(get, path = "/api/v1/presence", tag = "live",
    responses((status = 200, body = Presence)))]
pub async fn presence(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Presence {
        online: state.hub.online().await,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNotice {
    /// 1-500 characters.
    pub text: String,
}

/// Broadcasts a notice to every open screen (admin).
#[utoipa::path(post, path = "/api/v1/notices", tag = "live", request_body = NewNotice,
    responses((status = 201, body = Notice), (status = 422, body = ErrorBody)))]
pub async fn post_notice(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<NewNotice>,
) -> Result<HttpResponse, ApiError> {
    let n = notices::post(&state.ctx.store, &actor, &body.text).await?;
    Ok(HttpResponse::Created().json(n))
}
