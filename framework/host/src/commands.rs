//! One way to run chat commands, for bots and bridges alike: a message the plug-in's
//! [`CommandSet`] parsed is refused with the reason (unknown, not permitted, wrong
//! arguments), `help` is answered from the definitions and the sender's level, anything else
//! is logged and handed to the plug-in; the answer goes back as a notice replying to the
//! command, once however often the event is handled.

use std::future::Future;

use switchboard_api::PluginError;
use switchboard_api::command::{CommandError, CommandInvocation, CommandReply, CommandSet};
use switchboard_api::event::RoomEvent;
use switchboard_api::permission::PermissionLevel;

use crate::client::HomeserverClient;
use crate::inbox::HandleError;
use switchboard_api::bot::send_notice_reply;

/// Where a command was sent, and by whom: what the runner needs to answer it.
pub(crate) struct CommandSource<'a> {
    /// The plug-in's id (in logs and derived transaction ids).
    pub plugin: &'a str,
    /// The client the answer is sent with (as the bot).
    pub client: &'a HomeserverClient,
    /// The message holding the command.
    pub event: &'a RoomEvent,
    /// The sender's permission level.
    pub level: PermissionLevel,
    /// Sent in the sender's management room (where commands need no prefix).
    pub in_management_room: bool,
}

/// How a command ended, for a plug-in's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandOutcome {
    /// Refused before it ran (unknown, not permitted, wrong arguments).
    Refused,
    /// Run (`help` included).
    Run,
}

impl CommandOutcome {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Run => "run",
        }
    }
}

/// Runs the command `parsed` from `commands` (or answers why it cannot run) and replies with
/// the result; `run` does what `help` does not. `counted` hears how it ended. A transient
/// failure is returned (the event is retried later); the answer is sent once.
pub(crate) async fn run_command<Run, Answer>(
    source: &CommandSource<'_>,
    commands: &CommandSet,
    parsed: Result<CommandInvocation, CommandError>,
    counted: impl Fn(CommandOutcome),
    run: Run,
) -> Result<(), HandleError>
where
    Run: FnOnce(CommandInvocation) -> Answer,
    Answer: Future<Output = Result<CommandReply, HandleError>>,
{
    let reply = match parsed {
        Err(error) => {
            counted(CommandOutcome::Refused);
            CommandReply::from(error.to_string())
        }
        Ok(invocation) => {
            tracing::info!(plugin = source.plugin, sender = %source.event.sender, command = %invocation.name, "running a command");
            counted(CommandOutcome::Run);
            if invocation.name == "help" {
                CommandReply::html(
                    commands.help(source.level, source.in_management_room),
                    commands.help_html(source.level, source.in_management_room),
                )
            } else {
                run(invocation).await?
            }
        }
    };
    if !reply.text.is_empty() {
        send_notice_reply(
            source.client,
            source.plugin,
            source.event,
            "command",
            &reply.text,
            reply.html.as_deref(),
        )
        .await?;
    }
    Ok(())
}

/// A plug-in's answer to one of its own commands: a permanent failure is shown to the
/// sender (`⚠️ <why>`); a transient one retries the event.
pub(crate) fn plugin_answer(
    answer: Result<CommandReply, PluginError>,
) -> Result<CommandReply, HandleError> {
    match answer {
        Ok(reply) => Ok(reply),
        Err(error) if !error.is_transient() => Ok(format!("⚠️ {error}").into()),
        Err(transient) => Err(transient.into()),
    }
}
