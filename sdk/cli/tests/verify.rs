//! `ee verify OWNER/REPO` against the realistic published deployment of the
//! library's tests (sdk/tests/published_world).

#[path = "../../tests/published_world/mod.rs"]
mod published_world;

use published_world::*;

use std::process::{Command, Output};

use easyenclave::connect::OFFICIAL_IMAGE_PUBLISHER;
use serde_json::Value;

#[test]
fn ee_verify_by_default_trusts_only_the_official_publisher() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let base_url = world.server.base_url();
    let output = Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(["verify", REPO, "--api-url", &base_url, "--root", "sim"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("check untrusted_allowlist failed")
            && stderr(&output).contains(&format!("published by {PUBLISHER}"))
            && stderr(&output).contains(OFFICIAL_IMAGE_PUBLISHER),
        "{}",
        stderr(&output)
    );
}

// ---- the `ee verify` command ----

fn ee_verify(world: &World, extra: &[&str]) -> Output {
    let base_url = world.server.base_url();
    let mut args = vec![
        "verify",
        REPO,
        "--api-url",
        &base_url,
        "--root",
        "sim",
        "--allowlist-publisher",
        PUBLISHER,
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(&args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn ee_verify_require_pinned_and_a_stopped_bundle() {
    let world = World::new();
    let mut by_tag = world.deployment(TAG);
    by_tag.images_pinned = false;
    world.deploy(&by_tag);
    let output = ee_verify(&world, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("images: some pulled by tag or built"),
        "{text}"
    );
    assert!(text.contains("enforced workload policy v1 ("), "{text}");
    let output = ee_verify(&world, &["--require-pinned", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["check"], "not_pinned");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("has images_pinned: false"),
        "{doc}"
    );

    let world = World::new();
    let mut stopped = world.deployment(TAG);
    stopped.stopped = true;
    world.deploy(&stopped);
    let output = ee_verify(&world, &["--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["check"], "no_bundle");
}

#[test]
fn ee_verify_prints_a_summary_or_json_and_exits_0() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));

    let output = ee_verify(&world, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "OK: acme/hello is verified",
        ENDPOINT,
        TAG,
        &hex::encode(BUNDLE),
        "sealed:      yes",
        "UpToDate",
        &format!("published by {PUBLISHER} (a trusted publisher)"),
        "made for the simulated platform",
        "requests:    6 HTTP",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    let output = ee_verify(&world, &["--json", "--expect-bundle", &hex::encode(BUNDLE)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["repo"], REPO);
    assert_eq!(json["endpoint"], ENDPOINT);
    assert_eq!(json["release_tag"], TAG);
    assert_eq!(json["bundle"]["digest"], hex::encode(BUNDLE));
    assert_eq!(json["sealed"], true);
    assert_eq!(json["tcb_status"], "UpToDate");
    assert_eq!(json["allowlist"]["publisher"], PUBLISHER);
    assert_eq!(json["allowlist"]["variant"], "sim");
    assert_eq!(json["td_report"]["mr_td"], hex::encode(td_config().mr_td));
    assert_eq!(json["collateral"]["kind"], "given");
    assert_eq!(json["http_requests"], 6);
    assert_eq!(json["event_log"]["events"].as_array().unwrap().len(), 4);
}

#[test]
fn ee_verify_exits_1_naming_the_failed_check() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let other = hex::encode([0xb2; 32]);

    let output = ee_verify(&world, &["--expect-bundle", &other]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("ee: rejected: check bundle_mismatch failed: "),
        "{}",
        stderr(&output)
    );

    let output = ee_verify(&world, &["--expect-bundle", &other, "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["check"], "bundle_mismatch");
    assert!(json["error"].as_str().unwrap().contains(&other));

    // The same quote, with Intel's root: the sim collateral is given as a file.
    let dir = tempfile::tempdir().unwrap();
    let collateral = dir.path().join("collateral.json");
    std::fs::write(&collateral, world.collateral.to_json()).unwrap();
    let base_url = world.server.base_url();
    let collateral_arg = collateral.to_str().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(["verify", REPO, "--api-url", &base_url])
        .args(["--allowlist-publisher", PUBLISHER])
        .args(["--collateral", collateral_arg, "--accept-variant", "sim"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("check untrusted_quote failed"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn ee_verify_exits_2_on_bad_input() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    for (args, message) in [
        (&["--max-age", "24"][..], "has no unit"),
        (&["--max-age", "3w"][..], "unknown unit"),
        (&["--expect-bundle", "abcd"][..], "expected 32"),
        (&["--accept-variant", "beta"][..], "unknown variant"),
        (&["--allowlist-publisher", "no-slash"][..], "owner/name"),
        (
            &["--allowlist", "/nonexistent/allowlist.json"][..],
            "nonexistent",
        ),
    ] {
        let output = ee_verify(&world, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(["verify", "not/a/repo"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("check invalid_repo failed"),
        "{}",
        stderr(&output)
    );
}
