//! The loopback example bridge. Its "network" is a single chat with a single remote user,
//! `echo`, who answers every message: a Matrix user's `hello` in the portal comes back as
//! `echo: hello` from the puppet `@_loopback_echo:<server>`, as a reply. Echo follows what you
//! do: edit your message and the answer is edited; react to a message and echo reacts the same;
//! take the reaction back and so does echo; delete your message and the answer goes too. It
//! shows a complete bridge on the framework and is what the framework's end-to-end tests drive.
//!
//! Inviting `@_loopback_<name>:<server>` to a room starts a direct chat with that user of the
//! network (anyone whose name does not start with `nobody`), who answers there.
//!
//! Each chat can have a history (`history: N`): echo's messages from before the bridge saw it,
//! shown first in a new portal room, with the times they were sent.
//!
//! Two things a real network does are played on purpose: messages starting with `!drop` are
//! refused for good, and while the file named by `outage_file` exists the network is down (so
//! messages wait in the outbox until it is back).

mod changes;
mod chats;
mod logins;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use switchboard_api::PluginError;
use switchboard_api::bridge::{
    AliasHandler, BackfillHandler, Bridge, BridgeCommand, BridgeContext, BridgeState,
    DirectChatHandler, EditHandler, LoginHandler, MediaHandler, PresenceHandler, ReactionHandler,
    RedactionHandler,
};
use switchboard_api::clock::Clock;
use switchboard_api::command::{CommandReply, CommandSpec};
use switchboard_api::factory::{BridgeFactory, BuildContext};
use switchboard_api::format::{clean_text, html_to_text};
use switchboard_api::ids::{PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};
use switchboard_api::login::Via;
use switchboard_api::matrix::MatrixMessage;
use switchboard_api::permission::PermissionLevel;
use switchboard_api::remote::{
    Applied, BridgeInfo, Bridged, PortalInfo, PuppetProfile, RemoteEvent, RemoteText,
};
use switchboard_api::ruma::OwnedUserId;
use switchboard_api::serde::{Deserialize, Serialize};

/// The id of the one remote chat.
const CHAT: &str = "lobby";
/// The one remote user.
const ECHO: &str = "echo";
/// Messages starting with this are refused by the "network" (to show what a bridge does with a
/// message it can never deliver).
const REFUSED: &str = "!drop";

/// The loopback bridge's own settings (`bridges.loopback`).
#[derive(Debug, Default, Deserialize)]
#[serde(crate = "switchboard_api::serde", default, deny_unknown_fields)]
pub struct LoopbackSettings {
    /// Matrix users invited to the portal room.
    pub invite: Vec<OwnedUserId>,
    /// Whether Matrix users must log in (or be relayed) to be bridged.
    pub require_login: bool,
    /// While this file exists the network is down.
    pub outage_file: Option<PathBuf>,
    /// How many messages each chat had before the bridge saw it (echo's, a minute apart,
    /// shown when its portal room is created).
    pub history: usize,
}

/// What the loopback network keeps about a chat: the Matrix users in it, in joining order.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(crate = "switchboard_api::serde")]
struct ChatMembers {
    members: Vec<String>,
}

/// The loopback bridge.
#[derive(Clone, Debug)]
pub struct LoopbackBridge {
    invite: Vec<OwnedUserId>,
    /// Whether Matrix users must log in (or be relayed) to be bridged.
    require_login: bool,
    outage_file: Option<PathBuf>,
    /// Messages each chat had before the bridge saw it.
    history: usize,
    /// Set by the `network down` command.
    down: Arc<AtomicBool>,
    /// Where the time comes from (the history's timestamps).
    clock: Arc<dyn Clock>,
}

/// The network's id of a Matrix user's message, and of echo's answer to it.
fn message_id(event_id: &str) -> RemoteMessageId {
    RemoteMessageId(format!("m-{event_id}"))
}

fn answer_id(message: &RemoteMessageId) -> Option<RemoteMessageId> {
    message
        .as_str()
        .strip_prefix("m-")
        .map(|event| RemoteMessageId(format!("answer-{event}")))
}

/// The chat id prefix of direct chats.
const DM_PREFIX: &str = "dm-";

/// The other person of a direct chat.
fn dm_partner(portal: &PortalKey) -> Option<RemoteUserId> {
    portal
        .chat
        .as_str()
        .strip_prefix(DM_PREFIX)
        .map(RemoteUserId::from)
}

/// How a user of the loopback network other than echo looks.
fn person_profile(remote: &RemoteUserId) -> PuppetProfile {
    PuppetProfile {
        displayname: Some(format!("Loopback {remote}")),
        avatar_url: None,
    }
}

fn echo_profile() -> PuppetProfile {
    PuppetProfile {
        displayname: Some("Loopback echo".to_owned()),
        avatar_url: None,
    }
}

fn echo_text(id: RemoteMessageId, body: &str, reply_to: Option<RemoteMessageId>) -> RemoteText {
    RemoteText {
        reply_to,
        ..RemoteText::text(
            id,
            RemoteUserId::from(ECHO),
            echo_profile(),
            format!("echo: {body}"),
        )
    }
}

impl LoopbackBridge {
    /// Fails while the network is down.
    fn reachable(&self) -> Result<(), PluginError> {
        let file_says_down = self.outage_file.as_ref().is_some_and(|path| path.exists());
        if file_says_down || self.down.load(Ordering::Relaxed) {
            return Err(PluginError::network_down("the loopback network is down"));
        }
        Ok(())
    }

    /// `inject <id> <text>`: echo says `text` as the network's message `id` into the portal
    /// (or the lobby), so tests can make the network send, and send again.
    async fn inject(
        &self,
        ctx: &BridgeContext,
        command: &BridgeCommand,
    ) -> Result<String, PluginError> {
        let raw = command.invocation.raw_args.as_str();
        let (id, text) = raw.split_once(char::is_whitespace).unwrap_or((raw, ""));
        let portal = command
            .portal
            .clone()
            .unwrap_or_else(|| PortalKey::shared(CHAT));
        let said = RemoteText::text(
            RemoteMessageId::from(id),
            RemoteUserId::from(ECHO),
            echo_profile(),
            text.trim(),
        );
        let applied = ctx
            .matrix()
            .apply(&portal, &RemoteEvent::Message(said))
            .await?;
        Ok(match applied {
            Applied::Bridged(Bridged::AlreadyBridged(_)) => format!("{id} was bridged before."),
            _ => format!("Echo said {id}."),
        })
    }

    /// `remote-say <text>`: the sender's login says `text` on the network (as their other
    /// client would), which comes back to Matrix — as them with double puppeting, else as the
    /// login's puppet.
    async fn remote_say(
        &self,
        ctx: &BridgeContext,
        command: &BridgeCommand,
    ) -> Result<String, PluginError> {
        let logins = ctx.logins().await?;
        let Some(login) = logins.iter().find(|l| l.user_id == command.sender) else {
            return Err(PluginError::permanent(
                "log in first: `remote-say` speaks with your login",
            ));
        };
        let portal = command
            .portal
            .clone()
            .unwrap_or_else(|| PortalKey::shared(CHAT));
        let profile = PuppetProfile {
            displayname: Some(login.remote_name.clone()),
            avatar_url: None,
        };
        let said = RemoteText::text(
            RemoteMessageId(format!("said-{}", command.event_id)),
            RemoteUserId(login.id.0.clone()),
            profile,
            command.invocation.raw_args.clone(),
        );
        self.echo(ctx, &portal, RemoteEvent::Message(said)).await?;
        Ok(format!("Said on the network as {}.", login.remote_name))
    }

    /// What echo does on the network, shown in Matrix.
    async fn echo(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        event: RemoteEvent,
    ) -> Result<(), PluginError> {
        ctx.matrix().apply(portal, &event).await?;
        Ok(())
    }
}

#[switchboard_api::async_trait]
impl Bridge for LoopbackBridge {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "loopback".to_owned(),
            displayname: "Loopback".to_owned(),
        }
    }

    async fn chat_info(&self, portal: &PortalKey) -> Result<PortalInfo, PluginError> {
        Ok(if portal.chat.as_str() == CHAT {
            PortalInfo {
                name: Some("Loopback lobby".to_owned()),
                topic: Some("Everything said here is answered by the loopback network".to_owned()),
                invite: self.invite.clone(),
                ..PortalInfo::default()
            }
        } else {
            PortalInfo {
                name: Some(format!("Loopback {}", portal.chat)),
                invite: self.invite.clone(),
                ..PortalInfo::default()
            }
        })
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), PluginError> {
        ctx.matrix().ensure_portal(&PortalKey::shared(CHAT)).await?;
        ctx.set_state(BridgeState::Connected);
        Ok(())
    }

    async fn handle_matrix_message(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, PluginError> {
        if message.body.starts_with(REFUSED) {
            return Err(PluginError::permanent(format!(
                "the loopback network refuses messages starting with {REFUSED}"
            )));
        }
        self.reachable()?;
        // The network has the message now; record that before echo answers it.
        let id = message_id(message.event_id.as_str());
        ctx.matrix()
            .map_matrix_event(portal, &id, "", &message.room_id, &message.event_id)
            .await?;
        if let Some(answer) = answer_id(&id) {
            // The network has plain text: formatting goes, mentions become `@<remote id>`.
            let said = match &message.html {
                Some(html) => html_to_text(html, &|user, label| {
                    message
                        .mentions
                        .iter()
                        .find(|m| m.user_id == user)
                        .and_then(|m| m.remote.as_ref())
                        .map_or_else(|| label.to_owned(), |remote| format!("@{remote}"))
                }),
                None => message.body.clone(),
            };
            // Echo greets (and mentions) the account a message came from, if it came from one.
            let text = match &message.via {
                Via::Own(login) => {
                    let account = RemoteUserId(login.id.0.clone());
                    let pill = ctx.matrix().pill(&account, &login.remote_name).await?;
                    let mut text = echo_text(
                        answer,
                        &format!("for {}: {said}", login.remote_name),
                        Some(id.clone()),
                    );
                    text.html = Some(format!("echo: for {pill}: {}", clean_text(&said)));
                    text.mentions = vec![account];
                    text
                }
                Via::Relay(_) | Via::Bridge => echo_text(answer, &said, Some(id.clone())),
            };
            // Echo answers in the thread the message is in, and a location with the same place.
            // In a direct chat, the other person answers.
            let (sender, sender_profile) = dm_partner(portal).map_or_else(
                || (text.sender.clone(), text.sender_profile.clone()),
                |partner| (partner.clone(), person_profile(&partner)),
            );
            let text = RemoteText {
                thread: message.thread.clone(),
                geo_uri: message.geo_uri.clone(),
                sender,
                sender_profile,
                ..text
            };
            self.echo(ctx, portal, RemoteEvent::Message(text)).await?;
        }
        Ok(id)
    }

    /// Every chat of the loopback network has echo in it: any room may be bridged to one.
    async fn allow_bridge(
        &self,
        _ctx: &BridgeContext,
        _chat: &RemoteChatId,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// Echo is always in every chat and the topic says when it was last synced.
    async fn sync(&self, ctx: &BridgeContext, portal: &PortalKey) -> Result<String, PluginError> {
        self.reachable()?;
        let echo = RemoteUserId::from(ECHO);
        // The chat's picture on the network: a 1×1 transparent GIF.
        let avatar = ctx
            .matrix()
            .upload(&PIXEL_GIF.into(), "image/gif", "loopback.gif")
            .await?;
        let events = [
            RemoteEvent::Membership {
                sender: echo.clone(),
                profile: echo_profile(),
                joined: true,
            },
            RemoteEvent::ChatInfo {
                name: None,
                topic: Some(format!("Echo answers everything said in {}", portal.chat)),
                avatar_url: Some(avatar),
            },
            RemoteEvent::Typing {
                sender: echo,
                typing: false,
            },
        ];
        for event in &events {
            ctx.matrix().apply(portal, event).await?;
        }
        Ok("Synced with the loopback network.".to_owned())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![
            CommandSpec::new(
                "network",
                "Takes the loopback network down or brings it back",
            )
            .args("up|down")
            .min_args(1)
            .max_args(1)
            .permission(PermissionLevel::Admin),
            CommandSpec::new(
                "who",
                "Lists the Matrix users the network sees in this chat",
            )
            .max_args(0),
            CommandSpec::new(
                "inject",
                "Makes echo say <text> as the network's message <id> (again, if it was before)",
            )
            .args("<id> <text>")
            .min_args(2)
            .permission(PermissionLevel::Admin),
            CommandSpec::new(
                "remote-say",
                "Says something on the network with your login, as if from another client",
            )
            .args("<text>")
            .min_args(1),
        ]
    }

    async fn handle_command(
        &self,
        ctx: &BridgeContext,
        command: &BridgeCommand,
    ) -> Result<CommandReply, PluginError> {
        match command.invocation.name.as_str() {
            "remote-say" => return self.remote_say(ctx, command).await.map(Into::into),
            "inject" => return self.inject(ctx, command).await.map(Into::into),
            "who" => {
                let portal = command
                    .portal
                    .clone()
                    .unwrap_or_else(|| PortalKey::shared(CHAT));
                let chat: ChatMembers = ctx.matrix().portal_data(&portal).await?;
                return Ok(format!("In {}: {}", portal.chat, chat.members.join(", ")).into());
            }
            _ => {}
        }
        let down = match command.invocation.args.first().map(String::as_str) {
            Some("down") => true,
            Some("up") => false,
            other => {
                return Err(PluginError::permanent(format!(
                    "`network` takes `up` or `down`, not {:?}",
                    other.unwrap_or_default()
                )));
            }
        };
        self.down.store(down, Ordering::Relaxed);
        if down {
            ctx.set_state(BridgeState::TransientDisconnect(
                "taken down by a command".to_owned(),
            ));
        } else {
            ctx.set_state(BridgeState::Connected);
            ctx.network_restored();
        }
        Ok(format!(
            "The loopback network is {} now.",
            if down { "down" } else { "up" }
        )
        .into())
    }

    fn logins(&self) -> Option<&dyn LoginHandler> {
        Some(self)
    }

    fn presence(&self) -> Option<&dyn PresenceHandler> {
        Some(self)
    }

    fn aliases(&self) -> Option<&dyn AliasHandler> {
        Some(self)
    }

    fn media(&self) -> Option<&dyn MediaHandler> {
        Some(self)
    }

    fn direct_chats(&self) -> Option<&dyn DirectChatHandler> {
        Some(self)
    }

    fn backfill(&self) -> Option<&dyn BackfillHandler> {
        Some(self)
    }

    fn third_party(&self) -> Option<&dyn switchboard_api::bridge::ThirdPartyHandler> {
        Some(self)
    }

    fn edits(&self) -> Option<&dyn EditHandler> {
        Some(self)
    }

    fn reactions(&self) -> Option<&dyn ReactionHandler> {
        Some(self)
    }

    fn redactions(&self) -> Option<&dyn RedactionHandler> {
        Some(self)
    }
}

/// The loopback chats' picture: a 1×1 transparent GIF.
const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

impl BridgeFactory for LoopbackBridge {
    const ID: &'static str = "loopback";
    type Config = LoopbackSettings;

    fn example_config() -> &'static str {
        "# Matrix users invited to its portal room.\n\
         invite: [\"@you:example.org\"]\n\
         # Whether users must log in (`!loopback login`, password `loopback`) or be relayed.\n\
         require_login: false\n\
         # While this file exists the network is down (messages wait in the outbox).\n\
         outage_file: /tmp/loopback-down\n\
         # How many messages of history each chat has (shown when its portal room is created).\n\
         history: 0\n"
    }

    fn build(settings: LoopbackSettings, ctx: &BuildContext<'_>) -> Result<Self, PluginError> {
        Ok(Self {
            clock: Arc::clone(&ctx.clock),
            invite: settings.invite,
            require_login: settings.require_login,
            outage_file: settings.outage_file,
            history: settings.history,
            down: Arc::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_field_and_what_is_expected() {
        let parse = |yaml: &str| {
            let section: switchboard_api::config::PluginSection =
                switchboard_api::config::from_yaml(yaml).expect("a section");
            let server_name = <&switchboard_api::ruma::ServerName>::try_from("example.org")
                .expect("a server name");
            switchboard_api::factory::build_bridge::<LoopbackBridge>(
                &section,
                &BuildContext {
                    server_name,
                    clock: std::sync::Arc::new(switchboard_api::clock::SystemClock),
                },
            )
            .map_err(|e| e.to_string())
        };
        let bridge = parse("invite: [\"@a:x\"]\nrequire_login: true\n").expect("valid");
        assert_eq!(bridge.invite, [OwnedUserId::try_from("@a:x").expect("id")]);
        assert!(bridge.require_login);
        let err = parse("invite: [\"not a user\"]\n").expect_err("bad id");
        assert!(err.contains("bridges.loopback.invite[0]"), "{err}");
        let err = parse("invite: \"@a:x\"\n").expect_err("not a list");
        assert!(
            err.contains("bridges.loopback.invite") && err.contains("sequence"),
            "{err}"
        );
        let err = parse("invites: []\n").expect_err("unknown field");
        assert!(err.contains("invites"), "{err}");
    }
}
