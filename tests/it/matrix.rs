//! The role-by-route permission matrix. Every route the server has must be listed here
//! exactly once with who may use it, so a new route without a rule fails this test; each
//! row is then checked over HTTP for an anonymous visitor and every role.

use crm::model::Role;
use reqwest::Method;

use crate::support::*;

#[derive(Clone, Copy, Debug)]
pub enum Who {
    Public,
    /// Any signed-in user.
    Staff,
    Only(&'static [Role]),
}

use Role::*;
use Who::*;

const ADMIN: Who = Only(&[Admin]);
const DESK: Who = Only(&[Admin, Operator]);

/// (method, route pattern, who may use it)
pub const FOUNDATION: &[(&str, &str, Who)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/metrics", Public),
    ("GET", "/assets/{hash}/{path:.*}", Public),
    ("GET", "/favicon.ico", Public),
    ("GET", "/tls/ca.crt", Public),
    ("GET", "/login", Public),
    ("POST", "/login", Public),
    ("POST", "/logout", Public),
    ("GET", "/setup", Public),
    ("POST", "/setup", Public),
    ("POST", "/lang", Public),
    ("GET", "/", Staff),
    ("GET", "/profile", Staff),
    ("POST", "/profile/password", Staff),
    ("POST", "/profile/email", Staff),
    ("POST", "/profile/tokens", Staff),
    ("POST", "/tokens/{id}/revoke", Staff),
    ("GET", "/ws", Staff),
    ("POST", "/notices", ADMIN),
    ("GET", "/users", ADMIN),
    ("GET", "/users/new", ADMIN),
    ("POST", "/users", ADMIN),
    ("GET", "/users/{id}", ADMIN),
    ("POST", "/users/{id}", ADMIN),
    ("POST", "/users/{id}/password", ADMIN),
    ("GET", "/audit/logins", ADMIN),
    ("GET", "/audit/activity", ADMIN),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/api/v1/me", Staff),
    ("GET", "/api/v1/users", ADMIN),
    ("POST", "/api/v1/users", ADMIN),
    ("GET", "/api/v1/users/{id}", ADMIN),
    ("PATCH", "/api/v1/users/{id}", ADMIN),
    ("GET", "/api/v1/tokens", Staff),
    ("DELETE", "/api/v1/tokens/{id}", Staff),
    ("GET", "/api/v1/login-audit", ADMIN),
    ("GET", "/api/v1/presence", Staff),
    ("POST", "/api/v1/notices", ADMIN),
];

/// The service-center core: masters see orders (their own, enforced per record) but
/// not customers; refunds, merges and reports are the admin's.
pub const CORE: &[(&str, &str, Who)] = &[
    ("GET", "/orders", Staff),
    ("GET", "/orders/export.csv", Staff),
    ("GET", "/orders/new", DESK),
    ("GET", "/orders/new/customer", DESK),
    ("POST", "/orders", DESK),
    ("GET", "/orders/{id}", Staff),
    ("POST", "/orders/{id}", Staff),
    ("POST", "/orders/{id}/status", Staff),
    ("POST", "/orders/{id}/assign", DESK),
    ("POST", "/orders/{id}/unlock", Staff),
    ("POST", "/orders/{id}/lines", Staff),
    ("POST", "/orders/{id}/lines/{line}/delete", Staff),
    ("POST", "/orders/{id}/payments", DESK),
    ("POST", "/orders/{id}/comments", Staff),
    ("POST", "/orders/{id}/photos", Staff),
    ("GET", "/orders/{id}/photos/{photo}", Staff),
    ("GET", "/orders/{id}/receipt", Staff),
    ("GET", "/orders/{id}/act", Staff),
    ("GET", "/orders/{id}/label", Staff),
    ("GET", "/my", Staff),
    ("GET", "/workload", ADMIN),
    ("GET", "/customers", DESK),
    ("GET", "/customers/export.csv", DESK),
    ("GET", "/customers/new", DESK),
    ("POST", "/customers", DESK),
    ("GET", "/customers/{id}", DESK),
    ("POST", "/customers/{id}", DESK),
    ("POST", "/customers/{id}/merge", ADMIN),
    ("GET", "/search", Staff),
    ("GET", "/search/suggest", Staff),
    ("GET", "/branches", ADMIN),
    ("POST", "/branches", ADMIN),
    ("POST", "/branches/{id}", ADMIN),
    ("GET", "/map", Staff),
    ("GET", "/settings", ADMIN),
    ("POST", "/settings/logo", ADMIN),
    ("POST", "/settings/logo/remove", ADMIN),
    ("GET", "/shop/logo", Staff),
    ("POST", "/settings/shop", ADMIN),
    ("POST", "/settings/workflow", ADMIN),
    ("GET", "/api/v1/settings/shop", ADMIN),
    ("PUT", "/api/v1/settings/shop", ADMIN),
    ("GET", "/api/v1/customers", DESK),
    ("POST", "/api/v1/customers", DESK),
    ("GET", "/api/v1/customers/lookup", DESK),
    ("GET", "/api/v1/customers/{id}", DESK),
    ("PUT", "/api/v1/customers/{id}", DESK),
    ("GET", "/api/v1/orders", Staff),
    ("POST", "/api/v1/orders", DESK),
    ("GET", "/api/v1/orders/{id}", Staff),
    ("PUT", "/api/v1/orders/{id}", Staff),
    ("POST", "/api/v1/orders/{id}/status", Staff),
    ("POST", "/api/v1/orders/{id}/assign", DESK),
    ("PUT", "/api/v1/orders/{id}/unlock", Staff),
    ("POST", "/api/v1/orders/{id}/lines", Staff),
    ("POST", "/api/v1/orders/{id}/payments", DESK),
    ("POST", "/api/v1/orders/{id}/comments", Staff),
    ("GET", "/api/v1/search", Staff),
    ("GET", "/api/v1/statuses", Staff),
    ("GET", "/api/v1/branches", Staff),
    ("POST", "/api/v1/branches", ADMIN),
    ("PUT", "/api/v1/branches/{id}", ADMIN),
];

/// Notifications (issue 7).
pub const NOTIFY: &[(&str, &str, Who)] = &[
    ("GET", "/settings/notifications", ADMIN),
    ("POST", "/settings/notifications/smtp", ADMIN),
    ("POST", "/settings/notifications/smtp/test", ADMIN),
    ("POST", "/settings/notifications/telegram", ADMIN),
    ("POST", "/settings/notifications/telegram/test", ADMIN),
    ("POST", "/settings/notifications/rules", ADMIN),
    (
        "GET",
        "/settings/notifications/templates/{event}/{lang}",
        ADMIN,
    ),
    (
        "POST",
        "/settings/notifications/templates/{event}/{lang}",
        ADMIN,
    ),
    ("POST", "/settings/notifications/outbox/{id}/retry", ADMIN),
    ("GET", "/profile/telegram", Staff),
    ("POST", "/profile/telegram/link", Staff),
    ("POST", "/profile/telegram/unlink", Staff),
];

/// Telephony administration (issue 5): the admin's.
pub const TELEPHONY: &[(&str, &str, Who)] = &[
    ("GET", "/telephony", ADMIN),
    ("POST", "/telephony/extensions", ADMIN),
    ("POST", "/telephony/extensions/{number}/secret", ADMIN),
    ("POST", "/telephony/extensions/{number}/delete", ADMIN),
    ("POST", "/telephony/groups", ADMIN),
    ("POST", "/telephony/groups/{number}/delete", ADMIN),
    ("POST", "/telephony/bans/{address}/release", ADMIN),
    ("GET", "/api/v1/telephony/extensions", ADMIN),
    ("POST", "/api/v1/telephony/extensions", ADMIN),
    ("DELETE", "/api/v1/telephony/extensions/{number}", ADMIN),
    ("GET", "/api/v1/telephony/groups", ADMIN),
    ("PUT", "/api/v1/telephony/groups", ADMIN),
    ("DELETE", "/api/v1/telephony/groups/{number}", ADMIN),
    ("GET", "/api/v1/telephony/registrations", ADMIN),
    ("GET", "/api/v1/telephony/bans", ADMIN),
    ("POST", "/api/v1/telephony/bans/{address}/release", ADMIN),
    ("GET", "/api/v1/notifications/outbox", ADMIN),
    ("GET", "/api/v1/notifications/outbox/{id}", ADMIN),
    ("POST", "/api/v1/notifications/outbox/{id}/retry", ADMIN),
    ("GET", "/api/v1/notifications/settings", ADMIN),
];

/// Calls (issue 6): the front desk's and the admin's; masters see only the screen-pop
/// of their own phone, never the call log.
pub const CALLS: &[(&str, &str, Who)] = &[
    ("GET", "/calls", DESK),
    ("GET", "/calls/export.csv", DESK),
    ("GET", "/calls/missed", DESK),
    ("POST", "/calls/missed/{id}/done", DESK),
    ("GET", "/api/v1/calls", DESK),
    ("GET", "/api/v1/calls/missed", DESK),
    ("POST", "/api/v1/calls/missed/{id}/done", DESK),
    ("GET", "/api/v1/calls/live", DESK),
    ("GET", "/api/v1/calls/{call_id}", DESK),
];

/// SIP trunks and call rules (admin); click-to-call for everyone who may place calls.
pub const TRUNK: &[(&str, &str, Who)] = &[
    ("POST", "/telephony/trunks", ADMIN),
    ("POST", "/telephony/trunks/{id}/delete", ADMIN),
    ("POST", "/telephony/rules", ADMIN),
    ("POST", "/telephony/extensions/{number}/outbound", ADMIN),
    ("POST", "/calls/dial", Staff),
    ("GET", "/api/v1/telephony/trunks", ADMIN),
    ("PUT", "/api/v1/telephony/trunks", ADMIN),
    ("DELETE", "/api/v1/telephony/trunks/{id}", ADMIN),
    ("GET", "/api/v1/telephony/rules", ADMIN),
    ("PUT", "/api/v1/telephony/rules", ADMIN),
    (
        "PUT",
        "/api/v1/telephony/extensions/{number}/outbound",
        ADMIN,
    ),
    ("PUT", "/api/v1/telephony/extensions/{number}/digest", ADMIN),
    ("POST", "/telephony/extensions/{number}/digest", ADMIN),
    ("GET", "/telephony/phones", ADMIN),
    ("POST", "/telephony/phones", ADMIN),
    ("POST", "/telephony/phones/{mac}/delete", ADMIN),
    ("GET", "/provision/{file}", Public),
    ("POST", "/api/v1/calls/dial", Staff),
    // The browser softphone's SIP over WebSocket (a plain GET gets 400: no `sip`
    // subprotocol; a user without an extension, 403 once it asks for one).
    ("GET", "/sip/ws", Staff),
];

/// Every area's rows.
/// Backups (ops).
pub const OPS: &[(&str, &str, Who)] = &[
    ("GET", "/backups", ADMIN),
    ("POST", "/backups", ADMIN),
    ("GET", "/backups/{name}/download", ADMIN),
];

/// The inbox (issue 17). Masters may open it; they see only their customers' threads,
/// and only when the admin allows it (decided in the domain).
const AGENTS: Who = Only(&[Admin, Operator, Master]);
pub const INBOX: &[(&str, &str, Who)] = &[
    ("GET", "/inbox", AGENTS),
    ("GET", "/inbox/settings", ADMIN),
    ("POST", "/inbox/settings", ADMIN),
    ("POST", "/inbox/quick-replies", ADMIN),
    ("POST", "/inbox/quick-replies/{id}/delete", ADMIN),
    ("GET", "/inbox/files/{message}", AGENTS),
    ("GET", "/inbox/{id}", AGENTS),
    ("POST", "/inbox/{id}/reply", AGENTS),
    ("POST", "/inbox/{id}/assign", AGENTS),
    ("POST", "/inbox/{id}/close", AGENTS),
    ("POST", "/inbox/{id}/reopen", AGENTS),
    ("POST", "/inbox/{id}/link", AGENTS),
    ("POST", "/inbox/{id}/typing", AGENTS),
    ("POST", "/inbox/{id}/delete", ADMIN),
    ("GET", "/inbox/{id}/quick-replies/{reply}", AGENTS),
    ("GET", "/procedures", AGENTS),
    ("POST", "/procedures", ADMIN),
    ("POST", "/procedures/{id}/delete", ADMIN),
    ("GET", "/api/v1/conversations", AGENTS),
    ("GET", "/api/v1/conversations/unread", AGENTS),
    ("GET", "/api/v1/conversations/{id}", AGENTS),
    ("GET", "/api/v1/conversations/{id}/messages", AGENTS),
    ("POST", "/api/v1/conversations/{id}/messages", AGENTS),
    ("POST", "/api/v1/conversations/{id}/assign", AGENTS),
    ("POST", "/api/v1/conversations/{id}/close", AGENTS),
    ("GET", "/api/v1/quick-replies", AGENTS),
    ("POST", "/api/v1/quick-replies", ADMIN),
    ("DELETE", "/api/v1/quick-replies/{id}", ADMIN),
];

/// Conversations (issue 17), the helper's part: the PDF export (admins and operators);
/// the web chat widget (public, off by default, checked in its handlers) and its
/// settings (admin).
pub const CHAT_EXTRAS: &[(&str, &str, Who)] = &[
    ("GET", "/inbox/{id}/export.pdf", DESK),
    ("GET", "/widget/widget.js", Public),
    ("GET", "/widget/frame", Public),
    ("GET", "/widget/messages", Public),
    ("POST", "/widget/messages", Public),
    ("GET", "/settings/widget", ADMIN),
    ("POST", "/settings/widget", ADMIN),
];

/// Outbound work (issue 18): imports are the admin's (they create and remove customers
/// in bulk); archiving a customer is the front desk's, like editing one.
pub const OUTBOUND: &[(&str, &str, Who)] = &[
    ("GET", "/imports", ADMIN),
    ("POST", "/imports", ADMIN),
    ("GET", "/imports/{id}", ADMIN),
    ("POST", "/imports/{id}/mapping", ADMIN),
    ("POST", "/imports/{id}/run", ADMIN),
    ("POST", "/imports/{id}/cancel", ADMIN),
    ("POST", "/imports/{id}/undo", ADMIN),
    ("POST", "/api/v1/imports/customers", ADMIN),
    ("GET", "/api/v1/imports", ADMIN),
    ("GET", "/api/v1/imports/{id}", ADMIN),
    ("POST", "/api/v1/imports/{id}/undo", ADMIN),
    ("POST", "/customers/{id}/archive", DESK),
    ("POST", "/customers/{id}/restore", DESK),
    ("POST", "/api/v1/customers/{id}/archive", DESK),
    ("POST", "/api/v1/customers/{id}/restore", DESK),
    ("GET", "/segments", DESK),
    ("POST", "/segments", DESK),
    ("GET", "/segments/{id}", DESK),
    ("POST", "/segments/{id}", DESK),
    ("POST", "/segments/{id}/delete", DESK),
    ("GET", "/api/v1/segments", DESK),
    ("POST", "/api/v1/segments", DESK),
    ("GET", "/api/v1/segments/count", DESK),
    ("GET", "/api/v1/segments/{id}", DESK),
    ("PUT", "/api/v1/segments/{id}", DESK),
    ("DELETE", "/api/v1/segments/{id}", DESK),
    ("GET", "/api/v1/segments/{id}/customers", DESK),
];

/// Call lists, the operator's queue, outcome codes, wrap-ups and daily progress (issue
/// 18): operators work lists; admins build them, set the outcome codes and targets and
/// see the team; anyone wraps up their own calls.
pub const CALL_LISTS: &[(&str, &str, Who)] = &[
    ("GET", "/call-lists", DESK),
    ("POST", "/call-lists", ADMIN),
    ("GET", "/call-lists/{id}", DESK),
    ("POST", "/call-lists/{id}", ADMIN),
    ("GET", "/queue", DESK),
    ("POST", "/queue/next", DESK),
    ("POST", "/queue/items/{item}/dial", DESK),
    ("POST", "/queue/items/{item}/outcome", DESK),
    ("POST", "/queue/items/{item}/release", DESK),
    ("GET", "/call-outcomes", ADMIN),
    ("POST", "/call-outcomes", ADMIN),
    ("POST", "/calls/wrap-up", Staff),
    ("GET", "/progress", ADMIN),
    ("POST", "/progress/targets", ADMIN),
    ("POST", "/api/v1/calls/wrap-up", Staff),
    ("GET", "/api/v1/call-lists", DESK),
    ("POST", "/api/v1/call-lists", ADMIN),
    ("GET", "/api/v1/call-lists/{id}", DESK),
    ("PUT", "/api/v1/call-lists/{id}", ADMIN),
    ("GET", "/api/v1/call-lists/{id}/items", DESK),
    ("POST", "/api/v1/call-lists/{id}/items/{item}/take", DESK),
    ("POST", "/api/v1/call-lists/{id}/items/{item}/release", DESK),
    ("POST", "/api/v1/call-lists/{id}/items/{item}/dial", DESK),
    ("POST", "/api/v1/call-lists/{id}/items/{item}/outcome", DESK),
    ("POST", "/api/v1/queue/next", DESK),
    ("GET", "/api/v1/call-outcomes", Staff),
    ("PUT", "/api/v1/call-outcomes", ADMIN),
    ("GET", "/api/v1/progress", DESK),
    ("PUT", "/api/v1/progress/targets", ADMIN),
];

/// Promotions, broadcasts, SMS and archived orders (issue 18, part three): the front desk
/// applies promotions; creating them, broadcasts and the archive are the admin's; the
/// SMS gateways and the e-mail unsubscribe link call in without a session.
pub const PROMOTIONS: &[(&str, &str, Who)] = &[
    ("GET", "/promotions", DESK),
    ("POST", "/promotions", ADMIN),
    ("GET", "/promotions/{id}", DESK),
    ("POST", "/promotions/{id}", ADMIN),
    ("POST", "/orders/{id}/promotion", DESK),
    ("POST", "/orders/{id}/promotion/remove", DESK),
    ("GET", "/broadcasts", ADMIN),
    ("POST", "/broadcasts", ADMIN),
    ("GET", "/broadcasts/{id}", ADMIN),
    ("GET", "/archive", ADMIN),
    ("POST", "/archive/rule", ADMIN),
    ("POST", "/orders/{id}/archive", ADMIN),
    ("POST", "/orders/{id}/restore", ADMIN),
    ("POST", "/settings/notifications/sms", ADMIN),
    ("POST", "/settings/notifications/sms/test", ADMIN),
    ("GET", "/unsubscribe", Public),
    ("POST", "/unsubscribe", Public),
    ("POST", "/hooks/sms/{provider}/report", Public),
    ("GET", "/hooks/sms/{provider}/report", Public),
    ("POST", "/hooks/sms/{provider}/incoming", Public),
    ("GET", "/api/v1/promotions", DESK),
    ("POST", "/api/v1/promotions", ADMIN),
    ("GET", "/api/v1/promotions/{id}", DESK),
    ("PUT", "/api/v1/promotions/{id}", ADMIN),
    ("POST", "/api/v1/orders/{id}/promotion", DESK),
    ("DELETE", "/api/v1/orders/{id}/promotion", DESK),
    ("GET", "/api/v1/broadcasts", ADMIN),
    ("POST", "/api/v1/broadcasts", ADMIN),
    ("GET", "/api/v1/broadcasts/{id}", ADMIN),
    ("POST", "/api/v1/archive/orders", ADMIN),
    ("POST", "/api/v1/orders/{id}/archive", ADMIN),
    ("POST", "/api/v1/orders/{id}/restore", ADMIN),
    ("GET", "/api/v1/notifications/sms", ADMIN),
    ("PUT", "/api/v1/notifications/sms", ADMIN),
];

/// Roles (issue 19): the owner's own roles, managed by whoever manages users.
pub const ROLES: &[(&str, &str, Who)] = &[
    ("GET", "/roles", ADMIN),
    ("POST", "/roles", ADMIN),
    ("GET", "/roles/{id}", ADMIN),
    ("POST", "/roles/{id}", ADMIN),
    ("GET", "/api/v1/roles", ADMIN),
    ("POST", "/api/v1/roles", ADMIN),
    ("PUT", "/api/v1/roles/{id}", ADMIN),
];

/// Call recording (issue 16): the player's file and download, the call-card button
/// (ListenRecordings: admin by default) and the settings (ManageTelephony).
pub const RECORDINGS: &[(&str, &str, Who)] = &[
    ("GET", "/calls/{id}/recording", ADMIN),
    ("GET", "/calls/{id}/recording/download", ADMIN),
    ("POST", "/calls/record", ADMIN),
    ("GET", "/telephony/recording", ADMIN),
    ("POST", "/telephony/recording", ADMIN),
    ("POST", "/telephony/recording/announcement", ADMIN),
];

/// Branch scope beyond orders (issue 19): customers shared or kept per branch, an
/// extension's branch.
pub const BRANCHES: &[(&str, &str, Who)] = &[
    ("POST", "/branches/customer-scope", ADMIN),
    ("PUT", "/api/v1/customer-scope", ADMIN),
    ("POST", "/telephony/extensions/{number}/branch", ADMIN),
    ("PUT", "/api/v1/telephony/extensions/{number}/branch", ADMIN),
];

/// Off-box copies (issue 21): the backups page's target and replication settings.
pub const REPLICA: &[(&str, &str, Who)] = &[
    ("POST", "/backups/remote/settings", ADMIN),
    ("POST", "/backups/remote/targets", ADMIN),
    ("POST", "/backups/remote/targets/{name}", ADMIN),
    ("POST", "/backups/remote/targets/{name}/delete", ADMIN),
    ("POST", "/backups/remote/targets/{name}/test", ADMIN),
];

fn all_rows() -> Vec<(&'static str, &'static str, Who)> {
    let areas: &[&[(&str, &str, Who)]] = &[
        FOUNDATION,
        CORE,
        NOTIFY,
        OPS,
        TELEPHONY,
        CALLS,
        TRUNK,
        INBOX,
        CHAT_EXTRAS,
        OUTBOUND,
        CALL_LISTS,
        PROMOTIONS,
        ROLES,
        RECORDINGS,
        BRANCHES,
        REPLICA,
    ];
    areas.iter().flat_map(|a| a.iter().copied()).collect()
}

/// A concrete URL for a pattern: ids that do not exist (so allowed requests change
/// nothing), and a real asset.
fn sample(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap() + i;
        let name = &rest[i + 1..end];
        out.push_str(match name {
            "hash" => "x",
            "path:.*" => "css/app.css",
            _ => "999999",
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn allowed(who: Who, role: Option<Role>) -> bool {
    match (who, role) {
        (Public, _) => true,
        (_, None) => false,
        (Staff, Some(_)) => true,
        (Only(roles), Some(r)) => roles.contains(&r),
    }
}

#[tokio::test]
async fn every_route_has_a_rule_and_the_rule_holds() {
    // 1. The table matches the server's routes exactly.
    let mut table: Vec<(String, String)> = all_rows()
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    table.sort();
    let before = table.len();
    table.dedup();
    assert_eq!(before, table.len(), "a route is listed twice");
    let mut routes: Vec<(String, String)> = crm::web::routes::specs()
        .into_iter()
        .map(|s| (s.method.to_string(), s.path.to_string()))
        .collect();
    routes.sort();
    let missing: Vec<_> = routes.iter().filter(|r| !table.contains(r)).collect();
    let stale: Vec<_> = table.iter().filter(|r| !routes.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "routes without a rule in tests/it/matrix.rs: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "rules for routes that do not exist: {stale:?}"
    );

    // 2. The rules hold over HTTP.
    let app = TestApp::spawn().await;
    app.add_user("oper", Operator, "oper-pass-1").await;
    app.add_user("usta", Master, "usta-pass-1").await;
    let mut failures = Vec::new();
    for role in [None, Some(Master), Some(Operator), Some(Admin)] {
        let (client, csrf) = match role {
            None => {
                let c = app.client();
                let page = c.get(app.url("/login")).send().await.unwrap();
                let pre = csrf_from_html(&page.text().await.unwrap()).unwrap();
                (c, pre)
            }
            Some(r) => {
                let (u, p) = match r {
                    Admin => ("admin", ADMIN_PASSWORD),
                    Operator => ("oper", "oper-pass-1"),
                    Master => ("usta", "usta-pass-1"),
                };
                let s = app.login(u, p).await;
                (s.client, s.csrf)
            }
        };
        let mut rows = all_rows();
        // Signing out last, so the session lives through the other rows.
        rows.sort_by_key(|(_, p, _)| *p == "/logout");
        for (method, pattern, who) in rows {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let url = app.url(&sample(pattern));
            let mut req = client.request(m.clone(), &url);
            if m != Method::GET {
                req = req.header("x-csrf-token", &csrf);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let to_login = status == 303
                && pattern != "/logout"
                && resp
                    .headers()
                    .get("location")
                    .is_some_and(|l| l.to_str().unwrap().starts_with("/login"));
            let denied = status == 401 || status == 403 || to_login;
            let ok = if allowed(who, role) {
                !denied
                    || (pattern == "/login" && status == 401)
                    // Not by role: by trusted network and the phone's own credentials.
                    || (pattern == "/provision/{file}" && (status == 401 || status == 403))
            } else if role.is_none() {
                status == 401 || to_login
            } else {
                status == 403
            };
            if !ok {
                failures.push(format!("{role:?} {method} {pattern} -> {status}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "permission matrix violations:\n{}",
        failures.join("\n")
    );
}

/// Whether a response means "not allowed" (as the role matrix reads it).
fn is_denied(status: u16, location: Option<&str>, pattern: &str) -> bool {
    let to_login =
        status == 303 && pattern != "/logout" && location.is_some_and(|l| l.starts_with("/login"));
    status == 401 || status == 403 || to_login
}

/// Custom roles (issue 19): a role made of a chosen set of permissions is enforced on
/// every route — allowed exactly where the route's permission is in the set, whatever
/// the role's base. Two roles: a cashier (a few chosen permissions, based on operator)
/// and one holding every other permission of the catalogue (based on master), so every
/// permission is checked both granted and withheld.
#[tokio::test]
async fn custom_roles_are_enforced_on_every_route() {
    use crm::domain::access::{Action, Permissions};
    use crm::web::routes::Access;

    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    let cashier: Permissions = [
        Action::ViewOrders,
        Action::TakePayments,
        Action::ViewCustomers,
        Action::ExportCustomers,
        Action::ViewCalls,
        Action::ViewReports,
    ]
    .into_iter()
    .collect();
    let alternate: Permissions = Action::ALL.iter().copied().step_by(2).collect();
    let shell = |p: Permissions| p.with(Action::ViewDashboard).with(Action::ManageOwnAccount);
    let mut failures = Vec::new();
    for (key, base, perms) in [
        ("cashier", "operator", cashier),
        ("alternate", "master", alternate),
    ] {
        let r = admin
            .send_json(
                Method::POST,
                "/api/v1/roles",
                &serde_json::json!({"key": key, "name": format!("Rol {key}"), "base": base,
                    "permissions": perms.to_keys()}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let role: serde_json::Value = r.json().await.unwrap();
        let granted = shell(perms);
        assert_eq!(role["permissions"], serde_json::json!(granted.to_keys()));
        let user = format!("u-{key}");
        let r = admin
            .send_json(
                Method::POST,
                "/api/v1/users",
                &serde_json::json!({"username": user, "display_name": key, "role": key,
                    "password": "custom-pass-1"}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let u: serde_json::Value = r.json().await.unwrap();
        assert_eq!(u["role"], key);
        assert_eq!(u["base_role"], base);
        let s = app.login(&user, "custom-pass-1").await;
        let me: serde_json::Value = s.get("/api/v1/me").await.json().await.unwrap();
        assert_eq!(me["permissions"], serde_json::json!(granted.to_keys()));
        let mut specs = crm::web::routes::specs();
        specs.sort_by_key(|r| r.path == "/logout");
        for spec in specs {
            let Access::Allowed(action) = spec.access else {
                continue;
            };
            let m = Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
            let mut req = s.client.request(m.clone(), app.url(&sample(spec.path)));
            if m != Method::GET {
                req = req.header("x-csrf-token", &s.csrf);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let loc = resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string());
            let denied = is_denied(status, loc.as_deref(), spec.path);
            if granted.has(action) == denied {
                failures.push(format!(
                    "{key}: {} {} ({}) -> {status}",
                    spec.method,
                    spec.path,
                    action.key()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "custom role violations:\n{}",
        failures.join("\n")
    );
}
