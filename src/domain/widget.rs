//! The web chat widget's settings: off by default; the sites (origins) that may embed
//! it. The pages' CSP `frame-ancestors` and the widget's `Origin` checks follow the list.

use super::work::Store;
use super::{Action, Actor, DomainError, DomainResult, Msg};
use crate::db::settings as kv;

const ENABLED: &str = "widget.enabled";
const ORIGINS: &str = "widget.origins";
/// Sites in the list at most.
pub const MAX_ORIGINS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WidgetSettings {
    pub enabled: bool,
    /// Normalised origins: `scheme://host[:port]`, lower case.
    pub origins: Vec<String>,
}

impl WidgetSettings {
    /// Whether a request's `Origin` is one of the allowed sites.
    pub fn allows(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|o| self.origins.contains(&o))
    }

    /// The CSP `frame-ancestors` source list: the box itself and the allowed sites.
    pub fn frame_ancestors(&self) -> String {
        let mut s = String::from("'self'");
        for o in &self.origins {
            s.push(' ');
            s.push_str(o);
        }
        s
    }
}

/// `https://Shop.uz/` → `https://shop.uz`; None for anything that is not a plain
/// http(s) origin (no path, query, credentials, wildcards or characters that could
/// break out of a CSP header).
pub fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('/');
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.to_ascii_lowercase();
    if rest.is_empty() || rest.len() > 253 {
        return None;
    }
    let (host, port) = match rest.strip_prefix('[') {
        // An IPv6 literal.
        Some(v6) => {
            let (addr, after) = v6.split_once(']')?;
            if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return None;
            }
            let port = match after {
                "" => String::new(),
                a => a.strip_prefix(':')?.to_string(),
            };
            (format!("[{addr}]"), port)
        }
        None => match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (rest.clone(), String::new()),
        },
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && !host.starts_with('.')
            && !host.ends_with('.')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    let port_ok = port.is_empty() || (port.len() <= 5 && port.parse::<u16>().is_ok_and(|p| p > 0));
    (host_ok && port_ok).then(|| {
        if port.is_empty() {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        }
    })
}

pub async fn load(store: &Store) -> DomainResult<WidgetSettings> {
    store
        .view(|c| {
            let enabled = kv::get(c, ENABLED)?.is_some_and(|v| v == "1");
            let origins = kv::get(c, ORIGINS)?
                .unwrap_or_default()
                .lines()
                .filter_map(normalize_origin)
                .collect();
            Ok(WidgetSettings { enabled, origins })
        })
        .await
}

/// Saves the settings; `origins` as typed, one per line (or separated by spaces or
/// commas). A line that is not an origin is refused with its text.
pub async fn save(
    store: &Store,
    actor: &Actor,
    enabled: bool,
    origins: &str,
) -> DomainResult<WidgetSettings> {
    if !actor.can(Action::ManageInbox) {
        return Err(DomainError::Forbidden);
    }
    let mut list: Vec<String> = Vec::new();
    for o in origins
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
    {
        let n = normalize_origin(o).ok_or_else(|| {
            DomainError::invalid(
                Msg::new("err.widget.bad_origin")
                    .with("origin", o.chars().take(80).collect::<String>()),
            )
        })?;
        if !list.contains(&n) {
            list.push(n);
        }
    }
    if list.len() > MAX_ORIGINS {
        return Err(DomainError::invalid(
            Msg::new("err.widget.too_many_origins").with("max", MAX_ORIGINS),
        ));
    }
    let s = WidgetSettings {
        enabled,
        origins: list,
    };
    let saved = s.clone();
    store
        .write(actor, move |tx| {
            let now = tx.now();
            kv::set(tx, ENABLED, if s.enabled { "1" } else { "0" }, now)?;
            kv::set(tx, ORIGINS, &s.origins.join("\n"), now)?;
            tx.log(
                "update",
                "settings",
                None,
                serde_json::json!({"key": "widget", "enabled": s.enabled, "origins": s.origins}),
            );
            tx.emit(crate::events::Event::new(
                "settings.updated",
                serde_json::json!({"key": "widget"}),
                crate::events::Audience::Admins,
            ));
            Ok(())
        })
        .await?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_anything_else_refused() {
        assert_eq!(
            normalize_origin("https://Shop.UZ/").as_deref(),
            Some("https://shop.uz")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            normalize_origin("http://[::1]:81").as_deref(),
            Some("http://[::1]:81")
        );
        for bad in [
            "shop.uz",
            "ftp://shop.uz",
            "https://shop.uz/page",
            "https://*.shop.uz",
            "https://shop.uz; script-src *",
            "https://user@shop.uz",
            "https://shop.uz:99999",
            "https://",
            "javascript:alert(1)",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_listed_sites_are_allowed() {
        let s = WidgetSettings {
            enabled: true,
            origins: vec!["https://shop.uz".into()],
        };
        assert!(s.allows("https://shop.uz"));
        assert!(!s.allows("https://evil.uz"));
        assert!(!s.allows("null"));
        assert_eq!(s.frame_ancestors(), "'self' https://shop.uz");
    }
}
