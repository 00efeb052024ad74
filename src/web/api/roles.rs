//! Roles (issue 19): the built-in ones and the owner's, and the permission catalogue.

use actix_web::{web, HttpResponse};

use crate::domain::roles::{self, PermissionView, RoleInput, RoleView};
use crate::domain::Actor;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RoleList {
    /// The built-in roles (admin, operator, master), then the owner's.
    pub roles: Vec<RoleView>,
    /// Every permission a role can have, with its area.
    pub permissions: Vec<PermissionView>,
}

/// Roles and the permission catalogue (whoever manages users).
#[utoipa::path(get, path = "/api/v1/roles", tag = "users",
    responses((status = 200, body = RoleList), (status = 403, body = ErrorBody)))]
pub async fn list(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(RoleList {
        roles: roles::list(&state.ctx.store).await?,
        permissions: roles::permission_list(),
    }))
}

/// Creates a role from a set of permission keys.
#[utoipa::path(post, path = "/api/v1/roles", tag = "users", request_body = RoleInput,
    responses((status = 201, body = RoleView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<RoleInput>,
) -> ApiResult {
    let r = roles::create(&state.ctx.store, &actor, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(r))
}

/// Changes a custom role (all fields); its users' access follows at once. Refused when no
/// active user could manage users afterwards.
#[utoipa::path(put, path = "/api/v1/roles/{id}", tag = "users", params(("id" = i64, Path)), request_body = RoleInput,
    responses((status = 200, body = RoleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<RoleInput>,
) -> ApiResult {
    let r = roles::update(&state.ctx.store, &actor, id.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(r))
}
