//! The bridge host: it runs the bridges written against [`switchboard_api::bridge`] — routes
//! Matrix events to their portal's bridge, keeps puppets, portals and the message map
//! ([`BridgeMatrix`], the bridges' [`MatrixSide`]), retries through the outbox, and runs logins,
//! relay mode and the built-in commands. See `docs/runtime.md`.
//!
//! The plug-in contract is re-exported here under its former paths.

mod backfill;
mod commands;
pub mod from_matrix;
pub(crate) mod host;
pub mod matrix;
pub mod media;
mod message_map;
pub mod plugin;
mod portal;
pub mod puppet;
mod puppet_cache;
pub mod remote;
mod side;
mod skipped;
mod status;
pub mod view;

pub use switchboard_api::bridge::{
    AliasHandler, BackfillHandler, Bridge, BridgeCommand, BridgeContext, BridgeState, DataOwner,
    DirectChatHandler, EditHandler, HostPort, LoginHandler, MatrixSide, MediaHandler,
    PresenceHandler, ReactionHandler, RedactionHandler,
};
pub use switchboard_api::event::TextKind;
pub use switchboard_api::format::{
    self, clean_text, html_to_markdown, html_to_text, markdown_to_html, mentioned_user,
    sanitize_html, strip_reply_fallback,
};
pub use switchboard_api::ids::{
    self, LoginId, PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId, escape_localpart,
    unescape_localpart,
};
pub use switchboard_api::login::{
    self, Login, LoginField, LoginFlow, LoginRequest, LoginStep, NewLogin, Via,
};
pub use switchboard_api::matrix::{
    MatrixEdit, MatrixMedia, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRead,
    MatrixRedaction, MatrixTyping, Mention,
};
pub use switchboard_api::remote::{
    Applied, BridgeInfo, Bridged, MediaKind, PortalInfo, PuppetProfile, RemoteEvent, RemoteMedia,
    RemoteReaction, RemoteText,
};

pub(crate) use host::{BridgeHost, Lookup};
pub use matrix::{BridgeError, BridgeMatrix};
pub use plugin::PortalRooms;
pub use puppet::{PuppetNaming, TemplateError};
pub use switchboard_api::host::{BridgeSummary, HostView, PortalSummary, PuppetSummary};
pub(crate) use view::BotSwitch;
pub use view::PluginsView;
