//! Repair orders: list with filters, intake form, the order page with its actions, the
//! master's queue, printable receipt and completion act, CSV export.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::core_ui::{
    cash, category_label, csv, date, date_input, due_cell, keyset_pager, money, parse_date_input,
    status_badge, Cursor,
};
use super::{html, html_status, redirect};
use crate::domain::filters::OrderQuery;
use crate::domain::orders::{
    is_overdue, status_name, IntakeCustomer, NewOrder, OrderFilter, OrderRow, OrderUpdate,
    OrderView, StatusRow, DEVICE_CATEGORIES,
};
use crate::domain::shop::ShopSettings;
use crate::domain::{Action, Actor, DomainError, Msg};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

const PER_PAGE: i64 = 50;

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

/// The list's filter; parsed in the domain (`domain::filters`), shared with the API.
pub type ListQuery = OrderQuery;

/// The filter as a query string, without the page position (for pager and sort links).
fn query_string(q: &ListQuery) -> String {
    serde_urlencoded::to_string(q.without_paging()).unwrap_or_default()
}

/// The page of orders the filter asks for, and whether it pages by cursor (id order).
async fn find(
    ui: &Ui,
    actor: &Actor,
    q: &ListQuery,
) -> Result<(Vec<OrderRow>, i64, bool), DomainError> {
    let ctx = &ui.state.ctx;
    let mut filter = q.filter(PER_PAGE, &ui.clock())?;
    let ids = match q.text() {
        Some(text) => {
            let r = crate::domain::search::search(&ctx.db, actor, text, 100).await?;
            let mut ids: Vec<i64> = r.orders.iter().map(|o| o.id).collect();
            // A customer hit brings their orders.
            for c in &r.customers {
                let f = OrderFilter {
                    customer_id: Some(c.id),
                    limit: 100,
                    ..Default::default()
                };
                ids.extend(ctx.orders.list(actor, f).await?.0.iter().map(|o| o.id));
            }
            Some(ids)
        }
        None => None,
    };
    filter.ids = ids;
    let keyset = filter.sort.keyset();
    let (rows, total) = ctx.orders.list(actor, filter).await?;
    Ok((rows, total, keyset))
}

pub fn orders_table(
    ui: &Ui,
    shop: &ShopSettings,
    statuses: &[StatusRow],
    rows: &[OrderRow],
) -> Markup {
    let now = crate::db::now();
    html! {
        div.table-wrap { table.orders {
            thead { tr {
                th { "№" } th { (ui.t("orders.customer")) } th { (ui.t("orders.device")) } th { (ui.t("orders.status")) }
                th { (ui.t("orders.master")) } th { (ui.t("orders.promised")) } th.num { (ui.t("orders.total")) } th.num { (ui.t("desk.to_pay")) }
            } }
            tbody {
                @for o in rows {
                    tr.overdue[is_overdue(o, now)] data-order-id=(o.id) {
                        td.order-no { a href=(format!("/orders/{}", o.id)) { (o.number) } @if o.urgent { " " span.badge.badge-danger { "!" } } }
                        td { (o.customer_name) br; small.muted { (o.customer_phone.clone().map(|p| crate::model::PhoneNumber::from_e164_unchecked(p).display()).unwrap_or_default()) } }
                        td { (category_label(ui, &o.device_category)) " " (o.brand) " " (o.model) }
                        td { (status_badge(ui, statuses, o.status_id)) @if is_overdue(o, now) { " " span.badge.badge-danger { (ui.t("orders.overdue")) } } }
                        td { (o.master_name.clone().unwrap_or_else(|| "—".into())) }
                        td { (o.promised_at.map(|t| date(&ui.clock(), t)).unwrap_or_default()) }
                        td.num { (cash(ui, shop, o.total)) }
                        td.num { (due_cell(ui, shop, crate::model::money::due(o.total, o.estimate, o.discount, o.paid))) }
                    }
                }
            }
        } }
    }
}

pub async fn list(ui: Ui, actor: Actor, q: web::Query<ListQuery>) -> HttpResponse {
    render_list(ui, actor, q.into_inner(), "/orders", "orders.title").await
}

/// A master's queue: their open orders, soonest promise first.
pub async fn my_orders(ui: Ui, actor: Actor, q: web::Query<ListQuery>) -> HttpResponse {
    let mut q = q.into_inner();
    q.master_id = Some(actor.user_id.to_string());
    if q.sort.is_none() {
        q.sort = Some("promised".into());
    }
    render_list(ui, actor, q, "/my", "orders.my_title").await
}

async fn render_list(
    ui: Ui,
    actor: Actor,
    q: ListQuery,
    base: &str,
    title: &'static str,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let (rows, total, keyset) = match find(&ui, &actor, &q).await {
        Ok(r) => r,
        Err(e) => return fail(&ui, e),
    };
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let masters = ctx.orders.masters().await.unwrap_or_default();
    let branches = crate::domain::branches::list(&ctx.db, false)
        .await
        .unwrap_or_default();
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    let page_no = q
        .page
        .as_deref()
        .and_then(|p| p.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(0, 1_000_000);
    let qs = query_string(&q);
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    // The master's own queue is not a filter the user set.
    let filtered = [&q.q, &q.group, &q.status_id, &q.branch_id, &q.from, &q.to]
        .into_iter()
        .any(set)
        || q.overdue.as_deref() == Some("1")
        || (base != "/my" && set(&q.master_id));
    let picked =
        |v: &Option<String>, id: i64| v.as_deref().map(str::trim) == Some(id.to_string().as_str());
    let groups = [
        ("new", "group.new"),
        ("in_work", "group.in_work"),
        ("waiting", "group.waiting"),
        ("ready", "group.ready"),
        ("closed", "group.closed"),
    ];
    html(page(
        &ui,
        ui.t(title),
        html! {
            div.page-head {
                h1 { (ui.t(title)) }
                div {
                    @if actor.can(Action::CreateOrders) { a.button.primary href="/orders/new" { (ui.t("orders.new")) } }
                    " " a.button href=(format!("/orders/export.csv?{qs}")) { "CSV" }
                }
            }
            form.filters #order-filters method="get" action=(base) {
                input name="q" type="search" value=(q.q.clone().unwrap_or_default()) placeholder=(ui.t("search.placeholder")) aria-label=(ui.t("search.title"));
                select name="group" aria-label=(ui.t("orders.status")) data-autosubmit {
                    option value="" { (ui.t("orders.all_groups")) }
                    @for (g, key) in groups { option value=(g) selected[q.group.as_deref() == Some(g)] { (ui.t(key)) } }
                }
                select name="status" aria-label=(ui.t("orders.status")) data-autosubmit {
                    option value="" { (ui.t("orders.all_statuses")) }
                    @for s in &statuses { option value=(s.id) selected[picked(&q.status_id, s.id)] { (status_name(s, ui.tr.lang)) } }
                }
                @if actor.role != crate::model::Role::Master {
                    select name="master" aria-label=(ui.t("orders.master")) data-autosubmit {
                        option value="" { (ui.t("orders.all_masters")) }
                        @for (id, name) in &masters { option value=(id) selected[picked(&q.master_id, *id)] { (name) } }
                    }
                }
                // Less used filters fold away; open when one of them is set.
                @let more_set = [&q.from, &q.to, &q.branch_id].iter().any(|v| v.as_deref().is_some_and(|s| !s.trim().is_empty())) || q.overdue.as_deref() == Some("1");
                details.more-filters open[more_set] {
                    summary { (ui.t("desk.more_filters")) }
                    div.more-filters-body {
                        @if branches.len() > 1 {
                            select name="branch" aria-label=(ui.t("branches.branch")) {
                                option value="" { (ui.t("branches.all")) }
                                @for b in &branches { option value=(b.id) selected[picked(&q.branch_id, b.id)] { (b.name) } }
                            }
                        }
                        label { (ui.t("orders.from")) " " input type="date" name="from" value=(q.from.clone().unwrap_or_default()); }
                        label { (ui.t("orders.to")) " " input type="date" name="to" value=(q.to.clone().unwrap_or_default()); }
                        label.check { input type="checkbox" name="overdue" value="1" checked[q.overdue.as_deref() == Some("1")]; " " (ui.t("orders.overdue")) }
                    }
                }
                select name="sort" aria-label=(ui.t("desk.sort")) data-autosubmit {
                    option value="newest" { (ui.t("orders.sort_newest")) }
                    option value="oldest" selected[q.sort.as_deref() == Some("oldest")] { (ui.t("orders.sort_oldest")) }
                    option value="promised" selected[q.sort.as_deref() == Some("promised")] { (ui.t("orders.sort_promised")) }
                    option value="updated" selected[q.sort.as_deref() == Some("updated")] { (ui.t("orders.sort_updated")) }
                }
                button type="submit" { (ui.t("common.filter")) }
            }
            div #orders-region data-live-topics="order." {
                @if rows.is_empty() {
                    // An empty list says why and what to do next.
                    div.card.empty-state #orders-empty {
                        @if !filtered {
                            p { strong { (ui.t("desk.no_orders")) } }
                            @if actor.can(Action::CreateOrders) { a.button.primary href="/orders/new" { (ui.t("orders.new")) } }
                        } @else {
                            p { strong { (ui.t("desk.no_matches")) } }
                            a.button href=(base) { (ui.t("desk.clear_filters")) }
                        }
                    }
                }
                (orders_table(&ui, &shop, &statuses, &rows))
                (keyset_pager(&ui, &format!("{base}?{qs}"), page_no, PER_PAGE, total, rows.len() as i64,
                    keyset.then(|| Cursor {
                        first: rows.first().map(|o| o.id).unwrap_or(0),
                        last: rows.last().map(|o| o.id).unwrap_or(0),
                    }).filter(|_| !rows.is_empty())))
            }
        },
    ))
}

pub async fn export_csv(ui: Ui, actor: Actor, q: web::Query<ListQuery>) -> HttpResponse {
    let mut q = q.into_inner();
    let statuses = ui.state.ctx.orders.statuses().await.unwrap_or_default();
    let mut all = Vec::new();
    for page_no in 0..200 {
        q.page = Some(page_no.to_string());
        let (rows, _, keyset) = match find(&ui, &actor, &q).await {
            Ok(r) => r,
            Err(e) => return fail(&ui, e),
        };
        let n = rows.len() as i64;
        if keyset {
            // The next page starts after this one's last row: no rows skipped again.
            q.after = rows.last().map(|o| o.id.to_string());
        }
        all.extend(rows);
        if n < PER_PAGE {
            break;
        }
    }
    let clock = ui.clock();
    let body = csv(
        &[
            "number", "created", "customer", "phone", "device", "brand", "model", "serial",
            "status", "master", "promised", "total", "paid", "balance",
        ],
        all.iter().map(|o| {
            vec![
                o.number.clone(),
                clock.format_datetime(o.created_at),
                o.customer_name.clone(),
                o.customer_phone.clone().unwrap_or_default(),
                o.device_category.clone(),
                o.brand.clone(),
                o.model.clone(),
                o.serial.clone(),
                statuses
                    .iter()
                    .find(|s| s.id == o.status_id)
                    .map(|s| status_name(s, ui.tr.lang).to_string())
                    .unwrap_or_default(),
                o.master_name.clone().unwrap_or_default(),
                o.promised_at.map(|t| date(&clock, t)).unwrap_or_default(),
                o.total.to_string(),
                o.paid.to_string(),
                crate::model::money::due(o.total, o.estimate, o.discount, o.paid).to_string(),
            ]
        }),
    );
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"orders.csv\""))
        .body(body)
}

#[derive(Deserialize, Default)]
pub struct NewQuery {
    phone: Option<String>,
    customer: Option<i64>,
}

/// The intake form. Fields the page leaves out (the name when the customer is already
/// known, the master list for those who cannot assign) default to empty; the domain
/// checks what is required.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct NewForm {
    phone: String,
    customer_name: String,
    customer_id: Option<String>,
    device_category: String,
    brand: String,
    model: String,
    serial: String,
    complaint: String,
    condition: String,
    accessories: String,
    urgent: Option<String>,
    promised: String,
    estimate: String,
    prepayment: String,
    warranty_days: String,
    master: Option<String>,
    branch: Option<String>,
    /// `existing` or `new` when the phone's customer has another name than the typed one.
    customer_choice: Option<String>,
    cond_screen: Option<String>,
    cond_scratches: Option<String>,
    cond_dents: Option<String>,
    cond_power: Option<String>,
    cond_water: Option<String>,
    unlock_code: String,
    unlock_pattern: String,
}

/// The condition checklist: (form field, catalogue key). Ticked items go into the
/// order's condition text, in the desk's language, before what was typed.
const CONDITIONS: &[(&str, &str)] = &[
    ("cond_screen", "desk.cond_screen"),
    ("cond_scratches", "desk.cond_scratches"),
    ("cond_dents", "desk.cond_dents"),
    ("cond_power", "desk.cond_power"),
    ("cond_water", "desk.cond_water"),
];

impl NewForm {
    fn ticked(&self, field: &str) -> bool {
        match field {
            "cond_screen" => self.cond_screen.is_some(),
            "cond_scratches" => self.cond_scratches.is_some(),
            "cond_dents" => self.cond_dents.is_some(),
            "cond_power" => self.cond_power.is_some(),
            "cond_water" => self.cond_water.is_some(),
            _ => false,
        }
    }

    /// The checklist's ticked items and the typed condition, as one text.
    fn condition_text(&self, ui: &Ui) -> String {
        let mut parts: Vec<&str> = CONDITIONS
            .iter()
            .filter(|(f, _)| self.ticked(f))
            .map(|(_, k)| ui.t(k))
            .collect();
        let typed = self.condition.trim();
        if !typed.is_empty() {
            parts.push(typed);
        }
        parts.join(", ")
    }
}

fn new_page(
    ui: &Ui,
    actor: &Actor,
    f: &NewForm,
    masters: &[(i64, String)],
    branches: &[crate::domain::branches::BranchRow],
    known: Option<&crate::domain::customers::CustomerRow>,
    error: Option<&str>,
) -> Markup {
    page(
        ui,
        ui.t("orders.new"),
        html! {
            h1 { (ui.t("orders.new")) }
            (flash(error, "error"))
            form.card.grid-form #new-order method="post" action="/orders" {
                (csrf_field(ui))
                fieldset {
                    legend { (ui.t("orders.customer")) }
                    label for="phone" { (ui.t("customers.phone")) }
                    input #phone name="phone" type="tel" value=(f.phone) required autofocus placeholder="90 123 45 67"
                        autocomplete="off" data-lookup="/orders/new/customer";
                    label for="customer_name" { (ui.t("customers.name")) }
                    input #customer_name name="customer_name" value=(f.customer_name) maxlength="200"
                        placeholder=(known.map(|c| c.name.as_str()).unwrap_or(""));
                    div #intake-customer aria-live="polite" {
                        // Chosen on the customer's page: kept while the phone is not changed.
                        @if let (Some(c), Some(_)) = (known, f.customer_id.as_deref().filter(|v| !v.is_empty())) {
                            input type="hidden" name="customer_id" value=(c.id);
                        }
                        (super::desk::customer_block(ui, known, &f.customer_name, super::desk::Choice::parse(f.customer_choice.as_deref())))
                    }
                }
                fieldset {
                    legend { (ui.t("orders.device")) }
                    label for="device_category" { (ui.t("orders.category")) }
                    select #device_category name="device_category" {
                        @for c in DEVICE_CATEGORIES { option value=(c) selected[f.device_category == *c] { (category_label(ui, c)) } }
                    }
                    label for="brand" { (ui.t("orders.brand")) }
                    input #brand name="brand" value=(f.brand) maxlength="80";
                    label for="model" { (ui.t("orders.model")) }
                    input #model name="model" value=(f.model) maxlength="120";
                    label for="serial" { (ui.t("orders.serial")) }
                    input #serial name="serial" value=(f.serial) maxlength="80";
                    label for="complaint" { (ui.t("orders.complaint")) }
                    textarea #complaint name="complaint" required maxlength="2000" { (f.complaint) }
                    fieldset.checklist #condition-checklist {
                        legend { (ui.t("orders.condition")) }
                        @for (field, key) in CONDITIONS {
                            label.check { input type="checkbox" name=(field) value="1" checked[f.ticked(field)]; " " (ui.t(key)) }
                        }
                    }
                    label for="condition" { (ui.t("desk.condition_other")) }
                    input #condition name="condition" value=(f.condition) maxlength="1000";
                    label for="accessories" { (ui.t("orders.accessories")) }
                    input #accessories name="accessories" value=(f.accessories) maxlength="500";
                    (super::desk::unlock_fields(ui, &f.unlock_code, &f.unlock_pattern))
                }
                fieldset {
                    legend { (ui.t("orders.terms")) }
                    label.check { input type="checkbox" name="urgent" value="1" checked[f.urgent.is_some()]; " " (ui.t("orders.urgent")) }
                    label for="promised" { (ui.t("orders.promised")) }
                    input #promised name="promised" type="date" value=(f.promised);
                    label for="estimate" { (ui.t("orders.estimate")) }
                    input #estimate name="estimate" inputmode="numeric" value=(f.estimate) placeholder="0";
                    label for="prepayment" { (ui.t("orders.prepayment")) }
                    input #prepayment name="prepayment" inputmode="numeric" value=(f.prepayment) placeholder="0";
                    label for="warranty_days" { (ui.t("orders.warranty_days")) }
                    input #warranty_days name="warranty_days" inputmode="numeric" value=(f.warranty_days) placeholder="30";
                    label for="branch" { (ui.t("branches.branch")) }
                    select #branch name="branch" {
                        @for b in branches { option value=(b.id) selected[f.branch.as_deref() == Some(&b.id.to_string())] { (b.name) } }
                    }
                    @if actor.can(Action::AssignOrders) {
                        label for="master" { (ui.t("orders.master")) }
                        select #master name="master" {
                            option value="" { "—" }
                            @for (id, name) in masters { option value=(id) selected[f.master.as_deref() == Some(&id.to_string())] { (name) } }
                        }
                    }
                }
                button.primary type="submit" { (ui.t("orders.create")) }
            }
        },
    )
}

pub async fn new_form(ui: Ui, actor: Actor, q: web::Query<NewQuery>) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let masters = ctx.orders.masters().await.unwrap_or_default();
    let mut f = NewForm {
        device_category: "phone".into(),
        warranty_days: "30".into(),
        ..Default::default()
    };
    let mut known = None;
    if let Some(id) = q.customer {
        known = ctx.customers.get(&actor, id).await.ok();
    } else if let Some(p) = q.phone.as_deref().filter(|p| !p.trim().is_empty()) {
        known = ctx
            .customers
            .find_by_phone(&actor, p)
            .await
            .ok()
            .and_then(|v| v.into_iter().next());
        f.phone = p.to_string();
    }
    if let Some(c) = &known {
        f.phone = c
            .phones
            .first()
            .map(|p| crate::model::PhoneNumber::from_e164_unchecked(p.clone()).display())
            .unwrap_or_default();
        if q.customer.is_some() {
            f.customer_id = Some(c.id.to_string());
        }
    }
    // The promised date the shop usually gives (settings), changeable on the form.
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    if shop.promise_days > 0 {
        let clock = ui.clock();
        f.promised = crate::domain::clock::iso_date(crate::domain::clock::add_days(
            clock.today(),
            shop.promise_days,
        ));
    }
    let branches = crate::domain::branches::list(&ctx.db, true)
        .await
        .unwrap_or_default();
    html(new_page(
        &ui,
        &actor,
        &f,
        &masters,
        &branches,
        known.as_ref(),
        None,
    ))
}

fn num(s: &str, field: &'static str) -> Result<i64, DomainError> {
    if s.trim().is_empty() {
        return Ok(0);
    }
    crate::model::money::parse_amount(s).map_err(|e| field_error(field, e.into()))
}

/// "{field}: {why}", both in the reader's language.
fn field_error(field: &'static str, why: Msg) -> DomainError {
    DomainError::invalid(
        Msg::new("err.field.refused")
            .term("field", field)
            .nested("why", why),
    )
}

pub async fn create(ui: Ui, actor: Actor, form: web::Form<NewForm>) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let f = form.into_inner();
    // The customer the typed phone finds. When the typed name is someone else's, the
    // desk chooses: the order is not silently given to the phone's customer.
    let chosen_id = f
        .customer_id
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let known = if chosen_id.is_none() && !f.phone.trim().is_empty() {
        ctx.customers
            .find_by_phone(&actor, &f.phone)
            .await
            .ok()
            .and_then(|v| v.into_iter().next())
    } else if let Some(id) = chosen_id.and_then(|v| v.parse().ok()) {
        ctx.customers.get(&actor, id).await.ok()
    } else {
        None
    };
    let choice = super::desk::Choice::parse(f.customer_choice.as_deref());
    let mut phone_customer = None;
    let mut shared_phone = false;
    if chosen_id.is_none() {
        if let Some(k) = &known {
            let differs = !f.customer_name.trim().is_empty()
                && !super::desk::same_name(&f.customer_name, &k.name);
            match (differs, choice) {
                (false, _) | (true, super::desk::Choice::Existing) => phone_customer = Some(k.id),
                (true, super::desk::Choice::New) => shared_phone = true,
                (true, super::desk::Choice::None) => {
                    let masters = ctx.orders.masters().await.unwrap_or_default();
                    let branches = crate::domain::branches::list(&ctx.db, true)
                        .await
                        .unwrap_or_default();
                    return html_status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        new_page(
                            &ui,
                            &actor,
                            &f,
                            &masters,
                            &branches,
                            known.as_ref(),
                            Some(ui.t("desk.choose_customer")),
                        ),
                    );
                }
            }
        }
    }
    let result: Result<OrderRow, DomainError> = async {
        let estimate = num(&f.estimate, "field.estimate")?;
        let prepayment = num(&f.prepayment, "field.prepayment")?;
        let warranty_days = if f.warranty_days.trim().is_empty() {
            0
        } else {
            f.warranty_days
                .trim()
                .parse()
                .map_err(|_| DomainError::invalid("err.order.warranty"))?
        };
        let promised_at = parse_date_input(&ui.clock(), &f.promised).map_err(|_| {
            DomainError::invalid(Msg::new("err.date.invalid").with("value", f.promised.trim()))
        })?;
        let id = |s: &Option<String>, field: &'static str| -> Result<Option<i64>, DomainError> {
            match s.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| {
                    DomainError::invalid(
                        Msg::new("err.field.not_a_number")
                            .term("field", field)
                            .with("value", v),
                    )
                }),
            }
        };
        let master_id = id(&f.master, "field.master")?;
        let branch_id = id(&f.branch, "field.branch")?;
        let customer_id = id(&f.customer_id, "field.customer")?.or(phone_customer);
        // Intake is one unit of work in the domain: the customer (found by phone or
        // created), the order and the prepayment commit together or not at all.
        ctx.orders
            .create(
                &actor,
                NewOrder {
                    customer_id,
                    customer: customer_id.is_none().then(|| IntakeCustomer {
                        name: f.customer_name.clone(),
                        phone: f.phone.clone(),
                        shared_phone,
                    }),
                    branch_id,
                    device_category: f.device_category.clone(),
                    brand: f.brand.clone(),
                    model: f.model.clone(),
                    serial: f.serial.clone(),
                    complaint: f.complaint.clone(),
                    condition: f.condition_text(&ui),
                    accessories: f.accessories.clone(),
                    urgent: f.urgent.is_some(),
                    promised_at,
                    estimate,
                    prepayment,
                    warranty_days,
                    master_id,
                    unlock_code: f.unlock_code.clone(),
                    unlock_pattern: f.unlock_pattern.clone(),
                },
            )
            .await
    }
    .await;
    match result {
        Ok(o) => redirect(&format!("/orders/{}", o.id)),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            let masters = ctx.orders.masters().await.unwrap_or_default();
            let branches = crate::domain::branches::list(&ctx.db, true)
                .await
                .unwrap_or_default();
            html_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                new_page(
                    &ui,
                    &actor,
                    &f,
                    &masters,
                    &branches,
                    known.as_ref(),
                    Some(&ui.msg(&m)),
                ),
            )
        }
        Err(e) => fail(&ui, e),
    }
}

fn event_text(
    ui: &Ui,
    shop: &ShopSettings,
    statuses: &[StatusRow],
    e: &crate::domain::orders::EventRow,
) -> String {
    let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
    let st = |code: &serde_json::Value| {
        statuses
            .iter()
            .find(|s| Some(s.code.as_str()) == code.as_str())
            .map(|s| status_name(s, ui.tr.lang).to_string())
            .unwrap_or_default()
    };
    match e.kind.as_str() {
        "created" => ui.t("timeline.created").to_string(),
        "status" => format!(
            "{}: {} → {}",
            ui.t("orders.status"),
            st(&d["from"]),
            st(&d["to"])
        ),
        "assigned" => ui.t("timeline.assigned").to_string(),
        "fields" => format!(
            "{}: {}",
            ui.t("timeline.fields"),
            d.as_object()
                .map(|m| {
                    m.keys()
                        .map(|k| ui.tr.code("order_field", k))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        ),
        "line_added" => format!(
            "+ {} ({} × {})",
            d["name"].as_str().unwrap_or(""),
            d["qty"],
            money(shop, d["unit_price"].as_i64().unwrap_or(0))
        ),
        "line_removed" => format!("− {}", d["name"].as_str().unwrap_or("")),
        "payment" => format!(
            "{}: {} {}",
            ui.t("orders.payment"),
            ui.tr.code("payment_kind", d["kind"].as_str().unwrap_or("")),
            money(shop, d["amount"].as_i64().unwrap_or(0))
        ),
        "comment" => e.text.clone(),
        "unlock" => ui
            .t(if d["unlock"].as_bool() == Some(true) {
                "timeline.unlock_set"
            } else {
                "timeline.unlock_removed"
            })
            .to_string(),
        "promotion" => format!(
            "{}: {} (−{})",
            ui.t("promos.order.applied"),
            d["code"].as_str().unwrap_or(""),
            money(shop, d["discount"].as_i64().unwrap_or(0))
        ),
        "promotion_removed" => ui.t("promos.order.removed").to_string(),
        other => other.to_string(),
    }
}

/// What the order page shows besides the order itself.
struct OrderContext<'a> {
    shop: &'a ShopSettings,
    statuses: &'a [StatusRow],
    transitions: &'a [(i64, i64)],
    masters: &'a [(i64, String)],
    /// A refused status change's choice and note, shown again as they were.
    kept: Option<(&'a str, &'a str)>,
}

/// The code of the promotion on the order, from its timeline.
fn promotion_code(v: &OrderView) -> String {
    if v.order.promotion_id.is_none() {
        return String::new();
    }
    v.timeline
        .iter()
        .rev()
        .find(|e| e.kind == "promotion")
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.detail).ok())
        .and_then(|d| d["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn order_page(
    ui: &Ui,
    actor: &Actor,
    cx: &OrderContext,
    v: &OrderView,
    error: Option<&str>,
) -> Markup {
    let OrderContext {
        shop,
        statuses,
        transitions,
        masters,
        kept,
    } = *cx;
    let o = &v.order;
    let next: Vec<&StatusRow> = statuses
        .iter()
        .filter(|s| transitions.contains(&(o.status_id, s.id)))
        .collect();
    let editable = actor.can(Action::EditOrders) && o.status_group != "closed";
    html! {
        div.page-head {
            h1 { (ui.t("orders.order")) " " span #order-number { (o.number) } }
            div.no-print {
                a.button href=(format!("/orders/{}/receipt", o.id)) target="_blank" { (ui.t("print.receipt")) }
                " " a.button href=(format!("/orders/{}/act", o.id)) target="_blank" { (ui.t("print.act")) }
                " " a.button #label-link href=(format!("/orders/{}/label", o.id)) target="_blank" { (ui.t("desk.label")) }
            }
        }
        (flash(error, "error"))
        div #order-region data-live-topics="order." data-order=(o.id) {
            div.order-grid {
                section.card {
                    p { (status_badge(ui, statuses, o.status_id)) @if v.overdue { " " span.badge.badge-danger { (ui.t("orders.overdue")) } } @if o.urgent { " " span.badge.badge-danger { (ui.t("orders.urgent")) } } }
                    dl.facts {
                        dt { (ui.t("orders.customer")) } dd { a href=(format!("/customers/{}", o.customer_id)) { (o.customer_name) } " " @if let Some(p) = &o.customer_phone { a href=(format!("tel:{p}")) data-dial=(p) { (crate::model::PhoneNumber::from_e164_unchecked(p.clone()).display()) } } }
                        dt { (ui.t("orders.device")) } dd { (category_label(ui, &o.device_category)) " " (o.brand) " " (o.model) }
                        dt { (ui.t("orders.serial")) } dd { (o.serial) }
                        dt { (ui.t("orders.complaint")) } dd { (o.complaint) }
                        dt { (ui.t("orders.condition")) } dd { (o.condition) }
                        dt { (ui.t("orders.accessories")) } dd { (o.accessories) }
                        dt { (ui.t("orders.master")) } dd #order-master { (o.master_name.clone().unwrap_or_else(|| "—".into())) }
                        dt { (ui.t("orders.promised")) } dd { (o.promised_at.map(|t| date(&ui.clock(), t)).unwrap_or_else(|| "—".into())) }
                        dt { (ui.t("orders.estimate")) } dd { (cash(ui, shop, o.estimate)) }
                        dt { (ui.t("orders.total")) } dd #order-total { (cash(ui, shop, o.total)) }
                        @if o.promotion_id.is_some() {
                            dt { (ui.t("promos.order.discount")) } dd #order-discount { "−" (cash(ui, shop, o.discount)) " " small.muted { (promotion_code(v)) } }
                        }
                        dt { (ui.t("orders.paid")) } dd { (cash(ui, shop, o.paid)) }
                        dt { (ui.t(if v.balance < 0 { "desk.overpayment" } else { "desk.to_pay" })) }
                        dd #order-balance {
                            @if v.balance < 0 {
                                strong { span.money.overpaid data-due=(v.balance) { (super::core_ui::money_text(ui, shop, -v.balance)) } }
                                " " small.muted { (ui.t("desk.overpaid_hint")) }
                            } @else {
                                strong { (due_cell(ui, shop, v.balance)) }
                                @if o.total == 0 && o.estimate > 0 { " " small.muted { (ui.t("desk.by_estimate")) } }
                            }
                        }
                        dt { (ui.t("orders.created")) } dd { (ui.datetime(o.created_at)) }
                    }
                    @if let Some(u) = &v.unlock { (super::desk::unlock_view(ui, u)) }
                }
                section.card.actions {
                    @if actor.can(Action::EditOrders) && !next.is_empty() {
                        form #status-form method="post" action=(format!("/orders/{}/status", o.id)) {
                            (csrf_field(ui))
                            input type="hidden" name="version" value=(o.version);
                            label for="to" { (ui.t("orders.change_status")) }
                            select #to name="to" { @for s in &next { option value=(s.code) selected[kept.map(|k| k.0) == Some(s.code.as_str())] { (status_name(s, ui.tr.lang)) } } }
                            input name="note" placeholder=(ui.t("orders.note")) maxlength="1000" value=(kept.map(|k| k.1).unwrap_or(""));
                            // The hand-over override is offered only where it can apply: a
                            // debt on the work lines and "delivered" among the next statuses.
                            @if o.total - o.discount > o.paid && next.iter().any(|s| s.code == "delivered") {
                                label.check { input type="checkbox" name="allow_debt" value="1"; " " (ui.t("orders.allow_debt")) }
                            }
                            button.primary type="submit" { (ui.t("common.save")) }
                        }
                    }
                    @if editable {
                        details #unlock-edit {
                            summary { (ui.t("desk.unlock_change")) }
                            form #unlock-form method="post" action=(format!("/orders/{}/unlock", o.id)) {
                                (csrf_field(ui))
                                @let u = v.unlock.clone().unwrap_or_default();
                                (super::desk::unlock_fields(ui, &u.code, &u.pattern))
                                button type="submit" { (ui.t("common.save")) }
                            }
                        }
                    }
                    @if actor.can(Action::AssignOrders) {
                        form #assign-form method="post" action=(format!("/orders/{}/assign", o.id)) {
                            (csrf_field(ui))
                            label for="master" { (ui.t("orders.assign")) }
                            select #master name="master" {
                                option value="" { "—" }
                                @for (id, name) in masters { option value=(id) selected[o.master_id == Some(*id)] { (name) } }
                            }
                            button type="submit" { (ui.t("common.save")) }
                        }
                    }
                    (super::promos::order_actions(ui, actor, o, &promotion_code(v)))
                    @if actor.can(Action::TakePayments) {
                        form #pay-form method="post" action=(format!("/orders/{}/payments", o.id)) {
                            (csrf_field(ui))
                            label for="amount" { (ui.t("orders.take_payment")) }
                            input #amount name="amount" inputmode="numeric" required value=(if v.balance > 0 { v.balance.to_string() } else { String::new() });
                            select name="kind" {
                                option value="payment" { (ui.t("payment.payment")) }
                                option value="prepayment" { (ui.t("payment.prepayment")) }
                                @if actor.can(Action::RefundPayments) { option value="refund" { (ui.t("payment.refund")) } }
                            }
                            select name="method" { option value="cash" { (ui.t("payment.cash")) } option value="card" { (ui.t("payment.card")) } option value="transfer" { (ui.t("payment.transfer")) } }
                            button type="submit" { (ui.t("common.save")) }
                        }
                    }
                }
            }
            @if editable && actor.role != crate::model::Role::Master {
                details.card {
                    summary { (ui.t("orders.edit_intake")) }
                    form #edit-form method="post" action=(format!("/orders/{}", o.id)) {
                        (csrf_field(ui))
                        input type="hidden" name="version" value=(o.version);
                        label for="e-cat" { (ui.t("orders.category")) }
                        select #e-cat name="device_category" { @for c in DEVICE_CATEGORIES { option value=(c) selected[o.device_category == *c] { (category_label(ui, c)) } } }
                        label for="e-brand" { (ui.t("orders.brand")) } input #e-brand name="brand" value=(o.brand);
                        label for="e-model" { (ui.t("orders.model")) } input #e-model name="model" value=(o.model);
                        label for="e-serial" { (ui.t("orders.serial")) } input #e-serial name="serial" value=(o.serial);
                        label for="e-complaint" { (ui.t("orders.complaint")) } textarea #e-complaint name="complaint" required { (o.complaint) }
                        label for="e-condition" { (ui.t("orders.condition")) } input #e-condition name="condition" value=(o.condition);
                        label for="e-acc" { (ui.t("orders.accessories")) } input #e-acc name="accessories" value=(o.accessories);
                        label.check { input type="checkbox" name="urgent" value="1" checked[o.urgent]; " " (ui.t("orders.urgent")) }
                        label for="e-promised" { (ui.t("orders.promised")) } input #e-promised type="date" name="promised" value=(date_input(&ui.clock(), o.promised_at));
                        label for="e-estimate" { (ui.t("orders.estimate")) } input #e-estimate name="estimate" inputmode="numeric" value=(o.estimate);
                        label for="e-warranty" { (ui.t("orders.warranty_days")) } input #e-warranty name="warranty_days" inputmode="numeric" value=(o.warranty_days);
                        button.primary type="submit" { (ui.t("common.save")) }
                    }
                }
            }
            section.card {
                h2 { (ui.t("orders.lines")) }
                div.table-wrap { table #lines {
                    thead { tr { th { (ui.t("orders.line_name")) } th { (ui.t("orders.line_kind")) } th.num { (ui.t("orders.qty")) } th.num { (ui.t("orders.price")) } th.num { (ui.t("orders.amount")) } th {} } }
                    tbody {
                        @for l in &v.lines {
                            tr {
                                td { (l.name) } td { (if l.kind == "part" { ui.t("orders.part") } else { ui.t("orders.labour") }) }
                                td.num { (l.qty) } td.num { (money(shop, l.unit_price)) } td.num { (money(shop, l.amount)) }
                                td { @if editable {
                                    form.inline method="post" action=(format!("/orders/{}/lines/{}/delete", o.id, l.id)) { (csrf_field(ui)) button.link.danger type="submit" { "×" } }
                                } }
                            }
                        }
                    }
                } }
                @if editable {
                    form.row.wrap #line-form method="post" action=(format!("/orders/{}/lines", o.id)) {
                        (csrf_field(ui))
                        select name="kind" { option value="labour" { (ui.t("orders.labour")) } option value="part" { (ui.t("orders.part")) } }
                        input name="name" required maxlength="200" placeholder=(ui.t("orders.line_name"));
                        input name="qty" inputmode="numeric" value="1" size="3";
                        input name="price" inputmode="numeric" required placeholder=(ui.t("orders.price"));
                        button type="submit" { "+" }
                    }
                }
            }
            section.card #photos {
                h2 { (ui.t("orders.photos")) }
                div.photo-grid {
                    @for p in &v.photos {
                        a href=(format!("/orders/{}/photos/{}", o.id, p.id)) target="_blank" {
                            img src=(format!("/orders/{}/photos/{}", o.id, p.id)) alt=(ui.t("orders.photos")) loading="lazy";
                        }
                    }
                }
                @if actor.can(Action::EditOrders) {
                    form.row #photo-form method="post" enctype="multipart/form-data" action=(format!("/orders/{}/photos?_csrf={}", o.id, ui.csrf)) {
                        input type="file" name="photo" accept="image/jpeg,image/png,image/webp" capture="environment" required;
                        button type="submit" { (ui.t("orders.add_photo")) }
                    }
                }
            }
            section.card {
                h2 { (ui.t("orders.timeline")) }
                @if actor.can(Action::EditOrders) {
                    form #comment-form method="post" action=(format!("/orders/{}/comments", o.id)) {
                        (csrf_field(ui))
                        textarea name="text" required maxlength="4000" placeholder=(ui.t("orders.comment")) {}
                        label.check { input type="checkbox" name="public" value="1"; " " (ui.t("orders.comment_public")) }
                        button type="submit" { (ui.t("orders.add_comment")) }
                    }
                }
                ol.timeline #timeline {
                    @for e in v.timeline.iter().rev() {
                        li class=(format!("ev ev-{}", e.kind)) {
                            time { (ui.datetime(e.at)) } " · " strong { (e.actor.clone().unwrap_or_default()) } " · "
                            (event_text(ui, shop, statuses, e))
                            @if e.kind != "comment" && !e.text.is_empty() { " — " (e.text) }
                            @if e.public { " " span.badge { (ui.t("orders.public")) } }
                        }
                    }
                }
            }
        }
    }
}

pub async fn show(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    render_order(&ui, &actor, path.into_inner(), None, StatusCode::OK).await
}

pub(super) async fn render_order(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    render_order_keeping(ui, actor, id, error, status, None).await
}

async fn render_order_keeping(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    error: Option<&str>,
    status: StatusCode,
    kept: Option<(&str, &str)>,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let v = match ctx.orders.view(actor, id).await {
        Ok(v) => v,
        Err(e) => return fail(ui, e),
    };
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let transitions = ctx.orders.transitions().await.unwrap_or_default();
    let masters = ctx.orders.masters().await.unwrap_or_default();
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    let title = format!("{} {}", ui.t("orders.order"), v.order.number);
    let calls = super::calls::order_section(ui, actor, id).await;
    let chat = super::inbox::order_section(ui, actor, id).await;
    html_status(
        status,
        page(
            ui,
            &title,
            maud::html! { (order_page(
                ui,
                actor,
                &OrderContext {
                    shop: &shop,
                    statuses: &statuses,
                    transitions: &transitions,
                    masters: &masters,
                    kept,
                },
                &v,
                error,
            )) (calls) (chat) },
        ),
    )
}

/// After an action: back to the order, or the order page with the refusal.
async fn after(ui: &Ui, actor: &Actor, id: i64, r: Result<OrderRow, DomainError>) -> HttpResponse {
    match r {
        Ok(_) => redirect(&format!("/orders/{id}")),
        Err(DomainError::Invalid(m)) => {
            render_order(
                ui,
                actor,
                id,
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(DomainError::Conflict(m)) => {
            render_order(ui, actor, id, Some(&ui.msg(&m)), StatusCode::CONFLICT).await
        }
        Err(e) => fail(ui, e),
    }
}

#[derive(Deserialize)]
pub struct StatusForm {
    version: i64,
    to: String,
    note: Option<String>,
    allow_debt: Option<String>,
}

pub async fn change_status(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<StatusForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = ui
        .state
        .ctx
        .orders
        .change_status(
            &actor,
            id,
            f.version,
            &f.to,
            f.allow_debt.is_some(),
            f.note.as_deref().unwrap_or(""),
        )
        .await;
    // Refused: the page comes back with the choice and the note as they were.
    let kept = Some((f.to.as_str(), f.note.as_deref().unwrap_or("")));
    match r {
        Ok(_) => redirect(&format!("/orders/{id}")),
        Err(DomainError::Invalid(m)) => {
            render_order_keeping(
                &ui,
                &actor,
                id,
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
                kept,
            )
            .await
        }
        Err(DomainError::Conflict(m)) => {
            render_order_keeping(
                &ui,
                &actor,
                id,
                Some(&ui.msg(&m)),
                StatusCode::CONFLICT,
                kept,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct AssignForm {
    master: String,
}

pub async fn assign(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<AssignForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let master = match f.master.trim() {
        "" => None,
        m => match m.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                return after(
                    &ui,
                    &actor,
                    id,
                    Err(DomainError::invalid("err.order.master_inactive")),
                )
                .await
            }
        },
    };
    let r = ui.state.ctx.orders.assign(&actor, id, master).await;
    after(&ui, &actor, id, r).await
}

#[derive(Deserialize)]
pub struct UnlockForm {
    #[serde(default)]
    unlock_code: String,
    #[serde(default)]
    unlock_pattern: String,
}

pub async fn set_unlock(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<UnlockForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let f = f.into_inner();
    let u = crate::domain::orders::Unlock {
        code: f.unlock_code,
        pattern: f.unlock_pattern,
    };
    let r = ui.state.ctx.orders.set_unlock(&actor, id, u).await;
    after(&ui, &actor, id, r).await
}

#[derive(Deserialize)]
pub struct LineForm {
    kind: String,
    name: String,
    qty: String,
    price: String,
}

pub async fn add_line(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<LineForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = async {
        let qty: i64 = f
            .qty
            .trim()
            .parse()
            .map_err(|_| DomainError::invalid("err.order.quantity"))?;
        let price = crate::model::money::parse_amount(&f.price)
            .map_err(|e| field_error("field.price", e.into()))?;
        ui.state
            .ctx
            .orders
            .add_line(&actor, id, &f.kind, &f.name, qty, price)
            .await
    }
    .await;
    after(&ui, &actor, id, r).await
}

pub async fn remove_line(ui: Ui, actor: Actor, path: web::Path<(i64, i64)>) -> HttpResponse {
    let (id, line) = path.into_inner();
    let r = ui.state.ctx.orders.remove_line(&actor, id, line).await;
    after(&ui, &actor, id, r).await
}

#[derive(Deserialize)]
pub struct PayForm {
    amount: String,
    kind: String,
    method: String,
    note: Option<String>,
}

pub async fn pay(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<PayForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = async {
        let v = crate::model::money::parse_amount(&f.amount)
            .map_err(|e| field_error("field.amount", e.into()))?;
        ui.state
            .ctx
            .orders
            .pay(
                &actor,
                id,
                &f.kind,
                v,
                &f.method,
                f.note.as_deref().unwrap_or(""),
            )
            .await
    }
    .await;
    after(&ui, &actor, id, r).await
}

#[derive(Deserialize)]
pub struct CommentForm {
    text: String,
    public: Option<String>,
}

pub async fn comment(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<CommentForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = ui
        .state
        .ctx
        .orders
        .comment(&actor, id, &f.text, f.public.is_some())
        .await;
    after(&ui, &actor, id, r).await
}

#[derive(Deserialize)]
pub struct EditForm {
    version: i64,
    device_category: String,
    brand: String,
    model: String,
    serial: String,
    complaint: String,
    condition: String,
    accessories: String,
    urgent: Option<String>,
    promised: String,
    estimate: String,
    warranty_days: String,
}

pub async fn update(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<EditForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = async {
        let u = OrderUpdate {
            version: f.version,
            device_category: Some(f.device_category.clone()),
            brand: Some(f.brand.clone()),
            model: Some(f.model.clone()),
            serial: Some(f.serial.clone()),
            complaint: Some(f.complaint.clone()),
            condition: Some(f.condition.clone()),
            accessories: Some(f.accessories.clone()),
            urgent: Some(f.urgent.is_some()),
            promised_at: Some(parse_date_input(&ui.clock(), &f.promised).map_err(|_| {
                DomainError::invalid(Msg::new("err.date.invalid").with("value", f.promised.trim()))
            })?),
            estimate: Some(num(&f.estimate, "field.estimate")?),
            warranty_days: Some(
                f.warranty_days
                    .trim()
                    .parse()
                    .map_err(|_| DomainError::invalid("err.order.warranty"))?,
            ),
        };
        ui.state.ctx.orders.update(&actor, id, u).await
    }
    .await;
    after(&ui, &actor, id, r).await
}

/// The intake receipt (`/receipt`) or completion act (`/act`), A4, 80 mm or 58 mm
/// thermal.
#[derive(Deserialize)]
pub struct PrintQuery {
    width: Option<String>,
}

/// The paper a print page is laid out for (`?width=`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paper {
    A4,
    Thermal80,
    Thermal58,
}

impl Paper {
    fn parse(w: Option<&str>) -> Paper {
        match w {
            Some("80mm") => Paper::Thermal80,
            Some("58mm") => Paper::Thermal58,
            _ => Paper::A4,
        }
    }

    fn class(self) -> &'static str {
        match self {
            Paper::A4 => "print a4",
            Paper::Thermal80 => "print thermal",
            Paper::Thermal58 => "print thermal w58",
        }
    }
}

fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(120, 120)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

pub async fn receipt(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    q: web::Query<PrintQuery>,
) -> HttpResponse {
    print(
        ui,
        actor,
        path.into_inner(),
        Paper::parse(q.width.as_deref()),
        false,
    )
    .await
}

pub async fn act(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    q: web::Query<PrintQuery>,
) -> HttpResponse {
    print(
        ui,
        actor,
        path.into_inner(),
        Paper::parse(q.width.as_deref()),
        true,
    )
    .await
}

async fn print(ui: Ui, actor: Actor, id: i64, paper: Paper, act: bool) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let v = match ctx.orders.view(&actor, id).await {
        Ok(v) => v,
        Err(e) => return fail(&ui, e),
    };
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    let logo = crate::domain::shop::logo_version(&ctx.db)
        .await
        .ok()
        .flatten();
    let o = &v.order;
    // The branch's own address, phone and hours head its receipts (issue 19).
    let shop = match crate::domain::branches::get(&ctx.db, o.branch_id).await {
        Ok(b) => crate::domain::branches::shop_of_branch(shop, &b),
        Err(_) => shop,
    };
    // The intake receipt links the customer's Telegram with a one-time code; the order
    // number alone links nothing (issue 14).
    let tg_link = if act {
        None
    } else {
        match ctx.notifications.customer_link(&o.number).await {
            Ok(l) => l,
            Err(e) => return fail(&ui, e),
        }
    };
    let title = if act {
        ui.t("print.act")
    } else {
        ui.t("print.receipt")
    };
    let url = ui.state.assets.url("css/print.css");
    let body = html! {
        (maud::DOCTYPE)
        html lang=(ui.tr.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " " (o.number) }
                link rel="stylesheet" href=(url);
                script src=(ui.state.assets.url("js/print.js")) defer {}
            }
            body class=(paper.class()) {
                (print_tools(&ui, o.id, paper))
                header.shop {
                    @if let Some(v) = &logo { img.shop-logo #shop-logo src=(format!("/shop/logo?v={v}")) alt=""; }
                    h1 { (shop.name) }
                    p { (shop.address) @if !shop.phone.is_empty() { " · " (shop.phone) } @if !shop.hours.is_empty() { " · " (shop.hours) } }
                }
                h2 { (title) " № " (o.number) }
                @if let Some(l) = &tg_link {
                    div.qr #order-qr title=(l.url) data-link=(l.url) { (PreEscaped(qr_svg(&l.url))) }
                    p.tg-link #order-tg-link { (ui.t("harden.receipt_telegram")) " " span.tg-url { (l.url) } }
                } @else {
                    div.qr #order-qr title=(o.number) { (PreEscaped(qr_svg(&o.number))) }
                }
                table.facts {
                    tr { th { (ui.t("orders.created")) } td { (ui.datetime(o.created_at)) } }
                    tr { th { (ui.t("orders.customer")) } td { (o.customer_name) " " (o.customer_phone.clone().map(|p| crate::model::PhoneNumber::from_e164_unchecked(p).display()).unwrap_or_default()) } }
                    tr { th { (ui.t("orders.device")) } td { (category_label(&ui, &o.device_category)) " " (o.brand) " " (o.model) } }
                    tr { th { (ui.t("orders.serial")) } td { (o.serial) } }
                    tr { th { (ui.t("orders.complaint")) } td { (o.complaint) } }
                    tr { th { (ui.t("orders.condition")) } td { (o.condition) } }
                    tr { th { (ui.t("orders.accessories")) } td { (o.accessories) } }
                    @if !act {
                        tr { th { (ui.t("orders.estimate")) } td { (money(&shop, o.estimate)) } }
                        tr { th { (ui.t("orders.promised")) } td { (o.promised_at.map(|t| date(&ui.clock(), t)).unwrap_or_default()) } }
                    }
                    @if o.discount > 0 {
                        tr #receipt-discount { th { (ui.t("promos.order.discount")) } td { "−" (super::core_ui::money_text(&ui, &shop, o.discount)) } }
                    }
                    tr { th { (ui.t("orders.paid")) } td { (super::core_ui::money_text(&ui, &shop, o.paid)) } }
                    @if !act {
                        // What is still to pay (against the estimate until there are work
                        // lines), or the overpayment named as one.
                        tr #receipt-due {
                            th { (ui.t(if v.balance < 0 { "desk.overpayment" } else { "desk.to_pay" })) }
                            td { strong { (super::core_ui::money_text(&ui, &shop, v.balance.abs())) } }
                        }
                    }
                }
                @if act {
                    table.lines {
                        tr { th { (ui.t("orders.line_name")) } th { (ui.t("orders.qty")) } th { (ui.t("orders.amount")) } }
                        @for l in &v.lines { tr { td { (l.name) } td { (l.qty) } td { (money(&shop, l.amount)) } } }
                        tr.total { th { (ui.t("orders.total")) } td {} td { (money(&shop, o.total)) } }
                        tr { th { (ui.t("orders.balance")) } td {} td { (money(&shop, v.balance)) } }
                    }
                    p { (ui.t("orders.warranty_days")) ": " (o.warranty_days) }
                }
                p.terms { (shop.terms_for(ui.tr.lang)) }
                div.signatures { span { (ui.t("print.customer_signature")) " ____________" } span { (ui.t("print.staff_signature")) " ____________" } }
            }
        }
    };
    html(body)
}

/// The paper choice and a print button, on every printable page (not printed).
fn print_tools(ui: &Ui, id: i64, paper: Paper) -> Markup {
    html! {
        nav.no-print.print-tools {
            button #print-button type="button" data-print { (ui.t("desk.print")) }
            @for (p, w, label) in [(Paper::A4, "a4", "A4"), (Paper::Thermal80, "80mm", "80 mm"), (Paper::Thermal58, "58mm", "58 mm")] {
                " · "
                @if p == paper { strong { (label) } } @else { a href=(format!("?width={w}")) { (label) } }
            }
            " · " a href=(format!("/orders/{id}")) { "← " (ui.t("orders.order")) }
        }
    }
}

/// A label for the device on the shelf (40×30 mm): the order number as a QR code and in
/// large type, the customer and the device.
pub async fn label(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    let o = match ui.state.ctx.orders.view(&actor, id).await {
        Ok(v) => v.order,
        Err(e) => return fail(&ui, e),
    };
    let url = ui.state.assets.url("css/print.css");
    html(html! {
        (maud::DOCTYPE)
        html lang=(ui.tr.lang.code()) {
            head {
                meta charset="utf-8";
                title { (ui.t("desk.label")) " " (o.number) }
                link rel="stylesheet" href=(url);
                script src=(ui.state.assets.url("js/print.js")) defer {}
            }
            body.print.label {
                nav.no-print.print-tools {
                    button #print-button type="button" data-print { (ui.t("desk.print")) }
                    " · " a href=(format!("/orders/{}", o.id)) { "← " (ui.t("orders.order")) }
                }
                div.device-label #device-label {
                    div.qr #label-qr { (PreEscaped(qr_svg(&o.number))) }
                    div.label-text {
                        strong.label-number { (o.number) }
                        span { (o.customer_name) }
                        span { (o.brand) " " (o.model) }
                        @if let Some(p) = o.promised_at { span { (date(&ui.clock(), p)) } }
                    }
                }
            }
        }
    })
}

pub async fn workload(ui: Ui, actor: Actor) -> HttpResponse {
    let rows = ui
        .state
        .ctx
        .orders
        .workload(&actor)
        .await
        .unwrap_or_default();
    html(page(
        &ui,
        ui.t("workload.title"),
        html! {
            h1 { (ui.t("workload.title")) }
            div.table-wrap { table #workload {
                thead { tr { th { (ui.t("orders.master")) } th.num { (ui.t("workload.open")) } th.num { (ui.t("workload.in_work")) } th.num { (ui.t("workload.avg_hours")) } } }
                tbody { @for w in &rows {
                    tr { td { a href=(format!("/orders?master={}", w.master_id)) { (w.name) } } td.num { (w.open) } td.num { (w.in_work) } td.num { (w.avg_repair_hours.map(|a| format!("{a:.1}")).unwrap_or_else(|| "—".into())) } }
                } }
            } }
        },
    ))
}

/// `multipart/form-data` upload of one photo (field `photo`); the CSRF token comes in the
/// query because forms with files are not read by the middleware.
pub async fn upload_photo(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    form: actix_multipart::Multipart,
) -> HttpResponse {
    use crate::web::multipart::{self, UploadError};
    let id = path.into_inner();
    let limit = crate::domain::orders::MAX_PHOTO_BYTES;
    let parts = match multipart::read(form, |name| if name == "photo" { limit } else { 1024 }).await
    {
        Ok(p) => p,
        Err(UploadError::TooLarge { .. }) => {
            let m = crate::i18n::Msg::new("err.photo.too_large").with("mb", limit / 1_000_000);
            return render_order(
                &ui,
                &actor,
                id,
                Some(&ui.msg(&m)),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
            .await;
        }
        Err(UploadError::Malformed) => {
            return after(
                &ui,
                &actor,
                id,
                Err(DomainError::invalid("err.photo.malformed")),
            )
            .await
        }
    };
    let Some(data) = parts
        .into_iter()
        .find(|p| p.name == "photo")
        .map(|p| p.bytes)
    else {
        return after(
            &ui,
            &actor,
            id,
            Err(DomainError::invalid("err.photo.missing")),
        )
        .await;
    };
    let dir = ui.state.ctx.config.attachments_dir();
    let r = ui.state.ctx.orders.add_photo(&actor, id, &dir, data).await;
    match r {
        Ok(_) => redirect(&format!("/orders/{id}")),
        Err(e) => after(&ui, &actor, id, Err(e)).await,
    }
}

pub async fn photo(ui: Ui, actor: Actor, path: web::Path<(i64, i64)>) -> HttpResponse {
    let (id, pid) = path.into_inner();
    let p = match ui.state.ctx.orders.photo(&actor, id, pid).await {
        Ok(p) => p,
        Err(e) => return fail(&ui, e),
    };
    let file = ui
        .state
        .ctx
        .config
        .attachments_dir()
        .join("orders")
        .join(id.to_string())
        .join(&p.file);
    match web::block(move || std::fs::read(file)).await {
        Ok(Ok(bytes)) => HttpResponse::Ok()
            .content_type(p.mime)
            .insert_header(("Cache-Control", "private, max-age=86400"))
            .body(bytes),
        _ => fail(&ui, DomainError::NotFound),
    }
}
