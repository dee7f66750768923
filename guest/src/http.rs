//! A small HTTP/1.1 server on std::net for the agent API.
//!
//! Deliberately minimal: one request per connection (`Connection: close`),
//! no chunked bodies, hard caps on the request line, the header section, the
//! header count and the body, a per-read timeout and a deadline for the whole
//! request. Each connection gets its own thread, and at most
//! [`Limits::max_connections`] exist at once; beyond that a connection is
//! answered 503 immediately. PID1's main loop never touches a client socket,
//! so a slow or stuck client cannot delay reaping or shutdown.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::say;

/// Resource caps for one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line, in bytes (414 beyond).
    pub max_request_line: usize,
    /// Largest header section, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Largest body, in bytes (413 beyond).
    pub max_body: usize,
    /// Timeout for each read and write on the socket.
    pub io_timeout: Duration,
    /// The whole request must arrive within this time (408 after).
    pub request_deadline: Duration,
    /// Most connections served at once (503 beyond).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body: 64 * 1024,
            io_timeout: Duration::from_secs(10),
            request_deadline: Duration::from_secs(30),
            max_connections: 32,
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method token, e.g. `GET`.
    pub method: String,
    /// Path part of the target (before `?`).
    pub path: String,
    /// Query part of the target (after `?`), possibly empty.
    pub query: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (empty without Content-Length).
    pub body: Vec<u8>,
}

impl Request {
    /// The first query parameter called `name`. Values are taken literally
    /// (no percent-decoding): the API's parameters are hex.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra header fields (besides Content-Type, Content-Length, Connection).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        let mut body = match serde_json::to_vec(value) {
            Ok(body) => body,
            Err(e) => return Response::error(500, format!("cannot encode the response: {e}")),
        };
        body.push(b'\n');
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// `{"error": message}` with the given status.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// Add a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Serialize status line, headers and body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status,
            reason_phrase(self.status),
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Standard reason phrase of the status codes this server uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Syntax error; the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// Request line over the cap.
    #[error("request line longer than {0} bytes")]
    RequestLineTooLong(usize),
    /// Header section over the byte cap.
    #[error("header section larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// More header fields than the cap.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// Content-Length over the cap.
    #[error("body of {got} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Declared Content-Length.
        got: u64,
        /// The cap.
        limit: usize,
    },
    /// Not HTTP/1.0 or HTTP/1.1.
    #[error("HTTP version {0:?} is not supported (use HTTP/1.1)")]
    Version(String),
    /// Transfer-Encoding (chunked bodies) is not supported.
    #[error("Transfer-Encoding is not supported; send a Content-Length")]
    TransferEncoding,
    /// The request did not arrive in time.
    #[error("request not received in time")]
    Timeout,
    /// The peer closed the connection before sending a request.
    #[error("connection closed before a request")]
    Closed,
    /// Socket error.
    #[error("read failed: {0}")]
    Io(io::Error),
}

impl RequestError {
    /// The status to answer with, or `None` when the peer is gone.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::BadRequest(_) => Some(400),
            RequestError::RequestLineTooLong(_) => Some(414),
            RequestError::HeadersTooLarge(_) | RequestError::TooManyHeaders(_) => Some(431),
            RequestError::BodyTooLarge { .. } => Some(413),
            RequestError::Version(_) => Some(505),
            RequestError::TransferEncoding => Some(501),
            RequestError::Timeout => Some(408),
            RequestError::Closed | RequestError::Io(_) => None,
        }
    }
}

fn io_error(e: io::Error) -> RequestError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RequestError::Timeout,
        io::ErrorKind::UnexpectedEof => RequestError::Closed,
        _ => RequestError::Io(e),
    }
}

/// Read one line (up to LF, CR stripped) of at most `max` bytes.
/// `Ok(None)` is a clean end of stream before any byte of the line.
fn read_line<R: BufRead>(
    reader: &mut R,
    max: usize,
    too_long: impl Fn() -> RequestError,
) -> Result<Option<Vec<u8>>, RequestError> {
    let mut line = Vec::new();
    loop {
        let available = reader.fill_buf().map_err(io_error)?;
        if available.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(RequestError::BadRequest(
                    "connection closed in the middle of a line".into(),
                ))
            };
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if line.len() + chunk.len() > max + 1 {
            return Err(too_long());
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(done);
        reader.consume(used);
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > max {
                return Err(too_long());
            }
            return Ok(Some(line));
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, String), RequestError> {
    let bad = |why: &str| RequestError::BadRequest(format!("malformed request line: {why}"));
    let text = std::str::from_utf8(line).map_err(|_| bad("not ASCII"))?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(
            "expected `METHOD /path HTTP/1.1` separated by single spaces",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(bad("invalid method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("target must be a path starting with '/'"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Err(RequestError::Version(v.into())),
        _ => return Err(bad("missing HTTP version")),
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok((method.into(), path.into(), query.into()))
}

fn parse_header(line: &[u8]) -> Result<(String, String), RequestError> {
    let bad = |why: String| RequestError::BadRequest(why);
    if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return Err(bad("obsolete header line folding is not accepted".into()));
    }
    let text = std::str::from_utf8(line).map_err(|_| bad("header line is not UTF-8".into()))?;
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| bad("header line without ':'".into()))?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(bad(format!("invalid header name {name:?}")));
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(bad(format!("control character in header {name:?}")));
    }
    Ok((name.to_ascii_lowercase(), value.into()))
}

/// Read and parse one request within `limits`.
pub fn read_request<R: BufRead>(reader: &mut R, limits: &Limits) -> Result<Request, RequestError> {
    let line = read_line(reader, limits.max_request_line, || {
        RequestError::RequestLineTooLong(limits.max_request_line)
    })?
    .ok_or(RequestError::Closed)?;
    let (method, path, query) = parse_request_line(&line)?;

    let mut headers = Vec::new();
    let mut header_bytes = 0usize;
    loop {
        let budget = limits.max_header_bytes.saturating_sub(header_bytes);
        let line = read_line(reader, budget, || {
            RequestError::HeadersTooLarge(limits.max_header_bytes)
        })?
        .ok_or_else(|| RequestError::BadRequest("connection closed inside the headers".into()))?;
        if line.is_empty() {
            break;
        }
        header_bytes += line.len() + 2;
        if headers.len() == limits.max_headers {
            return Err(RequestError::TooManyHeaders(limits.max_headers));
        }
        headers.push(parse_header(&line)?);
    }

    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(RequestError::TransferEncoding);
    }
    let mut length: Option<u64> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        let parsed = Some(value)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| RequestError::BadRequest(format!("invalid Content-Length {value:?}")))?;
        if length.is_some_and(|l| l != parsed) {
            return Err(RequestError::BadRequest(
                "conflicting Content-Length headers".into(),
            ));
        }
        length = Some(parsed);
    }
    let length = length.unwrap_or(0);
    if length > limits.max_body as u64 {
        return Err(RequestError::BodyTooLarge {
            got: length,
            limit: limits.max_body,
        });
    }
    let mut body = Vec::new();
    reader
        .take(length)
        .read_to_end(&mut body)
        .map_err(io_error)?;
    if (body.len() as u64) < length {
        return Err(RequestError::BadRequest(format!(
            "body ended after {} of {length} bytes",
            body.len()
        )));
    }
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// Answers requests. Implementations must not block for long: each request
/// holds one of the bounded connection slots.
pub trait Handler: Send + Sync + 'static {
    /// Produce the response to `request`.
    fn handle(&self, request: &Request) -> Response;
}

/// Reads from a socket while enforcing a deadline for the whole request: each
/// read's timeout is the smaller of the per-read timeout and the time left.
struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    io_timeout: Duration,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream
            .set_read_timeout(Some(left.min(self.io_timeout)))?;
        (&*self.stream).read(buf)
    }
}

/// Decrements the live-connection count when a connection thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serve `listener` from a background accept thread. Returns once the thread
/// runs; the thread lives as long as the process.
pub fn serve(listener: TcpListener, limits: Limits, handler: Arc<dyn Handler>) -> io::Result<()> {
    let live = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, peer)) => admit(stream, peer, &limits, &handler, &live),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    say!("http: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
    Ok(())
}

fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    limits: &Limits,
    handler: &Arc<dyn Handler>,
    live: &Arc<AtomicUsize>,
) {
    if live.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
        live.fetch_sub(1, Ordering::SeqCst);
        reject(&stream, limits, "too many connections; retry later");
        return;
    }
    let slot = Slot(live.clone());
    let (limits_for_thread, handler) = (limits.clone(), handler.clone());
    let spawned = std::thread::Builder::new()
        .name("http-conn".into())
        .spawn(move || {
            let _slot = slot;
            serve_connection(&stream, &limits_for_thread, handler.as_ref());
        });
    if let Err(e) = spawned {
        // The closure (with the stream and the slot) was dropped: the slot
        // is released and the client sees the connection close.
        say!("http: cannot start a thread for {peer}: {e}");
    }
}

/// Answer 503 without reading: a tiny write into an empty socket buffer.
fn reject(stream: &TcpStream, limits: &Limits, why: &str) {
    let _ = stream.set_write_timeout(Some(limits.io_timeout.min(Duration::from_secs(1))));
    let _ = (&*stream).write_all(&Response::error(503, why).to_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_connection(stream: &TcpStream, limits: &Limits, handler: &dyn Handler) {
    let _ = stream.set_write_timeout(Some(limits.io_timeout));
    let deadline = Instant::now() + limits.request_deadline;
    let mut reader = BufReader::new(DeadlineReader {
        stream,
        deadline,
        io_timeout: limits.io_timeout,
    });
    let response = match read_request(&mut reader, limits) {
        Ok(request) => handler.handle(&request),
        Err(e) => match e.status() {
            Some(status) => Response::error(status, e.to_string()),
            None => return,
        },
    };
    let _ = (&*stream).write_all(&response.to_bytes());
    // Half-close and drain briefly, so unread request bytes do not turn the
    // close into a reset that destroys the response in flight.
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = io::copy(&mut stream.take(64 * 1024), &mut io::sink());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Request, RequestError> {
        read_request(&mut io::Cursor::new(raw), &Limits::default())
    }

    fn status_of(raw: &[u8]) -> Option<u16> {
        parse(raw).unwrap_err().status()
    }

    #[test]
    fn parses_a_simple_get() {
        let r = parse(b"GET /attestation?nonce=00ff&x HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n")
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/attestation");
        assert_eq!(r.query_param("nonce"), Some("00ff"));
        assert_eq!(r.query_param("x"), Some(""));
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(
            r.headers,
            [("host".into(), "a".into()), ("x-y".into(), "z".into())]
        );
        // Bare LF line endings are tolerated.
        assert_eq!(parse(b"GET / HTTP/1.0\n\n").unwrap().path, "/");
    }

    #[test]
    fn reads_a_declared_body() {
        let r = parse(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(
            status_of(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"),
            Some(400)
        );
    }

    #[test]
    fn malformed_request_lines_are_400() {
        for raw in [
            &b"GET\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / FTP\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            let err = parse(raw).unwrap_err();
            assert_eq!(err.status(), Some(400), "{raw:?}: {err}");
            assert!(
                err.to_string().starts_with("malformed request line"),
                "{err}"
            );
        }
        assert_eq!(status_of(b"GET / HTTP/2.0\r\n\r\n"), Some(505));
    }

    #[test]
    fn malformed_headers_are_400() {
        for (raw, needle) in [
            (&b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"[..], "without ':'"),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                "invalid header name",
            ),
            (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", "folding"),
            (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", "control character"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting",
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", "inside the headers"),
        ] {
            let err = parse(raw).unwrap_err();
            assert_eq!(err.status(), Some(400), "{raw:?}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(501)
        );
    }

    #[test]
    fn oversized_parts_get_their_own_status() {
        let limits = Limits::default();
        let long_target = format!(
            "GET /{} HTTP/1.1\r\n\r\n",
            "a".repeat(limits.max_request_line)
        );
        assert_eq!(status_of(long_target.as_bytes()), Some(414));
        // Exactly at the cap is fine.
        let at_cap = format!(
            "GET /{} HTTP/1.1\r\n\r\n",
            "a".repeat(limits.max_request_line - 14)
        );
        assert!(parse(at_cap.as_bytes()).is_ok());

        let big_header = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "v".repeat(limits.max_header_bytes)
        );
        assert_eq!(status_of(big_header.as_bytes()), Some(431));
        let many: String = (0..=limits.max_headers)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let err = parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).unwrap_err();
        assert_eq!(err.status(), Some(431));
        assert!(
            err.to_string().contains("more than 64 header fields"),
            "{err}"
        );
        // Many small headers that together exceed the byte cap.
        let filler: String = (0..60)
            .map(|i| format!("H{i}: {}\r\n", "v".repeat(400)))
            .collect();
        assert_eq!(
            status_of(format!("GET / HTTP/1.1\r\n{filler}\r\n").as_bytes()),
            Some(431)
        );

        let big_body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            limits.max_body + 1
        );
        let err = parse(big_body.as_bytes()).unwrap_err();
        assert_eq!(err.status(), Some(413));
        assert!(
            err.to_string().contains("exceeds the limit of 65536 bytes"),
            "{err}"
        );
    }

    #[test]
    fn empty_connection_is_closed_without_answer() {
        assert!(matches!(parse(b""), Err(RequestError::Closed)));
        assert_eq!(status_of(b""), None);
    }

    #[test]
    fn response_serialization() {
        let bytes = Response::error(405, "use GET")
            .with_header("Allow", "GET")
            .to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET\r\n"));
        assert!(text.contains("\r\nContent-Length: 20\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":\"use GET\"}\n"));
    }
}
