//! What the client remembers about the users it manages (registered puppets and bots, the
//! profile last set for them, the rooms they joined), so that the requests that make sure of
//! them are sent once. The storage is the caller's: Switchboard's store implements
//! [`ManagedUsers`].

use ruma::{RoomId, UserId};

/// An error of the storage behind [`ManagedUsers`] (the client logs it and goes on: what it
/// remembers only saves requests).
pub type MemoryError = Box<dyn std::error::Error + Send + Sync>;

/// A user of our namespaces as last set up by Switchboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedUser {
    /// Display name last written.
    pub displayname: Option<String>,
    /// Avatar URL last written.
    pub avatar_url: Option<String>,
}

/// Where the client remembers the users it registered, their profiles and their joined rooms.
#[async_trait::async_trait]
pub trait ManagedUsers: Send + Sync + std::fmt::Debug {
    /// The user as last set up, if it was registered.
    async fn managed_user(&self, user_id: &UserId) -> Result<Option<ManagedUser>, MemoryError>;

    /// Records that `user_id` is registered, with the profile last set.
    async fn put_managed_user(
        &self,
        user_id: &UserId,
        user: &ManagedUser,
    ) -> Result<(), MemoryError>;

    /// Whether `user_id` is known to be joined to `room_id`.
    async fn is_member(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool, MemoryError>;

    /// Records that `user_id` joined (`true`) or left `room_id`.
    async fn set_member(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        joined: bool,
    ) -> Result<(), MemoryError>;
}
