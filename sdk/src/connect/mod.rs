//! `connect()`: verify, from a repo name alone, what runs for it and where.
//!
//! The agent publishes each deployment as `attestation.json` on a release
//! `deploy-YYYYMMDD-HHMMSS` of the app repo. [`connect`] finds the newest such
//! release that has the document, and accepts it only if every check holds,
//! in this order (each failure is its own [`ConnectError`] variant):
//!
//! 1. the document parses and agrees with its own measured launch config;
//! 2. the allowlist it names is published by a trusted publisher (by default
//!    [`OFFICIAL_IMAGE_PUBLISHER`]) or is the verifier's own file, and its
//!    bytes hash to the SHA-256 the quote binds;
//! 3. the quote passes DCAP under the trust root and policy (TCB status,
//!    advisories, unsafe TD attributes);
//! 4. REPORTDATA is the hash of the document's statement (repo, endpoint,
//!    release tag, timestamp, event-log digest);
//! 5. the event log replays to the quote's RTMR3;
//! 6. MRTD, RTMR0-2, TD attributes and XFAM match an allowlist entry of an
//!    accepted image variant (and the measured image id is the allowlist's);
//! 7. the document was made for the release it is published on;
//! 8. the measured launch config binds the TD to the repo asked for, and
//!    names the GitHub API the verifier reads from (`github_api_url`): a TD
//!    measured with another API sent its deployer's token there; and the
//!    OIDC issuer it takes deploy tokens from is the expected one;
//! 9. a bundle was deployed (and is the expected one, if given);
//! 10. the TD is sealed (unless unsealed deployments are allowed);
//! 11. the document is fresh: no older than `max_age`, not from the future,
//!     and its timestamp (the TD's clock, which the host sets) agrees with
//!     the release's `created_at` (GitHub's clock).
//!
//! The claims (7-11) are judged only after 3-5 established that the TD
//! attested them. Nothing in the document is trusted for being there.

mod allowlist_source;
mod checks;
mod collateral_choice;
mod error;
mod http;
#[cfg(feature = "agent-client")]
mod live;
mod release;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::allowlist::{Allowlist, Variant};
use crate::attestation::{AllowlistRef, AttestationDocument, MAX_DOCUMENT_BYTES};
use crate::eventlog::{BundleEvent, EventLog};
use crate::github::{GitHub, GithubError, RepoName, RetryPolicy, Timeouts};
use crate::launch::DEFAULT_GITHUB_API_URL;
use crate::quote::TdReport10;
use crate::verify::{Policy, TrustRoot};

pub use collateral_choice::{CollateralChoice, CollateralOrigin};
pub use error::{CollateralProblem, ConnectError};
#[cfg(feature = "agent-client")]
pub use live::{open, verify_agent, VerifiedAgent};
pub use release::{DEPLOY_TAG_PREFIX, DOCUMENT_ASSET};

/// Default [`ConnectOptions::max_age`]: 30 days. The agent publishes once per
/// deploy, so this bounds how long an old deployment's document can be
/// replayed as current; a service older than this must be redeployed or
/// checked with a larger limit.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The repository whose releases publish the project's official images and
/// their allowlists: the default, and only, trusted publisher of
/// [`ConnectOptions::default`].
pub const OFFICIAL_IMAGE_PUBLISHER: &str = "easy-enclave/easy-enclave";

/// Default [`ConnectOptions::max_publish_skew`]: 10 minutes (the agent
/// creates the release, then makes the quote and uploads the document).
pub const DEFAULT_MAX_PUBLISH_SKEW: Duration = Duration::from_secs(10 * 60);

/// Default [`ConnectOptions::max_clock_skew`]: 5 minutes.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// What [`connect_with`] trusts and requires.
#[derive(Clone)]
pub struct ConnectOptions {
    /// GitHub REST API base URL: `https://api.github.com`, a GitHub
    /// Enterprise Server root (`https://HOST/api/v3`) or a test server.
    pub github_api_url: String,
    /// The GitHub API the TD must have been measured with, when it reaches
    /// the same GitHub at another address than the verifier does (a dev TD
    /// behind QEMU's NAT reaching a local test server at 10.0.2.2). Default
    /// (`None`): [`Self::github_api_url`].
    pub td_github_api_url: Option<String>,
    /// The OIDC issuer the TD's measured launch config may accept deploy
    /// tokens from (whoever holds its keys can deploy to the TD). Default
    /// [`crate::launch::DEFAULT_OIDC_ISSUER`], GitHub's Actions issuer.
    pub oidc_issuer: String,
    /// A GitHub token, for private repos and higher rate limits. Sent only
    /// to the API's own origin, never to release storage.
    pub github_token: Option<String>,
    /// The root the quote's PCK chain must lead to.
    pub trust_root: TrustRoot,
    /// Accepted TCB statuses, advisories and TD attributes. Its `allowlist`,
    /// if set, is a list the verifier pins: the measurements must match it
    /// as well as the document's.
    pub policy: Policy,
    /// Image variants accepted (default: production only). A `sim` entry is
    /// never accepted under Intel's root, whatever this says.
    pub accepted_variants: Vec<Variant>,
    /// Publishers (`owner/repo`) whose release-asset allowlists are trusted.
    /// Default: [`OFFICIAL_IMAGE_PUBLISHER`] alone, so only the project's own
    /// images verify. Empty is accepted only together with an allowlist
    /// file ([`Self::allowlist_override`]) or a pinned list
    /// ([`Policy::allowlist`]); otherwise nothing says which images to
    /// trust and [`connect_with`] refuses to run.
    pub allowlist_publishers: Vec<RepoName>,
    /// Read the allowlist from this file instead of downloading it. The file
    /// is the verifier's own, so it is trusted whoever published it (the
    /// publishers are not consulted); its bytes must still hash to the
    /// SHA-256 the TD attested.
    pub allowlist_override: Option<PathBuf>,
    /// Where collateral comes from.
    pub collateral: CollateralChoice,
    /// The bundle digest that must be running.
    pub expect_bundle: Option<[u8; 32]>,
    /// Accept a TD without a seal event.
    pub allow_unsealed: bool,
    /// Require the running bundle's event to say that every image is carried
    /// in the bundle or pinned by digest (`images_pinned`), so that the
    /// bundle digest fixes every byte that runs.
    pub require_pinned: bool,
    /// Oldest document accepted.
    pub max_age: Duration,
    /// How far in the future a document's timestamp may be.
    pub max_clock_skew: Duration,
    /// How far the document's timestamp (the TD's clock) may be from the
    /// release's `created_at` (GitHub's clock).
    pub max_publish_skew: Duration,
    /// Verify as of this time (Unix seconds) instead of the system clock.
    pub now: Option<u64>,
    /// Connect and read timeouts of every request.
    pub timeouts: Timeouts,
    /// Retries of GitHub requests on 5xx and connection errors.
    pub retry: RetryPolicy,
}

impl Default for ConnectOptions {
    /// github.com, Intel's root, the default policy (UpToDate only),
    /// production images whose allowlist [`OFFICIAL_IMAGE_PUBLISHER`]
    /// published, collateral from Intel PCS through the default cache,
    /// sealed required, [`DEFAULT_MAX_AGE`].
    fn default() -> Self {
        ConnectOptions {
            github_api_url: DEFAULT_GITHUB_API_URL.to_owned(),
            td_github_api_url: None,
            oidc_issuer: crate::launch::DEFAULT_OIDC_ISSUER.to_owned(),
            github_token: None,
            trust_root: TrustRoot::IntelProduction,
            policy: Policy::default(),
            accepted_variants: vec![Variant::Production],
            // A constant that parses; were it ever not to, the list would
            // be empty and `connect_with` would refuse to run: fail closed.
            allowlist_publishers: RepoName::parse(OFFICIAL_IMAGE_PUBLISHER)
                .into_iter()
                .collect(),
            allowlist_override: None,
            collateral: CollateralChoice::default(),
            expect_bundle: None,
            allow_unsealed: false,
            require_pinned: false,
            max_age: DEFAULT_MAX_AGE,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            max_publish_skew: DEFAULT_MAX_PUBLISH_SKEW,
            now: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl ConnectOptions {
    /// The GitHub API a TD must have been measured with.
    pub fn expected_td_github_api(&self) -> &str {
        self.td_github_api_url
            .as_deref()
            .unwrap_or(&self.github_api_url)
    }
}

impl std::fmt::Debug for ConnectOptions {
    /// Everything but the token's value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("github_api_url", &self.github_api_url)
            .field("td_github_api_url", &self.td_github_api_url)
            .field("oidc_issuer", &self.oidc_issuer)
            .field(
                "github_token",
                &self.github_token.as_ref().map(|_| "<redacted>"),
            )
            .field("trust_root", &self.trust_root)
            .field("policy", &self.policy)
            .field("accepted_variants", &self.accepted_variants)
            .field("allowlist_publishers", &self.allowlist_publishers)
            .field("allowlist_override", &self.allowlist_override)
            .field("collateral", &self.collateral)
            .field("expect_bundle", &self.expect_bundle.map(hex::encode))
            .field("allow_unsealed", &self.allow_unsealed)
            .field("require_pinned", &self.require_pinned)
            .field("max_age", &self.max_age)
            .field("max_clock_skew", &self.max_clock_skew)
            .field("max_publish_skew", &self.max_publish_skew)
            .field("now", &self.now)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A deployment that passed every check.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedService {
    /// The repo, as the measured launch config names it.
    pub repo: String,
    /// Where the service is reachable (bound by REPORTDATA).
    pub endpoint: String,
    /// The release the document was published on.
    pub release_tag: String,
    /// When the quote was made (Unix seconds, bound by REPORTDATA).
    pub timestamp: u64,
    /// The document's age when verified, in seconds.
    pub age_secs: u64,
    /// The running bundle (the last bundle event).
    pub bundle: BundleEvent,
    /// Every bundle deployed since boot, oldest first.
    pub bundles: Vec<BundleEvent>,
    /// Whether the event log records a seal (always true unless unsealed
    /// deployments were allowed).
    pub sealed: bool,
    /// TCB status as Intel names it.
    pub tcb_status: String,
    /// Intel security advisories that apply to the platform's TCB level.
    pub advisory_ids: Vec<String>,
    /// The TD report: every register, the attributes and REPORTDATA.
    pub td_report: TdReport10,
    /// The allowlist the measurements matched.
    pub allowlist: VerifiedAllowlist,
    /// The image id of the measured launch config, if the host gave one.
    pub image_id: Option<String>,
    /// The event log, replayed to RTMR3.
    pub event_log: EventLog,
    /// Where the collateral came from.
    pub collateral: CollateralOrigin,
    /// HTTP requests made (GitHub and allowlist; a collateral fetch on a
    /// cold cache adds its own, see `collateral`).
    pub http_requests: u64,
}

/// The allowlist a deployment was verified against.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedAllowlist {
    /// The URL the document names.
    pub url: String,
    /// SHA-256 of its bytes (checked).
    #[serde(with = "crate::hexser")]
    pub sha256: [u8; 32],
    /// The publishing repo, when the URL is a release asset on the configured GitHub.
    pub publisher: Option<String>,
    /// Whether the publisher was one of [`ConnectOptions::allowlist_publishers`].
    pub publisher_pinned: bool,
    /// Whether the bytes came from [`ConnectOptions::allowlist_override`].
    pub from_file: bool,
    /// The image the allowlist is for.
    pub image_id: String,
    /// The entry the registers matched.
    pub entry: String,
    /// That entry's image variant.
    pub variant: Variant,
}

/// [`connect_with`] with [`ConnectOptions::default`]: github.com, Intel's
/// root, collateral from Intel PCS through the default cache.
pub fn connect(repo: &str) -> Result<VerifiedService, ConnectError> {
    connect_with(repo, &ConnectOptions::default())
}

/// Find the newest published deployment of `repo` (`owner/name`) and verify
/// it (see the [module documentation](self) for the checks, in order).
pub fn connect_with(repo: &str, options: &ConnectOptions) -> Result<VerifiedService, ConnectError> {
    let repo_name = RepoName::parse(repo).map_err(|e| ConnectError::InvalidRepo {
        repo: repo.to_owned(),
        problem: match e {
            GithubError::InvalidRepo { reason, .. } => reason.to_owned(),
            other => other.to_string(),
        },
    })?;
    let now = match options.now {
        Some(now) => now,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ConnectError::InvalidOptions {
                option: "now",
                problem: "the system clock is before 1970".to_owned(),
            })?
            .as_secs(),
    };
    let github = github_client(options)?;
    let mut plain = http::PlainHttps::new(options.timeouts.connect, options.timeouts.read);

    let (chosen, document) = newest_document(&github, &repo_name)?;
    let release_tag = chosen.tag.clone();
    let allowlist = allowlist_source::obtain(&document.allowlist, options, &github, &mut plain)?;
    let (collateral, collateral_origin) =
        collateral_choice::obtain(&options.collateral, &document.quote, now)?;
    let requested_repo = repo_name.to_string();
    let checked = checks::check(
        &checks::Evidence {
            requested_repo: &requested_repo,
            release_tag: &release_tag,
            document: &document,
            allowlist: &allowlist.allowlist,
            allowlist_origin: &allowlist.origin,
            collateral: &collateral,
        },
        options,
        now,
    )?;

    check_release_time(&chosen, document.timestamp, options)?;

    let config = document.event_log.config();
    Ok(VerifiedService {
        repo: config.map_or_else(|| document.repo.clone(), |c| c.repo.clone()),
        endpoint: document.endpoint.clone(),
        release_tag: document.release_tag.clone(),
        timestamp: document.timestamp,
        age_secs: checked.age_secs,
        bundle: checked.bundle,
        bundles: document.event_log.bundles().cloned().collect(),
        sealed: document.event_log.is_sealed(),
        tcb_status: checked.quote.status,
        advisory_ids: checked.quote.advisory_ids,
        td_report: checked.quote.measurements,
        allowlist: VerifiedAllowlist {
            url: document.allowlist.url.clone(),
            sha256: document.allowlist.sha256,
            publisher_pinned: allowlist.publisher_pinned,
            publisher: allowlist.publisher.map(|p| p.to_string()),
            from_file: allowlist.from_file,
            image_id: allowlist.allowlist.image_id.clone(),
            entry: checked.entry.name,
            variant: checked.entry.profile.variant,
        },
        image_id: document.image_id.clone(),
        event_log: document.event_log.clone(),
        collateral: collateral_origin,
        http_requests: github.requests_sent() + plain.requests_sent,
    })
}

/// The allowlist published at `url` and the reference a deploy request
/// carries for it (the URL and the SHA-256 of the bytes downloaded). `url`
/// must be a release asset, on the GitHub the options name, of one of
/// [`ConnectOptions::allowlist_publishers`]; anything else is refused
/// before it is downloaded.
pub fn published_allowlist(
    url: &str,
    options: &ConnectOptions,
) -> Result<(Allowlist, AllowlistRef), ConnectError> {
    let github = github_client(options)?;
    let (allowlist, sha256) = allowlist_source::published(url, options, &github)?;
    Ok((
        allowlist,
        AllowlistRef {
            url: url.to_owned(),
            sha256,
        },
    ))
}

/// The TD's clock, which the host controls, against GitHub's: the
/// document's (attested) timestamp must be within
/// [`ConnectOptions::max_publish_skew`] of the release's `created_at`, so a
/// host cannot pass an old deployment off as fresh by setting the TD's
/// clock forward.
fn check_release_time(
    chosen: &release::Chosen,
    timestamp: u64,
    options: &ConnectOptions,
) -> Result<(), ConnectError> {
    let created = crate::collateral::validity::parse_utc_seconds(&chosen.created_at);
    let max_skew_secs = options.max_publish_skew.as_secs();
    match created.map(|created| created.abs_diff(timestamp)) {
        Some(skew) if skew <= max_skew_secs => Ok(()),
        _ => Err(ConnectError::ReleaseTime {
            release: chosen.tag.clone(),
            created_at: chosen.created_at.clone(),
            timestamp,
            max_skew_secs,
        }),
    }
}

/// The newest deploy release with a document, and the document.
fn newest_document(
    github: &GitHub,
    repo: &RepoName,
) -> Result<(release::Chosen, AttestationDocument), ConnectError> {
    let mut chooser = release::ReleaseChooser::default();
    let chosen = github
        .find_release(repo, |r| chooser.consider(r))
        .map_err(|e| match e {
            GithubError::NotFound(_) => ConnectError::NotFound {
                repo: repo.to_string(),
                seen: "the repository does not exist or is not visible".to_owned(),
            },
            source => ConnectError::Releases {
                repo: repo.to_string(),
                source,
            },
        })?
        .ok_or_else(|| ConnectError::NotFound {
            repo: repo.to_string(),
            seen: chooser.seen(),
        })?;
    let max_document = u64::try_from(MAX_DOCUMENT_BYTES).unwrap_or(u64::MAX);
    let bytes = github
        .download_asset(repo, chosen.document_id, max_document)
        .map_err(|source| ConnectError::Download {
            what: format!("{DOCUMENT_ASSET} of release {:?} of {repo}", chosen.tag),
            source,
        })?;
    let document =
        AttestationDocument::from_json(&bytes).map_err(|source| ConnectError::Document {
            release: chosen.tag.clone(),
            source,
        })?;
    Ok((chosen, document))
}

fn github_client(options: &ConnectOptions) -> Result<GitHub, ConnectError> {
    let github = GitHub::new(&options.github_api_url)
        .map_err(|e| ConnectError::InvalidOptions {
            option: "github_api_url",
            problem: e.to_string(),
        })?
        .with_timeouts(options.timeouts)
        .with_retry(options.retry);
    Ok(match &options.github_token {
        Some(token) => github.with_token(token.clone()),
        None => github,
    })
}
