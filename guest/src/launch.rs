//! Receiving the launch config from the host.
//!
//! Channel: the QEMU fw_cfg file `opt/easyenclave/launch.json`
//! (`-fw_cfg name=opt/easyenclave/launch.json,file=launch.json`), read from
//! sysfs once the `qemu_fw_cfg` module is loaded. Not the kernel command line:
//! RTMR2 measures the command line, so per-host values there would change
//! RTMR2 and make the image's allowlist host-specific. The config is
//! untrusted: it is parsed strictly by [`easyenclave::launch`] and measured
//! into RTMR3 (the `config` event) before anything acts on it.

use std::io::Read;
use std::path::{Path, PathBuf};

use easyenclave::launch::{LaunchConfig, LaunchConfigError, MAX_LAUNCH_CONFIG_BYTES};

use crate::root::FsRoot;

pub use easyenclave::launch::FW_CFG_GUEST_PATH as FW_CFG_LAUNCH_CONFIG;

/// The launch config could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The file does not exist.
    #[error("no launch config at {path}: start the TD with `-fw_cfg name=opt/easyenclave/launch.json,file=<launch.json>` and list the qemu_fw_cfg module in the image")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("cannot read the launch config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The config is invalid; the message names the field.
    #[error("launch config rejected: {0}")]
    Invalid(#[from] LaunchConfigError),
}

/// Where the config is read from: the fw_cfg file under `root`, or an
/// explicit file (`--launch-config` in dev runs).
pub fn config_path(root: &FsRoot, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| root.path(FW_CFG_LAUNCH_CONFIG), Path::to_path_buf)
}

/// Read and strictly parse the launch config at `path`. Reads at most one
/// byte over the size cap, so a huge file is refused without loading it.
pub fn read_config(path: &Path) -> Result<LaunchConfig, LaunchError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LaunchError::Missing {
                path: path.to_owned(),
            })
        }
        Err(source) => {
            return Err(LaunchError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_LAUNCH_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| LaunchError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(LaunchConfig::parse(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(root: &FsRoot, text: &str) -> PathBuf {
        let path = config_path(root, None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_a_valid_config_from_fw_cfg() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        let path = write_config(
            &root,
            r#"{"version":1,"repo":"octo/app","endpoint":"app.example.com:443","network":{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3"]}}"#,
        );
        let config = read_config(&path).unwrap();
        assert_eq!(config.repo, "octo/app");
        assert_eq!(config.agent_port, 8443);
    }

    #[test]
    fn rejection_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        let cases = [
            (
                r#"{"version":1,"repo":"octo","endpoint":"a.b:1"}"#,
                "repo: must be owner/name",
            ),
            (
                r#"{"version":1,"repo":"o/a","endpoint":"a.b:1","network":{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.999","dns":["10.0.2.3"]}}"#,
                "network.static.gateway",
            ),
            (
                r#"{"version":1,"repo":"o/a","endpoint":"a.b:1","debug_shell":true}"#,
                "unknown field `debug_shell`",
            ),
            (
                r#"{"version":2,"repo":"o/a","endpoint":"a.b:1"}"#,
                "version: expected 1, got 2",
            ),
            ("not json", "launch config rejected: launch config:"),
        ];
        for (text, needle) in cases {
            let err = read_config(&write_config(&root, text))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("launch config rejected: "), "{err}");
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn missing_and_oversized_configs_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        let err = read_config(&config_path(&root, None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("-fw_cfg name=opt/easyenclave/launch.json"),
            "{err}"
        );

        let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_LAUNCH_CONFIG_BYTES));
        let err = read_config(&write_config(&root, &huge))
            .unwrap_err()
            .to_string();
        assert!(err.contains("over the 65536-byte limit"), "{err}");
    }
}
