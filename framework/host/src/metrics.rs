//! What the host counts: Matrix events handed to bridges, the outbox, each bridge's connection
//! and logins, puppets in memory, and what networks sent that could not be bridged; registered
//! in the registry Switchboard serves on `/metrics`.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use switchboard_client::register_metric;

/// The host's metrics.
#[derive(Clone, Debug)]
pub struct HostMetrics {
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
    /// Panics caught in plug-ins' handlers, by plug-in (`switchboard` for the host's own code).
    pub handler_panics: IntCounterVec,
    /// Encrypted events that could not be decrypted, by reason.
    pub decrypt_failures: IntCounterVec,
}

impl HostMetrics {
    /// Creates the host's metrics and registers them in `registry`.
    ///
    /// # Panics
    /// When `registry` already holds them (each registry gets one set).
    #[must_use]
    pub fn register(registry: &Registry) -> Self {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register_metric(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register_metric(
                registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Self {
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
            bridge_outbox_depth: register_metric(
                registry,
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
            handler_panics: counter_vec(
                "switchboard_handler_panics_total",
                "Panics caught while plug-ins handled events, by plug-in; each cost one event.",
                &["plugin"],
            ),
            decrypt_failures: counter_vec(
                "switchboard_decrypt_failures_total",
                "Encrypted events no plug-in saw because they could not be decrypted, by reason.",
                &["reason"],
            ),
        }
    }
}

impl Default for HostMetrics {
    /// Metrics registered nowhere (for tests that do not serve them).
    fn default() -> Self {
        Self::register(&Registry::new())
    }
}
