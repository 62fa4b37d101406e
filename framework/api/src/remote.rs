//! What happens on the remote network, as a bridge hands it to the framework: a typed
//! [`RemoteEvent`] per thing that happened (messages, edits, reactions, files, typing, read
//! markers, memberships, chat and profile changes), and how portals and puppets look.

use ruma::{OwnedEventId, OwnedUserId};
use switchboard_client::FileData;

use crate::event::TextKind;
use crate::ids::{RemoteMessageId, RemoteUserId};

/// What a bridge says about itself in the rooms it bridges (the `protocol` of `m.bridge`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeInfo {
    /// Stable id, also the bridge's key in the database (`xmpp`, `mqtt`…).
    pub id: String,
    /// Human-readable name of the network (`XMPP`, `MQTT`…).
    pub displayname: String,
}

/// How a portal room looks when it is created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortalInfo {
    /// Room name.
    pub name: Option<String>,
    /// Room topic.
    pub topic: Option<String>,
    /// Matrix users invited when the room is created.
    pub invite: Vec<OwnedUserId>,
    /// A direct chat (marked `is_direct` for the invitees).
    pub direct: bool,
    /// Anyone on the homeserver may join (a public room, e.g. one reached by its alias).
    pub public: bool,
    /// The room's avatar (`mxc://`, uploaded with [`MatrixSide::upload`]).
    pub avatar_url: Option<String>,
}

/// A remote user's profile as their puppet shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PuppetProfile {
    /// Display name.
    pub displayname: Option<String>,
    /// Avatar (`mxc://` URI, already uploaded).
    pub avatar_url: Option<String>,
}

/// A text message from the remote network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteText {
    /// Its id on the remote network.
    pub id: RemoteMessageId,
    /// Which part of the remote message this is (`""` when it has one part).
    pub part: String,
    /// Who sent it.
    pub sender: RemoteUserId,
    /// How the sender's puppet looks.
    pub sender_profile: PuppetProfile,
    /// Plain text (also the fallback for clients that do not show HTML).
    pub body: String,
    /// The same text formatted, as HTML from the network: sanitised to what Matrix allows
    /// before it is sent.
    pub html: Option<String>,
    /// Text, notice or emote.
    pub kind: TextKind,
    /// When it was sent on the remote network (ms since the epoch), for late delivery.
    pub sent_at_ms: Option<u64>,
    /// The remote message it replies to, if any (shown as a Matrix reply when that message
    /// was bridged).
    pub reply_to: Option<RemoteMessageId>,
    /// The remote users it mentions (notified in Matrix: their puppets, or the Matrix users
    /// whose logins they are). Put pills in `html` with [`MatrixSide::pill`].
    pub mentions: Vec<RemoteUserId>,
    /// The remote message whose thread it is in, if any (a Matrix thread when that message
    /// was bridged).
    pub thread: Option<RemoteMessageId>,
    /// A shared location as a `geo:` URI (sent as `m.location`, `body` describing it).
    pub geo_uri: Option<String>,
}

impl RemoteText {
    /// A plain text message `id` from `sender`, in one part, with nothing else set (fill in
    /// `html`, `reply_to`, `thread`… as the network says).
    #[must_use]
    pub fn text(
        id: RemoteMessageId,
        sender: RemoteUserId,
        sender_profile: PuppetProfile,
        body: impl Into<String>,
    ) -> Self {
        Self {
            id,
            part: String::new(),
            sender,
            sender_profile,
            body: body.into(),
            html: None,
            kind: TextKind::Text,
            sent_at_ms: None,
            reply_to: None,
            mentions: Vec::new(),
            thread: None,
            geo_uri: None,
        }
    }
}

/// Whether a remote message was sent now or had been bridged before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bridged {
    /// Sent now, as this event.
    Sent(OwnedEventId),
    /// It had been bridged before, as this event; nothing was sent.
    AlreadyBridged(OwnedEventId),
}

/// Something that happened in a remote chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteEvent {
    /// A message: text, notice or emote, maybe formatted, maybe a reply.
    Message(RemoteText),
    /// The message `target` was edited; `edit` has the edit's own id and the new text.
    Edit {
        /// The message edited.
        target: RemoteMessageId,
        /// The edit.
        edit: RemoteText,
    },
    /// A reaction was added.
    Reaction(RemoteReaction),
    /// A reaction was taken back.
    ReactionRemoved(RemoteReaction),
    /// A file (image, audio, video or other).
    Media(RemoteMedia),
    /// A message (part) was deleted.
    Deletion {
        /// The message deleted.
        target: RemoteMessageId,
        /// Its part (`""` for a message in one part).
        part: String,
    },
    /// A remote user started or stopped typing.
    Typing {
        /// Who.
        sender: RemoteUserId,
        /// Whether they are typing now.
        typing: bool,
    },
    /// A remote user has read the chat up to a message.
    ReadUpTo {
        /// Who.
        sender: RemoteUserId,
        /// The last message they read.
        target: RemoteMessageId,
    },
    /// A remote user joined or left the chat.
    Membership {
        /// Who.
        sender: RemoteUserId,
        /// How their puppet looks.
        profile: PuppetProfile,
        /// Joined (`true`) or left.
        joined: bool,
    },
    /// The chat's name or topic changed (`None`: unchanged).
    ChatInfo {
        /// The new name.
        name: Option<String>,
        /// The new topic.
        topic: Option<String>,
        /// The new avatar (`mxc://`, uploaded with [`MatrixSide::upload`]).
        avatar_url: Option<String>,
    },
    /// A piece of state the network keeps for the chat (e.g. the latest value of a topic),
    /// set in the room by the bridge bot as a state event, replacing the one with the same
    /// type and key. Use a namespaced event type (`org.example.*`).
    State {
        /// The state event's type.
        event_type: String,
        /// Its state key.
        state_key: String,
        /// Its content.
        content: serde_json::Value,
    },
    /// A remote user's name or avatar changed.
    Profile {
        /// Who.
        sender: RemoteUserId,
        /// Their profile now.
        profile: PuppetProfile,
    },
}

/// A reaction on the remote network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReaction {
    /// Who reacted.
    pub sender: RemoteUserId,
    /// How their puppet looks.
    pub sender_profile: PuppetProfile,
    /// The message reacted to.
    pub target: RemoteMessageId,
    /// The reaction (usually an emoji).
    pub key: String,
}

/// What applying a remote event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// An event was sent, or had been sent before (nothing was sent again).
    Bridged(Bridged),
    /// Done (typing, read markers, memberships, room and profile changes).
    Done,
    /// It refers to a message or reaction never bridged, or to a portal without a room:
    /// nothing was done.
    Unmapped,
}

impl From<Option<Bridged>> for Applied {
    fn from(bridged: Option<Bridged>) -> Self {
        bridged.map_or(Self::Unmapped, Self::Bridged)
    }
}

/// What kind of media a message holds (its `msgtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    /// `m.image`.
    Image,
    /// `m.file`.
    File,
    /// `m.audio`.
    Audio,
    /// `m.video`.
    Video,
}

impl MediaKind {
    /// The `msgtype` of a message of this kind.
    #[must_use]
    pub fn msgtype(self) -> &'static str {
        match self {
            Self::Image => "m.image",
            Self::File => "m.file",
            Self::Audio => "m.audio",
            Self::Video => "m.video",
        }
    }

    /// The kind of a `msgtype`, if it is a media one.
    #[must_use]
    pub fn from_msgtype(msgtype: &str) -> Option<Self> {
        match msgtype {
            "m.image" => Some(Self::Image),
            "m.file" => Some(Self::File),
            "m.audio" => Some(Self::Audio),
            "m.video" => Some(Self::Video),
            _ => None,
        }
    }
}

/// A file from the remote network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Its message id on the network.
    pub id: RemoteMessageId,
    /// Which part of the message (`""` when it has one).
    pub part: String,
    /// Who sent it.
    pub sender: RemoteUserId,
    /// How their puppet looks.
    pub sender_profile: PuppetProfile,
    /// Image, file, audio or video.
    pub kind: MediaKind,
    /// The file name.
    pub filename: String,
    /// The content type.
    pub mimetype: String,
    /// The file (`Bytes` convert into it; a large file from a stream: [`FileData::collect`],
    /// which keeps it in a temporary file).
    pub data: FileData,
    /// When it was sent (ms since the epoch).
    pub sent_at_ms: Option<u64>,
}
