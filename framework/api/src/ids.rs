//! Identifiers of things on the remote network, as newtypes so that a chat id can never be
//! passed where a user id is expected, and the mapping of remote user ids onto Matrix
//! localparts.

use serde::{Deserialize, Serialize};

macro_rules! remote_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as the remote network writes it.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }
    };
}

remote_id!(
    /// A chat (room, group, channel, topic, mailbox…) on the remote network.
    RemoteChatId
);
remote_id!(
    /// A user (or device) on the remote network.
    RemoteUserId
);
remote_id!(
    /// A message on the remote network (unique within its chat).
    RemoteMessageId
);
remote_id!(
    /// A Matrix user's account on the remote network (unique per bridge).
    LoginId
);

/// The key of a portal: the remote chat, and for per-user portals (a direct chat seen from one
/// login) the remote user it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortalKey {
    /// The remote chat.
    pub chat: RemoteChatId,
    /// Whose view of the chat this portal is; `None` for a chat shared by everyone.
    pub receiver: Option<RemoteUserId>,
}

impl PortalKey {
    /// The portal of a chat shared by everyone.
    #[must_use]
    pub fn shared(chat: impl Into<RemoteChatId>) -> Self {
        Self {
            chat: chat.into(),
            receiver: None,
        }
    }
}

/// Maps any string onto the characters a Matrix user-id localpart may hold, reversibly, as the
/// spec's appendix "Mapping from other character sets" suggests: an upper-case letter becomes
/// `_` and the letter in lower case, `_` becomes `__`, and every other byte of the UTF-8 form
/// outside `a-z 0-9 . -` becomes `=` and two lower-case hex digits (so do `=`, `/` and `+`,
/// which some homeservers and clients handle badly).
#[must_use]
pub fn escape_localpart(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    for byte in id.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => out.push(char::from(byte)),
            b'A'..=b'Z' => {
                out.push('_');
                out.push(char::from(byte.to_ascii_lowercase()));
            }
            b'_' => out.push_str("__"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push('=');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
    out
}

/// The inverse of [`escape_localpart`]; `None` when `localpart` is not something it produced.
#[must_use]
pub fn unescape_localpart(localpart: &str) -> Option<String> {
    let bytes = localpart.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let next = *bytes.get(i + 1)?;
                match next {
                    b'_' => out.push(b'_'),
                    b'a'..=b'z' => out.push(next.to_ascii_uppercase()),
                    _ => return None,
                }
                i += 2;
            }
            b'=' => {
                let hex = localpart.get(i + 1..i + 3)?;
                if hex.bytes().any(|b| b.is_ascii_uppercase()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b @ (b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-') => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_spec_suggestion_and_round_trips() {
        for (id, escaped) in [
            ("alice", "alice"),
            ("Alice", "_alice"),
            ("a_b", "a__b"),
            ("bob@jabber.org/Phone", "bob=40jabber.org=2f_phone"),
            ("x=y+z", "x=3dy=2bz"),
            ("Zoë", "_zo=c3=ab"),
            ("sensors/kitchen/temp", "sensors=2fkitchen=2ftemp"),
            ("", ""),
        ] {
            assert_eq!(escape_localpart(id), escaped, "{id}");
            assert_eq!(
                unescape_localpart(escaped).as_deref(),
                Some(id),
                "{escaped}"
            );
            assert!(
                escaped.is_empty() || switchboard_registration::is_valid_localpart(escaped),
                "{escaped}"
            );
        }
    }

    #[test]
    fn localparts_not_made_by_escaping_are_refused() {
        for bad in ["_", "_1", "=4", "=zz", "=4A", "a b", "A", "x/y", "=ff"] {
            assert_eq!(unescape_localpart(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_of_different_kinds_do_not_mix() {
        let chat = RemoteChatId::from("c1");
        let key = PortalKey::shared(chat.clone());
        assert_eq!(key.chat, chat);
        assert_eq!(key.receiver, None);
        assert_eq!(serde_json::to_string(&chat).expect("json"), "\"c1\"");
    }
}
