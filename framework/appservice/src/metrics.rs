//! What the appservice edge and the inbox count: transactions and events received, events
//! skipped or failed, handling time and retries, the inbox's depth, and the age of the last
//! transaction; registered in the registry Switchboard serves on `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use switchboard_client::register_metric;

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

/// The appservice edge's and the inbox's metrics.
#[derive(Clone, Debug)]
pub struct InboxMetrics {
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
    /// Events in the inbox not yet handled.
    pub inbox_depth: IntGauge,
    /// Unhandled events of stuck rooms (part of the inbox depth, not held against the
    /// high-water mark).
    pub inbox_stuck_events: IntGauge,
    /// Seconds since the last transaction arrived (updated by [`InboxMetrics::refresh`]).
    last_transaction_age: IntGauge,
    last_transaction_at: Arc<AtomicI64>,
}

impl InboxMetrics {
    /// Creates the metrics and registers them in `registry`.
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
        let counter = |name: &str, help: &str| {
            register_metric(registry, IntCounter::new(name, help).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str| {
            register_metric(registry, IntGauge::new(name, help).expect("valid metric"))
        };
        Self {
            transactions: counter_vec(
                "switchboard_transactions_total",
                "Transactions received from the homeserver, by outcome.",
                &["outcome"],
            ),
            events: counter_vec(
                "switchboard_events_total",
                "Events received from the homeserver, by list and type.",
                &["list", "type"],
            ),
            events_invalid: counter_vec(
                "switchboard_events_invalid_total",
                "Events that did not decode and were skipped, by list.",
                &["list"],
            ),
            events_resent: counter(
                "switchboard_events_resent_total",
                "Room events the homeserver sent again in a new transaction (skipped).",
            ),
            handling_seconds: register_metric(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "switchboard_event_handling_seconds",
                        "Time from an event's arrival to its handling being done.",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            events_failed: counter(
                "switchboard_events_failed_total",
                "Events whose handling failed permanently (kept in the inbox_failed table).",
            ),
            handling_retries: counter(
                "switchboard_event_handling_retries_total",
                "Handling attempts that failed for a passing reason and were retried.",
            ),
            inbox_depth: gauge(
                "switchboard_inbox_depth",
                "Events accepted from the homeserver and not yet handled.",
            ),
            inbox_stuck_events: gauge(
                "switchboard_inbox_stuck_events",
                "Unhandled events of rooms whose current event has been in handling for over 2 s \
                 (retrying, or a slow plug-in); they do not count towards the high-water mark.",
            ),
            last_transaction_age: gauge(
                "switchboard_last_transaction_age_seconds",
                "Seconds since the last transaction arrived (-1: none since start).",
            ),
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

    /// Brings the age of the last transaction up to date (before the metrics are read).
    pub fn refresh(&self) {
        let at = self.last_transaction_at.load(Ordering::Relaxed);
        self.last_transaction_age
            .set(if at < 0 { -1 } else { unix_seconds() - at });
    }
}

impl Default for InboxMetrics {
    /// Metrics registered nowhere (for tests that do not serve them).
    fn default() -> Self {
        Self::register(&Registry::new())
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
