//! The GitHub REST endpoints: routing, authentication, permissions and the
//! JSON shapes of users, repositories, releases, assets and artifacts.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::config::{Installation, Permission};
use super::state::{Store, StoredArtifact, StoredAsset, StoredRelease};
use super::storage::Blob;
use super::wire::{now, rfc3339, ApiError, Incoming, Reply};
use super::Shared;
use easyenclave::percent::encode_component;

const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;
/// GitHub keeps artifacts for 90 days by default.
const ARTIFACT_RETENTION_SECS: u64 = 90 * 86_400;

/// Answers one request on the API listener.
pub(super) fn handle(shared: &Shared, req: &mut Incoming<'_>) -> Reply {
    route(shared, req).unwrap_or_else(ApiError::into_reply)
}

fn route(shared: &Shared, req: &mut Incoming<'_>) -> Result<Reply, ApiError> {
    let limit = shared.config.max_body_bytes;
    if req
        .body_length
        .is_some_and(|len| u64::try_from(len).map_or(true, |len| len > limit))
    {
        return Err(ApiError::too_large(limit));
    }
    let segments = req.segments.clone();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["_services", "token", rest @ ..] if req.method == "GET" => {
            super::oidc::handle(shared, req, rest)
        }
        ["api", "v3", rest @ ..] => {
            require_user_agent(req)?;
            let caller = authenticate(shared, req)?;
            api_v3(shared, req, caller.as_ref(), rest)
        }
        ["api", "uploads", "repos", owner, name, "releases", id, "assets"]
            if req.method == "POST" =>
        {
            require_user_agent(req)?;
            let caller = authenticate(shared, req)?;
            let repo = format!("{owner}/{name}");
            require(shared, caller.as_ref(), &repo, Permission::Write)?;
            upload_asset(shared, req, caller.as_ref(), &repo, parse_id(id)?)
        }
        [owner, name, "releases", "download", tag, asset] if req.method == "GET" => {
            let caller = authenticate(shared, req)?;
            let repo = format!("{owner}/{name}");
            require(shared, caller.as_ref(), &repo, Permission::Read)?;
            browser_download(shared, &repo, tag, asset)
        }
        _ => Err(ApiError::not_found()),
    }
}

/// GitHub answers 403 to API requests without a User-Agent.
fn require_user_agent(req: &Incoming<'_>) -> Result<(), ApiError> {
    match req.header("user-agent") {
        Some(agent) if !agent.trim().is_empty() => Ok(()),
        _ => Err(ApiError::new(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        )),
    }
}

/// Who a request comes from.
pub(super) enum Caller {
    /// A user's token.
    User(String),
    /// An installation token (a workflow's `GITHUB_TOKEN`).
    Installation(Installation),
}

/// The login GitHub shows for what a workflow's `GITHUB_TOKEN` does.
const ACTIONS_BOT: &str = "github-actions[bot]";

impl Caller {
    fn login(&self) -> &str {
        match self {
            Caller::User(login) => login,
            Caller::Installation(_) => ACTIONS_BOT,
        }
    }
}

/// The caller: `None` when anonymous, 401 for an unknown token (on every
/// endpoint, public or not, as GitHub does).
fn authenticate(shared: &Shared, req: &Incoming<'_>) -> Result<Option<Caller>, ApiError> {
    let Some(value) = req.header("authorization") else {
        return Ok(None);
    };
    let (scheme, token) = value.trim().split_once(' ').unwrap_or(("", ""));
    let scheme_ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    if !scheme_ok {
        return Err(ApiError::bad_credentials());
    }
    let token = token.trim();
    if let Some(login) = shared.config.login_for(token) {
        return Ok(Some(Caller::User(login.to_owned())));
    }
    match shared.config.installation_for(token) {
        Some(installation) => Ok(Some(Caller::Installation(installation.clone()))),
        None => Err(ApiError::bad_credentials()),
    }
}

/// GitHub's answer when an installation token asks for what it may not.
fn not_for_integrations() -> ApiError {
    ApiError::new(403, "Resource not accessible by integration")
}

/// Checks `needed` in `repo`: 404 if the caller cannot even see it, 401 for
/// anonymous writes, 403 for readers who try to write.
fn require(
    shared: &Shared,
    caller: Option<&Caller>,
    repo: &str,
    needed: Permission,
) -> Result<Permission, ApiError> {
    let level = match caller {
        None => shared.config.permission(None, repo),
        Some(Caller::User(login)) => shared.config.permission(Some(login), repo),
        Some(Caller::Installation(installation)) => {
            shared.config.installation_permission(installation, repo)
        }
    }
    .ok_or_else(ApiError::not_found)?;
    if level < Permission::Read {
        return Err(ApiError::not_found());
    }
    if level < needed {
        return Err(match caller {
            None => ApiError::requires_authentication(),
            Some(Caller::Installation(_)) => not_for_integrations(),
            Some(Caller::User(_)) => ApiError::new(403, "Must have push access to repository"),
        });
    }
    Ok(level)
}

fn api_v3(
    shared: &Shared,
    req: &mut Incoming<'_>,
    caller: Option<&Caller>,
    rest: &[&str],
) -> Result<Reply, ApiError> {
    match (req.method.as_str(), rest) {
        ("GET", ["user"]) => match caller {
            None => Err(ApiError::requires_authentication()),
            // An installation is no user: a workflow's GITHUB_TOKEN gets 403.
            Some(Caller::Installation(_)) => Err(not_for_integrations()),
            Some(Caller::User(login)) => Ok(Reply::json(200, &user_json(shared, login))),
        },
        (_, ["repos", owner, name, tail @ ..]) => {
            let repo = format!("{owner}/{name}");
            let level = require(shared, caller, &repo, Permission::Read)?;
            repo_endpoint(shared, req, caller, &repo, level, tail)
        }
        _ => Err(ApiError::not_found()),
    }
}

fn repo_endpoint(
    shared: &Shared,
    req: &mut Incoming<'_>,
    caller: Option<&Caller>,
    repo: &str,
    level: Permission,
    tail: &[&str],
) -> Result<Reply, ApiError> {
    let sees_drafts = level >= Permission::Write;
    match (req.method.as_str(), tail) {
        ("GET", []) => Ok(Reply::json(
            200,
            &repo_json(shared, caller.map(Caller::login), repo, level),
        )),
        ("GET", ["collaborators", login, "permission"]) => collaborator(shared, repo, login),
        ("GET", ["releases"]) => list_releases(shared, req, repo, sees_drafts),
        ("POST", ["releases"]) => {
            require(shared, caller, repo, Permission::Write)?;
            create_release(shared, req, caller.map_or("", Caller::login), repo)
        }
        ("PATCH", ["releases", id]) => {
            require(shared, caller, repo, Permission::Write)?;
            update_release(shared, req, repo, parse_id(id)?)
        }
        ("GET", ["releases", "latest"]) => {
            let store = shared.store();
            let latest = store
                .releases
                .iter()
                .filter(|r| r.repo == repo && !r.draft && !r.prerelease)
                .max_by_key(|r| (r.published_at, r.id))
                .ok_or_else(ApiError::not_found)?;
            Ok(Reply::json(200, &release_json(shared, latest)))
        }
        ("GET", ["releases", "tags", tag]) => {
            let store = shared.store();
            let release = store
                .releases
                .iter()
                .find(|r| r.repo == repo && !r.draft && r.tag_name == *tag)
                .ok_or_else(ApiError::not_found)?;
            Ok(Reply::json(200, &release_json(shared, release)))
        }
        ("GET", ["releases", "assets", id]) => asset(shared, req, repo, parse_id(id)?),
        ("GET", ["releases", id]) => {
            let store = shared.store();
            let release = visible_release(&store, repo, parse_id(id)?, sees_drafts)?;
            Ok(Reply::json(200, &release_json(shared, release)))
        }
        ("DELETE", ["releases", id]) => {
            require(shared, caller, repo, Permission::Write)?;
            let id = parse_id(id)?;
            let mut store = shared.store();
            let before = store.releases.len();
            store.releases.retain(|r| !(r.repo == repo && r.id == id));
            if store.releases.len() == before {
                return Err(ApiError::not_found());
            }
            shared.persist(&store)?;
            Ok(Reply::empty(204))
        }
        ("GET", ["releases", id, "assets"]) => {
            let store = shared.store();
            let release = visible_release(&store, repo, parse_id(id)?, sees_drafts)?;
            let assets: Vec<Value> = release
                .assets
                .iter()
                .map(|a| asset_json(shared, release, a))
                .collect();
            Ok(paginated(shared, req, assets, Value::Array))
        }
        ("GET", ["actions", "artifacts"]) => list_artifacts(shared, req, repo),
        ("GET", ["actions", "artifacts", id]) => {
            let store = shared.store();
            let artifact = store
                .artifact(repo, parse_id(id)?)
                .ok_or_else(ApiError::not_found)?;
            Ok(Reply::json(200, &artifact_json(shared, artifact)))
        }
        ("GET", ["actions", "artifacts", id, "zip"]) => {
            let store = shared.store();
            let artifact = store
                .artifact(repo, parse_id(id)?)
                .ok_or_else(ApiError::not_found)?;
            if artifact.expired {
                return Err(ApiError::new(410, "Artifact has expired"));
            }
            Ok(Reply::redirect(
                shared.storage_url(Blob::Artifact, artifact.id),
            ))
        }
        _ => Err(ApiError::not_found()),
    }
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

fn visible_release<'s>(
    store: &'s Store,
    repo: &str,
    id: u64,
    sees_drafts: bool,
) -> Result<&'s StoredRelease, ApiError> {
    store
        .release(repo, id)
        .filter(|r| sees_drafts || !r.draft)
        .ok_or_else(ApiError::not_found)
}

fn collaborator(shared: &Shared, repo: &str, login: &str) -> Result<Reply, ApiError> {
    if shared.config.user_id(login).is_none() {
        return Err(ApiError::new(404, &format!("{login} is not a user")));
    }
    let permission = shared
        .config
        .permission(Some(login), repo)
        .unwrap_or(Permission::None);
    Ok(Reply::json(
        200,
        &json!({
            "permission": permission.as_str(),
            "role_name": permission.as_str(),
            "user": user_json(shared, login),
        }),
    ))
}

fn list_releases(
    shared: &Shared,
    req: &Incoming<'_>,
    repo: &str,
    sees_drafts: bool,
) -> Result<Reply, ApiError> {
    let store = shared.store();
    let mut releases: Vec<&StoredRelease> = store
        .releases
        .iter()
        .filter(|r| r.repo == repo && (sees_drafts || !r.draft))
        .collect();
    // Newest first, as GitHub lists them.
    releases.sort_by_key(|r| std::cmp::Reverse(r.id));
    let releases: Vec<Value> = releases.iter().map(|r| release_json(shared, r)).collect();
    Ok(paginated(shared, req, releases, Value::Array))
}

/// The fields of `POST /releases`, with GitHub's error answers for bad input.
fn create_release(
    shared: &Shared,
    req: &mut Incoming<'_>,
    author: &str,
    repo: &str,
) -> Result<Reply, ApiError> {
    let body = req.read_body(shared.config.max_body_bytes)?;
    let input: Map<String, Value> =
        serde_json::from_slice(&body).map_err(|_| ApiError::new(400, "Problems parsing JSON"))?;
    let text = |field: &str| -> Result<Option<String>, ApiError> {
        match input.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid_request(&format!(
                "For 'properties/{field}', it is not a string."
            ))),
        }
    };
    let flag = |field: &str| -> Result<bool, ApiError> {
        match input.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid_request(&format!(
                "For 'properties/{field}', it is not a boolean."
            ))),
        }
    };
    let tag_name =
        text("tag_name")?.ok_or_else(|| invalid_request("\"tag_name\" wasn't supplied."))?;
    if tag_name.trim().is_empty() {
        return Err(ApiError::validation("Release", "tag_name", "invalid"));
    }
    let (name, notes) = (text("name")?, text("body")?);
    let target_commitish = text("target_commitish")?.unwrap_or_else(|| "main".to_owned());
    let (draft, prerelease) = (flag("draft")?, flag("prerelease")?);

    let mut store = shared.store();
    if store
        .releases
        .iter()
        .any(|r| r.repo == repo && r.tag_name == tag_name)
    {
        return Err(ApiError::validation(
            "Release",
            "tag_name",
            "already_exists",
        ));
    }
    let created_at = now();
    let release = StoredRelease {
        id: store.next_id(),
        repo: repo.to_owned(),
        tag_name,
        target_commitish,
        name,
        body: notes,
        draft,
        prerelease,
        author: author.to_owned(),
        created_at,
        published_at: (!draft).then_some(created_at),
        assets: Vec::new(),
    };
    let json = release_json(shared, &release);
    store.releases.push(release);
    shared.persist(&store)?;
    let location = json["url"].as_str().unwrap_or_default().to_owned();
    Ok(Reply::json(201, &json).with_header("Location", location))
}

fn immutable(shared: &Shared, repo: &str) -> bool {
    shared
        .config
        .repos
        .get(repo)
        .is_some_and(|r| r.immutable_releases)
}

/// `PATCH /releases/{id}`: name, body, tag, draft and prerelease. Publishing
/// a draft (`draft: false`) sets `published_at`; a published release of a
/// repository with immutable releases keeps its tag and cannot become a
/// draft again.
fn update_release(
    shared: &Shared,
    req: &mut Incoming<'_>,
    repo: &str,
    id: u64,
) -> Result<Reply, ApiError> {
    let body = req.read_body(shared.config.max_body_bytes)?;
    let input: Map<String, Value> =
        serde_json::from_slice(&body).map_err(|_| ApiError::new(400, "Problems parsing JSON"))?;
    let text = |field: &str| -> Result<Option<String>, ApiError> {
        match input.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid_request(&format!(
                "For 'properties/{field}', it is not a string."
            ))),
        }
    };
    let flag = |field: &str| -> Result<Option<bool>, ApiError> {
        match input.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid_request(&format!(
                "For 'properties/{field}', it is not a boolean."
            ))),
        }
    };
    let (tag_name, name, notes) = (text("tag_name")?, text("name")?, text("body")?);
    let (draft, prerelease) = (flag("draft")?, flag("prerelease")?);
    let immutable = immutable(shared, repo);
    let mut store = shared.store();
    if let Some(tag) = &tag_name {
        if store
            .releases
            .iter()
            .any(|r| r.repo == repo && r.id != id && &r.tag_name == tag)
        {
            return Err(ApiError::validation(
                "Release",
                "tag_name",
                "already_exists",
            ));
        }
    }
    let release = store
        .release_mut(repo, id)
        .ok_or_else(ApiError::not_found)?;
    let changes_tag = tag_name.as_ref().is_some_and(|t| *t != release.tag_name);
    if immutable && !release.draft && (changes_tag || draft == Some(true)) {
        return Err(ApiError::new(
            422,
            "Cannot change the tag or draft state of an immutable release.",
        ));
    }
    if let Some(tag) = tag_name {
        release.tag_name = tag;
    }
    if name.is_some() {
        release.name = name;
    }
    if notes.is_some() {
        release.body = notes;
    }
    if let Some(prerelease) = prerelease {
        release.prerelease = prerelease;
    }
    if let Some(draft) = draft {
        if release.draft && !draft {
            release.published_at = Some(now());
        }
        if draft {
            release.published_at = None;
        }
        release.draft = draft;
    }
    let json = release_json(shared, release);
    shared.persist(&store)?;
    Ok(Reply::json(200, &json))
}

fn invalid_request(detail: &str) -> ApiError {
    ApiError::new(422, &format!("Invalid request.\n\n{detail}"))
}

fn upload_asset(
    shared: &Shared,
    req: &mut Incoming<'_>,
    caller: Option<&Caller>,
    repo: &str,
    release_id: u64,
) -> Result<Reply, ApiError> {
    let name = req.query("name").unwrap_or_default().to_owned();
    if name.is_empty() || name.contains('/') {
        return Err(ApiError::validation("ReleaseAsset", "name", "invalid"));
    }
    let label = req
        .query("label")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    let content_type = req
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .to_owned();
    let data = req.read_body(shared.config.max_body_bytes)?;

    let mut store = shared.store();
    let id = store.next_id();
    let release = store
        .release_mut(repo, release_id)
        .ok_or_else(ApiError::not_found)?;
    if !release.draft && immutable(shared, repo) {
        return Err(ApiError::new(
            422,
            "Cannot upload assets to an immutable release.",
        ));
    }
    if release.assets.iter().any(|a| a.name == name) {
        return Err(ApiError::validation(
            "ReleaseAsset",
            "name",
            "already_exists",
        ));
    }
    release.assets.push(StoredAsset {
        id,
        name,
        label,
        content_type,
        uploader: caller.map_or("", Caller::login).to_owned(),
        created_at: now(),
        data,
    });
    let json = store
        .asset(repo, id)
        .map(|(release, asset)| asset_json(shared, release, asset))
        .ok_or_else(ApiError::not_found)?;
    shared.persist(&store)?;
    Ok(Reply::json(201, &json))
}

/// Metadata, or with `Accept: application/octet-stream` a redirect to storage.
fn asset(shared: &Shared, req: &Incoming<'_>, repo: &str, id: u64) -> Result<Reply, ApiError> {
    let store = shared.store();
    let (release, asset) = store.asset(repo, id).ok_or_else(ApiError::not_found)?;
    let wants_content = req
        .header("accept")
        .is_some_and(|a| a.contains("application/octet-stream"));
    if wants_content {
        Ok(Reply::redirect(shared.storage_url(Blob::Asset, asset.id)))
    } else {
        Ok(Reply::json(200, &asset_json(shared, release, asset)))
    }
}

fn browser_download(shared: &Shared, repo: &str, tag: &str, name: &str) -> Result<Reply, ApiError> {
    let store = shared.store();
    let asset = store
        .releases
        .iter()
        .filter(|r| r.repo == repo && !r.draft && r.tag_name == tag)
        .find_map(|r| r.assets.iter().find(|a| a.name == name))
        .ok_or_else(ApiError::not_found)?;
    Ok(Reply::redirect(shared.storage_url(Blob::Asset, asset.id)))
}

fn list_artifacts(shared: &Shared, req: &Incoming<'_>, repo: &str) -> Result<Reply, ApiError> {
    let store = shared.store();
    let name = req.query("name");
    let mut artifacts: Vec<&StoredArtifact> = store
        .artifacts
        .iter()
        .filter(|a| a.repo == repo && name.is_none_or(|n| a.name == n))
        .collect();
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.id));
    let total = artifacts.len();
    let artifacts: Vec<Value> = artifacts.iter().map(|a| artifact_json(shared, a)).collect();
    Ok(paginated(
        shared,
        req,
        artifacts,
        |page| json!({"total_count": total, "artifacts": page}),
    ))
}

/// One page of `items` per `per_page`/`page`, with GitHub's `Link` header.
fn paginated(
    shared: &Shared,
    req: &Incoming<'_>,
    items: Vec<Value>,
    wrap: impl FnOnce(Vec<Value>) -> Value,
) -> Reply {
    let number = |key: &str, default: usize| {
        req.query(key)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let per_page = number("per_page", DEFAULT_PER_PAGE).min(MAX_PER_PAGE);
    let page = number("page", 1);
    let last = items.len().div_ceil(per_page).max(1);
    let start = page.saturating_sub(1).saturating_mul(per_page);
    let slice: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
    let reply = Reply::json(200, &wrap(slice));
    if last == 1 {
        return reply;
    }
    let link_to = |target: usize, rel: &str| {
        let mut query: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        query.push(format!("per_page={per_page}"));
        query.push(format!("page={target}"));
        let path: Vec<String> = req.segments.iter().map(|s| encode_component(s)).collect();
        format!(
            "<{}/{}?{}>; rel=\"{rel}\"",
            shared.urls().web,
            path.join("/"),
            query.join("&")
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page.saturating_sub(1).min(last), "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    reply.with_header("Link", links.join(", "))
}

fn user_json(shared: &Shared, login: &str) -> Value {
    json!({
        "login": login,
        "id": shared.config.user_id(login).unwrap_or(0),
        "type": "User",
        "site_admin": false,
        "url": format!("{}/users/{}", shared.urls().api, encode_component(login)),
        "html_url": format!("{}/{}", shared.urls().web, encode_component(login)),
    })
}

fn repo_json(shared: &Shared, caller: Option<&str>, repo: &str, level: Permission) -> Value {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
    let private = shared.config.repos.get(repo).is_some_and(|r| r.private);
    let mut json = json!({
        "id": shared.config.repo_id(repo).unwrap_or(0),
        "name": name,
        "full_name": repo,
        "owner": user_json(shared, owner),
        "private": private,
        "visibility": if private { "private" } else { "public" },
        "html_url": format!("{}/{repo}", shared.urls().web),
        "url": format!("{}/repos/{repo}", shared.urls().api),
        "default_branch": "main",
    });
    // GitHub includes the caller's permissions only for authenticated requests.
    if caller.is_some() {
        json["permissions"] = json!({
            "admin": level >= Permission::Admin,
            "maintain": level >= Permission::Admin,
            "push": level >= Permission::Write,
            "triage": level >= Permission::Write,
            "pull": level >= Permission::Read,
        });
    }
    json
}

fn release_json(shared: &Shared, release: &StoredRelease) -> Value {
    let api = format!(
        "{}/repos/{}/releases/{}",
        shared.urls().api,
        release.repo,
        release.id
    );
    json!({
        "url": api,
        "assets_url": format!("{api}/assets"),
        "upload_url": format!(
            "{}/repos/{}/releases/{}/assets{{?name,label}}",
            shared.urls().uploads, release.repo, release.id
        ),
        "html_url": format!("{}/{}/releases/tag/{}", shared.urls().web, release.repo, encode_component(&release.tag_name)),
        "id": release.id,
        "author": user_json(shared, &release.author),
        "tag_name": release.tag_name,
        "target_commitish": release.target_commitish,
        "name": release.name,
        "body": release.body,
        "draft": release.draft,
        "prerelease": release.prerelease,
        "created_at": rfc3339(release.created_at),
        "published_at": release.published_at.map(rfc3339),
        "assets": release.assets.iter().map(|a| asset_json(shared, release, a)).collect::<Vec<_>>(),
    })
}

fn asset_json(shared: &Shared, release: &StoredRelease, asset: &StoredAsset) -> Value {
    json!({
        "url": format!("{}/repos/{}/releases/assets/{}", shared.urls().api, release.repo, asset.id),
        "browser_download_url": format!(
            "{}/{}/releases/download/{}/{}",
            shared.urls().web, release.repo, encode_component(&release.tag_name), encode_component(&asset.name)
        ),
        "id": asset.id,
        "name": asset.name,
        "label": asset.label,
        "uploader": user_json(shared, &asset.uploader),
        "content_type": asset.content_type,
        "state": "uploaded",
        "size": asset.data.len(),
        "digest": sha256_digest(&asset.data),
        "download_count": 0,
        "created_at": rfc3339(asset.created_at),
        "updated_at": rfc3339(asset.created_at),
    })
}

fn artifact_json(shared: &Shared, artifact: &StoredArtifact) -> Value {
    let url = format!(
        "{}/repos/{}/actions/artifacts/{}",
        shared.urls().api,
        artifact.repo,
        artifact.id
    );
    json!({
        "id": artifact.id,
        "name": artifact.name,
        "size_in_bytes": artifact.data.len(),
        "url": url,
        "archive_download_url": format!("{url}/zip"),
        "expired": artifact.expired,
        "digest": sha256_digest(&artifact.data),
        "created_at": rfc3339(artifact.created_at),
        "updated_at": rfc3339(artifact.created_at),
        "expires_at": rfc3339(artifact.created_at.saturating_add(ARTIFACT_RETENTION_SECS)),
    })
}

/// `sha256:<hex>`, the form GitHub uses for asset and artifact digests.
fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}
