//! Prometheus counters for /metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::db::Db;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram>,
    pool_connections: Gauge,
    pool_idle: Gauge,
    db_transactions: Gauge,
    db_writes: Gauge,
    db: Db,
    /// Off-box targets (issue 21): read from the replication status at each scrape.
    remote_lag: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    remote_last_ok: Family<TargetLabel, Gauge>,
    remote_pending: Family<TargetLabel, Gauge>,
    config: Option<crate::config::Config>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

impl Metrics {
    /// With the config: the remote targets' gauges too.
    pub fn with_config(db: Db, config: &crate::config::Config) -> Metrics {
        let mut m = Metrics::new(db);
        m.registry.register(
            "replication_lag_seconds",
            "age of the oldest copy a target has not received yet",
            m.remote_lag.clone(),
        );
        m.registry.register(
            "replication_last_upload_timestamp_seconds",
            "when a target last took an upload (Unix seconds)",
            m.remote_last_ok.clone(),
        );
        m.registry.register(
            "replication_pending_objects",
            "copies queued for a target",
            m.remote_pending.clone(),
        );
        m.config = Some(config.clone());
        m
    }

    pub fn new(db: Db) -> Metrics {
        let mut registry = Registry::with_prefix("crm");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        let pool_connections = Gauge::default();
        let pool_idle = Gauge::default();
        let db_transactions = Gauge::default();
        let db_writes = Gauge::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "db_read_pool_connections",
            "open read connections",
            pool_connections.clone(),
        );
        registry.register(
            "db_read_pool_idle",
            "idle read connections",
            pool_idle.clone(),
        );
        registry.register(
            "db_write_transactions",
            "write transactions committed (group commits)",
            db_transactions.clone(),
        );
        registry.register("db_writes", "writes acknowledged", db_writes.clone());
        Metrics {
            registry,
            requests,
            latency,
            pool_connections,
            pool_idle,
            db_transactions,
            db_writes,
            db,
            remote_lag: Family::default(),
            remote_last_ok: Family::default(),
            remote_pending: Family::default(),
            config: None,
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    pub fn render(&self) -> String {
        let (conns, idle) = self.db.pool_state();
        self.pool_connections.set(conns as i64);
        self.pool_idle.set(idle as i64);
        let ws = self.db.write_stats();
        self.db_transactions.set(ws.transactions as i64);
        self.db_writes.set(ws.writes as i64);
        if let Some(cfg) = &self.config {
            if let Some(st) = crate::ops::remote::replicate::read_status(cfg) {
                let now = crate::ops::remote::now_ms();
                for t in &st.targets {
                    let l = TargetLabel {
                        target: t.name.clone(),
                    };
                    self.remote_lag.get_or_create(&l).set(t.lag_secs(now));
                    self.remote_last_ok
                        .get_or_create(&l)
                        .set(t.last_ok_ms.unwrap_or(0) / 1000);
                    self.remote_pending.get_or_create(&l).set(t.pending as i64);
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
