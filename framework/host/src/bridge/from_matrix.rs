//! What Matrix users do in a portal, as a bridge sees it: messages (with the message they reply
//! to), edits, reactions and redactions, with every Matrix event id the bridge would need
//! already turned into the remote id it was bridged as.

use ruma::{OwnedEventId, OwnedUserId};
use serde::Deserialize;

use super::format::{sanitize_html, strip_reply_fallback};
use super::matrix::TextKind;
use super::media::MediaKind;
use switchboard_api::event::RoomEvent;
pub use switchboard_api::matrix::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRead, MatrixRedaction,
    MatrixTyping, Mention,
};

/// A Matrix event of a portal as read from its content, before its references to other events
/// are looked up in the message map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortalEvent {
    /// A message, maybe replying to another event.
    Message {
        kind: TextKind,
        body: String,
        html: Option<String>,
        reply_to: Option<OwnedEventId>,
        mentions: Vec<OwnedUserId>,
        thread: Option<OwnedEventId>,
        geo_uri: Option<String>,
    },
    /// An edit (`m.replace`) of another event.
    Edit {
        target: OwnedEventId,
        body: String,
        html: Option<String>,
    },
    /// A file (image, audio, video or other), not encrypted.
    Media(MediaRef),
    /// A reaction (`m.annotation`) to another event.
    Reaction { target: OwnedEventId, key: String },
    /// A redaction of another event.
    Redaction { target: OwnedEventId },
    /// A user joined or left (their own membership, `state_key` = sender... or a kick/ban).
    Membership { user: OwnedUserId, joined: bool },
}

/// A file a Matrix message points to, before it is downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MediaRef {
    pub(crate) kind: MediaKind,
    /// The message's body: the file name, or a caption when `filename` is set.
    pub(crate) body: String,
    pub(crate) filename: Option<String>,
    /// `mxc://` URI.
    pub(crate) url: String,
    pub(crate) mimetype: Option<String>,
    /// As the sender's client said.
    pub(crate) size: Option<u64>,
}

#[derive(Deserialize)]
struct MessageContent {
    msgtype: String,
    body: String,
    format: Option<String>,
    formatted_body: Option<String>,
    #[serde(rename = "m.relates_to")]
    relates_to: Option<RelatesTo>,
    #[serde(rename = "m.new_content")]
    new_content: Option<NewContent>,
    #[serde(rename = "m.mentions")]
    mentions: Option<Mentions>,
    geo_uri: Option<String>,
    url: Option<String>,
    filename: Option<String>,
    info: Option<MediaInfo>,
}

#[derive(Deserialize)]
struct Mentions {
    #[serde(default)]
    user_ids: Vec<OwnedUserId>,
}

#[derive(Deserialize)]
struct MediaInfo {
    mimetype: Option<String>,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct NewContent {
    body: String,
    format: Option<String>,
    formatted_body: Option<String>,
}

#[derive(Deserialize)]
struct RelatesTo {
    rel_type: Option<String>,
    event_id: Option<OwnedEventId>,
    key: Option<String>,
    #[serde(rename = "m.in_reply_to")]
    in_reply_to: Option<InReplyTo>,
    /// In a thread: `true` when `m.in_reply_to` is only the fallback for clients without threads.
    #[serde(default)]
    is_falling_back: bool,
}

#[derive(Deserialize)]
struct InReplyTo {
    event_id: OwnedEventId,
}

#[derive(Deserialize)]
struct ReactionContent {
    #[serde(rename = "m.relates_to")]
    relates_to: RelatesTo,
}

#[derive(Deserialize)]
struct RedactionEvent {
    /// Room versions 1–10 put the redacted event here…
    redacts: Option<OwnedEventId>,
    content: RedactionContent,
}

#[derive(Deserialize)]
struct RedactionContent {
    /// …room version 11 here.
    redacts: Option<OwnedEventId>,
}

/// The Matrix HTML of a message, sanitised (which also drops a reply fallback), if it has any.
fn formatted(format: Option<&str>, formatted_body: Option<String>) -> Option<String> {
    (format == Some("org.matrix.custom.html"))
        .then_some(formatted_body)
        .flatten()
        .map(|html| sanitize_html(&html))
}

/// The users the mention pills of Matrix HTML point to, each once, in order.
fn pills(html: &str) -> Vec<OwnedUserId> {
    let mut users: Vec<OwnedUserId> = Vec::new();
    let anchors = link_targets(html);
    for href in anchors {
        if let Some(user) = super::format::mentioned_user(&href)
            && !users.contains(&user)
        {
            users.push(user);
        }
    }
    users
}

/// The `href`s of the links in sanitised HTML (which writes them as `href="…"`).
fn link_targets(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once('"')
                .map(|(href, _)| href.replace("&amp;", "&"))
        })
        .collect()
}

impl PortalEvent {
    /// What `event` is, if a bridge could carry it; `raw` is the whole event as sent (a
    /// redaction's target may be outside its content).
    pub(crate) fn read(event: &RoomEvent, raw: &str) -> Option<Self> {
        match event.event_type.as_str() {
            "m.room.message" => {
                let content: MessageContent = event.content_as().ok()?;
                if let Some(kind) = MediaKind::from_msgtype(&content.msgtype) {
                    let info = content.info;
                    return Some(Self::Media(MediaRef {
                        kind,
                        body: content.body,
                        filename: content.filename,
                        url: content.url?,
                        mimetype: info.as_ref().and_then(|i| i.mimetype.clone()),
                        size: info.and_then(|i| i.size),
                    }));
                }
                let kind = match content.msgtype.as_str() {
                    "m.text" | "m.location" => TextKind::Text,
                    "m.notice" => TextKind::Notice,
                    "m.emote" => TextKind::Emote,
                    _ => return None,
                };
                let geo_uri = if content.msgtype == "m.location" {
                    Some(content.geo_uri?)
                } else {
                    None
                };
                let relates_to = content.relates_to;
                if let (Some(new), Some(rel)) = (content.new_content, &relates_to)
                    && rel.rel_type.as_deref() == Some("m.replace")
                {
                    return Some(Self::Edit {
                        target: rel.event_id.clone()?,
                        html: formatted(new.format.as_deref(), new.formatted_body),
                        body: new.body,
                    });
                }
                let thread = relates_to
                    .as_ref()
                    .filter(|r| r.rel_type.as_deref() == Some("m.thread"))
                    .and_then(|r| r.event_id.clone());
                let reply_to = relates_to
                    .filter(|r| !(thread.is_some() && r.is_falling_back))
                    .and_then(|r| r.in_reply_to)
                    .map(|r| r.event_id);
                let body = if reply_to.is_some() {
                    strip_reply_fallback(&content.body).to_owned()
                } else {
                    content.body
                };
                let html = formatted(content.format.as_deref(), content.formatted_body);
                let mut mentions = content.mentions.map(|m| m.user_ids).unwrap_or_default();
                if mentions.is_empty()
                    && let Some(html) = &html
                {
                    mentions = pills(html);
                }
                Some(Self::Message {
                    kind,
                    body,
                    html,
                    reply_to,
                    mentions,
                    thread,
                    geo_uri,
                })
            }
            "m.reaction" => {
                let content: ReactionContent = event.content_as().ok()?;
                let rel = content.relates_to;
                (rel.rel_type.as_deref() == Some("m.annotation")).then_some(())?;
                Some(Self::Reaction {
                    target: rel.event_id?,
                    key: rel.key?,
                })
            }
            "m.room.member" => {
                let user = OwnedUserId::try_from(event.state_key.as_deref()?).ok()?;
                let joined = match event.membership()?.as_str() {
                    "join" => true,
                    "leave" | "ban" => false,
                    _ => return None,
                };
                Some(Self::Membership { user, joined })
            }
            "m.room.redaction" => {
                let redaction: RedactionEvent = serde_json::from_str(raw).ok()?;
                Some(Self::Redaction {
                    target: redaction.content.redacts.or(redaction.redacts)?,
                })
            }
            _ => None,
        }
    }

    /// The event this one refers to and must be looked up (the message replied to, edited,
    /// reacted to or redacted).
    pub(crate) fn referenced_event(&self) -> Option<&OwnedEventId> {
        match self {
            Self::Message { reply_to, .. } => reply_to.as_ref(),
            Self::Media(_) | Self::Membership { .. } => None,
            Self::Edit { target, .. }
            | Self::Reaction { target, .. }
            | Self::Redaction { target } => Some(target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(event: &serde_json::Value) -> Option<PortalEvent> {
        let raw = event.to_string();
        let event: RoomEvent = serde_json::from_str(&raw).expect("room event");
        PortalEvent::read(&event, &raw)
    }

    fn event(event_type: &str, content: &serde_json::Value) -> serde_json::Value {
        json!({
            "event_id": "$e", "room_id": "!r:x", "sender": "@u:x", "type": event_type,
            "origin_server_ts": 1, "content": content,
        })
    }

    #[test]
    fn a_reply_loses_its_fallback_and_keeps_its_target() {
        let read = read(&event(
            "m.room.message",
            &json!({
                "msgtype": "m.text",
                "body": "> <@a:x> earlier\n> more\n\nmy answer",
                "format": "org.matrix.custom.html",
                "formatted_body": "<mx-reply><blockquote>earlier</blockquote></mx-reply><b>my</b> answer",
                "m.relates_to": { "m.in_reply_to": { "event_id": "$earlier" } },
            }),
        ));
        assert_eq!(
            read,
            Some(PortalEvent::Message {
                kind: TextKind::Text,
                body: "my answer".into(),
                html: Some("<b>my</b> answer".into()),
                reply_to: Some(OwnedEventId::try_from("$earlier").expect("id")),
                mentions: Vec::new(),
                thread: None,
                geo_uri: None,
            })
        );
    }

    #[test]
    fn a_thread_message_names_its_root_and_its_fallback_is_no_reply() {
        let read = read(&event(
            "m.room.message",
            &json!({
                "msgtype": "m.text", "body": "in thread",
                "m.relates_to": {
                    "rel_type": "m.thread", "event_id": "$root", "is_falling_back": true,
                    "m.in_reply_to": { "event_id": "$last" },
                },
            }),
        ));
        let Some(PortalEvent::Message {
            thread, reply_to, ..
        }) = read
        else {
            panic!("a message");
        };
        assert_eq!(thread, Some(OwnedEventId::try_from("$root").expect("id")));
        assert_eq!(reply_to, None);
    }

    #[test]
    fn mentions_come_from_m_mentions_or_else_the_pills() {
        let pill = "<a href=\"https://matrix.to/#/@bob:x\">Bob</a> and \
                    <a href=\"https://matrix.to/#/%40carol%3Ax\">Carol</a> and <a href=\"https://x.org\">x</a>";
        let with_pills = read(&event(
            "m.room.message",
            &json!({ "msgtype": "m.text", "body": "Bob and Carol", "format": "org.matrix.custom.html", "formatted_body": pill }),
        ));
        let user = |id: &str| OwnedUserId::try_from(id).expect("user id");
        let Some(PortalEvent::Message { mentions, .. }) = with_pills else {
            panic!("a message");
        };
        assert_eq!(mentions, [user("@bob:x"), user("@carol:x")]);
        let explicit = read(&event(
            "m.room.message",
            &json!({ "msgtype": "m.text", "body": "hi", "m.mentions": { "user_ids": ["@dave:x"] } }),
        ));
        let Some(PortalEvent::Message { mentions, .. }) = explicit else {
            panic!("a message");
        };
        assert_eq!(mentions, [user("@dave:x")]);
    }

    #[test]
    fn edits_reactions_and_redactions_are_told_apart() {
        let edit = read(&event(
            "m.room.message",
            &json!({
                "msgtype": "m.text", "body": "* fixed",
                "m.new_content": { "msgtype": "m.text", "body": "fixed" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": "$orig" },
            }),
        ));
        assert_eq!(
            edit,
            Some(PortalEvent::Edit {
                target: OwnedEventId::try_from("$orig").expect("id"),
                body: "fixed".into(),
                html: None,
            })
        );
        let reaction = read(&event(
            "m.reaction",
            &json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": "$m", "key": "👍" } }),
        ));
        assert_eq!(
            reaction,
            Some(PortalEvent::Reaction {
                target: OwnedEventId::try_from("$m").expect("id"),
                key: "👍".into()
            })
        );
        let mut v10 = event("m.room.redaction", &json!({}));
        v10["redacts"] = json!("$old");
        let v11 = event("m.room.redaction", &json!({ "redacts": "$new" }));
        for (redaction, target) in [(v10, "$old"), (v11, "$new")] {
            assert_eq!(
                read(&redaction),
                Some(PortalEvent::Redaction {
                    target: OwnedEventId::try_from(target).expect("id")
                })
            );
        }
    }

    #[test]
    fn a_file_keeps_its_name_type_and_size() {
        let read = read(&event(
            "m.room.message",
            &json!({
                "msgtype": "m.image", "body": "cat.png", "url": "mxc://x/abc",
                "info": { "mimetype": "image/png", "size": 42 },
            }),
        ));
        assert_eq!(
            read,
            Some(PortalEvent::Media(MediaRef {
                kind: MediaKind::Image,
                body: "cat.png".into(),
                filename: None,
                url: "mxc://x/abc".into(),
                mimetype: Some("image/png".into()),
                size: Some(42),
            }))
        );
    }

    #[test]
    fn what_a_bridge_cannot_carry_is_skipped() {
        for skipped in [
            event("m.room.message", &json!({ "msgtype": "m.text" })),
            event(
                "m.room.message",
                &json!({ "msgtype": "m.location", "body": "x" }),
            ),
            event(
                "m.reaction",
                &json!({ "m.relates_to": { "rel_type": "m.annotation" } }),
            ),
            event("m.room.redaction", &json!({})),
            event("m.room.topic", &json!({ "topic": "t" })),
        ] {
            assert_eq!(read(&skipped), None, "{skipped}");
        }
    }
}
