//! The outside world as the SIP engine sees it: upstream provider accounts (trunks), the
//! numbers they deliver and where those calls go (with business hours), the dial rules
//! that send a call out, and the toll-fraud policy per extension. Pure data and pure
//! rules; the app builds a [`Plan`] from its settings and pushes it to the engine.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::Transport;

/// One upstream provider account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub id: i64,
    pub name: String,
    /// Registrar/proxy host name or address, as configured.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub username: String,
    pub secret: String,
    /// Digest user name when it differs from `username` (empty: `username`).
    pub auth_username: String,
    /// Domain of our From/To when it differs from `host` (empty: `host`).
    pub from_domain: String,
    /// Register out (and keep the registration fresh) or only send and receive calls.
    pub register: bool,
    /// Requested registration lifetime.
    pub expires: u32,
    /// The number presented on calls out through this trunk.
    pub caller_id: String,
    /// The provider's addresses, resolved by the app from `host` (empty: unresolvable).
    pub resolved: Vec<SocketAddr>,
    /// Further addresses the provider may send calls from.
    pub allow: Vec<IpAddr>,
}

impl Trunk {
    pub fn auth_user(&self) -> &str {
        if self.auth_username.is_empty() {
            &self.username
        } else {
            &self.auth_username
        }
    }

    /// The domain of our From/To, as it goes in a URI (an IPv6 address in brackets).
    pub fn domain(&self) -> String {
        let d = if self.from_domain.is_empty() {
            &self.host
        } else {
            &self.from_domain
        };
        uri_host(d)
    }

    /// The Request-URI of our REGISTER: the registrar's `host:port`, or the domain.
    pub fn registrar_uri(&self) -> String {
        if self.from_domain.is_empty() {
            format!("sip:{}:{}", uri_host(&self.host), self.port)
        } else {
            format!("sip:{}", uri_host(&self.from_domain))
        }
    }

    /// The host part of a Request-URI to a number at this provider.
    pub fn uri_hostport(&self) -> String {
        if self.from_domain.is_empty() && self.port != 5060 {
            format!("{}:{}", uri_host(&self.host), self.port)
        } else {
            self.domain()
        }
    }

    /// Where requests to the provider go.
    pub fn target(&self) -> Option<SocketAddr> {
        self.resolved.first().copied()
    }

    /// May a request from `ip` speak as this trunk?
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.resolved.iter().any(|a| a.ip() == ip) || self.allow.contains(&ip)
    }
}

/// A host as it goes in a SIP URI or Via: an IPv6 address in brackets (RFC 3261 §25.1),
/// anything else as it is.
pub fn uri_host(h: &str) -> String {
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{bare}]"),
        Err(_) => h.to_string(),
    }
}

/// Where a number delivered by a trunk goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    pub trunk_id: i64,
    /// The dialled number as the provider sends it (Request-URI or To user).
    pub did: String,
    /// An extension or ring group number in business hours.
    pub destination: String,
    /// Where it goes outside business hours (None: `destination` always).
    pub after_hours: Option<String>,
    /// The branch the number belongs to: its business hours, when it has its own,
    /// decide instead of the shop's.
    pub branch: Option<i64>,
}

/// Opening hours of the shop: a weekly schedule and closed dates, in the shop's time.
/// The app precomputes the shop zone's offsets (`offsets`), so this module needs no
/// zone database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BusinessHours {
    /// (from this Unix second on, offset east of UTC in seconds), ascending; the first
    /// entry also applies before its instant. Empty: UTC.
    pub offsets: Vec<(i64, i32)>,
    /// Monday first; each day a list of open intervals in minutes since midnight
    /// (start inclusive, end exclusive).
    pub week: [Vec<(u16, u16)>; 7],
    /// Closed all day: (year, month, day) in the shop's calendar.
    pub holidays: Vec<(i32, u8, u8)>,
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (if m <= 2 { y + 1 } else { y } as i32, m, d)
}

impl BusinessHours {
    /// The shop's offset from UTC at `unix_secs`.
    pub fn offset_at(&self, unix_secs: i64) -> i32 {
        let i = self.offsets.partition_point(|(at, _)| *at <= unix_secs);
        self.offsets
            .get(i.saturating_sub(1))
            .map(|(_, o)| *o)
            .unwrap_or(0)
    }

    /// Is the shop open at `unix_secs`?
    pub fn is_open(&self, unix_secs: i64) -> bool {
        let local = unix_secs + self.offset_at(unix_secs) as i64;
        let days = local.div_euclid(86_400);
        if self.holidays.contains(&civil_from_days(days)) {
            return false;
        }
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as usize;
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        self.week[weekday]
            .iter()
            .any(|(s, e)| *s <= minute && minute < *e)
    }
}

/// Which dialled numbers leave through the trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRules {
    /// Numbers with at least this many digits go out (0: never by length).
    pub min_digits: usize,
    /// Numbers starting with one of these go out (the prefix is kept).
    pub prefixes: Vec<String>,
}

impl Default for DialRules {
    fn default() -> DialRules {
        DialRules {
            min_digits: 7,
            prefixes: Vec::new(),
        }
    }
}

/// A dialled number with separators dropped; None when it is not a phone number.
pub fn normalise_dialled(n: &str) -> Option<String> {
    let mut out = String::with_capacity(n.len());
    for (i, c) in n.chars().enumerate() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = out.trim_start_matches('+');
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    Some(out)
}

impl DialRules {
    /// Does `number` (normalised) leave through the trunk?
    pub fn matches(&self, number: &str) -> bool {
        let digits = number.trim_start_matches('+');
        if number.starts_with('+') {
            return true;
        }
        (self.min_digits > 0 && digits.len() >= self.min_digits)
            || self
                .prefixes
                .iter()
                .any(|p| !p.is_empty() && number.starts_with(p.as_str()))
    }
}

/// The country the shop is in, for "national only".
pub const HOME_COUNTRY_CODE: &str = "998";

/// Is `number` (normalised) a call abroad? `+CC…`, `00CC…` and the old `810CC…` are,
/// unless CC is the home country.
pub fn is_international(number: &str) -> bool {
    let rest = if let Some(r) = number.strip_prefix('+') {
        r
    } else if let Some(r) = number.strip_prefix("00") {
        r
    } else if let Some(r) = number.strip_prefix("810").filter(|r| r.len() >= 9) {
        r
    } else {
        return false;
    };
    !rest.starts_with(HOME_COUNTRY_CODE)
}

/// What one extension may dial out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundPolicy {
    pub allowed: bool,
    /// Empty: national numbers only. Otherwise the number must start with one of these
    /// (e.g. "+7" allows Russia, "+" everything).
    pub prefixes: Vec<String>,
    /// Calls out per rolling hour (0: none).
    pub max_per_hour: u32,
    /// Send auto-answer headers when the box calls this extension (click-to-call).
    pub auto_answer: bool,
}

/// Why a call out is refused (the 403 reason phrase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed,
    Prefix,
    HourlyLimit,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "Outbound calls not allowed for this extension",
            Refusal::Prefix => "Number not allowed for this extension",
            Refusal::HourlyLimit => "Hourly outbound call limit reached",
        }
    }
}

impl OutboundPolicy {
    /// The permission and prefix checks (the hourly limit is counted by the engine).
    pub fn check(&self, number: &str) -> Result<(), Refusal> {
        if !self.allowed {
            return Err(Refusal::NotAllowed);
        }
        let ok = if self.prefixes.is_empty() {
            !is_international(number)
        } else {
            self.prefixes
                .iter()
                .any(|p| !p.is_empty() && number.starts_with(p.as_str()))
        };
        if ok {
            Ok(())
        } else {
            Err(Refusal::Prefix)
        }
    }
}

/// Everything the engine needs about the outside world, replaced wholesale on change.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub trunks: Vec<Trunk>,
    pub routes: Vec<InboundRoute>,
    pub hours: Option<BusinessHours>,
    /// Branches with business hours of their own, for their DIDs.
    pub branch_hours: HashMap<i64, BusinessHours>,
    pub dial: DialRules,
    /// By extension number; an extension missing here may not call out.
    pub policies: HashMap<String, OutboundPolicy>,
    /// Calls out each extension placed in the last hour (unix seconds), from the call
    /// log: the hourly limit counts them after a restart too. Taken once per extension.
    pub recent_outbound: HashMap<String, Vec<u64>>,
    /// First retry delay after a failed registration; doubles up to `retry_max_secs`.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
}

impl Plan {
    /// The trunk a request from `ip` speaks for.
    pub fn trunk_from(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.admits(ip))
    }

    /// Where a call delivered by `trunk` for `did` goes at `unix_secs`.
    pub fn inbound_destination(&self, trunk_id: i64, did: &str, unix_secs: i64) -> Option<&str> {
        let r = self
            .routes
            .iter()
            .find(|r| r.trunk_id == trunk_id && r.did == did)?;
        let hours = r
            .branch
            .and_then(|b| self.branch_hours.get(&b))
            .or(self.hours.as_ref());
        let open = hours.is_none_or(|h| h.is_open(unix_secs));
        Some(match (&r.after_hours, open) {
            (Some(after), false) => after.as_str(),
            _ => r.destination.as_str(),
        })
    }

    pub fn is_did(&self, trunk_id: i64, did: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.trunk_id == trunk_id && r.did == did)
    }
}

/// A trunk's registration as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TrunkState {
    /// Registration is off for this trunk.
    NotRegistering,
    /// A REGISTER is on its way (first attempt or refresh).
    Registering,
    Registered {
        /// Seconds until the registration expires.
        expires_in: u64,
    },
    Failed {
        reason: String,
        /// Seconds until the next attempt.
        retry_in: u64,
    },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrunkStatus {
    pub id: i64,
    pub name: String,
    #[serde(flatten)]
    pub state: TrunkState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours() -> BusinessHours {
        let mut h = BusinessHours {
            offsets: vec![(0, 5 * 3600)],
            ..Default::default()
        };
        for d in 0..5 {
            h.week[d] = vec![(9 * 60, 18 * 60)];
        }
        h.week[5] = vec![(10 * 60, 14 * 60)];
        h.holidays = vec![(2026, 3, 21)];
        h
    }

    // 2026-03-16 is a Monday.
    fn at(y: i32, m: u8, d: u8, hh: i64, mm: i64, offset_h: i64) -> i64 {
        let mut days = 0i64;
        // count days from 1970 by brute force: fine for a test
        while civil_from_days(days) != (y, m, d) {
            days += 1;
        }
        days * 86_400 + hh * 3600 + mm * 60 - offset_h * 3600
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_528), (2026, 3, 16));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn business_hours_by_weekday_time_offset_and_holiday() {
        let h = hours();
        // Monday 09:00 Tashkent is open, 08:59 is not, 18:00 is closed.
        assert!(h.is_open(at(2026, 3, 16, 9, 0, 5)));
        assert!(!h.is_open(at(2026, 3, 16, 8, 59, 5)));
        assert!(!h.is_open(at(2026, 3, 16, 18, 0, 5)));
        // 05:00 UTC on Monday is 10:00 in Tashkent: open; the same instant read as UTC
        // wall time (offset 0) is closed.
        let five_utc = at(2026, 3, 16, 5, 0, 0);
        assert!(h.is_open(five_utc));
        let utc = BusinessHours {
            offsets: Vec::new(),
            ..hours()
        };
        assert!(!utc.is_open(five_utc));
        // Saturday short day, Sunday closed.
        assert!(h.is_open(at(2026, 3, 14, 11, 0, 5)));
        assert!(!h.is_open(at(2026, 3, 14, 15, 0, 5)));
        assert!(!h.is_open(at(2026, 3, 15, 11, 0, 5)));
        // Navruz (a Saturday in 2026) closed all day although Saturday has hours.
        assert!(!h.is_open(at(2026, 3, 21, 11, 0, 5)));
        // The holiday is a local date: 16 March 20:00 UTC is already 17 March in
        // Tashkent, 18:00 UTC is still the 16th.
        let mut always = BusinessHours {
            offsets: vec![(0, 5 * 3600)],
            holidays: vec![(2026, 3, 17)],
            ..Default::default()
        };
        for d in 0..7 {
            always.week[d] = vec![(0, 24 * 60)];
        }
        assert!(!always.is_open(at(2026, 3, 16, 20, 0, 0)));
        assert!(always.is_open(at(2026, 3, 16, 18, 0, 0)));
    }

    #[test]
    fn the_offset_follows_the_precomputed_changes() {
        // Berlin-like: +1 until 2026-03-29 01:00 UTC, then +2.
        let change = at(2026, 3, 29, 1, 0, 0);
        let mut h = BusinessHours {
            offsets: vec![(change - 86_400 * 30, 3600), (change, 7200)],
            ..Default::default()
        };
        h.week[6] = vec![(9 * 60, 18 * 60)]; // Sunday 09-18
        assert_eq!(h.offset_at(change - 1), 3600);
        assert_eq!(h.offset_at(change), 7200);
        assert_eq!(h.offset_at(0), 3600, "before the table: its first offset");
        // Sunday 29 March 07:30 UTC is 09:30 local (after the change): open.
        assert!(h.is_open(at(2026, 3, 29, 7, 30, 0)));
        // 06:30 UTC is 08:30 local: closed.
        assert!(!h.is_open(at(2026, 3, 29, 6, 30, 0)));
    }

    #[test]
    fn dial_rules_by_length_prefix_and_plus() {
        let r = DialRules {
            min_digits: 7,
            prefixes: vec!["8".into()],
        };
        assert!(r.matches("901234567"));
        assert!(r.matches("1234567"));
        assert!(!r.matches("123456"));
        assert!(!r.matches("101"));
        assert!(r.matches("8123"));
        assert!(r.matches("+998901234567"));
        let none = DialRules {
            min_digits: 0,
            prefixes: vec![],
        };
        assert!(!none.matches("901234567"));
        assert_eq!(
            normalise_dialled("+998 (90) 123-45-67").as_deref(),
            Some("+998901234567")
        );
        assert_eq!(normalise_dialled("90a1"), None);
        assert_eq!(normalise_dialled("9+0"), None);
        assert_eq!(normalise_dialled("+"), None);
    }

    #[test]
    fn prefix_guards_default_to_national_only() {
        let p = OutboundPolicy {
            allowed: true,
            ..Default::default()
        };
        assert_eq!(p.check("901234567"), Ok(()));
        assert_eq!(p.check("+998901234567"), Ok(()));
        assert_eq!(p.check("00998901234567"), Ok(()));
        assert_eq!(p.check("+79161234567"), Err(Refusal::Prefix));
        assert_eq!(p.check("0079161234567"), Err(Refusal::Prefix));
        assert_eq!(p.check("81079161234567"), Err(Refusal::Prefix));
        assert_eq!(p.check("+88216123456"), Err(Refusal::Prefix));
        let ru = OutboundPolicy {
            allowed: true,
            prefixes: vec!["+7".into(), "+998".into()],
            ..Default::default()
        };
        assert_eq!(ru.check("+79161234567"), Ok(()));
        assert_eq!(ru.check("+998901234567"), Ok(()));
        assert_eq!(ru.check("901234567"), Err(Refusal::Prefix));
        assert_eq!(ru.check("+4420"), Err(Refusal::Prefix));
        let off = OutboundPolicy::default();
        assert_eq!(off.check("901234567"), Err(Refusal::NotAllowed));
    }

    #[test]
    fn inbound_destination_switches_after_hours() {
        let plan = Plan {
            routes: vec![InboundRoute {
                trunk_id: 1,
                did: "712000000".into(),
                destination: "100".into(),
                after_hours: Some("199".into()),
                branch: None,
            }],
            hours: Some(hours()),
            ..Default::default()
        };
        let open = at(2026, 3, 16, 10, 0, 5);
        let closed = at(2026, 3, 16, 20, 0, 5);
        assert_eq!(plan.inbound_destination(1, "712000000", open), Some("100"));
        assert_eq!(
            plan.inbound_destination(1, "712000000", closed),
            Some("199")
        );
        assert_eq!(plan.inbound_destination(2, "712000000", open), None);
        assert_eq!(plan.inbound_destination(1, "7", open), None);
    }

    #[test]
    fn a_branch_did_follows_the_branch_hours() {
        let mut late = hours();
        late.week = Default::default();
        for d in &mut late.week {
            d.push((12 * 60, 22 * 60));
        }
        let route = |did: &str, branch| InboundRoute {
            trunk_id: 1,
            did: did.into(),
            destination: "100".into(),
            after_hours: Some("199".into()),
            branch,
        };
        let plan = Plan {
            routes: vec![route("1", Some(7)), route("2", Some(8)), route("3", None)],
            hours: Some(hours()),
            branch_hours: [(7, late)].into_iter().collect(),
            ..Default::default()
        };
        // 10:00: the shop is open, branch 7 not yet; 20:00: the other way round.
        let ten = at(2026, 3, 16, 10, 0, 5);
        let eight_pm = at(2026, 3, 16, 20, 0, 5);
        assert_eq!(plan.inbound_destination(1, "1", ten), Some("199"));
        assert_eq!(plan.inbound_destination(1, "1", eight_pm), Some("100"));
        // Branch 8 has no hours of its own: the shop's.
        for did in ["2", "3"] {
            assert_eq!(plan.inbound_destination(1, did, ten), Some("100"));
            assert_eq!(plan.inbound_destination(1, did, eight_pm), Some("199"));
        }
    }
}
