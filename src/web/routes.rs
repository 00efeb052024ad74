//! The route table: every route with the permission it needs, declared once. The same
//! declaration registers the handlers with actix and builds the table the authorization
//! middleware consults, so a route cannot exist without a rule.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, Responder};

use super::{api, assets, health, pages, sipws, ws};
use crate::domain::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// A signed-in user (session or API token) whose role may do the action.
    Allowed(Action),
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

pub trait Registrar {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, access: Access, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;
}

/// Every route of the web server.
#[rustfmt::skip]
pub fn define(r: &mut impl Registrar) {
    use Access::*;
    use Action::*;
    let get = || Method::GET;
    let post = || Method::POST;

    // Infrastructure
    r.add(get(), "/healthz", Public, health::healthz);
    r.add(get(), "/metrics", Public, health::metrics);
    r.add(get(), "/assets/{hash}/{path:.*}", Public, assets::serve);
    r.add(get(), "/favicon.ico", Public, assets::favicon);
    r.add(get(), "/tls/ca.crt", Public, health::ca_certificate);

    // Sign-in and first run
    r.add(get(), "/login", Public, pages::auth::login_form);
    r.add(post(), "/login", Public, pages::auth::login);
    r.add(post(), "/logout", Public, pages::auth::logout);
    r.add(get(), "/setup", Public, pages::auth::setup_form);
    r.add(post(), "/setup", Public, pages::auth::setup);
    r.add(post(), "/lang", Public, pages::profile::switch_language);

    // Shell
    r.add(get(), "/", Allowed(ViewDashboard), pages::dashboard::show);
    r.add(get(), "/profile", Allowed(ManageOwnAccount), pages::profile::show);
    r.add(post(), "/profile/password", Allowed(ManageOwnAccount), pages::profile::change_password);
    r.add(post(), "/profile/email", Allowed(ManageOwnAccount), pages::profile::change_email);
    r.add(post(), "/profile/tokens", Allowed(ManageOwnAccount), pages::profile::create_token);
    r.add(post(), "/tokens/{id}/revoke", Allowed(ManageOwnAccount), pages::profile::revoke_token);

    // Live updates
    r.add(get(), "/ws", Allowed(ViewDashboard), ws::connect);
    r.add(post(), "/notices", Allowed(ManageUsers), pages::dashboard::post_notice);

    // Service center
    r.add(get(), "/orders", Allowed(ViewOrders), pages::orders::list);
    r.add(get(), "/orders/export.csv", Allowed(ViewOrders), pages::orders::export_csv);
    r.add(get(), "/orders/new", Allowed(CreateOrders), pages::orders::new_form);
    r.add(get(), "/orders/new/customer", Allowed(CreateOrders), pages::desk::intake_customer);
    r.add(post(), "/orders", Allowed(CreateOrders), pages::orders::create);
    r.add(get(), "/orders/{id}", Allowed(ViewOrders), pages::orders::show);
    r.add(post(), "/orders/{id}", Allowed(EditOrders), pages::orders::update);
    r.add(post(), "/orders/{id}/status", Allowed(EditOrders), pages::orders::change_status);
    r.add(post(), "/orders/{id}/assign", Allowed(AssignOrders), pages::orders::assign);
    r.add(post(), "/orders/{id}/unlock", Allowed(EditOrders), pages::orders::set_unlock);
    r.add(post(), "/orders/{id}/lines", Allowed(ChangePrices), pages::orders::add_line);
    r.add(post(), "/orders/{id}/lines/{line}/delete", Allowed(ChangePrices), pages::orders::remove_line);
    r.add(post(), "/orders/{id}/payments", Allowed(TakePayments), pages::orders::pay);
    r.add(post(), "/orders/{id}/comments", Allowed(EditOrders), pages::orders::comment);
    r.add(post(), "/orders/{id}/photos", Allowed(EditOrders), pages::orders::upload_photo);
    r.add(get(), "/orders/{id}/photos/{photo}", Allowed(ViewOrders), pages::orders::photo);
    r.add(get(), "/orders/{id}/receipt", Allowed(ViewOrders), pages::orders::receipt);
    r.add(get(), "/orders/{id}/act", Allowed(ViewOrders), pages::orders::act);
    r.add(get(), "/orders/{id}/label", Allowed(ViewOrders), pages::orders::label);
    r.add(get(), "/my", Allowed(ViewOrders), pages::orders::my_orders);
    r.add(get(), "/workload", Allowed(ViewReports), pages::orders::workload);
    r.add(get(), "/customers", Allowed(ViewCustomers), pages::customers::list);
    r.add(get(), "/customers/export.csv", Allowed(ExportCustomers), pages::customers::export_csv);
    r.add(get(), "/customers/new", Allowed(EditCustomers), pages::customers::new_form);
    r.add(post(), "/customers", Allowed(EditCustomers), pages::customers::create);
    r.add(get(), "/customers/{id}", Allowed(ViewCustomers), pages::customers::show);
    r.add(post(), "/customers/{id}", Allowed(EditCustomers), pages::customers::update);
    r.add(post(), "/customers/{id}/merge", Allowed(MergeCustomers), pages::customers::merge);
    r.add(get(), "/search", Allowed(ViewOrders), pages::customers::search);
    r.add(get(), "/search/suggest", Allowed(ViewOrders), pages::desk::suggest);
    r.add(get(), "/branches", Allowed(ManageBranches), pages::branches::list);
    r.add(post(), "/branches", Allowed(ManageBranches), pages::branches::create);
    // Issue 19: customers shared or kept per branch (before /branches/{id}).
    r.add(post(), "/branches/customer-scope", Allowed(ManageBranches), pages::branches::customer_scope);
    r.add(post(), "/branches/{id}", Allowed(ManageBranches), pages::branches::update);
    r.add(get(), "/map", Allowed(ViewOrders), pages::branches::map);

    // Administration
    r.add(get(), "/users", Allowed(ManageUsers), pages::users::list);
    r.add(get(), "/users/new", Allowed(ManageUsers), pages::users::new_form);
    r.add(post(), "/users", Allowed(ManageUsers), pages::users::create);
    r.add(get(), "/users/{id}", Allowed(ManageUsers), pages::users::edit_form);
    r.add(post(), "/users/{id}", Allowed(ManageUsers), pages::users::update);
    r.add(post(), "/users/{id}/password", Allowed(ManageUsers), pages::users::reset_password);
    r.add(get(), "/settings", Allowed(ManageSettings), pages::settings::show);
    r.add(post(), "/settings/shop", Allowed(ManageSettings), pages::settings::save_shop);
    r.add(post(), "/settings/logo", Allowed(ManageSettings), pages::settings::upload_logo);
    r.add(post(), "/settings/logo/remove", Allowed(ManageSettings), pages::settings::remove_logo);
    r.add(get(), "/shop/logo", Allowed(ViewDashboard), pages::settings::logo);
    r.add(get(), "/api/v1/settings/shop", Allowed(ManageSettings), api::settings::get_shop);
    r.add(Method::PUT, "/api/v1/settings/shop", Allowed(ManageSettings), api::settings::save_shop);
    r.add(post(), "/settings/workflow", Allowed(ManageWorkflow), pages::settings::save_workflow);
    r.add(get(), "/audit/logins", Allowed(ViewLoginAudit), pages::audit::logins);
    r.add(get(), "/audit/activity", Allowed(ViewActivityLog), pages::audit::activity);

    // Notifications (issue 7)
    r.add(get(), "/settings/notifications", Allowed(ManageNotifications), pages::notifications::show);
    r.add(post(), "/settings/notifications/smtp", Allowed(ManageNotifications), pages::notifications::save_smtp);
    r.add(post(), "/settings/notifications/smtp/test", Allowed(ManageNotifications), pages::notifications::test_smtp);
    r.add(post(), "/settings/notifications/telegram", Allowed(ManageNotifications), pages::notifications::save_telegram);
    r.add(post(), "/settings/notifications/telegram/test", Allowed(ManageNotifications), pages::notifications::test_telegram);
    r.add(post(), "/settings/notifications/rules", Allowed(ManageNotifications), pages::notifications::save_rules);
    r.add(get(), "/settings/notifications/templates/{event}/{lang}", Allowed(ManageNotifications), pages::notifications::edit_template);
    r.add(post(), "/settings/notifications/templates/{event}/{lang}", Allowed(ManageNotifications), pages::notifications::save_template);
    r.add(post(), "/settings/notifications/outbox/{id}/retry", Allowed(ManageNotifications), pages::notifications::retry);
    r.add(get(), "/profile/telegram", Allowed(ManageOwnAccount), pages::notifications::profile_telegram);
    r.add(post(), "/profile/telegram/link", Allowed(ManageOwnAccount), pages::notifications::profile_telegram_link);
    r.add(post(), "/profile/telegram/unlink", Allowed(ManageOwnAccount), pages::notifications::profile_telegram_unlink);
    // Backups (ops)
    r.add(get(), "/backups", Allowed(ManageBackups), pages::backups::list);
    r.add(post(), "/backups", Allowed(ManageBackups), pages::backups::create);
    r.add(get(), "/backups/{name}/download", Allowed(ManageBackups), pages::backups::download);
    // Off-box copies (issue 21): targets and replication settings.
    r.add(post(), "/backups/remote/settings", Allowed(ManageBackups), pages::backups::save_general);
    r.add(post(), "/backups/remote/targets", Allowed(ManageBackups), pages::backups::add_target);
    r.add(post(), "/backups/remote/targets/{name}", Allowed(ManageBackups), pages::backups::edit_target);
    r.add(post(), "/backups/remote/targets/{name}/delete", Allowed(ManageBackups), pages::backups::remove_target);
    r.add(post(), "/backups/remote/targets/{name}/test", Allowed(ManageBackups), pages::backups::test_target);

    // Inbox (issue 17): conversations with customers, quick replies, procedures.
    // Fixed paths before /inbox/{id}: actix takes the first pattern that matches.
    r.add(get(), "/inbox", Allowed(ViewConversations), pages::inbox::list);
    r.add(get(), "/inbox/settings", Allowed(ManageInbox), pages::inbox::settings);
    r.add(post(), "/inbox/settings", Allowed(ManageInbox), pages::inbox::save_settings);
    r.add(post(), "/inbox/quick-replies", Allowed(ManageInbox), pages::inbox::save_quick_reply);
    r.add(post(), "/inbox/quick-replies/{id}/delete", Allowed(ManageInbox), pages::inbox::delete_quick_reply);
    r.add(get(), "/inbox/files/{message}", Allowed(ViewConversations), pages::inbox::file);
    r.add(get(), "/inbox/{id}", Allowed(ViewConversations), pages::inbox::show);
    r.add(post(), "/inbox/{id}/reply", Allowed(ReplyConversations), pages::inbox::reply);
    r.add(post(), "/inbox/{id}/assign", Allowed(ReplyConversations), pages::inbox::assign);
    r.add(post(), "/inbox/{id}/close", Allowed(ReplyConversations), pages::inbox::close);
    r.add(post(), "/inbox/{id}/reopen", Allowed(ReplyConversations), pages::inbox::reopen);
    r.add(post(), "/inbox/{id}/link", Allowed(ReplyConversations), pages::inbox::link);
    r.add(post(), "/inbox/{id}/typing", Allowed(ReplyConversations), pages::inbox::typing);
    r.add(post(), "/inbox/{id}/delete", Allowed(DeleteConversations), pages::inbox::delete);
    r.add(get(), "/inbox/{id}/quick-replies/{reply}", Allowed(ViewConversations), pages::inbox::quick_reply);
    r.add(get(), "/procedures", Allowed(ViewConversations), pages::inbox::procedures);
    r.add(post(), "/procedures", Allowed(ManageInbox), pages::inbox::save_procedure);
    r.add(post(), "/procedures/{id}/delete", Allowed(ManageInbox), pages::inbox::delete_procedure);

    // JSON API
    r.add(get(), "/api/v1/openapi.json", Public, api::openapi_json);
    r.add(get(), "/api/v1/me", Allowed(ManageOwnAccount), api::users::me);
    r.add(get(), "/api/v1/users", Allowed(ManageUsers), api::users::list);
    r.add(post(), "/api/v1/users", Allowed(ManageUsers), api::users::create);
    r.add(get(), "/api/v1/users/{id}", Allowed(ManageUsers), api::users::get);
    r.add(Method::PATCH, "/api/v1/users/{id}", Allowed(ManageUsers), api::users::update);
    r.add(get(), "/api/v1/tokens", Allowed(ManageOwnAccount), api::users::list_tokens);
    r.add(Method::DELETE, "/api/v1/tokens/{id}", Allowed(ManageOwnAccount), api::users::revoke_token);
    r.add(get(), "/api/v1/login-audit", Allowed(ViewLoginAudit), api::users::login_audit);
    r.add(get(), "/api/v1/presence", Allowed(ViewDashboard), api::live::presence);
    r.add(post(), "/api/v1/notices", Allowed(ManageUsers), api::live::post_notice);
    r.add(get(), "/api/v1/customers", Allowed(ViewCustomers), api::core::list_customers);
    r.add(post(), "/api/v1/customers", Allowed(EditCustomers), api::core::create_customer);
    r.add(get(), "/api/v1/customers/lookup", Allowed(ViewCustomers), api::core::lookup);
    r.add(get(), "/api/v1/customers/{id}", Allowed(ViewCustomers), api::core::get_customer);
    r.add(Method::PUT, "/api/v1/customers/{id}", Allowed(EditCustomers), api::core::update_customer);
    r.add(get(), "/api/v1/orders", Allowed(ViewOrders), api::core::list_orders);
    r.add(post(), "/api/v1/orders", Allowed(CreateOrders), api::core::create_order);
    r.add(get(), "/api/v1/orders/{id}", Allowed(ViewOrders), api::core::get_order);
    r.add(Method::PUT, "/api/v1/orders/{id}", Allowed(EditOrders), api::core::update_order);
    r.add(post(), "/api/v1/orders/{id}/status", Allowed(EditOrders), api::core::change_status);
    r.add(post(), "/api/v1/orders/{id}/assign", Allowed(AssignOrders), api::core::assign);
    r.add(Method::PUT, "/api/v1/orders/{id}/unlock", Allowed(EditOrders), api::core::set_unlock);
    r.add(post(), "/api/v1/orders/{id}/lines", Allowed(ChangePrices), api::core::add_line);
    r.add(post(), "/api/v1/orders/{id}/payments", Allowed(TakePayments), api::core::pay);
    r.add(post(), "/api/v1/orders/{id}/comments", Allowed(EditOrders), api::core::comment);
    r.add(get(), "/api/v1/search", Allowed(ViewOrders), api::core::search);
    r.add(get(), "/api/v1/statuses", Allowed(ViewOrders), api::core::statuses);
    r.add(get(), "/api/v1/branches", Allowed(ViewOrders), api::core::list_branches);
    r.add(post(), "/api/v1/branches", Allowed(ManageBranches), api::core::create_branch);
    r.add(Method::PUT, "/api/v1/branches/{id}", Allowed(ManageBranches), api::core::update_branch);
    r.add(Method::PUT, "/api/v1/customer-scope", Allowed(ManageBranches), api::core::customer_scope);

    // Telephony
    r.add(get(), "/telephony", Allowed(ManageTelephony), pages::telephony::show);
    r.add(post(), "/telephony/extensions", Allowed(ManageTelephony), pages::telephony::create_extension);
    r.add(post(), "/telephony/extensions/{number}/secret", Allowed(ManageTelephony), pages::telephony::regenerate_secret);
    r.add(post(), "/telephony/extensions/{number}/delete", Allowed(ManageTelephony), pages::telephony::delete_extension);
    r.add(post(), "/telephony/groups", Allowed(ManageTelephony), pages::telephony::save_group);
    r.add(post(), "/telephony/groups/{number}/delete", Allowed(ManageTelephony), pages::telephony::delete_group);
    r.add(post(), "/telephony/bans/{address}/release", Allowed(ManageTelephony), pages::telephony::release_ban);
    r.add(get(), "/api/v1/telephony/extensions", Allowed(ManageTelephony), api::telephony::list_extensions);
    r.add(post(), "/api/v1/telephony/extensions", Allowed(ManageTelephony), api::telephony::create_extension);
    r.add(Method::DELETE, "/api/v1/telephony/extensions/{number}", Allowed(ManageTelephony), api::telephony::delete_extension);
    r.add(get(), "/api/v1/telephony/groups", Allowed(ManageTelephony), api::telephony::list_groups);
    r.add(Method::PUT, "/api/v1/telephony/groups", Allowed(ManageTelephony), api::telephony::save_group);
    r.add(Method::DELETE, "/api/v1/telephony/groups/{number}", Allowed(ManageTelephony), api::telephony::delete_group);
    r.add(get(), "/api/v1/telephony/registrations", Allowed(ManageTelephony), api::telephony::registrations);
    r.add(get(), "/api/v1/telephony/bans", Allowed(ManageTelephony), api::telephony::bans);
    r.add(post(), "/api/v1/telephony/bans/{address}/release", Allowed(ManageTelephony), api::telephony::release_ban);

    // Calls (issue 6): the log, missed calls, live status
    r.add(get(), "/calls", Allowed(ViewCalls), pages::calls::list);
    r.add(get(), "/calls/export.csv", Allowed(ViewCalls), pages::calls::export_csv);
    r.add(get(), "/calls/missed", Allowed(ViewCalls), pages::calls::missed);
    r.add(post(), "/calls/missed/{id}/done", Allowed(HandleMissedCalls), pages::calls::mark_missed_done);
    r.add(get(), "/api/v1/calls", Allowed(ViewCalls), api::calls::list);
    r.add(get(), "/api/v1/calls/missed", Allowed(ViewCalls), api::calls::missed);
    r.add(post(), "/api/v1/calls/missed/{id}/done", Allowed(HandleMissedCalls), api::calls::mark_missed_done);
    r.add(get(), "/api/v1/calls/live", Allowed(ViewCalls), api::calls::live);
    // Call recording (issue 16): the player's file, its download, the call-card button
    // and the settings
    r.add(get(), "/calls/{id}/recording", Allowed(ListenRecordings), pages::recordings::play);
    r.add(get(), "/calls/{id}/recording/download", Allowed(ListenRecordings), pages::recordings::download);
    r.add(post(), "/calls/record", Allowed(ListenRecordings), pages::recordings::record);
    r.add(get(), "/telephony/recording", Allowed(ManageTelephony), pages::recordings::settings);
    r.add(post(), "/telephony/recording", Allowed(ManageTelephony), pages::recordings::save);
    r.add(post(), "/telephony/recording/announcement", Allowed(ManageTelephony), pages::recordings::upload);
    // SIP trunks, call rules, outbound policy; click-to-call (issue 6, trunk side)
    r.add(post(), "/telephony/trunks", Allowed(ManageTelephony), pages::telephony::save_trunk);
    r.add(post(), "/telephony/trunks/{id}/delete", Allowed(ManageTelephony), pages::telephony::delete_trunk);
    r.add(post(), "/telephony/rules", Allowed(ManageTelephony), pages::telephony::save_rules);
    r.add(post(), "/telephony/extensions/{number}/outbound", Allowed(ManageTelephony), pages::telephony::save_outbound);
    r.add(post(), "/calls/dial", Allowed(PlaceCalls), pages::telephony::dial);
    // The browser softphone's SIP over WebSocket (issue 16): the session signs it in.
    r.add(get(), "/sip/ws", Allowed(PlaceCalls), sipws::connect);
    r.add(get(), "/api/v1/telephony/trunks", Allowed(ManageTelephony), api::telephony::list_trunks);
    r.add(Method::PUT, "/api/v1/telephony/trunks", Allowed(ManageTelephony), api::telephony::save_trunk);
    r.add(Method::DELETE, "/api/v1/telephony/trunks/{id}", Allowed(ManageTelephony), api::telephony::delete_trunk);
    r.add(get(), "/api/v1/telephony/rules", Allowed(ManageTelephony), api::telephony::get_rules);
    r.add(Method::PUT, "/api/v1/telephony/rules", Allowed(ManageTelephony), api::telephony::save_rules);
    r.add(Method::PUT, "/api/v1/telephony/extensions/{number}/outbound", Allowed(ManageTelephony), api::telephony::set_outbound);
    r.add(Method::PUT, "/api/v1/telephony/extensions/{number}/digest", Allowed(ManageTelephony), api::telephony::set_digest);
    r.add(post(), "/telephony/extensions/{number}/digest", Allowed(ManageTelephony), pages::telephony::save_digest);
    // An extension's branch (issue 19): a call to it with no other branch is that branch's.
    r.add(Method::PUT, "/api/v1/telephony/extensions/{number}/branch", Allowed(ManageTelephony), api::telephony::set_branch);
    r.add(post(), "/telephony/extensions/{number}/branch", Allowed(ManageTelephony), pages::telephony::save_branch);
    // Desk-phone provisioning (issue 15): the admin's list; the phones' own fetches
    // (no session: trusted LAN ranges and the phone's credentials, checked in the domain)
    r.add(get(), "/telephony/phones", Allowed(ManageTelephony), pages::provisioning::show);
    r.add(post(), "/telephony/phones", Allowed(ManageTelephony), pages::provisioning::add);
    r.add(post(), "/telephony/phones/{mac}/delete", Allowed(ManageTelephony), pages::provisioning::remove);
    r.add(get(), "/provision/{file}", Public, pages::provisioning::fetch);
    r.add(post(), "/api/v1/calls/dial", Allowed(PlaceCalls), api::telephony::dial);
    // After every fixed /api/v1/calls/… path: actix takes the first pattern that matches
    // and answers 405 when its method does not.
    // Call lists (issue 18): the wrap-up of a call, before /api/v1/calls/{call_id}.
    r.add(post(), "/api/v1/calls/wrap-up", Allowed(WrapUpCalls), api::call_lists::wrap_up);
    r.add(get(), "/api/v1/calls/{call_id}", Allowed(ViewCalls), api::calls::get);
    r.add(get(), "/api/v1/notifications/outbox", Allowed(ManageNotifications), api::notifications::outbox);
    r.add(get(), "/api/v1/notifications/outbox/{id}", Allowed(ManageNotifications), api::notifications::message);
    r.add(post(), "/api/v1/notifications/outbox/{id}/retry", Allowed(ManageNotifications), api::notifications::retry);
    r.add(get(), "/api/v1/notifications/settings", Allowed(ManageNotifications), api::notifications::settings);
    // Conversations (issue 17)
    r.add(get(), "/api/v1/conversations", Allowed(ViewConversations), api::conversations::list);
    r.add(get(), "/api/v1/conversations/unread", Allowed(ViewConversations), api::conversations::unread);
    r.add(get(), "/api/v1/conversations/{id}", Allowed(ViewConversations), api::conversations::get);
    r.add(get(), "/api/v1/conversations/{id}/messages", Allowed(ViewConversations), api::conversations::messages);
    r.add(post(), "/api/v1/conversations/{id}/messages", Allowed(ReplyConversations), api::conversations::reply);
    r.add(post(), "/api/v1/conversations/{id}/assign", Allowed(ReplyConversations), api::conversations::assign);
    r.add(post(), "/api/v1/conversations/{id}/close", Allowed(ReplyConversations), api::conversations::close);
    r.add(get(), "/api/v1/quick-replies", Allowed(ViewConversations), api::conversations::quick_replies);
    r.add(post(), "/api/v1/quick-replies", Allowed(ManageInbox), api::conversations::save_quick_reply);
    r.add(Method::DELETE, "/api/v1/quick-replies/{id}", Allowed(ManageInbox), api::conversations::delete_quick_reply);

    // Conversations (issue 17): the PDF export
    r.add(get(), "/inbox/{id}/export.pdf", Allowed(ExportConversations), pages::conversation_export::export_pdf);
    // The web chat widget: anonymous visitors (off by default; checks in pages::widget)
    r.add(get(), "/widget/widget.js", Public, pages::widget::script);
    r.add(get(), "/widget/frame", Public, pages::widget::frame);
    r.add(get(), "/widget/messages", Public, pages::widget::messages);
    r.add(post(), "/widget/messages", Public, pages::widget::post_message);
    r.add(get(), "/settings/widget", Allowed(ManageInbox), pages::widget::settings);
    r.add(post(), "/settings/widget", Allowed(ManageInbox), pages::widget::save_settings);
    // Outbound (issue 18): customer imports, the archive
    r.add(get(), "/imports", Allowed(ImportCustomers), pages::imports::list);
    r.add(post(), "/imports", Allowed(ImportCustomers), pages::imports::upload);
    r.add(get(), "/imports/{id}", Allowed(ImportCustomers), pages::imports::show);
    r.add(post(), "/imports/{id}/mapping", Allowed(ImportCustomers), pages::imports::save_mapping);
    r.add(post(), "/imports/{id}/run", Allowed(ImportCustomers), pages::imports::run);
    r.add(post(), "/imports/{id}/cancel", Allowed(ImportCustomers), pages::imports::cancel);
    r.add(post(), "/imports/{id}/undo", Allowed(ImportCustomers), pages::imports::undo);
    r.add(post(), "/api/v1/imports/customers", Allowed(ImportCustomers), api::imports::import_customers);
    r.add(get(), "/api/v1/imports", Allowed(ImportCustomers), api::imports::list);
    r.add(get(), "/api/v1/imports/{id}", Allowed(ImportCustomers), api::imports::get);
    r.add(post(), "/api/v1/imports/{id}/undo", Allowed(ImportCustomers), api::imports::undo);
    r.add(post(), "/customers/{id}/archive", Allowed(ArchiveCustomers), pages::customers::archive);
    r.add(post(), "/customers/{id}/restore", Allowed(ArchiveCustomers), pages::customers::restore);
    r.add(post(), "/api/v1/customers/{id}/archive", Allowed(ArchiveCustomers), api::core::archive_customer);
    r.add(post(), "/api/v1/customers/{id}/restore", Allowed(ArchiveCustomers), api::core::restore_customer);
    r.add(get(), "/segments", Allowed(ViewCustomers), pages::segments::list);
    r.add(post(), "/segments", Allowed(EditCustomers), pages::segments::create);
    r.add(get(), "/segments/{id}", Allowed(ViewCustomers), pages::segments::show);
    r.add(post(), "/segments/{id}", Allowed(EditCustomers), pages::segments::update);
    r.add(post(), "/segments/{id}/delete", Allowed(EditCustomers), pages::segments::delete);
    r.add(get(), "/api/v1/segments", Allowed(ViewCustomers), api::segments::list);
    r.add(post(), "/api/v1/segments", Allowed(EditCustomers), api::segments::create);
    // Before /api/v1/segments/{id}: actix takes the first pattern that matches.
    r.add(get(), "/api/v1/segments/count", Allowed(ViewCustomers), api::segments::count);
    r.add(get(), "/api/v1/segments/{id}", Allowed(ViewCustomers), api::segments::get);
    r.add(Method::PUT, "/api/v1/segments/{id}", Allowed(EditCustomers), api::segments::update);
    r.add(Method::DELETE, "/api/v1/segments/{id}", Allowed(EditCustomers), api::segments::delete);
    r.add(get(), "/api/v1/segments/{id}/customers", Allowed(ViewCustomers), api::segments::customers);
    // Call lists, the operator's queue, outcomes, wrap-ups and daily progress (issue 18)
    r.add(get(), "/call-lists", Allowed(WorkCallLists), pages::call_lists::list);
    r.add(post(), "/call-lists", Allowed(ManageCallLists), pages::call_lists::create);
    r.add(get(), "/call-lists/{id}", Allowed(WorkCallLists), pages::call_lists::show);
    r.add(post(), "/call-lists/{id}", Allowed(ManageCallLists), pages::call_lists::update);
    r.add(get(), "/queue", Allowed(WorkCallLists), pages::call_lists::queue);
    r.add(post(), "/queue/next", Allowed(WorkCallLists), pages::call_lists::next);
    r.add(post(), "/queue/items/{item}/dial", Allowed(WorkCallLists), pages::call_lists::dial);
    r.add(post(), "/queue/items/{item}/outcome", Allowed(WorkCallLists), pages::call_lists::outcome);
    r.add(post(), "/queue/items/{item}/release", Allowed(WorkCallLists), pages::call_lists::release);
    r.add(get(), "/call-outcomes", Allowed(ManageCallLists), pages::call_lists::outcomes);
    r.add(post(), "/call-outcomes", Allowed(ManageCallLists), pages::call_lists::save_outcome);
    r.add(post(), "/calls/wrap-up", Allowed(WrapUpCalls), pages::call_lists::wrap_up);
    r.add(get(), "/progress", Allowed(ViewTeamProgress), pages::call_lists::progress);
    r.add(post(), "/progress/targets", Allowed(ManageCallLists), pages::call_lists::save_targets);
    r.add(get(), "/api/v1/call-lists", Allowed(WorkCallLists), api::call_lists::list);
    r.add(post(), "/api/v1/call-lists", Allowed(ManageCallLists), api::call_lists::create);
    r.add(get(), "/api/v1/call-lists/{id}", Allowed(WorkCallLists), api::call_lists::get);
    r.add(Method::PUT, "/api/v1/call-lists/{id}", Allowed(ManageCallLists), api::call_lists::update);
    r.add(get(), "/api/v1/call-lists/{id}/items", Allowed(WorkCallLists), api::call_lists::items);
    r.add(post(), "/api/v1/call-lists/{id}/items/{item}/take", Allowed(WorkCallLists), api::call_lists::take);
    r.add(post(), "/api/v1/call-lists/{id}/items/{item}/release", Allowed(WorkCallLists), api::call_lists::release);
    r.add(post(), "/api/v1/call-lists/{id}/items/{item}/dial", Allowed(WorkCallLists), api::call_lists::dial);
    r.add(post(), "/api/v1/call-lists/{id}/items/{item}/outcome", Allowed(WorkCallLists), api::call_lists::outcome);
    r.add(post(), "/api/v1/queue/next", Allowed(WorkCallLists), api::call_lists::next);
    r.add(get(), "/api/v1/call-outcomes", Allowed(WrapUpCalls), api::call_lists::outcomes);
    r.add(Method::PUT, "/api/v1/call-outcomes", Allowed(ManageCallLists), api::call_lists::save_outcome);
    r.add(get(), "/api/v1/progress", Allowed(WorkCallLists), api::call_lists::progress);
    r.add(Method::PUT, "/api/v1/progress/targets", Allowed(ManageCallLists), api::call_lists::set_targets);

    // Promotions, broadcasts, SMS, archived orders (issue 18, part three)
    r.add(get(), "/promotions", Allowed(ApplyPromotions), pages::promos::list);
    r.add(post(), "/promotions", Allowed(ManagePromotions), pages::promos::create);
    r.add(get(), "/promotions/{id}", Allowed(ApplyPromotions), pages::promos::show);
    r.add(post(), "/promotions/{id}", Allowed(ManagePromotions), pages::promos::update);
    r.add(post(), "/orders/{id}/promotion", Allowed(ApplyPromotions), pages::promos::apply);
    r.add(post(), "/orders/{id}/promotion/remove", Allowed(ApplyPromotions), pages::promos::remove);
    r.add(get(), "/broadcasts", Allowed(SendBroadcasts), pages::promos::broadcasts);
    r.add(post(), "/broadcasts", Allowed(SendBroadcasts), pages::promos::send_broadcast);
    r.add(get(), "/broadcasts/{id}", Allowed(SendBroadcasts), pages::promos::broadcast);
    r.add(get(), "/archive", Allowed(ArchiveOrders), pages::promos::archive);
    r.add(post(), "/archive/rule", Allowed(ArchiveOrders), pages::promos::archive_rule);
    r.add(post(), "/orders/{id}/archive", Allowed(ArchiveOrders), pages::promos::archive_order);
    r.add(post(), "/orders/{id}/restore", Allowed(ArchiveOrders), pages::promos::restore_order);
    r.add(post(), "/settings/notifications/sms", Allowed(ManageNotifications), pages::promos::save_sms);
    r.add(post(), "/settings/notifications/sms/test", Allowed(ManageNotifications), pages::promos::test_sms);
    r.add(get(), "/unsubscribe", Public, pages::promos::unsubscribe_form);
    r.add(post(), "/unsubscribe", Public, pages::promos::unsubscribe);
    r.add(post(), "/hooks/sms/{provider}/report", Public, api::promos::report);
    r.add(get(), "/hooks/sms/{provider}/report", Public, api::promos::report);
    r.add(post(), "/hooks/sms/{provider}/incoming", Public, api::promos::incoming);
    r.add(get(), "/api/v1/promotions", Allowed(ApplyPromotions), api::promos::list);
    r.add(post(), "/api/v1/promotions", Allowed(ManagePromotions), api::promos::create);
    r.add(get(), "/api/v1/promotions/{id}", Allowed(ApplyPromotions), api::promos::get);
    r.add(Method::PUT, "/api/v1/promotions/{id}", Allowed(ManagePromotions), api::promos::update);
    r.add(post(), "/api/v1/orders/{id}/promotion", Allowed(ApplyPromotions), api::promos::apply);
    r.add(Method::DELETE, "/api/v1/orders/{id}/promotion", Allowed(ApplyPromotions), api::promos::remove);
    r.add(get(), "/api/v1/broadcasts", Allowed(SendBroadcasts), api::promos::broadcasts);
    r.add(post(), "/api/v1/broadcasts", Allowed(SendBroadcasts), api::promos::send_broadcast);
    r.add(get(), "/api/v1/broadcasts/{id}", Allowed(SendBroadcasts), api::promos::broadcast);
    r.add(post(), "/api/v1/archive/orders", Allowed(ArchiveOrders), api::promos::archive_rule);
    r.add(post(), "/api/v1/orders/{id}/archive", Allowed(ArchiveOrders), api::promos::archive_order);
    r.add(post(), "/api/v1/orders/{id}/restore", Allowed(ArchiveOrders), api::promos::restore_order);
    r.add(get(), "/api/v1/notifications/sms", Allowed(ManageNotifications), api::promos::sms_settings);
    r.add(Method::PUT, "/api/v1/notifications/sms", Allowed(ManageNotifications), api::promos::save_sms);
    // Roles (issue 19): the owner's own roles from the permission catalogue
    r.add(get(), "/roles", Allowed(ManageUsers), pages::roles::list);
    r.add(post(), "/roles", Allowed(ManageUsers), pages::roles::create);
    r.add(get(), "/roles/{id}", Allowed(ManageUsers), pages::roles::edit_form);
    r.add(post(), "/roles/{id}", Allowed(ManageUsers), pages::roles::update);
    r.add(get(), "/api/v1/roles", Allowed(ManageUsers), api::roles::list);
    r.add(post(), "/api/v1/roles", Allowed(ManageUsers), api::roles::create);
    r.add(Method::PUT, "/api/v1/roles/{id}", Allowed(ManageUsers), api::roles::update);
}

/// Collects the specs without registering anything.
#[derive(Default)]
pub struct SpecCollector(pub Vec<RouteSpec>);

impl Registrar for SpecCollector {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, access: Access, _h: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.0.push(RouteSpec {
            method,
            path,
            access,
        });
    }
}

pub fn specs() -> Vec<RouteSpec> {
    let mut c = SpecCollector::default();
    define(&mut c);
    c.0
}

/// Lookup by (method, matched pattern).
pub struct RouteTable(HashMap<&'static str, Vec<(Method, Access)>>);

impl RouteTable {
    pub fn build() -> RouteTable {
        let mut t: HashMap<&'static str, Vec<(Method, Access)>> = HashMap::new();
        for s in specs() {
            t.entry(s.path).or_default().push((s.method, s.access));
        }
        RouteTable(t)
    }

    pub fn lookup(&self, method: &Method, pattern: &str) -> Option<Access> {
        // HEAD is served by GET handlers.
        let m = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .get(pattern)?
            .iter()
            .find(|(mm, _)| mm == m)
            .map(|(_, a)| *a)
    }
}

/// Registers handlers with actix, one resource per path.
#[derive(Default)]
pub struct ActixRegistrar {
    resources: Vec<(&'static str, Option<actix_web::Resource>)>,
}

impl ActixRegistrar {
    pub fn finish(self, cfg: &mut web::ServiceConfig) {
        for (_, r) in self.resources {
            if let Some(r) = r {
                cfg.service(r);
            }
        }
    }
}

impl Registrar for ActixRegistrar {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, _a: Access, h: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let idx = match self.resources.iter().position(|(p, _)| *p == path) {
            Some(i) => i,
            None => {
                self.resources.push((path, Some(web::resource(path))));
                self.resources.len() - 1
            }
        };
        let res = self.resources[idx].1.take().expect("resource present");
        self.resources[idx].1 = Some(res.route(web::method(method).to(h)));
    }
}
