//! A host running one bridge on the fake network, against the mock homeserver, with Matrix
//! events handed to it as the inbox would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_api::bridge::{Bridge, BridgeContext, BridgeState, MediaHandler};
use switchboard_api::clock::SystemClock;
use switchboard_api::host::{Finding, Sample};
use switchboard_api::ids::{PortalKey, RemoteMessageId};
use switchboard_api::matrix::{MatrixMedia, MatrixMessage};
use switchboard_api::permission::Permissions;
use switchboard_api::remote::{BridgeInfo, PortalInfo};
use switchboard_api::template::Template;
use switchboard_api::{PluginError, ResultExt};
use switchboard_appservice::inbox::{EventHandler, HandleError, InboxItem};
use switchboard_client::{ClientConfig, ClientMetrics, HomeserverClient};
use switchboard_host::diagnostics::{Diagnostics, PluginReload};
use switchboard_host::metrics::HostMetrics;
use switchboard_host::plugin::{HostOptions, PluginHost, Plugins};
use switchboard_registration::NamespaceMatcher;
use switchboard_store::{SqliteSync, Store};
use switchboard_testing::{FakeNetwork, MockHomeserver, NetworkMessage};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the network stays down before the portal is told.
pub const OUTAGE_NOTICES_AFTER: Duration = Duration::from_millis(300);

/// The token the host's client authenticates with.
pub const AS_TOKEN: &str = "as_token_for_host_tests";

/// The fake network's one chat, bridged to one portal.
pub const CHAT: &str = "lobby";

/// A message with this text makes [`ChatBridge`] panic (a bridge with a bug).
pub const BUG: &str = "trigger the bug";

/// A bridge carrying text and files between the portal of [`CHAT`] and the fake network.
/// It panics on [`BUG`]. Its one background task, at shutdown, takes a moment before it says it is done.
#[derive(Debug, Default)]
pub struct ChatBridge {
    pub network: FakeNetwork,
    ctx: OnceLock<BridgeContext>,
    /// Set by its background task once it finished its work after shutdown.
    pub farewell_done: Arc<AtomicBool>,
}

impl ChatBridge {
    /// The context it was started with.
    pub fn ctx(&self) -> &BridgeContext {
        self.ctx.get().expect("the bridge was started")
    }
}

#[async_trait::async_trait]
impl Bridge for ChatBridge {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "chat".to_owned(),
            displayname: "Chat".to_owned(),
        }
    }

    async fn chat_info(&self, _portal: &PortalKey) -> Result<PortalInfo, PluginError> {
        Ok(PortalInfo {
            name: Some("Lobby".to_owned()),
            ..PortalInfo::default()
        })
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), PluginError> {
        ctx.matrix().ensure_portal(&PortalKey::shared(CHAT)).await?;
        let shutdown = ctx.shutdown().clone();
        let done = Arc::clone(&self.farewell_done);
        ctx.spawn("farewell", async move {
            shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.store(true, Ordering::SeqCst);
        });
        ctx.set_state(BridgeState::Connected);
        self.ctx
            .set(ctx)
            .map_err(|_| PluginError::permanent("started twice"))
    }

    async fn handle_matrix_message(
        &self,
        _ctx: &BridgeContext,
        portal: &PortalKey,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, PluginError> {
        assert!(message.body != BUG, "a bug in the bridge");
        self.network
            .send(portal.chat.as_str(), message.sender.as_str(), &message.body)
            .map(RemoteMessageId)
            .network_down()
    }

    fn media(&self) -> Option<&dyn MediaHandler> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl MediaHandler for ChatBridge {
    async fn handle_matrix_media(
        &self,
        _ctx: &BridgeContext,
        portal: &PortalKey,
        media: &MatrixMedia,
    ) -> Result<RemoteMessageId, PluginError> {
        let data = media.data.bytes().await.permanent()?;
        let text = format!("[{}: {}]", media.filename, String::from_utf8_lossy(&data));
        self.network
            .send(portal.chat.as_str(), media.sender.as_str(), &text)
            .map(RemoteMessageId)
            .network_down()
    }
}

/// No health checks, reloads or metrics: these tests do not ask for them.
#[derive(Debug)]
struct NoDiagnostics;

#[async_trait::async_trait]
impl Diagnostics for NoDiagnostics {
    async fn doctor(&self) -> Vec<Finding> {
        Vec::new()
    }

    fn reload_config(&self, _plugins: &dyn PluginReload) -> Vec<Finding> {
        Vec::new()
    }

    fn metric_samples(&self) -> Vec<Sample> {
        Vec::new()
    }
}

/// The host, its bridge, the homeserver and the database of one test.
pub struct Harness {
    pub homeserver: MockHomeserver,
    pub host: Arc<PluginHost>,
    pub bridge: Arc<ChatBridge>,
    pub store: Store,
    pub metrics: HostMetrics,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// The portal room of [`CHAT`].
    pub portal_room: String,
    next_seq: AtomicI64,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A started host whose homeserver client does not retry (so that every 429 or 500
    /// reaches the host).
    pub async fn start() -> Self {
        Self::start_with(ClientConfig {
            max_retries: 0,
            request_timeout_secs: 5,
            ..ClientConfig::default()
        })
        .await
    }

    /// A started host whose homeserver client works as `client` says.
    pub async fn start_with(client: ClientConfig) -> Self {
        Self::start_on(client, 50 * 1024 * 1024).await
    }

    /// Like [`Harness::start_with`], on a homeserver whose uploads are limited to
    /// `upload_size` bytes (`m.upload.size`).
    pub async fn start_on(client: ClientConfig, upload_size: u64) -> Self {
        let homeserver = MockHomeserver::start("mock.test", "bot")
            .await
            .expect("the mock homeserver starts");
        homeserver.set_upload_size(upload_size);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(
            &format!("sqlite://{}", dir.path().join("host.db").display()),
            2,
            SqliteSync::Normal,
        )
        .await
        .expect("store");
        let client = HomeserverClient::new(
            homeserver.url(),
            AS_TOKEN,
            "@bot:mock.test".try_into().expect("bot id"),
            client,
            ClientMetrics::default(),
            Arc::new(store.clone()),
        )
        .expect("client");
        let bridge = Arc::new(ChatBridge::default());
        let plugins = Plugins {
            bots: Vec::new(),
            bridges: vec![Arc::clone(&bridge) as Arc<dyn Bridge>],
        };
        let server_name = <&ruma::ServerName>::try_from("mock.test").expect("server name");
        let namespaces =
            NamespaceMatcher::new(&plugins.namespaces(server_name)).expect("namespaces");
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let options = HostOptions {
            accept_invites: true,
            outbox: switchboard_host::config::OutboxConfig::default(),
            permissions: Permissions::new(BTreeMap::new(), "mock.test").expect("permissions"),
            relay_template: Template::new("relay.message_template", "{{displayname}}: {{body}}")
                .expect("template"),
            double_puppets: BTreeMap::new(),
            max_media_bytes: 1 << 20,
            puppet_idle: Duration::from_mins(1),
            backfill_messages: 0,
            diagnostics: Arc::new(NoDiagnostics),
            tasks: tasks.clone(),
            clock: Arc::new(SystemClock),
            puppet_templates: BTreeMap::new(),
            outage_notices_after: Some(OUTAGE_NOTICES_AFTER),
            downtime: None,
            decryption: None,
        };
        let metrics = HostMetrics::default();
        let host = PluginHost::new(
            plugins,
            client,
            store.clone(),
            metrics.clone(),
            namespaces,
            &options,
            shutdown.clone(),
        )
        .await
        .expect("the host is set up");
        host.start_plugins().await.expect("the bridge starts");
        let portal_room = homeserver
            .rooms()
            .into_iter()
            .next()
            .expect("the portal room was created");
        Self {
            homeserver,
            host: Arc::new(host),
            bridge,
            store,
            metrics,
            shutdown,
            tasks,
            portal_room,
            next_seq: AtomicI64::new(1),
            _dir: dir,
        }
    }

    /// Hands the host a room event of `@alice:mock.test` in the portal, as the inbox would.
    pub async fn alice_sends(
        &self,
        event_id: &str,
        content: serde_json::Value,
    ) -> Result<(), HandleError> {
        let event = json!({
            "type": "m.room.message",
            "room_id": self.portal_room,
            "sender": "@alice:mock.test",
            "event_id": event_id,
            "origin_server_ts": 1_700_000_000_000_u64,
            "content": content,
        });
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let item = InboxItem {
            seq,
            batch: seq,
            txn_id: Arc::from(format!("txn{seq}")),
            kind: Arc::from("pdu"),
            room_id: Some(Arc::from(self.portal_room.as_str())),
            body: Arc::from(event.to_string()),
            accepted_at: Instant::now(),
        };
        self.host.handle(&item).await
    }

    /// Alice's text message `body`, as event `event_id`.
    pub async fn alice_says(&self, event_id: &str, body: &str) -> Result<(), HandleError> {
        self.alice_sends(event_id, json!({ "msgtype": "m.text", "body": body }))
            .await
    }

    /// What the fake network received in [`CHAT`]: (sender, text), in order.
    pub fn network_received(&self) -> Vec<(String, String)> {
        self.bridge
            .network
            .received(CHAT)
            .into_iter()
            .map(|NetworkMessage { sender, text, .. }| (sender, text))
            .collect()
    }

    /// How many events wait in the bridge's outbox.
    pub async fn outbox_depth(&self) -> i64 {
        self.store.outbox_count("chat").await.expect("outbox count")
    }

    /// Waits (up to 5 s) until `done` holds.
    pub async fn until(&self, what: &str, mut done: impl AsyncFnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(self).await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
