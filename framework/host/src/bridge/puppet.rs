//! Puppet (ghost) user ids: a bridge's localpart template such as `_xmpp_{{id}}`, filled with the
//! escaped remote user id, and read back from a Matrix user id.

use ruma::{OwnedUserId, RoomAliasId, ServerName, UserId};

use super::ids::{RemoteChatId, RemoteUserId, escape_localpart, unescape_localpart};
use switchboard_registration::Namespace;

/// The placeholder a localpart template must hold exactly once.
const ID_PLACEHOLDER: &str = "{{id}}";

/// Why a localpart template cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not hold `{{id}}` exactly once.
    #[error("the localpart template {0:?} must contain {{{{id}}}} exactly once")]
    Placeholder(String),
    /// Its fixed parts hold characters a localpart cannot.
    #[error(
        "the localpart template {0:?} may only hold a-z, 0-9, '.', '_', '=', '-', '/' and '+' \
         around {{{{id}}}}"
    )]
    Characters(String),
    /// Without a fixed part, puppets could not be told apart from real users.
    #[error("the localpart template {0:?} needs a fixed part (such as `_xmpp_`) around {{{{id}}}}")]
    NoPrefix(String),
}

/// How a bridge names its puppets on one homeserver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PuppetNaming {
    prefix: String,
    suffix: String,
    server_name: ruma::OwnedServerName,
}

impl PuppetNaming {
    /// Checks `template` (for example `_xmpp_{{id}}`) for users on `server_name`.
    pub fn new(template: &str, server_name: &ServerName) -> Result<Self, TemplateError> {
        let (prefix, suffix) = template
            .split_once(ID_PLACEHOLDER)
            .filter(|(_, rest)| !rest.contains(ID_PLACEHOLDER))
            .ok_or_else(|| TemplateError::Placeholder(template.to_owned()))?;
        let fixed = format!("{prefix}{suffix}");
        if fixed.is_empty() {
            return Err(TemplateError::NoPrefix(template.to_owned()));
        }
        if !switchboard_registration::is_valid_localpart(&fixed) {
            return Err(TemplateError::Characters(template.to_owned()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            server_name: server_name.to_owned(),
        })
    }

    /// The Matrix user id of a remote user's puppet. (Fails only if the id is too long: user
    /// ids are limited to 255 bytes.)
    pub fn user_id(&self, remote: &RemoteUserId) -> Result<OwnedUserId, ruma::IdParseError> {
        UserId::parse(format!(
            "@{}{}{}:{}",
            self.prefix,
            escape_localpart(remote.as_str()),
            self.suffix,
            self.server_name
        ))
    }

    /// The remote user a Matrix user id is the puppet of, if it is one of this bridge's.
    #[must_use]
    pub fn remote_user(&self, user_id: &UserId) -> Option<RemoteUserId> {
        self.read(user_id.server_name(), user_id.localpart())
            .map(RemoteUserId)
    }

    /// The remote id a localpart on `server` was made from by this template, if it was.
    fn read(&self, server: &ServerName, localpart: &str) -> Option<String> {
        if server != self.server_name {
            return None;
        }
        let escaped = localpart
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        if escaped.is_empty() {
            return None;
        }
        unescape_localpart(escaped)
    }

    /// The exclusive namespace of every id made by this template, with `sigil` (`@` or `#`).
    fn namespace_of(&self, sigil: char) -> Namespace {
        Namespace {
            exclusive: true,
            regex: format!(
                "{sigil}{}.+{}:{}",
                regex::escape(&self.prefix),
                regex::escape(&self.suffix),
                regex::escape(self.server_name.as_str())
            ),
        }
    }

    /// The alias localpart of a remote chat's portal (`#<localpart>:server` creates it).
    #[must_use]
    pub fn alias_localpart(&self, chat: &RemoteChatId) -> String {
        format!(
            "{}{}{}",
            self.prefix,
            escape_localpart(chat.as_str()),
            self.suffix
        )
    }

    /// The alias of a remote chat's portal. (Fails only if it is too long: aliases are
    /// limited to 255 bytes.)
    pub fn alias(&self, chat: &RemoteChatId) -> Result<ruma::OwnedRoomAliasId, ruma::IdParseError> {
        ruma::OwnedRoomAliasId::try_from(format!(
            "#{}:{}",
            self.alias_localpart(chat),
            self.server_name
        ))
    }

    /// The remote chat an alias names, if it is in this bridge's alias namespace.
    #[must_use]
    pub fn chat_of_alias(&self, alias: &RoomAliasId) -> Option<RemoteChatId> {
        self.read(alias.server_name(), alias.alias())
            .map(RemoteChatId)
    }

    /// The exclusive alias namespace of this bridge's portals.
    #[must_use]
    pub fn alias_namespace(&self) -> Namespace {
        self.namespace_of('#')
    }

    /// The exclusive user namespace covering every puppet of this bridge.
    #[must_use]
    pub fn namespace(&self) -> Namespace {
        self.namespace_of('@')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(template: &str) -> Result<PuppetNaming, TemplateError> {
        PuppetNaming::new(template, ruma::server_name!("example.org"))
    }

    #[test]
    fn portal_aliases_follow_the_template_and_read_back() {
        let naming = naming("_xmpp_{{id}}").expect("valid");
        let chat = RemoteChatId::from("Room@conf");
        let localpart = naming.alias_localpart(&chat);
        assert_eq!(localpart, "_xmpp__room=40conf");
        let alias = RoomAliasId::parse(format!("#{localpart}:example.org")).expect("alias");
        assert_eq!(naming.chat_of_alias(&alias), Some(chat));
        let other = RoomAliasId::parse("#_mqtt_x:example.org").expect("alias");
        assert_eq!(naming.chat_of_alias(&other), None);
        let regex = regex::Regex::new(&naming.alias_namespace().regex).expect("regex");
        assert!(regex.is_match(alias.as_str()));
        assert!(!regex.is_match(other.as_str()));
    }

    #[test]
    fn puppets_are_named_by_the_template_and_read_back() {
        let naming = naming("_xmpp_{{id}}").expect("valid");
        let remote = RemoteUserId::from("Bob@jabber.org");
        let user = naming.user_id(&remote).expect("user id");
        assert_eq!(user.as_str(), "@_xmpp__bob=40jabber.org:example.org");
        assert_eq!(naming.remote_user(&user), Some(remote));
        let other = UserId::parse("@alice:example.org").expect("id");
        assert_eq!(naming.remote_user(&other), None);
        let elsewhere = UserId::parse("@_xmpp_bob:other.org").expect("id");
        assert_eq!(naming.remote_user(&elsewhere), None);
        let suffixed = self::naming("{{id}}.mqtt").expect("valid");
        let user = suffixed
            .user_id(&RemoteUserId::from("kitchen"))
            .expect("user id");
        assert_eq!(user.as_str(), "@kitchen.mqtt:example.org");
        assert_eq!(
            suffixed.remote_user(&user).map(|r| r.0),
            Some("kitchen".into())
        );
    }

    #[test]
    fn the_namespace_matches_puppets_only() {
        let naming = naming("_xmpp_{{id}}").expect("valid");
        let namespace = naming.namespace();
        assert!(namespace.exclusive);
        let regex = regex::Regex::new(&format!("^{}$", namespace.regex)).expect("regex");
        assert!(
            regex.is_match(
                naming
                    .user_id(&RemoteUserId::from("x"))
                    .expect("id")
                    .as_str()
            )
        );
        let long = RemoteUserId::from("x".repeat(300).as_str());
        assert!(
            naming.user_id(&long).is_err(),
            "user ids are at most 255 bytes"
        );
        assert!(!regex.is_match("@_xmpp_x:example.org.evil"));
        assert!(!regex.is_match("@alice:example.org"));
        assert!(!regex.is_match("@_xmppAx:example.org"));
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        assert!(matches!(
            naming("_xmpp_"),
            Err(TemplateError::Placeholder(_))
        ));
        assert!(matches!(
            naming("{{id}}{{id}}x"),
            Err(TemplateError::Placeholder(_))
        ));
        assert!(matches!(naming("{{id}}"), Err(TemplateError::NoPrefix(_))));
        assert!(matches!(
            naming("XMPP {{id}}"),
            Err(TemplateError::Characters(_))
        ));
        let text = naming("XMPP {{id}}").expect_err("bad").to_string();
        assert!(text.contains("XMPP {{id}}"), "{text}");
    }
}
