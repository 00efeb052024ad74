//! Who may do what: the one catalogue of permissions. Every HTTP route names the action it
//! needs (see `web::routes`); record-level scoping (a master sees only their own orders,
//! a branch's staff only their branches' records) is applied by the domain functions that
//! take an [`Actor`], from the scope the actor carries.
//!
//! Permissions are data: each [`Action`] has a stable key (`orders.view`) and an area,
//! and a role is a set of keys. The built-in roles (admin, operator, master) are default
//! sets computed from this table (the `[..]` after each entry), so a new action needs one
//! line here; the owner's own roles are stored in the `roles` table as sets of keys (see
//! `domain::roles`).

use std::sync::Arc;

use crate::model::{Language, Role, UserId};

/// The authenticated user on whose behalf something is done, with their scope.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: UserId,
    pub username: String,
    pub display_name: String,
    /// The built-in role the user's record scope follows (a custom role is based on one).
    pub role: Role,
    pub language: Language,
    /// What the user may do: their role's permission set.
    pub perms: Permissions,
    /// Which branches' records the user sees.
    pub branches: Branches,
}

impl Actor {
    pub fn can(&self, action: Action) -> bool {
        self.perms.has(action)
    }

    /// An actor with a built-in role's default permissions, in every branch (the CLI,
    /// benchmarks, tests).
    pub fn builtin(user_id: UserId, username: &str, role: Role, language: Language) -> Actor {
        Actor {
            user_id,
            username: username.to_string(),
            display_name: username.to_string(),
            role,
            language,
            perms: Permissions::defaults(role),
            branches: Branches::All,
        }
    }

    /// The branch filter for lists: None for every branch.
    pub fn branch_filter(&self) -> Option<&[i64]> {
        self.branches.only()
    }

    /// Whether a record of `branch` is within the actor's branches.
    pub fn sees_branch(&self, branch: i64) -> bool {
        self.branches.contains(branch)
    }
}

/// The branches a user works in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Branches {
    /// Every branch, present and future.
    #[default]
    All,
    /// Only these (sorted, never empty).
    Only(Arc<[i64]>),
}

impl Branches {
    /// From the stored list: empty means every branch.
    pub fn from_ids(mut ids: Vec<i64>) -> Branches {
        if ids.is_empty() {
            return Branches::All;
        }
        ids.sort_unstable();
        ids.dedup();
        Branches::Only(ids.into())
    }

    pub fn contains(&self, branch: i64) -> bool {
        match self {
            Branches::All => true,
            Branches::Only(ids) => ids.binary_search(&branch).is_ok(),
        }
    }

    pub fn only(&self) -> Option<&[i64]> {
        match self {
            Branches::All => None,
            Branches::Only(ids) => Some(ids),
        }
    }

    /// The stored form: empty for every branch.
    pub fn ids(&self) -> Vec<i64> {
        self.only().map(<[i64]>::to_vec).unwrap_or_default()
    }
}

/// The areas the permissions are grouped by on the role form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Shell,
    Orders,
    Customers,
    Calls,
    Conversations,
    CallLists,
    Reports,
    Settings,
    Users,
    Backups,
    Telephony,
}

impl Area {
    pub const ALL: [Area; 11] = [
        Area::Shell,
        Area::Orders,
        Area::Customers,
        Area::Calls,
        Area::Conversations,
        Area::CallLists,
        Area::Reports,
        Area::Settings,
        Area::Users,
        Area::Backups,
        Area::Telephony,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Area::Shell => "shell",
            Area::Orders => "orders",
            Area::Customers => "customers",
            Area::Calls => "calls",
            Area::Conversations => "conversations",
            Area::CallLists => "call_lists",
            Area::Reports => "reports",
            Area::Settings => "settings",
            Area::Users => "users",
            Area::Backups => "backups",
            Area::Telephony => "telephony",
        }
    }

    /// The catalogue key of the area's heading.
    pub fn label_key(self) -> String {
        format!("perm.area.{}", self.key())
    }
}

/// Declares the catalogue: one line per action — variant, key, area, the built-in roles
/// that have it by default. Generates `Action`, `Action::ALL`, `key`, `area`,
/// `from_key` and the defaults.
macro_rules! actions {
    ($( $(#[$doc:meta])* $name:ident = $key:literal, $area:ident, [$($role:ident)*]; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $( $(#[$doc])* $name, )*
        }

        impl Action {
            pub const ALL: &'static [Action] = &[ $( Action::$name, )* ];

            /// The stable key stored in custom roles and shown in the API.
            pub fn key(self) -> &'static str {
                match self { $( Action::$name => $key, )* }
            }

            pub fn area(self) -> Area {
                match self { $( Action::$name => Area::$area, )* }
            }

            /// Whether the built-in `role` has this action.
            pub fn default_for(self, role: Role) -> bool {
                match self { $( Action::$name => [$(Role::$role),*].contains(&role), )* }
            }
        }
    };
}

actions! {
    // Shell
    /// Any signed-in user: the dashboard and the shell.
    ViewDashboard = "dashboard.view", Shell, [Admin Operator Master];
    /// One's own profile, language, password and API tokens.
    ManageOwnAccount = "profile.manage", Shell, [Admin Operator Master];

    // Orders
    /// Masters (and roles based on master) see only orders assigned to them.
    ViewOrders = "orders.view", Orders, [Admin Operator Master];
    CreateOrders = "orders.create", Orders, [Admin Operator];
    /// Masters edit only orders assigned to them.
    EditOrders = "orders.edit", Orders, [Admin Operator Master];
    AssignOrders = "orders.assign", Orders, [Admin Operator];
    /// Add and remove priced lines (work, parts).
    ChangePrices = "orders.prices", Orders, [Admin Operator Master];
    TakePayments = "orders.payments", Orders, [Admin Operator];
    RefundPayments = "orders.refund", Orders, [Admin];
    /// See a device's unlock code or pattern (the master who repairs it, the admin); the
    /// front desk enters it at intake without seeing it afterwards.
    ViewUnlockCode = "orders.unlock_code", Orders, [Admin Master];
    /// Apply a promotion's code to an order, or take it off (the front desk).
    ApplyPromotions = "orders.promotions", Orders, [Admin Operator];
    /// Archive orders (one, or by a rule) and restore them.
    ArchiveOrders = "orders.archive", Orders, [Admin];

    // Customers
    ViewCustomers = "customers.view", Customers, [Admin Operator];
    EditCustomers = "customers.edit", Customers, [Admin Operator];
    /// The customers CSV export.
    ExportCustomers = "customers.export", Customers, [Admin Operator];
    MergeCustomers = "customers.merge", Customers, [Admin];
    /// Archive and restore customers.
    ArchiveCustomers = "customers.archive", Customers, [Admin Operator];
    /// Import customers from files, undo an import (issue 18).
    ImportCustomers = "customers.import", Customers, [Admin];
    /// Create and change promotions (issue 18).
    ManagePromotions = "customers.promotions", Customers, [Admin];
    /// Send broadcasts to segments and see their results.
    SendBroadcasts = "customers.broadcasts", Customers, [Admin];

    // Calls
    ViewCalls = "calls.view", Calls, [Admin Operator];
    /// Mark a missed call done by hand.
    HandleMissedCalls = "calls.missed", Calls, [Admin Operator];
    PlaceCalls = "calls.dial", Calls, [Admin Operator Master];
    /// An outcome and a note on a call one took or placed (the wrap-up).
    WrapUpCalls = "calls.wrap_up", Calls, [Admin Operator Master];
    /// Play and download call recordings; start recording a call from its card.
    ListenRecordings = "calls.listen", Calls, [Admin];

    // Call lists
    /// Work call lists from one's queue: take items, call them, record outcomes; see
    /// one's own daily progress (issue 18).
    WorkCallLists = "call_lists.work", CallLists, [Admin Operator];
    /// Build and change call lists, the outcome codes and the daily targets.
    ManageCallLists = "call_lists.manage", CallLists, [Admin];
    /// The team's daily progress.
    ViewTeamProgress = "call_lists.team_progress", CallLists, [Admin];

    // Conversations
    /// The inbox: conversations with customers (masters: only their customers' threads,
    /// when the admin allows it).
    ViewConversations = "conversations.view", Conversations, [Admin Operator Master];
    /// Answer, take, transfer, close and link conversations.
    ReplyConversations = "conversations.reply", Conversations, [Admin Operator Master];
    /// Export a conversation as a PDF.
    ExportConversations = "conversations.export", Conversations, [Admin Operator];
    DeleteConversations = "conversations.delete", Conversations, [Admin];
    /// Quick replies, procedures and inbox settings.
    ManageInbox = "conversations.manage", Conversations, [Admin];

    // Reports and revenue
    ViewReports = "reports.view", Reports, [Admin];

    // Settings
    ManageSettings = "settings.manage", Settings, [Admin];
    ManageWorkflow = "settings.workflow", Settings, [Admin];
    ManageBranches = "settings.branches", Settings, [Admin];
    ManageNotifications = "settings.notifications", Settings, [Admin];

    // Users
    /// Users and roles.
    ManageUsers = "users.manage", Users, [Admin];
    ViewLoginAudit = "users.login_audit", Users, [Admin];
    ViewActivityLog = "users.activity", Users, [Admin];

    // Backups
    ManageBackups = "backups.manage", Backups, [Admin];

    // Telephony
    /// Extensions, ring groups, trunks, registrations and bans.
    ManageTelephony = "telephony.manage", Telephony, [Admin];
}

impl Action {
    pub fn from_key(key: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.key() == key)
    }

    /// The catalogue key of the permission's name on the role form.
    pub fn label_key(self) -> String {
        format!("perm.{}", self.key())
    }

    fn bit(self) -> u128 {
        1u128 << (self as u32)
    }
}

const _: () = assert!(
    Action::ALL.len() <= 128,
    "Permissions is a 128-bit set: widen it"
);

/// A set of actions (a role's permissions). Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Permissions(u128);

impl Permissions {
    pub fn none() -> Permissions {
        Permissions(0)
    }

    /// A built-in role's set.
    pub fn defaults(role: Role) -> Permissions {
        Action::ALL
            .iter()
            .filter(|a| a.default_for(role))
            .copied()
            .collect()
    }

    pub fn has(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn with(self, a: Action) -> Permissions {
        Permissions(self.0 | a.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.iter().copied().filter(move |a| self.has(*a))
    }

    /// The stored form: keys separated by spaces, in catalogue order.
    pub fn to_keys(self) -> Vec<&'static str> {
        self.iter().map(Action::key).collect()
    }

    /// Parses stored or typed keys; unknown keys are returned as the error.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Permissions, String> {
        let mut p = Permissions::none();
        for k in keys {
            let k = k.trim();
            if k.is_empty() {
                continue;
            }
            p = p.with(Action::from_key(k).ok_or_else(|| k.to_string())?);
        }
        Ok(p)
    }

    /// Stored keys, skipping any no longer in the catalogue (a permission removed in a
    /// later version grants nothing).
    pub fn from_stored(s: &str) -> Permissions {
        s.split_whitespace().filter_map(Action::from_key).collect()
    }
}

impl FromIterator<Action> for Permissions {
    fn from_iter<I: IntoIterator<Item = Action>>(it: I) -> Permissions {
        it.into_iter().fold(Permissions::none(), Permissions::with)
    }
}

/// The permission table for a built-in role.
pub fn can(role: Role, action: Action) -> bool {
    action.default_for(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_only_actions() {
        for a in [
            Action::ManageUsers,
            Action::ViewLoginAudit,
            Action::ManageSettings,
            Action::ManageBackups,
            Action::ManageTelephony,
            Action::RefundPayments,
        ] {
            assert!(can(Role::Admin, a));
            assert!(!can(Role::Operator, a), "{a:?}");
            assert!(!can(Role::Master, a), "{a:?}");
        }
        assert!(!can(Role::Master, Action::ViewCustomers));
        // The call log is the front desk's: masters see only their own phone's pop.
        assert!(can(Role::Operator, Action::ViewCalls));
        assert!(!can(Role::Master, Action::ViewCalls));
        assert!(can(Role::Master, Action::ViewOrders));
    }

    #[test]
    fn admin_has_everything_and_keys_are_unique() {
        for a in Action::ALL {
            assert!(can(Role::Admin, *a), "{a:?}");
            assert_eq!(Action::from_key(a.key()), Some(*a));
            assert!(crate::i18n::Tr::has(&a.label_key()), "{a:?} has no name");
            assert!(crate::i18n::Tr::has(&a.area().label_key()));
        }
        let mut keys: Vec<_> = Action::ALL.iter().map(|a| a.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), Action::ALL.len());
    }

    #[test]
    fn permission_sets_round_trip() {
        let p = Permissions::defaults(Role::Operator);
        let keys = p.to_keys().join(" ");
        assert_eq!(Permissions::from_stored(&keys), p);
        assert_eq!(Permissions::from_keys(p.to_keys()), Ok(p));
        assert_eq!(
            Permissions::from_keys(["orders.view", "nope"]),
            Err("nope".to_string())
        );
        assert_eq!(Permissions::from_stored("orders.view gone.away"), {
            Permissions::none().with(Action::ViewOrders)
        });
        assert!(Branches::from_ids(vec![3, 1, 3]).contains(1));
        assert!(!Branches::from_ids(vec![3, 1]).contains(2));
        assert!(Branches::from_ids(vec![]).contains(2));
    }
}
