//! JSON API under /api/v1. Handlers carry `#[utoipa::path]` annotations, from which the
//! OpenAPI document is generated; a test checks it lists exactly the API routes.

pub mod call_lists;
pub mod calls;
pub mod conversations;
pub mod core;
pub mod imports;
pub mod live;
pub mod notifications;
pub mod promos;
pub mod roles;
pub mod segments;
pub mod settings;
pub mod telephony;
pub mod users;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                super::auth::SESSION_COOKIE,
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "crm API", description = "Service-center CRM. Authenticate with `Authorization: Bearer <token>` (create one with `crm token create USER` or on the profile page). Errors are `{\"error\":{\"code\",\"message\"}}`."),
    paths(
        users::me, users::list, users::create, users::get, users::update,
        users::list_tokens, users::revoke_token, users::login_audit,
        live::presence, live::post_notice,
        core::list_customers, core::create_customer, core::lookup, core::get_customer, core::update_customer,
        core::list_orders, core::create_order, core::get_order, core::update_order, core::change_status,
        core::assign, core::set_unlock, core::add_line, core::pay, core::comment, core::search, core::statuses,
        core::list_branches, core::create_branch, core::update_branch, core::customer_scope,
        telephony::list_extensions, telephony::create_extension, telephony::delete_extension,
        telephony::list_groups, telephony::save_group, telephony::delete_group,
        telephony::registrations, telephony::bans, telephony::release_ban,
        calls::list, calls::missed, calls::mark_missed_done, calls::live, calls::get,
        telephony::list_trunks, telephony::save_trunk, telephony::delete_trunk,
        telephony::get_rules, telephony::save_rules, telephony::set_outbound, telephony::set_digest, telephony::set_branch, telephony::dial,
        notifications::outbox, notifications::message, notifications::retry, notifications::settings,
        settings::get_shop, settings::save_shop,
        conversations::list, conversations::unread, conversations::get, conversations::messages,
        conversations::reply, conversations::assign, conversations::close,
        conversations::quick_replies, conversations::save_quick_reply, conversations::delete_quick_reply,
        imports::import_customers, imports::list, imports::get, imports::undo,
        core::archive_customer, core::restore_customer,
        segments::list, segments::create, segments::count, segments::get, segments::update,
        segments::delete, segments::customers,
        call_lists::list, call_lists::create, call_lists::get, call_lists::update, call_lists::items,
        call_lists::take, call_lists::release, call_lists::dial, call_lists::outcome, call_lists::next,
        call_lists::outcomes, call_lists::save_outcome, call_lists::wrap_up, call_lists::progress,
        call_lists::set_targets,
        promos::list, promos::create, promos::get, promos::update, promos::apply, promos::remove,
        promos::broadcasts, promos::send_broadcast, promos::broadcast,
        promos::archive_order, promos::restore_order, promos::archive_rule,
        promos::sms_settings, promos::save_sms,
        roles::list, roles::create, roles::update,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security),
    security(("bearer" = []), ("session" = []))
)]
pub struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_string();
    doc
}

pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi())
}
