//! Third-party lookups answered for the homeserver from the bridges that can name their users
//! and chats by fields ([`ThirdPartyHandler`]): the protocol's description, users found by
//! fields (as the Matrix users they are seen as) or by user id (puppets), chats found by
//! fields (as their portal aliases) or by alias.

use serde_json::{Value, json};
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

    /// `GET /thirdparty/user[/{protocol}]`: with a protocol, the users its fields name (as
    /// the Matrix users they are seen as); without, the remote user a `userid` is the puppet
    /// of.
    pub(crate) async fn thirdparty_users(
        &self,
        protocol: Option<&str>,
        query: &[(String, String)],
    ) -> Vec<Value> {
        let mut found = Vec::new();
        for (hosted, handler) in self.third_parties() {
            let id = handler.protocol().id;
            match protocol {
                Some(wanted) if wanted == id => {
                    let fields: Fields = query.iter().cloned().collect();
                    let users = handler
                        .find_users(&hosted.ctx, &fields)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!(bridge = %hosted.id(), error = %e, "user lookup failed");
                            Vec::new()
                        });
                    for remote in users {
                        match hosted.matrix.matrix_user_of(&remote).await {
                            Ok(user) => found.push(json!({
                                "userid": user,
                                "protocol": id,
                                "fields": handler.user_fields(&remote),
                            })),
                            Err(e) => {
                                tracing::warn!(bridge = %hosted.id(), error = %e, "no Matrix user for a looked-up user");
                            }
                        }
                    }
                }
                Some(_) => {}
                None => {
                    let remotes = query
                        .iter()
                        .filter(|(key, _)| key == "userid")
                        .filter_map(|(_, user)| ruma::UserId::parse(user.as_str()).ok())
                        .filter_map(|user| Some((hosted.matrix.naming.remote_user(&user)?, user)));
                    for (remote, user) in remotes {
                        found.push(json!({
                            "userid": user,
                            "protocol": id,
                            "fields": handler.user_fields(&remote),
                        }));
                    }
                }
            }
        }
        found
    }

    /// `GET /thirdparty/location[/{protocol}]`: with a protocol, the chats its fields name
    /// (as their portal aliases, which lead to the portals); without, the chat an `alias`
    /// names.
    pub(crate) async fn thirdparty_locations(
        &self,
        protocol: Option<&str>,
        query: &[(String, String)],
    ) -> Vec<Value> {
        let mut found = Vec::new();
        for (hosted, handler) in self.third_parties() {
            let id = handler.protocol().id;
            match protocol {
                Some(wanted) if wanted == id => {
                    let fields: Fields = query.iter().cloned().collect();
                    let chats = handler
                        .find_chats(&hosted.ctx, &fields)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!(bridge = %hosted.id(), error = %e, "location lookup failed");
                            Vec::new()
                        });
                    for chat in chats {
                        if let Ok(alias) = hosted.matrix.naming.alias(&chat) {
                            found.push(json!({
                                "alias": alias,
                                "protocol": id,
                                "fields": handler.chat_fields(&chat),
                            }));
                        }
                    }
                }
                Some(_) => {}
                None => {
                    let chats = query
                        .iter()
                        .filter(|(key, _)| key == "alias")
                        .filter_map(|(_, alias)| ruma::RoomAliasId::parse(alias.as_str()).ok())
                        .filter_map(|alias| {
                            Some((hosted.matrix.naming.chat_of_alias(&alias)?, alias))
                        });
                    for (chat, alias) in chats {
                        found.push(json!({
                            "alias": alias,
                            "protocol": id,
                            "fields": handler.chat_fields(&chat),
                        }));
                    }
                }
            }
        }
        found
    }
}
