-- The end-to-bridge encryption state of each device Switchboard holds (its Olm account,
-- cross-signing keys, Olm and Megolm sessions, other users' devices…), one row per item,
-- as the crypto engine pickles it. `owner` is "<user id>|<device id>".
CREATE TABLE crypto_item (
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (owner, kind, key)
);
