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
    let remote = remote_section(&ui);
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
            (remote)
        },
    ))
}

pub async fn create(ui: Ui) -> HttpResponse {
    let cfg = ui.state.ctx.config.clone();
    match web::block(move || {
        let done = backup::create(&cfg, None)?;
        // Verified: sealed and queued for the off-box targets (the uploaders send it).
        crate::ops::remote::replicate::queue_backup(&cfg, &done.path)?;
        Ok::<_, crate::ops::OpsError>(done)
    })
    .await
    {
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

/// The off-box targets (issue 21): where copies go, how far behind each is, its last
/// upload and error, from the replicator's status file. No secret is shown.
fn remote_section(ui: &Ui) -> maud::Markup {
    use crate::ops::remote::{now_ms, replicate};
    let cfg = &ui.state.ctx.config;
    let now = now_ms();
    let status = replicate::read_status(cfg);
    let warnings = replicate::warnings(cfg, status.as_ref(), now);
    let rows: Vec<_> = cfg
        .backup
        .remote
        .targets
        .iter()
        .map(|t| {
            let st = status
                .as_ref()
                .and_then(|s| s.targets.iter().find(|x| x.name == t.name).cloned());
            (t.name.clone(), t.describe(), st)
        })
        .collect();
    html! {
        h2 #remote { (ui.t("remote.title")) }
        @if !warnings.is_empty() {
            div.flash.flash-warn #remote-warning role="status" {
                (ui.t("remote.behind")) ": " (warnings.join("; "))
            }
        }
        @if cfg.backup.remote.targets.is_empty() {
            p { (ui.t("remote.none")) }
        } @else {
            p #replication-state {
                @if cfg.replication.enabled {
                    (ui.t("remote.replication_on").replace("{secs}", &format!("{:.1}", cfg.replication.interval_ms as f64 / 1000.0)))
                } @else {
                    (ui.t("remote.replication_off"))
                }
            }
            div.table-wrap { table #remote-targets {
                thead { tr {
                    th { (ui.t("remote.target")) } th { (ui.t("remote.place")) }
                    th { (ui.t("remote.last_upload")) } th { (ui.t("remote.lag")) }
                    th { (ui.t("remote.pending")) } th { (ui.t("remote.error")) }
                } }
                tbody {
                    @for (name, place, st) in &rows {
                        tr {
                            td { (name) }
                            td { code { (place) } }
                            @match st {
                                Some(st) => {
                                    td { @match st.last_ok_ms { Some(ms) => (ui.datetime(ms / 1000)), None => (ui.t("remote.never")) } }
                                    td.lag { (format!("{:.0} s", st.lag_secs(now))) }
                                    td { (st.pending) " (" (human_size(st.pending_bytes)) ")" }
                                    td { (st.last_error.clone().unwrap_or_default()) }
                                }
                                None => { td { (ui.t("remote.never")) } td {} td {} td {} }
                            }
                        }
                    }
                }
            } }
        }
    }
}
