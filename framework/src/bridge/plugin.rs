//! The bridge plug-in boundary: what a bridge implements, what it gets to act with, and the
//! map of portal rooms the host uses to route Matrix events to their bridge.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use tokio_util::sync::CancellationToken;

use super::ids::{PortalKey, RemoteMessageId};
use super::matrix::{BridgeError, BridgeInfo, MatrixSide, TextKind};
use crate::inbox::HandleError;

/// A bridge plug-in: connects one remote network to Matrix through portals and puppets.
#[async_trait::async_trait]
pub trait Bridge: Send + Sync + 'static {
    /// Its id (the key of its config section `bridges.<id>` and of its rows in the database)
    /// and the network's name.
    fn info(&self) -> BridgeInfo;

    /// The localpart template of its puppets, holding `{{id}}` once (default `_<id>_{{id}}`).
    fn puppet_template(&self) -> String {
        format!("_{}_{{{{id}}}}", self.info().id)
    }

    /// Connects to the remote network. What the network sends goes to Matrix through
    /// `ctx.matrix()`; long-running work is spawned and stops when `ctx.shutdown()` fires.
    async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError>;

    /// A text message a Matrix user sent in one of this bridge's portals: deliver it to the
    /// remote network and return its id there (the framework records the mapping). Return
    /// [`HandleError::Transient`] to have it retried, in order, later.
    async fn handle_matrix_text(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        message: &MatrixText,
    ) -> Result<RemoteMessageId, HandleError>;
}

/// A text message from a Matrix user in a portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixText {
    /// Its event.
    pub event_id: OwnedEventId,
    /// The portal room.
    pub room_id: OwnedRoomId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// Plain text.
    pub body: String,
    /// Text, notice or emote.
    pub kind: TextKind,
}

impl MatrixText {
    /// The text message in `event`, if it is one (`m.room.message` of type text, notice or
    /// emote, not an edit).
    #[must_use]
    pub fn from_event(event: &crate::RoomEvent) -> Option<Self> {
        let (kind, body) = event.text_message()?;
        Some(Self {
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: event.sender.clone(),
            body,
            kind,
        })
    }
}

/// What a bridge gets to act with.
#[derive(Clone, Debug)]
pub struct BridgeContext {
    matrix: MatrixSide,
    shutdown: CancellationToken,
}

impl BridgeContext {
    /// A context acting through `matrix` until `shutdown`.
    #[must_use]
    pub fn new(matrix: MatrixSide, shutdown: CancellationToken) -> Self {
        Self { matrix, shutdown }
    }

    /// The Matrix side: portals, puppets, sending what the network said.
    #[must_use]
    pub fn matrix(&self) -> &MatrixSide {
        &self.matrix
    }

    /// Fires when Switchboard stops.
    #[must_use]
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Which rooms are portals, of which bridge: kept in memory (loaded at start, added to when a
/// portal room is created) so that routing an event costs no database query.
#[derive(Clone, Debug, Default)]
pub struct PortalRooms {
    rooms: Arc<RwLock<HashMap<OwnedRoomId, (String, PortalKey)>>>,
}

impl PortalRooms {
    /// Records that `room_id` is the portal `key` of `bridge`.
    pub fn insert(&self, room_id: OwnedRoomId, bridge: &str, key: PortalKey) {
        if let Ok(mut rooms) = self.rooms.write() {
            rooms.insert(room_id, (bridge.to_owned(), key));
        }
    }

    /// The bridge and portal of `room_id`, if it is a portal.
    #[must_use]
    pub fn get(&self, room_id: &RoomId) -> Option<(String, PortalKey)> {
        self.rooms.read().ok()?.get(room_id).cloned()
    }

    /// Whether no room is a portal (then routing can skip the lookup).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rooms.read().map_or(true, |rooms| rooms.is_empty())
    }
}
