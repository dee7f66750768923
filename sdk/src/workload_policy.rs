//! The workload policy: what a deployed compose project may ask of the TD.
//!
//! A container that is privileged, shares a host namespace, sees a device,
//! bind-mounts the TD's filesystem or reaches the docker socket is root in
//! the TD: it can extend RTMR3 through sysfs, ask configfs-tsm for quotes
//! over any REPORTDATA, and read the agent's memory. Sealing means nothing
//! if the next bundle can do that, so `ee-init` renders every compose
//! project (`docker compose config --format json`, which applies
//! interpolation, `extends`, `include` and profiles exactly as `up` will)
//! and refuses it unless it passes [`WorkloadPolicy::check`]. The same code
//! is here, in the SDK, so verifiers and tests apply the rules the agent did.
//!
//! **Format** (version [`WORKLOAD_POLICY_VERSION`]): the rules are data
//! ([`WorkloadPolicy::v1`]); their digest
//!
//! ```text
//! digest = SHA-256( b"easyenclave/workload-policy/v1\0" || JCS(policy) )
//! ```
//!
//! is recorded in every `bundle` RTMR3 event (`BundleEvent::policy`), so a
//! verifier knows which rules the TD enforced. `sdk/testdata/workload-policy-v1.json`
//! holds the policy and its digest, written by the independent
//! `sdk/testdata/generate.py`.
//!
//! **Rules, version 1** (each refusal names the service, the field, what was
//! found and what was expected):
//!
//! - `privileged: true` and `use_api_socket: true` (compose 2.38+ mounts the
//!   docker socket) are refused, on the service and on its `post_start` /
//!   `pre_stop` hooks;
//! - `network_mode`, `pid`, `ipc`, `uts`, `userns_mode`, `cgroup`: `host` is
//!   refused, and so is `container:NAME` (a container outside the project;
//!   the agent's own namespaces are the host's). `service:NAME` joins
//!   another service of the same project and is allowed;
//! - `devices`, `device_cgroup_rules`, `gpus`, `cgroup_parent`, `runtime`
//!   are refused when present;
//! - `cap_add` may only name capabilities in docker's default set (adding
//!   one back after `cap_drop` grants nothing docker would not give anyway):
//!   see [`WorkloadPolicy::cap_add_allowed`]; `ALL` is refused;
//! - `security_opt` may only turn `no-new-privileges` on: seccomp, AppArmor
//!   and SELinux profiles (`unconfined` or custom) and `systempaths` are
//!   refused, as is `no-new-privileges:false`;
//! - `sysctls`: only the network-namespaced `net.*` keys (they change the
//!   container's own network stack); host-level keys (`kernel.*`, `vm.*`,
//!   `fs.*`, and the IPC-namespaced `kernel.shm*` too, for simplicity) are refused;
//! - volumes: `volume` and `tmpfs` are fine, except that a top-level volume
//!   with `driver_opts` or a non-`local` driver (a bind mount in disguise)
//!   is refused; `bind` only for a source inside the bundle directory; any
//!   other type is refused. A source that is, or contains, the docker socket
//!   (`/run/docker.sock`, `/var/run/docker.sock`) is named as such;
//! - `volumes_from` may only name services (`service:NAME` or a bare name),
//!   not `container:NAME`;
//! - top-level `secrets`/`configs` with a `file` outside the bundle directory
//!   (they are bind mounts) are refused;
//! - top-level networks with the `host`, `macvlan` or `ipvlan` driver, or an
//!   external network named `host`, are refused;
//! - `build` with `privileged`, `network: host` or `entitlements` is refused.
//!
//! **Private env** ([`check_private_env_confined`]): private values are not
//! measured, so they must not change what runs. The agent renders the
//! project twice, without and with the private values; the two renders
//! must be equal except for values under `services.*.environment`.
//!
//! **Pinned images** ([`images_pinned`]): whether every service's image is
//! either pinned by `@sha256:` digest or carried in the bundle as an
//! offline archive, so the bundle digest (with the policy) fixes every
//! byte that runs.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::{self, CanonicalError};

/// The workload policy format version this build enforces.
pub const WORKLOAD_POLICY_VERSION: u32 = 1;
/// Domain-separation prefix of the policy digest.
pub const POLICY_DIGEST_TAG: &[u8] = b"easyenclave/workload-policy/v1\0";

/// The rules, as data. [`WorkloadPolicy::v1`] is the policy `ee-init` enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadPolicy {
    /// [`WORKLOAD_POLICY_VERSION`].
    pub version: u32,
    /// Service fields refused when `true`.
    pub refused_flags: Vec<String>,
    /// Service fields naming a namespace or cgroup mode: `host` and
    /// `container:NAME` are refused, `service:NAME` and private modes allowed.
    pub namespace_fields: Vec<String>,
    /// Service fields refused whenever present (and not empty).
    pub refused_fields: Vec<String>,
    /// Capabilities `cap_add` may name (upper case, without `CAP_`).
    pub cap_add_allowed: Vec<String>,
    /// The only `security_opt` entries accepted.
    pub security_opt_allowed: Vec<String>,
    /// Prefixes of the `sysctls` keys accepted.
    pub sysctl_prefixes_allowed: Vec<String>,
    /// Volume types accepted (`bind` only inside the bundle directory).
    pub volume_types_allowed: Vec<String>,
    /// Paths of the docker socket: a bind of one of them, or of a directory
    /// above one, is refused as "the docker socket".
    pub docker_socket_paths: Vec<String>,
    /// Network drivers refused for top-level networks.
    pub network_drivers_refused: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl WorkloadPolicy {
    /// Version 1 of the rules (see the module documentation for why each).
    pub fn v1() -> WorkloadPolicy {
        WorkloadPolicy {
            version: WORKLOAD_POLICY_VERSION,
            refused_flags: strings(&["privileged", "use_api_socket"]),
            namespace_fields: strings(&[
                "cgroup",
                "ipc",
                "network_mode",
                "pid",
                "userns_mode",
                "uts",
            ]),
            refused_fields: strings(&[
                "cgroup_parent",
                "device_cgroup_rules",
                "devices",
                "gpus",
                "runtime",
            ]),
            // Docker's default capability set (moby oci/caps/defaults.go).
            cap_add_allowed: strings(&[
                "AUDIT_WRITE",
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "MKNOD",
                "NET_BIND_SERVICE",
                "NET_RAW",
                "SETFCAP",
                "SETGID",
                "SETPCAP",
                "SETUID",
                "SYS_CHROOT",
            ]),
            security_opt_allowed: strings(&[
                "no-new-privileges",
                "no-new-privileges:true",
                "no-new-privileges=true",
            ]),
            sysctl_prefixes_allowed: strings(&["net."]),
            volume_types_allowed: strings(&["bind", "tmpfs", "volume"]),
            docker_socket_paths: strings(&["/run/docker.sock", "/var/run/docker.sock"]),
            network_drivers_refused: strings(&["host", "ipvlan", "macvlan"]),
        }
    }

    /// The policy's canonical JSON (RFC 8785): the digest's input.
    pub fn canonical_json(&self) -> Result<String, CanonicalError> {
        canonical::to_string(self)
    }

    /// SHA-256 of [`POLICY_DIGEST_TAG`] followed by the canonical JSON.
    pub fn digest(&self) -> Result<[u8; 32], CanonicalError> {
        let mut hasher = Sha256::new();
        hasher.update(POLICY_DIGEST_TAG);
        hasher.update(self.canonical_json()?.as_bytes());
        Ok(hasher.finalize().into())
    }

    /// Check a rendered project (the JSON of `docker compose config --format
    /// json`) whose bundle was extracted to `bundle_dir` (absolute). Every
    /// violation is reported, not only the first.
    pub fn check(&self, rendered: &Value, bundle_dir: &Path) -> Result<(), Violations> {
        let mut found = Vec::new();
        let Some(project) = rendered.as_object() else {
            return Err(Violations(vec![Violation::new(
                "project",
                "(the rendered project)",
                kind(rendered),
                "a JSON object (docker compose config --format json)",
            )]));
        };
        let bundle_dir = normalize(bundle_dir);
        match project.get("services") {
            Some(Value::Object(services)) => {
                for (name, service) in services {
                    self.check_service(name, service, &bundle_dir, &mut found);
                }
            }
            None => {}
            Some(other) => found.push(Violation::new(
                "project",
                "services",
                kind(other),
                "an object of services",
            )),
        }
        self.check_top_level(project, &bundle_dir, &mut found);
        if found.is_empty() {
            Ok(())
        } else {
            Err(Violations(found))
        }
    }

    fn check_service(
        &self,
        name: &str,
        service: &Value,
        bundle_dir: &Path,
        out: &mut Vec<Violation>,
    ) {
        let at = format!("service {name:?}");
        let Some(service) = service.as_object() else {
            out.push(Violation::new(
                &at,
                "(definition)",
                kind(service),
                "an object",
            ));
            return;
        };
        for flag in &self.refused_flags {
            if let Some(value) = service.get(flag) {
                if truthy(value) {
                    out.push(Violation::new(&at, flag, &render(value), "false or absent"));
                }
            }
        }
        // Lifecycle hooks (compose 2.30+) run commands in the container and
        // may ask for privileges of their own: the same flags apply to them.
        for hooks in ["post_start", "pre_stop"] {
            let Some(list) = service.get(hooks) else {
                continue;
            };
            for (i, hook) in items(list).iter().enumerate() {
                for flag in &self.refused_flags {
                    if let Some(value) = hook.get(flag) {
                        if truthy(value) {
                            out.push(Violation::new(
                                &at,
                                &format!("{hooks}[{i}].{flag}"),
                                &render(value),
                                "false or absent",
                            ));
                        }
                    }
                }
            }
        }
        for field in &self.namespace_fields {
            let Some(value) = service.get(field) else {
                continue;
            };
            let mode = value.as_str().unwrap_or_default();
            if !value.is_string() {
                out.push(Violation::new(&at, field, kind(value), "a string"));
            } else if mode.eq_ignore_ascii_case("host") || mode.starts_with("container:") {
                out.push(Violation::new(
                    &at,
                    field,
                    &render(value),
                    "a private mode or service:NAME (not host, not container:NAME)",
                ));
            }
        }
        for field in &self.refused_fields {
            if let Some(value) = service.get(field) {
                if !is_empty(value) {
                    out.push(Violation::new(&at, field, &render(value), "absent"));
                }
            }
        }
        if let Some(caps) = service.get("cap_add") {
            for (i, cap) in items(caps).iter().enumerate() {
                let normal = cap
                    .as_str()
                    .map(|c| c.trim().to_ascii_uppercase())
                    .map(|c| c.strip_prefix("CAP_").map(str::to_owned).unwrap_or(c));
                if !normal.is_some_and(|c| self.cap_add_allowed.contains(&c)) {
                    out.push(Violation::new(
                        &at,
                        &format!("cap_add[{i}]"),
                        &render(cap),
                        &format!("one of {}", self.cap_add_allowed.join(", ")),
                    ));
                }
            }
        }
        if let Some(opts) = service.get("security_opt") {
            for (i, opt) in items(opts).iter().enumerate() {
                let ok = opt
                    .as_str()
                    .is_some_and(|o| self.security_opt_allowed.iter().any(|a| a == o.trim()));
                if !ok {
                    out.push(Violation::new(
                        &at,
                        &format!("security_opt[{i}]"),
                        &render(opt),
                        &format!("only {}", self.security_opt_allowed.join(" or ")),
                    ));
                }
            }
        }
        if let Some(sysctls) = service.get("sysctls") {
            let keys: Vec<String> = match sysctls {
                Value::Object(map) => map.keys().cloned().collect(),
                other => items(other)
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .unwrap_or_default()
                            .split('=')
                            .next()
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect(),
            };
            for key in keys {
                if !self
                    .sysctl_prefixes_allowed
                    .iter()
                    .any(|p| key.trim().starts_with(p.as_str()))
                {
                    out.push(Violation::new(
                        &at,
                        &format!("sysctls.{key}"),
                        &format!("{key:?} (a host-level sysctl)"),
                        &format!(
                            "only keys starting with {}",
                            self.sysctl_prefixes_allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(volumes) = service.get("volumes") {
            for (i, volume) in items(volumes).iter().enumerate() {
                self.check_volume(&at, i, volume, bundle_dir, out);
            }
        }
        if let Some(from) = service.get("volumes_from") {
            for (i, source) in items(from).iter().enumerate() {
                let text = source.as_str().unwrap_or_default();
                if !source.is_string() || text.starts_with("container:") {
                    out.push(Violation::new(
                        &at,
                        &format!("volumes_from[{i}]"),
                        &render(source),
                        "a service of this project (NAME or service:NAME)",
                    ));
                }
            }
        }
        if let Some(Value::Object(build)) = service.get("build") {
            if build.get("privileged").is_some_and(truthy) {
                out.push(Violation::new(
                    &at,
                    "build.privileged",
                    "true",
                    "false or absent",
                ));
            }
            if let Some(network) = build.get("network").and_then(Value::as_str) {
                if network.eq_ignore_ascii_case("host") {
                    out.push(Violation::new(&at, "build.network", "\"host\"", "not host"));
                }
            }
            if let Some(entitlements) = build.get("entitlements") {
                if !is_empty(entitlements) {
                    out.push(Violation::new(
                        &at,
                        "build.entitlements",
                        &render(entitlements),
                        "absent",
                    ));
                }
            }
        }
    }

    fn check_volume(
        &self,
        at: &str,
        i: usize,
        volume: &Value,
        bundle_dir: &Path,
        out: &mut Vec<Violation>,
    ) {
        let field = format!("volumes[{i}]");
        let Some(volume) = volume.as_object() else {
            // compose config always renders the long syntax.
            out.push(Violation::new(
                at,
                &field,
                &render(volume),
                "a rendered (long syntax) volume",
            ));
            return;
        };
        let kind_of = volume
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self.volume_types_allowed.iter().any(|t| t == kind_of) {
            out.push(Violation::new(
                at,
                &format!("{field}.type"),
                &format!("{kind_of:?}"),
                &format!("one of {}", self.volume_types_allowed.join(", ")),
            ));
            return;
        }
        if kind_of != "bind" {
            return;
        }
        let source = volume
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(why) = self.bind_problem(source, bundle_dir) {
            out.push(Violation::new(
                at,
                &format!("{field}.source"),
                &format!("bind mount of {source:?} ({why})"),
                &format!(
                    "a path inside the bundle directory {}, a named volume or tmpfs",
                    bundle_dir.display()
                ),
            ));
        }
    }

    /// Why binding `source` is refused, if it is.
    fn bind_problem(&self, source: &str, bundle_dir: &Path) -> Option<String> {
        let path = Path::new(source);
        if !path.is_absolute() {
            return Some("not an absolute path".to_owned());
        }
        let path = normalize(path);
        if let Some(socket) = self
            .docker_socket_paths
            .iter()
            .find(|socket| Path::new(socket.as_str()).starts_with(&path))
        {
            if Path::new(socket.as_str()) == path {
                return Some(format!("the docker socket {socket}"));
            }
            return Some(format!(
                "outside the bundle directory, and it holds the docker socket {socket}"
            ));
        }
        if path.starts_with(bundle_dir) {
            return None;
        }
        Some("outside the bundle directory".to_owned())
    }

    fn check_top_level(
        &self,
        project: &Map<String, Value>,
        bundle_dir: &Path,
        out: &mut Vec<Violation>,
    ) {
        if let Some(Value::Object(volumes)) = project.get("volumes") {
            for (name, volume) in volumes {
                let at = format!("volume {name:?}");
                if let Some(opts) = volume.get("driver_opts") {
                    if !is_empty(opts) {
                        out.push(Violation::new(
                            &at,
                            "driver_opts",
                            &render(opts),
                            "absent (driver options can bind host paths)",
                        ));
                    }
                }
                if let Some(driver) = volume.get("driver").and_then(Value::as_str) {
                    if driver != "local" {
                        out.push(Violation::new(
                            &at,
                            "driver",
                            &format!("{driver:?}"),
                            "local or absent",
                        ));
                    }
                }
            }
        }
        for section in ["secrets", "configs"] {
            let Some(Value::Object(entries)) = project.get(section) else {
                continue;
            };
            for (name, entry) in entries {
                let Some(file) = entry.get("file").and_then(Value::as_str) else {
                    continue;
                };
                if let Some(why) = self.bind_problem(file, bundle_dir) {
                    out.push(Violation::new(
                        &format!("{} {name:?}", section.trim_end_matches('s')),
                        "file",
                        &format!("{file:?} ({why})"),
                        &format!(
                            "a file inside the bundle directory {}",
                            bundle_dir.display()
                        ),
                    ));
                }
            }
        }
        if let Some(Value::Object(networks)) = project.get("networks") {
            for (name, network) in networks {
                let at = format!("network {name:?}");
                if let Some(driver) = network.get("driver").and_then(Value::as_str) {
                    if self.network_drivers_refused.iter().any(|d| d == driver) {
                        out.push(Violation::new(
                            &at,
                            "driver",
                            &format!("{driver:?}"),
                            &format!("not {}", self.network_drivers_refused.join(", ")),
                        ));
                    }
                }
                let external = network.get("external").is_some_and(truthy);
                let real_name = network.get("name").and_then(Value::as_str).unwrap_or(name);
                if external && real_name == "host" {
                    out.push(Violation::new(
                        &at,
                        "name",
                        "\"host\" (the host network)",
                        "a project or bridge network",
                    ));
                }
            }
        }
    }
}

/// The version of the policy whose digest is `digest`, if this build knows it.
pub fn known_version(digest: &[u8; 32]) -> Option<u32> {
    let v1 = WorkloadPolicy::v1().digest().ok()?;
    (&v1 == digest).then_some(WORKLOAD_POLICY_VERSION)
}

/// How a verifier names the policy a bundle event records.
pub fn describe(digest: &[u8; 32]) -> String {
    match known_version(digest) {
        Some(version) => format!("workload policy v{version} ({})", hex::encode(digest)),
        None => format!("an unknown workload policy ({})", hex::encode(digest)),
    }
}

/// One refused setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where: `service "web"`, `volume "data"`, `network "n"`, `project`.
    pub at: String,
    /// The field, e.g. `privileged`, `volumes[0].source`.
    pub field: String,
    /// What was found (never a private value: it comes from the public render).
    pub found: String,
    /// What the policy expects.
    pub expected: String,
}

impl Violation {
    fn new(at: &str, field: &str, found: &str, expected: &str) -> Violation {
        Violation {
            at: at.to_owned(),
            field: field.to_owned(),
            found: found.to_owned(),
            expected: expected.to_owned(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: found {}, expected {}",
            self.at, self.field, self.found, self.expected
        )
    }
}

/// Every refused setting of a project.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workload policy v{WORKLOAD_POLICY_VERSION} refuses the compose project: {}", join(.0))]
pub struct Violations(pub Vec<Violation>);

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Check that private values changed nothing but environment values:
/// `public` is the project rendered without the private env, `private` the
/// same project rendered with it. Differences are reported by path only;
/// the values may be private.
pub fn check_private_env_confined(public: &Value, private: &Value) -> Result<(), Violation> {
    let mut path = Vec::new();
    match first_difference(public, private, &mut path) {
        None => Ok(()),
        Some(at) => {
            let service = match at.as_slice() {
                [first, name, ..] if first == "services" => format!("service {name:?}"),
                _ => "project".to_owned(),
            };
            Err(Violation::new(
                &service,
                &at.join("."),
                "a value that changes with the private env (private values are not measured)",
                "private values only as services.*.environment values; ${VAR} elsewhere \
                 must come from the bundle's files",
            ))
        }
    }
}

fn first_difference(a: &Value, b: &Value, path: &mut Vec<String>) -> Option<Vec<String>> {
    // Inside services.NAME.environment, values may differ; keys may not.
    let in_environment =
        matches!(path.as_slice(), [s, _, e] if s == "services" && e == "environment");
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                path.push(key.clone());
                let found = match (x.get(key), y.get(key)) {
                    (Some(_), Some(_)) if in_environment => None,
                    (Some(u), Some(v)) => first_difference(u, v, path),
                    _ => Some(path.clone()),
                };
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(path.clone());
            }
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                path.push(i.to_string());
                let found = first_difference(u, v, path);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (u, v) if u == v => None,
        _ => Some(path.clone()),
    }
}

/// True when every service's image is pinned by `@sha256:` digest or is one
/// of `carried` (the tags of the bundle's image archives), with a pull
/// policy that cannot replace it from a registry, and no service builds.
pub fn images_pinned(rendered: &Value, carried: &[String]) -> bool {
    let carried: Vec<String> = carried.iter().map(|t| normalize_image(t)).collect();
    let Some(services) = rendered.get("services").and_then(Value::as_object) else {
        return true;
    };
    services.values().all(|service| {
        if service.get("build").is_some() {
            return false;
        }
        let Some(image) = service.get("image").and_then(Value::as_str) else {
            return false;
        };
        if digest_pinned(image) {
            return true;
        }
        let pull = service
            .get("pull_policy")
            .and_then(Value::as_str)
            .unwrap_or("missing");
        matches!(pull, "missing" | "never" | "if_not_present")
            && carried.contains(&normalize_image(image))
    })
}

fn digest_pinned(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(name, hex)| {
        !name.is_empty() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// `app` → `app:latest`, `docker.io/library/app:1` → `app:1`.
fn normalize_image(image: &str) -> String {
    let image = image.trim();
    let image = image.strip_prefix("docker.io/").unwrap_or(image);
    let image = image.strip_prefix("library/").unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// The image tags a `docker save` archive holds (`RepoTags` of its
/// top-level `manifest.json`). Only the tar headers are read; the layers are
/// skipped by seeking (docker 25+ writes `manifest.json` after the blobs).
/// `Err` names what is wrong with the archive.
pub fn docker_archive_tags(mut archive: impl Read + Seek) -> Result<Vec<String>, String> {
    const BLOCK: usize = 512;
    const MAX_MANIFEST: u64 = 1 << 20;
    let mut header = [0u8; BLOCK];
    loop {
        if let Err(e) = archive.read_exact(&mut header) {
            return Err(format!(
                "no manifest.json before the end of the archive ({e})"
            ));
        }
        if header.iter().all(|&b| b == 0) {
            return Err("no manifest.json in the archive".to_owned());
        }
        let name_end = header.iter().take(100).position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(header.get(..name_end).unwrap_or_default()).into_owned();
        let size_field = header.get(124..136).unwrap_or_default();
        let size_text: String = size_field
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as char)
            .collect();
        let size = u64::from_str_radix(size_text.trim(), 8)
            .map_err(|_| format!("tar entry {name:?}: size field {size_text:?} is not octal"))?;
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if name.trim_start_matches("./") == "manifest.json" {
            if size > MAX_MANIFEST {
                return Err(format!(
                    "manifest.json is {size} bytes, over {MAX_MANIFEST}"
                ));
            }
            let mut bytes = Vec::new();
            (&mut archive)
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading manifest.json: {e}"))?;
            #[derive(serde::Deserialize)]
            struct Entry {
                #[serde(rename = "RepoTags", default)]
                repo_tags: Option<Vec<String>>,
            }
            let entries: Vec<Entry> =
                serde_json::from_slice(&bytes).map_err(|e| format!("manifest.json: {e}"))?;
            return Ok(entries
                .into_iter()
                .flat_map(|e| e.repo_tags.unwrap_or_default())
                .collect());
        }
        let skip = i64::try_from(padded)
            .map_err(|_| format!("tar entry {name:?}: size {size} is too large"))?;
        archive
            .seek(SeekFrom::Current(skip))
            .map_err(|e| format!("skipping tar entry {name:?}: {e}"))?;
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1"),
        Value::Number(n) => n.as_i64() != Some(0),
        Value::Null => false,
        _ => true,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

fn items(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn kind(value: &Value) -> &'static str {
    crate::canonical::json_kind(value)
}

/// A public rendered value, shortened for a message.
fn render(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 200 {
        let cut: String = text.chars().take(200).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BUNDLE: &str = "/run/ee/deploy/d1/bundle";

    fn service(extra: Value) -> Value {
        let mut web = json!({"image": "app:latest", "environment": {"API_KEY": null}});
        if let (Some(web), Value::Object(extra)) = (web.as_object_mut(), extra) {
            web.extend(extra);
        }
        json!({"name": "ee-d1", "services": {"web": web}})
    }

    fn violations(rendered: &Value) -> Vec<String> {
        match WorkloadPolicy::v1().check(rendered, Path::new(BUNDLE)) {
            Ok(()) => Vec::new(),
            Err(Violations(found)) => found
                .iter()
                .map(|v| format!("{} {}", v.at, v.field))
                .collect(),
        }
    }

    fn refused(extra: Value, at_field: &str) {
        let rendered = service(extra.clone());
        let found = violations(&rendered);
        assert_eq!(found, [format!("service \"web\" {at_field}")], "{extra}");
    }

    #[test]
    fn a_plain_project_passes() {
        let rendered = service(json!({
            "ports": [{"target": 8080, "published": "8080"}],
            "cap_add": ["NET_BIND_SERVICE", "cap_chown"],
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "sysctls": {"net.core.somaxconn": "1024"},
            "network_mode": "service:db",
            "pid": "service:db",
            "ipc": "private",
            "cgroup": "private",
            "volumes": [
                {"type": "bind", "source": format!("{BUNDLE}/config"), "target": "/etc/app"},
                {"type": "bind", "source": BUNDLE, "target": "/bundle"},
                {"type": "volume", "source": "data", "target": "/data"},
                {"type": "tmpfs", "target": "/tmp"}
            ],
            "volumes_from": ["db", "service:db"],
            "privileged": false
        }));
        assert_eq!(violations(&rendered), Vec::<String>::new());
        let mut with_top = rendered.clone();
        with_top["volumes"] = json!({"data": {"name": "ee-d1_data"}});
        with_top["networks"] = json!({"default": {"name": "ee-d1_default"}});
        with_top["secrets"] = json!({"key": {"file": format!("{BUNDLE}/key.txt")}});
        assert_eq!(violations(&with_top), Vec::<String>::new());
    }

    #[test]
    fn every_service_rule_refuses_naming_the_field() {
        refused(json!({"privileged": true}), "privileged");
        refused(json!({"use_api_socket": true}), "use_api_socket");
        refused(
            json!({"post_start": [{"command": "id"}, {"command": "sh", "privileged": true}]}),
            "post_start[1].privileged",
        );
        refused(
            json!({"pre_stop": [{"command": "x", "privileged": "true"}]}),
            "pre_stop[0].privileged",
        );
        for field in ["network_mode", "pid", "ipc", "uts", "userns_mode", "cgroup"] {
            refused(json!({ field: "host" }), field);
        }
        refused(json!({"network_mode": "container:agent"}), "network_mode");
        refused(json!({"pid": "container:other"}), "pid");
        refused(
            json!({"devices": [{"source": "/dev/kmsg", "target": "/dev/kmsg", "permissions": "rwm"}]}),
            "devices",
        );
        refused(
            json!({"device_cgroup_rules": ["c 1:3 mr"]}),
            "device_cgroup_rules",
        );
        refused(json!({"gpus": "all"}), "gpus");
        refused(json!({"cgroup_parent": "/"}), "cgroup_parent");
        refused(json!({"runtime": "runc-unsafe"}), "runtime");
        refused(
            json!({"cap_add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}),
            "cap_add[1]",
        );
        refused(json!({"cap_add": ["ALL"]}), "cap_add[0]");
        refused(json!({"cap_add": ["CAP_SYS_PTRACE"]}), "cap_add[0]");
        for opt in [
            "seccomp=unconfined",
            "seccomp:unconfined",
            "apparmor=unconfined",
            "apparmor:unconfined",
            "no-new-privileges=false",
            "no-new-privileges:false",
            "label=disable",
            "systempaths=unconfined",
            "seccomp=/bundle/profile.json",
        ] {
            refused(json!({"security_opt": [opt]}), "security_opt[0]");
        }
        refused(
            json!({"sysctls": {"kernel.shm_rmid_forced": "1"}}),
            "sysctls.kernel.shm_rmid_forced",
        );
        refused(
            json!({"sysctls": {"vm.overcommit_memory": "1"}}),
            "sysctls.vm.overcommit_memory",
        );
        refused(
            json!({"volumes_from": ["container:agent"]}),
            "volumes_from[0]",
        );
        refused(
            json!({"build": {"context": ".", "privileged": true}}),
            "build.privileged",
        );
        refused(
            json!({"build": {"context": ".", "network": "host"}}),
            "build.network",
        );
        refused(
            json!({"build": {"context": ".", "entitlements": ["security.insecure"]}}),
            "build.entitlements",
        );
    }

    #[test]
    fn bind_mounts_outside_the_bundle_and_the_docker_socket_are_refused() {
        let bind =
            |source: &str| json!({"volumes": [{"type": "bind", "source": source, "target": "/x"}]});
        for source in [
            "/",
            "/sys",
            "/proc",
            "/run/ee/deploy/d1",
            "/run/ee/deploy/d1/bundle/../../d2",
            "/run/ee/deploy/d1/bundle2",
            "relative",
        ] {
            refused(bind(source), "volumes[0].source");
        }
        for socket in [
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/var/run",
            "/run",
            "/",
        ] {
            let rendered = service(bind(socket));
            let err = WorkloadPolicy::v1()
                .check(&rendered, Path::new(BUNDLE))
                .unwrap_err();
            assert!(
                err.to_string().contains("the docker socket"),
                "{socket}: {err}"
            );
        }
        let err = WorkloadPolicy::v1()
            .check(&service(bind("/")), Path::new(BUNDLE))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload policy v1 refuses the compose project: service \"web\": volumes[0].source: \
             found bind mount of \"/\" (outside the bundle directory, and it holds the docker socket \
             /run/docker.sock), expected a path inside \
             the bundle directory /run/ee/deploy/d1/bundle, a named volume or tmpfs"
        );
        refused(
            json!({"volumes": [{"type": "npipe", "source": "x", "target": "/x"}]}),
            "volumes[0].type",
        );
        refused(json!({"volumes": ["/:/host"]}), "volumes[0]");
    }

    #[test]
    fn top_level_disguised_binds_and_host_networks_are_refused() {
        let mut rendered = service(json!({}));
        rendered["volumes"] = json!({"root": {"driver_opts": {"type": "none", "o": "bind", "device": "/"}},
                                      "nfs": {"driver": "nfs-plugin"}});
        rendered["secrets"] = json!({"shadow": {"file": "/etc/shadow"}});
        rendered["configs"] = json!({"sock": {"file": "/var/run/docker.sock"}});
        rendered["networks"] =
            json!({"mac": {"driver": "macvlan"}, "h": {"external": true, "name": "host"}});
        assert_eq!(
            violations(&rendered),
            [
                "volume \"root\" driver_opts",
                "volume \"nfs\" driver",
                "secret \"shadow\" file",
                "config \"sock\" file",
                "network \"mac\" driver",
                "network \"h\" name",
            ]
        );
    }

    #[test]
    fn all_violations_are_reported_and_bad_shapes_named() {
        let rendered = service(json!({"privileged": true, "network_mode": "host"}));
        assert_eq!(
            violations(&rendered),
            ["service \"web\" privileged", "service \"web\" network_mode"]
        );
        assert_eq!(violations(&json!([])), ["project (the rendered project)"]);
        assert_eq!(
            violations(&json!({"services": {"web": 1}})),
            ["service \"web\" (definition)"]
        );
    }

    #[test]
    fn private_values_may_only_change_environment_values() {
        let public = service(json!({}));
        let mut private = public.clone();
        private["services"]["web"]["environment"]["API_KEY"] = json!("secret");
        assert_eq!(check_private_env_confined(&public, &private), Ok(()));

        let mut image = public.clone();
        image["services"]["web"]["image"] = json!("evil:1");
        let err = check_private_env_confined(&public, &image).unwrap_err();
        assert_eq!(
            (err.at.as_str(), err.field.as_str()),
            ("service \"web\"", "services.web.image")
        );
        assert!(
            !err.to_string().contains("evil"),
            "values are not echoed: {err}"
        );

        let mut extra_key = public.clone();
        extra_key["services"]["web"]["environment"]["LD_PRELOAD"] = json!("x");
        let err = check_private_env_confined(&public, &extra_key).unwrap_err();
        assert_eq!(err.field, "services.web.environment.LD_PRELOAD");

        let mut added = public.clone();
        added["services"]["web"]["privileged"] = json!(true);
        assert_eq!(
            check_private_env_confined(&public, &added)
                .unwrap_err()
                .field,
            "services.web.privileged"
        );

        let mut volume = public.clone();
        volume["volumes"] = json!({"x": {}});
        assert_eq!(
            check_private_env_confined(&public, &volume).unwrap_err().at,
            "project"
        );
    }

    #[test]
    fn pinned_means_digest_or_carried() {
        let digest = format!("registry.example/app@sha256:{}", "ab".repeat(32));
        let project = |image: &str, extra: Value| {
            let mut s = json!({"image": image});
            if let (Some(s), Value::Object(extra)) = (s.as_object_mut(), extra) {
                s.extend(extra);
            }
            json!({"services": {"web": s}})
        };
        let carried = vec![
            "app:latest".to_owned(),
            "docker.io/library/db:16".to_owned(),
        ];
        assert!(images_pinned(&project(&digest, json!({})), &[]));
        assert!(images_pinned(&project("app", json!({})), &carried));
        assert!(images_pinned(
            &project("docker.io/library/app:latest", json!({})),
            &carried
        ));
        assert!(images_pinned(
            &project("db:16", json!({"pull_policy": "never"})),
            &carried
        ));
        assert!(!images_pinned(
            &project("db:16", json!({"pull_policy": "always"})),
            &carried
        ));
        assert!(!images_pinned(&project("app:2", json!({})), &carried));
        assert!(!images_pinned(
            &project("registry.example/app@sha256:abc", json!({})),
            &carried
        ));
        assert!(!images_pinned(
            &project(&digest, json!({"build": {"context": "."}})),
            &carried
        ));
        assert!(!images_pinned(
            &json!({"services": {"web": {"build": {"context": "."}}}}),
            &carried
        ));
    }

    fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, content) in entries {
            let mut header = [0u8; 512];
            header[..name.len()].copy_from_slice(name.as_bytes());
            let size = format!("{:011o}\0", content.len());
            header[124..136].copy_from_slice(size.as_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(content);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn archive_tags_come_from_manifest_json() {
        let archive = tar(&[
            ("blobs/sha256/aa", &[1u8; 700]),
            ("manifest.json", br#"[{"Config":"c","RepoTags":["app:latest","app:1"],"Layers":[]},{"RepoTags":null}]"#),
        ]);
        assert_eq!(
            docker_archive_tags(std::io::Cursor::new(&archive)).unwrap(),
            ["app:latest", "app:1"]
        );
        let none = tar(&[("index.json", b"{}")]);
        assert_eq!(
            docker_archive_tags(std::io::Cursor::new(&none)).unwrap_err(),
            "no manifest.json in the archive"
        );
        assert!(docker_archive_tags(std::io::Cursor::new(b"docker save bytes")).is_err());
        // A size past the end: the next header read fails, no panic.
        let mut cut = tar(&[("blobs/x", &[1u8; 600])]);
        cut.truncate(700);
        assert!(docker_archive_tags(std::io::Cursor::new(&cut)).is_err());
    }

    #[test]
    fn the_digest_is_tagged_sha256_of_the_canonical_rules() {
        let policy = WorkloadPolicy::v1();
        let mut input = POLICY_DIGEST_TAG.to_vec();
        input.extend_from_slice(policy.canonical_json().unwrap().as_bytes());
        assert_eq!(
            policy.digest().unwrap(),
            <[u8; 32]>::from(Sha256::digest(&input))
        );
        let mut other = policy.clone();
        other.cap_add_allowed.push("SYS_ADMIN".into());
        assert_ne!(other.digest().unwrap(), policy.digest().unwrap());
    }
}
