//! The echo bot: in every room it is in, it answers each text message `ping <rest>` with
//! `pong <rest>`, as a reply. The smallest complete program on the framework, and the
//! benchmark workload.
//!
//! It also owns the `@_echo_*` user namespace: when the homeserver asks about such a user
//! (someone invites or messages it), the user is created on the spot with a display name.

use switchboard_framework::plugin::BotContext;
use switchboard_framework::ruma::{ServerName, UserId};
use switchboard_framework::{Bot, HandleError, Namespace, Namespaces, RoomEvent, async_trait};

/// Localpart prefix of the users the echo bot owns.
pub const PUPPET_PREFIX: &str = "_echo_";

/// The echo bot.
#[derive(Debug, Default)]
pub struct EchoBot;

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
                "@{PUPPET_PREFIX}.*:{}",
                regex_escape(server_name.as_str())
            ))],
            ..Namespaces::default()
        }
    }

    async fn on_room_event(&self, ctx: &BotContext, event: &RoomEvent) -> Result<(), HandleError> {
        let Some(reply) = event.text_body().as_deref().and_then(answer) else {
            return Ok(());
        };
        ctx.reply_text(event, &reply).await?;
        Ok(())
    }

    async fn query_user(&self, ctx: &BotContext, user_id: &UserId) -> bool {
        let Some(name) = user_id.localpart().strip_prefix(PUPPET_PREFIX) else {
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
            let escape = matches!(c, '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' | '\\');
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
        assert_eq!(answer("ping  two words").as_deref(), Some("pong  two words"));
        assert_eq!(answer("pinged"), None);
        assert_eq!(answer("say ping"), None);
        assert_eq!(answer("pong 1"), None);
    }

    #[test]
    fn namespace_escapes_the_server_name() {
        let server = <&ServerName>::try_from("example.org").expect("valid server name");
        let ns = EchoBot.namespaces(server);
        assert_eq!(ns.users[0].regex, "@_echo_.*:example\\.org");
        assert!(ns.users[0].exclusive);
    }
}
