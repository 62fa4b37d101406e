//! The Switchboard runtime: the config composed from each part's section, metrics, telemetry,
//! the health checks, `run()` and ordered shutdown.
//!
//! Plug-ins do not depend on this crate: they are written against `switchboard-api`. The
//! framework's other crates (client, store, appservice, host, api) are re-exported here under
//! the paths the binary and the integration tests use.

pub mod config;
mod diagnostics;
pub mod doctor;
mod encryption;
mod lease;
pub mod metrics;
pub mod plugins;
pub mod runtime;
mod startup;
pub mod telemetry;

pub use async_trait::async_trait;
pub use client::{ClientError, HomeserverClient, Identity, derive_txn_id};
pub use config::Config;
pub use http;
pub use plugin::{Bot, BotCommand, BotContext, HostOptions, Plugins, RoomEvent};
pub use plugins::{PluginConfigError, enabled_plugins};
pub use ruma;
pub use serde;
pub use serde_json;
pub use switchboard_api::{self as api, PluginError, ResultExt};
pub use switchboard_api::{command, permission, template};
pub use switchboard_appservice as appservice;
pub use switchboard_appservice::inbox;
pub use switchboard_client as client;
pub use switchboard_client::tls;
pub use switchboard_host::{bridge, plugin, provisioning};
pub use switchboard_registration::{Namespace, Namespaces, is_valid_localpart};
pub use switchboard_store as store;
pub use tokio_util::sync::CancellationToken;
