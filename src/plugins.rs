//! The plug-ins compiled into this binary (one cargo feature each) and which of them the
//! config enables.

use std::sync::Arc;

use switchboard_framework::bridge::{Bridge, PuppetNaming};
use switchboard_framework::config::Config;
use switchboard_framework::ruma::ServerName;
use switchboard_framework::{Bot, Plugins};

/// Ids of the bots compiled in.
#[must_use]
pub fn available_bots() -> Vec<&'static str> {
    [
        #[cfg(feature = "bot-echo")]
        "echo",
        #[cfg(feature = "bot-admin")]
        "admin",
    ]
    .to_vec()
}

/// Ids of the bridges compiled in.
#[must_use]
pub fn available_bridges() -> Vec<&'static str> {
    [
        #[cfg(feature = "bridge-loopback")]
        "loopback",
        #[cfg(feature = "bridge-mqtt")]
        "mqtt",
    ]
    .to_vec()
}

/// A plug-in section of the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PluginConfigError {
    /// The section names a plug-in this binary does not have.
    #[error("config field `{section}.{id}` names an unknown plug-in; this build has: {}", available.join(", "))]
    Unknown {
        /// `bots` or `bridges`.
        section: &'static str,
        /// The id in the config.
        id: String,
        /// The ids this build has.
        available: Vec<&'static str>,
    },
    /// The plug-in rejected its settings.
    #[error("{0}")]
    Invalid(String),
}

/// The bots enabled in the config.
pub fn enabled_bots(config: &Config) -> Result<Vec<Arc<dyn Bot>>, PluginConfigError> {
    let mut bots: Vec<Arc<dyn Bot>> = Vec::new();
    for (id, section) in &config.bots {
        let bot: Arc<dyn Bot> = match id.as_str() {
            #[cfg(feature = "bot-echo")]
            "echo" => Arc::new(
                switchboard_bot_echo::EchoBot::from_settings(&section.settings)
                    .map_err(PluginConfigError::Invalid)?,
            ),
            #[cfg(feature = "bot-admin")]
            "admin" => Arc::new(
                switchboard_bot_admin::AdminBot::from_section(
                    section,
                    &config.homeserver.server_name,
                )
                .map_err(PluginConfigError::Invalid)?,
            ),
            _ => {
                return Err(PluginConfigError::Unknown {
                    section: "bots",
                    id: id.clone(),
                    available: available_bots(),
                });
            }
        };
        if section.enabled {
            bots.push(bot);
        }
    }
    Ok(bots)
}

/// The bridges enabled in the config.
pub fn enabled_bridges(config: &Config) -> Result<Vec<Arc<dyn Bridge>>, PluginConfigError> {
    let mut bridges: Vec<Arc<dyn Bridge>> = Vec::new();
    for (id, section) in &config.bridges {
        let bridge: Arc<dyn Bridge> = match id.as_str() {
            #[cfg(feature = "bridge-loopback")]
            "loopback" => Arc::new(
                switchboard_bridge_loopback::LoopbackBridge::from_section(section)
                    .map_err(PluginConfigError::Invalid)?,
            ),
            #[cfg(feature = "bridge-mqtt")]
            "mqtt" => Arc::new(
                switchboard_bridge_mqtt::MqttBridge::from_section(section)
                    .map_err(PluginConfigError::Invalid)?,
            ),
            _ => {
                return Err(PluginConfigError::Unknown {
                    section: "bridges",
                    id: id.clone(),
                    available: available_bridges(),
                });
            }
        };
        if section.enabled {
            // A bad puppet template is the bridge author's bug, but it would leave the
            // puppets out of the registration: refuse it here, before anything is generated.
            if let Ok(server_name) = <&ServerName>::try_from(config.homeserver.server_name.as_str())
            {
                PuppetNaming::new(&bridge.puppet_template(), server_name)
                    .map_err(|e| PluginConfigError::Invalid(format!("bridges.{id}: {e}")))?;
            }
            bridges.push(bridge);
        }
    }
    Ok(bridges)
}

/// Every plug-in enabled in the config.
pub fn enabled_plugins(config: &Config) -> Result<Plugins, PluginConfigError> {
    Ok(Plugins {
        bots: enabled_bots(config)?,
        bridges: enabled_bridges(config)?,
    })
}
