-- The inbox stores one row per accepted transaction (its new events as one JSON array) instead
-- of one row per event: two row writes per transaction instead of one per event, and one
-- delete once every event of it is handled. A crash re-handles the transactions that were not
-- completely handled; the derived transaction ids of what handlers send make that harmless.
CREATE TABLE inbox_batch (
    -- Sequence number of its first event; its events are first_seq .. first_seq + event_count - 1.
    first_seq BIGINT PRIMARY KEY,
    event_count BIGINT NOT NULL,
    -- The transaction key (txn id and body digest) it arrived in.
    txn_id TEXT NOT NULL,
    -- JSON array of [kind, room_id or null, event JSON as a string] in arrival order.
    events TEXT NOT NULL
);

INSERT INTO inbox_batch (first_seq, event_count, txn_id, events)
SELECT seq, 1, txn_id, json_build_array(json_build_array(kind, room_id, body))::text
FROM inbox_event;

DROP TABLE inbox_event;

-- Which transaction recorded an event id: lets one statement insert a transaction's ids and
-- tell, in the rare case that some were known, which ones are new.
ALTER TABLE inbox_seen_event ADD COLUMN txn_id TEXT NOT NULL DEFAULT '';
