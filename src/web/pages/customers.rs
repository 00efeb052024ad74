//! Customers: list, card (orders, payments), create, edit, merge, search page.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::core_ui::{csv, money, pager};
use super::orders::orders_table;
use super::{html, html_status, redirect};
use crate::domain::customers::{CustomerInput, CustomerRow};
use crate::domain::orders::OrderFilter;
use crate::domain::{Action, Actor, DomainError};
use crate::model::PhoneNumber;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

const PER_PAGE: i64 = 50;

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

fn phones(c: &CustomerRow) -> String {
    c.phones
        .iter()
        .map(|p| PhoneNumber::from_e164_unchecked(p.clone()).display())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<i64>,
    /// Filters (issue 18): one tag, a kind, opted in, the archive.
    #[serde(default)]
    tag: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    opted_in: String,
    #[serde(default)]
    archived: String,
}

impl ListQuery {
    fn filter(&self) -> crate::domain::customers::CustomerFilter {
        crate::domain::customers::CustomerFilter {
            tag: Some(self.tag.trim().to_lowercase()).filter(|t| !t.is_empty()),
            kind: Some(self.kind.clone()).filter(|k| k == "person" || k == "company"),
            opted_in: (self.opted_in == "1").then_some(true),
            archived: self.archived == "1",
        }
    }

    fn query_string(&self) -> String {
        serde_urlencoded::to_string([
            ("tag", self.tag.as_str()),
            ("kind", self.kind.as_str()),
            ("opted_in", self.opted_in.as_str()),
            ("archived", self.archived.as_str()),
        ])
        .unwrap_or_default()
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_string()
}

pub async fn list(ui: Ui, actor: Actor, q: web::Query<ListQuery>) -> HttpResponse {
    let pg = crate::web::paging::page_index(q.page);
    let (rows, total) = match ui
        .state
        .ctx
        .customers
        .list_filtered(&actor, q.filter(), PER_PAGE, pg * PER_PAGE)
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(&ui, e),
    };
    html(page(
        &ui,
        ui.t("customers.title"),
        html! {
            div.page-head {
                h1 { (ui.t("customers.title")) }
                div {
                    a.button.primary href="/customers/new" { (ui.t("customers.new")) } " " a.button href="/customers/export.csv" { "CSV" }
                    @if ui.actor.as_ref().is_some_and(|a| a.can(Action::ImportCustomers)) { " " a.button #customers-import href="/imports" { (ui.t("outbound.import.title")) } }
                    " " a.button #customers-segments href="/segments" { (ui.t("outbound.segment.title")) }
                }
            }
            form.filters method="get" action="/search" {
                input name="q" type="search" placeholder=(ui.t("search.placeholder"));
                button type="submit" { (ui.t("search.go")) }
            }
            form.filters #customer-filters method="get" action="/customers" {
                input name="tag" value=(q.tag) placeholder=(ui.t("customers.tags"));
                select name="kind" {
                    option value="" { (ui.t("outbound.kind.any")) }
                    option value="person" selected[q.kind == "person"] { (ui.t("outbound.kind.person")) }
                    option value="company" selected[q.kind == "company"] { (ui.t("outbound.kind.company")) }
                }
                label.check { input type="checkbox" name="opted_in" value="1" checked[q.opted_in == "1"]; " " (ui.t("outbound.customer.opt_in")) }
                label.check { input type="checkbox" name="archived" value="1" checked[q.archived == "1"]; " " (ui.t("outbound.customer.archived")) }
                button type="submit" { (ui.t("search.go")) }
            }
            div.table-wrap #customers-region data-live-topics="customer." { table #customers {
                thead { tr { th { (ui.t("customers.name")) } th { (ui.t("customers.phone")) } th { "Telegram" } th { (ui.t("users.created")) } } }
                tbody { @for c in &rows {
                    tr { td { a href=(format!("/customers/{}", c.id)) { (c.name) } } td { (phones(c)) } td { (c.telegram) } td { (ui.datetime(c.created_at)) } }
                } }
            } }
            (pager(&ui, &format!("/customers?{}", q.query_string()), pg, PER_PAGE, total))
        },
    ))
}

pub async fn export_csv(ui: Ui, actor: Actor) -> HttpResponse {
    let mut all = Vec::new();
    for pg in 0..2000 {
        match ui.state.ctx.customers.list(&actor, 500, pg * 500).await {
            Ok((rows, _)) => {
                let n = rows.len();
                all.extend(rows);
                if n < 500 {
                    break;
                }
            }
            Err(e) => return fail(&ui, e),
        }
    }
    let clock = ui.clock();
    let body = csv(
        &[
            "id", "name", "phones", "email", "telegram", "address", "tags", "created",
        ],
        all.iter().map(|c| {
            vec![
                c.id.to_string(),
                c.name.clone(),
                c.phones.join(" "),
                c.email.clone(),
                c.telegram.clone(),
                c.address.clone(),
                c.tags.clone(),
                clock.format_datetime(c.created_at),
            ]
        }),
    );
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"customers.csv\"",
        ))
        .body(body)
}

#[derive(Deserialize, Default, Clone)]
pub struct CustomerForm {
    name: String,
    phone1: String,
    #[serde(default)]
    phone2: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    telegram: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    birthday: String,
    /// A checkbox: present ("1") when ticked.
    #[serde(default)]
    marketing_opt_in: Option<String>,
    version: Option<i64>,
}

impl CustomerForm {
    fn input(&self) -> CustomerInput {
        CustomerInput {
            name: self.name.clone(),
            phones: vec![self.phone1.clone(), self.phone2.clone()],
            email: self.email.clone(),
            telegram: self.telegram.clone(),
            address: self.address.clone(),
            notes: self.notes.clone(),
            tags: self.tags.clone(),
            language: Some(self.language.clone()),
            kind: Some(self.kind.clone()),
            company: self.company.clone(),
            birthday: Some(self.birthday.clone()),
            marketing_opt_in: self.marketing_opt_in.is_some(),
        }
    }

    fn from_row(c: &CustomerRow) -> CustomerForm {
        CustomerForm {
            name: c.name.clone(),
            phone1: c.phones.first().cloned().unwrap_or_default(),
            phone2: c.phones.get(1).cloned().unwrap_or_default(),
            email: c.email.clone(),
            telegram: c.telegram.clone(),
            address: c.address.clone(),
            notes: c.notes.clone(),
            tags: c.tags.clone(),
            language: c.language.clone().unwrap_or_default(),
            kind: c.kind.clone(),
            company: c.company.clone(),
            birthday: c.birthday.clone().unwrap_or_default(),
            marketing_opt_in: c.marketing_opt_in.then(|| "1".to_string()),
            version: Some(c.version),
        }
    }
}

fn form_fields(ui: &Ui, f: &CustomerForm) -> Markup {
    html! {
        label for="name" { (ui.t("customers.name")) }
        input #name name="name" value=(f.name) required maxlength="120";
        label for="phone1" { (ui.t("customers.phone")) }
        input #phone1 name="phone1" type="tel" value=(f.phone1) required placeholder="90 123 45 67";
        label for="phone2" { (ui.t("customers.phone2")) }
        input #phone2 name="phone2" type="tel" value=(f.phone2);
        label for="email" { "E-mail" }
        input #email name="email" type="email" value=(f.email);
        label for="telegram" { "Telegram" }
        input #telegram name="telegram" value=(f.telegram) placeholder="@username";
        label for="address" { (ui.t("customers.address")) }
        input #address name="address" value=(f.address);
        label for="tags" { (ui.t("customers.tags")) }
        input #tags name="tags" value=(f.tags);
        label for="notes" { (ui.t("customers.notes")) }
        textarea #notes name="notes" { (f.notes) }
        label for="language" { (ui.t("customer_lang.label")) }
        select #language name="language" {
            option value="" { (ui.t("customer_lang.unknown")) }
            @for l in crate::model::Language::ALL {
                option value=(l.code()) selected[f.language == l.code()] { (l.native_name()) }
            }
        }
        label for="kind" { (ui.t("outbound.customer.kind")) }
        select #kind name="kind" {
            option value="person" selected[f.kind != "company"] { (ui.t("outbound.kind.person")) }
            option value="company" selected[f.kind == "company"] { (ui.t("outbound.kind.company")) }
        }
        label for="company" { (ui.t("outbound.customer.company")) }
        input #company name="company" value=(f.company) maxlength="200";
        label for="birthday" { (ui.t("outbound.customer.birthday")) }
        input #birthday name="birthday" type="date" value=(f.birthday);
        label.check { input #marketing_opt_in name="marketing_opt_in" type="checkbox" value="1" checked[f.marketing_opt_in.is_some()]; " " (ui.t("outbound.customer.opt_in")) }
    }
}

fn new_page(ui: &Ui, f: &CustomerForm, error: Option<&str>) -> Markup {
    page(
        ui,
        ui.t("customers.new"),
        html! {
            h1 { (ui.t("customers.new")) }
            (flash(error, "error"))
            form.card method="post" action="/customers" {
                (csrf_field(ui))
                (form_fields(ui, f))
                button.primary type="submit" { (ui.t("common.create")) }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct NewCustomerQuery {
    /// Prefilled from a call's screen-pop.
    phone: Option<String>,
}

pub async fn new_form(ui: Ui, q: web::Query<NewCustomerQuery>) -> HttpResponse {
    let f = CustomerForm {
        phone1: q.phone.clone().unwrap_or_default(),
        ..Default::default()
    };
    html(new_page(&ui, &f, None))
}

pub async fn create(ui: Ui, actor: Actor, f: web::Form<CustomerForm>) -> HttpResponse {
    match ui
        .state
        .ctx
        .customers
        .create(&actor, f.input(), false)
        .await
    {
        Ok(id) => redirect(&format!("/customers/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            new_page(&ui, &f, Some(&ui.msg(&m))),
        ),
        Err(e) => fail(&ui, e),
    }
}

async fn card(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    f: Option<&CustomerForm>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let c = match ctx.customers.get(actor, id).await {
        Ok(c) => c,
        Err(e) => return fail(ui, e),
    };
    let (orders, _) = ctx
        .orders
        .list(
            actor,
            OrderFilter {
                customer_id: Some(id),
                limit: 200,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_default();
    let payments = ctx
        .orders
        .payments_of_customer(actor, id)
        .await
        .unwrap_or_default();
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    let balance: i64 = orders
        .iter()
        .filter(|o| o.status_group != "closed" || o.total - o.discount > o.paid)
        .map(|o| {
            if o.status_group == "closed" {
                o.total - o.discount - o.paid
            } else {
                crate::model::money::due(o.total, o.estimate, o.discount, o.paid)
            }
        })
        .sum();
    let form = f.cloned().unwrap_or_else(|| CustomerForm::from_row(&c));
    let calls = super::calls::customer_section(ui, actor, c.id).await;
    let outcomes = super::call_lists::customer_section(ui, actor, c.id).await;
    html_status(
        status,
        page(
            ui,
            &c.name,
            html! {
                div.page-head {
                    h1 #customer-name { (c.name) }
                    @if actor.can(Action::CreateOrders) { a.button.primary href=(format!("/orders/new?customer={}", c.id)) { (ui.t("orders.new")) } }
                }
                (flash(error, "error"))
                div.order-grid #customer-region data-live-topics="customer. order." {
                    section.card {
                        dl.facts {
                            dt { (ui.t("customers.phone")) } dd #customer-phones {
                                @for (i, p) in c.phones.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    a href=(format!("tel:{p}")) data-dial=(p) { (PhoneNumber::from_e164_unchecked(p.clone()).display()) }
                                }
                            }
                            dt { "Telegram" } dd { (c.telegram) }
                            dt { "E-mail" } dd { (c.email) }
                            dt { (ui.t("customers.address")) } dd { (c.address) }
                            dt { (ui.t("customers.notes")) } dd { (c.notes) }
                            dt { (ui.t("outbound.customer.kind")) } dd #customer-kind { (ui.t(if c.kind == "company" { "outbound.kind.company" } else { "outbound.kind.person" })) }
                            @if !c.company.is_empty() { dt { (ui.t("outbound.customer.company")) } dd #customer-company { (c.company) } }
                            @if !c.tags.is_empty() { dt { (ui.t("customers.tags")) } dd #customer-tags { @for t in c.tags.split(',') { a.tag href=(format!("/customers?tag={}", urlencode(t))) { (t) } " " } } }
                            @if let Some(b) = &c.birthday { dt { (ui.t("outbound.customer.birthday")) } dd { (b) } }
                            dt { (ui.t("outbound.customer.opt_in")) } dd #customer-opt-in { (ui.t(if c.marketing_opt_in { "outbound.yes" } else { "outbound.no" })) }
                            @if let Some(at) = c.archived_at { dt { (ui.t("outbound.customer.archived")) } dd #customer-archived { (ui.datetime(at)) } }
                            dt { (ui.t("orders.balance")) } dd #customer-balance { strong { (super::core_ui::due_cell(ui, &shop, balance)) } }
                        }
                    }
                    @if actor.can(Action::EditCustomers) {
                        details.card {
                            summary { (ui.t("common.edit")) }
                            form method="post" action=(format!("/customers/{}", c.id)) {
                                (csrf_field(ui))
                                input type="hidden" name="version" value=(form.version.unwrap_or(c.version));
                                (form_fields(ui, &form))
                                button.primary type="submit" { (ui.t("common.save")) }
                            }
                        }
                    }
                }
                section.card {
                    h2 { (ui.t("orders.title")) }
                    (orders_table(ui, &shop, &statuses, &orders))
                }
                (calls)
                (outcomes)
                section.card {
                    h2 { (ui.t("orders.payments")) }
                    div.table-wrap { table #customer-payments {
                        thead { tr { th { (ui.t("audit.time")) } th { "№" } th { (ui.t("orders.payment")) } th.num { (ui.t("orders.amount")) } } }
                        tbody { @for p in &payments {
                            tr { td { (ui.datetime(p.created_at)) } td { a href=(format!("/orders/{}", p.order_id)) { (p.order_number) } } td { (ui.tr.code("payment_kind", &p.kind)) " · " (ui.tr.code("payment_method", &p.method)) } td.num { (money(&shop, if p.kind == "refund" { -p.amount } else { p.amount })) } }
                        } }
                    } }
                }
                @if actor.can(Action::EditCustomers) {
                    form.card.row method="post" action=(format!("/customers/{}/{}", c.id, if c.archived_at.is_some() { "restore" } else { "archive" })) {
                        (csrf_field(ui))
                        button #archive-toggle type="submit" { (ui.t(if c.archived_at.is_some() { "outbound.customer.restore" } else { "outbound.customer.archive" })) }
                    }
                }
                @if actor.can(Action::MergeCustomers) {
                    form.card.row method="post" action=(format!("/customers/{}/merge", c.id)) {
                        (csrf_field(ui))
                        label for="other" { (ui.t("customers.merge_from")) }
                        input #other name="other" inputmode="numeric" required placeholder="#";
                        button type="submit" { (ui.t("customers.merge")) }
                    }
                }
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
    f: web::Form<CustomerForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let Some(version) = f.version else {
        let msg = ui.tr.f("error.bad_request", &[("detail", "version")]);
        return card(
            &ui,
            &actor,
            id,
            Some(&f),
            Some(&msg),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    match ui
        .state
        .ctx
        .customers
        .update(&actor, id, version, f.input())
        .await
    {
        Ok(()) => redirect(&format!("/customers/{id}")),
        Err(DomainError::Invalid(m)) => {
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
        Err(DomainError::Conflict(m)) => {
            card(
                &ui,
                &actor,
                id,
                Some(&f),
                Some(&ui.msg(&m)),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct MergeForm {
    other: String,
}

pub async fn merge(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<MergeForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let Ok(other) = f.other.trim().trim_start_matches('#').parse::<i64>() else {
        return card(
            &ui,
            &actor,
            id,
            None,
            Some(ui.t("error.invalid_choice")),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    match ui.state.ctx.customers.merge(&actor, id, other).await {
        Ok(()) => redirect(&format!("/customers/{id}")),
        Err(DomainError::Invalid(m)) => {
            card(
                &ui,
                &actor,
                id,
                None,
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(DomainError::NotFound) => {
            card(
                &ui,
                &actor,
                id,
                None,
                Some(ui.t("error.not_found")),
                StatusCode::NOT_FOUND,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

pub async fn search(ui: Ui, actor: Actor, q: web::Query<SearchQuery>) -> HttpResponse {
    let text = q.q.clone().unwrap_or_default();
    let ctx = &ui.state.ctx;
    let r = match crate::domain::search::search(&ctx.db, &actor, &text, 50).await {
        Ok(r) => r,
        Err(e) => return fail(&ui, e),
    };
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    html(page(
        &ui,
        ui.t("search.title"),
        html! {
            h1 { (ui.t("search.title")) }
            form.filters method="get" action="/search" {
                input name="q" type="search" value=(text) autofocus placeholder=(ui.t("search.placeholder"));
                button type="submit" { (ui.t("search.go")) }
            }
            @if !r.customers.is_empty() {
                h2 { (ui.t("customers.title")) }
                ul #search-customers { @for c in &r.customers { li { a href=(format!("/customers/{}", c.id)) { (c.name) } " · " (phones(c)) } } }
            }
            @if !r.orders.is_empty() {
                h2 { (ui.t("orders.title")) }
                (orders_table(&ui, &shop, &statuses, &r.orders))
            }
            @if r.customers.is_empty() && r.orders.is_empty() && !text.trim().is_empty() {
                p.muted #search-empty { (ui.t("search.nothing")) }
                @if actor.can(Action::CreateOrders) { a.button href=(format!("/orders/new?phone={}", serde_urlencoded::to_string([("", &text)]).unwrap_or_default().trim_start_matches('='))) { (ui.t("orders.new")) } }
            }
        },
    ))
}

/// Archives a customer (issue 18): out of lists and search, kept with its history.
pub async fn archive(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    set_archived(ui, actor, path.into_inner(), true).await
}

/// Brings an archived customer back into lists and search.
pub async fn restore(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    set_archived(ui, actor, path.into_inner(), false).await
}

async fn set_archived(ui: Ui, actor: Actor, id: i64, archived: bool) -> HttpResponse {
    match ui
        .state
        .ctx
        .customers
        .set_archived(&actor, id, archived)
        .await
    {
        Ok(()) => redirect(&format!("/customers/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            card(
                &ui,
                &actor,
                id,
                None,
                Some(&ui.msg(&m)),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}
