//! One request, end to end: headers, the token (only to its own origin),
//! manual redirects, retries with exponential backoff, status mapping and
//! capped body reads.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use ureq::http::{self, header, Response};
use ureq::{Agent, Body};

use super::url::{path_of, resolve_location, Origin};
use super::GithubError;

/// The REST API version the client is written against.
const API_VERSION: &str = "2022-11-28";
/// Redirect hops followed per attempt (GitHub uses one).
const MAX_REDIRECTS: usize = 5;
/// Error bodies are read only this far, to find GitHub's message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// How often and how patiently idempotent requests (GET, DELETE) are retried
/// after a 5xx answer or a connection error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (at least 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Upper bound for any single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }
}

/// Connection and per-read timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to resolve and connect.
    pub connect: Duration,
    /// Longest wait for any single read or write on the socket.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
        }
    }
}

/// HTTP method of a call; only GET and DELETE are retried (a PATCH is
/// not retried either: after a lost answer the release may have changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    fn as_http(self) -> http::Method {
        match self {
            Method::Get => http::Method::GET,
            Method::Post => http::Method::POST,
            Method::Patch => http::Method::PATCH,
            Method::Delete => http::Method::DELETE,
        }
    }

    fn is_idempotent(self) -> bool {
        matches!(self, Method::Get | Method::Delete)
    }
}

/// A request body with its content type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Payload<'a> {
    pub(crate) content_type: &'a str,
    pub(crate) data: &'a [u8],
}

/// One logical call (retried as a whole, redirects included).
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) accept: &'static str,
    pub(crate) payload: Option<Payload<'a>>,
    /// Names the object for `NotFound` / `Gone`, e.g. "release v1 of o/r".
    pub(crate) what: String,
}

/// Why one attempt failed.
pub(crate) enum AttemptError {
    /// Worth another attempt if the call is idempotent.
    Retryable(Cause),
    /// Final.
    Fatal(GithubError),
}

/// The last failure of a retryable kind, for the final error.
pub(crate) enum Cause {
    Status { path: String, status: u16 },
    Transport { path: String, detail: String },
}

/// A GitHub token; never printed.
#[derive(Clone)]
pub(crate) struct Token(String);

impl Token {
    pub(crate) fn new(token: String) -> Token {
        Token(token)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The HTTP side of the client.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    agent: Agent,
    pub(crate) token: Option<Token>,
    pub(crate) retry: RetryPolicy,
    /// HTTP requests sent (every attempt and redirect hop), shared by clones.
    pub(crate) requests_sent: Arc<AtomicU64>,
}

impl Transport {
    pub(crate) fn new(timeouts: Timeouts, user_agent: &str) -> Transport {
        Transport {
            agent: build_agent(timeouts, user_agent),
            token: None,
            retry: RetryPolicy::default(),
            requests_sent: Arc::default(),
        }
    }

    /// Rebuilds the connection pool with new timeouts or User-Agent.
    pub(crate) fn reconfigure(&mut self, timeouts: Timeouts, user_agent: &str) {
        self.agent = build_agent(timeouts, user_agent);
    }

    /// Runs `call`, handing a 2xx response to `read`. Idempotent calls are
    /// retried on 5xx and transport errors, including errors while `read`
    /// streams the body.
    pub(crate) fn execute<T>(
        &self,
        call: &Call<'_>,
        mut read: impl FnMut(&mut Response<Body>) -> Result<T, AttemptError>,
    ) -> Result<T, GithubError> {
        let attempts = if call.method.is_idempotent() {
            self.retry.attempts.max(1)
        } else {
            1
        };
        let mut last = Cause::Transport {
            path: path_of(&call.url),
            detail: "no attempt was made".to_owned(),
        };
        for attempt in 1..=attempts {
            if attempt > 1 {
                thread::sleep(self.retry.delay(attempt - 1));
            }
            match self
                .attempt(call)
                .and_then(|mut response| read(&mut response))
            {
                Ok(value) => return Ok(value),
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Retryable(cause)) => last = cause,
            }
        }
        Err(match last {
            Cause::Status { path, status } => GithubError::Server {
                path,
                status,
                attempts,
            },
            Cause::Transport { path, detail } => GithubError::Transport {
                path,
                attempts,
                detail,
            },
        })
    }

    /// One attempt: send, follow GET redirects, map non-2xx statuses.
    fn attempt(&self, call: &Call<'_>) -> Result<Response<Body>, AttemptError> {
        // The token belongs to the origin the call was addressed to; a
        // redirect elsewhere (release storage, a CDN) must never see it.
        let token_origin = Origin::of(&call.url);
        let mut url = call.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let hop_origin = Origin::of(&url);
            let with_token = hop_origin.is_some() && hop_origin == token_origin;
            let mut response = self.send(call, &url, with_token)?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(response);
            }
            if call.method == Method::Get && matches!(status, 301 | 302 | 303 | 307 | 308) {
                url = redirect_target(&url, &response, hop_origin.as_ref())?;
                continue;
            }
            return Err(status_error(call, &url, &mut response));
        }
        Err(AttemptError::Fatal(GithubError::BadRedirect {
            path: path_of(&call.url),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        }))
    }

    fn send(
        &self,
        call: &Call<'_>,
        url: &str,
        with_token: bool,
    ) -> Result<Response<Body>, AttemptError> {
        let mut request = http::Request::builder()
            .method(call.method.as_http())
            .uri(url)
            .header(header::ACCEPT, call.accept)
            .header("X-GitHub-Api-Version", API_VERSION);
        if let (true, Some(Token(token))) = (with_token, &self.token) {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        let sent = match call.payload {
            None => request.body(()).map(|r| self.agent.run(r)),
            Some(payload) => request
                .header(header::CONTENT_TYPE, payload.content_type)
                .body(payload.data)
                .map(|r| self.agent.run(r)),
        };
        let fatal = |detail: String| {
            AttemptError::Fatal(GithubError::Transport {
                path: path_of(url),
                attempts: 1,
                detail,
            })
        };
        match sent {
            // Only the header names are in the message, never their values.
            Err(e) => Err(fatal(format!("cannot build the request: {e}"))),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if is_transient(&e) => Err(AttemptError::Retryable(Cause::Transport {
                path: path_of(url),
                detail: e.to_string(),
            })),
            Ok(Err(e)) => Err(fatal(e.to_string())),
        }
    }
}

fn build_agent(timeouts: Timeouts, user_agent: &str) -> Agent {
    Agent::config_builder()
        // Statuses are mapped here, and redirects are followed here so the
        // token rule is ours, not a library default.
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(user_agent)
        .timeout_resolve(Some(timeouts.connect))
        .timeout_connect(Some(timeouts.connect))
        .timeout_per_read(Some(timeouts.read))
        .timeout_per_write(Some(timeouts.read))
        .build()
        .new_agent()
}

/// Errors where the next attempt may well succeed.
fn is_transient(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

fn redirect_target(
    url: &str,
    response: &Response<Body>,
    from: Option<&Origin>,
) -> Result<String, AttemptError> {
    let bad = |reason: String| {
        AttemptError::Fatal(GithubError::BadRedirect {
            path: path_of(url),
            reason,
        })
    };
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("no usable Location header".to_owned()))?;
    let target = resolve_location(url, location).map_err(bad)?;
    let to = Origin::of(&target);
    if from.is_some_and(Origin::is_https) && !to.as_ref().is_some_and(Origin::is_https) {
        return Err(bad("refusing to downgrade from https".to_owned()));
    }
    Ok(target)
}

/// GitHub's error body: `{"message": ..., "errors": [...]}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<FieldError>,
}

/// One entry of `errors`: either a message or resource/field/code.
#[derive(Deserialize)]
#[serde(untagged)]
enum FieldError {
    Detailed {
        #[serde(default)]
        resource: String,
        #[serde(default)]
        field: String,
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    Text(String),
}

impl FieldError {
    fn describe(&self) -> String {
        match self {
            FieldError::Text(text) => text.clone(),
            FieldError::Detailed {
                message: Some(message),
                ..
            } => message.clone(),
            FieldError::Detailed {
                resource,
                field,
                code,
                ..
            } => format!("{resource}.{field} {code}"),
        }
    }
}

/// GitHub's message for an error response, with field errors appended.
fn error_message(response: &mut Response<Body>) -> String {
    let mut raw = Vec::new();
    // A broken error body still leaves the status to report.
    let _ = response
        .body_mut()
        .as_reader()
        .take(ERROR_BODY_LIMIT)
        .read_to_end(&mut raw);
    let parsed: ErrorBody = serde_json::from_slice(&raw).unwrap_or_default();
    let mut message = if parsed.message.is_empty() {
        String::from_utf8_lossy(&raw)
            .trim()
            .chars()
            .take(200)
            .collect()
    } else {
        parsed.message
    };
    if !parsed.errors.is_empty() {
        let details: Vec<String> = parsed.errors.iter().map(FieldError::describe).collect();
        message = format!("{message} ({})", details.join("; "));
    }
    message
}

fn status_error(call: &Call<'_>, url: &str, response: &mut Response<Body>) -> AttemptError {
    let status = response.status().as_u16();
    let path = path_of(url);
    if status >= 500 {
        return AttemptError::Retryable(Cause::Status { path, status });
    }
    let message = error_message(response);
    AttemptError::Fatal(match status {
        401 => GithubError::Unauthorized(message),
        403 => GithubError::Forbidden(message),
        404 => GithubError::NotFound(call.what.clone()),
        409 => GithubError::Conflict(message),
        410 => GithubError::Gone {
            what: call.what.clone(),
            message,
        },
        422 => GithubError::Validation(message),
        _ => GithubError::Rejected {
            path,
            status,
            message,
        },
    })
}

/// Reads a body of at most `limit` bytes: refuses early on a larger
/// `Content-Length` and never buffers more than `limit + 1` bytes.
pub(crate) fn read_capped(
    response: &mut Response<Body>,
    limit: u64,
    what: &str,
    url: &str,
) -> Result<Vec<u8>, AttemptError> {
    let too_large = || {
        AttemptError::Fatal(GithubError::TooLarge {
            what: what.to_owned(),
            limit: format!("{limit} bytes"),
        })
    };
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut data = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| {
            AttemptError::Retryable(Cause::Transport {
                path: path_of(url),
                detail: format!("reading the body: {e}"),
            })
        })?;
    if u64::try_from(data.len()).map_or(true, |len| len > limit) {
        return Err(too_large());
    }
    Ok(data)
}

/// Reads and decodes a JSON body of at most `limit` bytes.
pub(crate) fn read_json<T: DeserializeOwned>(
    response: &mut Response<Body>,
    limit: u64,
    url: &str,
) -> Result<T, AttemptError> {
    let data = read_capped(
        response,
        limit,
        &format!("response of {}", path_of(url)),
        url,
    )?;
    serde_json::from_slice(&data).map_err(|e| {
        AttemptError::Fatal(GithubError::Decode {
            path: path_of(url),
            detail: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let delays: Vec<u128> = (1..=6).map(|r| policy.delay(r).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.delay(200), Duration::from_millis(1000));
    }

    #[test]
    fn token_is_not_printed() {
        let token = Token::new("ghp_secret".to_owned());
        assert!(!format!("{token:?}").contains("secret"));
    }
}
