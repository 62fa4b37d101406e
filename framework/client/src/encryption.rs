//! The hook through which every room event the client sends is encrypted when its room is
//! (end-to-bridge encryption, installed by the runtime when it is turned on).

use ruma::{RoomId, UserId};

use crate::ClientError;

/// The type of encrypted room events.
pub const ENCRYPTED_EVENT: &str = "m.room.encrypted";

/// Encrypts events for encrypted rooms.
#[async_trait::async_trait]
pub trait RoomEncryptor: Send + Sync {
    /// The `m.room.encrypted` content to send instead of `content` (an event of type
    /// `event_type` that `sender` sends to `room_id`) when the room is encrypted; `None`
    /// when it is not.
    async fn encrypt(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event_type: &str,
        content: &[u8],
    ) -> Result<Option<bytes::Bytes>, ClientError>;
}
