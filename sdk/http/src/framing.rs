//! How a message's body is delimited (RFC 9112 §6.3), decided here once for
//! requests and responses. Anything a peer could read two ways is refused:
//! Content-Length with Transfer-Encoding, more than one Content-Length
//! (even with equal values), a Content-Length that is not plain digits, and
//! any transfer coding but a lone `chunked`.

use crate::error::excerpt;
use crate::Error;

/// Where a body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding (RFC 9112 §7.1).
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// The framing of a request: Content-Length, chunked, or no body.
pub fn request_framing(headers: &[(String, String)]) -> Result<Framing, Error> {
    from_headers(headers, Framing::Empty)
}

/// The framing of a response to a request (`head_request`: it was `HEAD`).
/// Responses to HEAD, 1xx, 204 and 304 have no body whatever their headers
/// say; without Content-Length or Transfer-Encoding the body runs until
/// the peer closes.
pub fn response_framing(
    head_request: bool,
    status: u16,
    headers: &[(String, String)],
) -> Result<Framing, Error> {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    from_headers(headers, Framing::UntilClose)
}

fn from_headers(headers: &[(String, String)], otherwise: Framing) -> Result<Framing, Error> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let mut lengths = named("content-length");
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(Error::DuplicateContentLength);
    }
    let mut encodings = named("transfer-encoding").peekable();
    if encodings.peek().is_some() {
        if length.is_some() {
            return Err(Error::LengthAndTransferEncoding);
        }
        // Every coding of every Transfer-Encoding field, in order.
        let codings: Vec<&str> = encodings
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        return match codings.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(Error::UnsupportedTransferEncoding(excerpt(
                codings.join(", ").as_bytes(),
            ))),
        };
    }
    let Some(value) = length else {
        return Ok(otherwise);
    };
    let invalid = |why| Error::InvalidContentLength {
        value: excerpt(value.as_bytes()),
        why,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("not a number"));
    }
    let length: u64 = value.parse().map_err(|_| invalid("out of range"))?;
    Ok(Framing::Length(length))
}
