-- Transactions already accepted from the homeserver (de-duplication, kept for a retention
-- period). The key is the txn id plus a digest of the body: Synapse on SQLite reuses txn ids
-- for different content after a restart, so the id alone is not enough.
CREATE TABLE inbox_txn (
    txn_id TEXT PRIMARY KEY NOT NULL,
    received_at BIGINT NOT NULL
);

-- Ids of room events already accepted: a homeserver that resends an event in another
-- transaction (after its own restart) does not get it handled twice.
CREATE TABLE inbox_seen_event (
    event_id TEXT PRIMARY KEY NOT NULL,
    received_at BIGINT NOT NULL
);

-- Events accepted but not yet handled. A row is deleted once its handling is recorded as done.
CREATE TABLE inbox_event (
    seq BIGSERIAL PRIMARY KEY,
    txn_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    room_id TEXT,
    body TEXT NOT NULL
);

-- Events whose handling failed permanently: kept for inspection, never retried automatically.
CREATE TABLE inbox_failed (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT NOT NULL,
    txn_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    room_id TEXT,
    body TEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);

-- Users of our namespaces known to be registered, with the profile we last set.
CREATE TABLE managed_user (
    user_id TEXT PRIMARY KEY NOT NULL,
    displayname TEXT,
    avatar_url TEXT
);

-- Rooms our users are known to have joined.
CREATE TABLE room_member (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
