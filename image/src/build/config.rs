//! The image configuration (`image/ee-image.json`): which Debian packages,
//! kernel, modules and command line make up the guest.
//!
//! Format version 1 (JSON):
//!
//! ```json
//! {"version": 1, "suite": "trixie",
//!  "kernel": {"release": "7.3.4+deb13-cloud-amd64", "suite": "trixie-backports"},
//!  "packages": ["docker.io", "docker-cli", "containerd", "runc", "docker-compose", "iptables"],
//!  "dev_packages": ["busybox-static"],
//!  "modules": ["virtio_net", "qemu_fw_cfg", "configfs", "tsm_report", "tdx_guest"],
//!  "cmdline": "console=ttyS0 panic=-1",
//!  "exclude": ["/usr/share/doc", "/usr/share/man"],
//!  "links": {"/usr/sbin/iptables": "iptables-nft"},
//!  "files": {"/etc/group": "root:x:0:\ndocker:x:999:\n"}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use easyenclave::service_list::{self, SERVICE_LIST_PATH};
use serde::{Deserialize, Serialize};

use super::BuildError;

/// The configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// What goes into the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version, [`CONFIG_VERSION`].
    pub version: u32,
    /// Debian suite the packages come from (e.g. `trixie`).
    pub suite: String,
    /// The guest kernel.
    pub kernel: KernelConfig,
    /// Packages installed in every variant (with their dependencies).
    pub packages: Vec<String>,
    /// Packages added to the dev variant only (its console shell).
    pub dev_packages: Vec<String>,
    /// Kernel modules ee-init loads (their dependencies are added).
    pub modules: Vec<String>,
    /// Kernel command line (measured into RTMR2).
    pub cmdline: String,
    /// Path prefixes dropped from the packages (documentation, man pages).
    pub exclude: Vec<String>,
    /// Symbolic links to add (path -> target): what maintainer scripts
    /// would create with update-alternatives, which the build does not run.
    #[serde(default)]
    pub links: BTreeMap<String, String>,
    /// Small text files to add (path -> contents, mode 0644): what
    /// maintainer scripts would write (`/etc/passwd`, `/etc/group`), and
    /// ee-init's `/etc/ee/services` ([`easyenclave::service_list`], checked
    /// on load).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// The guest kernel: Debian's `linux-binary-`, `linux-modules-` and
/// `linux-base-<release>` packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    /// Kernel release, e.g. `7.3.4+deb13-cloud-amd64`.
    pub release: String,
    /// Suite the kernel packages come from (e.g. `trixie-backports`).
    pub suite: String,
}

impl KernelConfig {
    /// The three packages the kernel is split into.
    pub fn packages(&self) -> [String; 3] {
        [
            format!("linux-binary-{}", self.release),
            format!("linux-modules-{}", self.release),
            format!("linux-base-{}", self.release),
        ]
    }
}

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Self, BuildError> {
        let bytes = super::read(path)?;
        let config: Config = serde_json::from_slice(&bytes).map_err(|e| BuildError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if config.version != CONFIG_VERSION {
            return Err(BuildError::Format {
                path: path.to_owned(),
                reason: format!("version: expected {CONFIG_VERSION}, got {}", config.version),
            });
        }
        if let Some(bad) = config.exclude.iter().find(|p| !p.starts_with('/')) {
            return Err(BuildError::Format {
                path: path.to_owned(),
                reason: format!("exclude: {bad:?} is not an absolute path"),
            });
        }
        // ee-init refuses a malformed service list at boot; refuse it here,
        // before anything is built, with the same error naming the line.
        if let Some(services) = config.files.get(SERVICE_LIST_PATH) {
            service_list::parse(services).map_err(|e| BuildError::Format {
                path: path.to_owned(),
                reason: format!("files: {e}"),
            })?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_files(files: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "version": 1, "suite": "trixie",
            "kernel": {"release": "7.3.4+deb13-cloud-amd64", "suite": "trixie-backports"},
            "packages": [], "dev_packages": [], "modules": [],
            "cmdline": "console=ttyS0", "exclude": [], "files": files,
        })
    }

    fn load(json: &serde_json::Value) -> Result<Config, BuildError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ee-image.json");
        std::fs::write(&path, json.to_string()).unwrap();
        Config::load(&path)
    }

    #[test]
    fn the_committed_configuration_loads_with_its_service_list() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ee-image.json");
        let config = Config::load(&path).unwrap();
        let services = service_list::parse(&config.files[SERVICE_LIST_PATH]).unwrap();
        let names: Vec<_> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["containerd", "dockerd"]);
    }

    #[test]
    fn the_service_list_is_checked_and_a_bad_line_named() {
        let good = "# c\ncontainerd always /usr/bin/containerd\ndockerd always /usr/sbin/dockerd\n";
        let config = load(&config_with_files(
            serde_json::json!({ SERVICE_LIST_PATH: good }),
        ))
        .unwrap();
        assert_eq!(config.files[SERVICE_LIST_PATH], good);

        let bad = "containerd always /usr/bin/containerd\ndockerd sometimes /usr/sbin/dockerd\n";
        let err = load(&config_with_files(
            serde_json::json!({ SERVICE_LIST_PATH: bad }),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("files: /etc/ee/services line 2: restart policy \"sometimes\""),
            "{err}"
        );
    }
}
