//! Prometheus metrics, and the separate listener that serves `/metrics`, `/health` and `/ready`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use switchboard_client::ClientMetrics;
use tokio_util::sync::CancellationToken;

/// Event types counted under their own label; anything else is counted as `other` so that a
/// remote party cannot blow up the label set.
const KNOWN_EVENT_TYPES: &[&str] = &[
    "m.room.message",
    "m.room.member",
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.redaction",
    "m.room.encrypted",
    "m.room.tombstone",
    "m.reaction",
    "m.sticker",
    "m.typing",
    "m.receipt",
    "m.presence",
];

/// All of Switchboard's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Transactions received, by outcome (`new`, `duplicate`, `rejected`).
    pub transactions: IntCounterVec,
    /// Events received, by list (`pdu`, `ephemeral`, …) and type.
    pub events: IntCounterVec,
    /// Events that did not decode and were skipped, by list.
    pub events_invalid: IntCounterVec,
    /// Room events the homeserver sent again in a new transaction (skipped).
    pub events_resent: IntCounter,
    /// Time from an event's arrival to its handling being done.
    pub handling_seconds: Histogram,
    /// Events whose handling failed permanently.
    pub events_failed: IntCounter,
    /// Handling attempts that failed for a passing reason and will be retried.
    pub handling_retries: IntCounter,
    /// The homeserver client's: Client-Server API calls, durations and retries.
    pub client: ClientMetrics,
    /// Events in the inbox not yet handled.
    pub inbox_depth: IntGauge,
    /// Unhandled events of stuck rooms (part of the inbox depth, not held against the
    /// high-water mark).
    pub inbox_stuck_events: IntGauge,
    /// Matrix events of portals handed to bridges, by bridge, kind and outcome.
    pub bridge_matrix_events: IntCounterVec,
    /// Outbox activity by bridge and outcome (`queued`, `delivered`, `retry`, `given_up`).
    pub bridge_outbox: IntCounterVec,
    /// Matrix events waiting in the bridges' outbox.
    pub bridge_outbox_depth: IntGauge,
    /// Each bridge's connection to its network: 1 for its current state, 0 for the others.
    pub bridge_state: IntGaugeVec,
    /// Logins of each bridge by connection state.
    pub bridge_logins: IntGaugeVec,
    /// Puppets each bridge keeps in memory (used within the idle time).
    pub bridge_puppets_cached: IntGaugeVec,
    /// What a network sent that a bridge could not bring into Matrix, by bridge and reason.
    pub bridge_remote_skipped: IntCounterVec,
    /// Seconds since the last transaction arrived (updated at scrape time).
    last_transaction_age: IntGauge,
    last_transaction_at: Arc<AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are static and distinct, so registration cannot collide.
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// Creates and registers every metric.
    #[must_use]
    #[allow(clippy::too_many_lines)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let transactions = counter_vec(
            "switchboard_transactions_total",
            "Transactions received from the homeserver, by outcome.",
            &["outcome"],
        );
        let events = counter_vec(
            "switchboard_events_total",
            "Events received from the homeserver, by list and type.",
            &["list", "type"],
        );
        let events_invalid = counter_vec(
            "switchboard_events_invalid_total",
            "Events that did not decode and were skipped, by list.",
            &["list"],
        );
        let client = ClientMetrics::register(&registry);
        let bridge_matrix_events = counter_vec(
            "switchboard_bridge_matrix_events_total",
            "Matrix events of portals handed to bridges, by bridge, kind and outcome.",
            &["bridge", "kind", "outcome"],
        );
        let bridge_outbox = counter_vec(
            "switchboard_bridge_outbox_total",
            "Bridge outbox activity, by bridge and outcome (queued, delivered, retry, given_up).",
            &["bridge", "outcome"],
        );
        let bridge_state = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "switchboard_bridge_state",
                    "Each bridge's connection to its network: 1 for its current state.",
                ),
                &["bridge", "state"],
            )
            .expect("valid metric"),
        );
        let bridge_logins = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "switchboard_bridge_logins",
                    "Logins of each bridge by the state of their connection to the network.",
                ),
                &["bridge", "state"],
            )
            .expect("valid metric"),
        );
        let bridge_remote_skipped = counter_vec(
            "switchboard_bridge_remote_skipped_total",
            "What a network sent that a bridge could not bring into Matrix, by reason.",
            &["bridge", "reason"],
        );
        let bridge_puppets_cached = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "switchboard_bridge_puppets_cached",
                    "Puppets each bridge keeps in memory: those used within puppets.idle_secs.",
                ),
                &["bridge"],
            )
            .expect("valid metric"),
        );
        let bridge_outbox_depth = register(
            &registry,
            IntGauge::new(
                "switchboard_bridge_outbox_depth",
                "Matrix events waiting in the bridges' outbox for their network.",
            )
            .expect("valid metric"),
        );
        let handling_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_event_handling_seconds",
                    "Time from an event's arrival to its handling being done.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ]),
            )
            .expect("valid metric"),
        );
        let events_failed = register(
            &registry,
            IntCounter::new(
                "switchboard_events_failed_total",
                "Events whose handling failed permanently (kept in the inbox_failed table).",
            )
            .expect("valid metric"),
        );
        let handling_retries = register(
            &registry,
            IntCounter::new(
                "switchboard_event_handling_retries_total",
                "Handling attempts that failed for a passing reason and were retried.",
            )
            .expect("valid metric"),
        );
        let events_resent = register(
            &registry,
            IntCounter::new(
                "switchboard_events_resent_total",
                "Room events the homeserver sent again in a new transaction (skipped).",
            )
            .expect("valid metric"),
        );
        let inbox_depth = register(
            &registry,
            IntGauge::new(
                "switchboard_inbox_depth",
                "Events accepted from the homeserver and not yet handled.",
            )
            .expect("valid metric"),
        );
        let inbox_stuck_events = register(
            &registry,
            IntGauge::new(
                "switchboard_inbox_stuck_events",
                "Unhandled events of rooms whose current event has been in handling for over 2 s \
                 (retrying, or a slow plug-in); they do not count towards the high-water mark.",
            )
            .expect("valid metric"),
        );
        let last_transaction_age = register(
            &registry,
            IntGauge::new(
                "switchboard_last_transaction_age_seconds",
                "Seconds since the last transaction arrived (-1: none since start).",
            )
            .expect("valid metric"),
        );
        Self {
            registry,
            transactions,
            events,
            events_invalid,
            events_resent,
            handling_seconds,
            events_failed,
            handling_retries,
            client,
            inbox_depth,
            inbox_stuck_events,
            bridge_matrix_events,
            bridge_outbox,
            bridge_outbox_depth,
            bridge_state,
            bridge_logins,
            bridge_puppets_cached,
            bridge_remote_skipped,
            last_transaction_age,
            last_transaction_at: Arc::new(AtomicI64::new(-1)),
        }
    }

    /// Counts received events of one list under bounded type labels (one update per label).
    pub fn count_events(&self, list: &str, event_types: &[&str]) {
        let mut counts: Vec<(&str, u64)> = Vec::new();
        for event_type in event_types {
            let label = KNOWN_EVENT_TYPES
                .iter()
                .find(|known| *known == event_type)
                .copied()
                .unwrap_or("other");
            match counts.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => counts.push((label, 1)),
            }
        }
        for (label, n) in counts {
            self.events.with_label_values(&[list, label]).inc_by(n);
        }
    }

    /// Records that a transaction arrived now.
    pub fn transaction_arrived(&self) {
        self.last_transaction_at
            .store(unix_seconds(), Ordering::Relaxed);
    }

    /// The metrics in Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let at = self.last_transaction_at.load(Ordering::Relaxed);
        self.last_transaction_age
            .set(if at < 0 { -1 } else { unix_seconds() - at });
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// One value of a metric now (a histogram gives its count of observations).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric's name, e.g. `switchboard_inbox_depth`.
    pub name: String,
    /// Its labels, e.g. `[("bridge", "loopback")]`.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Metrics {
    /// Every metric's values now, as `/metrics` shows them (for summaries such as a bot's).
    #[must_use]
    pub fn samples(&self) -> Vec<Sample> {
        let at = self.last_transaction_at.load(Ordering::Relaxed);
        self.last_transaction_age
            .set(if at < 0 { -1 } else { unix_seconds() - at });
        let mut samples = Vec::new();
        for family in self.registry.gather() {
            let kind = family.get_field_type();
            for metric in family.get_metric() {
                #[allow(clippy::cast_precision_loss)]
                let value = match kind {
                    prometheus::proto::MetricType::GAUGE => metric.get_gauge().get_value(),
                    prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
                    prometheus::proto::MetricType::HISTOGRAM => {
                        metric.get_histogram().get_sample_count() as f64
                    }
                    _ => continue,
                };
                samples.push(Sample {
                    name: family.name().to_owned(),
                    labels: metric
                        .get_label()
                        .iter()
                        .map(|l| (l.name().to_owned(), l.value().to_owned()))
                        .collect(),
                    value,
                });
            }
        }
        samples
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Readiness flag shared by the runtime and `/ready`.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks Switchboard ready (or not) to receive traffic.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether Switchboard is ready.
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct MetricsState {
    metrics: Metrics,
    ready: Readiness,
}

/// Serves `/metrics`, `/health` (the process is alive) and `/ready` (start-up checks passed and
/// the inbox is being processed) on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    ready: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(ready_state))
        .with_state(MetricsState { metrics, ready });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn render_metrics(State(state): State<MetricsState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

async fn ready_state(State(state): State<MetricsState>) -> impl IntoResponse {
    if state.ready.get() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
