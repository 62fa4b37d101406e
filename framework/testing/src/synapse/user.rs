//! A deliberately tiny Matrix Client-Server API client for tests.
//!
//! It speaks plain JSON (`serde_json::Value`) over reqwest, so tests exercise
//! the wire format rather than a second Matrix library. Every error names the
//! request, the HTTP status and the response body.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Per-request timeout, so that no single call can hang a test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Page size used when a helper walks a whole room timeline.
const PAGE_SIZE: u32 = 100;
/// Upper bound on pages walked by [`MatrixUser::count_events`] (keeps it bounded).
const MAX_PAGES: usize = 1000;

/// Builds the HTTP client used by the fixtures: no proxy (everything is on
/// loopback) and a per-request timeout.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the reqwest client")
}

/// Percent-encodes one URL path segment or query value (everything except
/// the RFC 3986 unreserved characters), so `!room:localhost` is safe in a path.
#[must_use]
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A logged-in Matrix user (or an appservice token) on a test homeserver.
#[derive(Clone)]
pub struct MatrixUser {
    /// The full user ID, e.g. `@alice:localhost`.
    pub user_id: String,
    /// The access token sent as `Authorization: Bearer`.
    pub access_token: String,
    base_url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for MatrixUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixUser")
            .field("user_id", &self.user_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl MatrixUser {
    /// A client for `user_id` authenticated with `access_token` against the
    /// homeserver at `base_url` (e.g. `http://127.0.0.1:8008`). Also usable
    /// with an appservice's `as_token`.
    pub fn new(
        base_url: impl Into<String>,
        user_id: impl Into<String>,
        access_token: impl Into<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            user_id: user_id.into(),
            access_token: access_token.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http: http_client()?,
        })
    }

    /// The homeserver's base URL, without a trailing slash.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends an authenticated request. `path_and_query` starts with `/` and
    /// must already be encoded (see [`encode`]). Non-2xx answers are errors
    /// carrying the status and body; the JSON body is returned otherwise.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path_and_query}", self.base_url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.access_token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let what = format!("{method} {path_and_query} as {}", self.user_id);
        json_response(req, &what).await
    }

    /// `GET` under `/_matrix/client/v3` (`path` starts with `/`, already encoded).
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3{path}"),
            None,
        )
        .await
    }

    /// `POST` under `/_matrix/client/v3` (`path` starts with `/`, already encoded).
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3{path}"),
            Some(body),
        )
        .await
    }

    /// `PUT` under `/_matrix/client/v3` (`path` starts with `/`, already encoded).
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3{path}"),
            Some(body),
        )
        .await
    }

    /// Uploads a file to the media repository and returns its `mxc://` URI.
    pub async fn upload(
        &self,
        data: Vec<u8>,
        content_type: &str,
        filename: &str,
    ) -> anyhow::Result<String> {
        let url = format!(
            "{}/_matrix/media/v3/upload?filename={}",
            self.base_url,
            encode(filename)
        );
        let req = self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(data);
        let resp = json_response(req, &format!("upload as {}", self.user_id)).await?;
        string_field(&resp, "content_uri", "/upload")
    }

    /// Downloads an `mxc://` URI through the authenticated media endpoint.
    pub async fn download(&self, mxc: &str) -> anyhow::Result<Vec<u8>> {
        let path = mxc
            .strip_prefix("mxc://")
            .ok_or_else(|| anyhow::anyhow!("{mxc} is not an mxc:// URI"))?;
        let url = format!("{}/_matrix/client/v1/media/download/{path}", self.base_url);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.access_token)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "download {mxc}: {}",
            resp.status()
        );
        Ok(resp.bytes().await?.to_vec())
    }

    /// Creates a room (`body` is the `/createRoom` request) and returns its ID.
    pub async fn create_room(&self, body: Value) -> anyhow::Result<String> {
        let resp = self.post("/createRoom", &body).await?;
        string_field(&resp, "room_id", "/createRoom")
    }

    /// Invites `user_id` into `room_id`.
    pub async fn invite(&self, room_id: &str, user_id: &str) -> anyhow::Result<()> {
        self.post(
            &format!("/rooms/{}/invite", encode(room_id)),
            &json!({ "user_id": user_id }),
        )
        .await?;
        Ok(())
    }

    /// Joins a room by ID or alias and returns the room ID.
    pub async fn join(&self, room_id_or_alias: &str) -> anyhow::Result<String> {
        let resp = self
            .post(&format!("/join/{}", encode(room_id_or_alias)), &json!({}))
            .await?;
        string_field(&resp, "room_id", "/join")
    }

    /// Waits up to `timeout` for an invite (the first one, if several) and joins that room;
    /// returns its ID.
    pub async fn join_invite(&self, timeout: Duration) -> anyhow::Result<String> {
        let room = crate::process::wait_until(timeout, "an invite", || async {
            let sync = self.get("/sync?timeout=0").await.ok()?;
            sync["rooms"]["invite"]
                .as_object()
                .and_then(|rooms| rooms.keys().next().cloned())
        })
        .await?;
        self.join(&room).await
    }

    /// Leaves a room.
    pub async fn leave(&self, room_id: &str) -> anyhow::Result<()> {
        self.post(&format!("/rooms/{}/leave", encode(room_id)), &json!({}))
            .await?;
        Ok(())
    }

    /// Sends an event of `event_type` with `content` (random transaction ID)
    /// and returns its event ID.
    pub async fn send_event(
        &self,
        room_id: &str,
        event_type: &str,
        content: &Value,
    ) -> anyhow::Result<String> {
        let txn = format!("t{:032x}", rand::random::<u128>());
        let resp = self
            .put(
                &format!(
                    "/rooms/{}/send/{}/{txn}",
                    encode(room_id),
                    encode(event_type)
                ),
                content,
            )
            .await?;
        string_field(&resp, "event_id", "/send")
    }

    /// Sends an `m.text` message and returns its event ID.
    pub async fn send_text(&self, room_id: &str, body: &str) -> anyhow::Result<String> {
        self.send_event(
            room_id,
            "m.room.message",
            &json!({ "msgtype": "m.text", "body": body }),
        )
        .await
    }

    /// One page of `/messages` backwards from `from` (or from the newest
    /// event): the events, newest first, and the token for the next page.
    pub async fn messages_page(
        &self,
        room_id: &str,
        from: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<(Vec<Value>, Option<String>)> {
        let mut path = format!("/rooms/{}/messages?dir=b&limit={limit}", encode(room_id));
        if let Some(from) = from {
            let _ = write!(path, "&from={}", encode(from));
        }
        let mut resp = self.get(&path).await?;
        let chunk = match resp.get_mut("chunk").map(Value::take) {
            Some(Value::Array(events)) => events,
            Some(other) => bail!("/messages: `chunk` is not an array: {other}"),
            None => Vec::new(),
        };
        let end = resp.get("end").and_then(Value::as_str).map(str::to_owned);
        Ok((chunk, end))
    }

    /// The newest `limit` events of the room timeline, newest first.
    pub async fn messages(&self, room_id: &str, limit: u32) -> anyhow::Result<Vec<Value>> {
        Ok(self.messages_page(room_id, None, limit).await?.0)
    }

    /// The user IDs of the room's joined members.
    pub async fn joined_members(&self, room_id: &str) -> anyhow::Result<Vec<String>> {
        let resp = self
            .get(&format!("/rooms/{}/joined_members", encode(room_id)))
            .await?;
        let joined = resp
            .get("joined")
            .and_then(Value::as_object)
            .with_context(|| format!("/joined_members: no `joined` object in {resp}"))?;
        let mut members: Vec<String> = joined.keys().cloned().collect();
        members.sort();
        Ok(members)
    }

    /// Polls the newest 100 timeline events until one matches `pred`, and
    /// returns it. Fails after `timeout` with the last error, if any.
    pub async fn wait_for_event(
        &self,
        room_id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let last_error_slot = std::sync::Mutex::new(None::<String>);
        let last_error = &last_error_slot;
        let pred = &pred;
        let found = crate::process::wait_until(timeout, "a matching event", move || async move {
            match self.messages(room_id, PAGE_SIZE).await {
                Ok(events) => events.into_iter().find(|e| pred(e)),
                Err(e) => {
                    if let Ok(mut slot) = last_error.lock() {
                        *slot = Some(format!("{e:#}"));
                    }
                    None
                }
            }
        })
        .await;
        found.with_context(|| {
            let last = last_error_slot.lock().ok().and_then(|slot| slot.clone());
            match last {
                Some(err) => format!("in room {room_id} as {} (last error: {err})", self.user_id),
                None => format!("in room {room_id} as {}", self.user_id),
            }
        })
    }

    /// Counts the events in the whole room timeline (all pages) that match `pred`.
    pub async fn count_events(
        &self,
        room_id: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<usize> {
        let mut count = 0;
        let mut from: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (events, end) = self
                .messages_page(room_id, from.as_deref(), PAGE_SIZE)
                .await?;
            count += events.iter().filter(|e| pred(e)).count();
            match end {
                Some(end) if !events.is_empty() => from = Some(end),
                _ => return Ok(count),
            }
        }
        bail!(
            "room {room_id} has more than {} events",
            MAX_PAGES * PAGE_SIZE as usize
        )
    }
}

/// `m.room.message` events whose `content.body` equals `body`: a common predicate.
#[must_use]
pub fn is_text(event: &Value, body: &str) -> bool {
    event.get("type").and_then(Value::as_str) == Some("m.room.message")
        && event.pointer("/content/body").and_then(Value::as_str) == Some(body)
}

fn string_field(resp: &Value, field: &str, what: &str) -> anyhow::Result<String> {
    resp.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{what}: no string `{field}` in {resp}"))
}

/// Sends `request` and returns its JSON body (`null` when empty); a non-2xx answer is an error
/// naming `what`, the status and the body.
pub async fn json_response(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let resp = request
        .send()
        .await
        .with_context(|| format!("{what}: request failed"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("{what}: reading the response body (HTTP {status})"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {text}");
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .with_context(|| format!("{what}: HTTP {status} but the body is not JSON: {text}"))
}
