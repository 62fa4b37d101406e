//! The host's side of end-to-bridge encryption: what it asks of the encryption engine (which
//! the runtime installs when encryption is on) before plug-ins see an event.

/// Why an encrypted event cannot be shown in plain text.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct DecryptFailure {
    /// A short label (`missing_key`, `untrusted`, `malformed`, `failed`), for metrics.
    pub reason: &'static str,
    /// What happened, for the log and the sender.
    pub message: String,
}

/// The encryption engine, as the host uses it.
#[async_trait::async_trait]
pub trait RoomDecryption: Send + Sync + std::fmt::Debug {
    /// Takes what the homeserver pushed for the appservice's devices: `list` is the inbox
    /// list it came in (`to_device`, `device_lists`, `otk_counts`, `fallback_keys`). An
    /// `Err` is transient (the item is retried).
    async fn receive(&self, list: &str, body: &str) -> Result<(), String>;

    /// Learns from a room event what encrypting to the room needs (encryption turned on,
    /// members changed).
    fn observe(&self, room_id: &str, event_type: &str, content: &str);

    /// The plain-text form of an encrypted room event, as JSON: the same event id, sender,
    /// room and time, the decrypted type and content.
    async fn decrypt(&self, event: &str) -> Result<String, DecryptFailure>;
}
