//! What the host asks of the runtime for the admin tools it offers bots: the health checks,
//! re-reading the config (the host applies the plug-in sections that changed), and the
//! metrics. The runtime implements [`Diagnostics`]; the host implements [`PluginReload`].

use switchboard_api::config::{PluginSection, ReloadError};
use switchboard_api::host::{Finding, Sample};

/// The runtime's side of the admin tools.
#[async_trait::async_trait]
pub trait Diagnostics: Send + Sync + std::fmt::Debug {
    /// The health checks: the registration against the config, the database, and the
    /// homeserver (reachable, accepting our token, reaching us).
    async fn doctor(&self) -> Vec<Finding>;

    /// Reads the config file again; each changed plug-in section is handed to `plugins`.
    fn reload_config(&self, plugins: &dyn PluginReload) -> Vec<Finding>;

    /// Every metric's values now, as `/metrics` shows them.
    fn metric_samples(&self) -> Vec<Sample>;
}

/// The host's side of a config reload: new settings for a running plug-in.
pub trait PluginReload {
    /// Hands the bot `id` its new section; `None` when no such bot runs.
    fn reload_bot(&self, id: &str, section: &PluginSection) -> Option<Result<(), ReloadError>>;

    /// Hands the bridge `id` its new section; `None` when no such bridge runs.
    fn reload_bridge(&self, id: &str, section: &PluginSection) -> Option<Result<(), ReloadError>>;
}
