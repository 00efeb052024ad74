//! Segments (issue 18): saved customer filters with their live counts.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html, html_status, redirect};
use crate::domain::segments::{Segment, SegmentFilter};
use crate::domain::{Action, Actor, DomainError, Msg};
use crate::model::PhoneNumber;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

/// The form as typed: numbers stay text until they are read.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct SegmentForm {
    name: String,
    tags: String,
    kind: String,
    language: String,
    branch_id: String,
    visited_within_days: String,
    not_visited_days: String,
    min_spent: String,
    has_open_order: String,
    ready_days: String,
    warranty_ending_days: String,
    opted_in: String,
    include_archived: Option<String>,
}

fn number(typed: &str, field: &'static str) -> Result<Option<i64>, DomainError> {
    let t = typed.trim().replace([' ', '\u{a0}'], "");
    if t.is_empty() {
        return Ok(None);
    }
    t.parse().map(Some).map_err(|_| {
        DomainError::invalid(
            Msg::new("err.segment.number")
                .term("field", field)
                .with("value", typed.trim()),
        )
    })
}

fn yes_no(typed: &str) -> Option<bool> {
    match typed {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

impl SegmentForm {
    fn filter(&self) -> Result<SegmentFilter, DomainError> {
        Ok(SegmentFilter {
            tags: self.tags.split(',').map(str::to_string).collect(),
            kind: Some(self.kind.clone()),
            language: Some(self.language.clone()),
            branch_id: number(&self.branch_id, "outbound.segment.branch")?,
            visited_within_days: number(
                &self.visited_within_days,
                "outbound.segment.visited_within_days",
            )?,
            not_visited_days: number(&self.not_visited_days, "outbound.segment.not_visited_days")?,
            min_spent: number(&self.min_spent, "outbound.segment.min_spent")?,
            has_open_order: yes_no(&self.has_open_order),
            ready_days: number(&self.ready_days, "outbound.segment.ready_days")?,
            warranty_ending_days: number(
                &self.warranty_ending_days,
                "outbound.segment.warranty_ending_days",
            )?,
            opted_in: yes_no(&self.opted_in),
            include_archived: self.include_archived.is_some(),
        })
    }

    fn of(s: &Segment) -> SegmentForm {
        let f = &s.filter;
        let n = |v: Option<i64>| v.map(|d| d.to_string()).unwrap_or_default();
        let yn = |v: Option<bool>| match v {
            Some(true) => "yes".to_string(),
            Some(false) => "no".to_string(),
            None => String::new(),
        };
        SegmentForm {
            name: s.name.clone(),
            tags: f.tags.join(", "),
            kind: f.kind.clone().unwrap_or_default(),
            language: f.language.clone().unwrap_or_default(),
            branch_id: n(f.branch_id),
            visited_within_days: n(f.visited_within_days),
            not_visited_days: n(f.not_visited_days),
            min_spent: n(f.min_spent),
            has_open_order: yn(f.has_open_order),
            ready_days: n(f.ready_days),
            warranty_ending_days: n(f.warranty_ending_days),
            opted_in: yn(f.opted_in),
            include_archived: f.include_archived.then(|| "1".into()),
        }
    }
}

fn form_fields(ui: &Ui, f: &SegmentForm) -> Markup {
    let yn = |name: &str, v: &str| {
        html! {
            select name=(name) {
                option value="" { "—" }
                option value="yes" selected[v == "yes"] { (ui.t("outbound.yes")) }
                option value="no" selected[v == "no"] { (ui.t("outbound.no")) }
            }
        }
    };
    let num = |name: &str, label: &'static str, v: &str| {
        html! { label { (ui.t(label)) " " input name=(name) inputmode="numeric" value=(v); } }
    };
    html! {
        label { (ui.t("customers.name")) " " input name="name" required maxlength="100" value=(f.name); }
        label { (ui.t("customers.tags")) " " input name="tags" value=(f.tags) placeholder="vip, optom"; }
        label { (ui.t("outbound.customer.kind")) " " select name="kind" {
            option value="" { (ui.t("outbound.kind.any")) }
            option value="person" selected[f.kind == "person"] { (ui.t("outbound.kind.person")) }
            option value="company" selected[f.kind == "company"] { (ui.t("outbound.kind.company")) }
        } }
        label { (ui.t("customer_lang.label")) " " select name="language" {
            option value="" { "—" }
            @for l in crate::model::Language::ALL {
                option value=(l.code()) selected[f.language == l.code()] { (l.native_name()) }
            }
        } }
        (num("branch_id", "outbound.segment.branch", &f.branch_id))
        (num("visited_within_days", "outbound.segment.visited_within_days", &f.visited_within_days))
        (num("not_visited_days", "outbound.segment.not_visited_days", &f.not_visited_days))
        (num("min_spent", "outbound.segment.min_spent", &f.min_spent))
        label { (ui.t("outbound.segment.has_open_order")) " " (yn("has_open_order", &f.has_open_order)) }
        (num("ready_days", "outbound.segment.ready_days", &f.ready_days))
        (num("warranty_ending_days", "outbound.segment.warranty_ending_days", &f.warranty_ending_days))
        label { (ui.t("outbound.customer.opt_in")) " " (yn("opted_in", &f.opted_in)) }
        label.check { input type="checkbox" name="include_archived" value="1" checked[f.include_archived.is_some()]; " " (ui.t("outbound.segment.include_archived")) }
    }
}

fn list_page(
    ui: &Ui,
    actor: &Actor,
    all: &[Segment],
    f: &SegmentForm,
    error: Option<&str>,
) -> Markup {
    page(
        ui,
        ui.t("outbound.segment.title"),
        html! {
            h1 { (ui.t("outbound.segment.title")) }
            (flash(error, "error"))
            div.table-wrap #segments-region data-live-topics="customer. order. segment." { table #segments {
                thead { tr { th { (ui.t("customers.name")) } th.num { (ui.t("outbound.segment.count")) } } }
                tbody { @for s in all {
                    tr { td { a href=(format!("/segments/{}", s.id)) { (s.name) } } td.num data-segment=(s.id) { (s.count) } }
                } }
            } }
            @if actor.can(Action::EditCustomers) {
                form.card #segment-new method="post" action="/segments" {
                    (csrf_field(ui))
                    h2 { (ui.t("outbound.segment.new")) }
                    (form_fields(ui, f))
                    button.primary type="submit" { (ui.t("common.create")) }
                }
            }
        },
    )
}

pub async fn list(ui: Ui, actor: Actor) -> HttpResponse {
    match ui.state.ctx.segments.list(&actor).await {
        Ok(all) => html(list_page(&ui, &actor, &all, &SegmentForm::default(), None)),
        Err(e) => fail(&ui, e),
    }
}

pub async fn create(ui: Ui, actor: Actor, f: web::Form<SegmentForm>) -> HttpResponse {
    let r = match f.filter() {
        Ok(filter) => {
            ui.state
                .ctx
                .segments
                .save(&actor, None, &f.name, filter)
                .await
        }
        Err(e) => Err(e),
    };
    match r {
        Ok(id) => redirect(&format!("/segments/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            let all = ui.state.ctx.segments.list(&actor).await.unwrap_or_default();
            html_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                list_page(&ui, &actor, &all, &f, Some(&ui.msg(&m))),
            )
        }
        Err(e) => fail(&ui, e),
    }
}

async fn card(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    form: Option<&SegmentForm>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let segs = &ui.state.ctx.segments;
    let s = match segs.get(actor, id).await {
        Ok(s) => s,
        Err(e) => return fail(ui, e),
    };
    let members = segs.members(actor, id, 50, 0).await.unwrap_or_default();
    let f = form.cloned().unwrap_or_else(|| SegmentForm::of(&s));
    html_status(
        status,
        page(
            ui,
            &s.name,
            html! {
                h1 { (s.name) }
                (flash(error, "error"))
                p #segment-count-line data-live-topics="customer. order." {
                    (ui.t("outbound.segment.count")) ": " strong #segment-count { (s.count) }
                }
                @if actor.can(Action::EditCustomers) {
                    details.card {
                        summary { (ui.t("common.edit")) }
                        form method="post" action=(format!("/segments/{id}")) {
                            (csrf_field(ui))
                            (form_fields(ui, &f))
                            button.primary type="submit" { (ui.t("common.save")) }
                        }
                        form method="post" action=(format!("/segments/{id}/delete")) {
                            (csrf_field(ui))
                            button type="submit" { (ui.t("outbound.segment.delete")) }
                        }
                    }
                }
                div.table-wrap { table #segment-members {
                    thead { tr { th { (ui.t("customers.name")) } th { (ui.t("customers.phone")) } th { (ui.t("customers.tags")) } } }
                    tbody { @for c in &members {
                        tr {
                            td { a href=(format!("/customers/{}", c.id)) { (c.name) } }
                            td { (c.phones.iter().map(|p| PhoneNumber::from_e164_unchecked(p.clone()).display()).collect::<Vec<_>>().join(", ")) }
                            td { (c.tags) }
                        }
                    } }
                } }
            },
        ),
    )
}

pub async fn show(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    card(&ui, &actor, path.into_inner(), None, None, StatusCode::OK).await
}

pub async fn update(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<SegmentForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = match f.filter() {
        Ok(filter) => {
            ui.state
                .ctx
                .segments
                .save(&actor, Some(id), &f.name, filter)
                .await
        }
        Err(e) => Err(e),
    };
    match r {
        Ok(_) => redirect(&format!("/segments/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            card(
                &ui,
                &actor,
                id,
                Some(&f),
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn delete(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .segments
        .delete(&actor, path.into_inner())
        .await
    {
        Ok(()) => redirect("/segments"),
        Err(e) => fail(&ui, e),
    }
}
