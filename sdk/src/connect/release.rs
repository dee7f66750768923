//! Which release of a repo holds the deployment to verify.

use crate::github::Release;

/// Tag prefix of the releases the agent publishes (`deploy-YYYYMMDD-HHMMSS`).
pub const DEPLOY_TAG_PREFIX: &str = "deploy-";
/// Name of the attestation document asset on a deploy release.
pub const DOCUMENT_ASSET: &str = "attestation.json";
/// Releases named in a "not found" message before the rest is summarised.
const MAX_LISTED: usize = 10;

/// The release a deployment is verified from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chosen {
    /// Its tag.
    pub(crate) tag: String,
    /// Id of its `attestation.json` asset.
    pub(crate) document_id: u64,
    /// When GitHub created the release (its clock, not the TD's).
    pub(crate) created_at: String,
}

/// Picks the newest non-draft `deploy-*` release with an `attestation.json`
/// asset, shown the releases one at a time in the API's newest-first order.
///
/// A deploy release without the asset is passed over: it is a deploy that
/// stopped before publishing. Anything wrong *with* a document is for the
/// caller to report, never a reason to fall back to an older release, or a
/// broken new release could roll verifiers back to an old deployment.
#[derive(Debug, Default)]
pub(crate) struct ReleaseChooser {
    /// The first releases passed over, each with the reason.
    passed_over: Vec<String>,
    /// How many were passed over in all.
    count: usize,
}

impl ReleaseChooser {
    /// `release`, if it is the one; otherwise it is remembered as passed over.
    pub(crate) fn consider(&mut self, release: &Release) -> Option<Chosen> {
        let why_not = if release.draft {
            "a draft"
        } else if !release.tag_name.starts_with(DEPLOY_TAG_PREFIX) {
            "not a deploy-* release"
        } else if let Some(document) = release.assets.iter().find(|a| a.name == DOCUMENT_ASSET) {
            return Some(Chosen {
                tag: release.tag_name.clone(),
                document_id: document.id,
                created_at: release.created_at.clone(),
            });
        } else {
            "no attestation.json asset"
        };
        self.count += 1;
        if self.passed_over.len() < MAX_LISTED {
            self.passed_over
                .push(format!("{:?} ({why_not})", release.tag_name));
        }
        None
    }

    /// What was seen, for a "not found" message.
    pub(crate) fn seen(&self) -> String {
        if self.count == 0 {
            return "the repo has no releases".to_owned();
        }
        let mut text = format!("releases seen: {}", self.passed_over.join(", "));
        let more = self.count.saturating_sub(self.passed_over.len());
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::Asset;

    /// The chooser over `releases`, as `GitHub::find_release` drives it.
    fn choose(releases: &[Release]) -> Result<Chosen, String> {
        let mut chooser = ReleaseChooser::default();
        releases
            .iter()
            .find_map(|r| chooser.consider(r))
            .ok_or_else(|| chooser.seen())
    }

    fn release(tag: &str, draft: bool, assets: &[&str]) -> Release {
        Release {
            id: 1,
            tag_name: tag.to_owned(),
            name: None,
            body: None,
            draft,
            prerelease: false,
            created_at: "2025-01-01T00:00:00Z".to_owned(),
            published_at: None,
            upload_url: String::new(),
            assets: assets
                .iter()
                .enumerate()
                .map(|(i, name)| Asset {
                    id: i as u64 + 100,
                    name: (*name).to_owned(),
                    label: None,
                    size: 1,
                    content_type: "application/json".to_owned(),
                    url: String::new(),
                    browser_download_url: String::new(),
                    digest: None,
                })
                .collect(),
        }
    }

    #[test]
    fn newest_deploy_release_with_a_document_wins() {
        let releases = [
            release("deploy-20250103-000000", true, &[DOCUMENT_ASSET]),
            release("v2.0", false, &[DOCUMENT_ASSET]),
            release("deploy-20250102-000000", false, &["logs.txt"]),
            release("deploy-20250101-000000", false, &["x", DOCUMENT_ASSET]),
            release("deploy-20241231-000000", false, &[DOCUMENT_ASSET]),
        ];
        assert_eq!(
            choose(&releases).unwrap(),
            Chosen {
                tag: "deploy-20250101-000000".to_owned(),
                document_id: 101,
                created_at: "2025-01-01T00:00:00Z".to_owned(),
            }
        );
    }

    #[test]
    fn not_found_lists_what_was_seen() {
        let releases = [
            release("deploy-1", true, &[DOCUMENT_ASSET]),
            release("v1", false, &[]),
            release("deploy-2", false, &[]),
        ];
        assert_eq!(
            choose(&releases).unwrap_err(),
            "releases seen: \"deploy-1\" (a draft), \"v1\" (not a deploy-* release), \
             \"deploy-2\" (no attestation.json asset)"
        );
        assert_eq!(choose(&[]).unwrap_err(), "the repo has no releases");
        let many: Vec<Release> = (0..12)
            .map(|i| release(&format!("v{i}"), false, &[]))
            .collect();
        let text = choose(&many).unwrap_err();
        assert!(
            text.ends_with("\"v9\" (not a deploy-* release) and 2 more"),
            "{text}"
        );
    }
}
