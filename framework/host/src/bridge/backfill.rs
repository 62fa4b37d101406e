//! History: when a portal room is created, the chat's latest messages are shown in it first,
//! oldest first, with the times they were sent on the network, before any live message (the
//! portal's lock is held throughout). Each is bridged once: a message already shown (or one
//! arriving live later with the same id) is not shown again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;

use super::ids::PortalKey;
use super::matrix::{BridgeMatrix, PortalInfo};
use super::remote::RemoteEvent;
use switchboard_api::bridge::Bridge;

/// Where a bridge's Matrix side gets history from: the bridge (held weakly: the bridge owns
/// its Matrix side, not the other way round) and how many messages to ask for.
#[derive(Clone)]
pub(crate) struct HistorySource {
    pub(crate) bridge: Weak<dyn Bridge>,
    pub(crate) limit: usize,
}

impl std::fmt::Debug for HistorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistorySource")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl BridgeMatrix {
    /// Shows the history of a portal whose room was just created; the portal lock is held.
    /// Failures are logged: a room without its history is still a working portal.
    pub(super) fn backfill_locked<'a>(
        &'a self,
        key: &'a PortalKey,
        info: &'a PortalInfo,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let Some(source) = &self.history else {
                return;
            };
            let Some(bridge) = source.bridge.upgrade() else {
                return;
            };
            let Some(handler) = bridge.backfill() else {
                return;
            };
            let events = match handler.fetch_history(key, source.limit).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(bridge = %self.info.id, chat = %key.chat, error = %e, "cannot fetch the chat's history");
                    return;
                }
            };
            let mut shown = 0_usize;
            for event in events.iter().take(source.limit) {
                let bridged = match event {
                    RemoteEvent::Message(message) => {
                        self.bridge_text_locked(key, info, message).await
                    }
                    RemoteEvent::Media(media) => self.bridge_media_locked(key, info, media).await,
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
