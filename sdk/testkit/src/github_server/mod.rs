//! A local GitHub-REST-compatible server for tests and demos.
//!
//! It speaks the subset of the API the project uses, at a GitHub Enterprise
//! Server style base URL (`http://127.0.0.1:PORT/api/v3`), so a client selects
//! it exactly as it would select a GHES instance:
//!
//! - releases: list (paginated, `Link`), by id, by tag, latest, create, delete;
//! - release assets: upload to the `upload_url` (`/api/uploads/...`), list,
//!   metadata, and download through a 302 to a signed storage URL;
//! - Actions artifacts: list, metadata, zip download through a 302 (410 once
//!   expired); tests seed them with [`GithubServer::add_artifact`];
//! - releases can be drafts, published by `PATCH` (`draft: false`); a repo
//!   with immutable releases ([`RepoConfig::immutable_releases`]) refuses
//!   uploads to a published release with 422, as GitHub does;
//! - identity and permissions: `/user`, `/repos/{o}/{r}` with `permissions`,
//!   `/repos/{o}/{r}/collaborators/{u}/permission`; user tokens and
//!   installation tokens (a workflow's `GITHUB_TOKEN`: 403 on `/user`, acts
//!   on its repositories only);
//! - a GitHub Actions OIDC issuer at `/_services/token` (JWKS, and the
//!   Actions runtime's token endpoint), see [`GithubServer::oidc_issuer`].
//!
//! Storage is served by a second listener, a different origin, as release
//! storage is for api.github.com; like S3 it refuses requests that carry an
//! `Authorization` header. Tests can inject faults and read a request log.

mod api;
mod config;
mod oidc;
mod state;
mod storage;
mod wire;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context};
use tiny_http::{Header, Response, Server};

pub use config::{ActionsJob, Installation, Permission, RepoConfig, ServerConfig};
pub use oidc::{ISSUER_PATH, TOKEN_LIFETIME_SECS};
pub use storage::STORAGE_PATH_PREFIX;

use crate::oidc_signer::TestSigner;
use state::{Store, StoredArtifact};
use storage::Storage;
use wire::{now, ApiError, Incoming, Reply};

/// Requests kept in the log; older ones are dropped first.
const LOG_CAPACITY: usize = 10_000;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// The raw request path, without the query (storage paths start with
    /// [`STORAGE_PATH_PREFIX`]).
    pub path: String,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    /// The status the server answered with.
    pub status: u16,
}

/// A pending injected failure.
struct Fault {
    path_prefix: String,
    status: u16,
    remaining: usize,
}

/// Base URLs the JSON documents point at.
///
/// They follow the `Host` the client used, as a server behind a reverse proxy
/// would: a VM behind QEMU's user network reaches the server as
/// `10.0.2.2:PORT` and must be sent there, while a client on the host uses
/// `127.0.0.1:PORT`. Each worker thread serves one request at a time, so the
/// request's host is kept in a thread-local for the length of the request.
struct Urls {
    /// `http://host:port`: web URLs (`browser_download_url`, `html_url`).
    web: String,
    /// `{web}/api/v3`: the REST API.
    api: String,
    /// `{web}/api/uploads`: asset uploads, as on GitHub Enterprise Server.
    uploads: String,
}

thread_local! {
    /// `host[:port]` from the `Host` header of the request this thread serves.
    static REQUEST_HOST: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A `Host` header value usable in a URL: a name, IPv4 or `[IPv6]`, with an
/// optional port, and nothing else.
fn usable_host(value: &str) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then_some(value)
}

impl Urls {
    fn for_host(host: &str) -> Urls {
        let web = format!("http://{host}");
        Urls {
            api: format!("{web}/api/v3"),
            uploads: format!("{web}/api/uploads"),
            web,
        }
    }
}

/// State shared by the worker threads.
struct Shared {
    config: ServerConfig,
    /// The API listener's address: URLs use it when a request has no Host.
    api_addr: SocketAddr,
    /// The storage listener's port: storage URLs use the request's host name with it.
    storage_port: u16,
    storage: Storage,
    store: Mutex<Store>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<VecDeque<LoggedRequest>>,
    stopping: AtomicBool,
    /// The OIDC issuer's (public, test-only) signing key.
    signer: TestSigner,
}

impl Shared {
    /// Base URLs for the request being served (see [`Urls`]).
    fn urls(&self) -> Urls {
        Urls::for_host(
            &self
                .request_host()
                .unwrap_or_else(|| self.api_addr.to_string()),
        )
    }

    /// A signed storage URL for `blob` `id`, on the request's host name.
    fn storage_url(&self, blob: storage::Blob, id: u64) -> String {
        let host = match self.request_host() {
            Some(host) => host_name(&host).to_owned(),
            None => match self.api_addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                std::net::IpAddr::V4(ip) => ip.to_string(),
            },
        };
        self.storage
            .url(&format!("http://{host}:{}", self.storage_port), blob, id)
    }

    fn request_host(&self) -> Option<String> {
        REQUEST_HOST.with(|h| h.borrow().clone())
    }

    /// The data store. A panicked worker cannot leave it half-updated in a
    /// way later requests care about, so a poisoned lock is still used.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the state file, if configured.
    fn persist(&self, store: &Store) -> Result<(), ApiError> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        store.save(path).map_err(|e| {
            eprintln!("ee-github-test-server: {e:#}");
            ApiError::new(500, "Server Error")
        })
    }

    /// Consumes one injected fault matching `path`, if any.
    fn take_fault(&self, path: &str) -> Option<u16> {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let index = faults
            .iter()
            .position(|f| f.remaining > 0 && path.starts_with(&f.path_prefix))?;
        let fault = faults.get_mut(index)?;
        fault.remaining -= 1;
        let status = fault.status;
        if fault.remaining == 0 {
            faults.remove(index);
        }
        Some(status)
    }

    fn record(&self, entry: LoggedRequest) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(entry);
    }
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy)]
enum Listener {
    Api,
    Storage,
}

/// A running server; dropping it stops the listeners and joins the workers.
pub struct GithubServer {
    shared: Arc<Shared>,
    servers: Vec<(Arc<Server>, usize)>,
    workers: Vec<JoinHandle<()>>,
    api_addr: SocketAddr,
    storage_addr: SocketAddr,
}

impl GithubServer {
    /// Validates `config`, loads the state file if any, binds both listeners
    /// and starts the worker threads.
    pub fn start(config: ServerConfig) -> anyhow::Result<GithubServer> {
        config.validate()?;
        let store = Store::load(config.state_file.as_deref())?;
        let (api_server, api_addr) = bind(config.listen)?;
        let storage_listen = config
            .storage_listen
            .unwrap_or_else(|| SocketAddr::new(api_addr.ip(), 0));
        let (storage_server, storage_addr) = bind(storage_listen)?;
        if storage_addr == api_addr {
            bail!("the storage listener must differ from the API listener");
        }
        let shared = Arc::new(Shared {
            api_addr,
            storage_port: storage_addr.port(),
            storage: Storage::new(config.storage_url_ttl_secs),
            store: Mutex::new(store),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(VecDeque::new()),
            stopping: AtomicBool::new(false),
            signer: TestSigner::issuer()?,
            config,
        });
        let count = shared.config.workers;
        let mut server = GithubServer {
            shared,
            servers: Vec::new(),
            workers: Vec::new(),
            api_addr,
            storage_addr,
        };
        for (listener, http) in [
            (Listener::Api, api_server),
            (Listener::Storage, storage_server),
        ] {
            let http = Arc::new(http);
            // Registered before spawning, so a failed spawn below still
            // leaves Drop able to unblock every worker already started.
            server.servers.push((Arc::clone(&http), count));
            for _ in 0..count {
                let (shared, http) = (Arc::clone(&server.shared), Arc::clone(&http));
                let worker = std::thread::Builder::new()
                    .name(format!("github-server-{listener:?}"))
                    .spawn(move || work(&shared, &http, listener))
                    .context("spawning a worker thread")?;
                server.workers.push(worker);
            }
        }
        Ok(server)
    }

    /// The REST API base URL, e.g. `http://127.0.0.1:PORT/api/v3`.
    pub fn base_url(&self) -> String {
        Urls::for_host(&self.api_addr.to_string()).api
    }

    /// The OIDC issuer, `http://127.0.0.1:PORT/_services/token`: what a
    /// launch config's `oidc.issuer` names to trust this server's tokens.
    pub fn oidc_issuer(&self) -> String {
        format!(
            "{}{ISSUER_PATH}",
            Urls::for_host(&self.api_addr.to_string()).web
        )
    }

    /// The claims of a token the Actions runtime would issue now to `job`
    /// with `audience`; tests change them before [`GithubServer::sign_oidc`].
    pub fn oidc_claims(&self, job: &ActionsJob, audience: &str) -> serde_json::Value {
        oidc::job_claims(job, &self.oidc_issuer(), audience, now())
    }

    /// `claims` as a JWT signed by this server's issuer key.
    pub fn sign_oidc(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        Ok(self.shared.signer.sign(claims)?)
    }

    /// The address of the API listener.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The address of the storage listener that downloads redirect to.
    pub fn storage_addr(&self) -> SocketAddr {
        self.storage_addr
    }

    /// Seeds a workflow artifact of `repo` holding `zip`; returns its id.
    pub fn add_artifact(&self, repo: &str, name: &str, zip: Vec<u8>) -> anyhow::Result<u64> {
        let mut store = self.shared.store();
        let id = store.next_id();
        store.artifacts.push(StoredArtifact {
            id,
            repo: repo.to_owned(),
            name: name.to_owned(),
            created_at: now(),
            expired: false,
            data: zip,
        });
        self.shared
            .persist(&store)
            .map_err(|e| anyhow!("saving state: {}", e.message))?;
        Ok(id)
    }

    /// Marks artifact `id` expired: metadata says so, downloads answer 410.
    pub fn expire_artifact(&self, id: u64) -> anyhow::Result<()> {
        let mut store = self.shared.store();
        let artifact = store
            .artifacts
            .iter_mut()
            .find(|a| a.id == id)
            .with_context(|| format!("no artifact {id}"))?;
        artifact.expired = true;
        self.shared
            .persist(&store)
            .map_err(|e| anyhow!("saving state: {}", e.message))
    }

    /// Makes the next `count` requests whose raw path starts with
    /// `path_prefix` (e.g. `/api/v3/repos/o/r/releases`) answer `status`.
    pub fn fail_next(&self, path_prefix: &str, status: u16, count: usize) {
        let mut faults = self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        faults.push(Fault {
            path_prefix: path_prefix.to_owned(),
            status,
            remaining: count,
        });
    }

    /// The requests served so far (the most recent 10 000), oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        let log = self
            .shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        log.iter().cloned().collect()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        let mut log = self
            .shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        log.clear();
    }
}

impl Drop for GithubServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Each unblock releases exactly one waiting `recv`.
        for (server, workers) in &self.servers {
            for _ in 0..*workers {
                server.unblock();
            }
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn bind(addr: SocketAddr) -> anyhow::Result<(Server, SocketAddr)> {
    let server = Server::http(addr).map_err(|e| anyhow!("binding {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .context("the listener has no IP address")?;
    Ok((server, bound))
}

fn work(shared: &Shared, server: &Server, listener: Listener) {
    loop {
        match server.recv() {
            Ok(request) => serve(shared, listener, request),
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            // An accept error on one connection; keep serving the others.
            Err(_) => continue,
        }
    }
}

fn serve(shared: &Shared, listener: Listener, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let (raw_path, raw_query) = url.split_once('?').unwrap_or((&url, ""));
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_owned()))
        .collect();
    let authorization = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    let body_length = request.body_length();
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .and_then(|(_, value)| usable_host(value))
        .map(str::to_owned);
    REQUEST_HOST.with(|h| *h.borrow_mut() = host);

    let reply = match shared.take_fault(raw_path) {
        Some(status) => ApiError::new(status, "Server Error").into_reply(),
        None => {
            let parsed = Incoming::new(
                method.clone(),
                raw_path,
                raw_query,
                headers,
                body_length,
                request.as_reader(),
            );
            match (parsed, listener) {
                (None, _) => ApiError::new(400, "Malformed percent-encoding").into_reply(),
                (Some(mut incoming), Listener::Api) => api::handle(shared, &mut incoming),
                (Some(incoming), Listener::Storage) => {
                    shared.storage.handle(&shared.store(), &incoming)
                }
            }
        }
    };
    shared.record(LoggedRequest {
        method,
        path: raw_path.to_owned(),
        authorization,
        status: reply.status,
    });
    // The client may have gone away; nothing to do about it here.
    let _ = request.respond(into_response(reply));
}

fn into_response(reply: Reply) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut response = Response::from_data(reply.body)
        .with_status_code(reply.status)
        // Always send Content-Length, as GitHub and its storage do.
        .with_chunked_threshold(usize::MAX);
    for (name, value) in reply.headers {
        if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    response
}

/// The name part of `host[:port]` (`[v6]:port` keeps its brackets).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(name, _)| &host[..name.len() + 1]);
    }
    host.split_once(':').map_or(host, |(name, _)| name)
}
