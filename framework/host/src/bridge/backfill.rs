//! History: when a portal room is created, the chat's latest messages are shown in it first,
//! oldest first, with the times they were sent on the network, before any live message (the
//! portal's lock is held throughout). Each is bridged once: a message already shown (or one
//! arriving live later with the same id) is not shown again.

use std::future::Future;
use std::pin::Pin;

use super::ids::PortalKey;
use super::matrix::BridgeMatrix;
use super::remote::RemoteEvent;

impl BridgeMatrix {
    /// Shows the history of a portal whose room was just created; the portal lock is held.
    /// Failures are logged: a room without its history is still a working portal.
    pub(super) fn backfill_locked<'a>(
        &'a self,
        key: &'a PortalKey,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let limit = self.history_limit;
            if limit == 0 {
                return;
            }
            let Some(bridge) = self.bridge() else {
                return;
            };
            let Some(handler) = bridge.backfill() else {
                return;
            };
            let events = match handler.fetch_history(key, limit).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(bridge = %self.info.id, chat = %key.chat, error = %e, "cannot fetch the chat's history");
                    return;
                }
            };
            let mut shown = 0_usize;
            for event in events.iter().take(limit) {
                let bridged = match event {
                    RemoteEvent::Message(message) => self.bridge_text_locked(key, message).await,
                    RemoteEvent::Media(media) => self.bridge_media_locked(key, media).await,
                    _ => continue,
                };
                match bridged {
                    Ok(_) => shown += 1,
                    Err(e) => {
                        tracing::warn!(bridge = %self.info.id, chat = %key.chat, error = %e, "a message of the history is not shown");
                    }
                }
            }
            tracing::info!(bridge = %self.info.id, chat = %key.chat, shown, "history shown in the new portal");
        })
    }
}
