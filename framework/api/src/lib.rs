//! The plug-in contract of Switchboard: the types bridges and bots are written against. It
//! holds no database and no server; the framework's other crates implement what it describes.
//! A plug-in depends on this crate only: it re-exports the homeserver client (with its TLS
//! helpers), `ruma`, `serde`, `serde_json` and `async_trait` at the versions it uses.
//!
//! - [`ids`]: identifiers of the remote network as newtypes (chats, users, messages, logins,
//!   portal keys), and the reversible mapping of remote ids onto Matrix localparts.
//! - [`PluginError`]: the one error of every plug-in-facing trait.
//! - [`event`]: a Matrix room event as plug-ins receive it.
//! - [`remote`]: what happens on the remote network, as a bridge hands it to the framework.
//! - [`matrix`]: what Matrix users do in a portal, as a bridge is handed it.
//! - [`login`]: users' own accounts on the remote network, and their login flows.
//! - [`factory`]: how a plug-in registers itself (id, typed settings, example, build).
//! - [`bot`]: what a bot implements and what it acts with.
//! - [`host`]: what a bot may see and do of the Switchboard it runs in.
//! - [`bridge`]: what a bridge implements and what it acts with.
//! - [`status`]: how a bridge's (and each login's) connection stands.
//! - [`clock`] and [`services`]: the time, the shutdown signal and tracked tasks every
//!   plug-in context offers.
//! - [`connection`]: connections the framework keeps up for a bridge (its link, each
//!   login's), reconnected with backoff and reported as state.
//! - [`config`]: a plug-in's section of the config; [`Secret`]: a password or token in it.
//! - [`command`]: chat commands (definitions, parsing, help, answers, tables).
//! - [`permission`]: who may do what (`permissions` in the config).
//! - [`format`]: message formatting between Matrix HTML, Markdown and plain text, and HTML
//!   sanitising to what Matrix allows.
//! - [`template`]: the text templates operators write (relay messages, puppet names).

pub mod bot;
pub mod bridge;
pub mod clock;
pub mod command;
pub mod config;
pub mod connection;
mod error;
pub mod event;
pub mod factory;
pub mod format;
pub mod host;
pub mod ids;
pub mod login;
pub mod matrix;
pub mod permission;
pub mod remote;
pub mod secret;
pub mod services;
pub mod status;
pub mod template;
pub mod thirdparty;

pub use error::{BoxError, PluginError, ResultExt};
pub use secret::Secret;

pub use async_trait::async_trait;
pub use ruma;
pub use serde;
pub use serde_json;
pub use switchboard_client::{self as client, Backoff, FileData, tls};
pub use switchboard_registration::{Namespace, Namespaces, is_valid_localpart};
pub use tokio_util::sync::CancellationToken;
