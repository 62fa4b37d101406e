//! Bad input from a network (a message too large, undecodable, or that a template cannot
//! show): logged, counted, and said in the portal room by the bridge bot — at most once a
//! minute per portal and reason, so a chatty broken device does not flood the room. The
//! messages around it are bridged as usual.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ruma::events::room::message::RoomMessageEventContent;

use super::ids::PortalKey;
use super::matrix::BridgeMatrix;
use crate::client::{Identity, derive_txn_id};

/// How often one portal is told about one kind of bad input.
const NOTICE_EVERY: Duration = Duration::from_mins(1);

/// When each portal was last told about each reason.
#[derive(Clone, Debug, Default)]
pub(crate) struct SkipNotices(Arc<Mutex<HashMap<(PortalKey, &'static str), Instant>>>);

impl SkipNotices {
    /// Whether the portal should be told now (and remembers that it was).
    fn due(&self, key: &PortalKey, reason: &'static str) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match last.get(&(key.clone(), reason)) {
            Some(at) if now.duration_since(*at) < NOTICE_EVERY => false,
            _ => {
                last.insert((key.clone(), reason), now);
                true
            }
        }
    }
}

impl BridgeMatrix {
    /// Reports something from the network that is not bridged (or not as sent) into the
    /// portal `key`: a log line, `switchboard_bridge_remote_skipped_total{bridge,reason}`, and
    /// a notice `⚠️ <detail>` from the bridge bot, at most once a minute per portal and
    /// `reason` (a short label such as `too_large`). Failing to send the notice is logged.
    pub async fn report_skipped(&self, key: &PortalKey, reason: &'static str, detail: &str) {
        let bridge = self.info.id.as_str();
        tracing::warn!(bridge, chat = %key.chat, reason, detail, "not bridged as sent");
        self.metrics
            .bridge_remote_skipped
            .with_label_values(&[bridge, reason])
            .inc();
        if !self.skip_notices.due(key, reason) {
            return;
        }
        let room = match self.known_room(key).await {
            Ok(Some(room)) => room,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(bridge, error = %e, "cannot find the portal room for a notice");
                return;
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_string();
        let txn_id = derive_txn_id(&[bridge, "skipped", reason, &now]);
        let content = RoomMessageEventContent::notice_plain(format!("⚠️ {detail}"));
        if let Err(e) = self
            .client
            .send_message(&room, txn_id, &content, Identity::bot(), None)
            .await
        {
            tracing::warn!(bridge, error = %e, "cannot send the notice about a skipped message");
        }
    }
}
