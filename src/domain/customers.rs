//! Customers: phone-first, with duplicate detection on phone and a merge action.

use serde::Deserialize;

use super::work::{Store, Tx};
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::customers::{self as q, CustomerFields};
pub use crate::db::customers::{CustomerFilter, CustomerRow};
use crate::events::{Audience, Event};
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
    /// `person` (default) or `company`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The company's name (for a company, or a person's employer).
    #[serde(default)]
    pub company: String,
    /// `YYYY-MM-DD` or `DD.MM.YYYY`; empty when not known.
    #[serde(default)]
    pub birthday: Option<String>,
    /// Agreed to receive promotions and broadcasts.
    #[serde(default)]
    pub marketing_opt_in: bool,
}

#[derive(Debug)]
pub(super) struct Clean {
    pub(super) name: String,
    pub(super) phones: Vec<String>,
    pub(super) email: String,
    pub(super) telegram: String,
    pub(super) address: String,
    pub(super) notes: String,
    pub(super) tags: String,
    pub(super) language: Option<&'static str>,
    pub(super) kind: &'static str,
    pub(super) company: String,
    pub(super) birthday: Option<String>,
    pub(super) marketing_opt_in: bool,
}

/// Tags as one comma-separated list without repeats (`VIP; Optom, vip` is `VIP,Optom`),
/// spelled as first typed: a filter on one tag is a `LIKE` on `,tag,`, which ignores the
/// case of Latin letters (not of Cyrillic ones: SQLite folds ASCII only).
pub fn normalise_tags(typed: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for t in typed.split([',', ';', '\n']) {
        let t = t.trim();
        if !t.is_empty() && !out.iter().any(|o| o.to_lowercase() == t.to_lowercase()) {
            out.push(t);
        }
    }
    out.join(",")
}

/// A birthday as typed (`1990-05-17`, `17.05.1990`, `17/05/1990`) as an ISO date.
pub fn parse_birthday(typed: &str) -> Option<String> {
    let t = typed.trim();
    let nums: Vec<&str> = t.split(['-', '.', '/']).collect();
    if nums.len() != 3
        || nums
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (y, m, d) = if nums[0].len() == 4 {
        (nums[0], nums[1], nums[2])
    } else if nums[2].len() == 4 {
        (nums[2], nums[1], nums[0])
    } else {
        return None;
    };
    let (y, m, d): (i32, u8, u8) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    if !(1900..=2100).contains(&y) {
        return None;
    }
    Some(format!("{:04}-{:02}-{:02}", date.year(), m, date.day()))
}

pub(super) fn clean(
    i: CustomerInput,
    country: crate::model::phone::Country,
) -> DomainResult<Clean> {
    let name = i.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", "field.name")
                .with("max", 120),
        ));
    }
    let mut phones = Vec::new();
    for p in i.phones.iter().filter(|p| !p.trim().is_empty()) {
        let n = PhoneNumber::parse(p, country).map_err(|e| {
            DomainError::invalid(
                Msg::new("err.phone.refused")
                    .with("phone", p.trim())
                    .nested("why", e.into()),
            )
        })?;
        if !phones.contains(&n.as_str().to_string()) {
            phones.push(n.as_str().to_string());
        }
    }
    if phones.is_empty() {
        return Err(DomainError::invalid("err.customer.phone_needed"));
    }
    if phones.len() > 5 {
        return Err(DomainError::invalid(
            Msg::new("err.customer.too_many_phones").with("max", 5),
        ));
    }
    let email = i.email.trim().to_string();
    if !email.is_empty() && (!email.contains('@') || email.len() > 200 || email.contains(' ')) {
        return Err(DomainError::invalid("err.email.invalid"));
    }
    let telegram = i.telegram.trim().trim_start_matches('@').to_string();
    if telegram.len() > 64 {
        return Err(DomainError::invalid("err.customer.telegram_too_long"));
    }
    let long = |s: &str, field: &'static str, max: usize| -> DomainResult<String> {
        let s = s.trim();
        if s.chars().count() > max {
            Err(DomainError::invalid(
                Msg::new("err.field.too_long")
                    .term("field", field)
                    .with("max", max),
            ))
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
                    DomainError::invalid(Msg::new("err.language.unknown").with("value", l))
                })?
                .code(),
        ),
    };
    let kind = match i.kind.as_deref().map(str::trim).unwrap_or("") {
        "" | "person" => "person",
        "company" => "company",
        other => {
            return Err(DomainError::invalid(
                Msg::new("err.customer.kind").with("value", other),
            ))
        }
    };
    let birthday = match i
        .birthday
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        None => None,
        Some(b) => Some(parse_birthday(b).ok_or_else(|| {
            DomainError::invalid(Msg::new("err.customer.birthday").with("value", b))
        })?),
    };
    let tags = normalise_tags(&i.tags);
    Ok(Clean {
        kind,
        company: long(&i.company, "field.company", 200)?,
        birthday,
        marketing_opt_in: i.marketing_opt_in,
        language,
        address: long(&i.address, "field.address", 300)?,
        notes: long(&i.notes, "field.notes", 2000)?,
        tags: long(&tags, "field.tags", 200)?,
        name,
        phones,
        email,
        telegram,
    })
}

#[derive(Clone)]
pub struct Customers {
    store: Store,
}

/// The event every change of a customer sends: staff screens showing them refresh. When
/// customers are kept per branch it goes only to users of the customer's branches.
pub(crate) fn updated_event(c: &crate::db::Conn, id: i64) -> crate::db::DbResult<Event> {
    let branches = if q::per_branch(c)? {
        q::branches_of(c, id)?
    } else {
        None
    };
    Ok(Event::new(
        "customer.updated",
        serde_json::json!({"id": id}),
        Audience::Staff { masters: vec![] },
    )
    .in_any_branch(branches))
}

/// The customer scope of the acting user of `tx` (see [`scope`]), owned.
pub(crate) fn tx_scope(tx: &Tx<'_>) -> crate::db::DbResult<Option<Vec<i64>>> {
    let only = tx.who().branches().map(<[i64]>::to_vec);
    Ok(scope(tx, only.as_deref())?.map(<[i64]>::to_vec))
}

/// Creates a customer inside the caller's unit of work (also used by order intake). A
/// phone that already belongs to someone is a conflict naming them (offer that customer,
/// or merge), unless `allow_shared_phone`. With customers kept per branch only the
/// customers the user sees count: another branch's is another base, never named.
pub(super) fn create_in(tx: &mut Tx, c: &Clean, allow_shared_phone: bool) -> DomainResult<i64> {
    if !allow_shared_phone {
        check_phones(tx, &c.phones, None)?;
    }
    let id = q::insert(tx, &fields(c), &c.phones, tx.now())?;
    // A branch-scoped user's customer is of their (first) branch.
    if let Some(b) = tx.who().branches().and_then(|ids| ids.first().copied()) {
        q::set_branch(tx, id, b)?;
    }
    tx.log(
        "create",
        "customer",
        id,
        serde_json::json!({"name": c.name, "phones": c.phones}),
    );
    let e = updated_event(tx, id)?;
    tx.emit(e);
    Ok(id)
}

/// A phone of `phones` that already belongs to a customer other than `except` is a
/// conflict. With customers kept per branch only the customers the acting user sees
/// count (another branch's is another base). The message names that customer to a user
/// who may view customers; to one who may only edit them (a role made so) it says "another
/// customer". Inside the write: two edits racing for one phone are serialised by the
/// writer, and the second is refused before it writes anything.
fn check_phones(tx: &Tx<'_>, phones: &[String], except: Option<i64>) -> DomainResult<()> {
    let scope = tx_scope(tx)?;
    for p in phones {
        let taken = q::by_phone_in(tx, p, scope.as_deref())?
            .into_iter()
            .find(|r| Some(r.id) != except);
        if let Some(existing) = taken {
            let msg = if tx.who().can(super::Action::ViewCustomers) {
                Msg::new("err.customer.phone_taken")
                    .with("phone", p)
                    .with("id", existing.id)
                    .with("name", existing.name)
            } else {
                Msg::new("err.customer.phone_taken_other").with("phone", p)
            };
            return Err(DomainError::conflict(msg));
        }
    }
    Ok(())
}

impl Customers {
    pub fn new(store: Store) -> Customers {
        Customers { store }
    }

    /// Creates a customer. A phone that already belongs to someone is a conflict naming
    /// them (offer that customer, or merge), unless `allow_shared_phone`.
    pub async fn create(
        &self,
        by: &Actor,
        input: CustomerInput,
        allow_shared_phone: bool,
    ) -> DomainResult<i64> {
        let shop = super::shop::load(self.store.db()).await?;
        let c = clean(input, shop.country())?;
        self.store
            .write(by, move |tx| create_in(tx, &c, allow_shared_phone))
            .await
    }

    pub async fn update(
        &self,
        by: &Actor,
        id: i64,
        version: i64,
        input: CustomerInput,
    ) -> DomainResult<()> {
        let shop = super::shop::load(self.store.db()).await?;
        let c = clean(input, shop.country())?;
        self.store
            .write(by, move |tx| {
                check_scope(tx, id)?;
                let before = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                if before.version != version {
                    return Err(DomainError::conflict("err.customer.stale"));
                }
                // Only the phones added: a number shared before (kept on purpose at
                // creation) does not block changing the rest.
                let added: Vec<String> = c
                    .phones
                    .iter()
                    .filter(|p| !before.phones.contains(p))
                    .cloned()
                    .collect();
                check_phones(tx, &added, Some(id))?;
                if !q::update(tx, id, version, &fields(&c), &c.phones, tx.now())? {
                    return Err(DomainError::conflict("err.customer.stale"));
                }
                tx.log(
                    "update",
                    "customer",
                    id,
                    serde_json::json!({"name": [before.name, c.name], "phones": [before.phones, c.phones]}),
                );
                let e = updated_event(tx, id)?;
                tx.emit(e);
                Ok(())
            })
            .await
    }

    pub async fn get(&self, actor: &Actor, id: i64) -> DomainResult<CustomerRow> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| {
                if !q::in_branches(c, id, scope(c, only.as_deref())?)? {
                    return Ok(None);
                }
                q::get(c, id)
            })
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Whether customers are kept per branch.
    pub async fn per_branch(&self) -> DomainResult<bool> {
        self.store.read(q::per_branch).await
    }

    /// Keeps customers per branch (or shares them across the shop).
    pub async fn set_per_branch(&self, by: &Actor, on: bool) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                crate::db::settings::set(
                    tx,
                    q::PER_BRANCH_KEY,
                    if on { "1" } else { "0" },
                    tx.now(),
                )?;
                tx.log(
                    "settings",
                    "customers",
                    None,
                    serde_json::json!({"per_branch": on}),
                );
                tx.emit(crate::events::Event::new(
                    "settings.updated",
                    serde_json::json!({"what": "customers.per_branch"}),
                    crate::events::Audience::Everyone,
                ));
                Ok(())
            })
            .await
    }

    /// Customers with this number, typed in any format.
    pub async fn find_by_phone(
        &self,
        actor: &Actor,
        typed: &str,
    ) -> DomainResult<Vec<CustomerRow>> {
        let shop = super::shop::load(self.store.db()).await?;
        let p = PhoneNumber::parse(typed, shop.country()).map_err(|e| {
            DomainError::invalid(
                Msg::new("err.phone.refused")
                    .with("phone", typed.trim())
                    .nested("why", e.into()),
            )
        })?;
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| q::by_phone_in(c, p.as_str(), scope(c, only.as_deref())?))
            .await
    }

    pub async fn list(
        &self,
        actor: &Actor,
        limit: i64,
        offset: i64,
    ) -> DomainResult<(Vec<CustomerRow>, i64)> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| {
                let s = scope(c, only.as_deref())?;
                Ok((q::list(c, limit, offset, s)?, q::count(c, s)?))
            })
            .await
    }

    /// Customers matching a filter (tag, kind, opt-in; live or archived), newest first.
    pub async fn list_filtered(
        &self,
        actor: &Actor,
        f: q::CustomerFilter,
        limit: i64,
        offset: i64,
    ) -> DomainResult<(Vec<CustomerRow>, i64)> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .read(move |c| {
                let s = scope(c, only.as_deref())?;
                q::list_filtered(c, &f, limit, offset, s)
            })
            .await
    }

    /// Archives a customer (out of lists and search, kept with the history), or restores
    /// one. Archiving an archived customer (or restoring a live one) is a conflict.
    pub async fn set_archived(&self, by: &Actor, id: i64, archived: bool) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                check_scope(tx, id)?;
                let row = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                let at = archived.then(|| tx.now());
                if !q::set_archived(tx, id, at, tx.now())? {
                    return Err(DomainError::conflict(if archived {
                        "err.customer.already_archived"
                    } else {
                        "err.customer.not_archived"
                    }));
                }
                tx.log(
                    if archived { "archive" } else { "restore" },
                    "customer",
                    id,
                    serde_json::json!({"name": row.name}),
                );
                let e = updated_event(tx, id)?;
                tx.emit(e);
                Ok(())
            })
            .await
    }

    /// Moves `from`'s orders and phones to `into` and retires `from`.
    pub async fn merge(&self, by: &Actor, into: i64, from: i64) -> DomainResult<()> {
        if into == from {
            return Err(DomainError::invalid("err.customer.merge_same"));
        }
        self.store
            .write(by, move |tx| {
                check_scope(tx, into)?;
                check_scope(tx, from)?;
                let a = q::get(tx, into)?.ok_or(DomainError::NotFound)?;
                let b = q::get(tx, from)?.ok_or(DomainError::NotFound)?;
                let moved = q::merge(tx, into, from, tx.now())?;
                tx.log(
                    "merge",
                    "customer",
                    into,
                    serde_json::json!({"kept": a.name, "merged": b.name, "merged_id": from, "orders_moved": moved}),
                );
                let e = updated_event(tx, into)?;
                tx.emit(e);
                Ok(())
            })
            .await
    }
}

/// The branches whose customers a user of `only` sees: theirs when customers are kept
/// per branch, else every customer (None).
pub(crate) fn scope<'a>(
    c: &crate::db::Conn,
    only: Option<&'a [i64]>,
) -> crate::db::DbResult<Option<&'a [i64]>> {
    match only {
        Some(ids) if q::per_branch(c)? => Ok(Some(ids)),
        _ => Ok(None),
    }
}

/// Refuses (as not found) a customer outside the acting user's branches, when customers
/// are kept per branch.
fn check_scope(tx: &Tx<'_>, id: i64) -> DomainResult<()> {
    let only = tx.who().branches().map(<[i64]>::to_vec);
    if !q::in_branches(tx, id, scope(tx, only.as_deref())?)? {
        return Err(DomainError::NotFound);
    }
    Ok(())
}

pub(super) fn fields(c: &Clean) -> CustomerFields<'_> {
    CustomerFields {
        name: &c.name,
        email: &c.email,
        telegram: &c.telegram,
        address: &c.address,
        notes: &c.notes,
        tags: &c.tags,
        language: c.language,
        kind: c.kind,
        company: &c.company,
        birthday: c.birthday.as_deref(),
        marketing_opt_in: c.marketing_opt_in,
    }
}
