//! The smallest real bridge: one chat of an in-process fake network
//! ([`switchboard_testing::FakeNetwork`]), messages both ways. The framework does the rest:
//! the portal room, puppets for the network's users, ordering, retries through the outbox
//! while the network is down, dedupe, and the loop guard. Read it beside
//! `docs/bridge-author-guide.md`; `tests/bridge_fake_network.rs` runs it against a real
//! Synapse and passes the contract tests.

use switchboard_api::bridge::{Bridge, BridgeContext, BridgeState};
use switchboard_api::factory::{BridgeFactory, BuildContext};
use switchboard_api::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use switchboard_api::matrix::MatrixMessage;
use switchboard_api::remote::{BridgeInfo, PortalInfo, PuppetProfile, RemoteEvent, RemoteText};
use switchboard_api::ruma::OwnedUserId;
use switchboard_api::serde::Deserialize;
use switchboard_api::{PluginError, ResultExt, async_trait};
use switchboard_testing::FakeNetwork;

/// The network's one chat.
pub const CHAT: &str = "lobby";

/// The bridge's settings (`bridges.fakechat`).
#[derive(Debug, Default, Deserialize)]
#[serde(crate = "switchboard_api::serde", default, deny_unknown_fields)]
pub struct Settings {
    /// Matrix users invited to the portal room.
    pub invite: Vec<OwnedUserId>,
}

/// A bridge to the fake network's chat `lobby`.
#[derive(Debug)]
pub struct FakeChatBridge {
    network: FakeNetwork,
    invite: Vec<OwnedUserId>,
}

impl FakeChatBridge {
    /// The network it bridges (a test plays the remote users through it).
    #[must_use]
    pub fn network(&self) -> &FakeNetwork {
        &self.network
    }
}

impl BridgeFactory for FakeChatBridge {
    const ID: &'static str = "fakechat";
    type Config = Settings;

    fn example_config() -> &'static str {
        "# Matrix users invited to the portal room.\ninvite: [\"@you:example.org\"]\n"
    }

    fn build(settings: Settings, _ctx: &BuildContext<'_>) -> Result<Self, PluginError> {
        Ok(Self {
            network: FakeNetwork::new(),
            invite: settings.invite,
        })
    }
}

#[async_trait]
impl Bridge for FakeChatBridge {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: Self::ID.to_owned(),
            displayname: "Fake chat".to_owned(),
        }
    }

    async fn chat_info(&self, _portal: &PortalKey) -> Result<PortalInfo, PluginError> {
        Ok(PortalInfo {
            name: Some("Fake lobby".to_owned()),
            invite: self.invite.clone(),
            ..PortalInfo::default()
        })
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), PluginError> {
        let key = PortalKey::shared(CHAT);
        ctx.matrix().ensure_portal(&key).await?;
        let mut incoming = self
            .network
            .incoming()
            .ok_or_else(|| PluginError::permanent("the fake network already has a listener"))?;
        let task_ctx = ctx.clone();
        ctx.spawn("fake network", async move {
            while let Some(message) = incoming.recv().await {
                let profile = PuppetProfile {
                    displayname: Some(message.sender.clone()),
                    avatar_url: None,
                };
                let text = RemoteText::text(
                    RemoteMessageId(message.id),
                    RemoteUserId(message.sender),
                    profile,
                    message.text,
                );
                let event = RemoteEvent::Message(text);
                if let Err(e) = task_ctx.matrix().apply(&key, &event).await {
                    tracing::warn!(error = %e, "cannot bridge a fake network message");
                }
            }
        });
        ctx.set_state(BridgeState::Connected);
        Ok(())
    }

    async fn handle_matrix_message(
        &self,
        _ctx: &BridgeContext,
        portal: &PortalKey,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, PluginError> {
        self.network
            .send(portal.chat.as_str(), message.sender.as_str(), &message.body)
            .map(RemoteMessageId)
            .network_down()
    }
}
