//! Roles the owner can shape (issue 19). The built-in roles (admin, operator, master) are
//! the catalogue's default sets (`access::Action`); the owner's own roles are stored as
//! sets of permission keys, each based on a built-in role whose record scope it follows.
//! A user has one role; whatever changes, some active user can still manage users.

use super::access::{Action, Area, Permissions};
use super::work::{Store, Tx};
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::accounts::UserRow;
use crate::db::roles::{self as q, RoleFields, RoleRow};
use crate::events::{Audience, Event};
use crate::model::Role;

/// A role as listed in the API and on the roles page.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RoleView {
    /// `admin`, `operator`, `master`, or the custom role's key.
    pub key: String,
    /// The custom role's id; None for a built-in role.
    pub id: Option<i64>,
    /// The custom role's name; for a built-in role, its key (shown translated).
    pub name: String,
    pub builtin: bool,
    /// The built-in role whose record scope it follows.
    pub base: Role,
    /// Permission keys, in catalogue order.
    pub permissions: Vec<&'static str>,
    /// Users who have the role (custom roles).
    pub users: i64,
}

impl RoleView {
    fn builtin(r: Role) -> RoleView {
        RoleView {
            key: r.as_str().to_string(),
            id: None,
            name: r.as_str().to_string(),
            builtin: true,
            base: r,
            permissions: Permissions::defaults(r).to_keys(),
            users: 0,
        }
    }

    fn custom(r: RoleRow) -> RoleView {
        RoleView {
            key: r.key,
            id: Some(r.id),
            name: r.name,
            builtin: false,
            base: r.base,
            permissions: Permissions::from_stored(&r.permissions).to_keys(),
            users: r.users,
        }
    }
}

/// A permission as the API and the role form list it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PermissionView {
    pub key: &'static str,
    pub area: Area,
}

/// The catalogue, grouped by area in catalogue order.
pub fn catalogue() -> Vec<(Area, Vec<Action>)> {
    Area::ALL
        .iter()
        .map(|area| {
            (
                *area,
                Action::ALL
                    .iter()
                    .copied()
                    .filter(|a| a.area() == *area)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

pub fn permission_list() -> Vec<PermissionView> {
    Action::ALL
        .iter()
        .map(|a| PermissionView {
            key: a.key(),
            area: a.area(),
        })
        .collect()
}

/// A role as typed into the form or the API.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// Lower-case letters, digits, `_` and `-`, 2–32; not a built-in role's name.
    pub key: String,
    pub name: String,
    /// The built-in role whose record scope it follows (master: only assigned orders).
    pub base: Role,
    /// Permission keys (see `GET /api/v1/roles`). The shell's (dashboard, own profile)
    /// are always included.
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[derive(Debug)]
struct Clean {
    key: String,
    name: String,
    base: Role,
    perms: Permissions,
}

fn clean(i: RoleInput) -> DomainResult<Clean> {
    let key = i.key.trim().to_lowercase();
    let key_ok = (2..=32).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && key.parse::<Role>().is_err();
    if !key_ok {
        return Err(DomainError::invalid("err.role.key"));
    }
    let name = i.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", "field.role_name")
                .with("max", 60),
        ));
    }
    if i.permissions.len() > 4 * Action::ALL.len() {
        return Err(DomainError::invalid("err.role.too_many"));
    }
    let perms = Permissions::from_keys(i.permissions.iter().map(String::as_str)).map_err(|k| {
        DomainError::invalid(Msg::new("err.role.unknown_permission").with("key", k))
    })?;
    // Every user has the shell: the dashboard they land on and their own profile.
    let perms = perms
        .with(Action::ViewDashboard)
        .with(Action::ManageOwnAccount);
    Ok(Clean {
        key,
        name,
        base: i.base,
        perms,
    })
}

fn fields<'a>(c: &'a Clean, stored: &'a str) -> RoleFields<'a> {
    RoleFields {
        key: &c.key,
        name: &c.name,
        base: c.base,
        permissions: stored,
    }
}

fn taken(e: crate::db::DbError, key: &str) -> DomainError {
    if e.is_unique_violation() {
        DomainError::conflict(Msg::new("err.role.key_taken").with("key", key))
    } else {
        e.into()
    }
}

/// Open role and user screens refresh on it.
fn role_event(key: &str) -> Event {
    Event::new(
        "role.updated",
        serde_json::json!({ "key": key }),
        Audience::Can(Action::ManageUsers),
    )
}

/// The built-in roles, then the owner's.
pub async fn list(store: &Store) -> DomainResult<Vec<RoleView>> {
    let custom = store.read(q::list).await?;
    Ok(Role::ALL
        .into_iter()
        .map(RoleView::builtin)
        .chain(custom.into_iter().map(RoleView::custom))
        .collect())
}

pub async fn get(store: &Store, id: i64) -> DomainResult<RoleView> {
    store
        .read(move |c| q::get(c, id))
        .await?
        .map(RoleView::custom)
        .ok_or(DomainError::NotFound)
}

pub async fn create(store: &Store, by: &Actor, input: RoleInput) -> DomainResult<RoleView> {
    let c = clean(input)?;
    let id = store
        .write(by, move |tx| {
            let stored = c.perms.to_keys().join(" ");
            let id = q::insert(tx, &fields(&c, &stored), tx.now()).map_err(|e| taken(e, &c.key))?;
            tx.log(
                "create",
                "role",
                id,
                serde_json::json!({"key": c.key, "name": c.name, "base": c.base,
                    "permissions": c.perms.to_keys()}),
            );
            tx.emit(role_event(&c.key));
            Ok(id)
        })
        .await?;
    get(store, id).await
}

/// Changes a custom role; its users' open screens re-check what they may see. Refused
/// when no active user could manage users afterwards.
pub async fn update(
    store: &Store,
    by: &Actor,
    id: i64,
    input: RoleInput,
) -> DomainResult<RoleView> {
    let c = clean(input)?;
    store
        .write(by, move |tx| {
            let before = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
            let managers = user_managers(tx)?;
            let stored = c.perms.to_keys().join(" ");
            q::update(tx, id, &fields(&c, &stored), tx.now()).map_err(|e| taken(e, &c.key))?;
            ensure_a_user_manager(tx, managers)?;
            tx.log(
                "update",
                "role",
                id,
                serde_json::json!({
                    "key": [before.key, c.key],
                    "name": [before.name, c.name],
                    "base": [before.base, c.base],
                    "permissions": [Permissions::from_stored(&before.permissions).to_keys(),
                        c.perms.to_keys()],
                }),
            );
            for u in q::user_ids(tx, id)? {
                tx.emit(Event::access_changed(u));
                tx.emit(super::accounts::user_event("user.updated", u));
            }
            tx.emit(role_event(&c.key));
            Ok(())
        })
        .await?;
    get(store, id).await
}

/// What a user may do: their custom role's set, or their built-in role's defaults.
pub fn perms_of(u: &UserRow) -> Permissions {
    match &u.role_permissions {
        Some(p) => Permissions::from_stored(p),
        None => Permissions::defaults(u.role),
    }
}

/// A role key as given to a user: the built-in role, or the custom role's base and id.
pub fn resolve(tx: &Tx, key: &str) -> DomainResult<(Role, Option<i64>)> {
    let key = key.trim();
    if let Ok(r) = key.parse::<Role>() {
        return Ok((r, None));
    }
    match q::by_key(tx, key)? {
        Some(r) => Ok((r.base, Some(r.id))),
        None => Err(DomainError::invalid(
            Msg::new("err.role.unknown").with("key", key),
        )),
    }
}

/// Active users who can manage users (and so roles).
pub fn user_managers(tx: &Tx) -> DomainResult<usize> {
    Ok(crate::db::accounts::list_users(tx)?
        .iter()
        .filter(|u| u.active && perms_of(u).has(Action::ManageUsers))
        .count())
}

/// The last admin rule: when some active user could manage users before the change
/// (`before`, from [`user_managers`]), one still can after it. Checked inside the
/// change, which it refuses otherwise. (A box with no such user — set up from the shell
/// — is not made worse by an unrelated change.)
pub fn ensure_a_user_manager(tx: &Tx, before: usize) -> DomainResult<()> {
    if before > 0 && user_managers(tx)? == 0 {
        Err(DomainError::conflict("err.user.last_admin"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_checked() {
        let ok = RoleInput {
            key: "Cashier".into(),
            name: " Kassir ".into(),
            base: Role::Operator,
            permissions: vec!["orders.view".into(), "orders.payments".into()],
        };
        let c = clean(ok.clone()).unwrap();
        assert_eq!(c.key, "cashier");
        assert_eq!(c.name, "Kassir");
        assert!(c.perms.has(Action::TakePayments));
        assert!(c.perms.has(Action::ViewDashboard));
        assert!(!c.perms.has(Action::ViewCustomers));
        for key in ["admin", "a", "x y", "-x", "кассир", &"k".repeat(33)] {
            let bad = RoleInput {
                key: key.into(),
                ..ok.clone()
            };
            assert!(clean(bad).is_err(), "{key}");
        }
        let bad = RoleInput {
            permissions: vec!["orders.fly".into()],
            ..ok.clone()
        };
        match clean(bad) {
            Err(DomainError::Invalid(m)) => assert_eq!(m.key(), "err.role.unknown_permission"),
            other => panic!("{other:?}"),
        }
        assert!(clean(RoleInput {
            name: "".into(),
            ..ok
        })
        .is_err());
    }
}
