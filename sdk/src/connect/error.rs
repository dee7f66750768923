//! Why `connect()` did not verify a service: one variant per check.

use std::path::PathBuf;

use crate::allowlist::{AllowlistError, AllowlistMismatch, Variant};
use crate::attestation::AttestationError;
use crate::collateral::{FetchError, PckError};
use crate::eventlog::EventLogError;
use crate::github::GithubError;
use crate::verify::VerifyError;

/// Why a repo's published deployment was not verified. Each variant names
/// the check that failed; none is ever skipped silently.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The repo argument is not `owner/name`.
    #[error("repo {repo:?}: {problem}")]
    InvalidRepo {
        /// The rejected input.
        repo: String,
        /// Which rule it broke.
        problem: String,
    },
    /// A [`super::ConnectOptions`] field is unusable.
    #[error("option {option}: {problem}")]
    InvalidOptions {
        /// The field.
        option: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The live agent at the published endpoint could not be verified
    /// (RA-TLS certificate, fresh quote, event log or repo).
    #[cfg(feature = "agent-client")]
    #[error("live agent at {endpoint}: {source}")]
    Live {
        /// The endpoint from the attestation document.
        endpoint: String,
        /// What the agent client rejected.
        #[source]
        source: Box<crate::agent::AgentError>,
    },
    /// The live TD is not the one that was published.
    #[error("the live agent's {field} is {live}, but the published quote's is {published}")]
    LiveMismatch {
        /// The register or field that differs.
        field: &'static str,
        /// The published value.
        published: String,
        /// The live value.
        live: String,
    },
    /// The live TD runs another bundle than the one published.
    #[error("the live agent runs bundle {running}, but the publication names {published}")]
    LiveBundle {
        /// The published bundle digest.
        published: String,
        /// The live TD's newest bundle digest.
        running: String,
    },
    /// The repo has no release that could hold a deployment to verify.
    #[error("no published deployment of {repo}: {seen}")]
    NotFound {
        /// The repo asked for.
        repo: String,
        /// What was found instead (the releases seen and why each was passed over).
        seen: String,
    },
    /// Listing the repo's releases failed.
    #[error("listing the releases of {repo}: {source}")]
    Releases {
        /// The repo asked for.
        repo: String,
        /// The GitHub client's error.
        #[source]
        source: GithubError,
    },
    /// Downloading a release asset (the document or the allowlist) failed.
    #[error("downloading {what}: {source}")]
    Download {
        /// What was being downloaded.
        what: String,
        /// The GitHub client's error.
        #[source]
        source: GithubError,
    },
    /// `attestation.json` is malformed or inconsistent with its own event log.
    #[error("attestation.json of release {release}: {source}")]
    Document {
        /// The release the document came from.
        release: String,
        /// What is wrong with it.
        #[source]
        source: AttestationError,
    },
    /// The document's allowlist URL is on the configured GitHub host but is
    /// not a release asset download URL.
    #[error("allowlist URL {url}: {problem}")]
    AllowlistUrl {
        /// The URL from the document.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The allowlist is not published by one of the publishers the verifier trusts.
    #[error(
        "allowlist {url} is published by {}, not by a trusted publisher ({})",
        publisher.as_deref().unwrap_or("an unknown party (not a release asset on the configured GitHub)"),
        trusted.join(", ")
    )]
    UntrustedAllowlist {
        /// The URL from the document.
        url: String,
        /// The publishing repo, when the URL is a release asset on the configured GitHub.
        publisher: Option<String>,
        /// The publishers the options accept.
        trusted: Vec<String>,
    },
    /// The allowlist could not be fetched from a URL outside the configured GitHub.
    #[error("fetching the allowlist from {url}: {problem}")]
    AllowlistFetch {
        /// The URL from the document.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// The local allowlist file ([`super::ConnectOptions::allowlist_override`]) is unreadable.
    #[error("reading the allowlist file {}: {problem}", path.display())]
    AllowlistFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// The allowlist bytes do not hash to the SHA-256 the document names.
    #[error("allowlist from {origin}: SHA-256 is {actual}, but the document names {expected}")]
    AllowlistDigest {
        /// Where the bytes came from (URL or file).
        origin: String,
        /// The document's `allowlist.sha256`.
        expected: String,
        /// SHA-256 of the bytes obtained.
        actual: String,
    },
    /// The allowlist is malformed.
    #[error("allowlist from {origin}: {source}")]
    Allowlist {
        /// Where the bytes came from (URL or file).
        origin: String,
        /// What is wrong with it.
        #[source]
        source: AllowlistError,
    },
    /// No collateral to verify the quote with.
    #[error("collateral: {0}")]
    Collateral(#[source] CollateralProblem),
    /// DCAP verification failed: bad signature, chain, QE report, collateral,
    /// trust root, or unsafe TD attributes.
    #[error("the quote is not trusted: {0}")]
    Untrusted(#[source] VerifyError),
    /// The platform's TCB status (or one of its advisories) is not accepted by the policy.
    #[error("{0}")]
    TcbStatus(#[source] VerifyError),
    /// The quote's REPORTDATA is not the hash of the document's statement:
    /// a bound field (repo, endpoint, release tag, timestamp, event log) was changed.
    #[error("REPORTDATA binding: the quote's REPORTDATA is {actual}, but the document's statement (repo, endpoint, release tag, timestamp, event log) hashes to {expected}")]
    Binding {
        /// Hex of the REPORTDATA the document's statement requires.
        expected: String,
        /// Hex of the quote's REPORTDATA.
        actual: String,
    },
    /// The event log does not replay to the quote's RTMR3.
    #[error("event log: {0}")]
    EventLog(#[source] EventLogError),
    /// MRTD, RTMR0-2, TD attributes or XFAM match no entry of an allowlist.
    #[error("measurements do not match {list}: {mismatch}")]
    Measurements {
        /// Which allowlist (the document's URL, or the verifier's pinned list).
        list: String,
        /// Every difference, naming the registers (boxed: it is large).
        mismatch: Box<AllowlistMismatch>,
    },
    /// The matched allowlist entry is for an image variant the options do not accept.
    #[error("allowlist entry {entry:?} is a {variant:?} image; {reason}")]
    Variant {
        /// The entry that matched.
        entry: String,
        /// Its variant.
        variant: Variant,
        /// Why it is refused.
        reason: String,
    },
    /// The measured launch config names another image than the allowlist.
    #[error("the measured launch config names image {measured:?}, but the allowlist is for {allowlist:?}")]
    ImageMismatch {
        /// `image_id` of the measured launch config.
        measured: String,
        /// `image_id` of the allowlist.
        allowlist: String,
    },
    /// The document was made for another release than the one it is published on.
    #[error("the document was made for release {document:?} but is published on release {release:?} (a replayed document)")]
    ReleaseMismatch {
        /// The release tag the document (and its quote) names.
        document: String,
        /// The release it was downloaded from.
        release: String,
    },
    /// The TD is bound to another repo than the one asked for.
    #[error("the TD's measured launch config binds it to repo {measured:?}, not {requested:?}")]
    RepoBinding {
        /// The repo asked for.
        requested: String,
        /// The repo in the measured config event.
        measured: String,
    },
    /// The TD was measured with another GitHub API than the one the verifier
    /// reads from: a host-chosen API received the deployer's token and
    /// served the bundle, and could have published this document.
    #[error(
        "the TD's measured launch config names GitHub API {measured:?}, but the verifier \
         expects {expected:?}"
    )]
    GithubApi {
        /// The API the options name.
        expected: String,
        /// The API in the measured config event.
        measured: String,
    },
    /// The TD accepts deploy tokens from another OIDC issuer than the
    /// verifier expects: whoever holds that issuer's keys could have
    /// deployed to it.
    #[error(
        "the TD's measured launch config accepts deploy tokens of OIDC issuer {measured:?}, \
         but the verifier expects {expected:?}"
    )]
    OidcIssuer {
        /// The issuer the options name.
        expected: String,
        /// The issuer in the measured config event.
        measured: String,
    },
    /// The event log records no deployed bundle.
    #[error(
        "the event log records no running bundle: nothing was deployed, or the last \
         workload event is `stopped`"
    )]
    NoBundle,
    /// The options require pinned images and the running bundle's are not.
    #[error(
        "the running bundle {digest} has images_pinned: false (some image is pulled by tag \
         or built), expected every image carried in the bundle or pinned by @sha256 digest"
    )]
    NotPinned {
        /// Hex of the running bundle's digest.
        digest: String,
    },
    /// The running bundle is not the one expected.
    #[error("the running bundle has digest {running}, expected {expected}")]
    BundleMismatch {
        /// Hex of the expected digest.
        expected: String,
        /// Hex of the last bundle event's digest.
        running: String,
    },
    /// The event log records no seal event.
    #[error("the TD is not sealed (no seal event in the event log); interactive entry points may still be open")]
    Unsealed,
    /// The document is older than the accepted age.
    #[error("the attestation is {age_secs} s old (timestamp {timestamp}), over the limit of {max_age_secs} s")]
    Stale {
        /// The document's timestamp (Unix seconds).
        timestamp: u64,
        /// Its age at verification time.
        age_secs: u64,
        /// The accepted age.
        max_age_secs: u64,
    },
    /// The document's timestamp disagrees with when GitHub created the release.
    #[error(
        "the attestation's timestamp {timestamp} is more than {max_skew_secs} s from release \
         {release:?}'s created_at {created_at:?} (the TD's clock disagrees with GitHub's)"
    )]
    ReleaseTime {
        /// The release.
        release: String,
        /// Its `created_at` as GitHub gave it.
        created_at: String,
        /// The document's timestamp (Unix seconds).
        timestamp: u64,
        /// The accepted difference.
        max_skew_secs: u64,
    },
    /// The document's timestamp is in the future beyond the accepted clock skew.
    #[error("the attestation's timestamp {timestamp} is {ahead_secs} s in the future (clock skew allowed: {max_skew_secs} s)")]
    FutureTimestamp {
        /// The document's timestamp (Unix seconds).
        timestamp: u64,
        /// How far ahead of the verifier's clock it is.
        ahead_secs: u64,
        /// The accepted skew.
        max_skew_secs: u64,
    },
}

/// Why no collateral was available.
#[derive(Debug, thiserror::Error)]
pub enum CollateralProblem {
    /// The quote's PCK certificate (which names the platform family) is unreadable.
    #[error("cannot read the quote's PCK certificate: {0}")]
    Pck(#[source] PckError),
    /// Neither the options nor the environment name a cache directory.
    #[error("no collateral cache directory: set one in the options, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    /// Fetching from the collateral service failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl ConnectError {
    /// A stable, machine-readable name of the failed check (`ee verify --json`).
    pub fn check(&self) -> &'static str {
        match self {
            ConnectError::InvalidRepo { .. } => "invalid_repo",
            ConnectError::InvalidOptions { .. } => "invalid_options",
            ConnectError::NotFound { .. } => "not_found",
            ConnectError::Releases { .. } => "releases",
            ConnectError::Download { .. } => "download",
            ConnectError::Document { .. } => "document",
            ConnectError::AllowlistUrl { .. } => "allowlist_url",
            ConnectError::UntrustedAllowlist { .. } => "untrusted_allowlist",
            ConnectError::AllowlistFetch { .. } => "allowlist_fetch",
            ConnectError::AllowlistFile { .. } => "allowlist_file",
            ConnectError::AllowlistDigest { .. } => "allowlist_digest",
            ConnectError::Allowlist { .. } => "allowlist",
            ConnectError::Collateral(_) => "collateral",
            ConnectError::Untrusted(_) => "untrusted_quote",
            ConnectError::TcbStatus(_) => "tcb_status",
            ConnectError::Binding { .. } => "binding",
            ConnectError::EventLog(_) => "event_log",
            ConnectError::Measurements { .. } => "measurements",
            ConnectError::Variant { .. } => "variant",
            ConnectError::ImageMismatch { .. } => "image_id",
            ConnectError::ReleaseMismatch { .. } => "release_mismatch",
            ConnectError::RepoBinding { .. } => "repo_binding",
            ConnectError::GithubApi { .. } => "github_api",
            ConnectError::OidcIssuer { .. } => "oidc_issuer",
            ConnectError::NoBundle => "no_bundle",
            ConnectError::NotPinned { .. } => "not_pinned",
            ConnectError::BundleMismatch { .. } => "bundle_mismatch",
            ConnectError::Unsealed => "unsealed",
            ConnectError::Stale { .. } => "stale",
            ConnectError::FutureTimestamp { .. } => "future_timestamp",
            ConnectError::ReleaseTime { .. } => "release_time",
            #[cfg(feature = "agent-client")]
            ConnectError::Live { .. } => "live_agent",
            ConnectError::LiveMismatch { .. } => "live_mismatch",
            ConnectError::LiveBundle { .. } => "live_bundle",
        }
    }

    /// True when the published evidence was examined and failed a check (or
    /// does not exist); false when the check could not run: bad arguments,
    /// an unreadable local file, or a network or service failure.
    pub fn is_rejection(&self) -> bool {
        match self {
            ConnectError::InvalidRepo { .. }
            | ConnectError::InvalidOptions { .. }
            | ConnectError::Releases { .. }
            | ConnectError::AllowlistFetch { .. }
            | ConnectError::AllowlistFile { .. }
            | ConnectError::Collateral(_) => false,
            #[cfg(feature = "agent-client")]
            ConnectError::Live { source, .. } => source.is_rejection(),
            // A missing asset is missing evidence; a transport failure is not.
            ConnectError::Download { source, .. } => {
                matches!(source, GithubError::NotFound(_) | GithubError::Gone { .. })
            }
            _ => true,
        }
    }
}
