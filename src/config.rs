//! Boot configuration: defaults < TOML file < `CRM_*` environment < command-line flags.
//! Runtime settings that staff edit in the UI (SMTP, Telegram, branding...) live in the
//! database instead; this file holds only what is needed before the database opens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::db::Durability;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/crm/crm.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting {key} = {value:?}: {message}")]
    Invalid {
        key: &'static str,
        value: String,
        message: String,
    },
}

/// Where the SIP server listens, or that it is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipListen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for SipListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(SipListen::Off);
        }
        s.parse()
            .map(SipListen::On)
            .map_err(|e| format!("expected ADDR:PORT or \"off\": {e}"))
    }
}

impl std::fmt::Display for SipListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SipListen::Off => f.write_str("off"),
            SipListen::On(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A session unused for this long ends.
    pub idle_minutes: u64,
    /// A session ends this long after login, used or not.
    pub absolute_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Failed logins for one username within the window that lock it.
    pub max_failures_per_user: u32,
    /// Failed logins from one address within the window that lock it.
    pub max_failures_per_ip: u32,
    pub window_minutes: u64,
    /// argon2id memory cost in KiB and passes; chosen so one login takes 50-150 ms on a
    /// small box (see docs/PERFORMANCE.md).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// Password hashes computed at once (each takes `argon2_memory_kib`); 0 = as many as
    /// cores, at most what fits in 128 MiB.
    pub max_parallel_hashes: u32,
    /// How long a sign-in waits for a free hashing slot before it is answered 429.
    pub hash_wait_ms: u64,
}

impl LoginConfig {
    /// The number of password hashes allowed to run at once.
    pub fn parallel_hashes(&self) -> usize {
        if self.max_parallel_hashes > 0 {
            return self.max_parallel_hashes as usize;
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let fit = (128 * 1024 / self.argon2_memory_kib.max(1)) as usize;
        cores.min(fit).max(1)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Everything on disk lives here: crm.db, attachments/, backups/, tmp/.
    pub data_dir: PathBuf,
    /// SIP listen address (UDP and TCP), or "off".
    pub sip: String,
    /// Host (name or IP) the box puts in Via/Contact/Record-Route; none: the listen
    /// address, or with 0.0.0.0 the local address of the route to each peer.
    pub sip_advertise: Option<String>,
    /// The office's own networks (CIDR, e.g. ["192.168.1.0/24"]): an address there is
    /// never banned as a whole (a phone with a wrong secret is banned alone), and desk
    /// phones there may fetch their provisioning files. Empty: none trusted.
    pub sip_trusted_networks: Vec<String>,
    /// The feature code a phone transfers a call to for a park on the first free orbit.
    pub sip_park_code: String,
    /// The park orbits, a range of numbers like "701-720" (dialling one retrieves its
    /// call); "" turns park off.
    pub sip_park_orbits: String,
    /// Seconds a parked call waits before the parker's phone rings with it.
    pub sip_park_timeout_secs: u64,
    /// tracing filter, e.g. "info" or "crm=debug,info".
    pub log: String,
    /// PEM certificate chain and key; when both are set HTTP is served over TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// "full" fsyncs every commit (survives power loss); "normal" survives a process crash.
    pub durability: Durability,
    /// Largest request body accepted, in bytes (uploads have their own limit).
    pub max_body_bytes: usize,
    /// Bearer token that /metrics requires when set (secret).
    pub metrics_token: Option<String>,
    pub session: SessionConfig,
    pub login: LoginConfig,
    pub backup: BackupConfig,
    pub replication: ReplicationConfig,
    /// The media plane (RTP relay): `[media]`.
    pub media: MediaSettings,
    pub upgrade: UpgradeConfig,
    pub api_limits: ApiLimitsConfig,
}

/// Request limits of the HTTP API (`/api/*`), each a token bucket: a sustained rate a
/// second and a burst. 0 turns a limit off. The SIP engine never passes through them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLimitsConfig {
    /// Requests a second per API token.
    pub per_token: u32,
    pub per_token_burst: u32,
    /// Requests a second per client address (any credential, or none).
    pub per_address: u32,
    pub per_address_burst: u32,
}

impl Default for ApiLimitsConfig {
    fn default() -> Self {
        ApiLimitsConfig {
            per_token: 20,
            per_token_burst: 200,
            per_address: 50,
            per_address_burst: 500,
        }
    }
}

/// Automatic backups (`crm backup` and the backups page work without these).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Daily backup time "HH:MM" in the shop's time zone (the shop setting), or "off".
    pub time: String,
    /// No longer used: the backup time follows the shop's time zone setting. Still
    /// accepted so an older crm.toml that sets it keeps loading (a warning is logged).
    #[serde(skip_serializing)]
    pub utc_offset: Option<String>,
    /// How many automatic backups to keep in `dir`; older ones are deleted.
    pub keep: usize,
    /// Where backups go, e.g. a USB disk or a mounted share. Default: <data_dir>/backups.
    pub dir: Option<PathBuf>,
    /// `crm doctor` and the dashboard warn when the newest good backup is older than this.
    pub warn_after_hours: u64,
    /// Copies off the box: S3, SFTP, a mounted path (issue 21).
    pub remote: RemoteConfig,
}

/// Off-box copies: every verified scheduled backup, and the replication stream, go to
/// each target, encrypted to `public_key` (age, X25519) before they leave the box.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// The owner's public key, "age1..." (`crm backup keygen` makes the pair; the box
    /// never keeps the private half).
    pub public_key: Option<String>,
    /// Upload speed limit per target, in KB/s; 0 = none.
    pub bandwidth_kbps: u64,
    pub targets: Vec<RemoteTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    S3,
    Sftp,
    Path,
}

/// One place copies go. `kind` says which of the other keys apply.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTarget {
    /// What `crm restore --from-remote NAME` and the backups page call it.
    pub name: String,
    pub kind: TargetKind,
    /// Scheduled backups kept there; older ones are deleted after each upload.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// path: the folder (a USB disk, a mounted share); sftp: the folder on the server.
    pub path: Option<String>,
    /// s3: e.g. "https://s3.eu-central-1.amazonaws.com" or a self-hosted server's URL.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// s3: the folder in the bucket ("" for its top).
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    /// s3 (secret).
    pub secret_access_key: Option<String>,
    /// sftp
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// sftp: a password (secret), or better `key_file`, an OpenSSH private key file.
    pub password: Option<String>,
    pub key_file: Option<PathBuf>,
    /// sftp: the server's host key as in known_hosts ("ssh-ed25519 AAAA..."); required,
    /// so a copy never goes to an impostor.
    pub host_key: Option<String>,
}

fn default_keep() -> usize {
    14
}

const REDACTED: &str = "<redacted>";

impl RemoteTarget {
    fn redacted(&self) -> RemoteTarget {
        let mut t = self.clone();
        if t.secret_access_key.is_some() {
            t.secret_access_key = Some(REDACTED.into());
        }
        if t.password.is_some() {
            t.password = Some(REDACTED.into());
        }
        t
    }

    /// Where it is, for people and logs (never a secret).
    pub fn describe(&self) -> String {
        match self.kind {
            TargetKind::S3 => format!(
                "s3 {}/{}/{}",
                self.endpoint.as_deref().unwrap_or("aws"),
                self.bucket.as_deref().unwrap_or(""),
                self.prefix.as_deref().unwrap_or("")
            ),
            TargetKind::Sftp => format!(
                "sftp {}@{}:{}{}",
                self.user.as_deref().unwrap_or(""),
                self.host.as_deref().unwrap_or(""),
                self.port.unwrap_or(22),
                self.path.as_deref().unwrap_or("")
            ),
            TargetKind::Path => format!("folder {}", self.path.as_deref().unwrap_or("")),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let need = |v: &Option<String>, k: &str| {
            if v.as_deref().is_none_or(str::is_empty) {
                Err(format!(
                    "target {:?} ({:?}) needs {k}",
                    self.name, self.kind
                ))
            } else {
                Ok(())
            }
        };
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 40
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_name {
            return Err("a target name is letters, digits, - and _ (up to 40)".into());
        }
        if self.keep == 0 {
            return Err(format!("target {:?}: keep at least one backup", self.name));
        }
        match self.kind {
            TargetKind::Path => need(&self.path, "path"),
            TargetKind::S3 => {
                need(&self.bucket, "bucket")?;
                need(&self.access_key_id, "access_key_id")?;
                need(&self.secret_access_key, "secret_access_key")
            }
            TargetKind::Sftp => {
                need(&self.host, "host")?;
                need(&self.user, "user")?;
                need(&self.path, "path")?;
                need(&self.host_key, "host_key")?;
                if self.password.is_none() && self.key_file.is_none() {
                    return Err(format!("target {:?} needs password or key_file", self.name));
                }
                Ok(())
            }
        }
    }
}

// Debug never shows a secret: configs end up in logs.
impl std::fmt::Debug for RemoteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.redacted();
        f.debug_struct("RemoteTarget")
            .field("name", &t.name)
            .field("where", &t.describe())
            .field("secret_access_key", &t.secret_access_key)
            .field("password", &t.password)
            .finish()
    }
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("public_key", &self.public_key)
            .field("bandwidth_kbps", &self.bandwidth_kbps)
            .field("targets", &self.targets)
            .finish()
    }
}

/// The file name, in the data directory, of the off-box settings saved from the backups
/// page.
pub const REMOTE_OVERLAY: &str = "remote.toml";

/// The backups page's file: the two sections it edits, nothing else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteOverlay {
    #[serde(default)]
    pub backup: RemoteOverlayBackup,
    #[serde(default)]
    pub replication: ReplicationConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteOverlayBackup {
    #[serde(default)]
    pub remote: RemoteConfig,
}

/// Continuous replication of the database to every `[backup.remote]` target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    pub enabled: bool,
    /// How often committed transactions are read from the WAL and queued, in ms.
    pub interval_ms: u64,
    /// A full snapshot this often (restores start from the newest one before the moment).
    pub snapshot_every_secs: u64,
    /// How far back a point-in-time restore can go; older objects are deleted.
    pub retention_hours: u64,
    /// `crm doctor`, the backups page and /metrics warn when a target is further behind.
    pub warn_lag_secs: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            enabled: false,
            interval_ms: 1000,
            snapshot_every_secs: 6 * 3600,
            retention_hours: 72,
            warn_lag_secs: 60,
        }
    }
}

/// `[media]`: which calls the box relays and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// "off", "trunk" (calls through a trunk) or "all" (also between extensions).
    pub relay: String,
    /// The UDP port range of the relay, "10000-20000" (four ports per call).
    pub ports: String,
    /// The address written into SDP; none: the one SIP uses towards each party.
    pub advertise: Option<String>,
    /// A call whose media stopped this long is hung up (both legs get a BYE).
    pub timeout_secs: u64,
    /// The same while the call is held.
    pub hold_timeout_secs: u64,
    /// Threads of the relay.
    pub threads: usize,
    /// The relay threads' real-time FIFO priority, 1..99 (0: off; see `LimitRTPRIO`
    /// in the unit).
    pub realtime: u8,
    /// The relay threads' nice value where real-time is off or refused (lower runs
    /// first; see `LimitNICE` in the unit).
    pub nice: i32,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            relay: "trunk".into(),
            ports: "10000-20000".into(),
            advertise: None,
            timeout_secs: 60,
            hold_timeout_secs: 7200,
            threads: 2,
            realtime: 10,
            nice: -10,
        }
    }
}

impl MediaSettings {
    pub fn anchor(&self) -> Result<crate::media::Anchor, ConfigError> {
        self.relay.parse().map_err(|message| ConfigError::Invalid {
            key: "media.relay",
            value: self.relay.clone(),
            message,
        })
    }

    /// The relay's settings, or None when it is off.
    /// The relay's settings. It runs whenever SIP does, also with `relay = "off"`: a
    /// recorded call is anchored whatever `relay` says (no sockets are bound until then).
    pub fn relay_config(&self) -> Result<Option<crate::media::MediaConfig>, ConfigError> {
        self.anchor()?;
        let bad = |key: &'static str, value: String, message: &str| ConfigError::Invalid {
            key,
            value,
            message: message.into(),
        };
        let ports = self
            .ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|(a, b)| *a >= 1024 && b > a && b - a >= 3)
            .ok_or_else(|| {
                bad(
                    "media.ports",
                    self.ports.clone(),
                    "a range like 10000-20000 (1024 and up, at least 4 ports)",
                )
            })?;
        let advertise = match &self.advertise {
            None => None,
            Some(a) => Some(
                a.parse()
                    .map_err(|_| bad("media.advertise", a.clone(), "an IP address"))?,
            ),
        };
        if self.timeout_secs == 0 || self.hold_timeout_secs == 0 {
            return Err(bad(
                "media.timeout_secs",
                self.timeout_secs.to_string(),
                "seconds, at least 1",
            ));
        }
        Ok(Some(crate::media::MediaConfig {
            bind: std::net::IpAddr::from([0, 0, 0, 0]),
            advertise,
            ports,
            timeout: std::time::Duration::from_secs(self.timeout_secs),
            hold_timeout: std::time::Duration::from_secs(self.hold_timeout_secs),
            threads: self.threads.clamp(1, 16),
            realtime: self.realtime,
            nice: self.nice,
        }))
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            time: "03:00".into(),
            utc_offset: None,
            keep: 14,
            dir: None,
            warn_after_hours: 48,
            remote: RemoteConfig::default(),
        }
    }
}

impl BackupConfig {
    /// The daily time as minutes after midnight, `None` when "off".
    pub fn daily_minute(&self) -> Result<Option<u32>, String> {
        if self.time.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (h, m) = self
            .time
            .split_once(':')
            .ok_or_else(|| "expected HH:MM or \"off\"".to_string())?;
        match (h.parse::<u32>(), m.parse::<u32>()) {
            (Ok(h), Ok(m)) if h < 24 && m < 60 => Ok(Some(h * 60 + m)),
            _ => Err("expected HH:MM (00:00 to 23:59) or \"off\"".into()),
        }
    }
}

/// Where `crm upgrade` looks for releases.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeConfig {
    /// URL of the release manifest (self_update's manifest schema, JSON). Unset: only
    /// `crm upgrade --from-file` works.
    pub url: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_minutes: 8 * 60,
            absolute_hours: 7 * 24,
        }
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            max_failures_per_user: 5,
            max_failures_per_ip: 20,
            window_minutes: 15,
            argon2_memory_kib: 32 * 1024,
            argon2_iterations: 3,
            max_parallel_hashes: 0,
            hash_wait_ms: 3000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: "0.0.0.0:8080".parse().expect("valid default"),
            data_dir: PathBuf::from("./crm-data"),
            sip: "0.0.0.0:5060".into(),
            sip_advertise: None,
            sip_trusted_networks: Vec::new(),
            sip_park_code: crate::sip::PARK_CODE.into(),
            sip_park_orbits: "701-720".into(),
            sip_park_timeout_secs: 120,
            log: "info".into(),
            tls_cert: None,
            tls_key: None,
            durability: Durability::Full,
            max_body_bytes: 256 * 1024,
            metrics_token: None,
            session: SessionConfig::default(),
            login: LoginConfig::default(),
            api_limits: ApiLimitsConfig::default(),
            backup: BackupConfig::default(),
            replication: ReplicationConfig::default(),
            media: MediaSettings::default(),
            upgrade: UpgradeConfig::default(),
        }
    }
}

/// Values that came from the environment or the command line; `None` = not given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub http: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub sip: Option<String>,
    pub log: Option<String>,
}

impl Config {
    /// Builds the effective config. `file` is the explicit `--config`; without it the
    /// default path is read when it exists. `env` and `flags` are applied in that order.
    pub fn load(
        file: Option<&Path>,
        env: &Overrides,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(p) => Self::from_file(p)?,
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG_PATH))?
            }
            None => Config::default(),
        };
        cfg.apply(env);
        cfg.apply(flags);
        cfg.apply_remote_overlay()?;
        // The certificate `crm tls init` made, unless the admin set one of their own.
        if cfg.tls_cert.is_none() && cfg.tls_key.is_none() {
            if let Some((c, k)) = crate::ops::tls::local_pair(&cfg.data_dir) {
                cfg.tls_cert = Some(c);
                cfg.tls_key = Some(k);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Where the backups page keeps the off-box settings it saved: `[backup.remote]` and
    /// `[replication]`, which then stand in for crm.toml's (mode 0600: it holds secrets).
    pub fn remote_overlay_path(&self) -> PathBuf {
        self.data_dir.join(REMOTE_OVERLAY)
    }

    /// Takes `[backup.remote]` and `[replication]` from the backups page's file, when it
    /// exists (the two sections as a whole, so a target removed there stays removed).
    pub fn apply_remote_overlay(&mut self) -> Result<(), ConfigError> {
        let path = self.remote_overlay_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let o: RemoteOverlay = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.message().to_string(),
        })?;
        self.backup.remote = o.backup.remote;
        self.replication = o.replication;
        Ok(())
    }

    /// Checks off-box settings as [`Config::validate`] would (for the backups page, before
    /// they are saved).
    pub fn check_remote(&self) -> Result<(), ConfigError> {
        self.validate_remote()
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    /// Reads the `CRM_*` variables this config knows.
    pub fn env_overrides() -> Result<Overrides, ConfigError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let http = match var("CRM_HTTP") {
            Some(v) => {
                Some(
                    v.parse()
                        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                            key: "CRM_HTTP",
                            value: v.clone(),
                            message: e.to_string(),
                        })?,
                )
            }
            None => None,
        };
        Ok(Overrides {
            http,
            data_dir: var("CRM_DATA_DIR").map(PathBuf::from),
            sip: var("CRM_SIP"),
            log: var("CRM_LOG"),
        })
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.http {
            self.http = v;
        }
        if let Some(v) = &o.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = &o.sip {
            self.sip = v.clone();
        }
        if let Some(v) = &o.log {
            self.log = v.clone();
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.sip_listen()?;
        if let Some(a) = &self.sip_advertise {
            let ok = a.parse::<std::net::IpAddr>().is_ok()
                || (!a.is_empty()
                    && a.len() <= 253
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "sip_advertise",
                    value: a.clone(),
                    message: "a host name or IP address (without port)".into(),
                });
            }
        }
        self.sip_park()?;
        self.media.relay_config()?;
        for n in &self.sip_trusted_networks {
            n.parse::<crate::sip::Net>()
                .map_err(|message| ConfigError::Invalid {
                    key: "sip_trusted_networks",
                    value: n.clone(),
                    message,
                })?;
        }
        self.backup
            .daily_minute()
            .map_err(|message| ConfigError::Invalid {
                key: "backup.time",
                value: self.backup.time.clone(),
                message,
            })?;
        if self.backup.keep == 0 {
            return Err(ConfigError::Invalid {
                key: "backup.keep",
                value: "0".into(),
                message: "keep at least one backup".into(),
            });
        }
        self.validate_remote()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls_cert/tls_key",
                value: String::new(),
                message: "set both or neither".into(),
            });
        }
        if self.session.idle_minutes == 0 || self.session.absolute_hours == 0 {
            return Err(ConfigError::Invalid {
                key: "session",
                value: String::new(),
                message: "timeouts must be positive".into(),
            });
        }
        if self.login.argon2_memory_kib < 8 * 1024 || self.login.argon2_iterations == 0 {
            return Err(ConfigError::Invalid {
                key: "login.argon2_memory_kib",
                value: self.login.argon2_memory_kib.to_string(),
                message: "at least 8192 KiB and 1 iteration".into(),
            });
        }
        Ok(())
    }

    fn validate_remote(&self) -> Result<(), ConfigError> {
        let r = &self.backup.remote;
        let invalid = |key: &'static str, value: String, message: String| ConfigError::Invalid {
            key,
            value,
            message,
        };
        if let Some(k) = &r.public_key {
            k.parse::<age::x25519::Recipient>().map_err(|e| {
                invalid(
                    "backup.remote.public_key",
                    k.clone(),
                    format!("not an age public key (age1...): {e}"),
                )
            })?;
        }
        let mut names = std::collections::HashSet::new();
        for t in &r.targets {
            t.validate()
                .map_err(|m| invalid("backup.remote.targets", t.name.clone(), m))?;
            if !names.insert(t.name.as_str()) {
                return Err(invalid(
                    "backup.remote.targets",
                    t.name.clone(),
                    "two targets have this name".into(),
                ));
            }
        }
        if !r.targets.is_empty() && r.public_key.is_none() {
            return Err(invalid(
                "backup.remote.public_key",
                String::new(),
                "remote targets need the owner's public key: run `crm backup keygen`".into(),
            ));
        }
        let rep = &self.replication;
        if rep.enabled && r.targets.is_empty() {
            return Err(invalid(
                "replication.enabled",
                "true".into(),
                "replication needs at least one [[backup.remote.targets]]".into(),
            ));
        }
        if rep.interval_ms < 100 || rep.interval_ms > 60_000 || rep.snapshot_every_secs < 10 {
            return Err(invalid(
                "replication",
                String::new(),
                "interval_ms is 100 to 60000 and snapshot_every_secs at least 10".into(),
            ));
        }
        Ok(())
    }

    /// The park code and orbits as (code, (first orbit, how many)); no orbits: park off.
    pub fn sip_park(&self) -> Result<(String, (u32, u32)), ConfigError> {
        let code = self.sip_park_code.trim();
        let code_ok = !code.is_empty()
            && code.len() <= 8
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
        if !code_ok {
            return Err(ConfigError::Invalid {
                key: "sip_park_code",
                value: self.sip_park_code.clone(),
                message: "a feature code of digits, * and # (up to 8), e.g. *70".into(),
            });
        }
        let orbits = self.sip_park_orbits.trim();
        if orbits.is_empty() {
            return Ok((code.into(), (0, 0)));
        }
        let bad = || ConfigError::Invalid {
            key: "sip_park_orbits",
            value: self.sip_park_orbits.clone(),
            message: "a range of numbers like 701-720 (at most 100), or \"\" for no park".into(),
        };
        let (a, b) = orbits.split_once('-').unwrap_or((orbits, orbits));
        let num = |s: &str| {
            let s = s.trim();
            (!s.is_empty() && s.len() <= 6 && !s.starts_with('0'))
                .then(|| s.parse::<u32>().ok())
                .flatten()
        };
        let (Some(a), Some(b)) = (num(a), num(b)) else {
            return Err(bad());
        };
        if b < a || b - a >= 100 {
            return Err(bad());
        }
        Ok((code.into(), (a, b - a + 1)))
    }

    pub fn sip_listen(&self) -> Result<SipListen, ConfigError> {
        self.sip.parse().map_err(|message| ConfigError::Invalid {
            key: "sip",
            value: self.sip.clone(),
            message,
        })
    }

    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("crm.db")
    }

    pub fn attachments_dir(&self) -> PathBuf {
        self.data_dir.join("attachments")
    }

    /// Call recordings (`recordings/YYYY/MM/*.wav`).
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    pub fn backups_dir(&self) -> PathBuf {
        self.data_dir.join("backups")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// Where automatic and default backups are written: `[backup] dir` or <data_dir>/backups.
    pub fn backup_target_dir(&self) -> PathBuf {
        self.backup
            .dir
            .clone()
            .unwrap_or_else(|| self.backups_dir())
    }

    /// The effective config as TOML, with secrets replaced by a marker.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        if c.metrics_token.is_some() {
            c.metrics_token = Some("<redacted>".into());
        }
        c.backup.remote.targets = c
            .backup
            .remote
            .targets
            .iter()
            .map(RemoteTarget::redacted)
            .collect();
        toml::to_string_pretty(&c).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("htpp = \"1.2.3.4:1\"").unwrap_err();
        assert!(err.contains("htpp"), "{err}");
        let err = Config::from_toml("[session]\nidle = 3").unwrap_err();
        assert!(err.contains("idle"), "{err}");
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("crm.toml");
        std::fs::write(
            &f,
            "http = \"127.0.0.1:1001\"\ndata_dir = \"/file\"\nlog = \"debug\"\n",
        )
        .unwrap();
        let env = Overrides {
            http: Some("127.0.0.1:1002".parse().unwrap()),
            data_dir: Some("/env".into()),
            ..Default::default()
        };
        let flags = Overrides {
            http: Some("127.0.0.1:1003".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(Some(&f), &env, &flags).unwrap();
        assert_eq!(c.http.port(), 1003);
        assert_eq!(c.data_dir, PathBuf::from("/env"));
        assert_eq!(c.log, "debug");
        assert_eq!(c.sip, "0.0.0.0:5060");
    }

    #[test]
    fn the_backups_page_file_stands_in_for_the_two_sections() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("crm.toml");
        std::fs::write(
            &f,
            format!(
                "data_dir = {:?}\nlog = \"debug\"\n[replication]\ninterval_ms = 2000\n",
                dir.path()
            ),
        )
        .unwrap();
        let c = Config::load(Some(&f), &Overrides::default(), &Overrides::default()).unwrap();
        assert_eq!(c.replication.interval_ms, 2000);
        std::fs::write(
            dir.path().join(REMOTE_OVERLAY),
            "[backup.remote]\nbandwidth_kbps = 64\n[replication]\ninterval_ms = 500\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), &Overrides::default(), &Overrides::default()).unwrap();
        assert_eq!(c.replication.interval_ms, 500);
        assert_eq!(c.backup.remote.bandwidth_kbps, 64);
        assert_eq!(c.log, "debug", "the rest of crm.toml stays");
        // Only those two sections: anything else in it is refused.
        std::fs::write(dir.path().join(REMOTE_OVERLAY), "log = \"trace\"\n").unwrap();
        let err = Config::load(Some(&f), &Overrides::default(), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("log"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Config {
            metrics_token: Some("s3cr3t".into()),
            ..Default::default()
        };
        let t = c.to_redacted_toml();
        assert!(!t.contains("s3cr3t"));
        assert!(t.contains("<redacted>"));
        let c = Config::from_toml(
            r#"
            [backup.remote]
            public_key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
            [[backup.remote.targets]]
            name = "s3"
            kind = "s3"
            bucket = "b"
            access_key_id = "AK"
            secret_access_key = "hunter2-key"
            [[backup.remote.targets]]
            name = "nas"
            kind = "sftp"
            host = "h"
            user = "u"
            path = "/p"
            host_key = "ssh-ed25519 AAAA"
            password = "hunter3-pw"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        for shown in [c.to_redacted_toml(), format!("{c:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("hunter3"), "{shown}");
        }
        let err = Config::from_toml(
            "[replication]
enabeld = true",
        )
        .unwrap_err();
        assert!(err.contains("enabeld"), "{err}");
    }
}
