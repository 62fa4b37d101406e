//! End-to-bridge encryption as the plug-in host uses it: the crypto crate's engine behind the
//! host's [`RoomDecryption`] port.

use std::sync::Arc;

use switchboard_crypto::Encryption;
use switchboard_host::decryption::{DecryptFailure, RoomDecryption};

/// The engine, for the host.
#[derive(Debug)]
pub(crate) struct HostDecryption(pub(crate) Arc<Encryption>);

#[async_trait::async_trait]
impl RoomDecryption for HostDecryption {
    async fn receive(&self, list: &str, body: &str) -> Result<(), String> {
        match self.0.receive(list, body).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_transient() => Err(e.to_string()),
            // What can never be taken (malformed) is logged and dropped, not retried.
            Err(e) => {
                tracing::warn!(list, error = %e, "cannot take what the homeserver pushed for the bot's device");
                Ok(())
            }
        }
    }

    fn observe(&self, room_id: &str, event_type: &str, content: &str) {
        self.0.observe(room_id, event_type, content);
    }

    async fn decrypt(&self, event: &str) -> Result<String, DecryptFailure> {
        self.0.decrypt(event).await.map_err(|e| DecryptFailure {
            reason: e.reason(),
            message: e.to_string(),
        })
    }
}
