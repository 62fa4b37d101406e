//! The echo bot: in every room it is in, it answers each text message `ping <rest>` with
//! `pong <rest>`, as a reply. The smallest complete program on the framework, and the
//! benchmark workload.
//!
//! Its commands: `!echo say <text>` (users) repeats the text, `!echo rooms` (admins) counts the
//! rooms the bot is in; `!echo help` lists what the sender may run.
//!
//! It also owns a user namespace (`@_echo_*` by default, `bots.echo.user_prefix` in the
//! config): when the homeserver asks about such a user (someone invites or messages it), the
//! user is created on the spot with a display name.

use switchboard_api::bot::{Bot, BotCommand, BotContext};
use switchboard_api::client::Identity;
use switchboard_api::command::{CommandReply, CommandSpec};
use switchboard_api::event::RoomEvent;
use switchboard_api::factory::{BotFactory, BuildContext};
use switchboard_api::permission::PermissionLevel;
use switchboard_api::ruma::api::client::membership::joined_rooms;
use switchboard_api::ruma::{ServerName, UserId};
use switchboard_api::serde::Deserialize;
use switchboard_api::{Namespace, Namespaces, PluginError, async_trait};

/// Default localpart prefix of the users the echo bot owns.
pub const DEFAULT_USER_PREFIX: &str = "_echo_";

/// The echo bot.
#[derive(Debug)]
pub struct EchoBot {
    user_prefix: String,
}

/// The echo bot's settings (`bots.echo`).
#[derive(Debug, Deserialize)]
#[serde(crate = "switchboard_api::serde", default, deny_unknown_fields)]
pub struct EchoSettings {
    /// Localpart prefix of the users it answers as (`ping as <name>` creates them).
    pub user_prefix: String,
}

impl Default for EchoSettings {
    fn default() -> Self {
        Self {
            user_prefix: DEFAULT_USER_PREFIX.to_owned(),
        }
    }
}

impl BotFactory for EchoBot {
    const ID: &'static str = "echo";
    type Config = EchoSettings;

    fn example_config() -> &'static str {
        "# Localpart prefix of the users it answers as (`ping as <name>` creates them).\n\
         user_prefix: _echo_\n"
    }

    fn build(config: EchoSettings, _ctx: &BuildContext<'_>) -> Result<Self, PluginError> {
        if config.user_prefix.is_empty()
            || !switchboard_api::is_valid_localpart(&config.user_prefix)
        {
            return Err(PluginError::permanent(format!(
                "config field `bots.echo.user_prefix` is {:?}, but a localpart prefix \
                 (lower-case letters, digits, ._=-/+) is expected",
                config.user_prefix
            )));
        }
        Ok(Self {
            user_prefix: config.user_prefix,
        })
    }
}

/// The answer to `body`, if it is a ping: `ping` → `pong`, `ping <rest>` → `pong <rest>`.
#[must_use]
pub fn answer(body: &str) -> Option<String> {
    let rest = body.strip_prefix("ping")?;
    if rest.is_empty() {
        return Some("pong".to_owned());
    }
    rest.starts_with(' ').then(|| format!("pong{rest}"))
}

#[async_trait]
impl Bot for EchoBot {
    fn id(&self) -> &'static str {
        "echo"
    }

    fn namespaces(&self, server_name: &ServerName) -> Namespaces {
        Namespaces {
            users: vec![Namespace::exclusive(format!(
                "@{}.*:{}",
                regex_escape(&self.user_prefix),
                regex_escape(server_name.as_str())
            ))],
            ..Namespaces::default()
        }
    }

    async fn on_room_event(&self, ctx: &BotContext, event: &RoomEvent) -> Result<(), PluginError> {
        let Some(reply) = event.text_body().as_deref().and_then(answer) else {
            return Ok(());
        };
        ctx.reply_text(event, &reply).await?;
        Ok(())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![
            CommandSpec::new("say", "Repeats the text")
                .args("<text>")
                .min_args(1),
            CommandSpec::new("rooms", "Counts the rooms the bot is in")
                .max_args(0)
                .permission(PermissionLevel::Admin),
        ]
    }

    async fn handle_command(
        &self,
        ctx: &BotContext,
        command: &BotCommand,
    ) -> Result<CommandReply, PluginError> {
        match command.invocation.name.as_str() {
            "say" => Ok(command.invocation.raw_args.as_str().into()),
            "rooms" => {
                let joined = ctx
                    .client()
                    .send(joined_rooms::v3::Request::new(), Identity::bot())
                    .await?;
                Ok(format!("I am in {} room(s).", joined.joined_rooms.len()).into())
            }
            other => Err(PluginError::permanent(format!(
                "the echo bot has no command `{other}`"
            ))),
        }
    }

    async fn query_user(&self, ctx: &BotContext, user_id: &UserId) -> bool {
        let Some(name) = user_id.localpart().strip_prefix(self.user_prefix.as_str()) else {
            return false;
        };
        let client = ctx.client();
        if let Err(e) = client.ensure_registered(user_id).await {
            tracing::warn!(%user_id, error = %e, "cannot create the echo user");
            return false;
        }
        if let Err(e) = client
            .ensure_profile(user_id, Some(&format!("Echo {name}")), None)
            .await
        {
            tracing::warn!(%user_id, error = %e, "cannot set the echo user's name");
        }
        true
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = matches!(
                c,
                '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' | '\\'
            );
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_get_pongs_and_other_text_does_not() {
        assert_eq!(answer("ping 1").as_deref(), Some("pong 1"));
        assert_eq!(answer("ping").as_deref(), Some("pong"));
        assert_eq!(
            answer("ping  two words").as_deref(),
            Some("pong  two words")
        );
        assert_eq!(answer("pinged"), None);
        assert_eq!(answer("say ping"), None);
        assert_eq!(answer("pong 1"), None);
    }

    fn build(yaml: &str) -> Result<EchoBot, String> {
        let server_name = <&ServerName>::try_from("example.org").expect("valid server name");
        let section = switchboard_api::config::from_yaml(yaml).expect("a section");
        switchboard_api::factory::build_bot::<EchoBot>(
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
        assert_eq!(
            build("enabled: true\n").expect("defaults").user_prefix,
            "_echo_"
        );
        assert_eq!(
            build("user_prefix: _pong_\n").expect("valid").user_prefix,
            "_pong_"
        );
        let err = build("user_prefix: \"Not Valid\"\n").expect_err("invalid");
        assert!(
            err.contains("bots.echo.user_prefix") && err.contains("Not Valid"),
            "{err}"
        );
        let err = build("prefix: x\n").expect_err("unknown field");
        assert!(err.contains("bots.echo") && err.contains("prefix"), "{err}");
    }

    #[test]
    fn namespace_escapes_the_server_name() {
        let server = <&ServerName>::try_from("example.org").expect("valid server name");
        let ns = build("enabled: true\n")
            .expect("defaults")
            .namespaces(server);
        assert_eq!(ns.users[0].regex, "@_echo_.*:example\\.org");
        assert!(ns.users[0].exclusive);
    }
}
