//! Group commit of the small writes handling makes per message (message-map entries, bridges'
//! delivery state): writes are queued, and whoever needs them durable — the inbox before it
//! marks events handled, a bridge before it acknowledges a message to its network, a ticker a
//! few times a second — stores everything queued so far in one statement or transaction.
//!
//! On SQLite every statement is a hand-off to the database thread and back, which costs far
//! more than the statement itself; one write per moment instead of one per message is what
//! keeps a bridged message within a few times the cost of an echo.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{GroupWrite, Store, StoreError};

/// How often queued writes are stored when nobody asks for them sooner.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// The queue of writes and how far it has been stored. Cloning shares it.
#[derive(Clone, Debug)]
pub(crate) struct GroupCommit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    state: Mutex<State>,
    /// Woken after every attempt to store a group.
    stored: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Writes not yet stored, oldest first; the first is write number `written + 1`.
    queued: Vec<GroupWrite>,
    /// Writes queued so far (the number of the latest).
    submitted: u64,
    /// Writes stored so far: every write up to this number is durable.
    written: u64,
    /// A caller is storing a group now.
    writing: bool,
}

impl GroupCommit {
    /// An empty queue in front of `store`.
    pub(crate) fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                state: Mutex::default(),
                stored: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `write`; it is durable after the next [`GroupCommit::settle`] (or tick). Returns
    /// its number.
    pub(crate) fn submit(&self, write: GroupWrite) -> u64 {
        let mut state = self.state();
        state.queued.push(write);
        state.submitted += 1;
        state.submitted
    }

    /// Writes stored so far: every write numbered up to this is durable.
    pub(crate) fn written(&self) -> u64 {
        self.state().written
    }

    /// Waits until every write queued before the call is stored. Stores them itself (with
    /// whatever else is queued) unless another caller is doing so; each call makes at most
    /// one attempt, and returns its error.
    pub(crate) async fn settle(&self) -> Result<(), StoreError> {
        let target = self.state().submitted;
        // Let those submitting at the same moment (futures polled together) queue their
        // writes first: they go into this group.
        tokio::task::yield_now().await;
        loop {
            let stored = self.inner.stored.notified();
            tokio::pin!(stored);
            stored.as_mut().enable();
            let group = {
                let mut state = self.state();
                if state.written >= target {
                    return Ok(());
                }
                if state.writing {
                    None
                } else {
                    state.writing = true;
                    Some((std::mem::take(&mut state.queued), state.submitted))
                }
            };
            let Some((writes, up_to)) = group else {
                stored.await;
                continue;
            };
            let mut attempt = Attempt {
                commit: self,
                writes: Some(writes),
            };
            let outcome = self
                .inner
                .store
                .write_group(attempt.writes.as_deref().unwrap_or_default())
                .await;
            attempt.finish(outcome.is_ok().then_some(up_to));
            outcome?;
        }
    }

    /// Stores what is queued every [`TICK`] until `shutdown`, then once more; a failure is
    /// logged and tried again at the next tick (the writes stay queued, in order).
    pub(crate) async fn run_ticker(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(TICK) => false,
                () = shutdown.cancelled() => true,
            };
            let pending = {
                let state = self.state();
                state.submitted > state.written
            };
            if pending {
                match self.settle().await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(50) {
                            tracing::error!(error = %e, failures, "cannot store the message map and the bridges' state; retrying");
                        }
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }
}

/// A group being stored: put back in front of the queue unless it was stored (also when the
/// caller is cancelled halfway — every write is idempotent, so storing it again is harmless).
struct Attempt<'a> {
    commit: &'a GroupCommit,
    writes: Option<Vec<GroupWrite>>,
}

impl Attempt<'_> {
    /// Ends the attempt: the group was stored up to write `stored`, or (`None`) not at all.
    fn finish(&mut self, stored: Option<u64>) {
        let writes = self.writes.take();
        let mut state = self.commit.state();
        state.writing = false;
        match stored {
            Some(up_to) => state.written = state.written.max(up_to),
            None => {
                if let Some(mut writes) = writes {
                    writes.append(&mut state.queued);
                    state.queued = writes;
                }
            }
        }
        drop(state);
        self.commit.inner.stored.notify_waiters();
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.writes.is_some() {
            self.finish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{sample_record, temp_store as store};
    use switchboard_api::ids::{PortalKey, RemoteMessageId};

    fn message(n: u32) -> GroupWrite {
        GroupWrite::Message {
            bridge: "b".into(),
            record: sample_record(n),
        }
    }

    #[tokio::test]
    async fn writes_queued_by_many_are_stored_together_and_settled_for_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let commit = GroupCommit::new(store.clone());
        for n in 0..100 {
            commit.submit(message(n));
        }
        assert_eq!(
            store.message_count().await.expect("count"),
            0,
            "queued only"
        );
        let settles = (0..10).map(|_| commit.settle());
        for outcome in futures_util::future::join_all(settles).await {
            outcome.expect("settled");
        }
        assert_eq!(store.message_count().await.expect("count"), 100);
        assert_eq!(commit.written(), 100);
    }

    #[tokio::test]
    async fn a_failed_group_stays_queued_in_order_and_is_stored_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let commit = GroupCommit::new(store.clone());
        commit.submit(message(1));
        store.close().await;
        commit.settle().await.expect_err("the database is closed");
        assert_eq!(commit.written(), 0);
        commit.submit(message(2));
        let reopened = GroupCommit {
            inner: Arc::new(Inner {
                store: self::store(&dir).await,
                state: Mutex::new(std::mem::take(&mut *commit.state())),
                stored: Notify::new(),
            }),
        };
        reopened.settle().await.expect("stored");
        assert_eq!(reopened.written(), 2);
        let key = PortalKey::shared("chat");
        for n in ["m1", "m2"] {
            let id = RemoteMessageId(n.into());
            assert!(
                reopened
                    .inner
                    .store
                    .message_event("b", &key, &id, "")
                    .await
                    .expect("read")
                    .is_some()
            );
        }
    }

    #[tokio::test]
    async fn a_cancelled_settle_puts_its_group_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let commit = GroupCommit::new(store.clone());
        commit.submit(message(1));
        {
            let settle = commit.settle();
            tokio::pin!(settle);
            // Polled once: it took the group and started writing; then it is dropped.
            let _ = futures_util::poll!(settle.as_mut());
        }
        assert!(!commit.state().writing);
        commit.settle().await.expect("stored");
        assert_eq!(store.message_count().await.expect("count"), 1);
    }
}
