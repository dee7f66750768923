//! Publishing a deployment: a new GitHub release `deploy-YYYYMMDD-HHMMSS`
//! (UTC) carrying `attestation.json`, whose quote's REPORTDATA binds the
//! repo, endpoint, release tag, timestamp and the event log's digest
//! ([`PublishStatement`]).
//!
//! The release is created as a DRAFT first, so that a tag already taken
//! (two deploys in one second) is known before the tag is bound into a
//! quote; the next tag gets a `-2`, `-3`, ... suffix. Then the attestation
//! is uploaded to the draft and the draft published (`draft: false`), so
//! repositories with GitHub's immutable releases work (a published release
//! takes no new assets) and verifiers, which skip drafts, never see a
//! release without its attestation. If anything fails after the draft was
//! created, the draft is deleted: nothing is left half-published.

use std::time::{SystemTime, UNIX_EPOCH};

use easyenclave::attestation::{
    report_data, AllowlistRef, AttestationDocument, AttestationError, PublishStatement,
    ATTESTATION_VERSION,
};
use easyenclave::github::{GitHub, GithubError, NewRelease, Release, RepoName};
use easyenclave::launch::LaunchConfig;

use crate::measured::{EvidenceError, MeasuredLog};

/// The asset name verifiers look for.
pub const ATTESTATION_ASSET: &str = "attestation.json";
/// Tags tried for one deployment (`TAG`, `TAG-2`, ... `TAG-10`).
const MAX_TAG_ATTEMPTS: u32 = 10;
/// Quotes tried while the event log keeps changing underneath.
const MAX_QUOTE_ATTEMPTS: u32 = 3;

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The release's tag.
    pub tag: String,
    /// The attestation's timestamp (Unix seconds).
    pub timestamp: u64,
    /// The uploaded asset's download URL.
    pub asset_url: String,
}

/// Publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The wall clock reads before 1970.
    #[error("the wall clock reads before 1970")]
    Clock,
    /// GitHub refused or failed to create the release.
    #[error("creating release {tag}: {source}")]
    CreateRelease {
        /// The tag.
        tag: String,
        /// Why.
        source: GithubError,
    },
    /// Every candidate tag exists already.
    #[error("release tags {first} to {first}-{MAX_TAG_ATTEMPTS} all exist")]
    TagsTaken {
        /// The first candidate.
        first: String,
    },
    /// The quote could not be made.
    #[error("quoting the attestation: {0}")]
    Evidence(#[from] EvidenceError),
    /// The event log changed between the statement and the quote every time.
    #[error("the event log changed during quoting {MAX_QUOTE_ATTEMPTS} times in a row")]
    Unstable,
    /// The document or its statement is invalid.
    #[error("attestation document: {0}")]
    Document(#[from] AttestationError),
    /// Uploading the asset failed.
    #[error("uploading {ATTESTATION_ASSET} to draft release {tag}: {source}")]
    Upload {
        /// The release's tag.
        tag: String,
        /// Why.
        source: GithubError,
    },
    /// Publishing the draft (`draft: false`) failed.
    #[error("publishing draft release {tag}: {source}")]
    Publish {
        /// The release's tag.
        tag: String,
        /// Why.
        source: GithubError,
    },
    /// A step after the draft failed, and so did deleting the draft.
    #[error("{failure}; deleting draft release {tag} failed too (delete it by hand): {cleanup}")]
    DraftLeft {
        /// The step that failed.
        failure: Box<PublishError>,
        /// The draft's tag.
        tag: String,
        /// Why it could not be deleted.
        cleanup: GithubError,
    },
}

/// Everything publishing needs.
pub struct Publisher<'a> {
    /// Client authenticated as the deployer.
    pub github: &'a GitHub,
    /// The agent's repo.
    pub repo: &'a RepoName,
    /// The measured launch config (repo, endpoint, image id).
    pub config: &'a LaunchConfig,
    /// The TSM and event log.
    pub measured: &'a MeasuredLog,
    /// The allowlist the deployer verified the agent against.
    pub allowlist: &'a AllowlistRef,
    /// The wall clock.
    pub clock: fn() -> SystemTime,
}

impl Publisher<'_> {
    /// Create a draft release with `notes`, upload the attestation to it and
    /// publish it; on failure after the draft exists, delete the draft.
    pub fn publish(&self, notes: &str) -> Result<Published, PublishError> {
        let draft = self.create_release(notes)?;
        match self.complete(&draft) {
            Ok(published) => Ok(published),
            Err(failure) => match self.github.delete_release(self.repo, draft.id) {
                // A retried DELETE whose first attempt went through.
                Ok(()) | Err(GithubError::NotFound(_)) => Err(failure),
                Err(cleanup) => Err(PublishError::DraftLeft {
                    failure: Box::new(failure),
                    tag: draft.tag_name,
                    cleanup,
                }),
            },
        }
    }

    /// Attest for the draft's tag, upload the document, publish the draft.
    fn complete(&self, draft: &Release) -> Result<Published, PublishError> {
        let tag = &draft.tag_name;
        let document = self.attest(tag)?;
        let json = document.to_json()?;
        let asset = self
            .github
            .upload_asset(
                draft,
                ATTESTATION_ASSET,
                "application/json",
                json.as_bytes(),
            )
            .map_err(|source| PublishError::Upload {
                tag: tag.clone(),
                source,
            })?;
        let published = self
            .github
            .publish_release(self.repo, draft.id)
            .map_err(|source| PublishError::Publish {
                tag: tag.clone(),
                source,
            })?;
        // GitHub's download URL of a draft's asset changes on publication.
        let asset_url = published
            .assets
            .iter()
            .find(|a| a.name == ATTESTATION_ASSET)
            .map_or(asset.browser_download_url, |a| {
                a.browser_download_url.clone()
            });
        Ok(Published {
            tag: published.tag_name,
            timestamp: document.timestamp,
            asset_url,
        })
    }

    fn now(&self) -> Result<u64, PublishError> {
        (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| PublishError::Clock)
    }

    fn create_release(&self, notes: &str) -> Result<Release, PublishError> {
        let first = release_tag(self.now()?);
        for attempt in 1..=MAX_TAG_ATTEMPTS {
            let tag = match attempt {
                1 => first.clone(),
                n => format!("{first}-{n}"),
            };
            let release = NewRelease {
                name: Some(tag.clone()),
                body: Some(notes.to_owned()),
                draft: true,
                ..NewRelease::new(tag.clone())
            };
            match self.github.create_release(self.repo, &release) {
                Ok(created) => return Ok(created),
                Err(GithubError::Validation(message)) if message.contains("already_exists") => {}
                Err(source) => return Err(PublishError::CreateRelease { tag, source }),
            }
        }
        Err(PublishError::TagsTaken { first })
    }

    /// The attestation document for `tag`: a fresh quote whose REPORTDATA
    /// binds the statement over the event log handed out with the quote.
    fn attest(&self, tag: &str) -> Result<AttestationDocument, PublishError> {
        for _ in 0..MAX_QUOTE_ATTEMPTS {
            let log = self.measured.log();
            let statement = PublishStatement {
                repo: self.config.repo.clone(),
                endpoint: self.config.endpoint.clone(),
                release_tag: tag.to_owned(),
                timestamp: self.now()?,
                event_log_digest: log.digest(),
                allowlist: self.allowlist.clone(),
            };
            let evidence = self.measured.evidence(&report_data(&statement)?)?;
            // An event recorded between the snapshot and the quote would make
            // the statement's digest stale: take a new snapshot.
            if evidence.event_log != log {
                continue;
            }
            let document = AttestationDocument {
                version: ATTESTATION_VERSION,
                repo: statement.repo,
                endpoint: statement.endpoint,
                release_tag: statement.release_tag,
                timestamp: statement.timestamp,
                quote: evidence.quote,
                event_log: evidence.event_log,
                allowlist: statement.allowlist,
                image_id: self.config.image_id.clone(),
            };
            document.validate()?;
            return Ok(document);
        }
        Err(PublishError::Unstable)
    }
}

/// `deploy-YYYYMMDD-HHMMSS` for a Unix time, in UTC.
pub fn release_tag(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "deploy-{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Proleptic Gregorian (year, month, day) of the `days`-th day after
/// 1970-01-01 (H. Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_tags_are_utc_calendar_times() {
        // Reference values from `date -u -d @N +deploy-%Y%m%d-%H%M%S`.
        assert_eq!(release_tag(0), "deploy-19700101-000000");
        assert_eq!(release_tag(951_782_400), "deploy-20000229-000000");
        assert_eq!(release_tag(1_709_251_199), "deploy-20240229-235959");
        assert_eq!(release_tag(1_735_689_600), "deploy-20250101-000000");
        assert_eq!(release_tag(4_102_444_799), "deploy-20991231-235959");
        easyenclave::attestation::check_release_tag(&release_tag(1_700_000_000)).unwrap();
    }
}
