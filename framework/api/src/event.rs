//! A Matrix room event as plug-ins receive it, and the kinds of text message.

use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// A room event (timeline or state) as delivered to plug-ins.
#[derive(Clone, Debug, Deserialize)]
pub struct RoomEvent {
    /// The event id.
    pub event_id: OwnedEventId,
    /// The room.
    pub room_id: OwnedRoomId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// The event type, e.g. `m.room.message`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The state key, for state events.
    #[serde(default)]
    pub state_key: Option<String>,
    /// When the sender's homeserver received it.
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    /// The content, as raw JSON; see [`RoomEvent::content_as`].
    pub content: Box<RawValue>,
}

impl RoomEvent {
    /// Decodes the content into a ruma content type (or any serde type).
    pub fn content_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.content.get())
    }

    /// The body of a plain-text message (`m.room.message` with `msgtype: m.text`), if this is
    /// one. Edits (`m.new_content`) are not plain messages.
    #[must_use]
    pub fn text_body(&self) -> Option<String> {
        self.text_message()
            .filter(|(kind, _)| *kind == TextKind::Text)
            .map(|(_, body)| body)
    }

    /// The kind and body of a text message (`m.room.message` of type text, notice or emote),
    /// if this is one and not an edit.
    #[must_use]
    pub fn text_message(&self) -> Option<(TextKind, String)> {
        #[derive(Deserialize)]
        struct Message {
            msgtype: String,
            body: String,
            #[serde(rename = "m.new_content")]
            new_content: Option<serde::de::IgnoredAny>,
        }
        if self.event_type != "m.room.message" {
            return None;
        }
        let message: Message = self.content_as().ok()?;
        let kind = match message.msgtype.as_str() {
            "m.text" => TextKind::Text,
            "m.notice" => TextKind::Notice,
            "m.emote" => TextKind::Emote,
            _ => return None,
        };
        message
            .new_content
            .is_none()
            .then_some((kind, message.body))
    }

    /// The `membership` of an `m.room.member` event.
    #[must_use]
    pub fn membership(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Member {
            membership: String,
        }
        if self.event_type != "m.room.member" {
            return None;
        }
        self.content_as::<Member>().ok().map(|m| m.membership)
    }
}

/// The kind of a text message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextKind {
    /// `m.text`.
    #[default]
    Text,
    /// `m.notice` (automated messages).
    Notice,
    /// `m.emote` (`/me`).
    Emote,
}
