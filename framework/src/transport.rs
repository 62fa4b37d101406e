//! The HTTP/1.1 transport to the homeserver: keep-alive connections to one origin, each driven
//! by the task that sends on it.
//!
//! A general-purpose client (reqwest, hyper-util's pool) runs every connection as its own task
//! and hands requests and responses to it through channels: several task wake-ups per request,
//! which dominated the cost of an appservice that sends one small request per event. Here the
//! sending task polls the connection itself, so a request costs one write and one read.
//!
//! Every request Switchboard sends is idempotent (transaction ids on sends, `PUT` for state and
//! profiles; joins and registrations may be repeated), so a request that fails on a reused
//! keep-alive connection before any answer arrived is sent once more on a fresh connection,
//! like hyper-util's pool does for requests it never wrote.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

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
    #[error("TLS handshake with {origin} failed: {message}")]
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

type Driver = http1::Connection<TokioIo<Box<dyn Stream>>, Full<Bytes>>;

/// One keep-alive connection: the handle requests are sent through and the connection state
/// machine, polled by whoever sends.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    /// `None` once the state machine finished (the connection was closed by either side).
    driver: Option<Pin<Box<Driver>>>,
    idle_since: Instant,
}

/// The connection closed while `future` still waited on it.
struct Closed;

impl Connection {
    /// Polls the connection's I/O; drops the state machine once it has finished, so that
    /// nothing waits on it any more.
    fn poll_driver(&mut self, cx: &mut std::task::Context<'_>) {
        if let Some(driver) = &mut self.driver
            && driver.as_mut().poll(cx).is_ready()
        {
            self.driver = None;
        }
    }

    /// Runs `future` while driving the connection's I/O; the connection is polled first so
    /// that an answer it reads completes `future` in the same poll.
    async fn drive<F: Future>(&mut self, future: F) -> Result<F::Output, Closed> {
        let mut future = pin!(future);
        poll_fn(|cx| {
            self.poll_driver(cx);
            match future.as_mut().poll(cx) {
                Poll::Ready(output) => Poll::Ready(Ok(output)),
                Poll::Pending if self.driver.is_none() => Poll::Ready(Err(Closed)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    fn reusable(&self) -> bool {
        self.driver.is_some()
            && !self.sender.is_closed()
            && self.idle_since.elapsed() < IDLE_TIMEOUT
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
        let (mut parts, body) = request.into_parts();
        parts
            .headers
            .insert(header::HOST, self.origin.authority.clone());
        parts
            .headers
            .insert(header::USER_AGENT, self.user_agent.clone());
        loop {
            let (mut connection, reused) = match self.checkout() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            let request = Request::from_parts(parts.clone(), Full::new(body.clone()));
            match exchange(&mut connection, request).await {
                Ok(response) => {
                    self.checkin(connection);
                    return Ok(response);
                }
                // The server closed an idle connection as we used it: nothing was answered.
                Err(Failure::BeforeAnswer(_)) if reused => {}
                Err(Failure::BeforeAnswer(e) | Failure::Answer(e)) => return Err(e),
            }
        }
    }

    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(connection) = idle.pop() {
            if connection.reusable() {
                return Some(connection);
            }
        }
        None
    }

    fn checkin(&self, mut connection: Connection) {
        connection.idle_since = Instant::now();
        if !connection.reusable() {
            return;
        }
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
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(Connection {
            sender,
            driver: Some(Box::pin(driver)),
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

/// Sends one request on `connection` and reads the whole answer.
async fn exchange(
    connection: &mut Connection,
    request: Request<Full<Bytes>>,
) -> Result<FullResponse, Failure> {
    let http_error = |e: hyper::Error| TransportError::Http(error_chain(&e));
    let closed = || TransportError::Http("the server closed the connection".to_owned());
    poll_fn(|cx| {
        connection.poll_driver(cx);
        if connection.driver.is_none() {
            return Poll::Ready(Err(Failure::BeforeAnswer(closed())));
        }
        connection
            .sender
            .poll_ready(cx)
            .map_err(|e| Failure::BeforeAnswer(http_error(e)))
    })
    .await?;
    let sending = connection.sender.send_request(request);
    let response = connection
        .drive(sending)
        .await
        .map_err(|Closed| Failure::BeforeAnswer(closed()))?
        .map_err(|e| Failure::BeforeAnswer(http_error(e)))?;
    let (parts, body) = response.into_parts();
    let collected = connection
        .drive(Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|Closed| Failure::Answer(closed()))?
        .map_err(|e| {
            Failure::Answer(if e.is::<http_body_util::LengthLimitError>() {
                TransportError::TooLarge
            } else {
                TransportError::Http(error_chain(e.as_ref()))
            })
        })?;
    Ok(Response::from_parts(parts, collected.to_bytes()))
}

/// A TLS connector trusting the platform's roots and `extra_roots`, speaking HTTP/1.1.
fn tls_connector(
    extra_roots: Vec<CertificateDer<'static>>,
    base_url: &str,
) -> Result<tokio_rustls::TlsConnector, TransportError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots,
        Arc::clone(&provider),
    )
    .map_err(|e| TransportError::Tls {
        origin: base_url.to_owned(),
        message: e.to_string(),
    })?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls {
            origin: base_url.to_owned(),
            message: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The certificates of a PEM file (for [`Transport::new`]'s extra roots); the error says in
/// plain words what is wrong with the file.
pub fn load_pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("it is not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("it holds no certificate".to_owned());
    }
    Ok(certificates)
}

/// `error: cause: cause…`, without repeats.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
