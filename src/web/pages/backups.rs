//! Backups page (admin): the backups in the configured folder with their age and size, a
//! download link for each, and a button that takes one now (the same `ops::backup` the
//! CLI and the nightly job use).

use actix_web::http::header;
use actix_web::{web, HttpResponse, ResponseError};
use maud::html;
use serde::Deserialize;

use super::{html_status, redirect};
use crate::config::{RemoteConfig, RemoteTarget, ReplicationConfig, TargetKind};
use crate::domain::{Actor, DomainError};
use crate::i18n::Msg;
use crate::ops::remote::settings::{self as remote_settings, GeneralForm, TargetForm};
use crate::ops::{backup, human_age, human_size};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

#[derive(Deserialize)]
pub struct Shown {
    done: Option<String>,
    failed: Option<String>,
}

pub async fn list(ui: Ui, q: web::Query<Shown>) -> HttpResponse {
    render(&ui, &q, None, None).await
}

/// The page, with a message about the last off-box settings change (or its refusal).
async fn render(ui: &Ui, q: &Shown, notice: Option<&str>, error: Option<&str>) -> HttpResponse {
    let status = if error.is_some() {
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        actix_web::http::StatusCode::OK
    };
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
    let remote = remote_section(ui, notice, error);
    html_status(
        status,
        page(
            ui,
            ui.t("backups.title"),
            html! {
                h1 { (ui.t("backups.title")) }
                (flash(q.done.as_deref().map(|_| ui.t("backups.done")), "ok"))
                @if let Some(e) = &q.failed { div.flash.flash-error role="alert" { (ui.t("backups.failed")) ": " (e) } }
                @if let Some(w) = &warning { div.flash.flash-warn #backup-warning role="status" { (ui.t("backups.stale")) " (" (w) ")" } }
                p { (ui.t("backups.folder")) ": " code { (folder.display()) } }
                form method="post" action="/backups" {
                    (csrf_field(ui))
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
        ),
    )
}

pub async fn create(ui: Ui) -> HttpResponse {
    let cfg = ui.state.ctx.remote.config();
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
/// upload and error, from the replicator's status file; and the forms that change them.
/// No secret is ever shown: a stored one reads "set", and its field stays empty.
fn remote_section(ui: &Ui, notice: Option<&str>, error: Option<&str>) -> maud::Markup {
    use crate::ops::remote::{now_ms, replicate};
    let cfg = ui.state.ctx.remote.config();
    let now = now_ms();
    let status = replicate::read_status(&cfg);
    let warnings = replicate::warnings(&cfg, status.as_ref(), now);
    let rows: Vec<_> = cfg
        .backup
        .remote
        .targets
        .iter()
        .map(|t| {
            let st = status
                .as_ref()
                .and_then(|s| s.targets.iter().find(|x| x.name == t.name).cloned());
            (t.clone(), st)
        })
        .collect();
    let rep = &cfg.replication;
    html! {
        h2 #remote { (ui.t("remote.title")) }
        @if let Some(n) = notice { div.flash.flash-ok #remote-notice role="status" { (n) } }
        @if let Some(e) = error { div.flash.flash-error #remote-error role="alert" { (e) } }
        @if !warnings.is_empty() {
            div.flash.flash-warn #remote-warning role="status" {
                (ui.t("remote.behind")) ": " (warnings.join("; "))
            }
        }
        @if cfg.backup.remote.targets.is_empty() {
            p { (ui.t("remote.none")) }
        } @else {
            p #replication-state {
                @if rep.enabled {
                    (ui.t("remote.replication_on").replace("{secs}", &format!("{:.1}", rep.interval_ms as f64 / 1000.0)))
                } @else {
                    (ui.t("remote.replication_off"))
                }
            }
            div.table-wrap { table #remote-targets {
                thead { tr {
                    th { (ui.t("remote.target")) } th { (ui.t("remote.place")) }
                    th { (ui.t("remote.last_upload")) } th { (ui.t("remote.lag")) }
                    th { (ui.t("remote.pending")) } th { (ui.t("remote.error")) } th {}
                } }
                tbody {
                    @for (t, st) in &rows {
                        tr data-target=(t.name) {
                            td { (t.name) }
                            td { code { (t.describe()) } }
                            @match st {
                                Some(st) => {
                                    td { @match st.last_ok_ms { Some(ms) => (ui.datetime(ms / 1000)), None => (ui.t("remote.never")) } }
                                    td.lag { (format!("{:.0} s", st.lag_secs(now))) }
                                    td { (st.pending) " (" (human_size(st.pending_bytes)) ")" }
                                    td { (st.last_error.clone().unwrap_or_default()) }
                                }
                                None => { td { (ui.t("remote.never")) } td {} td {} td {} }
                            }
                            td {
                                form.inline method="post" action=(format!("/backups/remote/targets/{}/test", t.name)) {
                                    (csrf_field(ui))
                                    button type="submit" .test-target { (ui.t("remote.test")) }
                                }
                                form.inline method="post" action=(format!("/backups/remote/targets/{}/delete", t.name)) {
                                    (csrf_field(ui))
                                    button type="submit" .remove-target .danger { (ui.t("remote.remove")) }
                                }
                            }
                        }
                    }
                }
            } }
            @for (t, _) in &rows {
                details .edit-target data-target=(t.name) {
                    summary { (ui.t("remote.edit")) " " (t.name) }
                    (target_form(ui, Some(t)))
                }
            }
        }
        details #add-target open[cfg.backup.remote.targets.is_empty()] {
            summary { (ui.t("remote.add")) }
            (target_form(ui, None))
        }
        h3 { (ui.t("remote.settings")) }
        form #remote-settings method="post" action="/backups/remote/settings" {
            (csrf_field(ui))
            label { (ui.t("remote.field.public_key"))
                input type="text" name="public_key" value=(cfg.backup.remote.public_key.clone().unwrap_or_default()) placeholder="age1…" size="70";
            }
            p.muted { (ui.t("remote.public_key_help")) }
            label { (ui.t("remote.field.bandwidth_kbps"))
                input type="number" name="bandwidth_kbps" min="0" value=(cfg.backup.remote.bandwidth_kbps);
            }
            label { input type="checkbox" name="replication" value="1" checked[rep.enabled]; " " (ui.t("remote.field.replication")) }
            label { (ui.t("remote.field.interval_ms"))
                input type="number" name="interval_ms" min="100" max="60000" value=(rep.interval_ms);
            }
            label { (ui.t("remote.field.snapshot_every_hours"))
                input type="number" name="snapshot_every_hours" min="1" max="720" value=((rep.snapshot_every_secs / 3600).max(1));
            }
            label { (ui.t("remote.field.retention_hours"))
                input type="number" name="retention_hours" min="1" value=(rep.retention_hours);
            }
            label { (ui.t("remote.field.warn_lag_secs"))
                input type="number" name="warn_lag_secs" min="1" value=(rep.warn_lag_secs);
            }
            button type="submit" #save-remote-settings { (ui.t("remote.save")) }
        }
        p.muted #remote-file { (ui.t("remote.saved_where")) " " code { (cfg.remote_overlay_path().display()) } }
    }
}

/// The form for a new target (`t` None) or for changing one; secret fields always empty.
fn target_form(ui: &Ui, t: Option<&RemoteTarget>) -> maud::Markup {
    let v = |f: fn(&RemoteTarget) -> Option<String>| t.and_then(f).unwrap_or_default();
    let kind = t.map(|t| t.kind);
    let action = match t {
        Some(t) => format!("/backups/remote/targets/{}", t.name),
        None => "/backups/remote/targets".into(),
    };
    let secret_note = |set: bool| {
        html! { @if set { span.muted.secret-set { " (" (ui.t("remote.secret_set")) ")" } } }
    };
    html! {
        form.target-form method="post" action=(action) {
            (csrf_field(ui))
            @if t.is_none() {
                label { (ui.t("remote.field.name")) input type="text" name="name" required maxlength="40" pattern="[A-Za-z0-9_-]+"; }
            }
            label { (ui.t("remote.field.kind"))
                select name="kind" {
                    option value="s3" selected[kind == Some(TargetKind::S3)] { "S3" }
                    option value="sftp" selected[kind == Some(TargetKind::Sftp)] { "SFTP" }
                    option value="path" selected[kind == Some(TargetKind::Path)] { (ui.t("remote.kind_path")) }
                }
            }
            label { (ui.t("remote.field.keep")) input type="number" name="keep" min="1" value=(t.map(|t| t.keep).unwrap_or(14)); }
            fieldset { legend { "S3" }
                label { (ui.t("remote.field.endpoint")) input type="url" name="endpoint" value=(v(|t| t.endpoint.clone())) placeholder="https://s3.eu-central-1.amazonaws.com"; }
                label { (ui.t("remote.field.region")) input type="text" name="region" value=(v(|t| t.region.clone())); }
                label { (ui.t("remote.field.bucket")) input type="text" name="bucket" value=(v(|t| t.bucket.clone())); }
                label { (ui.t("remote.field.prefix")) input type="text" name="prefix" value=(v(|t| t.prefix.clone())); }
                label { (ui.t("remote.field.access_key_id")) input type="text" name="access_key_id" value=(v(|t| t.access_key_id.clone())) autocomplete="off"; }
                label { (ui.t("remote.field.secret_access_key")) (secret_note(t.is_some_and(|t| t.secret_access_key.is_some())))
                    input type="password" name="secret_access_key" value="" autocomplete="new-password";
                }
            }
            fieldset { legend { "SFTP" }
                label { (ui.t("remote.field.host")) input type="text" name="host" value=(v(|t| t.host.clone())); }
                label { (ui.t("remote.field.port")) input type="number" name="port" min="1" max="65535" value=(t.and_then(|t| t.port).map(|p| p.to_string()).unwrap_or_default()) placeholder="22"; }
                label { (ui.t("remote.field.user")) input type="text" name="user" value=(v(|t| t.user.clone())); }
                label { (ui.t("remote.field.password")) (secret_note(t.is_some_and(|t| t.password.is_some())))
                    input type="password" name="password" value="" autocomplete="new-password";
                }
                label { (ui.t("remote.field.key_file")) input type="text" name="key_file" value=(t.and_then(|t| t.key_file.as_ref()).map(|p| p.display().to_string()).unwrap_or_default()); }
                label { (ui.t("remote.field.host_key")) input type="text" name="host_key" value=(v(|t| t.host_key.clone())) placeholder="ssh-ed25519 AAAA…" size="60"; }
            }
            fieldset { legend { (ui.t("remote.kind_path")) " / SFTP" }
                label { (ui.t("remote.field.path")) input type="text" name="path" value=(v(|t| t.path.clone())); }
            }
            p.muted { (ui.t("remote.secret_help")) }
            button type="submit" { (ui.t("remote.save")) }
        }
    }
}

/// Puts new off-box settings in force: checked as crm.toml's would be, written to the
/// data directory's remote.toml as one unit of work with its activity entry and event
/// (a refusal writes nothing), then the uploaders and the replicator restart with them.
async fn apply(
    ui: &Ui,
    actor: &Actor,
    remote: RemoteConfig,
    replication: ReplicationConfig,
    what: &'static str,
    target: Option<String>,
) -> Result<(), DomainError> {
    let ctx = &ui.state.ctx;
    let mut cfg = ctx.remote.config();
    cfg.backup.remote = remote.clone();
    cfg.replication = replication.clone();
    remote_settings::check(&cfg).map_err(DomainError::Invalid)?;
    let names: Vec<String> = remote.targets.iter().map(|t| t.name.clone()).collect();
    let enabled = replication.enabled;
    let (r2, rep2, cfg2) = (remote.clone(), replication.clone(), cfg.clone());
    ctx.store
        .write(actor, move |tx| {
            crate::ops::remote::control::save_overlay(&cfg2, &r2, &rep2).map_err(|e| {
                tracing::error!(error = %e, "saving the off-box settings failed");
                DomainError::Invalid(Msg::new("remote.err.save").with("detail", e))
            })?;
            // Names only: never a secret in the log.
            let detail = serde_json::json!({"change": what, "target": target, "targets": names, "replication": enabled});
            tx.log("update", "backup_settings", None, detail.clone());
            tx.emit(crate::events::Event::new(
                "backups.settings",
                detail,
                crate::events::Audience::Admins,
            ));
            Ok(())
        })
        .await?;
    tracing::info!(
        change = what,
        "off-box settings changed from the backups page"
    );
    let control = ctx.remote.clone();
    let restarted = web::block(move || control.replace(remote, replication)).await;
    ctx.db
        .set_auto_checkpoint(!ctx.remote.replicating())
        .await?;
    match restarted {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "restarting the off-box copies failed");
            Err(DomainError::Invalid(
                Msg::new("remote.err.restart").with("detail", e),
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "restarting the off-box copies failed");
            Err(DomainError::Invalid(
                Msg::new("remote.err.restart").with("detail", e),
            ))
        }
    }
}

async fn outcome(ui: &Ui, r: Result<Msg, DomainError>) -> HttpResponse {
    let none = Shown {
        done: None,
        failed: None,
    };
    match r {
        Ok(m) => render(ui, &none, Some(&ui.msg(&m)), None).await,
        Err(DomainError::Invalid(m)) | Err(DomainError::Conflict(m)) => {
            render(ui, &none, None, Some(&ui.msg(&m))).await
        }
        Err(e) => PageError { err: e, tr: ui.tr }.error_response(),
    }
}

fn find(cfg: &crate::config::Config, name: &str) -> Result<RemoteTarget, DomainError> {
    cfg.backup
        .remote
        .targets
        .iter()
        .find(|t| t.name == name)
        .cloned()
        .ok_or(DomainError::NotFound)
}

pub async fn add_target(ui: Ui, actor: Actor, form: web::Form<TargetForm>) -> HttpResponse {
    let r = async {
        let mut remote = ui.state.ctx.remote.config().backup.remote;
        let others: Vec<&str> = remote.targets.iter().map(|t| t.name.as_str()).collect();
        let t = remote_settings::target_from_form(&form, None, &others)
            .map_err(DomainError::Invalid)?;
        if remote.public_key.is_none() {
            return Err(DomainError::Invalid(Msg::new("remote.err.no_key")));
        }
        let name = t.name.clone();
        remote.targets.push(t);
        let rep = ui.state.ctx.remote.config().replication;
        apply(&ui, &actor, remote, rep, "add", Some(name.clone())).await?;
        Ok(Msg::new("remote.added").with("name", name))
    }
    .await;
    outcome(&ui, r).await
}

pub async fn edit_target(
    ui: Ui,
    actor: Actor,
    name: web::Path<String>,
    form: web::Form<TargetForm>,
) -> HttpResponse {
    let r = async {
        let cfg = ui.state.ctx.remote.config();
        let old = find(&cfg, &name)?;
        let mut remote = cfg.backup.remote.clone();
        let others: Vec<&str> = remote
            .targets
            .iter()
            .filter(|t| t.name != old.name)
            .map(|t| t.name.as_str())
            .collect();
        let t = remote_settings::target_from_form(&form, Some(&old), &others)
            .map_err(DomainError::Invalid)?;
        for slot in remote.targets.iter_mut() {
            if slot.name == old.name {
                *slot = t.clone();
            }
        }
        apply(
            &ui,
            &actor,
            remote,
            cfg.replication.clone(),
            "edit",
            Some(old.name.clone()),
        )
        .await?;
        Ok(Msg::new("remote.saved_target").with("name", &old.name))
    }
    .await;
    outcome(&ui, r).await
}

pub async fn remove_target(ui: Ui, actor: Actor, name: web::Path<String>) -> HttpResponse {
    let r = async {
        let cfg = ui.state.ctx.remote.config();
        let old = find(&cfg, &name)?;
        let mut remote = cfg.backup.remote.clone();
        remote.targets.retain(|t| t.name != old.name);
        let mut rep = cfg.replication.clone();
        if remote.targets.is_empty() && rep.enabled {
            return Err(DomainError::Invalid(Msg::new(
                "remote.err.replication_needs_target",
            )));
        }
        rep.enabled &= !remote.targets.is_empty();
        apply(&ui, &actor, remote, rep, "remove", Some(old.name.clone())).await?;
        // Its queue goes: nothing will send it any more.
        let dir = crate::ops::remote::state_dir(&cfg)
            .join("outbox")
            .join(&old.name);
        let _ = web::block(move || std::fs::remove_dir_all(dir)).await;
        Ok(Msg::new("remote.removed").with("name", &old.name))
    }
    .await;
    outcome(&ui, r).await
}

pub async fn save_general(ui: Ui, actor: Actor, form: web::Form<GeneralForm>) -> HttpResponse {
    let r = async {
        let cfg = ui.state.ctx.remote.config();
        let (remote, rep) =
            remote_settings::general_from_form(&form, &cfg).map_err(DomainError::Invalid)?;
        apply(&ui, &actor, remote, rep, "settings", None).await?;
        Ok(Msg::new("remote.saved"))
    }
    .await;
    outcome(&ui, r).await
}

/// Connects to a target and writes, lists and deletes a small object there: whether
/// copies can go there now. Changes nothing (the probe object is removed).
pub async fn test_target(ui: Ui, name: web::Path<String>) -> HttpResponse {
    let r = async {
        let cfg = ui.state.ctx.remote.config();
        let t = find(&cfg, &name)?;
        let scratch = cfg.tmp_dir();
        let tested = web::block(move || crate::ops::remote::store::probe(&t, &scratch))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match tested {
            Ok(()) => Ok(Msg::new("remote.test_ok").with("name", &*name)),
            Err(e) => {
                tracing::warn!(target = %name, error = %e, "target test failed");
                Err(DomainError::Invalid(
                    Msg::new("remote.test_failed")
                        .with("name", &*name)
                        .with("detail", e),
                ))
            }
        }
    }
    .await;
    outcome(&ui, r).await
}
