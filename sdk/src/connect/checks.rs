//! The checks on a downloaded deployment, in order: first that the quote is
//! genuine and binds the document (DCAP, REPORTDATA, RTMR3 replay), then the
//! bound claims (measurements, release, repo, bundle, seal, freshness).
//! Claims are only judged once they are known to be what the TD attested.

use crate::allowlist::{Allowlist, MeasurementSet, TdMeasurements, Variant};
use crate::attestation::AttestationDocument;
use crate::collateral::Collateral;
use crate::eventlog::BundleEvent;
use crate::launch::same_github_api;
use crate::quote::TdReport10;
use crate::verify::{TrustRoot, VerifiedQuote, Verifier, VerifyError};

use super::{ConnectError, ConnectOptions};

/// What a deployment is checked from.
pub(crate) struct Evidence<'a> {
    /// The repo the caller asked for.
    pub(crate) requested_repo: &'a str,
    /// The tag of the release the document was downloaded from.
    pub(crate) release_tag: &'a str,
    /// The parsed document.
    pub(crate) document: &'a AttestationDocument,
    /// The allowlist the document names (digest already checked).
    pub(crate) allowlist: &'a Allowlist,
    /// Where the allowlist came from, for messages.
    pub(crate) allowlist_origin: &'a str,
    /// Collateral for the quote.
    pub(crate) collateral: &'a Collateral,
}

/// What the checks established.
pub(crate) struct Checked {
    /// The DCAP result.
    pub(crate) quote: VerifiedQuote,
    /// The allowlist entry the registers matched.
    pub(crate) entry: MeasurementSet,
    /// The running bundle (the last bundle event).
    pub(crate) bundle: BundleEvent,
    /// Seconds between the document's timestamp and `now` (0 if slightly ahead).
    pub(crate) age_secs: u64,
}

/// Run every check on `evidence` at time `now` (Unix seconds).
pub(crate) fn check(
    evidence: &Evidence<'_>,
    options: &ConnectOptions,
    now: u64,
) -> Result<Checked, ConnectError> {
    let document = evidence.document;
    let quote = verify_quote(&document.quote, evidence.collateral, options, now)?;
    let td = &quote.measurements;

    let expected = document
        .expected_report_data()
        .map_err(|source| ConnectError::Document {
            release: evidence.release_tag.to_owned(),
            source,
        })?;
    if td.report_data != expected {
        return Err(ConnectError::Binding {
            expected: hex::encode(expected),
            actual: hex::encode(td.report_data),
        });
    }
    document
        .event_log
        .verify_against(&td.rtmr3)
        .map_err(ConnectError::EventLog)?;

    let entry = check_measurements(evidence, td, options)?;

    if document.release_tag != evidence.release_tag {
        return Err(ConnectError::ReleaseMismatch {
            document: document.release_tag.clone(),
            release: evidence.release_tag.to_owned(),
        });
    }
    // The document's repo equals the config's (`AttestationDocument::validate`);
    // the config event is the measured fact.
    let measured_repo = document
        .event_log
        .config()
        .map(|config| config.repo.as_str())
        .unwrap_or_default();
    if !measured_repo.eq_ignore_ascii_case(evidence.requested_repo) {
        return Err(ConnectError::RepoBinding {
            requested: evidence.requested_repo.to_owned(),
            measured: measured_repo.to_owned(),
        });
    }

    let measured_api = document
        .event_log
        .config()
        .map(|config| config.github_api_url.as_str())
        .unwrap_or_default();
    if !same_github_api(options.expected_td_github_api(), measured_api) {
        return Err(ConnectError::GithubApi {
            expected: options.expected_td_github_api().to_owned(),
            measured: measured_api.to_owned(),
        });
    }
    let measured_issuer = document
        .event_log
        .config()
        .map(|config| config.oidc.issuer.as_str())
        .unwrap_or_default();
    if measured_issuer != options.oidc_issuer {
        return Err(ConnectError::OidcIssuer {
            expected: options.oidc_issuer.clone(),
            measured: measured_issuer.to_owned(),
        });
    }

    let bundle = check_bundle(document, options)?;
    if !options.allow_unsealed && !document.event_log.is_sealed() {
        return Err(ConnectError::Unsealed);
    }
    let age_secs = check_freshness(document.timestamp, options, now)?;
    Ok(Checked {
        quote,
        entry,
        bundle,
        age_secs,
    })
}

/// DCAP and the policy's platform checks. The allowlists are checked later,
/// once the quote is known to bind the document.
fn verify_quote(
    quote: &[u8],
    collateral: &Collateral,
    options: &ConnectOptions,
    now: u64,
) -> Result<VerifiedQuote, ConnectError> {
    let mut policy = options.policy.clone();
    policy.allowlist = None;
    Verifier::with_root(options.trust_root.clone(), policy)
        .verify(quote, collateral, now)
        .map_err(|e| match e {
            VerifyError::TcbStatus { .. } | VerifyError::AdvisoryRejected { .. } => {
                ConnectError::TcbStatus(e)
            }
            other => ConnectError::Untrusted(other),
        })
}

/// MRTD, RTMR0-2, TD attributes and XFAM against the document's allowlist
/// (and the policy's pinned one, if set); the entry's variant and image.
fn check_measurements(
    evidence: &Evidence<'_>,
    td: &TdReport10,
    options: &ConnectOptions,
) -> Result<MeasurementSet, ConnectError> {
    let registers = TdMeasurements::of(td);
    let entry = evidence
        .allowlist
        .check(&registers)
        .map_err(|mismatch| ConnectError::Measurements {
            list: format!("the allowlist from {}", evidence.allowlist_origin),
            mismatch: Box::new(mismatch),
        })?
        .clone();
    // The variant guards read the entry's label: when the verifier pinned a
    // list of its own, its labels count, not those of the document's list.
    let entry = match &options.policy.allowlist {
        Some(pinned) => pinned
            .check(&registers)
            .map_err(|mismatch| ConnectError::Measurements {
                list: "the verifier's pinned allowlist".to_owned(),
                mismatch: Box::new(mismatch),
            })?
            .clone(),
        None => entry,
    };
    check_variant(&entry, options)?;
    let measured_image = evidence
        .document
        .event_log
        .config()
        .and_then(|config| config.image_id.as_deref());
    if let Some(measured) = measured_image {
        if measured != evidence.allowlist.image_id {
            return Err(ConnectError::ImageMismatch {
                measured: measured.to_owned(),
                allowlist: evidence.allowlist.image_id.clone(),
            });
        }
    }
    Ok(entry)
}

pub(super) fn check_variant(
    entry: &MeasurementSet,
    options: &ConnectOptions,
) -> Result<(), ConnectError> {
    let variant = entry.profile.variant;
    let refuse = |reason: String| ConnectError::Variant {
        entry: entry.name.clone(),
        variant,
        reason,
    };
    // A sim image's quotes come from a simulated platform with a public seed.
    if variant == Variant::Sim && options.trust_root == TrustRoot::IntelProduction {
        return Err(refuse(
            "simulated images are never accepted under Intel's root".to_owned(),
        ));
    }
    if !options.accepted_variants.contains(&variant) {
        let accepted: Vec<String> = options
            .accepted_variants
            .iter()
            .map(|v| format!("{v:?}").to_ascii_lowercase())
            .collect();
        return Err(refuse(format!(
            "the options accept only: {}",
            accepted.join(", ")
        )));
    }
    Ok(())
}

/// The running bundle: the last bundle event, which must exist, must not be
/// followed by a `stopped` event, must have the expected digest when the
/// options name one, and pinned images when the options require them.
fn check_bundle(
    document: &AttestationDocument,
    options: &ConnectOptions,
) -> Result<BundleEvent, ConnectError> {
    check_running(document.event_log.running_bundle(), options, true)?.ok_or(ConnectError::NoBundle)
}

/// The options' claims on the running bundle (`None`: nothing runs):
/// the expected digest, pinned images. A running bundle is required when
/// `required` is set or the options expect anything of it.
pub(super) fn check_running(
    running: Option<&BundleEvent>,
    options: &ConnectOptions,
    required: bool,
) -> Result<Option<BundleEvent>, ConnectError> {
    let expects = options.expect_bundle.is_some() || options.require_pinned;
    let Some(running) = running else {
        return if required || expects {
            Err(ConnectError::NoBundle)
        } else {
            Ok(None)
        };
    };
    if let Some(expected) = options.expect_bundle {
        if running.digest != expected {
            return Err(ConnectError::BundleMismatch {
                expected: hex::encode(expected),
                running: hex::encode(running.digest),
            });
        }
    }
    if options.require_pinned && !running.images_pinned {
        return Err(ConnectError::NotPinned {
            digest: hex::encode(running.digest),
        });
    }
    Ok(Some(running.clone()))
}

/// The document's age: at most `max_age`, and not ahead of `now` by more
/// than `max_clock_skew`.
fn check_freshness(
    timestamp: u64,
    options: &ConnectOptions,
    now: u64,
) -> Result<u64, ConnectError> {
    let max_skew_secs = options.max_clock_skew.as_secs();
    if let Some(ahead_secs) = timestamp.checked_sub(now).filter(|&ahead| ahead > 0) {
        if ahead_secs > max_skew_secs {
            return Err(ConnectError::FutureTimestamp {
                timestamp,
                ahead_secs,
                max_skew_secs,
            });
        }
        return Ok(0);
    }
    let age_secs = now.saturating_sub(timestamp);
    let max_age_secs = options.max_age.as_secs();
    if age_secs > max_age_secs {
        return Err(ConnectError::Stale {
            timestamp,
            age_secs,
            max_age_secs,
        });
    }
    Ok(age_secs)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options(max_age: u64, skew: u64) -> ConnectOptions {
        ConnectOptions {
            max_age: Duration::from_secs(max_age),
            max_clock_skew: Duration::from_secs(skew),
            ..ConnectOptions::default()
        }
    }

    #[test]
    fn freshness_bounds_age_and_skew() {
        let o = options(100, 10);
        assert_eq!(check_freshness(1000, &o, 1000).unwrap(), 0);
        assert_eq!(check_freshness(900, &o, 1000).unwrap(), 100);
        assert!(matches!(
            check_freshness(899, &o, 1000),
            Err(ConnectError::Stale {
                age_secs: 101,
                max_age_secs: 100,
                ..
            })
        ));
        assert_eq!(check_freshness(1010, &o, 1000).unwrap(), 0);
        assert!(matches!(
            check_freshness(1011, &o, 1000),
            Err(ConnectError::FutureTimestamp {
                ahead_secs: 11,
                max_skew_secs: 10,
                ..
            })
        ));
    }
}
