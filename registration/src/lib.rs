//! The appservice registration file: its model, generation from what the config implies, and
//! drift detection between the file a homeserver loaded and what Switchboard expects.
//!
//! The model follows the [Application Service API registration
//! format](https://spec.matrix.org/v1.19/application-service-api/#registration) plus the unstable
//! flags homeservers still read (`de.sorunome.msc2409.push_ephemeral`, `org.matrix.msc3202`,
//! `io.element.msc4190`). ruma's `Registration` has no field for those flags, so this crate keeps
//! its own small model with the same field names.

use std::fmt;
use std::path::Path;

use rand::Rng;
use rand::distr::Alphanumeric;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Length of generated `as_token` / `hs_token` values.
pub const TOKEN_LENGTH: usize = 64;

/// Errors reading, writing or validating a registration file.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The file could not be read.
    #[error("cannot read the registration file {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write the registration file {path}: {source}")]
    Write {
        /// Path of the file.
        path: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid registration document.
    #[error("the registration file {path} is not valid YAML for a registration: {source}")]
    Parse {
        /// Path of the file.
        path: String,
        /// Underlying YAML error.
        source: serde_norway::Error,
    },
    /// The registration could not be serialised.
    #[error("cannot serialise the registration: {0}")]
    Serialize(serde_norway::Error),
    /// A field holds a value the homeserver would reject.
    #[error("registration field `{field}` is invalid ({value}): {expected}")]
    Invalid {
        /// The field name, as in the file.
        field: String,
        /// The offending value (never a token).
        value: String,
        /// What is expected instead.
        expected: String,
    },
}

/// One namespace entry: a regular expression over user ids, aliases or room ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Whether only this appservice may create / use matching ids.
    pub exclusive: bool,
    /// The regular expression, matched against the whole id.
    pub regex: String,
}

impl Namespace {
    /// An exclusive namespace with the given regular expression.
    #[must_use]
    pub fn exclusive(regex: impl Into<String>) -> Self {
        Self {
            exclusive: true,
            regex: regex.into(),
        }
    }
}

/// The three namespace lists of a registration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    /// User id namespaces (puppets).
    #[serde(default)]
    pub users: Vec<Namespace>,
    /// Room alias namespaces (portals created on demand).
    #[serde(default)]
    pub aliases: Vec<Namespace>,
    /// Room id namespaces.
    #[serde(default)]
    pub rooms: Vec<Namespace>,
}

/// A registration file as read by the homeserver.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Unique id of this appservice on the homeserver.
    pub id: String,
    /// URL the homeserver pushes transactions to; `None` for a push-less appservice.
    pub url: Option<String>,
    /// Token Switchboard uses towards the homeserver.
    pub as_token: String,
    /// Token the homeserver uses towards Switchboard.
    pub hs_token: String,
    /// Localpart of the appservice's own bot user.
    pub sender_localpart: String,
    /// Namespaces claimed by this appservice.
    pub namespaces: Namespaces,
    /// Whether the homeserver rate-limits the appservice's users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<bool>,
    /// Third-party protocols served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// Whether ephemeral events (typing, receipts, presence) are pushed (stable, spec v1.13).
    #[serde(default)]
    pub receive_ephemeral: bool,
    /// The MSC2409 spelling of `receive_ephemeral`, still read by some homeservers.
    #[serde(
        rename = "de.sorunome.msc2409.push_ephemeral",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub msc2409_push_ephemeral: Option<bool>,
    /// MSC3202: device lists and one-time-key counts in transactions.
    #[serde(
        rename = "org.matrix.msc3202",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub msc3202: Option<bool>,
    /// MSC4190: device management for appservices (no access tokens for puppets).
    #[serde(
        rename = "io.element.msc4190",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub msc4190: Option<bool>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("as_token", &"<redacted>")
            .field("hs_token", &"<redacted>")
            .field("sender_localpart", &self.sender_localpart)
            .field("namespaces", &self.namespaces)
            .field("rate_limited", &self.rate_limited)
            .field("receive_ephemeral", &self.receive_ephemeral)
            .finish_non_exhaustive()
    }
}

/// What the configuration implies the registration must say. Tokens are not part of it: they are
/// generated once and then kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationSpec {
    /// Appservice id.
    pub id: String,
    /// URL the homeserver must use to reach Switchboard.
    pub url: String,
    /// Configured bot localpart; `None` keeps an existing one or picks a random one.
    pub sender_localpart: Option<String>,
    /// Union of the namespaces contributed by every enabled plug-in.
    pub namespaces: Namespaces,
    /// Whether ephemeral events are wanted.
    pub receive_ephemeral: bool,
    /// Whether MSC3202 transaction extensions are wanted.
    pub msc3202: bool,
    /// Whether the appservice creates its devices itself (MSC4190, for encryption).
    pub msc4190: bool,
    /// Third-party protocols served by the enabled plug-ins.
    pub protocols: Vec<String>,
}

/// A difference between the registration on disk and what the config implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The registration field that differs.
    pub field: &'static str,
    /// Plain-language consequence and fix.
    pub message: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A fresh random token of [`TOKEN_LENGTH`] alphanumeric characters.
#[must_use]
pub fn random_token() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(TOKEN_LENGTH)
        .map(char::from)
        .collect()
}

fn random_localpart() -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect();
    format!("switchboard_{suffix}")
}

impl Registration {
    /// Builds the registration the spec implies, keeping the tokens and bot localpart of
    /// `existing` when there is one (so re-generating never breaks a running homeserver).
    #[must_use]
    pub fn generate(spec: &RegistrationSpec, existing: Option<&Registration>) -> Self {
        let sender_localpart = spec
            .sender_localpart
            .clone()
            .or_else(|| existing.map(|e| e.sender_localpart.clone()))
            .unwrap_or_else(random_localpart);
        Self {
            id: spec.id.clone(),
            url: Some(spec.url.clone()),
            as_token: existing.map_or_else(random_token, |e| e.as_token.clone()),
            hs_token: existing.map_or_else(random_token, |e| e.hs_token.clone()),
            sender_localpart,
            namespaces: spec.namespaces.clone(),
            rate_limited: Some(false),
            protocols: spec.protocols.clone(),
            receive_ephemeral: spec.receive_ephemeral,
            msc2409_push_ephemeral: Some(spec.receive_ephemeral),
            msc3202: spec.msc3202.then_some(true),
            msc4190: spec.msc4190.then_some(true),
        }
    }

    /// The registration of a double-puppeting appservice for `server_name`: no URL (the
    /// homeserver pushes nothing to it), a non-exclusive namespace over every user of the
    /// server, so that its token can act for them. Keeps the tokens of `existing`.
    #[must_use]
    pub fn double_puppet(server_name: &str, existing: Option<&Registration>) -> Self {
        Self {
            id: "switchboard_doublepuppet".to_owned(),
            url: None,
            as_token: existing.map_or_else(random_token, |e| e.as_token.clone()),
            hs_token: existing.map_or_else(random_token, |e| e.hs_token.clone()),
            sender_localpart: existing
                .map_or_else(random_localpart, |e| e.sender_localpart.clone()),
            namespaces: Namespaces {
                users: vec![Namespace {
                    exclusive: false,
                    regex: format!("@.*:{}", regex::escape(server_name)),
                }],
                aliases: Vec::new(),
                rooms: Vec::new(),
            },
            rate_limited: Some(false),
            protocols: Vec::new(),
            receive_ephemeral: false,
            msc2409_push_ephemeral: None,
            msc3202: None,
            msc4190: None,
        }
    }

    /// Reads and validates a registration file.
    pub fn load(path: &Path) -> Result<Self, RegistrationError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistrationError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let registration: Self =
            serde_norway::from_str(&text).map_err(|source| RegistrationError::Parse {
                path: path.display().to_string(),
                source,
            })?;
        registration.validate()?;
        Ok(registration)
    }

    /// Writes the registration to `path` (via a temporary file and rename), readable only by the
    /// owner since it holds both tokens.
    pub fn save(&self, path: &Path) -> Result<(), RegistrationError> {
        let write_err = |source| RegistrationError::Write {
            path: path.display().to_string(),
            source,
        };
        let yaml = self.to_yaml()?;
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, yaml).map_err(write_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .map_err(write_err)?;
        }
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    /// The registration as YAML, with a header comment.
    pub fn to_yaml(&self) -> Result<String, RegistrationError> {
        let body = serde_norway::to_string(self).map_err(RegistrationError::Serialize)?;
        Ok(format!(
            "# Appservice registration generated by `switchboard generate-registration`.\n\
             # Give this file to your homeserver (Synapse: app_service_config_files) and restart it.\n\
             # Re-running generate-registration keeps both tokens.\n{body}"
        ))
    }

    /// Checks every field a homeserver would reject.
    pub fn validate(&self) -> Result<(), RegistrationError> {
        let invalid = |field: &str, value: &str, expected: &str| RegistrationError::Invalid {
            field: field.to_owned(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        if self.id.trim().is_empty() {
            return Err(invalid("id", "empty", "a non-empty appservice id"));
        }
        if self.as_token.len() < 16 {
            return Err(invalid(
                "as_token",
                &format!("{} characters", self.as_token.len()),
                "a random token of at least 16 characters",
            ));
        }
        if self.hs_token.len() < 16 {
            return Err(invalid(
                "hs_token",
                &format!("{} characters", self.hs_token.len()),
                "a random token of at least 16 characters",
            ));
        }
        if self.as_token == self.hs_token {
            return Err(invalid(
                "hs_token",
                "same as as_token",
                "two different tokens",
            ));
        }
        if !is_valid_localpart(&self.sender_localpart) {
            return Err(invalid(
                "sender_localpart",
                &self.sender_localpart,
                "lower-case letters, digits and ._=-/+ only",
            ));
        }
        for (field, list) in [
            ("namespaces.users", &self.namespaces.users),
            ("namespaces.aliases", &self.namespaces.aliases),
            ("namespaces.rooms", &self.namespaces.rooms),
        ] {
            for ns in list {
                Regex::new(&ns.regex).map_err(|e| invalid(field, &ns.regex, &e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Lists what differs between this (on-disk) registration and what the config implies, each
    /// with the consequence an operator would see.
    #[must_use]
    pub fn drift(&self, spec: &RegistrationSpec) -> Vec<Drift> {
        let mut drift = Vec::new();
        if self.id != spec.id {
            drift.push(Drift {
                field: "id",
                message: format!(
                    "the registration says '{}' but the config says '{}'; the homeserver knows \
                     this appservice by the registration's id, so pings will fail",
                    self.id, spec.id
                ),
            });
        }
        if self.url.as_deref() != Some(spec.url.as_str()) {
            drift.push(Drift {
                field: "url",
                message: format!(
                    "the homeserver pushes transactions to {} but Switchboard is configured to be \
                     reached at {}; no events will arrive",
                    self.url.as_deref().unwrap_or("nowhere (url: null)"),
                    spec.url
                ),
            });
        }
        if let Some(localpart) = &spec.sender_localpart
            && *localpart != self.sender_localpart
        {
            drift.push(Drift {
                field: "sender_localpart",
                message: format!(
                    "the registration's bot is @{} but the config asks for @{}",
                    self.sender_localpart, localpart
                ),
            });
        }
        self.delivery_drift(spec, &mut drift);
        if self.rate_limited != Some(false) {
            drift.push(Drift {
                field: "rate_limited",
                message: "the homeserver rate-limits the bot and puppets; busy rooms will see \
                          429 errors and delays"
                    .to_owned(),
            });
        }
        for (field, have, want) in [
            (
                "namespaces.users",
                &self.namespaces.users,
                &spec.namespaces.users,
            ),
            (
                "namespaces.aliases",
                &self.namespaces.aliases,
                &spec.namespaces.aliases,
            ),
        ] {
            for ns in want {
                if !have.contains(ns) {
                    drift.push(Drift {
                        field,
                        message: format!(
                            "the enabled plug-ins need the namespace '{}' (exclusive: {}), which \
                             the registration does not claim; the homeserver will refuse those ids",
                            ns.regex, ns.exclusive
                        ),
                    });
                }
            }
        }
        drift
    }

    /// Where the registration would keep events from arriving: ephemeral events under either
    /// key, MSC3202 data, third-party lookups.
    fn delivery_drift(&self, spec: &RegistrationSpec, drift: &mut Vec<Drift>) {
        if spec.receive_ephemeral && !self.receive_ephemeral {
            drift.push(Drift {
                field: "receive_ephemeral",
                message: "ephemeral events are enabled in the config but not in the \
                          registration, so typing notifications and read receipts will never \
                          arrive (Synapse 1.156 and later read only this key)"
                    .to_owned(),
            });
        }
        if spec.receive_ephemeral && self.msc2409_push_ephemeral != Some(true) {
            drift.push(Drift {
                field: "de.sorunome.msc2409.push_ephemeral",
                message: "ephemeral events are enabled in the config but the registration \
                          lacks `de.sorunome.msc2409.push_ephemeral: true`, which homeservers \
                          older than the stable `receive_ephemeral` key read; add it (or run \
                          generate-registration, which writes both)"
                    .to_owned(),
            });
        }
        if spec.msc3202 && self.msc3202 != Some(true) {
            drift.push(Drift {
                field: "org.matrix.msc3202",
                message: "MSC3202 is enabled in the config but not in the registration, so \
                          device lists and one-time-key counts will never arrive"
                    .to_owned(),
            });
        }
        if spec.msc4190 && self.msc4190 != Some(true) {
            drift.push(Drift {
                field: "io.element.msc4190",
                message: "encryption is enabled in the config but the registration lacks \
                          `io.element.msc4190: true`, so the homeserver will not let \
                          Switchboard create its device; add it (or run generate-registration)"
                    .to_owned(),
            });
        }
        let missing: Vec<&str> = spec
            .protocols
            .iter()
            .filter(|p| !self.protocols.contains(p))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            drift.push(Drift {
                field: "protocols",
                message: format!(
                    "the enabled bridges answer third-party lookups for {} but the registration \
                     does not list it, so the homeserver never asks",
                    missing.join(", ")
                ),
            });
        }
    }
}

/// Whether `localpart` is a valid (non-historical) Matrix user localpart.
#[must_use]
pub fn is_valid_localpart(localpart: &str) -> bool {
    !localpart.is_empty()
        && localpart.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'=' | b'-' | b'/' | b'+')
        })
}

/// Namespaces compiled for matching ids.
#[derive(Clone, Debug)]
pub struct NamespaceMatcher {
    users: Vec<Regex>,
    aliases: Vec<Regex>,
}

impl NamespaceMatcher {
    /// Compiles the namespaces; each regex is anchored so it must match the whole id.
    pub fn new(namespaces: &Namespaces) -> Result<Self, RegistrationError> {
        let compile = |field: &str, list: &[Namespace]| {
            list.iter()
                .map(|ns| {
                    Regex::new(&format!("^(?:{})$", ns.regex)).map_err(|e| {
                        RegistrationError::Invalid {
                            field: field.to_owned(),
                            value: ns.regex.clone(),
                            expected: e.to_string(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            users: compile("namespaces.users", &namespaces.users)?,
            aliases: compile("namespaces.aliases", &namespaces.aliases)?,
        })
    }

    /// Whether a user id falls in a user namespace.
    #[must_use]
    pub fn is_user(&self, user_id: &str) -> bool {
        self.users.iter().any(|r| r.is_match(user_id))
    }

    /// Whether a room alias falls in an alias namespace.
    #[must_use]
    pub fn is_alias(&self, alias: &str) -> bool {
        self.aliases.iter().any(|r| r.is_match(alias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RegistrationSpec {
        RegistrationSpec {
            id: "switchboard".into(),
            url: "http://127.0.0.1:29300".into(),
            sender_localpart: None,
            namespaces: Namespaces {
                users: vec![Namespace::exclusive("@_echo_.*:example.org")],
                ..Namespaces::default()
            },
            receive_ephemeral: true,
            msc3202: false,
            msc4190: false,
            protocols: vec![],
        }
    }

    #[test]
    fn generated_registration_has_fresh_long_distinct_tokens_and_no_rate_limit() {
        let reg = Registration::generate(&spec(), None);
        assert_eq!(reg.as_token.len(), TOKEN_LENGTH);
        assert_eq!(reg.hs_token.len(), TOKEN_LENGTH);
        assert_ne!(reg.as_token, reg.hs_token);
        assert_eq!(reg.rate_limited, Some(false));
        assert!(reg.sender_localpart.starts_with("switchboard_"));
        reg.validate().expect("generated registration is valid");
        let other = Registration::generate(&spec(), None);
        assert_ne!(reg.as_token, other.as_token);
    }

    #[test]
    fn regenerating_keeps_tokens_and_bot_but_follows_config() {
        let first = Registration::generate(&spec(), None);
        let mut changed = spec();
        changed.url = "http://10.0.0.1:1".into();
        let second = Registration::generate(&changed, Some(&first));
        assert_eq!(second.as_token, first.as_token);
        assert_eq!(second.hs_token, first.hs_token);
        assert_eq!(second.sender_localpart, first.sender_localpart);
        assert_eq!(second.url.as_deref(), Some("http://10.0.0.1:1"));
    }

    #[test]
    fn yaml_round_trip_keeps_unstable_flags() {
        let mut s = spec();
        s.msc3202 = true;
        let reg = Registration::generate(&s, None);
        let yaml = reg.to_yaml().expect("serialises");
        assert!(yaml.contains("de.sorunome.msc2409.push_ephemeral: true"));
        assert!(yaml.contains("org.matrix.msc3202: true"));
        let back: Registration = serde_norway::from_str(&yaml).expect("parses");
        assert_eq!(back, reg);
    }

    #[test]
    fn drift_explains_missing_ephemeral_and_namespace() {
        let mut reg = Registration::generate(&spec(), None);
        reg.receive_ephemeral = false;
        reg.namespaces.users.clear();
        let drift = reg.drift(&spec());
        let fields: Vec<_> = drift.iter().map(|d| d.field).collect();
        assert_eq!(fields, vec!["receive_ephemeral", "namespaces.users"]);
        assert!(drift[0].message.contains("typing"));
        assert!(
            Registration::generate(&spec(), None)
                .drift(&spec())
                .is_empty()
        );
        let mut hand_kept = Registration::generate(&spec(), None);
        hand_kept.msc2409_push_ephemeral = None;
        let drift = hand_kept.drift(&spec());
        let fields: Vec<_> = drift.iter().map(|d| d.field).collect();
        assert_eq!(fields, ["de.sorunome.msc2409.push_ephemeral"]);
        assert!(drift[0].message.contains("older"), "{}", drift[0].message);
        let mut with_lookups = spec();
        with_lookups.protocols = vec!["xmpp".into()];
        let drift = Registration::generate(&spec(), None).drift(&with_lookups);
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].field, "protocols");
        assert!(drift[0].message.contains("xmpp"));
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let reg = Registration::generate(&spec(), None);
        let shown = format!("{reg:?}");
        assert!(!shown.contains(&reg.as_token));
        assert!(!shown.contains(&reg.hs_token));
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut reg = Registration::generate(&spec(), None);
        reg.sender_localpart = "Bad Bot".into();
        let err = reg.validate().expect_err("invalid localpart").to_string();
        assert!(
            err.contains("sender_localpart") && err.contains("Bad Bot"),
            "{err}"
        );
        let mut reg = Registration::generate(&spec(), None);
        reg.namespaces.users.push(Namespace::exclusive("@("));
        let err = reg.validate().expect_err("invalid regex").to_string();
        assert!(err.contains("namespaces.users"), "{err}");
    }

    #[test]
    fn namespace_matcher_matches_whole_ids_only() {
        let m = NamespaceMatcher::new(&spec().namespaces).expect("compiles");
        assert!(m.is_user("@_echo_alice:example.org"));
        assert!(!m.is_user("@x_echo_alice:example.org"));
        assert!(!m.is_user("@_echo_alice:example.org.evil"));
    }
}
