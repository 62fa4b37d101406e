//! Prometheus metrics, and the separate listener that serves `/metrics`, `/health` and `/ready`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
pub use switchboard_api::host::Sample;
use switchboard_appservice::InboxMetrics;
use switchboard_client::ClientMetrics;
use tokio_util::sync::CancellationToken;

/// All of Switchboard's metrics: each part's, in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The homeserver client's: Client-Server API calls, durations and retries.
    pub client: ClientMetrics,
    /// The appservice edge's and the inbox's: transactions, events, handling.
    pub inbox: InboxMetrics,
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
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Self {
            client: ClientMetrics::register(&registry),
            inbox: InboxMetrics::register(&registry),
            bridge_matrix_events: counter_vec(
                "switchboard_bridge_matrix_events_total",
                "Matrix events of portals handed to bridges, by bridge, kind and outcome.",
                &["bridge", "kind", "outcome"],
            ),
            bridge_outbox: counter_vec(
                "switchboard_bridge_outbox_total",
                "Bridge outbox activity, by bridge and outcome (queued, delivered, retry, given_up).",
                &["bridge", "outcome"],
            ),
            bridge_outbox_depth: register(
                &registry,
                IntGauge::new(
                    "switchboard_bridge_outbox_depth",
                    "Matrix events waiting in the bridges' outbox for their network.",
                )
                .expect("valid metric"),
            ),
            bridge_state: gauge_vec(
                "switchboard_bridge_state",
                "Each bridge's connection to its network: 1 for its current state.",
                &["bridge", "state"],
            ),
            bridge_logins: gauge_vec(
                "switchboard_bridge_logins",
                "Logins of each bridge by the state of their connection to the network.",
                &["bridge", "state"],
            ),
            bridge_puppets_cached: gauge_vec(
                "switchboard_bridge_puppets_cached",
                "Puppets each bridge keeps in memory: those used within puppets.idle_secs.",
                &["bridge"],
            ),
            bridge_remote_skipped: counter_vec(
                "switchboard_bridge_remote_skipped_total",
                "What a network sent that a bridge could not bring into Matrix, by reason.",
                &["bridge", "reason"],
            ),
            registry,
        }
    }

    /// The metrics in Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        self.inbox.refresh();
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Metrics {
    /// Every metric's values now, as `/metrics` shows them (for summaries such as a bot's).
    #[must_use]
    pub fn samples(&self) -> Vec<Sample> {
        self.inbox.refresh();
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
