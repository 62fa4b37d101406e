//! Typing notifications and read receipts (ephemeral events) of Matrix users in portals, for
//! bridges that show them on their network. Best effort: a failure is logged, not retried.

use std::collections::HashSet;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde::Deserialize;

use super::{BridgeHost, HostedBridge};
use crate::bridge::PortalKey;
use crate::bridge::from_matrix::{MatrixRead, MatrixTyping};
use crate::bridge::login::Via;
use crate::inbox::HandleError;
use crate::permission::PermissionLevel;

/// An ephemeral event as pushed to appservices (MSC2409: with its room).
#[derive(Deserialize)]
struct Edu {
    #[serde(rename = "type")]
    kind: String,
    room_id: Option<OwnedRoomId>,
    #[serde(default)]
    content: serde_json::Value,
}

impl BridgeHost {
    /// Hands typing notifications and read receipts in portals to their bridge.
    pub(crate) async fn handle_ephemeral(&self, raw: &str) {
        let Ok(edu) = serde_json::from_str::<Edu>(raw) else {
            return;
        };
        let Some(room_id) = edu.room_id else {
            return;
        };
        let Some((bridge, portal)) = self.portal_rooms.get(&room_id) else {
            return;
        };
        let Some(hosted) = self.bridge(&bridge) else {
            return;
        };
        if hosted.bridge.presence().is_none() {
            return;
        }
        let outcome = match edu.kind.as_str() {
            "m.typing" => self.typing(hosted, &portal, &room_id, &edu.content).await,
            "m.receipt" => self.receipts(hosted, &portal, &edu.content).await,
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            tracing::info!(bridge = %bridge, error = ?e, kind = %edu.kind, "not shown on the network");
        }
    }

    /// Whether `user` is one of Switchboard's own (the bot or a puppet).
    fn is_own(&self, user: &UserId) -> bool {
        self.bridges
            .iter()
            .any(|h| h.client.bot_user_id() == user || h.matrix.naming.remote_user(user).is_some())
    }

    /// Who started and who stopped typing since the last notification of the room.
    async fn typing(
        &self,
        hosted: &HostedBridge,
        portal: &PortalKey,
        room_id: &OwnedRoomId,
        content: &serde_json::Value,
    ) -> Result<(), HandleError> {
        #[derive(Deserialize)]
        struct Typing {
            #[serde(default)]
            user_ids: Vec<OwnedUserId>,
        }
        let now: HashSet<OwnedUserId> = Typing::deserialize(content)
            .map(|t| t.user_ids)
            .unwrap_or_default()
            .into_iter()
            .filter(|u| !self.is_own(u))
            .collect();
        let before = self
            .typing
            .lock()
            .map(|mut rooms| {
                rooms
                    .insert(room_id.clone(), now.clone())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let changes = now
            .difference(&before)
            .map(|u| (u.clone(), true))
            .chain(before.difference(&now).map(|u| (u.clone(), false)));
        for (user_id, typing) in changes {
            if let Some(via) = hosted.quiet_via(&user_id).await?
                && let Some(handler) = hosted.bridge.presence()
            {
                let typing = MatrixTyping {
                    user_id,
                    via,
                    typing,
                };
                handler
                    .handle_matrix_typing(&hosted.ctx, portal, &typing)
                    .await?;
            }
        }
        Ok(())
    }

    /// Read receipts on bridged messages.
    async fn receipts(
        &self,
        hosted: &HostedBridge,
        portal: &PortalKey,
        content: &serde_json::Value,
    ) -> Result<(), HandleError> {
        let Some(events) = content.as_object() else {
            return Ok(());
        };
        for (event_id, receipts) in events {
            let Ok(event_id) = OwnedEventId::try_from(event_id.as_str()) else {
                continue;
            };
            let readers = receipts
                .get("m.read")
                .and_then(serde_json::Value::as_object)
                .map(|users| users.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            let readers: Vec<OwnedUserId> = readers
                .into_iter()
                .filter_map(|u| OwnedUserId::try_from(u).ok())
                .filter(|u| !self.is_own(u))
                .collect();
            if readers.is_empty() {
                continue;
            }
            let Some(target) = hosted.mapped(portal, &event_id).await? else {
                continue;
            };
            for user_id in readers {
                if let Some(via) = hosted.quiet_via(&user_id).await?
                    && let Some(handler) = hosted.bridge.presence()
                {
                    let read = MatrixRead {
                        user_id,
                        via,
                        target: target.remote_message_id.clone(),
                    };
                    handler
                        .handle_matrix_read(&hosted.ctx, portal, &read)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

impl HostedBridge {
    /// The login a user's typing or receipts would go with: their own, or none for a bridge
    /// that needs no login; `None` (not passed on) for relayed and unpermitted users.
    pub(super) async fn quiet_via(&self, user: &UserId) -> Result<Option<Via>, HandleError> {
        if self.permissions.level(user) < PermissionLevel::User {
            return Ok(None);
        }
        if let Some(own) = self.logins_of(user).await?.into_iter().next() {
            return Ok(Some(Via::Own(own)));
        }
        let needs_login = self
            .bridge
            .logins()
            .is_some_and(crate::bridge::LoginHandler::login_required);
        Ok((!needs_login).then_some(Via::Bridge))
    }
}
