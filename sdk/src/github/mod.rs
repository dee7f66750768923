//! Blocking GitHub REST client for github.com or a GitHub Enterprise Server
//! base URL (which is also how tests point it at
//! `ee_testkit::github_server`, in the `ee-testkit` crate).
//!
//! Safety properties:
//! - the token is sent only to the origin a request was addressed to;
//!   redirects to release-asset or artifact storage are followed by hand and
//!   never carry it;
//! - URLs taken from responses (`upload_url`, `Link`) must stay on the API's
//!   own origins before the token goes there;
//! - repository names are validated and path segments percent-encoded before
//!   any request;
//! - every body read is capped; downloads take an explicit cap;
//! - GET and DELETE are retried on 5xx and connection errors with exponential
//!   backoff; POST is never retried.

mod error;
mod transport;
mod types;
mod url;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use ureq::http::{header, Response};
use ureq::Body;

pub use error::GithubError;
pub use transport::{RetryPolicy, Timeouts};
pub use types::{
    Artifact, Asset, NewRelease, PermissionLevel, Permissions, Release, ReleaseUpdate, RepoName,
    User,
};

use transport::{read_capped, read_json, Call, Method, Payload, Token, Transport};
use url::{encode_component, next_link, upload_target, ApiBase};

const JSON: &str = "application/vnd.github+json";
const OCTET_STREAM: &str = "application/octet-stream";
/// Largest JSON document the client will buffer.
const JSON_LIMIT: u64 = 16 * 1024 * 1024;
const DEFAULT_PER_PAGE: u32 = 100;
const DEFAULT_MAX_PAGES: u32 = 10;

/// A GitHub REST API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct GitHub {
    base: ApiBase,
    transport: Transport,
    timeouts: Timeouts,
    user_agent: String,
    per_page: u32,
    max_pages: u32,
}

impl GitHub {
    /// A client for the API at `base_url`: `https://api.github.com`, or a
    /// GitHub Enterprise Server root such as `https://ghe.example/api/v3`.
    pub fn new(base_url: &str) -> Result<GitHub, GithubError> {
        Ok(GitHub::with_base(ApiBase::parse(base_url)?))
    }

    /// A client for the public `https://api.github.com`.
    pub fn public() -> GitHub {
        GitHub::with_base(ApiBase::public())
    }

    fn with_base(base: ApiBase) -> GitHub {
        let timeouts = Timeouts::default();
        let user_agent = format!("easyenclave/{}", env!("CARGO_PKG_VERSION"));
        GitHub {
            base,
            transport: Transport::new(timeouts, &user_agent),
            timeouts,
            user_agent,
            per_page: DEFAULT_PER_PAGE,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }

    /// Authenticates every request to the API's own origins with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> GitHub {
        self.transport.token = Some(Token::new(token.into()));
        self
    }

    /// Sets the connect and per-read timeouts (defaults 10 s and 30 s).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> GitHub {
        self.timeouts = timeouts;
        self.transport.reconfigure(self.timeouts, &self.user_agent);
        self
    }

    /// Sets the User-Agent (GitHub rejects requests without one).
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> GitHub {
        self.user_agent = user_agent.into();
        self.transport.reconfigure(self.timeouts, &self.user_agent);
        self
    }

    /// Sets the retry policy for GET and DELETE.
    pub fn with_retry(mut self, retry: RetryPolicy) -> GitHub {
        self.transport.retry = retry;
        self
    }

    /// Sets the page size (1–100) and how many pages a list may span before
    /// it fails with [`GithubError::TooLarge`] (defaults 100 and 10).
    pub fn with_pagination(mut self, per_page: u32, max_pages: u32) -> GitHub {
        self.per_page = per_page.clamp(1, 100);
        self.max_pages = max_pages.max(1);
        self
    }

    /// The API root this client talks to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base.root()
    }

    /// HTTP requests this client and its clones have sent so far: every
    /// page, retry and redirect hop counts as one.
    pub fn requests_sent(&self) -> u64 {
        self.transport
            .requests_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The user the token belongs to (`GET /user`).
    pub fn current_user(&self) -> Result<User, GithubError> {
        self.get_json(self.base.url("/user"), "the authenticated user".to_owned())
    }

    /// What the caller may do in `repo` (`GET /repos/{repo}`). Anonymous
    /// callers get no `permissions` object from GitHub; having read the
    /// repository they are reported as `pull` only.
    pub fn repo_permissions(&self, repo: &RepoName) -> Result<Permissions, GithubError> {
        #[derive(Deserialize)]
        struct Repository {
            permissions: Option<Permissions>,
        }
        let found: Repository = self.get_json(
            self.base.url(&repo_path(repo, "")),
            format!("repository {repo}"),
        )?;
        Ok(found.permissions.unwrap_or(Permissions {
            pull: true,
            ..Permissions::default()
        }))
    }

    /// `login`'s permission level in `repo`
    /// (`GET /repos/{repo}/collaborators/{login}/permission`).
    pub fn collaborator_permission(
        &self,
        repo: &RepoName,
        login: &str,
    ) -> Result<PermissionLevel, GithubError> {
        #[derive(Deserialize)]
        struct Answer {
            permission: PermissionLevel,
        }
        let path = repo_path(
            repo,
            &format!("/collaborators/{}/permission", encode_component(login)),
        );
        let answer: Answer = self.get_json(
            self.base.url(&path),
            format!("collaborator {login} of {repo}"),
        )?;
        Ok(answer.permission)
    }

    /// All releases of `repo`, newest first, across pages.
    pub fn list_releases(&self, repo: &RepoName) -> Result<Vec<Release>, GithubError> {
        let url = self.first_page(&repo_path(repo, "/releases"), &[]);
        self.paginate(url, &format!("releases of {repo}"), |page: Vec<Release>| {
            page
        })
    }

    /// Releases of `repo`, newest first, page by page: `visit` sees each
    /// release until it returns `Some`, and no further page is read.
    /// `Ok(None)` when every release was visited without a match.
    pub fn find_release<T>(
        &self,
        repo: &RepoName,
        mut visit: impl FnMut(&Release) -> Option<T>,
    ) -> Result<Option<T>, GithubError> {
        let url = self.first_page(&repo_path(repo, "/releases"), &[]);
        let mut found = None;
        self.walk_pages(url, &format!("releases of {repo}"), |page: Vec<Release>| {
            found = page.iter().find_map(&mut visit);
            found.is_none()
        })?;
        Ok(found)
    }

    /// The release with id `id`.
    pub fn release(&self, repo: &RepoName, id: u64) -> Result<Release, GithubError> {
        let path = repo_path(repo, &format!("/releases/{id}"));
        self.get_json(self.base.url(&path), format!("release {id} of {repo}"))
    }

    /// The published release for `tag`.
    pub fn release_by_tag(&self, repo: &RepoName, tag: &str) -> Result<Release, GithubError> {
        let path = repo_path(repo, &format!("/releases/tags/{}", encode_component(tag)));
        self.get_json(self.base.url(&path), format!("release {tag:?} of {repo}"))
    }

    /// The latest published, non-pre-release release.
    pub fn latest_release(&self, repo: &RepoName) -> Result<Release, GithubError> {
        let path = repo_path(repo, "/releases/latest");
        self.get_json(self.base.url(&path), format!("latest release of {repo}"))
    }

    /// Creates a release (never retried: a retry could create it twice).
    pub fn create_release(
        &self,
        repo: &RepoName,
        release: &NewRelease,
    ) -> Result<Release, GithubError> {
        let body = serde_json::to_vec(release).map_err(|e| GithubError::Decode {
            path: repo_path(repo, "/releases"),
            detail: format!("cannot encode the release: {e}"),
        })?;
        let call = Call {
            method: Method::Post,
            url: self.base.url(&repo_path(repo, "/releases")),
            accept: JSON,
            payload: Some(Payload {
                content_type: "application/json",
                data: &body,
            }),
            what: format!("repository {repo}"),
        };
        self.transport
            .execute(&call, |r| read_json(r, JSON_LIMIT, &call.url))
    }

    /// Changes release `id` (never retried). On a repository with immutable
    /// releases a published release keeps its assets and tag: create it as
    /// a draft, upload, then publish with [`GitHub::publish_release`].
    pub fn update_release(
        &self,
        repo: &RepoName,
        id: u64,
        update: &ReleaseUpdate,
    ) -> Result<Release, GithubError> {
        let path = repo_path(repo, &format!("/releases/{id}"));
        let body = serde_json::to_vec(update).map_err(|e| GithubError::Decode {
            path: path.clone(),
            detail: format!("cannot encode the release update: {e}"),
        })?;
        let call = Call {
            method: Method::Patch,
            url: self.base.url(&path),
            accept: JSON,
            payload: Some(Payload {
                content_type: "application/json",
                data: &body,
            }),
            what: format!("release {id} of {repo}"),
        };
        self.transport
            .execute(&call, |r| read_json(r, JSON_LIMIT, &call.url))
    }

    /// Publishes draft release `id` (`draft: false`).
    pub fn publish_release(&self, repo: &RepoName, id: u64) -> Result<Release, GithubError> {
        let update = ReleaseUpdate {
            draft: Some(false),
            ..ReleaseUpdate::default()
        };
        self.update_release(repo, id, &update)
    }

    /// Deletes a release and its assets. A retried DELETE whose first attempt
    /// reached GitHub reports `NotFound`.
    pub fn delete_release(&self, repo: &RepoName, id: u64) -> Result<(), GithubError> {
        let call = Call {
            method: Method::Delete,
            url: self.base.url(&repo_path(repo, &format!("/releases/{id}"))),
            accept: JSON,
            payload: None,
            what: format!("release {id} of {repo}"),
        };
        self.transport.execute(&call, |_| Ok(()))
    }

    /// The assets of release `release_id`, across pages.
    pub fn list_assets(&self, repo: &RepoName, release_id: u64) -> Result<Vec<Asset>, GithubError> {
        let url = self.first_page(
            &repo_path(repo, &format!("/releases/{release_id}/assets")),
            &[],
        );
        let what = format!("assets of release {release_id} of {repo}");
        self.paginate(url, &what, |page: Vec<Asset>| page)
    }

    /// Metadata of asset `asset_id`.
    pub fn asset(&self, repo: &RepoName, asset_id: u64) -> Result<Asset, GithubError> {
        let path = repo_path(repo, &format!("/releases/assets/{asset_id}"));
        self.get_json(self.base.url(&path), format!("asset {asset_id} of {repo}"))
    }

    /// Uploads `data` as asset `name` of `release`, to the release's
    /// `upload_url` (which must be on the API's upload origin).
    pub fn upload_asset(
        &self,
        release: &Release,
        name: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<Asset, GithubError> {
        if name.is_empty() {
            return Err(GithubError::Validation("asset name is empty".to_owned()));
        }
        let url = upload_target(&release.upload_url, name);
        self.base.check_upload_url(&url)?;
        let call = Call {
            method: Method::Post,
            url,
            accept: JSON,
            payload: Some(Payload { content_type, data }),
            what: format!("release {} ({})", release.id, release.tag_name),
        };
        self.transport
            .execute(&call, |r| read_json(r, JSON_LIMIT, &call.url))
    }

    /// The content of asset `asset_id`, at most `max_bytes` long. GitHub
    /// answers with a redirect to storage, which is followed without the token.
    pub fn download_asset(
        &self,
        repo: &RepoName,
        asset_id: u64,
        max_bytes: u64,
    ) -> Result<Vec<u8>, GithubError> {
        let path = repo_path(repo, &format!("/releases/assets/{asset_id}"));
        self.download(
            self.base.url(&path),
            format!("asset {asset_id} of {repo}"),
            max_bytes,
        )
    }

    /// Workflow artifacts of `repo` (optionally only those called `name`), across pages.
    pub fn list_artifacts(
        &self,
        repo: &RepoName,
        name: Option<&str>,
    ) -> Result<Vec<Artifact>, GithubError> {
        #[derive(Deserialize)]
        struct Page {
            artifacts: Vec<Artifact>,
        }
        let filter: Vec<(&str, &str)> = name.map(|n| ("name", n)).into_iter().collect();
        let url = self.first_page(&repo_path(repo, "/actions/artifacts"), &filter);
        self.paginate(url, &format!("artifacts of {repo}"), |page: Page| {
            page.artifacts
        })
    }

    /// Metadata of artifact `id` (including whether it has expired).
    pub fn artifact(&self, repo: &RepoName, id: u64) -> Result<Artifact, GithubError> {
        let path = repo_path(repo, &format!("/actions/artifacts/{id}"));
        self.get_json(self.base.url(&path), format!("artifact {id} of {repo}"))
    }

    /// The zip archive of artifact `id`, at most `max_bytes` long. Expired
    /// artifacts fail with [`GithubError::Gone`].
    pub fn download_artifact_zip(
        &self,
        repo: &RepoName,
        id: u64,
        max_bytes: u64,
    ) -> Result<Vec<u8>, GithubError> {
        let path = repo_path(repo, &format!("/actions/artifacts/{id}/zip"));
        self.download(
            self.base.url(&path),
            format!("artifact {id} of {repo}"),
            max_bytes,
        )
    }

    fn get_json<T: DeserializeOwned>(&self, url: String, what: String) -> Result<T, GithubError> {
        let call = Call {
            method: Method::Get,
            url,
            accept: JSON,
            payload: None,
            what,
        };
        self.transport
            .execute(&call, |r| read_json(r, JSON_LIMIT, &call.url))
    }

    fn download(&self, url: String, what: String, max_bytes: u64) -> Result<Vec<u8>, GithubError> {
        let call = Call {
            method: Method::Get,
            url,
            accept: OCTET_STREAM,
            payload: None,
            what,
        };
        self.transport
            .execute(&call, |r| read_capped(r, max_bytes, &call.what, &call.url))
    }

    fn first_page(&self, path: &str, filters: &[(&str, &str)]) -> String {
        let mut url = self.base.url(&format!("{path}?per_page={}", self.per_page));
        for (key, value) in filters {
            url.push_str(&format!("&{key}={}", encode_component(value)));
        }
        url
    }

    /// Follows `Link: rel="next"` up to `max_pages` pages.
    fn paginate<P: DeserializeOwned, T>(
        &self,
        first: String,
        what: &str,
        items: impl Fn(P) -> Vec<T>,
    ) -> Result<Vec<T>, GithubError> {
        let mut all = Vec::new();
        self.walk_pages(first, what, |page: P| {
            all.extend(items(page));
            true
        })?;
        Ok(all)
    }

    /// Follows `Link: rel="next"` up to `max_pages` pages, handing each page
    /// to `on_page` until it returns false.
    fn walk_pages<P: DeserializeOwned>(
        &self,
        first: String,
        what: &str,
        mut on_page: impl FnMut(P) -> bool,
    ) -> Result<(), GithubError> {
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            if pages == self.max_pages {
                return Err(GithubError::TooLarge {
                    what: what.to_owned(),
                    limit: format!("{} pages", self.max_pages),
                });
            }
            self.base.check_api_url(&url)?;
            let call = Call {
                method: Method::Get,
                url,
                accept: JSON,
                payload: None,
                what: what.to_owned(),
            };
            let (page, link) = self.transport.execute(&call, |r| {
                let link = link_next(r);
                read_json::<P>(r, JSON_LIMIT, &call.url).map(|page| (page, link))
            })?;
            if !on_page(page) {
                return Ok(());
            }
            next = link;
            pages += 1;
        }
        Ok(())
    }
}

fn link_next(response: &Response<Body>) -> Option<String> {
    let link = response.headers().get(header::LINK)?.to_str().ok()?;
    next_link(link)
}

/// `/repos/{owner}/{name}{rest}`; the name is already validated, `rest` encoded.
fn repo_path(repo: &RepoName, rest: &str) -> String {
    format!(
        "/repos/{}/{}{rest}",
        encode_component(repo.owner()),
        encode_component(repo.name())
    )
}
