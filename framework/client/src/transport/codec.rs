//! HTTP/1.1 on the wire: a request head and body in one buffer, and a response read from a
//! stream (`Content-Length`, chunked or until close), nothing else. Only what a client of one
//! JSON API needs; no pipelining, no upgrades.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most header lines an answer may have.
const MAX_HEADERS: usize = 64;
/// Largest answer head.
const MAX_HEAD: usize = 64 * 1024;

/// Why an answer could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The stream ended before any byte of an answer (the server closed the connection).
    ClosedBeforeAnswer,
    /// The stream failed or the answer is malformed.
    Broken(String),
    /// The body is longer than the limit.
    TooLarge,
}

/// A complete answer and whether the connection can carry another request.
pub(super) struct Answer {
    pub(super) response: Response<Bytes>,
    pub(super) keep_alive: bool,
}

/// Writes `method target HTTP/1.1`, the headers and `Content-Length`, then the body.
pub(super) fn encode_request(
    method: &http::Method,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    encode_head(&mut out, method, target, headers, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// Writes the request line, the headers and a `Content-Length` of `body_len` (left out for a
/// `GET` or `HEAD` without a body) into `out`; the body is sent after it.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    method: &http::Method,
    target: &str,
    headers: &HeaderMap,
    body_len: u64,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if body_len > 0 || !matches!(*method, http::Method::GET | http::Method::HEAD) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the body of an answer is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// An answer's head: its status and headers, how its body is delimited, and whether the
/// connection may carry another request once the body is read.
struct AnswerHead {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// Reads an answer's head (skipping informational answers such as `100 Continue`).
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
) -> Result<AnswerHead, ReadError> {
    loop {
        let (head_len, status, headers, http10) = loop {
            if let Some(head) = parse_head(buffer)? {
                break head;
            }
            if buffer.len() > MAX_HEAD {
                return Err(ReadError::Broken(
                    "the answer's head is too large".to_owned(),
                ));
            }
            if fill(stream, buffer).await? == 0 {
                return Err(if buffer.is_empty() {
                    ReadError::ClosedBeforeAnswer
                } else {
                    ReadError::Broken("the connection closed in the answer's head".to_owned())
                });
            }
        };
        buffer.advance(head_len);
        if status.is_informational() {
            // 100 Continue, 103 Early Hints: the real answer follows.
            continue;
        }
        let connection_close = header_has_token(&headers, http::header::CONNECTION, "close");
        let keep_alive_token = header_has_token(&headers, http::header::CONNECTION, "keep-alive");
        let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Length(0)
        } else if header_has_token(&headers, http::header::TRANSFER_ENCODING, "chunked") {
            Framing::Chunked
        } else if let Some(length) = headers.get(http::header::CONTENT_LENGTH) {
            let length = length
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ReadError::Broken("the Content-Length is not a number".to_owned())
                })?;
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
        let keep_alive = !matches!(framing, Framing::UntilClose)
            && !connection_close
            && (!http10 || keep_alive_token);
        return Ok(AnswerHead {
            status,
            headers,
            framing,
            keep_alive,
        });
    }
}

/// Reads one answer from `stream`; `buffer` keeps bytes read past it (none, for a server that
/// does not pipeline) and is reused between answers.
pub(super) async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    max_body: usize,
) -> Result<Answer, ReadError> {
    let head = read_head(stream, buffer).await?;
    let body = match head.framing {
        Framing::Length(length) => {
            if length > max_body {
                return Err(ReadError::TooLarge);
            }
            read_exact(stream, buffer, length).await?
        }
        Framing::Chunked => read_chunked(stream, buffer, max_body).await?,
        Framing::UntilClose => read_to_close(stream, buffer, max_body).await?,
    };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    Ok(Answer {
        response,
        keep_alive: head.keep_alive,
    })
}

/// Where a streamed body goes, chunk by chunk.
pub(super) trait BodySink {
    /// Takes the next chunk of the body.
    async fn put(&mut self, chunk: &[u8]) -> Result<(), ReadError>;
}

/// Reads one answer, handing its body to `sink` as it arrives (never more than a read buffer
/// of it in memory); the answer's status and headers, and whether the connection may be
/// reused.
pub(super) async fn stream_response<S: AsyncRead + Unpin, K: BodySink>(
    stream: &mut S,
    buffer: &mut BytesMut,
    sink: &mut K,
) -> Result<(StatusCode, HeaderMap, bool), ReadError> {
    let head = read_head(stream, buffer).await?;
    match head.framing {
        Framing::Length(length) => stream_exact(stream, buffer, length, sink).await?,
        Framing::Chunked => stream_chunked(stream, buffer, sink).await?,
        Framing::UntilClose => loop {
            if !buffer.is_empty() {
                sink.put(buffer).await?;
                buffer.clear();
            }
            if fill(stream, buffer).await? == 0 {
                break;
            }
        },
    }
    Ok((head.status, head.headers, head.keep_alive))
}

/// Hands the next `length` bytes of the stream to `sink`.
async fn stream_exact<S: AsyncRead + Unpin, K: BodySink>(
    stream: &mut S,
    buffer: &mut BytesMut,
    mut length: usize,
    sink: &mut K,
) -> Result<(), ReadError> {
    loop {
        let take = length.min(buffer.len());
        if take > 0 {
            let chunk = buffer.split_to(take);
            sink.put(&chunk).await?;
            length -= take;
        }
        if length == 0 {
            return Ok(());
        }
        if fill(stream, buffer).await? == 0 {
            return Err(ReadError::Broken(
                "the connection closed in the middle of the answer's body".to_owned(),
            ));
        }
    }
}

type Head = (usize, StatusCode, HeaderMap, bool);

/// The answer's head, if `buffer` holds all of it.
fn parse_head(buffer: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let head_len = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Broken(format!("malformed answer: {e}"))),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ReadError::Broken("the answer has no valid status".to_owned()))?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| ReadError::Broken(format!("bad header name {:?}", header.name)))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| ReadError::Broken(format!("bad value of header {}", header.name)))?;
        headers.append(name, value);
    }
    Ok(Some((head_len, status, headers, parsed.version == Some(0))))
}

/// Whether a comma-separated header (`Connection`, `Transfer-Encoding`) lists `token`.
fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// Reads more bytes into `buffer`; 0 at the end of the stream.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
) -> Result<usize, ReadError> {
    if buffer.capacity() - buffer.len() < 4096 {
        buffer.reserve(8192);
    }
    stream
        .read_buf(buffer)
        .await
        .map_err(|e| ReadError::Broken(e.to_string()))
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    length: usize,
) -> Result<Bytes, ReadError> {
    while buffer.len() < length {
        if buffer.capacity() - buffer.len() < length - buffer.len() {
            buffer.reserve(length - buffer.len());
        }
        if fill(stream, buffer).await? == 0 {
            return Err(ReadError::Broken(
                "the connection closed in the middle of the answer's body".to_owned(),
            ));
        }
    }
    Ok(buffer.split_to(length).freeze())
}

async fn read_to_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    max_body: usize,
) -> Result<Bytes, ReadError> {
    while fill(stream, buffer).await? > 0 {
        if buffer.len() > max_body {
            return Err(ReadError::TooLarge);
        }
    }
    Ok(buffer.split().freeze())
}

/// A chunked body (`size[;ext]\r\n data \r\n` … `0\r\n` trailers `\r\n`), in memory.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    max_body: usize,
) -> Result<Bytes, ReadError> {
    let mut body = InMemory {
        body: BytesMut::new(),
        max_body,
    };
    stream_chunked(stream, buffer, &mut body).await?;
    Ok(body.body.freeze())
}

/// A body collected in memory, up to `max_body` bytes.
struct InMemory {
    body: BytesMut,
    max_body: usize,
}

impl BodySink for InMemory {
    async fn put(&mut self, chunk: &[u8]) -> Result<(), ReadError> {
        if self.body.len() + chunk.len() > self.max_body {
            return Err(ReadError::TooLarge);
        }
        self.body.extend_from_slice(chunk);
        Ok(())
    }
}

/// Hands a chunked body to `sink`, chunk by chunk; the trailers are read and dropped.
async fn stream_chunked<S: AsyncRead + Unpin, K: BodySink>(
    stream: &mut S,
    buffer: &mut BytesMut,
    sink: &mut K,
) -> Result<(), ReadError> {
    loop {
        let line = read_line(stream, buffer).await?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Broken(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers, up to an empty line.
            while !read_line(stream, buffer).await?.is_empty() {}
            return Ok(());
        }
        stream_exact(stream, buffer, size, sink).await?;
        if !read_line(stream, buffer).await?.is_empty() {
            return Err(ReadError::Broken(
                "a chunk is longer than its size".to_owned(),
            ));
        }
    }
}

/// One CRLF-terminated line (without the CRLF).
async fn read_line<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
) -> Result<String, ReadError> {
    loop {
        if let Some(end) = buffer.windows(2).position(|w| w == b"\r\n") {
            let line = buffer.split_to(end + 2);
            return String::from_utf8(line[..end].to_vec())
                .map_err(|_| ReadError::Broken("a chunk line is not text".to_owned()));
        }
        if buffer.len() > MAX_HEAD {
            return Err(ReadError::Broken("a chunk line is too long".to_owned()));
        }
        if fill(stream, buffer).await? == 0 {
            return Err(ReadError::Broken(
                "the connection closed in the middle of a chunked body".to_owned(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(wire: &[u8]) -> Result<Answer, ReadError> {
        let mut stream = wire;
        let mut buffer = BytesMut::new();
        read_response(&mut stream, &mut buffer, 100).await
    }

    #[tokio::test]
    async fn content_length_chunked_and_until_close_bodies_are_read() {
        let answer = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
            .await
            .expect("content-length");
        assert_eq!(answer.response.body().as_ref(), b"hello");
        assert_eq!(answer.response.headers()["x-a"], "b");
        assert!(answer.keep_alive);
        let answer = read(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .await
        .expect("chunked");
        assert_eq!(answer.response.status(), StatusCode::CREATED);
        assert_eq!(answer.response.body().as_ref(), b"hello");
        assert!(answer.keep_alive);
        let answer = read(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
            .await
            .expect("until close");
        assert_eq!(answer.response.body().as_ref(), b"until close");
        assert!(!answer.keep_alive);
        let answer = read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .await
            .expect("close");
        assert!(!answer.keep_alive);
    }

    /// Streams one answer into memory, in chunks of at most 3 bytes read at a time.
    async fn stream(wire: &[u8], max_body: usize) -> Result<(StatusCode, Bytes, bool), ReadError> {
        let mut stream = tokio_test_reader(wire);
        let mut buffer = BytesMut::new();
        let mut sink = InMemory {
            body: BytesMut::new(),
            max_body,
        };
        let (status, _, keep_alive) = stream_response(&mut stream, &mut buffer, &mut sink).await?;
        Ok((status, sink.body.freeze(), keep_alive))
    }

    /// A reader that hands out `wire` a few bytes at a time, as a slow network would.
    fn tokio_test_reader(wire: &[u8]) -> impl AsyncRead + Unpin + '_ {
        struct Trickle<'a>(&'a [u8]);
        impl AsyncRead for Trickle<'_> {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let n = self.0.len().min(3).min(buf.remaining());
                buf.put_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                std::task::Poll::Ready(Ok(()))
            }
        }
        Trickle(wire)
    }

    #[tokio::test]
    async fn streamed_bodies_arrive_whole_in_every_framing_and_respect_the_limit() {
        let (status, body, keep_alive) = stream(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            100,
        )
        .await
        .expect("content-length");
        assert_eq!(
            (status, &body[..], keep_alive),
            (StatusCode::OK, &b"hello world"[..], true)
        );
        let (_, body, keep_alive) = stream(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x\r\n world\r\n0\r\n\r\n",
            100,
        )
        .await
        .expect("chunked");
        assert_eq!((&body[..], keep_alive), (&b"hello world"[..], true));
        let (_, body, keep_alive) = stream(b"HTTP/1.0 200 OK\r\n\r\nuntil close", 100)
            .await
            .expect("until close");
        assert_eq!((&body[..], keep_alive), (&b"until close"[..], false));
        assert!(matches!(
            stream(
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
                5
            )
            .await,
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            stream(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello", 100).await,
            Err(ReadError::Broken(_))
        ));
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        assert!(matches!(
            read(b"").await,
            Err(ReadError::ClosedBeforeAnswer)
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Le").await,
            Err(ReadError::Broken(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").await,
            Err(ReadError::Broken(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n").await,
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await,
            Err(ReadError::Broken(_))
        ));
        assert!(matches!(
            read(b"SMTP nonsense\r\n\r\n").await,
            Err(ReadError::Broken(_))
        ));
    }

    #[test]
    fn requests_carry_a_content_length() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("h:1"));
        let wire = encode_request(&http::Method::PUT, "/a?b=c", &headers, b"{}");
        assert_eq!(
            wire,
            b"PUT /a?b=c HTTP/1.1\r\nhost: h:1\r\ncontent-length: 2\r\n\r\n{}".to_vec()
        );
        let wire = encode_request(&http::Method::GET, "/v", &headers, b"");
        assert_eq!(wire, b"GET /v HTTP/1.1\r\nhost: h:1\r\n\r\n".to_vec());
    }
}
