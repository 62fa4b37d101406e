//! Which plug-ins run: those the config enables, built from the ones the binary registered.

use std::sync::Arc;

use ruma::ServerName;
use switchboard_api::clock::SystemClock;
use switchboard_api::factory::{BuildContext, BuildError, Registry};
use switchboard_host::bridge::{PuppetNaming, TemplateError};
use switchboard_host::plugin::Plugins;

use crate::config::Config;

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
    /// `homeserver.server_name` is not a server name (plug-ins are built with it).
    #[error("config field `homeserver.server_name` is '{0}', but a server name is expected")]
    ServerName(String),
    /// The plug-in refused its settings.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A bridge's puppet template is unusable.
    #[error("bridges.{id}: {source}")]
    PuppetTemplate {
        /// The bridge.
        id: String,
        /// What is wrong.
        source: TemplateError,
    },
}

/// Builds the plug-ins `config` enables, from the ones `registry` has. Every section is
/// checked, enabled or not; an error names the field, the value and what is expected.
pub fn enabled_plugins(config: &Config, registry: &Registry) -> Result<Plugins, PluginConfigError> {
    let server_name = <&ServerName>::try_from(config.homeserver.server_name.as_str())
        .map_err(|_| PluginConfigError::ServerName(config.homeserver.server_name.clone()))?;
    let ctx = BuildContext {
        server_name,
        clock: Arc::new(SystemClock),
    };
    let mut plugins = Plugins::default();
    for (id, section) in &config.bots {
        let bot =
            registry
                .build_bot(id, section, &ctx)
                .ok_or_else(|| PluginConfigError::Unknown {
                    section: "bots",
                    id: id.clone(),
                    available: registry.bot_ids(),
                })??;
        if section.enabled {
            plugins.bots.push(bot);
        }
    }
    for (id, section) in &config.bridges {
        let bridge = registry.build_bridge(id, section, &ctx).ok_or_else(|| {
            PluginConfigError::Unknown {
                section: "bridges",
                id: id.clone(),
                available: registry.bridge_ids(),
            }
        })??;
        if section.enabled {
            // A bad puppet template is the bridge author's bug, but it would leave the
            // puppets out of the registration: refuse it here, before anything is made.
            PuppetNaming::new(&bridge.puppet_template(), server_name).map_err(|source| {
                PluginConfigError::PuppetTemplate {
                    id: id.clone(),
                    source,
                }
            })?;
            plugins.bridges.push(bridge);
        }
    }
    Ok(plugins)
}
