//! The `ee bundle` commands: `digest` against the independent vector in
//! `sdk/testdata/bundle-v1.json`, bad input, and `zip` then `extract`.
#![cfg(unix)]

use std::fs;
use std::process::{Command, Output};

use easyenclave::bundle::{digest_dir, zip_dir};

const VECTOR: &str = include_str!("../../testdata/bundle-v1.json");

#[path = "../../tests/bundle_tree/mod.rs"]
mod bundle_tree;
use bundle_tree::{tree, vector_tree, SMALL};

fn ee(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn digest_prints_the_vector_digest() {
    let (vector, dir) = vector_tree(VECTOR);
    let out = ee(&["bundle".as_ref(), "digest".as_ref(), dir.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}\n", vector["digest"].as_str().unwrap())
    );

    let out = ee(&[
        "bundle".as_ref(),
        "digest".as_ref(),
        dir.path().as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["digest"], vector["digest"]);
    assert_eq!(
        easyenclave::canonical::to_string(&doc["manifest"]).unwrap(),
        vector["manifest"].as_str().unwrap()
    );
}

#[test]
fn digest_of_bad_input_exits_2_naming_the_problem() {
    let d = tree(SMALL);
    std::os::unix::fs::symlink("compose.yaml", d.path().join("link")).unwrap();
    let out = ee(&["bundle".as_ref(), "digest".as_ref(), d.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("bundle entry \"link\": is a symbolic link"),
        "{}",
        text(&out.stderr)
    );

    let missing = d.path().join("missing");
    let out = ee(&["bundle".as_ref(), "digest".as_ref(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );

    let out = ee(&["bundle".as_ref(), "digest".as_ref()]);
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn zip_then_extract_gives_the_same_digest() {
    let d = tree(SMALL);
    let expected = format!("{}\n", digest_dir(d.path()).unwrap().digest_hex());
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("bundle.zip");
    let out = ee(&[
        "bundle".as_ref(),
        "zip".as_ref(),
        d.path().as_os_str(),
        "--out".as_ref(),
        zip.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(fs::read(&zip).unwrap(), zip_dir(d.path()).unwrap());

    let into = work.path().join("extracted");
    let args = [
        "bundle".as_ref(),
        "extract".as_ref(),
        zip.as_os_str(),
        "--into".as_ref(),
        into.as_os_str(),
    ];
    let out = ee(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(
        format!("{}\n", digest_dir(&into).unwrap().digest_hex()),
        expected
    );

    let out = ee(&args);
    assert_eq!(out.status.code(), Some(2), "the destination exists now");
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
}
