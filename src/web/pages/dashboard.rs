//! The landing page after sign-in.

use actix_web::HttpResponse;
use maud::html;

use super::html;
use crate::domain::{Action, Actor};
use crate::web::auth::Ui;
use crate::web::layout::page;

pub async fn show(ui: Ui, actor: Actor) -> HttpResponse {
    let role_key = match actor.role {
        crate::model::Role::Admin => "role.admin",
        crate::model::Role::Operator => "role.operator",
        crate::model::Role::Master => "role.master",
    };
    let admin_stats = if actor.can(Action::ManageUsers) {
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
        },
    ))
}
