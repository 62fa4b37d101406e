//! The plug-ins compiled into this binary (one cargo feature each) and which of them the
//! config enables.

use std::sync::Arc;

use switchboard_framework::Bot;
use switchboard_framework::config::Config;

/// Ids of the bots compiled in.
#[must_use]
pub fn available_bots() -> Vec<&'static str> {
    [
        #[cfg(feature = "bot-echo")]
        "echo",
    ]
    .to_vec()
}

/// A plug-in section of the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PluginConfigError {
    /// The section names a plug-in this binary does not have.
    #[error("config field `bots.{id}` names an unknown bot; this build has: {}", available.join(", "))]
    Unknown {
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
            _ => {
                return Err(PluginConfigError::Unknown {
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
