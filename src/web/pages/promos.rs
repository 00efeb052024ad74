//! Promotions, broadcasts, the archive of orders, the SMS gateway settings and the e-mail
//! unsubscribe page (issue 18, part three).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html, html_status, redirect};
use crate::domain::broadcasts::{BroadcastInput, BroadcastView};
use crate::domain::notifications::sms::{SmsForm, SmsSettings};
use crate::domain::notifications::{mask_secret, Channel};
use crate::domain::orders::{OrderFilter, OrderRow};
use crate::domain::promotions::PromotionInput;
use crate::domain::promotions::PromotionRow;
use crate::domain::{Action, Actor, DomainError, Msg};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

fn refusal_status(e: &DomainError) -> StatusCode {
    match e {
        DomainError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

// ---------------------------------------------------------------------------------------
// Promotions

/// The form as typed.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct PromotionForm {
    code: String,
    name: String,
    kind: String,
    value: String,
    applies_to: String,
    starts_on: String,
    ends_on: String,
    usage_limit: String,
    active: Option<String>,
}

fn typed_number(typed: &str, err: &'static str) -> Result<Option<i64>, DomainError> {
    let t = typed.trim().replace([' ', '\u{a0}', '%'], "");
    if t.is_empty() {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| DomainError::invalid(Msg::new(err).with("max", 1_000_000)))
}

impl PromotionForm {
    fn input(&self) -> Result<PromotionInput, DomainError> {
        Ok(PromotionInput {
            code: self.code.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            value: match self.kind.as_str() {
                "amount" => crate::model::money::parse_amount(&self.value)
                    .map_err(|_| DomainError::invalid("err.promo.amount"))?,
                _ => typed_number(&self.value, "err.promo.percent")?.unwrap_or(0),
            },
            applies_to: if self.applies_to.is_empty() {
                "both".into()
            } else {
                self.applies_to.clone()
            },
            starts_on: self.starts_on.clone(),
            ends_on: self.ends_on.clone(),
            usage_limit: typed_number(&self.usage_limit, "err.promo.limit")?,
            active: self.active.is_some(),
        })
    }

    fn of(p: &PromotionRow) -> PromotionForm {
        PromotionForm {
            code: p.code.clone(),
            name: p.name.clone(),
            kind: p.kind.clone(),
            value: p.value.to_string(),
            applies_to: p.applies_to.clone(),
            starts_on: p.starts_on.clone(),
            ends_on: p.ends_on.clone(),
            usage_limit: p.usage_limit.map(|l| l.to_string()).unwrap_or_default(),
            active: p.active.then(|| "1".into()),
        }
    }
}

fn promo_fields(ui: &Ui, f: &PromotionForm) -> Markup {
    html! {
        label { (ui.t("promos.code")) " " input name="code" required maxlength="32" value=(f.code) placeholder="SPRING10" autocomplete="off"; }
        label { (ui.t("promos.name")) " " input name="name" required maxlength="200" value=(f.name); }
        label { (ui.t("promos.kind")) " " select name="kind" {
            option value="percent" selected[f.kind != "amount"] { (ui.t("promos.kinds.percent")) }
            option value="amount" selected[f.kind == "amount"] { (ui.t("promos.kinds.amount")) }
        } }
        label { (ui.t("promos.value")) " " input name="value" required inputmode="numeric" value=(f.value); }
        label { (ui.t("promos.applies_to")) " " select name="applies_to" {
            @for (v, k) in [("both", "promos.applies.both"), ("labour", "promos.applies.labour"), ("parts", "promos.applies.parts")] {
                option value=(v) selected[f.applies_to == v] { (ui.t(k)) }
            }
        } }
        label { (ui.t("promos.starts_on")) " " input name="starts_on" type="date" required value=(f.starts_on); }
        label { (ui.t("promos.ends_on")) " " input name="ends_on" type="date" required value=(f.ends_on); }
        label { (ui.t("promos.usage_limit")) " " input name="usage_limit" inputmode="numeric" value=(f.usage_limit) placeholder="∞"; }
        label.check { input type="checkbox" name="active" value="1" checked[f.active.is_some()]; " " (ui.t("promos.active")) }
    }
}

fn value_text(ui: &Ui, p: &PromotionRow) -> String {
    let v = if p.kind == "percent" {
        format!("{}%", p.value)
    } else {
        crate::model::money::format(p.value, "UZS")
    };
    let on = ui.t(match p.applies_to.as_str() {
        "labour" => "promos.applies.labour",
        "parts" => "promos.applies.parts",
        _ => "promos.applies.both",
    });
    format!("{v} · {on}")
}

fn list_page(
    ui: &Ui,
    actor: &Actor,
    all: &[PromotionRow],
    f: &PromotionForm,
    error: Option<&str>,
) -> Markup {
    page(
        ui,
        ui.t("promos.title"),
        html! {
            h1 { (ui.t("promos.title")) }
            (flash(error, "error"))
            div.table-wrap #promotions-region data-live-topics="promotion." { table #promotions {
                thead { tr {
                    th { (ui.t("promos.code")) } th { (ui.t("promos.name")) } th { (ui.t("promos.value")) }
                    th { (ui.t("promos.dates")) } th.num { (ui.t("promos.used")) }
                } }
                tbody { @for p in all {
                    tr data-promotion=(p.id) {
                        td { a href=(format!("/promotions/{}", p.id)) { code { (p.code) } } @if !p.active { " " span.badge { (ui.t("promos.inactive")) } } }
                        td { (p.name) }
                        td { (value_text(ui, p)) }
                        td { (p.starts_on) " – " (p.ends_on) }
                        td.num { (p.used) @if let Some(l) = p.usage_limit { " / " (l) } }
                    }
                } }
            } }
            @if actor.can(Action::ManagePromotions) {
                form.card #promotion-new method="post" action="/promotions" {
                    (csrf_field(ui))
                    h2 { (ui.t("promos.new")) }
                    (promo_fields(ui, f))
                    button.primary type="submit" { (ui.t("common.create")) }
                }
            }
        },
    )
}

pub async fn list(ui: Ui, actor: Actor) -> HttpResponse {
    match ui.state.ctx.promotions.list().await {
        Ok(all) => {
            let today = crate::domain::clock::iso_date(ui.clock().today());
            let f = PromotionForm {
                starts_on: today.clone(),
                ends_on: today,
                active: Some("1".into()),
                ..Default::default()
            };
            html(list_page(&ui, &actor, &all, &f, None))
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn create(ui: Ui, actor: Actor, f: web::Form<PromotionForm>) -> HttpResponse {
    let r = match f.input() {
        Ok(i) => ui.state.ctx.promotions.save(&actor, None, i).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(id) => redirect(&format!("/promotions/{id}")),
        Err(e @ (DomainError::Invalid(_) | DomainError::Conflict(_))) => {
            let all = ui.state.ctx.promotions.list().await.unwrap_or_default();
            html_status(
                refusal_status(&e),
                list_page(&ui, &actor, &all, &f, Some(&ui.msg(&e.message()))),
            )
        }
        Err(e) => fail(&ui, e),
    }
}

async fn promotion_card(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    form: Option<&PromotionForm>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let p = match ui.state.ctx.promotions.get(id).await {
        Ok(p) => p,
        Err(e) => return fail(ui, e),
    };
    let f = form.cloned().unwrap_or_else(|| PromotionForm::of(&p));
    html_status(
        status,
        page(
            ui,
            &p.code,
            html! {
                h1 { code #promotion-code { (p.code) } " " (p.name) }
                (flash(error, "error"))
                dl.facts {
                    dt { (ui.t("promos.value")) } dd { (value_text(ui, &p)) }
                    dt { (ui.t("promos.dates")) } dd { (p.starts_on) " – " (p.ends_on) }
                    dt { (ui.t("promos.used")) } dd #promotion-used { (p.used) @if let Some(l) = p.usage_limit { " / " (l) } }
                }
                @if actor.can(Action::ManagePromotions) {
                    form.card method="post" action=(format!("/promotions/{id}")) {
                        (csrf_field(ui))
                        (promo_fields(ui, &f))
                        button.primary type="submit" { (ui.t("common.save")) }
                    }
                }
            },
        ),
    )
}

pub async fn show(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    promotion_card(&ui, &actor, path.into_inner(), None, None, StatusCode::OK).await
}

pub async fn update(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<PromotionForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = match f.input() {
        Ok(i) => ui.state.ctx.promotions.save(&actor, Some(id), i).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(_) => redirect(&format!("/promotions/{id}")),
        Err(e @ (DomainError::Invalid(_) | DomainError::Conflict(_))) => {
            let msg = ui.msg(&e.message());
            promotion_card(&ui, &actor, id, Some(&f), Some(&msg), refusal_status(&e)).await
        }
        Err(e) => fail(&ui, e),
    }
}

/// The promotion and archive controls on the order page.
pub fn order_actions(ui: &Ui, actor: &Actor, o: &OrderRow, code: &str) -> Markup {
    html! {
        @if actor.can(Action::ApplyPromotions) && o.closed_at.is_none() {
            @if o.promotion_id.is_some() {
                form #promotion-remove-form method="post" action=(format!("/orders/{}/promotion/remove", o.id)) {
                    (csrf_field(ui))
                    label { (ui.t("promos.order.applied")) ": " code { (code) } }
                    button type="submit" { (ui.t("promos.order.remove")) }
                }
            } @else {
                form #promotion-form method="post" action=(format!("/orders/{}/promotion", o.id)) {
                    (csrf_field(ui))
                    label for="promo-code" { (ui.t("promos.order.apply")) }
                    input #promo-code name="code" required maxlength="64" autocomplete="off" placeholder="SPRING10";
                    button type="submit" { (ui.t("promos.order.apply_button")) }
                }
            }
        }
        @if actor.can(Action::ArchiveOrders) && (o.closed_at.is_some() || o.archived_at.is_some()) {
            form #archive-form method="post" action=(format!("/orders/{}/{}", o.id, if o.archived_at.is_some() { "restore" } else { "archive" })) {
                (csrf_field(ui))
                @if let Some(at) = o.archived_at { p.muted { (ui.t("promos.archive.archived_on")) " " (ui.datetime(at)) } }
                button type="submit" { (ui.t(if o.archived_at.is_some() { "promos.archive.restore" } else { "promos.archive.archive" })) }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn back_to_order(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    r: Result<(), DomainError>,
) -> HttpResponse {
    match r {
        Ok(()) => redirect(&format!("/orders/{id}")),
        Err(e @ (DomainError::Invalid(_) | DomainError::Conflict(_))) => {
            let msg = ui.msg(&e.message());
            super::orders::render_order(ui, actor, id, Some(&msg), refusal_status(&e)).await
        }
        Err(e) => fail(ui, e),
    }
}

pub async fn apply(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<CodeForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let r = ui
        .state
        .ctx
        .promotions
        .apply(&actor, id, &f.code)
        .await
        .map(|_| ());
    back_to_order(&ui, &actor, id, r).await
}

pub async fn remove(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    let r = ui.state.ctx.promotions.remove(&actor, id).await;
    back_to_order(&ui, &actor, id, r).await
}

pub async fn archive_order(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    let r = ui
        .state
        .ctx
        .promotions
        .archive_order(Some(&actor), id, true)
        .await;
    back_to_order(&ui, &actor, id, r).await
}

pub async fn restore_order(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    let r = ui
        .state
        .ctx
        .promotions
        .archive_order(Some(&actor), id, false)
        .await;
    back_to_order(&ui, &actor, id, r).await
}

// ---------------------------------------------------------------------------------------
// Archive

async fn archive_page(
    ui: &Ui,
    actor: &Actor,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let f = OrderFilter {
        archived: Some(true),
        limit: 200,
        ..Default::default()
    };
    let orders = match ui.state.ctx.orders.list(actor, f).await {
        Ok((o, _)) => o,
        Err(e) => return fail(ui, e),
    };
    html_status(
        status,
        page(
            ui,
            ui.t("promos.archive.title"),
            html! {
                h1 { (ui.t("promos.archive.title")) }
                (flash(notice, "ok"))
                (flash(error, "error"))
                form.card.row #archive-rule-form method="post" action="/archive/rule" {
                    (csrf_field(ui))
                    label for="closed-years" { (ui.t("promos.archive.rule")) }
                    input #closed-years name="closed_years" inputmode="numeric" value="2" size="3";
                    button type="submit" { (ui.t("promos.archive.run")) }
                }
                div.table-wrap { table #archived-orders {
                    thead { tr { th { (ui.t("orders.order")) } th { (ui.t("orders.customer")) } th { (ui.t("promos.archive.archived_on")) } th {} } }
                    tbody { @for o in &orders {
                        tr data-order=(o.id) {
                            td { a href=(format!("/orders/{}", o.id)) { (o.number) } }
                            td { (o.customer_name) }
                            td { (o.archived_at.map(|t| ui.datetime(t)).unwrap_or_default()) }
                            td { form.inline method="post" action=(format!("/orders/{}/restore", o.id)) {
                                (csrf_field(ui))
                                button type="submit" { (ui.t("promos.archive.restore")) }
                            } }
                        }
                    } }
                } }
            },
        ),
    )
}

pub async fn archive(ui: Ui, actor: Actor) -> HttpResponse {
    archive_page(&ui, &actor, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    closed_years: String,
}

pub async fn archive_rule(ui: Ui, actor: Actor, f: web::Form<RuleForm>) -> HttpResponse {
    // Not a number: 0, which the rule refuses with its message.
    let years = f.closed_years.trim().parse::<i64>().unwrap_or(0);
    match ui
        .state
        .ctx
        .promotions
        .archive_closed(Some(&actor), years, 10_000)
        .await
    {
        Ok(n) => {
            let msg = ui.tr.f("promos.archive.done", &[("count", &n.to_string())]);
            archive_page(&ui, &actor, Some(&msg), None, StatusCode::OK).await
        }
        Err(e @ DomainError::Invalid(_)) => {
            let msg = ui.msg(&e.message());
            archive_page(
                &ui,
                &actor,
                None,
                Some(&msg),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

// ---------------------------------------------------------------------------------------
// Broadcasts

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct BroadcastForm {
    name: String,
    segment_id: String,
    promotion_id: String,
    body: String,
    per_second: String,
    telegram: Option<String>,
    sms: Option<String>,
    email: Option<String>,
}

impl BroadcastForm {
    fn input(&self) -> Result<BroadcastInput, DomainError> {
        let id = |v: &str| -> Result<Option<i64>, DomainError> {
            match v.trim() {
                "" => Ok(None),
                t => t
                    .parse()
                    .map(Some)
                    .map_err(|_| DomainError::invalid("err.broadcast.segment")),
            }
        };
        let channels = [
            (self.telegram.is_some(), "telegram"),
            (self.sms.is_some(), "sms"),
            (self.email.is_some(), "email"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| c.to_string())
        .collect::<Vec<_>>();
        if channels.is_empty() {
            return Err(DomainError::invalid(
                Msg::new("err.broadcast.channel").with("value", "—"),
            ));
        }
        Ok(BroadcastInput {
            name: self.name.clone(),
            segment_id: id(&self.segment_id)?
                .ok_or_else(|| DomainError::invalid("err.broadcast.segment"))?,
            promotion_id: id(&self.promotion_id)?,
            body: self.body.clone(),
            channels,
            per_second: typed_number(&self.per_second, "err.broadcast.per_second")?,
        })
    }
}

fn results_cells(b: &BroadcastView) -> Markup {
    let r = &b.results;
    html! {
        td.num data-k="sent" { (r.sent) }
        td.num data-k="failed" { (r.failed) }
        td.num data-k="pending" { (r.pending) }
        td.num data-k="redeemed" { (r.redeemed) }
    }
}

async fn broadcasts_page(
    ui: &Ui,
    actor: &Actor,
    f: &BroadcastForm,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let (all, segments, promos) = match (
        ctx.broadcasts.list(actor).await,
        ctx.segments.list(actor).await,
        ctx.promotions.list().await,
    ) {
        (Ok(a), Ok(s), Ok(p)) => (a, s, p),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return fail(ui, e),
    };
    let ch = |name: &str, label: &'static str, on: bool| {
        html! { label.check { input type="checkbox" name=(name) value="1" checked[on]; " " (ui.t(label)) } }
    };
    let fresh = f.name.is_empty() && f.body.is_empty();
    html_status(
        status,
        page(
            ui,
            ui.t("promos.broadcast.title"),
            html! {
                h1 { (ui.t("promos.broadcast.title")) }
                (flash(error, "error"))
                div.table-wrap #broadcasts-region data-live-topics="broadcast. outbox." { table #broadcasts {
                    thead { tr {
                        th { (ui.t("promos.name")) } th { (ui.t("promos.broadcast.when")) } th.num { (ui.t("promos.broadcast.queued")) }
                        th.num { (ui.t("promos.broadcast.sent")) } th.num { (ui.t("promos.broadcast.failed")) }
                        th.num { (ui.t("promos.broadcast.pending")) } th.num { (ui.t("promos.broadcast.redeemed")) }
                    } }
                    tbody { @for b in &all {
                        tr data-broadcast=(b.broadcast.id) {
                            td { a href=(format!("/broadcasts/{}", b.broadcast.id)) { (b.broadcast.name) } }
                            td { (ui.datetime(b.broadcast.created_at)) }
                            td.num { (b.broadcast.queued) }
                            (results_cells(b))
                        }
                    } }
                } }
                form.card #broadcast-new method="post" action="/broadcasts" {
                    (csrf_field(ui))
                    h2 { (ui.t("promos.broadcast.new")) }
                    label { (ui.t("promos.name")) " " input name="name" required maxlength="200" value=(f.name); }
                    label { (ui.t("promos.broadcast.segment")) " " select name="segment_id" required {
                        @for s in &segments { option value=(s.id) selected[f.segment_id == s.id.to_string()] { (s.name) " (" (s.count) ")" } }
                    } }
                    label { (ui.t("promos.broadcast.promotion")) " " select name="promotion_id" {
                        option value="" { (ui.t("promos.broadcast.reminder")) }
                        @for p in promos.iter().filter(|p| p.active) { option value=(p.id) selected[f.promotion_id == p.id.to_string()] { (p.code) " — " (p.name) } }
                    } }
                    label { (ui.t("promos.broadcast.body")) " " textarea name="body" required maxlength="1000" rows="4" placeholder=(ui.t("promos.broadcast.body_hint")) { (f.body) } }
                    p.muted { (ui.t("promos.broadcast.placeholders")) }
                    fieldset {
                        legend { (ui.t("promos.broadcast.channels")) }
                        (ch("telegram", "notify.channel.telegram", fresh || f.telegram.is_some()))
                        (ch("sms", "promos.channel.sms", fresh || f.sms.is_some()))
                        (ch("email", "notify.channel.email", fresh || f.email.is_some()))
                    }
                    label { (ui.t("promos.broadcast.per_second")) " " input name="per_second" inputmode="numeric" value=(if f.per_second.is_empty() { "5" } else { f.per_second.as_str() }) size="3"; }
                    p.muted { (ui.t("promos.broadcast.opt_in_note")) }
                    button.primary type="submit" { (ui.t("promos.broadcast.send")) }
                }
            },
        ),
    )
}

pub async fn broadcasts(ui: Ui, actor: Actor) -> HttpResponse {
    broadcasts_page(&ui, &actor, &BroadcastForm::default(), None, StatusCode::OK).await
}

pub async fn send_broadcast(ui: Ui, actor: Actor, f: web::Form<BroadcastForm>) -> HttpResponse {
    let r = match f.input() {
        Ok(i) => ui.state.ctx.broadcasts.send(&actor, i).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(b) => redirect(&format!("/broadcasts/{}", b.broadcast.id)),
        Err(e @ (DomainError::Invalid(_) | DomainError::Conflict(_))) => {
            let msg = ui.msg(&e.message());
            broadcasts_page(&ui, &actor, &f, Some(&msg), refusal_status(&e)).await
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn broadcast(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let b = match ui.state.ctx.broadcasts.get(&actor, path.into_inner()).await {
        Ok(b) => b,
        Err(e) => return fail(&ui, e),
    };
    let r = &b.results;
    html(page(
        &ui,
        &b.broadcast.name,
        html! {
            h1 { (b.broadcast.name) }
            div #broadcast-region data-live-topics="broadcast. outbox." {
                dl.facts #broadcast-results {
                    dt { (ui.t("promos.broadcast.when")) } dd { (ui.datetime(b.broadcast.created_at)) }
                    dt { (ui.t("promos.broadcast.queued")) } dd #b-queued { (b.broadcast.queued) }
                    dt { (ui.t("promos.broadcast.skipped")) } dd #b-skipped { (b.broadcast.skipped) }
                    dt { (ui.t("promos.broadcast.sent")) } dd #b-sent { (r.sent) }
                    dt { (ui.t("promos.broadcast.delivered")) } dd #b-delivered { (r.delivered) }
                    dt { (ui.t("promos.broadcast.failed")) } dd #b-failed { (r.failed) }
                    dt { (ui.t("promos.broadcast.pending")) } dd #b-pending { (r.pending) }
                    dt { (ui.t("promos.broadcast.redeemed")) } dd #b-redeemed { (r.redeemed) }
                    dt { (ui.t("promos.broadcast.cost")) } dd #b-cost { (crate::model::money::format(r.cost, "UZS")) }
                    @for (c, n) in &r.by_channel {
                        dt { (Channel::parse(c).map_or(c.as_str(), |ch| ui.t(ch.label_key()))) } dd { (n) }
                    }
                }
                pre.detail { (b.broadcast.body) }
            }
        },
    ))
}

// ---------------------------------------------------------------------------------------
// SMS settings (a section of /settings/notifications)

pub fn sms_section(ui: &Ui, s: &SmsSettings) -> Markup {
    let provider = s.provider.map(|p| p.as_str()).unwrap_or("");
    html! {
        section.card #sms {
            h2 { (ui.t("promos.sms.title")) }
            p.muted { (ui.t("promos.sms.intro")) }
            form method="post" action="/settings/notifications/sms" {
                (csrf_field(ui))
                label for="sms-provider" { (ui.t("promos.sms.provider")) }
                select #sms-provider name="provider" {
                    option value="" selected[provider.is_empty()] { (ui.t("promos.sms.off")) }
                    option value="eskiz" selected[provider == "eskiz"] { "Eskiz" }
                    option value="playmobile" selected[provider == "playmobile"] { "Playmobile" }
                }
                label for="sms-url" { (ui.t("promos.sms.url")) }
                input #sms-url name="url" value=(s.url) placeholder="https://notify.eskiz.uz";
                label for="sms-login" { (ui.t("promos.sms.login")) }
                input #sms-login name="login" value=(s.login) autocomplete="off";
                label for="sms-pass" { (ui.t("promos.sms.password")) }
                input #sms-pass name="password" type="password" autocomplete="new-password"
                    placeholder=(if s.password.is_empty() { "" } else { ui.t("notify.secret_kept") });
                @if !s.password.is_empty() {
                    label.check { input type="checkbox" name="clear_password" value="1"; (ui.t("notify.smtp.clear_password")) }
                }
                label for="sms-sender" { (ui.t("promos.sms.sender")) }
                input #sms-sender name="sender" value=(s.sender) maxlength="20";
                label for="sms-public" { (ui.t("promos.sms.public_url")) }
                input #sms-public name="public_url" value=(s.public_url) placeholder="https://crm.example.uz";
                label for="sms-rate" { (ui.t("promos.sms.per_second")) }
                input #sms-rate name="per_second" inputmode="numeric" value=(s.per_second) size="3";
                label.check { input type="checkbox" name="invite" value="1" checked[s.invite]; " " (ui.t("promos.sms.invite_label")) }
                button.primary type="submit" { (ui.t("common.save")) }
            }
            @if let Some(url) = s.report_url() {
                p.muted #sms-report-url {
                    (ui.t("promos.sms.report_url")) " "
                    code { (url.replace(&s.hook_key, &mask_secret(&s.hook_key))) }
                }
            }
            form.row method="post" action="/settings/notifications/sms/test" {
                (csrf_field(ui))
                input name="to" inputmode="tel" placeholder="+998 90 123 45 67" required;
                button type="submit" { (ui.t("notify.send_test")) }
            }
        }
    }
}

pub async fn save_sms(ui: Ui, actor: Actor, form: web::Form<SmsForm>) -> HttpResponse {
    let r = ui
        .state
        .ctx
        .notifications
        .save_sms(&actor, form.into_inner())
        .await;
    super::notifications::respond(&ui, r.map(|_| ui.t("notify.saved").to_string())).await
}

#[derive(Deserialize)]
pub struct TestSmsForm {
    #[serde(default)]
    to: String,
}

pub async fn test_sms(ui: Ui, actor: Actor, form: web::Form<TestSmsForm>) -> HttpResponse {
    let r = ui
        .state
        .ctx
        .notifications
        .send_test(
            &actor,
            Channel::Sms,
            &form.to,
            std::time::Duration::from_secs(20),
        )
        .await
        .and_then(|row| match row.state.as_str() {
            "sent" => Ok(ui.t("notify.test_sent").to_string()),
            "pending" | "sending" if row.attempts == 0 => {
                Ok(ui.t("notify.test_queued").to_string())
            }
            _ => Err(DomainError::invalid(
                Msg::new("err.notify.test_failed").with("why", row.last_error.unwrap_or_default()),
            )),
        });
    super::notifications::respond(&ui, r).await
}

// ---------------------------------------------------------------------------------------
// Unsubscribe (the signed link in broadcast e-mails)

#[derive(Deserialize)]
pub struct UnsubscribeQuery {
    #[serde(default)]
    c: String,
    #[serde(default)]
    s: String,
}

fn unsubscribe_page(ui: &Ui, q: &UnsubscribeQuery, done: Option<bool>) -> Markup {
    page(
        ui,
        ui.t("promos.unsubscribe.title"),
        html! {
            h1 { (ui.t("promos.unsubscribe.title")) }
            @match done {
                Some(true) => p #unsubscribed { (ui.t("promos.unsubscribe.done")) },
                Some(false) => p.error #unsubscribe-refused { (ui.t("promos.unsubscribe.bad_link")) },
                None => form method="post" action="/unsubscribe" {
                    input type="hidden" name="c" value=(q.c);
                    input type="hidden" name="s" value=(q.s);
                    p { (ui.t("promos.unsubscribe.confirm")) }
                    button.primary type="submit" { (ui.t("promos.unsubscribe.button")) }
                },
            }
        },
    )
}

/// The link's page: a button, so a mail scanner that follows links unsubscribes nobody.
pub async fn unsubscribe_form(ui: Ui, q: web::Query<UnsubscribeQuery>) -> HttpResponse {
    html(unsubscribe_page(&ui, &q, None))
}

pub async fn unsubscribe(ui: Ui, f: web::Form<UnsubscribeQuery>) -> HttpResponse {
    // A link cut short (no customer or signature) is bad input; a wrong signature is a
    // refusal.
    let (Ok(id), false) = (f.c.trim().parse::<i64>(), f.s.is_empty() || f.s.len() > 64) else {
        return html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            unsubscribe_page(&ui, &f, Some(false)),
        );
    };
    let ok = match ui.state.ctx.notifications.unsubscribe(id, f.s.trim()).await {
        Ok(ok) => ok,
        Err(DomainError::NotFound) => false,
        Err(e) => return fail(&ui, e),
    };
    html_status(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        },
        unsubscribe_page(&ui, &f, Some(ok)),
    )
}
