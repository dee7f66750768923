//! Heads: read the bytes of one head within [`Limits`], then parse the
//! request line or status line and the header fields with `httparse`.
//!
//! Lines end with CRLF; a bare LF is accepted as a line end too (RFC 9112
//! §2.2 allows it, and some simple servers send it), a bare CR anywhere is
//! refused. Obsolete line folding is refused. An empty line before the
//! start line is not skipped: it is a malformed start line.

use std::io::{self, BufRead};

use crate::error::excerpt;
use crate::{Error, Limits};

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method token, e.g. `GET`.
    pub method: String,
    /// The origin-form target: `/path` with an optional `?query`.
    pub target: String,
    /// Minor HTTP version: 0 or 1.
    pub version: u8,
    /// Header fields in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Minor HTTP version: 0 or 1.
    pub version: u8,
    /// Status code, 100 to 599.
    pub status: u16,
    /// Reason phrase (lossily decoded).
    pub reason: String,
    /// Header fields in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
}

/// Read one head (start line, header lines, blank line) from `reader` into
/// `buf`, consuming exactly those bytes: the body stays in `reader`.
///
/// `buf` is cleared and grows to at most [`Limits::max_head_bytes`], in one
/// allocation when it starts empty, so a caller wiping it on drop leaves no
/// unwiped copy behind.
pub fn read_head<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(), Error> {
    buf.clear();
    buf.reserve_exact(limits.max_head_bytes());
    // Index just past the start line's LF, once it is read.
    let mut start_end: Option<usize> = None;
    // Index where the current line begins.
    let mut line_start = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        };
        if available.is_empty() {
            return Err(if buf.is_empty() {
                Error::Closed
            } else {
                Error::HeadTruncated
            });
        }
        // The bytes this section may still hold: the start line with its
        // CRLF, then the header section with the blank line's CRLF.
        let cap = match start_end {
            None => limits.max_start_line.saturating_add(2),
            Some(end) => end
                .saturating_add(limits.max_header_bytes)
                .saturating_add(2),
        };
        let (chunk, line_done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let room = cap.saturating_sub(buf.len());
        if chunk.len() > room {
            return Err(too_large(start_end, limits));
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len();
        reader.consume(used);
        if !line_done {
            continue;
        }
        let line = strip_line_end(&buf[line_start..]);
        let line_empty = line.is_empty();
        let line_len = line.len();
        match start_end {
            None => {
                if line_len > limits.max_start_line {
                    return Err(Error::StartLineTooLong(limits.max_start_line));
                }
                start_end = Some(buf.len());
            }
            Some(_) if line_empty => return Ok(()),
            Some(end) => {
                if buf.len() - end > limits.max_header_bytes {
                    return Err(Error::HeadTooLarge(limits.max_header_bytes));
                }
            }
        }
        line_start = buf.len();
    }
}

fn too_large(start_end: Option<usize>, limits: &Limits) -> Error {
    match start_end {
        None => Error::StartLineTooLong(limits.max_start_line),
        Some(_) => Error::HeadTooLarge(limits.max_header_bytes),
    }
}

/// A line without its LF or CRLF.
fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first line of `head`, with its line end.
fn first_line_raw(head: &[u8]) -> &[u8] {
    let end = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |at| at + 1);
    &head[..end]
}

/// The first line of `head`, without its line end.
fn first_line(head: &[u8]) -> &[u8] {
    strip_line_end(first_line_raw(head))
}

/// Whether httparse accepts the start line alone: it then waits for the
/// header section (`Partial`), so whatever it refused is in a header line.
fn start_line_ok(head: &[u8], request: bool) -> bool {
    let line = first_line_raw(head);
    let mut none = [];
    if request {
        matches!(
            httparse::Request::new(&mut none).parse(line),
            Ok(httparse::Status::Partial)
        )
    } else {
        matches!(
            httparse::Response::new(&mut none).parse(line),
            Ok(httparse::Status::Partial)
        )
    }
}

/// [`read_head`] then [`parse_request_head`].
pub fn read_request_head<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<RequestHead, Error> {
    read_head(reader, buf, limits)?;
    parse_request_head(buf, limits)
}

/// [`read_head`] then [`parse_response_head`].
pub fn read_response_head<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<ResponseHead, Error> {
    read_head(reader, buf, limits)?;
    parse_response_head(buf, limits)
}

/// Parse a complete request head (as [`read_head`] returns it).
pub fn parse_request_head(head: &[u8], limits: &Limits) -> Result<RequestHead, Error> {
    let start = first_line(head);
    if start.is_empty() {
        return Err(Error::MalformedRequestLine("empty line".into()));
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut request = httparse::Request::new(&mut slots);
    let parsed = request.parse(head);
    match parsed {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::HeadTruncated),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::TooManyHeaders(limits.max_headers))
        }
        Err(e) => return Err(request_problem(head, e)),
    }
    let method = request.method.unwrap_or_default();
    let target = request.path.unwrap_or_default();
    check_origin_form(method, target)?;
    Ok(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version: request.version.unwrap_or(1),
        headers: owned_headers(request.headers)?,
    })
}

/// Parse a complete response head (as [`read_head`] returns it). Any
/// status from 100 to 599 is returned; whether a 1xx is welcome is the
/// caller's business.
pub fn parse_response_head(head: &[u8], limits: &Limits) -> Result<ResponseHead, Error> {
    let start = first_line(head);
    let bad = |why: &str| Error::MalformedStatusLine {
        line: excerpt(start),
        why: why.to_owned(),
    };
    if !(start.starts_with(b"HTTP/1.0 ") || start.starts_with(b"HTTP/1.1 ")) {
        return Err(bad("not HTTP/1.x"));
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::HeadTruncated),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::TooManyHeaders(limits.max_headers))
        }
        Err(e) => {
            return Err(match start_line_ok(head, false) {
                true => header_problem(head),
                false => {
                    let code = start.split(|&b| b == b' ').nth(1).unwrap_or_default();
                    bad(&format!(
                        "status code {:?} is not three digits, or the line has a control character ({e})",
                        excerpt(code)
                    ))
                }
            });
        }
    }
    let status = response.code.unwrap_or_default();
    if !(100..=599).contains(&status) {
        return Err(bad(&format!("status code {status} is not 100 to 599")));
    }
    Ok(ResponseHead {
        version: response.version.unwrap_or(1),
        status,
        reason: String::from_utf8_lossy(response.reason.unwrap_or_default().as_bytes())
            .into_owned(),
        headers: owned_headers(response.headers)?,
    })
}

/// Name what httparse refused in a request head: the request line, or a
/// header line.
fn request_problem(head: &[u8], e: httparse::Error) -> Error {
    match start_line_ok(head, true) {
        true => header_problem(head),
        false => {
            let start = first_line(head);
            let version = start.split(|&b| b == b' ').nth(2).unwrap_or_default();
            if e == httparse::Error::Version
                && version.starts_with(b"HTTP/")
                && start.split(|&b| b == b' ').count() == 3
            {
                Error::Version(excerpt(version))
            } else {
                Error::MalformedRequestLine(
                    match e {
                        httparse::Error::Token => "invalid method or target",
                        httparse::Error::Version => "missing or malformed HTTP version",
                        _ => "bad line end",
                    }
                    .to_owned()
                        + " (expected `METHOD /path HTTP/1.1` separated by single spaces)",
                )
            }
        }
    }
}

/// The first bad header line of `head`, named (never quoting a value).
fn header_problem(head: &[u8]) -> Error {
    let mut lines = head.split_inclusive(|&b| b == b'\n').skip(1);
    let mut number = 1;
    let problem = lines.find_map(|raw| {
        number += 1;
        let line = strip_line_end(raw);
        if line.is_empty() {
            return None;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Some(format!(
                "obsolete line folding is not accepted (line {number})"
            ));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Some(format!("a header line without ':' (line {number})"));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Some(format!("invalid header name {:?}", excerpt(name)));
        }
        let name = excerpt(name);
        value
            .iter()
            .find(|&&b| (b < b' ' && b != b'\t') || b == 0x7f)
            .map(|&b| format!("header {name} has {} in its value", describe_control(b)))
    });
    Error::MalformedHeader(problem.unwrap_or_else(|| "malformed header section".into()))
}

/// A control byte in words, for error messages.
pub(crate) fn describe_control(b: u8) -> String {
    match b {
        b'\r' => "a bare CR".into(),
        b'\n' => "a bare LF".into(),
        other => format!("the control character 0x{other:02x}"),
    }
}

pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Header fields as owned strings; values must be UTF-8.
fn owned_headers(headers: &[httparse::Header<'_>]) -> Result<Vec<(String, String)>, Error> {
    headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value).map_err(|_| {
                Error::MalformedHeader(format!("the value of header {} is not UTF-8", h.name))
            })?;
            let value = value.trim_matches(|c| c == ' ' || c == '\t');
            Ok((h.name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Refuse any target but origin-form (`/path?query`, RFC 9112 §3.2.1):
/// absolute-form (`http://host/`), authority-form (`CONNECT host:port`),
/// asterisk-form (`*`), a path starting `//` (read as an authority by some
/// URL parsers), and bytes that are not visible ASCII.
pub fn check_origin_form(method: &str, target: &str) -> Result<(), Error> {
    let bad = |why| Error::BadTarget {
        target: excerpt(target.as_bytes()),
        why,
    };
    if method == "CONNECT" {
        return Err(bad("is for CONNECT, which is not served"));
    }
    if !target.starts_with('/') {
        return Err(bad("must be a path starting with '/' (origin-form)"));
    }
    if target.starts_with("//") {
        return Err(bad("must not start with '//'"));
    }
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("must be visible ASCII (percent-encode the rest)"));
    }
    Ok(())
}
