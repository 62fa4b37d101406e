-- Bots' own data (JSON by key, e.g. the admin room) and their audit log (who ran what, and
-- how it ended).
CREATE TABLE bot_data (
    bot_id TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (bot_id, key)
);

CREATE TABLE bot_audit (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    sender TEXT NOT NULL,
    room_id TEXT NOT NULL,
    command TEXT NOT NULL,
    outcome TEXT NOT NULL
);

CREATE INDEX bot_audit_by_bot ON bot_audit (bot_id, seq);
