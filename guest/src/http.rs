//! A small HTTPS (HTTP/1.1 over TLS) server on std::net for the agent API.
//!
//! Deliberately minimal: one request per connection (`Connection: close`),
//! no chunked bodies, hard caps on the request line, the header section, the
//! header count and the body, and a per-read timeout. Each connection gets its
//! own thread, which also runs the handshake. PID1's main loop never touches a
//! client socket, so a slow or stuck client cannot delay reaping or shutdown.
//!
//! A connection goes through two budgets, so that no kind of client can take
//! the slots another kind needs ([`Limits`]):
//!
//! 1. **Opening** (TLS handshake and request head): bounded in number and per
//!    client address, and by a short [`Limits::head_timeout`]. When the
//!    opening budget (or a client's share of it) is full, a new connection
//!    evicts the oldest opening one of the client holding the most, rather
//!    than being refused: idle or slow-loris connections then cannot lock
//!    newcomers out, they only make each other's life short.
//! 2. Once the head is read, the [`Handler`] names the request's [`Class`]
//!    (health, API, deploy, workload), each with its own total and per-client
//!    cap (503 with `Retry-After` when full). Only then is the body read, and
//!    only if the handler asks for it ([`Body`]): a handler can refuse a
//!    request, for example one without credentials, before a large body is
//!    read. The whole request must arrive within [`Limits::request_deadline`].
//!
//! The TLS configuration (certificate, versions) comes from [`crate::tls`];
//! parsing, framing and response heads from the shared codec `ee-http` (this
//! module keeps the server: budgets, classes, admission, deadlines). Request
//! handling is generic over [`BufRead`] + [`Write`]. Header values and
//! bodies (which carry tokens and private values) are wiped when dropped.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ee_http::Framing;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use zeroize::{Zeroize, Zeroizing};

use crate::say;

/// How many connections a budget admits at once, in all and from one client
/// address. Behind QEMU's user network every client arrives from the same
/// address (the slirp gateway), so there the per-client cap is the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most connections in the budget.
    pub total: usize,
    /// Most connections in the budget from one client address.
    pub per_peer: usize,
}

/// What a request is, for the budget it is served from ([`Handler::class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `GET /health`: answered at once, kept apart so that it stays reachable.
    Health,
    /// The rest of the agent API (attestation, status, errors).
    Api,
    /// `POST /deploy`: holds its slot while GitHub is asked.
    Deploy,
    /// `/app/...`: holds its slot while the workload answers.
    App,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Health => "health",
            Class::Api => "API",
            Class::Deploy => "deploy",
            Class::App => "workload (/app)",
        })
    }
}

/// Resource caps for connections and requests.
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
    /// `(method, path, limit)`: requests that may carry a larger body than
    /// `max_body`. Only the one endpoint that needs it gets the large cap, so
    /// a client cannot make every connection buffer megabytes.
    pub large_bodies: &'static [(&'static str, &'static str, usize)],
    /// Timeout for each read and write on the socket.
    pub io_timeout: Duration,
    /// The TLS handshake and the request head (request line and headers)
    /// must arrive within this time of the connection's acceptance (408
    /// after, or the connection is closed if the handshake is not done).
    /// Short: a client that has not even said what it wants holds an opening
    /// slot meanwhile.
    pub head_timeout: Duration,
    /// The whole request, body included, must arrive within this time of the
    /// connection's acceptance (408 after).
    pub request_deadline: Duration,
    /// Connections in the TLS handshake or the request head.
    pub opening: Budget,
    /// Requests of [`Class::Health`].
    pub health: Budget,
    /// Requests of [`Class::Api`].
    pub api: Budget,
    /// Requests of [`Class::Deploy`].
    pub deploy: Budget,
    /// Requests of [`Class::App`].
    pub app: Budget,
}

impl Limits {
    /// The budget of `class`.
    pub fn budget(&self, class: Class) -> Budget {
        match class {
            Class::Health => self.health,
            Class::Api => self.api,
            Class::Deploy => self.deploy,
            Class::App => self.app,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body: 64 * 1024,
            large_bodies: &[],
            io_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(5),
            request_deadline: Duration::from_secs(30),
            opening: Budget {
                total: 64,
                per_peer: 16,
            },
            health: Budget {
                total: 16,
                per_peer: 8,
            },
            api: Budget {
                total: 16,
                per_peer: 8,
            },
            deploy: Budget {
                total: 4,
                per_peer: 2,
            },
            app: Budget {
                total: 64,
                per_peer: 32,
            },
        }
    }
}

/// A parsed request head; the body is read on demand through [`Body`].
/// Header values (an `Authorization` token among them) are wiped on drop.
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
    /// The declared body length (0 without Content-Length); within the cap.
    pub content_length: u64,
    /// The client's address, when the request came over a socket.
    pub peer: Option<IpAddr>,
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

    /// The value of the first header field called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        for (_, value) in &mut self.headers {
            value.zeroize();
        }
    }
}

/// A request's body, read when the handler asks for it: a handler that
/// refuses the request (no credentials) never makes the server read it.
/// The bytes are wiped on drop.
pub struct Body<'a> {
    state: BodyState<'a>,
}

enum BodyState<'a> {
    Unread {
        reader: &'a mut dyn BufRead,
        length: u64,
    },
    Read(Zeroizing<Vec<u8>>),
}

impl<'a> Body<'a> {
    /// A body still on the wire: `length` bytes (already checked against the cap).
    pub fn unread(reader: &'a mut dyn BufRead, length: u64) -> Self {
        Body {
            state: BodyState::Unread { reader, length },
        }
    }

    /// A body already in memory (tests, and requests built in-process).
    pub fn from_bytes(bytes: Vec<u8>) -> Body<'static> {
        Body {
            state: BodyState::Read(Zeroizing::new(bytes)),
        }
    }

    /// Read the whole body (once; later calls return the same bytes).
    pub fn read(&mut self) -> Result<&[u8], RequestError> {
        if let BodyState::Unread { reader, length } = &mut self.state {
            let length = *length;
            let too_large = || {
                RequestError::Http(ee_http::Error::BodyTooLarge {
                    declared: Some(length),
                    limit: usize::MAX as u64,
                })
            };
            let size = usize::try_from(length).map_err(|_| too_large())?;
            let limits = ee_http::Limits {
                max_body: length,
                ..ee_http::Limits::default()
            };
            let mut wire =
                ee_http::BodyReader::new(&mut **reader, Framing::Length(length), &limits)
                    .map_err(from_codec)?;
            // One buffer of the declared size (within the cap), filled in
            // place: never reallocated, so no unwiped copy is left behind.
            let mut body = Zeroizing::new(vec![0u8; size]);
            wire.read_exact(&mut body)
                .map_err(|e| from_codec(e.into()))?;
            self.state = BodyState::Read(body);
        }
        match &self.state {
            BodyState::Read(body) => Ok(body),
            BodyState::Unread { .. } => Err(RequestError::Closed),
        }
    }

    /// [`Body::read`], or the response to send when the body could not be read.
    pub fn read_or_answer(&mut self) -> Result<&[u8], Response> {
        self.read().map_err(|e| {
            let status = e.status().unwrap_or(400);
            Response::error(status, e.to_string())
        })
    }
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra header fields (besides Content-Length, Connection and
    /// Cache-Control); a `Content-Type` here replaces the JSON default.
    pub headers: Vec<(&'static str, String)>,
    /// The body: JSON, or what `Content-Type` says (a proxied answer).
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

    /// Serialize status line, headers and body. A header the codec refuses
    /// to write (a control character in a value) turns the response into a
    /// 500 naming it, rather than a split header line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let is_type = |name: &str| name.eq_ignore_ascii_case("content-type");
        let content_type = self
            .headers
            .iter()
            .find(|(name, _)| is_type(name))
            .map_or("application/json", |(_, value)| value.as_str());
        let fixed = [
            ("Content-Type", content_type),
            ("Connection", "close"),
            ("Cache-Control", "no-store"),
        ];
        let extra = self
            .headers
            .iter()
            .filter(|(name, _)| !is_type(name))
            .map(|(name, value)| (*name, value.as_str()));
        let mut bytes = Vec::with_capacity(256 + self.body.len());
        let head = ee_http::write_response_head(
            &mut bytes,
            self.status,
            reason_phrase(self.status),
            fixed.into_iter().chain(extra),
            self.body.len() as u64,
        );
        match head {
            Ok(()) => {
                bytes.extend_from_slice(&self.body);
                bytes
            }
            Err(e) => Response::error(500, format!("cannot send the response: {e}")).to_bytes(),
        }
    }
}

/// Standard reason phrase of the status codes this server uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The codec refused the head or the body; the message names the problem.
    #[error("{0}")]
    Http(ee_http::Error),
    /// A chunked request body: the server needs the length up front (one
    /// wiped buffer of the declared size, checked against the cap).
    #[error("chunked request bodies are not supported; send a Content-Length")]
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
            RequestError::Http(e) => e.status(),
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

fn from_codec(e: ee_http::Error) -> RequestError {
    match e {
        ee_http::Error::Closed => RequestError::Closed,
        ee_http::Error::Io(e) => io_error(e),
        other => RequestError::Http(other),
    }
}

/// Read and parse one request head within `limits` (with the codec,
/// `ee-http`); the body, if any, is left on the wire for [`Body`].
pub fn read_head<R: BufRead>(reader: &mut R, limits: &Limits) -> Result<Request, RequestError> {
    let codec = ee_http::Limits {
        max_start_line: limits.max_request_line,
        max_header_bytes: limits.max_header_bytes,
        max_headers: limits.max_headers,
        ..ee_http::Limits::default()
    };
    // Wiped on drop: a header may carry a token. The codec fills it in one
    // allocation, never reallocated.
    let mut raw = Zeroizing::new(Vec::new());
    let head = ee_http::read_request_head(reader, &mut raw, &codec).map_err(from_codec)?;
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    // The values move into the request, which wipes them on drop.
    let headers = head
        .headers
        .into_iter()
        .map(|(mut name, value)| {
            name.make_ascii_lowercase();
            (name, value)
        })
        .collect();
    let mut request = Request {
        method: head.method,
        path,
        query,
        headers,
        content_length: 0,
        peer: None,
    };
    let length = match ee_http::request_framing(&request.headers).map_err(from_codec)? {
        Framing::Length(length) => length,
        Framing::Chunked => return Err(RequestError::TransferEncoding),
        Framing::Empty | Framing::UntilClose => 0,
    };
    let max_body = limits
        .large_bodies
        .iter()
        .find(|(m, p, _)| *m == request.method && *p == request.path)
        .map_or(limits.max_body, |&(_, _, limit)| limit);
    if length > max_body as u64 {
        return Err(RequestError::Http(ee_http::Error::BodyTooLarge {
            declared: Some(length),
            limit: max_body as u64,
        }));
    }
    request.content_length = length;
    Ok(request)
}

/// Answers requests. Implementations must not block for long: each request
/// holds a slot of its class's budget.
pub trait Handler: Send + Sync + 'static {
    /// The budget `head` is served from, decided from the head alone (the
    /// body is not read yet). [`Class::Api`] unless the handler says otherwise.
    fn class(&self, head: &Request) -> Class {
        let _ = head;
        Class::Api
    }

    /// Produce the response to `request`, reading `body` only if it needs
    /// it: a request refused without its body costs no more than its head.
    fn handle(&self, request: &Request, body: &mut Body<'_>) -> Response;
}

/// Read one request head, let `admit` decide whether it is served (it may
/// answer itself, or drop the connection with `Err(None)`), then let the
/// handler answer, reading the body if it wants it. Nothing is written when
/// the peer left before sending a request. Generic over the transport: the
/// TLS stream when serving, an in-memory buffer in tests.
pub fn answer<S: BufRead + Write, G>(
    stream: &mut S,
    limits: &Limits,
    handler: &dyn Handler,
    peer: Option<IpAddr>,
    admit: impl FnOnce(&Request, &mut S) -> Result<G, Option<Response>>,
) -> io::Result<()> {
    let mut head = match read_head(stream, limits) {
        Ok(head) => head,
        Err(e) => {
            return match e.status() {
                Some(status) => send(stream, &Response::error(status, e.to_string())),
                None => Ok(()),
            }
        }
    };
    head.peer = peer;
    let _admitted = match admit(&head, stream) {
        Ok(admitted) => admitted,
        Err(Some(response)) => return send(stream, &response),
        Err(None) => return Ok(()),
    };
    let length = head.content_length;
    let response = handler.handle(&head, &mut Body::unread(stream, length));
    send(stream, &response)
}

fn send<S: Write>(stream: &mut S, response: &Response) -> io::Result<()> {
    stream.write_all(&response.to_bytes())?;
    stream.flush()
}

/// The socket with a deadline on everything read from it: each read's
/// timeout is the smaller of the per-read timeout and the time left, so the
/// TLS handshake and the request head must arrive within
/// [`Limits::head_timeout`], the rest of the request within
/// [`Limits::request_deadline`]. Writes keep the socket's per-write timeout.
struct DeadlineStream<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    io_timeout: Duration,
}

impl DeadlineStream<'_> {
    /// Set the read timeout for the next read, or fail once the deadline passed.
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream
            .set_read_timeout(Some(left.min(self.io_timeout)))
    }

    /// The first byte the client sent, without consuming it; `None` if it
    /// closed without sending anything.
    fn peek_first_byte(&self) -> io::Result<Option<u8>> {
        self.arm()?;
        let mut byte = [0u8; 1];
        Ok((self.stream.peek(&mut byte)? == 1).then_some(byte[0]))
    }
}

impl Read for DeadlineStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        (&*self.stream).read(buf)
    }
}

impl Write for DeadlineStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below is a single push, remove or counter change:
    // consistent even if a thread panicked while holding the lock.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection in the opening stage, with a handle on its socket so that
/// a newcomer can evict it.
struct OpeningEntry {
    id: u64,
    peer: SocketAddr,
    since: Instant,
    socket: TcpStream,
}

/// The connections in the opening stage (handshake and request head).
#[derive(Default)]
struct Opening {
    next_id: u64,
    entries: Vec<OpeningEntry>,
}

impl Opening {
    /// Make room for a connection from `peer` within `budget`: the evicted
    /// entries (their sockets still to be shut down).
    fn make_room(&mut self, peer: IpAddr, budget: Budget) -> Vec<OpeningEntry> {
        let mut evicted = Vec::new();
        loop {
            let from_peer = self.entries.iter().filter(|e| e.peer.ip() == peer).count();
            let victim_peer = if from_peer >= budget.per_peer.max(1) {
                peer
            } else if self.entries.len() >= budget.total.max(1) {
                // The client holding the most opening connections gives one up.
                let mut counts: HashMap<IpAddr, usize> = HashMap::new();
                for entry in &self.entries {
                    *counts.entry(entry.peer.ip()).or_default() += 1;
                }
                match counts.into_iter().max_by_key(|&(_, count)| count) {
                    Some((busiest, _)) => busiest,
                    None => return evicted,
                }
            } else {
                return evicted;
            };
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.peer.ip() == victim_peer)
                .min_by_key(|(_, e)| e.since)
                .map(|(at, _)| at);
            match oldest {
                Some(at) => evicted.push(self.entries.remove(at)),
                None => return evicted,
            }
        }
    }

    fn insert(&mut self, peer: SocketAddr, socket: TcpStream) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.entries.push(OpeningEntry {
            id,
            peer,
            since: Instant::now(),
            socket,
        });
        id
    }

    /// Remove entry `id`; false if it was evicted already.
    fn remove(&mut self, id: u64) -> bool {
        match self.entries.iter().position(|e| e.id == id) {
            Some(at) => {
                self.entries.remove(at);
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the opening stage; leaves it when dropped.
struct OpeningTicket {
    server: Arc<Server>,
    id: u64,
}

impl OpeningTicket {
    /// Leave the opening stage; false if the connection was evicted.
    fn leave(&self) -> bool {
        lock(&self.server.opening).remove(self.id)
    }
}

impl Drop for OpeningTicket {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Requests being served, per class and per client address.
#[derive(Default)]
struct InFlight {
    totals: HashMap<Class, usize>,
    per_peer: HashMap<(Class, IpAddr), usize>,
}

/// A request's slot in its class's budget; released when dropped.
struct ClassSlot {
    server: Arc<Server>,
    class: Class,
    peer: IpAddr,
}

impl ClassSlot {
    /// Take a slot of `class` for `peer`, or say why there is none.
    fn take(server: &Arc<Server>, class: Class, peer: IpAddr) -> Result<ClassSlot, String> {
        let budget = server.limits.budget(class);
        let mut in_flight = lock(&server.in_flight);
        let total = in_flight.totals.get(&class).copied().unwrap_or(0);
        let mine = in_flight.per_peer.get(&(class, peer)).copied().unwrap_or(0);
        if total >= budget.total {
            return Err(format!(
                "all {} {class} request slots are busy; retry shortly",
                budget.total
            ));
        }
        if mine >= budget.per_peer {
            return Err(format!(
                "this client address already has {mine} {class} requests in progress, \
                 the most one address may have; retry when one is done"
            ));
        }
        *in_flight.totals.entry(class).or_default() += 1;
        *in_flight.per_peer.entry((class, peer)).or_default() += 1;
        Ok(ClassSlot {
            server: server.clone(),
            class,
            peer,
        })
    }
}

impl Drop for ClassSlot {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.server.in_flight);
        if let Some(total) = in_flight.totals.get_mut(&self.class) {
            *total = total.saturating_sub(1);
        }
        let key = (self.class, self.peer);
        if let Some(mine) = in_flight.per_peer.get_mut(&key) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                in_flight.per_peer.remove(&key);
            }
        }
    }
}

/// Connections that were not served (failed handshakes, plain HTTP, the
/// connection cap) are ordinary noise on an open port, so they are printed
/// at most once per interval, with a count of the ones not printed.
struct FailureLog {
    interval: Duration,
    state: Mutex<FailureLogState>,
}

#[derive(Default)]
struct FailureLogState {
    last_printed: Option<Instant>,
    unprinted: u64,
}

impl FailureLog {
    fn new(interval: Duration) -> Self {
        FailureLog {
            interval,
            state: Mutex::new(FailureLogState::default()),
        }
    }

    /// Count a failure at `now`; `Some(n)` when it is to be printed, `n`
    /// being the failures not printed since the last printed one.
    fn note(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .last_printed
            .is_some_and(|at| now.saturating_duration_since(at) < self.interval)
        {
            state.unprinted += 1;
            return None;
        }
        state.last_printed = Some(now);
        Some(std::mem::take(&mut state.unprinted))
    }

    fn record(&self, peer: SocketAddr, what: fmt::Arguments<'_>) {
        match self.note(Instant::now()) {
            Some(0) => say!("https: {peer}: {what}"),
            Some(more) => say!("https: {peer}: {what} ({more} more not shown)"),
            None => {}
        }
    }
}

/// How long to stay quiet after printing a failed connection.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// First byte of a TLS record carrying a handshake message (ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What every connection thread shares.
struct Server {
    limits: Limits,
    tls: Arc<ServerConfig>,
    handler: Arc<dyn Handler>,
    opening: Mutex<Opening>,
    in_flight: Mutex<InFlight>,
    failures: FailureLog,
}

/// Serve `listener` over TLS with `tls` from a background accept thread.
/// Returns once the thread runs; the thread lives as long as the process.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    tls: Arc<ServerConfig>,
    handler: Arc<dyn Handler>,
) -> io::Result<()> {
    let server = Arc::new(Server {
        limits,
        tls,
        handler,
        opening: Mutex::new(Opening::default()),
        in_flight: Mutex::new(InFlight::default()),
        failures: FailureLog::new(FAILURE_LOG_INTERVAL),
    });
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, peer)) => admit(stream, peer, &server),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    say!("https: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
    Ok(())
}

/// Enter the connection into the opening stage, evicting the oldest opening
/// connection of the busiest client if the stage (or this client's share)
/// is full, and hand it to its own thread. Evicting rather than refusing: a
/// refusal would let idle connections lock everyone out, while an eviction
/// costs a connection that has not even sent its request little.
fn admit(stream: TcpStream, peer: SocketAddr, server: &Arc<Server>) {
    let handle = match stream.try_clone() {
        Ok(handle) => handle,
        Err(e) => {
            say!("https: {peer}: cannot keep a handle on the connection: {e}");
            return;
        }
    };
    let (evicted, id) = {
        let mut opening = lock(&server.opening);
        let evicted = opening.make_room(peer.ip(), server.limits.opening);
        (evicted, opening.insert(peer, handle))
    };
    for entry in evicted {
        // The connection's thread sees the end of its stream and exits.
        let _ = entry.socket.shutdown(Shutdown::Both);
        server.failures.record(
            entry.peer,
            format_args!(
                "closed after {} ms without a complete request head, to make room for a new connection",
                entry.since.elapsed().as_millis()
            ),
        );
    }
    let ticket = OpeningTicket {
        server: server.clone(),
        id,
    };
    let server_for_thread = server.clone();
    let spawned = std::thread::Builder::new()
        .name("http-conn".into())
        .spawn(move || serve_connection(&stream, peer, &server_for_thread, ticket));
    if let Err(e) = spawned {
        // The closure (with the stream and the ticket) was dropped: the
        // entry is released and the client sees the connection close.
        say!("https: cannot start a thread for {peer}: {e}");
    }
}

/// One connection: TLS handshake, one request, one response, close. The
/// handshake happens here, in the connection's own thread and under the
/// head deadline, so a client that stalls in it holds only its own place.
fn serve_connection(
    stream: &TcpStream,
    peer: SocketAddr,
    server: &Arc<Server>,
    ticket: OpeningTicket,
) {
    let limits = &server.limits;
    let accepted = Instant::now();
    let _ = stream.set_write_timeout(Some(limits.io_timeout));
    let transport = DeadlineStream {
        stream,
        deadline: accepted + limits.head_timeout,
        io_timeout: limits.io_timeout,
    };
    match transport.peek_first_byte() {
        Ok(Some(TLS_HANDSHAKE_RECORD)) => {}
        Ok(Some(byte)) if byte.is_ascii_alphabetic() => {
            // Someone spoke plain HTTP: tell them in words rather than
            // with a TLS alert they cannot read.
            let refusal = Response::error(
                400,
                "this agent speaks HTTPS only (RA-TLS); plain HTTP is not served",
            );
            let _ = (&*stream).write_all(&refusal.to_bytes());
            drop(ticket);
            finish(stream);
            server
                .failures
                .record(peer, format_args!("plain HTTP request refused"));
            return;
        }
        // Anything else goes to rustls, which refuses it with an alert.
        Ok(Some(_)) => {}
        Ok(None) => return,
        Err(e) => {
            let why = describe_io(&e);
            server
                .failures
                .record(peer, format_args!("no TLS handshake: {why}"));
            return;
        }
    }
    let connection = match ServerConnection::new(server.tls.clone()) {
        Ok(c) => c,
        Err(e) => {
            say!("https: {peer}: cannot start a TLS session: {e}");
            return;
        }
    };
    let mut tls = StreamOwned::new(connection, transport);
    if let Err(e) = handshake(&mut tls) {
        let why = describe_io(&e);
        server
            .failures
            .record(peer, format_args!("TLS handshake failed: {why}"));
        return;
    }
    let handler = server.handler.clone();
    let admit = |head: &Request, tls: &mut StreamOwned<ServerConnection, DeadlineStream<'_>>| {
        if !ticket.leave() {
            // Evicted just as the head arrived: the socket is shut down.
            return Err(None);
        }
        let class = handler.class(head);
        let slot = ClassSlot::take(server, class, peer.ip()).map_err(|why| {
            server.failures.record(
                peer,
                format_args!("{} {}: 503: {why}", head.method, head.path),
            );
            Some(Response::error(503, why).with_header("Retry-After", "1"))
        })?;
        tls.sock.deadline = accepted + limits.request_deadline;
        Ok(slot)
    };
    if answer(&mut tls, limits, handler.as_ref(), Some(peer.ip()), admit).is_ok() {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    finish(stream);
}

/// Run the TLS handshake to its end. `complete_io` returns early after a
/// read timeout that followed some progress, hence the loop; each round
/// either progresses or fails, since every read is bounded by the deadline.
fn handshake<T: Read + Write>(tls: &mut StreamOwned<ServerConnection, T>) -> io::Result<()> {
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock)? == (0, 0) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the handshake stopped making progress",
            ));
        }
    }
    Ok(())
}

/// Half-close and drain briefly, so unread client bytes do not turn the
/// close into a reset that destroys the response in flight.
fn finish(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = io::copy(&mut stream.take(64 * 1024), &mut io::sink());
}

/// A socket error in words: a read timeout surfaces as EAGAIN.
fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::UnexpectedEof => "the client closed the connection".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Request, RequestError> {
        read_head(&mut io::Cursor::new(raw), &Limits::default())
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
    fn reads_a_declared_body_on_demand() {
        let mut raw = io::Cursor::new(&b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcdef"[..]);
        let r = read_head(&mut raw, &Limits::default()).unwrap();
        assert_eq!(r.content_length, 3);
        let mut body = Body::unread(&mut raw, r.content_length);
        assert_eq!(body.read().unwrap(), b"abc");
        assert_eq!(body.read().unwrap(), b"abc", "read once, kept");

        let mut raw = io::Cursor::new(&b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"[..]);
        let r = read_head(&mut raw, &Limits::default()).unwrap();
        let err = Body::unread(&mut raw, r.content_length).read().unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert!(
            err.to_string().contains("ended after 2 of 5 bytes"),
            "{err}"
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
    fn smuggling_shapes_and_foreign_targets_are_refused() {
        for (raw, status) in [
            (
                &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (b"CONNECT agent:443 HTTP/1.1\r\n\r\n", 400),
            (b"GET //other/x HTTP/1.1\r\n\r\n", 400),
        ] {
            assert_eq!(status_of(raw), Some(status), "{raw:?}");
        }
    }

    #[test]
    fn a_response_header_with_a_line_break_becomes_a_500() {
        let bytes = Response::error(200, "x")
            .with_header("Location", "/a\r\nSet-Cookie: admin=1")
            .to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        assert!(
            text.contains("Location") && !text.contains("admin"),
            "{text}"
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
    fn only_the_listed_endpoint_takes_a_large_body() {
        let limits = Limits {
            large_bodies: &[("POST", "/deploy", 200 * 1024)],
            ..Limits::default()
        };
        let body = "x".repeat(100 * 1024);
        let request =
            |head: &str| format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let deploy = request("POST /deploy HTTP/1.1");
        let parsed = read_head(&mut deploy.as_bytes(), &limits).unwrap();
        assert_eq!(parsed.content_length, body.len() as u64);
        for head in [
            "POST /health HTTP/1.1",
            "PUT /deploy HTTP/1.1",
            "POST /deploy/x HTTP/1.1",
        ] {
            let err = read_head(&mut request(head).as_bytes(), &limits).unwrap_err();
            assert_eq!(err.status(), Some(413), "{head}: {err}");
        }
        let too_big = format!(
            "POST /deploy HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            200 * 1024 + 1
        );
        let err = read_head(&mut too_big.as_bytes(), &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("exceeds the limit of 204800 bytes"),
            "{err}"
        );
    }

    #[test]
    fn empty_connection_is_closed_without_answer() {
        assert!(matches!(parse(b""), Err(RequestError::Closed)));
        assert_eq!(status_of(b""), None);
    }

    /// An in-memory connection: the request to read, the bytes written back.
    struct Duplex {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl BufRead for Duplex {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            self.input.fill_buf()
        }
        fn consume(&mut self, amount: usize) {
            self.input.consume(amount);
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Path;

    impl Handler for Path {
        fn handle(&self, request: &Request, body: &mut Body<'_>) -> Response {
            match body.read_or_answer() {
                Ok(body) => Response::json(200, &(&request.path, body.len())),
                Err(response) => response,
            }
        }
    }

    fn answered(raw: &[u8]) -> String {
        let mut conn = Duplex {
            input: io::Cursor::new(raw.to_vec()),
            output: Vec::new(),
        };
        answer(&mut conn, &Limits::default(), &Path, None, |_, _| Ok(())).unwrap();
        String::from_utf8(conn.output).unwrap()
    }

    #[test]
    fn answer_works_on_any_transport() {
        let ok = answered(b"GET /here HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n[\"/here\",0]\n"), "{ok}");
        let posted = answered(b"POST /there HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
        assert!(posted.ends_with("\r\n\r\n[\"/there\",2]\n"), "{posted}");
        let bad = answered(b"GET / HTTP/3\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 505 "), "{bad}");
        // A peer that sent nothing gets nothing.
        assert_eq!(answered(b""), "");
    }

    #[test]
    fn a_full_opening_stage_evicts_the_oldest_of_the_busiest_client() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = || TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let c = IpAddr::from([10, 0, 0, 3]);
        let at = |ip: IpAddr| SocketAddr::new(ip, 40000);
        let budget = Budget {
            total: 4,
            per_peer: 3,
        };
        let mut opening = Opening::default();
        let mut ids = Vec::new();
        for peer in [a, a, b, a] {
            assert!(opening.make_room(peer, budget).is_empty());
            ids.push(opening.insert(at(peer), socket()));
        }
        // Full (4): a newcomer from c evicts a's oldest, not b's only one.
        let evicted = opening.make_room(c, budget);
        assert_eq!(evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[0]]);
        opening.insert(at(c), socket());
        // a holds 2; a's third is fine, its fourth evicts its oldest left.
        let room = opening.make_room(a, budget);
        assert_eq!(room.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[1]]);
        let third = opening.insert(at(a), socket());
        assert!(!opening.remove(ids[0]), "evicted entries are gone");
        assert!(opening.remove(third));
        assert_eq!(opening.entries.len(), 3);
    }

    #[test]
    fn failure_log_prints_once_per_interval_and_counts_the_rest() {
        let log = FailureLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(0));
        assert_eq!(log.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(9)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(log.note(t0 + Duration::from_secs(11)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(30)), Some(1));
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
