-- The inbox stores one row per accepted transaction (its new events as one JSON array) instead
-- of one row per event: one row write per transaction instead of one per event. Once every
-- event of a batch is handled its events are dropped; the row itself (with the event ids) is
-- kept for the retention period, and the ids of the most recent batches are loaded at start to
-- drop room events a homeserver sends twice. A crash re-handles the batches that were not
-- completely handled; the derived transaction ids of what handlers send make that harmless.
CREATE TABLE inbox_batch (
    -- Sequence number of its first event; its events are first_seq .. first_seq + event_count - 1.
    first_seq INTEGER PRIMARY KEY,
    event_count INTEGER NOT NULL,
    -- The transaction key (txn id and body digest) it arrived in.
    txn_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    -- The room event ids among its events, one per line.
    event_ids TEXT NOT NULL,
    -- JSON array of [kind, room_id or null, event JSON as a string] in arrival order; NULL once
    -- every event is handled.
    events TEXT
);

CREATE INDEX inbox_batch_pending ON inbox_batch (first_seq) WHERE events IS NOT NULL;

INSERT INTO inbox_batch (first_seq, event_count, txn_id, received_at, event_ids, events)
SELECT seq, 1, txn_id, 0, '', json_array(json_array(kind, room_id, body)) FROM inbox_event;

DROP TABLE inbox_event;

-- Event ids now live in inbox_batch (recent ones in memory).
DROP TABLE inbox_seen_event;
