//! The workload through the docker CLI: load a bundle's offline images,
//! run its compose project, read its containers' state, stop it.
//!
//! Every deployment is its own compose project (`ee-<id>`), so a new one can
//! be started while the previous one is kept for a rollback. The private
//! environment reaches compose only through its process environment, for
//! every compose command of the project (compose interpolates the file each
//! time, and `${VAR:?}` would fail without it); nothing is written to disk.
//!
//! Before anything of a project runs, [`Docker::police`] renders it with
//! `docker compose config --format json` and applies the SDK's workload
//! policy ([`easyenclave::workload_policy`]).

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use easyenclave::deploy::ContainerStatus;
use easyenclave::workload_policy::{self, WorkloadPolicy};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::command::{self, CommandError, Invocation, Output};
use super::secret::PrivateEnv;

/// The docker CLI in the image.
pub const DOCKER: &str = "/usr/bin/docker";
/// PATH for docker and the compose plugin (their environment is otherwise
/// only HOME, DOCKER_HOST if set, and the private variables).
pub const DOCKER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long each kind of docker command may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DockerTimeouts {
    /// `docker load` of one image archive.
    pub load: Duration,
    /// `docker compose up -d`.
    pub up: Duration,
    /// `docker compose ps`.
    pub ps: Duration,
    /// `docker compose stop`, `start` and `down`.
    pub stop: Duration,
    /// `docker compose config` (each render of the policy check).
    pub render: Duration,
}

impl Default for DockerTimeouts {
    fn default() -> Self {
        DockerTimeouts {
            load: Duration::from_secs(600),
            up: Duration::from_secs(300),
            ps: Duration::from_secs(30),
            stop: Duration::from_secs(120),
            render: Duration::from_secs(60),
        }
    }
}

/// A docker command failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// It could not be run to completion.
    #[error("{what}: {source}")]
    Command {
        /// The command, e.g. `docker compose up`.
        what: String,
        /// Why.
        source: CommandError,
    },
    /// It exited with an error; `output` is the tail of its stderr.
    #[error("{what} failed ({exit:?}): {output}")]
    Failed {
        /// The command.
        what: String,
        /// How it ended.
        exit: crate::supervisor::Exit,
        /// The last lines of its stderr (not yet redacted).
        output: String,
    },
    /// `docker compose ps` printed something else than container JSON.
    #[error("docker compose ps: {0}")]
    Ps(String),
    /// `docker compose config` printed something else than a JSON project.
    #[error("docker compose config: {0}")]
    Render(String),
    /// The project breaks the workload policy.
    #[error(transparent)]
    Policy(#[from] workload_policy::Violations),
    /// A private value changes the project outside environment values.
    #[error("workload policy v{version}: {0}", version = workload_policy::WORKLOAD_POLICY_VERSION)]
    PrivateEnv(workload_policy::Violation),
}

/// The value every private variable has in the public render. Not secret,
/// not empty (so `${VAR:?}` renders), and recognisable in a diff.
pub const PLACEHOLDER: &str = "ee-private-value";

/// A project that passed the workload policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policed {
    /// [`WorkloadPolicy::digest`] of the policy applied.
    pub policy: [u8; 32],
    /// Every image carried in the bundle or pinned by digest.
    pub images_pinned: bool,
}

/// Which values the private variables have in a render.
#[derive(Clone, Copy)]
enum RenderEnv {
    Placeholders,
    Private,
}

/// A compose project: one deployment's containers.
#[derive(Debug, Clone)]
pub struct Project {
    /// `-p` name.
    pub name: String,
    /// The bundle's compose file (absolute).
    pub compose_file: PathBuf,
    /// The private environment, needed by every compose command.
    pub env: Arc<PrivateEnv>,
}

/// The docker CLI and how to call it.
#[derive(Debug, Clone)]
pub struct Docker {
    /// The docker binary ([`DOCKER`]; tests use a fake).
    pub program: PathBuf,
    /// DOCKER_HOST for the CLI, if dockerd is not on its default socket.
    pub host: Option<String>,
    /// HOME for the CLI: a tmpfs directory (its config lookups go there).
    pub home: PathBuf,
    /// Time limits.
    pub timeouts: DockerTimeouts,
}

impl Docker {
    fn environment_for(&self, project: &Project, values: RenderEnv) -> Vec<Zeroizing<CString>> {
        let mut env = self.environment(None);
        env.extend(match values {
            RenderEnv::Placeholders => project.env.placeholders(PLACEHOLDER),
            RenderEnv::Private => project.env.entries(),
        });
        env
    }

    fn environment(&self, private: Option<&PrivateEnv>) -> Vec<Zeroizing<CString>> {
        let mut fixed = vec![
            format!("PATH={DOCKER_PATH}"),
            format!("HOME={}", self.home.display()),
        ];
        if let Some(host) = &self.host {
            fixed.push(format!("DOCKER_HOST={host}"));
        }
        let mut env: Vec<Zeroizing<CString>> = fixed
            .into_iter()
            .filter_map(|e| CString::new(e).ok().map(Zeroizing::new))
            .collect();
        if let Some(private) = private {
            env.extend(private.entries());
        }
        env
    }

    fn run(
        &self,
        what: &str,
        args: &[String],
        private: Option<&PrivateEnv>,
        timeout: Duration,
    ) -> Result<Output, WorkloadError> {
        self.run_with(what, args, self.environment(private), timeout)
    }

    fn run_with(
        &self,
        what: &str,
        args: &[String],
        env: Vec<Zeroizing<CString>>,
        timeout: Duration,
    ) -> Result<Output, WorkloadError> {
        let output = command::run(&Invocation {
            program: &self.program,
            args,
            env,
            timeout,
        })
        .map_err(|source| WorkloadError::Command {
            what: what.to_owned(),
            source,
        })?;
        if !output.success() {
            return Err(WorkloadError::Failed {
                what: what.to_owned(),
                exit: output.exit,
                output: tail_lines(&output.stderr, 10),
            });
        }
        Ok(output)
    }

    /// `docker load -i ARCHIVE`.
    pub fn load(&self, archive: &Path) -> Result<String, WorkloadError> {
        let args = ["load".to_owned(), "-i".to_owned(), path_arg(archive)];
        let out = self.run("docker load", &args, None, self.timeouts.load)?;
        Ok(tail_lines(&out.stdout, 5))
    }

    fn compose(&self, project: &Project, command: &[&str]) -> Vec<String> {
        let mut args = vec![
            "compose".to_owned(),
            "-p".to_owned(),
            project.name.clone(),
            "-f".to_owned(),
            path_arg(&project.compose_file),
        ];
        args.extend(command.iter().map(|s| (*s).to_owned()));
        args
    }

    /// `docker compose config --format json`: the project as `up` will see it.
    fn render(&self, project: &Project, values: RenderEnv) -> Result<Value, WorkloadError> {
        let args = self.compose(project, &["config", "--format", "json"]);
        let env = self.environment_for(project, values);
        let out = self.run_with("docker compose config", &args, env, self.timeouts.render)?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| WorkloadError::Render(format!("output is not JSON: {e}")))
    }

    /// Check the project against the workload policy before anything of it
    /// runs; `bundle_dir` is where its bundle was extracted and `archives`
    /// are its offline image archives.
    ///
    /// Private values must only become container environment values, so the
    /// policy is applied to a render in which every private variable has the
    /// public value [`PLACEHOLDER`] (a render without them would fail on
    /// `${VAR:?}` in an environment value, which is legitimate). The project
    /// is then rendered with the real values, which is what `up` does, and
    /// the two renders must be equal except for values under
    /// `services.*.environment`: whatever a private value could change
    /// elsewhere (an image, a mount, a flag, a profile) refuses the deploy.
    /// The render with private values is dropped here and never logged;
    /// violations name paths, not values.
    pub fn police(
        &self,
        project: &Project,
        bundle_dir: &Path,
        archives: &[PathBuf],
    ) -> Result<Policed, WorkloadError> {
        let policy = WorkloadPolicy::v1();
        let digest = policy
            .digest()
            .map_err(|e| WorkloadError::Render(format!("the policy's digest: {e}")))?;
        let public = self.render(project, RenderEnv::Placeholders)?;
        policy.check(&public, bundle_dir)?;
        if !project.env.is_empty() {
            let private = self.render(project, RenderEnv::Private)?;
            workload_policy::check_private_env_confined(&public, &private)
                .map_err(WorkloadError::PrivateEnv)?;
        }
        let carried: Vec<String> = archives
            .iter()
            .filter_map(|path| std::fs::File::open(path).ok())
            .filter_map(|file| {
                workload_policy::docker_archive_tags(std::io::BufReader::new(file)).ok()
            })
            .flatten()
            .collect();
        Ok(Policed {
            policy: digest,
            images_pinned: workload_policy::images_pinned(&public, &carried),
        })
    }

    /// `docker compose up -d`: create and start the project's containers.
    pub fn up(&self, project: &Project) -> Result<(), WorkloadError> {
        let args = self.compose(project, &["up", "-d"]);
        self.run(
            "docker compose up",
            &args,
            Some(&project.env),
            self.timeouts.up,
        )
        .map(drop)
    }

    /// `docker compose stop`: stop the containers, keep them for `start`.
    pub fn stop(&self, project: &Project) -> Result<(), WorkloadError> {
        let args = self.compose(project, &["stop"]);
        self.run(
            "docker compose stop",
            &args,
            Some(&project.env),
            self.timeouts.stop,
        )
        .map(drop)
    }

    /// `docker compose start`: start stopped containers again.
    pub fn start(&self, project: &Project) -> Result<(), WorkloadError> {
        let args = self.compose(project, &["start"]);
        self.run(
            "docker compose start",
            &args,
            Some(&project.env),
            self.timeouts.stop,
        )
        .map(drop)
    }

    /// `docker compose down --remove-orphans`: remove the containers and
    /// networks (named volumes stay, for a later project that names them).
    pub fn down(&self, project: &Project) -> Result<(), WorkloadError> {
        let args = self.compose(project, &["down", "--remove-orphans"]);
        self.run(
            "docker compose down",
            &args,
            Some(&project.env),
            self.timeouts.stop,
        )
        .map(drop)
    }

    /// `docker compose ps --all --format json`: every container of the project.
    pub fn ps(&self, project: &Project) -> Result<Vec<Container>, WorkloadError> {
        let args = self.compose(project, &["ps", "--all", "--format", "json"]);
        let out = self.run(
            "docker compose ps",
            &args,
            Some(&project.env),
            self.timeouts.ps,
        )?;
        parse_ps(&out.stdout).map_err(WorkloadError::Ps)
    }
}

/// A path as one argument (docker takes paths as UTF-8 text anyway).
fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The last `n` non-empty lines of command output, joined with ` | `.
pub fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().join(" | ")
}

/// One container as `docker compose ps --format json` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Container {
    /// Compose service.
    #[serde(rename = "Service", default)]
    pub service: String,
    /// `running`, `exited`, `restarting`, ...
    #[serde(rename = "State", default)]
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or empty without a healthcheck.
    #[serde(rename = "Health", default)]
    pub health: String,
    /// Exit code, meaningful once exited.
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
}

impl Container {
    /// The API's view of it.
    pub fn status(&self) -> ContainerStatus {
        ContainerStatus {
            service: self.service.clone(),
            state: self.state.clone(),
            health: self.health.clone(),
        }
    }
}

/// Parse `docker compose ps --format json`: a JSON array (compose < 2.21)
/// or one JSON object per line (later versions).
pub fn parse_ps(stdout: &[u8]) -> Result<Vec<Container>, String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "output is not UTF-8".to_owned())?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).map_err(|e| format!("output is not JSON: {e}"));
    }
    trimmed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))
        })
        .collect()
}

/// Whether a started project is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every container runs (healthy where it has a healthcheck) or exited
    /// with status 0 (a one-shot job), and the port, if any, accepts.
    Ready,
    /// Not yet; why.
    Waiting(String),
    /// It will not come up; why.
    Failed(String),
}

/// Judge a project from its containers.
pub fn readiness(containers: &[Container]) -> Readiness {
    if containers.is_empty() {
        return Readiness::Waiting("no containers yet".to_owned());
    }
    let mut waiting = None;
    for c in containers {
        match (c.state.as_str(), c.health.as_str()) {
            ("running", "unhealthy") => {
                return Readiness::Failed(format!("service {} is unhealthy", c.service))
            }
            ("running", "" | "healthy") => {}
            ("running", health) => {
                waiting.get_or_insert_with(|| format!("service {} is {health}", c.service));
            }
            ("exited", _) if c.exit_code == 0 => {}
            ("exited" | "dead", _) => {
                return Readiness::Failed(format!(
                    "service {} {} with status {}",
                    c.service, c.state, c.exit_code
                ))
            }
            (state, _) => {
                waiting.get_or_insert_with(|| format!("service {} is {state}", c.service));
            }
        }
    }
    match waiting {
        Some(why) => Readiness::Waiting(why),
        None => Readiness::Ready,
    }
}

/// Poll the project until it is ready, fails, or `timeout` passes; also
/// wait for `port` on 127.0.0.1 to accept a connection if given. Returns
/// the containers as last seen.
pub fn wait_until_ready(
    docker: &Docker,
    project: &Project,
    port: Option<u16>,
    timeout: Duration,
    poll_every: Duration,
) -> Result<Vec<Container>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let containers = docker.ps(project).map_err(|e| e.to_string())?;
        let why = match readiness(&containers) {
            Readiness::Failed(why) => return Err(why),
            Readiness::Waiting(why) => why,
            Readiness::Ready => match port {
                Some(port) if !accepts(port) => format!("nothing accepts on port {port} yet"),
                _ => return Ok(containers),
            },
        };
        if Instant::now() >= deadline {
            return Err(format!("not ready after {} s: {why}", timeout.as_secs()));
        }
        std::thread::sleep(poll_every);
    }
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(service: &str, state: &str, health: &str, exit_code: i64) -> Container {
        Container {
            service: service.into(),
            state: state.into(),
            health: health.into(),
            exit_code,
        }
    }

    #[test]
    fn ps_output_in_both_formats() {
        // compose 2.20 printed an array; 2.21+ prints one object per line.
        let array =
            br#"[{"Name":"p-web-1","Service":"web","State":"running","Health":"","ExitCode":0}]"#;
        let lines = b"{\"Service\":\"web\",\"State\":\"running\",\"Health\":\"healthy\",\"Publishers\":[]}\n{\"Service\":\"job\",\"State\":\"exited\",\"ExitCode\":0}\n";
        assert_eq!(
            parse_ps(array).unwrap(),
            [container("web", "running", "", 0)]
        );
        assert_eq!(
            parse_ps(lines).unwrap(),
            [
                container("web", "running", "healthy", 0),
                container("job", "exited", "", 0)
            ]
        );
        assert_eq!(parse_ps(b"\n").unwrap(), []);
        assert!(parse_ps(b"{\"Service\":\n")
            .unwrap_err()
            .starts_with("line 1: not JSON"));
        assert!(parse_ps(b"\xff").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn readiness_rules() {
        use Readiness::*;
        let r = |cs: &[Container]| readiness(cs);
        assert_eq!(r(&[]), Waiting("no containers yet".into()));
        assert_eq!(
            r(&[
                container("web", "running", "healthy", 0),
                container("migrate", "exited", "", 0)
            ]),
            Ready
        );
        assert_eq!(
            r(&[container("web", "running", "starting", 0)]),
            Waiting("service web is starting".into())
        );
        assert_eq!(
            r(&[container("web", "restarting", "", 0)]),
            Waiting("service web is restarting".into())
        );
        assert_eq!(
            r(&[
                container("web", "created", "", 0),
                container("db", "exited", "", 1)
            ]),
            Failed("service db exited with status 1".into())
        );
        assert_eq!(
            r(&[container("web", "running", "unhealthy", 0)]),
            Failed("service web is unhealthy".into())
        );
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail_lines(b"a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail_lines(b"", 3), "");
    }
}
