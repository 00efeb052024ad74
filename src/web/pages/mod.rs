//! Server-rendered pages, one module per feature.

pub mod audit;
pub mod auth;
pub mod backups;
pub mod branches;
pub mod call_lists;
pub mod calls;
pub mod conversation_export;
pub mod core_ui;
pub mod customers;
pub mod dashboard;
pub mod desk;
pub mod imports;
pub mod inbox;
pub mod notifications;
pub mod orders;
pub mod profile;
pub mod promos;
pub mod provisioning;
pub mod recordings;
pub mod roles;
pub mod segments;
pub mod settings;
pub mod telephony;
pub mod users;
pub mod widget;

use actix_web::http::header;
use actix_web::HttpResponse;
use maud::Markup;

pub fn html(m: Markup) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(m.into_string())
}

pub fn html_status(status: actix_web::http::StatusCode, m: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(m.into_string())
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// Only same-site paths are followed (no open redirect): see [`crate::web::redirect`].
pub fn safe_next(next: Option<&str>) -> &str {
    crate::web::redirect::safe_target(next)
}
