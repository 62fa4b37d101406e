//! A fault-injecting reverse proxy between Switchboard and the real Synapse: it passes every
//! request through, except that message sends (`PUT …/send/…`) can be refused (503, not
//! forwarded) or forwarded and then answered 503 as if the answer was lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What the proxy does with message sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SendMode {
    /// Forward.
    Pass = 0,
    /// Answer 503 without forwarding.
    Refuse = 1,
    /// Forward, then answer 503 (the homeserver did post it).
    ForwardThenFail = 2,
}

struct Shared {
    target: String,
    http: reqwest::Client,
    mode: AtomicU8,
    sends_seen: AtomicUsize,
}

/// The running proxy; stops when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy in front of `target` on a free loopback port.
    pub async fn start(target: &str) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            mode: AtomicU8::new(SendMode::Pass as u8),
            sends_seen: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { shared, url, task })
    }

    /// The proxy's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets what happens to message sends from now on.
    pub fn set_send_mode(&self, mode: SendMode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Message sends seen so far (whatever was done with them).
    pub fn sends_seen(&self) -> usize {
        self.shared.sends_seen.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let is_send =
        request.method() == axum::http::Method::PUT && request.uri().path().contains("/send/");
    let mode = shared.mode.load(Ordering::SeqCst);
    if is_send {
        shared.sends_seen.fetch_add(1, Ordering::SeqCst);
        if mode == SendMode::Refuse as u8 {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"errcode":"M_UNKNOWN","error":"injected"}"#,
            )
                .into_response();
        }
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, 64 * 1024 * 1024).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let url = format!(
        "{}{}",
        shared.target,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut outgoing = shared.http.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(answer) = outgoing.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if is_send && mode == SendMode::ForwardThenFail as u8 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"errcode":"M_UNKNOWN","error":"injected after forwarding"}"#,
        )
            .into_response();
    }
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != axum::http::header::TRANSFER_ENCODING
            && name != axum::http::header::CONTENT_LENGTH
        {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
