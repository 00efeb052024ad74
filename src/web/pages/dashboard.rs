//! The landing page after sign-in.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::charts::{bars, hbars, Bar};
use super::{html, redirect};
use crate::domain::dashboard::{self, Bucket, Dashboard};
use crate::domain::orders::status_name;
use crate::domain::{notices, Action, Actor, DomainError};
use crate::web::auth::Ui;
use crate::web::layout::{csrf_field, datetime, flash, page};

/// The chosen period: `from`/`to` as `YYYY-MM-DD` (default: the last 30 days) and how
/// revenue is grouped.
#[derive(Deserialize, Default)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

fn parse_day(s: Option<&str>) -> Option<time::Date> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    s.and_then(|s| time::Date::parse(s.trim(), &f).ok())
}

fn iso(d: time::Date) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    d.format(&f).unwrap_or_default()
}

fn short(d: time::Date) -> String {
    let f = time::macros::format_description!("[day].[month]");
    d.format(&f).unwrap_or_default()
}

/// Figures and charts for admins (who may see reports), for the chosen period.
fn reports(ui: &Ui, d: &Dashboard, shop: &crate::domain::shop::ShopSettings) -> Markup {
    let bucket = d.revenue_bucket;
    let status_bars = |rows: &[(i64, i64)]| -> Vec<Bar> {
        d.statuses
            .iter()
            .filter_map(|s| {
                rows.iter().find(|(id, _)| *id == s.id).map(|(_, n)| Bar {
                    label: status_name(s, ui.tr.lang).to_string(),
                    value: *n,
                    text: n.to_string(),
                })
            })
            .collect()
    };
    let day_bars = |pts: &[dashboard::Point], money: bool| -> Vec<Bar> {
        pts.iter()
            .map(|p| Bar {
                label: short(p.day),
                value: p.value,
                text: if money {
                    shop.money(p.value)
                } else {
                    p.value.to_string()
                },
            })
            .collect()
    };
    let open_total: i64 = d.open_per_status.iter().map(|(_, n)| n).sum();
    html! {
        section.card #reports {
            form.row.filters method="get" action="/" {
                label { (ui.t("dash.from")) " " input type="date" name="from" value=(iso(d.from)); }
                label { (ui.t("dash.to")) " " input type="date" name="to" value=(iso(d.to)); }
                label { (ui.t("dash.revenue_by")) " "
                    select name="bucket" {
                        option value="day" selected[bucket == Bucket::Day] { (ui.t("dash.by_day")) }
                        option value="week" selected[bucket == Bucket::Week] { (ui.t("dash.by_week")) }
                        option value="month" selected[bucket == Bucket::Month] { (ui.t("dash.by_month")) }
                    }
                }
                button type="submit" { (ui.t("dash.show")) }
            }
            div.cards {
                a.card.stat href="/orders?group=" { span.stat-value #dash-open { (open_total) } span.stat-label { (ui.t("dash.open")) } }
                a.card.stat href="/orders?overdue=1" { span.stat-value #dash-overdue { (d.overdue) } span.stat-label { (ui.t("dash.overdue")) } }
                div.card.stat { span.stat-value #dash-intake { (d.intake.iter().map(|p| p.value).sum::<i64>()) } span.stat-label { (ui.t("dash.intake_total")) } }
                div.card.stat { span.stat-value #dash-revenue { (shop.money(d.revenue_total)) } span.stat-label { (ui.t("dash.revenue_total")) } }
            }
            (hbars("chart-open", ui.t("dash.open_per_status"), &status_bars(&d.open_per_status)))
            (hbars("chart-closed", ui.t("dash.closed_per_status"), &status_bars(&d.closed_per_status)))
            (bars("chart-intake", ui.t("dash.intake_per_day"), &day_bars(&d.intake, false)))
            (bars("chart-completed", ui.t("dash.completed_per_day"), &day_bars(&d.completed, false)))
            (bars("chart-revenue", ui.t("dash.revenue"), &day_bars(&d.revenue, true)))
            h2 { (ui.t("dash.masters")) }
            table.list #dash-masters {
                thead { tr { th { (ui.t("orders.master")) } th.num { (ui.t("workload.open")) } th.num { (ui.t("workload.in_work")) } th.num { (ui.t("dash.closed")) } th.num { (ui.t("workload.avg_hours")) } } }
                tbody {
                    @for w in &d.masters {
                        tr {
                            td { a href=(format!("/orders?master={}", w.master_id)) { (w.name) } }
                            td.num { (w.open) } td.num { (w.in_work) } td.num { (w.closed) }
                            td.num { (w.avg_repair_hours.map(|a| format!("{a:.1}")).unwrap_or_else(|| "—".into())) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn show(ui: Ui, actor: Actor, q: web::Query<RangeQuery>) -> HttpResponse {
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
    let mut range_error = None;
    let report = if actor.can(Action::ViewReports) {
        let to = parse_day(q.to.as_deref()).unwrap_or_else(dashboard::today);
        let from = parse_day(q.from.as_deref()).unwrap_or(to - time::Duration::days(29));
        let bucket = match q.bucket.as_deref() {
            Some("week") => Bucket::Week,
            Some("month") => Bucket::Month,
            _ => Bucket::Day,
        };
        match dashboard::load(&ui.state.ctx.db, &actor, from, to, bucket).await {
            Ok(d) => {
                let shop = crate::domain::shop::load(&ui.state.ctx.db)
                    .await
                    .unwrap_or_default();
                Some(reports(&ui, &d, &shop))
            }
            Err(DomainError::Invalid(m)) => {
                range_error = Some(m);
                None
            }
            Err(err) => {
                return actix_web::ResponseError::error_response(&crate::web::error::PageError {
                    err,
                    tr: ui.tr,
                })
            }
        }
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
            (flash(range_error.as_deref(), "error"))
            @if let Some(r) = &report { (r) }
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
