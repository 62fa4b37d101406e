//! A plug-in's section of the config (`bridges.<id>` or `bots.<id>`) as the framework hands it
//! over, and why a plug-in may refuse new settings on a reload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
pub use serde_norway::Value;

/// A plug-in's section: `enabled` plus the plug-in's own settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginSection {
    /// Whether the plug-in runs.
    #[serde(default)]
    pub enabled: bool,
    /// Bridges only: how puppets are named (handlebars; `name` is the remote user's name, `id`
    /// their remote id, `network` the bridge's network). Unset: the remote name as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displayname_template: Option<String>,
    /// Bridges only: the avatar of puppets, an `mxc://` URI (handlebars; `avatar` is the
    /// network's picture of the user, if any, `id` and `network` as above; a result that is
    /// not an `mxc://` URI sets none). Unset: the network's picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_template: Option<String>,
    /// The plug-in's own settings, parsed by the plug-in.
    #[serde(flatten)]
    pub settings: BTreeMap<String, Value>,
}

/// A setting of a plug-in's section does not read as the plug-in's settings type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}`: {message}")]
pub struct SettingsError {
    /// Dotted path of the field (`bridges.<id>.<field>`).
    pub field: String,
    /// What went wrong, from the parser.
    pub message: String,
}

impl PluginSection {
    /// The plug-in's own settings as its typed settings struct (serde, with defaults for what
    /// is left out). An error names the field (`bridges.<id>.<field>`), the value found and
    /// what is expected. `section` is `bots.<id>` or `bridges.<id>`.
    pub fn typed<T: serde::de::DeserializeOwned>(&self, section: &str) -> Result<T, SettingsError> {
        let mapping = self
            .settings
            .iter()
            .map(|(k, v)| (Value::String(k.clone()), v.clone()))
            .collect::<serde_norway::Mapping>();
        serde_path_to_error::deserialize(Value::Mapping(mapping)).map_err(|e| {
            let path = e.path().to_string();
            SettingsError {
                field: if path == "." {
                    section.to_owned()
                } else {
                    format!("{section}.{path}")
                },
                message: e.into_inner().to_string(),
            }
        })
    }
}

/// Why a plug-in did not apply new settings of its section on a config reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadError {
    /// The new settings are wrong (field, value, what is expected); the old ones stay.
    Invalid(String),
    /// They are fine but can only take effect at the next restart (why).
    NeedsRestart(String),
}

/// Parses a YAML document into `T` (for tests and tools; config files go through
/// Switchboard's config loading).
pub fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> Result<T, serde_norway::Error> {
    serde_norway::from_str(yaml)
}
