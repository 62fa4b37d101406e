-- Management rooms: direct chats a user opened with the bridge bot. Commands there need no
-- prefix (when one bridge runs).
CREATE TABLE management_room (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL
);
