//! Writing heads. The codec writes the framing header itself
//! (`Content-Length`), so callers' `Content-Length` and
//! `Transfer-Encoding` fields are dropped; every other field is checked
//! with [`check_header`] first, so nothing a peer sent can split a line.

use crate::error::excerpt;
use crate::head::{describe_control, is_tchar};
use crate::Error;

/// Whether `text` is an HTTP token (RFC 9110 §5.6.2): a method or a field name.
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// A header field fit to be written: a token name and a value without
/// control characters (HTAB aside) — no CR, LF or NUL. The error names the
/// field, never its value.
pub fn check_header(name: &str, value: &str) -> Result<(), Error> {
    if !is_token(name) {
        return Err(Error::InvalidHeader {
            name: excerpt(name.as_bytes()),
            why: "the name is not an HTTP token".into(),
        });
    }
    if let Some(&b) = value
        .as_bytes()
        .iter()
        .find(|&&b| (b < b' ' && b != b'\t') || b == 0x7f)
    {
        return Err(Error::InvalidHeader {
            name: name.to_owned(),
            why: format!("the value has {}", describe_control(b)),
        });
    }
    Ok(())
}

/// Whether the codec writes this field itself.
fn is_framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

fn write_fields<N: AsRef<str>, V: AsRef<str>>(
    out: &mut Vec<u8>,
    headers: impl IntoIterator<Item = (N, V)>,
    content_length: Option<u64>,
) -> Result<(), Error> {
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if is_framing(name) {
            continue;
        }
        check_header(name, value)?;
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    if let Some(length) = content_length {
        out.extend_from_slice(format!("Content-Length: {length}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Append `METHOD TARGET HTTP/1.1`, the fields in order, then
/// `Content-Length` when given, and the blank line. The target must be
/// origin-form and visible ASCII.
pub fn write_request_head<N: AsRef<str>, V: AsRef<str>>(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (N, V)>,
    content_length: Option<u64>,
) -> Result<(), Error> {
    if !is_token(method) {
        return Err(Error::InvalidStartLine(
            "request line: the method is not a token",
        ));
    }
    crate::head::check_origin_form(method, target)?;
    let start = out.len();
    for part in [method, " ", target, " HTTP/1.1\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    write_fields(out, headers, content_length).inspect_err(|_| out.truncate(start))
}

/// Append `HTTP/1.1 STATUS REASON`, the fields in order, `Content-Length`
/// and the blank line. The status must be 100 to 599, the reason free of
/// control characters.
pub fn write_response_head<N: AsRef<str>, V: AsRef<str>>(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    headers: impl IntoIterator<Item = (N, V)>,
    content_length: u64,
) -> Result<(), Error> {
    if !(100..=599).contains(&status) {
        return Err(Error::InvalidStartLine(
            "status line: the status is not 100 to 599",
        ));
    }
    if reason
        .bytes()
        .any(|b| (b < b' ' && b != b'\t') || b == 0x7f)
    {
        return Err(Error::InvalidStartLine(
            "status line: the reason has a control character",
        ));
    }
    let start = out.len();
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    write_fields(out, headers, Some(content_length)).inspect_err(|_| out.truncate(start))
}
