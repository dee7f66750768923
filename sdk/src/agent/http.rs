//! Just enough HTTP/1.1 for the agent API: one request per connection
//! (`Connection: close`), bodies framed by `Content-Length`, chunked, or the
//! end of the stream, with caps on the head and the body. Parsing, framing
//! and writing are the shared codec's (`ee-http`), the one the agent uses.

use std::io::{self, BufReader, Read, Write};

use ee_http::BodyReader;

use super::AgentError;

/// Largest excerpt of an error body quoted in an error.
const MAX_REASON_CHARS: usize = 300;

/// Where the agent listens: from `https://HOST[:PORT][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (443 when the URL has none).
    pub port: u16,
}

impl Endpoint {
    /// Parse an agent URL: `https://`, a host, an optional port, no path
    /// beyond `/`, no user info, query or fragment.
    pub fn parse(url: &str) -> Result<Endpoint, AgentError> {
        let problem = |p: &str| AgentError::Url {
            url: url.to_owned(),
            problem: p.to_owned(),
        };
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| problem("must start with https:// (the agent serves RA-TLS only)"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(problem("has no host"));
        }
        if authority.contains(['/', '?', '#', '@']) {
            return Err(problem(
                "must be https://HOST[:PORT] without path, query, fragment or user info",
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| problem("IPv6 address without closing ']'"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(problem("the bracketed host is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(problem("unexpected text after the IPv6 address")),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && (host.contains(':')
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        if !host_ok {
            return Err(problem(
                "the host must be a DNS name or an IP address (letters, digits, '.', '-')",
            ));
        }
        let port = match port {
            None => 443,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return Err(problem(&format!("port {text:?} is not 1 to 65535"))),
            },
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An answer from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The agent's reason for an error status: the `error` member of a JSON
    /// body (`{"error": "..."}`), or the start of the body as text.
    pub fn error_reason(&self) -> String {
        let from_json = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned));
        let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        let text = text.trim();
        if text.is_empty() {
            return "(no reason given)".to_owned();
        }
        let mut reason: String = text
            .chars()
            .take(MAX_REASON_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.chars().count() > MAX_REASON_CHARS {
            reason.push('…');
        }
        reason
    }
}

/// A request, checked before anything is written.
pub struct Request<'a> {
    /// Method (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// Extra header fields.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body (sent with `Content-Length` when non-empty or not a GET/HEAD).
    pub body: &'a [u8],
}

/// Headers the client sets itself.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
];

use ee_http::is_token;

impl Request<'_> {
    /// Check the method, path and headers; the error names the bad part and
    /// never quotes a header value (it may be a credential).
    pub fn validate(&self) -> Result<(), AgentError> {
        if !is_token(self.method) {
            return Err(AgentError::Request(format!(
                "method {:?} is not an HTTP token",
                self.method
            )));
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AgentError::Request(format!(
                "path {:?} must start with '/' and hold only visible ASCII (percent-encode the rest)",
                self.path
            )));
        }
        for (name, value) in self.headers {
            if !is_token(name) {
                return Err(AgentError::Request(format!(
                    "header name {name:?} is not an HTTP token"
                )));
            }
            if RESERVED_HEADERS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
            {
                return Err(AgentError::Request(format!(
                    "header {name} is set by the client"
                )));
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return Err(AgentError::Request(format!(
                    "the value of header {name} contains control characters"
                )));
            }
        }
        Ok(())
    }

    /// The request's bytes (the codec checks every field again).
    fn encode(&self, endpoint: &Endpoint) -> Result<Vec<u8>, AgentError> {
        let authority = endpoint.authority();
        let agent = concat!("easyenclave/", env!("CARGO_PKG_VERSION"));
        let fixed = [
            ("Host", authority.as_str()),
            ("User-Agent", agent),
            ("Connection", "close"),
        ];
        let bodyless = matches!(self.method, "GET" | "HEAD") && self.body.is_empty();
        let length = (!bodyless).then_some(self.body.len() as u64);
        let mut bytes = Vec::with_capacity(512 + self.body.len());
        ee_http::write_request_head(
            &mut bytes,
            self.method,
            self.path,
            fixed.into_iter().chain(self.headers.iter().copied()),
            length,
        )
        .map_err(|e| AgentError::Request(e.to_string()))?;
        bytes.extend_from_slice(self.body);
        Ok(bytes)
    }
}

/// Send `request` on `stream` and read the answer, at most `max_body` bytes
/// of body.
pub fn exchange<S: Read + Write>(
    stream: &mut S,
    endpoint: &Endpoint,
    request: &Request<'_>,
    max_body: usize,
) -> Result<Response, AgentError> {
    let io_error = |what: &str| {
        let context = format!(
            "{} {} on {}: {what}",
            request.method,
            request.path,
            endpoint.authority()
        );
        move |error| AgentError::Io { context, error }
    };
    let bytes = request.encode(endpoint)?;
    stream
        .write_all(&bytes)
        .and_then(|()| stream.flush())
        .map_err(io_error("sending the request"))?;
    let protocol = |problem: String| AgentError::Protocol {
        method: request.method.to_owned(),
        path: request.path.to_owned(),
        problem,
    };
    // The codec's head and chunk limits; only the body cap is the caller's.
    let limits = ee_http::Limits {
        max_body: max_body as u64,
        ..ee_http::Limits::default()
    };
    let mut reader = BufReader::new(&mut *stream);
    let head =
        ee_http::read_response_head(&mut reader, &mut Vec::new(), &limits).map_err(
            |e| match e {
                ee_http::Error::Io(error) => io_error("reading the response")(error),
                ee_http::Error::Closed => io_error("reading the response")(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed before the response",
                )),
                other => protocol(other.to_string()),
            },
        )?;
    // 1xx answers are never solicited: this client sends no Expect.
    if head.status < 200 {
        return Err(protocol(format!(
            "status {} is not a final status code (200 to 599)",
            head.status
        )));
    }
    let framing = ee_http::response_framing(request.method == "HEAD", head.status, &head.headers)
        .map_err(|e| protocol(e.to_string()))?;
    let body = BodyReader::new(&mut reader, framing, &limits)
        .and_then(|mut body| body.read_to_vec())
        .map_err(|e| match e {
            ee_http::Error::BodyTooLarge { .. } => AgentError::TooLarge {
                method: request.method.to_owned(),
                path: request.path.to_owned(),
                limit: max_body,
            },
            ee_http::Error::Io(error) => io_error("reading the body")(error),
            // A short body is a broken connection, not a malformed answer.
            truncated @ ee_http::Error::BodyTruncated { .. } => io_error("reading the body")(
                io::Error::new(io::ErrorKind::UnexpectedEof, truncated.to_string()),
            ),
            other => protocol(other.to_string()),
        })?;
    Ok(Response {
        status: head.status,
        headers: head.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake connection: records what is written, plays back `answer`.
    struct Fake {
        written: Vec<u8>,
        answer: io::Cursor<Vec<u8>>,
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // Small reads, to exercise the buffering.
            let n = buf.len().min(7);
            self.answer.read(&mut buf[..n])
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint::parse("https://agent.test:8443").unwrap()
    }

    fn run(method: &str, answer: &str, max: usize) -> (Result<Response, AgentError>, String) {
        let mut fake = Fake {
            written: Vec::new(),
            answer: io::Cursor::new(answer.as_bytes().to_vec()),
        };
        let request = Request {
            method,
            path: "/x",
            headers: &[("Authorization", "Bearer t")],
            body: if method == "POST" { b"{}" } else { b"" },
        };
        let result = exchange(&mut fake, &endpoint(), &request, max);
        (result, String::from_utf8(fake.written).unwrap())
    }

    #[test]
    fn writes_a_closing_request_with_length() {
        let (_, written) = run("POST", "HTTP/1.1 204 No Content\r\n\r\n", 10);
        assert!(written.starts_with("POST /x HTTP/1.1\r\nHost: agent.test:8443\r\n"));
        assert!(written.contains("\r\nConnection: close\r\n"));
        assert!(written.contains("\r\nAuthorization: Bearer t\r\n"));
        assert!(
            written.ends_with("Content-Length: 2\r\n\r\n{}"),
            "{written}"
        );
        let (_, get) = run("GET", "HTTP/1.1 204 No Content\r\n\r\n", 10);
        assert!(!get.contains("Content-Length"), "{get}");
    }

    #[test]
    fn reads_length_chunked_and_until_close_bodies() {
        let (r, _) = run(
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
            10,
        );
        let r = r.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("content-length"), Some("5"));

        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                       4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(run("GET", chunked, 100).0.unwrap().body, b"Wikipedia");

        let (r, _) = run(
            "GET",
            "HTTP/1.0 404 Not Found\r\n\r\n{\"error\":\"no such id\"}",
            100,
        );
        let r = r.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.error_reason(), "no such id");
    }

    #[test]
    fn enforces_the_body_cap_in_every_framing() {
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\nhello world",
        ] {
            let err = run("GET", answer, 10).0.unwrap_err();
            assert!(
                matches!(err, AgentError::TooLarge { limit: 10, .. }),
                "{answer:?}: {err}"
            );
        }
    }

    #[test]
    fn refuses_malformed_or_ambiguous_answers() {
        for (answer, needle) in [
            ("HTTP/2 200\r\n\r\n", "not HTTP/1.x"),
            ("HTTP/1.1 100 Continue\r\n\r\n", "not a final status"),
            ("HTTP/1.1 200 OK\r\nbad line\r\n\r\n", "without ':'"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both Transfer-Encoding and Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "not a number",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "unsupported",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "not hexadecimal",
            ),
        ] {
            let err = run("GET", answer, 100).0.unwrap_err().to_string();
            assert!(err.contains(needle), "{answer:?}: {err}");
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(ee_http::Limits::default().max_header_bytes)
        );
        let err = run("GET", &head, 100).0.unwrap_err().to_string();
        assert!(
            err.contains("header section larger than 16384 bytes"),
            "{err}"
        );
        let err = run(
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            100,
        )
        .0
        .unwrap_err();
        assert!(matches!(err, AgentError::Io { .. }), "{err}");
    }

    #[test]
    fn request_validation_names_the_bad_part_without_values() {
        let bad = |method, path, headers: &[(&str, &str)]| {
            Request {
                method,
                path,
                headers,
                body: b"",
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        assert!(bad("GE T", "/", &[]).contains("method"));
        assert!(bad("GET", "x", &[]).contains("must start with '/'"));
        assert!(bad("GET", "/a b", &[]).contains("visible ASCII"));
        assert!(bad("GET", "/", &[("Host", "x")]).contains("set by the client"));
        let err = bad("GET", "/", &[("Authorization", "Bearer secret\r\nX: y")]);
        assert!(
            err.contains("Authorization") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("https://10.0.2.2:8443/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.0.2.2", 8443));
        let e = Endpoint::parse("https://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.authority(), "[::1]:9000");
        assert_eq!(Endpoint::parse("https://agent.example").unwrap().port, 443);
        for (bad, needle) in [
            ("http://h:1", "https://"),
            ("https://", "no host"),
            ("https://h:1/deploy", "without path"),
            ("https://u@h:1", "user info"),
            ("https://h:0", "port"),
            ("https://h:+1", "port"),
            ("https://h_1:1", "DNS name"),
            ("https://[zz]:1", "IPv6"),
        ] {
            let err = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
