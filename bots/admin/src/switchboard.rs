//! Switchboard's own bridge commands: portals and puppets, through the framework's view of
//! the plug-ins.

use switchboard_api::bot::BotContext;
use switchboard_api::command::{CommandReply, Table};
use switchboard_api::ruma::{RoomId, UserId};

use crate::cli::{Portals, Puppets};
use crate::synapse::AdminError;

fn failed(error: &switchboard_api::PluginError) -> AdminError {
    AdminError::Unreachable(error.to_string())
}

fn room(room: &str) -> Result<&RoomId, AdminError> {
    <&RoomId>::try_from(room)
        .map_err(|e| AdminError::BadArgument(format!("{room:?} is not a room id (!…:server): {e}")))
}

/// Runs a `portals …` command.
pub async fn portals(ctx: &BotContext, command: &Portals) -> Result<CommandReply, AdminError> {
    let host = ctx.host();
    match command {
        Portals::List { bridge } => {
            let mut table = Table::new(&["bridge", "chat", "for", "room"]);
            for portal in host.portals().await.map_err(|e| failed(&e))? {
                if bridge.as_ref().is_some_and(|b| *b != portal.bridge) {
                    continue;
                }
                table.row([
                    portal.bridge,
                    portal.key.chat.to_string(),
                    portal
                        .key
                        .receiver
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    portal.room_id,
                ]);
            }
            Ok(table.reply("Portal rooms", "No portal rooms."))
        }
        Portals::Show(arg) => {
            let room_id = room(&arg.room)?;
            Ok(match host.portal_of(room_id) {
                Some(portal) => {
                    let mut table = Table::new(&["field", "value"]);
                    table.row(["bridge".to_owned(), portal.bridge]);
                    table.row(["chat".to_owned(), portal.key.chat.to_string()]);
                    if let Some(receiver) = portal.key.receiver {
                        table.row(["for".to_owned(), receiver.to_string()]);
                    }
                    table.reply(&portal.room_id, "")
                }
                None => format!("{room_id} is not a portal room.").into(),
            })
        }
        Portals::Unbridge(arg) => {
            let room_id = room(&arg.room)?;
            Ok(
                match host.unbridge(room_id).await.map_err(|e| failed(&e))? {
                    Some(portal) => format!(
                        "{room_id} is no longer bridged to {} on {}.",
                        portal.key.chat, portal.bridge
                    )
                    .into(),
                    None => format!("{room_id} is not a portal room.").into(),
                },
            )
        }
    }
}

/// Runs a `puppets …` command.
pub async fn puppets(ctx: &BotContext, command: &Puppets) -> Result<CommandReply, AdminError> {
    let host = ctx.host();
    match command {
        Puppets::List { bridge, limit } => {
            let mut table = Table::new(&["bridge", "remote user", "puppet"]);
            for puppet in host
                .puppets(bridge.as_deref(), *limit)
                .await
                .map_err(|e| failed(&e))?
            {
                table.row([puppet.bridge, puppet.remote, puppet.user_id]);
            }
            Ok(table.reply("Puppets", "No puppets."))
        }
        Puppets::Show { user } => {
            let user_id = <&UserId>::try_from(user.as_str()).map_err(|e| {
                AdminError::BadArgument(format!("{user:?} is not a user id (@…:server): {e}"))
            })?;
            let found = host
                .puppets(None, i64::MAX)
                .await
                .map_err(|e| failed(&e))?
                .into_iter()
                .find(|p| p.user_id == user_id.as_str());
            Ok(match found {
                Some(puppet) => {
                    let mut table = Table::new(&["field", "value"]);
                    table.row(["bridge".to_owned(), puppet.bridge]);
                    table.row(["remote user".to_owned(), puppet.remote]);
                    let stored = ctx
                        .client()
                        .managed_profile(user_id)
                        .await
                        .unwrap_or_default();
                    if let Some(name) = stored.displayname {
                        table.row(["display name".to_owned(), name]);
                    }
                    if let Some(avatar) = stored.avatar_url {
                        table.row(["avatar".to_owned(), avatar]);
                    }
                    table.reply(user_id.as_str(), "")
                }
                None => format!("{user_id} is not a puppet of any bridge.").into(),
            })
        }
    }
}
