//! Switchboard's configuration: one YAML file, documented defaults, environment overrides, and
//! validation whose errors name the field, the value and what is expected.
//!
//! Environment overrides: `SWITCHBOARD_<SECTION>__<FIELD>` (double underscore between levels,
//! e.g. `SWITCHBOARD_HOMESERVER__URL`); append `_FILE` to read the value from a file (for secrets,
//! e.g. `SWITCHBOARD_DATABASE__URL_FILE=/run/secrets/db`). The operator's file is never rewritten.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
pub use serde_norway::Value;
pub use switchboard_api::Secret;
pub use switchboard_api::config::{PluginSection, ReloadError, SettingsError, from_yaml};
pub use switchboard_appservice::InboxConfig;
pub use switchboard_client::ClientConfig;
pub use switchboard_host::config::{
    MediaConfig, OutageNoticesConfig, OutboxConfig, PuppetTemplates, PuppetsConfig,
};
pub use switchboard_store::{DatabaseConfig, SqliteSync, redact_url_password};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse, or a field has the wrong type or is unknown.
    #[error("config field `{field}`: {message}")]
    Parse {
        /// Dotted path of the field (`.` for the document itself).
        field: String,
        /// What went wrong, from the parser.
        message: String,
    },
    /// A field parses but its value is not acceptable.
    #[error("config field `{field}` is '{value}', but {expected}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// The value found (secrets are never shown).
        value: String,
        /// What is expected instead.
        expected: String,
    },
    /// A template does not compile (the message names the field).
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    /// The `permissions` rules are not usable (the message names the key).
    #[error(transparent)]
    Permissions(#[from] crate::permission::PermissionError),
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What went wrong.
        message: String,
    },
}

impl From<SettingsError> for ConfigError {
    fn from(error: SettingsError) -> Self {
        ConfigError::Parse {
            field: error.field,
            message: error.message,
        }
    }
}

fn invalid(field: &str, value: impl fmt::Display, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        value: value.to_string(),
        expected: expected.to_owned(),
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The homeserver Switchboard serves.
    pub homeserver: HomeserverConfig,
    /// How the homeserver reaches Switchboard, and the registration.
    pub appservice: AppserviceConfig,
    /// Where state is kept.
    pub database: DatabaseConfig,
    /// Directory for the SQLite database and other local state; relative to the config file.
    pub data_dir: PathBuf,
    /// The durable inbox of incoming transactions.
    pub inbox: InboxConfig,
    /// The Client-Server API client (retries, timeouts).
    pub client: ClientConfig,
    /// The bridges' outbox: Matrix messages a network could not take yet, retried.
    pub outbox: OutboxConfig,
    /// When rooms are told that their network, or Switchboard, was down.
    pub outage_notices: OutageNoticesConfig,
    /// Relay mode: how messages of users without their own login are sent.
    pub relay: RelayConfig,
    /// The provisioning HTTP API.
    pub provisioning: ProvisioningConfig,
    /// Files bridged either way.
    pub media: MediaConfig,
    /// Puppets kept in memory.
    pub puppets: PuppetsConfig,
    /// History shown in new portal rooms.
    pub backfill: BackfillConfig,
    /// Double puppeting: per server name, `as_token:<token>` of an appservice registration
    /// (without a URL) whose user namespace covers that server's real users.
    pub double_puppet: DoublePuppetConfig,
    /// Prometheus metrics and health endpoints.
    pub metrics: MetricsConfig,
    /// Log output.
    pub logging: LoggingConfig,
    /// End-to-bridge encryption: bots and bridges in encrypted rooms.
    pub encryption: switchboard_crypto::EncryptionConfig,
    /// The async runtime.
    pub runtime: RuntimeConfig,
    /// Who may use the bridges and their commands: `"*"`, a server name or a user id, each
    /// mapped to a permission level.
    pub permissions: BTreeMap<String, crate::permission::PermissionLevel>,
    /// One section per bot plug-in, keyed by the bot's id.
    pub bots: BTreeMap<String, PluginSection>,
    /// One section per bridge plug-in, keyed by the bridge's id.
    pub bridges: BTreeMap<String, PluginSection>,
    /// The file it was loaded from, if any (for reloads); not a setting.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            homeserver: HomeserverConfig::default(),
            appservice: AppserviceConfig::default(),
            database: DatabaseConfig::default(),
            data_dir: PathBuf::from("data"),
            inbox: InboxConfig::default(),
            client: ClientConfig::default(),
            outbox: OutboxConfig::default(),
            outage_notices: OutageNoticesConfig::default(),
            relay: RelayConfig::default(),
            provisioning: ProvisioningConfig::default(),
            media: MediaConfig::default(),
            puppets: PuppetsConfig::default(),
            backfill: BackfillConfig::default(),
            double_puppet: DoublePuppetConfig::default(),
            metrics: MetricsConfig::default(),
            logging: LoggingConfig::default(),
            encryption: switchboard_crypto::EncryptionConfig::default(),
            runtime: RuntimeConfig::default(),
            permissions: BTreeMap::new(),
            bots: BTreeMap::new(),
            bridges: BTreeMap::new(),
            source: None,
        }
    }
}

/// The homeserver section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HomeserverConfig {
    /// Base URL of the Client-Server API as Switchboard reaches it.
    pub url: String,
    /// The homeserver's server name (the part after `:` in user ids).
    pub server_name: String,
}

impl Default for HomeserverConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8008".to_owned(),
            server_name: "example.org".to_owned(),
        }
    }
}

/// The appservice section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppserviceConfig {
    /// Appservice id in the registration.
    pub id: String,
    /// Address the Application Service API listens on.
    pub listen: SocketAddr,
    /// URL the homeserver uses to reach that listener (written into the registration).
    pub url: String,
    /// Path of the registration file; relative to the config file.
    pub registration: PathBuf,
    /// Localpart of the bot user; empty picks a random one when the registration is generated.
    pub bot_localpart: String,
    /// Display name set on the bot user at start-up (empty leaves it alone).
    pub bot_displayname: String,
    /// Whether the bot joins rooms it is invited to.
    pub accept_invites: bool,
    /// Receive ephemeral events (typing, receipts, presence).
    pub ephemeral_events: bool,
    /// Receive MSC3202 device lists and one-time-key counts.
    pub msc3202: bool,
    /// Largest transaction body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for AppserviceConfig {
    fn default() -> Self {
        Self {
            id: "switchboard".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 29300)),
            url: "http://127.0.0.1:29300".to_owned(),
            registration: PathBuf::from("registration.yaml"),
            bot_localpart: String::new(),
            bot_displayname: "Switchboard".to_owned(),
            accept_invites: true,
            ephemeral_events: true,
            msc3202: false,
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The relay section: in a portal with a relay login (set by an admin with `set-relay`),
/// messages of users without their own login go through it, with their name in the text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// The text sent for a relayed message (handlebars; `displayname`, `user_id`, `body`).
    pub message_template: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            message_template: "{{displayname}}: {{body}}".to_owned(),
        }
    }
}

impl RelayConfig {
    /// The compiled message template.
    pub fn template(&self) -> Result<crate::template::Template, crate::template::TemplateError> {
        crate::template::Template::new("relay.message_template", &self.message_template)
    }
}

/// The provisioning section: the HTTP API for what users do with bridges in chat, on the
/// appservice listener under `/_switchboard/provision/v1/`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// Whether the API is served.
    pub enabled: bool,
    /// A secret that authenticates a trusted service acting for any user (`?user_id=`); empty:
    /// only users' own OpenID tokens are accepted. At least 32 characters; may be kept in a
    /// file (`{ file: <path> }`).
    pub shared_secret: Secret,
}

/// The double-puppeting section: server name → `as_token:<token>`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DoublePuppetConfig(pub BTreeMap<String, String>);

impl fmt::Debug for DoublePuppetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|server| (server, "<redacted>")))
            .finish()
    }
}

impl DoublePuppetConfig {
    /// The appservice token for each server, checked: `as_token:` followed by the token.
    pub fn tokens(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        self.0
            .iter()
            .map(|(server, secret)| {
                if <&ruma::ServerName>::try_from(server.as_str()).is_err() {
                    return Err(invalid(
                        &format!("double_puppet.{server}"),
                        server,
                        "a server name such as example.org as the key is expected",
                    ));
                }
                match secret.strip_prefix("as_token:") {
                    Some(token) if !token.is_empty() => Ok((server.clone(), token.to_owned())),
                    _ => Err(invalid(
                        &format!("double_puppet.{server}"),
                        "<redacted>",
                        "`as_token:` followed by the token of a registration covering that \
                         server's users is expected",
                    )),
                }
            })
            .collect()
    }
}

/// The backfill section: history shown in new portal rooms (by bridges that can fetch it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackfillConfig {
    /// How many of a chat's latest messages a new portal room shows first (0: none).
    pub initial_messages: usize,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            initial_messages: 50,
        }
    }
}

/// The metrics section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/health` and `/ready`.
    pub enabled: bool,
    /// Address of that listener (separate from the appservice listener).
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 29301)),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The runtime section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads running Switchboard's tasks (the database has its own). 1 runs everything on
    /// one thread, which costs the least CPU per event; more spread plug-in work over cores.
    pub worker_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { worker_threads: 1 }
    }
}

/// The logging section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,switchboard_framework=debug`.
    pub filter: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}

impl Config {
    /// The puppet templates (display name, avatar) of each bridge, compiled.
    pub fn puppet_templates(&self) -> Result<BTreeMap<String, PuppetTemplates>, ConfigError> {
        let compile = |id: &str, name: &str, text: &Option<String>| {
            text.as_ref()
                .map(|text| {
                    crate::template::Template::new(&format!("bridges.{id}.{name}"), text)
                        .map(std::sync::Arc::new)
                })
                .transpose()
                .map_err(ConfigError::from)
        };
        self.bridges
            .iter()
            .map(|(id, section)| {
                let templates = PuppetTemplates {
                    displayname: compile(
                        id,
                        "displayname_template",
                        &section.displayname_template,
                    )?,
                    avatar: compile(id, "avatar_template", &section.avatar_template)?,
                };
                Ok((id.clone(), templates))
            })
            .collect()
    }

    /// The validated `permissions` rules (the default when none are configured: users of
    /// `homeserver.server_name` may use the bridges, nobody administers them).
    pub fn permissions(&self) -> Result<crate::permission::Permissions, ConfigError> {
        crate::permission::Permissions::new(self.permissions.clone(), &self.homeserver.server_name)
            .map_err(ConfigError::from)
    }

    /// Loads the file, applies `SWITCHBOARD_…` overrides from the process environment,
    /// resolves relative paths against the file's directory and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let mut config = Self::parse(&text, env)?;
        config.resolve_paths(base);
        config.validate()?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses YAML text plus environment overrides, without validating.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut doc: Value = if text.trim().is_empty() {
            Value::Mapping(serde_norway::Mapping::new())
        } else {
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
                field: ".".to_owned(),
                message: e.to_string(),
            })?
        };
        if doc.is_null() {
            doc = Value::Mapping(serde_norway::Mapping::new());
        }
        apply_env(&mut doc, env)?;
        serde_path_to_error::deserialize(doc).map_err(|e| ConfigError::Parse {
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        if self.data_dir.as_os_str().is_empty() {
            self.data_dir = PathBuf::from("data");
        }
        if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        if self.appservice.registration.is_relative() {
            self.appservice.registration = base.join(&self.appservice.registration);
        }
        if !self.client.tls_ca_file.is_empty() && Path::new(&self.client.tls_ca_file).is_relative()
        {
            self.client.tls_ca_file = base.join(&self.client.tls_ca_file).display().to_string();
        }
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    #[must_use]
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}",
                self.data_dir.join("switchboard.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// Checks every value; errors name the field, the value and what is expected.
    // A flat list of independent checks, one per field; reads best in one place.
    #[allow(clippy::too_many_lines)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        let hs = &self.homeserver;
        let hs_url = url::Url::parse(&hs.url).map_err(|e| {
            invalid(
                "homeserver.url",
                &hs.url,
                &format!("an http(s) URL such as http://127.0.0.1:8008 is expected ({e})"),
            )
        })?;
        if !matches!(hs_url.scheme(), "http" | "https") {
            return Err(invalid(
                "homeserver.url",
                &hs.url,
                "an http:// or https:// URL is expected",
            ));
        }
        if is_placeholder(&hs.server_name) || hs_url.host_str().is_some_and(is_placeholder) {
            return Err(invalid(
                "homeserver",
                format!("{} / {}", hs.server_name, hs.url),
                "these are the example placeholders: set homeserver.server_name and \
                 homeserver.url to your homeserver's",
            ));
        }
        if hs.server_name.is_empty() || hs.server_name.contains(['/', ' ', '@']) {
            return Err(invalid(
                "homeserver.server_name",
                &hs.server_name,
                "a server name such as matrix.org or localhost:8448 is expected",
            ));
        }
        if !self.client.tls_ca_file.is_empty() {
            switchboard_client::tls::load_pem_certificates(Path::new(&self.client.tls_ca_file))
                .map_err(|reason| {
                    invalid(
                        "client.tls_ca_file",
                        &self.client.tls_ca_file,
                        &format!("a readable PEM file of CA certificates is expected ({reason})"),
                    )
                })?;
        }
        let asv = &self.appservice;
        if asv.id.is_empty() {
            return Err(invalid("appservice.id", "", "a non-empty id is expected"));
        }
        match url::Url::parse(&asv.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(invalid(
                    "appservice.url",
                    &asv.url,
                    "the http(s) URL at which the homeserver reaches appservice.listen is expected",
                ));
            }
        }
        if !asv.bot_localpart.is_empty()
            && !switchboard_registration::is_valid_localpart(&asv.bot_localpart)
        {
            return Err(invalid(
                "appservice.bot_localpart",
                &asv.bot_localpart,
                "lower-case letters, digits and ._=-/+ only",
            ));
        }
        if asv.max_body_bytes < 64 * 1024 {
            return Err(invalid(
                "appservice.max_body_bytes",
                asv.max_body_bytes,
                "at least 65536 is expected (homeserver transactions can be large)",
            ));
        }
        let db = self.database_url();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                redact_url_password(&db),
                "a sqlite://PATH or postgres://USER@HOST/DB URL is expected",
            ));
        }
        if !(1..=256).contains(&self.runtime.worker_threads) {
            return Err(invalid(
                "runtime.worker_threads",
                self.runtime.worker_threads,
                "a number of threads from 1 to 256 is expected",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid(
                "database.max_connections",
                0,
                "at least 1 is expected",
            ));
        }
        if self.inbox.high_water_mark == 0 {
            return Err(invalid(
                "inbox.high_water_mark",
                0,
                "at least 1 is expected",
            ));
        }
        self.permissions()?;
        self.relay.template()?;
        self.puppet_templates()?;
        self.double_puppet.tokens()?;
        let secret_len = self.provisioning.shared_secret.expose().chars().count();
        if secret_len > 0 && secret_len < 32 {
            return Err(invalid(
                "provisioning.shared_secret",
                format!("<{secret_len} characters>"),
                "at least 32 characters (or empty for OpenID tokens only) is expected",
            ));
        }
        if self.puppets.idle_secs == 0 {
            return Err(invalid(
                "puppets.idle_secs",
                0,
                "at least 1 second is expected",
            ));
        }
        if self.outbox.retry_max_interval_secs == 0 {
            return Err(invalid(
                "outbox.retry_max_interval_secs",
                0,
                "at least 1 (second) is expected",
            ));
        }
        if self.client.initial_backoff_ms == 0
            || self.client.max_backoff_ms < self.client.initial_backoff_ms
        {
            return Err(invalid(
                "client.max_backoff_ms",
                self.client.max_backoff_ms,
                "a positive client.initial_backoff_ms no larger than client.max_backoff_ms is expected",
            ));
        }
        if self.client.request_timeout_secs == 0 {
            return Err(invalid(
                "client.request_timeout_secs",
                0,
                "at least 1 is expected",
            ));
        }
        if self.metrics.enabled && self.metrics.listen == asv.listen {
            return Err(invalid(
                "metrics.listen",
                self.metrics.listen,
                "an address different from appservice.listen is expected",
            ));
        }
        Ok(())
    }
}

fn is_placeholder(host: &str) -> bool {
    let host = host.split(':').next().unwrap_or(host);
    host == "example.org" || host.ends_with(".example.org")
}

/// The top-level keys an environment override may address.
const SECTIONS: &[&str] = &[
    "homeserver",
    "appservice",
    "database",
    "data_dir",
    "inbox",
    "client",
    "outbox",
    "outage_notices",
    "relay",
    "provisioning",
    "media",
    "double_puppet",
    "metrics",
    "logging",
    "runtime",
    "permissions",
    "bots",
    "bridges",
];

fn apply_env(
    doc: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let mut key = var[ENV_PREFIX.len()..].to_ascii_lowercase();
        let value = if let Some(stripped) = key.strip_suffix("_file") {
            key = stripped.to_owned();
            let text = std::fs::read_to_string(&raw).map_err(|e| ConfigError::Env {
                var: var.clone(),
                message: format!("cannot read {raw}: {e}"),
            })?;
            Value::String(text.trim_end_matches(['\n', '\r']).to_owned())
        } else {
            serde_norway::from_str::<Value>(&raw)
                .ok()
                .filter(|v| !matches!(v, Value::Mapping(_) | Value::Sequence(_) | Value::Null))
                .unwrap_or(Value::String(raw))
        };
        let path: Vec<&str> = key.split("__").collect();
        if !SECTIONS.contains(&path[0]) {
            continue;
        }
        set_path(doc, &path, value).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
    }
    Ok(())
}

fn set_path(doc: &mut Value, path: &[&str], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut node = doc;
    for part in parents {
        let Value::Mapping(map) = node else {
            return Err(format!("`{part}` is inside a value that is not a section"));
        };
        node = map
            .entry(Value::String((*part).to_owned()))
            .or_insert_with(|| Value::Mapping(serde_norway::Mapping::new()));
    }
    let Value::Mapping(map) = node else {
        return Err(format!("`{last}` is inside a value that is not a section"));
    };
    map.insert(Value::String((*last).to_owned()), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_yaml() -> &'static str {
        "homeserver:\n  url: http://127.0.0.1:8008\n  server_name: localhost\n"
    }

    #[test]
    fn wrong_type_names_the_field_and_value() {
        let err = Config::parse("inbox:\n  high_water_mark: lots\n", [])
            .expect_err("wrong type")
            .to_string();
        assert!(
            err.contains("inbox.high_water_mark") && err.contains("lots"),
            "{err}"
        );
        let err = Config::parse("appservice:\n  lisen: 1\n", [])
            .expect_err("unknown field")
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn invalid_values_name_field_value_and_expectation() {
        let mut c = Config::parse(valid_yaml(), []).expect("parses");
        c.validate().expect("valid");
        c.homeserver.url = "matrix.localhost".into();
        let err = c.validate().expect_err("bad url").to_string();
        assert!(
            err.contains("homeserver.url")
                && err.contains("matrix.localhost")
                && err.contains("expected"),
            "{err}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").expect("write");
        for (path, why) in [
            (dir.path().join("missing.pem"), "cannot read"),
            (not_pem, "no certificate"),
        ] {
            let mut c = Config::parse(valid_yaml(), []).expect("parses");
            c.client.tls_ca_file = path.display().to_string();
            let err = c.validate().expect_err("bad CA file").to_string();
            assert!(
                err.contains("client.tls_ca_file")
                    && err.contains(&c.client.tls_ca_file)
                    && err.contains(why),
                "{err}"
            );
        }
        let mut c = Config::parse(valid_yaml(), []).expect("parses");
        c.database.url = "mysql://x".into();
        let err = c.validate().expect_err("bad db").to_string();
        assert!(
            err.contains("database.url") && err.contains("mysql://x"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_nested_fields_and_reads_secret_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("db");
        std::fs::write(&secret, "postgres://sb:hunter2@db/sb\n").expect("write");
        let env = [
            (
                "SWITCHBOARD_HOMESERVER__SERVER_NAME".to_owned(),
                "env.test".to_owned(),
            ),
            (
                "SWITCHBOARD_INBOX__HIGH_WATER_MARK".to_owned(),
                "42".to_owned(),
            ),
            (
                "SWITCHBOARD_DATABASE__URL_FILE".to_owned(),
                secret.display().to_string(),
            ),
            ("SWITCHBOARD_SYNAPSE_VENV".to_owned(), "/ignored".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let c = Config::parse(valid_yaml(), env).expect("parses");
        assert_eq!(c.homeserver.server_name, "env.test");
        assert_eq!(c.inbox.high_water_mark, 42);
        assert_eq!(c.database.url, "postgres://sb:hunter2@db/sb");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, valid_yaml()).expect("write");
        let c = Config::load_with_env(&path, []).expect("loads");
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(
            c.appservice.registration,
            dir.path().join("registration.yaml")
        );
        assert!(c.database_url().ends_with("data/switchboard.db"));
    }
}
