//! Telephony API (admin): extensions, ring groups, live registrations, bans.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::telephony::{ExtensionRow, RingGroupRow};
use crate::domain::telephony::{NewExtension, NewGroup};
use crate::domain::{Actor, DomainError};
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

/// Extensions (secrets are never listed).
#[utoipa::path(get, path = "/api/v1/telephony/extensions", tag = "telephony",
    responses((status = 200, body = [ExtensionRow]), (status = 403, body = ErrorBody)))]
pub async fn list_extensions(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.telephony.extensions_for(&actor).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExtension {
    /// 2 to 6 digits.
    pub number: String,
    #[serde(default)]
    pub display_name: String,
    /// Staff username to link (screen-pops).
    pub username: Option<String>,
    /// Omit to have a strong secret generated.
    pub secret: Option<String>,
    /// The branch the extension is of (omit: the whole shop): a call to it with no other
    /// branch is that branch's.
    #[serde(default)]
    pub branch_id: Option<i64>,
}

/// What to enter in the phone; the secret is shown only here.
#[derive(serde::Serialize, ToSchema)]
pub struct PhoneSettings {
    pub number: String,
    pub display_name: String,
    /// SIP server address (as configured; 0.0.0.0 means "this box's LAN address").
    pub server: String,
    pub user: String,
    pub secret: String,
}

/// Creates an extension and returns the phone's settings, secret included (once).
#[utoipa::path(post, path = "/api/v1/telephony/extensions", tag = "telephony",
    request_body = CreateExtension,
    responses((status = 201, body = PhoneSettings), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_extension(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<CreateExtension>,
) -> ApiResult {
    let b = body.into_inner();
    let e = state
        .ctx
        .telephony
        .add_extension(
            Some(&actor),
            NewExtension {
                number: b.number,
                display_name: b.display_name,
                username: b.username,
                secret: b.secret,
                branch_id: b.branch_id,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(PhoneSettings {
        server: state.ctx.config.sip.clone(),
        user: e.number.clone(),
        number: e.number,
        display_name: e.display_name,
        secret: e.secret,
    }))
}

/// Deletes an extension and drops its registrations.
#[utoipa::path(delete, path = "/api/v1/telephony/extensions/{number}", tag = "telephony",
    params(("number" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_extension(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<String>,
) -> ApiResult {
    let number = path.into_inner();
    state
        .ctx
        .telephony
        .remove_extension(Some(&actor), &number)
        .await?;
    if let Some(sip) = state.ctx.sip() {
        sip.unregister_all(&number);
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Ring groups with their members in ringing order.
#[utoipa::path(get, path = "/api/v1/telephony/groups", tag = "telephony",
    responses((status = 200, body = [RingGroupRow]), (status = 403, body = ErrorBody)))]
pub async fn list_groups(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.telephony.list_groups().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveGroup {
    pub number: String,
    #[serde(default)]
    pub name: String,
    /// "ring_all" or "sequential".
    pub strategy: String,
    #[serde(default = "default_member_timeout")]
    pub member_timeout_secs: u32,
    #[serde(default = "default_overall_timeout")]
    pub overall_timeout_secs: u32,
    pub members: Vec<String>,
    /// The branch the group answers for (none: the whole shop): calls to it are the
    /// branch's.
    #[serde(default)]
    pub branch_id: Option<i64>,
}

fn default_member_timeout() -> u32 {
    20
}
fn default_overall_timeout() -> u32 {
    60
}

/// Creates or replaces a ring group.
#[utoipa::path(put, path = "/api/v1/telephony/groups", tag = "telephony",
    request_body = SaveGroup,
    responses((status = 204), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn save_group(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<SaveGroup>,
) -> ApiResult {
    let b = body.into_inner();
    let strategy = match b.strategy.as_str() {
        "ring_all" => crate::sip::Strategy::RingAll,
        "sequential" => crate::sip::Strategy::Sequential,
        _ => return Err(DomainError::invalid("err.group.strategy").into()),
    };
    state
        .ctx
        .telephony
        .save_group(
            Some(&actor),
            NewGroup {
                number: b.number,
                name: b.name,
                strategy,
                member_timeout_secs: b.member_timeout_secs,
                overall_timeout_secs: b.overall_timeout_secs,
                members: b.members,
                branch_id: b.branch_id,
            },
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a ring group.
#[utoipa::path(delete, path = "/api/v1/telephony/groups/{number}", tag = "telephony",
    params(("number" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_group(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<String>,
) -> ApiResult {
    state
        .ctx
        .telephony
        .remove_group(Some(&actor), &path.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Serialize, ToSchema)]
pub struct RegistrationView {
    pub extension: String,
    pub contact: String,
    pub user_agent: String,
    pub source: String,
    /// "UDP" or "TCP".
    pub transport: String,
    pub expires_in: u64,
}

/// Registered phones right now (empty when SIP is off).
#[utoipa::path(get, path = "/api/v1/telephony/registrations", tag = "telephony",
    responses((status = 200, body = [RegistrationView]), (status = 403, body = ErrorBody)))]
pub async fn registrations(state: web::Data<WebState>) -> ApiResult {
    let list: Vec<RegistrationView> = state
        .ctx
        .sip()
        .map(|s| s.registrations())
        .unwrap_or_default()
        .into_iter()
        .map(|r| RegistrationView {
            extension: r.extension,
            contact: r.contact,
            user_agent: r.user_agent,
            source: r.source,
            transport: r.transport.into(),
            expires_in: r.expires_in,
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(serde::Serialize, ToSchema)]
pub struct BanView {
    pub address: String,
    /// The extension banned from this address; null: the whole address (scanning).
    pub extension: Option<String>,
    pub failures: u32,
    pub banned_for_secs: u64,
}

/// Bans after repeated authentication failures: an extension from an address, or a
/// whole address that was scanning.
#[utoipa::path(get, path = "/api/v1/telephony/bans", tag = "telephony",
    responses((status = 200, body = [BanView]), (status = 403, body = ErrorBody)))]
pub async fn bans(state: web::Data<WebState>) -> ApiResult {
    let list: Vec<BanView> = state
        .ctx
        .sip()
        .map(|s| s.bans())
        .unwrap_or_default()
        .into_iter()
        .map(|b| BanView {
            address: b.address,
            extension: b.extension,
            failures: b.failures,
            banned_for_secs: b.banned_for_secs,
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Lifts the bans of one address (the whole address and each extension from it).
#[utoipa::path(post, path = "/api/v1/telephony/bans/{address}/release", tag = "telephony",
    params(("address" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn release_ban(state: web::Data<WebState>, path: web::Path<String>) -> ApiResult {
    let ip: std::net::IpAddr = path
        .into_inner()
        .parse()
        .map_err(|_| DomainError::invalid("err.ban.address"))?;
    match state.ctx.sip() {
        Some(s) if s.release_ban(ip) => Ok(HttpResponse::NoContent().finish()),
        _ => Err(DomainError::NotFound.into()),
    }
}

// ----- trunks, call rules, outbound policy, click-to-call ---------------------------

use crate::domain::telephony::{CallRules, NewTrunk, OutboundSettings, TrunkRow};

/// A trunk with its registration state right now.
#[derive(serde::Serialize, ToSchema)]
pub struct TrunkView {
    #[serde(flatten)]
    pub trunk: TrunkRow,
    /// "registered" (with `expires_in`), "failed" (with `reason` and `retry_in`),
    /// "registering", "not_registering", or "unknown" while SIP is off.
    #[schema(value_type = Object)]
    pub status: serde_json::Value,
}

/// Trunks (secrets are never listed) and their registration state.
#[utoipa::path(get, path = "/api/v1/telephony/trunks", tag = "telephony",
    responses((status = 200, body = [TrunkView]), (status = 403, body = ErrorBody)))]
pub async fn list_trunks(state: web::Data<WebState>) -> ApiResult {
    let tel = &state.ctx.telephony;
    let status = tel.trunk_status();
    let list: Vec<TrunkView> = tel
        .list_trunks()
        .await?
        .into_iter()
        .map(|t| {
            let s = status
                .iter()
                .find(|s| s.id == t.id)
                .map(|s| serde_json::to_value(&s.state).unwrap_or_default())
                .unwrap_or_else(|| serde_json::json!({ "state": "unknown" }));
            TrunkView {
                trunk: t,
                status: s,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Creates or replaces a trunk (by name) with the DIDs it delivers.
#[utoipa::path(put, path = "/api/v1/telephony/trunks", tag = "telephony",
    request_body = NewTrunk,
    responses((status = 204), (status = 422, body = ErrorBody)))]
pub async fn save_trunk(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<NewTrunk>,
) -> ApiResult {
    state
        .ctx
        .telephony
        .save_trunk(Some(&actor), body.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a trunk and its DIDs.
#[utoipa::path(delete, path = "/api/v1/telephony/trunks/{id}", tag = "telephony",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_trunk(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<i64>,
) -> ApiResult {
    state
        .ctx
        .telephony
        .remove_trunk(Some(&actor), path.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Business hours, holidays, the shop's UTC offset and the dial rules.
#[utoipa::path(get, path = "/api/v1/telephony/rules", tag = "telephony",
    responses((status = 200, body = CallRules), (status = 403, body = ErrorBody)))]
pub async fn get_rules(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.telephony.call_rules().await?))
}

#[utoipa::path(put, path = "/api/v1/telephony/rules", tag = "telephony",
    request_body = CallRules,
    responses((status = 204), (status = 422, body = ErrorBody)))]
pub async fn save_rules(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<CallRules>,
) -> ApiResult {
    state
        .ctx
        .telephony
        .save_call_rules(Some(&actor), body.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What an extension may dial out, its hourly limit and auto-answer.
#[utoipa::path(put, path = "/api/v1/telephony/extensions/{number}/outbound", tag = "telephony",
    params(("number" = String, Path)), request_body = OutboundSettings,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_outbound(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<String>,
    body: web::Json<OutboundSettings>,
) -> ApiResult {
    state
        .ctx
        .telephony
        .set_outbound(Some(&actor), &path.into_inner(), body.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestChoice {
    /// "default" (the box-wide setting), "MD5", "SHA-256,MD5", "SHA-256" or "MD5,SHA-256".
    pub digest: String,
}

/// The digest algorithms offered to one extension's phone.
#[utoipa::path(put, path = "/api/v1/telephony/extensions/{number}/digest", tag = "telephony",
    params(("number" = String, Path)), request_body = DigestChoice,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_digest(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<String>,
    body: web::Json<DigestChoice>,
) -> ApiResult {
    state
        .ctx
        .telephony
        .set_extension_digest(Some(&actor), &path.into_inner(), &body.digest)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchChoice {
    /// The branch the extension is of; null: the whole shop. A call to the extension with
    /// no other branch (no DID's, no ring group's) is this branch's.
    pub branch_id: Option<i64>,
}

/// Puts an extension in a branch, or back to the whole shop. A branch-scoped user may
/// move only their branches' and shop-wide extensions, and only into their branches.
#[utoipa::path(put, path = "/api/v1/telephony/extensions/{number}/branch", tag = "telephony",
    params(("number" = String, Path)), request_body = BranchChoice,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_branch(
    state: web::Data<WebState>,
    actor: Actor,
    path: web::Path<String>,
    body: web::Json<BranchChoice>,
) -> ApiResult {
    state
        .ctx
        .telephony
        .set_extension_branch(Some(&actor), &path.into_inner(), body.branch_id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dial {
    /// An extension or an outside number (any common notation).
    pub number: String,
}

#[derive(serde::Serialize, ToSchema)]
pub struct Dialling {
    /// The call id the call events and the call log use.
    pub call_id: String,
}

/// Click-to-call: rings the caller's own desk phone, then connects it to the number.
#[utoipa::path(post, path = "/api/v1/calls/dial", tag = "calls",
    request_body = Dial,
    responses((status = 202, body = Dialling), (status = 422, body = ErrorBody)))]
pub async fn dial(state: web::Data<WebState>, actor: Actor, body: web::Json<Dial>) -> ApiResult {
    let call_id = state
        .ctx
        .telephony
        .click_to_call(&actor, &body.into_inner().number)
        .await?;
    Ok(HttpResponse::Accepted().json(Dialling { call_id }))
}
