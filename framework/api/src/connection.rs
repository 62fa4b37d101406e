//! Connections the framework keeps up for a bridge: its link to the network, or one login's
//! own connection. A bridge writes what one connection does ([`Connector::run`]); the
//! framework runs it in a tracked task, reconnects with backoff when it drops, stops it at
//! shutdown or logout, and reports how it stands as the bridge's (or the login's) state.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::PluginError;
use crate::ids::LoginId;
use crate::status::{BridgeState, HostPort};
use switchboard_client::Backoff;

/// How often a dropped connection is tried again unless the bridge says otherwise: after 1 s,
/// doubling up to 5 minutes, with jitter (so that many logins reconnecting at once spread
/// out).
pub const RECONNECT: Backoff =
    Backoff::new(Duration::from_secs(1), Duration::from_mins(5)).with_jitter();

/// One connection to the network, as the framework keeps it up.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Connects, then serves the connection until it ends. Call [`Link::connected`] once the
    /// network accepted the connection. Returning `Ok` or a transient [`PluginError`] (the
    /// connection dropped, the network cannot be reached) reconnects after a backoff; a
    /// permanent one (credentials refused) stops trying and shows the state
    /// [`BridgeState::BadCredentials`] until Switchboard restarts or the user logs in again.
    /// The future is dropped when the link closes (shutdown, logout).
    async fn run(&self, link: &Link) -> Result<(), PluginError>;
}

/// A connection kept up by the framework: what it reports to, and when it closes. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Link {
    inner: Arc<LinkInner>,
}

#[derive(Debug)]
struct LinkInner {
    name: &'static str,
    login: Option<LoginId>,
    host: Arc<dyn HostPort>,
    closing: CancellationToken,
    /// Where the current attempt stands. State reports are made holding it, so that a late
    /// `connected()` from an attempt that already ended, or any report after `close()`, is
    /// dropped rather than shown.
    attempt: Mutex<Attempt>,
}

/// The current connection attempt.
#[derive(Debug, Default)]
struct Attempt {
    /// Running: its `connected()` counts.
    live: bool,
    /// It got through (its failure then starts the backoff anew).
    got_through: bool,
}

impl Link {
    /// A link named `name` (in logs) whose state is the bridge's, or `login`'s, reported to
    /// `host` — `Connecting` from now on; it closes when `closing` fires.
    pub(crate) fn new(
        name: &'static str,
        login: Option<LoginId>,
        host: Arc<dyn HostPort>,
        closing: CancellationToken,
    ) -> Self {
        let link = Self {
            inner: Arc::new(LinkInner {
                name,
                login,
                host,
                closing,
                attempt: Mutex::default(),
            }),
        };
        link.report(&link.attempt(), BridgeState::Connecting);
        link
    }

    /// The network accepted the connection: the state becomes `Connected`, what waits in
    /// the outbox is tried now, and the next drop starts the backoff from its first pause.
    /// Ignored once the attempt it belongs to ended (the drop is what is shown).
    pub fn connected(&self) {
        {
            let mut attempt = self.attempt();
            if !attempt.live || self.inner.closing.is_cancelled() {
                return;
            }
            if !attempt.got_through {
                tracing::info!(link = self.inner.name, login = %self.label(), "connected");
            }
            attempt.got_through = true;
            self.report(&attempt, BridgeState::Connected);
        }
        self.inner.host.network_restored();
    }

    /// The login this is the connection of; `None` for the bridge's own link.
    #[must_use]
    pub fn login(&self) -> Option<&LoginId> {
        self.inner.login.as_ref()
    }

    /// Fires when the connection is to close (Switchboard stops, or the login was logged
    /// out).
    #[must_use]
    pub fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// Closes the connection for good (it is not reconnected); no state is reported after
    /// this returns.
    pub fn close(&self) {
        let _attempt = self.attempt();
        self.inner.closing.cancel();
    }

    fn attempt(&self) -> MutexGuard<'_, Attempt> {
        self.inner
            .attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The login's id, or `bridge` for the bridge's own link (in logs).
    fn label(&self) -> String {
        self.inner
            .login
            .as_ref()
            .map_or_else(|| "bridge".to_owned(), ToString::to_string)
    }

    /// Reports `state`, unless the link is closed; `_attempt` proves the lock is held.
    fn report(&self, _attempt: &MutexGuard<'_, Attempt>, state: BridgeState) {
        if self.inner.closing.is_cancelled() {
            return;
        }
        match &self.inner.login {
            Some(login) => self.inner.host.set_login_state(login, state),
            None => self.inner.host.set_state(state),
        }
    }

    /// Runs `connector` until the link closes: reconnects after `backoff` when it drops,
    /// gives up when it fails for good.
    pub(crate) async fn supervise(self, connector: Arc<dyn Connector>, backoff: Backoff) {
        let name = self.inner.name;
        let login = self.label();
        let mut failures = 0_u32;
        loop {
            *self.attempt() = Attempt {
                live: true,
                got_through: false,
            };
            let outcome = tokio::select! {
                biased;
                () = self.inner.closing.cancelled() => return,
                outcome = connector.run(&self) => outcome,
            };
            let pause = {
                let mut attempt = self.attempt();
                attempt.live = false;
                if attempt.got_through {
                    failures = 0;
                }
                let why = match outcome {
                    Ok(()) => "the connection closed".to_owned(),
                    Err(e) if e.is_transient() => e.to_string(),
                    Err(e) => {
                        tracing::error!(link = name, %login, error = %e, "the network refused the connection; not retrying");
                        self.report(&attempt, BridgeState::BadCredentials(e.to_string()));
                        return;
                    }
                };
                let pause = backoff.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(link = name, %login, error = %why, ?pause, "connection lost; reconnecting");
                self.report(&attempt, BridgeState::TransientDisconnect(why));
                pause
            };
            tokio::select! {
                biased;
                () = self.inner.closing.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::login::Login;

    /// Records the states reported, as the host would show them.
    #[derive(Debug, Default)]
    struct States {
        bridge: Mutex<Vec<String>>,
        logins: Mutex<Vec<(String, String)>>,
        restored: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl HostPort for States {
        fn set_state(&self, state: BridgeState) {
            self.bridge.lock().expect("lock").push(state.to_string());
        }
        fn state(&self) -> BridgeState {
            BridgeState::Starting
        }
        fn set_login_state(&self, login: &LoginId, state: BridgeState) {
            let entry = (login.to_string(), state.to_string());
            self.logins.lock().expect("lock").push(entry);
        }
        fn login_state(&self, _login: &LoginId) -> Option<BridgeState> {
            None
        }
        async fn logins(&self) -> Result<Vec<Login>, PluginError> {
            Ok(Vec::new())
        }
        fn network_restored(&self) {
            self.restored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Fails as `script` says, attempt after attempt: `Ok(true)` connects and then drops,
    /// `Ok(false)` connects and stays, `Err(true)` is a transient failure, `Err(false)` a
    /// permanent one.
    struct Scripted {
        script: Vec<Result<bool, bool>>,
        attempts: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Connector for Scripted {
        async fn run(&self, link: &Link) -> Result<(), PluginError> {
            let attempt = self.attempts.fetch_add(1, Ordering::Relaxed);
            match self.script.get(attempt).copied().unwrap_or(Ok(false)) {
                Ok(drops) => {
                    link.connected();
                    if !drops {
                        link.closing().cancelled().await;
                    }
                    Ok(())
                }
                Err(true) => Err(PluginError::network_down("unreachable")),
                Err(false) => Err(PluginError::permanent("wrong password")),
            }
        }
    }

    const FAST: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));

    fn link(states: &Arc<States>, login: Option<&str>) -> Link {
        let host: Arc<dyn HostPort> = Arc::clone(states) as Arc<dyn HostPort>;
        Link::new(
            "test",
            login.map(LoginId::from),
            host,
            CancellationToken::new(),
        )
    }

    #[tokio::test]
    async fn a_dropped_connection_is_retried_until_it_holds_and_its_states_are_reported() {
        let states = Arc::new(States::default());
        let link = link(&states, None);
        let connector = Arc::new(Scripted {
            script: vec![Err(true), Ok(true), Err(true), Ok(false)],
            attempts: AtomicUsize::new(0),
        });
        let task = tokio::spawn(link.clone().supervise(Arc::clone(&connector) as _, FAST));
        while connector.attempts.load(Ordering::Relaxed) < 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        link.close();
        task.await
            .expect("the supervisor ends when the link closes");
        let seen = states.bridge.lock().expect("lock").clone();
        assert_eq!(
            seen,
            [
                "connecting",
                "disconnected for now (the network cannot be reached: unreachable)",
                "connected",
                "disconnected for now (the connection closed)",
                "disconnected for now (the network cannot be reached: unreachable)",
                "connected",
            ]
        );
        assert_eq!(states.restored.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn refused_credentials_stop_the_retries_and_show_on_the_login() {
        let states = Arc::new(States::default());
        let connector = Arc::new(Scripted {
            script: vec![Err(true), Err(false), Ok(false)],
            attempts: AtomicUsize::new(0),
        });
        link(&states, Some("user:alice"))
            .supervise(Arc::clone(&connector) as _, FAST)
            .await;
        assert_eq!(connector.attempts.load(Ordering::Relaxed), 2);
        let seen = states.logins.lock().expect("lock").clone();
        let last = seen.last().expect("states reported");
        assert_eq!(
            last,
            &(
                "user:alice".to_owned(),
                "refused its credentials (wrong password)".to_owned()
            )
        );
        assert!(states.bridge.lock().expect("lock").is_empty());
    }

    /// Connects, hands its link out, and drops at once (a broker closing right after its
    /// CONNACK), so that the bridge's own loop says `connected()` too late.
    struct DropsAtOnce {
        handed: Mutex<Option<Link>>,
    }

    #[async_trait::async_trait]
    impl Connector for DropsAtOnce {
        async fn run(&self, link: &Link) -> Result<(), PluginError> {
            *self.handed.lock().expect("lock") = Some(link.clone());
            Err(PluginError::network_down("closed right after connecting"))
        }
    }

    #[tokio::test]
    async fn a_late_connected_from_an_ended_attempt_and_reports_after_close_are_not_shown() {
        let states = Arc::new(States::default());
        let link = link(&states, None);
        let connector = Arc::new(DropsAtOnce {
            handed: Mutex::new(None),
        });
        let slow = Backoff::new(Duration::from_mins(1), Duration::from_mins(1));
        let task = tokio::spawn(link.clone().supervise(Arc::clone(&connector) as _, slow));
        while states.bridge.lock().expect("lock").len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let handed = connector.handed.lock().expect("lock").clone();
        handed.expect("the attempt ran").connected();
        link.close();
        link.connected();
        task.await
            .expect("the supervisor ends when the link closes");
        let seen = states.bridge.lock().expect("lock").clone();
        assert_eq!(
            seen,
            [
                "connecting",
                "disconnected for now (the network cannot be reached: closed right after connecting)",
            ]
        );
        assert_eq!(states.restored.load(Ordering::Relaxed), 0);
    }
}
