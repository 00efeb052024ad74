//! The page shell: header with navigation for the user's role, language switch, theme
//! toggle and connection indicator.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::auth::{Ui, CSRF_FIELD};
use super::WebState;
use crate::domain::Action;
use crate::i18n::Tr;
use crate::model::Language;

/// The daily work: always in the header row, shown to roles that may do the action.
/// The conversations inbox belongs here after "Calls"; its unread count is a
/// `span.nav-badge` inside the link (styled in app.css). The row has room for it in
/// Russian at 1366 px (tests/it/desk_browser.rs measures the header).
const NAV: &[(&str, &str, Action)] = &[
    ("/", "nav.dashboard", Action::ViewDashboard),
    ("/orders", "nav.orders", Action::ViewOrders),
    ("/customers", "nav.customers", Action::ViewCustomers),
    ("/inbox", "nav.inbox", Action::ViewConversations),
    ("/calls", "calls.nav", Action::ViewCalls),
];

/// Pages looked at now and then, under one "More" menu.
const MORE_NAV: &[(&str, &str, Action)] = &[
    ("/workload", "nav.workload", Action::ViewReports),
    ("/map", "branches.map_nav", Action::ViewOrders),
    ("/queue", "call_lists.queue", Action::WorkCallLists),
    ("/call-lists", "call_lists.title", Action::WorkCallLists),
    ("/progress", "progress.title", Action::ViewTeamProgress),
    ("/promotions", "promos.nav", Action::ApplyPromotions),
    (
        "/broadcasts",
        "promos.broadcast.nav",
        Action::SendBroadcasts,
    ),
    ("/archive", "promos.archive.nav", Action::ArchiveOrders),
];

/// Administration, grouped under one "Settings" menu so the header stays one row.
const SETTINGS_NAV: &[(&str, &str, Action)] = &[
    ("/settings", "desk.shop_settings", Action::ManageSettings),
    ("/users", "nav.users", Action::ManageUsers),
    ("/telephony", "nav.telephony", Action::ManageTelephony),
    (
        "/call-outcomes",
        "call_lists.outcomes",
        Action::ManageCallLists,
    ),
    (
        "/inbox/settings",
        "inbox.settings.title",
        Action::ManageInbox,
    ),
    (
        "/settings/widget",
        "widget.settings.title",
        Action::ManageInbox,
    ),
    (
        "/settings/notifications",
        "notify.nav",
        Action::ManageNotifications,
    ),
    ("/backups", "backups.nav", Action::ManageBackups),
    ("/audit/logins", "nav.login_audit", Action::ViewLoginAudit),
    ("/audit/activity", "nav.activity", Action::ViewActivityLog),
];

/// The signed-in user's own pages, under their name.
const USER_NAV: &[(&str, &str, Action)] = &[
    ("/profile", "desk.profile", Action::ManageOwnAccount),
    (
        "/profile/telegram",
        "notify.profile.nav",
        Action::ManageOwnAccount,
    ),
];

fn head(state: Option<&WebState>, title: &str) -> Markup {
    let url = |p: &str| match state {
        Some(s) => s.assets.url(p),
        None => super::assets::global().url(p),
    };
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        title { (title) " · CRM" }
        link rel="icon" href=(url("icons/favicon.svg")) type="image/svg+xml";
        link rel="stylesheet" href=(url("css/app.css"));
        link rel="stylesheet" href=(url("css/calls.css"));
        link rel="stylesheet" href=(url("css/inbox.css"));
        // Loaded first and blocking: applies the saved theme before the page paints.
        script src=(url("js/theme.js")) {}
        script src=(url("js/app.js")) defer {}
        script src=(url("js/live.js")) defer {}
        script src=(url("js/calls.js")) defer {}
        script src=(url("js/dial.js")) defer {}
        script src=(url("js/inbox.js")) defer {}
        script src=(url("js/desk.js")) defer {}
        script src=(url("js/queue.js")) defer {}
    }
}

/// The softphone's scripts (JsSIP, 55 KB gzipped, and its panel), only for a user with
/// an extension linked: nobody else downloads them.
fn softphone_scripts(ui: &Ui) -> Markup {
    let on = ui.actor.as_ref().is_some_and(|a| {
        a.can(Action::PlaceCalls) && ui.state.ctx.telephony.softphone_of(a.user_id).is_some()
    });
    html! {
        @if on {
            script src=(ui.state.assets.url("vendor/jssip/jssip.min.js")) defer {}
            script src=(ui.state.assets.url("js/softphone.js")) defer {}
        }
    }
}

/// A hidden CSRF field for a form.
pub fn csrf_field(ui: &Ui) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ui.csrf); }
}

pub fn language_switch(ui: &Ui) -> Markup {
    html! {
        form.lang-switch method="post" action="/lang" {
            (csrf_field(ui))
            input type="hidden" name="back" value=(ui.path);
            label.visually-hidden for="lang-select" { (ui.t("shell.language")) }
            select #lang-select name="lang" data-autosubmit {
                @for l in Language::ALL {
                    option value=(l.code()) selected[l == ui.tr.lang] { (l.native_name()) }
                }
            }
            noscript { button type="submit" { "OK" } }
        }
    }
}

/// A full page for a signed-in user.
pub fn page(ui: &Ui, title: &str, content: Markup) -> Markup {
    let state = Some(&**ui.state);
    html! {
        (DOCTYPE)
        html lang=(ui.tr.lang.code()) {
            head { (head(state, title)) (softphone_scripts(ui)) }
            body data-csrf=(ui.csrf) data-live-seq=(ui.state.hub.seq()) {
                header.topbar {
                    a.brand href="/" { "CRM" }
                    button.nav-toggle type="button" aria-controls="main-nav" aria-expanded="false" { "☰" }
                    nav #main-nav {
                        @if let Some(actor) = &ui.actor {
                            @for (href, key, action) in NAV {
                                @if actor.can(*action) {
                                    a href=(href) aria-current=[(is_current(&ui.path, href)).then_some("page")] {
                                        (ui.tr.t(key))
                                        // The unread count, kept by inbox.js from the live events.
                                        @if *href == "/inbox" { " " span #inbox-badge.badge.nav-badge hidden {} }
                                    }
                                }
                            }
                            (nav_menu(ui, actor, "more-menu", "desk.more_nav", MORE_NAV))
                            (nav_menu(ui, actor, "settings-menu", "nav.settings", SETTINGS_NAV))
                        }
                    }
                    @if ui.actor.as_ref().is_some_and(|a| a.can(Action::ViewOrders)) {
                        (search_box(ui))
                    }
                    div.topbar-right {
                        (super::pages::calls::header_status(ui))
                        (softphone_panel(ui))
                        span #conn-indicator.conn title=(ui.t("live.disconnected")) data-on=(ui.t("live.connected")) data-off=(ui.t("live.disconnected")) {}
                        span #presence-count.presence title=(ui.t("live.online")) {}
                        (language_switch(ui))
                        button #theme-toggle.icon-btn type="button" title=(ui.t("shell.theme")) { "◐" }
                        @if let Some(actor) = &ui.actor {
                            details.menu.menu-end #user-menu {
                                summary.user-link { (actor.display_name) }
                                div.menu-list {
                                    @for (href, key, action) in USER_NAV {
                                        @if actor.can(*action) { a href=(href) { (ui.tr.t(key)) } }
                                    }
                                    form method="post" action="/logout" {
                                        (csrf_field(ui))
                                        button.link type="submit" { (ui.t("shell.logout")) }
                                    }
                                }
                            }
                        }
                    }
                }
                main #content { (content) }
            }
        }
    }
}

/// A header menu of the items the actor may use; nothing when there are none.
fn nav_menu(
    ui: &Ui,
    actor: &crate::domain::Actor,
    id: &str,
    label: &'static str,
    items: &[(&str, &str, Action)],
) -> Markup {
    let mine: Vec<_> = items.iter().filter(|(_, _, a)| actor.can(*a)).collect();
    let here = mine.iter().any(|(h, _, _)| is_current(&ui.path, h));
    html! {
        @if !mine.is_empty() {
            details.menu id=(id) {
                summary aria-current=[here.then_some("page")] { (ui.t(label)) }
                div.menu-list {
                    @for (href, key, _) in mine {
                        a href=(href) aria-current=[(ui.path == *href).then_some("page")] { (ui.tr.t(key)) }
                    }
                }
            }
        }
    }
}

/// The one search box: a plain GET form to `/search` that works without script;
/// `desk.js` shows results as you type (`/search/suggest`) and focuses it on `/` or
/// Ctrl+K.
fn search_box(ui: &Ui) -> Markup {
    html! {
        form.global-search #global-search-form method="get" action="/search" role="search" {
            label.visually-hidden for="global-search" { (ui.t("search.title")) }
            input #global-search name="q" type="search" autocomplete="off" maxlength="100"
                placeholder=(ui.t("desk.search_hint")) aria-controls="search-suggest" aria-expanded="false"
                data-suggest="/search/suggest";
            div #search-suggest.suggest role="listbox" hidden {}
        }
    }
}

fn is_current(path: &str, href: &str) -> bool {
    if href == "/" {
        path == "/"
    } else {
        path == href || path.starts_with(&format!("{href}/"))
    }
}

/// A page without navigation (sign-in, setup, errors).
pub fn bare(tr: Tr, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(tr.lang.code()) {
            head { (head(None, title)) }
            body.bare { (content) }
        }
    }
}

/// Same as [`bare`], with asset URLs and the language switch.
pub fn bare_ui(ui: &Ui, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(ui.tr.lang.code()) {
            head { (head(Some(&**ui.state), title)) }
            body.bare {
                div.bare-top { (language_switch(ui)) button #theme-toggle.icon-btn type="button" title=(ui.t("shell.theme")) { "◐" } }
                (content)
            }
        }
    }
}

/// Formats a Unix time for display (`dd.mm.yyyy HH:MM`, shop time).
pub fn datetime(clock: &crate::domain::clock::ShopClock, ts: i64) -> String {
    clock.format_datetime(ts)
}

pub fn flash(msg: Option<&str>, kind: &str) -> Markup {
    html! {
        @if let Some(m) = msg {
            div class=(format!("flash flash-{kind}")) role="status" { (m) }
        }
    }
}

pub fn raw(s: &str) -> PreEscaped<&str> {
    PreEscaped(s)
}

/// The softphone in the header (softphone.js brings it to life): its state, a dialer,
/// the call's buttons and a DTMF keypad. Nothing for a user without an extension.
fn softphone_panel(ui: &Ui) -> Markup {
    let Some(actor) = &ui.actor else {
        return html! {};
    };
    if !actor.can(Action::PlaceCalls) {
        return html! {};
    }
    let Some((ext, domain)) = ui.state.ctx.telephony.softphone_of(actor.user_id) else {
        return html! {};
    };
    html! {
        details.menu.menu-end #softphone data-ext=(ext) data-domain=(domain) data-ws="/sip/ws"
            data-t-offline=(ui.t("softphone.offline")) data-t-connecting=(ui.t("softphone.connecting"))
            data-t-ready=(ui.t("softphone.ready")) data-t-failed=(ui.t("softphone.failed"))
            data-t-incoming=(ui.t("softphone.incoming")) data-t-calling=(ui.t("softphone.calling"))
            data-t-in-call=(ui.t("softphone.in_call")) data-t-ended=(ui.t("softphone.ended"))
            data-t-mute=(ui.t("softphone.mute")) data-t-unmute=(ui.t("softphone.unmute"))
            data-t-hold=(ui.t("softphone.hold")) data-t-resume=(ui.t("softphone.resume"))
            data-t-no-mic=(ui.t("softphone.no_microphone")) data-t-answer=(ui.t("softphone.answer"))
            data-t-hangup=(ui.t("softphone.hangup")) {
            summary title=(ui.t("softphone.title")) {
                "☎ " span #sp-state.sp-state data-state="offline" { (ui.t("softphone.offline")) }
            }
            div.menu-list.sp-panel {
                form #sp-dial.sp-row {
                    label.visually-hidden for="sp-number" { (ui.t("softphone.number")) }
                    input #sp-number type="tel" autocomplete="off" placeholder=(ui.t("softphone.number"));
                    button #sp-call type="submit" { (ui.t("softphone.call")) }
                }
                p #sp-status.sp-status aria-live="polite" {}
                div.sp-row {
                    button #sp-answer type="button" hidden { (ui.t("softphone.answer")) }
                    button #sp-hangup type="button" hidden { (ui.t("softphone.hangup")) }
                    button #sp-mute type="button" hidden { (ui.t("softphone.mute")) }
                    button #sp-hold type="button" hidden { (ui.t("softphone.hold")) }
                }
                form #sp-transfer.sp-row hidden {
                    label.visually-hidden for="sp-transfer-to" { (ui.t("softphone.transfer_to")) }
                    input #sp-transfer-to type="tel" autocomplete="off" placeholder=(ui.t("softphone.transfer_to"));
                    button type="submit" { (ui.t("softphone.transfer")) }
                }
                div #sp-keypad.sp-keypad role="group" aria-label=(ui.t("softphone.keypad")) {
                    @for k in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"] {
                        button type="button" data-dtmf=(k) { (k) }
                    }
                }
                audio #sp-audio autoplay {}
            }
        }
    }
}
