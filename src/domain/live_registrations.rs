//! Tells open admin screens that the SIP registrations changed. Wraps the binding store
//! the SIP engine writes through (every new, refreshed, removed and swept binding passes
//! it) and publishes one `sip.registrations` event per burst of changes, so a flood of
//! REGISTERs costs the hub a few events per second, not one per packet. The list screens
//! show comes from the engine's memory, which has changed by the time the store is told,
//! so the event never runs ahead of what a refresh shows (the database copy follows in
//! the background and only matters after a restart).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::events::{Audience, Event, EventBus};
use crate::sip::{BindingStore, StoredBinding};

/// The event's type; pages mark the registrations region with this topic.
pub const EVENT: &str = "sip.registrations";
/// At most this many events per second.
const MIN_GAP: Duration = Duration::from_millis(250);
/// Extensions named in one event; more changed ones are summed up by `more`.
const MAX_NAMED: usize = 100;

pub struct LiveRegistrations {
    inner: Arc<dyn BindingStore>,
    changed: mpsc::Sender<String>,
}

impl LiveRegistrations {
    /// Starts the publishing task (needs a Tokio runtime); it ends when the store is
    /// dropped with the SIP server.
    pub fn start(inner: Arc<dyn BindingStore>, events: EventBus) -> Arc<LiveRegistrations> {
        let (changed, mut rx) = mpsc::channel::<String>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut names = BTreeSet::from([first]);
                while let Ok(n) = rx.try_recv() {
                    names.insert(n);
                }
                let more = names.len().saturating_sub(MAX_NAMED);
                let extensions: Vec<String> = names.into_iter().take(MAX_NAMED).collect();
                events.publish(Event::new(
                    EVENT,
                    serde_json::json!({ "extensions": extensions, "more": more }),
                    Audience::Admins,
                ));
                tokio::time::sleep(MIN_GAP).await;
            }
        });
        Arc::new(LiveRegistrations { inner, changed })
    }

    fn note(&self, extension: &str) {
        // Full queue: an event is due anyway and will refresh the list; the name is only
        // a hint.
        let _ = self.changed.try_send(extension.to_string());
    }
}

impl BindingStore for LiveRegistrations {
    fn upsert(&self, b: &StoredBinding) {
        self.inner.upsert(b);
        self.note(&b.extension);
    }

    fn remove(&self, extension: &str, contact: &str) {
        self.inner.remove(extension, contact);
        self.note(extension);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;
    impl BindingStore for Nowhere {
        fn upsert(&self, _: &StoredBinding) {}
        fn remove(&self, _: &str, _: &str) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_changes_is_one_event_naming_each_extension_once() {
        let bus = EventBus::default();
        let mut rx = bus.subscribe();
        let live = LiveRegistrations::start(Arc::new(Nowhere), bus.clone());
        live.remove("101", "sip:101@10.0.0.1");
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event")
            .unwrap();
        assert_eq!(first.kind, EVENT);
        assert_eq!(first.data["extensions"], serde_json::json!(["101"]));
        assert!(matches!(first.audience, Audience::Admins));
        // Changes made while the publisher waits out its gap pile up: six changes of two
        // extensions arrive as fewer events (normally one), each extension named.
        for _ in 0..3 {
            live.remove("102", "sip:102@10.0.0.2");
            live.remove("103", "sip:103@10.0.0.3");
        }
        let mut seen = BTreeSet::new();
        let mut events = 0;
        while seen.len() < 2 {
            let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("events for 102 and 103")
                .unwrap();
            events += 1;
            for x in e.data["extensions"].as_array().unwrap() {
                seen.insert(x.as_str().unwrap().to_string());
            }
        }
        assert_eq!(seen, BTreeSet::from(["102".into(), "103".into()]));
        assert!(events < 6, "coalesced: {events} events for 6 changes");
    }
}
