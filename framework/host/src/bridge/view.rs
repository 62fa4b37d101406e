//! What a bot may see and do of the plug-ins hosted beside it, for admin tools: the bots, each
//! bridge's state, the portals and puppets; unbridging a portal, turning plug-ins off and on,
//! reloading the config, and the health checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use ruma::RoomId;
use switchboard_api::PluginError;
use switchboard_api::bot::Bot;
use switchboard_api::config::{PluginSection, ReloadError};
use switchboard_api::host::{
    BridgeSummary, Finding, HostView, PortalSummary, PuppetSummary, Sample,
};
use switchboard_store::Store;

use super::host::BridgeHost;
use crate::diagnostics::{Diagnostics, PluginReload};

/// A bot's on/off switch, as the host keeps it.
#[derive(Clone)]
pub(crate) struct BotSwitch {
    pub(crate) id: String,
    pub(crate) enabled: Arc<AtomicBool>,
    pub(crate) bot: Weak<dyn Bot>,
}

/// The plug-ins hosted beside a bot; cheap to clone.
#[derive(Clone)]
pub struct PluginsView {
    host: Arc<BridgeHost>,
    store: Store,
    bots: Arc<[BotSwitch]>,
    diagnostics: Arc<dyn Diagnostics>,
}

impl std::fmt::Debug for PluginsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginsView").finish_non_exhaustive()
    }
}

impl PluginsView {
    pub(crate) fn new(
        host: Arc<BridgeHost>,
        store: Store,
        bots: Vec<BotSwitch>,
        diagnostics: Arc<dyn Diagnostics>,
    ) -> Self {
        Self {
            host,
            store,
            bots: bots.into(),
            diagnostics,
        }
    }
}

#[async_trait::async_trait]
impl HostView for PluginsView {
    async fn doctor(&self) -> Vec<Finding> {
        self.diagnostics.doctor().await
    }

    fn reload_config(&self) -> Vec<Finding> {
        self.diagnostics.reload_config(self)
    }

    fn metric_samples(&self) -> Vec<Sample> {
        self.diagnostics.metric_samples()
    }

    /// The bots, each with whether it runs.
    fn bots(&self) -> Vec<(String, bool)> {
        self.bots
            .iter()
            .map(|b| (b.id.clone(), b.enabled.load(Ordering::Relaxed)))
            .collect()
    }
    /// Turns the plug-in `id` on or off until the next restart. A bot turned off sees no
    /// events; a bridge turned off keeps Matrix events in the outbox until it is on again.
    /// `Err` when there is no such plug-in.
    fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), PluginError> {
        if let Some(bot) = self.bots.iter().find(|b| b.id == id) {
            bot.enabled.store(enabled, Ordering::Relaxed);
            return Ok(());
        }
        match self.host.bridge(id) {
            Some(bridge) => {
                bridge.set_enabled(enabled);
                Ok(())
            }
            None => Err(PluginError::permanent(format!(
                "no plug-in `{id}` runs here"
            ))),
        }
    }
    /// Every hosted bridge, in the config's order.
    fn bridges(&self) -> Vec<BridgeSummary> {
        self.host
            .all()
            .iter()
            .map(|hosted| BridgeSummary {
                id: hosted.id().to_owned(),
                network: hosted.info().displayname.clone(),
                state: hosted.state(),
                portal_rooms: hosted.portal_room_count(),
                enabled: !hosted.is_disabled(),
            })
            .collect()
    }
    /// Every portal that has a room.
    async fn portals(&self) -> Result<Vec<PortalSummary>, PluginError> {
        Ok(self
            .store
            .portals_with_rooms()
            .await?
            .into_iter()
            .filter_map(|(bridge, portal)| {
                Some(PortalSummary {
                    bridge,
                    key: portal.key,
                    room_id: portal.room_id?,
                })
            })
            .collect())
    }
    /// The portal `room_id` is, if it is one.
    fn portal_of(&self, room_id: &RoomId) -> Option<PortalSummary> {
        self.host.all().iter().find_map(|hosted| {
            hosted.portal_of(room_id).map(|key| PortalSummary {
                bridge: hosted.id().to_owned(),
                key,
                room_id: room_id.to_string(),
            })
        })
    }
    /// Stops bridging the portal `room_id` (the room stays); what it was, if it was one.
    async fn unbridge(&self, room_id: &RoomId) -> Result<Option<PortalSummary>, PluginError> {
        let Some(portal) = self.portal_of(room_id) else {
            return Ok(None);
        };
        if let Some(hosted) = self.host.bridge(&portal.bridge) {
            hosted.unbridge(&portal.key).await?;
        }
        Ok(Some(portal))
    }
    /// The puppets of one bridge or of all, at most `limit`.
    async fn puppets(
        &self,
        bridge: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PuppetSummary>, PluginError> {
        Ok(self
            .store
            .puppets(bridge, limit)
            .await?
            .into_iter()
            .map(|(bridge, remote, user_id)| PuppetSummary {
                bridge,
                remote,
                user_id,
            })
            .collect())
    }
}

impl PluginReload for PluginsView {
    fn reload_bot(&self, id: &str, section: &PluginSection) -> Option<Result<(), ReloadError>> {
        let bot = self
            .bots
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.bot.upgrade())?;
        Some(bot.reload(section))
    }

    fn reload_bridge(&self, id: &str, section: &PluginSection) -> Option<Result<(), ReloadError>> {
        self.host.bridge(id).map(|bridge| bridge.reload(section))
    }
}
