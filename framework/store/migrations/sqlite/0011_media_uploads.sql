-- Files uploaded to the homeserver, by content: an upload's media id is reserved and recorded
-- here before the file is sent (to that id, a request that may be repeated), so that a lost
-- answer or a crash never uploads the same file twice, and a file sent again reuses its URI.
CREATE TABLE media_upload (
    content_key TEXT PRIMARY KEY,
    mxc TEXT NOT NULL,
    uploaded BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
