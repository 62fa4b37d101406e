//! The `inbox` section of the config.

use serde::{Deserialize, Serialize};

/// The inbox section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboxConfig {
    /// Unhandled events above which new transactions wait before being acknowledged.
    pub high_water_mark: usize,
    /// Longest a transaction waits for room below the high-water mark before the homeserver is
    /// told to retry later (503).
    pub backpressure_timeout_secs: u64,
    /// How long transaction ids are remembered for de-duplication.
    pub txn_retention_days: u32,
    /// Ids of the latest room events remembered to drop an event the homeserver sends again in
    /// another transaction (0: none).
    pub recent_event_ids: usize,
    /// Longest pause between retries of an event whose handling failed transiently.
    pub retry_max_secs: u64,
    /// Unhandled events that may wait in rooms whose current event has been in handling for
    /// over 2 s (they do not count towards `high_water_mark`); above this, new transactions
    /// wait too.
    pub stuck_room_events_limit: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            high_water_mark: 50,
            backpressure_timeout_secs: 30,
            txn_retention_days: 7,
            recent_event_ids: 20_000,
            retry_max_secs: 60,
            stuck_room_events_limit: 10_000,
        }
    }
}
