//! Composition root: builds the shared context once from the config. `server` runs it;
//! the CLI uses the same pieces without serving.

use std::sync::Arc;

use crate::config::Config;
use crate::db::{Db, DbOptions};
use crate::domain::accounts::Accounts;
use crate::domain::calls::Calls;
use crate::domain::clock::Clock;
use crate::domain::conversations::Conversations;
use crate::domain::customers::Customers;
use crate::domain::notifications::Notifications;
use crate::domain::orders::Orders;
use crate::domain::telephony::Telephony;
use crate::domain::work::Store;
use crate::events::EventBus;
use crate::sip::CallEvent;

/// Everything a request handler, a job or a CLI command needs, built once.
#[derive(Clone)]
pub struct AppContext {
    pub config: Arc<Config>,
    pub db: Db,
    /// The database with the event bus: every change runs through it as one unit of work
    /// (`domain::work`).
    pub store: Store,
    pub accounts: Accounts,
    pub customers: Customers,
    /// Customer imports from CSV and Excel files (issue 18).
    pub imports: crate::domain::imports::Imports,
    /// Saved customer filters with live counts (issue 18).
    pub segments: crate::domain::segments::Segments,
    /// Call lists, the operator's queue, outcomes and daily progress (issue 18).
    pub call_lists: crate::domain::call_lists::CallLists,
    pub promotions: crate::domain::promotions::Promotions,
    pub broadcasts: crate::domain::broadcasts::Broadcasts,
    pub orders: Orders,
    /// Committed changes, for live screens.
    pub events: EventBus,
    /// Notification rules, settings and linking; the delivery worker runs in `server`.
    pub notifications: Notifications,
    /// The inbox: conversations with customers over Telegram and the web widget.
    pub conversations: Conversations,
    /// Extensions and ring groups (and the SIP server's in-memory directory).
    pub telephony: Telephony,
    /// Call events from the SIP proxy: ringing, answered, ended.
    pub call_events: tokio::sync::broadcast::Sender<CallEvent>,
    /// The call log, missed calls and who is on a call (fed from `call_events`).
    pub calls: Calls,
    /// The running SIP server (set by `server::start` when SIP is on).
    pub sip: Arc<std::sync::RwLock<Option<crate::sip::SipControl>>>,
    /// The shop clock (time zone setting): every "today", local hour and year.
    pub clock: Clock,
    /// Call recording: policies, the recordings made, retention (issue 16).
    pub recordings: crate::domain::recordings::Recordings,
    /// The off-box settings in force (the backups page changes them while the server
    /// runs) and the uploaders and replicator acting on them (issue 21).
    pub remote: Arc<crate::ops::remote::control::Control>,
}

impl AppContext {
    /// The running SIP server, if any.
    pub fn sip(&self) -> Option<crate::sip::SipControl> {
        self.sip.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl AppContext {
    /// Creates the data directory layout, opens (and migrates) the database.
    pub fn open(mut config: Config) -> anyhow::Result<AppContext> {
        // The off-box settings saved from the backups page stand in for crm.toml's.
        config.apply_remote_overlay()?;
        for dir in [
            config.data_dir.clone(),
            config.attachments_dir(),
            config.backups_dir(),
            config.tmp_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                anyhow::anyhow!("cannot create data directory {}: {e}", dir.display())
            })?;
        }
        let db = Db::open(
            &config.db_path(),
            &DbOptions {
                durability: config.durability,
                ..Default::default()
            },
        )?;
        let clock = Clock::new(db.read_blocking(crate::domain::shop::clock_of)?);
        let events = EventBus::default();
        let store = Store::with_clock(db.clone(), events.clone(), clock.clone());
        let accounts = Accounts::new(store.clone(), config.login.clone(), config.session.clone());
        let notifications = Notifications::new(store.clone(), clock.clone());
        notifications.set_order_lookup(Arc::new(crate::domain::orders::CoreOrderLookup {
            clock: clock.clone(),
        }));
        let telephony = Telephony::new(store.clone(), clock.clone());
        let conversations = Conversations::new(
            store.clone(),
            notifications.clone(),
            &config.attachments_dir(),
        );
        let recordings =
            crate::domain::recordings::Recordings::new(store.clone(), config.recordings_dir());
        let config = Arc::new(config);
        Ok(AppContext {
            conversations,
            remote: Arc::new(crate::ops::remote::control::Control::new(config.clone())),
            config,
            customers: Customers::new(store.clone()),
            imports: crate::domain::imports::Imports::new(store.clone()),
            segments: crate::domain::segments::Segments::new(store.clone()),
            call_lists: crate::domain::call_lists::CallLists::new(store.clone(), telephony.clone()),
            promotions: crate::domain::promotions::Promotions::new(store.clone()),
            broadcasts: crate::domain::broadcasts::Broadcasts::new(
                store.clone(),
                notifications.clone(),
            ),
            orders: Orders::new(store.clone()),
            calls: Calls::new(db.clone(), events.clone(), clock.clone()),
            db,
            store,
            accounts,
            events,
            notifications,
            telephony,
            call_events: tokio::sync::broadcast::channel(1024).0,
            sip: Arc::default(),
            recordings,
            clock,
        })
    }
}
