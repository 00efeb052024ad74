//! Roles (issue 19): the built-in ones (read only) and the owner's, made from the
//! permissions grouped by area.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};

use super::users::role_label;
use super::{html, html_status, redirect};
use crate::domain::access::Permissions;
use crate::domain::roles::{self, RoleInput, RoleView};
use crate::domain::{Actor, DomainError};
use crate::model::Role;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

fn err(ui: &Ui, e: DomainError) -> HttpResponse {
    PageError { err: e, tr: ui.tr }.error_response()
}

fn display_name(ui: &Ui, r: &RoleView) -> String {
    match r.key.parse::<Role>() {
        Ok(b) if r.builtin => role_label(ui, b).to_string(),
        _ => r.name.clone(),
    }
}

/// The role form: key, name, base, and a checkbox per permission under its area.
fn form(ui: &Ui, action: &str, v: &RoleInput, error: Option<&str>) -> Markup {
    let chosen = Permissions::from_stored(&v.permissions.join(" "));
    html! {
        (flash(error, "error"))
        form.card #role-form method="post" action=(action) {
            (csrf_field(ui))
            label for="name" { (ui.t("roles.name")) }
            input #name name="name" value=(v.name) required maxlength="60";
            label for="key" { (ui.t("roles.key")) }
            input #key name="key" value=(v.key) required maxlength="32" pattern="[a-z0-9][a-z0-9_-]{1,31}" autocapitalize="none";
            p.muted { (ui.t("roles.key_hint")) }
            label for="base" { (ui.t("roles.base")) }
            select #base name="base" {
                @for r in Role::ALL {
                    option value=(r.as_str()) selected[r == v.base] { (role_label(ui, r)) }
                }
            }
            p.muted { (ui.t("roles.base_hint")) }
            @for (area, actions) in roles::catalogue() {
                fieldset data-area=(area.key()) {
                    legend { (ui.tr.term(&area.label_key())) }
                    @for a in actions {
                        label.check {
                            input type="checkbox" name="perm" value=(a.key()) checked[chosen.has(a)];
                            " " (ui.tr.term(&a.label_key()))
                        }
                    }
                }
            }
            button.primary type="submit" { (ui.t("common.save")) }
        }
    }
}

fn list_page(ui: &Ui, all: &[RoleView], new: &RoleInput, error: Option<&str>) -> Markup {
    page(
        ui,
        ui.t("roles.title"),
        html! {
            div.page-head { h1 { (ui.t("roles.title")) } a.button href="/users" { (ui.t("nav.users")) } }
            div.table-wrap #roles-region data-live-topics="role.updated" { table #roles-table {
                thead { tr {
                    th { (ui.t("roles.name")) } th { (ui.t("roles.key")) } th { (ui.t("roles.base")) }
                    th { (ui.t("roles.permissions")) } th { (ui.t("nav.users")) }
                } }
                tbody {
                    @for r in all {
                        tr data-role=(r.key) {
                            td { @if let Some(id) = r.id { a href=(format!("/roles/{id}")) { (display_name(ui, r)) } }
                                 @else { (display_name(ui, r)) " " span.badge { (ui.t("roles.builtin")) } } }
                            td { code { (r.key) } }
                            td { (role_label(ui, r.base)) }
                            td { (r.permissions.len()) }
                            td { @if r.builtin { "—" } @else { (r.users) } }
                        }
                    }
                }
            } }
            h2 { (ui.t("roles.add")) }
            (form(ui, "/roles", new, error))
        },
    )
}

fn blank() -> RoleInput {
    RoleInput {
        key: String::new(),
        name: String::new(),
        base: Role::Operator,
        permissions: Permissions::defaults(Role::Operator)
            .to_keys()
            .into_iter()
            .map(String::from)
            .collect(),
    }
}

/// Reads the posted form; None when the base is not a role.
fn posted(pairs: Vec<(String, String)>) -> Option<RoleInput> {
    let get = |n: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Some(RoleInput {
        key: get("key"),
        name: get("name"),
        base: get("base").parse().ok()?,
        permissions: pairs
            .iter()
            .filter(|(k, _)| k == "perm")
            .map(|(_, v)| v.clone())
            .collect(),
    })
}

pub async fn list(ui: Ui) -> HttpResponse {
    match roles::list(&ui.state.ctx.store).await {
        Ok(all) => html(list_page(&ui, &all, &blank(), None)),
        Err(e) => err(&ui, e),
    }
}

pub async fn create(ui: Ui, actor: Actor, f: web::Form<Vec<(String, String)>>) -> HttpResponse {
    let Some(input) = posted(f.into_inner()) else {
        return crate::web::error::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            ui.t("error.invalid_choice"),
            ui.tr,
        );
    };
    match roles::create(&ui.state.ctx.store, &actor, input.clone()).await {
        Ok(r) => redirect(&format!("/roles/{}?saved=1", r.id.unwrap_or_default())),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            match roles::list(&ui.state.ctx.store).await {
                Ok(all) => html_status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    list_page(&ui, &all, &input, Some(&ui.msg(&m))),
                ),
                Err(e) => err(&ui, e),
            }
        }
        Err(e) => err(&ui, e),
    }
}

fn edit_page(ui: &Ui, id: i64, v: &RoleInput, notice: Option<&str>, error: Option<&str>) -> Markup {
    page(
        ui,
        &v.name,
        html! {
            div.page-head { h1 { (v.name) } a.button href="/roles" { (ui.t("roles.title")) } }
            (flash(notice, "ok"))
            (form(ui, &format!("/roles/{id}"), v, error))
        },
    )
}

fn input_of(r: RoleView) -> RoleInput {
    RoleInput {
        key: r.key,
        name: r.name,
        base: r.base,
        permissions: r.permissions.into_iter().map(String::from).collect(),
    }
}

#[derive(serde::Deserialize)]
pub struct EditQuery {
    saved: Option<u8>,
}

pub async fn edit_form(ui: Ui, id: web::Path<i64>, q: web::Query<EditQuery>) -> HttpResponse {
    let id = id.into_inner();
    match roles::get(&ui.state.ctx.store, id).await {
        Ok(r) => {
            let notice = q.saved.map(|_| ui.t("common.saved"));
            html(edit_page(&ui, id, &input_of(r), notice, None))
        }
        Err(e) => err(&ui, e),
    }
}

pub async fn update(
    ui: Ui,
    actor: Actor,
    id: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let id = id.into_inner();
    let Some(input) = posted(f.into_inner()) else {
        return crate::web::error::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            ui.t("error.invalid_choice"),
            ui.tr,
        );
    };
    match roles::update(&ui.state.ctx.store, &actor, id, input.clone()).await {
        Ok(_) => redirect(&format!("/roles/{id}?saved=1")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            edit_page(&ui, id, &input, None, Some(&ui.msg(&m))),
        ),
        Err(e) => err(&ui, e),
    }
}
