//! Helpers shared by the integration tests: locating dcap-qvl's real Intel
//! sample quotes and collateral. Each test binary uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `sample/` folder of the dcap-qvl package this workspace depends on
/// (real Intel quotes and their collateral), found through `cargo metadata`
/// so it works for any registry location or vendored source.
pub fn dcap_sample_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(&manifest)
            .output()
            .expect("run cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
        let dcap_manifest = metadata["packages"]
            .as_array()
            .expect("cargo metadata has a package list")
            .iter()
            .find(|package| package["name"] == "dcap-qvl")
            .and_then(|package| package["manifest_path"].as_str())
            .expect("dcap-qvl is in the dependency graph");
        let dir = Path::new(dcap_manifest)
            .parent()
            .expect("a manifest path has a parent")
            .join("sample");
        assert!(dir.is_dir(), "{} is not a directory", dir.display());
        dir
    })
    .clone()
}

/// The bytes of file `name` in [`dcap_sample_dir`], as stored.
pub fn sample(name: &str) -> Vec<u8> {
    let path = dcap_sample_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
