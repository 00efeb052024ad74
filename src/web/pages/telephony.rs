//! Telephony admin page: extensions (with the settings to enter in a phone), ring groups,
//! registered phones and banned addresses.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html_status, redirect};
use crate::domain::telephony::{NewExtension, NewGroup};
use crate::domain::{Actor, DomainError};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

fn err(ui: &Ui, e: DomainError) -> HttpResponse {
    PageError { err: e, tr: ui.tr }.error_response()
}

/// The server address a phone should use: the SIP listen address, with the port split
/// out (0.0.0.0 = "this box's LAN address", which the admin fills in).
fn server_and_port(ui: &Ui) -> (String, String) {
    let sip = ui.state.ctx.config.sip.clone();
    match sip.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (sip, "5060".into()),
    }
}

async fn overview(ui: &Ui, notice: Option<Markup>, error: Option<&str>) -> HttpResponse {
    let tel = &ui.state.ctx.telephony;
    let (exts, groups) = match tokio::try_join!(tel.list_extensions(), tel.list_groups()) {
        Ok(x) => x,
        Err(e) => return err(ui, e),
    };
    let sip = ui.state.ctx.sip();
    let regs = sip.as_ref().map(|s| s.registrations()).unwrap_or_default();
    let bans = sip.as_ref().map(|s| s.bans()).unwrap_or_default();
    let (server, port) = server_and_port(ui);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    html_status(
        status,
        page(
            ui,
            ui.t("telephony.title"),
            html! {
                h1 { (ui.t("telephony.title")) }
                @if let Some(n) = notice { (n) }
                (flash(error, "error"))
                @if sip.is_none() { p.muted { (ui.t("telephony.sip_off")) } }
                h2 { (ui.t("telephony.extensions")) }
                div.table-wrap { table #extensions-table {
                    thead { tr {
                        th { (ui.t("telephony.number")) } th { (ui.t("telephony.name")) }
                        th { (ui.t("telephony.user")) } th { (ui.t("telephony.server")) }
                        th { (ui.t("telephony.port")) } th {}
                    } }
                    tbody { @for e in &exts {
                        tr.inactive[!e.enabled] {
                            td { code { (e.number) } } td { (e.display_name) }
                            td { (e.username.as_deref().unwrap_or("—")) }
                            td { code { (server) } } td { code { (port) } }
                            td {
                                form.inline method="post" action=(format!("/telephony/extensions/{}/secret", e.number)) {
                                    (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.new_secret")) }
                                }
                                form.inline method="post" action=(format!("/telephony/extensions/{}/delete", e.number)) {
                                    (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.delete")) }
                                }
                            }
                        }
                    } }
                } }
                form.card method="post" action="/telephony/extensions" {
                    (csrf_field(ui))
                    label for="number" { (ui.t("telephony.number")) }
                    input #number name="number" required pattern="[0-9]{2,6}" inputmode="numeric";
                    label for="name" { (ui.t("telephony.name")) }
                    input #name name="name" maxlength="80";
                    label for="username" { (ui.t("telephony.staff_user")) }
                    input #username name="username" autocapitalize="none" maxlength="32";
                    button.primary type="submit" { (ui.t("telephony.add_extension")) }
                }
                h2 { (ui.t("telephony.groups")) }
                div.table-wrap { table #groups-table {
                    thead { tr {
                        th { (ui.t("telephony.number")) } th { (ui.t("telephony.name")) }
                        th { (ui.t("telephony.strategy")) } th { (ui.t("telephony.members")) } th {}
                    } }
                    tbody { @for g in &groups {
                        tr {
                            td { code { (g.number) } } td { (g.name) }
                            td { (ui.t(if g.strategy == "sequential" { "telephony.sequential" } else { "telephony.ring_all" })) }
                            td { (g.members.join(", ")) }
                            td { form.inline method="post" action=(format!("/telephony/groups/{}/delete", g.number)) {
                                (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.delete")) }
                            } }
                        }
                    } }
                } }
                form.card method="post" action="/telephony/groups" {
                    (csrf_field(ui))
                    label for="g-number" { (ui.t("telephony.number")) }
                    input #g-number name="number" required pattern="[0-9]{2,6}" inputmode="numeric";
                    label for="g-name" { (ui.t("telephony.name")) }
                    input #g-name name="name" maxlength="80";
                    label for="strategy" { (ui.t("telephony.strategy")) }
                    select #strategy name="strategy" {
                        option value="ring_all" { (ui.t("telephony.ring_all")) }
                        option value="sequential" { (ui.t("telephony.sequential")) }
                    }
                    label for="members" { (ui.t("telephony.members")) }
                    input #members name="members" required placeholder="101, 102, 103";
                    label for="member_timeout" { (ui.t("telephony.member_timeout")) }
                    input #member_timeout name="member_timeout" type="number" min="1" max="600" value="20";
                    label for="overall_timeout" { (ui.t("telephony.overall_timeout")) }
                    input #overall_timeout name="overall_timeout" type="number" min="1" max="600" value="60";
                    button.primary type="submit" { (ui.t("telephony.save_group")) }
                }
                h2 { (ui.t("telephony.registrations")) }
                div.table-wrap #registrations-region data-live-topics=(crate::domain::live_registrations::EVENT) { table #registrations-table {
                    thead { tr {
                        th { (ui.t("telephony.number")) } th { (ui.t("telephony.contact")) }
                        th { (ui.t("telephony.user_agent")) } th { (ui.t("telephony.source")) }
                        th { (ui.t("telephony.transport")) } th { (ui.t("telephony.expires")) }
                    } }
                    tbody { @for r in &regs {
                        tr {
                            td { code { (r.extension) } } td { code { (r.contact) } }
                            td { (r.user_agent) } td { code { (r.source) } }
                            td { (r.transport) } td { (r.expires_in) " s" }
                        }
                    } }
                } }
                h2 { (ui.t("telephony.bans")) }
                div.table-wrap { table #bans-table {
                    thead { tr {
                        th { (ui.t("telephony.source")) } th { (ui.t("telephony.failures")) }
                        th { (ui.t("telephony.expires")) } th {}
                    } }
                    tbody { @for b in &bans {
                        tr {
                            td { code { (b.address) } } td { (b.failures) } td { (b.banned_for_secs) " s" }
                            td { form.inline method="post" action=(format!("/telephony/bans/{}/release", b.address)) {
                                (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.release")) }
                            } }
                        }
                    } }
                } }
            },
        ),
    )
}

pub async fn show(ui: Ui) -> HttpResponse {
    overview(&ui, None, None).await
}

/// The settings to type into the phone, with the secret shown this once.
fn settings_notice(ui: &Ui, number: &str, secret: &str) -> Markup {
    let (server, port) = server_and_port(ui);
    html! {
        div.flash.flash-ok #phone-settings role="status" {
            p { (ui.t("telephony.copy_settings")) }
            dl {
                dt { (ui.t("telephony.server")) } dd { code { (server) } }
                dt { (ui.t("telephony.port")) } dd { code { (port) } }
                dt { (ui.t("telephony.user")) } dd { code { (number) } }
                dt { (ui.t("telephony.secret")) } dd { code.secret { (secret) } }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ExtensionForm {
    number: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: String,
}

pub async fn create_extension(
    ui: Ui,
    actor: Actor,
    form: web::Form<ExtensionForm>,
) -> HttpResponse {
    let f = form.into_inner();
    let username = Some(f.username.trim().to_string()).filter(|u| !u.is_empty());
    let r = ui
        .state
        .ctx
        .telephony
        .add_extension(
            Some(&actor),
            NewExtension {
                number: f.number.trim().to_string(),
                display_name: f.name,
                username,
                secret: None,
            },
        )
        .await;
    match r {
        Ok(e) => overview(&ui, Some(settings_notice(&ui, &e.number, &e.secret)), None).await,
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            overview(&ui, None, Some(&m)).await
        }
        Err(e) => err(&ui, e),
    }
}

pub async fn regenerate_secret(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match ui
        .state
        .ctx
        .telephony
        .regenerate_secret(Some(&actor), &number)
        .await
    {
        Ok(secret) => overview(&ui, Some(settings_notice(&ui, &number, &secret)), None).await,
        Err(e) => err(&ui, e),
    }
}

pub async fn delete_extension(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match ui
        .state
        .ctx
        .telephony
        .remove_extension(Some(&actor), &number)
        .await
    {
        Ok(()) => {
            if let Some(s) = ui.state.ctx.sip() {
                s.unregister_all(&number);
            }
            redirect("/telephony")
        }
        Err(e) => err(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct GroupForm {
    number: String,
    #[serde(default)]
    name: String,
    strategy: String,
    members: String,
    member_timeout: u32,
    overall_timeout: u32,
}

pub async fn save_group(ui: Ui, actor: Actor, form: web::Form<GroupForm>) -> HttpResponse {
    let f = form.into_inner();
    let strategy = match f.strategy.as_str() {
        "ring_all" => crate::sip::Strategy::RingAll,
        "sequential" => crate::sip::Strategy::Sequential,
        _ => return overview(&ui, None, Some(ui.t("error.invalid_choice"))).await,
    };
    let members: Vec<String> = f
        .members
        .split([',', ' ', ';'])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    let r = ui
        .state
        .ctx
        .telephony
        .save_group(
            Some(&actor),
            NewGroup {
                number: f.number.trim().to_string(),
                name: f.name,
                strategy,
                member_timeout_secs: f.member_timeout,
                overall_timeout_secs: f.overall_timeout,
                members,
            },
        )
        .await;
    match r {
        Ok(()) => redirect("/telephony"),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            overview(&ui, None, Some(&m)).await
        }
        Err(e) => err(&ui, e),
    }
}

pub async fn delete_group(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    match ui
        .state
        .ctx
        .telephony
        .remove_group(Some(&actor), &path.into_inner())
        .await
    {
        Ok(()) => redirect("/telephony"),
        Err(e) => err(&ui, e),
    }
}

pub async fn release_ban(ui: Ui, path: web::Path<String>) -> HttpResponse {
    let Ok(ip) = path.into_inner().parse::<std::net::IpAddr>() else {
        return err(&ui, DomainError::NotFound);
    };
    match ui.state.ctx.sip() {
        Some(s) if s.release_ban(ip) => redirect("/telephony"),
        _ => err(&ui, DomainError::NotFound),
    }
}
