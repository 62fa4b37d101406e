//! The plug-in contract of Switchboard: the types bridges and bots are written against. It
//! holds no database and no server; the framework's other crates implement what it describes.
//!
//! - [`ids`]: identifiers of the remote network as newtypes (chats, users, messages, logins,
//!   portal keys), and the reversible mapping of remote ids onto Matrix localparts.
//! - [`PluginError`]: the one error of every plug-in-facing trait.
//! - [`command`]: chat commands (definitions, parsing, help, answers, tables).
//! - [`permission`]: who may do what (`permissions` in the config).
//! - [`format`]: message formatting between Matrix HTML, Markdown and plain text, and HTML
//!   sanitising to what Matrix allows.
//! - [`template`]: the text templates operators write (relay messages, puppet names).

pub mod command;
mod error;
pub mod format;
pub mod ids;
pub mod permission;
pub mod template;

pub use error::{BoxError, PluginError, ResultExt};
