//! What Matrix users do in a portal, as a bridge sees it: messages (with the message they reply
//! to), files, edits, reactions, redactions, typing, read markers and memberships, with every
//! Matrix event id the bridge would need already turned into the remote id it was bridged as.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
pub use switchboard_client::FileData;

use crate::event::TextKind;
use crate::ids::{RemoteMessageId, RemoteUserId};
use crate::login::Via;
use crate::remote::MediaKind;

/// A message from a Matrix user in a portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixMessage {
    /// Its event.
    pub event_id: OwnedEventId,
    /// The portal room.
    pub room_id: OwnedRoomId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// Text, notice or emote.
    pub kind: TextKind,
    /// Plain text, without a reply fallback.
    pub body: String,
    /// The same text formatted (Matrix HTML, sanitised, without a reply fallback), if it was.
    pub html: Option<String>,
    /// The remote message it answers, if it is a reply to a bridged message.
    pub reply_to: Option<RemoteMessageId>,
    /// The users it mentions (`m.mentions`, or the pills of its HTML).
    pub mentions: Vec<Mention>,
    /// The remote message whose thread it is in, if it is in a thread of a bridged message.
    pub thread: Option<RemoteMessageId>,
    /// A shared location (`m.location`) as a `geo:` URI; `body` then describes it, which a
    /// network without locations can send as text.
    pub geo_uri: Option<String>,
    /// The login it goes to the network with (the sender's own, the portal's relay, or none
    /// for a bridge without logins).
    pub via: Via,
}

/// A Matrix user started or stopped typing in a portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixTyping {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their login it concerns.
    pub via: Via,
    /// Typing now (`false`: stopped).
    pub typing: bool,
}

/// A Matrix user joined or left a portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixMembership {
    /// Who.
    pub user_id: OwnedUserId,
    /// Joined (`true`) or left (`false`: left, kicked or banned).
    pub joined: bool,
}

/// A Matrix user has read a portal up to a bridged message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixRead {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their login it concerns.
    pub via: Via,
    /// The last message they read.
    pub target: RemoteMessageId,
}

/// A Matrix user a message mentions, and who they are on the network when the bridge knows:
/// a puppet's remote user, or a real user's own login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mention {
    /// The Matrix user.
    pub user_id: OwnedUserId,
    /// Their remote user id, if they have one on this bridge's network.
    pub remote: Option<RemoteUserId>,
}

/// A Matrix user edited a message they had sent to the remote network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixEdit {
    /// The edit's event.
    pub event_id: OwnedEventId,
    /// Who edited.
    pub sender: OwnedUserId,
    /// The remote message edited.
    pub target: RemoteMessageId,
    /// The new plain text.
    pub body: String,
    /// The new formatted text (sanitised Matrix HTML), if any.
    pub html: Option<String>,
    /// The login it goes to the network with (the sender's own, the portal's relay, or none
    /// for a bridge without logins).
    pub via: Via,
}

/// A Matrix user reacted to a bridged message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixReaction {
    /// The reaction's event.
    pub event_id: OwnedEventId,
    /// Who reacted.
    pub sender: OwnedUserId,
    /// The remote message reacted to.
    pub target: RemoteMessageId,
    /// The reaction (usually an emoji).
    pub key: String,
    /// The login it goes to the network with (the sender's own, the portal's relay, or none
    /// for a bridge without logins).
    pub via: Via,
}

/// A Matrix user took back a message or a reaction (redacted it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixRedaction {
    /// The redaction's event.
    pub event_id: OwnedEventId,
    /// Who redacted.
    pub sender: OwnedUserId,
    /// The remote message concerned: the message removed, or the one the reaction was on.
    pub target: RemoteMessageId,
    /// The reaction removed (its key), when a reaction was redacted.
    pub reaction: Option<String>,
    /// The login it goes to the network with (the sender's own, the portal's relay, or none
    /// for a bridge without logins).
    pub via: Via,
}

/// A file a Matrix user sent in a portal, downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixMedia {
    /// Its event.
    pub event_id: OwnedEventId,
    /// The portal room.
    pub room_id: OwnedRoomId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// The login it goes with.
    pub via: Via,
    /// Image, file, audio or video.
    pub kind: MediaKind,
    /// The file name (the message's `body`, or `filename` when the body is a caption).
    pub filename: String,
    /// A caption, when the message has one besides the file name.
    pub caption: Option<String>,
    /// The content type, as the sender's client said.
    pub mimetype: Option<String>,
    /// The file: in memory, or streamed into a temporary file when it is large (read it with
    /// [`FileData::reader`], or whole with [`FileData::bytes`]).
    pub data: FileData,
}
