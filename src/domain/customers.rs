//! Customers: phone-first, with duplicate detection on phone and a merge action.

use serde::Deserialize;

use super::{from_db, Actor, DomainError, DomainResult};
pub use crate::db::customers::CustomerRow;
use crate::db::customers::{self as q, CustomerFields};
use crate::db::{now, Db};
use crate::events::{Audience, Event, EventBus};
use crate::model::PhoneNumber;

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub name: String,
    /// As typed, in any common format; normalised to E.164.
    pub phones: Vec<String>,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub telegram: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub tags: String,
    /// Preferred language for messages: `uz`, `uz-Cyrl`, `ru` or `en`; empty or absent
    /// when not known (messages then use the shop's default).
    #[serde(default)]
    pub language: Option<String>,
}

struct Clean {
    name: String,
    phones: Vec<String>,
    email: String,
    telegram: String,
    address: String,
    notes: String,
    tags: String,
    language: Option<&'static str>,
}

fn clean(i: CustomerInput, country: crate::model::phone::Country) -> DomainResult<Clean> {
    let name = i.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(DomainError::invalid("name: 1-120 characters"));
    }
    let mut phones = Vec::new();
    for p in i.phones.iter().filter(|p| !p.trim().is_empty()) {
        let n = PhoneNumber::parse(p, country)
            .map_err(|e| DomainError::invalid(format!("phone {p:?}: {e}")))?;
        if !phones.contains(&n.as_str().to_string()) {
            phones.push(n.as_str().to_string());
        }
    }
    if phones.is_empty() {
        return Err(DomainError::invalid("at least one phone number is needed"));
    }
    if phones.len() > 5 {
        return Err(DomainError::invalid("at most 5 phone numbers"));
    }
    let email = i.email.trim().to_string();
    if !email.is_empty() && (!email.contains('@') || email.len() > 200 || email.contains(' ')) {
        return Err(DomainError::invalid("e-mail address is not valid"));
    }
    let telegram = i.telegram.trim().trim_start_matches('@').to_string();
    if telegram.len() > 64 {
        return Err(DomainError::invalid("Telegram username is too long"));
    }
    let long = |s: &str, what: &str, max: usize| -> DomainResult<String> {
        let s = s.trim();
        if s.chars().count() > max {
            Err(DomainError::invalid(format!(
                "{what}: at most {max} characters"
            )))
        } else {
            Ok(s.to_string())
        }
    };
    let language = match i
        .language
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        None => None,
        Some(l) => Some(
            crate::model::Language::from_code(l)
                .ok_or_else(|| {
                    DomainError::invalid(format!("language {l:?}: one of uz, uz-Cyrl, ru, en"))
                })?
                .code(),
        ),
    };
    Ok(Clean {
        language,
        address: long(&i.address, "address", 300)?,
        notes: long(&i.notes, "notes", 2000)?,
        tags: long(&i.tags, "tags", 200)?,
        name,
        phones,
        email,
        telegram,
    })
}

#[derive(Clone)]
pub struct Customers {
    db: Db,
    events: EventBus,
}

impl Customers {
    pub fn new(db: Db, events: EventBus) -> Customers {
        Customers { db, events }
    }

    /// Creates a customer. A phone that already belongs to someone is a conflict naming
    /// them (offer that customer, or merge), unless `allow_shared_phone`.
    pub async fn create(
        &self,
        by: &Actor,
        input: CustomerInput,
        allow_shared_phone: bool,
    ) -> DomainResult<i64> {
        let shop = super::shop::load(&self.db).await?;
        let c = clean(input, shop.country())?;
        let by_id = by.user_id;
        let id = self
            .db
            .write(move |conn| {
                if !allow_shared_phone {
                    for p in &c.phones {
                        if let Some(existing) = q::by_phone(conn, p)?.into_iter().next() {
                            return Err(DomainError::Conflict(format!(
                                "phone {p} already belongs to customer #{} ({})",
                                existing.id, existing.name
                            ))
                            .into());
                        }
                    }
                }
                let now = now();
                let id = q::insert(conn, &fields(&c), &c.phones, now)?;
                crate::db::settings::log_activity(
                    conn,
                    Some(by_id),
                    "create",
                    "customer",
                    Some(id),
                    &serde_json::json!({"name": c.name, "phones": c.phones}),
                    now,
                )?;
                Ok(id)
            })
            .await
            .map_err(from_db)?;
        self.publish(id);
        Ok(id)
    }

    pub async fn update(
        &self,
        by: &Actor,
        id: i64,
        version: i64,
        input: CustomerInput,
    ) -> DomainResult<()> {
        let shop = super::shop::load(&self.db).await?;
        let c = clean(input, shop.country())?;
        let by_id = by.user_id;
        self.db
            .write(move |conn| {
                let before = q::get(conn, id)?.ok_or(DomainError::NotFound)?;
                let now = now();
                if !q::update(conn, id, version, &fields(&c), &c.phones, now)? {
                    return Err(DomainError::Conflict(
                        "someone else changed this customer meanwhile: reload to see their change, then save again".into(),
                    )
                    .into());
                }
                crate::db::settings::log_activity(
                    conn,
                    Some(by_id),
                    "update",
                    "customer",
                    Some(id),
                    &serde_json::json!({"name": [before.name, c.name], "phones": [before.phones, c.phones]}),
                    now,
                )?;
                Ok(())
            })
            .await
            .map_err(from_db)?;
        self.publish(id);
        Ok(())
    }

    pub async fn get(&self, id: i64) -> DomainResult<CustomerRow> {
        self.db
            .read(move |c| q::get(c, id))
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Customers with this number, typed in any format.
    pub async fn find_by_phone(&self, typed: &str) -> DomainResult<Vec<CustomerRow>> {
        let shop = super::shop::load(&self.db).await?;
        let p = PhoneNumber::parse(typed, shop.country())
            .map_err(|e| DomainError::invalid(format!("phone: {e}")))?;
        Ok(self.db.read(move |c| q::by_phone(c, p.as_str())).await?)
    }

    pub async fn list(&self, limit: i64, offset: i64) -> DomainResult<(Vec<CustomerRow>, i64)> {
        Ok(self
            .db
            .read(move |c| Ok((q::list(c, limit, offset)?, q::count(c)?)))
            .await?)
    }

    /// Moves `from`'s orders and phones to `into` and retires `from`.
    pub async fn merge(&self, by: &Actor, into: i64, from: i64) -> DomainResult<()> {
        if into == from {
            return Err(DomainError::invalid("choose two different customers"));
        }
        let by_id = by.user_id;
        self.db
            .write(move |c| {
                let a = q::get(c, into)?.ok_or(DomainError::NotFound)?;
                let b = q::get(c, from)?.ok_or(DomainError::NotFound)?;
                let now = now();
                let moved = q::merge(c, into, from, now)?;
                crate::db::settings::log_activity(
                    c,
                    Some(by_id),
                    "merge",
                    "customer",
                    Some(into),
                    &serde_json::json!({"kept": a.name, "merged": b.name, "merged_id": from, "orders_moved": moved}),
                    now,
                )?;
                Ok(())
            })
            .await
            .map_err(from_db)?;
        self.publish(into);
        Ok(())
    }

    fn publish(&self, id: i64) {
        self.events.publish(Event::new(
            "customer.updated",
            serde_json::json!({"id": id}),
            Audience::Staff { masters: vec![] },
        ));
    }
}

fn fields(c: &Clean) -> CustomerFields<'_> {
    CustomerFields {
        name: &c.name,
        email: &c.email,
        telegram: &c.telegram,
        address: &c.address,
        notes: &c.notes,
        tags: &c.tags,
        language: c.language,
    }
}
