//! How plug-ins register themselves. A plug-in implements a factory ([`BridgeFactory`] or
//! [`BotFactory`]): its id, its typed settings with their defaults, its documented example
//! section, and how it is built from them. A binary lists the plug-ins it has in a
//! [`Registry`], one line each; the framework then builds those the config enables, and an
//! invalid section is refused with the field (`bridges.<id>.<field>`), the value and what is
//! expected.

use std::sync::Arc;

use ruma::ServerName;
use serde::de::DeserializeOwned;

use crate::PluginError;
use crate::bot::Bot;
use crate::bridge::Bridge;
use crate::clock::Clock;
use crate::config::{PluginSection, SettingsError};

/// What the framework knows when it builds a plug-in.
#[derive(Clone, Debug)]
pub struct BuildContext<'a> {
    /// The homeserver's name (`homeserver.server_name`).
    pub server_name: &'a ServerName,
    /// Where the time comes from (the same clock the plug-in's context gives).
    pub clock: Arc<dyn Clock>,
}

/// A bridge that registers itself.
pub trait BridgeFactory: Bridge + Sized {
    /// Its id: the key of its section (`bridges.<ID>`) and of its rows in the database.
    const ID: &'static str;
    /// Its own settings (its section without `enabled` and the puppet templates), with
    /// defaults for what may be left out.
    type Config: DeserializeOwned;
    /// Its section as `example-config.yaml` documents it: YAML of its own settings (no
    /// `enabled`), each with a comment, every value its default unless the comment says
    /// otherwise. A test parses it as [`BridgeFactory::Config`].
    fn example_config() -> &'static str;
    /// Builds the bridge from its settings; an error names the field and what is expected.
    fn build(config: Self::Config, ctx: &BuildContext<'_>) -> Result<Self, PluginError>;
}

/// A bot that registers itself.
pub trait BotFactory: Bot + Sized {
    /// Its id: the key of its section (`bots.<ID>`) and of its data in the database.
    const ID: &'static str;
    /// Its own settings (its section without `enabled`), with defaults for what may be left
    /// out.
    type Config: DeserializeOwned;
    /// Its section as `example-config.yaml` documents it (see
    /// [`BridgeFactory::example_config`]).
    fn example_config() -> &'static str;
    /// Builds the bot from its settings; an error names the field and what is expected.
    fn build(config: Self::Config, ctx: &BuildContext<'_>) -> Result<Self, PluginError>;
}

/// A plug-in's section could not be turned into the plug-in.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting does not read as the plug-in's settings type.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The plug-in refused its settings (the plug-in's message names the field).
    #[error("{source}")]
    Plugin {
        /// `bots.<id>` or `bridges.<id>`.
        section: String,
        /// Why.
        source: PluginError,
    },
}

/// One registered plug-in of kind `P` (`dyn Bridge` or `dyn Bot`).
struct Entry<P: ?Sized> {
    id: &'static str,
    example: fn() -> &'static str,
    check_example: fn(&str) -> Result<(), SettingsError>,
    build: fn(&PluginSection, &BuildContext<'_>) -> Result<Arc<P>, BuildError>,
}

/// Builds the bridge `F` from its section as the framework does: the settings parsed as
/// `F::Config`, then [`BridgeFactory::build`].
pub fn build_bridge<F: BridgeFactory>(
    section: &PluginSection,
    ctx: &BuildContext<'_>,
) -> Result<F, BuildError> {
    let name = format!("bridges.{}", F::ID);
    let config: F::Config = section.typed(&name)?;
    F::build(config, ctx).map_err(|source| BuildError::Plugin {
        section: name,
        source,
    })
}

/// Builds the bot `F` from its section as the framework does: the settings parsed as
/// `F::Config`, then [`BotFactory::build`].
pub fn build_bot<F: BotFactory>(
    section: &PluginSection,
    ctx: &BuildContext<'_>,
) -> Result<F, BuildError> {
    let name = format!("bots.{}", F::ID);
    let config: F::Config = section.typed(&name)?;
    F::build(config, ctx).map_err(|source| BuildError::Plugin {
        section: name,
        source,
    })
}

/// Whether an example section reads as the settings type `C`.
fn check_example<C: DeserializeOwned>(
    section_name: &str,
    example: &str,
) -> Result<(), SettingsError> {
    let section: PluginSection = serde_norway::from_str(example).map_err(|e| SettingsError {
        field: section_name.to_owned(),
        message: format!("the example does not parse as YAML: {e}"),
    })?;
    section.typed::<C>(section_name).map(|_| ())
}

/// The plug-ins a binary has, each registered with one line.
#[derive(Default)]
pub struct Registry {
    bridges: Vec<Entry<dyn Bridge>>,
    bots: Vec<Entry<dyn Bot>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("bridges", &self.bridge_ids())
            .field("bots", &self.bot_ids())
            .finish()
    }
}

impl Registry {
    /// Adds the bridge `F`.
    pub fn bridge<F: BridgeFactory>(&mut self) -> &mut Self {
        self.bridges.push(Entry {
            id: F::ID,
            example: F::example_config,
            check_example: |example| {
                check_example::<F::Config>(&format!("bridges.{}", F::ID), example)
            },
            build: |section, ctx| Ok(Arc::new(build_bridge::<F>(section, ctx)?)),
        });
        self
    }

    /// Adds the bot `F`.
    pub fn bot<F: BotFactory>(&mut self) -> &mut Self {
        self.bots.push(Entry {
            id: F::ID,
            example: F::example_config,
            check_example: |example| {
                check_example::<F::Config>(&format!("bots.{}", F::ID), example)
            },
            build: |section, ctx| Ok(Arc::new(build_bot::<F>(section, ctx)?)),
        });
        self
    }

    /// The ids of the bridges registered, in order.
    #[must_use]
    pub fn bridge_ids(&self) -> Vec<&'static str> {
        self.bridges.iter().map(|e| e.id).collect()
    }

    /// The ids of the bots registered, in order.
    #[must_use]
    pub fn bot_ids(&self) -> Vec<&'static str> {
        self.bots.iter().map(|e| e.id).collect()
    }

    /// Builds the bridge `id` from its section; `None` when no bridge `id` is registered.
    #[must_use]
    pub fn build_bridge(
        &self,
        id: &str,
        section: &PluginSection,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn Bridge>, BuildError>> {
        let entry = self.bridges.iter().find(|e| e.id == id)?;
        Some((entry.build)(section, ctx))
    }

    /// Builds the bot `id` from its section; `None` when no bot `id` is registered.
    #[must_use]
    pub fn build_bot(
        &self,
        id: &str,
        section: &PluginSection,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn Bot>, BuildError>> {
        let entry = self.bots.iter().find(|e| e.id == id)?;
        Some((entry.build)(section, ctx))
    }

    /// Every registered plug-in's documented example section, as `(section, example)` with
    /// `section` `bots.<id>` or `bridges.<id>`.
    #[must_use]
    pub fn examples(&self) -> Vec<(String, &'static str)> {
        let bots = self
            .bots
            .iter()
            .map(|e| (format!("bots.{}", e.id), (e.example)()));
        let bridges = self
            .bridges
            .iter()
            .map(|e| (format!("bridges.{}", e.id), (e.example)()));
        bots.chain(bridges).collect()
    }

    /// Checks that every registered plug-in's example section reads as its settings type;
    /// the errors name the field.
    pub fn check_examples(&self) -> Vec<SettingsError> {
        let bots = self.bots.iter().map(|e| (e.check_example)((e.example)()));
        let bridges = self
            .bridges
            .iter()
            .map(|e| (e.check_example)((e.example)()));
        bots.chain(bridges).filter_map(Result::err).collect()
    }
}
