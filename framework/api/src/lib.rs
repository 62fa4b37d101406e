//! The plug-in contract of Switchboard: the types bridges and bots are written against. It
//! holds no database and no server; the framework's other crates implement what it describes.
//!
//! - [`ids`]: identifiers of the remote network as newtypes (chats, users, messages, logins,
//!   portal keys), and the reversible mapping of remote ids onto Matrix localparts.

pub mod ids;
