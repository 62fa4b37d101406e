//! [`MockHomeserver`]: an in-process homeserver for tests that need the Matrix side without a
//! Synapse — the host's logic, a bridge's own tests, fault injection. It keeps rooms, members,
//! state, events (one per transaction id, as a real homeserver) and registered users in
//! memory, answers the client-server requests Switchboard makes as an appservice, and answers
//! the requests a test names with the error it names ([`Fault`]). It checks no token: what it
//! proves is what Switchboard asks for and in which order, not authentication.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A request the mock homeserver received.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `PUT`, `POST`…
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The query string as sent (percent-encoded), empty when there was none.
    pub query: String,
    /// The user asserted with `?user_id=` (an appservice acting for one of its users).
    pub user_id: Option<String>,
    /// The JSON body (`null` when there was none or it was not JSON).
    pub body: Value,
    /// The `Authorization` header, if one was sent.
    pub authorization: Option<String>,
}

/// An event as the mock homeserver stored it.
#[derive(Clone, Debug, PartialEq)]
pub struct MockEvent {
    /// Its id.
    pub event_id: String,
    /// Who sent it.
    pub sender: String,
    /// Its type.
    pub event_type: String,
    /// Its state key, for a state event.
    pub state_key: Option<String>,
    /// Its content.
    pub content: Value,
}

/// Requests the mock answers with an error instead: the next `times` requests with `method`
/// whose path contains `path_part`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// `None`: any method.
    method: Option<Method>,
    path_part: String,
    times: usize,
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
    delay: Duration,
    /// Do what was asked before answering with the fault (a lost answer).
    applied: bool,
}

impl Fault {
    /// The next `PUT` whose path contains `path_part` (e.g. `/send/m.room.message/`) fails
    /// with a 500.
    #[must_use]
    pub fn put(path_part: &str) -> Self {
        Self::on(Method::PUT, path_part)
    }

    /// The next `GET` whose path contains `path_part` (e.g. `/media/download/`) fails with
    /// a 500.
    #[must_use]
    pub fn get(path_part: &str) -> Self {
        Self::on(Method::GET, path_part)
    }

    /// The next `POST` whose path contains `path_part` fails with a 500.
    #[must_use]
    pub fn post(path_part: &str) -> Self {
        Self::on(Method::POST, path_part)
    }

    /// The next request of any method whose path contains `path_part` (`""`: any request)
    /// fails with a 500.
    #[must_use]
    pub fn any(path_part: &str) -> Self {
        Self {
            method: None,
            path_part: path_part.to_owned(),
            times: 1,
            status: 500,
            body: json!({ "errcode": "M_UNKNOWN", "error": "injected by the test" }),
            headers: Vec::new(),
            delay: Duration::ZERO,
            applied: false,
        }
    }

    fn on(method: Method, path_part: &str) -> Self {
        Self {
            method: Some(method),
            ..Self::any(path_part)
        }
    }

    /// Adds a response header (e.g. `retry-after`).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay` (a homeserver that hangs).
    #[must_use]
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Does what the request asks (creates the room, stores the file…) and then answers with
    /// the fault instead of the result: the answer of a request that was carried out is lost.
    #[must_use]
    pub fn after_applying(mut self) -> Self {
        self.applied = true;
        self
    }

    /// Fails that many matching requests instead of one.
    #[must_use]
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// Answers `429 M_LIMIT_EXCEEDED`, asking to retry after `retry_after_ms`.
    #[must_use]
    pub fn rate_limited(mut self, retry_after_ms: u64) -> Self {
        self.status = 429;
        self.body = json!({
            "errcode": "M_LIMIT_EXCEEDED",
            "error": "too many requests",
            "retry_after_ms": retry_after_ms,
        });
        self
    }

    /// Answers `status` with `body` (a 200 makes a slow or odd success).
    #[must_use]
    pub fn answer(mut self, status: u16, body: Value) -> Self {
        self.status = status;
        self.body = body;
        self
    }
}

#[derive(Debug, Default)]
struct Room {
    events: Vec<MockEvent>,
    /// user → `join`, `invite` or `leave`.
    members: BTreeMap<String, String>,
    /// (type, state key) → content.
    state: BTreeMap<(String, String), Value>,
}

#[derive(Debug, Default)]
struct Server {
    /// The server name (the part of ids after `:`).
    name: String,
    /// `m.upload.size` of the media config.
    upload_size: u64,
    /// Media ids reserved for uploads to come.
    reserved: BTreeSet<String>,
    bot: String,
    counter: u64,
    users: BTreeSet<String>,
    rooms: BTreeMap<String, Room>,
    /// Room ids in the order the rooms were created.
    room_order: Vec<String>,
    /// (sender, transaction id) → the event it made.
    transactions: HashMap<(String, String), String>,
    /// media id → (content type, bytes).
    media: HashMap<String, (String, Vec<u8>)>,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
}

/// An in-process homeserver on `127.0.0.1` (see the module documentation). Stopped when
/// dropped.
#[derive(Debug)]
pub struct MockHomeserver {
    server: Arc<Mutex<Server>>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl MockHomeserver {
    /// Starts a homeserver named `server_name` whose appservice bot is `@<bot>:<server_name>`
    /// (it acts when no `user_id` is asserted).
    ///
    /// # Errors
    /// When no local port can be bound.
    pub async fn start(server_name: &str, bot: &str) -> std::io::Result<Self> {
        let bot = format!("@{bot}:{server_name}");
        let server = Arc::new(Mutex::new(Server {
            name: server_name.to_owned(),
            users: BTreeSet::from([bot.clone()]),
            bot,
            upload_size: 50 * 1024 * 1024,
            ..Server::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&server));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("the mock homeserver stopped: {e}");
            }
        });
        Ok(Self { server, url, task })
    }

    /// Its base URL (`http://127.0.0.1:<port>`).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many files its media repository holds.
    #[must_use]
    pub fn media_count(&self) -> usize {
        self.lock().media.len()
    }

    /// Sets the `m.upload.size` its media config announces (50 MiB at start).
    pub fn set_upload_size(&self, bytes: u64) {
        self.lock().upload_size = bytes;
    }

    /// Stores a file as if a user had uploaded it; its `mxc://` URI.
    #[must_use]
    pub fn add_media(&self, data: &[u8], content_type: &str) -> String {
        self.lock().store_media(data.to_vec(), content_type)
    }

    /// A room whose members (joined) are `members`; its id. For tests that send into a room
    /// without creating it through Switchboard.
    #[must_use]
    pub fn add_room(&self, members: &[&str]) -> String {
        let mut server = self.lock();
        let room_id = server.next_id('!');
        server.rooms.insert(room_id.clone(), Room::default());
        server.room_order.push(room_id.clone());
        for member in members {
            server.set_membership_unchecked(&room_id, member, member, "join");
        }
        room_id
    }

    /// Makes the requests `fault` names fail.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Every request received so far, oldest first.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The ids of every room, oldest first by creation.
    #[must_use]
    pub fn rooms(&self) -> Vec<String> {
        self.lock().room_order.clone()
    }

    /// The events of `room_id`, oldest first (none for an unknown room).
    #[must_use]
    pub fn events(&self, room_id: &str) -> Vec<MockEvent> {
        self.lock()
            .rooms
            .get(room_id)
            .map(|room| room.events.clone())
            .unwrap_or_default()
    }

    /// The text messages of `room_id`, oldest first: (sender, body).
    #[must_use]
    pub fn messages(&self, room_id: &str) -> Vec<(String, String)> {
        self.events(room_id)
            .into_iter()
            .filter(|e| e.event_type == "m.room.message")
            .map(|e| {
                let body = e.content["body"].as_str().unwrap_or_default().to_owned();
                (e.sender, body)
            })
            .collect()
    }

    /// The membership of `user_id` in `room_id` (`join`, `invite`, `leave`), if any.
    #[must_use]
    pub fn membership(&self, room_id: &str, user_id: &str) -> Option<String> {
        self.lock()
            .rooms
            .get(room_id)
            .and_then(|room| room.members.get(user_id).cloned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Server> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for MockHomeserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An answer: status and JSON body.
type Answer = (u16, Value);

fn error(status: u16, errcode: &str, message: &str) -> Answer {
    (status, json!({ "errcode": errcode, "error": message }))
}

/// What the mock sends back: JSON, a file, or an injected fault.
enum Reply {
    Json(Answer),
    File(String, Vec<u8>),
    Fault(Fault),
}

async fn answer(
    State(server): State<Arc<Mutex<Server>>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = percent_decode(uri.path());
    let user_id = uri.query().and_then(|query| {
        query.split('&').find_map(|pair| {
            pair.strip_prefix("user_id=")
                .map(percent_decode)
                .filter(|u| !u.is_empty())
        })
    });
    let raw = body;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let reply = {
        let mut server = server.lock().unwrap_or_else(PoisonError::into_inner);
        server.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().unwrap_or_default().to_owned(),
            user_id: user_id.clone(),
            body: body.clone(),
            authorization: headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(ToOwned::to_owned),
        });
        let fault = server.fault_for(&method, &path);
        let reply = if let Some(fault) = fault.as_ref().filter(|f| !f.applied) {
            Reply::Fault(fault.clone())
        } else if path == "/_matrix/media/v1/create" && method == Method::POST {
            let mxc = server.reserve_media();
            Reply::Json((200, json!({ "content_uri": mxc })))
        } else if let Some(target) = path
            .strip_prefix("/_matrix/media/v3/upload/")
            .filter(|_| method == Method::PUT)
        {
            let id = target.split('/').nth(1).unwrap_or_default().to_owned();
            let content_type = headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            Reply::Json(server.fill_media(&id, raw.to_vec(), &content_type))
        } else if path.starts_with("/_matrix/media/") && path.ends_with("/upload") {
            let content_type = uri
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("content_type=")))
                .map_or_else(|| "application/octet-stream".to_owned(), percent_decode);
            let mxc = server.store_media(raw.to_vec(), &content_type);
            Reply::Json((200, json!({ "content_uri": mxc })))
        } else if let Some((_, id)) = path.split_once("/media/download/") {
            let id = id.split('/').nth(1).unwrap_or_default();
            match server.media.get(id) {
                Some((content_type, data)) => Reply::File(content_type.clone(), data.clone()),
                None => Reply::Json(error(404, "M_NOT_FOUND", "no such file")),
            }
        } else {
            let sender = user_id.unwrap_or_else(|| server.bot.clone());
            Reply::Json(server.route(&method, &path, &sender, &body))
        };
        // A fault after applying replaces whatever was answered.
        fault.filter(|f| f.applied).map_or(reply, Reply::Fault)
    };
    match reply {
        Reply::Json((status, json)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(json)).into_response()
        }
        Reply::File(content_type, data) => {
            ([(axum::http::header::CONTENT_TYPE, content_type)], data).into_response()
        }
        Reply::Fault(fault) => {
            tokio::time::sleep(fault.delay).await;
            let status =
                StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, axum::Json(fault.body)).into_response();
            for (name, value) in fault.headers {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::try_from(name),
                    axum::http::HeaderValue::try_from(value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
    }
}

impl Server {
    /// The injected answer for this request, if one matches (and counts it).
    fn fault_for(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let index = self.faults.iter().position(|f| {
            f.method.as_ref().is_none_or(|m| m == method) && path.contains(&f.path_part)
        })?;
        let fault = &mut self.faults[index];
        let answer = fault.clone();
        fault.times = fault.times.saturating_sub(1);
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(answer)
    }

    /// Reserves a media id for an upload to come (`POST /media/v1/create`).
    fn reserve_media(&mut self) -> String {
        self.counter += 1;
        let id = format!("file{}", self.counter);
        self.reserved.insert(id.clone());
        format!("mxc://{}/{id}", self.name)
    }

    /// Uploads to a reserved media id; a second upload to it is refused, as the spec says.
    fn fill_media(&mut self, id: &str, data: Vec<u8>, content_type: &str) -> Answer {
        if self.media.contains_key(id) {
            return error(
                409,
                "M_CANNOT_OVERWRITE_MEDIA",
                "the media is uploaded already",
            );
        }
        if !self.reserved.remove(id) {
            return error(404, "M_NOT_FOUND", "no such reserved media");
        }
        self.media
            .insert(id.to_owned(), (content_type.to_owned(), data));
        (200, json!({}))
    }

    fn store_media(&mut self, data: Vec<u8>, content_type: &str) -> String {
        self.counter += 1;
        let id = format!("file{}", self.counter);
        self.media
            .insert(id.clone(), (content_type.to_owned(), data));
        format!("mxc://{}/{id}", self.name)
    }

    fn next_id(&mut self, sigil: char) -> String {
        self.counter += 1;
        format!("{sigil}{}:{}", self.counter, self.name)
    }

    fn route(&mut self, method: &Method, path: &str, sender: &str, body: &Value) -> Answer {
        if path == "/_matrix/client/versions" {
            return (200, json!({ "versions": ["v1.11", "v1.12"] }));
        }
        if path.ends_with("/media/config") {
            return (200, json!({ "m.upload.size": self.upload_size }));
        }
        let Some(rest) = path.strip_prefix("/_matrix/client/") else {
            return error(404, "M_UNRECOGNIZED", "not a client-server path");
        };
        let segments: Vec<&str> = rest.split('/').skip(1).collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["register"]) => self.register(body),
            ("GET", ["account", "whoami"]) => (200, json!({ "user_id": sender })),
            ("POST", ["appservice", _, "ping"]) => (200, json!({ "duration_ms": 1 })),
            ("POST", ["createRoom"]) => self.create_room(sender, body),
            ("GET", ["joined_rooms"]) => {
                let joined: Vec<&String> = self
                    .room_order
                    .iter()
                    .filter(|room| self.is_joined(room, sender))
                    .collect();
                (200, json!({ "joined_rooms": joined }))
            }
            ("PUT", ["rooms", room, "send", event_type, txn]) => {
                self.send(room, sender, event_type, None, txn, body)
            }
            ("PUT", ["rooms", room, "redact", _, txn]) => {
                self.send(room, sender, "m.room.redaction", None, txn, body)
            }
            ("PUT", ["rooms", room, "state", event_type, key @ ..]) => {
                let key = key.join("/");
                self.set_state(room, sender, event_type, &key, body.clone())
            }
            ("GET", ["rooms", room, "state", event_type, key @ ..]) => {
                let key = (event_type.to_string(), key.join("/"));
                match self.rooms.get(*room).and_then(|r| r.state.get(&key)) {
                    Some(content) => (200, content.clone()),
                    None => error(404, "M_NOT_FOUND", "no such state"),
                }
            }
            ("POST", ["rooms", room, "join"] | ["join", room]) => self.join(room, sender),
            ("POST", ["rooms", room, "invite"]) => {
                let invitee = body["user_id"].as_str().unwrap_or_default().to_owned();
                self.set_membership(room, sender, &invitee, "invite")
            }
            ("POST", ["rooms", room, "leave"]) => {
                self.set_membership(room, sender, sender, "leave")
            }
            ("PUT" | "GET", ["profile", ..])
            | ("PUT", ["rooms", _, "typing", _])
            | ("POST", ["rooms", _, "receipt", ..]) => (200, json!({})),
            _ => error(
                404,
                "M_UNRECOGNIZED",
                "the mock homeserver does not know this",
            ),
        }
    }

    fn register(&mut self, body: &Value) -> Answer {
        let Some(localpart) = body["username"].as_str() else {
            return error(400, "M_MISSING_PARAM", "username is required");
        };
        let user_id = format!("@{localpart}:{}", self.name);
        if !self.users.insert(user_id.clone()) {
            return error(400, "M_USER_IN_USE", "already registered");
        }
        (200, json!({ "user_id": user_id }))
    }

    fn create_room(&mut self, sender: &str, body: &Value) -> Answer {
        let room_id = self.next_id('!');
        self.rooms.insert(room_id.clone(), Room::default());
        self.room_order.push(room_id.clone());
        let preset = body["preset"].as_str().unwrap_or("private_chat");
        let join_rule = if preset == "public_chat" {
            "public"
        } else {
            "invite"
        };
        let mut create = json!({ "creator": sender });
        if let (Some(create), Some(extra)) =
            (create.as_object_mut(), body["creation_content"].as_object())
        {
            create.extend(extra.clone());
        }
        let mut state = vec![
            ("m.room.create".to_owned(), String::new(), create),
            (
                "m.room.join_rules".to_owned(),
                String::new(),
                json!({ "join_rule": join_rule }),
            ),
        ];
        for (field, event_type, key) in [
            ("name", "m.room.name", "name"),
            ("topic", "m.room.topic", "topic"),
        ] {
            if let Some(value) = body[field].as_str() {
                state.push((event_type.to_owned(), String::new(), json!({ key: value })));
            }
        }
        for event in body["initial_state"].as_array().into_iter().flatten() {
            state.push((
                event["type"].as_str().unwrap_or_default().to_owned(),
                event["state_key"].as_str().unwrap_or_default().to_owned(),
                event["content"].clone(),
            ));
        }
        self.set_membership_unchecked(&room_id, sender, sender, "join");
        for (event_type, key, content) in state {
            self.set_state(&room_id, sender, &event_type, &key, content);
        }
        for invitee in body["invite"].as_array().into_iter().flatten() {
            if let Some(invitee) = invitee.as_str() {
                self.set_membership_unchecked(&room_id, sender, invitee, "invite");
            }
        }
        (200, json!({ "room_id": room_id }))
    }

    fn is_joined(&self, room_id: &str, user_id: &str) -> bool {
        self.rooms
            .get(room_id)
            .and_then(|room| room.members.get(user_id))
            .is_some_and(|m| m == "join")
    }

    fn send(
        &mut self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        txn: &str,
        content: &Value,
    ) -> Answer {
        if !self.rooms.contains_key(room_id) {
            return error(404, "M_NOT_FOUND", "unknown room");
        }
        if !self.is_joined(room_id, sender) {
            return error(403, "M_FORBIDDEN", "the sender is not in the room");
        }
        let key = (sender.to_owned(), txn.to_owned());
        if let Some(event_id) = self.transactions.get(&key) {
            return (200, json!({ "event_id": event_id }));
        }
        let event_id = self.push(room_id, sender, event_type, state_key, content.clone());
        self.transactions.insert(key, event_id.clone());
        (200, json!({ "event_id": event_id }))
    }

    fn push(
        &mut self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> String {
        let event_id = self.next_id('$');
        if let Some(room) = self.rooms.get_mut(room_id) {
            if let Some(key) = state_key {
                room.state
                    .insert((event_type.to_owned(), key.to_owned()), content.clone());
            }
            room.events.push(MockEvent {
                event_id: event_id.clone(),
                sender: sender.to_owned(),
                event_type: event_type.to_owned(),
                state_key: state_key.map(ToOwned::to_owned),
                content,
            });
        }
        event_id
    }

    fn set_state(
        &mut self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        key: &str,
        content: Value,
    ) -> Answer {
        if !self.is_joined(room_id, sender) {
            return error(403, "M_FORBIDDEN", "the sender is not in the room");
        }
        let event_id = self.push(room_id, sender, event_type, Some(key), content);
        (200, json!({ "event_id": event_id }))
    }

    fn join(&mut self, room_id: &str, user_id: &str) -> Answer {
        let Some(room) = self.rooms.get(room_id) else {
            return error(404, "M_NOT_FOUND", "unknown room");
        };
        let public = room
            .state
            .get(&("m.room.join_rules".to_owned(), String::new()))
            .is_some_and(|c| c["join_rule"] == "public");
        let invited = room
            .members
            .get(user_id)
            .is_some_and(|m| m == "invite" || m == "join");
        if !public && !invited {
            return error(403, "M_FORBIDDEN", "not invited");
        }
        self.set_membership_unchecked(room_id, user_id, user_id, "join");
        (200, json!({ "room_id": room_id }))
    }

    fn set_membership(
        &mut self,
        room_id: &str,
        sender: &str,
        user_id: &str,
        membership: &str,
    ) -> Answer {
        if !self.rooms.contains_key(room_id) {
            return error(404, "M_NOT_FOUND", "unknown room");
        }
        if membership == "invite" && !self.is_joined(room_id, sender) {
            return error(403, "M_FORBIDDEN", "the inviter is not in the room");
        }
        self.set_membership_unchecked(room_id, sender, user_id, membership);
        (200, json!({}))
    }

    fn set_membership_unchecked(
        &mut self,
        room_id: &str,
        sender: &str,
        user_id: &str,
        membership: &str,
    ) {
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.members
                .insert(user_id.to_owned(), membership.to_owned());
        }
        self.push(
            room_id,
            sender,
            "m.room.member",
            Some(user_id),
            json!({ "membership": membership }),
        );
    }
}

/// `%xx` sequences decoded (paths and query values carry user and room ids).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = decoded {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rooms_are_listed_in_creation_order_past_ten() {
        let hs = MockHomeserver::start("mock.test", "bot")
            .await
            .expect("starts");
        let made: Vec<String> = (0..12).map(|_| hs.add_room(&["@a:mock.test"])).collect();
        assert_eq!(hs.rooms(), made);
    }

    #[test]
    fn a_send_repeated_with_its_transaction_id_makes_one_event() {
        let mut server = Server {
            name: "mock.test".to_owned(),
            ..Server::default()
        };
        let body = json!({ "msgtype": "m.text", "body": "hi" });
        let (_, created) = server.create_room("@a:mock.test", &json!({}));
        let room = created["room_id"].as_str().expect("room id").to_owned();
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1");
        let first = server.route(&Method::PUT, &path, "@a:mock.test", &body);
        let again = server.route(&Method::PUT, &path, "@a:mock.test", &body);
        assert_eq!(first, again);
        let other = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t2");
        let (status, _) = server.route(&Method::PUT, &other, "@b:mock.test", &body);
        assert_eq!(status, 403, "a sender who is not in the room is refused");
        let messages = server.rooms[&room]
            .events
            .iter()
            .filter(|e| e.event_type == "m.room.message")
            .count();
        assert_eq!(messages, 1);
    }

    #[test]
    fn a_fault_answers_as_many_matching_requests_as_it_was_told() {
        let mut server = Server::default();
        server
            .faults
            .push(Fault::put("/send/").rate_limited(5).times(2));
        assert!(
            server.fault_for(&Method::GET, "/x/send/y").is_none(),
            "another method"
        );
        assert!(
            server.fault_for(&Method::PUT, "/x/state/y").is_none(),
            "another path"
        );
        for _ in 0..2 {
            let fault = server
                .fault_for(&Method::PUT, "/x/send/y")
                .expect("matches");
            assert_eq!(fault.status, 429);
            assert_eq!(fault.body["retry_after_ms"], 5);
        }
        assert!(
            server.fault_for(&Method::PUT, "/x/send/y").is_none(),
            "used up"
        );
    }
}
