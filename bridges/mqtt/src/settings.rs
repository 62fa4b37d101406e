//! The MQTT bridge's settings (`bridges.mqtt`) and their validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchboard_api::Secret;
use switchboard_api::permission::{PermissionLevel, Permissions};
use switchboard_api::ruma::OwnedUserId;
use switchboard_api::serde::Deserialize;
use switchboard_api::template::Template;
use switchboard_api::tls::{
    TlsClientConfig, load_pem_certificates, load_pem_private_key, tls_client_config,
};

use crate::link::Protocol;
use crate::throttle::Throttle;
use crate::topic::is_valid_filter;

/// Which way a mapping bridges.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(crate = "switchboard_api::serde", rename_all = "lowercase")]
pub enum Direction {
    /// MQTT → Matrix only.
    In,
    /// Matrix → MQTT only.
    Out,
    /// Both ways.
    #[default]
    Both,
}

impl Direction {
    /// Whether MQTT messages reach the room.
    #[must_use]
    pub fn inbound(self) -> bool {
        self != Self::Out
    }

    /// Whether room messages are published.
    #[must_use]
    pub fn outbound(self) -> bool {
        self != Self::In
    }
}

/// What happens to a change (edit, deletion) of a room message.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(crate = "switchboard_api::serde", rename_all = "lowercase")]
pub enum Change {
    /// Nothing reaches MQTT.
    #[default]
    Ignore,
    /// It is published to the mapping's topic.
    Publish,
}

/// One room ↔ topics mapping, as written in the config.
#[derive(Clone, Debug, Deserialize)]
#[serde(crate = "switchboard_api::serde", deny_unknown_fields)]
pub struct MappingSettings {
    /// The mapping's name: the id of its portal (one room per mapping).
    pub name: String,
    /// Topic filters whose messages reach the room (`+` and `#` allowed).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Which way it bridges.
    #[serde(default)]
    pub direction: Direction,
    /// The topic room messages are published to (needed unless `direction: in`).
    #[serde(default)]
    pub publish_to: Option<String>,
    /// QoS of the subscriptions and publications (0, 1 or 2).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Whether publications are retained by the broker.
    #[serde(default)]
    pub retain: bool,
    /// How an MQTT message is shown (handlebars with `payload` (JSON or text), `text`,
    /// `topic` (the levels), `topic_name` and `device`); unset, or when the message lacks a
    /// value the template names: the text as it is.
    #[serde(default)]
    pub template: Option<String>,
    /// Which topic level (0 is the first) names the device that speaks; unset: the mapping.
    #[serde(default)]
    pub device_level: Option<usize>,
    /// An MQTT 5 user property naming the device that speaks, when a message has it (before
    /// `device_level`).
    #[serde(default)]
    pub device_property: Option<String>,
    /// Who may publish from the room (messages and `!mqtt publish`): user ids or server
    /// names; empty: everyone the bridge serves (`permissions`, level `user`).
    #[serde(default)]
    pub publishers: Vec<String>,
    /// The power level a room member needs to publish as well (messages, edits, deletions
    /// and `!mqtt publish`), read from the room when they do; unset: none needed.
    #[serde(default)]
    pub publish_power_level: Option<i64>,
    /// Topic filters `!mqtt publish <topic> <payload>` may publish to; empty: only
    /// `publish_to`.
    #[serde(default)]
    pub publish_allow: Vec<String>,
    /// Topic filters `!mqtt subscribe <filter>` may add to the room (a filter is allowed when
    /// it is covered by one of these); empty: the room cannot subscribe to more.
    #[serde(default)]
    pub subscribe_allow: Vec<String>,
    /// The payload that means a device went offline (what devices set as their last will,
    /// e.g. `offline`): such a message is shown as a notice "`<device>` went offline".
    #[serde(default)]
    pub offline_payload: Option<String>,
    /// What happens to edits of room messages: `ignore`, or `publish` the new text (with
    /// `replaces`).
    #[serde(default)]
    pub on_edit: Change,
    /// What happens to deletions of room messages: `ignore`, or `publish` a JSON
    /// `{"redacts", "sender"}`.
    #[serde(default)]
    pub on_redaction: Change,
    /// Publish a JSON envelope (`sender`, `room`, `event_id`, `body`) instead of the body.
    #[serde(default)]
    pub envelope: bool,
    /// Slows down chatty topics: at most one message per topic per interval is shown (last
    /// wills always are); unset: every message is.
    #[serde(default)]
    pub throttle: Option<Throttle>,
}

fn default_qos() -> u8 {
    1
}

/// The bridge's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(crate = "switchboard_api::serde", deny_unknown_fields)]
pub struct MqttSettings {
    /// The broker: `mqtt://host[:port]` (1883), `mqtts://host[:port]` (8883), or `embedded`
    /// (the default): a broker inside Switchboard on `embedded_listen`.
    #[serde(default = "default_broker")]
    pub broker: String,
    /// Where the embedded broker listens (a loopback address: it has no authentication).
    #[serde(default = "default_embedded_listen")]
    pub embedded_listen: SocketAddr,
    /// The MQTT version spoken: `5` or `"3.1.1"`; unset: 5, or 3.1.1 with the embedded
    /// broker (which speaks only that).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// The client id, which names the broker's persistent session for the bridge.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Username for the broker, if it needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the broker: the password, or `{ file: <path> }`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// With `mqtts://`: a PEM file of CA certificates trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// With `mqtts://`: a PEM file with the client certificate (chain) to present.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// With `mqtts://`: the PEM file with the client certificate's private key.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Matrix users invited to every mapping's room.
    #[serde(default)]
    pub invite: Vec<OwnedUserId>,
    /// The largest payload bridged to Matrix, in bytes; larger ones are skipped with a log line.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// The mappings.
    pub mappings: Vec<MappingSettings>,
}

fn default_broker() -> String {
    EMBEDDED.to_owned()
}

fn default_embedded_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}

/// The `broker` value that asks for the embedded broker.
const EMBEDDED: &str = "embedded";

fn default_client_id() -> String {
    "switchboard".to_owned()
}

fn default_max_payload() -> usize {
    64 * 1024
}

/// A mapping, checked and with its template and publishers compiled.
#[derive(Debug)]
pub struct Mapping {
    /// As configured.
    pub settings: MappingSettings,
    /// The compiled template.
    pub template: Option<Template>,
    /// Who may publish, if restricted.
    pub publishers: Option<Permissions>,
}

impl Mapping {
    /// Whether `user` may publish from the room.
    #[must_use]
    pub fn may_publish(&self, user: &switchboard_api::ruma::UserId) -> bool {
        self.publishers
            .as_ref()
            .is_none_or(|p| p.level(user) >= PermissionLevel::User)
    }

    /// Whether `!mqtt publish` may publish to `topic`.
    #[must_use]
    pub fn may_publish_to(&self, topic: &str) -> bool {
        if self.settings.publish_allow.is_empty() {
            self.settings.publish_to.as_deref() == Some(topic)
        } else {
            self.settings
                .publish_allow
                .iter()
                .any(|filter| crate::topic::matches(filter, topic))
        }
    }
}

/// The broker's address, and the TLS settings for `mqtts://`.
#[derive(Clone, Debug)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS settings, for `mqtts://`.
    pub tls: Option<Arc<TlsClientConfig>>,
    /// The protocol version to speak.
    pub protocol: Protocol,
    /// Where to start the embedded broker, when it is the one.
    pub embedded: Option<SocketAddr>,
}

/// Parses `mqtt://host[:port]` or `mqtts://host[:port]` and, for the latter, reads the TLS
/// files of `settings`.
fn broker(settings: &MqttSettings) -> Result<Broker, String> {
    let url = &settings.broker;
    if url == EMBEDDED {
        return embedded_broker(settings);
    }
    let invalid = |why: &str| {
        format!(
            "config field `bridges.mqtt.broker` is {url:?}, but mqtt://host[:port], \
             mqtts://host[:port] or embedded is expected ({why})"
        )
    };
    let (rest, default_port, tls) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, 1883, false)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, 8883, true)
    } else {
        return Err(invalid("an unknown scheme"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| invalid("bad port"))?),
        None => (rest, default_port),
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let tls = if tls {
        Some(Arc::new(tls_settings(settings)?))
    } else {
        if let Some(field) = [
            ("ca_file", &settings.ca_file),
            ("client_cert_file", &settings.client_cert_file),
            ("client_key_file", &settings.client_key_file),
        ]
        .into_iter()
        .find_map(|(name, value)| value.as_ref().map(|_| name))
        {
            return Err(format!(
                "config field `bridges.mqtt.{field}` is set, but the broker {url:?} is not \
                 mqtts://: TLS files need an mqtts:// broker"
            ));
        }
        None
    };
    Ok(Broker {
        host: host.to_owned(),
        port,
        tls,
        protocol: settings.protocol.unwrap_or_default(),
        embedded: None,
    })
}

/// The embedded broker on `embedded_listen`: loopback only, MQTT 3.1.1, no TLS.
fn embedded_broker(settings: &MqttSettings) -> Result<Broker, String> {
    let listen = settings.embedded_listen;
    if !listen.ip().is_loopback() {
        return Err(format!(
            "config field `bridges.mqtt.embedded_listen` is {listen}, but a loopback address \
             (127.0.0.1:port) is expected: the embedded broker has no authentication; for \
             devices on other machines, run a broker such as Mosquitto and set `broker`"
        ));
    }
    if settings.protocol == Some(Protocol::V5) {
        return Err(
            "config field `bridges.mqtt.protocol` is 5, but the embedded broker speaks MQTT \
             3.1.1 only: leave `protocol` out, or set `broker` to a broker with MQTT 5"
                .to_owned(),
        );
    }
    if let Some(field) = [
        ("ca_file", settings.ca_file.is_some()),
        ("client_cert_file", settings.client_cert_file.is_some()),
        ("client_key_file", settings.client_key_file.is_some()),
        ("username", settings.username.is_some()),
    ]
    .into_iter()
    .find_map(|(name, set)| set.then_some(name))
    {
        return Err(format!(
            "config field `bridges.mqtt.{field}` is set, but the embedded broker (`broker` \
             left out or `embedded`) has no TLS and no accounts"
        ));
    }
    Ok(Broker {
        host: listen.ip().to_string(),
        port: listen.port(),
        tls: None,
        protocol: Protocol::V311,
        embedded: Some(listen),
    })
}

/// The TLS client settings: the platform's roots plus `ca_file`, and the client certificate
/// when both `client_cert_file` and `client_key_file` are given.
fn tls_settings(settings: &MqttSettings) -> Result<TlsClientConfig, String> {
    let file_error = |field: &str, path: &Path, why: String| {
        format!(
            "config field `bridges.mqtt.{field}` is {}, but {why}",
            path.display()
        )
    };
    let roots = match &settings.ca_file {
        Some(path) => {
            load_pem_certificates(path).map_err(|why| file_error("ca_file", path, why))?
        }
        None => Vec::new(),
    };
    let client = match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert), Some(key)) => Some((
            load_pem_certificates(cert).map_err(|why| file_error("client_cert_file", cert, why))?,
            load_pem_private_key(key).map_err(|why| file_error("client_key_file", key, why))?,
        )),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(
                "config fields `bridges.mqtt.client_cert_file` and `client_key_file` go \
                 together: set both for a client certificate, or neither"
                    .to_owned(),
            );
        }
    };
    tls_client_config(roots, client)
        .map_err(|why| format!("config field `bridges.mqtt.broker`: TLS cannot be set up: {why}"))
}

/// The settings, checked: the broker address, unique mapping names, valid topic filters, a
/// publish topic where one is needed, QoS 0–2 and templates that compile. The error names the
/// field, the value and what is expected.
pub fn check(settings: MqttSettings) -> Result<(MqttSettings, Broker, Vec<Mapping>), String> {
    let broker = broker(&settings)?;
    let mut mappings = Vec::with_capacity(settings.mappings.len());
    for (i, mapping) in settings.mappings.iter().enumerate() {
        let field = |name: &str| format!("bridges.mqtt.mappings[{i}].{name}");
        if mapping.name.is_empty()
            || settings.mappings[..i]
                .iter()
                .any(|m| m.name == mapping.name)
        {
            return Err(format!(
                "config field `{}` is {:?}, but a name no other mapping has is expected",
                field("name"),
                mapping.name
            ));
        }
        if let Some(bad) = mapping.topics.iter().find(|t| !is_valid_filter(t)) {
            return Err(format!(
                "config field `{}` holds {bad:?}, but topic filters with `+` and `#` only as \
                 whole levels (`#` last) are expected",
                field("topics")
            ));
        }
        if mapping.direction.inbound() && mapping.topics.is_empty() {
            return Err(format!(
                "config field `{}` is empty, but a mapping that bridges MQTT to Matrix needs \
                 at least one topic filter",
                field("topics")
            ));
        }
        if mapping.direction.outbound()
            && mapping
                .publish_to
                .as_ref()
                .is_none_or(|t| t.is_empty() || t.contains(['+', '#']))
        {
            return Err(format!(
                "config field `{}` is {:?}, but a topic without wildcards is expected for a \
                 mapping that publishes (or `direction: in`)",
                field("publish_to"),
                mapping.publish_to
            ));
        }
        if mapping.qos > 2 {
            return Err(format!(
                "config field `{}` is {}, but 0, 1 or 2 is expected",
                field("qos"),
                mapping.qos
            ));
        }
        let template = mapping
            .template
            .as_deref()
            .map(|text| Template::strict(&field("template"), text))
            .transpose()
            .map_err(|e| e.to_string())?;
        if let Some(bad) = mapping.subscribe_allow.iter().find(|t| !is_valid_filter(t)) {
            return Err(format!(
                "config field `{}` holds {bad:?}, but topic filters are expected",
                field("subscribe_allow")
            ));
        }
        if let Some(bad) = mapping.publish_allow.iter().find(|t| !is_valid_filter(t)) {
            return Err(format!(
                "config field `{}` holds {bad:?}, but topic filters are expected",
                field("publish_allow")
            ));
        }
        if let Some(throttle) = mapping.throttle
            && !(1..=86_400).contains(&throttle.interval_secs)
        {
            return Err(format!(
                "config field `{}` is {}, but a number of seconds from 1 to 86400 is expected",
                field("throttle.interval_secs"),
                throttle.interval_secs
            ));
        }
        let publishers = if mapping.publishers.is_empty() {
            None
        } else {
            let rules = mapping
                .publishers
                .iter()
                .map(|p| (p.clone(), PermissionLevel::User))
                .collect();
            // The server name only matters for an empty rule set, which this is not.
            Some(
                Permissions::new(rules, "localhost")
                    .map_err(|e| format!("config field `{}`: {e}", field("publishers")))?,
            )
        };
        mappings.push(Mapping {
            settings: mapping.clone(),
            template,
            publishers,
        });
    }
    Ok((settings, broker, mappings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> switchboard_api::config::PluginSection {
        switchboard_api::config::from_yaml(yaml).expect("yaml")
    }

    /// The settings of `section`, as the framework reads them, checked.
    fn parse(
        section: &switchboard_api::config::PluginSection,
    ) -> Result<(MqttSettings, Broker, Vec<Mapping>), String> {
        check(section.typed("bridges.mqtt").map_err(|e| e.to_string())?)
    }

    fn error(yaml: &str) -> String {
        parse(&section(yaml)).expect_err("invalid")
    }

    #[test]
    fn without_a_broker_the_embedded_one_listens_on_loopback_with_3_1_1() {
        let (_, broker, _) = parse(&section("mappings: []\n")).expect("valid");
        assert_eq!(
            broker.embedded,
            Some(SocketAddr::from(([127, 0, 0, 1], 1883)))
        );
        assert_eq!(broker.protocol, Protocol::V311);
        let outside = error("embedded_listen: 0.0.0.0:1883\nmappings: []\n");
        assert!(
            outside.contains("`bridges.mqtt.embedded_listen` is 0.0.0.0:1883, but a loopback"),
            "{outside}"
        );
        let v5 = error("broker: embedded\nprotocol: 5\nmappings: []\n");
        assert!(v5.contains("speaks MQTT 3.1.1 only"), "{v5}");
        let bad_version = error("broker: mqtt://x\nprotocol: 3\nmappings: []\n");
        assert!(
            bad_version.contains("5 or \"3.1.1\" is expected"),
            "{bad_version}"
        );
    }

    #[test]
    fn mqtts_defaults_to_port_8883_with_tls() {
        let (_, broker, _) =
            parse(&section("broker: mqtts://broker.example\nmappings: []\n")).expect("valid");
        assert_eq!(
            (broker.host.as_str(), broker.port),
            ("broker.example", 8883)
        );
        assert!(broker.tls.is_some());
        let (_, broker, _) =
            parse(&section("broker: mqtt://broker.example\nmappings: []\n")).expect("valid");
        assert_eq!(broker.port, 1883);
        assert!(broker.tls.is_none());
    }

    #[test]
    fn a_valid_section_parses_with_defaults() {
        let (settings, broker, mappings) = parse(&section(
            "broker: mqtt://127.0.0.1:18883\nmappings:\n  - name: sensors\n    topics: \
             [\"sensors/+/temp\"]\n    publish_to: commands\n",
        ))
        .expect("valid");
        assert_eq!(broker.port, 18883);
        assert_eq!(settings.client_id, "switchboard");
        assert_eq!(mappings[0].settings.qos, 1);
        assert_eq!(mappings[0].settings.direction, Direction::Both);
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let (settings, _, _) = parse(&section(
            "broker: mqtt://x\npassword: s3cr3t-pass\nmappings: []\n",
        ))
        .expect("valid");
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("s3cr3t-pass") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn mistakes_name_the_field_and_what_is_expected() {
        let bad_broker = error("broker: http://x\nmappings: []\n");
        assert!(bad_broker.contains("bridges.mqtt.broker"), "{bad_broker}");
        let bad_filter = error(
            "broker: mqtt://x\nmappings:\n  - name: a\n    topics: [\"a/#/b\"]\n    direction: in\n",
        );
        assert!(bad_filter.contains("mappings[0].topics"), "{bad_filter}");
        let no_target = error("broker: mqtt://x\nmappings:\n  - name: a\n    topics: [a]\n");
        assert!(no_target.contains("mappings[0].publish_to"), "{no_target}");
        let twice = error(
            "broker: mqtt://x\nmappings:\n  - {name: a, topics: [a], direction: in}\n  - {name: a, topics: [b], direction: in}\n",
        );
        assert!(twice.contains("mappings[1].name"), "{twice}");
        let template = error(
            "broker: mqtt://x\nmappings:\n  - {name: a, topics: [a], direction: in, template: \"{{#if}}\"}\n",
        );
        assert!(template.contains("mappings[0].template"), "{template}");
        let plain_with_tls_files =
            error("broker: mqtt://x\nca_file: /etc/ssl/ca.pem\nmappings: []\n");
        assert!(
            plain_with_tls_files.contains("`bridges.mqtt.ca_file` is set")
                && plain_with_tls_files.contains("mqtts://"),
            "{plain_with_tls_files}"
        );
        let missing_ca = error("broker: mqtts://x\nca_file: /nonexistent/ca.pem\nmappings: []\n");
        assert!(
            missing_ca
                .contains("`bridges.mqtt.ca_file` is /nonexistent/ca.pem, but cannot read it"),
            "{missing_ca}"
        );
        let half_identity =
            error("broker: mqtts://x\nclient_cert_file: /etc/ssl/c.pem\nmappings: []\n");
        assert!(half_identity.contains("go together"), "{half_identity}");
        let throttle = error(
            "broker: mqtt://x\nmappings:\n  - {name: a, topics: [a], direction: in, throttle: {interval_secs: 0}}\n",
        );
        assert!(
            throttle.contains("mappings[0].throttle.interval_secs` is 0"),
            "{throttle}"
        );
    }
}
