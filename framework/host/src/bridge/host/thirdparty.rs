//! Third-party lookups answered for the homeserver from the bridges that can name their users
//! and chats by fields ([`ThirdPartyHandler`]): the protocol's description, users found by
//! fields (as the Matrix users they are seen as) or by user id (puppets), chats found by
//! fields (as their portal aliases) or by alias.

use serde_json::{Value, json};
use switchboard_api::PluginError;
use switchboard_api::bridge::ThirdPartyHandler;
use switchboard_api::thirdparty::{Fields, ThirdPartyField};

use super::{BridgeHost, HostedBridge};

/// The field ids of a protocol's fields, and their types as the spec shows them.
fn field_types(fields: &[ThirdPartyField]) -> (Vec<&str>, serde_json::Map<String, Value>) {
    let ids = fields.iter().map(|f| f.id.as_str()).collect();
    let types = fields
        .iter()
        .map(|f| {
            let shape = json!({ "regexp": f.regexp, "placeholder": f.placeholder });
            (f.id.clone(), shape)
        })
        .collect();
    (ids, types)
}

impl BridgeHost {
    /// The bridges with third-party lookups, with their handlers.
    fn third_parties(&self) -> impl Iterator<Item = (&HostedBridge, &dyn ThirdPartyHandler)> {
        self.bridges
            .iter()
            .filter_map(|h| h.bridge.third_party().map(|t| (h.as_ref(), t)))
    }

    /// `GET /thirdparty/protocol/{protocol}`: the protocol's fields and instances.
    pub(crate) fn thirdparty_protocol(&self, protocol: &str) -> Option<Value> {
        let (_, handler) = self
            .third_parties()
            .find(|(_, h)| h.protocol().id == protocol)?;
        let protocol = handler.protocol();
        let (user_fields, mut types) = field_types(&protocol.user_fields);
        let (location_fields, location_types) = field_types(&protocol.location_fields);
        types.extend(location_types);
        let instances: Vec<Value> = protocol
            .instances
            .iter()
            .map(|i| {
                json!({
                    "network_id": i.network_id,
                    "desc": i.desc,
                    "icon": i.icon,
                    "fields": i.fields,
                })
            })
            .collect();
        Some(json!({
            "user_fields": user_fields,
            "location_fields": location_fields,
            "icon": protocol.icon.unwrap_or_default(),
            "field_types": types,
            "instances": instances,
        }))
    }

    /// `GET /thirdparty/user[/{protocol}]` and `GET /thirdparty/location[/{protocol}]`: with a
    /// protocol, the users (as the Matrix users they are seen as) or chats (as their portal
    /// aliases, which lead to the portals) its fields name; without, the remote user a
    /// `userid` is the puppet of, or the chat an `alias` names.
    pub(crate) async fn thirdparty_lookup(
        &self,
        kind: Lookup,
        protocol: Option<&str>,
        query: &[(String, String)],
    ) -> Vec<Value> {
        let mut found = Vec::new();
        for (hosted, handler) in self.third_parties() {
            let id = handler.protocol().id;
            let matches = match protocol {
                Some(wanted) if wanted == id => {
                    let fields: Fields = query.iter().cloned().collect();
                    kind.find(hosted, handler, &fields).await
                }
                Some(_) => continue,
                None => kind.reverse(hosted, handler, query),
            };
            found.extend(matches.into_iter().map(|(matrix_id, fields)| {
                json!({ kind.id_field(): matrix_id, "protocol": id, "fields": fields })
            }));
        }
        found
    }
}

/// What a third-party lookup looks for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup {
    /// Users, answered with user ids.
    User,
    /// Chats (locations), answered with aliases.
    Location,
}

impl Lookup {
    /// The field that carries the Matrix id, in answers and in reverse queries.
    fn id_field(self) -> &'static str {
        match self {
            Lookup::User => "userid",
            Lookup::Location => "alias",
        }
    }

    /// What `fields` name on the bridge's network: (Matrix id, the fields that name it).
    async fn find(
        self,
        hosted: &HostedBridge,
        handler: &dyn ThirdPartyHandler,
        fields: &Fields,
    ) -> Vec<(String, Fields)> {
        let failed = |e: &PluginError| {
            tracing::warn!(bridge = %hosted.id(), lookup = ?self, error = %e, "third-party lookup failed");
        };
        match self {
            Lookup::User => {
                let users = handler
                    .find_users(&hosted.ctx, fields)
                    .await
                    .inspect_err(failed)
                    .unwrap_or_default();
                let mut found = Vec::with_capacity(users.len());
                for remote in users {
                    match hosted.matrix.matrix_user_of(&remote).await {
                        Ok(user) => found.push((user.to_string(), handler.user_fields(&remote))),
                        Err(e) => {
                            tracing::warn!(bridge = %hosted.id(), error = %e, "no Matrix user for a looked-up user");
                        }
                    }
                }
                found
            }
            Lookup::Location => handler
                .find_chats(&hosted.ctx, fields)
                .await
                .inspect_err(failed)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|chat| {
                    let alias = hosted.matrix.naming.alias(&chat).ok()?;
                    Some((alias.to_string(), handler.chat_fields(&chat)))
                })
                .collect(),
        }
    }

    /// The remote users or chats the Matrix ids in `query` stand for on this bridge.
    fn reverse(
        self,
        hosted: &HostedBridge,
        handler: &dyn ThirdPartyHandler,
        query: &[(String, String)],
    ) -> Vec<(String, Fields)> {
        let ids = query
            .iter()
            .filter(|(key, _)| key == self.id_field())
            .map(|(_, id)| id.as_str());
        match self {
            Lookup::User => ids
                .filter_map(|user| {
                    let user = ruma::UserId::parse(user).ok()?;
                    let remote = hosted.matrix.naming.remote_user(&user)?;
                    Some((user.to_string(), handler.user_fields(&remote)))
                })
                .collect(),
            Lookup::Location => ids
                .filter_map(|alias| {
                    let alias = ruma::RoomAliasId::parse(alias).ok()?;
                    let chat = hosted.matrix.naming.chat_of_alias(&alias)?;
                    Some((alias.to_string(), handler.chat_fields(&chat)))
                })
                .collect(),
        }
    }
}
