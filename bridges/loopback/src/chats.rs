//! Chats beyond the lobby: portals joined by alias, direct chats started by inviting a
//! puppet, each chat's history, and users and chats looked up by name (third-party lookups).

use switchboard_api::PluginError;
use switchboard_api::bridge::{
    AliasHandler, BackfillHandler, BridgeContext, DirectChatHandler, ThirdPartyHandler,
};
use switchboard_api::ids::{PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};
use switchboard_api::remote::{PortalInfo, PuppetProfile, RemoteEvent, RemoteText};
use switchboard_api::ruma::UserId;
use switchboard_api::thirdparty::{
    Fields, ThirdPartyField, ThirdPartyInstance, ThirdPartyProtocol,
};

use crate::{DM_PREFIX, ECHO, LoopbackBridge, PIXEL_GIF, echo_profile, person_profile};

#[switchboard_api::async_trait]
impl AliasHandler for LoopbackBridge {
    /// Every chat of the loopback network exists and has echo in it: `#_loopback_<chat>`
    /// makes a public portal for it.
    async fn portal_for_alias(
        &self,
        ctx: &BridgeContext,
        chat: &RemoteChatId,
    ) -> Option<PortalInfo> {
        let avatar = ctx
            .matrix()
            .upload(&PIXEL_GIF.into(), "image/gif", "loopback.gif")
            .await;
        Some(PortalInfo {
            name: Some(format!("Loopback {chat}")),
            public: true,
            avatar_url: avatar.ok(),
            ..PortalInfo::default()
        })
    }
}

/// Anyone whose name does not start with `nobody` is a user of the loopback network, and
/// talks back in a direct chat (`dm-<user>`, one per Matrix user).
#[switchboard_api::async_trait]
impl DirectChatHandler for LoopbackBridge {
    async fn resolve_user(
        &self,
        _ctx: &BridgeContext,
        remote: &RemoteUserId,
    ) -> Result<Option<PuppetProfile>, PluginError> {
        Ok((!remote.as_str().starts_with("nobody")).then(|| person_profile(remote)))
    }

    async fn start_direct_chat(
        &self,
        _ctx: &BridgeContext,
        requester: &UserId,
        remote: &RemoteUserId,
    ) -> Result<PortalKey, PluginError> {
        self.reachable()?;
        Ok(PortalKey {
            chat: RemoteChatId(format!("{DM_PREFIX}{remote}")),
            receiver: Some(RemoteUserId(requester.to_string())),
        })
    }
}

/// A chat's history: `history` messages of echo's, the last one a minute ago.
#[switchboard_api::async_trait]
impl BackfillHandler for LoopbackBridge {
    async fn fetch_history(
        &self,
        portal: &PortalKey,
        limit: usize,
    ) -> Result<Vec<RemoteEvent>, PluginError> {
        let now_ms = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        let first = self.history.saturating_sub(limit) + 1;
        Ok((first..=self.history)
            .map(|n| {
                let minutes_ago = u64::try_from(self.history - n + 1).unwrap_or(u64::MAX);
                RemoteEvent::Message(RemoteText {
                    sent_at_ms: Some(now_ms.saturating_sub(minutes_ago * 60_000)),
                    ..RemoteText::text(
                        RemoteMessageId(format!("history-{}-{n}", portal.chat)),
                        RemoteUserId::from(ECHO),
                        echo_profile(),
                        format!("history {n} of {}", self.history),
                    )
                })
            })
            .collect())
    }
}

/// Users are named by `user`, chats by `chat`; every chat exists, and every user whose name
/// does not start with `nobody`.
#[switchboard_api::async_trait]
impl ThirdPartyHandler for LoopbackBridge {
    fn protocol(&self) -> ThirdPartyProtocol {
        let field = |id: &str, placeholder: &str| ThirdPartyField {
            id: id.to_owned(),
            regexp: "[A-Za-z0-9._-]+".to_owned(),
            placeholder: placeholder.to_owned(),
        };
        ThirdPartyProtocol {
            id: "loopback".to_owned(),
            user_fields: vec![field("user", "echo")],
            location_fields: vec![field("chat", "lobby")],
            icon: None,
            instances: vec![ThirdPartyInstance {
                network_id: "loopback".to_owned(),
                desc: "The loopback network".to_owned(),
                icon: None,
                fields: Fields::new(),
            }],
        }
    }

    async fn find_users(
        &self,
        _ctx: &BridgeContext,
        fields: &Fields,
    ) -> Result<Vec<RemoteUserId>, PluginError> {
        Ok(fields
            .get("user")
            .filter(|user| !user.is_empty() && !user.starts_with("nobody"))
            .map(|user| RemoteUserId(user.clone()))
            .into_iter()
            .collect())
    }

    fn user_fields(&self, remote: &RemoteUserId) -> Fields {
        Fields::from([("user".to_owned(), remote.to_string())])
    }

    async fn find_chats(
        &self,
        _ctx: &BridgeContext,
        fields: &Fields,
    ) -> Result<Vec<RemoteChatId>, PluginError> {
        Ok(fields
            .get("chat")
            .filter(|chat| !chat.is_empty())
            .map(|chat| RemoteChatId(chat.clone()))
            .into_iter()
            .collect())
    }

    fn chat_fields(&self, chat: &RemoteChatId) -> Fields {
        Fields::from([("chat".to_owned(), chat.to_string())])
    }
}
