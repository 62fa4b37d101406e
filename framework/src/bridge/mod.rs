//! The bridge framework: the [`Bridge`] plug-in trait and what it builds on (remote ids,
//! puppets, portals, the message map). Work in progress; see `docs/runtime.md`.

pub mod format;
pub mod ids;
pub mod matrix;
pub mod plugin;
pub mod puppet;

pub use format::sanitize_html;
pub use ids::{
    PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId, escape_localpart, unescape_localpart,
};
pub use matrix::{
    BridgeError, BridgeInfo, Bridged, MatrixSide, PortalInfo, PuppetProfile, RemoteText, TextKind,
};
pub use plugin::{Bridge, BridgeContext, MatrixText, PortalRooms};
pub use puppet::{PuppetNaming, TemplateError};
