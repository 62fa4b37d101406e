-- Requests that create something on the homeserver each time they are made (a room): each is
-- recorded with a fresh nonce before it is sent and forgotten once its result is stored. An
-- intent still here means an earlier attempt may have created the thing (its answer was lost,
-- or Switchboard died): the thing is looked up by its nonce before it is created again.
CREATE TABLE request_intent (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, subject)
);
