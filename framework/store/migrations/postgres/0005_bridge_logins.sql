-- Logins: a Matrix user's account on a bridge's network (several per user). The bridge keeps
-- what it needs to reconnect (session, credentials) in `data`, as JSON.
CREATE TABLE bridge_login (
    bridge_id TEXT NOT NULL,
    -- The account's id on the network, unique per bridge.
    login_id TEXT NOT NULL,
    -- The Matrix user it belongs to.
    user_id TEXT NOT NULL,
    -- How the account is shown to its owner ("alice@example.net").
    remote_name TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (bridge_id, login_id)
);

CREATE INDEX bridge_login_user ON bridge_login (bridge_id, user_id, created_at);

-- The login a portal relays the messages of users without their own through (NULL: none).
ALTER TABLE bridge_portal ADD COLUMN relay_login TEXT;
