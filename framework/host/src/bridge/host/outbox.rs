//! The outbox: a Matrix event the network cannot take now waits in the database and is
//! retried, in order per portal, with growing pauses, until it is delivered or given up (its
//! sender is then told why); a portal's new events queue behind its waiting ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_api::event::RoomEvent;

use super::HostedBridge;
use crate::bridge::ids::PortalKey;
use crate::client::Backoff;
use crate::inbox::HandleError;

impl HostedBridge {
    /// Counts an outbox outcome (`queued`, `delivered`, `retry`, `given_up`) and keeps the
    /// depth gauge in step.
    fn count_outbox(&self, outcome: &str) {
        let metrics = &self.matrix.metrics;
        metrics
            .bridge_outbox
            .with_label_values(&[self.id(), outcome])
            .inc();
        match outcome {
            "queued" => metrics.bridge_outbox_depth.inc(),
            "delivered" | "given_up" => metrics.bridge_outbox_depth.dec(),
            _ => {}
        }
    }

    /// Whether `portal` has events waiting in the outbox (its new events queue behind them).
    fn is_waiting(&self, portal: &PortalKey) -> bool {
        self.waiting.lock().is_ok_and(|w| w.contains(portal))
    }

    /// Records whether `portal` has events waiting in the outbox.
    fn set_waiting(&self, portal: &PortalKey, waiting: bool) {
        if let Ok(mut set) = self.waiting.lock() {
            if waiting {
                set.insert(portal.clone());
            } else {
                set.remove(portal);
            }
        }
    }

    /// A live event of `portal`: delivered now, or queued in the outbox behind earlier ones
    /// or when the network cannot take it now.
    pub(super) async fn handle(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        raw: &str,
    ) -> Result<(), HandleError> {
        let _portal = self.outbound.lock(portal).await;
        self.tell_downtime_once(event).await;
        if self.is_waiting(portal) {
            return self.queue(portal, event, raw, 0, "").await;
        }
        match self.deliver_isolated(portal, event, raw).await {
            Ok(()) => Ok(()),
            Err(HandleError::Transient(reason)) => {
                tracing::info!(bridge = %self.id(), error = %reason, "the network cannot take the event now: it waits in the outbox");
                self.queue(portal, event, raw, 1, &reason).await
            }
            Err(HandleError::Permanent(reason)) => {
                self.tell_undelivered(event, &reason).await?;
                Err(HandleError::Permanent(reason))
            }
        }
    }

    /// Puts an event into the outbox (first tried after `attempts` pauses) and wakes the
    /// worker.
    pub(super) async fn queue(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        raw: &str,
        attempts: u32,
        reason: &str,
    ) -> Result<(), HandleError> {
        let now = self.ctx.clock().now_ms();
        let first_try = now + self.backoff_ms(attempts);
        let queued = self
            .store
            .outbox_queue(
                self.id(),
                portal,
                event.event_id.as_str(),
                raw,
                now,
                i64::from(attempts),
                first_try,
                reason,
            )
            .await?;
        self.set_waiting(portal, true);
        if queued {
            self.count_outbox("queued");
        }
        self.status.outbox().wake.notify_one();
        Ok(())
    }

    /// The pause after `attempts` failed attempts: 0, then 1 s doubling up to the maximum.
    fn backoff_ms(&self, attempts: u32) -> i64 {
        let Some(retry) = attempts.checked_sub(1) else {
            return 0;
        };
        let policy = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(self.policy.retry_max_interval_secs),
        );
        i64::try_from(policy.delay(retry).as_millis()).unwrap_or(i64::MAX)
    }

    /// Delivers what waits in the outbox, portal by portal, each in order, until shutdown.
    pub(super) async fn run_outbox(self: Arc<Self>) {
        let shutdown = self.ctx.shutdown().clone();
        let signal = self.status.outbox();
        loop {
            let retry_now = signal.retry_now.swap(false, Ordering::Relaxed);
            let next = match self.store.outbox_portals(self.id()).await {
                Ok(portals) => {
                    let mut next: Option<i64> = None;
                    for portal in portals {
                        if let Some(at) = self.drain(&portal, retry_now).await {
                            next = Some(next.map_or(at, |n| n.min(at)));
                        }
                    }
                    next
                }
                Err(e) => {
                    tracing::warn!(bridge = %self.id(), error = %e, "cannot read the outbox");
                    Some(self.ctx.clock().now_ms() + 5000)
                }
            };
            let pause = next.map_or(Duration::from_mins(1), |at| {
                Duration::from_millis(u64::try_from(at - self.ctx.clock().now_ms()).unwrap_or(0))
            });
            tokio::select! {
                () = signal.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Delivers the events of one portal that are due (all of them, once, when the network
    /// is back: `retry_now`), in order; returns when the next attempt is due if some are left.
    async fn drain(&self, portal: &PortalKey, mut retry_now: bool) -> Option<i64> {
        let _portal = self.outbound.lock(portal).await;
        loop {
            let entry = match self.store.outbox_head(self.id(), portal).await {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    self.set_waiting(portal, false);
                    return None;
                }
                Err(e) => {
                    tracing::warn!(bridge = %self.id(), error = %e, "cannot read the outbox");
                    return Some(self.ctx.clock().now_ms() + 5000);
                }
            };
            let now = self.ctx.clock().now_ms();
            if entry.next_attempt_at > now && !std::mem::take(&mut retry_now) {
                return Some(entry.next_attempt_at);
            }
            let Ok(event) = serde_json::from_str::<RoomEvent>(&entry.event) else {
                // Only events that decoded are queued; anything else cannot be delivered.
                tracing::error!(bridge = %self.id(), event_id = %entry.event_id, "an outbox entry does not decode; dropped");
                self.remove(entry.seq, "given_up").await;
                continue;
            };
            let outcome = self.deliver_isolated(portal, &event, &entry.event).await;
            let reason = match outcome {
                Ok(()) => {
                    // What the delivery recorded (its message-map entry) is stored before the
                    // outbox forgets the event: a crash in between must not lose it.
                    if let Err(e) = self.matrix.messages.settle().await {
                        tracing::warn!(bridge = %self.id(), event_id = %entry.event_id, error = %e, "delivered from the outbox, but its message-map entry is not stored yet; kept in the outbox");
                        return Some(now + self.backoff_ms(1));
                    }
                    tracing::info!(bridge = %self.id(), event_id = %entry.event_id, attempts = entry.attempts + 1, "delivered from the outbox");
                    self.remove(entry.seq, "delivered").await;
                    continue;
                }
                Err(HandleError::Permanent(reason)) => Some(reason),
                Err(HandleError::Transient(reason)) => {
                    let give_up_ms = i64::try_from(self.policy.give_up_after_secs)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1000);
                    if now.saturating_sub(entry.queued_at) < give_up_ms {
                        let attempts = u32::try_from(entry.attempts + 1).unwrap_or(u32::MAX);
                        let next = now + self.backoff_ms(attempts);
                        tracing::info!(bridge = %self.id(), event_id = %entry.event_id, attempts, error = %reason, "still undeliverable; retrying later");
                        self.count_outbox("retry");
                        if let Err(e) = self
                            .store
                            .outbox_retry_later(entry.seq, next, &reason)
                            .await
                        {
                            tracing::warn!(bridge = %self.id(), error = %e, "cannot record an outbox attempt");
                        }
                        return Some(next);
                    }
                    Some(format!(
                        "gave up after trying for {} s; the last error was: {reason}",
                        self.policy.give_up_after_secs
                    ))
                }
            };
            if let Some(reason) = reason {
                tracing::warn!(bridge = %self.id(), event_id = %entry.event_id, error = %reason, "giving up an outbox entry");
                if let Err(e) = self.tell_undelivered(&event, &reason).await {
                    tracing::warn!(bridge = %self.id(), error = ?e, "cannot tell the sender; retrying later");
                    return Some(now + 5000);
                }
                self.remove(entry.seq, "given_up").await;
            }
        }
    }

    /// Takes an entry out of the outbox, counted as `outcome`.
    async fn remove(&self, seq: i64, outcome: &str) {
        match self.store.outbox_remove(seq).await {
            Ok(()) => self.count_outbox(outcome),
            Err(e) => {
                tracing::warn!(bridge = %self.id(), error = %e, "cannot remove an outbox entry");
            }
        }
    }
}
