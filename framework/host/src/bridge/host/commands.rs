//! A bridge's chat commands as the host runs them: the built-in ones (`version`, `ping`,
//! `bridge`, `sync`, `unbridge`), the login commands, and the bridge's own, through the one
//! command runner every plug-in shares.

use switchboard_api::PluginError;
use switchboard_api::bridge::BridgeCommand;
use switchboard_api::event::RoomEvent;

use super::HostedBridge;
use crate::bridge::ids::{PortalKey, RemoteChatId};
use crate::command::{CommandError, CommandInvocation, CommandReply};
use crate::commands::{CommandOutcome, CommandSource, plugin_answer, run_command};
use crate::inbox::HandleError;
use crate::isolation::{Handling, catch_panic};
use crate::permission::PermissionLevel;

impl HostedBridge {
    /// Runs a command (or answers why it cannot run) and replies with the result.
    pub(super) async fn run_command(
        &self,
        parsed: Result<CommandInvocation, CommandError>,
        event: &RoomEvent,
        portal: Option<PortalKey>,
        level: PermissionLevel,
        in_management_room: bool,
    ) -> Result<(), HandleError> {
        let source = CommandSource {
            plugin: self.id(),
            client: &self.client,
            event,
            level,
            in_management_room,
        };
        let counted = |outcome: CommandOutcome| self.count("command", outcome.label());
        run_command(&source, &self.commands, parsed, counted, |invocation| {
            self.run_own_command(invocation, event, portal, level)
        })
        .await
    }

    /// Runs a parsed command other than `help`: a built-in one, a login command, or the
    /// bridge's own.
    async fn run_own_command(
        &self,
        invocation: CommandInvocation,
        event: &RoomEvent,
        portal: Option<PortalKey>,
        level: PermissionLevel,
    ) -> Result<CommandReply, HandleError> {
        let info = self.matrix.info();
        let not_bridged = || format!("This room is not bridged to {}.", info.displayname);
        Ok(match invocation.name.as_str() {
            "version" => format!(
                "{} bridge on Switchboard {}",
                info.displayname,
                env!("CARGO_PKG_VERSION")
            )
            .into(),
            "ping" => {
                let waiting = self.store.outbox_count(self.id()).await?;
                format!(
                    "{} is {}: {} portal room(s), {waiting} message(s) waiting in the outbox \
                     for the network.",
                    info.displayname,
                    self.ctx.state(),
                    self.matrix.portal_rooms.count(self.id()),
                )
                .into()
            }
            "bridge" => self.bridge_room(&invocation, event, portal).await?.into(),
            "sync" => match &portal {
                Some(key) => self.bridge.sync(&self.ctx, key).await?.into(),
                None => not_bridged().into(),
            },
            "unbridge" => match portal {
                Some(key) => {
                    self.matrix.unbridge(&key).await?;
                    format!(
                        "This room is no longer bridged to {} on {}.",
                        key.chat, info.displayname
                    )
                    .into()
                }
                None => not_bridged().into(),
            },
            name => {
                if let Some(answer) = self
                    .login_command(name, &invocation, event, portal.as_ref())
                    .await
                {
                    return Ok(answer?.into());
                }
                let command = BridgeCommand {
                    invocation,
                    event_id: event.event_id.clone(),
                    room_id: event.room_id.clone(),
                    portal,
                    sender: event.sender.clone(),
                    level,
                };
                let handling = Handling {
                    plugin: self.id(),
                    room_id: event.room_id.as_str(),
                    event: event.event_id.as_str(),
                };
                let answer = catch_panic(
                    &self.matrix.metrics.handler_panics,
                    handling,
                    self.bridge.handle_command(&self.ctx, &command),
                )
                .await;
                return plugin_answer(
                    answer.unwrap_or_else(|panicked| Err(PluginError::permanent(panicked))),
                );
            }
        })
    }

    /// The `bridge <chat id>` command: makes the room the portal of that chat, if the bridge
    /// allows it; returns the answer.
    pub(super) async fn bridge_room(
        &self,
        invocation: &CommandInvocation,
        event: &RoomEvent,
        portal: Option<PortalKey>,
    ) -> Result<String, HandleError> {
        let network = &self.matrix.info().displayname;
        if let Some(key) = portal {
            return Ok(format!(
                "This room is bridged to {} on {network} already; `unbridge` it first.",
                key.chat
            ));
        }
        let Some(chat) = invocation.args.first().map(|c| RemoteChatId(c.clone())) else {
            return Ok("Say which chat to bridge.".to_owned());
        };
        Ok(
            match self.bridge_existing(&event.room_id, chat.clone()).await? {
                Ok(()) => format!("This room is now bridged to {chat} on {network}."),
                Err(why) => why,
            },
        )
    }
}
