//! Bundle directories for tests: files with their modes, written under a
//! fresh temporary directory. Shared by sdk/tests/bundle.rs and the `ee
//! bundle` tests in sdk/cli/tests/bundle.rs.
// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Write `files` (path, content, executable) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &[u8], bool)]) {
    for (path, content, executable) in files {
        let location = root.join(path);
        fs::create_dir_all(location.parent().unwrap()).unwrap();
        fs::write(&location, content).unwrap();
        let mode = if *executable { 0o755 } else { 0o644 };
        fs::set_permissions(&location, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// A temporary directory holding `files`.
pub fn tree(files: &[(&str, &[u8], bool)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), files);
    dir
}

/// A small bundle: a compose file, an executable script and an image tarball.
pub const SMALL: &[(&str, &[u8], bool)] = &[
    ("compose.yaml", b"services: {}\n", false),
    ("bin/run.sh", b"#!/bin/sh\n", true),
    ("images/app.tar", b"tar bytes", false),
];

/// The bundle-v1 vector (`sdk/testdata/bundle-v1.json`, passed in as text)
/// and a temporary directory holding its files.
pub fn vector_tree(vector_json: &str) -> (serde_json::Value, tempfile::TempDir) {
    use base64::Engine as _;
    let vector: serde_json::Value = serde_json::from_str(vector_json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in vector["files"].as_array().unwrap() {
        let content = base64::engine::general_purpose::STANDARD
            .decode(f["content_base64"].as_str().unwrap())
            .unwrap();
        write_tree(
            dir.path(),
            &[(
                f["path"].as_str().unwrap(),
                &content,
                f["executable"].as_bool().unwrap(),
            )],
        );
    }
    (vector, dir)
}
