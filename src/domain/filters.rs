//! List filters (orders, calls, customers) as a person types them into a page or a client
//! sends them to the API, parsed once, here. Every field arrives as text, so no input —
//! a letter where a number goes, a date in another shape, any Unicode — is refused by a
//! framework with its own English message: each problem is a domain error naming the
//! field, in the reader's language.

use serde::{Deserialize, Serialize};

use super::calls::{parse_direction, Outcome};
use super::clock::{parse_date, ShopClock};
use super::{DomainError, DomainResult, Msg};
use crate::db::calls::CallFilter;
use crate::db::orders::{OrderFilter, OrderSort};

/// The trimmed value, or None when absent or blank.
pub fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A whole number in `lo..=hi`, or an error naming `field`.
pub fn int(field: &'static str, v: &Option<String>, lo: i64, hi: i64) -> DomainResult<Option<i64>> {
    match blank(v) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .map(Some)
            .ok_or_else(|| {
                DomainError::invalid(
                    Msg::new("err.filter.int")
                        .with("field", field)
                        .with("lo", lo)
                        .with("hi", hi)
                        .with("value", s),
                )
            }),
    }
}

/// An id (a whole number above zero).
pub fn id(field: &'static str, v: &Option<String>) -> DomainResult<Option<i64>> {
    int(field, v, 1, i64::MAX)
}

/// A bound typed as a day `YYYY-MM-DD` (the shop's day: its first instant, or with `end`
/// the first instant after it), or a Unix time in seconds as API clients send it.
pub fn day(field: &'static str, v: &str, clock: &ShopClock, end: bool) -> DomainResult<i64> {
    if !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(t) = v.parse() {
            return Ok(t);
        }
    }
    parse_date(v)
        .map(|d| {
            if end {
                clock.day_end(d)
            } else {
                clock.day_start(d)
            }
        })
        .ok_or_else(|| {
            DomainError::invalid(
                Msg::new("err.filter.date")
                    .with("field", field)
                    .with("value", v),
            )
        })
}

/// The order list's filter, with the names of the page (`status`, `master`, `branch`,
/// `page`, `q`) and of the API (`status_id`, `master_id`, ...).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct OrderQuery {
    /// Search text (numbers, names, phones, devices); pages only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// new, in_work, waiting, ready, closed
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(alias = "status", skip_serializing_if = "Option::is_none")]
    pub status_id: Option<String>,
    #[serde(alias = "master", skip_serializing_if = "Option::is_none")]
    pub master_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(alias = "branch", skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
    /// Created on or after: a day `YYYY-MM-DD` (the shop's time) or Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Created before: a day `YYYY-MM-DD`, the whole day included, or Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `1` or `true`: only orders past their status limit or promised date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue: Option<String>,
    /// newest (default), oldest, promised, updated
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// 1-500 (API; pages show a fixed number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// Page number from 0 (pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Sorted by number: the rows after this order id (faster than `offset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Sorted by number: the rows just before this order id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// `1` or `true`: only archived orders (lists leave them out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
}

impl OrderQuery {
    /// The filter; `per_page` is the page size when no `limit` is given. Days are the
    /// shop clock's, and "overdue" is measured at its now.
    pub fn filter(&self, per_page: i64, clock: &ShopClock) -> DomainResult<OrderFilter> {
        let now = clock.now();
        // A group the workflow does not have lists nothing (as a status id that does not
        // exist does); groups are the admin's, so no fixed list refuses it here.
        let group = blank(&self.group).map(str::to_string);
        let sort = match blank(&self.sort) {
            None | Some("newest") => OrderSort::Newest,
            Some("oldest") => OrderSort::Oldest,
            Some("promised") => OrderSort::Promised,
            Some("updated") => OrderSort::Updated,
            Some(other) => {
                return Err(DomainError::invalid(
                    Msg::new("err.filter.choice")
                        .with("field", "sort")
                        .with("value", other)
                        .with("known", "newest, oldest, promised, updated"),
                ))
            }
        };
        let overdue = match blank(&self.overdue) {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") | Some("on") => true,
            Some(other) => {
                return Err(DomainError::invalid(
                    Msg::new("err.filter.choice")
                        .with("field", "overdue")
                        .with("value", other)
                        .with("known", "1, 0"),
                ))
            }
        };
        let from = blank(&self.from)
            .map(|v| day("from", v, clock, false))
            .transpose()?;
        // A typed "to" day includes all of it; a Unix time is the exact bound.
        let to = blank(&self.to)
            .map(|v| day("to", v, clock, true))
            .transpose()?;
        let limit = int("limit", &self.limit, 1, 500)?.unwrap_or(per_page);
        let mut offset = int("offset", &self.offset, 0, i64::MAX / 2)?.unwrap_or(0);
        if let Some(p) = int("page", &self.page, 0, 1_000_000)? {
            offset = p * limit;
        }
        Ok(OrderFilter {
            group,
            status_id: id("status", &self.status_id)?,
            master_id: id("master", &self.master_id)?,
            customer_id: id("customer_id", &self.customer_id)?,
            branch_id: id("branch", &self.branch_id)?,
            branch_ids: None,
            from,
            to,
            overdue_at: overdue.then_some(now),
            ids: None,
            sort,
            limit,
            offset,
            after: id("after", &self.after)?,
            before: id("before", &self.before)?,
            archived: blank(&self.archived)
                .map(|v| match v {
                    "1" | "true" => Ok(true),
                    "0" | "false" => Ok(false),
                    _ => Err(DomainError::invalid(
                        Msg::new("err.filter.choice")
                            .with("field", "archived")
                            .with("value", v)
                            .with("known", "1, 0"),
                    )),
                })
                .transpose()?,
        })
    }

    /// The search text, trimmed; None when blank.
    pub fn text(&self) -> Option<&str> {
        blank(&self.q)
    }

    /// The same filter without its position in the list (for pager and sort links).
    pub fn without_paging(&self) -> OrderQuery {
        OrderQuery {
            page: None,
            offset: None,
            after: None,
            before: None,
            ..self.clone()
        }
    }
}

/// The call log's filter, for the page and the API alike.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct CallQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<String>,
    pub outcome: Option<String>,
    pub operator: Option<String>,
    pub number: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

impl CallQuery {
    /// The filter, or an error naming the bad parameter. `normalise` turns a typed number
    /// into the log's form; days are the shop clock's.
    pub fn filter(
        &self,
        per_page: i64,
        normalise: &dyn Fn(&str) -> DomainResult<String>,
        clock: &ShopClock,
    ) -> DomainResult<CallFilter> {
        let mut f = CallFilter {
            limit: per_page,
            ..Default::default()
        };
        let typed_day = |field: &'static str, v: &str, end: bool| {
            parse_date(v)
                .map(|d| {
                    if end {
                        clock.day_end(d)
                    } else {
                        clock.day_start(d)
                    }
                })
                .ok_or_else(|| {
                    DomainError::invalid(
                        Msg::new("err.filter.date")
                            .with("field", field)
                            .with("value", v),
                    )
                })
        };
        if let Some(v) = blank(&self.from) {
            f.from_ms = Some(typed_day("from", v, false)? * 1000);
        }
        if let Some(v) = blank(&self.to) {
            // Inclusive: the whole "to" day.
            f.to_ms = Some(typed_day("to", v, true)? * 1000);
        }
        if let (Some(a), Some(b)) = (f.from_ms, f.to_ms) {
            if a >= b {
                return Err(DomainError::invalid("err.filter.from_after_to"));
            }
        }
        if let Some(v) = blank(&self.direction) {
            parse_direction(v).ok_or_else(|| {
                DomainError::invalid(
                    Msg::new("err.filter.choice")
                        .with("field", "direction")
                        .with("value", v)
                        .with("known", "internal, inbound, outbound"),
                )
            })?;
            f.direction = Some(v.to_string());
        }
        if let Some(v) = blank(&self.outcome) {
            let known: Vec<&str> = Outcome::ALL.iter().map(|o| o.code()).collect();
            Outcome::parse(v).ok_or_else(|| {
                DomainError::invalid(
                    Msg::new("err.filter.choice")
                        .with("field", "outcome")
                        .with("value", v)
                        .with("known", known.join(", ")),
                )
            })?;
            f.outcome = Some(v.to_string());
        }
        f.user_id = id("operator", &self.operator)?;
        if let Some(v) = blank(&self.number) {
            f.number = Some(normalise(v).map_err(|e| {
                DomainError::invalid(
                    Msg::new("err.filter.refused")
                        .with("field", "number")
                        .nested("why", e.message()),
                )
            })?);
        }
        if let Some(l) = int("limit", &self.limit, 1, 1000)? {
            f.limit = l;
        }
        if let Some(o) = int("offset", &self.offset, 0, i64::MAX / 2)? {
            f.offset = o;
        }
        if let Some(p) = int("page", &self.page, 0, 1_000_000)? {
            f.offset = p * f.limit;
        }
        Ok(f)
    }
}

/// Plain paging (the customers list).
#[derive(Debug, Deserialize, Default, Clone, utoipa::IntoParams)]
pub struct Paging {
    /// 1-500, default 50.
    pub limit: Option<String>,
    pub offset: Option<String>,
}

impl Paging {
    /// (limit, offset).
    pub fn parse(&self, default_limit: i64) -> DomainResult<(i64, i64)> {
        Ok((
            int("limit", &self.limit, 1, 500)?.unwrap_or(default_limit),
            int("offset", &self.offset, 0, i64::MAX / 2)?.unwrap_or(0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tashkent() -> ShopClock {
        ShopClock::new("Asia/Tashkent").unwrap()
    }

    #[test]
    fn order_filters_read_page_and_api_names_and_name_bad_fields() {
        let q: OrderQuery = serde_urlencoded::from_str(
            "status=3&master=7&branch=2&sort=oldest&page=2&from=2026-01-01&to=2026-01-01&overdue=1",
        )
        .unwrap();
        let f = q.filter(50, &tashkent()).unwrap();
        assert_eq!(
            (f.status_id, f.master_id, f.branch_id),
            (Some(3), Some(7), Some(2))
        );
        assert_eq!(f.sort, OrderSort::Oldest);
        assert_eq!((f.limit, f.offset), (50, 100));
        // 2026-01-01 00:00 in Tashkent (UTC+5) is 2025-12-31 19:00 UTC.
        assert_eq!(f.from, Some(1_767_207_600));
        assert_eq!(f.to, Some(1_767_207_600 + 86_400));
        assert!(f.overdue_at.is_some());
        let api: OrderQuery =
            serde_urlencoded::from_str("status_id=3&from=1700000000&to=1700000100&limit=10")
                .unwrap();
        let f = api.filter(50, &tashkent()).unwrap();
        assert_eq!(
            (f.status_id, f.from, f.to, f.limit),
            (Some(3), Some(1_700_000_000), Some(1_700_000_100), 10)
        );
        for bad in [
            "status=x",
            "sort=sideways",
            "limit=0",
            "limit=501",
            "from=yesterday",
            "overdue=maybe",
            "after=-1",
        ] {
            let q: OrderQuery = serde_urlencoded::from_str(bad).unwrap();
            match q.filter(50, &tashkent()) {
                Err(DomainError::Invalid(m)) => {
                    assert!(m.key().starts_with("err.filter."), "{bad}: {m:?}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn no_text_makes_a_filter_panic(a in any::<String>(), b in "\\PC{0,12}", c in "[0-9]{0,25}") {
            let q = OrderQuery {
                q: Some(a.clone()), group: Some(b.clone()), status_id: Some(c.clone()),
                master_id: Some(a.clone()), customer_id: Some(b.clone()), branch_id: Some(c.clone()),
                from: Some(a.clone()), to: Some(c.clone()), overdue: Some(b.clone()), sort: Some(a.clone()),
                limit: Some(c.clone()), offset: Some(c.clone()), page: Some(c.clone()),
                after: Some(b.clone()), before: Some(a.clone()), archived: Some(b.clone()),
            };
            let _ = q.filter(50, &tashkent());
            let _ = q.text();
            let cq = CallQuery {
                from: Some(a.clone()), to: Some(b.clone()), direction: Some(a.clone()), outcome: Some(b.clone()),
                operator: Some(c.clone()), number: Some(a.clone()), page: Some(c.clone()),
                limit: Some(b.clone()), offset: Some(c.clone()),
            };
            let _ = cq.filter(50, &|s| Ok(s.to_string()), &tashkent());
            let _ = Paging { limit: Some(a), offset: Some(c) }.parse(50);
        }
    }
}
