//! The plug-ins compiled into this binary: one line each, behind its cargo feature.

pub use switchboard_runtime::PluginConfigError;
use switchboard_runtime::Plugins;
use switchboard_runtime::api::factory::Registry;
use switchboard_runtime::config::Config;

/// Every plug-in this build has.
#[must_use]
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    #[cfg(feature = "bot-echo")]
    registry.bot::<switchboard_bot_echo::EchoBot>();
    #[cfg(feature = "bot-admin")]
    registry.bot::<switchboard_bot_admin::AdminBot>();
    #[cfg(feature = "bridge-loopback")]
    registry.bridge::<switchboard_bridge_loopback::LoopbackBridge>();
    #[cfg(feature = "bridge-mqtt")]
    registry.bridge::<switchboard_bridge_mqtt::MqttBridge>();
    registry
}

/// Every plug-in enabled in the config.
pub fn enabled_plugins(config: &Config) -> Result<Plugins, PluginConfigError> {
    switchboard_runtime::enabled_plugins(config, &registry())
}
