//! The backups page's forms for the off-box settings: a target (added, edited, removed)
//! and the general settings (owner's public key, bandwidth limit, replication). Each
//! form is checked here and turned into new `[backup.remote]` / `[replication]`
//! sections; a refusal names the field in the reader's language (the `remote` catalogue
//! area). Secrets are never shown back: an empty secret field keeps the stored one.

use crate::config::{Config, RemoteConfig, RemoteTarget, ReplicationConfig, TargetKind};
use crate::i18n::Msg;

/// The target form, as posted.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct TargetForm {
    pub name: String,
    pub kind: String,
    pub keep: String,
    pub path: String,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub host: String,
    pub port: String,
    pub user: String,
    pub password: String,
    pub key_file: String,
    pub host_key: String,
}

/// The general form, as posted.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct GeneralForm {
    pub public_key: String,
    pub bandwidth_kbps: String,
    /// A checkbox: present when ticked.
    pub replication: Option<String>,
    pub interval_ms: String,
    pub snapshot_every_hours: String,
    pub retention_hours: String,
    pub warn_lag_secs: String,
}

const MAX_TEXT: usize = 1000;

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn field(name: &'static str) -> String {
    format!("remote.field.{name}")
}

fn needs(name: &'static str) -> Msg {
    Msg::new("remote.err.needs").term("field", field(name))
}

fn number(name: &'static str, raw: &str, min: u64, max: u64) -> Result<u64, Msg> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            Msg::new("remote.err.number")
                .term("field", field(name))
                .with("min", min)
                .with("max", max)
        })
}

/// Checks a target form. `old` is the target being edited (its secrets stay when the
/// form leaves them empty); `others` are the other targets' names.
pub fn target_from_form(
    f: &TargetForm,
    old: Option<&RemoteTarget>,
    others: &[&str],
) -> Result<RemoteTarget, Msg> {
    let all = [
        &f.name,
        &f.kind,
        &f.keep,
        &f.path,
        &f.endpoint,
        &f.region,
        &f.bucket,
        &f.prefix,
        &f.access_key_id,
        &f.secret_access_key,
        &f.host,
        &f.port,
        &f.user,
        &f.password,
        &f.key_file,
        &f.host_key,
    ];
    if all.iter().any(|v| v.len() > MAX_TEXT) {
        return Err(Msg::new("remote.err.too_long"));
    }
    let name = match old {
        Some(o) => o.name.clone(),
        None => f.name.trim().to_string(),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(Msg::new("remote.err.name"));
    }
    if others.contains(&name.as_str()) {
        return Err(Msg::new("remote.err.name_taken").with("name", &name));
    }
    let kind = match f.kind.trim() {
        "s3" => TargetKind::S3,
        "sftp" => TargetKind::Sftp,
        "path" => TargetKind::Path,
        _ => return Err(Msg::new("remote.err.kind")),
    };
    let keep = if f.keep.trim().is_empty() {
        14
    } else {
        number("keep", &f.keep, 1, 1000)? as usize
    };
    // A secret left empty keeps the stored one (never shown, so never sent back).
    let keep_secret = |new: &str, old: Option<&Option<String>>| -> Option<String> {
        opt(new).or_else(|| old.cloned().flatten())
    };
    let mut t = RemoteTarget {
        name,
        kind,
        keep,
        path: None,
        endpoint: None,
        region: None,
        bucket: None,
        prefix: None,
        access_key_id: None,
        secret_access_key: None,
        host: None,
        port: None,
        user: None,
        password: None,
        key_file: None,
        host_key: None,
    };
    let same_kind = old.filter(|o| o.kind == kind);
    match kind {
        TargetKind::Path => {
            let p = opt(&f.path).ok_or_else(|| needs("path"))?;
            if !p.starts_with('/') {
                return Err(Msg::new("remote.err.absolute").term("field", field("path")));
            }
            t.path = Some(p);
        }
        TargetKind::S3 => {
            if let Some(ep) = opt(&f.endpoint) {
                let ok = (ep.starts_with("http://") || ep.starts_with("https://"))
                    && ep.len() > 8
                    && !ep.contains(char::is_whitespace);
                if !ok {
                    return Err(Msg::new("remote.err.endpoint"));
                }
                t.endpoint = Some(ep);
            }
            t.region = opt(&f.region);
            t.bucket = Some(opt(&f.bucket).ok_or_else(|| needs("bucket"))?);
            t.prefix = opt(&f.prefix);
            t.access_key_id = Some(opt(&f.access_key_id).ok_or_else(|| needs("access_key_id"))?);
            t.secret_access_key = Some(
                keep_secret(
                    &f.secret_access_key,
                    same_kind.map(|o| &o.secret_access_key),
                )
                .ok_or_else(|| needs("secret_access_key"))?,
            );
        }
        TargetKind::Sftp => {
            t.host = Some(opt(&f.host).ok_or_else(|| needs("host"))?);
            if !f.port.trim().is_empty() {
                t.port = Some(number("port", &f.port, 1, 65535)? as u16);
            }
            t.user = Some(opt(&f.user).ok_or_else(|| needs("user"))?);
            let p = opt(&f.path).ok_or_else(|| needs("path"))?;
            if !p.starts_with('/') {
                return Err(Msg::new("remote.err.absolute").term("field", field("path")));
            }
            t.path = Some(p);
            let hk = opt(&f.host_key).ok_or_else(|| needs("host_key"))?;
            if russh::keys::PublicKey::from_openssh(&hk).is_err() {
                return Err(Msg::new("remote.err.host_key"));
            }
            t.host_key = Some(hk);
            t.key_file = opt(&f.key_file).map(std::path::PathBuf::from);
            if let Some(k) = &t.key_file {
                if !k.is_absolute() {
                    return Err(Msg::new("remote.err.absolute").term("field", field("key_file")));
                }
            }
            t.password = keep_secret(&f.password, same_kind.map(|o| &o.password));
            if t.password.is_none() && t.key_file.is_none() {
                return Err(Msg::new("remote.err.sftp_auth"));
            }
        }
    }
    Ok(t)
}

/// Checks the general form against the targets in force.
pub fn general_from_form(
    f: &GeneralForm,
    current: &Config,
) -> Result<(RemoteConfig, ReplicationConfig), Msg> {
    let texts = [
        &f.public_key,
        &f.bandwidth_kbps,
        &f.interval_ms,
        &f.snapshot_every_hours,
        &f.retention_hours,
        &f.warn_lag_secs,
    ];
    if texts.iter().any(|v| v.len() > MAX_TEXT) {
        return Err(Msg::new("remote.err.too_long"));
    }
    let mut remote = current.backup.remote.clone();
    remote.public_key = opt(&f.public_key);
    if let Some(k) = &remote.public_key {
        if k.parse::<age::x25519::Recipient>().is_err() {
            return Err(Msg::new("remote.err.public_key"));
        }
    }
    remote.bandwidth_kbps = if f.bandwidth_kbps.trim().is_empty() {
        0
    } else {
        number("bandwidth_kbps", &f.bandwidth_kbps, 0, 10_000_000)?
    };
    let mut rep = current.replication.clone();
    rep.enabled = f.replication.is_some();
    rep.interval_ms = number("interval_ms", &f.interval_ms, 100, 60_000)?;
    rep.snapshot_every_secs =
        number("snapshot_every_hours", &f.snapshot_every_hours, 1, 720)? * 3600;
    rep.retention_hours = number("retention_hours", &f.retention_hours, 1, 24 * 365)?;
    rep.warn_lag_secs = number("warn_lag_secs", &f.warn_lag_secs, 1, 86_400)?;
    if !remote.targets.is_empty() && remote.public_key.is_none() {
        return Err(Msg::new("remote.err.no_key"));
    }
    if rep.enabled && remote.targets.is_empty() {
        return Err(Msg::new("remote.err.replication_needs_target"));
    }
    Ok((remote, rep))
}

/// The last check, as crm.toml's would be checked at start (so what is saved loads).
pub fn check(cfg: &Config) -> Result<(), Msg> {
    cfg.check_remote()
        .map_err(|e| Msg::new("remote.err.invalid").with("detail", e))
}
