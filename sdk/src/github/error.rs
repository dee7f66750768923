//! The one error type of the GitHub client.

/// Everything a GitHub call can fail with.
///
/// Messages name the request path (never the query string, which may carry a
/// storage signature) and never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// A repository name is not `owner/name` under GitHub's character rules.
    #[error("invalid repository name {name:?}: {reason}")]
    InvalidRepo {
        /// The rejected input.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A URL given to the client (base URL, upload URL, Link header) is unusable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The rejected URL.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A URL taken from a response points at an origin the token must not reach.
    #[error("refusing to send the token to {origin}: expected one of {expected}")]
    UntrustedOrigin {
        /// The origin found in the response.
        origin: String,
        /// The origins the client trusts with its token.
        expected: String,
    },
    /// 404: the object does not exist or the caller may not see it.
    #[error("not found: {0}")]
    NotFound(String),
    /// 410: the object existed but is gone (for example an expired artifact).
    #[error("gone: {what}: {message}")]
    Gone {
        /// What was requested.
        what: String,
        /// GitHub's message.
        message: String,
    },
    /// 401: no token, or a token GitHub does not accept.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed (GitHub's message).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 409: the request conflicts with the current state (GitHub's message).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 422: GitHub rejected the request content (message and field errors).
    #[error("validation failed: {0}")]
    Validation(String),
    /// Any other 4xx answer.
    #[error("{path}: GitHub answered {status}: {message}")]
    Rejected {
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// 5xx on every attempt.
    #[error("{path}: server error {status} after {attempts} attempt(s)")]
    Server {
        /// The request path of the last attempt.
        path: String,
        /// The status of the last attempt.
        status: u16,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The connection failed or broke on every attempt.
    #[error("{path}: transport error after {attempts} attempt(s): {detail}")]
    Transport {
        /// The request path of the last attempt.
        path: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last underlying error.
        detail: String,
    },
    /// A redirect that the client will not follow.
    #[error("{path}: bad redirect: {reason}")]
    BadRedirect {
        /// The path that answered with the redirect.
        path: String,
        /// Why it was not followed.
        reason: String,
    },
    /// A response (or a list of pages) is larger than the caller's cap.
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The cap, with its unit.
        limit: String,
    },
    /// A response body is not the JSON the client expects.
    #[error("{path}: cannot decode the response: {detail}")]
    Decode {
        /// The request path.
        path: String,
        /// The decoder's message.
        detail: String,
    },
}
