//! DCAP verification of TDX quotes under an explicit [`Policy`].
//!
//! Verification has three layers, applied in this order:
//! 1. **Parsing** with [`crate::quote`]: the quote must be a well-formed TDX
//!    quote (an SGX quote is rejected here, by name).
//! 2. **DCAP** with dcap-qvl: the PCK chain up to the trust root, the QE report
//!    signed by the PCK, the QE report binding of the attestation key, the
//!    quote signature, the TCB info and QE identity signatures, the CRLs and the
//!    collateral's validity at `now`.
//! 3. **Policy**: the TCB status must be one the policy accepts, no advisory on
//!    the blocklist, no DEBUG or other unsafe TD attribute unless the policy is a
//!    dev policy, and — when an allowlist is given — MRTD, RTMR0–2, XFAM and the
//!    TD attributes must match one of its measurement sets.
//!
//! The trust root is explicit: [`TrustRoot::IntelProduction`] by default; the
//! simulated platform's root is accepted only when passed as
//! [`TrustRoot::Explicit`].

use std::collections::BTreeSet;
use std::fmt;

use dcap_qvl::verify::QuoteVerifier;
use serde::Serialize;

pub use dcap_qvl::TcbStatus;

use crate::allowlist::{Allowlist, AllowlistMismatch, TdMeasurements};
use crate::collateral::Collateral;
use crate::quote::{Quote, QuoteError, TdAttributes, TdReport10};

/// Which root CA anchors the PCK certificate chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustRoot {
    /// Intel's SGX/TDX production root CA (built into dcap-qvl).
    IntelProduction,
    /// A root given explicitly (DER), e.g. the simulated platform's root.
    Explicit(Vec<u8>),
}

/// What a verifier accepts beyond the cryptographic checks.
#[derive(Clone, Debug)]
pub struct Policy {
    /// TCB statuses accepted. Default: only `UpToDate`.
    pub accepted_statuses: BTreeSet<StatusName>,
    /// Advisory ids (e.g. `INTEL-SA-00615`) that reject a quote whatever its status.
    pub rejected_advisories: BTreeSet<String>,
    /// Accept TDs with DEBUG or profiling attributes. Only for dev images.
    pub allow_debug: bool,
    /// Expected measurements. `None` checks only the platform, not what runs on it.
    pub allowlist: Option<Allowlist>,
}

/// A TCB status by name, ordered so policies print deterministically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusName(&'static str);

/// Every TCB status dcap-qvl can report, by its Intel name.
pub const ALL_STATUSES: [&str; 9] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
    "Revoked",
];

impl StatusName {
    /// Parse an Intel TCB status name (case-insensitive). `Revoked` is never
    /// acceptable and is refused here.
    pub fn parse(name: &str) -> Result<Self, PolicyError> {
        let found = ALL_STATUSES
            .iter()
            .find(|s| s.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| PolicyError::UnknownStatus(name.to_string()))?;
        if *found == "Revoked" {
            return Err(PolicyError::RevokedNotAcceptable);
        }
        Ok(StatusName(found))
    }

    /// The Intel name of this status.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for StatusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A policy that cannot be built as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("unknown TCB status {0:?}; known statuses: {list}", list = ALL_STATUSES.join(", "))]
    UnknownStatus(String),
    #[error("the TCB status Revoked can never be accepted")]
    RevokedNotAcceptable,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            accepted_statuses: [StatusName("UpToDate")].into_iter().collect(),
            rejected_advisories: BTreeSet::new(),
            allow_debug: false,
            allowlist: None,
        }
    }
}

impl Policy {
    /// Also accept `status`.
    pub fn accept_status(mut self, status: StatusName) -> Self {
        self.accepted_statuses.insert(status);
        self
    }

    /// Reject any quote whose TCB level carries advisory `id`.
    pub fn reject_advisory(mut self, id: &str) -> Self {
        self.rejected_advisories
            .insert(id.trim().to_ascii_uppercase());
        self
    }

    /// A dev policy: DEBUG TDs are accepted. Never use for production.
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }

    /// Require the TD's measurements to match `allowlist`.
    pub fn with_allowlist(mut self, allowlist: Allowlist) -> Self {
        self.allowlist = Some(allowlist);
        self
    }
}

/// Why a quote was not accepted. Each variant names the check that failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed quote: {0}")]
    Parse(QuoteError),
    #[error("DCAP verification failed: {0}")]
    Dcap(String),
    #[error(
        "TCB status {status} is not accepted by the policy (accepted: {accepted}); advisory ids: {advisories}",
        advisories = display_ids(advisory_ids)
    )]
    TcbStatus {
        status: String,
        advisory_ids: Vec<String>,
        accepted: String,
    },
    #[error("advisory {id} is on the policy's blocklist (TCB status {status})")]
    AdvisoryRejected { id: String, status: String },
    #[error("TD attributes {attributes:#018x} have unsafe bits set ({names}); only a dev policy accepts them")]
    UnsafeAttributes { attributes: u64, names: String },
    #[error("measurements do not match the allowlist: {0}")]
    Measurement(AllowlistMismatch),
}

// Conversions by hand: the messages above already include the inner error,
// so it is not also exposed as `source()` (which would print it twice).
impl From<QuoteError> for VerifyError {
    fn from(e: QuoteError) -> Self {
        VerifyError::Parse(e)
    }
}

impl From<AllowlistMismatch> for VerifyError {
    fn from(e: AllowlistMismatch) -> Self {
        VerifyError::Measurement(e)
    }
}

fn display_ids(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

/// A quote that passed DCAP verification and the policy.
#[derive(Clone, Debug, Serialize)]
pub struct VerifiedQuote {
    /// TCB status as Intel names it, e.g. `UpToDate`.
    pub status: String,
    /// Intel security advisories that apply to the platform's TCB level.
    pub advisory_ids: Vec<String>,
    /// Quote version (4 or 5).
    pub quote_version: u16,
    /// The TD report: every measurement register, the TD attributes, XFAM
    /// and the report data (the TD 1.0 part, which every body starts with).
    pub measurements: TdReport10,
    /// Name of the allowlist entry the measurements matched, if an allowlist was given.
    pub allowlist_entry: Option<String>,
}

/// Verifies quotes against one trust root and one policy.
pub struct Verifier {
    root: TrustRoot,
    policy: Policy,
}

impl Verifier {
    /// A verifier anchored at Intel's production root.
    pub fn new(policy: Policy) -> Self {
        Verifier {
            root: TrustRoot::IntelProduction,
            policy,
        }
    }

    /// A verifier anchored at an explicit root (e.g. the simulated platform's).
    pub fn with_root(root: TrustRoot, policy: Policy) -> Self {
        Verifier { root, policy }
    }

    /// The policy this verifier applies.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Verify `quote` with `collateral` at time `now` (Unix seconds), then apply
    /// the policy.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &Collateral,
        now: u64,
    ) -> Result<VerifiedQuote, VerifyError> {
        let parsed = Quote::parse(quote)?;
        let verifier = match &self.root {
            TrustRoot::IntelProduction => QuoteVerifier::new_prod(),
            TrustRoot::Explicit(der) => QuoteVerifier::new(der.clone()),
        }
        .allow_debug(self.policy.allow_debug);
        let report = verifier
            .verify(quote, collateral.as_dcap(), now)
            .map_err(|e| VerifyError::Dcap(format!("{e:#}")))?;
        self.check_policy(&parsed, report.status, report.advisory_ids)
    }

    fn check_policy(
        &self,
        quote: &Quote,
        status: String,
        advisory_ids: Vec<String>,
    ) -> Result<VerifiedQuote, VerifyError> {
        let policy = &self.policy;
        if !policy
            .accepted_statuses
            .iter()
            .any(|s| s.as_str() == status)
        {
            let accepted = policy
                .accepted_statuses
                .iter()
                .map(StatusName::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(VerifyError::TcbStatus {
                status,
                advisory_ids,
                accepted,
            });
        }
        if let Some(id) = advisory_ids.iter().find(|id| {
            policy
                .rejected_advisories
                .contains(&id.to_ascii_uppercase())
        }) {
            return Err(VerifyError::AdvisoryRejected {
                id: id.clone(),
                status,
            });
        }

        let attributes = quote.td_report().td_attributes;
        let unsafe_bits = unsafe_attribute_names(&attributes);
        if !policy.allow_debug && !unsafe_bits.is_empty() {
            return Err(VerifyError::UnsafeAttributes {
                attributes: attributes.value(),
                names: unsafe_bits.join(", "),
            });
        }
        let measurements = quote.td_report().clone();
        let allowlist_entry = match &policy.allowlist {
            Some(list) => Some(list.check(&td_measurements(&measurements))?.name.clone()),
            None => None,
        };
        Ok(VerifiedQuote {
            status,
            advisory_ids,
            quote_version: quote.header().version,
            measurements,
            allowlist_entry,
        })
    }
}

/// TD attributes that let the host read or steer the TD: DEBUG, profiling,
/// MIGRATABLE, and SEPT_VE_DISABLE *missing* (without it a malicious host can
/// inject #VE exceptions on pending pages).
fn unsafe_attribute_names(attributes: &TdAttributes) -> Vec<&'static str> {
    let mut names = Vec::new();
    if attributes.debug() {
        names.push("DEBUG");
    }
    if attributes.profiling() {
        names.push("profiling");
    }
    if attributes.migratable() {
        names.push("MIGRATABLE");
    }
    if !attributes.sept_ve_disable() {
        names.push("SEPT_VE_DISABLE not set");
    }
    names
}

fn td_measurements(td: &TdReport10) -> TdMeasurements {
    TdMeasurements::of(td)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_parse_case_insensitively_and_refuse_revoked() {
        assert_eq!(StatusName::parse("uptodate").unwrap().as_str(), "UpToDate");
        assert_eq!(
            StatusName::parse("SWHardeningNeeded").unwrap().as_str(),
            "SWHardeningNeeded"
        );
        assert_eq!(
            StatusName::parse("Revoked"),
            Err(PolicyError::RevokedNotAcceptable)
        );
        let err = StatusName::parse("Fine").unwrap_err().to_string();
        assert!(
            err.contains("\"Fine\"") && err.contains("OutOfDate"),
            "{err}"
        );
    }

    #[test]
    fn default_policy_accepts_only_up_to_date() {
        let p = Policy::default();
        let names: Vec<_> = p.accepted_statuses.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["UpToDate"]);
        assert!(!p.allow_debug);
        assert!(p.allowlist.is_none());
    }

    /// dcap-qvl's status names must be the ones this module knows, or a policy
    /// could never match a status it reports.
    #[test]
    fn status_names_match_dcap_qvl() {
        use TcbStatus::*;
        for s in [
            UpToDate,
            SWHardeningNeeded,
            ConfigurationNeeded,
            ConfigurationAndSWHardeningNeeded,
            OutOfDate,
            OutOfDateConfigurationNeeded,
            TDRelaunchAdvised,
            TDRelaunchAdvisedConfigurationNeeded,
            Revoked,
        ] {
            assert!(ALL_STATUSES.contains(&s.to_string().as_str()), "{s}");
        }
    }
}
