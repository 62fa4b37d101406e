//! Tests of the homeserver transport against servers of their own: keep-alive
//! reuse, servers that close connections, retries, the body limit, connection and TLS errors and
//! URL validation. Every test runs its own server on 127.0.0.1, port 0.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_testing::TestCertificates;

use super::{FullResponse, Transport, TransportError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// How long any single `send` may take before the test calls it a hang.
const SEND_LIMIT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The transport's body limit (16 MiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A test server: its port and how many TCP connections it accepted.
struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Runs a hyper HTTP/1.1 server answering every request (body collected) with `handler`.
async fn http_server<F>(handler: F) -> Server
where
    F: Fn(Request<Bytes>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    raw_server(move |_, stream| serve_http(stream, Arc::clone(&handler))).await
}

/// Serves HTTP/1.1 with `handler` on one accepted stream (plain or TLS).
async fn serve_http<S, F>(stream: S, handler: Arc<F>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Bytes>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let handler = Arc::clone(&handler);
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(handler(Request::from_parts(parts, body)))
        }
    });
    // The client may drop the connection at any time; that is not the server's failure.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Runs a server handing each accepted connection (numbered from 0) to `handler`.
async fn raw_server<F, Fut>(handler: F) -> Server
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a test server");
    let port = listener.local_addr().expect("the server's address").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let index = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handler(index, stream));
        }
    });
    Server { port, connections }
}

/// Reads one request head (up to the blank line) from a raw connection; `None` at end of
/// stream before a whole head arrived. The client sends bodiless requests one at a time, so
/// no byte of a following request is ever read here.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A keep-alive `200 OK` answer with `body` (the server says nothing about closing).
fn keep_alive_answer(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn transport(url: &str) -> Arc<Transport> {
    Transport::new(url, Vec::new(), CONNECT_TIMEOUT).expect("a valid homeserver URL")
}

fn get(path_and_query: &str) -> Request<Bytes> {
    Request::get(path_and_query)
        .body(Bytes::new())
        .expect("a valid request")
}

/// Sends `request`, failing the test if no result comes within [`SEND_LIMIT`].
async fn send(
    transport: &Transport,
    request: Request<Bytes>,
) -> Result<FullResponse, TransportError> {
    tokio::time::timeout(SEND_LIMIT, transport.send(request))
        .await
        .expect("send returned within the time limit (it hung)")
}

/// What the test server saw of one request.
struct Seen {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

#[tokio::test]
async fn sequential_requests_reuse_one_keep_alive_connection_and_carry_host_user_agent_path_and_answer()
 {
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let server = http_server(move |request: Request<Bytes>| {
        let (parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default();
        let answer = format!("answer to {path_and_query} with {} bytes", body.len());
        let _ = seen_tx.send(Seen {
            method: parts.method,
            path_and_query,
            headers: parts.headers,
            body,
        });
        Response::builder()
            .status(StatusCode::ACCEPTED)
            .header("x-answer", "yes")
            .body(Full::new(Bytes::from(answer)))
            .expect("a valid response")
    })
    .await;
    let transport = transport(&server.url());

    for i in 0..20 {
        let path = format!("/_matrix/client/v3/rooms/%21r{i}%3Aexample/send?txn=t{i}&ts=1");
        let payload = format!("{{\"n\":{i}}}");
        let request = Request::put(path.as_str())
            .body(Bytes::from(payload.clone()))
            .expect("a valid request");
        let response = send(&transport, request).await.expect("an answer");

        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            response
                .headers()
                .get("x-answer")
                .map(http::HeaderValue::as_bytes),
            Some(&b"yes"[..])
        );
        assert_eq!(
            response.body(),
            &Bytes::from(format!("answer to {path} with {} bytes", payload.len()))
        );

        let seen = seen_rx.recv().await.expect("the server saw the request");
        assert_eq!(seen.method, Method::PUT);
        assert_eq!(seen.path_and_query, path);
        assert_eq!(seen.body, Bytes::from(payload));
        let host = seen.headers.get(http::header::HOST).expect("a Host header");
        assert_eq!(
            host.as_bytes(),
            format!("127.0.0.1:{}", server.port).as_bytes()
        );
        let user_agent = seen
            .headers
            .get(http::header::USER_AGENT)
            .expect("a User-Agent header")
            .to_str()
            .expect("an ASCII User-Agent");
        assert!(
            user_agent.starts_with("switchboard/"),
            "User-Agent {user_agent:?}"
        );
    }
    assert_eq!(server.connections(), 1, "all requests on one connection");
}

#[tokio::test]
async fn server_answering_with_connection_close_every_time_still_answers_every_request() {
    let server = raw_server(|index, mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let body = format!("reply on connection {index}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    })
    .await;
    every_request_is_answered_on_a_fresh_connection(&server).await;
}

/// Five requests in a row are each answered, each on its own connection.
async fn every_request_is_answered_on_a_fresh_connection(server: &Server) {
    let transport = transport(&server.url());
    for i in 0..5 {
        let response = send(&transport, get("/ping")).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.body(),
            &Bytes::from(format!("reply on connection {i}"))
        );
    }
    assert_eq!(server.connections(), 5, "one fresh connection per request");
}

#[tokio::test]
async fn server_closing_the_socket_right_after_a_keep_alive_answer_still_answers_every_request() {
    let server = raw_server(|index, mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(keep_alive_answer(&format!("reply on connection {index}")).as_bytes())
                .await;
            // Closes without having said so: the client believed it could keep the connection.
        }
    })
    .await;
    every_request_is_answered_on_a_fresh_connection(&server).await;
}

#[tokio::test]
async fn idle_keep_alive_connection_closed_by_the_server_is_replaced_by_a_fresh_one() {
    // The test tells the server when to close the first connection and learns when it did.
    let (close_tx, close_rx) = oneshot::channel::<()>();
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    let hooks = Arc::new(std::sync::Mutex::new(Some((close_rx, closed_tx))));
    let server = raw_server(move |index, mut stream| {
        let hooks = hooks.lock().expect("hooks lock").take();
        async move {
            let Some(_) = read_head(&mut stream).await else {
                return;
            };
            let answer = keep_alive_answer(&format!("reply on connection {index}"));
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            if let Some((close_rx, closed_tx)) = hooks {
                let _ = close_rx.await;
                drop(stream);
                let _ = closed_tx.send(());
            } else {
                // Later connections stay open for more requests.
                while read_head(&mut stream).await.is_some() {
                    let answer = keep_alive_answer(&format!("reply on connection {index}"));
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let transport = transport(&server.url());

    let first = send(&transport, get("/first")).await.expect("an answer");
    assert_eq!(first.body(), &Bytes::from("reply on connection 0"));
    close_tx.send(()).expect("the server waits to close");
    closed_rx.await.expect("the server closed the connection");
    // Let the FIN reach the client's socket.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let second = send(&transport, get("/second")).await.expect("an answer");
    assert_eq!(second.body(), &Bytes::from("reply on connection 1"));
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn reused_connection_failing_before_any_answer_is_retried_once_on_a_fresh_connection() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let server = raw_server(move |index, mut stream| {
        let counter = Arc::clone(&counter);
        async move {
            // Connection 0 answers one request, then reads the next and closes without answer.
            let mut answered = 0;
            while read_head(&mut stream).await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
                if index == 0 && answered == 1 {
                    return;
                }
                let answer = keep_alive_answer(&format!("reply on connection {index}"));
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                answered += 1;
            }
        }
    })
    .await;
    let transport = transport(&server.url());

    let first = send(&transport, get("/first")).await.expect("an answer");
    assert_eq!(first.body(), &Bytes::from("reply on connection 0"));
    let second = send(&transport, get("/second")).await.expect("an answer");
    assert_eq!(second.body(), &Bytes::from("reply on connection 1"));
    assert_eq!(server.connections(), 2);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "the second request sent twice"
    );
}

#[tokio::test]
async fn reused_connection_failing_in_the_middle_of_an_answer_is_not_retried() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let server = raw_server(move |_, mut stream| {
        let counter = Arc::clone(&counter);
        async move {
            let mut answered = 0;
            while read_head(&mut stream).await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = if answered == 0 {
                    keep_alive_answer("complete")
                } else {
                    // A head promising 100 bytes, 9 of them, then the connection closes.
                    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ntruncated".to_owned()
                };
                if stream.write_all(answer.as_bytes()).await.is_err() || answered == 1 {
                    return;
                }
                answered += 1;
            }
        }
    })
    .await;
    let transport = transport(&server.url());

    let first = send(&transport, get("/first")).await.expect("an answer");
    assert_eq!(first.body(), &Bytes::from("complete"));
    let error = send(&transport, get("/second"))
        .await
        .expect_err("a truncated answer is an error");
    assert!(
        matches!(error, TransportError::Http(_)),
        "unexpected error {error:?}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "no retry after an answer started"
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn fresh_connection_closed_without_an_answer_is_an_error_without_retry() {
    let server = raw_server(|_, mut stream| async move {
        let _ = read_head(&mut stream).await;
        // Closes without answering.
    })
    .await;
    let transport = transport(&server.url());

    let error = send(&transport, get("/nothing"))
        .await
        .expect_err("no answer is an error");
    assert!(
        matches!(error, TransportError::Http(_)),
        "unexpected error {error:?}"
    );
    assert_eq!(server.connections(), 1, "a fresh connection is not retried");
}

#[tokio::test]
async fn answer_body_larger_than_16_mib_is_too_large() {
    let server = http_server(|request: Request<Bytes>| {
        let size = if request.uri().path() == "/limit" {
            MAX_BODY
        } else {
            MAX_BODY + 1
        };
        Response::new(Full::new(Bytes::from(vec![b'x'; size])))
    })
    .await;
    let transport = transport(&server.url());

    let at_limit = send(&transport, get("/limit"))
        .await
        .expect("an answer of exactly the limit");
    assert_eq!(at_limit.body().len(), MAX_BODY);

    let error = send(&transport, get("/over"))
        .await
        .expect_err("an answer over the limit is refused");
    assert!(
        matches!(error, TransportError::TooLarge),
        "unexpected error {error:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_naming_host_and_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let port = listener.local_addr().expect("the address").port();
    drop(listener);
    let transport = transport(&format!("http://127.0.0.1:{port}/ignored/path"));

    let error = send(&transport, get("/x"))
        .await
        .expect_err("nothing listens");
    let expected = format!("127.0.0.1:{port}");
    match &error {
        TransportError::Connect { origin, .. } => assert_eq!(origin, &expected),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(
        error.to_string().contains(&expected),
        "message {error} names {expected}"
    );
}

/// Makes a throwaway CA and a certificate for `localhost` and 127.0.0.1 it signed, in `dir`:
/// returns the CA certificate and the server's certificate and key.
fn make_certificates(
    dir: &Path,
) -> (
    CertificateDer<'static>,
    CertificateDer<'static>,
    PrivateKeyDer<'static>,
) {
    let files = TestCertificates::issue(dir).expect("certificates");
    let mut roots = crate::tls::load_pem_certificates(&files.ca).expect("the CA file");
    assert_eq!(roots.len(), 1);
    let ca = roots.remove(0);
    let cert = CertificateDer::from_pem_file(&files.server_cert).expect("the server certificate");
    let key = PrivateKeyDer::from_pem_file(&files.server_key).expect("the server key");
    (ca, cert, key)
}

/// Runs an HTTPS server with `cert` and `key` answering `secret answer`.
async fn tls_server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Server {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("a usable certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let handler =
        Arc::new(|_: Request<Bytes>| Response::new(Full::new(Bytes::from("secret answer"))));
    raw_server(move |_, stream| {
        let acceptor = acceptor.clone();
        let handler = Arc::clone(&handler);
        async move {
            // A client refusing the certificate fails the handshake: nothing to serve then.
            if let Ok(stream) = acceptor.accept(stream).await {
                serve_http(stream, handler).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn https_with_the_ca_in_extra_roots_is_answered_and_without_it_is_a_tls_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ca, cert, key) = make_certificates(dir.path());
    let server = tls_server(cert, key).await;
    let url = format!("https://localhost:{}", server.port);

    let trusting = Transport::new(&url, vec![ca], CONNECT_TIMEOUT).expect("a valid URL");
    let response = send(&trusting, get("/secure"))
        .await
        .expect("an answer over TLS");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), &Bytes::from("secret answer"));

    let distrusting = Transport::new(&url, Vec::new(), CONNECT_TIMEOUT).expect("a valid URL");
    let error = send(&distrusting, get("/secure"))
        .await
        .expect_err("an untrusted certificate is refused");
    match &error {
        TransportError::Tls { origin, message } => {
            assert_eq!(origin, &format!("localhost:{}", server.port));
            assert!(
                message.to_lowercase().contains("certificate"),
                "message {message:?} mentions the certificate"
            );
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert_eq!(server.connections(), 2);
}

#[test]
fn invalid_homeserver_urls_are_refused() {
    for url in [
        "ftp://x",
        "not a url",
        "http://",
        "http://:8448/",
        "https://",
    ] {
        match Transport::new(url, Vec::new(), CONNECT_TIMEOUT) {
            Err(TransportError::InvalidUrl { url: given, .. }) => assert_eq!(given, url),
            other => panic!("{url:?}: expected InvalidUrl, got {other:?}"),
        }
    }
}
