//! The measured deploy engine behind `POST /deploy`, `GET /status/{id}`,
//! `GET /deployments` and `/app/...`.
//!
//! A deploy is accepted only from a GitHub Actions job of the repo of the
//! measured launch config (its OIDC token, for this agent) or a GitHub user
//! with push access to that repo ([`auth`]), one at a time, and then
//! runs in its own thread through
//! `pending → downloading → measuring → starting → publishing → running`
//! (or `failed` with a reason):
//!
//! 1. the bundle zip is fetched ([`source`]) and extracted with
//!    [`easyenclave::bundle::extract_zip`] into a fresh directory on tmpfs;
//! 2. its digest goes into a `bundle` event, extended into RTMR3 before
//!    anything from the bundle runs;
//! 3. its images are loaded and its compose project started ([`workload`])
//!    with the private environment in docker's process environment only;
//!    the previous deployment is stopped (kept) just before, removed once the
//!    new one is published, and started again if the new one fails;
//! 4. the TD is sealed if asked ([`seal`]) and a `seal` event recorded;
//! 5. `attestation.json` is published on a new release ([`publish`]).
//!
//! The pipeline itself is in `pipeline`; the bookkeeping in [`registry`].
//! Secrets ([`secret`]) never reach a log line, status, error or file.

pub mod auth;
pub mod command;
mod pipeline;
pub mod proxy;
pub mod publish;
pub mod registry;
pub mod seal;
pub mod secret;
pub mod source;
pub mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use easyenclave::bundle::Limits as BundleLimits;
use easyenclave::deploy::{
    DeployAccepted, DeployRequest, DeploymentList, DeploymentStatus, DEPLOY_API_VERSION,
};
use easyenclave::github::{GitHub, GithubError, RepoName, RetryPolicy, Timeouts};
use easyenclave::launch::LaunchConfig;

use crate::measured::MeasuredLog;
use crate::root::FsRoot;
use crate::say;
pub use auth::Deployer;
use auth::{AgentKey, AuthError, Authorizer};
use registry::Registry;
use seal::Sealing;
use secret::{PrivateEnv, Token};
use workload::{Docker, DockerTimeouts};

/// Guest directory (tmpfs) holding one directory per deployment.
pub const WORK_DIR: &str = "/run/ee/deploy";

/// How the engine runs; [`Settings::new`] gives the production values.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where [`WORK_DIR`] resolves.
    pub root: FsRoot,
    /// The docker CLI.
    pub docker: Docker,
    /// Where and whether sealing acts.
    pub sealing: Sealing,
    /// Retries of GitHub GET requests (artifact download, permission check).
    pub github_retry: RetryPolicy,
    /// GitHub connect and read timeouts.
    pub github_timeouts: Timeouts,
    /// Caps on the bundle.
    pub bundle_limits: BundleLimits,
    /// How long a started workload may take to become ready.
    pub start_timeout: Duration,
    /// How often readiness is polled.
    pub poll_interval: Duration,
    /// `GET /status` re-reads a running deployment's containers at most this often.
    pub status_refresh: Duration,
    /// The wall clock (status times, release tags, attestation timestamps,
    /// OIDC token times).
    pub clock: fn() -> SystemTime,
    /// The agent's attested TLS key: the audience of OIDC tokens.
    pub agent_key: AgentKey,
    /// How the OIDC issuer's keys are fetched and cached.
    pub oidc_fetch: easyenclave::oidc::FetchOptions,
}

impl Settings {
    /// Production settings with work files under `root` and the given sealing.
    pub fn new(root: FsRoot, sealing: Sealing) -> Self {
        let home = root.path(WORK_DIR);
        Settings {
            root,
            docker: Docker {
                program: PathBuf::from(workload::DOCKER),
                host: None,
                home,
                timeouts: DockerTimeouts::default(),
            },
            sealing,
            github_retry: RetryPolicy::default(),
            github_timeouts: Timeouts::default(),
            bundle_limits: BundleLimits::default(),
            start_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            status_refresh: Duration::from_secs(2),
            clock: SystemTime::now,
            agent_key: AgentKey::unavailable("this agent serves no RA-TLS key"),
            oidc_fetch: easyenclave::oidc::FetchOptions::default(),
        }
    }
}

/// The engine ee-init serves, sealing as [`boot_sealing`] decides; OIDC
/// tokens must name `agent_key` (the served RA-TLS certificate's key).
pub fn for_boot(
    pid1: bool,
    root: &FsRoot,
    config: LaunchConfig,
    measured: Arc<MeasuredLog>,
    agent_key: AgentKey,
) -> Result<DeployEngine, EngineError> {
    let settings = Settings {
        agent_key,
        ..Settings::new(root.clone(), boot_sealing(pid1, root))
    };
    DeployEngine::new(config, measured, settings)
}

/// As PID1 sealing acts on `/`; a dev run seals its `--root` tree, and
/// refuses when that is the host's own `/`.
pub fn boot_sealing(pid1: bool, root: &FsRoot) -> Sealing {
    if pid1 || root.base() != std::path::Path::new("/") {
        Sealing::Enabled(root.clone())
    } else {
        Sealing::Unavailable(
            "a dev run on the host's own root would unlink the host's shells; \
             pass --root DIR to seal a scratch tree, or deploy with seal: false"
                .to_owned(),
        )
    }
}

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The launch config's repo is not a GitHub repo name.
    #[error("launch config repo: {0}")]
    Repo(GithubError),
    /// The launch config's GitHub API URL is unusable.
    #[error("launch config github_api_url: {0}")]
    Api(GithubError),
}

/// `POST /deploy` was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Authentication or authorization (401, 403, 502).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The body is invalid; the message names the field (400).
    #[error("{0}")]
    BadRequest(String),
    /// A deploy is in progress (409).
    #[error("deployment {0} is in progress; one deploy at a time")]
    Busy(String),
    /// The deploy thread could not start (503).
    #[error("cannot start the deploy: {0}")]
    Unavailable(String),
}

impl SubmitError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            SubmitError::Auth(e) => e.status(),
            SubmitError::BadRequest(_) => 400,
            SubmitError::Busy(_) => 409,
            SubmitError::Unavailable(_) => 503,
        }
    }
}

/// What the engine shares with its deploy threads.
struct Shared {
    config: LaunchConfig,
    repo: RepoName,
    measured: Arc<MeasuredLog>,
    settings: Settings,
    registry: Mutex<Registry>,
    auth: Authorizer,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Every registry change is a single assignment or push: consistent
        // even if a thread panicked while holding the lock.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        (self.settings.clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// A GitHub client for the launch config's API, as the deployer.
    fn github(&self, token: &Token) -> Result<GitHub, GithubError> {
        Ok(GitHub::new(&self.config.github_api_url)?
            .with_token(token.expose())
            .with_retry(self.settings.github_retry)
            .with_timeouts(self.settings.github_timeouts))
    }
}

/// The deploy engine; cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct DeployEngine {
    shared: Arc<Shared>,
}

impl DeployEngine {
    /// An engine for the agent bound to `config` (already measured).
    pub fn new(
        config: LaunchConfig,
        measured: Arc<MeasuredLog>,
        settings: Settings,
    ) -> Result<Self, EngineError> {
        let repo = RepoName::parse(&config.repo).map_err(EngineError::Repo)?;
        GitHub::new(&config.github_api_url).map_err(EngineError::Api)?;
        let auth = Authorizer::new(
            repo.clone(),
            config.clone(),
            settings.oidc_fetch,
            settings.agent_key.clone(),
            settings.clock,
        );
        Ok(DeployEngine {
            shared: Arc::new(Shared {
                config,
                repo,
                measured,
                settings,
                registry: Mutex::new(Registry::default()),
                auth,
            }),
        })
    }

    /// Check the credential of a request (`authorization` is the value of
    /// its `Authorization` header): the deploy check, also used for the full
    /// status view. Called before a deploy's body is read. An Actions OIDC
    /// token for this agent, or a GitHub token with push access
    /// ([`auth`]).
    pub fn authorize(&self, authorization: Option<&str>) -> Result<Deployer, AuthError> {
        let shared = &self.shared;
        shared
            .auth
            .authenticate(authorization, |token| shared.github(token))
    }

    /// Handle `POST /deploy` for `deployer` (see [`DeployEngine::authorize`]):
    /// check the body, then start the deploy in its own thread.
    pub fn submit(&self, deployer: Deployer, body: &[u8]) -> Result<DeployAccepted, SubmitError> {
        let shared = &self.shared;
        let mut request =
            DeployRequest::from_json(body).map_err(|e| SubmitError::BadRequest(e.to_string()))?;
        // At once, so that the values are wiped however this call ends.
        let env = Arc::new(PrivateEnv::take(&mut request.env));
        let github_token = request.github_token.take().map(Token::from_owned);
        let login = deployer.describe();
        let token = match (deployer, github_token) {
            (Deployer::User { token, .. }, None) => token,
            (Deployer::Actions(_), Some(token)) => token,
            (Deployer::User { .. }, Some(_)) => {
                return Err(SubmitError::BadRequest(
                    "github_token: only with an Actions OIDC token in Authorization; \
                     the GitHub token in Authorization already downloads and publishes"
                        .to_owned(),
                ))
            }
            (Deployer::Actions(_), None) => {
                return Err(SubmitError::BadRequest(
                    "github_token: required with an Actions OIDC token in Authorization: \
                     the workflow's GITHUB_TOKEN (contents: write, actions: read) downloads \
                     the artifact and publishes the release"
                        .to_owned(),
                ))
            }
        };
        if request.allowlist.is_none() {
            return Err(SubmitError::BadRequest(
                "allowlist: required: the published attestation.json names the allowlist \
                 the deployer verified this agent against"
                    .to_owned(),
            ));
        }
        if let Some(active) = shared.registry().active() {
            return Err(SubmitError::Busy(active.to_owned()));
        }
        let sealed = shared.measured.log().is_sealed();
        let id = shared
            .registry()
            .reserve(shared.now(), sealed)
            .map_err(SubmitError::Busy)?;
        let job = pipeline::Job {
            id: id.clone(),
            request,
            env,
            token,
            login,
        };
        let thread_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name(format!("deploy-{id}"))
            .spawn(move || pipeline::run(&thread_shared, job));
        if let Err(e) = spawned {
            let mut registry = shared.registry();
            registry.update(&id, shared.now(), |s| {
                s.state = easyenclave::deploy::DeploymentState::Failed;
                s.reason = Some(format!("cannot start the deploy thread: {e}"));
            });
            registry.finish(&id);
            return Err(SubmitError::Unavailable(e.to_string()));
        }
        Ok(DeployAccepted {
            version: DEPLOY_API_VERSION,
            id,
        })
    }

    /// `GET /status/{id}`; a running deployment's containers are re-read
    /// (at most every [`Settings::status_refresh`]).
    pub fn status(&self, id: &str) -> Option<DeploymentStatus> {
        let shared = &self.shared;
        let stale = {
            let registry = shared.registry();
            registry
                .current()
                .filter(|running| running.id == id)
                .filter(|_| {
                    registry
                        .refreshed(id)
                        .is_none_or(|at| at.elapsed() >= shared.settings.status_refresh)
                })
                .map(|running| running.project.clone())
        };
        if let Some(project) = stale {
            // docker runs outside the lock; the answer is stored if it worked.
            match shared.settings.docker.ps(&project) {
                Ok(containers) => shared.registry().set_containers(
                    id,
                    containers.iter().map(workload::Container::status).collect(),
                    Instant::now(),
                ),
                Err(e) => {
                    let message = secret::Redactor::new(&project.env, None).redact(&e.to_string());
                    say!("deploy {id}: reading container states failed: {message}");
                }
            }
        }
        shared.registry().status(id)
    }

    /// `GET /deployments`, newest first.
    pub fn list(&self) -> DeploymentList {
        self.shared.registry().list()
    }

    /// The running deployment's port on 127.0.0.1, for `/app/...`; `Err`
    /// says why there is none.
    pub fn app_port(&self) -> Result<u16, String> {
        let registry = self.shared.registry();
        let running = registry
            .current()
            .ok_or_else(|| "no workload is running; deploy one with POST /deploy".to_owned())?;
        running.port.ok_or_else(|| {
            format!(
                "deployment {} declared no port (the deploy request's `port`)",
                running.id
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_run_never_seals_the_host_root() {
        let system = FsRoot::system();
        assert_eq!(
            boot_sealing(true, &system),
            Sealing::Enabled(system.clone())
        );
        assert!(matches!(
            boot_sealing(false, &system),
            Sealing::Unavailable(why) if why.contains("--root DIR")
        ));
        let scratch = FsRoot::at("/tmp/scratch-root");
        assert_eq!(
            boot_sealing(false, &scratch),
            Sealing::Enabled(scratch.clone())
        );
    }
}
