//! The bridge framework: the [`Bridge`] plug-in trait and what it builds on (remote ids,
//! puppets, portals, the message map). Work in progress; see `docs/runtime.md`.

mod backfill;
pub mod commands;
pub use switchboard_api::format;
pub mod from_matrix;
pub(crate) mod host;
pub use switchboard_api::ids;
pub mod login;
pub mod matrix;
pub mod media;
pub mod plugin;
pub mod puppet;
mod puppet_cache;
pub mod remote;
mod skipped;
pub mod view;

pub use backfill::BackfillHandler;
pub use commands::BridgeCommand;
pub use format::{
    clean_text, html_to_markdown, html_to_text, markdown_to_html, mentioned_user, sanitize_html,
    strip_reply_fallback,
};
pub use from_matrix::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRead, MatrixRedaction,
    MatrixTyping, Mention,
};
pub(crate) use host::BridgeHost;
pub use ids::{
    LoginId, PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId, escape_localpart,
    unescape_localpart,
};
pub use login::{
    Login, LoginField, LoginFlow, LoginHandler, LoginRequest, LoginStep, NewLogin, Via,
};
pub use matrix::{
    BridgeError, BridgeInfo, Bridged, MatrixSide, PortalInfo, PuppetProfile, RemoteText, TextKind,
};
pub use media::{MatrixMedia, MediaHandler, MediaKind, RemoteMedia};
pub use plugin::{
    AliasHandler, Bridge, BridgeContext, BridgeState, DirectChatHandler, EditHandler, PortalRooms,
    PresenceHandler, ReactionHandler, RedactionHandler,
};
pub use puppet::{PuppetNaming, TemplateError};
pub use remote::{Applied, RemoteEvent, RemoteReaction};
pub(crate) use view::{BotSwitch, Diagnostics};
pub use view::{BridgeSummary, HostView, PortalSummary, PuppetSummary};
