//! Who may do what: the one table of permissions. Every HTTP route names the action it
//! needs (see `web::routes`); record-level scoping (a master sees only their own orders)
//! is applied by the domain functions that take an [`Actor`].

use crate::model::{Language, Role, UserId};

/// The authenticated user on whose behalf something is done.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub language: Language,
}

impl Actor {
    pub fn can(&self, action: Action) -> bool {
        can(self.role, action)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Any signed-in user: the dashboard and the shell.
    ViewDashboard,
    /// One's own profile, language, password and API tokens.
    ManageOwnAccount,
    ManageUsers,
    ViewLoginAudit,
    ViewActivityLog,
    ManageSettings,
    ManageBackups,
    /// Extensions, ring groups, trunks, registrations and bans.
    ManageTelephony,
    ViewCustomers,
    EditCustomers,
    MergeCustomers,
    /// Masters see only orders assigned to them.
    ViewOrders,
    CreateOrders,
    /// Masters edit only orders assigned to them.
    EditOrders,
    AssignOrders,
    ManageWorkflow,
    TakePayments,
    RefundPayments,
    ViewReports,
    ManageBranches,
    ViewCalls,
    /// Mark a missed call done by hand.
    HandleMissedCalls,
    PlaceCalls,
    ManageNotifications,
    /// The inbox: conversations with customers (masters: only their customers' threads,
    /// when the admin allows it).
    ViewConversations,
    /// Answer, take, transfer, close and link conversations.
    ReplyConversations,
    /// Export a conversation as a PDF.
    ExportConversations,
    DeleteConversations,
    /// Quick replies, procedures and inbox settings.
    ManageInbox,
    /// Import customers from files, undo an import (issue 18).
    ImportCustomers,
    /// See a device's unlock code or pattern (the master who repairs it, the admin); the
    /// front desk enters it at intake without seeing it afterwards.
    ViewUnlockCode,
    /// Work call lists from one's queue: take items, call them, record outcomes; see
    /// one's own daily progress (issue 18).
    WorkCallLists,
    /// Build and change call lists, the outcome codes and the daily targets.
    ManageCallLists,
    /// The team's daily progress.
    ViewTeamProgress,
    /// An outcome and a note on a call one took or placed (the wrap-up).
    WrapUpCalls,
    /// Create and change promotions (issue 18).
    ManagePromotions,
    /// Apply a promotion's code to an order, or take it off (the front desk).
    ApplyPromotions,
    /// Send broadcasts to segments and see their results.
    SendBroadcasts,
    /// Archive orders (one, or by a rule) and restore them.
    ArchiveOrders,
}

impl Action {
    pub const ALL: [Action; 39] = [
        Action::ViewDashboard,
        Action::ManageOwnAccount,
        Action::ManageUsers,
        Action::ViewLoginAudit,
        Action::ViewActivityLog,
        Action::ManageSettings,
        Action::ManageBackups,
        Action::ManageTelephony,
        Action::ViewCustomers,
        Action::EditCustomers,
        Action::MergeCustomers,
        Action::ViewOrders,
        Action::CreateOrders,
        Action::EditOrders,
        Action::AssignOrders,
        Action::ManageWorkflow,
        Action::TakePayments,
        Action::RefundPayments,
        Action::ViewReports,
        Action::ManageBranches,
        Action::ViewCalls,
        Action::HandleMissedCalls,
        Action::PlaceCalls,
        Action::ManageNotifications,
        Action::ViewConversations,
        Action::ReplyConversations,
        Action::ExportConversations,
        Action::DeleteConversations,
        Action::ManageInbox,
        Action::ImportCustomers,
        Action::ViewUnlockCode,
        Action::WorkCallLists,
        Action::ManageCallLists,
        Action::ViewTeamProgress,
        Action::WrapUpCalls,
        Action::ManagePromotions,
        Action::ApplyPromotions,
        Action::SendBroadcasts,
        Action::ArchiveOrders,
    ];
}

/// The permission table.
pub fn can(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(
            action,
            ViewDashboard
                | ManageOwnAccount
                | ViewCustomers
                | EditCustomers
                | ViewOrders
                | CreateOrders
                | EditOrders
                | AssignOrders
                | TakePayments
                | ViewCalls
                | HandleMissedCalls
                | PlaceCalls
                | ViewConversations
                | ReplyConversations
                | ExportConversations
                | WorkCallLists
                | WrapUpCalls
                | ApplyPromotions
        ),
        Role::Master => matches!(
            action,
            ViewDashboard
                | ManageOwnAccount
                | ViewOrders
                | EditOrders
                | PlaceCalls
                | ViewConversations
                | ReplyConversations
                | ViewUnlockCode
                | WrapUpCalls
        ),
    }
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
}
