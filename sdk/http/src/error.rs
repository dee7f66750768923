//! The codec's one error type.

use std::io;

/// Why a head or body was refused. Messages name the problem and never
/// quote a header value (it may be a credential).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream ended before the first byte of a head.
    #[error("the connection closed before a message")]
    Closed,
    /// The stream ended inside a head.
    #[error("the connection closed inside the headers")]
    HeadTruncated,
    /// The request or status line is longer than [`crate::Limits::max_start_line`].
    #[error("request or status line longer than {0} bytes")]
    StartLineTooLong(usize),
    /// The header section is larger than [`crate::Limits::max_header_bytes`].
    #[error("header section larger than {0} bytes")]
    HeadTooLarge(usize),
    /// More header fields than [`crate::Limits::max_headers`].
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// The request line is not `METHOD TARGET HTTP/1.x`.
    #[error("malformed request line: {0}")]
    MalformedRequestLine(String),
    /// The request target is not origin-form (`/path?query`): absolute-form,
    /// authority-form (`CONNECT`), asterisk-form, `//...`, or bytes that are
    /// not visible ASCII.
    #[error("malformed request line: target {target:?} {why}")]
    BadTarget {
        /// The target (an excerpt).
        target: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The status line is not `HTTP/1.x NNN reason`.
    #[error("malformed status line {line:?}: {why}")]
    MalformedStatusLine {
        /// The status line (an excerpt).
        line: String,
        /// What is wrong with it.
        why: String,
    },
    /// An HTTP version other than 1.0 and 1.1.
    #[error("HTTP version {0:?} is not supported (use HTTP/1.1)")]
    Version(String),
    /// A header line that is not `name: value` with a token name and a value
    /// without control characters; obsolete line folding is refused.
    #[error("malformed header field: {0}")]
    MalformedHeader(String),
    /// Content-Length is not a single decimal number within `u64`.
    #[error("invalid Content-Length {value:?}: {why}")]
    InvalidContentLength {
        /// The value (an excerpt).
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// More than one Content-Length field (even with equal values).
    #[error("conflicting Content-Length headers: more than one (even equal ones are refused)")]
    DuplicateContentLength,
    /// Content-Length and Transfer-Encoding together: a smuggling shape.
    #[error("both Transfer-Encoding and Content-Length: ambiguous framing")]
    LengthAndTransferEncoding,
    /// A Transfer-Encoding other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding {0:?} (only `chunked`, alone, is accepted)")]
    UnsupportedTransferEncoding(String),
    /// The body is over [`crate::Limits::max_body`].
    #[error("{}", too_large(*declared, *limit))]
    BodyTooLarge {
        /// The declared Content-Length, when there is one.
        declared: Option<u64>,
        /// The cap.
        limit: u64,
    },
    /// The stream ended before the body did.
    #[error("{}", truncated(*received, *expected))]
    BodyTruncated {
        /// Body bytes received.
        received: u64,
        /// The declared Content-Length; `None` for a chunked body.
        expected: Option<u64>,
    },
    /// A chunk-size line that is not hexadecimal or overflows `u64`.
    #[error("chunk size {text:?} {why}")]
    BadChunkSize {
        /// The size text (an excerpt).
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A chunk-size line longer than [`crate::Limits::max_chunk_line`].
    #[error("chunk-size line longer than {0} bytes")]
    ChunkLineTooLong(usize),
    /// Chunk data not followed by CRLF.
    #[error("a chunk is longer than its size: its data is not followed by CRLF")]
    ChunkNotTerminated,
    /// Trailer section larger than [`crate::Limits::max_trailer_bytes`].
    #[error("trailer section larger than {0} bytes")]
    TrailersTooLarge(usize),
    /// A header field that cannot be written: not a token name, or a value
    /// with a control character.
    #[error("cannot write header {name:?}: {why}")]
    InvalidHeader {
        /// The name (an excerpt).
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A request line or status line that cannot be written.
    #[error("cannot write the {0}")]
    InvalidStartLine(&'static str),
    /// Reading the stream failed.
    #[error("read failed: {0}")]
    Io(io::Error),
}

fn too_large(declared: Option<u64>, limit: u64) -> String {
    match declared {
        Some(got) => format!("body of {got} bytes exceeds the limit of {limit} bytes"),
        None => format!("body exceeds the limit of {limit} bytes"),
    }
}

fn truncated(received: u64, expected: Option<u64>) -> String {
    match expected {
        Some(total) => format!("the body ended after {received} of {total} bytes"),
        None => format!("the connection closed inside a chunked body after {received} bytes"),
    }
}

impl Error {
    /// The status a server answers with, or `None` when the peer is gone
    /// (or the error is the server's own).
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            Error::Closed | Error::Io(_) => return None,
            Error::StartLineTooLong(_) => 414,
            Error::HeadTooLarge(_) | Error::TooManyHeaders(_) | Error::TrailersTooLarge(_) => 431,
            Error::BodyTooLarge { .. } => 413,
            Error::UnsupportedTransferEncoding(_) => 501,
            Error::Version(_) => 505,
            Error::InvalidHeader { .. } | Error::InvalidStartLine(_) => 500,
            Error::HeadTruncated
            | Error::MalformedRequestLine(_)
            | Error::BadTarget { .. }
            | Error::MalformedStatusLine { .. }
            | Error::MalformedHeader(_)
            | Error::InvalidContentLength { .. }
            | Error::DuplicateContentLength
            | Error::LengthAndTransferEncoding
            | Error::BodyTruncated { .. }
            | Error::BadChunkSize { .. }
            | Error::ChunkLineTooLong(_)
            | Error::ChunkNotTerminated => 400,
        })
    }

    /// This error as an [`io::Error`] (for [`std::io::Read`]); [`From`]
    /// turns it back.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            Error::Io(e) => e,
            other => {
                let kind = match other {
                    Error::BodyTruncated { .. } => io::ErrorKind::UnexpectedEof,
                    _ => io::ErrorKind::InvalidData,
                };
                io::Error::new(kind, other)
            }
        }
    }
}

impl From<io::Error> for Error {
    /// The codec error carried by an [`io::Error`] from [`crate::BodyReader`],
    /// or [`Error::Io`] for a transport error.
    fn from(e: io::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => Error::Io(e),
        }
    }
}

/// At most 80 characters of `bytes`, for quoting peer input in errors.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}
