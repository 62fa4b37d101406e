//! Switchboard's plug-in host: it runs the bridges and bots written against
//! `switchboard-api`. The bridge host ([`bridge`]) routes Matrix events to their portal's
//! bridge, keeps puppets, portals and the message map, retries through the outbox, and runs
//! logins, relay mode and the built-in commands; the bot host ([`plugin`]) hands bots their
//! rooms' events and commands; [`provisioning`] serves the same operations over HTTP. It
//! implements the ports the api's contexts hold, and asks the runtime for what only the
//! runtime knows through [`diagnostics::Diagnostics`].

pub mod bridge;
mod commands;
pub mod config;
pub mod decryption;
pub mod diagnostics;
mod group_commit;
mod isolation;
pub mod metrics;
mod options;
pub mod plugin;
pub mod provisioning;
#[cfg(test)]
mod test_fixtures;

use switchboard_api::{command, permission, template};
use switchboard_appservice::{self as appservice, inbox};
use switchboard_client as client;
use switchboard_store as store;
