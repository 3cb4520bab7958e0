//! Prometheus metrics (`GET /metrics`, text format): appends, batch sizes, commit
//! latency, rejected requests by reason, mapped channel events, verdict counts.

use std::collections::HashMap;

use ledger_core::projection::Verdict;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    appended: Counter,
    duplicates: Counter,
    batch_size: Histogram,
    commit_seconds: Histogram,
    rejected: Family<Labels, Counter>,
    channel_events: Family<Labels, Counter>,
    alerts: Family<Labels, Counter>,
    verdicts: Family<Labels, Gauge>,
    verdict_changes: Family<Labels, Counter>,
    connections: Gauge,
    connections_closed: Family<Labels, Counter>,
    stream_clients: Gauge,
    replaying_streams: Gauge,
    witness_alarms: Family<Labels, Gauge>,
    cosigned_size: Gauge,
    witnessing_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ledger");
        let appended = Counter::default();
        let duplicates = Counter::default();
        let batch_size = Histogram::new(exponential_buckets(1.0, 4.0, 8));
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let rejected = Family::<Labels, Counter>::default();
        let channel_events = Family::<Labels, Counter>::default();
        let alerts = Family::<Labels, Counter>::default();
        let verdicts = Family::<Labels, Gauge>::default();
        let verdict_changes = Family::<Labels, Counter>::default();
        let connections = Gauge::default();
        let connections_closed = Family::<Labels, Counter>::default();
        let stream_clients = Gauge::default();
        let replaying_streams = Gauge::default();
        let witness_alarms = Family::<Labels, Gauge>::default();
        let cosigned_size = Gauge::default();
        let witnessing_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "witness_alarms",
            "Witness alarms raised, by witness and kind (split_view, refused, ahead, quorum_late, unreachable); 0 when cleared",
            witness_alarms.clone(),
        );
        registry.register(
            "cosigned_checkpoint_size",
            "Size of the newest checkpoint that reached the witness quorum",
            cosigned_size.clone(),
        );
        registry.register(
            "checkpoint_to_cosigned_seconds",
            "Time from the oldest checkpoint not yet cosigned to the witness quorum on it or a newer one: how long entries wait for a cosigned checkpoint",
            witnessing_seconds.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now (at most server.max_connections)",
            connections.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections closed, by why: done, idle, header_timeout, handshake_timeout, handshake_failed, error",
            connections_closed.clone(),
        );
        registry.register(
            "stream_clients",
            "GET /v1/stream clients connected now",
            stream_clients.clone(),
        );
        registry.register(
            "replaying_streams",
            "Streams replaying from the log now (not yet caught up)",
            replaying_streams.clone(),
        );
        registry.register(
            "appended_events",
            "Events appended (new entries)",
            appended.clone(),
        );
        registry.register(
            "duplicate_events",
            "Events whose id was already recorded with the same content (answered with the original receipt)",
            duplicates.clone(),
        );
        registry.register(
            "append_batch_events",
            "Events per append request",
            batch_size.clone(),
        );
        registry.register(
            "append_commit_seconds",
            "Time from a request's append call to its durable commit",
            commit_seconds.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused, by reason code",
            rejected.clone(),
        );
        registry.register(
            "channel_events",
            "Channel events received on /v1/cloudevents and /v1/channels, by channel and outcome",
            channel_events.clone(),
        );
        registry.register(
            "alerts",
            "Operator alerts, by way (webhook, email) and outcome: delivered, given_up (after alerts.max_attempts, or refused for good), dropped (that way's queue full)",
            alerts.clone(),
        );
        registry.register(
            "messages",
            "Messages by verdict at the last sweep",
            verdicts.clone(),
        );
        registry.register(
            "verdict_changes",
            "Verdict changes noticed, by new verdict",
            verdict_changes.clone(),
        );
        Metrics {
            registry,
            appended,
            duplicates,
            batch_size,
            commit_seconds,
            rejected,
            channel_events,
            alerts,
            verdicts,
            verdict_changes,
            connections,
            connections_closed,
            stream_clients,
            replaying_streams,
            witness_alarms,
            cosigned_size,
            witnessing_seconds,
        }
    }
}

impl Metrics {
    /// A witness alarm raised (1) or cleared (0).
    pub fn witness_alarm(&self, witness: &str, kind: &str, raised: bool) {
        self.witness_alarms
            .get_or_create(&vec![
                ("witness".into(), witness.into()),
                ("kind".into(), kind.into()),
            ])
            .set(i64::from(raised));
    }

    /// A checkpoint reached the witness quorum after `seconds`.
    pub fn cosigned(&self, size: u64, seconds: f64) {
        self.cosigned_size.set(size as i64);
        self.witnessing_seconds.observe(seconds);
    }

    /// An append request committed.
    pub fn appended(&self, events: usize, new: usize, seconds: f64) {
        self.appended.inc_by(new as u64);
        self.duplicates.inc_by((events - new) as u64);
        self.batch_size.observe(events as f64);
        self.commit_seconds.observe(seconds);
    }

    /// A request was refused.
    pub fn rejected(&self, reason: &str) {
        self.rejected
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    /// A channel event was mapped, skipped or refused.
    pub fn channel_event(&self, channel: &str, outcome: &str) {
        self.channel_events
            .get_or_create(&vec![
                ("channel".into(), channel.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    /// An alert was delivered, given up or dropped.
    pub fn alert(&self, via: &str, outcome: &str) {
        self.alerts
            .get_or_create(&vec![
                ("via".into(), via.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    /// Counts per verdict.
    pub fn set_verdicts<S>(&self, verdicts: &HashMap<String, Verdict, S>) {
        let mut n: HashMap<Verdict, i64> = Verdict::ALL.iter().map(|v| (*v, 0)).collect();
        for v in verdicts.values() {
            *n.entry(*v).or_default() += 1;
        }
        for (v, c) in n {
            self.verdicts
                .get_or_create(&vec![("verdict".into(), v.name().into())])
                .set(c);
        }
    }

    /// A verdict changed.
    pub fn verdict_change(&self, _from: Option<Verdict>, to: Verdict) {
        self.verdict_changes
            .get_or_create(&vec![("to".into(), to.name().into())])
            .inc();
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    /// A connection closed, for this reason.
    pub fn connection_closed(&self, reason: &str) {
        self.connections.dec();
        self.connections_closed
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    /// The gauge of stream clients.
    pub fn stream_clients(&self) -> &Gauge {
        &self.stream_clients
    }

    /// The gauge of replaying streams.
    pub fn replaying_streams(&self) -> &Gauge {
        &self.replaying_streams
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
