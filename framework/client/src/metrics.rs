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
        let requests = IntCounterVec::new(
            Opts::new(
                "switchboard_homeserver_requests_total",
                "Client-Server API calls, by endpoint and HTTP status.",
            ),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_homeserver_request_seconds",
                "Client-Server API call duration, by endpoint.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["endpoint"],
        )
        .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new(
                "switchboard_homeserver_retries_total",
                "Client-Server API retries, by endpoint and reason.",
            ),
            &["endpoint", "reason"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(retries.clone()),
        ] {
            registry
                .register(metric)
                .expect("the client's metrics are registered once per registry");
        }
        Self {
            requests,
            request_seconds,
            retries,
        }
    }
}

impl Default for ClientMetrics {
    /// Metrics registered nowhere (for tools and tests that do not serve them).
    fn default() -> Self {
        Self::register(&Registry::new())
    }
}
