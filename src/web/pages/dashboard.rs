//! The landing page after sign-in.

use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::{html, redirect};
use crate::domain::{notices, Action, Actor, DomainError};
use crate::web::auth::Ui;
use crate::web::layout::{csrf_field, datetime, page};

pub async fn show(ui: Ui, actor: Actor) -> HttpResponse {
    let role_key = match actor.role {
        crate::model::Role::Admin => "role.admin",
        crate::model::Role::Operator => "role.operator",
        crate::model::Role::Master => "role.master",
    };
    let admin = actor.can(Action::ManageUsers);
    let admin_stats = if admin {
        let users = ui.state.ctx.accounts.list_users().await.unwrap_or_default();
        let failures = ui
            .state
            .ctx
            .accounts
            .login_audit(None, true, 1000, 0)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.at >= crate::db::now() - 86_400)
            .count();
        Some((users.iter().filter(|u| u.active).count(), failures))
    } else {
        None
    };
    let recent = notices::recent(&ui.state.ctx.db, 5)
        .await
        .unwrap_or_default();
    html(page(
        &ui,
        ui.t("dashboard.title"),
        html! {
            h1 #dashboard-title { (ui.t("dashboard.title")) }
            p.lead { (ui.tr.f("dashboard.welcome", &[("name", &actor.display_name)])) " · " (ui.t(role_key)) }
            @if let Some((users, failures)) = admin_stats {
                section.cards {
                    a.card.stat href="/users" {
                        span.stat-value { (users) }
                        span.stat-label { (ui.t("dashboard.active_users")) }
                    }
                    a.card.stat href="/audit/logins?failures=1" {
                        span.stat-value { (failures) }
                        span.stat-label { (ui.t("dashboard.failed_logins_24h")) }
                    }
                }
            }
            section.card #notices {
                h2 { (ui.t("live.notices")) }
                @if admin {
                    form.row method="post" action="/notices" {
                        (csrf_field(&ui))
                        input name="text" maxlength="500" required placeholder=(ui.t("live.notice_placeholder"));
                        button type="submit" { (ui.t("live.send_notice")) }
                    }
                }
                ul #notice-list.notice-list {
                    @for n in &recent {
                        li { time { (datetime(n.at)) } " " strong { (n.author.clone().unwrap_or_default()) } ": " (n.text) }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct NoticeForm {
    text: String,
}

pub async fn post_notice(ui: Ui, actor: Actor, form: web::Form<NoticeForm>) -> HttpResponse {
    match notices::post(&ui.state.ctx.db, &ui.state.ctx.events, &actor, &form.text).await {
        Ok(_) => redirect("/"),
        Err(DomainError::Invalid(m)) => crate::web::error::error_page(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            &m,
            ui.tr,
        ),
        Err(err) => actix_web::ResponseError::error_response(&crate::web::error::PageError {
            err,
            tr: ui.tr,
        }),
    }
}
