//! Call lists (issue 18): the lists, the operator's queue (power dialing), the admin's
//! outcome codes, the wrap-up of any call, and the team's daily progress.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html, html_status, redirect};
use crate::domain::call_lists::{
    AgentInput, Item as ItemRow, List as ListRow, ListSettings, ListUpdate, NewList,
    OutcomeCode as OutcomeRow, OutcomeInput, Progress, QueueItem, Scripts, Targets,
};
use crate::domain::{Action, Actor, DomainError, Msg};
use crate::model::PhoneNumber;
use crate::web::auth::Ui;
use crate::web::error::{domain_status, json_error, PageError};
use crate::web::layout::{csrf_field, flash, page};

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

fn json_fail(ui: &Ui, e: DomainError) -> HttpResponse {
    json_error(domain_status(&e), e.code(), ui.msg(&e.message()))
}

fn source_label(ui: &Ui, s: &str) -> &'static str {
    match s {
        "segment" => ui.t("call_lists.source.segment"),
        "missed" => ui.t("call_lists.source.missed"),
        "ready" => ui.t("call_lists.source.ready"),
        "overdue" => ui.t("call_lists.source.overdue"),
        "warranty" => ui.t("call_lists.source.warranty"),
        _ => ui.t("call_lists.source.import"),
    }
}

fn assignment_label(ui: &Ui, s: &str) -> &'static str {
    match s {
        "round_robin" => ui.t("call_lists.assign.round_robin"),
        "branch" => ui.t("call_lists.assign.branch"),
        "language" => ui.t("call_lists.assign.language"),
        _ => ui.t("call_lists.assign.pool"),
    }
}

fn state_label(ui: &Ui, s: &str) -> &'static str {
    match s {
        "pending" => ui.t("call_lists.state.pending"),
        "active" => ui.t("call_lists.state.active"),
        "done" => ui.t("call_lists.state.done"),
        "failed" => ui.t("call_lists.state.failed"),
        "paused" => ui.t("call_lists.state.paused"),
        "closed" => ui.t("call_lists.state.closed"),
        _ => ui.t("call_lists.state.open"),
    }
}

fn effect_label(ui: &Ui, s: &str) -> &'static str {
    match s {
        "retry_no_answer" => ui.t("call_lists.effect.retry_no_answer"),
        "retry_busy" => ui.t("call_lists.effect.retry_busy"),
        "callback" => ui.t("call_lists.effect.callback"),
        "wrong" => ui.t("call_lists.effect.wrong"),
        _ => ui.t("call_lists.effect.done"),
    }
}

/// An outcome code's name in the reader's language.
pub fn outcome_name(ui: &Ui, all: &[OutcomeRow], code: &str) -> String {
    all.iter()
        .find(|o| o.code == code)
        .map(|o| o.name(ui.tr.lang.code()).to_string())
        .unwrap_or_else(|| code.to_string())
}

fn number(typed: &str, field: &'static str) -> Result<Option<i64>, DomainError> {
    let t = typed.trim().replace([' ', '\u{a0}'], "");
    if t.is_empty() {
        return Ok(None);
    }
    t.parse().map(Some).map_err(|_| {
        DomainError::invalid(
            Msg::new("err.call_list.number")
                .term("field", field)
                .with("value", typed.trim()),
        )
    })
}

/// The list form as typed (numbers stay text until read). Operators come as repeated
/// `agent` fields (`USER` or `USER:BRANCH`).
#[derive(Default, Clone)]
pub struct ListForm {
    name: String,
    state: String,
    source: String,
    source_ref: String,
    branch_id: String,
    assignment: String,
    agents: Vec<String>,
    daily_cap: String,
    retry_no_answer_minutes: String,
    retry_busy_minutes: String,
    max_attempts: String,
    script_en: String,
    script_ru: String,
    script_uz: String,
    script_uz_cyrl: String,
}

impl ListForm {
    fn parse(pairs: Vec<(String, String)>) -> ListForm {
        let mut f = ListForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "name" => f.name = v,
                "state" => f.state = v,
                "source" => f.source = v,
                "source_ref" => f.source_ref = v,
                "branch_id" => f.branch_id = v,
                "assignment" => f.assignment = v,
                "agent" => f.agents.push(v),
                "daily_cap" => f.daily_cap = v,
                "retry_no_answer_minutes" => f.retry_no_answer_minutes = v,
                "retry_busy_minutes" => f.retry_busy_minutes = v,
                "max_attempts" => f.max_attempts = v,
                "script_en" => f.script_en = v,
                "script_ru" => f.script_ru = v,
                "script_uz" => f.script_uz = v,
                "script_uz_cyrl" => f.script_uz_cyrl = v,
                _ => {}
            }
        }
        f
    }

    fn of(l: &ListRow, agents: &[crate::domain::call_lists::AgentRow]) -> ListForm {
        ListForm {
            name: l.name.clone(),
            state: l.state.clone(),
            source: l.source.clone(),
            source_ref: l.source_ref.map(|v| v.to_string()).unwrap_or_default(),
            branch_id: l.branch_id.map(|v| v.to_string()).unwrap_or_default(),
            assignment: l.assignment.clone(),
            agents: agents
                .iter()
                .map(|a| match a.branch_id {
                    Some(b) => format!("{}:{b}", a.user_id),
                    None => a.user_id.to_string(),
                })
                .collect(),
            daily_cap: l.daily_cap.to_string(),
            retry_no_answer_minutes: l.retry_no_answer_minutes.to_string(),
            retry_busy_minutes: l.retry_busy_minutes.to_string(),
            max_attempts: l.max_attempts.to_string(),
            script_en: l.script_en.clone(),
            script_ru: l.script_ru.clone(),
            script_uz: l.script_uz.clone(),
            script_uz_cyrl: l.script_uz_cyrl.clone(),
        }
    }

    fn agents(&self) -> Result<Vec<AgentInput>, DomainError> {
        let mut out = Vec::new();
        for a in self.agents.iter().filter(|a| !a.trim().is_empty()) {
            let (u, b) = match a.split_once(':') {
                Some((u, b)) => (u, Some(b)),
                None => (a.as_str(), None),
            };
            out.push(AgentInput {
                user_id: number(u, "call_lists.agents")?.unwrap_or_default(),
                branch_id: match b {
                    Some(b) => number(b, "call_lists.branch")?,
                    None => None,
                },
            });
        }
        Ok(out)
    }

    fn settings(&self) -> Result<ListSettings, DomainError> {
        let d = ListSettings::default();
        Ok(ListSettings {
            daily_cap: number(&self.daily_cap, "call_lists.daily_cap")?.unwrap_or(d.daily_cap),
            retry_no_answer_minutes: number(
                &self.retry_no_answer_minutes,
                "call_lists.retry_no_answer",
            )?
            .unwrap_or(d.retry_no_answer_minutes),
            retry_busy_minutes: number(&self.retry_busy_minutes, "call_lists.retry_busy")?
                .unwrap_or(d.retry_busy_minutes),
            max_attempts: number(&self.max_attempts, "call_lists.max_attempts")?
                .unwrap_or(d.max_attempts),
            scripts: Scripts {
                en: self.script_en.clone(),
                ru: self.script_ru.clone(),
                uz: self.script_uz.clone(),
                uz_cyrl: self.script_uz_cyrl.clone(),
            },
        })
    }

    fn new_list(&self) -> Result<NewList, DomainError> {
        Ok(NewList {
            name: self.name.clone(),
            source: self.source.clone(),
            source_ref: number(&self.source_ref, "call_lists.source_ref")?,
            branch_id: number(&self.branch_id, "call_lists.branch")?,
            assignment: Some(self.assignment.clone()).filter(|a| !a.is_empty()),
            agents: self.agents()?,
            settings: self.settings()?,
        })
    }

    fn update(&self) -> Result<ListUpdate, DomainError> {
        Ok(ListUpdate {
            name: self.name.clone(),
            state: self.state.clone(),
            settings: self.settings()?,
            agents: Some(self.agents()?),
        })
    }
}

/// Reads a urlencoded body with repeated fields.
fn pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

async fn workers(ui: &Ui) -> Vec<(i64, String)> {
    ui.state
        .ctx
        .accounts
        .list_users()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u.active && crate::domain::access::can(u.role, Action::WorkCallLists))
        .map(|u| (u.id, u.display_name))
        .collect()
}

fn settings_fields(ui: &Ui, f: &ListForm, users: &[(i64, String)]) -> Markup {
    let num = |name: &str, label: &'static str, v: &str| {
        html! { label { (ui.t(label)) " " input name=(name) inputmode="numeric" value=(v); } }
    };
    html! {
        label { (ui.t("customers.name")) " " input name="name" required maxlength="100" value=(f.name); }
        fieldset {
            legend { (ui.t("call_lists.agents")) }
            @for (id, name) in users {
                @let checked = f.agents.iter().any(|a| a.split(':').next() == Some(&id.to_string()));
                label.check { input type="checkbox" name="agent" value=(id) checked[checked]; " " (name) }
            }
        }
        (num("daily_cap", "call_lists.daily_cap", &f.daily_cap))
        (num("retry_no_answer_minutes", "call_lists.retry_no_answer", &f.retry_no_answer_minutes))
        (num("retry_busy_minutes", "call_lists.retry_busy", &f.retry_busy_minutes))
        (num("max_attempts", "call_lists.max_attempts", &f.max_attempts))
        p.muted { (ui.t("call_lists.script_help")) }
        @for (name, lang, v) in [("script_uz", "O'zbekcha", &f.script_uz), ("script_uz_cyrl", "Ўзбекча", &f.script_uz_cyrl), ("script_ru", "Русский", &f.script_ru), ("script_en", "English", &f.script_en)] {
            label { (ui.t("call_lists.script")) " (" (lang) ") " textarea name=(name) rows="3" maxlength="4000" { (v) } }
        }
    }
}

fn list_page(
    ui: &Ui,
    actor: &Actor,
    all: &[ListRow],
    f: &ListForm,
    users: &[(i64, String)],
    error: Option<&str>,
) -> Markup {
    page(
        ui,
        ui.t("call_lists.title"),
        html! {
            h1 { (ui.t("call_lists.title")) }
            p { a.button.primary href="/queue" { (ui.t("call_lists.queue")) } }
            (flash(error, "error"))
            div.table-wrap #call-lists-region data-live-topics="call_list." { table #call-lists {
                thead { tr {
                    th { (ui.t("customers.name")) } th { (ui.t("call_lists.source_label")) } th { (ui.t("call_lists.assignment")) }
                    th { (ui.t("call_lists.state_label")) }
                    th.num { (ui.t("call_lists.state.pending")) } th.num { (ui.t("call_lists.state.active")) }
                    th.num { (ui.t("call_lists.state.done")) } th.num { (ui.t("call_lists.state.failed")) }
                } }
                tbody { @for l in all {
                    tr data-list=(l.id) {
                        td { a href=(format!("/call-lists/{}", l.id)) { (l.name) } }
                        td { (source_label(ui, &l.source)) }
                        td { (assignment_label(ui, &l.assignment)) }
                        td { (state_label(ui, &l.state)) }
                        td.num data-pending { (l.pending) } td.num { (l.active) } td.num data-done { (l.done) } td.num { (l.failed) }
                    }
                } }
            } }
            @if actor.can(Action::ManageCallLists) {
                form.card #call-list-new method="post" action="/call-lists" {
                    (csrf_field(ui))
                    h2 { (ui.t("call_lists.new")) }
                    label { (ui.t("call_lists.source_label")) " " select name="source" {
                        @for s in crate::domain::call_lists::SOURCES {
                            option value=(s) selected[f.source == s] { (source_label(ui, s)) }
                        }
                    } }
                    label { (ui.t("call_lists.source_ref")) " " input name="source_ref" inputmode="numeric" value=(f.source_ref); }
                    label { (ui.t("call_lists.branch")) " " input name="branch_id" inputmode="numeric" value=(f.branch_id); }
                    label { (ui.t("call_lists.assignment")) " " select name="assignment" {
                        @for s in crate::domain::call_lists::ASSIGNMENTS {
                            option value=(s) selected[f.assignment == s] { (assignment_label(ui, s)) }
                        }
                    } }
                    (settings_fields(ui, f, users))
                    button.primary type="submit" { (ui.t("common.create")) }
                }
            }
        },
    )
}

pub async fn list(ui: Ui, actor: Actor) -> HttpResponse {
    let users = workers(&ui).await;
    match ui.state.ctx.call_lists.lists(&actor).await {
        Ok(all) => html(list_page(
            &ui,
            &actor,
            &all,
            &ListForm {
                max_attempts: "3".into(),
                retry_no_answer_minutes: "120".into(),
                retry_busy_minutes: "15".into(),
                daily_cap: "0".into(),
                ..Default::default()
            },
            &users,
            None,
        )),
        Err(e) => fail(&ui, e),
    }
}

pub async fn create(ui: Ui, actor: Actor, body: web::Bytes) -> HttpResponse {
    let f = ListForm::parse(pairs(&body));
    let r = match f.new_list() {
        Ok(n) => ui.state.ctx.call_lists.create(&actor, n).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(id) => redirect(&format!("/call-lists/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            let all = ui
                .state
                .ctx
                .call_lists
                .lists(&actor)
                .await
                .unwrap_or_default();
            let users = workers(&ui).await;
            html_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                list_page(&ui, &actor, &all, &f, &users, Some(&ui.msg(&m))),
            )
        }
        Err(e) => fail(&ui, e),
    }
}

fn items_table(ui: &Ui, items: &[ItemRow], outcomes: &[OutcomeRow]) -> Markup {
    let clock = ui.clock();
    html! {
        div.table-wrap { table #call-list-items {
            thead { tr {
                th { (ui.t("orders.customer")) } th { (ui.t("customers.phone")) } th { (ui.t("call_lists.state_label")) }
                th { (ui.t("call_lists.assigned_to")) } th.num { (ui.t("call_lists.attempts")) }
                th { (ui.t("call_lists.next_at")) } th { (ui.t("calls.outcome")) } th { (ui.t("call_lists.note")) }
            } }
            tbody { @for i in items {
                tr data-item=(i.id) data-state=(i.state) {
                    td { @if let (Some(id), Some(n)) = (i.customer_id, &i.customer_name) { a href=(format!("/customers/{id}")) { (n) } } @else { "—" }
                         @if let (Some(id), Some(n)) = (i.order_id, &i.order_number) { " " a.badge href=(format!("/orders/{id}")) { (n) } } }
                    td { (PhoneNumber::from_e164_unchecked(i.phone.clone()).display()) }
                    td { (state_label(ui, &i.state)) }
                    td { (i.assigned_name.clone().unwrap_or_else(|| "—".into())) }
                    td.num { (i.attempts) }
                    td { @if i.state == "pending" { (clock.format_datetime(i.next_at)) } }
                    td data-outcome=[i.outcome.as_deref()] { @if let Some(o) = &i.outcome { (outcome_name(ui, outcomes, o)) } }
                    td { (i.note) }
                }
            } }
        } }
    }
}

async fn card(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    form: Option<&ListForm>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let cl = &ui.state.ctx.call_lists;
    let l = match cl.get(actor, id).await {
        Ok(l) => l,
        Err(e) => return fail(ui, e),
    };
    let items = cl.items(actor, id, None, 500, 0).await.unwrap_or_default();
    let outcomes = cl.outcomes().await.unwrap_or_default();
    let users = workers(ui).await;
    let f = form
        .cloned()
        .unwrap_or_else(|| ListForm::of(&l.list, &l.agents));
    let row = &l.list;
    html_status(
        status,
        page(
            ui,
            &row.name,
            html! {
                h1 { (row.name) }
                (flash(error, "error"))
                p #call-list-summary {
                    (source_label(ui, &row.source)) " · " (assignment_label(ui, &row.assignment)) " · "
                    span #call-list-state { (state_label(ui, &row.state)) }
                    " · " (ui.t("call_lists.agents")) ": "
                    @if l.agents.is_empty() { (ui.t("call_lists.everyone")) }
                    @else { (l.agents.iter().map(|a| a.display_name.clone()).collect::<Vec<_>>().join(", ")) }
                }
                p { a.button.primary href="/queue" { (ui.t("call_lists.queue")) } }
                @if actor.can(Action::ManageCallLists) {
                    details.card {
                        summary { (ui.t("common.edit")) }
                        form #call-list-edit method="post" action=(format!("/call-lists/{id}")) {
                            (csrf_field(ui))
                            label { (ui.t("call_lists.state_label")) " " select name="state" {
                                @for s in ["active", "paused", "closed"] {
                                    option value=(s) selected[f.state == s] { (state_label(ui, s)) }
                                }
                            } }
                            (settings_fields(ui, &f, &users))
                            button.primary type="submit" { (ui.t("common.save")) }
                        }
                    }
                }
                div #call-list-items-region data-live-topics="call_list." { (items_table(ui, &items, &outcomes)) }
            },
        ),
    )
}

pub async fn show(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    card(&ui, &actor, path.into_inner(), None, None, StatusCode::OK).await
}

pub async fn update(ui: Ui, actor: Actor, path: web::Path<i64>, body: web::Bytes) -> HttpResponse {
    let id = path.into_inner();
    let f = ListForm::parse(pairs(&body));
    let r = match f.update() {
        Ok(u) => ui.state.ctx.call_lists.update(&actor, id, u).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => redirect(&format!("/call-lists/{id}")),
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

fn progress_line(ui: &Ui, p: &Progress) -> Markup {
    let t = &p.targets;
    let cell = |label: &'static str, id: &str, v: i64, target: i64| {
        html! {
            span.progress-cell data-metric=(id) {
                (ui.t(label)) ": " strong { (v) } @if target > 0 { " / " (target) }
            }
            " "
        }
    };
    html! {
        (cell("progress.calls", "calls", p.counts.calls, t.calls))
        (cell("progress.reached", "reached", p.counts.reached.max(p.reached_outcomes), t.reached))
        (cell("progress.talk", "talk", p.counts.talk_seconds / 60, t.talk_minutes))
        (cell("progress.orders", "orders", p.counts.orders, t.orders))
        (cell("progress.payments", "payments", p.counts.payments, t.payments))
    }
}

/// The operator's queue: the item they hold (if any) with its card and script, the call
/// button, the outcome form, the pause switch and their progress today. The script in
/// queue.js asks for the next item and dials it.
pub async fn queue(ui: Ui, actor: Actor) -> HttpResponse {
    let cl = &ui.state.ctx.call_lists;
    let outcomes = cl.outcomes().await.unwrap_or_default();
    let held = cl.held(actor.user_id).await.ok().flatten();
    let item = match held {
        Some(id) => cl
            .queue_item(&actor, id, actor.language.code().to_string())
            .await
            .ok(),
        None => None,
    };
    let mine = cl
        .progress(&actor, None, Some(actor.user_id))
        .await
        .unwrap_or_default();
    let lang = ui.tr.lang.code();
    html(page(
        &ui,
        ui.t("call_lists.queue"),
        html! {
            h1 { (ui.t("call_lists.queue")) }
            section #queue-progress.card data-live-topics="progress." {
                h2 { (ui.t("progress.today")) }
                @for p in &mine { (progress_line(&ui, p)) }
            }
            section #queue.card data-call-id=[item.as_ref().and_then(|q| q.item.call_id.as_deref())]
                data-item=[item.as_ref().map(|q| q.item.id)]
                data-t-empty=(ui.t("call_lists.empty")) data-t-calling=(ui.t("call_lists.calling"))
                data-t-ended=(ui.t("call_lists.call_ended")) data-t-saved=(ui.t("call_lists.saved"))
                data-t-next-in=(ui.t("call_lists.next_in")) data-t-attempt=(ui.t("call_lists.attempt")) {
                div.queue-controls {
                    button #queue-next type="button" { (ui.t("call_lists.next")) }
                    " "
                    button #queue-call.primary type="button" disabled[item.is_none()] { (ui.t("call_lists.call")) }
                    " "
                    button #queue-pause type="button" aria-pressed="true" data-t-pause=(ui.t("call_lists.pause")) data-t-resume=(ui.t("call_lists.resume")) { (ui.t("call_lists.resume")) }
                    " "
                    button #queue-skip type="button" disabled[item.is_none()] { (ui.t("call_lists.skip")) }
                    " " span #queue-status.muted role="status" {}
                }
                div #queue-item {
                    @if let Some(q) = &item { (item_card(&ui, q)) } @else { p.muted #queue-empty { (ui.t("call_lists.press_next")) } }
                }
                form #queue-outcome hidden[item.is_none()] {
                    h3 { (ui.t("call_lists.outcome_title")) }
                    label { (ui.t("calls.outcome")) " " select name="outcome" required {
                        @for o in outcomes.iter().filter(|o| o.active) {
                            option value=(o.code) data-effect=(o.effect) { (o.name(lang)) }
                        }
                    } }
                    label #queue-callback-label { (ui.t("call_lists.callback_at")) " " input type="datetime-local" name="callback_at"; }
                    label { (ui.t("call_lists.note")) " " textarea name="note" rows="2" maxlength="4000" {} }
                    button.primary type="submit" { (ui.t("call_lists.save_outcome")) }
                }
            }
        },
    ))
}

fn item_card(ui: &Ui, q: &QueueItem) -> Markup {
    let i = &q.item;
    html! {
        div.queue-card data-item=(i.id) data-list=(i.list_id) data-phone=(i.phone) {
            p.muted { (i.list_name) " · " (ui.t("call_lists.attempt")) " " (i.attempts + 1) " / " (q.max_attempts) }
            h2 #queue-customer { @if let (Some(id), Some(n)) = (i.customer_id, &i.customer_name) { a href=(format!("/customers/{id}")) { (n) } } @else { (ui.t("calls.unknown_number")) } }
            p #queue-phone { (PhoneNumber::from_e164_unchecked(i.phone.clone()).display()) }
            p #queue-balance { (ui.t("desk.to_pay")) ": " (q.card.balance_text) }
            @if !q.card.orders.is_empty() {
                p { @for o in &q.card.orders { a.badge href=(format!("/orders/{}", o.id)) { (o.number) } " " } }
            }
            @if !i.note.is_empty() { p.muted { (ui.t("call_lists.note")) ": " (i.note) } }
            @if !q.script.is_empty() { blockquote #queue-script.script { (q.script) } }
        }
    }
}

fn render_item(ui: &Ui, q: &QueueItem) -> serde_json::Value {
    serde_json::json!({
        "item": q,
        "html": item_card(ui, q).into_string(),
    })
}

pub async fn next(ui: Ui, actor: Actor) -> HttpResponse {
    match ui.state.ctx.call_lists.next(&actor).await {
        Ok(Some(q)) => HttpResponse::Ok().json(render_item(&ui, &q)),
        Ok(None) => HttpResponse::Ok()
            .json(serde_json::json!({"item": null, "message": ui.t("call_lists.empty")})),
        Err(e) => json_fail(&ui, e),
    }
}

pub async fn dial(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .call_lists
        .dial(&actor, path.into_inner())
        .await
    {
        Ok(call_id) => HttpResponse::Accepted().json(serde_json::json!({
            "call_id": call_id,
            "message": ui.t("trunk.dialling"),
        })),
        Err(e) => json_fail(&ui, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct OutcomeForm {
    outcome: String,
    note: String,
    callback_at: String,
    follow_up: String,
    call_id: String,
}

impl OutcomeForm {
    fn input(&self) -> OutcomeInput {
        OutcomeInput {
            outcome: self.outcome.clone(),
            note: self.note.clone(),
            callback_at: Some(self.callback_at.clone()).filter(|v| !v.trim().is_empty()),
            follow_up: Some(self.follow_up.clone()).filter(|v| !v.trim().is_empty()),
        }
    }
}

pub async fn outcome(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<OutcomeForm>,
) -> HttpResponse {
    match ui
        .state
        .ctx
        .call_lists
        .record(&actor, path.into_inner(), f.input())
        .await
    {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"message": ui.t("call_lists.saved")})),
        Err(e) => json_fail(&ui, e),
    }
}

pub async fn release(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .call_lists
        .release(&actor, path.into_inner())
        .await
    {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"message": ui.t("call_lists.saved")})),
        Err(e) => json_fail(&ui, e),
    }
}

/// The wrap-up form of the screen-pop card (calls.js) posts here.
pub async fn wrap_up(ui: Ui, actor: Actor, f: web::Form<OutcomeForm>) -> HttpResponse {
    if f.call_id.trim().is_empty() {
        return json_fail(&ui, DomainError::NotFound);
    }
    match ui
        .state
        .ctx
        .call_lists
        .wrap_up(&actor, f.call_id.trim(), f.input())
        .await
    {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"message": ui.t("call_lists.saved")})),
        Err(e) => json_fail(&ui, e),
    }
}

fn outcomes_page(ui: &Ui, all: &[OutcomeRow], error: Option<&str>) -> Markup {
    let fields = |o: Option<&OutcomeRow>| {
        let v = |f: fn(&OutcomeRow) -> String| o.map(f).unwrap_or_default();
        html! {
            @if let Some(o) = o { input type="hidden" name="code" value=(o.code); }
            @else { label { (ui.t("call_lists.code")) " " input name="code" required maxlength="40" pattern="[a-z0-9_]+"; } }
            label { "O'zbekcha " input name="name_uz" required maxlength="100" value=(v(|o| o.name_uz.clone())); }
            label { "Ўзбекча " input name="name_uz_cyrl" required maxlength="100" value=(v(|o| o.name_uz_cyrl.clone())); }
            label { "Русский " input name="name_ru" required maxlength="100" value=(v(|o| o.name_ru.clone())); }
            label { "English " input name="name_en" required maxlength="100" value=(v(|o| o.name_en.clone())); }
            label { (ui.t("call_lists.effect_label")) " " select name="effect" {
                @for e in crate::domain::call_lists::EFFECTS {
                    option value=(e) selected[o.is_some_and(|o| o.effect == e)] { (effect_label(ui, e)) }
                }
            } }
            label.check { input type="checkbox" name="reached" value="1" checked[o.is_some_and(|o| o.reached)]; " " (ui.t("call_lists.reached")) }
            label.check { input type="checkbox" name="active" value="1" checked[o.is_none_or(|o| o.active)]; " " (ui.t("call_lists.active")) }
            label { (ui.t("call_lists.position")) " " input name="position" inputmode="numeric" value=(o.map(|o| o.position).unwrap_or(0)); }
        }
    };
    page(
        ui,
        ui.t("call_lists.outcomes"),
        html! {
            h1 { (ui.t("call_lists.outcomes")) }
            (flash(error, "error"))
            div.table-wrap { table #call-outcomes {
                thead { tr { th { (ui.t("call_lists.code")) } th { (ui.t("customers.name")) } th { (ui.t("call_lists.effect_label")) } th { (ui.t("call_lists.reached")) } th {} } }
                tbody { @for o in all {
                    tr data-code=(o.code) {
                        td { code { (o.code) } } td { (o.name(ui.tr.lang.code())) } td { (effect_label(ui, &o.effect)) }
                        td { @if o.reached { "✓" } }
                        td { details { summary { (ui.t("common.edit")) }
                            form method="post" action="/call-outcomes" { (csrf_field(ui)) (fields(Some(o))) button.primary type="submit" { (ui.t("common.save")) } }
                        } }
                    }
                } }
            } }
            form.card #call-outcome-new method="post" action="/call-outcomes" {
                (csrf_field(ui))
                h2 { (ui.t("call_lists.new_outcome")) }
                (fields(None))
                button.primary type="submit" { (ui.t("common.create")) }
            }
        },
    )
}

pub async fn outcomes(ui: Ui) -> HttpResponse {
    match ui.state.ctx.call_lists.outcomes().await {
        Ok(all) => html(outcomes_page(&ui, &all, None)),
        Err(e) => fail(&ui, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct OutcomeCodeForm {
    code: String,
    name_en: String,
    name_ru: String,
    name_uz: String,
    name_uz_cyrl: String,
    effect: String,
    reached: Option<String>,
    active: Option<String>,
    position: String,
}

pub async fn save_outcome(ui: Ui, actor: Actor, f: web::Form<OutcomeCodeForm>) -> HttpResponse {
    let r = match number(&f.position, "call_lists.position") {
        Ok(position) => {
            let o = OutcomeRow {
                id: 0,
                code: f.code.clone(),
                name_en: f.name_en.clone(),
                name_ru: f.name_ru.clone(),
                name_uz: f.name_uz.clone(),
                name_uz_cyrl: f.name_uz_cyrl.clone(),
                effect: f.effect.clone(),
                reached: f.reached.is_some(),
                position: position.unwrap_or(0),
                active: f.active.is_some(),
            };
            ui.state.ctx.call_lists.save_outcome(&actor, o).await
        }
        Err(e) => Err(e),
    };
    match r {
        Ok(_) => redirect("/call-outcomes"),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            let all = ui.state.ctx.call_lists.outcomes().await.unwrap_or_default();
            html_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                outcomes_page(&ui, &all, Some(&ui.msg(&m))),
            )
        }
        Err(e) => fail(&ui, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DayQuery {
    day: String,
}

fn progress_page(
    ui: &Ui,
    actor: &Actor,
    day: &str,
    rows: &[Progress],
    outcomes: &[OutcomeRow],
    users: &[(i64, String)],
    error: Option<&str>,
) -> Markup {
    page(
        ui,
        ui.t("progress.title"),
        html! {
            h1 { (ui.t("progress.title")) }
            (flash(error, "error"))
            form method="get" action="/progress" {
                label { (ui.t("progress.day")) " " input type="date" name="day" value=(day); }
                " " button type="submit" { (ui.t("progress.show")) }
            }
            div.table-wrap #progress-region data-live-topics="progress. call.ended order. payment." { table #progress {
                thead { tr {
                    th { (ui.t("progress.operator")) } th.num { (ui.t("progress.calls")) } th.num { (ui.t("progress.reached")) }
                    th.num { (ui.t("progress.talk")) } th.num { (ui.t("progress.orders")) } th.num { (ui.t("progress.payments")) }
                    th { (ui.t("progress.outcomes")) }
                } }
                tbody { @for p in rows {
                    @let t = &p.targets;
                    @let of = |v: i64, target: i64| if target > 0 { format!("{v} / {target}") } else { v.to_string() };
                    tr data-user=(p.user_id) {
                        td { (p.name) }
                        td.num data-metric="calls" { (of(p.counts.calls, t.calls)) }
                        td.num data-metric="reached" { (of(p.counts.reached.max(p.reached_outcomes), t.reached)) }
                        td.num data-metric="talk" { (of(p.counts.talk_seconds / 60, t.talk_minutes)) }
                        td.num data-metric="orders" { (of(p.counts.orders, t.orders)) }
                        td.num data-metric="payments" { (of(p.counts.payments, t.payments)) }
                        td data-metric="outcomes" { @for (k, v) in &p.counts.outcomes { span.badge data-outcome=(k) { (outcome_name(ui, outcomes, k)) ": " (v) } " " } }
                    }
                } }
            } }
            @if actor.can(Action::ManageCallLists) {
                form.card #progress-targets method="post" action="/progress/targets" {
                    (csrf_field(ui))
                    h2 { (ui.t("progress.targets")) }
                    label { (ui.t("progress.operator")) " " select name="user_id" {
                        option value="0" { (ui.t("progress.everyone")) }
                        @for (id, n) in users { option value=(id) { (n) } }
                    } }
                    @for (name, label) in [("calls", "progress.calls"), ("reached", "progress.reached"), ("talk_minutes", "progress.talk"), ("orders", "progress.orders"), ("payments", "progress.payments")] {
                        label { (ui.t(label)) " " input name=(name) inputmode="numeric" value="0"; }
                    }
                    button.primary type="submit" { (ui.t("common.save")) }
                }
            }
        },
    )
}

async fn progress_view(
    ui: &Ui,
    actor: &Actor,
    day: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let cl = &ui.state.ctx.call_lists;
    let rows = match cl.progress(actor, Some(day), None).await {
        Ok(r) => r,
        Err(DomainError::Invalid(m)) => {
            return progress_view_err(ui, actor, &ui.msg(&m)).await;
        }
        Err(e) => return fail(ui, e),
    };
    let outcomes = cl.outcomes().await.unwrap_or_default();
    let users = workers(ui).await;
    let day = rows
        .first()
        .map(|p| p.day.clone())
        .unwrap_or_else(|| day.to_string());
    html_status(
        status,
        progress_page(ui, actor, &day, &rows, &outcomes, &users, error),
    )
}

async fn progress_view_err(ui: &Ui, actor: &Actor, msg: &str) -> HttpResponse {
    let users = workers(ui).await;
    html_status(
        StatusCode::BAD_REQUEST,
        progress_page(ui, actor, "", &[], &[], &users, Some(msg)),
    )
}

pub async fn progress(ui: Ui, actor: Actor, q: web::Query<DayQuery>) -> HttpResponse {
    progress_view(&ui, &actor, &q.day, None, StatusCode::OK).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TargetsForm {
    user_id: String,
    calls: String,
    reached: String,
    talk_minutes: String,
    orders: String,
    payments: String,
}

pub async fn save_targets(ui: Ui, actor: Actor, f: web::Form<TargetsForm>) -> HttpResponse {
    let parsed = (|| -> Result<(i64, Targets), DomainError> {
        let n = |v: &str, field| number(v, field).map(|x| x.unwrap_or(0));
        Ok((
            n(&f.user_id, "progress.operator")?,
            Targets {
                calls: n(&f.calls, "progress.calls")?,
                reached: n(&f.reached, "progress.reached")?,
                talk_minutes: n(&f.talk_minutes, "progress.talk")?,
                orders: n(&f.orders, "progress.orders")?,
                payments: n(&f.payments, "progress.payments")?,
            },
        ))
    })();
    let r = match parsed {
        Ok((u, t)) => ui.state.ctx.call_lists.set_targets(&actor, u, t).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => redirect("/progress"),
        Err(DomainError::Invalid(m)) => {
            progress_view(
                &ui,
                &actor,
                "",
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

/// The customer's call outcomes (call lists and wrap-ups), newest first: part of their
/// timeline on the customer card.
pub async fn customer_section(ui: &Ui, actor: &Actor, customer: i64) -> Markup {
    if !actor.can(Action::ViewCalls) && !actor.can(Action::WorkCallLists) {
        return html! {};
    }
    let cl = &ui.state.ctx.call_lists;
    let rows = cl.for_customer(customer).await.unwrap_or_default();
    let outcomes = cl.outcomes().await.unwrap_or_default();
    let clock = ui.clock();
    html! {
        section.card #customer-outcomes data-live-topics="call.wrapped call_list.item" {
            h2 { (ui.t("call_lists.customer_outcomes")) }
            @if rows.is_empty() { p.muted { (ui.t("calls.none")) } } @else {
                ol.timeline { @for r in &rows {
                    li data-outcome=(r.outcome) {
                        time { (clock.format_datetime(r.at)) } " · "
                        strong { (outcome_name(ui, &outcomes, &r.outcome)) }
                        @if let Some(u) = &r.user_name { " · " (u) }
                        @if let Some(f) = r.follow_up { " · " (ui.t("call_lists.follow_up")) " " (clock.format_datetime(f)) }
                        @if !r.note.is_empty() { br; span.note { (r.note) } }
                    }
                } }
            }
        }
    }
}

/// The wrap-ups of these calls, as the call log shows them: (outcome name, note).
pub async fn wraps_for(
    ui: &Ui,
    rows: &[crate::domain::calls::CallRow],
) -> std::collections::HashMap<String, (String, String)> {
    let cl = &ui.state.ctx.call_lists;
    let ids = rows.iter().map(|k| k.call_id.clone()).collect();
    let found = cl.for_calls(ids).await.unwrap_or_default();
    if found.is_empty() {
        return Default::default();
    }
    let outcomes = cl.outcomes().await.unwrap_or_default();
    found
        .into_iter()
        .map(|(k, o)| (k, (outcome_name(ui, &outcomes, &o.outcome), o.note)))
        .collect()
}
