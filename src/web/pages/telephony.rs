//! Telephony admin page: extensions (with the settings to enter in a phone), ring groups,
//! registered phones and banned addresses.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html_status, redirect};
use crate::domain::telephony::{NewExtension, NewGroup};
use crate::domain::{Actor, DomainError};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

fn err(ui: &Ui, e: DomainError) -> HttpResponse {
    PageError { err: e, tr: ui.tr }.error_response()
}

/// The server address a phone should use: the SIP listen address, with the port split
/// out (0.0.0.0 = "this box's LAN address", which the admin fills in).
fn server_and_port(ui: &Ui) -> (String, String) {
    let sip = ui.state.ctx.config.sip.clone();
    if sip.trim().eq_ignore_ascii_case("off") {
        return ("—".into(), "—".into());
    }
    match sip.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (sip, "5060".into()),
    }
}

async fn overview(ui: &Ui, notice: Option<Markup>, error: Option<&str>) -> HttpResponse {
    let tel = &ui.state.ctx.telephony;
    let (mut exts, groups) = match tokio::try_join!(tel.list_extensions(), tel.list_groups()) {
        Ok(x) => x,
        Err(e) => return err(ui, e),
    };
    // A branch-scoped manager sees their branches' and the shop-wide extensions.
    if let Some(a) = &ui.actor {
        exts.retain(|e| crate::domain::telephony::sees_extension(&a.branches, e));
    }
    let (trunks, rules) = match tokio::try_join!(tel.list_trunks(), tel.call_rules()) {
        Ok(x) => x,
        Err(e) => return err(ui, e),
    };
    let branches = crate::domain::branches::list(&ui.state.ctx.db, false)
        .await
        .unwrap_or_default();
    let branch_name = |id: Option<i64>| -> String {
        match id {
            None => ui.t("branch_scope.whole_shop").to_string(),
            Some(b) => branches
                .iter()
                .find(|x| x.id == b)
                .map(|x| x.name.clone())
                .unwrap_or_else(|| b.to_string()),
        }
    };
    // The branches a user may put an extension in: theirs (every one for a user of all).
    let sees_branch = |b: i64| ui.actor.as_ref().is_none_or(|a| a.branches.contains(b));
    let sip = ui.state.ctx.sip();
    let regs = sip.as_ref().map(|s| s.registrations()).unwrap_or_default();
    let bans = sip.as_ref().map(|s| s.bans()).unwrap_or_default();
    let (server, port) = server_and_port(ui);
    // Staff to tie an extension to, picked from a list rather than typed.
    let staff: Vec<_> = ui
        .state
        .ctx
        .accounts
        .list_users()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u.active)
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    html_status(
        status,
        page(
            ui,
            ui.t("telephony.title"),
            html! {
                h1 { (ui.t("telephony.title")) }
                @if let Some(n) = notice { (n) }
                (flash(error, "error"))
                @if sip.is_none() { p.muted { (ui.t("telephony.sip_off")) } }
                p { a #phones-link href="/telephony/phones" { (ui.t("telephony.phones_title")) } }
                p { a #recording-link href="/telephony/recording" { (ui.t("recording.title")) } }
                h2 { (ui.t("telephony.extensions")) }
                div.table-wrap { table #extensions-table {
                    thead { tr {
                        th { (ui.t("telephony.number")) } th { (ui.t("telephony.name")) }
                        th { (ui.t("telephony.user")) } th { (ui.t("telephony.server")) }
                        th { (ui.t("telephony.port")) } th { (ui.t("telephony.digest")) }
                        th { (ui.t("branch_scope.branch")) } th {}
                    } }
                    tbody { @for e in &exts {
                        tr.inactive[!e.enabled] {
                            td { code { (e.number) } } td { (e.display_name) }
                            td { (e.username.as_deref().unwrap_or("—")) }
                            td { code { (server) } } td { code { (port) } }
                            td { form.inline method="post" action=(format!("/telephony/extensions/{}/digest", e.number)) {
                                (csrf_field(ui))
                                select name="digest" data-digest-of=(e.number) {
                                    @for c in crate::domain::telephony::DIGEST_CHOICES {
                                        option value=(if c.is_empty() { "default" } else { c }) selected[e.digest == c] {
                                            @if c.is_empty() { (ui.t("telephony.digest_default")) } @else { (c) }
                                        }
                                    }
                                }
                                " " button.link type="submit" { (ui.t("telephony.digest_save")) }
                            } }
                            td data-ext-branch=[e.branch_id] {
                                form.inline method="post" action=(format!("/telephony/extensions/{}/branch", e.number)) {
                                    (csrf_field(ui))
                                    select name="branch" data-branch-of=(e.number) aria-label=(ui.t("branch_scope.branch")) {
                                        option value="" selected[e.branch_id.is_none()] { (ui.t("branch_scope.whole_shop")) }
                                        @for b in branches.iter().filter(|b| sees_branch(b.id) || e.branch_id == Some(b.id)) {
                                            option value=(b.id) selected[e.branch_id == Some(b.id)] { (b.name) }
                                        }
                                    }
                                    " " button.link type="submit" { (ui.t("branch_scope.extension_branch_save")) }
                                }
                            }
                            td.row-actions {
                                form.inline method="post" action=(format!("/telephony/extensions/{}/secret", e.number)) {
                                    (csrf_field(ui)) button.small.secret-button type="submit" { (ui.t("telephony.new_secret")) }
                                }
                                form.inline method="post" action=(format!("/telephony/extensions/{}/delete", e.number))
                                    data-confirm=(ui.tr.f("desk.confirm_delete_extension", &[("number", &e.number)])) {
                                    (csrf_field(ui)) button.small.danger-button type="submit" { (ui.t("telephony.delete")) }
                                }
                            }
                        }
                    } }
                } }
                form.card method="post" action="/telephony/extensions" {
                    (csrf_field(ui))
                    label for="number" { (ui.t("telephony.number")) }
                    input #number name="number" required pattern="[0-9]{2,6}" inputmode="numeric";
                    label for="name" { (ui.t("telephony.name")) }
                    input #name name="name" maxlength="80";
                    label for="username" { (ui.t("telephony.staff_user")) }
                    select #username name="username" {
                        option value="" { "—" }
                        @for u in &staff { option value=(u.username) { (u.display_name) } }
                    }
                    label for="ext-branch" { (ui.t("branch_scope.branch")) }
                    select #ext-branch name="branch" {
                        option value="" { (ui.t("branch_scope.whole_shop")) }
                        @for b in &branches { option value=(b.id) { (b.name) } }
                    }
                    button.primary type="submit" { (ui.t("telephony.add_extension")) }
                }
                h2 { (ui.t("telephony.groups")) }
                div.table-wrap { table #groups-table {
                    thead { tr {
                        th { (ui.t("telephony.number")) } th { (ui.t("telephony.name")) }
                        th { (ui.t("telephony.strategy")) } th { (ui.t("telephony.members")) }
                        th { (ui.t("branch_scope.branch")) } th {}
                    } }
                    tbody { @for g in &groups {
                        tr {
                            td { code { (g.number) } } td { (g.name) }
                            td { (ui.t(if g.strategy == "sequential" { "telephony.sequential" } else { "telephony.ring_all" })) }
                            td { (g.members.join(", ")) }
                            td data-group-branch=[g.branch_id] { (branch_name(g.branch_id)) }
                            td { form.inline method="post" action=(format!("/telephony/groups/{}/delete", g.number)) {
                                (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.delete")) }
                            } }
                        }
                    } }
                } }
                form.card method="post" action="/telephony/groups" {
                    (csrf_field(ui))
                    label for="g-number" { (ui.t("telephony.number")) }
                    input #g-number name="number" required pattern="[0-9]{2,6}" inputmode="numeric";
                    label for="g-name" { (ui.t("telephony.name")) }
                    input #g-name name="name" maxlength="80";
                    label for="strategy" { (ui.t("telephony.strategy")) }
                    select #strategy name="strategy" {
                        option value="ring_all" { (ui.t("telephony.ring_all")) }
                        option value="sequential" { (ui.t("telephony.sequential")) }
                    }
                    label for="members" { (ui.t("telephony.members")) }
                    input #members name="members" required placeholder="101, 102, 103";
                    label for="member_timeout" { (ui.t("telephony.member_timeout")) }
                    input #member_timeout name="member_timeout" type="number" min="1" max="600" value="20";
                    label for="overall_timeout" { (ui.t("telephony.overall_timeout")) }
                    input #overall_timeout name="overall_timeout" type="number" min="1" max="600" value="60";
                    label for="g-branch" { (ui.t("branch_scope.branch")) }
                    select #g-branch name="branch" {
                        option value="" { (ui.t("branch_scope.whole_shop")) }
                        @for b in &branches { option value=(b.id) { (b.name) } }
                    }
                    button.primary type="submit" { (ui.t("telephony.save_group")) }
                }
                h2 { (ui.t("telephony.registrations")) }
                div.table-wrap #registrations-region data-live-topics=(crate::domain::live_registrations::EVENT) { table #registrations-table {
                    thead { tr {
                        th { (ui.t("telephony.number")) } th { (ui.t("telephony.contact")) }
                        th { (ui.t("telephony.user_agent")) } th { (ui.t("telephony.source")) }
                        th { (ui.t("telephony.transport")) } th { (ui.t("telephony.expires")) }
                    } }
                    tbody { @for r in &regs {
                        tr {
                            td { code { (r.extension) } } td { code { (r.contact) } }
                            td { (r.user_agent) } td { code { (r.source) } }
                            td { (r.transport) } td { (r.expires_in) " s" }
                        }
                    } }
                } }
                h2 { (ui.t("telephony.bans")) }
                div.table-wrap { table #bans-table {
                    thead { tr {
                        th { (ui.t("telephony.source")) } th { (ui.t("telephony.ban_extension")) }
                        th { (ui.t("telephony.failures")) }
                        th { (ui.t("telephony.expires")) } th {}
                    } }
                    tbody { @for b in &bans {
                        tr {
                            td { code { (b.address) } }
                            td { @match &b.extension {
                                Some(e) => code { (e) },
                                None => (ui.t("telephony.ban_whole_address")),
                            } }
                            td { (b.failures) } td { (b.banned_for_secs) " s" }
                            td { form.inline method="post" action=(format!("/telephony/bans/{}/release", b.address)) {
                                (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.release")) }
                            } }
                        }
                    } }
                } }
                (trunk_sections(ui, &trunks, &rules, &exts, &branches))
            },
        ),
    )
}

pub async fn show(ui: Ui) -> HttpResponse {
    overview(&ui, None, None).await
}

/// The settings to type into the phone, with the secret shown this once.
fn settings_notice(ui: &Ui, number: &str, secret: &str) -> Markup {
    let (server, port) = server_and_port(ui);
    html! {
        div.flash.flash-ok #phone-settings role="status" {
            p { (ui.t("telephony.copy_settings")) }
            dl.copy-list {
                @for (key, value, class) in [
                    ("telephony.server", server.as_str(), ""),
                    ("telephony.port", port.as_str(), ""),
                    ("telephony.user", number, ""),
                    ("telephony.secret", secret, "secret"),
                ] {
                    dt { (ui.t(key)) }
                    dd {
                        code class=(class) { (value) }
                        " " button.small.copy type="button" data-copy=(value) data-done=(ui.t("desk.copied")) { (ui.t("desk.copy")) }
                    }
                }
            }
            button.small.copy #copy-all type="button" data-done=(ui.t("desk.copied"))
                data-copy=(format!("{}: {server}\n{}: {port}\n{}: {number}\n{}: {secret}",
                    ui.t("telephony.server"), ui.t("telephony.port"), ui.t("telephony.user"), ui.t("telephony.secret"))) {
                (ui.t("desk.copy_all"))
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ExtensionForm {
    number: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: String,
    /// A branch id; empty: the whole shop.
    #[serde(default)]
    branch: String,
}

pub async fn create_extension(
    ui: Ui,
    actor: Actor,
    form: web::Form<ExtensionForm>,
) -> HttpResponse {
    let f = form.into_inner();
    let username = Some(f.username.trim().to_string()).filter(|u| !u.is_empty());
    let r = ui
        .state
        .ctx
        .telephony
        .add_extension(
            Some(&actor),
            NewExtension {
                number: f.number.trim().to_string(),
                display_name: f.name,
                username,
                secret: None,
                branch_id: f.branch.trim().parse().ok(),
            },
        )
        .await;
    match r {
        Ok(e) => overview(&ui, Some(settings_notice(&ui, &e.number, &e.secret)), None).await,
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            overview(&ui, None, Some(&ui.msg(&m))).await
        }
        Err(e) => err(&ui, e),
    }
}

pub async fn regenerate_secret(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match ui
        .state
        .ctx
        .telephony
        .regenerate_secret(Some(&actor), &number)
        .await
    {
        Ok(secret) => overview(&ui, Some(settings_notice(&ui, &number, &secret)), None).await,
        Err(e) => err(&ui, e),
    }
}

pub async fn delete_extension(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match ui
        .state
        .ctx
        .telephony
        .remove_extension(Some(&actor), &number)
        .await
    {
        Ok(()) => {
            if let Some(s) = ui.state.ctx.sip() {
                s.unregister_all(&number);
            }
            redirect("/telephony")
        }
        Err(e) => err(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct GroupForm {
    number: String,
    #[serde(default)]
    name: String,
    strategy: String,
    members: String,
    member_timeout: u32,
    overall_timeout: u32,
    #[serde(default)]
    branch: String,
}

pub async fn save_group(ui: Ui, actor: Actor, form: web::Form<GroupForm>) -> HttpResponse {
    let f = form.into_inner();
    let strategy = match f.strategy.as_str() {
        "ring_all" => crate::sip::Strategy::RingAll,
        "sequential" => crate::sip::Strategy::Sequential,
        _ => return overview(&ui, None, Some(ui.t("error.invalid_choice"))).await,
    };
    let members: Vec<String> = f
        .members
        .split([',', ' ', ';'])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    let branch_id = match f.branch.trim() {
        "" => None,
        b => match b.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => return overview(&ui, None, Some(ui.t("error.invalid_choice"))).await,
        },
    };
    let r = ui
        .state
        .ctx
        .telephony
        .save_group(
            Some(&actor),
            NewGroup {
                number: f.number.trim().to_string(),
                name: f.name,
                strategy,
                member_timeout_secs: f.member_timeout,
                overall_timeout_secs: f.overall_timeout,
                members,
                branch_id,
            },
        )
        .await;
    match r {
        Ok(()) => redirect("/telephony"),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            overview(&ui, None, Some(&ui.msg(&m))).await
        }
        Err(e) => err(&ui, e),
    }
}

pub async fn delete_group(ui: Ui, actor: Actor, path: web::Path<String>) -> HttpResponse {
    match ui
        .state
        .ctx
        .telephony
        .remove_group(Some(&actor), &path.into_inner())
        .await
    {
        Ok(()) => redirect("/telephony"),
        Err(e) => err(&ui, e),
    }
}

pub async fn release_ban(ui: Ui, path: web::Path<String>) -> HttpResponse {
    let Ok(ip) = path.into_inner().parse::<std::net::IpAddr>() else {
        return err(&ui, DomainError::NotFound);
    };
    match ui.state.ctx.sip() {
        Some(s) if s.release_ban(ip) => redirect("/telephony"),
        _ => err(&ui, DomainError::NotFound),
    }
}

// ----- trunks, call rules, outbound policy, click-to-call ----------------------------

use crate::domain::telephony::{
    parse_did_lines, CallRules, ExtensionRow, NewTrunk, OutboundSettings, TrunkRow,
};
use crate::sip::trunk::{TrunkState, TrunkStatus};

fn trunk_state(ui: &Ui, s: Option<&TrunkStatus>) -> Markup {
    match s.map(|s| &s.state) {
        Some(TrunkState::Registered { expires_in }) => html! {
            span.badge.ok data-trunk-state="registered" { (ui.t("trunk.registered")) } " " small.muted { (expires_in) " s" }
        },
        Some(TrunkState::Failed { reason, retry_in }) => html! {
            span.badge.bad data-trunk-state="failed" { (ui.t("trunk.failed")) } " " (reason)
            br; small.muted { (ui.t("trunk.next_attempt")) " " (retry_in) " s" }
        },
        Some(TrunkState::Registering) => html! {
            span.badge data-trunk-state="registering" { (ui.t("trunk.registering")) }
        },
        Some(TrunkState::NotRegistering) => html! {
            span.badge data-trunk-state="not_registering" { (ui.t("trunk.not_registering")) }
        },
        None => html! { span.muted { "—" } },
    }
}

/// The trunk, call-rule and outbound-policy sections of the telephony page.
fn trunk_sections(
    ui: &Ui,
    trunks: &[TrunkRow],
    rules: &CallRules,
    exts: &[ExtensionRow],
    branches: &[crate::domain::branches::BranchRow],
) -> Markup {
    let status = ui.state.ctx.telephony.trunk_status();
    html! {
        h2 #trunks { (ui.t("trunk.trunks")) }
        div.table-wrap { table #trunks-table {
            thead { tr {
                th { (ui.t("telephony.name")) } th { (ui.t("trunk.host")) } th { (ui.t("trunk.username")) }
                th { (ui.t("trunk.caller_id")) } th { (ui.t("trunk.dids")) } th { (ui.t("trunk.state")) } th {}
            } }
            tbody { @for t in trunks {
                tr data-trunk=(t.name) {
                    td { (t.name) }
                    td { code { (t.host) ":" (t.port) } " " (t.transport) }
                    td { code { (t.username) } }
                    td { (t.caller_id) }
                    td { @for d in &t.dids {
                        code { (d.did) } " → " (d.destination)
                        @if let Some(a) = &d.after_hours { " (" (ui.t("trunk.after_hours")) ": " (a) ")" }
                        @if let Some(b) = d.branch_id {
                            " · " span data-did-branch=(b) { (branches.iter().find(|x| x.id == b).map(|x| x.name.as_str()).unwrap_or("?")) }
                        }
                        br;
                    } }
                    td { (trunk_state(ui, status.iter().find(|s| s.id == t.id))) }
                    td { form.inline method="post" action=(format!("/telephony/trunks/{}/delete", t.id)) {
                        (csrf_field(ui)) button.link type="submit" { (ui.t("telephony.delete")) }
                    } }
                }
            } }
        } }
        form.card #trunk-form method="post" action="/telephony/trunks" {
            (csrf_field(ui))
            p.muted { (ui.t("trunk.form_help")) }
            label for="t-name" { (ui.t("telephony.name")) }
            input #t-name name="name" required maxlength="60";
            label for="t-host" { (ui.t("trunk.host")) }
            input #t-host name="host" required maxlength="253" autocapitalize="none";
            label for="t-port" { (ui.t("telephony.port")) }
            input #t-port name="port" type="number" min="1" max="65535" value="5060";
            label for="t-transport" { (ui.t("telephony.transport")) }
            select #t-transport name="transport" { option value="UDP" { "UDP" } option value="TCP" { "TCP" } }
            label for="t-username" { (ui.t("trunk.username")) }
            input #t-username name="username" required maxlength="64" autocapitalize="none";
            label for="t-secret" { (ui.t("telephony.secret")) }
            input #t-secret name="secret" type="password" maxlength="128" autocomplete="new-password";
            label for="t-auth" { (ui.t("trunk.auth_username")) }
            input #t-auth name="auth_username" maxlength="64" autocapitalize="none";
            label for="t-domain" { (ui.t("trunk.from_domain")) }
            input #t-domain name="from_domain" maxlength="253" autocapitalize="none";
            label { input name="register" type="checkbox" value="on" checked; " " (ui.t("trunk.register")) }
            label for="t-expires" { (ui.t("trunk.expires")) }
            input #t-expires name="expires" type="number" min="60" max="86400" value="600";
            label for="t-cid" { (ui.t("trunk.caller_id")) }
            input #t-cid name="caller_id" type="tel" maxlength="24" placeholder="+998712000000";
            label for="t-allow" { (ui.t("trunk.allow")) }
            input #t-allow name="allow" maxlength="400" placeholder="203.0.113.10, 203.0.113.11";
            label for="t-dids" { (ui.t("trunk.dids")) }
            textarea #t-dids name="dids" rows="3" placeholder="712000000 100 199 @2" {}
            p.muted { (ui.t("branch_scope.dids_help")) " "
                @for b in branches { code { "@" (b.id) } " = " (b.name) "; " } }
            button.primary type="submit" { (ui.t("trunk.save")) }
        }
        h2 #call-rules { (ui.t("trunk.rules")) }
        form.card #rules-form method="post" action="/telephony/rules" {
            (csrf_field(ui))
            label for="r-hours" { (ui.t("trunk.hours")) }
            input #r-hours name="hours" value=(rules.hours) placeholder="mon-fri 09:00-18:00; sat 10:00-14:00";
            label for="r-holidays" { (ui.t("trunk.holidays")) }
            input #r-holidays name="holidays" value=(rules.holidays) placeholder="2026-01-01, 2026-03-21";
            p.muted #r-zone { a href="/settings" { (ui.tr.f("trunk.hours_zone", &[("zone", ui.state.ctx.clock.get().zone_name())])) } }
            label for="r-digits" { (ui.t("trunk.dial_min_digits")) }
            input #r-digits name="dial_min_digits" type="number" min="0" max="20" value=(rules.dial_min_digits);
            label for="r-prefixes" { (ui.t("trunk.dial_prefixes")) }
            input #r-prefixes name="dial_prefixes" value=(rules.dial_prefixes);
            label for="r-retry" { (ui.t("trunk.retry")) }
            input #r-retry name="trunk_retry_secs" type="number" min="1" max="3600" value=(rules.trunk_retry_secs);
            button.primary type="submit" { (ui.t("trunk.save_rules")) }
        }
        h2 #outbound { (ui.t("trunk.outbound")) }
        p.muted { (ui.t("trunk.outbound_help")) }
        div.table-wrap { table #outbound-table {
            thead { tr {
                th { (ui.t("telephony.number")) } th { (ui.t("trunk.outbound_allowed")) } th { (ui.t("trunk.prefixes")) }
                th { (ui.t("trunk.per_hour")) } th { (ui.t("trunk.auto_answer")) } th {}
            } }
            tbody { @for e in exts {
                tr { form method="post" action=(format!("/telephony/extensions/{}/outbound", e.number)) {
                    td { code { (e.number) } (csrf_field(ui)) }
                    td { input name="outbound_allowed" type="checkbox" value="on" checked[e.outbound_allowed] aria-label=(ui.t("trunk.outbound_allowed")); }
                    td { input name="outbound_prefixes" value=(e.outbound_prefixes) placeholder=(ui.t("trunk.national_only")) aria-label=(ui.t("trunk.prefixes")); }
                    td { input name="max_calls_per_hour" type="number" min="0" max="10000" value=(e.max_calls_per_hour) aria-label=(ui.t("trunk.per_hour")); }
                    td { input name="auto_answer" type="checkbox" value="on" checked[e.auto_answer] aria-label=(ui.t("trunk.auto_answer")); }
                    td { button.link type="submit" { (ui.t("trunk.save")) } }
                } }
            } }
        } }
    }
}

#[derive(Deserialize)]
pub struct TrunkForm {
    name: String,
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    transport: String,
    username: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    auth_username: String,
    #[serde(default)]
    from_domain: String,
    register: Option<String>,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    caller_id: String,
    #[serde(default)]
    allow: String,
    #[serde(default)]
    dids: String,
}

fn number_field(v: &str, default: u32, field: &'static str) -> Result<u32, DomainError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(default);
    }
    v.parse().map_err(|_| {
        DomainError::invalid(crate::domain::Msg::new("err.field.whole_number").term("field", field))
    })
}

pub async fn save_trunk(ui: Ui, actor: Actor, form: web::Form<TrunkForm>) -> HttpResponse {
    let f = form.into_inner();
    let parsed = (|| {
        Ok::<_, DomainError>(NewTrunk {
            name: f.name,
            host: f.host,
            port: number_field(&f.port, 5060, "field.port")?,
            transport: if f.transport.is_empty() {
                "UDP".into()
            } else {
                f.transport
            },
            username: f.username,
            secret: f.secret,
            auth_username: f.auth_username,
            from_domain: f.from_domain,
            register: f.register.is_some(),
            expires: number_field(&f.expires, 600, "field.expiry")?,
            caller_id: f.caller_id,
            allow: f.allow,
            dids: parse_did_lines(&f.dids)?,
        })
    })();
    let r = match parsed {
        Ok(t) => ui.state.ctx.telephony.save_trunk(Some(&actor), t).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => redirect("/telephony#trunks"),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            overview(&ui, None, Some(&ui.msg(&m))).await
        }
        Err(e) => err(&ui, e),
    }
}

pub async fn delete_trunk(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .telephony
        .remove_trunk(Some(&actor), path.into_inner())
        .await
    {
        Ok(()) => redirect("/telephony#trunks"),
        Err(e) => err(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct RulesForm {
    #[serde(default)]
    hours: String,
    #[serde(default)]
    holidays: String,
    #[serde(default)]
    dial_min_digits: String,
    #[serde(default)]
    dial_prefixes: String,
    #[serde(default)]
    trunk_retry_secs: String,
}

pub async fn save_rules(ui: Ui, actor: Actor, form: web::Form<RulesForm>) -> HttpResponse {
    let f = form.into_inner();
    let r = async {
        let rules = CallRules {
            hours: f.hours,
            holidays: f.holidays,
            dial_min_digits: number_field(&f.dial_min_digits, 7, "field.digits")?,
            dial_prefixes: f.dial_prefixes,
            trunk_retry_secs: number_field(&f.trunk_retry_secs, 30, "field.retry")?,
        };
        ui.state
            .ctx
            .telephony
            .save_call_rules(Some(&actor), rules)
            .await
    }
    .await;
    match r {
        Ok(()) => redirect("/telephony#call-rules"),
        Err(DomainError::Invalid(m)) => overview(&ui, None, Some(&ui.msg(&m))).await,
        Err(e) => err(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct OutboundForm {
    outbound_allowed: Option<String>,
    #[serde(default)]
    outbound_prefixes: String,
    #[serde(default)]
    max_calls_per_hour: String,
    auto_answer: Option<String>,
}

pub async fn save_outbound(
    ui: Ui,
    actor: Actor,
    path: web::Path<String>,
    form: web::Form<OutboundForm>,
) -> HttpResponse {
    let f = form.into_inner();
    let number = path.into_inner();
    let r = async {
        let s = OutboundSettings {
            outbound_allowed: f.outbound_allowed.is_some(),
            outbound_prefixes: f.outbound_prefixes,
            max_calls_per_hour: number_field(&f.max_calls_per_hour, 20, "field.calls_per_hour")?,
            auto_answer: f.auto_answer.is_some(),
        };
        ui.state
            .ctx
            .telephony
            .set_outbound(Some(&actor), &number, s)
            .await
    }
    .await;
    match r {
        Ok(()) => redirect("/telephony#outbound"),
        Err(DomainError::Invalid(m)) => overview(&ui, None, Some(&ui.msg(&m))).await,
        Err(e) => err(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct DigestForm {
    digest: String,
}

pub async fn save_digest(
    ui: Ui,
    actor: Actor,
    path: web::Path<String>,
    form: web::Form<DigestForm>,
) -> HttpResponse {
    let number = path.into_inner();
    match ui
        .state
        .ctx
        .telephony
        .set_extension_digest(Some(&actor), &number, &form.digest)
        .await
    {
        Ok(()) => redirect("/telephony#extensions-table"),
        Err(DomainError::Invalid(m)) => overview(&ui, None, Some(&ui.msg(&m))).await,
        Err(e) => err(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct BranchForm {
    /// A branch id; empty: the whole shop.
    #[serde(default)]
    branch: String,
}

/// The extensions table's branch choice.
pub async fn save_branch(
    ui: Ui,
    actor: Actor,
    path: web::Path<String>,
    form: web::Form<BranchForm>,
) -> HttpResponse {
    let number = path.into_inner();
    let branch = match form.branch.trim() {
        "" => None,
        b => match b.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => return overview(&ui, None, Some(ui.t("error.invalid_choice"))).await,
        },
    };
    match ui
        .state
        .ctx
        .telephony
        .set_extension_branch(Some(&actor), &number, branch)
        .await
    {
        Ok(()) => redirect("/telephony#extensions-table"),
        Err(DomainError::Invalid(m)) => overview(&ui, None, Some(&ui.msg(&m))).await,
        Err(e) => err(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct DialForm {
    number: String,
}

/// Click-to-call from a page (assets/js/dial.js posts here): JSON either way, so the
/// script can show the outcome next to the number.
pub async fn dial(ui: Ui, actor: Actor, form: web::Form<DialForm>) -> HttpResponse {
    match ui
        .state
        .ctx
        .telephony
        .click_to_call(&actor, &form.number)
        .await
    {
        Ok(call_id) => HttpResponse::Accepted().json(serde_json::json!({
            "call_id": call_id,
            "message": ui.t("trunk.dialling"),
        })),
        Err(DomainError::Invalid(m)) => HttpResponse::UnprocessableEntity()
            .json(serde_json::json!({ "error": { "code": "invalid", "message": ui.msg(&m) } })),
        Err(e) => err(&ui, e),
    }
}
