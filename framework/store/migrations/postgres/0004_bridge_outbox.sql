-- The outbox: Matrix events a bridge could not deliver to its network yet (the network was
-- down or refused for now). They are retried with backoff, in order per portal, and survive a
-- restart; while a portal has entries here, its newer events queue behind them. Keeping them
-- out of the inbox means a remote outage never holds back the homeserver's transactions.
CREATE TABLE bridge_outbox (
    -- Queue order (an identity column).
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bridge_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    -- The Matrix event as the homeserver sent it.
    event TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    -- When to try next (ms since the epoch).
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT NOT NULL
);

CREATE INDEX bridge_outbox_portal ON bridge_outbox (bridge_id, chat_id, receiver, seq);
