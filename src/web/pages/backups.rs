//! Backups page (admin): the backups in the configured folder with their age and size, a
//! download link for each, and a button that takes one now (the same `ops::backup` the
//! CLI and the nightly job use).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::{html, redirect};
use crate::ops::{backup, human_age, human_size};
use crate::web::auth::Ui;
use crate::web::layout::{csrf_field, flash, page};

#[derive(Deserialize)]
pub struct Shown {
    done: Option<String>,
    failed: Option<String>,
}

pub async fn list(ui: Ui, q: web::Query<Shown>) -> HttpResponse {
    let cfg = ui.state.ctx.config.clone();
    let (files, warning) = web::block(move || {
        let now = crate::db::now();
        (
            backup::list(&cfg.backup_target_dir()),
            backup::staleness_warning(&cfg, now),
        )
    })
    .await
    .unwrap_or_default();
    let now = crate::db::now();
    let folder = ui.state.ctx.config.backup_target_dir();
    html(page(
        &ui,
        ui.t("backups.title"),
        html! {
            h1 { (ui.t("backups.title")) }
            (flash(q.done.as_deref().map(|_| ui.t("backups.done")), "ok"))
            @if let Some(e) = &q.failed { div.flash.flash-error role="alert" { (ui.t("backups.failed")) ": " (e) } }
            @if let Some(w) = &warning { div.flash.flash-warn #backup-warning role="status" { (ui.t("backups.stale")) " (" (w) ")" } }
            p { (ui.t("backups.folder")) ": " code { (folder.display()) } }
            form method="post" action="/backups" {
                (csrf_field(&ui))
                button type="submit" #backup-now { (ui.t("backups.create")) }
            }
            div.table-wrap { table #backups {
                thead { tr { th { (ui.t("backups.file")) } th { (ui.t("backups.made")) } th { (ui.t("backups.age")) } th { (ui.t("backups.size")) } th {} } }
                tbody {
                    @for b in &files {
                        tr {
                            td { (b.name) }
                            td { (ui.datetime(b.finished_at)) }
                            td { (human_age(now - b.finished_at)) }
                            td { (human_size(b.size)) }
                            td { a href=(format!("/backups/{}/download", b.name)) download { (ui.t("backups.download")) } }
                        }
                    }
                    @if files.is_empty() { tr { td colspan="5" { (ui.t("backups.none")) } } }
                }
            } }
        },
    ))
}

pub async fn create(ui: Ui) -> HttpResponse {
    let cfg = ui.state.ctx.config.clone();
    match web::block(move || backup::create(&cfg, None)).await {
        Ok(Ok(done)) => {
            tracing::info!(path = %done.path.display(), bytes = done.size, "backup taken from the web UI");
            let name = done
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            redirect(&format!(
                "/backups?{}",
                serde_urlencoded::to_string([("done", name)]).unwrap_or_default()
            ))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "backup from the web UI failed");
            redirect(&format!(
                "/backups?{}",
                serde_urlencoded::to_string([("failed", e.to_string())]).unwrap_or_default()
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "backup task failed");
            redirect("/backups?failed=internal")
        }
    }
}

/// Streams one finished backup (by its plain file name; never a path).
pub async fn download(ui: Ui, name: web::Path<String>) -> HttpResponse {
    let Some(b) = backup::find(&ui.state.ctx.config, &name) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(ui.t("error.not_found"));
    };
    let file = match tokio::fs::File::open(&b.path).await {
        Ok(f) => f,
        Err(_) => return HttpResponse::NotFound().finish(),
    };
    let body = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let kind = if b.name.ends_with(backup::SUFFIX) {
        "application/zstd"
    } else {
        "application/gzip"
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CONTENT_LENGTH, b.size))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", b.name),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body)
}
