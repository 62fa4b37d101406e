//! The types of third-party lookups (the Application Service API's `/thirdparty/*`; the
//! capability is [`ThirdPartyHandler`](crate::bridge::ThirdPartyHandler)): a bridge describes its
//! network as a protocol — the fields that name a user or a chat on it, and its instances for
//! the room directory — and turns those fields into remote ids and back. The framework answers
//! the homeserver: remote users as the Matrix users they are seen as (a login's owner or a
//! puppet), chats as their portal aliases, and the reverse lookups by user id or alias.

use std::collections::BTreeMap;

/// The values of a lookup's fields, by field id (`{"jid": "bob@example.org"}`).
pub type Fields = BTreeMap<String, String>;

/// One field of a lookup: its id, and how clients should ask for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThirdPartyField {
    /// Its id (the key in [`Fields`]).
    pub id: String,
    /// A regular expression its values match, for clients to check input.
    pub regexp: String,
    /// What clients show in an empty input (`bob@example.org`).
    pub placeholder: String,
}

/// One instance of the network (a server, a workspace) listed in the room directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThirdPartyInstance {
    /// Its id within the protocol (the homeserver makes it a directory instance id).
    pub network_id: String,
    /// How it is shown (`jabber.org`).
    pub desc: String,
    /// Its icon, as an `mxc://` URI, if it has one.
    pub icon: Option<String>,
    /// The field values that select it in lookups.
    pub fields: Fields,
}

/// How a network is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThirdPartyProtocol {
    /// The protocol id (`xmpp`), also listed in the registration.
    pub id: String,
    /// The fields that name a user, in the order clients should ask for them.
    pub user_fields: Vec<ThirdPartyField>,
    /// The fields that name a chat (a location), in that order.
    pub location_fields: Vec<ThirdPartyField>,
    /// The protocol's icon, as an `mxc://` URI, if it has one.
    pub icon: Option<String>,
    /// Its instances (may be empty).
    pub instances: Vec<ThirdPartyInstance>,
}
