-- What bridges know, keyed by the bridge's id so that several bridges share one database.

-- A portal: a remote chat (seen by everyone, or by one remote user: `receiver`) and its room.
CREATE TABLE bridge_portal (
    bridge_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    -- '' for a chat shared by everyone.
    receiver TEXT NOT NULL,
    -- NULL until the room is created.
    room_id TEXT UNIQUE,
    -- The bridge's own data about the portal, as JSON.
    data TEXT NOT NULL,
    PRIMARY KEY (bridge_id, chat_id, receiver)
);

-- A puppet: a remote user and the Matrix user that speaks for them.
CREATE TABLE bridge_puppet (
    bridge_id TEXT NOT NULL,
    remote_user_id TEXT NOT NULL,
    user_id TEXT NOT NULL UNIQUE,
    -- The bridge's own data about the user, as JSON.
    data TEXT NOT NULL,
    PRIMARY KEY (bridge_id, remote_user_id)
);

-- The message map: a remote message (or one part of it) and the Matrix event bridged for it,
-- whichever side it came from. Used for replies, edits, reactions and redactions, and to bridge
-- a remote message once.
CREATE TABLE bridge_message (
    bridge_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    remote_message_id TEXT NOT NULL,
    -- '' for a message in one part.
    part TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (bridge_id, chat_id, receiver, remote_message_id, part)
);
