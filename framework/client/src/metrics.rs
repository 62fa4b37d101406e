//! The client's metrics: Client-Server API calls, their duration and their retries, by
//! endpoint, registered in the registry Switchboard serves on `/metrics`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// What the client counts.
#[derive(Clone, Debug)]
pub struct ClientMetrics {
    /// Client-Server API calls by endpoint and HTTP status (`error` for no response).
    pub requests: IntCounterVec,
    /// Client-Server API call duration by endpoint.
    pub request_seconds: HistogramVec,
    /// Client-Server API retries by endpoint and reason.
    pub retries: IntCounterVec,
}

impl ClientMetrics {
    /// Creates the client's metrics and registers them in `registry`.
    ///
    /// # Panics
    /// When `registry` already holds them (each registry gets one set).
    #[must_use]
    pub fn register(registry: &Registry) -> Self {
        let requests = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "switchboard_homeserver_requests_total",
                    "Client-Server API calls, by endpoint and HTTP status.",
                ),
                &["endpoint", "status"],
            )
            .expect("valid metric"),
        );
        let request_seconds = register_metric(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "switchboard_homeserver_request_seconds",
                    "Client-Server API call duration, by endpoint.",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
                &["endpoint"],
            )
            .expect("valid metric"),
        );
        let retries = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "switchboard_homeserver_retries_total",
                    "Client-Server API retries, by endpoint and reason.",
                ),
                &["endpoint", "reason"],
            )
            .expect("valid metric"),
        );
        Self {
            requests,
            request_seconds,
            retries,
        }
    }
}

/// Registers `metric` in Switchboard's `registry` and returns it (each part of Switchboard
/// registers its own metrics this way).
///
/// # Panics
/// When a metric of that name is registered already (names are static and distinct, so this
/// is a programming error).
pub fn register_metric<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and each part registers its metrics once");
    metric
}

impl Default for ClientMetrics {
    /// Metrics registered nowhere (for tools and tests that do not serve them).
    fn default() -> Self {
        Self::register(&Registry::new())
    }
}
