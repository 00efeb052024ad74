//! Desk-phone provisioning (issue 15): the admin's list of phones (MAC, model, extension)
//! with the URL to set in each phone or in DHCP option 66, and the files the phones fetch
//! at boot (`/provision/<file>`: trusted LAN ranges only, the phone's own credentials,
//! every fetch logged — the rules are in `domain::provisioning`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine as _;
use maud::html;
use serde::Deserialize;

use super::{html_status, redirect};
use crate::domain::provisioning::{self, Fetch, Refused, MODELS};
use crate::domain::{Actor, DomainError};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};
use crate::web::WebState;

fn err(ui: &Ui, e: DomainError) -> HttpResponse {
    PageError { err: e, tr: ui.tr }.error_response()
}

fn trusted_networks(state: &WebState) -> Vec<crate::sip::Net> {
    state
        .ctx
        .config
        .sip_trusted_networks
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

async fn overview(ui: &Ui, req: &HttpRequest, error: Option<&str>) -> HttpResponse {
    let db = &ui.state.ctx.db;
    let (phones, exts) = match tokio::try_join!(
        provisioning::list(db),
        ui.state.ctx.telephony.list_extensions()
    ) {
        Ok(x) => x,
        Err(e) => return err(ui, e),
    };
    let scheme = if ui.state.ctx.config.tls() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}/provision/", req.connection_info().host());
    let nets = trusted_networks(&ui.state);
    let status = if error.is_some() {
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        actix_web::http::StatusCode::OK
    };
    html_status(
        status,
        page(
            ui,
            ui.t("telephony.phones_title"),
            html! {
                h1 { (ui.t("telephony.phones_title")) }
                (flash(error, "error"))
                p { (ui.t("telephony.provision_url")) ": " code #provision-url { (url) } }
                p.muted { (ui.t("telephony.provision_credentials")) }
                @if nets.is_empty() {
                    p.error #no-trusted { (ui.t("telephony.no_trusted")) }
                } @else {
                    p { (ui.t("telephony.trusted_nets")) ": "
                        @for n in &nets { code { (n.to_string()) } " " } }
                }
                div.table-wrap { table #phones-table {
                    thead { tr {
                        th { (ui.t("telephony.mac")) } th { (ui.t("telephony.model")) }
                        th { (ui.t("telephony.number")) } th { (ui.t("telephony.fetch_password")) }
                        th { (ui.t("telephony.last_fetch")) } th {}
                    } }
                    tbody { @for p in &phones {
                        tr data-mac=(p.mac) {
                            td { code { (p.mac) } } td { (p.model) } td { code { (p.extension) } }
                            td { code { (p.password) } }
                            td { @match p.last_fetch_at {
                                Some(t) => (ui.datetime(t)),
                                None => (ui.t("telephony.never")),
                            } }
                            td { form.inline method="post" action=(format!("/telephony/phones/{}/delete", p.mac)) {
                                (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.delete")) }
                            } }
                        }
                    } }
                } }
                form.card method="post" action="/telephony/phones" {
                    (csrf_field(ui))
                    label { (ui.t("telephony.mac")) " " input name="mac" required placeholder="00:15:65:aa:bb:cc"; }
                    label { (ui.t("telephony.model")) " " select name="model" {
                        @for m in MODELS { option value=(m) { (m) } }
                    } }
                    label { (ui.t("telephony.number")) " " select name="extension" {
                        @for e in &exts { option value=(e.number) { (e.number) " " (e.display_name) } }
                    } }
                    button.primary type="submit" { (ui.t("telephony.add_phone")) }
                }
            },
        ),
    )
}

pub async fn show(ui: Ui, req: HttpRequest) -> HttpResponse {
    overview(&ui, &req, None).await
}

#[derive(Deserialize)]
pub struct PhoneForm {
    mac: String,
    model: String,
    extension: String,
}

pub async fn add(
    ui: Ui,
    actor: Actor,
    req: HttpRequest,
    form: web::Form<PhoneForm>,
) -> HttpResponse {
    let f = form.into_inner();
    match provisioning::add(
        &ui.state.ctx.store,
        Some(&actor),
        &f.mac,
        &f.model,
        &f.extension,
    )
    .await
    {
        Ok(_) => redirect("/telephony/phones"),
        Err(DomainError::Invalid(m)) | Err(DomainError::Conflict(m)) => {
            overview(&ui, &req, Some(&ui.msg(&m))).await
        }
        Err(e) => err(&ui, e),
    }
}

pub async fn remove(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    match provisioning::remove(&ui.state.ctx.store, Some(&actor), &path.into_inner()).await {
        Ok(()) => redirect("/telephony/phones"),
        Err(e) => err(&ui, e),
    }
}

/// HTTP Basic credentials of a request.
fn basic(req: &HttpRequest) -> Option<(String, String)> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A phone fetching its file at boot. No session: the phone's address must be in a
/// trusted range and it must send its own credentials.
pub async fn fetch(
    req: HttpRequest,
    state: web::Data<WebState>,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(from) = req.peer_addr().map(|a| a.ip()) else {
        return HttpResponse::Forbidden().finish();
    };
    let trusted = trusted_networks(&state).iter().any(|n| n.contains(from));
    let host_header = req.connection_info().host().to_string();
    // The SIP server is the host the phone reached us at, on the SIP port.
    let server_host = match host_header.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => host_header.clone(),
    };
    let sip_port = state.ctx.sip().map(|s| s.port()).unwrap_or(5060);
    let file = path.into_inner();
    let r = provisioning::fetch(
        &state.ctx.store,
        Fetch {
            file: &file,
            from,
            trusted,
            basic: basic(&req),
            server_host: &server_host,
            sip_port,
        },
    )
    .await;
    match r {
        Ok(Ok((kind, body))) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, kind))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Ok(Err(Refused::Untrusted)) => HttpResponse::Forbidden().finish(),
        Ok(Err(Refused::Credentials)) => HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"crm provisioning\""))
            .finish(),
        Ok(Err(Refused::Unknown)) => HttpResponse::NotFound().finish(),
        Err(e) => {
            tracing::error!(error = %e, "provisioning: fetch failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}
