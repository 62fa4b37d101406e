-- Switchboard's last sign of life, written every 30 s while it runs: at start, a gap longer
-- than `outage_notices.after_secs` means it was down, and the portals whose messages from then
-- arrive late are told so.
CREATE TABLE runtime_heartbeat (
    id INTEGER PRIMARY KEY,
    at_ms BIGINT NOT NULL
);
