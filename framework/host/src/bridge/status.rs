//! What the host keeps for one bridge besides its Matrix side: the state of its connection to
//! the network and of each login (logged when they change, and published in `/metrics`), its
//! stored logins, and the signal that wakes its outbox. A bridge reaches it through
//! [`BridgeContext`](switchboard_api::bridge::BridgeContext) as a [`HostPort`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use switchboard_api::PluginError;
use switchboard_api::bridge::{BridgeState, HostPort};
use switchboard_api::clock::Clock;

use super::ids::LoginId;
use super::login::Login;
use crate::metrics::HostMetrics;
use crate::store::Store;

/// Wakes a bridge's outbox worker: something was queued, or the network is back.
#[derive(Debug, Default)]
pub(crate) struct OutboxSignal {
    pub(crate) wake: tokio::sync::Notify,
    /// Set when the network is back: try what waits now, whatever its backoff says.
    pub(crate) retry_now: AtomicBool,
}

/// Whose connection is down: the bridge's own (`None`) or one login's.
pub(crate) type OutageSubject = Option<LoginId>;

/// One bridge's connection state, login states and outbox signal.
#[derive(Debug)]
pub(crate) struct BridgeStatus {
    bridge: String,
    store: Store,
    metrics: HostMetrics,
    outbox: OutboxSignal,
    state: Mutex<BridgeState>,
    login_states: Mutex<HashMap<LoginId, BridgeState>>,
    clock: Arc<dyn Clock>,
    /// Connections that are down, and since when (ms since the epoch): set when one reports a
    /// disconnection, cleared when it is connected again (reconnect attempts in between
    /// change nothing).
    outages: Mutex<HashMap<OutageSubject, i64>>,
    /// Rung when `outages` changes.
    outages_changed: tokio::sync::Notify,
}

impl BridgeStatus {
    /// The status of the bridge `bridge`, starting.
    pub(crate) fn new(
        bridge: &str,
        store: Store,
        metrics: HostMetrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let status = Self {
            bridge: bridge.to_owned(),
            store,
            metrics,
            outbox: OutboxSignal::default(),
            state: Mutex::default(),
            login_states: Mutex::default(),
            clock,
            outages: Mutex::default(),
            outages_changed: tokio::sync::Notify::new(),
        };
        status.publish_state(&BridgeState::Starting);
        status
    }

    /// The connections that are down, and since when.
    pub(crate) fn outages(&self) -> HashMap<OutageSubject, i64> {
        self.outages.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits until a connection goes down or comes back.
    pub(crate) async fn outages_changed(&self) {
        self.outages_changed.notified().await;
    }

    /// Records what `state` means for the outage of `subject`.
    fn track_outage(&self, subject: OutageSubject, state: &BridgeState) {
        let Ok(mut outages) = self.outages.lock() else {
            return;
        };
        let changed = match state {
            BridgeState::Connected => outages.remove(&subject).is_some(),
            BridgeState::TransientDisconnect(_) | BridgeState::BadCredentials(_) => {
                match outages.entry(subject) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(new) => {
                        new.insert(self.clock.now_ms());
                        true
                    }
                }
            }
            BridgeState::Starting | BridgeState::Connecting => false,
        };
        if changed {
            self.outages_changed.notify_one();
        }
    }

    /// What wakes the bridge's outbox worker.
    pub(crate) fn outbox(&self) -> &OutboxSignal {
        &self.outbox
    }

    /// Forgets a login's state (it logged out).
    pub(crate) fn forget_login_state(&self, login: &LoginId) {
        if let Ok(mut states) = self.login_states.lock() {
            states.remove(login);
            self.publish_login_states(&states);
        }
        if let Ok(mut outages) = self.outages.lock() {
            outages.remove(&Some(login.clone()));
        }
    }

    fn publish_login_states(&self, states: &HashMap<LoginId, BridgeState>) {
        let gauge = &self.metrics.bridge_logins;
        for label in BridgeState::LABELS {
            let count = states.values().filter(|s| s.label() == label).count();
            gauge
                .with_label_values(&[self.bridge.as_str(), label])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    fn publish_state(&self, state: &BridgeState) {
        let gauge = &self.metrics.bridge_state;
        for label in BridgeState::LABELS {
            gauge
                .with_label_values(&[self.bridge.as_str(), label])
                .set(i64::from(label == state.label()));
        }
    }
}

#[async_trait::async_trait]
impl HostPort for BridgeStatus {
    fn set_state(&self, state: BridgeState) {
        let Ok(mut current) = self.state.lock() else {
            return;
        };
        if *current != state {
            tracing::info!(bridge = %self.bridge, state = %state, "bridge state");
            self.publish_state(&state);
            self.track_outage(None, &state);
            *current = state;
        }
    }

    fn state(&self) -> BridgeState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_login_state(&self, login: &LoginId, state: BridgeState) {
        let Ok(mut states) = self.login_states.lock() else {
            return;
        };
        if states.get(login) != Some(&state) {
            tracing::info!(bridge = %self.bridge, %login, state = %state, "login state");
            self.track_outage(Some(login.clone()), &state);
        }
        states.insert(login.clone(), state);
        self.publish_login_states(&states);
    }

    fn login_state(&self, login: &LoginId) -> Option<BridgeState> {
        self.login_states.lock().ok()?.get(login).cloned()
    }

    async fn logins(&self) -> Result<Vec<Login>, PluginError> {
        let records = self.store.logins(&self.bridge).await?;
        Ok(records.into_iter().filter_map(login_from_record).collect())
    }

    fn network_restored(&self) {
        self.outbox.retry_now.store(true, Ordering::Relaxed);
        self.outbox.wake.notify_one();
    }
}

/// A stored login as handed to a bridge (`None` if the stored row is unusable: a bad user
/// id, which only a hand edit of the database makes).
pub(crate) fn login_from_record(record: crate::store::LoginRecord) -> Option<Login> {
    Some(Login {
        id: LoginId(record.login_id),
        user_id: ruma::OwnedUserId::try_from(record.user_id).ok()?,
        remote_name: record.remote_name,
        data: serde_json::from_str(&record.data).unwrap_or_default(),
    })
}
