//! Branches: the admin's list with add and edit forms, and the map page every staff
//! member sees (Leaflet, vendored; the list of branches does not depend on the tiles).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::html;
use serde::Deserialize;

use super::{html_status, redirect};
use crate::domain::branches::{BranchInput, BranchRow};
use crate::domain::{Actor, DomainError, Msg};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

#[derive(Deserialize)]
pub struct BranchForm {
    name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    lat: String,
    #[serde(default)]
    lon: String,
    active: Option<String>,
    #[serde(default)]
    order_prefix: String,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    sip_hours: String,
    #[serde(default)]
    sip_holidays: String,
}

fn coordinate(s: &str, field: &'static str) -> Result<Option<f64>, DomainError> {
    match s.trim().replace(',', ".").as_str() {
        "" => Ok(None),
        v => v.parse::<f64>().map(Some).map_err(|_| {
            DomainError::invalid(
                Msg::new("err.field.not_a_number")
                    .term("field", field)
                    .with("value", v),
            )
        }),
    }
}

impl BranchForm {
    fn input(self) -> Result<BranchInput, DomainError> {
        Ok(BranchInput {
            lat: coordinate(&self.lat, "field.latitude")?,
            lon: coordinate(&self.lon, "field.longitude")?,
            name: self.name,
            address: self.address,
            phone: self.phone,
            active: self.active.is_some(),
            order_prefix: self.order_prefix,
            hours: self.hours,
            sip_hours: self.sip_hours,
            sip_holidays: self.sip_holidays,
        })
    }
}

fn coords(b: &BranchRow) -> Option<String> {
    Some(format!("{:.6}, {:.6}", b.lat?, b.lon?))
}

fn phone(b: &BranchRow) -> String {
    if b.phone.is_empty() {
        String::new()
    } else {
        crate::model::PhoneNumber::from_e164_unchecked(b.phone.clone()).display()
    }
}

async fn render(ui: &Ui, error: Option<&str>, status: StatusCode) -> HttpResponse {
    let branches = match crate::domain::branches::list(&ui.state.ctx.db, false).await {
        Ok(b) => b,
        Err(err) => return PageError { err, tr: ui.tr }.error_response(),
    };
    let fields = |b: Option<&BranchRow>, id: &str| {
        html! {
            input name="name" value=(b.map(|b| b.name.clone()).unwrap_or_default()) placeholder=(ui.t("branches.name")) aria-label=(ui.t("branches.name")) required maxlength="100" id=(format!("{id}-name"));
            input name="address" value=(b.map(|b| b.address.clone()).unwrap_or_default()) placeholder=(ui.t("branches.address")) aria-label=(ui.t("branches.address")) maxlength="300";
            input name="phone" value=(b.map(phone).unwrap_or_default()) placeholder=(ui.t("branches.phone")) aria-label=(ui.t("branches.phone"));
            input name="lat" value=(b.and_then(|b| b.lat).map(|v| v.to_string()).unwrap_or_default()) placeholder=(ui.t("branches.lat")) aria-label=(ui.t("branches.lat")) inputmode="decimal";
            input name="lon" value=(b.and_then(|b| b.lon).map(|v| v.to_string()).unwrap_or_default()) placeholder=(ui.t("branches.lon")) aria-label=(ui.t("branches.lon")) inputmode="decimal";
            input name="order_prefix" value=(b.map(|b| b.order_prefix.clone()).unwrap_or_default()) placeholder=(ui.t("roles.branch_prefix")) aria-label=(ui.t("roles.branch_prefix")) maxlength="8" size="6";
            input name="hours" value=(b.map(|b| b.hours.clone()).unwrap_or_default()) placeholder=(ui.t("roles.branch_hours")) aria-label=(ui.t("roles.branch_hours")) maxlength="100";
            input name="sip_hours" value=(b.map(|b| b.sip_hours.clone()).unwrap_or_default()) placeholder=(ui.t("branch_scope.sip_hours")) aria-label=(ui.t("branch_scope.sip_hours")) title=(ui.t("branch_scope.sip_hours_hint")) maxlength="300";
            input name="sip_holidays" value=(b.map(|b| b.sip_holidays.clone()).unwrap_or_default()) placeholder=(ui.t("branch_scope.sip_holidays")) aria-label=(ui.t("branch_scope.sip_holidays")) maxlength="4000";
            label.check { input type="checkbox" name="active" value="1" checked[b.is_none_or(|b| b.active)]; " " (ui.t("branches.active")) }
        }
    };
    let per_branch = ui.state.ctx.customers.per_branch().await.unwrap_or(false);
    html_status(
        status,
        page(
            ui,
            ui.t("branches.title"),
            html! {
                div.page-head {
                    h1 { (ui.t("branches.title")) }
                    a.button href="/map" { (ui.t("branches.map_nav")) }
                }
                (flash(error, "error"))
                div.table-wrap { table #branches {
                    thead { tr { th { (ui.t("branches.name")) " · " (ui.t("branches.address")) " · " (ui.t("branches.phone")) " · " (ui.t("branches.lat")) " · " (ui.t("branches.lon")) } } }
                    tbody {
                        @for b in &branches {
                            tr data-branch-id=(b.id) {
                                td {
                                    form.filters method="post" action=(format!("/branches/{}", b.id)) {
                                        (csrf_field(ui))
                                        (fields(Some(b), &format!("branch-{}", b.id)))
                                        button type="submit" { (ui.t("branches.save")) }
                                    }
                                }
                            }
                        }
                    }
                } }
                form.card #customer-scope method="post" action="/branches/customer-scope" {
                    (csrf_field(ui))
                    label.check { input type="checkbox" name="per_branch" value="1" checked[per_branch]; " " (ui.t("branch_scope.customers_per_branch")) }
                    p.muted { (ui.t("branch_scope.customers_per_branch_hint")) }
                    button type="submit" { (ui.t("branches.save")) }
                }
                form.card #new-branch method="post" action="/branches" {
                    (csrf_field(ui))
                    h2 { (ui.t("branches.add")) }
                    (fields(None, "new"))
                    button.primary type="submit" { (ui.t("branches.add")) }
                }
            },
        ),
    )
}

pub async fn list(ui: Ui) -> HttpResponse {
    render(&ui, None, StatusCode::OK).await
}

async fn answer(ui: &Ui, r: Result<BranchRow, DomainError>) -> HttpResponse {
    match r {
        Ok(_) => redirect("/branches"),
        Err(DomainError::Invalid(m)) => {
            render(ui, Some(&ui.msg(&m)), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(DomainError::Conflict(m)) => render(ui, Some(&ui.msg(&m)), StatusCode::CONFLICT).await,
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}

pub async fn create(ui: Ui, actor: Actor, form: web::Form<BranchForm>) -> HttpResponse {
    let r = match form.into_inner().input() {
        Ok(input) => crate::domain::branches::create(&ui.state.ctx.store, &actor, input).await,
        Err(e) => Err(e),
    };
    if r.is_ok() {
        hours_changed(&ui).await;
    }
    answer(&ui, r).await
}

pub async fn update(
    ui: Ui,
    actor: Actor,
    id: web::Path<i64>,
    form: web::Form<BranchForm>,
) -> HttpResponse {
    let r = match form.into_inner().input() {
        Ok(input) => crate::domain::branches::update(&ui.state.ctx.store, &actor, *id, input).await,
        Err(e) => Err(e),
    };
    if r.is_ok() {
        hours_changed(&ui).await;
    }
    answer(&ui, r).await
}

/// A branch's business hours route its calls: the SIP server gets the new plan.
async fn hours_changed(ui: &Ui) {
    if let Err(e) = ui.state.ctx.telephony.push_plan().await {
        tracing::warn!(error = %e, "branches: could not hand the SIP server the new hours");
    }
}

/// The map: active branches as markers over tiles from the configured server, and
/// always the list itself, so the page is useful when the tiles cannot load (offline).
pub async fn map(ui: Ui) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let branches = match crate::domain::branches::list(&ctx.db, true).await {
        Ok(b) => b,
        Err(err) => return PageError { err, tr: ui.tr }.error_response(),
    };
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    let origin = shop.map_tile_origin().unwrap_or_default();
    let assets = &ui.state.assets;
    let body = page(
        &ui,
        ui.t("branches.map_title"),
        html! {
            link rel="stylesheet" href=(assets.url("vendor/leaflet/leaflet.css"));
            h1 { (ui.t("branches.map_title")) }
            p.muted { (ui.t("branches.map_note")) }
            div #branch-map data-tiles=(shop.map_tiles) {}
            ul #branch-list {
                @for b in &branches {
                    li.branch data-name=(b.name) data-lat=[b.lat] data-lon=[b.lon] {
                        strong { (b.name) }
                        @if !b.address.is_empty() { " — " span.address { (b.address) } }
                        @if !b.phone.is_empty() { " · " a href=(format!("tel:{}", b.phone)) { (phone(b)) } }
                        " · " span.coords { (coords(b).unwrap_or_else(|| ui.t("branches.no_coords").to_string())) }
                    }
                }
            }
            script src=(assets.url("vendor/leaflet/leaflet.js")) {}
            script src=(assets.url("js/map.js")) {}
        },
    );
    // Tiles are images from the tile server: only its origin is added to img-src.
    let csp = crate::web::CSP.replace(
        "img-src 'self' data: blob:;",
        &format!("img-src 'self' data: blob: {};", origin.replace("{s}", "*")),
    );
    let mut r = super::html(body);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&csp) {
        r.headers_mut()
            .insert(actix_web::http::header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

#[derive(Deserialize)]
pub struct CustomerScopeForm {
    per_branch: Option<String>,
}

/// Keeps customers per branch (box ticked) or shares them.
pub async fn customer_scope(
    ui: Ui,
    actor: Actor,
    form: web::Form<CustomerScopeForm>,
) -> HttpResponse {
    let on = match form.into_inner().per_branch.as_deref() {
        None => false,
        Some("1" | "on") => true,
        Some(_) => {
            let msg = ui.t("error.invalid_choice");
            return render(&ui, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let r = ui.state.ctx.customers.set_per_branch(&actor, on).await;
    match r {
        Ok(()) => redirect("/branches"),
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}
