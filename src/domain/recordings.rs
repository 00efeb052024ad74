//! Call recording (issue 16, part 2): the policy of each extension, ring group and trunk
//! (off, all calls, on demand), kept in memory for the SIP engine's question "is this
//! call recorded?"; the recordings the media plane finished (filed through the unit of
//! work); the files for the player; retention in days with a sweep that deletes old
//! recordings and logs each deletion.
//!
//! The files live under `<data dir>/recordings/YYYY/MM/` (the shop clock's month when
//! recording started). Backups hold them unless `recording.in_backups` is "0"; the
//! database rows are always there, so a box restored from a backup without them lists
//! recordings whose files are gone (the player says so).
//!
//! The announcement before recording (`recording.announce`: off, beep, file): the beep
//! is made in code; a file is an uploaded 8 kHz mono 16-bit WAV kept at
//! `<data dir>/prompts/announcement.wav`. The media plane gets it as G.711 at start and
//! after every change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::db::recordings as q;
use crate::db::recordings::RecordingRow;
use crate::db::settings;
use crate::events::{Audience, Event};
use crate::media::record::{safe_relative, Finished, Format};
use crate::sip::Recording;

use super::work::{Store, Who};
use super::{Action, Actor, DomainError, DomainResult, Msg};

pub const RETENTION_KEY: &str = "recording.retention_days";
/// off | beep | file.
pub const ANNOUNCE_KEY: &str = "recording.announce";
/// wav | opus: how recordings started from now on are stored.
pub const FORMAT_KEY: &str = "recording.format";
/// "0": backups leave the recordings out; anything else (or nothing): they hold them.
pub const IN_BACKUPS_KEY: &str = "recording.in_backups";
/// The uploaded announcement, under the data directory.
pub const PROMPT_FILE: &str = "prompts/announcement.wav";

/// What plays before recording starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Announce {
    #[default]
    Off,
    Beep,
    File,
}

impl Announce {
    pub const ALL: [Announce; 3] = [Announce::Off, Announce::Beep, Announce::File];

    pub fn parse(s: &str) -> Option<Announce> {
        Some(match s {
            "off" => Announce::Off,
            "beep" => Announce::Beep,
            "file" => Announce::File,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Announce::Off => "off",
            Announce::Beep => "beep",
            Announce::File => "file",
        }
    }
}
/// Longest retention accepted (ten years).
pub const MAX_RETENTION_DAYS: i64 = 3650;
/// Recordings deleted per sweep transaction.
const SWEEP_BATCH: i64 = 200;

/// The three kinds of things with a policy.
pub const KINDS: [&str; 3] = ["extension", "group", "trunk"];

#[derive(Default)]
struct Policies {
    /// By kind, then extension/group number or trunk id.
    by: HashMap<(String, String), Recording>,
}

/// The policies in memory: the SIP engine asks on every new call (no database call).
#[derive(Clone, Default)]
pub struct PolicyMap {
    inner: Arc<RwLock<Policies>>,
    /// Held from reading the rows to replacing the map, so two reloads cannot cross
    /// and leave the older rows in force.
    reload: Arc<tokio::sync::Mutex<()>>,
}

impl PolicyMap {
    fn replace(&self, rows: Vec<(String, String, String)>) {
        let by = rows
            .into_iter()
            .filter_map(|(k, r, m)| Some(((k, r), Recording::parse(&m)?)))
            .collect();
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Policies { by };
    }

    pub fn get(&self, kind: &str, r: &str) -> Recording {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by
            .get(&(kind.to_string(), r.to_string()))
            .copied()
            .unwrap_or_default()
    }
}

impl crate::media::RecordingPolicy for PolicyMap {
    fn recording(&self, parties: &[&str], trunk: Option<i64>) -> Recording {
        let p = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut best = Recording::Off;
        let mut see = |k: &str, r: String| {
            if let Some(m) = p.by.get(&(k.to_string(), r)) {
                best = best.max(*m);
            }
        };
        for n in parties {
            see("extension", n.to_string());
            see("group", n.to_string());
        }
        if let Some(t) = trunk {
            see("trunk", t.to_string());
        }
        best
    }
}

/// The stored settings (see [`Recordings::stored`]).
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// 0: keep for ever.
    pub retention_days: i64,
    pub announce: Announce,
    pub in_backups: bool,
    pub format: Format,
}

/// The settings form: every policy and the retention.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RecordingSettings {
    /// (kind, ref) -> mode.
    pub policies: Vec<(String, String, Recording)>,
    /// 0: keep for ever.
    pub retention_days: i64,
    /// None: unchanged.
    pub announce: Option<Announce>,
    /// None: unchanged.
    pub in_backups: Option<bool>,
    /// None: unchanged.
    #[serde(skip)]
    pub format: Option<Format>,
}

#[derive(Clone)]
pub struct Recordings {
    store: Store,
    dir: PathBuf,
    policies: PolicyMap,
    /// The media plane, once SIP runs (the call-card button asks it).
    media: Arc<std::sync::OnceLock<crate::media::Media>>,
}

impl Recordings {
    pub fn new(store: Store, dir: PathBuf) -> Recordings {
        Recordings {
            store,
            dir,
            policies: PolicyMap::default(),
            media: Default::default(),
        }
    }

    /// The running media plane (set once by the server).
    pub fn attach(&self, media: crate::media::Media) {
        let _ = self.media.set(media);
    }

    /// The call-card button: records call `call_id` (a live call's id) from now on.
    /// NotFound: no such call in the relay, or its policy is off (not tapped).
    pub async fn record_now(&self, by: &Actor, call_id: &str) -> DomainResult<()> {
        if call_id.is_empty() || call_id.len() > 256 {
            return Err(DomainError::NotFound);
        }
        let media = self.media.get().cloned().ok_or(DomainError::NotFound)?;
        if !media.is_recorded(call_id) {
            return Err(DomainError::NotFound);
        }
        let id = call_id.to_string();
        self.store
            .write(by, move |tx| {
                if !tx.who().can(Action::ListenRecordings) {
                    return Err(DomainError::Forbidden);
                }
                let call = q::call_row_id(tx, &id)?;
                tx.log(
                    "recording.started",
                    "call",
                    call,
                    serde_json::json!({"by": "button"}),
                );
                tx.emit(Event::new(
                    "recording.started",
                    serde_json::json!({"call_id": id}),
                    Audience::Can(Action::ListenRecordings),
                ));
                Ok(())
            })
            .await?;
        // After the commit (nothing to undo if the write is refused).
        media.record_now(call_id);
        Ok(())
    }

    /// The recordings directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn policy_map(&self) -> PolicyMap {
        self.policies.clone()
    }

    /// Loads the policies into memory and hands the media plane the announcement and
    /// the file format (at start and after each change), all in one turn: two saves
    /// cannot cross and leave the older settings in force.
    pub async fn reload(&self) -> DomainResult<()> {
        let _turn = self.policies.reload.lock().await;
        let rows = self.store.view(|c| Ok(q::policies(c)?)).await?;
        self.policies.replace(rows);
        if let Some(m) = self.media.get() {
            let s = self.stored().await?;
            m.set_prompt(self.prompt(s.announce).await.map(Arc::new));
            m.set_format(s.format);
        }
        Ok(())
    }

    /// The settings as stored, each with its default where unset, in one read.
    pub async fn stored(&self) -> DomainResult<Stored> {
        self.store
            .view(|c| {
                let get = |k| settings::get(c, k);
                Ok(Stored {
                    retention_days: get(RETENTION_KEY)?
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    announce: get(ANNOUNCE_KEY)?
                        .and_then(|v| Announce::parse(&v))
                        .unwrap_or_default(),
                    in_backups: get(IN_BACKUPS_KEY)?.as_deref() != Some("0"),
                    format: get(FORMAT_KEY)?
                        .and_then(|v| Format::parse(&v))
                        .unwrap_or_default(),
                })
            })
            .await
    }

    /// Saves the policies, the retention, the announcement and whether backups hold the
    /// recordings (one unit of work, logged).
    pub async fn save(&self, by: &Actor, s: RecordingSettings) -> DomainResult<()> {
        let prompt_file = self.prompt_path();
        if !(0..=MAX_RETENTION_DAYS).contains(&s.retention_days) {
            return Err(DomainError::invalid(
                Msg::new("recording.err.retention").with("max", MAX_RETENTION_DAYS),
            ));
        }
        for (k, r, _) in &s.policies {
            if !KINDS.contains(&k.as_str()) || r.is_empty() || r.len() > 32 {
                return Err(DomainError::invalid(Msg::new("recording.err.policy")));
            }
        }
        self.store
            .write(by, move |tx| {
                if !tx.who().can(Action::ManageTelephony) {
                    return Err(DomainError::Forbidden);
                }
                let now = tx.now();
                let mut changed = Vec::new();
                for (k, r, m) in &s.policies {
                    if q::set_policy(tx, k, r, m.as_str(), now)? {
                        changed.push(serde_json::json!({"kind": k, "ref": r, "mode": m}));
                    }
                }
                let old = settings::get(tx, RETENTION_KEY)?;
                let days = s.retention_days.to_string();
                if old.as_deref().unwrap_or("0") != days {
                    settings::set(tx, RETENTION_KEY, &days, now)?;
                }
                if let Some(a) = s.announce {
                    if a == Announce::File && !prompt_file.is_file() {
                        return Err(DomainError::invalid(Msg::new(
                            "recording.err.announce_missing",
                        )));
                    }
                    settings::set(tx, ANNOUNCE_KEY, a.as_str(), now)?;
                }
                if let Some(b) = s.in_backups {
                    settings::set(tx, IN_BACKUPS_KEY, if b { "1" } else { "0" }, now)?;
                }
                if let Some(f) = s.format {
                    settings::set(tx, FORMAT_KEY, f.as_str(), now)?;
                }
                tx.log(
                    "recording.settings",
                    "settings",
                    None,
                    serde_json::json!({
                        "policies": changed,
                        "retention_days": s.retention_days,
                        "announce": s.announce.map(Announce::as_str),
                        "in_backups": s.in_backups,
                        "format": s.format.map(Format::as_str),
                    }),
                );
                tx.emit(Event::new(
                    "recording.settings",
                    serde_json::json!({}),
                    Audience::Can(Action::ManageTelephony),
                ));
                Ok(())
            })
            .await?;
        self.reload().await
    }

    /// Where an uploaded announcement is kept.
    pub fn prompt_path(&self) -> PathBuf {
        self.dir
            .parent()
            .unwrap_or(Path::new("."))
            .join(PROMPT_FILE)
    }

    /// The announcement `a` (None: off, or its file is gone or bad).
    async fn prompt(&self, a: Announce) -> Option<crate::media::record::Prompt> {
        use crate::media::record::Prompt;
        match a {
            Announce::Off => None,
            Announce::Beep => Some(Prompt::beep()),
            Announce::File => {
                let path = self.prompt_path();
                match tokio::fs::read(&path)
                    .await
                    .ok()
                    .map(|b| Prompt::from_wav(&b))
                {
                    Some(Ok(p)) => Some(p),
                    _ => {
                        tracing::warn!(path = %path.display(), "recording: the announcement file is missing or bad; recording without it");
                        None
                    }
                }
            }
        }
    }

    /// Keeps an uploaded announcement (8 kHz mono 16-bit WAV, checked) and plays it from
    /// now on (the setting becomes `file`).
    pub async fn upload_prompt(&self, by: &Actor, wav: Vec<u8>) -> DomainResult<()> {
        if !by.can(Action::ManageTelephony) {
            return Err(DomainError::Forbidden);
        }
        crate::media::record::Prompt::from_wav(&wav)
            .map_err(|e| DomainError::invalid(Msg::new(e.key())))?;
        // The file before the row that points at it (a crash leaves an unused file).
        let path = self.prompt_path();
        let tmp = path.with_extension("wav.part");
        let io = |e: std::io::Error| {
            tracing::warn!(path = %path.display(), error = %e, "recording: cannot keep the announcement");
            DomainError::invalid(Msg::new("recording.err.announce_save"))
        };
        if let Some(d) = path.parent() {
            tokio::fs::create_dir_all(d).await.map_err(io)?;
        }
        tokio::fs::write(&tmp, &wav).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        let bytes = wav.len();
        self.store
            .write(by, move |tx| {
                if !tx.who().can(Action::ManageTelephony) {
                    return Err(DomainError::Forbidden);
                }
                settings::set(tx, ANNOUNCE_KEY, Announce::File.as_str(), tx.now())?;
                tx.log(
                    "recording.announcement",
                    "settings",
                    None,
                    serde_json::json!({"bytes": bytes}),
                );
                tx.emit(Event::new(
                    "recording.settings",
                    serde_json::json!({}),
                    Audience::Can(Action::ManageTelephony),
                ));
                Ok(())
            })
            .await?;
        self.reload().await
    }

    /// Files a finished recording (called by the app for the media plane's writer).
    pub async fn finished(&self, f: Finished) -> DomainResult<i64> {
        if !safe_relative(&f.path) {
            return Err(DomainError::invalid(Msg::new("recording.err.policy")));
        }
        self.store
            .write(Who::System, move |tx| {
                let row = RecordingRow {
                    id: 0,
                    call_id: f.call.clone(),
                    path: f.path.clone(),
                    started_ms: f.started_ms,
                    duration_ms: f.duration_ms,
                    bytes: f.bytes,
                };
                let id = q::insert(tx, &row, tx.now())?;
                let call = q::call_row_id(tx, &f.call)?;
                tx.log(
                    "recording.saved",
                    "call",
                    call,
                    serde_json::json!({"recording": id, "duration_ms": f.duration_ms, "bytes": f.bytes}),
                );
                tx.emit(Event::new(
                    "recording.saved",
                    serde_json::json!({"call": call, "recording": id}),
                    Audience::Can(Action::ListenRecordings),
                ));
                Ok(id)
            })
            .await
    }

    /// The recording of call-log row `call` and its file (NotFound: no recording, or
    /// its file is gone: [`Recordings::is_missing`] tells which).
    pub async fn file(&self, call: i64) -> DomainResult<(RecordingRow, PathBuf)> {
        let row = self
            .store
            .view(move |c| Ok(q::of_call(c, call)?))
            .await?
            .ok_or(DomainError::NotFound)?;
        if !safe_relative(&row.path) {
            return Err(DomainError::NotFound);
        }
        let full = self.dir.join(&row.path);
        if !full.is_file() {
            return Err(DomainError::NotFound);
        }
        Ok((row, full))
    }

    /// Does call-log row `call` have a recording whose file is gone (a box restored from
    /// a backup made without recordings)?
    pub async fn is_missing(&self, call: i64) -> DomainResult<bool> {
        let row = self.store.view(move |c| Ok(q::of_call(c, call)?)).await?;
        Ok(row.is_some_and(|r| !safe_relative(&r.path) || !self.dir.join(&r.path).is_file()))
    }

    /// Deletes the recordings older than the retention (by the shop clock), each one
    /// logged; returns how many went. Retention 0 keeps everything.
    pub async fn sweep(&self) -> DomainResult<usize> {
        let days = self.stored().await?.retention_days;
        if days <= 0 {
            return Ok(0);
        }
        let before_ms = (self.store.clock().get().now() - days * 86_400) * 1000;
        let mut total = 0;
        loop {
            let rows = self
                .store
                .view(move |c| Ok(q::older_than(c, before_ms, SWEEP_BATCH)?))
                .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let n = rows.len();
            let gone = rows.clone();
            self.store
                .write(Who::System, move |tx| {
                    for r in &gone {
                        q::delete(tx, r.id)?;
                        let call = q::call_row_id(tx, &r.call_id)?;
                        tx.log(
                            "recording.deleted",
                            "call",
                            call,
                            serde_json::json!({
                                "recording": r.id,
                                "path": r.path,
                                "started_ms": r.started_ms,
                                "retention_days": days,
                            }),
                        );
                    }
                    tx.emit(Event::new(
                        "recording.deleted",
                        serde_json::json!({"count": gone.len()}),
                        Audience::Can(Action::ListenRecordings),
                    ));
                    Ok(())
                })
                .await?;
            // After the commit: a failed delete leaves a file nobody lists, never a row
            // without its file by our doing.
            for r in rows.iter().filter(|r| safe_relative(&r.path)) {
                let p = self.dir.join(&r.path);
                if let Err(e) = std::fs::remove_file(&p) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %p.display(), error = %e, "recording: cannot delete the file");
                    }
                }
            }
            total += n;
            if (n as i64) < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}
