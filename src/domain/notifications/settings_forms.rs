//! The notification settings the admin edits (SMTP, Telegram bot, delivery policy, who
//! hears what), as stored in the settings table, and the checks of their forms.

use std::collections::BTreeMap;

use super::*;

/// How SMTP is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server lacks it.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the shop's own LAN.
    Plain,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::Plain => "plain",
        }
    }
    pub fn parse(s: &str) -> Option<SmtpSecurity> {
        match s {
            "starttls" => Some(SmtpSecurity::StartTls),
            "tls" => Some(SmtpSecurity::Tls),
            "plain" => Some(SmtpSecurity::Plain),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    /// Secret: never rendered back.
    pub password: String,
    pub from: String,
    /// Accept any certificate (a LAN relay with a self-signed one). Prefer `ca_pem`.
    pub accept_invalid_certs: bool,
    /// Extra trusted CA certificate(s), PEM, for a relay with a private CA.
    pub ca_pem: String,
    pub timeout_secs: u64,
}

impl SmtpSettings {
    pub fn configured(&self) -> bool {
        !self.host.is_empty() && !self.from.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramSettings {
    /// Secret: shown only masked.
    pub token: String,
    /// Bot API base URL; a local mirror or a test stand-in may replace the public one.
    pub api_url: String,
    /// Learned from getMe; used to build deep links.
    pub bot_username: String,
    /// The next getUpdates offset (saved with the handled updates).
    pub offset: i64,
    /// Long-poll wait per getUpdates call.
    pub poll_timeout_secs: u32,
    /// Minimum gap between two messages to one chat (Telegram: about 1 s).
    pub per_chat_gap_ms: u64,
    /// Messages per second over all chats (Telegram: about 30).
    pub global_per_sec: u32,
}

pub const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";

/// Retry policy of the delivery worker. Read at every cycle, so changes apply at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts before a message is dead-lettered.
    pub max_attempts: i64,
    /// First retry delay; doubles each attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How often the worker looks for due messages when not woken.
    pub poll_ms: u64,
}

impl DeliveryPolicy {
    /// Delay before the next attempt after `attempts` failed ones (1-based): base·2^(n-1),
    /// capped.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exp = (attempts.max(1) - 1).min(30) as u32;
        let ms = self
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_ms);
        Duration::from_millis(ms)
    }
}

#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub smtp: SmtpSettings,
    pub telegram: TelegramSettings,
    pub policy: DeliveryPolicy,
    pub sms: super::sms::SmsSettings,
}

pub(super) fn parse_or<T: std::str::FromStr>(
    m: &BTreeMap<String, String>,
    key: &str,
    default: T,
) -> T {
    m.get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Reads every notification setting (one query over the small settings table).
pub fn load_settings(c: &Connection) -> DbResult<NotifySettings> {
    let m: BTreeMap<String, String> = settings::all(c)?.into_iter().collect();
    let s = |k: &str| m.get(k).cloned().unwrap_or_default();
    Ok(NotifySettings {
        smtp: SmtpSettings {
            host: s("smtp.host"),
            port: parse_or(&m, "smtp.port", 587),
            security: SmtpSecurity::parse(&s("smtp.security")).unwrap_or(SmtpSecurity::StartTls),
            username: s("smtp.username"),
            password: s("smtp.password"),
            from: s("smtp.from"),
            accept_invalid_certs: s("smtp.accept_invalid_certs") == "1",
            ca_pem: s("smtp.ca_pem"),
            timeout_secs: parse_or(&m, "smtp.timeout_secs", 20),
        },
        telegram: TelegramSettings {
            token: s("telegram.token"),
            api_url: m
                .get("telegram.api_url")
                .filter(|u| !u.is_empty())
                .cloned()
                .unwrap_or_else(|| DEFAULT_TELEGRAM_API.into()),
            bot_username: s("telegram.bot_username"),
            offset: parse_or(&m, "telegram.offset", 0i64),
            poll_timeout_secs: parse_or(&m, "telegram.poll_timeout_secs", 25),
            per_chat_gap_ms: parse_or(&m, "telegram.per_chat_gap_ms", 1000),
            global_per_sec: parse_or(&m, "telegram.global_per_sec", 30u32).max(1),
        },
        policy: DeliveryPolicy {
            max_attempts: parse_or(&m, "notify.max_attempts", 10i64).max(1),
            retry_base_ms: parse_or(&m, "notify.retry_base_ms", 5_000),
            retry_max_ms: parse_or(&m, "notify.retry_max_ms", 3_600_000),
            poll_ms: parse_or(&m, "notify.poll_ms", 1_000u64).max(10),
        },
        sms: super::sms::load(&m),
    })
}

/// "123456:AAE…xY": enough to recognise a token, not to use it.
pub fn mask_secret(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    if chars.len() <= 10 {
        return "…".into();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}…{tail}")
}

/// The admin's SMTP form. An empty password keeps the stored one.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SmtpForm {
    pub host: String,
    pub port: String,
    pub security: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub clear_password: Option<String>,
    pub from: String,
    #[serde(default)]
    pub accept_invalid_certs: Option<String>,
    #[serde(default)]
    pub ca_pem: String,
}

/// The non-secret rule settings the admin page shows besides the switches.
#[derive(Debug, Clone)]
pub struct AudienceSettings {
    pub customer_statuses: String,
    pub default_language: String,
    pub summary_emails: String,
    pub summary_hour: String,
}

/// Who gets the daily summary and when (shop time).
#[derive(Debug, Clone, Default)]
pub struct SummaryForm {
    pub emails: String,
    pub hour: String,
}

/// The admin's Telegram form. An empty token keeps the stored one.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TelegramForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub clear_token: Option<String>,
    #[serde(default)]
    pub api_url: String,
}

/// The address part of `Name <addr>`.
pub fn bare_address(s: &str) -> &str {
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    }
}

/// A plausible address: one @, something on each side, a dot in the domain, no spaces.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.len() <= 254
        && !s
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '<' || ch == '>')
}
