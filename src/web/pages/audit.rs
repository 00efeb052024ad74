//! Login audit and activity log, for admins.

use actix_web::{web, HttpResponse, ResponseError};
use maud::html;
use serde::Deserialize;

use super::html;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{datetime, page};

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
                            td { (datetime(r.at)) }
                            td { (r.username) }
                            td { @if r.success { (ui.t("audit.success")) } @else { span.badge.badge-danger { (ui.t("audit.failure")) " (" (r.reason) ")" } } }
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

#[derive(Deserialize)]
pub struct ActivityQuery {
    entity: Option<String>,
    page: Option<u32>,
}

pub async fn activity(ui: Ui, q: web::Query<ActivityQuery>) -> HttpResponse {
    let entity = q.entity.clone().filter(|s| !s.trim().is_empty());
    let pg = q.page.unwrap_or(0) as i64;
    let rows =
        crate::domain::activity::list(&ui.state.ctx.db, entity.clone(), PAGE + 1, pg * PAGE).await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return PageError { err: e, tr: ui.tr }.error_response(),
    };
    let more = rows.len() as i64 > PAGE;
    let link = |p: i64| {
        let mut qs = vec![("page", p.to_string())];
        if let Some(e) = &entity {
            qs.push(("entity", e.clone()));
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
            form.filters method="get" action="/audit/activity" {
                input name="entity" value=(entity.clone().unwrap_or_default()) placeholder=(ui.t("audit.entity"));
                button type="submit" { (ui.t("common.filter")) }
            }
            div.table-wrap { table #activity-log {
                thead { tr { th { (ui.t("audit.time")) } th { (ui.t("audit.actor")) } th { (ui.t("audit.action")) } th { (ui.t("audit.entity")) } th { (ui.t("audit.change")) } } }
                tbody {
                    @for r in rows.iter().take(PAGE as usize) {
                        tr {
                            td { (datetime(r.at)) }
                            td { (r.actor.clone().unwrap_or_else(|| "system".into())) }
                            td { (r.action) }
                            td { (r.entity) @if let Some(id) = r.entity_id { " #" (id) } }
                            td { code.detail { (r.detail) } }
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
