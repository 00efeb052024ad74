//! The shop clock: the one place that knows the shop's time zone. Every "today", local
//! hour, weekday, year and displayed time goes through a [`ShopClock`]; nothing else adds
//! an offset to a timestamp.
//!
//! The zone is an IANA name (`Asia/Tashkent` by default, the shop setting `time_zone`),
//! resolved by `jiff` from the system's tzdata (kept current by the OS), with a copy
//! built into the binary for boxes without one. Zones with daylight saving work: a day is
//! from one local midnight to the next, 23 or 25 hours where the clocks change.
//!
//! [`Clock`] is the shared handle in the `AppContext`: it hands out the current
//! `ShopClock` value, is switched when an admin changes the zone, and can be frozen at a
//! given instant by tests (never by the product).

use std::sync::{Arc, RwLock};

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::{DomainError, DomainResult, Msg};

/// Uzbekistan (UTC+5, no daylight saving).
pub const DEFAULT_ZONE: &str = "Asia/Tashkent";

/// The shop's clock at one moment of configuration: its zone and, in tests, a frozen now.
/// It also carries the other half of where the shop is, the country that phone numbers
/// typed without a code belong to, so both follow a settings change together.
#[derive(Debug, Clone)]
pub struct ShopClock {
    tz: TimeZone,
    name: Arc<str>,
    frozen: Option<i64>,
    country: crate::model::phone::Country,
}

impl Default for ShopClock {
    fn default() -> Self {
        ShopClock::new(DEFAULT_ZONE).unwrap_or_else(|_| ShopClock {
            // No tzdata at all (not even the bundled copy): Tashkent has been UTC+5
            // without daylight saving since 1992.
            tz: TimeZone::fixed(jiff::tz::offset(5)),
            name: Arc::from(DEFAULT_ZONE),
            frozen: None,
            country: crate::model::phone::UZBEKISTAN,
        })
    }
}

/// Is `name` a time zone the clock knows (an IANA name such as `Europe/Moscow`)?
pub fn check_zone(name: &str) -> DomainResult<()> {
    ShopClock::new(name).map(|_| ())
}

/// Every IANA zone name the clock knows, sorted (for the settings form's suggestions).
pub fn zone_names() -> Vec<String> {
    let mut v: Vec<String> = jiff::tz::db()
        .available()
        .map(|n| n.as_str().to_string())
        .filter(|n| {
            n.contains('/')
                && !n.starts_with("Etc/")
                && !n.starts_with("posix/")
                && !n.starts_with("right/")
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Local calendar fields of one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub date: Date,
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0 = Monday .. 6 = Sunday.
    pub weekday: u8,
}

impl ShopClock {
    /// The clock of zone `name`; an unknown name is refused.
    pub fn new(name: &str) -> DomainResult<ShopClock> {
        let name = name.trim();
        let bad = || {
            let shown: String = name.chars().take(64).collect();
            DomainError::invalid(Msg::new("clock.unknown_zone").with("zone", shown))
        };
        // Only IANA names: no POSIX TZ strings, paths or bare offsets.
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b))
            || name.starts_with('/')
            || name.contains("..")
        {
            return Err(bad());
        }
        let tz = TimeZone::get(name).map_err(|_| bad())?;
        Ok(ShopClock {
            tz,
            name: Arc::from(name),
            frozen: None,
            country: crate::model::phone::UZBEKISTAN,
        })
    }

    /// This clock for a shop in `country`.
    pub fn in_country(mut self, country: crate::model::phone::Country) -> ShopClock {
        self.country = country;
        self
    }

    /// The country of phone numbers typed without a country code.
    pub fn country(&self) -> crate::model::phone::Country {
        self.country
    }

    /// The zone's IANA name.
    pub fn zone_name(&self) -> &str {
        &self.name
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.frozen.unwrap_or_else(crate::db::now)
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self.frozen {
            Some(t) => t * 1000,
            None => Timestamp::now().as_millisecond(),
        }
    }

    fn ts(t: i64) -> Timestamp {
        Timestamp::from_second(t).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The local wall time of `t`.
    pub fn datetime(&self, t: i64) -> DateTime {
        self.tz.to_datetime(Self::ts(t))
    }

    /// Local calendar fields of `t`.
    pub fn local(&self, t: i64) -> Local {
        let dt = self.datetime(t);
        Local {
            date: dt.date(),
            year: dt.year() as i32,
            month: dt.month() as u8,
            day: dt.day() as u8,
            hour: dt.hour() as u8,
            minute: dt.minute() as u8,
            weekday: dt.weekday().to_monday_zero_offset() as u8,
        }
    }

    /// The local date of `t`.
    pub fn date_of(&self, t: i64) -> Date {
        self.datetime(t).date()
    }

    /// The local year of `t` (order numbers count per shop year).
    pub fn year_of(&self, t: i64) -> i32 {
        self.datetime(t).year() as i32
    }

    /// Today's local date.
    pub fn today(&self) -> Date {
        self.date_of(self.now())
    }

    /// The first instant of local day `d`, in Unix seconds (midnight, or the first
    /// minute that exists where a clock change skips midnight).
    pub fn day_start(&self, d: Date) -> i64 {
        d.to_zoned_datetime(self.tz.clone())
            .and_then(|z| z.start_of_day())
            .map(|z| z.timestamp().as_second())
            .unwrap_or(0)
    }

    /// The first instant after local day `d` (the start of the next day).
    pub fn day_end(&self, d: Date) -> i64 {
        self.day_start(add_days(d, 1))
    }

    /// The start of the local day holding `t`.
    pub fn start_of_day_of(&self, t: i64) -> i64 {
        self.day_start(self.date_of(t))
    }

    /// Seconds since local midnight of the day holding `t`.
    pub fn seconds_into_day(&self, t: i64) -> i64 {
        t - self.start_of_day_of(t)
    }

    /// The zone's offset from UTC at `t`, in seconds east.
    pub fn offset_at(&self, t: i64) -> i32 {
        self.tz.to_offset(Self::ts(t)).seconds()
    }

    /// [from, to) cut where the zone's offset changes: (start, end, offset seconds). One
    /// span for a zone without changes in the range, so a query may bucket by a fixed
    /// offset inside each span.
    pub fn offset_spans(&self, from: i64, to: i64) -> Vec<(i64, i64, i32)> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        let mut start = from;
        let mut off = self.offset_at(from);
        for tr in self.tz.following(Self::ts(from)) {
            let at = tr.timestamp().as_second();
            if at >= to {
                break;
            }
            let next = tr.offset().seconds();
            if next != off {
                out.push((start, at, off));
                start = at;
                off = next;
            }
            if out.len() > 1000 {
                break;
            }
        }
        out.push((start, to, off));
        out
    }

    /// Offset changes in [from, to) as (from this instant on, offset seconds), the first
    /// entry valid at `from`: what the SIP side needs to read local time without a zone
    /// database.
    pub fn offset_table(&self, from: i64, to: i64) -> Vec<(i64, i32)> {
        self.offset_spans(from, to)
            .into_iter()
            .map(|(s, _, o)| (s, o))
            .collect()
    }

    /// `dd.mm.yyyy HH:MM`, local.
    pub fn format_datetime(&self, t: i64) -> String {
        let d = self.datetime(t);
        format!(
            "{:02}.{:02}.{:04} {:02}:{:02}",
            d.day(),
            d.month(),
            d.year(),
            d.hour(),
            d.minute()
        )
    }

    /// `dd.mm.yyyy`, local.
    pub fn format_date(&self, t: i64) -> String {
        format_date(self.date_of(t))
    }

    /// `HH:MM`, local.
    pub fn format_time(&self, t: i64) -> String {
        let d = self.datetime(t);
        format!("{:02}:{:02}", d.hour(), d.minute())
    }

    /// `YYYY-MM-DD` (a date input's value), local.
    pub fn format_iso_date(&self, t: i64) -> String {
        iso_date(self.date_of(t))
    }

    /// Seconds from `now` until the next local `minute` after midnight (a full day when
    /// it is exactly now). Where a clock change skips that minute, the first minute after.
    pub fn seconds_until_minute(&self, now: i64, minute: u32) -> u64 {
        let today = self.date_of(now);
        for d in [today, add_days(today, 1), add_days(today, 2)] {
            let at = self.at_local(d, minute);
            if at > now {
                return (at - now) as u64;
            }
        }
        86_400
    }

    /// The instant of local `minute` after midnight on `d`.
    pub fn at_local(&self, d: Date, minute: u32) -> i64 {
        let dt = d.to_datetime(jiff::civil::Time::midnight());
        let dt = dt
            .checked_add(((minute as i64) * 60).seconds())
            .unwrap_or(dt);
        self.tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map(|t| t.as_second())
            .unwrap_or(0)
    }
}

/// `d` plus `n` days.
pub fn add_days(d: Date, n: i64) -> Date {
    d.checked_add(n.days()).unwrap_or(d)
}

/// `YYYY-MM-DD`.
pub fn iso_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// `dd.mm.yyyy`.
pub fn format_date(d: Date) -> String {
    format!("{:02}.{:02}.{:04}", d.day(), d.month(), d.year())
}

/// Parses `YYYY-MM-DD` (a date input).
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    if s.len() != 10 {
        return None;
    }
    s.parse::<Date>().ok()
}

/// The days since 1970-01-01 of a date (for keys in per-day tables).
pub fn epoch_day(d: Date) -> i64 {
    Date::new(1970, 1, 1)
        .ok()
        .and_then(|e| d.since((jiff::Unit::Day, e)).ok())
        .map(|s| s.get_days() as i64)
        .unwrap_or(0)
}

/// The date `n` days after 1970-01-01.
pub fn from_epoch_day(n: i64) -> Date {
    add_days(Date::new(1970, 1, 1).expect("valid date"), n)
}

/// The shared, switchable clock of the running app.
#[derive(Clone, Default)]
pub struct Clock {
    current: Arc<RwLock<ShopClock>>,
    /// Held from reading the stored zone to switching to it, so two followers (a save
    /// here and the change watcher) cannot cross and leave the older zone running.
    follow: Arc<tokio::sync::Mutex<()>>,
}

impl Clock {
    pub fn new(c: ShopClock) -> Clock {
        Clock {
            current: Arc::new(RwLock::new(c)),
            follow: Arc::default(),
        }
    }

    /// Switches to the zone and country the shop settings hold now.
    pub async fn follow_settings(&self, db: &crate::db::Db) -> DomainResult<()> {
        let _turn = self.follow.lock().await;
        let mut next = db.read(super::shop::clock_of).await?;
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        next.frozen = cur.frozen;
        *cur = next;
        Ok(())
    }

    /// The clock as it is now (cheap: the zone is reference-counted).
    pub fn get(&self) -> ShopClock {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Switches to zone `name` (after the shop setting changed); unknown names refused.
    pub fn set_zone(&self, name: &str) -> DomainResult<()> {
        let mut next = ShopClock::new(name)?;
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        next.frozen = cur.frozen;
        next.country = cur.country;
        *cur = next;
        Ok(())
    }

    /// Tests only: every `now` of the shop clock answers `at` (Unix seconds) until
    /// unfrozen with `None`. The product never calls this.
    pub fn freeze_at(&self, at: Option<i64>) {
        self.current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .frozen = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i16, m: i8, d: i8, h: i8, min: i8) -> i64 {
        jiff::civil::date(y, m, d)
            .at(h, min, 0, 0)
            .to_zoned_datetime(TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second()
    }

    #[test]
    fn tashkent_days_and_year() {
        let c = ShopClock::new("Asia/Tashkent").unwrap();
        // 31 Dec 19:30 UTC is 00:30 on 1 January in Tashkent.
        let t = utc(2026, 12, 31, 19, 30);
        assert_eq!(c.year_of(t), 2027);
        assert_eq!(c.local(t).hour, 0);
        assert_eq!(c.format_datetime(t), "01.01.2027 00:30");
        assert_eq!(
            c.day_start(jiff::civil::date(2027, 1, 1)),
            utc(2026, 12, 31, 19, 0)
        );
        assert_eq!(c.offset_spans(t - 86_400 * 400, t).len(), 1);
        assert_eq!(c.offset_at(t), 5 * 3600);
    }

    #[test]
    fn a_zone_with_daylight_saving_has_short_and_long_days() {
        let c = ShopClock::new("Europe/Berlin").unwrap();
        let d = jiff::civil::date(2026, 3, 29); // clocks go forward
        assert_eq!(c.day_end(d) - c.day_start(d), 23 * 3600);
        let d = jiff::civil::date(2026, 10, 25); // and back
        assert_eq!(c.day_end(d) - c.day_start(d), 25 * 3600);
        let spans = c.offset_spans(utc(2026, 1, 1, 0, 0), utc(2027, 1, 1, 0, 0));
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].2, 3600);
        assert_eq!(spans[1].2, 7200);
        assert_eq!(spans[2].2, 3600);
        // 03:00 local the day the clocks went forward: 01:00 UTC.
        let before = utc(2026, 3, 28, 23, 0);
        assert_eq!(c.seconds_until_minute(before, 3 * 60), 2 * 3600);
    }

    #[test]
    fn moscow_and_unknown_zones() {
        let c = ShopClock::new("Europe/Moscow").unwrap();
        let t = utc(2026, 12, 31, 21, 30);
        assert_eq!(c.year_of(t), 2027);
        assert_eq!(c.local(t).hour, 0);
        for bad in [
            "Mars/Olympus",
            "",
            "../etc/passwd",
            "/etc/localtime",
            "Asia/Tashkent\n",
        ] {
            assert!(
                ShopClock::new(bad).is_err() || bad.trim() == "Asia/Tashkent",
                "{bad:?}"
            );
        }
        assert!(check_zone("Asia/Nowhere").is_err());
    }

    #[test]
    fn backup_minute_and_epoch_days() {
        let c = ShopClock::new("Asia/Tashkent").unwrap();
        // 2026-11-24 21:00 UTC = 02:00 in Tashkent; 03:00 local is one hour away.
        let now = 1_795_554_000;
        assert_eq!(c.seconds_until_minute(now, 3 * 60), 3600);
        assert_eq!(c.seconds_until_minute(now + 3600 + 60, 3 * 60), 86_400 - 60);
        assert_eq!(c.seconds_until_minute(now + 3600, 3 * 60), 86_400);
        let d = jiff::civil::date(2026, 3, 16);
        assert_eq!(epoch_day(d), 20_528);
        assert_eq!(from_epoch_day(20_528), d);
        assert_eq!(parse_date("2026-03-16"), Some(d));
        assert_eq!(parse_date("16.03.2026"), None);
    }

    #[test]
    fn frozen_clock_and_zone_switch() {
        let clock = Clock::default();
        clock.freeze_at(Some(100));
        assert_eq!(clock.get().now(), 100);
        clock.set_zone("Europe/Moscow").unwrap();
        assert_eq!(clock.get().now(), 100);
        assert_eq!(clock.get().zone_name(), "Europe/Moscow");
        assert!(clock.set_zone("Nowhere/Else").is_err());
        assert_eq!(clock.get().zone_name(), "Europe/Moscow");
    }
}
