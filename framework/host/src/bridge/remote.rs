//! What happens on the remote network, as one typed enum a bridge hands to the framework:
//! [`BridgeMatrix::apply`] turns each into the right Matrix events in the portal, from the right
//! puppet, once, and in order per portal.

use std::time::Duration;

use serde_json::json;

use super::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use super::matrix::{BridgeError, BridgeMatrix, Bridged, Mapped, PuppetProfile, build_error};
use crate::client::{Identity, derive_txn_id};
pub use switchboard_api::remote::{Applied, RemoteEvent, RemoteReaction};

/// The message-map part under which a reaction of `sender` (a Matrix or remote user id) to a
/// message is recorded.
pub(crate) fn reaction_part(sender: &str, key: &str) -> String {
    format!("reaction\u{1f}{sender}\u{1f}{key}")
}

/// The reaction key recorded in a message-map part, if the part records a reaction.
pub(crate) fn reaction_key(part: &str) -> Option<&str> {
    let rest = part.strip_prefix("reaction\u{1f}")?;
    rest.split_once('\u{1f}').map(|(_, key)| key)
}

/// A chat's name, topic and avatar as they changed (`None`: unchanged).
struct ChatInfo<'a> {
    name: Option<&'a str>,
    topic: Option<&'a str>,
    avatar_url: Option<&'a str>,
}

/// How long a remote "typing" lasts unless renewed or stopped.
const TYPING_TIMEOUT: Duration = Duration::from_secs(30);

impl BridgeMatrix {
    /// Applies something that happened in the remote chat of portal `key` (whose room is
    /// created, as the bridge's `chat_info` describes it, when a message needs it). Messages,
    /// edits, deletions and reactions of one portal are applied one at a time, in the order the calls came, and
    /// never twice (they are in the message map); typing, read markers, memberships, chat info
    /// and profiles are applied as they come (repeating them changes nothing).
    pub async fn apply(
        &self,
        key: &PortalKey,
        event: &RemoteEvent,
    ) -> Result<Applied, BridgeError> {
        match event {
            RemoteEvent::Message(message) => {
                self.bridge_text(key, message).await.map(Applied::Bridged)
            }
            RemoteEvent::Edit { target, edit } => {
                self.bridge_edit(key, target, edit).await.map(Applied::from)
            }
            RemoteEvent::Media(media) => self.bridge_media(key, media).await.map(Applied::Bridged),
            RemoteEvent::Deletion { target, part } => Ok(self
                .bridge_deletion(key, target, part)
                .await?
                .map_or(Applied::Unmapped, |_| Applied::Done)),
            RemoteEvent::Reaction(reaction) => self.bridge_reaction(key, reaction).await,
            RemoteEvent::ReactionRemoved(reaction) => {
                self.bridge_reaction_removal(key, reaction).await
            }
            RemoteEvent::Typing { sender, typing } => {
                self.bridge_typing(key, sender, *typing).await
            }
            RemoteEvent::ReadUpTo { sender, target } => {
                self.bridge_read_marker(key, sender, target).await
            }
            RemoteEvent::Membership {
                sender,
                profile,
                joined,
            } => self.bridge_membership(key, sender, profile, *joined).await,
            RemoteEvent::ChatInfo {
                name,
                topic,
                avatar_url,
            } => {
                let info = ChatInfo {
                    name: name.as_deref(),
                    topic: topic.as_deref(),
                    avatar_url: avatar_url.as_deref(),
                };
                self.bridge_chat_info(key, &info).await
            }
            RemoteEvent::Profile { sender, profile } => {
                self.ensure_puppet(sender, profile).await?;
                Ok(Applied::Done)
            }
            RemoteEvent::State {
                event_type,
                state_key,
                content,
            } => {
                self.bridge_state_event(key, event_type, state_key, content)
                    .await
            }
        }
    }

    /// The puppet of `sender`, registered, in profile and joined to `room_id`.
    async fn puppet_in(
        &self,
        room_id: &ruma::RoomId,
        sender: &RemoteUserId,
        profile: &PuppetProfile,
    ) -> Result<ruma::OwnedUserId, BridgeError> {
        let puppet = self.ensure_puppet(sender, profile).await?;
        self.client.ensure_joined(room_id, &puppet).await?;
        Ok(puppet)
    }

    /// Shows a remote reaction on the bridged message, from the reacting user's puppet, once.
    async fn bridge_reaction(
        &self,
        key: &PortalKey,
        reaction: &RemoteReaction,
    ) -> Result<Applied, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        let part = reaction_part(reaction.sender.as_str(), &reaction.key);
        if let Some(event_id) = self.mapped_event(key, &reaction.target, &part).await? {
            return Ok(Applied::Bridged(Bridged::AlreadyBridged(event_id)));
        }
        let (Some(target), Some(room_id)) = (
            self.mapped_event(key, &reaction.target, "").await?,
            self.known_room(key).await?,
        ) else {
            return Ok(Applied::Unmapped);
        };
        let speaker = self
            .speaker_in(&room_id, &reaction.sender, &reaction.sender_profile)
            .await?;
        let content = json!({
            "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": reaction.key },
        });
        let sent = Mapped {
            remote_id: &reaction.target,
            part: &part,
            sent_at_ms: None,
        };
        let event_id = self
            .send_mapped(&room_id, &speaker, key, "m.reaction", &sent, content)
            .await?;
        Ok(Applied::Bridged(Bridged::Sent(event_id)))
    }

    /// Takes a bridged remote reaction back (its puppet redacts it).
    async fn bridge_reaction_removal(
        &self,
        key: &PortalKey,
        reaction: &RemoteReaction,
    ) -> Result<Applied, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        let part = reaction_part(reaction.sender.as_str(), &reaction.key);
        let (Some(event_id), Some(room_id)) = (
            self.mapped_event(key, &reaction.target, &part).await?,
            self.known_room(key).await?,
        ) else {
            return Ok(Applied::Unmapped);
        };
        let speaker = self
            .speaker_in(&room_id, &reaction.sender, &reaction.sender_profile)
            .await?;
        let txn_id = derive_txn_id(&["bridge-unreact", &self.info.id, event_id.as_str()]);
        let request = ruma::api::client::redact::redact_event::v3::Request::new(
            room_id,
            event_id.clone(),
            txn_id,
        );
        self.client.send(request, speaker.identity()).await?;
        // The same reaction may be given again later: it is a new event then.
        self.messages.forget_event(event_id.as_str()).await?;
        Ok(Applied::Done)
    }

    /// Shows (or stops showing) a remote user as typing in the portal.
    async fn bridge_typing(
        &self,
        key: &PortalKey,
        sender: &RemoteUserId,
        typing: bool,
    ) -> Result<Applied, BridgeError> {
        use ruma::api::client::typing::create_typing_event::v3::{Request, Typing, TypingInfo};
        let Some(room_id) = self.known_room(key).await? else {
            return Ok(Applied::Unmapped);
        };
        let puppet = self
            .puppet_in(&room_id, sender, &PuppetProfile::default())
            .await?;
        let state = if typing {
            Typing::Yes(TypingInfo::new(TYPING_TIMEOUT))
        } else {
            Typing::No
        };
        self.client
            .send(
                Request::new(puppet.clone(), room_id, state),
                Identity::user(&puppet),
            )
            .await?;
        Ok(Applied::Done)
    }

    /// Moves a remote user's read marker (receipt) to a bridged message.
    async fn bridge_read_marker(
        &self,
        key: &PortalKey,
        sender: &RemoteUserId,
        target: &RemoteMessageId,
    ) -> Result<Applied, BridgeError> {
        use ruma::api::client::receipt::create_receipt::v3::{ReceiptType, Request};
        let (Some(event_id), Some(room_id)) = (
            self.mapped_event(key, target, "").await?,
            self.known_room(key).await?,
        ) else {
            return Ok(Applied::Unmapped);
        };
        let puppet = self
            .puppet_in(&room_id, sender, &PuppetProfile::default())
            .await?;
        self.client
            .send(
                Request::new(room_id, ReceiptType::Read, event_id),
                Identity::user(&puppet),
            )
            .await?;
        Ok(Applied::Done)
    }

    /// A remote user's puppet joins or leaves the portal.
    async fn bridge_membership(
        &self,
        key: &PortalKey,
        sender: &RemoteUserId,
        profile: &PuppetProfile,
        joined: bool,
    ) -> Result<Applied, BridgeError> {
        let Some(room_id) = self.known_room(key).await? else {
            return Ok(Applied::Unmapped);
        };
        let puppet = self.ensure_puppet(sender, profile).await?;
        if joined {
            self.client.ensure_joined(&room_id, &puppet).await?;
        } else {
            let request =
                ruma::api::client::membership::leave_room::v3::Request::new(room_id.clone());
            match self.client.send(request, Identity::user(&puppet)).await {
                Ok(_) => {}
                // Not in the room (any more): nothing to do.
                Err(e) if e.status() == Some(403) || e.status() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
            self.client
                .remember_membership(&room_id, &puppet, false)
                .await;
        }
        Ok(Applied::Done)
    }

    /// Renames the portal room or changes its topic, as the bridge bot.
    async fn bridge_state_event(
        &self,
        key: &PortalKey,
        event_type: &str,
        state_key: &str,
        content: &serde_json::Value,
    ) -> Result<Applied, BridgeError> {
        use ruma::api::client::state::send_state_event::v3::Request;
        let Some(room_id) = self.known_room(key).await? else {
            return Ok(Applied::Unmapped);
        };
        let raw = serde_json::value::to_raw_value(content)
            .map_err(|e| build_error("state::send_state_event", &e))?;
        let request = Request::new_raw(
            room_id,
            event_type.into(),
            state_key.to_owned(),
            ruma::serde::Raw::from_json(raw),
        );
        self.client.send(request, Identity::bot()).await?;
        Ok(Applied::Done)
    }

    async fn bridge_chat_info(
        &self,
        key: &PortalKey,
        info: &ChatInfo<'_>,
    ) -> Result<Applied, BridgeError> {
        use ruma::api::client::state::send_state_event::v3::Request;
        use ruma::events::room::{
            avatar::RoomAvatarEventContent, name::RoomNameEventContent,
            topic::RoomTopicEventContent,
        };
        let Some(room_id) = self.known_room(key).await? else {
            return Ok(Applied::Unmapped);
        };
        let build = |e: serde_json::Error| build_error("state::send_state_event", &e);
        if let Some(name) = info.name {
            let content = RoomNameEventContent::new(name.to_owned());
            let request = Request::new(room_id.clone(), &ruma::events::EmptyStateKey, &content)
                .map_err(build)?;
            self.client.send(request, Identity::bot()).await?;
        }
        if let Some(topic) = info.topic {
            let content = RoomTopicEventContent::new(topic.to_owned());
            let request = Request::new(room_id.clone(), &ruma::events::EmptyStateKey, &content)
                .map_err(build)?;
            self.client.send(request, Identity::bot()).await?;
        }
        if let Some(url) = info.avatar_url {
            let mut content = RoomAvatarEventContent::new();
            content.url = Some(url.into());
            let request = Request::new(room_id.clone(), &ruma::events::EmptyStateKey, &content)
                .map_err(build)?;
            self.client.send(request, Identity::bot()).await?;
        }
        Ok(Applied::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaction_parts_round_trip_and_plain_parts_are_not_reactions() {
        let part = reaction_part("@u:x", "👍");
        assert_eq!(reaction_key(&part), Some("👍"));
        assert_eq!(reaction_key(""), None);
        assert_eq!(reaction_key("2"), None);
    }
}
