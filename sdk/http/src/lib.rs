//! Easy Enclave's one HTTP/1.1 codec, shared by the agent's server
//! (`ee-init`), its workload proxy and the SDK's agent client. Modelled on
//! Firecracker's `micro_http`: synchronous, bounded, no `unsafe`.
//!
//! - [`head`]: read a request or response head from a [`std::io::BufRead`]
//!   within [`Limits`] and parse it with `httparse`; request targets must be
//!   origin-form (`/path?query`).
//! - [`framing`]: how a body is delimited (RFC 9112 §6.3), decided in one
//!   place for requests and responses; ambiguous framing is refused.
//! - [`body`]: one streaming [`std::io::Read`] for `Content-Length`,
//!   chunked and read-to-close bodies, with a total cap.
//! - [`write`]: request and response heads, with the framing header
//!   written by the codec and every header field checked.
//!
//! Every refusal is an [`Error`] variant naming the problem; a server
//! answers with [`Error::status`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod body;
mod error;
pub mod framing;
pub mod head;
pub mod write;

pub use body::BodyReader;
pub use error::Error;
pub use framing::{request_framing, response_framing, Framing};
pub use head::{
    check_origin_form, parse_request_head, parse_response_head, read_head, read_request_head,
    read_response_head, RequestHead, ResponseHead,
};
pub use write::{check_header, is_token, write_request_head, write_response_head};

/// Every size cap of the codec, in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request or status line, CRLF excluded (default 8 KiB;
    /// [`Error::StartLineTooLong`], 414, beyond).
    pub max_start_line: usize,
    /// Largest header section: the header lines with their line ends,
    /// the final blank line excluded (default 16 KiB;
    /// [`Error::HeadTooLarge`], 431, beyond).
    pub max_header_bytes: usize,
    /// Most header fields (default 64; [`Error::TooManyHeaders`], 431, beyond).
    pub max_headers: usize,
    /// Largest body, whatever its framing (default 1 MiB;
    /// [`Error::BodyTooLarge`], 413, beyond).
    pub max_body: u64,
    /// Longest chunk-size line, extensions included, line end excluded
    /// (default 1 KiB; [`Error::ChunkLineTooLong`] beyond).
    pub max_chunk_line: usize,
    /// Largest trailer section of a chunked body, line ends included
    /// (default 4 KiB; [`Error::TrailersTooLarge`] beyond). Trailers are
    /// read and discarded.
    pub max_trailer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_start_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body: 1024 * 1024,
            max_chunk_line: 1024,
            max_trailer_bytes: 4 * 1024,
        }
    }
}

impl Limits {
    /// The largest head [`read_head`] accepts: a start line and a header
    /// section at their caps, each with CRLF.
    pub fn max_head_bytes(&self) -> usize {
        self.max_start_line
            .saturating_add(self.max_header_bytes)
            .saturating_add(4)
    }
}

#[cfg(test)]
mod tests;
