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
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::http::Request;

/// The path prefix routed to the workload.
pub const PREFIX: &str = "/app";
/// Largest response body forwarded.
pub const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;
/// Longest status line or header line read from the workload.
const MAX_LINE: usize = 8 * 1024;
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
    (&stream)
        .write_all(&request_bytes(request, body, path, port))
        .map_err(io_error)?;
    let mut reader = BufReader::new(Deadline {
        stream: &stream,
        deadline,
    });
    read_response(&mut reader, request.method == "HEAD")
}

/// The request as sent upstream.
fn request_bytes(request: &Request, body: &[u8], path: &str, port: u16) -> Vec<u8> {
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
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nX-Forwarded-Proto: https\r\n",
        request.method
    );
    if let Some(peer) = request.peer {
        head.push_str(&format!("X-Forwarded-For: {peer}\r\n"));
    }
    if let Some(host) = request.header("host") {
        // The request parser refused control characters in header values.
        head.push_str(&format!("X-Forwarded-Host: {host}\r\n"));
    }
    for (name, value) in &request.headers {
        if DROPPED_REQUEST_HEADERS.contains(&name.as_str()) || listed.contains(name) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || !matches!(request.method.as_str(), "GET" | "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
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

/// One CRLF- (or LF-) terminated line of at most [`MAX_LINE`] bytes.
fn read_line<R: BufRead>(reader: &mut R) -> Result<String, ProxyError> {
    let mut line = Vec::new();
    reader
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(io_error)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE {
            bad(format!("a line is longer than {MAX_LINE} bytes"))
        } else {
            bad("the connection closed inside the header")
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("a header line is not UTF-8"))
}

/// Read a response: status line, headers, body.
pub fn read_response<R: BufRead>(reader: &mut R, head_only: bool) -> Result<Upstream, ProxyError> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("status line {status_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("status line {status_line:?}")));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| bad(format!("status code {code:?}")))?;
    if status < 200 {
        return Err(bad(format!(
            "interim status {status} (upgrades and 1xx are not forwarded)"
        )));
    }

    let mut headers = Vec::new();
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for count in 0.. {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        if count == MAX_HEADERS {
            return Err(bad(format!("more than {MAX_HEADERS} header fields")));
        }
        if line.starts_with([' ', '\t']) {
            return Err(bad(format!(
                "obsolete line folding is not accepted: {line:?}"
            )));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line without ':': {line:?}")))?;
        check_header(name, value)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value
                .parse()
                .map_err(|_| bad(format!("Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(bad("conflicting Content-Length headers"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(bad(format!("Transfer-Encoding {value:?}")));
            }
            chunked = true;
        } else if let Some(known) = FORWARDED_RESPONSE_HEADERS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(name))
        {
            headers.push((*known, value.to_owned()));
        }
    }

    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        read_chunked(reader)?
    } else if let Some(length) = length {
        if length > MAX_RESPONSE_BODY {
            return Err(ProxyError::TooLarge);
        }
        let mut body = Vec::with_capacity(length);
        reader
            .take(length as u64)
            .read_to_end(&mut body)
            .map_err(io_error)?;
        if body.len() < length {
            return Err(bad(format!(
                "the body ended after {} of {length} bytes",
                body.len()
            )));
        }
        body
    } else {
        // No length: the body runs to the end of the connection.
        let mut body = Vec::new();
        reader
            .take(MAX_RESPONSE_BODY as u64 + 1)
            .read_to_end(&mut body)
            .map_err(io_error)?;
        if body.len() > MAX_RESPONSE_BODY {
            return Err(ProxyError::TooLarge);
        }
        body
    };
    Ok(Upstream {
        status,
        headers,
        body,
    })
}

/// A response header field must be a token name and a value without control
/// characters (HTAB aside): lines end at LF, so a CR left inside a value is
/// a bare CR, which some clients take for a line break.
fn check_header(name: &str, value: &str) -> Result<(), ProxyError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(bad(format!("header name {name:?} is not a token")));
    }
    if let Some(b) = value
        .bytes()
        .find(|&b| (b < b' ' && b != b'\t') || b == 0x7f)
    {
        let what = match b {
            b'\r' => "a bare CR".to_owned(),
            b'\n' => "a bare LF".to_owned(),
            other => format!("the control character 0x{other:02x}"),
        };
        return Err(bad(format!(
            "header {name} has {what} in its value; refused so that it cannot forge headers"
        )));
    }
    Ok(())
}

/// A chunked body (RFC 9112 §7.1), trailers discarded.
fn read_chunked<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, ProxyError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailer fields up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > MAX_RESPONSE_BODY {
            return Err(ProxyError::TooLarge);
        }
        let before = body.len();
        reader
            .take(size as u64)
            .read_to_end(&mut body)
            .map_err(io_error)?;
        if body.len() - before < size {
            return Err(bad("the connection closed inside a chunk"));
        }
        if !read_line(reader)?.is_empty() {
            return Err(bad("a chunk is longer than its size"));
        }
    }
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
        let text = String::from_utf8(request_bytes(&request, b"abc", "/api", 8080)).unwrap();
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
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE));
        assert!(parse(long.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }
}
