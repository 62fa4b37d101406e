//! Chats started from Matrix: a Matrix user invites a remote user's puppet to a room that is
//! not a portal yet. The bridge opens the chat on its network, the puppet joins and brings the
//! bridge bot, and the room becomes the chat's portal. An invite that cannot be honoured is
//! declined by the puppet, with the reason (clients show it).

use ruma::api::client::membership;
use ruma::{RoomId, UserId};

use super::{BridgeHost, HostedBridge};
use crate::bridge::ids::RemoteUserId;
use crate::client::Identity;
use crate::inbox::HandleError;
use crate::permission::PermissionLevel;
use switchboard_api::event::RoomEvent;

impl BridgeHost {
    /// The homeserver asks about a user id: if it is the puppet of a remote user a bridge
    /// knows, the puppet is created (with their profile) and `true` returned.
    pub(crate) async fn query_user(&self, user_id: &UserId) -> bool {
        for hosted in &self.bridges {
            let matrix = &hosted.matrix;
            let (Some(handler), Some(remote)) = (
                hosted.bridge.direct_chats(),
                matrix.naming.remote_user(user_id),
            ) else {
                continue;
            };
            let profile = match handler.resolve_user(&hosted.ctx, &remote).await {
                Ok(Some(profile)) => profile,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(bridge = %hosted.id(), %user_id, error = %e, "cannot look the remote user up");
                    return false;
                }
            };
            return match matrix.ensure_puppet(&remote, &profile).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(bridge = %hosted.id(), %user_id, error = %e, "cannot create the puppet");
                    false
                }
            };
        }
        false
    }

    /// A Matrix user invited a bridge's puppet to a room that is not a portal: `Some` when the
    /// invitee is one of the bridges' puppets (the invite is then handled), `None` otherwise.
    pub(crate) async fn handle_puppet_invite(
        &self,
        event: &RoomEvent,
    ) -> Option<Result<(), HandleError>> {
        if event.membership().as_deref() != Some("invite") {
            return None;
        }
        let invitee = UserId::parse(event.state_key.as_deref()?).ok()?;
        let (hosted, remote) = self.bridges.iter().find_map(|hosted| {
            let remote = hosted.matrix.naming.remote_user(&invitee)?;
            Some((hosted, remote))
        })?;
        let level = self.permissions.level(&event.sender);
        Some(
            hosted
                .start_direct_chat(event, &invitee, &remote, level)
                .await,
        )
    }
}

impl HostedBridge {
    /// Opens the chat `puppet` (of `remote`) was invited to by `event`'s sender, or declines.
    async fn start_direct_chat(
        &self,
        event: &RoomEvent,
        puppet: &UserId,
        remote: &RemoteUserId,
        level: PermissionLevel,
    ) -> Result<(), HandleError> {
        let network = self.matrix.info().displayname.clone();
        let Some(handler) = self.bridge.direct_chats() else {
            let reason = format!("chats cannot be started from Matrix on {network}");
            return self.decline(&event.room_id, puppet, &reason).await;
        };
        if level < PermissionLevel::User {
            let reason = format!("you may not start chats on {network}");
            return self.decline(&event.room_id, puppet, &reason).await;
        }
        let Some(profile) = handler.resolve_user(&self.ctx, remote).await? else {
            let reason = format!("{remote} is not a user of {network}");
            return self.decline(&event.room_id, puppet, &reason).await;
        };
        let key = match handler
            .start_direct_chat(&self.ctx, &event.sender, remote)
            .await
        {
            Ok(key) => key,
            Err(refused) if !refused.is_transient() => {
                return self
                    .decline(&event.room_id, puppet, &refused.to_string())
                    .await;
            }
            Err(transient) => return Err(transient.into()),
        };
        let matrix = &self.matrix;
        // The room is a portal before anyone sees the puppet join: the first message sent
        // after it is bridged.
        if let Err(existing) = matrix.adopt_room(&key, &event.room_id).await?
            && existing != event.room_id
        {
            let reason =
                format!("you have a chat with {remote} already: https://matrix.to/#/{existing}");
            return self.decline(&event.room_id, puppet, &reason).await;
        }
        matrix.ensure_puppet(remote, &profile).await?;
        self.client
            .join(
                <&ruma::RoomOrAliasId>::from(&*event.room_id),
                Identity::user(puppet),
            )
            .await?;
        self.client
            .remember_membership(&event.room_id, puppet, true)
            .await;
        self.bring_bot(&event.room_id, puppet).await?;
        tracing::info!(bridge = %self.id(), requester = %event.sender, %remote, room_id = %event.room_id, "direct chat started from Matrix");
        Ok(())
    }

    /// The puppet invites the bridge bot, which joins (for commands and notices).
    async fn bring_bot(&self, room_id: &RoomId, puppet: &UserId) -> Result<(), HandleError> {
        let bot = self.client.bot_user_id().to_owned();
        let invite = membership::invite_user::v3::Request::new(
            room_id.to_owned(),
            membership::invite_user::v3::InviteUserId::new(bot.clone()).into(),
        );
        match self.client.send(invite, Identity::user(puppet)).await {
            Ok(_) => {}
            // Already invited or in the room (a retry).
            Err(e) if e.status() == Some(403) => {}
            Err(e) => return Err(e.into()),
        }
        self.client.ensure_joined(room_id, &bot).await?;
        Ok(())
    }

    /// The puppet leaves the room it was invited to (declining the invite) with `reason`.
    async fn decline(
        &self,
        room_id: &RoomId,
        puppet: &UserId,
        reason: &str,
    ) -> Result<(), HandleError> {
        tracing::info!(bridge = %self.id(), %room_id, %puppet, reason, "declining an invite");
        self.client.ensure_registered(puppet).await?;
        let mut leave = membership::leave_room::v3::Request::new(room_id.to_owned());
        leave.reason = Some(reason.to_owned());
        match self.client.send(leave, Identity::user(puppet)).await {
            Ok(_) => Ok(()),
            // The invite was withdrawn meanwhile.
            Err(e) if e.status() == Some(403) || e.status() == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
