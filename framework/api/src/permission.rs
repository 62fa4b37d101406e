//! Permission levels from the config: who may use a bridge or bot, and how much.
//!
//! The operator writes a map from `"*"` (everyone), a server name (`example.org`) or a full
//! user ID (`@admin:example.org`) to a [`PermissionLevel`]; [`Permissions`] validates it once
//! and answers "what may this user do?" for every incoming event.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde::{Deserialize, Serialize};

/// How much a Matrix user may do with a plug-in; each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionLevel {
    /// Nothing: the plug-in ignores the user.
    None,
    /// Messages are relayed through the bot, but the user cannot log in or manage anything.
    Relay,
    /// Ordinary use: log in, run everyday commands.
    User,
    /// Everything, including commands that change other users' rooms or the bridge itself.
    Admin,
}

impl PermissionLevel {
    /// Every level, lowest first.
    pub const ALL: [Self; 4] = [Self::None, Self::Relay, Self::User, Self::Admin];

    /// The lower-case name used in the config and in messages (`"admin"`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Relay => "relay",
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for PermissionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PermissionLevel {
    type Err = PermissionError;

    /// Parses the exact lower-case name, as in the config file.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == value)
            .ok_or_else(|| PermissionError::UnknownLevel {
                value: value.to_owned(),
            })
    }
}

/// Errors reading permission settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// A permission level name is not one of the four known ones.
    #[error("'{value}' is not a permission level, but one of none, relay, user, admin is expected")]
    UnknownLevel {
        /// The text found.
        value: String,
    },
    /// A key of the `permissions` map is not `"*"`, a server name or a user ID.
    #[error("config field `permissions.\"{key}\"` has the key '{key}', but {expected}")]
    InvalidKey {
        /// The key as written in the config.
        key: String,
        /// What is expected instead, with the parser's reason.
        expected: String,
    },
    /// The homeserver's own server name, used for the default rules, does not parse.
    #[error(
        "config field `homeserver.server_name` is '{value}', but a server name such as \
         example.org is expected ({reason})"
    )]
    InvalidOwnServerName {
        /// The server name given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// The validated `permissions` rules of one plug-in.
///
/// Keys are `"*"` (everyone), a server name (`example.org`, every user of that server) or a
/// full user ID (`@admin:example.org`). For a user, the most specific rule wins: their exact
/// user ID, then their server name, then `"*"`; with no matching rule the level is
/// [`PermissionLevel::None`]. A user rule wins even when it is *lower* than the server rule,
/// so an operator can shut out one user of an otherwise trusted server.
///
/// **Default:** when the map is empty, users of the homeserver's own server name get
/// [`PermissionLevel::User`] and everyone else [`PermissionLevel::None`]. As soon as any rule
/// is configured, only the configured rules apply.
///
/// Server names are compared exactly as written, because the Matrix spec says they "must be
/// treated case-sensitively" (`@user:matrix.org` and `@user:MATRIX.ORG` are different users;
/// <https://spec.matrix.org/latest/appendices/#server-name>). A rule for `Example.org`
/// therefore does not match users of `example.org`; write server names in lower case, as the
/// spec recommends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    users: BTreeMap<OwnedUserId, PermissionLevel>,
    servers: BTreeMap<OwnedServerName, PermissionLevel>,
    everyone: Option<PermissionLevel>,
}

/// What a `permissions` key may be, for error messages.
const EXPECTED_KEY: &str =
    "\"*\", a server name such as example.org or a user ID such as @admin:example.org is expected";

impl Permissions {
    /// Validates the config map; `own_server_name` is the homeserver's server name, used for
    /// the default when `rules` is empty.
    pub fn new(
        rules: BTreeMap<String, PermissionLevel>,
        own_server_name: &str,
    ) -> Result<Self, PermissionError> {
        let own_server = <&ServerName>::try_from(own_server_name).map_err(|error| {
            PermissionError::InvalidOwnServerName {
                value: own_server_name.to_owned(),
                reason: error.to_string(),
            }
        })?;
        let mut permissions = Self {
            users: BTreeMap::new(),
            servers: BTreeMap::new(),
            everyone: None,
        };
        if rules.is_empty() {
            permissions
                .servers
                .insert(own_server.to_owned(), PermissionLevel::User);
            return Ok(permissions);
        }
        for (key, level) in rules {
            let invalid = |reason: String| PermissionError::InvalidKey {
                key: key.clone(),
                expected: format!("{EXPECTED_KEY} ({reason})"),
            };
            if key == "*" {
                permissions.everyone = Some(level);
            } else if key.starts_with('@') {
                let user = UserId::parse(key.as_str()).map_err(|e| invalid(e.to_string()))?;
                permissions.users.insert(user, level);
            } else {
                let server =
                    <&ServerName>::try_from(key.as_str()).map_err(|e| invalid(e.to_string()))?;
                permissions.servers.insert(server.to_owned(), level);
            }
        }
        Ok(permissions)
    }

    /// The level of `user_id`: its own rule, else its server's rule, else `"*"`, else `None`.
    #[must_use]
    pub fn level(&self, user_id: &UserId) -> PermissionLevel {
        self.users
            .get(user_id)
            .or_else(|| self.servers.get(user_id.server_name()))
            .copied()
            .or(self.everyone)
            .unwrap_or(PermissionLevel::None)
    }

    /// Whether `user_id` has at least the `needed` level.
    #[must_use]
    pub fn allows(&self, user_id: &UserId, needed: PermissionLevel) -> bool {
        self.level(user_id) >= needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PermissionLevel::{Admin, Relay, User};

    fn user(id: &str) -> OwnedUserId {
        UserId::parse(id).expect("test user IDs are valid")
    }

    fn permissions(rules: &[(&str, PermissionLevel)]) -> Permissions {
        let rules = rules.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        Permissions::new(rules, "example.org").expect("test rules are valid")
    }

    fn invalid_key_error(key: &str) -> String {
        let rules = BTreeMap::from([(key.to_owned(), Admin)]);
        Permissions::new(rules, "example.org")
            .expect_err("the key is invalid")
            .to_string()
    }

    #[test]
    fn levels_are_ordered_from_none_to_admin() {
        assert!(PermissionLevel::None < Relay && Relay < User && User < Admin);
        let mut shuffled = [Admin, PermissionLevel::None, User, Relay];
        shuffled.sort();
        assert_eq!(shuffled, PermissionLevel::ALL);
    }

    #[test]
    fn levels_display_and_parse_as_lower_case_names() {
        for level in PermissionLevel::ALL {
            assert_eq!(level.to_string().parse::<PermissionLevel>(), Ok(level));
        }
        assert_eq!(Admin.to_string(), "admin");
        assert_eq!("relay".parse(), Ok(Relay));
    }

    #[test]
    fn unknown_level_error_names_the_value_and_the_choices() {
        let error = "Admin"
            .parse::<PermissionLevel>()
            .expect_err("not lower case");
        assert_eq!(
            error.to_string(),
            "'Admin' is not a permission level, but one of none, relay, user, admin is expected"
        );
    }

    #[test]
    fn levels_serialise_as_lower_case_strings() {
        assert_eq!(
            serde_json::to_string(&PermissionLevel::ALL).expect("serialises"),
            r#"["none","relay","user","admin"]"#
        );
        let parsed: PermissionLevel = serde_json::from_str(r#""user""#).expect("deserialises");
        assert_eq!(parsed, User);
        assert!(serde_json::from_str::<PermissionLevel>(r#""owner""#).is_err());
    }

    #[test]
    fn yaml_config_map_builds_permissions() {
        let yaml = "'*': relay\nexample.org: user\n'@boss:example.org': admin\n";
        let rules: BTreeMap<String, PermissionLevel> =
            serde_norway::from_str(yaml).expect("valid YAML");
        let permissions = Permissions::new(rules, "example.org").expect("valid rules");
        assert_eq!(permissions.level(&user("@boss:example.org")), Admin);
        assert_eq!(permissions.level(&user("@alice:example.org")), User);
        assert_eq!(permissions.level(&user("@bob:other.net")), Relay);
    }

    #[test]
    fn user_rule_wins_over_server_rule_even_when_lower() {
        let permissions = permissions(&[
            ("example.org", User),
            ("@mallory:example.org", PermissionLevel::None),
        ]);
        assert_eq!(
            permissions.level(&user("@mallory:example.org")),
            PermissionLevel::None
        );
        assert_eq!(permissions.level(&user("@alice:example.org")), User);
    }

    #[test]
    fn server_rule_wins_over_everyone_rule_even_when_lower() {
        let permissions = permissions(&[("*", User), ("spam.example", PermissionLevel::None)]);
        assert_eq!(
            permissions.level(&user("@bot:spam.example")),
            PermissionLevel::None
        );
        assert_eq!(permissions.level(&user("@alice:elsewhere.org")), User);
    }

    #[test]
    fn user_without_a_matching_rule_gets_none() {
        let permissions = permissions(&[("example.org", Admin)]);
        assert_eq!(
            permissions.level(&user("@eve:other.net")),
            PermissionLevel::None
        );
    }

    #[test]
    fn configured_rules_replace_the_default_for_the_own_server() {
        let permissions = permissions(&[("@admin:example.org", Admin)]);
        assert_eq!(
            permissions.level(&user("@alice:example.org")),
            PermissionLevel::None
        );
    }

    #[test]
    fn empty_rules_give_own_server_users_user_and_everyone_else_none() {
        let permissions = Permissions::new(BTreeMap::new(), "example.org").expect("valid");
        assert_eq!(permissions.level(&user("@alice:example.org")), User);
        assert_eq!(
            permissions.level(&user("@bob:other.net")),
            PermissionLevel::None
        );
    }

    #[test]
    fn server_names_compare_case_sensitively_as_the_spec_requires() {
        let permissions = permissions(&[("Example.org", Admin)]);
        assert_eq!(
            permissions.level(&user("@alice:example.org")),
            PermissionLevel::None
        );
        assert_eq!(permissions.level(&user("@alice:Example.org")), Admin);
    }

    #[test]
    fn server_name_with_port_matches_only_that_server_name() {
        let permissions = permissions(&[("example.org:8448", User)]);
        assert_eq!(permissions.level(&user("@alice:example.org:8448")), User);
        assert_eq!(
            permissions.level(&user("@alice:example.org")),
            PermissionLevel::None
        );
    }

    #[test]
    fn allows_compares_against_the_needed_level() {
        let permissions = permissions(&[("example.org", User)]);
        let alice = user("@alice:example.org");
        assert!(permissions.allows(&alice, Relay));
        assert!(permissions.allows(&alice, User));
        assert!(!permissions.allows(&alice, Admin));
        assert!(permissions.allows(&user("@eve:other.net"), PermissionLevel::None));
    }

    #[test]
    fn invalid_server_key_is_rejected_naming_the_field_and_expectation() {
        assert_eq!(
            invalid_key_error("example org"),
            "config field `permissions.\"example org\"` has the key 'example org', but \"*\", a \
             server name such as example.org or a user ID such as @admin:example.org is \
             expected (server name is not a valid IP address or domain name)"
        );
    }

    #[test]
    fn invalid_user_key_and_other_bad_keys_are_rejected() {
        for key in ["@alice", "@alice:bad host", "", "**", "https://example.org"] {
            let message = invalid_key_error(key);
            assert!(
                message.starts_with(&format!("config field `permissions.\"{key}\"` has the key")),
                "{message}"
            );
        }
    }

    #[test]
    fn invalid_own_server_name_is_rejected() {
        let error = Permissions::new(BTreeMap::new(), "not a server").expect_err("invalid");
        assert!(matches!(
            error,
            PermissionError::InvalidOwnServerName { .. }
        ));
        assert!(error.to_string().starts_with(
            "config field `homeserver.server_name` is 'not a server', but a server name"
        ));
    }
}
