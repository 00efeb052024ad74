//! Admin settings: the shop (receipts, numbering, currency, phone country) and the status
//! workflow (which transitions are allowed).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::html;

use super::{html_status, redirect};
use crate::domain::orders::status_name;
use crate::domain::shop::ShopSettings;
use crate::domain::{Actor, DomainError};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

async fn render(
    ui: &Ui,
    shop: &ShopSettings,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let transitions = ctx.orders.transitions().await.unwrap_or_default();
    let logo = crate::domain::shop::logo_version(&ctx.db)
        .await
        .ok()
        .flatten();
    html_status(
        status,
        page(
            ui,
            ui.t("settings.title"),
            html! {
                div.page-head {
                    h1 { (ui.t("settings.title")) }
                    a.button #branches-link href="/branches" { (ui.t("branches.title")) }
                    a.button #widget-link href="/settings/widget" { (ui.t("widget.settings.title")) }
                }
                (flash(notice, "ok"))
                (flash(error, "error"))
                form.card #shop-form method="post" action="/settings/shop" {
                    (csrf_field(ui))
                    h2 { (ui.t("settings.shop")) }
                    label for="name" { (ui.t("settings.name")) } input #name name="name" value=(shop.name) required;
                    label for="address" { (ui.t("customers.address")) } input #address name="address" value=(shop.address);
                    label for="phone" { (ui.t("customers.phone")) } input #phone name="phone" value=(shop.phone);
                    label for="hours" { (ui.t("settings.hours")) } input #hours name="hours" value=(shop.hours);
                    label for="terms" { (ui.t("settings.terms")) } textarea #terms name="terms" { (shop.terms) }
                    details #terms-languages open[!(shop.terms_ru.is_empty() && shop.terms_uz_cyrl.is_empty() && shop.terms_en.is_empty())] {
                        summary { (ui.t("desk.terms_languages")) }
                        label for="terms_uz_cyrl" { (ui.t("desk.terms_uz_cyrl")) } textarea #terms_uz_cyrl name="terms_uz_cyrl" { (shop.terms_uz_cyrl) }
                        label for="terms_ru" { (ui.t("desk.terms_ru")) } textarea #terms_ru name="terms_ru" { (shop.terms_ru) }
                        label for="terms_en" { (ui.t("desk.terms_en")) } textarea #terms_en name="terms_en" { (shop.terms_en) }
                    }
                    label for="order_prefix" { (ui.t("settings.order_prefix")) } input #order_prefix name="order_prefix" value=(shop.order_prefix) maxlength="8";
                    label for="currency" { (ui.t("settings.currency")) } input #currency name="currency" value=(shop.currency) maxlength="3";
                    label for="default_country" { (ui.t("settings.default_country")) } input #default_country name="default_country" value=(shop.default_country) maxlength="4";
                    label for="promise_days" { (ui.t("desk.promise_days")) }
                    input #promise_days name="promise_days" type="number" min="0" max="90" value=(shop.promise_days);
                    label for="map_tiles" { (ui.t("branches.map_tiles")) } input #map_tiles name="map_tiles" value=(shop.map_tiles) maxlength="300";
                    label for="time_zone" { (ui.t("clock.time_zone")) }
                    input #time_zone name="time_zone" value=(shop.time_zone) maxlength="64" list="time-zones" autocapitalize="none" spellcheck="false" required;
                    datalist #time-zones { @for z in crate::domain::clock::zone_names() { option value=(z) {} } }
                    p.muted { (ui.tr.f("clock.time_zone_help", &[("now", &ui.datetime(ui.clock().now()))])) }
                    button.primary type="submit" { (ui.t("common.save")) }
                }
                section.card #logo-card {
                    h2 { (ui.t("desk.logo")) }
                    @if let Some(v) = &logo {
                        img #logo-preview src=(format!("/shop/logo?v={v}")) alt=(ui.t("desk.logo")) height="60";
                    }
                    form #logo-form method="post" action="/settings/logo" enctype="multipart/form-data" {
                        (csrf_field(ui))
                        label for="logo" { (ui.t("desk.logo_hint")) }
                        input #logo name="logo" type="file" accept="image/png,image/jpeg" required;
                        button type="submit" { (ui.t("desk.logo_upload")) }
                    }
                    @if logo.is_some() {
                        form #logo-remove method="post" action="/settings/logo/remove" {
                            (csrf_field(ui))
                            button.danger type="submit" { (ui.t("desk.logo_remove")) }
                        }
                    }
                }
                form.card #workflow-form method="post" action="/settings/workflow" {
                    (csrf_field(ui))
                    h2 { (ui.t("settings.workflow")) }
                    p.muted { (ui.t("settings.workflow_help")) }
                    div.table-wrap { table.matrix {
                        thead { tr { th { "→" } @for s in &statuses { th { (status_name(s, ui.tr.lang)) } } } }
                        tbody { @for from in &statuses {
                            tr { th { (status_name(from, ui.tr.lang)) }
                                @for to in &statuses {
                                    td { @if from.id != to.id {
                                        input type="checkbox" name="t" value=(format!("{}-{}", from.id, to.id)) checked[transitions.contains(&(from.id, to.id))] aria-label=(format!("{} → {}", status_name(from, ui.tr.lang), status_name(to, ui.tr.lang)));
                                    } }
                                }
                            }
                        } }
                    } }
                    button.primary type="submit" { (ui.t("common.save")) }
                }
            },
        ),
    )
}

pub async fn show(ui: Ui) -> HttpResponse {
    let shop = crate::domain::shop::load(&ui.state.ctx.db)
        .await
        .unwrap_or_default();
    render(&ui, &shop, None, None, StatusCode::OK).await
}

pub async fn save_shop(ui: Ui, actor: Actor, form: web::Form<ShopSettings>) -> HttpResponse {
    let s = form.into_inner();
    match crate::domain::shop::save(&ui.state.ctx.store, &actor, s.clone()).await {
        Ok(()) => redirect("/settings?saved=1"),
        Err(DomainError::Invalid(m)) => {
            render(
                &ui,
                &s,
                None,
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}

/// The checked boxes, as `from-to` pairs (a form may repeat the field).
pub async fn save_workflow(ui: Ui, actor: Actor, body: web::Bytes) -> HttpResponse {
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(p) => p,
        Err(_) => {
            return crate::web::error::error_page(
                StatusCode::BAD_REQUEST,
                ui.t("error.invalid_choice"),
                ui.tr,
            )
        }
    };
    let mut t = Vec::new();
    for (k, v) in pairs {
        if k != "t" {
            continue;
        }
        let parsed = v
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        match parsed {
            Some(p) => t.push(p),
            None => {
                return crate::web::error::error_page(
                    StatusCode::BAD_REQUEST,
                    ui.t("error.invalid_choice"),
                    ui.tr,
                )
            }
        }
    }
    match ui.state.ctx.orders.set_transitions(&actor, t).await {
        Ok(()) => redirect("/settings?saved=1"),
        Err(DomainError::Invalid(m)) => {
            let shop = crate::domain::shop::load(&ui.state.ctx.db)
                .await
                .unwrap_or_default();
            render(
                &ui,
                &shop,
                None,
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}

async fn logo_refused(ui: &Ui, message: &str, status: StatusCode) -> HttpResponse {
    let shop = crate::domain::shop::load(&ui.state.ctx.db)
        .await
        .unwrap_or_default();
    render(ui, &shop, None, Some(message), status).await
}

/// Uploads the shop's logo (multipart `logo`), printed on receipts and labels.
pub async fn upload_logo(ui: Ui, actor: Actor, form: actix_multipart::Multipart) -> HttpResponse {
    use crate::domain::shop::MAX_LOGO_BYTES;
    use crate::web::multipart::{self, UploadError};
    let parts =
        match multipart::read(form, |n| if n == "logo" { MAX_LOGO_BYTES } else { 1024 }).await {
            Ok(p) => p,
            Err(UploadError::TooLarge { .. }) => {
                let m = crate::i18n::Msg::new("err.shop.logo_too_large")
                    .with("kb", MAX_LOGO_BYTES / 1024);
                return logo_refused(&ui, &ui.msg(&m), StatusCode::PAYLOAD_TOO_LARGE).await;
            }
            Err(UploadError::Malformed) => {
                let m = crate::i18n::Msg::new("err.shop.logo_malformed");
                return logo_refused(&ui, &ui.msg(&m), StatusCode::BAD_REQUEST).await;
            }
        };
    let bytes = parts
        .into_iter()
        .find(|p| p.name == "logo" && !p.bytes.is_empty())
        .map(|p| p.bytes);
    let Some(bytes) = bytes else {
        let m = crate::i18n::Msg::new("err.shop.logo_kind");
        return logo_refused(&ui, &ui.msg(&m), StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    match crate::domain::shop::set_logo(&ui.state.ctx.store, &actor, Some(bytes)).await {
        Ok(()) => redirect("/settings?saved=1"),
        Err(DomainError::Invalid(m)) => {
            logo_refused(&ui, &ui.msg(&m), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}

pub async fn remove_logo(ui: Ui, actor: Actor) -> HttpResponse {
    match crate::domain::shop::set_logo(&ui.state.ctx.store, &actor, None).await {
        Ok(()) => redirect("/settings?saved=1"),
        Err(DomainError::Invalid(m)) => {
            logo_refused(&ui, &ui.msg(&m), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}

/// The logo's bytes. Its URL carries the version, so it may be cached for long; the type
/// is the one judged from the bytes at upload.
pub async fn logo(ui: Ui) -> HttpResponse {
    match crate::domain::shop::logo(&ui.state.ctx.db).await {
        Ok(Some(l)) => HttpResponse::Ok()
            .content_type(l.mime)
            .insert_header(("Cache-Control", "private, max-age=86400"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(l.bytes),
        Ok(None) => PageError {
            err: DomainError::NotFound,
            tr: ui.tr,
        }
        .error_response(),
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}
