//! Customer import pages (issue 18): upload a file, map its columns, preview every row's
//! verdict, import or cancel; undo an imported batch.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};

use super::{html, html_status, redirect};
use crate::domain::imports::BatchRow;
use crate::domain::imports::{Encoding, Field, Mapping, Preview, Upload, Verdict, MAX_BYTES};
use crate::domain::{Actor, DomainError};
use crate::model::PhoneNumber;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

/// Rows shown in a preview table (the counts cover all of them).
const PREVIEW_ROWS: usize = 200;

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

fn state_label(state: &str) -> &'static str {
    match state {
        "draft" => "outbound.import.state.draft",
        "imported" => "outbound.import.state.imported",
        "cancelled" => "outbound.import.state.cancelled",
        _ => "outbound.import.state.undone",
    }
}

fn list_page(ui: &Ui, batches: &[BatchRow], error: Option<&str>) -> Markup {
    page(
        ui,
        ui.t("outbound.import.title"),
        html! {
            h1 { (ui.t("outbound.import.title")) }
            (flash(error, "error"))
            form.card #import-upload method="post" enctype="multipart/form-data"
                action=(format!("/imports?_csrf={}", ui.csrf)) {
                label for="file" { (ui.t("outbound.import.file")) }
                input #file name="file" type="file" required accept=".csv,.txt,.xlsx,.xls,.ods";
                p.muted { (ui.tr.f("outbound.import.limits", &[("mb", &(MAX_BYTES / (1024 * 1024)).to_string()), ("rows", &crate::domain::imports::MAX_ROWS.to_string())])) }
                label for="encoding" { (ui.t("outbound.import.encoding")) }
                (encoding_select(ui, None))
                button.primary type="submit" { (ui.t("outbound.import.upload")) }
            }
            div.table-wrap { table #import-batches {
                thead { tr {
                    th { "#" } th { (ui.t("outbound.import.file")) } th { (ui.t("outbound.import.status")) }
                    th.num { (ui.t("outbound.import.rows")) } th.num { (ui.t("outbound.verdict.new")) }
                    th.num { (ui.t("outbound.verdict.match")) } th.num { (ui.t("outbound.verdict.invalid")) }
                    th { (ui.t("users.created")) }
                } }
                tbody { @for b in batches {
                    tr {
                        td { a href=(format!("/imports/{}", b.id)) { (b.id) } }
                        td { (b.file_name) }
                        td { (ui.t(state_label(&b.state))) }
                        td.num { (b.rows_total) } td.num { (b.created_n) } td.num { (b.merged_n) } td.num { (b.invalid_n) }
                        td { (ui.datetime(b.created_at)) }
                    }
                } }
            } }
        },
    )
}

fn encoding_select(ui: &Ui, current: Option<&str>) -> Markup {
    html! {
        select #encoding name="encoding" {
            option value="" { (ui.t("outbound.import.encoding_auto")) }
            @for e in Encoding::ALL {
                option value=(e.code()) selected[current == Some(e.code())] { (e.code()) }
            }
        }
    }
}

pub async fn list(ui: Ui) -> HttpResponse {
    match ui.state.ctx.imports.list(100).await {
        Ok(b) => html(list_page(&ui, &b, None)),
        Err(e) => fail(&ui, e),
    }
}

async fn list_with_error(ui: &Ui, status: StatusCode, err: &str) -> HttpResponse {
    let batches = ui.state.ctx.imports.list(100).await.unwrap_or_default();
    html_status(status, list_page(ui, &batches, Some(err)))
}

/// Reads the multipart upload: the `file` part (up to [`MAX_BYTES`]) and `encoding`.
async fn read_upload(
    form: actix_multipart::Multipart,
) -> Result<Upload, (StatusCode, DomainError)> {
    use crate::web::multipart::{self, UploadError};
    let parts = multipart::read(form, |name| if name == "file" { MAX_BYTES } else { 1024 })
        .await
        .map_err(|e| match e {
            UploadError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                DomainError::invalid(
                    crate::domain::Msg::new("err.import.too_large")
                        .with("max", multipart::megabytes(MAX_BYTES)),
                ),
            ),
            UploadError::Malformed => (
                StatusCode::BAD_REQUEST,
                DomainError::invalid("err.import.malformed_upload"),
            ),
        })?;
    let mut up = Upload {
        file_name: String::new(),
        bytes: Vec::new(),
        encoding: None,
    };
    let mut got_file = false;
    for part in parts {
        match part.name.as_str() {
            "file" => {
                up.file_name = part.file_name.unwrap_or_default();
                up.bytes = part.bytes;
                got_file = true;
            }
            "encoding" => {
                let typed = String::from_utf8_lossy(&part.bytes).to_string();
                up.encoding =
                    Encoding::parse(&typed).map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e))?;
            }
            _ => {}
        }
    }
    if !got_file || up.bytes.is_empty() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            DomainError::invalid("err.import.empty"),
        ));
    }
    Ok(up)
}

pub async fn upload(ui: Ui, actor: Actor, form: actix_multipart::Multipart) -> HttpResponse {
    let up = match read_upload(form).await {
        Ok(u) => u,
        Err((status, e)) => return list_with_error(&ui, status, &ui.msg(&e.message())).await,
    };
    match ui.state.ctx.imports.upload(&actor, up).await {
        Ok(id) => redirect(&format!("/imports/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            list_with_error(&ui, StatusCode::UNPROCESSABLE_ENTITY, &ui.msg(&m)).await
        }
        Err(e) => fail(&ui, e),
    }
}

fn verdict_cell(ui: &Ui, v: &Verdict) -> Markup {
    match v {
        Verdict::New => html! { span.badge.verdict-new { (ui.t("outbound.verdict.new")) } },
        Verdict::Match { customer_id, name } => html! {
            span.badge.verdict-match { (ui.t("outbound.verdict.match")) }
            " " a href=(format!("/customers/{customer_id}")) { "#" (customer_id) " " (name) }
        },
        Verdict::SameAs { row } => html! {
            span.badge.verdict-duplicate { (ui.t("outbound.verdict.duplicate")) }
            " " (ui.tr.f("outbound.verdict.same_as", &[("row", &row.to_string())]))
        },
        Verdict::Invalid(m) => html! {
            span.badge.verdict-invalid { (ui.t("outbound.verdict.invalid")) } " " span.why { (ui.msg(m)) }
        },
    }
}

fn draft_page(ui: &Ui, b: &BatchRow, p: &Preview, error: Option<&str>) -> Markup {
    let counts = p.plan.counts();
    let shown: Vec<_> = p
        .plan
        .rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Invalid(_)))
        .take(PREVIEW_ROWS)
        .chain(
            p.plan
                .rows
                .iter()
                .filter(|r| !matches!(r.verdict, Verdict::Invalid(_)))
                .take(PREVIEW_ROWS),
        )
        .collect();
    html! {
        h1 { (ui.t("outbound.import.title")) " #" (b.id) ": " (b.file_name) }
        (flash(error, "error"))
        @if let Some(same) = &p.same_file {
            p.flash.warning #same-file { (ui.tr.f("outbound.import.same_file", &[("id", &same.id.to_string()), ("when", &ui.datetime(same.imported_at.unwrap_or(same.created_at)))])) }
        }
        section.card #import-counts {
            dl.facts {
                dt { (ui.t("outbound.import.rows")) } dd #count-rows { (counts.rows) }
                dt { (ui.t("outbound.verdict.new")) } dd #count-new { (counts.new) }
                dt { (ui.t("outbound.verdict.match")) } dd #count-match { (counts.matched) }
                dt { (ui.t("outbound.verdict.duplicate")) } dd #count-duplicate { (counts.duplicates) }
                dt { (ui.t("outbound.verdict.invalid")) } dd #count-invalid { (counts.invalid) }
            }
        }
        form.card #import-mapping method="post" action=(format!("/imports/{}/mapping", b.id)) {
            (csrf_field(ui))
            h2 { (ui.t("outbound.import.mapping")) }
            @if p.format == "csv" {
                label for="encoding" { (ui.t("outbound.import.encoding")) }
                (encoding_select(ui, p.encoding.map(Encoding::code)))
            }
            label.check { input type="checkbox" name="header" value="1" checked[p.mapping.header]; " " (ui.t("outbound.import.header")) }
            div.table-wrap { table { tbody {
                @for i in 0..p.sheet_columns {
                    tr {
                        td { (ui.t("outbound.import.column")) " " (i + 1) @if let Some(h) = p.header_cells.get(i) { ": " strong { (h) } } }
                        td { select name=(format!("col{i}")) {
                            @for f in Field::ALL {
                                option value=(f.code()) selected[p.mapping.columns.get(i) == Some(&f)] { (ui.t(f.label())) }
                            }
                        } }
                    }
                }
            } } }
            button type="submit" { (ui.t("outbound.import.apply_mapping")) }
        }
        div.row {
            form method="post" action=(format!("/imports/{}/run", b.id)) {
                (csrf_field(ui))
                button.primary #import-run type="submit" { (ui.tr.f("outbound.import.run", &[("n", &(counts.new + counts.matched + counts.duplicates).to_string())])) }
            }
            form method="post" action=(format!("/imports/{}/cancel", b.id)) {
                (csrf_field(ui))
                button #import-cancel type="submit" { (ui.t("outbound.import.cancel")) }
            }
        }
        div.table-wrap { table #import-preview {
            thead { tr { th { (ui.t("outbound.import.row")) } th { (ui.t("customers.name")) } th { (ui.t("customers.phone")) } th { (ui.t("outbound.import.verdict")) } } }
            tbody { @for r in shown {
                tr data-verdict=(r.verdict.code()) {
                    td { (r.row) } td { (r.name) }
                    td { (r.phones.iter().map(|p| PhoneNumber::from_e164_unchecked(p.clone()).display()).collect::<Vec<_>>().join(", ")) }
                    td { (verdict_cell(ui, &r.verdict)) }
                }
            } }
        } }
    }
}

fn done_page(ui: &Ui, b: &BatchRow, error: Option<&str>) -> Markup {
    html! {
        h1 { (ui.t("outbound.import.title")) " #" (b.id) ": " (b.file_name) }
        (flash(error, "error"))
        section.card #import-result {
            dl.facts {
                dt { (ui.t("outbound.import.status")) } dd #import-state { (ui.t(state_label(&b.state))) }
                dt { (ui.t("outbound.import.rows")) } dd { (b.rows_total) }
                dt { (ui.t("outbound.import.created")) } dd #import-created { (b.created_n) }
                dt { (ui.t("outbound.import.merged")) } dd #import-merged { (b.merged_n) }
                dt { (ui.t("outbound.verdict.invalid")) } dd #import-invalid { (b.invalid_n) }
                @if b.state == "undone" { dt { (ui.t("outbound.import.kept")) } dd #import-kept { (b.kept_n) } }
            }
        }
        @if b.state == "imported" {
            form method="post" action=(format!("/imports/{}/undo", b.id)) {
                (csrf_field(ui))
                button #import-undo type="submit" { (ui.t("outbound.import.undo")) }
            }
        }
        p { a href="/imports" { "← " (ui.t("outbound.import.title")) } }
    }
}

async fn render(
    ui: &Ui,
    actor: &Actor,
    id: i64,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let imports = &ui.state.ctx.imports;
    let b = match imports.get(id).await {
        Ok(b) => b,
        Err(e) => return fail(ui, e),
    };
    let title = format!("{} #{id}", ui.t("outbound.import.title"));
    if b.state != "draft" {
        return html_status(status, page(ui, &title, done_page(ui, &b, error)));
    }
    match imports.preview(actor, id).await {
        Ok((b, p)) => html_status(status, page(ui, &title, draft_page(ui, &b, &p, error))),
        // The mapping lacks a phone or name column: say so above the mapping form, with
        // the columns as they are.
        Err(DomainError::Invalid(m)) => {
            let mapping: Mapping = serde_json::from_str(&b.mapping).unwrap_or(Mapping {
                header: true,
                columns: vec![],
            });
            let p = Preview {
                sheet_columns: mapping.columns.len(),
                header_cells: vec![],
                encoding: b
                    .encoding
                    .as_deref()
                    .and_then(|e| Encoding::parse(e).ok().flatten()),
                format: if b.format == "csv" { "csv" } else { "excel" },
                mapping,
                plan: crate::domain::imports::Plan { rows: vec![] },
                same_file: None,
            };
            let why = ui.msg(&m);
            html_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                page(
                    ui,
                    &title,
                    draft_page(ui, &b, &p, Some(error.unwrap_or(&why))),
                ),
            )
        }
        Err(e) => fail(ui, e),
    }
}

pub async fn show(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    render(&ui, &actor, path.into_inner(), None, StatusCode::OK).await
}

/// The mapping form's columns, header and encoding (columns past the limit are passed
/// over); the first unknown field or encoding refuses it.
fn mapping_of(form: &[(String, String)]) -> Result<(Mapping, Option<Encoding>), DomainError> {
    let mut cols: Vec<(usize, Field)> = Vec::new();
    let mut header = false;
    let mut encoding = None;
    for (k, v) in form {
        if let Some(n) = k.strip_prefix("col").and_then(|n| n.parse::<usize>().ok()) {
            if n < crate::domain::imports::MAX_COLUMNS {
                cols.push((n, Field::from_code(v)?));
            }
        } else if k == "header" {
            header = true;
        } else if k == "encoding" {
            encoding = Encoding::parse(v)?;
        }
    }
    let width = cols.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
    let mut columns = vec![Field::Ignore; width];
    for (n, f) in cols {
        columns[n] = f;
    }
    Ok((Mapping { header, columns }, encoding))
}

pub async fn save_mapping(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let id = path.into_inner();
    let saved = match mapping_of(&form) {
        Ok((m, encoding)) => {
            ui.state
                .ctx
                .imports
                .set_mapping(&actor, id, m, encoding)
                .await
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => redirect(&format!("/imports/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            render(
                &ui,
                &actor,
                id,
                Some(&ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn run(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    match ui.state.ctx.imports.run(&actor, id).await {
        Ok(_) => redirect(&format!("/imports/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            render(&ui, &actor, id, Some(&ui.msg(&m)), StatusCode::CONFLICT).await
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn cancel(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    match ui.state.ctx.imports.cancel(&actor, id).await {
        Ok(()) => redirect("/imports"),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            render(&ui, &actor, id, Some(&ui.msg(&m)), StatusCode::CONFLICT).await
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn undo(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    match ui.state.ctx.imports.undo(Some(&actor), id).await {
        Ok(_) => redirect(&format!("/imports/{id}")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            render(&ui, &actor, id, Some(&ui.msg(&m)), StatusCode::CONFLICT).await
        }
        Err(e) => fail(&ui, e),
    }
}
