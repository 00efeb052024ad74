//! Promotions (issue 18): a code the front desk applies to an order for a discount — a
//! percent or an amount, on labour, parts or both — valid between two shop days and up to
//! a number of uses. Applying one is logged (activity and the order's timeline) and
//! changes what the order owes (`model::money::due`: the discount follows the lines it
//! applies to). Of two desks taking the last use at once, one gets it: the count and its
//! check are one statement in the single writer.

use serde::{Deserialize, Serialize};

use super::clock::{iso_date, parse_date};
use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
pub use crate::db::promos::PromotionRow;
use crate::db::promos::{self as q, PromotionFields};
use crate::events::{Audience, Event};
use crate::model::money::MAX_AMOUNT;

/// Longest code; codes are letters A–Z, digits, `-` and `_`.
pub const MAX_CODE: usize = 32;
pub const MAX_USES: i64 = 1_000_000;

/// A promotion as typed (the API's JSON; the page's form is read into it).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionInput {
    /// 3–32 letters (A–Z), digits, `-` or `_`; stored in capitals, matched in any case.
    pub code: String,
    pub name: String,
    /// `percent` or `amount`.
    pub kind: String,
    /// 1–100 for a percent; so'm for an amount.
    pub value: i64,
    /// `labour`, `parts` or `both`.
    #[serde(default = "both")]
    pub applies_to: String,
    /// First and last day (YYYY-MM-DD, the shop's days, inclusive).
    pub starts_on: String,
    pub ends_on: String,
    /// How many orders may use it; none: no limit.
    #[serde(default)]
    pub usage_limit: Option<i64>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn both() -> String {
    "both".into()
}
fn yes() -> bool {
    true
}

/// The code in its one form, or why it cannot be one.
pub fn normalise_code(code: &str) -> DomainResult<String> {
    let c = code.trim().to_ascii_uppercase();
    let ok = (3..=MAX_CODE).contains(&c.chars().count())
        && c.chars()
            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
    if ok {
        Ok(c)
    } else {
        Err(DomainError::invalid(
            Msg::new("err.promo.code_format").with("max", MAX_CODE),
        ))
    }
}

impl PromotionInput {
    fn clean(self) -> DomainResult<PromotionFields> {
        let code = normalise_code(&self.code)?;
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(DomainError::invalid("err.promo.name"));
        }
        let percent = match self.kind.as_str() {
            "percent" => true,
            "amount" => false,
            other => {
                return Err(DomainError::invalid(
                    Msg::new("err.promo.kind").with("value", other),
                ))
            }
        };
        if percent && !(1..=100).contains(&self.value) {
            return Err(DomainError::invalid("err.promo.percent"));
        }
        if !percent && !(1..=MAX_AMOUNT).contains(&self.value) {
            return Err(DomainError::invalid("err.promo.amount"));
        }
        if !["labour", "parts", "both"].contains(&self.applies_to.as_str()) {
            return Err(DomainError::invalid(
                Msg::new("err.promo.applies_to").with("value", &self.applies_to),
            ));
        }
        let (Some(from), Some(to)) = (parse_date(&self.starts_on), parse_date(&self.ends_on))
        else {
            return Err(DomainError::invalid("err.promo.dates"));
        };
        if to < from {
            return Err(DomainError::invalid("err.promo.dates"));
        }
        if self
            .usage_limit
            .is_some_and(|l| !(1..=MAX_USES).contains(&l))
        {
            return Err(DomainError::invalid(
                Msg::new("err.promo.limit").with("max", MAX_USES),
            ));
        }
        Ok(PromotionFields {
            code,
            name,
            kind: self.kind,
            value: self.value,
            applies_to: self.applies_to,
            starts_on: iso_date(from),
            ends_on: iso_date(to),
            usage_limit: self.usage_limit,
            active: self.active,
        })
    }
}

/// What applying a promotion did to an order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Applied {
    pub order_id: i64,
    pub promotion_id: i64,
    pub code: String,
    /// What comes off the order now (it follows the lines).
    pub discount: i64,
    /// What the order owes now.
    pub due: i64,
}

#[derive(Clone)]
pub struct Promotions {
    store: Store,
}

fn event(id: i64) -> Event {
    Event::new(
        "promotion.updated",
        serde_json::json!({"id": id}),
        Audience::Staff { masters: vec![] },
    )
}

impl Promotions {
    pub fn new(store: Store) -> Promotions {
        Promotions { store }
    }

    pub async fn list(&self) -> DomainResult<Vec<PromotionRow>> {
        Ok(self.store.db().read(q::list_promotions).await?)
    }

    pub async fn get(&self, id: i64) -> DomainResult<PromotionRow> {
        self.store
            .db()
            .read(move |c| q::promotion(c, id))
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Creates (`id` None) or changes a promotion.
    pub async fn save(
        &self,
        by: &Actor,
        id: Option<i64>,
        input: PromotionInput,
    ) -> DomainResult<i64> {
        let f = input.clean()?;
        self.store
            .write(by, move |tx| {
                if q::code_taken(tx, &f.code, id)? {
                    return Err(DomainError::Conflict(
                        Msg::new("err.promo.code_taken").with("code", &f.code),
                    ));
                }
                let id = match id {
                    None => q::insert_promotion(tx, &f, tx.actor_id(), tx.now())?,
                    Some(id) => {
                        let old = q::promotion(tx, id)?.ok_or(DomainError::NotFound)?;
                        if f.usage_limit.is_some_and(|l| l < old.used) {
                            return Err(DomainError::Conflict(
                                Msg::new("err.promo.limit_below_used").with("used", old.used),
                            ));
                        }
                        q::update_promotion(tx, id, &f, tx.now())?;
                        id
                    }
                };
                tx.log(
                    "save",
                    "promotion",
                    id,
                    serde_json::json!({"code": f.code, "kind": f.kind, "value": f.value,
                        "applies_to": f.applies_to, "usage_limit": f.usage_limit}),
                );
                tx.emit(event(id));
                Ok(id)
            })
            .await
    }

    /// Applies a promotion to an order by its code. A code that is malformed or unknown,
    /// not yet valid, expired, switched off or used up is refused with a message that
    /// says which; so is an order that is closed or already has one.
    pub async fn apply(&self, by: &Actor, order_id: i64, code: &str) -> DomainResult<Applied> {
        let code = code.trim().to_string();
        if code.is_empty() || code.chars().count() > MAX_CODE * 2 {
            return Err(DomainError::invalid("err.promo.unknown"));
        }
        self.store
            .write(by, move |tx| {
                let p = match normalise_code(&code) {
                    Ok(c) => q::promotion_by_code(tx, &c)?,
                    Err(_) => None,
                }
                .ok_or_else(|| DomainError::invalid("err.promo.unknown"))?;
                if !p.active {
                    return Err(DomainError::invalid(
                        Msg::new("err.promo.inactive").with("code", &p.code),
                    ));
                }
                let today = iso_date(tx.clock().today());
                if today < p.starts_on {
                    return Err(DomainError::invalid(
                        Msg::new("err.promo.not_yet")
                            .with("code", &p.code)
                            .with("date", &p.starts_on),
                    ));
                }
                if today > p.ends_on {
                    return Err(DomainError::invalid(
                        Msg::new("err.promo.expired")
                            .with("code", &p.code)
                            .with("date", &p.ends_on),
                    ));
                }
                let o = crate::db::orders::get(tx, order_id)?.ok_or(DomainError::NotFound)?;
                if o.closed_at.is_some() || o.archived_at.is_some() {
                    return Err(DomainError::Conflict(Msg::new("err.promo.order_closed")));
                }
                if let Some(other) = o.promotion_id {
                    return Err(DomainError::Conflict(if other == p.id {
                        Msg::new("err.promo.already").with("code", &p.code)
                    } else {
                        Msg::new("err.promo.order_has_one")
                    }));
                }
                let now = tx.now();
                if !q::take_use(tx, p.id, now)? {
                    return Err(DomainError::Conflict(
                        Msg::new("err.promo.used_up").with("code", &p.code),
                    ));
                }
                q::insert_use(tx, p.id, order_id, tx.actor_id(), now)?;
                q::set_order_promotion(tx, order_id, Some(p.id), now)?;
                let after = crate::db::orders::get(tx, order_id)?.ok_or(DomainError::NotFound)?;
                let detail = serde_json::json!({"code": p.code, "promotion_id": p.id,
                    "discount": after.discount});
                crate::db::orders::insert_event(
                    tx,
                    order_id,
                    tx.actor_id(),
                    "promotion",
                    false,
                    "",
                    &detail,
                    now,
                )?;
                tx.log(
                    "apply",
                    "promotion",
                    p.id,
                    serde_json::json!({"order_id": order_id,
                    "code": p.code, "discount": after.discount}),
                );
                tx.emit(super::orders::order_event(
                    "order.updated",
                    &after,
                    o.master_id,
                    serde_json::json!({"change": "promotion"}),
                ));
                tx.emit(event(p.id));
                Ok(Applied {
                    order_id,
                    promotion_id: p.id,
                    code: p.code,
                    discount: after.discount,
                    due: crate::model::money::due(
                        after.total,
                        after.estimate,
                        after.discount,
                        after.paid,
                    ),
                })
            })
            .await
    }

    /// Takes the promotion off an open order and gives its use back.
    pub async fn remove(&self, by: &Actor, order_id: i64) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                let o = crate::db::orders::get(tx, order_id)?.ok_or(DomainError::NotFound)?;
                let Some(pid) = o.promotion_id else {
                    return Err(DomainError::Conflict(Msg::new("err.promo.none_on_order")));
                };
                if o.closed_at.is_some() {
                    return Err(DomainError::Conflict(Msg::new("err.promo.order_closed")));
                }
                let now = tx.now();
                q::delete_use(tx, order_id)?;
                q::give_back_use(tx, pid, now)?;
                q::set_order_promotion(tx, order_id, None, now)?;
                let after = crate::db::orders::get(tx, order_id)?.ok_or(DomainError::NotFound)?;
                crate::db::orders::insert_event(
                    tx,
                    order_id,
                    tx.actor_id(),
                    "promotion_removed",
                    false,
                    "",
                    &serde_json::json!({"promotion_id": pid}),
                    now,
                )?;
                tx.log(
                    "remove",
                    "promotion",
                    pid,
                    serde_json::json!({"order_id": order_id}),
                );
                tx.emit(super::orders::order_event(
                    "order.updated",
                    &after,
                    o.master_id,
                    serde_json::json!({"change": "promotion"}),
                ));
                tx.emit(event(pid));
                Ok(())
            })
            .await
    }

    /// Archives one order (out of lists and search, kept with its history).
    pub async fn archive_order(
        &self,
        by: Option<&Actor>,
        id: i64,
        archive: bool,
    ) -> DomainResult<()> {
        self.store
            .write(super::work::Who::from(by), move |tx| {
                let o = crate::db::orders::get(tx, id)?.ok_or(DomainError::NotFound)?;
                if archive && o.closed_at.is_none() {
                    return Err(DomainError::Conflict(Msg::new("err.archive.open_order")));
                }
                let now = tx.now();
                if !q::set_order_archived(tx, id, archive.then_some(now), now)? {
                    return Err(DomainError::Conflict(Msg::new(if archive {
                        "err.archive.already"
                    } else {
                        "err.archive.not_archived"
                    })));
                }
                if archive {
                    q::unindex_order(tx, id)?;
                } else {
                    crate::db::orders::reindex(tx, id)?;
                }
                let after = crate::db::orders::get(tx, id)?.ok_or(DomainError::NotFound)?;
                tx.log(
                    if archive { "archive" } else { "restore" },
                    "order",
                    id,
                    serde_json::json!({"number": o.number}),
                );
                tx.emit(super::orders::order_event(
                    "order.updated",
                    &after,
                    o.master_id,
                    serde_json::json!({"change": if archive { "archived" } else { "restored" }}),
                ));
                Ok(())
            })
            .await
    }

    /// An order's id by its number, archived or not (for `crm archive restore`).
    pub async fn order_id(&self, number: &str) -> DomainResult<i64> {
        let number = number.trim().to_string();
        self.store
            .db()
            .read(move |c| crate::db::orders::by_number(c, &number))
            .await?
            .map(|o| o.id)
            .ok_or(DomainError::NotFound)
    }

    /// Archives the orders closed more than `years` years ago (by the shop's calendar), up
    /// to `limit` in one go. Returns how many.
    pub async fn archive_closed(
        &self,
        by: Option<&Actor>,
        years: i64,
        limit: i64,
    ) -> DomainResult<usize> {
        if !(1..=50).contains(&years) {
            return Err(DomainError::invalid(
                Msg::new("err.archive.years").with("max", 50),
            ));
        }
        let limit = limit.clamp(1, 100_000);
        let who = super::work::Who::from(by);
        self.store
            .write(who, move |tx| {
                let today = tx.clock().today();
                let cutoff_day = today
                    .checked_sub(jiff::Span::new().years(years))
                    .unwrap_or(today);
                let cutoff = tx.clock().day_start(cutoff_day);
                let ids = q::closed_before(tx, cutoff, limit)?;
                let now = tx.now();
                for id in &ids {
                    q::set_order_archived(tx, *id, Some(now), now)?;
                    q::unindex_order(tx, *id)?;
                }
                if !ids.is_empty() {
                    tx.log(
                        "archive",
                        "order",
                        None,
                        serde_json::json!({"rule": "closed_before", "years": years,
                            "before": iso_date(cutoff_day), "orders": ids.len()}),
                    );
                    tx.emit(Event::new(
                        "order.archived",
                        serde_json::json!({"count": ids.len()}),
                        Audience::Staff { masters: vec![] },
                    ));
                }
                Ok(ids.len())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_and_capitalised() {
        assert_eq!(normalise_code(" spring-10 ").unwrap(), "SPRING-10");
        for bad in [
            "",
            "ab",
            "ВЕСНА10",
            "a b c",
            "x".repeat(33).as_str(),
            "A;DROP",
        ] {
            assert!(normalise_code(bad).is_err(), "{bad}");
        }
    }
}
