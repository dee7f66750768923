//! The GitHub objects the client reads and writes, and validated repo names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::GithubError;

/// A repository name `owner/name` that is safe to put into a URL path.
///
/// Owner: 1–39 characters from `A-Z a-z 0-9 - _`, not starting with `-`
/// (`_` appears in Enterprise Managed User logins). Name: 1–100 characters
/// from `A-Z a-z 0-9 - _ .`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName {
    owner: String,
    name: String,
}

const MAX_OWNER_LEN: usize = 39;
const MAX_NAME_LEN: usize = 100;

impl RepoName {
    /// Parses and validates `owner/name`.
    pub fn parse(full: &str) -> Result<RepoName, GithubError> {
        let invalid = |reason| GithubError::InvalidRepo {
            name: full.to_owned(),
            reason,
        };
        let (owner, name) = full.split_once('/').ok_or(invalid("expected owner/name"))?;
        if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
            return Err(invalid("owner must be 1 to 39 characters"));
        }
        if !owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("owner may only contain A-Z a-z 0-9 - _"));
        }
        if owner.starts_with('-') {
            return Err(invalid("owner must not start with '-'"));
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(invalid("name must be 1 to 100 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid("name may only contain A-Z a-z 0-9 - _ ."));
        }
        if name == "." || name == ".." {
            return Err(invalid("name must not be '.' or '..'"));
        }
        Ok(RepoName {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The owning user or organisation.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository name without the owner.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl FromStr for RepoName {
    type Err = GithubError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoName::parse(s)
    }
}

impl TryFrom<String> for RepoName {
    type Error = GithubError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RepoName::parse(&s)
    }
}

impl From<RepoName> for String {
    fn from(repo: RepoName) -> String {
        repo.to_string()
    }
}

/// A release (the fields the project uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Numeric id.
    pub id: u64,
    /// The git tag the release points at.
    pub tag_name: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Release notes.
    #[serde(default)]
    pub body: Option<String>,
    /// Drafts are visible only to users with push access.
    pub draft: bool,
    /// Pre-releases are never the "latest" release.
    pub prerelease: bool,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 publication time; absent for drafts.
    #[serde(default)]
    pub published_at: Option<String>,
    /// URI template for asset uploads, e.g. `https://uploads.github.com/...{?name,label}`.
    pub upload_url: String,
    /// The release's assets.
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// A file attached to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Numeric id.
    pub id: u64,
    /// File name.
    pub name: String,
    /// Optional display label.
    #[serde(default)]
    pub label: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// The content type given at upload.
    pub content_type: String,
    /// API URL (JSON metadata, or the content with `Accept: application/octet-stream`).
    pub url: String,
    /// Web download URL.
    pub browser_download_url: String,
    /// `sha256:<hex>` of the content, when GitHub reports one.
    #[serde(default)]
    pub digest: Option<String>,
}

/// A GitHub Actions workflow artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Numeric id.
    pub id: u64,
    /// Artifact name given by the workflow.
    pub name: String,
    /// Size of the zip archive in bytes.
    pub size_in_bytes: u64,
    /// Expired artifacts can no longer be downloaded.
    pub expired: bool,
    /// API URL of the zip archive (answers with a redirect).
    pub archive_download_url: String,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339 expiry time.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// `sha256:<hex>` of the zip archive, when GitHub reports one.
    #[serde(default)]
    pub digest: Option<String>,
}

/// The authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub login: String,
    /// Numeric id.
    pub id: u64,
}

/// What the caller may do in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Permissions {
    /// Administer the repository.
    pub admin: bool,
    /// Push, and so create releases and upload assets.
    pub push: bool,
    /// Read the repository.
    pub pull: bool,
}

/// A user's permission level in a repository, as the collaborator API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionLevel {
    /// No access.
    None,
    /// Read (also reported for triage).
    Read,
    /// Write (also reported for maintain).
    Write,
    /// Admin.
    Admin,
}

/// The fields of a release to create.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewRelease {
    /// The tag to create the release for.
    pub tag_name: String,
    /// Branch or commit the tag is created from when it does not exist yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_commitish: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Release notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Create as a draft.
    pub draft: bool,
    /// Mark as a pre-release.
    pub prerelease: bool,
}

/// Changes to a release (`PATCH /repos/{repo}/releases/{id}`); fields left
/// `None` keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReleaseUpdate {
    /// A new tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_name: Option<String>,
    /// A new display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New release notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `Some(false)` publishes a draft.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
    /// Mark or unmark as a pre-release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prerelease: Option<bool>,
}

impl NewRelease {
    /// A published, non-pre-release release for `tag`.
    pub fn new(tag: impl Into<String>) -> NewRelease {
        NewRelease {
            tag_name: tag.into(),
            ..NewRelease::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_follow_github_rules() {
        for ok in [
            "octo/hello",
            "a/b",
            "my-org/my.repo_1",
            "alice_acme/app",
            "o/.github",
        ] {
            let repo = RepoName::parse(ok).unwrap();
            assert_eq!(repo.to_string(), ok);
        }
        let long_owner = format!("{}/r", "a".repeat(40));
        let long_name = format!("o/{}", "r".repeat(101));
        for bad in [
            "",
            "noslash",
            "/r",
            "o/",
            "o/r/x",
            "-o/r",
            "o/..",
            "o/.",
            "o/r?x",
            "o/r#x",
            "o/r%2F",
            "ö/r",
            "o /r",
            &long_owner,
            &long_name,
        ] {
            assert!(
                matches!(RepoName::parse(bad), Err(GithubError::InvalidRepo { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn repo_name_serde_validates() {
        let repo: RepoName = serde_json::from_str("\"octo/hello\"").unwrap();
        assert_eq!((repo.owner(), repo.name()), ("octo", "hello"));
        assert_eq!(serde_json::to_string(&repo).unwrap(), "\"octo/hello\"");
        assert!(serde_json::from_str::<RepoName>("\"octo/../x\"").is_err());
    }
}
