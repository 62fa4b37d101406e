-- The inbox keeps one row per accepted transaction instead of one row per event plus a
-- transaction table and an event-id table: accepting a transaction is one INSERT (its key is
-- unique, so a repeat inserts nothing), and appending in key order means no random index writes
-- per event. Once every event of a batch is handled its events are dropped; the row (its key
-- and event ids) is kept for the retention period, and the ids of the latest batches are loaded
-- at start to drop room events a homeserver sends twice. A crash re-handles the batches not
-- completely handled; the derived transaction ids of what handlers send make that harmless.
CREATE TABLE inbox_batch (
    -- Sequence number of its first event; its events are first_seq .. first_seq + event_count - 1
    -- (a transaction without new events still takes one number).
    first_seq INTEGER PRIMARY KEY,
    event_count INTEGER NOT NULL,
    -- The transaction key (txn id and body digest).
    txn_id TEXT NOT NULL UNIQUE,
    received_at INTEGER NOT NULL,
    -- The room event ids among its events, one per line.
    event_ids TEXT NOT NULL,
    -- JSON array of [kind, room_id or null, event JSON as a string] in arrival order; NULL once
    -- every event is handled.
    events TEXT
);

CREATE INDEX inbox_batch_pending ON inbox_batch (first_seq) WHERE events IS NOT NULL;

-- Transactions seen before the upgrade stay known (numbered below every real batch).
INSERT INTO inbox_batch (first_seq, event_count, txn_id, received_at, event_ids, events)
SELECT -ROW_NUMBER() OVER (ORDER BY txn_id), 0, txn_id, received_at, '', NULL FROM inbox_txn;

-- Events not yet handled become batches of one.
INSERT INTO inbox_batch (first_seq, event_count, txn_id, received_at, event_ids, events)
SELECT seq, 1, txn_id || '#' || seq, 0, '', json_array(json_array(kind, room_id, body))
FROM inbox_event;

DROP TABLE inbox_event;
DROP TABLE inbox_seen_event;
DROP TABLE inbox_txn;
