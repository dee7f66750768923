//! The verified HTTP client: after [`super::connect_with`] has verified a
//! repo's published deployment, open an RA-TLS connection to its endpoint and
//! check that the TD answering there, now, is the one that was verified.
//!
//! The agent's certificate carries a quote binding its TLS key
//! ([`crate::ratls`]); [`AgentClient`] verifies it with the same root, policy
//! and collateral as the publication, pins the key, and asks for a fresh
//! nonce-bound quote with the current event log. [`open`] then requires the
//! live TD to have the published TD's MRTD, RTMR0-2, TD attributes and XFAM,
//! the same repo, the published bundle as its newest bundle event, and (unless
//! unsealed deployments are accepted) a seal. Requests made through the
//! returned client travel only over connections to that pinned key.

use crate::agent::{AgentClient, AgentTrust, Attested, CollateralSupply};
use crate::allowlist::{Allowlist, MeasurementSet};
use crate::eventlog::BundleEvent;
use crate::quote::TdReport10;
use crate::verify::Verifier;

use super::{allowlist_source, checks, ConnectError, ConnectOptions, VerifiedService};

/// A running agent that passed [`verify_agent`].
#[derive(Debug)]
pub struct VerifiedAgent {
    /// The client, pinned to the agent's attested TLS key.
    pub client: AgentClient,
    /// The fresh-nonce attestation: quote, event log, launch config.
    pub attested: Attested,
    /// The verifier's allowlist entry the registers matched.
    pub entry: MeasurementSet,
    /// The running bundle (the newest bundle event, unless a `stopped`
    /// event followed it), if any.
    pub running: Option<BundleEvent>,
}

/// Attest the agent at `url` live, with the same rules as a published
/// deployment ([`super::connect_with`]) where they apply:
///
/// - its RA-TLS certificate and a fresh-nonce quote pass DCAP under the
///   options' root, policy and collateral;
/// - MRTD, RTMR0-2, TD attributes and XFAM match the verifier's own
///   allowlist ([`ConnectOptions::allowlist_override`] or
///   [`crate::verify::Policy::allowlist`]; a live agent names no allowlist,
///   so publishers cannot vouch for one here), of an accepted variant;
/// - the event log replays to RTMR3, and the measured launch config names
///   `repo` and the options' GitHub API;
/// - the running bundle is the expected one, with pinned images, when the
///   options expect either (nothing running is then a failure);
/// - the TD is sealed, unless unsealed TDs are accepted.
///
/// [`ConnectOptions::max_age`] has no meaning for a quote made now and is
/// not consulted; [`ConnectOptions::now`] must be unset (the agent's
/// certificate is checked at the current time).
pub fn verify_agent(
    url: &str,
    repo: &str,
    options: &ConnectOptions,
) -> Result<VerifiedAgent, ConnectError> {
    if options.now.is_some() {
        return Err(ConnectError::InvalidOptions {
            option: "now",
            problem: "a live agent is verified at the current time; unset it".to_owned(),
        });
    }
    let allowlist = verifier_allowlist(options)?;
    let collateral = CollateralSupply::from_choice(options.collateral.clone())
        .map_err(ConnectError::Collateral)?;
    let policy = options.policy.clone().with_allowlist(allowlist.clone());
    let mut trust = AgentTrust::new(
        Verifier::with_root(options.trust_root.clone(), policy),
        collateral,
        repo,
    )
    .with_github_api_url(options.expected_td_github_api())
    .with_oidc_issuer(options.oidc_issuer.clone());
    // The caller named a plain-http API itself (a local test server).
    trust.allow_http_github_api = options.expected_td_github_api().starts_with("http://");
    let live = |source| ConnectError::Live {
        endpoint: url.to_owned(),
        source: Box::new(source),
    };
    let client = AgentClient::connect(url, trust).map_err(live)?;
    let attested = client.attest().map_err(live)?;
    let td = &attested.quote.measurements;
    let entry = allowlist
        .check(&crate::allowlist::TdMeasurements::of(td))
        .map_err(|mismatch| ConnectError::Measurements {
            list: "the verifier's allowlist".to_owned(),
            mismatch: Box::new(mismatch),
        })?
        .clone();
    checks::check_variant(&entry, options)?;
    // The newest workload event says what runs: a `stopped` event after
    // the last bundle (a failed first deploy) means nothing does.
    let running = checks::check_running(attested.event_log.running_bundle(), options, false)?;
    if !options.allow_unsealed && !attested.event_log.is_sealed() {
        return Err(ConnectError::Unsealed);
    }
    Ok(VerifiedAgent {
        client,
        attested,
        entry,
        running,
    })
}

/// The allowlist a live check trusts: the verifier's file or pinned list.
fn verifier_allowlist(options: &ConnectOptions) -> Result<Allowlist, ConnectError> {
    match (&options.allowlist_override, &options.policy.allowlist) {
        (Some(path), _) => Ok(allowlist_source::from_file(path)?.0),
        (None, Some(pinned)) => Ok(pinned.clone()),
        (None, None) => Err(ConnectError::InvalidOptions {
            option: "allowlist_override",
            problem: "a live agent names no allowlist, so the verifier must give one (a file, \
                      or policy.allowlist): nothing else says which images to trust"
                .to_owned(),
        }),
    }
}

/// Connect to `service.endpoint` over RA-TLS and check that the live TD is
/// the verified one; the client is the verified HTTP client
/// ([`AgentClient::request`]).
pub fn open(
    service: &VerifiedService,
    options: &ConnectOptions,
) -> Result<AgentClient, ConnectError> {
    let collateral = CollateralSupply::from_choice(options.collateral.clone())
        .map_err(ConnectError::Collateral)?;
    // The published quote already matched the allowlist; the live one must
    // equal it register by register, which is at least as strict.
    let mut policy = options.policy.clone();
    policy.allowlist = None;
    let verifier = Verifier::with_root(options.trust_root.clone(), policy);
    let mut trust = AgentTrust::new(verifier, collateral, service.repo.clone())
        .with_github_api_url(options.expected_td_github_api())
        .with_oidc_issuer(options.oidc_issuer.clone());
    trust.allow_http_github_api = options.expected_td_github_api().starts_with("http://");
    let live = |source| ConnectError::Live {
        endpoint: service.endpoint.clone(),
        source: Box::new(source),
    };
    let client = AgentClient::connect(&service.endpoint, trust).map_err(live)?;
    let attested = client.attest().map_err(live)?;
    same_td(&service.td_report, &attested.quote.measurements)?;
    let running = attested.event_log.running_bundle().map(|b| b.digest);
    if running != Some(service.bundle.digest) {
        return Err(ConnectError::LiveBundle {
            published: hex::encode(service.bundle.digest),
            running: running.map_or_else(|| "no bundle".to_owned(), hex::encode),
        });
    }
    if !options.allow_unsealed && !attested.event_log.is_sealed() {
        return Err(ConnectError::Unsealed);
    }
    Ok(client)
}

/// The registers that identify what a TD runs (RTMR3 moves with deploys and
/// is checked through the event log instead).
fn same_td(published: &TdReport10, live: &TdReport10) -> Result<(), ConnectError> {
    let registers = [
        ("mrtd", published.mr_td, live.mr_td),
        ("rtmr0", published.rtmr0, live.rtmr0),
        ("rtmr1", published.rtmr1, live.rtmr1),
        ("rtmr2", published.rtmr2, live.rtmr2),
    ];
    for (name, want, got) in registers {
        if want != got {
            return Err(ConnectError::LiveMismatch {
                field: name,
                published: hex::encode(want),
                live: hex::encode(got),
            });
        }
    }
    if published.td_attributes != live.td_attributes {
        return Err(ConnectError::LiveMismatch {
            field: "td_attributes",
            published: format!("{:?}", published.td_attributes),
            live: format!("{:?}", live.td_attributes),
        });
    }
    if published.xfam != live.xfam {
        return Err(ConnectError::LiveMismatch {
            field: "xfam",
            published: hex::encode(published.xfam),
            live: hex::encode(live.xfam),
        });
    }
    Ok(())
}
