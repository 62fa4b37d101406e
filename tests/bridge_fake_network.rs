//! The test kit's fake network in use: a bridge written against
//! `switchboard_testing::FakeNetwork` (as a bridge author would write theirs against
//! their network's client) passes the contract tests through a real Synapse. This is how an
//! author tests the Matrix half of a bridge without the remote network.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Synapse;
use common::contract::{Homeserver, Tester};
use common::switchboard_instance::Slot;
use switchboard_runtime::bridge::{
    Bridge, BridgeContext, BridgeInfo, BridgeState, MatrixMessage, PortalInfo, PortalKey,
    PuppetProfile, RemoteEvent, RemoteMessageId, RemoteText, RemoteUserId,
};
use switchboard_runtime::{PluginError, Plugins};
use switchboard_testing::{Contract, FakeChat, FakeNetwork};

const CHAT: &str = "lobby";

/// A minimal bridge to the fake network: one chat, messages both ways.
struct FakeChatBridge {
    network: FakeNetwork,
    portal: PortalInfo,
}

impl FakeChatBridge {
    async fn forward(ctx: &BridgeContext, portal: &PortalInfo, message: RemoteEvent) {
        let key = PortalKey::shared(CHAT);
        if let Err(e) = ctx.matrix().apply(&key, portal, &message).await {
            tracing::warn!(error = %e, "cannot bridge a fake network message");
        }
    }
}

#[switchboard_runtime::async_trait]
impl Bridge for FakeChatBridge {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "fakechat".to_owned(),
            displayname: "Fake chat".to_owned(),
        }
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), PluginError> {
        ctx.matrix()
            .ensure_portal(&PortalKey::shared(CHAT), &self.portal)
            .await?;
        let mut incoming = self
            .network
            .incoming()
            .ok_or_else(|| PluginError::permanent("the fake network already has a listener"))?;
        let portal = self.portal.clone();
        let task_ctx = ctx.clone();
        tokio::spawn(async move {
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
                Self::forward(&task_ctx, &portal, RemoteEvent::Message(text)).await;
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
            .map_err(|down| PluginError::transient(down.to_string()))
    }
}

fn plugins(network: &FakeNetwork) -> Plugins {
    let portal = PortalInfo {
        name: Some("Fake lobby".to_owned()),
        invite: vec!["@alice:localhost".try_into().expect("user id")],
        ..PortalInfo::default()
    };
    Plugins {
        bots: Vec::new(),
        bridges: vec![Arc::new(FakeChatBridge {
            network: network.clone(),
            portal,
        })],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_on_the_fake_network_passes_the_contract_tests() {
    let network = FakeNetwork::new();
    let mut slot =
        Slot::with_config("fakenet", "outbox:\n  retry_max_interval_secs: 2\n").expect("slot");
    slot.register(&plugins(&network)).expect("registration");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    let alice = synapse.register_user("alice", false).await.expect("alice");
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot
        .start_with(plugins(&network))
        .await
        .expect("Switchboard starts");
    let portal = alice
        .join_invite(Duration::from_secs(30))
        .await
        .expect("alice is invited to the portal and joins");

    let chat = FakeChat {
        network: network.clone(),
        chat: CHAT.to_owned(),
        sender: "carol".to_owned(),
    };
    let contract = Contract {
        user: &Tester(&alice),
        room: portal,
        subject: &chat,
        homeserver: &Homeserver::of(&slot),
        timeout: Duration::from_secs(30),
    };
    contract.run_all().await.unwrap_or_else(|e| panic!("{e}"));
    let senders: Vec<String> = network
        .received(CHAT)
        .into_iter()
        .map(|m| m.sender)
        .collect();
    assert!(
        senders.iter().all(|s| s == "@alice:localhost"),
        "only alice's messages reach the network: {senders:?}"
    );
    running.stop().await.expect("clean stop");
}
