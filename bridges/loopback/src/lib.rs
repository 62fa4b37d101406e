//! The loopback example bridge. Its "network" is a single chat with a single remote user,
//! `echo`, who answers every message: a Matrix user's `hello` in the portal comes back as
//! `echo: hello` from the puppet `@_loopback_echo:<server>`. It shows the smallest complete
//! bridge on the framework and is what the framework's end-to-end tests drive. Messages
//! starting with `!drop` are refused, as a real network refuses what it cannot carry.

use switchboard_framework::HandleError;
use switchboard_framework::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeInfo, MatrixText, PortalInfo, PortalKey,
    PuppetProfile, RemoteMessageId, RemoteText, RemoteUserId, TextKind,
};
use switchboard_framework::config::Value;
use switchboard_framework::ruma::OwnedUserId;

/// The id of the one remote chat.
const CHAT: &str = "lobby";
/// The one remote user.
const ECHO: &str = "echo";
/// Messages starting with this are refused by the "network" (to show what a bridge does with a
/// message it can never deliver).
const REFUSED: &str = "!drop";

/// The loopback bridge.
#[derive(Clone, Debug, Default)]
pub struct LoopbackBridge {
    invite: Vec<OwnedUserId>,
}

impl LoopbackBridge {
    /// The bridge from its config section: `invite`, the Matrix users invited to the portal.
    pub fn from_settings(
        settings: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Self, String> {
        let invite = match settings.get("invite") {
            None => Vec::new(),
            Some(Value::Sequence(users)) => users
                .iter()
                .map(|user| {
                    user.as_str()
                        .and_then(|u| OwnedUserId::try_from(u).ok())
                        .ok_or_else(|| {
                            format!(
                                "config field `bridges.loopback.invite` holds {user:?}, but \
                                 Matrix user ids such as \"@you:example.org\" are expected"
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(format!(
                    "config field `bridges.loopback.invite` is {other:?}, but a list of Matrix \
                     user ids is expected"
                ));
            }
        };
        Ok(Self { invite })
    }

    fn portal_info(&self) -> PortalInfo {
        PortalInfo {
            name: Some("Loopback lobby".to_owned()),
            topic: Some("Everything said here is answered by the loopback network".to_owned()),
            invite: self.invite.clone(),
            direct: false,
        }
    }
}

#[switchboard_framework::async_trait]
impl Bridge for LoopbackBridge {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "loopback".to_owned(),
            displayname: "Loopback".to_owned(),
        }
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError> {
        ctx.matrix()
            .ensure_portal(&PortalKey::shared(CHAT), &self.portal_info())
            .await?;
        Ok(())
    }

    async fn handle_matrix_text(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        message: &MatrixText,
    ) -> Result<RemoteMessageId, HandleError> {
        if message.body.starts_with(REFUSED) {
            return Err(HandleError::Permanent(format!(
                "the loopback network refuses messages starting with {REFUSED}"
            )));
        }
        // The network receives the message and its one user answers it.
        let answer = RemoteText {
            id: RemoteMessageId(format!("answer-{}", message.event_id)),
            part: String::new(),
            sender: RemoteUserId::from(ECHO),
            sender_profile: PuppetProfile {
                displayname: Some("Loopback echo".to_owned()),
                avatar_url: None,
            },
            body: format!("echo: {}", message.body),
            html: None,
            kind: TextKind::Text,
            sent_at_ms: None,
        };
        ctx.matrix()
            .bridge_text(portal, &self.portal_info(), &answer)
            .await?;
        Ok(RemoteMessageId(format!("from-matrix-{}", message.event_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_field_and_what_is_expected() {
        let parse = |invite: Value| {
            LoopbackBridge::from_settings(&std::collections::BTreeMap::from([(
                "invite".to_owned(),
                invite,
            )]))
        };
        let user = |id: &str| Value::String(id.to_owned());
        assert_eq!(
            parse(Value::Sequence(vec![user("@a:x")]))
                .expect("valid")
                .invite,
            [OwnedUserId::try_from("@a:x").expect("id")]
        );
        let err = parse(Value::Sequence(vec![user("not a user")])).expect_err("bad id");
        assert!(
            err.contains("bridges.loopback.invite") && err.contains("not a user"),
            "{err}"
        );
        let err = parse(user("@a:x")).expect_err("not a list");
        assert!(err.contains("a list of Matrix user ids"), "{err}");
    }
}
