//! The test kit's fake network in use: the minimal bridge (`examples/minimal-bridge`, written
//! against `switchboard_testing::FakeNetwork` as a bridge author would write theirs against
//! their network's client) passes the contract tests through a real Synapse. This is how an
//! author tests the Matrix half of a bridge without the remote network.

use std::sync::Arc;
use std::time::Duration;

use crate::common::Synapse;
use crate::common::contract::{Homeserver, Tester};
use crate::common::switchboard_instance::Slot;
use switchboard_example_minimal_bridge::{CHAT, FakeChatBridge};
use switchboard_runtime::api::bridge::{Bridge, BridgeContext};
use switchboard_runtime::api::config::from_yaml;
use switchboard_runtime::api::factory::{BuildContext, build_bridge};
use switchboard_runtime::api::ids::{PortalKey, RemoteMessageId};
use switchboard_runtime::api::matrix::MatrixMessage;
use switchboard_runtime::api::remote::BridgeInfo;
use switchboard_runtime::ruma::ServerName;
use switchboard_runtime::store::Store;
use switchboard_runtime::{PluginError, Plugins};
use switchboard_testing::{Contract, FakeChat, FakeNetwork};

/// The minimal bridge (`examples/minimal-bridge`), built as the framework builds it, and the
/// plug-ins to run: just it. Both calls share its network.
fn plugins() -> (Plugins, FakeNetwork) {
    let section = from_yaml("invite: [\"@alice:localhost\"]\n").expect("a section");
    let server_name = <&ServerName>::try_from("localhost").expect("a server name");
    let bridge: FakeChatBridge = build_bridge(
        &section,
        &BuildContext {
            server_name,
            clock: std::sync::Arc::new(switchboard_runtime::api::clock::SystemClock),
        },
    )
    .expect("the example's settings are valid");
    let network = bridge.network().clone();
    let plugins = Plugins {
        bots: Vec::new(),
        bridges: vec![Arc::new(bridge)],
    };
    (plugins, network)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_on_the_fake_network_passes_the_contract_tests() {
    let (plugins, network) = plugins();
    let mut slot =
        Slot::with_config("fakenet", "outbox:\n  retry_max_interval_secs: 2\n").expect("slot");
    slot.register(&plugins).expect("registration");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    let alice = synapse.register_user("alice", false).await.expect("alice");
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start_with(plugins).await.expect("Switchboard starts");
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

/// A bridge whose network client saves its state when Switchboard stops, as a real one flushes
/// what it holds: it takes a moment after the shutdown signal.
struct SavesAtShutdown;

#[switchboard_runtime::async_trait]
impl Bridge for SavesAtShutdown {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "saver".to_owned(),
            displayname: "Saver".to_owned(),
        }
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), PluginError> {
        let task_ctx = ctx.clone();
        ctx.spawn("saves at shutdown", async move {
            task_ctx.shutdown().cancelled().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Err(e) = task_ctx.matrix().set_bridge_data("state", &"saved").await {
                tracing::error!(error = %e, "the state was not saved");
            }
        });
        Ok(())
    }

    async fn handle_matrix_message(
        &self,
        _ctx: &BridgeContext,
        _portal: &PortalKey,
        _message: &MatrixMessage,
    ) -> Result<RemoteMessageId, PluginError> {
        Err(PluginError::permanent("this bridge has no network"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_bridge_task_saving_its_state() {
    let plugins = Plugins {
        bots: Vec::new(),
        bridges: vec![Arc::new(SavesAtShutdown)],
    };
    let mut slot = Slot::new("saver").expect("slot");
    slot.register(&plugins).expect("registration");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start_with(plugins).await.expect("Switchboard starts");
    running.stop().await.expect("clean stop");

    let config = slot.config().expect("config");
    let store = Store::connect(
        &config.database_url(),
        1,
        config.database.sqlite_synchronous,
    )
    .await
    .expect("the database opens");
    let saved = store
        .bot_data("bridge:saver", "state")
        .await
        .expect("a query");
    assert_eq!(
        saved.as_deref(),
        Some("\"saved\""),
        "the bridge's task ran to its end before the database closed"
    );
    store.close().await;
}
