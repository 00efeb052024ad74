//! Call recordings (issue 16): the player on call rows, the file itself (with Range, for
//! the browser's `<audio>` seeking) and its download, the call-card button that starts
//! an on-demand recording, and the settings page (policy per extension, ring group and
//! trunk; retention; the announcement and its upload; recordings in backups).

use std::collections::HashMap;
use std::io::SeekFrom;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use maud::{html, Markup};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{html_status, redirect};
use crate::domain::recordings::{Announce, RecordingSettings, KINDS};
use crate::domain::{Actor, DomainError};
use crate::media::record::Format;
use crate::sip::Recording;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

fn err(ui: &Ui, e: DomainError) -> HttpResponse {
    PageError { err: e, tr: ui.tr }.error_response()
}

/// The player of call-log row `id` (the caller checked the reader may listen).
pub fn player(ui: &Ui, id: i64) -> Markup {
    html! {
        audio.recording controls preload="none" src=(format!("/calls/{id}/recording")) {}
        " " a.recording-download href=(format!("/calls/{id}/recording/download")) download { (ui.t("recording.download")) }
    }
}

/// One byte range of `len` bytes from a `Range` header: Ok(None) to send the whole file
/// (no header, or one we do not take: several ranges, another unit, garbage; a server
/// may ignore Range), Err(()) when it cannot be satisfied (416).
pub fn byte_range(v: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = v else { return Ok(None) };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit());
    let r = match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) if digits(b) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len - 1)
        }
        (false, true) if digits(a) => {
            let s: u64 = a.parse().map_err(|_| ())?;
            (s, len.saturating_sub(1))
        }
        (false, false) if digits(a) && digits(b) => {
            let (s, e): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            if e < s {
                return Ok(None);
            }
            (s, e.min(len.saturating_sub(1)))
        }
        _ => return Ok(None),
    };
    if r.0 >= len {
        return Err(());
    }
    Ok(Some(r))
}

async fn serve(ui: &Ui, req: &HttpRequest, id: &str, attachment: bool) -> HttpResponse {
    // Ids are call-log row numbers: anything else is no recording (never a path).
    let Ok(id) = id.parse::<i64>() else {
        return err(ui, DomainError::NotFound);
    };
    let recs = &ui.state.ctx.recordings;
    let (row, path) = match recs.file(id).await {
        Ok(x) => x,
        // The call row has a recording whose file is not on this box (restored from a
        // backup made without recordings): say so, in the reader's language.
        Err(DomainError::NotFound) if recs.is_missing(id).await.unwrap_or(false) => {
            return HttpResponse::Gone()
                .content_type("text/plain; charset=utf-8")
                .body(ui.t("recording.missing"));
        }
        Err(e) => return err(ui, e),
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return err(ui, DomainError::NotFound),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return err(ui, DomainError::NotFound),
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, end) = match byte_range(range, len) {
        Ok(None) => (actix_web::http::StatusCode::OK, 0, len.saturating_sub(1)),
        Ok(Some((s, e))) => (actix_web::http::StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish()
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    if start > 0 && file.seek(SeekFrom::Start(start)).await.is_err() {
        return err(ui, DomainError::NotFound);
    }
    let body = futures_util::stream::unfold((file, count), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (64 * 1024).min(left as usize)];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(web::Bytes::from(buf)),
                    (f, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let name = row
        .path
        .rsplit('/')
        .next()
        .unwrap_or("recording.wav")
        .to_string();
    let mut r = HttpResponse::build(status);
    r.content_type(Format::content_type_of(&row.path))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_LENGTH, count))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "{}; filename=\"{}\"",
                if attachment { "attachment" } else { "inline" },
                name.replace('"', "")
            ),
        ));
    if status == actix_web::http::StatusCode::PARTIAL_CONTENT {
        r.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")));
    }
    r.streaming(body)
}

/// GET /calls/{id}/recording: the WAV for the player (Range supported).
pub async fn play(ui: Ui, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&ui, &req, &id, false).await
}

/// GET /calls/{id}/recording/download
pub async fn download(ui: Ui, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&ui, &req, &id, true).await
}

#[derive(serde::Deserialize)]
pub struct RecordForm {
    call_id: String,
}

/// POST /calls/record: the call card's "Record" button (JSON answer).
pub async fn record(ui: Ui, actor: Actor, form: web::Form<RecordForm>) -> HttpResponse {
    match ui
        .state
        .ctx
        .recordings
        .record_now(&actor, form.call_id.trim())
        .await
    {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({
            "ok": true,
            "message": ui.t("recording.started"),
        })),
        Err(e) => err(&ui, e),
    }
}

fn mode_label(ui: &Ui, m: Recording) -> &'static str {
    ui.t(match m {
        Recording::Off => "recording.mode.off",
        Recording::OnDemand => "recording.mode.on_demand",
        Recording::All => "recording.mode.all",
    })
}

fn mode_select(ui: &Ui, name: String, cur: Recording) -> Markup {
    html! {
        select name=(name) {
            @for m in [Recording::Off, Recording::OnDemand, Recording::All] {
                option value=(m.as_str()) selected[m == cur] { (mode_label(ui, m)) }
            }
        }
    }
}

async fn settings_page(ui: &Ui, error: Option<&str>) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let r = async {
        Ok::<_, DomainError>((
            ctx.telephony.list_extensions().await?,
            ctx.telephony.list_groups().await?,
            ctx.telephony.list_trunks().await?,
            ctx.recordings.stored().await?,
        ))
    }
    .await;
    let has_file = ctx.recordings.prompt_path().is_file();
    let (exts, groups, trunks, stored) = match r {
        Ok(x) => x,
        Err(e) => return err(ui, e),
    };
    let (days, announce, in_backups, format) = (
        stored.retention_days,
        stored.announce,
        stored.in_backups,
        stored.format,
    );
    let map = ctx.recordings.policy_map();
    let status = if error.is_some() {
        actix_web::http::StatusCode::BAD_REQUEST
    } else {
        actix_web::http::StatusCode::OK
    };
    html_status(
        status,
        page(
            ui,
            ui.t("recording.title"),
            html! {
                h1 { (ui.t("recording.title")) }
                (flash(error, "error"))
                p.muted { (ui.t("recording.intro")) }
                form #recording-settings method="post" action="/telephony/recording" {
                    (csrf_field(ui))
                    label { (ui.t("recording.retention")) " "
                        input type="number" name="retention_days" min="0" max="3650" value=(days); }
                    p.muted { (ui.t("recording.retention_hint")) }
                    label { (ui.t("recording.announce")) " "
                        select name="announce" {
                            @for a in Announce::ALL {
                                option value=(a.as_str()) selected[a == announce] disabled[a == Announce::File && !has_file] {
                                    (ui.t(match a {
                                        Announce::Off => "recording.announce_off",
                                        Announce::Beep => "recording.announce_beep",
                                        Announce::File => "recording.announce_file",
                                    }))
                                }
                            }
                        }
                    }
                    label { (ui.t("recording.backups")) " "
                        select name="backups" {
                            option value="include" selected[in_backups] { (ui.t("recording.backups_include")) }
                            option value="leave_out" selected[!in_backups] { (ui.t("recording.backups_leave_out")) }
                        }
                    }
                    label { (ui.t("recording.format")) " "
                        select name="format" {
                            @for f in Format::ALL {
                                option value=(f.as_str()) selected[f == format] {
                                    (ui.t(match f {
                                        Format::Wav => "recording.format_wav",
                                        Format::Opus => "recording.format_opus",
                                    }))
                                }
                            }
                        }
                    }
                    h2 { (ui.t("recording.extensions")) }
                    @if exts.is_empty() { p.muted { "—" } }
                    table { tbody { @for e in &exts { tr {
                        td { (e.number) " " span.muted { (e.display_name) } }
                        td { (mode_select(ui, format!("extension:{}", e.number), map.get("extension", &e.number))) }
                    } } } }
                    h2 { (ui.t("recording.groups")) }
                    @if groups.is_empty() { p.muted { "—" } }
                    table { tbody { @for g in &groups { tr {
                        td { (g.number) " " span.muted { (g.name) } }
                        td { (mode_select(ui, format!("group:{}", g.number), map.get("group", &g.number))) }
                    } } } }
                    h2 { (ui.t("recording.trunks")) }
                    @if trunks.is_empty() { p.muted { "—" } }
                    table { tbody { @for t in &trunks { tr {
                        td { (t.name) }
                        td { (mode_select(ui, format!("trunk:{}", t.id), map.get("trunk", &t.id.to_string()))) }
                    } } } }
                    p { button.primary type="submit" { (ui.t("recording.save")) } }
                }
                form.card #announcement-upload method="post" enctype="multipart/form-data"
                    action=(format!("/telephony/recording/announcement?_csrf={}", ui.csrf)) {
                    label for="announcement" { (ui.t("recording.announce_upload")) }
                    input #announcement name="file" type="file" required accept=".wav,audio/wav";
                    p.muted { (ui.t("recording.announce_hint")) }
                    button type="submit" { (ui.t("recording.announce_send")) }
                }
            },
        ),
    )
}

async fn bad(ui: &Ui) -> HttpResponse {
    let m = ui.msg(&crate::i18n::Msg::new("recording.err.policy"));
    settings_page(ui, Some(&m)).await
}

/// GET /telephony/recording
pub async fn settings(ui: Ui) -> HttpResponse {
    settings_page(&ui, None).await
}

/// POST /telephony/recording: `retention_days`, `announce`, `backups`, `format`, and `<kind>:<ref>` = off | on_demand |
/// all for each extension, ring group and trunk.
pub async fn save(ui: Ui, actor: Actor, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let f = form.into_inner();
    let days = match f.get("retention_days").map(|v| v.trim()) {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(d) => d,
            Err(_) => {
                let m = ui.msg(
                    &crate::i18n::Msg::new("recording.err.retention")
                        .with("max", crate::domain::recordings::MAX_RETENTION_DAYS),
                );
                return settings_page(&ui, Some(&m)).await;
            }
        },
    };
    let mut policies = Vec::new();
    for (k, v) in &f {
        let Some((kind, r)) = k.split_once(':') else {
            continue;
        };
        let Some(mode) = Recording::parse(v) else {
            return bad(&ui).await;
        };
        if !KINDS.contains(&kind) {
            return bad(&ui).await;
        }
        policies.push((kind.to_string(), r.to_string(), mode));
    }
    policies.sort();
    let announce = match f.get("announce").map(|v| v.trim()) {
        None => None,
        Some(v) => match Announce::parse(v) {
            Some(a) => Some(a),
            None => return bad(&ui).await,
        },
    };
    let in_backups = match f.get("backups").map(|v| v.trim()) {
        None => None,
        Some("include") => Some(true),
        Some("leave_out") => Some(false),
        Some(_) => return bad(&ui).await,
    };
    let format = match f.get("format").map(|v| v.trim()) {
        None => None,
        Some(v) => match Format::parse(v) {
            Some(f) => Some(f),
            None => return bad(&ui).await,
        },
    };
    let s = RecordingSettings {
        policies,
        retention_days: days,
        announce,
        in_backups,
        format,
    };
    match ui.state.ctx.recordings.save(&actor, s).await {
        Ok(()) => redirect("/telephony/recording"),
        Err(DomainError::Invalid(m)) => {
            let m = ui.msg(&m);
            settings_page(&ui, Some(&m)).await
        }
        Err(e) => err(&ui, e),
    }
}

/// Largest announcement upload (30 s of 8 kHz 16-bit is 480 KB).
const MAX_PROMPT_BYTES: usize = 1024 * 1024;

/// POST /telephony/recording/announcement (multipart `file`): an 8 kHz mono 16-bit WAV
/// played before recording from now on.
pub async fn upload(ui: Ui, actor: Actor, form: actix_multipart::Multipart) -> HttpResponse {
    use crate::web::multipart::{self, UploadError};
    let parts = match multipart::read(form, |_| MAX_PROMPT_BYTES).await {
        Ok(p) => p,
        Err(UploadError::TooLarge { .. }) => {
            let m = ui.msg(&crate::i18n::Msg::new("recording.err.announce_length"));
            return settings_page(&ui, Some(&m)).await;
        }
        Err(UploadError::Malformed) => {
            let m = ui.msg(&crate::i18n::Msg::new("recording.err.announce_wav"));
            return settings_page(&ui, Some(&m)).await;
        }
    };
    let wav = parts
        .into_iter()
        .find(|p| p.name == "file")
        .map(|p| p.bytes)
        .unwrap_or_default();
    match ui.state.ctx.recordings.upload_prompt(&actor, wav).await {
        Ok(()) => redirect("/telephony/recording"),
        Err(DomainError::Invalid(m)) => {
            let m = ui.msg(&m);
            settings_page(&ui, Some(&m)).await
        }
        Err(e) => err(&ui, e),
    }
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
        for junk in [
            "bytes=abc",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=--",
            "bytes=9-1",
            "bytes=1-2-3",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(byte_range(Some(junk), 100), Ok(None), "{junk}");
        }
    }
}
