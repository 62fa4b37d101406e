//! The HTTP/1.1 transport to the homeserver: keep-alive connections to one origin, each used
//! by one request at a time, directly from the task that sends.
//!
//! General-purpose clients (reqwest, hyper's client connections) run a connection state machine
//! behind channels and task hand-offs and cost several times more CPU per small request than
//! the request itself; for an appservice that sends one small request per event that was most
//! of its cost. Here a request is one write and, usually, one read ([`codec`]).
//!
//! Every request Switchboard sends is idempotent (transaction ids on sends, `PUT` for state and
//! profiles; joins and registrations may be repeated), so a request that fails on a reused
//! keep-alive connection before any answer arrived is sent once more on a fresh connection.

mod codec;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, header};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use self::codec::ReadError;

/// Idle connections older than this are closed instead of reused (servers and proxies close
/// idle keep-alive connections after 60–75 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept at most.
const MAX_IDLE: usize = 64;
/// Largest response body read (Client-Server API answers are small JSON documents).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The homeserver URL cannot be used.
    #[error("invalid homeserver URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No TCP connection could be made.
    #[error("cannot connect to {origin}: {message}")]
    Connect {
        /// `host:port`.
        origin: String,
        /// The cause.
        message: String,
    },
    /// The TLS handshake failed (certificate not trusted, wrong host name, …).
    #[error(
        "TLS handshake with {origin} failed: {message} (if the homeserver's certificate comes \
         from a private CA, set client.tls_ca_file to that CA's PEM file)"
    )]
    Tls {
        /// `host:port`.
        origin: String,
        /// The cause.
        message: String,
    },
    /// The connection failed while the request was sent or the answer read.
    #[error("{0}")]
    Http(String),
    /// The answer's body is larger than the limit.
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
}

impl TransportError {
    /// Whether the request may have reached the server: `false` only when no connection was
    /// made (or the URL was unusable).
    pub(crate) fn may_have_been_sent(&self) -> bool {
        matches!(self, Self::Http(_) | Self::TooLarge)
    }
}

/// Where requests go: scheme, host and port of the homeserver URL.
struct Origin {
    host: String,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// A stream to the server, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One keep-alive connection.
struct Connection {
    stream: Box<dyn Stream>,
    /// Bytes read and not yet used (reused between answers).
    buffer: BytesMut,
    idle_since: Instant,
}

impl Connection {
    /// Whether an idle connection can carry another request: young enough, and the server
    /// has neither closed it nor sent anything unasked (checked without waiting).
    fn reusable(&mut self) -> bool {
        if self.idle_since.elapsed() >= IDLE_TIMEOUT || !self.buffer.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }
}

/// An HTTP/1.1 client for one origin.
pub struct Transport {
    origin: Origin,
    user_agent: HeaderValue,
    connect_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("host", &self.origin.host)
            .field("port", &self.origin.port)
            .field("tls", &self.origin.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A response with its whole body.
pub type FullResponse = Response<Bytes>;

impl Transport {
    /// A client for the origin of `base_url` (`http://` or `https://`; any path is ignored).
    /// For `https`, the platform's trusted roots are used plus `extra_roots` (PEM files' DER
    /// certificates).
    pub fn new(
        base_url: &str,
        extra_roots: Vec<CertificateDer<'static>>,
        connect_timeout: Duration,
    ) -> Result<Arc<Self>, TransportError> {
        let invalid = |reason| TransportError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let url = url::Url::parse(base_url).map_err(|_| invalid("not a URL"))?;
        let secure = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let host = url
            .host_str()
            .ok_or_else(|| invalid("it has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("it has no port"))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let authority =
            HeaderValue::from_str(&authority).map_err(|_| invalid("the host is not valid"))?;
        let tls = if secure {
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = ServerName::try_from(name.to_owned())
                .map_err(|_| invalid("the host is not a valid TLS server name"))?;
            Some((tls_connector(extra_roots, base_url)?, server_name))
        } else {
            None
        };
        Ok(Arc::new(Self {
            origin: Origin {
                host,
                port,
                authority,
                tls,
            },
            user_agent: HeaderValue::from_static(concat!(
                "switchboard/",
                env!("CARGO_PKG_VERSION")
            )),
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// Sends `request` (its URI is the path and query; `Host` and `User-Agent` are added) and
    /// reads the whole answer.
    pub async fn send(&self, request: Request<Bytes>) -> Result<FullResponse, TransportError> {
        let (parts, body) = request.into_parts();
        let wire = self.encode(parts, &body);
        loop {
            let (mut connection, reused) = self.connection().await?;
            match exchange(&mut connection, &wire).await {
                Ok(answer) => {
                    if answer.keep_alive {
                        self.checkin(connection);
                    }
                    return Ok(answer.response);
                }
                // The server closed an idle connection as we used it: nothing was answered.
                Err(Failure::BeforeAnswer(_)) if reused => {}
                Err(Failure::BeforeAnswer(e) | Failure::Answer(e)) => return Err(e),
            }
        }
    }

    /// Sends a request without a body (a media download) and hands the answer's body to
    /// `sink` as it arrives; the answer's status and headers.
    pub async fn send_streamed(
        &self,
        request: Request<Bytes>,
        sink: &mut crate::file::Spill,
    ) -> Result<(http::StatusCode, http::HeaderMap), TransportError> {
        let (parts, body) = request.into_parts();
        let wire = self.encode(parts, &body);
        loop {
            let (mut connection, reused) = self.connection().await?;
            match send_wire(&mut connection, &wire).await {
                Err(Failure::BeforeAnswer(_)) if reused => continue,
                Err(Failure::BeforeAnswer(e) | Failure::Answer(e)) => return Err(e),
                Ok(()) => {}
            }
            let streamed =
                codec::stream_response(&mut connection.stream, &mut connection.buffer, sink).await;
            return match streamed {
                Ok((status, headers, keep_alive)) => {
                    if keep_alive {
                        self.checkin(connection);
                    }
                    Ok((status, headers))
                }
                Err(ReadError::ClosedBeforeAnswer) if reused => continue,
                Err(e) => Err(read_failure(e)),
            };
        }
    }

    /// Sends `parts` with `body` read from a file as it goes out (an upload), and reads the
    /// whole (small) answer.
    pub async fn send_file(
        &self,
        parts: http::request::Parts,
        body: &crate::file::FileData,
    ) -> Result<FullResponse, TransportError> {
        let mut head = Vec::with_capacity(512);
        let parts = self.with_default_headers(parts);
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        codec::encode_head(&mut head, &parts.method, target, &parts.headers, body.len());
        let io_error = |e: std::io::Error| TransportError::Http(e.to_string());
        loop {
            let (mut connection, reused) = self.connection().await?;
            let mut reader = body.reader().await.map_err(io_error)?;
            let sent = async {
                connection.stream.write_all(&head).await?;
                tokio::io::copy(&mut reader, &mut connection.stream).await?;
                connection.stream.flush().await
            }
            .await;
            if let Err(e) = sent {
                if reused {
                    continue;
                }
                return Err(io_error(e));
            }
            match codec::read_response(&mut connection.stream, &mut connection.buffer, MAX_BODY)
                .await
            {
                Ok(answer) => {
                    if answer.keep_alive {
                        self.checkin(connection);
                    }
                    return Ok(answer.response);
                }
                Err(e) => return Err(read_failure(e)),
            }
        }
    }

    /// The request's head on the wire, `Host` and `User-Agent` added, and its body.
    fn encode(&self, parts: http::request::Parts, body: &[u8]) -> Vec<u8> {
        let parts = self.with_default_headers(parts);
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        codec::encode_request(&parts.method, target, &parts.headers, body)
    }

    fn with_default_headers(&self, mut parts: http::request::Parts) -> http::request::Parts {
        parts
            .headers
            .insert(header::HOST, self.origin.authority.clone());
        parts
            .headers
            .insert(header::USER_AGENT, self.user_agent.clone());
        parts
    }

    /// An idle connection (`true`: reused), else a new one.
    async fn connection(&self) -> Result<(Connection, bool), TransportError> {
        Ok(match self.checkout() {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        })
    }

    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut connection) = idle.pop() {
            if connection.reusable() {
                return Some(connection);
            }
        }
        None
    }

    fn checkin(&self, mut connection: Connection) {
        connection.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(connection);
        }
    }

    async fn connect(&self) -> Result<Connection, TransportError> {
        let origin = format!("{}:{}", self.origin.host, self.origin.port);
        let connect_error = |message: String| TransportError::Connect {
            origin: origin.clone(),
            message,
        };
        let host = self
            .origin
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host, self.origin.port)),
        )
        .await
        .map_err(|_| connect_error(format!("no answer within {:?}", self.connect_timeout)))?
        .map_err(|e| connect_error(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| connect_error(e.to_string()))?;
        let stream: Box<dyn Stream> = match &self.origin.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| TransportError::Tls {
                        origin: origin.clone(),
                        message: format!("no answer within {:?}", self.connect_timeout),
                    })?
                    .map_err(|e| TransportError::Tls {
                        origin: origin.clone(),
                        message: e.to_string(),
                    })?,
            ),
        };
        Ok(Connection {
            stream,
            buffer: BytesMut::with_capacity(8192),
            idle_since: Instant::now(),
        })
    }
}

/// How an exchange failed.
enum Failure {
    /// No part of an answer arrived (the request may or may not have been written).
    BeforeAnswer(TransportError),
    /// The answer started but could not be read.
    Answer(TransportError),
}

/// Writes one request (already encoded) on `connection`.
async fn send_wire(connection: &mut Connection, wire: &[u8]) -> Result<(), Failure> {
    let io_error = |e: std::io::Error| TransportError::Http(e.to_string());
    connection
        .stream
        .write_all(wire)
        .await
        .map_err(|e| Failure::BeforeAnswer(io_error(e)))?;
    connection
        .stream
        .flush()
        .await
        .map_err(|e| Failure::BeforeAnswer(io_error(e)))
}

/// Sends one request (already encoded) on `connection` and reads the whole answer.
async fn exchange(connection: &mut Connection, wire: &[u8]) -> Result<codec::Answer, Failure> {
    send_wire(connection, wire).await?;
    codec::read_response(&mut connection.stream, &mut connection.buffer, MAX_BODY)
        .await
        .map_err(|e| match e {
            ReadError::ClosedBeforeAnswer => Failure::BeforeAnswer(read_failure(e)),
            e => Failure::Answer(read_failure(e)),
        })
}

/// A failed read as a transport error.
fn read_failure(error: ReadError) -> TransportError {
    match error {
        ReadError::ClosedBeforeAnswer => {
            TransportError::Http("the server closed the connection without answering".to_owned())
        }
        ReadError::Broken(message) => TransportError::Http(message),
        ReadError::TooLarge => TransportError::TooLarge,
    }
}

impl codec::BodySink for crate::file::Spill {
    async fn put(&mut self, chunk: &[u8]) -> Result<(), ReadError> {
        crate::file::Spill::put(self, chunk)
            .await
            .map_err(|e| match e {
                crate::file::CollectError::TooLarge { .. } => ReadError::TooLarge,
                crate::file::CollectError::Io(e) => {
                    ReadError::Broken(format!("cannot keep the file: {e}"))
                }
            })
    }
}

/// A TLS connector trusting the platform's roots and `extra_roots`, speaking HTTP/1.1.
fn tls_connector(
    extra_roots: Vec<CertificateDer<'static>>,
    base_url: &str,
) -> Result<tokio_rustls::TlsConnector, TransportError> {
    let mut config = crate::tls::tls_client_config(extra_roots, None).map_err(|message| {
        TransportError::Tls {
            origin: base_url.to_owned(),
            message,
        }
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests;
