//! The admin bot: an in-room console for Switchboard and the homeserver. At its first start it
//! creates the admin room (or joins a configured one) and invites the configured admins; only
//! they may run its commands, and only there. `!admin users create bob`, `!admin rooms list`,
//! `!admin status`… are parsed like a shell (clap, `--help` at every level) and answered with
//! tables. Destructive commands ask for confirmation (`--yes`, or a ✅ reaction on the
//! question); every command is written to the audit log, and those that change something get
//! a line in the admin room; a typed password is removed from the room after use.
//!
//! Homeserver commands go through Synapse's Admin API with `admin_token`; Switchboard's own
//! (`status`, `metrics`, `audit`) work on any homeserver.

pub mod cli;
mod switchboard;
mod synapse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use clap::Parser as _;
use switchboard_api::bot::BotContext;
use switchboard_api::bot::{Bot, BotCommand};
use switchboard_api::client::Identity;
use switchboard_api::command::{CommandReply, CommandSpec, Table};
use switchboard_api::config::{PluginSection, ReloadError};
use switchboard_api::event::RoomEvent;
use switchboard_api::factory::{BotFactory, BuildContext};
use switchboard_api::permission::{PermissionLevel, Permissions};
use switchboard_api::ruma::api::client::{membership, room, state};
use switchboard_api::ruma::events::StateEventType;
use switchboard_api::ruma::events::room::message::RoomMessageEventContent;
use switchboard_api::ruma::serde::Raw;
use switchboard_api::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use switchboard_api::serde::Deserialize;
use switchboard_api::serde_json::{self, json};
use switchboard_api::{PluginError, async_trait};

use cli::{Command, Config as ConfigCommand, Console, Plugins};
use synapse::{AdminError, SynapseAdmin};

/// The reaction that confirms a destructive command.
const CONFIRM: &str = "✅";
/// The key under which the admin room is stored.
const ROOM_KEY: &str = "admin_room";

/// The admin bot's settings (`bots.admin`). `Debug` leaves the token out.
#[derive(Deserialize)]
#[serde(crate = "switchboard_api::serde", deny_unknown_fields)]
pub struct AdminSettings {
    /// Who may run commands: user ids (`@root:example.org`) or whole servers (`example.org`).
    pub admins: Vec<String>,
    /// An existing room to use as the admin room (the bot must be invited); unset: the bot
    /// creates one at its first start.
    #[serde(default)]
    pub room: Option<OwnedRoomId>,
    /// The access token of a Synapse admin (with Matrix Authentication Service: a compatibility
    /// token with admin rights), for the homeserver commands.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// A file holding that token (instead of `admin_token`).
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds an admin has to confirm a destructive command with a reaction.
    #[serde(default = "default_confirm_secs")]
    pub confirm_secs: u64,
}

fn default_confirm_secs() -> u64 {
    60
}

impl Active {
    /// The checked settings, and the admin room they name (if any).
    fn from_settings(
        settings: AdminSettings,
        server_name: &str,
    ) -> Result<(Self, Option<OwnedRoomId>), String> {
        if settings.admins.is_empty() {
            return Err(
                "config field `bots.admin.admins` is empty, but at least one user id \
                        (@root:example.org) or server name is expected"
                    .to_owned(),
            );
        }
        let rules = settings
            .admins
            .iter()
            .map(|a| (a.clone(), PermissionLevel::Admin))
            .collect();
        let permissions = Permissions::new(rules, server_name)
            .map_err(|e| format!("config field `bots.admin.admins`: {e}"))?;
        let token = match (&settings.admin_token, &settings.admin_token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!(
                            "config field `bots.admin.admin_token_file` is {}, which cannot be \
                             read ({e}); a file holding the token is expected",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let active = Self {
            admins: settings
                .admins
                .iter()
                .filter_map(|a| UserId::parse(a.as_str()).ok())
                .collect(),
            permissions,
            token,
            confirm_within: Duration::from_secs(settings.confirm_secs),
        };
        Ok((active, settings.room))
    }
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("admins", &self.admins)
            .field("room", &self.room)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_token_file", &self.admin_token_file)
            .field("confirm_secs", &self.confirm_secs)
            .finish()
    }
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("admins", &self.admins)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("confirm_within", &self.confirm_within)
            .finish_non_exhaustive()
    }
}

/// A destructive command waiting for its ✅.
#[derive(Debug)]
struct Pending {
    sender: OwnedUserId,
    command: Command,
    audit_text: String,
    asked: RoomEvent,
    deadline: Instant,
}

/// The settings that a config reload may change. `Debug` leaves the token out.
struct Active {
    admins: Vec<OwnedUserId>,
    permissions: Permissions,
    token: Option<String>,
    confirm_within: Duration,
}

/// The admin bot.
#[derive(Debug)]
pub struct AdminBot {
    active: RwLock<Arc<Active>>,
    configured_room: Option<OwnedRoomId>,
    server_name: String,
    room: Mutex<Option<OwnedRoomId>>,
    /// Questions asked, by the question's event id.
    pending: Mutex<HashMap<OwnedEventId, Pending>>,
}

impl AdminBot {
    fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn admin_room(&self) -> Option<OwnedRoomId> {
        self.room
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Creates the admin room with the admins invited, then raises them to the highest
    /// power level (added to the room's levels, so the bot keeps its own in every room
    /// version).
    async fn create_room(&self, ctx: &BotContext) -> Result<OwnedRoomId, PluginError> {
        let mut request = room::create_room::v3::Request::new();
        request.name = Some("Switchboard admin".to_owned());
        request.topic = Some("Switchboard's console: send `!admin help`".to_owned());
        request.preset = Some(room::create_room::v3::RoomPreset::PrivateChat);
        let active = self.active();
        request.invite.clone_from(&active.admins);
        let room_id = ctx.client().send(request, Identity::bot()).await?.room_id;
        tracing::info!(%room_id, "admin room created");
        let current = ctx
            .client()
            .send(
                state::get_state_event_for_key::v3::Request::new(
                    room_id.clone(),
                    StateEventType::RoomPowerLevels,
                    String::new(),
                ),
                Identity::bot(),
            )
            .await?;
        let mut levels: serde_json::Value = serde_json::from_str(current.event_or_content.get())
            .map_err(|e| PluginError::permanent(format!("unreadable power levels: {e}")))?;
        for admin in &active.admins {
            levels["users"][admin.as_str()] = json!(100);
        }
        let raw = serde_json::value::to_raw_value(&levels)
            .map_err(|e| PluginError::permanent(e.to_string()))?;
        let update = state::send_state_event::v3::Request::new_raw(
            room_id.clone(),
            StateEventType::RoomPowerLevels,
            String::new(),
            Raw::from_json(raw),
        );
        ctx.client().send(update, Identity::bot()).await?;
        Ok(room_id)
    }

    /// The homeserver commands' API, if a token is configured.
    fn synapse<'a>(&'a self, ctx: &'a BotContext) -> Result<SynapseAdmin<'a>, AdminError> {
        Ok(SynapseAdmin {
            client: ctx.client(),
            token: self.active().token.clone().ok_or(AdminError::NoToken)?,
            server_name: &self.server_name,
            clock: ctx.clock(),
        })
    }

    /// Runs a parsed command.
    async fn run(&self, ctx: &BotContext, command: &Command) -> Result<CommandReply, AdminError> {
        match command {
            Command::Status => Ok(status(ctx)),
            Command::Metrics => Ok(metrics(ctx)),
            Command::Audit { limit } => audit(ctx, *limit)
                .await
                .map_err(|e| AdminError::Unreachable(e.to_string())),
            Command::Plugins(Plugins::List) => Ok(plugins(ctx)),
            Command::Plugins(Plugins::Enable { id } | Plugins::Disable { id }) => {
                let enable = matches!(command, Command::Plugins(Plugins::Enable { .. }));
                if !enable && id == self.id() {
                    return Err(AdminError::BadArgument(
                        "the admin bot cannot turn itself off".to_owned(),
                    ));
                }
                ctx.host()
                    .set_enabled(id, enable)
                    .map_err(|e| AdminError::BadArgument(e.to_string()))?;
                let now = if enable {
                    "on"
                } else {
                    "off until enabled or restarted"
                };
                Ok(format!("{id} is {now}.").into())
            }
            Command::Config(ConfigCommand::Reload) => {
                Ok(findings("Config reload", &ctx.host().reload_config()))
            }
            Command::Doctor => Ok(findings("Health checks", &ctx.host().doctor().await)),
            Command::Portals(portals) => switchboard::portals(ctx, portals).await,
            Command::Puppets(puppets) => switchboard::puppets(ctx, puppets).await,
            Command::Users(users) => self.synapse(ctx)?.users(users).await,
            Command::Rooms(rooms) => self.synapse(ctx)?.rooms(rooms).await,
            Command::Media(media) => self.synapse(ctx)?.media(media).await,
            Command::Tokens(tokens) => self.synapse(ctx)?.tokens(tokens).await,
            Command::Reports(reports) => self.synapse(ctx)?.reports(reports).await,
        }
    }

    /// Runs `command` for `event`, records it in the audit log (and, if it changes
    /// something, in the admin room), and returns the answer.
    async fn run_recorded(
        &self,
        ctx: &BotContext,
        event: &RoomEvent,
        command: &Command,
        audit_text: &str,
    ) -> Result<CommandReply, PluginError> {
        let result = self.run(ctx, command).await;
        let outcome = match &result {
            Ok(_) => "done".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        ctx.audit(event, audit_text, &outcome).await?;
        if command.changes_something()
            && let Some(room) = self.admin_room()
        {
            let line = format!("📝 {} ran `{audit_text}`: {outcome}", event.sender);
            let content = RoomMessageEventContent::notice_plain(line);
            ctx.client()
                .send_message(
                    &room,
                    ctx.txn_id_for(event, "audit"),
                    &content,
                    Identity::bot(),
                    None,
                )
                .await?;
        }
        Ok(result.unwrap_or_else(|e| format!("⚠️ {e}").into()))
    }

    /// Asks to confirm `command` with a reaction; the question is remembered until it expires.
    async fn ask(
        &self,
        ctx: &BotContext,
        event: &RoomEvent,
        command: Command,
        audit_text: String,
    ) -> Result<(), PluginError> {
        let within = self.active().confirm_within;
        let question = format!(
            "`{audit_text}` cannot be undone. React {CONFIRM} to this message within {} s to \
             go ahead, or send the command again with --yes.",
            within.as_secs()
        );
        let asked = ctx.reply_notice(event, "confirm", &question, None).await?;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| p.deadline > Instant::now());
        pending.insert(
            asked,
            Pending {
                sender: event.sender.clone(),
                command,
                audit_text,
                asked: event.clone(),
                deadline: Instant::now() + within,
            },
        );
        Ok(())
    }

    /// A reaction: if it confirms a question its asker is waiting on, runs the command.
    async fn on_reaction(&self, ctx: &BotContext, event: &RoomEvent) -> Result<(), PluginError> {
        #[derive(Deserialize)]
        #[serde(crate = "switchboard_api::serde")]
        struct Annotation {
            event_id: OwnedEventId,
            key: String,
        }
        #[derive(Deserialize)]
        #[serde(crate = "switchboard_api::serde")]
        struct Reaction {
            #[serde(rename = "m.relates_to")]
            relates_to: Annotation,
        }
        let Ok(reaction) = event.content_as::<Reaction>() else {
            return Ok(());
        };
        if !reaction.relates_to.key.starts_with(CONFIRM) {
            return Ok(());
        }
        let waiting = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            match pending.get(&reaction.relates_to.event_id) {
                Some(p) if p.sender == event.sender => {
                    pending.remove(&reaction.relates_to.event_id)
                }
                _ => None,
            }
        };
        let Some(waiting) = waiting else {
            return Ok(());
        };
        let reply = if Instant::now() > waiting.deadline {
            CommandReply::from("The question expired; send the command again.")
        } else {
            self.run_recorded(ctx, &waiting.asked, &waiting.command, &waiting.audit_text)
                .await?
        };
        ctx.reply_notice(
            &waiting.asked,
            "confirmed",
            &reply.text,
            reply.html.as_deref(),
        )
        .await?;
        Ok(())
    }
}

/// Switchboard's health, from its metrics.
fn status(ctx: &BotContext) -> CommandReply {
    let samples = ctx.host().metric_samples();
    let value = |name: &str| {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum::<f64>()
    };
    let mut table = Table::new(&["what", "now"]);
    table.row(["version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()]);
    table.row(["uptime".to_owned(), format!("{} s", ctx.uptime().as_secs())]);
    table.row([
        "inbox depth".to_owned(),
        value("switchboard_inbox_depth").to_string(),
    ]);
    let age = value("switchboard_last_transaction_age_seconds");
    table.row([
        "last transaction".to_owned(),
        if age < 0.0 {
            "none since the start".to_owned()
        } else {
            format!("{age} s ago")
        },
    ]);
    table.row([
        "events failed".to_owned(),
        value("switchboard_events_failed_total").to_string(),
    ]);
    table.row([
        "bridge outbox".to_owned(),
        value("switchboard_bridge_outbox_depth").to_string(),
    ]);
    for sample in samples
        .iter()
        .filter(|s| s.name == "switchboard_bridge_state" && s.value > 0.0)
    {
        let label = |key: &str| {
            sample
                .labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        table.row([format!("bridge {}", label("bridge")), label("state")]);
    }
    table.reply("Switchboard status", "")
}

/// The bots and bridges, whether they run, and the bridges' state.
fn plugins(ctx: &BotContext) -> CommandReply {
    let on_off = |on: bool| if on { "on" } else { "off" }.to_owned();
    let mut table = Table::new(&["plug-in", "kind", "on", "state", "portal rooms"]);
    for (bot, enabled) in ctx.host().bots() {
        table.row([
            bot,
            "bot".to_owned(),
            on_off(enabled),
            String::new(),
            String::new(),
        ]);
    }
    for bridge in ctx.host().bridges() {
        table.row([
            bridge.id,
            format!("bridge to {}", bridge.network),
            on_off(bridge.enabled),
            bridge.state.to_string(),
            bridge.portal_rooms.to_string(),
        ]);
    }
    table.reply("Plug-ins", "No plug-ins run.")
}

/// Health-check or reload findings, one row each.
fn findings(title: &str, findings: &[switchboard_api::host::Finding]) -> CommandReply {
    let mut table = Table::new(&["", "finding"]);
    for finding in findings {
        table.row([finding.severity.to_string(), finding.text.clone()]);
    }
    table.reply(title, "Nothing to report.")
}

/// The key counters, summed over their labels.
fn metrics(ctx: &BotContext) -> CommandReply {
    const SHOWN: [(&str, &str); 9] = [
        ("switchboard_transactions_total", "transactions received"),
        ("switchboard_events_total", "events received"),
        (
            "switchboard_events_invalid_total",
            "events that did not decode",
        ),
        ("switchboard_events_failed_total", "events given up"),
        (
            "switchboard_homeserver_requests_total",
            "homeserver requests",
        ),
        ("switchboard_homeserver_retries_total", "homeserver retries"),
        (
            "switchboard_bridge_matrix_events_total",
            "Matrix events bridged",
        ),
        ("switchboard_bridge_outbox_total", "outbox activity"),
        ("switchboard_inbox_depth", "inbox depth"),
    ];
    let samples = ctx.host().metric_samples();
    let mut table = Table::new(&["counter", "value"]);
    for (name, label) in SHOWN {
        let total: f64 = samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum();
        table.row([label.to_owned(), total.to_string()]);
    }
    table.reply("Key counters since the start (all of them: /metrics)", "")
}

/// The latest audit log entries.
async fn audit(ctx: &BotContext, limit: i64) -> Result<CommandReply, PluginError> {
    let mut table = Table::new(&["at (ms)", "who", "command", "outcome"]);
    for record in ctx.audit_log(limit).await? {
        table.row([
            record.at_ms.to_string(),
            record.sender,
            record.command,
            record.outcome,
        ]);
    }
    Ok(table.reply("Audit log, newest first", "Nothing run yet."))
}

/// A clap message (usage error or help) as a code block.
fn console_text(text: &str) -> CommandReply {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    CommandReply::html(
        text.to_owned(),
        format!("<pre><code>{escaped}</code></pre>"),
    )
}

#[async_trait]
impl Bot for AdminBot {
    fn id(&self) -> &'static str {
        "admin"
    }

    async fn start(&self, ctx: &BotContext) -> Result<(), PluginError> {
        let room = match (
            &self.configured_room,
            ctx.data::<OwnedRoomId>(ROOM_KEY).await?,
        ) {
            (Some(configured), _) => {
                ctx.client()
                    .join(
                        <&switchboard_api::ruma::RoomOrAliasId>::from(&**configured),
                        Identity::bot(),
                    )
                    .await?;
                for admin in &self.active().admins {
                    let invite = membership::invite_user::v3::Request::new(
                        configured.clone(),
                        membership::invite_user::v3::InviteUserId::new(admin.clone()).into(),
                    );
                    // Already there, or invited before: nothing to do.
                    let _ = ctx.client().send(invite, Identity::bot()).await;
                }
                configured.clone()
            }
            (None, Some(stored)) => stored,
            (None, None) => self.create_room(ctx).await?,
        };
        ctx.set_data(ROOM_KEY, &room).await?;
        *self.room.lock().unwrap_or_else(PoisonError::into_inner) = Some(room);
        Ok(())
    }

    fn permissions(&self) -> Option<Permissions> {
        Some(self.active().permissions.clone())
    }

    fn reload(&self, section: &PluginSection) -> Result<(), ReloadError> {
        let settings = section
            .typed("bots.admin")
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let (active, room) =
            Active::from_settings(settings, &self.server_name).map_err(ReloadError::Invalid)?;
        if room != self.configured_room {
            return Err(ReloadError::NeedsRestart(
                "the admin room (`room`) is chosen at start only".to_owned(),
            ));
        }
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(active);
        Ok(())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        cli::top_level()
            .into_iter()
            .map(|(name, about)| {
                CommandSpec::new(name, about)
                    .args("[arguments] (--help for them)")
                    .permission(PermissionLevel::Admin)
            })
            .collect()
    }

    async fn handle_command(
        &self,
        ctx: &BotContext,
        command: &BotCommand,
    ) -> Result<CommandReply, PluginError> {
        let event = &command.event;
        let room = self.admin_room();
        if room.as_ref() != Some(&event.room_id) {
            let place = room.map_or_else(
                || "the admin room".to_owned(),
                |r| format!("https://matrix.to/#/{r}"),
            );
            return Ok(format!("Admin commands are run in the admin room: {place}").into());
        }
        let words: Vec<String> = std::iter::once(command.invocation.name.clone())
            .chain(command.invocation.args.iter().cloned())
            .collect();
        let console = match Console::try_parse_from(&words) {
            Ok(console) => console,
            Err(e) => return Ok(console_text(&e.to_string())),
        };
        let audit_text = cli::without_secrets(&words);
        let reply = if console.command.needs_confirmation() {
            self.ask(ctx, event, console.command, audit_text).await?;
            CommandReply::none()
        } else {
            self.run_recorded(ctx, event, &console.command, &audit_text)
                .await?
        };
        if console_holds_secret(&words)
            && let Err(e) = ctx.redact(event, "it held a password").await
        {
            tracing::warn!(error = %e, "cannot remove a message holding a password; the bot needs the power to redact");
        }
        Ok(reply)
    }

    async fn on_room_event(&self, ctx: &BotContext, event: &RoomEvent) -> Result<(), PluginError> {
        if event.event_type == "m.reaction" && self.admin_room().as_ref() == Some(&event.room_id) {
            return self.on_reaction(ctx, event).await;
        }
        Ok(())
    }
}

/// Whether the typed command holds a password (checked on the words, so that a command that
/// failed to parse after `--password` is removed too).
fn console_holds_secret(words: &[String]) -> bool {
    words
        .iter()
        .any(|w| w == "--password" || w.starts_with("--password="))
}

impl BotFactory for AdminBot {
    const ID: &'static str = "admin";
    type Config = AdminSettings;

    fn example_config() -> &'static str {
        "# Who may run its commands: user ids or whole servers.\n\
         admins: [\"@you:example.org\"]\n\
         # A Synapse admin's access token, for the homeserver commands (or admin_token_file).\n\
         admin_token_file: /etc/switchboard/admin-token\n\
         # An existing room to use; unset, the bot creates one at its first start.\n\
         # room: \"!abc:example.org\"\n\
         # Seconds to confirm a destructive command with a ✅ reaction.\n\
         confirm_secs: 60\n"
    }

    fn build(settings: AdminSettings, ctx: &BuildContext<'_>) -> Result<Self, PluginError> {
        let server_name = ctx.server_name.as_str();
        let (active, room) =
            Active::from_settings(settings, server_name).map_err(PluginError::permanent)?;
        Ok(Self {
            active: RwLock::new(Arc::new(active)),
            configured_room: room,
            server_name: server_name.to_owned(),
            room: Mutex::new(None),
            pending: Mutex::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bot built from its section as the framework builds it.
    fn build(yaml: &str) -> Result<AdminBot, String> {
        let section = switchboard_api::config::from_yaml(yaml).expect("yaml");
        let server_name =
            <&switchboard_api::ruma::ServerName>::try_from("example.org").expect("a server name");
        switchboard_api::factory::build_bot::<AdminBot>(
            &section,
            &BuildContext {
                server_name,
                clock: std::sync::Arc::new(switchboard_api::clock::SystemClock),
            },
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn settings_name_the_field_and_what_is_expected() {
        let empty = build("enabled: true\nadmins: []\n").expect_err("no admins");
        assert!(empty.contains("bots.admin.admins"), "{empty}");
        let missing = build(
            "enabled: true\nadmins: [\"@root:example.org\"]\nadmin_token_file: /nonexistent\n",
        )
        .expect_err("unreadable");
        assert!(missing.contains("admin_token_file"), "{missing}");
        let bot = build("enabled: true\nadmins: [\"@root:example.org\", \"ops.example.org\"]\n")
            .expect("valid");
        let level = |user: &str| {
            bot.active()
                .permissions
                .level(&UserId::parse(user).expect("id"))
        };
        assert_eq!(level("@root:example.org"), PermissionLevel::Admin);
        assert_eq!(level("@anyone:ops.example.org"), PermissionLevel::Admin);
        assert_eq!(level("@bob:example.org"), PermissionLevel::None);
    }

    #[test]
    fn the_admin_token_never_shows_in_debug_output() {
        let bot =
            build("enabled: true\nadmins: [\"@root:example.org\"]\nadmin_token: s3cr3t-t0ken\n")
                .expect("valid");
        let shown = format!("{bot:?}");
        assert!(
            !shown.contains("s3cr3t-t0ken") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn the_docs_hold_the_current_command_reference() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/admin-bot.md");
        let docs = std::fs::read_to_string(path).expect("docs/admin-bot.md");
        let reference = cli::reference();
        assert!(
            docs.contains(&reference),
            "docs/admin-bot.md is out of date: put this under \"Command reference\":\n{reference}"
        );
    }
}
