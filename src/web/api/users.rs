use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::accounts::{LoginAuditRow, NewUser, TokenRow, UserAccess, UserChange, UserRow};
use crate::domain::{Actor, DomainError};
use crate::model::{Language, Role};
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(serde::Serialize, ToSchema)]
pub struct Me {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    /// The built-in role the user's record scope follows.
    pub role: Role,
    pub language: Language,
    /// What the user may do (permission keys).
    pub permissions: Vec<&'static str>,
    /// The branches the user works in; empty for every branch.
    pub branch_ids: Vec<i64>,
}

/// The authenticated user.
#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(actor: Actor) -> ApiResult {
    Ok(HttpResponse::Ok().json(Me {
        id: actor.user_id,
        username: actor.username,
        display_name: actor.display_name,
        role: actor.role,
        language: actor.language,
        permissions: actor.perms.to_keys(),
        branch_ids: actor.branches.ids(),
    }))
}

/// All staff accounts (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [UserRow]), (status = 403, body = ErrorBody)))]
pub async fn list(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.accounts.list_users().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub display_name: String,
    /// `admin`, `operator`, `master` or a custom role's key (see `/api/v1/roles`).
    pub role: String,
    /// The branches the user works in; empty or absent for every branch.
    #[serde(default)]
    pub branch_ids: Vec<i64>,
    #[serde(default)]
    pub language: Language,
    pub password: String,
    /// Optional address for staff notifications (and the daily summary for admins).
    #[serde(default)]
    pub email: Option<String>,
}

/// Creates a staff account (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserRow), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<CreateUser>,
) -> ApiResult {
    let b = body.into_inner();
    let email = b.email.unwrap_or_default();
    crate::domain::accounts::normalize_email(&email)?;
    let id = state
        .ctx
        .accounts
        .create_user_with(
            Some(&actor),
            NewUser {
                username: b.username,
                display_name: b.display_name,
                role: Role::Operator,
                language: b.language,
                password: b.password,
            },
            UserAccess {
                role: b.role,
                branches: b.branch_ids,
            },
            false,
        )
        .await?;
    state
        .ctx
        .accounts
        .set_email(Some(&actor), id, &email)
        .await?;
    Ok(HttpResponse::Created().json(state.ctx.accounts.user(id).await?))
}

/// One staff account (admin).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = UserRow), (status = 404, body = ErrorBody)))]
pub async fn get(state: web::Data<WebState>, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.accounts.user(id.into_inner()).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub display_name: Option<String>,
    /// `admin`, `operator`, `master` or a custom role's key.
    pub role: Option<String>,
    /// The branches the user works in; empty for every branch.
    pub branch_ids: Option<Vec<i64>>,
    pub active: Option<bool>,
    pub language: Option<Language>,
    /// Sets a new password and ends the user's sessions.
    pub password: Option<String>,
    /// Sets the e-mail address; an empty string clears it.
    pub email: Option<String>,
}

/// Changes a staff account (admin). Omitted fields stay as they are.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = UpdateUser,
    responses((status = 200, body = UserRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<UpdateUser>,
) -> ApiResult {
    let id = id.into_inner();
    let acc = &state.ctx.accounts;
    let cur = acc.user(id).await?;
    let b = body.into_inner();
    if let Some(p) = &b.password {
        crate::domain::accounts::validate_password(p)?;
    }
    if let Some(e) = &b.email {
        crate::domain::accounts::normalize_email(e)?;
    }
    let access = (b.role.is_some() || b.branch_ids.is_some()).then(|| UserAccess {
        role: b.role.clone().unwrap_or_else(|| cur.role_key.clone()),
        branches: b
            .branch_ids
            .clone()
            .unwrap_or_else(|| cur.branch_ids.clone()),
    });
    let change = UserChange {
        display_name: b.display_name.clone().unwrap_or(cur.display_name),
        access,
        active: b.active.unwrap_or(cur.active),
        language: b.language.unwrap_or(cur.language),
    };
    acc.update_user(Some(&actor), id, change).await?;
    if let Some(e) = &b.email {
        acc.set_email(Some(&actor), id, e).await?;
    }
    if let Some(p) = b.password {
        acc.set_password(Some(&actor), id, p).await?;
    }
    Ok(HttpResponse::Ok().json(acc.user(id).await?))
}

/// API tokens: one's own; admins see everyone's.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [TokenRow])))]
pub async fn list_tokens(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    let scope = if actor.can(crate::domain::Action::ManageUsers) {
        None
    } else {
        Some(actor.user_id)
    };
    Ok(HttpResponse::Ok().json(state.ctx.accounts.list_tokens(scope).await?))
}

/// Revokes an API token (one's own, or any for admins).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
) -> ApiResult {
    state
        .ctx
        .accounts
        .revoke_token(Some(&actor), id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only this username.
    pub username: Option<String>,
    /// Only failed attempts.
    #[serde(default)]
    pub failures: bool,
    /// At most this many rows (1-500, default 100).
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Sign-in attempts, newest first (admin).
#[utoipa::path(get, path = "/api/v1/login-audit", tag = "users", params(AuditQuery),
    responses((status = 200, body = [LoginAuditRow])))]
pub async fn login_audit(state: web::Data<WebState>, q: web::Query<AuditQuery>) -> ApiResult {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) || q.offset.unwrap_or(0) < 0 {
        return Err(DomainError::invalid("err.paging.limit_offset").into());
    }
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .accounts
            .login_audit(q.username, q.failures, limit, q.offset.unwrap_or(0))
            .await?,
    ))
}
