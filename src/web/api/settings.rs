//! Shop settings API (admin): name, receipts, numbering, currency, phone country, time
//! zone (the shop clock).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::domain::shop::ShopSettings;
use crate::domain::Actor;
use crate::i18n::Tr;
use crate::model::Language;
use crate::web::error::{json_error, ApiError, ErrorBody};
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
    req: HttpRequest,
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<ShopSettings>,
) -> ApiResult {
    let s = body.into_inner();
    if crate::domain::clock::check_zone(&s.time_zone).is_err() {
        let tr = Tr::new(accept_language(&req));
        return Ok(json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            crate::web::pages::settings::unknown_zone(tr, &s.time_zone),
        ));
    }
    crate::domain::shop::save(&state.ctx.db, &state.ctx.clock, actor.user_id, s).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The language of `Accept-Language` that the catalogue has; English otherwise.
fn accept_language(req: &HttpRequest) -> Language {
    req.headers()
        .get(actix_web::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Language::from_accept_language)
        .unwrap_or(Language::En)
}
