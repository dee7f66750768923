//! One streaming body reader for every framing, with a total cap.
//!
//! Errors come out of [`Read::read`] as [`io::Error`]s carrying an
//! [`Error`]; `Error::from(io_error)` gives it back.

use std::io::{self, BufRead, Read};

use crate::error::excerpt;
use crate::{Error, Framing, Limits};

/// A body being read from `R` (which holds what follows the head).
#[derive(Debug)]
pub struct BodyReader<R> {
    reader: R,
    state: State,
    /// Body bytes returned so far.
    received: u64,
    max_body: u64,
    max_chunk_line: usize,
    max_trailer_bytes: usize,
    /// The current chunk-size or trailer line (chunked bodies only).
    line: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length { expected: u64 },
    ChunkSize,
    ChunkData { left: u64 },
    ChunkEnd,
    Trailers { used: usize },
    UntilClose,
    Done,
}

/// How a framing line ended.
enum Line {
    /// A complete line is in `self.line`, line end stripped.
    Complete,
    /// Longer than the cap.
    TooLong,
    /// The stream ended first.
    Eof,
}

impl<R: BufRead> BodyReader<R> {
    /// A reader of the body framed by `framing`, at most
    /// [`Limits::max_body`] bytes. A declared length over the cap is refused
    /// here, before any body byte is read.
    pub fn new(reader: R, framing: Framing, limits: &Limits) -> Result<Self, Error> {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(expected) if expected > limits.max_body => {
                return Err(Error::BodyTooLarge {
                    declared: Some(expected),
                    limit: limits.max_body,
                })
            }
            Framing::Length(expected) => State::Length { expected },
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        Ok(BodyReader {
            reader,
            state,
            received: 0,
            max_body: limits.max_body,
            max_chunk_line: limits.max_chunk_line,
            max_trailer_bytes: limits.max_trailer_bytes,
            line: Vec::new(),
        })
    }

    /// Body bytes returned so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The whole body, appended to a new vector.
    pub fn read_to_vec(&mut self) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        self.read_to_end(&mut body)?;
        Ok(body)
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn next(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Length { expected } => {
                    let left = expected - self.received;
                    if left == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    let n = self.read_some(buf, left)?;
                    if n == 0 {
                        return Err(Error::BodyTruncated {
                            received: self.received,
                            expected: Some(expected),
                        });
                    }
                    return Ok(n);
                }
                State::ChunkSize => {
                    match self.read_line(self.max_chunk_line)? {
                        Line::Complete => {}
                        Line::TooLong => return Err(Error::ChunkLineTooLong(self.max_chunk_line)),
                        Line::Eof => return Err(self.truncated()),
                    }
                    let size = chunk_size(&self.line)?;
                    self.state = if size == 0 {
                        State::Trailers { used: 0 }
                    } else if size > self.max_body - self.received {
                        return Err(Error::BodyTooLarge {
                            declared: None,
                            limit: self.max_body,
                        });
                    } else {
                        State::ChunkData { left: size }
                    };
                }
                State::ChunkData { left } => {
                    let n = self.read_some(buf, left)?;
                    if n == 0 {
                        return Err(self.truncated());
                    }
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData { left }
                    };
                    return Ok(n);
                }
                State::ChunkEnd => match self.read_line(0)? {
                    Line::Complete => self.state = State::ChunkSize,
                    Line::TooLong => return Err(Error::ChunkNotTerminated),
                    Line::Eof => return Err(self.truncated()),
                },
                State::Trailers { used } => {
                    let budget = self.max_trailer_bytes.saturating_sub(used);
                    match self.read_line(budget)? {
                        Line::Complete if self.line.is_empty() => self.state = State::Done,
                        // Trailer fields are discarded: nothing here uses them.
                        Line::Complete => {
                            let used = used + self.line.len() + 2;
                            if used > self.max_trailer_bytes {
                                return Err(Error::TrailersTooLarge(self.max_trailer_bytes));
                            }
                            self.state = State::Trailers { used };
                        }
                        Line::TooLong => {
                            return Err(Error::TrailersTooLarge(self.max_trailer_bytes))
                        }
                        Line::Eof => return Err(self.truncated()),
                    }
                }
                State::UntilClose => {
                    let left = self.max_body - self.received;
                    if left == 0 {
                        // At the cap: one more byte means the body is over it.
                        let mut probe = [0u8; 1];
                        if self.read_retrying(&mut probe)? == 0 {
                            self.state = State::Done;
                            return Ok(0);
                        }
                        return Err(Error::BodyTooLarge {
                            declared: None,
                            limit: self.max_body,
                        });
                    }
                    let n = self.read_some(buf, left)?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
            }
        }
    }

    fn truncated(&self) -> Error {
        Error::BodyTruncated {
            received: self.received,
            expected: None,
        }
    }

    /// Read at most `left` bytes into `buf`, counting them.
    fn read_some(&mut self, buf: &mut [u8], left: u64) -> Result<usize, Error> {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.read_retrying(&mut buf[..want])?;
        self.received += n as u64;
        Ok(n)
    }

    fn read_retrying(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        loop {
            match self.reader.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map_err(Error::Io),
            }
        }
    }

    /// One framing line into `self.line` (LF or CRLF stripped), at most
    /// `max` bytes before the line end.
    fn read_line(&mut self, max: usize) -> Result<Line, Error> {
        self.line.clear();
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            };
            if available.is_empty() {
                return Ok(Line::Eof);
            }
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (&available[..=at], true),
                None => (available, false),
            };
            // Room for the line, its CR and its LF.
            if self.line.len() + chunk.len() > max.saturating_add(2) {
                return Ok(Line::TooLong);
            }
            self.line.extend_from_slice(chunk);
            let used = chunk.len();
            self.reader.consume(used);
            if done {
                self.line.pop();
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(if self.line.len() > max {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }
}

/// The size of a chunk-size line (`HEX[;extensions]`); extensions are
/// ignored, control characters (a bare CR above all) refused.
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
    let size_text = size_text.trim_ascii();
    let bad = |why| Error::BadChunkSize {
        text: excerpt(size_text),
        why,
    };
    if line.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(bad("has a control character in its line"));
    }
    if size_text.is_empty() || !size_text.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad("is not hexadecimal"));
    }
    let digits = std::str::from_utf8(size_text).map_err(|_| bad("is not hexadecimal"))?;
    u64::from_str_radix(digits, 16).map_err(|_| bad("is too large"))
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.next(buf).map_err(Error::into_io)
    }
}
