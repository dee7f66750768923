//! Getting a bundle's zip: an Actions artifact of the agent's repo through
//! the GitHub API (the client retries 5xx and connection errors with
//! back-off), or the inline zip of the request. The zip stays in memory.

use easyenclave::deploy::BundleSource;
use easyenclave::github::{GitHub, GithubError, RepoName};
use sha2::{Digest, Sha256};

/// A bundle zip and where it came from.
pub struct FetchedBundle {
    /// The zip's bytes.
    pub zip: Vec<u8>,
    /// The artifact id, when it came from one.
    pub artifact_id: Option<u64>,
    /// Where it came from, for the `bundle` event: the artifact's API URL,
    /// or `inline`.
    pub source: String,
}

/// Why the bundle could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The GitHub API failed (after the client's retries).
    #[error("artifact {id}: {source}")]
    Github {
        /// The artifact.
        id: u64,
        /// Why.
        source: GithubError,
    },
    /// GitHub deleted the artifact's content.
    #[error("artifact {id} ({name}) has expired")]
    Expired {
        /// The artifact.
        id: u64,
        /// Its name.
        name: String,
    },
    /// Larger than the bundle zip limit.
    #[error("artifact {id} is {size} bytes, over the {limit}-byte bundle limit")]
    TooLarge {
        /// The artifact.
        id: u64,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The download does not match the digest GitHub lists for it.
    #[error("artifact {id}: the download's SHA-256 is {got}, GitHub lists {listed}")]
    DigestMismatch {
        /// The artifact.
        id: u64,
        /// What was downloaded.
        got: String,
        /// What GitHub says.
        listed: String,
    },
}

/// A short description of a bundle source for log lines.
pub fn describe(source: &BundleSource) -> String {
    match source {
        BundleSource::Artifact { id } => format!("artifact {id}"),
        BundleSource::Inline { zip } => format!("inline zip of {} bytes", zip.len()),
    }
}

/// Fetch the zip: an artifact of `repo` (at most `max_bytes`) with
/// `github`, or the inline zip (moved out of the request).
pub fn fetch(
    source: BundleSource,
    github: &GitHub,
    repo: &RepoName,
    max_bytes: u64,
) -> Result<FetchedBundle, SourceError> {
    let id = match source {
        BundleSource::Inline { zip } => {
            return Ok(FetchedBundle {
                zip,
                artifact_id: None,
                source: "inline".to_owned(),
            })
        }
        BundleSource::Artifact { id } => id,
    };
    let github_error = |source| SourceError::Github { id, source };
    let artifact = github.artifact(repo, id).map_err(github_error)?;
    if artifact.expired {
        return Err(SourceError::Expired {
            id,
            name: artifact.name,
        });
    }
    if artifact.size_in_bytes > max_bytes {
        return Err(SourceError::TooLarge {
            id,
            size: artifact.size_in_bytes,
            limit: max_bytes,
        });
    }
    let zip = github
        .download_artifact_zip(repo, id, max_bytes)
        .map_err(github_error)?;
    if let Some(listed) = artifact.digest.as_deref() {
        if let Some(listed_hex) = listed.strip_prefix("sha256:") {
            let got = hex::encode(Sha256::digest(&zip));
            if !got.eq_ignore_ascii_case(listed_hex) {
                return Err(SourceError::DigestMismatch {
                    id,
                    got,
                    listed: listed.to_owned(),
                });
            }
        }
    }
    Ok(FetchedBundle {
        zip,
        artifact_id: Some(id),
        source: format!("{}/repos/{repo}/actions/artifacts/{id}", github.base_url()),
    })
}
