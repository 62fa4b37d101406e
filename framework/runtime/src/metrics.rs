//! Prometheus metrics, and the separate listener that serves `/metrics`, `/health` and `/ready`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
pub use switchboard_api::host::Sample;
use switchboard_appservice::InboxMetrics;
use switchboard_client::ClientMetrics;
use switchboard_host::metrics::HostMetrics;
use tokio_util::sync::CancellationToken;

/// All of Switchboard's metrics: each part's own, in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The homeserver client's: Client-Server API calls, durations and retries.
    pub client: ClientMetrics,
    /// The appservice edge's and the inbox's: transactions, events, handling.
    pub inbox: InboxMetrics,
    /// The host's: bridges' events, outbox, connections, logins, puppets, skipped input.
    pub host: HostMetrics,
    /// 1 while this process waits as a hot standby (another one holds the database lease).
    pub standby: prometheus::IntGauge,
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

impl Metrics {
    /// Creates and registers every metric.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();
        Self {
            client: ClientMetrics::register(&registry),
            inbox: InboxMetrics::register(&registry),
            host: HostMetrics::register(&registry),
            standby: switchboard_client::register_metric(
                &registry,
                prometheus::IntGauge::new(
                    "switchboard_standby",
                    "1 while this process waits as a hot standby for the database lease.",
                )
                .expect("valid metric"),
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

/// Where Switchboard stands, shared by the runtime and `/ready`: starting (or stopping),
/// waiting as a hot standby, or ready.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

/// [`Readiness`] states.
const STARTING: u8 = 0;
const READY: u8 = 1;
const STANDBY: u8 = 2;

impl Readiness {
    /// Marks Switchboard ready (or not) to receive traffic.
    pub fn set(&self, ready: bool) {
        self.0
            .store(if ready { READY } else { STARTING }, Ordering::Relaxed);
    }

    /// Marks Switchboard as a hot standby: another process serves.
    pub fn set_standby(&self) {
        self.0.store(STANDBY, Ordering::Relaxed);
    }

    /// Whether Switchboard is ready.
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed) == READY
    }

    /// Whether Switchboard waits as a hot standby.
    #[must_use]
    pub fn is_standby(&self) -> bool {
        self.0.load(Ordering::Relaxed) == STANDBY
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
    } else if state.ready.is_standby() {
        (StatusCode::SERVICE_UNAVAILABLE, "standby")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
