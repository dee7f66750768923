//! Why talking to an agent failed; each variant names the check or step.

use crate::allowlist::AllowlistMismatch;
use crate::eventlog::EventLogError;
use crate::ratls::RaTlsError;
use crate::verify::VerifyError;

/// Why a call to an agent failed.
///
/// `Url` and `Request` mean the caller's input is unusable; `Io`, `Tls`,
/// `Random`, `Collateral`, `Protocol`, `TooLarge` and `Response` that a step
/// could not be done; every other variant that the agent was checked and
/// rejected, or (`Status`) that it refused the request.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent URL is unusable.
    #[error("agent URL {url:?}: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A request the caller asked for cannot be sent as it is.
    #[error("request: {0}")]
    Request(String),
    /// A network read, write or connect failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, with the address.
        context: String,
        /// The I/O error (in the message, so not also a `source()`).
        error: std::io::Error,
    },
    /// The TLS handshake or record layer failed for a reason other than the
    /// agent's certificate.
    #[error("TLS with the agent failed: {0}")]
    Tls(String),
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// The agent's certificate is malformed, expired or not RA-TLS.
    #[error("the agent's RA-TLS certificate: {0}")]
    Certificate(RaTlsError),
    /// Collateral for the agent's quote could not be obtained.
    #[error("collateral for the agent's quote: {0}")]
    Collateral(String),
    /// The agent's quote failed DCAP verification or the policy.
    #[error("the agent's quote is not trusted: {0}")]
    Untrusted(VerifyError),
    /// The agent's MRTD/RTMR0-2 (or TD attributes, XFAM) are not in the allowlist.
    #[error("the agent does not run an allowed image: {0}")]
    Measurements(AllowlistMismatch),
    /// The quote does not bind the certificate's key.
    #[error("the agent's TLS key is not the one its quote attests: {0}")]
    Binding(RaTlsError),
    /// The handshake was not signed by the certificate's key: whoever
    /// answered does not hold the attested key.
    #[error("the agent did not prove it holds the attested TLS key: {0}")]
    HandshakeSignature(String),
    /// The agent presented a key other than the one pinned at connect.
    #[error(
        "the agent presented TLS key {presented} (SPKI SHA-256), not the key {pinned} attested \
         at connect; connect again to attest the new key"
    )]
    KeyChanged {
        /// SHA-256 of the pinned SubjectPublicKeyInfo (hex).
        pinned: String,
        /// SHA-256 of the presented SubjectPublicKeyInfo (hex).
        presented: String,
    },
    /// The attestation quote's REPORTDATA does not bind the nonce sent.
    #[error("the attestation answer does not bind the nonce sent: REPORTDATA is {found}, expected {expected}")]
    NonceBinding {
        /// REPORTDATA of the challenge statement for the nonce (hex).
        expected: String,
        /// REPORTDATA in the quote (hex).
        found: String,
    },
    /// The event log is malformed or does not replay to the quote's RTMR3.
    #[error("the agent's event log: {0}")]
    EventLog(EventLogError),
    /// The event log has no launch config event.
    #[error("the agent's event log has no measured launch config")]
    NoLaunchConfig,
    /// The measured launch config binds another repo.
    #[error(
        "the agent is bound to repo {measured:?} (measured launch config), expected {expected:?}"
    )]
    RepoMismatch {
        /// The repo the caller expects.
        expected: String,
        /// The repo in the measured launch config.
        measured: String,
    },
    /// The measured launch config names another GitHub API than the one the
    /// client expects: the token, the private values and the bundle
    /// reference would go to, or come from, a host-chosen server.
    #[error(
        "the agent was measured with GitHub API {measured:?}, expected {expected:?}; refusing \
         to send anything (set the expected API to deploy through a GitHub Enterprise Server \
         or a test server)"
    )]
    GithubApiMismatch {
        /// The API the client expects.
        expected: String,
        /// The API in the measured launch config.
        measured: String,
    },
    /// The attestation quote and the TLS certificate's quote come from TDs
    /// with different launch measurements.
    #[error("the attestation quote's {register} differs from the TLS certificate quote's")]
    Inconsistent {
        /// The register that differs.
        register: &'static str,
    },
    /// The agent's measured OIDC issuer is not the one the deployer's token
    /// comes from: the agent would check it against keys the deployer does
    /// not trust, so nothing is sent.
    #[error(
        "the agent trusts OIDC tokens of {measured:?} (measured launch config), expected \
         {expected:?}; refusing to send the token"
    )]
    OidcIssuerMismatch {
        /// The issuer the deployer expects.
        expected: String,
        /// The issuer in the measured launch config.
        measured: String,
    },
    /// The caller's OIDC token would be refused (wrong audience or issuer,
    /// malformed); checked before it is sent.
    #[error("the OIDC token is not for this agent: {0}")]
    OidcToken(crate::oidc::OidcError),
    /// `deploy` was called before a successful `attest` on this client.
    #[error("the agent is not attested on this client: call attest() before deploy()")]
    NotAttested,
    /// The measured GitHub API URL is not `https://`: a token sent there
    /// could leave the TD in clear text.
    #[error(
        "the agent's measured GitHub API URL {url:?} is not https://; refusing to send a token \
         (allowed only for local test servers)"
    )]
    InsecureGitHubApi {
        /// The measured URL.
        url: String,
    },
    /// The agent answered with an error status.
    #[error("{method} {path}: the agent answered {status}: {reason}")]
    Status {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The agent's `error` message, or the start of its body.
        reason: String,
    },
    /// The agent's answer is not valid HTTP.
    #[error("{method} {path}: malformed HTTP response: {problem}")]
    Protocol {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The answer's body is over the client's limit.
    #[error("{method} {path}: response body over the {limit}-byte limit")]
    TooLarge {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// The answer's body is not the expected document.
    #[error("{what}: {problem}")]
    Response {
        /// Which answer.
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl From<VerifyError> for AgentError {
    /// Allowlist mismatches get their own variant: the platform is fine,
    /// the software is not the expected one.
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Measurement(mismatch) => AgentError::Measurements(mismatch),
            other => AgentError::Untrusted(other),
        }
    }
}

impl AgentError {
    /// True when the agent answered and failed a check (or refused the
    /// request); false when the check could not run: a bad URL, the network,
    /// TLS transport, randomness, collateral or a malformed answer.
    pub fn is_rejection(&self) -> bool {
        use AgentError as E;
        match self {
            E::Certificate(_)
            | E::Untrusted(_)
            | E::Measurements(_)
            | E::Binding(_)
            | E::HandshakeSignature(_)
            | E::KeyChanged { .. }
            | E::NonceBinding { .. }
            | E::EventLog(_)
            | E::NoLaunchConfig
            | E::RepoMismatch { .. }
            | E::GithubApiMismatch { .. }
            | E::Inconsistent { .. }
            | E::InsecureGitHubApi { .. }
            | E::OidcIssuerMismatch { .. }
            | E::NotAttested
            | E::Status { .. } => true,
            E::Url { .. }
            | E::Request(_)
            | E::OidcToken(_)
            | E::Io { .. }
            | E::Tls(_)
            | E::Random
            | E::Collateral(_)
            | E::Protocol { .. }
            | E::TooLarge { .. }
            | E::Response { .. } => false,
        }
    }
}
