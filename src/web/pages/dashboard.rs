//! The landing page after sign-in.

use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::core_ui::{cash, money_text, short_money};
use super::{html, redirect};
use crate::domain::{notices, Action, Actor, DomainError};
use crate::web::auth::Ui;
use crate::web::layout::{csrf_field, page};

#[derive(Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    /// Revenue per `day` (default), `week` or `month`.
    per: Option<String>,
}

/// A small bar chart drawn on the server (no script, CSP-safe: attributes only).
/// `short` writes the label over a bar, `full` the value in its tooltip.
fn bar_chart(
    id: &str,
    points: &[(String, i64)],
    title: &str,
    short: &dyn Fn(i64) -> String,
    full: &dyn Fn(i64) -> String,
) -> maud::Markup {
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let (w, h, pad) = (600.0, 160.0, 18.0);
    let bw = (w / points.len().max(1) as f64).max(4.0);
    html! {
        svg.chart id=(id) viewBox=(format!("0 0 {w} {}", h + pad)) role="img" aria-label=(title) {
            title { (title) }
            @for (i, (label, v)) in points.iter().enumerate() {
                @let bh = (*v as f64 / max) * (h - 14.0);
                rect.bar x=(format!("{:.1}", i as f64 * bw + 1.0)) y=(format!("{:.1}", h - bh)) width=(format!("{:.1}", bw - 2.0)) height=(format!("{:.1}", bh)) {
                    title { (label) ": " (full(*v)) }
                }
                @if *v > 0 { text.value x=(format!("{:.1}", i as f64 * bw + bw / 2.0)) y=(format!("{:.1}", h - bh - 2.0)) text-anchor="middle" { (short(*v)) } }
                @if points.len() <= 31 { text x=(format!("{:.1}", i as f64 * bw + bw / 2.0)) y=(format!("{:.1}", h + pad - 4.0)) text-anchor="middle" { (label) } }
            }
        }
    }
}

pub async fn show(ui: Ui, actor: Actor, range: web::Query<RangeQuery>) -> HttpResponse {
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
            .filter(|r| r.at >= ui.clock().now() - 86_400)
            .count();
        Some((users.iter().filter(|u| u.active).count(), failures))
    } else {
        None
    };
    let recent = notices::recent(&ui.state.ctx.db, 5)
        .await
        .unwrap_or_default();
    // Shop days, both ends inclusive: by default the last 14 days up to and including
    // today, so the filled-in form, submitted as it is, shows the same range.
    let clock = ui.clock();
    let (from_day, to_day) = dashboard_range(&clock, range.from.as_deref(), range.to.as_deref());
    let (from, to) = (clock.day_start(from_day), clock.day_end(to_day));
    let reports = actor.can(Action::ViewReports);
    let period = range
        .per
        .as_deref()
        .and_then(crate::domain::dashboard::Period::parse)
        .unwrap_or_default();
    let per_link = |p: crate::domain::dashboard::Period| {
        let mut qs = vec![("per", p.as_str().to_string())];
        if let Some(f) = &range.from {
            qs.push(("from", f.clone()));
        }
        if let Some(t) = &range.to {
            qs.push(("to", t.clone()));
        }
        format!("/?{}", serde_urlencoded::to_string(qs).unwrap_or_default())
    };
    let per_label = |t: i64| -> String {
        let d = clock.format_date(t);
        match period {
            crate::domain::dashboard::Period::Month => d[3..].to_string(),
            _ => d[..5].to_string(),
        }
    };
    let stats = if actor.can(Action::ViewCustomers) {
        crate::domain::dashboard::load(&ui.state.ctx.db, &clock, &actor, from, to, reports, period)
            .await
            .ok()
    } else {
        None
    };
    let shop = crate::domain::shop::load(&ui.state.ctx.db)
        .await
        .unwrap_or_default();
    let calls = super::calls::dashboard_section(&ui, &actor, from, to).await;
    let count = |v: i64| v.to_string();
    let short = |v: i64| short_money(&ui, v);
    let full = |v: i64| money_text(&ui, &shop, v);
    // Blank charts say nothing: an empty range says so and what to do instead.
    let empty = stats.as_ref().is_some_and(|st| {
        st.days.iter().all(|d| d.intake == 0 && d.completed == 0)
            && st.revenue.iter().all(|r| r.1 == 0)
    });
    let groups = [
        ("new", "group.new"),
        ("in_work", "group.in_work"),
        ("waiting", "group.waiting"),
        ("ready", "group.ready"),
    ];
    html(page(
        &ui,
        ui.t("dashboard.title"),
        html! {
            h1 #dashboard-title { (ui.t("dashboard.title")) }
            p.lead { (ui.tr.f("dashboard.welcome", &[("name", &actor.display_name)])) " · " (ui.t(role_key)) }
            @if let Some(st) = &stats {
                section.cards #order-stats data-live-topics="order." {
                    @for (g, key) in groups {
                        a.card.stat href=(format!("/orders?group={g}")) {
                            span.stat-value { (st.open_by_group.iter().find(|(x, _)| x == g).map(|(_, n)| *n).unwrap_or(0)) }
                            span.stat-label { (ui.t(key)) }
                        }
                    }
                    a.card.stat href="/orders?overdue=1" {
                        span.stat-value #overdue-count { (st.overdue) }
                        span.stat-label { (ui.t("orders.overdue")) }
                    }
                }
                @if reports {
                    section.cards {
                        div.card.stat.stat-money { span.stat-value #revenue-today { (cash(&ui, &shop, st.revenue_today)) } span.stat-label { (ui.t("dashboard.revenue_today")) } }
                        div.card.stat.stat-money { span.stat-value { (cash(&ui, &shop, st.revenue_week)) } span.stat-label { (ui.t("dashboard.revenue_week")) } }
                        div.card.stat.stat-money { span.stat-value { (cash(&ui, &shop, st.revenue_month)) } span.stat-label { (ui.t("dashboard.revenue_month")) } }
                    }
                }
                form.filters method="get" action="/" {
                    input type="date" name="from" value=(crate::domain::clock::iso_date(from_day));
                    input type="date" name="to" value=(crate::domain::clock::iso_date(to_day));
                    button type="submit" { (ui.t("common.filter")) }
                }
                @if empty {
                    section.card.empty-state #dashboard-empty {
                        p { strong { (ui.t("desk.empty_dashboard")) } }
                        p.muted { (ui.t("desk.empty_dashboard_hint")) }
                        @if actor.can(Action::CreateOrders) { a.button.primary href="/orders/new" { (ui.t("orders.new")) } }
                        @if reports {
                            p.muted { (ui.t("revenue.total")) ": " span #revenue-total { (money_text(&ui, &shop, 0)) } }
                        }
                    }
                } @else {
                section.card {
                    h2 { (ui.t("dashboard.intake")) }
                    (bar_chart("chart-intake", &st.days.iter().map(|d| (clock.format_date(d.day)[..5].to_string(), d.intake)).collect::<Vec<_>>(), ui.t("dashboard.intake"), &count, &count))
                    h2 { (ui.t("dashboard.completed")) }
                    (bar_chart("chart-completed", &st.days.iter().map(|d| (clock.format_date(d.day)[..5].to_string(), d.completed)).collect::<Vec<_>>(), ui.t("dashboard.completed"), &count, &count))
                    @if reports {
                        h2 { (ui.t("dashboard.revenue")) }
                        nav.tabs #revenue-periods {
                            @for (p, key) in [(crate::domain::dashboard::Period::Day, "revenue.day"), (crate::domain::dashboard::Period::Week, "revenue.week"), (crate::domain::dashboard::Period::Month, "revenue.month")] {
                                a href=(per_link(p)) aria-current=[(p == period).then_some("page")] { (ui.t(key)) }
                                " "
                            }
                        }
                        div data-period=(period.as_str()) {
                            (bar_chart("chart-revenue", &st.revenue.iter().map(|(t, v)| (per_label(*t), *v)).collect::<Vec<_>>(), ui.t("dashboard.revenue"), &short, &full))
                        }
                        p.muted { (ui.t("revenue.total")) ": " span #revenue-total { (money_text(&ui, &shop, st.revenue.iter().map(|r| r.1).sum())) } }
                    }
                }
                }
                @if reports && !st.masters.is_empty() {
                    section.card {
                        h2 { (ui.t("workload.title")) }
                        div.table-wrap { table {
                            thead { tr { th { (ui.t("orders.master")) } th.num { (ui.t("workload.open")) } th.num { (ui.t("workload.in_work")) } th.num { (ui.t("workload.avg_hours")) } } }
                            tbody { @for w in &st.masters { tr { td { (w.name) } td.num { (w.open) } td.num { (w.in_work) } td.num { (w.avg_repair_hours.map(|a| format!("{a:.1}")).unwrap_or_else(|| "—".into())) } } } }
                        } }
                    }
                }
            }
            (calls)
            @if actor.role == crate::model::Role::Master {
                p { a.button.primary href="/my" { (ui.t("orders.my_title")) } }
            }
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
                        li { time { (ui.datetime(n.at)) } " " strong { (n.author.clone().unwrap_or_default()) } ": " (n.text) }
                    }
                }
            }
        },
    ))
}

/// The dashboard's shop days (first, last; both inclusive) from the form's `from` and
/// `to`: by default the 14 days ending today; at most 366 days.
pub fn dashboard_range(
    clock: &crate::domain::clock::ShopClock,
    from: Option<&str>,
    to: Option<&str>,
) -> (jiff::civil::Date, jiff::civil::Date) {
    use crate::domain::clock::{add_days, parse_date};
    let to = to.and_then(parse_date).unwrap_or_else(|| clock.today());
    let earliest = add_days(to, -365);
    let from = from
        .and_then(parse_date)
        .unwrap_or_else(|| add_days(to, -13))
        .max(earliest)
        .min(to);
    (from, to)
}

#[derive(Deserialize)]
pub struct NoticeForm {
    text: String,
}

pub async fn post_notice(ui: Ui, actor: Actor, form: web::Form<NoticeForm>) -> HttpResponse {
    match notices::post(&ui.state.ctx.store, &actor, &form.text).await {
        Ok(_) => redirect("/"),
        Err(DomainError::Invalid(m)) => crate::web::error::error_page(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            &ui.msg(&m),
            ui.tr,
        ),
        Err(err) => actix_web::ResponseError::error_response(&crate::web::error::PageError {
            err,
            tr: ui.tr,
        }),
    }
}
