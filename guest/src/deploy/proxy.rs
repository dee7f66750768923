//! `/app/...`: one request forwarded to the running workload's port on
//! 127.0.0.1, so that clients reach the service through the agent's
//! attested TLS key.
//!
//! Deliberately simple and closed: the target is always
//! `127.0.0.1:<port of the running deployment>` (the client chooses only the
//! path, which is forwarded as a path, never as a URL), one request per
//! connection (`Connection: close`), hop-by-hop headers dropped both ways
//! (RFC 9110 §7.6.1), a deadline for the whole exchange, and a cap on the
//! response. Chunked responses are decoded; the agent answers with a
//! Content-Length.
//!
//! The client's `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`,
//! `Forwarded` and `X-Real-IP` are dropped, and the first three replaced by
//! the proxy's own (the client's address, `https`, its `Host`), so the
//! workload never sees a forwarded address the client made up. A response header value with a
//! control character (a CR or LF inside it above all) is refused with 502
//! naming the header: some clients split lines on a bare CR, which would let
//! the workload forge the agent's own headers.

use std::io::{self, BufRead, BufReader, Read, Write};

use ee_http::BodyReader;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::http::Request;

/// The path prefix routed to the workload.
pub const PREFIX: &str = "/app";
/// Largest response body forwarded.
pub const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;
/// Largest response header section.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most response header fields.
const MAX_HEADERS: usize = 100;
/// The whole exchange with the workload must end within this.
const DEADLINE: Duration = Duration::from_secs(30);
/// Connecting to the workload.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Request headers not forwarded: hop-by-hop, or set by the proxy.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    // Set by the proxy from what it knows, never taken from the client.
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

/// Response headers passed back to the client (the agent sets
/// Content-Length, Connection and Cache-Control itself).
pub const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "Content-Type",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "ETag",
    "Last-Modified",
    "Location",
    "Retry-After",
    "Set-Cookie",
    "Vary",
    "WWW-Authenticate",
];

/// What the workload answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its status code.
    pub status: u16,
    /// The headers of [`FORWARDED_RESPONSE_HEADERS`] it sent, in order, each
    /// named by that list's spelling.
    pub headers: Vec<(&'static str, String)>,
    /// The body (chunked encoding removed).
    pub body: Vec<u8>,
}

/// Forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Nothing accepts on the port.
    #[error("the workload does not accept connections on 127.0.0.1:{port}: {source}")]
    Connect {
        /// The port.
        port: u16,
        /// Why.
        source: io::Error,
    },
    /// The exchange took too long.
    #[error("the workload did not answer within {} s", DEADLINE.as_secs())]
    Timeout,
    /// The workload's answer is not acceptable HTTP/1.x.
    #[error("the workload's response is invalid: {0}")]
    BadResponse(String),
    /// The answer is larger than [`MAX_RESPONSE_BODY`].
    #[error("the workload's response is larger than {MAX_RESPONSE_BODY} bytes")]
    TooLarge,
    /// The request cannot be written (a header the codec refuses).
    #[error("the request cannot be forwarded: {0}")]
    Request(ee_http::Error),
    /// Reading or writing failed.
    #[error("talking to the workload: {0}")]
    Io(io::Error),
}

impl ProxyError {
    /// The status the agent answers with.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::Timeout => 504,
            _ => 502,
        }
    }
}

fn io_error(e: io::Error) -> ProxyError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ProxyError::Timeout,
        _ => ProxyError::Io(e),
    }
}

/// The path forwarded for a request path under [`PREFIX`] (`/app/x` → `/x`,
/// `/app` → `/`); `None` if the path is not under it.
pub fn upstream_path(path: &str) -> Option<&str> {
    match path.strip_prefix(PREFIX)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// Forward `request` (its path under [`PREFIX`]) with `body` to 127.0.0.1:`port`.
pub fn forward(request: &Request, body: &[u8], port: u16) -> Result<Upstream, ProxyError> {
    let path = upstream_path(&request.path).ok_or_else(|| {
        ProxyError::BadResponse(format!("{} is not under {PREFIX}", request.path))
    })?;
    let deadline = Instant::now() + DEADLINE;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|source| ProxyError::Connect { port, source })?;
    stream
        .set_write_timeout(Some(DEADLINE))
        .map_err(ProxyError::Io)?;
    let bytes = request_bytes(request, body, path, port).map_err(ProxyError::Request)?;
    (&stream).write_all(&bytes).map_err(io_error)?;
    let mut reader = BufReader::new(Deadline {
        stream: &stream,
        deadline,
    });
    read_response(&mut reader, request.method == "HEAD")
}

/// The request as sent upstream.
fn request_bytes(
    request: &Request,
    body: &[u8],
    path: &str,
    port: u16,
) -> Result<Vec<u8>, ee_http::Error> {
    let target = if request.query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", request.query)
    };
    // Names listed in `Connection` are hop-by-hop too.
    let listed: Vec<String> = request
        .headers
        .iter()
        .filter(|(name, _)| name == "connection")
        .flat_map(|(_, value)| value.split(',').map(|v| v.trim().to_ascii_lowercase()))
        .collect();
    let host = format!("127.0.0.1:{port}");
    let peer = request.peer.map(|peer| peer.to_string());
    let mut headers: Vec<(&str, &str)> = vec![
        ("Host", &host),
        ("Connection", "close"),
        ("X-Forwarded-Proto", "https"),
    ];
    if let Some(peer) = &peer {
        headers.push(("X-Forwarded-For", peer));
    }
    if let Some(host) = request.header("host") {
        headers.push(("X-Forwarded-Host", host));
    }
    for (name, value) in &request.headers {
        if DROPPED_REQUEST_HEADERS.contains(&name.as_str()) || listed.contains(name) {
            continue;
        }
        headers.push((name, value));
    }
    let length = (!body.is_empty() || !matches!(request.method.as_str(), "GET" | "HEAD"))
        .then_some(body.len() as u64);
    let mut bytes = Vec::with_capacity(1024 + body.len());
    ee_http::write_request_head(&mut bytes, &request.method, &target, headers, length)?;
    bytes.extend_from_slice(body);
    Ok(bytes)
}

/// A socket whose every read stops at the exchange's deadline.
struct Deadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&*self.stream).read(buf)
    }
}

fn bad(why: impl Into<String>) -> ProxyError {
    ProxyError::BadResponse(why.into())
}

/// A codec refusal as the proxy reports it.
fn from_codec(e: ee_http::Error) -> ProxyError {
    match e {
        ee_http::Error::BodyTooLarge { .. } => ProxyError::TooLarge,
        ee_http::Error::Io(e) => io_error(e),
        ee_http::Error::Closed => bad("the connection closed inside the headers"),
        other => bad(other.to_string()),
    }
}

/// The codec's limits for the workload's answer.
fn limits() -> ee_http::Limits {
    // The status line and chunk limits are the codec's; a workload may send
    // a larger header section and a larger body than an API client.
    ee_http::Limits {
        max_header_bytes: MAX_HEADER_BYTES,
        max_headers: MAX_HEADERS,
        max_body: MAX_RESPONSE_BODY as u64,
        ..ee_http::Limits::default()
    }
}

/// Read a response: status line, headers, body (with the codec, `ee-http`:
/// a header value with a control character, a bare CR above all, is
/// refused there, naming the header, so it cannot forge the agent's own
/// headers).
pub fn read_response<R: BufRead>(reader: &mut R, head_only: bool) -> Result<Upstream, ProxyError> {
    let limits = limits();
    let mut raw = Vec::new();
    let head = ee_http::read_response_head(reader, &mut raw, &limits).map_err(from_codec)?;
    if head.status < 200 {
        return Err(bad(format!(
            "interim status {} (upgrades and 1xx are not forwarded)",
            head.status
        )));
    }
    let framing =
        ee_http::response_framing(head_only, head.status, &head.headers).map_err(from_codec)?;
    let body = BodyReader::new(reader, framing, &limits)
        .and_then(|mut body| body.read_to_vec())
        .map_err(from_codec)?;
    let headers = head
        .headers
        .into_iter()
        .filter_map(|(name, value)| {
            FORWARDED_RESPONSE_HEADERS
                .iter()
                .find(|known| known.eq_ignore_ascii_case(&name))
                .map(|known| (*known, value))
        })
        .collect();
    Ok(Upstream {
        status: head.status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Upstream, ProxyError> {
        read_response(&mut io::Cursor::new(raw), false)
    }

    #[test]
    fn paths_under_the_prefix_only() {
        assert_eq!(upstream_path("/app"), Some("/"));
        assert_eq!(upstream_path("/app/"), Some("/"));
        assert_eq!(upstream_path("/app/a/b"), Some("/a/b"));
        assert_eq!(upstream_path("/apples"), None);
        assert_eq!(upstream_path("/health"), None);
    }

    #[test]
    fn request_drops_hop_by_hop_headers_and_sets_its_own() {
        let request = Request {
            method: "POST".into(),
            path: "/app/api".into(),
            query: "q=1".into(),
            headers: vec![
                ("host".into(), "agent.example".into()),
                ("connection".into(), "keep-alive, x-secret-hop".into()),
                ("x-secret-hop".into(), "1".into()),
                ("content-length".into(), "999".into()),
                ("accept".into(), "text/plain".into()),
                ("authorization".into(), "Bearer app-token".into()),
                ("x-forwarded-for".into(), "6.6.6.6".into()),
                ("X-Forwarded-Proto".to_ascii_lowercase(), "http".into()),
                ("x-forwarded-host".into(), "evil.example".into()),
                ("forwarded".into(), "for=6.6.6.6".into()),
                ("x-real-ip".into(), "6.6.6.6".into()),
            ],
            content_length: 3,
            peer: Some("192.0.2.7".parse().unwrap()),
        };
        let text =
            String::from_utf8(request_bytes(&request, b"abc", "/api", 8080).unwrap()).unwrap();
        assert_eq!(
            text,
            "POST /api?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-For: 192.0.2.7\r\n\
             X-Forwarded-Host: agent.example\r\naccept: text/plain\r\n\
             authorization: Bearer app-token\r\nContent-Length: 3\r\n\r\nabc"
        );
        assert!(
            !text.contains("6.6.6.6") && !text.contains("evil"),
            "{text}"
        );
    }

    #[test]
    fn responses_with_length_chunks_or_eof() {
        let r = parse(
            b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nServer: x\r\nSET-COOKIE: a=1\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
        )
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(
            r.headers,
            [
                ("Content-Type", "text/plain".into()),
                ("Set-Cookie", "a=1".into())
            ]
        );
        assert_eq!(r.body, b"hello");

        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abc0123456789");

        let r = parse(b"HTTP/1.0 200 OK\n\nuntil the end").unwrap();
        assert_eq!(r.body, b"until the end");

        let r = read_response(
            &mut io::Cursor::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..]),
            true,
        )
        .unwrap();
        assert!(r.body.is_empty(), "HEAD has no body");
    }

    #[test]
    fn bad_responses_are_refused() {
        for (raw, needle) in [
            (&b"SSH-2.0-OpenSSH\r\n\r\n"[..], "status line"),
            (b"HTTP/1.1 abc OK\r\n\r\n", "status code"),
            (b"HTTP/1.1 101 Switching\r\n\r\n", "interim status 101"),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "without ':'"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
                "ended after 2 of 5",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "Transfer-Encoding",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
                "longer than its size",
            ),
            (b"HTTP/1.1 200 OK\r\nA: b", "closed inside the header"),
            (
                b"HTTP/1.1 200 OK\r\nLocation: /x\rSet-Cookie: admin=1\r\n\r\n",
                "header Location has a bare CR in its value",
            ),
            (
                b"HTTP/1.1 200 OK\r\nX-Private: a\rb\r\n\r\n",
                "header X-Private has a bare CR",
            ),
            (
                b"HTTP/1.1 200 OK\r\nVary: a\x00b\r\n\r\n",
                "control character 0x00",
            ),
            (
                b"HTTP/1.1 200 OK\r\nVary: a\r\n folded\r\n\r\n",
                "obsolete line folding",
            ),
        ] {
            let err = parse(raw).unwrap_err().to_string();
            assert!(err.contains(needle), "{raw:?}: {err}");
        }
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE_BODY + 1
        );
        assert!(matches!(parse(big.as_bytes()), Err(ProxyError::TooLarge)));
        let long = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        assert!(parse(long.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("header section larger than 65536 bytes"));
        let long = format!(
            "HTTP/1.1 200 {}\r\n\r\n",
            "a".repeat(ee_http::Limits::default().max_start_line)
        );
        assert!(parse(long.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("status line longer than 8192 bytes"));
    }
}
