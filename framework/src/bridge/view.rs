//! What a bot may see and do of the plug-ins hosted beside it, for admin tools: the bots, each
//! bridge's state, the portals and puppets, and unbridging a portal.

use std::sync::Arc;

use ruma::RoomId;

use super::host::BridgeHost;
use super::ids::PortalKey;
use super::plugin::BridgeState;
use crate::inbox::HandleError;
use crate::store::Store;

/// One hosted bridge, as it stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSummary {
    /// Its id.
    pub id: String,
    /// Its network's name.
    pub network: String,
    /// Its connection to the network.
    pub state: BridgeState,
    /// How many portal rooms it has.
    pub portal_rooms: usize,
}

/// One portal room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalSummary {
    /// The bridge.
    pub bridge: String,
    /// The remote chat (and whose view of it).
    pub key: PortalKey,
    /// The Matrix room.
    pub room_id: String,
}

/// One puppet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PuppetSummary {
    /// The bridge.
    pub bridge: String,
    /// The remote user.
    pub remote: String,
    /// Their Matrix user.
    pub user_id: String,
}

/// The plug-ins hosted beside a bot; cheap to clone.
#[derive(Clone)]
pub struct HostView {
    host: Arc<BridgeHost>,
    store: Store,
    bots: Arc<[String]>,
}

impl std::fmt::Debug for HostView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostView").finish_non_exhaustive()
    }
}

impl HostView {
    pub(crate) fn new(host: Arc<BridgeHost>, store: Store, bots: Vec<String>) -> Self {
        Self {
            host,
            store,
            bots: bots.into(),
        }
    }

    /// The ids of the bots that run.
    #[must_use]
    pub fn bots(&self) -> &[String] {
        &self.bots
    }

    /// Every hosted bridge, in the config's order.
    #[must_use]
    pub fn bridges(&self) -> Vec<BridgeSummary> {
        self.host
            .all()
            .iter()
            .map(|hosted| BridgeSummary {
                id: hosted.id().to_owned(),
                network: hosted.info().displayname.clone(),
                state: hosted.state(),
                portal_rooms: hosted.portal_room_count(),
            })
            .collect()
    }

    /// Every portal that has a room.
    pub async fn portals(&self) -> Result<Vec<PortalSummary>, HandleError> {
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
    #[must_use]
    pub fn portal_of(&self, room_id: &RoomId) -> Option<PortalSummary> {
        self.host.all().iter().find_map(|hosted| {
            hosted.portal_of(room_id).map(|key| PortalSummary {
                bridge: hosted.id().to_owned(),
                key,
                room_id: room_id.to_string(),
            })
        })
    }

    /// Stops bridging the portal `room_id` (the room stays); what it was, if it was one.
    pub async fn unbridge(&self, room_id: &RoomId) -> Result<Option<PortalSummary>, HandleError> {
        let Some(portal) = self.portal_of(room_id) else {
            return Ok(None);
        };
        if let Some(hosted) = self.host.bridge(&portal.bridge) {
            hosted.unbridge(&portal.key).await?;
        }
        Ok(Some(portal))
    }

    /// The puppets of one bridge or of all, at most `limit`.
    pub async fn puppets(
        &self,
        bridge: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PuppetSummary>, HandleError> {
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
