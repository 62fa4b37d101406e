//! The homeserver commands, through Synapse's Admin API with the configured admin token
//! (a Synapse admin's access token, or with Matrix Authentication Service a compatibility
//! token with admin rights). Every answer is a [`CommandReply`]; a homeserver without this API
//! is named plainly.

use switchboard_api::client::HomeserverClient;
use switchboard_api::client::{ClientError, escape_path_segment};
use switchboard_api::clock::Clock;
use switchboard_api::command::{CommandReply, Table};
use switchboard_api::serde_json::{Value, json};

use crate::cli::{Media, Reports, Rooms, Tokens, Users};

/// Why a homeserver command did not work; `Display` is the answer for the admin.
#[derive(Debug)]
pub enum AdminError {
    /// No admin token is configured.
    NoToken,
    /// The homeserver has no Synapse Admin API.
    NoAdminApi,
    /// The token is not accepted as an admin's.
    NotAdmin(String),
    /// The homeserver refused, with its reason.
    Refused(String),
    /// The homeserver could not be reached.
    Unreachable(String),
    /// The argument does not name what it should.
    BadArgument(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoToken => write!(
                f,
                "homeserver commands need an admin token: set bots.admin.admin_token (or \
                 admin_token_file) to the access token of a Synapse admin"
            ),
            Self::NoAdminApi => write!(
                f,
                "this homeserver does not offer this part of the Synapse Admin API \
                 (/_synapse/admin): it is not Synapse, is too old, or has the feature turned \
                 off; Switchboard's own commands still work"
            ),
            Self::NotAdmin(why) => write!(
                f,
                "the homeserver does not accept bots.admin.admin_token as an admin's ({why})"
            ),
            Self::Refused(why) => write!(f, "the homeserver refused: {why}"),
            Self::Unreachable(why) => write!(f, "the homeserver did not answer: {why}"),
            Self::BadArgument(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for AdminError {}

impl From<ClientError> for AdminError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Homeserver {
                status, errcode, ..
            } if status == 404 && (errcode == "M_UNRECOGNIZED" || errcode == "-") => {
                Self::NoAdminApi
            }
            ClientError::Homeserver {
                status: 401 | 403,
                errcode,
                message,
                ..
            } => Self::NotAdmin(format!("{errcode}: {message}")),
            ClientError::Homeserver {
                errcode, message, ..
            } => Self::Refused(format!("{errcode}: {message}")),
            other => Self::Unreachable(other.to_string()),
        }
    }
}

/// Synapse's Admin API, as one admin.
pub struct SynapseAdmin<'a> {
    /// The homeserver client (its transport, retries and metrics).
    pub client: &'a HomeserverClient,
    /// The admin token.
    pub token: String,
    /// The homeserver's server name, for localparts.
    pub server_name: &'a str,
    /// Where the time comes from.
    pub clock: &'a dyn Clock,
}

/// A random password: 20 letters and digits.
fn generated_password() -> String {
    use rand::Rng as _;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yes_no(value: &Value) -> &'static str {
    if value.as_bool().unwrap_or(false) || value.as_i64().is_some_and(|n| n != 0) {
        "yes"
    } else {
        "no"
    }
}

/// A JSON object as a two-column table of its fields (for `show` commands).
fn fields(title: &str, value: &Value, keys: &[&str]) -> CommandReply {
    let mut table = Table::new(&["field", "value"]);
    for key in keys {
        let shown = text(&value[*key]);
        if !shown.is_empty() {
            table.row([(*key).to_owned(), shown]);
        }
    }
    table.reply(title, "Nothing known.")
}

impl SynapseAdmin<'_> {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let method = match method {
            "GET" => switchboard_api::client::http::Method::GET,
            "PUT" => switchboard_api::client::http::Method::PUT,
            "DELETE" => switchboard_api::client::http::Method::DELETE,
            _ => switchboard_api::client::http::Method::POST,
        };
        Ok(self
            .client
            .request_json("synapse_admin", method, path, body, &self.token)
            .await?)
    }

    /// `bob` → `@bob:<server>`; a user id stays as it is.
    fn user_id(&self, user: &str) -> String {
        if user.starts_with('@') {
            user.to_owned()
        } else {
            format!("@{user}:{}", self.server_name)
        }
    }

    fn user_path(&self, prefix: &str, user: &str, suffix: &str) -> String {
        format!(
            "/_synapse/admin/{prefix}/{}{suffix}",
            escape_path_segment(&self.user_id(user))
        )
    }

    /// A room id, from an id or an alias (looked up in the directory).
    async fn room_id(&self, room: &str) -> Result<String, AdminError> {
        if room.starts_with('!') {
            return Ok(room.to_owned());
        }
        if !room.starts_with('#') {
            return Err(AdminError::BadArgument(format!(
                "{room:?} is neither a room id (!…) nor an alias (#…)"
            )));
        }
        let path = format!(
            "/_matrix/client/v3/directory/room/{}",
            escape_path_segment(room)
        );
        let found = self.call("GET", &path, None).await?;
        found["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AdminError::BadArgument(format!("{room} names no room")))
    }

    /// Runs a `users …` command.
    pub async fn users(&self, command: &Users) -> Result<CommandReply, AdminError> {
        match command {
            Users::List {
                limit,
                search,
                deactivated,
            } => {
                self.list_users(*limit, search.as_deref(), *deactivated)
                    .await
            }
            Users::Show(user) => {
                let path = self.user_path("v2/users", &user.user, "");
                let found = self.call("GET", &path, None).await?;
                Ok(fields(
                    &self.user_id(&user.user),
                    &found,
                    &[
                        "displayname",
                        "admin",
                        "deactivated",
                        "locked",
                        "suspended",
                        "shadow_banned",
                        "creation_ts",
                        "user_type",
                        "avatar_url",
                    ],
                ))
            }
            Users::Create {
                user,
                password,
                displayname,
                admin,
            } => {
                self.create_user(user, password.as_deref(), displayname.as_deref(), *admin)
                    .await
            }
            Users::ResetPassword {
                user,
                password,
                keep_devices,
            } => {
                let new = password.clone().unwrap_or_else(generated_password);
                let path = self.user_path("v1/reset_password", user, "");
                let body = json!({ "new_password": new, "logout_devices": !keep_devices });
                self.call("POST", &path, Some(&body)).await?;
                let user = self.user_id(user);
                Ok(match password {
                    Some(_) => format!("The password of {user} is changed.").into(),
                    None => format!("The new password of {user} is: {new}").into(),
                })
            }
            Users::Deactivate { user, erase, .. } => {
                let path = self.user_path("v1/deactivate", user, "");
                self.call("POST", &path, Some(&json!({ "erase": erase })))
                    .await?;
                Ok(format!("{} is deactivated.", self.user_id(user)).into())
            }
            Users::Suspend(user) | Users::Unsuspend(user) => {
                let suspend = matches!(command, Users::Suspend(_));
                let path = self.user_path("v1/suspend", &user.user, "");
                self.call("PUT", &path, Some(&json!({ "suspend": suspend })))
                    .await?;
                let done = if suspend {
                    "suspended"
                } else {
                    "no longer suspended"
                };
                Ok(format!("{} is {done}.", self.user_id(&user.user)).into())
            }
            Users::Lock(user) | Users::Unlock(user) => {
                let locked = matches!(command, Users::Lock(_));
                let path = self.user_path("v2/users", &user.user, "");
                self.call("PUT", &path, Some(&json!({ "locked": locked })))
                    .await?;
                let done = if locked { "locked" } else { "unlocked" };
                Ok(format!("{} is {done}.", self.user_id(&user.user)).into())
            }
            Users::MakeAdmin { user, revoke } => {
                let path = self.user_path("v1/users", user, "/admin");
                self.call("PUT", &path, Some(&json!({ "admin": !revoke })))
                    .await?;
                let done = if *revoke { "no longer" } else { "now" };
                Ok(format!("{} is {done} a server admin.", self.user_id(user)).into())
            }
            Users::Sessions(user) => self.sessions(&user.user).await,
            Users::ForceJoin { user, room } => {
                let path = format!("/_synapse/admin/v1/join/{}", escape_path_segment(room));
                let body = json!({ "user_id": self.user_id(user) });
                let joined = self.call("POST", &path, Some(&body)).await?;
                Ok(format!(
                    "{} joined {}.",
                    self.user_id(user),
                    text(&joined["room_id"])
                )
                .into())
            }
        }
    }

    async fn list_users(
        &self,
        limit: u32,
        search: Option<&str>,
        deactivated: bool,
    ) -> Result<CommandReply, AdminError> {
        let mut path = format!("/_synapse/admin/v2/users?limit={limit}&deactivated={deactivated}");
        if let Some(search) = search {
            path.push_str("&name=");
            path.push_str(&escape_path_segment(search));
        }
        let found = self.call("GET", &path, None).await?;
        let mut table = Table::new(&["user", "name", "admin", "deactivated"]);
        for user in found["users"].as_array().into_iter().flatten() {
            table.row([
                text(&user["name"]),
                text(&user["displayname"]),
                yes_no(&user["admin"]).to_owned(),
                yes_no(&user["deactivated"]).to_owned(),
            ]);
        }
        let total = found["total"].as_u64().unwrap_or(0);
        Ok(table.reply(&format!("Users ({total} in all)"), "No users."))
    }

    async fn create_user(
        &self,
        user: &str,
        password: Option<&str>,
        displayname: Option<&str>,
        admin: bool,
    ) -> Result<CommandReply, AdminError> {
        let path = self.user_path("v2/users", user, "");
        match self.call("GET", &path, None).await {
            Ok(_) => {
                return Err(AdminError::BadArgument(format!(
                    "{} exists already; see `users show` and `users reset-password`",
                    self.user_id(user)
                )));
            }
            Err(AdminError::Refused(why)) if why.starts_with("M_NOT_FOUND") => {}
            Err(other) => return Err(other),
        }
        let new = password.map_or_else(generated_password, str::to_owned);
        let mut body = json!({ "password": new, "admin": admin });
        if let Some(name) = displayname {
            body["displayname"] = json!(name);
        }
        self.call("PUT", &path, Some(&body)).await?;
        let user = self.user_id(user);
        Ok(match password {
            Some(_) => format!("{user} is created.").into(),
            None => format!("{user} is created; their password is: {new}").into(),
        })
    }

    async fn sessions(&self, user: &str) -> Result<CommandReply, AdminError> {
        let path = self.user_path("v1/whois", user, "");
        let found = self.call("GET", &path, None).await?;
        let mut table = Table::new(&["device", "address", "last seen (ms)", "client"]);
        for (device, info) in found["devices"].as_object().into_iter().flatten() {
            for session in info["sessions"].as_array().into_iter().flatten() {
                for connection in session["connections"].as_array().into_iter().flatten() {
                    table.row([
                        device.clone(),
                        text(&connection["ip"]),
                        text(&connection["last_seen"]),
                        text(&connection["user_agent"]),
                    ]);
                }
            }
        }
        Ok(table.reply(
            &format!("Sessions of {}", self.user_id(user)),
            "No sessions.",
        ))
    }

    /// Runs a `rooms …` command.
    pub async fn rooms(&self, command: &Rooms) -> Result<CommandReply, AdminError> {
        match command {
            Rooms::List { limit, search } => {
                let mut path = format!("/_synapse/admin/v1/rooms?limit={limit}");
                if let Some(search) = search {
                    path.push_str("&search_term=");
                    path.push_str(&escape_path_segment(search));
                }
                let found = self.call("GET", &path, None).await?;
                let mut table = Table::new(&["room", "name", "alias", "members"]);
                for room in found["rooms"].as_array().into_iter().flatten() {
                    table.row([
                        text(&room["room_id"]),
                        text(&room["name"]),
                        text(&room["canonical_alias"]),
                        text(&room["joined_members"]),
                    ]);
                }
                let total = found["total_rooms"].as_u64().unwrap_or(0);
                Ok(table.reply(&format!("Rooms ({total} in all)"), "No rooms."))
            }
            Rooms::Show(room) => {
                let room_id = self.room_id(&room.room).await?;
                let path = format!("/_synapse/admin/v1/rooms/{}", escape_path_segment(&room_id));
                let found = self.call("GET", &path, None).await?;
                Ok(fields(
                    &room_id,
                    &found,
                    &[
                        "name",
                        "canonical_alias",
                        "topic",
                        "creator",
                        "joined_members",
                        "joined_local_members",
                        "version",
                        "encryption",
                        "public",
                        "join_rules",
                        "federatable",
                    ],
                ))
            }
            Rooms::Members(room) => {
                let room_id = self.room_id(&room.room).await?;
                let path = format!(
                    "/_synapse/admin/v1/rooms/{}/members",
                    escape_path_segment(&room_id)
                );
                let found = self.call("GET", &path, None).await?;
                let mut table = Table::new(&["member"]);
                for member in found["members"].as_array().into_iter().flatten() {
                    table.row([text(member)]);
                }
                Ok(table.reply(&format!("Members of {room_id}"), "No members."))
            }
            Rooms::Delete { room, block, .. } => {
                let room_id = self.room_id(room).await?;
                let path = format!("/_synapse/admin/v2/rooms/{}", escape_path_segment(&room_id));
                let body = json!({ "block": block, "purge": true });
                let started = self.call("DELETE", &path, Some(&body)).await?;
                Ok(format!(
                    "{room_id} is being deleted (delete id {}).",
                    text(&started["delete_id"])
                )
                .into())
            }
            Rooms::Block(room) | Rooms::Unblock(room) => {
                let block = matches!(command, Rooms::Block(_));
                let room_id = self.room_id(&room.room).await?;
                let path = format!(
                    "/_synapse/admin/v1/rooms/{}/block",
                    escape_path_segment(&room_id)
                );
                self.call("PUT", &path, Some(&json!({ "block": block })))
                    .await?;
                let done = if block { "blocked" } else { "unblocked" };
                Ok(format!("{room_id} is {done}.").into())
            }
            Rooms::MakeAdmin { room, user } => {
                let room_id = self.room_id(room).await?;
                let path = format!(
                    "/_synapse/admin/v1/rooms/{}/make_room_admin",
                    escape_path_segment(&room_id)
                );
                let body = user
                    .as_ref()
                    .map_or_else(|| json!({}), |u| json!({ "user_id": self.user_id(u) }));
                self.call("POST", &path, Some(&body)).await?;
                Ok(format!("A local admin of {room_id} now has the highest power level.").into())
            }
        }
    }

    /// Runs a `media …` command.
    pub async fn media(&self, command: &Media) -> Result<CommandReply, AdminError> {
        let split = |mxc: &str| {
            mxc.strip_prefix("mxc://")
                .and_then(|rest| rest.split_once('/'))
                .map(|(server, id)| (escape_path_segment(server), escape_path_segment(id)))
                .ok_or_else(|| {
                    AdminError::BadArgument(format!("{mxc:?} is not an mxc://server/id URI"))
                })
        };
        match command {
            Media::Quarantine { mxc } => {
                let (server, id) = split(mxc)?;
                let path = format!("/_synapse/admin/v1/media/quarantine/{server}/{id}");
                self.call("POST", &path, Some(&json!({}))).await?;
                Ok(format!("{mxc} is quarantined.").into())
            }
            Media::Delete { mxc, .. } => {
                let (server, id) = split(mxc)?;
                let path = format!("/_synapse/admin/v1/media/{server}/{id}");
                let deleted = self.call("DELETE", &path, None).await?;
                Ok(format!("Deleted {} file(s).", text(&deleted["total"])).into())
            }
            Media::PurgeRemote { days, .. } => {
                let before = self
                    .clock
                    .now_ms()
                    .saturating_sub(i64::from(*days).saturating_mul(86_400_000));
                let path = format!("/_synapse/admin/v1/purge_media_cache?before_ts={before}");
                let purged = self.call("POST", &path, Some(&json!({}))).await?;
                Ok(format!("Purged {} remote file(s).", text(&purged["deleted"])).into())
            }
        }
    }

    /// Runs a `tokens …` command.
    pub async fn tokens(&self, command: &Tokens) -> Result<CommandReply, AdminError> {
        match command {
            Tokens::List => {
                let found = self
                    .call("GET", "/_synapse/admin/v1/registration_tokens", None)
                    .await?;
                let mut table = Table::new(&["token", "uses allowed", "completed", "expires (ms)"]);
                for token in found["registration_tokens"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    table.row([
                        text(&token["token"]),
                        text(&token["uses_allowed"]),
                        text(&token["completed"]),
                        text(&token["expiry_time"]),
                    ]);
                }
                Ok(table.reply("Registration tokens", "No registration tokens."))
            }
            Tokens::Create { uses, days, token } => {
                let mut body = json!({});
                if let Some(uses) = uses {
                    body["uses_allowed"] = json!(uses);
                }
                if let Some(days) = days {
                    let now = self.clock.now_ms();
                    body["expiry_time"] =
                        json!(now.saturating_add(i64::from(*days).saturating_mul(86_400_000)));
                }
                if let Some(token) = token {
                    body["token"] = json!(token);
                }
                let created = self
                    .call(
                        "POST",
                        "/_synapse/admin/v1/registration_tokens/new",
                        Some(&body),
                    )
                    .await?;
                Ok(format!("New registration token: {}", text(&created["token"])).into())
            }
            Tokens::Delete { token } => {
                let path = format!(
                    "/_synapse/admin/v1/registration_tokens/{}",
                    escape_path_segment(token)
                );
                self.call("DELETE", &path, None).await?;
                Ok(format!("The registration token {token} is deleted.").into())
            }
        }
    }

    /// Runs a `reports …` command.
    pub async fn reports(&self, command: &Reports) -> Result<CommandReply, AdminError> {
        match command {
            Reports::List { limit } => {
                let path = format!("/_synapse/admin/v1/event_reports?limit={limit}&dir=b");
                let found = self.call("GET", &path, None).await?;
                let mut table = Table::new(&["id", "room", "reporter", "reason"]);
                for report in found["event_reports"].as_array().into_iter().flatten() {
                    table.row([
                        text(&report["id"]),
                        text(&report["room_id"]),
                        text(&report["user_id"]),
                        text(&report["reason"]),
                    ]);
                }
                Ok(table.reply("Event reports, newest first", "No reports."))
            }
            Reports::Show { id } => {
                let path = format!("/_synapse/admin/v1/event_reports/{id}");
                let found = self.call("GET", &path, None).await?;
                let event = switchboard_api::serde_json::to_string_pretty(&found["event_json"])
                    .unwrap_or_default();
                let summary = fields(
                    &format!("Report {id}"),
                    &found,
                    &[
                        "room_id",
                        "event_id",
                        "user_id",
                        "sender",
                        "reason",
                        "score",
                        "received_ts",
                    ],
                );
                let html = format!(
                    "{}<pre><code class=\"language-json\">{}</code></pre>",
                    summary.html.unwrap_or_default(),
                    escape(&event)
                );
                Ok(CommandReply::html(
                    format!("{}\n{event}", summary.text),
                    html,
                ))
            }
            Reports::Resolve { id } => {
                let path = format!("/_synapse/admin/v1/event_reports/{id}");
                self.call("DELETE", &path, None).await?;
                Ok(format!("Report {id} is resolved.").into())
            }
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
