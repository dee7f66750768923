//! One deploy, start to finish, in its own thread. See the parent module
//! for the steps; this file is their order and the fall-back when a step
//! fails:
//!
//! - before the `bundle` event (a bundle that cannot be fetched or
//!   extracted, or a compose project the workload policy refuses): nothing
//!   ran, the work directory is removed, the previous deployment runs on;
//! - after it: the new compose project is taken down, the previous
//!   deployment (stopped just before `docker compose up`) is started again
//!   and its `bundle` event recorded again; when there is no previous
//!   deployment, or it does not start again, a `stopped` event for the new
//!   bundle is recorded instead. So the newest workload event in RTMR3 is
//!   always what runs (`EventLog::running_bundle`).

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use easyenclave::bundle;
use easyenclave::deploy::{DeployRequest, DeploymentState};
use easyenclave::eventlog::{BundleEvent, Event, SealEvent, StoppedEvent};

use super::publish::{Publisher, ATTESTATION_ASSET};
use super::registry::Running;
use super::secret::{PrivateEnv, Redactor, Token};
use super::workload::{self, Project};
use super::{seal, source, Shared, WORK_DIR};
use crate::measured::RecordError;
use crate::say;

/// An accepted deploy, handed to its thread.
pub(super) struct Job {
    /// The deployment id.
    pub id: String,
    /// The request, its private environment taken out.
    pub request: DeployRequest,
    /// The private environment.
    pub env: Arc<PrivateEnv>,
    /// The deployer's token; dropped (and wiped) when the deploy ends.
    pub token: Token,
    /// The deployer's GitHub login.
    pub login: String,
}

/// Reports a deploy's progress into its status and log tail, and to the
/// console, with every secret redacted.
struct Progress<'a> {
    shared: &'a Shared,
    id: &'a str,
    redactor: Redactor,
}

impl Progress<'_> {
    fn log(&self, message: &str) {
        let line = self.redactor.redact(message);
        say!("deploy {}: {line}", self.id);
        self.shared.registry().log(self.id, &line);
    }

    fn state(&self, state: DeploymentState, message: &str) {
        self.shared
            .registry()
            .update(self.id, self.shared.now(), |s| s.state = state);
        self.log(&format!("{state}: {message}"));
    }

    fn update(&self, change: impl FnOnce(&mut easyenclave::deploy::DeploymentStatus)) {
        self.shared
            .registry()
            .update(self.id, self.shared.now(), change);
    }

    /// The final state, set in the same step that frees the one-deploy
    /// slot: whoever sees `running` or `failed` can deploy again at once.
    fn finish(&self, outcome: Result<(), String>) {
        let (state, reason) = match outcome {
            Ok(()) => (DeploymentState::Running, None),
            Err(reason) => (DeploymentState::Failed, Some(self.redactor.redact(&reason))),
        };
        let line = match &reason {
            Some(reason) => format!("{state}: {reason}"),
            None => format!("{state}: the workload runs"),
        };
        say!("deploy {}: {line}", self.id);
        let mut registry = self.shared.registry();
        registry.log(self.id, &line);
        registry.update(self.id, self.shared.now(), |s| {
            s.state = state;
            s.reason = reason;
        });
        registry.finish(self.id);
    }
}

/// Frees the one-deploy slot if the deploy thread ends by a panic.
struct Slot<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.registry().finish(self.id);
    }
}

/// Run the deploy, record the outcome and free the one-deploy slot.
pub(super) fn run(shared: &Shared, job: Job) {
    let id = job.id.clone();
    let _slot = Slot { shared, id: &id };
    let progress = Progress {
        shared,
        id: &id,
        redactor: Redactor::new(&job.env, Some(&job.token)),
    };
    progress.finish(deploy(shared, job, &progress));
}

fn deploy(shared: &Shared, job: Job, progress: &Progress<'_>) -> Result<(), String> {
    let Job {
        id,
        request,
        env,
        token,
        login,
    } = job;
    progress.log(&format!(
        "accepted from GitHub user {login}: {}, private env [{}], seal {}, port {}",
        source::describe(&request.bundle),
        env.names().collect::<Vec<_>>().join(", "),
        request.seal,
        request
            .port
            .map_or_else(|| "none".to_owned(), |p| p.to_string()),
    ));
    let github = shared
        .github(&token)
        .map_err(|e| format!("GitHub client: {e}"))?;

    progress.state(
        DeploymentState::Downloading,
        &format!("fetching {}", source::describe(&request.bundle)),
    );
    let max_zip = shared.settings.bundle_limits.max_zip_bytes;
    let fetched = source::fetch(request.bundle, &github, &shared.repo, max_zip)
        .map_err(|e| format!("downloading the bundle: {e}"))?;
    progress.log(&format!(
        "fetched a {}-byte zip from {}",
        fetched.zip.len(),
        fetched.source
    ));

    let new = measure(shared, progress, &id, fetched, env, request.port)?;
    let mut swap = Swap {
        shared,
        progress,
        previous: shared.registry().current().cloned(),
        stopped_previous: false,
    };
    let outcome = swap.start(&new.running, &new.images).and_then(|()| {
        progress.state(
            DeploymentState::Publishing,
            "sealing if asked, then publishing",
        );
        let sealed = seal_if_requested(shared, progress, request.seal)?;
        let allowlist = request
            .allowlist
            .as_ref()
            .ok_or("the request names no allowlist")?;
        let publisher = Publisher {
            github: &github,
            repo: &shared.repo,
            config: &shared.config,
            measured: &shared.measured,
            allowlist,
            clock: shared.settings.clock,
        };
        let notes = release_notes(&id, &login, &new.running.bundle, sealed);
        let published = publisher
            .publish(&notes)
            .map_err(|e| format!("publishing: {e}"))?;
        progress.update(|s| s.release_tag = Some(published.tag.clone()));
        progress.log(&format!(
            "published {ATTESTATION_ASSET} on release {}: {}",
            published.tag, published.asset_url
        ));
        Ok(())
    });
    match outcome {
        Ok(()) => {
            swap.commit(new.running);
            Ok(())
        }
        Err(reason) => {
            swap.roll_back(&new.running);
            Err(reason)
        }
    }
}

/// A bundle extracted, digested and measured: ready to start.
struct Measured {
    /// The deployment it becomes once started.
    running: Running,
    /// Its offline image archives, in load order.
    images: Vec<PathBuf>,
}

/// Extract the zip into a fresh work directory, check its compose project
/// against the workload policy, and extend its `bundle` event into RTMR3.
/// On failure the directory is gone, nothing ran and nothing was measured.
fn measure(
    shared: &Shared,
    progress: &Progress<'_>,
    id: &str,
    fetched: source::FetchedBundle,
    env: Arc<PrivateEnv>,
    port: Option<u16>,
) -> Result<Measured, String> {
    progress.state(DeploymentState::Measuring, "extracting and digesting");
    let dir = deployment_dir(shared, id)?;
    let bundle_dir = dir.join("bundle");
    let extracted = bundle::extract_zip(&fetched.zip, &bundle_dir, &shared.settings.bundle_limits)
        .and_then(|manifest| Ok((manifest.compose_file()?.to_owned(), manifest)));
    drop(fetched.zip);
    let (compose_file, manifest) = match extracted {
        Ok(found) => found,
        Err(e) => {
            remove_dir(progress, &dir);
            return Err(e.to_string());
        }
    };
    let project = Project {
        name: format!("ee-{id}"),
        compose_file: bundle_dir.join(&compose_file),
        env,
    };
    let images: Vec<PathBuf> = manifest
        .image_archives()
        .iter()
        .map(|path| bundle_dir.join(path))
        .collect();
    let policed = match shared
        .settings
        .docker
        .police(&project, &bundle_dir, &images)
    {
        Ok(policed) => policed,
        Err(e) => {
            remove_dir(progress, &dir);
            return Err(format!("{e}; nothing was started"));
        }
    };
    progress.log(&format!(
        "{} passed; images {}",
        easyenclave::workload_policy::describe(&policed.policy),
        if policed.images_pinned {
            "all carried in the bundle or pinned by digest"
        } else {
            "not all pinned: some are pulled by tag or built"
        }
    ));
    let event = BundleEvent {
        digest: manifest.digest(),
        repo: shared.config.repo.clone(),
        artifact_id: fetched.artifact_id,
        source: fetched.source,
        policy: policed.policy,
        images_pinned: policed.images_pinned,
    };
    if let Err(e) = shared.measured.record(Event::Bundle(event.clone())) {
        remove_dir(progress, &dir);
        return Err(match e {
            RecordError::Unavailable(why) => {
                format!("the bundle cannot be measured, so it is not run: {why}")
            }
            other => format!("measuring the bundle: {other}"),
        });
    }
    progress.update(|s| s.bundle_digest = Some(manifest.digest_hex()));
    progress.log(&format!(
        "bundle event extended into RTMR3: digest {}, {} files, compose file {compose_file}",
        manifest.digest_hex(),
        manifest.files().len()
    ));
    Ok(Measured {
        images,
        running: Running {
            id: id.to_owned(),
            project,
            port,
            bundle: event,
            dir,
        },
    })
}

/// Replacing the running deployment (if any) with a new one.
struct Swap<'a> {
    shared: &'a Shared,
    progress: &'a Progress<'a>,
    /// The deployment running when this one started.
    previous: Option<Running>,
    /// Whether `previous` was (asked to be) stopped.
    stopped_previous: bool,
}

impl Swap<'_> {
    /// Load the images, stop the previous deployment, start the new one and
    /// wait until it is ready.
    fn start(&mut self, new: &Running, images: &[PathBuf]) -> Result<(), String> {
        let (shared, progress) = (self.shared, self.progress);
        let docker = &shared.settings.docker;
        progress.state(
            DeploymentState::Starting,
            &format!("{} image archive(s) to load", images.len()),
        );
        for image in images {
            let loaded = docker.load(image).map_err(|e| e.to_string())?;
            progress.log(&format!("docker load {}: {loaded}", image.display()));
        }
        if let Some(previous) = &self.previous {
            // Stopped, not removed: it comes back if the new one fails. Both
            // at once would fight over their published ports.
            progress.log(&format!(
                "stopping the previous deployment {} (kept until this one runs)",
                previous.id
            ));
            self.stopped_previous = true;
            docker
                .stop(&previous.project)
                .map_err(|e| format!("stopping the previous deployment: {e}"))?;
        }
        progress.log(&format!(
            "docker compose up -d for project {}",
            new.project.name
        ));
        docker.up(&new.project).map_err(|e| e.to_string())?;
        let containers = workload::wait_until_ready(
            docker,
            &new.project,
            new.port,
            shared.settings.start_timeout,
            shared.settings.poll_interval,
        )
        .map_err(|why| format!("the workload did not come up: {why}"))?;
        shared.registry().set_containers(
            &new.id,
            containers.iter().map(workload::Container::status).collect(),
            Instant::now(),
        );
        progress.log(&format!("{} container(s) up", containers.len()));
        Ok(())
    }

    /// The new deployment runs: it becomes current, the previous one is removed.
    fn commit(self, new: Running) {
        let replaced = self.shared.registry().set_current(new, self.shared.now());
        let Some(previous) = replaced else { return };
        match self.shared.settings.docker.down(&previous.project) {
            Ok(()) => self.progress.log(&format!(
                "removed the previous deployment {} (project {})",
                previous.id, previous.project.name
            )),
            Err(e) => self.progress.log(&format!(
                "removing the previous deployment {} failed: {e}",
                previous.id
            )),
        }
        remove_dir(self.progress, &previous.dir);
    }

    /// The new deployment failed after its bundle event: take it down,
    /// bring the previous one back and make its bundle the last one
    /// measured again; without a previous one running, record that the new
    /// bundle stopped.
    fn roll_back(self, new: &Running) {
        let (shared, progress) = (self.shared, self.progress);
        let docker = &shared.settings.docker;
        // Harmless if `up` never ran; removes whatever it created if it did.
        match docker.down(&new.project) {
            Ok(()) => progress.log(&format!("removed project {}", new.project.name)),
            Err(e) => progress.log(&format!(
                "removing project {} failed: {e}",
                new.project.name
            )),
        }
        remove_dir(progress, &new.dir);
        let Some(previous) = &self.previous else {
            record_stopped(
                shared,
                progress,
                new,
                "the first deploy failed; nothing runs",
            );
            return;
        };
        if self.stopped_previous {
            if let Err(e) = docker.start(&previous.project) {
                progress.log(&format!(
                    "starting the previous deployment {} again failed: {e}",
                    previous.id
                ));
                let mut registry = shared.registry();
                registry.clear_current();
                registry.update(&previous.id, shared.now(), |s| {
                    s.state = DeploymentState::Failed;
                    s.reason = Some(format!(
                        "could not be started again after deployment {} failed",
                        new.id
                    ));
                });
                drop(registry);
                record_stopped(
                    shared,
                    progress,
                    new,
                    "the deploy failed and the previous deployment did not start again",
                );
                return;
            }
            progress.log(&format!(
                "the previous deployment {} runs again",
                previous.id
            ));
        }
        match shared
            .measured
            .record(Event::Bundle(previous.bundle.clone()))
        {
            Ok(_) => progress.log(&format!(
                "bundle event of {} extended into RTMR3 again: it is what runs",
                previous.id
            )),
            Err(e) => progress.log(&format!(
                "recording the bundle event of {} again failed: {e}",
                previous.id
            )),
        }
    }
}

/// Record that the workload of `stopped` (the newest bundle event) no longer
/// runs, so that verifiers see no bundle running rather than a stale one.
fn record_stopped(shared: &Shared, progress: &Progress<'_>, stopped: &Running, reason: &str) {
    let event = StoppedEvent {
        digest: stopped.bundle.digest,
        reason: reason.to_owned(),
    };
    match shared.measured.record(Event::Stopped(event)) {
        Ok(_) => progress.log(&format!(
            "stopped event for bundle {} extended into RTMR3: {reason}",
            hex::encode(stopped.bundle.digest)
        )),
        Err(e) => progress.log(&format!(
            "recording the stopped event of {} failed: {e}",
            stopped.id
        )),
    }
}

/// Seal unless already sealed or not asked; returns whether the TD is sealed.
fn seal_if_requested(
    shared: &Shared,
    progress: &Progress<'_>,
    requested: bool,
) -> Result<bool, String> {
    if shared.measured.log().is_sealed() {
        progress.log("the TD is already sealed");
        return Ok(true);
    }
    if !requested {
        progress.log("not sealing: the request says seal: false");
        return Ok(false);
    }
    let removed = seal::seal(&shared.settings.sealing).map_err(|e| e.to_string())?;
    if removed.is_empty() {
        return Err("sealing found nothing to remove or disable; no seal event recorded".into());
    }
    progress.log(&format!("sealed: {}", removed.join(", ")));
    shared
        .measured
        .record(Event::Seal(SealEvent { removed }))
        .map_err(|e| format!("recording the seal event: {e}"))?;
    progress.update(|s| s.sealed = true);
    progress.log("seal event extended into RTMR3");
    Ok(true)
}

/// A fresh directory for the deployment under the tmpfs work directory.
fn deployment_dir(shared: &Shared, id: &str) -> Result<PathBuf, String> {
    let work = shared.settings.root.path(WORK_DIR);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&work)
        .map_err(|e| format!("creating {}: {e}", work.display()))?;
    let dir = work.join(id);
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

fn remove_dir(progress: &Progress<'_>, dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            progress.log(&format!("removing {} failed: {e}", dir.display()));
        }
    }
}

/// The release description: what was deployed, by whom, and how to check it.
fn release_notes(id: &str, login: &str, bundle: &BundleEvent, sealed: bool) -> String {
    let origin = match bundle.artifact_id {
        Some(artifact) => format!("Actions artifact {artifact}"),
        None => "an inline bundle".to_owned(),
    };
    format!(
        "Deployment {id} by @{login}: bundle digest `{}` from {origin}; the TD is {}.\n\n\
         `{ATTESTATION_ASSET}` holds a TDX quote whose REPORTDATA binds this repo, the \
         endpoint, this tag, the timestamp and the RTMR3 event log (config, bundle{} events). \
         Check it with `ee verify`.",
        hex::encode(bundle.digest),
        if sealed { "sealed" } else { "not sealed" },
        if sealed { ", seal" } else { "" },
    )
}
