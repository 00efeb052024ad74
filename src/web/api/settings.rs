//! Shop settings API (admin): name, receipts, numbering, currency, phone country, time
//! zone (the shop clock).

use actix_web::{web, HttpResponse};

use crate::domain::shop::ShopSettings;
use crate::domain::Actor;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

/// The shop's settings.
#[utoipa::path(get, path = "/api/v1/settings/shop", tag = "settings",
    responses((status = 200, body = ShopSettings), (status = 403, body = ErrorBody)))]
pub async fn get_shop(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(crate::domain::shop::load(&state.ctx.db).await?))
}

/// Replaces the shop's settings. `time_zone` is an IANA name (`Asia/Tashkent`,
/// `Europe/Moscow`); the shop clock switches at once. An unknown zone is refused (422,
/// code `invalid`) with the message in the request's `Accept-Language` (English without).
#[utoipa::path(put, path = "/api/v1/settings/shop", tag = "settings",
    request_body = ShopSettings,
    responses((status = 204), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn save_shop(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<ShopSettings>,
) -> ApiResult {
    // An unknown zone is a domain refusal, answered in the request's language.
    crate::domain::shop::save(&state.ctx.store, &actor, body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
