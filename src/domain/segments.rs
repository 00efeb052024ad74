//! Segments (issue 18): saved filters over customers and their orders — tags, kind,
//! language, branch, last visit, total spent, an open order, ready and not collected for
//! N days, warranty ending within N days, opted in — counted live whenever shown (no
//! stored count goes stale). Days are the shop's: "within 30 days" starts at the shop's
//! midnight 30 days ago.

use serde::{Deserialize, Serialize};

use super::clock::ShopClock;
use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::segments::{self as q, Conditions, SegmentRow};
use crate::events::{Audience, Event};

const MAX_DAYS: i64 = 3650;
const DAY: i64 = 86_400;

/// What a segment selects. Every condition given must hold; an empty filter is every live
/// customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentFilter {
    /// Any of these tags.
    pub tags: Vec<String>,
    /// `person` or `company`.
    pub kind: Option<String>,
    /// `uz`, `uz-Cyrl`, `ru` or `en`.
    pub language: Option<String>,
    /// Has an order at this branch.
    pub branch_id: Option<i64>,
    /// Brought an order within the last N days.
    pub visited_within_days: Option<i64>,
    /// Has orders, but none within the last N days.
    pub not_visited_days: Option<i64>,
    /// Paid at least this much over all their orders (the money's smallest unit).
    pub min_spent: Option<i64>,
    /// Has (true) or has no (false) order that is not closed.
    pub has_open_order: Option<bool>,
    /// Has an order ready and not collected for at least N days.
    pub ready_days: Option<i64>,
    /// Has an order whose warranty ends within the next N days.
    pub warranty_ending_days: Option<i64>,
    /// Agreed to marketing (true) or not (false).
    pub opted_in: Option<bool>,
    /// Archived customers too.
    pub include_archived: bool,
}

impl SegmentFilter {
    /// Checks the values and puts them in their one form.
    pub fn clean(mut self) -> DomainResult<SegmentFilter> {
        self.tags = super::customers::normalise_tags(&self.tags.join(","))
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(k) = &self.kind {
            if k.is_empty() {
                self.kind = None;
            } else if k != "person" && k != "company" {
                return Err(DomainError::invalid(
                    Msg::new("err.customer.kind").with("value", k),
                ));
            }
        }
        if let Some(l) = &self.language {
            if l.is_empty() {
                self.language = None;
            } else {
                let code = crate::model::Language::from_code(l).ok_or_else(|| {
                    DomainError::invalid(Msg::new("err.language.unknown").with("value", l))
                })?;
                self.language = Some(code.code().to_string());
            }
        }
        for (v, field) in [
            (
                self.visited_within_days,
                "outbound.segment.visited_within_days",
            ),
            (self.not_visited_days, "outbound.segment.not_visited_days"),
            (self.ready_days, "outbound.segment.ready_days"),
            (
                self.warranty_ending_days,
                "outbound.segment.warranty_ending_days",
            ),
        ] {
            if let Some(d) = v {
                if !(0..=MAX_DAYS).contains(&d) {
                    return Err(DomainError::invalid(
                        Msg::new("err.segment.days")
                            .term("field", field)
                            .with("max", MAX_DAYS),
                    ));
                }
            }
        }
        if self.min_spent.is_some_and(|m| m < 0) {
            return Err(DomainError::invalid("err.money.negative"));
        }
        Ok(self)
    }

    /// The conditions in the database's terms, as of `now` on the shop clock (the SQL is
    /// `db::segments`').
    pub fn conditions(&self, clock: &ShopClock, now: i64) -> Conditions {
        // "Within N days": from the shop's midnight N days before today.
        let since = |days: i64| clock.day_start(super::clock::add_days(clock.today(), -days));
        Conditions {
            tags: self.tags.clone(),
            kind: self.kind.clone(),
            language: self.language.clone(),
            branch_id: self.branch_id,
            visited_since: self.visited_within_days.map(since),
            not_visited_since: self.not_visited_days.map(since),
            min_spent: self.min_spent,
            has_open_order: self.has_open_order,
            ready_since_before: self.ready_days.map(|d| now - d * DAY),
            warranty_ends_within: self.warranty_ending_days.map(|d| (now, now + d * DAY)),
            opted_in: self.opted_in,
            include_archived: self.include_archived,
            branches: None,
        }
    }

    /// [`conditions`](Self::conditions) as seen by a user of `who` (None: every branch):
    /// with customers kept per branch, only their branches' customers are in it. Counts,
    /// members, broadcasts and call lists all take their customers from here.
    pub fn conditions_for(
        &self,
        c: &crate::db::Conn,
        who: Option<&[i64]>,
        clock: &ShopClock,
        now: i64,
    ) -> crate::db::DbResult<Conditions> {
        let mut q = self.conditions(clock, now);
        q.branches = super::customers::scope(c, who)?.map(<[i64]>::to_vec);
        Ok(q)
    }
}

/// A segment with its live count.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Segment {
    pub id: i64,
    pub name: String,
    pub filter: SegmentFilter,
    /// Customers in it now.
    pub count: i64,
    pub updated_at: i64,
}

#[derive(Clone)]
pub struct Segments {
    store: Store,
}

fn changed(id: i64) -> Event {
    Event::new(
        "segment.updated",
        serde_json::json!({"id": id}),
        Audience::Staff { masters: vec![] },
    )
}

fn clean_name(name: &str) -> DomainResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", "field.name")
                .with("max", 100),
        ));
    }
    Ok(n.to_string())
}

fn decode(row: &SegmentRow) -> SegmentFilter {
    serde_json::from_str(&row.filter).unwrap_or_default()
}

impl Segments {
    pub fn new(store: Store) -> Segments {
        Segments { store }
    }

    /// How many customers a filter selects now (of those `actor` sees).
    pub async fn count(&self, actor: &Actor, f: SegmentFilter) -> DomainResult<i64> {
        let f = f.clean()?;
        let clock = self.store.clock().get();
        let now = clock.now();
        let who = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| q::count(c, &f.conditions_for(c, who.as_deref(), &clock, now)?))
            .await
    }

    /// Every segment with its count now.
    pub async fn list(&self, actor: &Actor) -> DomainResult<Vec<Segment>> {
        let clock = self.store.clock().get();
        let now = clock.now();
        let who = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| {
                let mut out = Vec::new();
                for r in q::list(c)? {
                    let f = decode(&r);
                    out.push(Segment {
                        count: q::count(c, &f.conditions_for(c, who.as_deref(), &clock, now)?)?,
                        id: r.id,
                        name: r.name,
                        filter: f,
                        updated_at: r.updated_at,
                    });
                }
                Ok(out)
            })
            .await
    }

    pub async fn get(&self, actor: &Actor, id: i64) -> DomainResult<Segment> {
        let clock = self.store.clock().get();
        let now = clock.now();
        let who = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| {
                let Some(r) = q::get(c, id)? else {
                    return Ok(None);
                };
                let f = decode(&r);
                Ok(Some(Segment {
                    count: q::count(c, &f.conditions_for(c, who.as_deref(), &clock, now)?)?,
                    id: r.id,
                    name: r.name,
                    filter: f,
                    updated_at: r.updated_at,
                }))
            })
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// The segment's customers, newest first.
    pub async fn members(
        &self,
        actor: &Actor,
        id: i64,
        limit: i64,
        offset: i64,
    ) -> DomainResult<Vec<crate::db::customers::CustomerRow>> {
        let s = self.get(actor, id).await?;
        let clock = self.store.clock().get();
        let now = clock.now();
        let who = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| {
                let w = s.filter.conditions_for(c, who.as_deref(), &clock, now)?;
                let ids = q::ids(c, &w, limit, offset)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(r) = crate::db::customers::get(c, id)? {
                        out.push(r);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Saves a new segment (`id` None) or changes one.
    pub async fn save(
        &self,
        by: &Actor,
        id: Option<i64>,
        name: &str,
        f: SegmentFilter,
    ) -> DomainResult<i64> {
        let name = clean_name(name)?;
        let f = f.clean()?;
        let json = serde_json::to_string(&f).unwrap_or_default();
        self.store
            .write(by, move |tx| {
                let taken = |e: crate::db::DbError| {
                    if e.is_unique_violation() {
                        DomainError::conflict(
                            Msg::new("err.segment.name_taken").with("name", &name),
                        )
                    } else {
                        e.into()
                    }
                };
                let id = match id {
                    None => q::insert(tx, &name, &json, tx.actor_id(), tx.now()).map_err(taken)?,
                    Some(id) => {
                        if !q::update(tx, id, &name, &json, tx.now()).map_err(taken)? {
                            return Err(DomainError::NotFound);
                        }
                        id
                    }
                };
                tx.log(
                    "save",
                    "segment",
                    id,
                    serde_json::json!({"name": name, "filter": f}),
                );
                tx.emit(changed(id));
                Ok(id)
            })
            .await
    }

    pub async fn delete(&self, by: &Actor, id: i64) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                let r = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                q::delete(tx, id)?;
                tx.log("delete", "segment", id, serde_json::json!({"name": r.name}));
                tx.emit(changed(id));
                Ok(())
            })
            .await
    }
}
