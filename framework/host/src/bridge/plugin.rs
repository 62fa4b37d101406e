//! The map of portal rooms the host uses to route Matrix events to their bridge.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ruma::{OwnedRoomId, RoomId};

use super::ids::PortalKey;

/// Which rooms are portals, of which bridge: kept in memory (loaded at start, added to when a
/// portal room is created) so that routing an event, or finding a portal's room, costs no
/// database query.
#[derive(Clone, Debug, Default)]
pub struct PortalRooms {
    rooms: Arc<RwLock<RoomIndex>>,
}

/// Portal rooms both ways: room → (bridge, portal), and (bridge, portal) → room.
#[derive(Debug, Default)]
struct RoomIndex {
    by_room: HashMap<OwnedRoomId, (String, PortalKey)>,
    by_portal: HashMap<(String, PortalKey), OwnedRoomId>,
}

impl PortalRooms {
    /// Records that `room_id` is the portal `key` of `bridge`.
    pub fn insert(&self, room_id: OwnedRoomId, bridge: &str, key: PortalKey) {
        if let Ok(mut rooms) = self.rooms.write() {
            let portal = (bridge.to_owned(), key);
            rooms.by_portal.insert(portal.clone(), room_id.clone());
            if let Some(old) = rooms.by_room.insert(room_id, portal.clone())
                && old != portal
            {
                rooms.by_portal.remove(&old);
            }
        }
    }

    /// The bridge and portal of `room_id`, if it is a portal.
    #[must_use]
    pub fn get(&self, room_id: &RoomId) -> Option<(String, PortalKey)> {
        self.rooms.read().ok()?.by_room.get(room_id).cloned()
    }

    /// The room of `bridge`'s portal `key`, if it is known here.
    #[must_use]
    pub fn room_of(&self, bridge: &str, key: &PortalKey) -> Option<OwnedRoomId> {
        self.rooms
            .read()
            .ok()?
            .by_portal
            .get(&(bridge.to_owned(), key.clone()))
            .cloned()
    }

    /// Forgets that `room_id` is a portal.
    pub fn remove(&self, room_id: &RoomId) {
        if let Ok(mut rooms) = self.rooms.write()
            && let Some(portal) = rooms.by_room.remove(room_id)
        {
            rooms.by_portal.remove(&portal);
        }
    }

    /// The portal rooms of `bridge`.
    #[must_use]
    pub fn rooms_of(&self, bridge: &str) -> Vec<OwnedRoomId> {
        self.rooms.read().map_or_else(
            |_| Vec::new(),
            |rooms| {
                rooms
                    .by_portal
                    .iter()
                    .filter(|((b, _), _)| b == bridge)
                    .map(|(_, room)| room.clone())
                    .collect()
            },
        )
    }

    /// How many portal rooms `bridge` has.
    #[must_use]
    pub fn count(&self, bridge: &str) -> usize {
        self.rooms.read().map_or(0, |rooms| {
            rooms.by_room.values().filter(|(b, _)| b == bridge).count()
        })
    }

    /// Whether no room is a portal (then routing can skip the lookup).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rooms
            .read()
            .map_or(true, |rooms| rooms.by_room.is_empty())
    }
}
