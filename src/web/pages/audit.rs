//! Login audit and activity log, for admins.

use actix_web::{web, HttpResponse, ResponseError};
use maud::html;
use serde::Deserialize;

use super::html;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::page;

const PAGE: i64 = 100;

#[derive(Deserialize)]
pub struct LoginQuery {
    username: Option<String>,
    failures: Option<u8>,
    page: Option<u32>,
}

pub async fn logins(ui: Ui, q: web::Query<LoginQuery>) -> HttpResponse {
    let username = q.username.clone().filter(|s| !s.trim().is_empty());
    let only_failures = q.failures == Some(1);
    let pg = q.page.unwrap_or(0) as i64;
    let rows = match ui
        .state
        .ctx
        .accounts
        .login_audit(username.clone(), only_failures, PAGE + 1, pg * PAGE)
        .await
    {
        Ok(r) => r,
        Err(err) => return PageError { err, tr: ui.tr }.error_response(),
    };
    let more = rows.len() as i64 > PAGE;
    let link = |p: i64| {
        let mut qs = vec![("page", p.to_string())];
        if let Some(u) = &username {
            qs.push(("username", u.clone()));
        }
        if only_failures {
            qs.push(("failures", "1".into()));
        }
        format!(
            "/audit/logins?{}",
            serde_urlencoded::to_string(qs).unwrap_or_default()
        )
    };
    html(page(
        &ui,
        ui.t("audit.logins_title"),
        html! {
            h1 { (ui.t("audit.logins_title")) }
            form.filters method="get" action="/audit/logins" {
                input name="username" value=(username.clone().unwrap_or_default()) placeholder=(ui.t("login.username"));
                label.check { input type="checkbox" name="failures" value="1" checked[only_failures]; " " (ui.t("audit.only_failures")) }
                button type="submit" { (ui.t("common.filter")) }
            }
            div.table-wrap { table #login-audit {
                thead { tr { th { (ui.t("audit.time")) } th { (ui.t("login.username")) } th { (ui.t("audit.result")) } th { "IP" } th { (ui.t("audit.browser")) } } }
                tbody {
                    @for r in rows.iter().take(PAGE as usize) {
                        tr.failure[!r.success] {
                            td { (ui.datetime(r.at)) }
                            td { (r.username) }
                            td { @if r.success { (ui.t("audit.success")) } @else { span.badge.badge-danger { (ui.t("audit.failure")) " (" (ui.tr.code("signin_reason", &r.reason)) ")" } } }
                            td { (r.ip) }
                            td.ua { (r.user_agent) }
                        }
                    }
                }
            } }
            nav.pager {
                @if pg > 0 { a href=(link(pg - 1)) { "← " (ui.t("common.prev")) } }
                @if more { a href=(link(pg + 1)) { (ui.t("common.next")) " →" } }
            }
        },
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActivityQuery {
    actor: String,
    entity: String,
    action: String,
    /// `YYYY-MM-DD`, shop days, both inclusive.
    from: String,
    to: String,
    page: Option<u32>,
}

fn chosen(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn activity(ui: Ui, q: web::Query<ActivityQuery>) -> HttpResponse {
    use super::core_ui::{end_of_day_input, start_of_day_input};
    let clock = ui.clock();
    let pg = q.page.unwrap_or(0) as i64;
    let filter = crate::domain::activity::ActivityFilter {
        actor_id: q.actor.trim().parse().ok(),
        entity: chosen(&q.entity),
        action: chosen(&q.action),
        from: start_of_day_input(&clock, &q.from),
        to: end_of_day_input(&clock, &q.to),
    };
    let db = &ui.state.ctx.db;
    let rows = crate::domain::activity::list(db, filter.clone(), PAGE + 1, pg * PAGE).await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return PageError { err: e, tr: ui.tr }.error_response(),
    };
    let (entities, actions) = crate::domain::activity::kinds(db).await.unwrap_or_default();
    let users = ui.state.ctx.accounts.list_users().await.unwrap_or_default();
    let statuses = ui.state.ctx.orders.statuses().await.unwrap_or_default();
    let more = rows.len() as i64 > PAGE;
    let link = |p: i64| {
        let mut qs = vec![("page", p.to_string())];
        for (k, v) in [
            ("actor", &q.actor),
            ("entity", &q.entity),
            ("action", &q.action),
            ("from", &q.from),
            ("to", &q.to),
        ] {
            if !v.trim().is_empty() {
                qs.push((k, v.clone()));
            }
        }
        format!(
            "/audit/activity?{}",
            serde_urlencoded::to_string(qs).unwrap_or_default()
        )
    };
    html(page(
        &ui,
        ui.t("audit.activity_title"),
        html! {
            h1 { (ui.t("audit.activity_title")) }
            form.filters #activity-filters method="get" action="/audit/activity" {
                select name="actor" aria-label=(ui.t("activityf.actor")) {
                    option value="" { (ui.t("activityf.anyone")) }
                    @for u in &users { option value=(u.id) selected[filter.actor_id == Some(u.id)] { (u.username) } }
                }
                select name="entity" aria-label=(ui.t("activityf.entity")) {
                    option value="" { (ui.t("activityf.entity")) ": " (ui.t("activityf.any")) }
                    @for e in &entities { option value=(e) selected[filter.entity.as_deref() == Some(e.as_str())] { (ui.tr.code("entity", e)) } }
                }
                select name="action" aria-label=(ui.t("activityf.action")) {
                    option value="" { (ui.t("activityf.action")) ": " (ui.t("activityf.any")) }
                    @for a in &actions { option value=(a) selected[filter.action.as_deref() == Some(a.as_str())] { (ui.tr.code("action", a)) } }
                }
                input type="date" name="from" value=(q.from) title=(ui.t("activityf.from")) aria-label=(ui.t("activityf.from"));
                input type="date" name="to" value=(q.to) title=(ui.t("activityf.to")) aria-label=(ui.t("activityf.to"));
                button type="submit" { (ui.t("common.filter")) }
            }
            div.table-wrap { table #activity-log {
                thead { tr { th { (ui.t("audit.time")) } th { (ui.t("audit.actor")) } th { (ui.t("audit.action")) } th { (ui.t("audit.entity")) } th { (ui.t("audit.change")) } } }
                tbody {
                    @for r in rows.iter().take(PAGE as usize) {
                        tr.activity-row data-entity=(r.entity) data-action=(r.action) {
                            td { (ui.datetime(r.at)) }
                            td.actor { (r.actor.clone().unwrap_or_else(|| ui.t("audit.system").to_string())) }
                            td { (ui.tr.code("action", &r.action)) }
                            td { (ui.tr.code("entity", &r.entity)) @if let Some(id) = r.entity_id { " #" (id) } }
                            td.detail { (detail_text(&ui, &statuses, &r.detail)) }
                        }
                    }
                }
            } }
            nav.pager {
                @if pg > 0 { a href=(link(pg - 1)) { "← " (ui.t("common.prev")) } }
                @if more { a href=(link(pg + 1)) { (ui.t("common.next")) " →" } }
            }
        },
    ))
}

/// An activity row's detail for a person: each field's name and value in the reader's
/// language (stored codes such as statuses, roles and payment kinds translated; what staff
/// typed shown as typed), `before → after` for a change.
fn detail_text(ui: &Ui, statuses: &[crate::domain::orders::StatusRow], raw: &str) -> String {
    use serde_json::Value;
    fn value(
        ui: &Ui,
        statuses: &[crate::domain::orders::StatusRow],
        key: &str,
        v: &Value,
    ) -> String {
        match v {
            Value::Null => "—".to_string(),
            Value::Bool(b) => ui.tr.code("detail_value", if *b { "yes" } else { "no" }),
            Value::Number(n) => n.to_string(),
            Value::String(s) => match key {
                "from" | "to" | "status" => statuses
                    .iter()
                    .find(|st| st.code == *s)
                    .map(|st| crate::domain::orders::status_name(st, ui.tr.lang).to_string())
                    .unwrap_or_else(|| s.clone()),
                "role" | "base" => ui.tr.term(&format!("role.{s}")),
                "permissions" => ui.tr.term(&format!("perm.{s}")),
                // A line's kind (part or labour) or a payment's.
                "kind" if s == "part" || s == "labour" => ui.tr.code("line_kind", s),
                "kind" => ui.tr.code("payment_kind", s),
                "method" => ui.tr.code("payment_method", s),
                _ => s.clone(),
            },
            Value::Array(a) if a.len() == 2 && !a.iter().any(Value::is_array) => format!(
                "{} → {}",
                value(ui, statuses, key, &a[0]),
                value(ui, statuses, key, &a[1])
            ),
            Value::Array(a) => a
                .iter()
                .map(|x| value(ui, statuses, key, x))
                .collect::<Vec<_>>()
                .join(", "),
            Value::Object(m) => fields(ui, statuses, m),
        }
    }
    fn fields(
        ui: &Ui,
        statuses: &[crate::domain::orders::StatusRow],
        m: &serde_json::Map<String, Value>,
    ) -> String {
        m.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{}: {}", ui.tr.code("detail", k), value(ui, statuses, k, v)))
            .collect::<Vec<_>>()
            .join("; ")
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => fields(ui, statuses, &m),
        Ok(other) => value(ui, statuses, "", &other),
        Err(_) => raw.to_string(),
    }
}
