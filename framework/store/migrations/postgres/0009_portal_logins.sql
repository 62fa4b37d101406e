-- Which of a user's logins a portal goes through: with several logins, a user's messages in a
-- portal are sent with the login that owns (sees) that chat, not the oldest one. Set by the
-- bridge (the login that brought the chat) or by the user (`use-login`).
CREATE TABLE bridge_portal_login (
    bridge_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    user_id TEXT NOT NULL,
    login_id TEXT NOT NULL,
    PRIMARY KEY (bridge_id, chat_id, receiver, user_id)
);
