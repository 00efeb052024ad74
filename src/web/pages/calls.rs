//! Calls: the call log with filters and CSV, the callback list of missed calls, the
//! sections on the customer card and the order page, the dashboard's call counts, and
//! the live call status in the header and the users list.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::core_ui::{csv, pager};
use super::{html, html_status, redirect};
use crate::domain::calls::{CallFilter, CallRow, LiveCall, MissedRow, Outcome};
use crate::domain::{Action, Actor, DomainError};
use crate::model::PhoneNumber;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

const PER_PAGE: i64 = 50;

/// A number as a link that dials (`tel:`) and that the click-to-call script turns into a
/// call button (`data-dial`).
pub fn phone_link(number: &str) -> Markup {
    let shown = if number.starts_with('+') {
        PhoneNumber::from_e164_unchecked(number.to_string()).display()
    } else {
        number.to_string()
    };
    html! { a.phone href=(format!("tel:{number}")) data-dial=(number) { (shown) } }
}

/// Time of a call (ms) for display.
pub fn call_time(clock: &crate::domain::clock::ShopClock, ms: i64) -> String {
    clock.format_datetime(ms.div_euclid(1000))
}

/// `m:ss` or `h:mm:ss`.
pub fn duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "—".into();
    };
    let s = ms.max(0) / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

pub fn outcome_label(ui: &Ui, o: &str) -> &'static str {
    ui.tr.t(match o {
        "answered" => "calls.result.answered",
        "missed" => "calls.result.missed",
        "busy" => "calls.result.busy",
        "no_answer" => "calls.result.no_answer",
        "cancelled" => "calls.result.cancelled",
        "failed" => "calls.result.failed",
        _ => "calls.result.ringing",
    })
}

pub fn direction_label(ui: &Ui, d: &str) -> &'static str {
    ui.tr.t(match d {
        "inbound" => "calls.dir.inbound",
        "outbound" => "calls.dir.outbound",
        _ => "calls.dir.internal",
    })
}

use crate::domain::filters::blank;
pub use crate::domain::filters::CallQuery;

/// The filter in the shop's calendar and the log's number form (parsed in the domain).
pub fn call_filter(
    calls: &crate::domain::calls::Calls,
    q: &CallQuery,
) -> Result<CallFilter, DomainError> {
    q.filter(PER_PAGE, &|v| calls.normalise_typed(v), &calls.clock())
}

fn query_string(q: &CallQuery) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("direction", &q.direction),
        ("outcome", &q.outcome),
        ("operator", &q.operator),
        ("number", &q.number),
    ] {
        if let Some(v) = blank(v) {
            parts.push(format!("{k}={}", urlencoding(v)));
        }
    }
    parts.join("&")
}

fn urlencoding(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

fn bad_request(ui: &Ui, msg: &str) -> HttpResponse {
    html_status(
        StatusCode::BAD_REQUEST,
        page(
            ui,
            ui.t("calls.title"),
            html! {
                h1 { (ui.t("calls.title")) }
                (flash(Some(msg), "error"))
                p { a href="/calls" { (ui.t("calls.reset_filters")) } }
            },
        ),
    )
}

/// The call table, shared by the log, the customer card and the order page.
pub fn calls_table(ui: &Ui, rows: &[CallRow], id: &str) -> Markup {
    calls_table_with(ui, rows, id, &Default::default())
}

/// The call table with each call's wrap-up (outcome name, note) under its outcome.
pub fn calls_table_with(
    ui: &Ui,
    rows: &[CallRow],
    id: &str,
    wraps: &std::collections::HashMap<String, (String, String)>,
) -> Markup {
    // Recordings (issue 16): a player where the reader may listen and the call has one.
    let listen = ui
        .actor
        .as_ref()
        .is_some_and(|a| a.can(Action::ListenRecordings))
        && rows.iter().any(|k| k.recorded);
    html! {
        div.table-wrap { table.calls id=(id) {
            thead { tr {
                th { (ui.t("calls.time")) } th { (ui.t("calls.direction")) } th { (ui.t("calls.from")) } th { (ui.t("calls.to")) }
                th { (ui.t("orders.customer")) } th { (ui.t("calls.answered_by")) } th { (ui.t("calls.outcome")) }
                th.num { (ui.t("calls.ring")) } th.num { (ui.t("calls.talk")) }
                @if listen { th { (ui.t("recording.column")) } }
            } }
            tbody { @for k in rows {
                tr data-call-id=(k.call_id) class=(format!("outcome-{}", k.outcome)) {
                    td { (call_time(&ui.clock(), k.started_ms)) }
                    td { (direction_label(ui, &k.direction)) }
                    td { (phone_link(if k.direction != "outbound" { &k.party_number } else { &k.from_number })) }
                    td { (phone_link(if k.direction == "outbound" { &k.party_number } else { &k.to_number }))
                         @if k.ring_group.is_some() || k.extensions.len() > 1 { " " span.muted { "(" (k.extensions.join(", ")) ")" } } }
                    td { @if let (Some(id), Some(n)) = (k.customer_id, &k.customer_name) { a href=(format!("/customers/{id}")) { (n) } }
                         @for o in &k.open_orders { " " a.badge href=(format!("/orders/{}", o.id)) { (o.number) } } }
                    td { (k.answered_user_name.clone().or_else(|| k.answered_ext.clone()).unwrap_or_else(|| "—".into()))
                         @if let Some(by) = &k.transferred_by {
                             " " span.muted.call-transferred data-transferred-from=(k.transferred_from.as_deref().unwrap_or("")) {
                                 (ui.t("calls.transferred_by_x").replace("{name}", by))
                             }
                         } }
                    td { span class=(format!("badge call-{}", k.outcome)) { (outcome_label(ui, &k.outcome)) }
                         @if let Some((name, note)) = wraps.get(&k.call_id) {
                             " " span.call-wrap data-wrap=(name) { (name) } @if !note.is_empty() { br; span.muted.call-wrap-note { (note) } }
                         } }
                    td.num { (duration(k.ring_ms)) }
                    td.num { (duration(k.talk_ms)) }
                    @if listen { td.recording { @if k.recorded {
                        (super::recordings::player(ui, k.id))
                    } } }
                }
            } }
        } }
    }
}

pub async fn list(ui: Ui, actor: Actor, q: web::Query<CallQuery>) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let f = match call_filter(&ctx.calls, &q) {
        Ok(f) => f,
        Err(DomainError::Invalid(m)) => return bad_request(&ui, &ui.msg(&m)),
        Err(e) => return fail(&ui, e),
    };
    let pg = f.offset / f.limit.max(1);
    let (rows, total) = match ctx.calls.list(&actor, f).await {
        Ok(r) => r,
        Err(e) => return fail(&ui, e),
    };
    let users = ctx.accounts.list_users().await.unwrap_or_default();
    let wraps = super::call_lists::wraps_for(&ui, &rows).await;
    let qs = query_string(&q);
    let sel = |v: &Option<String>, x: &str| blank(v) == Some(x);
    html(page(
        &ui,
        ui.t("calls.title"),
        html! {
            div.page-head {
                h1 { (ui.t("calls.title")) }
                div {
                    a.button href="/calls/missed" { (ui.t("calls.missed_title")) }
                    " " a.button href=(format!("/calls/export.csv?{qs}")) { "CSV" }
                }
            }
            form.filters #call-filters method="get" action="/calls" {
                input type="search" name="number" value=(blank(&q.number).unwrap_or("")) placeholder=(ui.t("calls.number")) aria-label=(ui.t("calls.number"));
                select name="direction" aria-label=(ui.t("calls.direction")) {
                    option value="" { (ui.t("calls.any_direction")) }
                    @for d in ["internal", "inbound", "outbound"] { option value=(d) selected[sel(&q.direction, d)] { (direction_label(&ui, d)) } }
                }
                select name="outcome" aria-label=(ui.t("calls.outcome")) {
                    option value="" { (ui.t("calls.any_outcome")) }
                    @for o in Outcome::ALL { option value=(o.code()) selected[sel(&q.outcome, o.code())] { (outcome_label(&ui, o.code())) } }
                }
                select name="operator" aria-label=(ui.t("calls.answered_by")) {
                    option value="" { (ui.t("calls.any_operator")) }
                    @for u in users.iter().filter(|u| u.active) { option value=(u.id) selected[sel(&q.operator, &u.id.to_string())] { (u.display_name) } }
                }
                // The dates fold away like the orders list's; open when one is set.
                details.more-filters open[blank(&q.from).is_some() || blank(&q.to).is_some()] {
                    summary { (ui.t("desk.more_filters")) }
                    div.more-filters-body {
                        label { (ui.t("calls.from_date")) " " input type="date" name="from" value=(blank(&q.from).unwrap_or("")); }
                        label { (ui.t("calls.to_date")) " " input type="date" name="to" value=(blank(&q.to).unwrap_or("")); }
                    }
                }
                button type="submit" { (ui.t("common.filter")) }
            }
            div #calls-region data-live-topics="call.ended call.answered call.wrapped" {
                (calls_table_with(&ui, &rows, "calls-table", &wraps))
                (pager(&ui, &if qs.is_empty() { "/calls".to_string() } else { format!("/calls?{qs}") }, pg, PER_PAGE, total))
            }
        },
    ))
}

pub async fn export_csv(ui: Ui, actor: Actor, q: web::Query<CallQuery>) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let mut f = match call_filter(&ctx.calls, &q) {
        Ok(f) => f,
        Err(DomainError::Invalid(m)) => return bad_request(&ui, &ui.msg(&m)),
        Err(e) => return fail(&ui, e),
    };
    let mut all = Vec::new();
    f.limit = 1000;
    f.offset = 0;
    // At most 100 000 rows: a year of a busy shop.
    for _ in 0..100 {
        match ctx.calls.list(&actor, f.clone()).await {
            Ok((rows, _)) => {
                let n = rows.len() as i64;
                all.extend(rows);
                if n < f.limit {
                    break;
                }
                f.offset += f.limit;
            }
            Err(e) => return fail(&ui, e),
        }
    }
    let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let clock = ui.clock();
    let body = csv(
        &[
            "started",
            "direction",
            "from",
            "to",
            "party",
            "ring_group",
            "extensions",
            "answered_ext",
            "answered_by",
            "customer_id",
            "customer",
            "open_orders",
            "answered",
            "ended",
            "ring_ms",
            "talk_ms",
            "outcome",
            "cause",
            "call_id",
        ],
        all.iter().map(|k| {
            vec![
                call_time(&clock, k.started_ms),
                k.direction.clone(),
                k.from_number.clone(),
                k.to_number.clone(),
                k.party_number.clone(),
                k.ring_group.clone().unwrap_or_default(),
                k.extensions.join(" "),
                k.answered_ext.clone().unwrap_or_default(),
                k.answered_user_name.clone().unwrap_or_default(),
                opt(k.customer_id),
                k.customer_name.clone().unwrap_or_default(),
                k.open_orders
                    .iter()
                    .map(|o| o.number.clone())
                    .collect::<Vec<_>>()
                    .join(" "),
                k.answered_ms
                    .map(|t| call_time(&clock, t))
                    .unwrap_or_default(),
                k.ended_ms.map(|t| call_time(&clock, t)).unwrap_or_default(),
                opt(k.ring_ms),
                opt(k.talk_ms),
                k.outcome.clone(),
                k.cause.clone().unwrap_or_default(),
                k.call_id.clone(),
            ]
        }),
    );
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"calls.csv\""))
        .body(body)
}

#[derive(Deserialize)]
pub struct MissedQuery {
    all: Option<String>,
    page: Option<String>,
}

pub fn missed_table(ui: &Ui, rows: &[MissedRow]) -> Markup {
    let can_mark = ui
        .actor
        .as_ref()
        .is_some_and(|a| a.can(Action::HandleMissedCalls));
    html! {
        div.table-wrap { table #missed-table {
            thead { tr {
                th { (ui.t("calls.number")) } th { (ui.t("orders.customer")) } th.num { (ui.t("calls.attempts")) }
                th { (ui.t("calls.last_attempt")) } th { (ui.t("calls.state")) } th {}
            } }
            tbody { @for m in rows {
                tr data-missed-number=(m.number) class=(if m.resolved_ms.is_some() { "resolved" } else { "open" }) {
                    td { (phone_link(&m.number)) }
                    td { @if let (Some(id), Some(n)) = (m.customer_id, &m.customer_name) { a href=(format!("/customers/{id}")) { (n) } } @else { "—" } }
                    td.num { (m.attempts) }
                    td { (call_time(&ui.clock(), m.last_ms)) }
                    td { @match (&m.resolved_how, m.resolved_ms) {
                        (Some(how), Some(at)) => {
                            span.badge { (ui.t(match how.as_str() {
                                "called_back" => "calls.resolved_called_back",
                                "done" => "calls.resolved_done",
                                _ => "calls.resolved_got_through",
                            })) }
                            " " (call_time(&ui.clock(), at)) @if let Some(by) = &m.resolved_by { " · " (by) }
                        }
                        _ => { span.badge.badge-danger { (ui.t("calls.to_call_back")) } }
                    } }
                    td {
                        a href=(format!("/calls?number={}", urlencoding(&m.number))) { (ui.t("calls.history")) }
                        @if m.resolved_ms.is_none() && can_mark {
                            " " form.inline method="post" action=(format!("/calls/missed/{}/done", m.id)) {
                                (csrf_field(ui)) button.link type="submit" data-missed-done=(m.id) { (ui.t("calls.mark_done")) }
                            }
                        }
                    }
                }
            } }
        } }
    }
}

pub async fn missed(ui: Ui, actor: Actor, q: web::Query<MissedQuery>) -> HttpResponse {
    let all = q.all.as_deref() == Some("1");
    let pg = match q.page.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => 0,
        Some(p) => match p.parse::<i64>() {
            Ok(n) if (0..=1_000_000).contains(&n) => n,
            _ => return bad_request(&ui, &format!("page: expected a whole number, got {p:?}")),
        },
    };
    let (rows, open) = match ui
        .state
        .ctx
        .calls
        .missed(&actor, all, PER_PAGE, pg * PER_PAGE)
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(&ui, e),
    };
    html(page(
        &ui,
        ui.t("calls.missed_title"),
        html! {
            div.page-head {
                h1 { (ui.t("calls.missed_title")) " " span.badge #missed-open { (open) } }
                div {
                    @if all { a.button href="/calls/missed" { (ui.t("calls.only_open")) } }
                    @else { a.button href="/calls/missed?all=1" { (ui.t("calls.show_resolved")) } }
                    " " a.button href="/calls" { (ui.t("calls.title")) }
                }
            }
            p.muted { (ui.t("calls.missed_help")) }
            div #missed-region data-live-topics="call.missed" {
                (missed_table(&ui, &rows))
                nav.pager {
                    @if pg > 0 { a href=(format!("/calls/missed?page={}{}", pg - 1, if all { "&all=1" } else { "" })) { "← " (ui.t("common.prev")) } }
                    @if rows.len() as i64 == PER_PAGE { a href=(format!("/calls/missed?page={}{}", pg + 1, if all { "&all=1" } else { "" })) { (ui.t("common.next")) " →" } }
                }
            }
        },
    ))
}

/// The "done" button of a missed-call entry: back to the list.
pub async fn mark_missed_done(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    let Ok(id) = path.into_inner().parse::<i64>() else {
        return fail(&ui, DomainError::NotFound);
    };
    match ui.state.ctx.calls.mark_missed_done(&actor, id).await {
        // Resolved meanwhile by someone else: the list shows how.
        Ok(()) | Err(DomainError::Conflict(_)) => redirect("/calls/missed"),
        Err(e) => fail(&ui, e),
    }
}

/// The calls section of a customer card (empty for those who may not see calls).
pub async fn customer_section(ui: &Ui, actor: &Actor, customer: i64) -> Markup {
    if !actor.can(Action::ViewCalls) {
        return html! {};
    }
    let rows = ui
        .state
        .ctx
        .calls
        .list(
            actor,
            CallFilter {
                customer_id: Some(customer),
                limit: 20,
                ..Default::default()
            },
        )
        .await
        .map(|r| r.0)
        .unwrap_or_default();
    let wraps = super::call_lists::wraps_for(ui, &rows).await;
    html! {
        section.card #customer-calls data-live-topics="call.ended call.wrapped" {
            h2 { (ui.t("calls.title")) }
            @if rows.is_empty() { p.muted { (ui.t("calls.none")) } } @else { (calls_table_with(ui, &rows, "customer-calls-table", &wraps)) }
        }
    }
}

/// The calls section of an order page: calls with the order's customer.
pub async fn order_section(ui: &Ui, actor: &Actor, order: i64) -> Markup {
    if !actor.can(Action::ViewCalls) {
        return html! {};
    }
    let rows = ui
        .state
        .ctx
        .calls
        .for_order(actor, order, 20)
        .await
        .unwrap_or_default();
    html! {
        section.card #order-calls data-live-topics="call.ended" {
            h2 { (ui.t("calls.title")) }
            @if rows.is_empty() { p.muted { (ui.t("calls.none")) } } @else { (calls_table(ui, &rows, "order-calls-table")) }
        }
    }
}

/// The header's live call status: who is on a call, with whom, since when (the script
/// keeps the timers running and applies `call.live` updates).
pub fn header_status(ui: &Ui) -> Markup {
    let Some(actor) = &ui.actor else {
        return html! {};
    };
    let ctx = &ui.state.ctx;
    let all = ctx.calls.on_calls_for(actor);
    let mine_only = !actor.can(Action::ViewCalls);
    let shown: Vec<&LiveCall> = all
        .iter()
        .filter(|k| !mine_only || k.answered_user_id == Some(actor.user_id))
        .collect();
    html! {
        span #call-status.call-status data-me=(actor.user_id) data-all=(if mine_only { "0" } else { "1" }) data-now=(ctx.calls.now_ms())
            data-t-with=(ui.t("calls.with")) title=(ui.t("calls.on_call")) {
            @for k in &shown { (live_chip(k)) }
        }
        div #call-pops.call-pops aria-live="polite"
            data-t-title=(ui.t("calls.incoming")) data-t-unknown=(ui.t("calls.unknown_number"))
            data-t-new-customer=(ui.t("customers.new")) data-t-new-order=(ui.t("orders.new"))
            data-t-open-customer=(ui.t("calls.open_customer")) data-t-answered-by=(ui.t("calls.answered_by_x")) data-t-answered-elsewhere=(ui.t("harden.call_answered_elsewhere"))
            data-t-transferred-by=(ui.t("calls.transferred_by_x"))
            data-t-balance=(ui.t("desk.to_pay")) data-t-overpaid=(ui.t("desk.overpayment")) data-t-promised=(ui.t("orders.promised"))
            data-t-last-call=(ui.t("calls.last_call")) data-t-no-orders=(ui.t("calls.no_open_orders"))
            data-t-keys=(ui.t("calls.keys")) data-t-close=(ui.t("calls.close"))
            data-can-customers=(if actor.can(Action::ViewCustomers) { "1" } else { "0" })
            data-can-orders=(if actor.can(Action::CreateOrders) { "1" } else { "0" })
            data-can-edit-customers=(if actor.can(Action::EditCustomers) { "1" } else { "0" })
            data-can-wrap=(if actor.can(Action::WrapUpCalls) { "1" } else { "0" })
            data-can-record=(if actor.can(Action::ListenRecordings) { "1" } else { "0" }) data-t-record=(ui.t("recording.record"))
            data-t-wrap-title=(ui.t("call_lists.wrap_title")) data-t-outcome=(ui.t("calls.outcome"))
            data-t-note=(ui.t("call_lists.note")) data-t-follow-up=(ui.t("call_lists.follow_up"))
            data-t-save=(ui.t("call_lists.save_outcome")) data-t-saved=(ui.t("call_lists.saved")) {}
    }
}

fn live_chip(k: &LiveCall) -> Markup {
    html! {
        span.call-chip data-call-user=[k.answered_user_id] data-since=[k.answered_ms] {
            (k.answered_user_name.clone().unwrap_or_default()) " ↔ "
            @if let Some(n) = &k.customer_name { (n) } @else { (phone_link(&k.number)) }
            " " span.call-timer {}
        }
    }
}

/// The users list's "on a call" cell for one user.
pub fn user_cell(ui: &Ui, user: i64) -> Markup {
    let calls = match &ui.actor {
        Some(a) => ui.state.ctx.calls.on_calls_for(a),
        None => Vec::new(),
    };
    let k = calls.iter().find(|k| k.answered_user_id == Some(user));
    html! {
        span.user-call data-call-cell=(user) data-since=[k.and_then(|k| k.answered_ms)] {
            @if let Some(k) = k {
                @if let Some(n) = &k.customer_name { (n) } @else { (phone_link(&k.number)) }
                " " span.call-timer {}
            }
        }
    }
}

/// Dashboard: answered and missed calls by hour and by weekday, over the dashboard's date
/// range (unix seconds, [from, to)).
pub async fn dashboard_section(ui: &Ui, actor: &Actor, from: i64, to: i64) -> Markup {
    if !actor.can(Action::ViewCalls) {
        return html! {};
    }
    let counts = match ui
        .state
        .ctx
        .calls
        .counts(actor, from * 1000, to * 1000)
        .await
    {
        Ok(c) => c,
        Err(_) => return html! {},
    };
    let days = [
        "calls.day.mon",
        "calls.day.tue",
        "calls.day.wed",
        "calls.day.thu",
        "calls.day.fri",
        "calls.day.sat",
        "calls.day.sun",
    ];
    let hours: Vec<(String, i64, i64)> = counts
        .hours
        .iter()
        .enumerate()
        .map(|(h, (a, m))| (format!("{h:02}"), *a, *m))
        .collect();
    let weekdays: Vec<(String, i64, i64)> = counts
        .weekdays
        .iter()
        .zip(days)
        .map(|((a, m), k)| (ui.t(k).to_string(), *a, *m))
        .collect();
    html! {
        section.card #call-stats data-live-topics="call.ended" {
            h2 { (ui.t("calls.by_hour")) }
            (pair_chart("chart-calls-hour", &hours, ui.t("calls.by_hour"), ui))
            h2 { (ui.t("calls.by_weekday")) }
            (pair_chart("chart-calls-weekday", &weekdays, ui.t("calls.by_weekday"), ui))
            p.legend { span.swatch.answered {} " " (ui.t("calls.result.answered")) "  " span.swatch.missed {} " " (ui.t("calls.result.missed")) }
        }
    }
}

/// Two bars (answered, missed) per label, drawn on the server (CSP-safe: no script).
fn pair_chart(id: &str, points: &[(String, i64, i64)], title: &str, ui: &Ui) -> Markup {
    let max = points
        .iter()
        .map(|p| p.1.max(p.2))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (w, h, pad) = (600.0, 140.0, 18.0);
    let gw = w / points.len().max(1) as f64;
    let bw = (gw / 2.0 - 1.0).max(2.0);
    let a_label = ui.t("calls.result.answered");
    let m_label = ui.t("calls.result.missed");
    html! {
        svg.chart id=(id) viewBox=(format!("0 0 {w} {}", h + pad)) role="img" aria-label=(title) {
            title { (title) }
            @for (i, (label, a, m)) in points.iter().enumerate() {
                @let x = i as f64 * gw;
                @let ah = (*a as f64 / max) * (h - 14.0);
                @let mh = (*m as f64 / max) * (h - 14.0);
                rect.bar.answered x=(format!("{:.1}", x + 1.0)) y=(format!("{:.1}", h - ah)) width=(format!("{bw:.1}")) height=(format!("{ah:.1}")) data-value=(a) {
                    title { (label) " · " (a_label) ": " (a) }
                }
                rect.bar.missed x=(format!("{:.1}", x + 1.0 + bw)) y=(format!("{:.1}", h - mh)) width=(format!("{bw:.1}")) height=(format!("{mh:.1}")) data-value=(m) {
                    title { (label) " · " (m_label) ": " (m) }
                }
                text x=(format!("{:.1}", x + gw / 2.0)) y=(format!("{:.1}", h + pad - 4.0)) text-anchor="middle" { (label) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(None), "—");
        assert_eq!(duration(Some(0)), "0:00");
        assert_eq!(duration(Some(65_400)), "1:05");
        assert_eq!(duration(Some(3_723_000)), "1:02:03");
    }
}
