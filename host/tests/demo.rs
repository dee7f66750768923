//! The README's main job, `scripts/demo`, as an integration test: the
//! measured deploy end to end on this machine (issues 6 and 7).
//!
//! The script builds the sim image from the pinned packages, computes its
//! allowlist, starts the local GitHub-compatible server, launches the TD with
//! ee-host under QEMU TCG (`-smp 1`, dockerd inside), attests the agent live
//! over RA-TLS, deploys the example bundle with `ee deploy` (an image loaded
//! offline, a private GREETING), verifies the published release with
//! `ee verify` and calls the service through the verified client and on its
//! forwarded port.
//!
//! On top of the script's own checks this test asserts what it published
//! (release, sealed event log with config, bundle and seal events, the bundle
//! digest) and that the private value reached the workload but appears in
//! none of the files the run leaves on the host: the deploy and verify
//! output, the test server's state (releases and assets), the VM's console
//! log and ee-host's state. (The TD itself has no disk: its root, docker's
//! data and the bundle are RAM.)
//!
//! Needs root, QEMU and the guest kernel cache (scripts/install-deps), and
//! the workspace binaries built by `cargo test --workspace --all-features`;
//! skips, saying why, without them (like tests/dev_image.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ee_image::devimage::{EeInitBuild, EeInitVariant};
use ee_image::vm::{kernel_cache_dir, GuestKernel};
use serde_json::Value;

use ee_testkit::unavailable;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory cargo put this package's binaries in; the workspace's other
/// binaries (ee, ee-image, ee-github-test-server) are built beside them by
/// `cargo test --workspace --all-features`.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ee-host"))
        .parent()
        .expect("binary has a directory")
        .to_path_buf()
}

/// ee-init with the sim backend, built as the boot tests build it (same
/// target directory, so the build is shared).
fn ee_init_sim() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    EeInitBuild {
        cargo: env!("CARGO").into(),
        workspace: workspace(),
        target_dir: target.join("ee-init-boot"),
        variant: EeInitVariant::Sim,
    }
    .run()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Every regular file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

#[test]
fn demo_deploys_publishes_and_verifies_end_to_end() {
    const TEST: &str = "demo_deploys_publishes_and_verifies_end_to_end";
    let uid = Command::new("id").arg("-u").output().expect("running id");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        unavailable(TEST, "scripts/demo runs as root");
        return;
    }
    if let Err(e) = GuestKernel::from_cache(&kernel_cache_dir()) {
        unavailable(TEST, &e.to_string());
        return;
    }
    let bins = bin_dir();
    for tool in ["ee", "ee-image", "ee-github-test-server"] {
        assert!(
            bins.join(tool).is_file(),
            "{} is missing: build the workspace binaries first \
             (cargo build -p ee-cli -p ee-testkit -p ee-image), \
             or run the whole suite with cargo test --workspace --all-features",
            bins.join(tool).display()
        );
    }
    let ee_init = ee_init_sim();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("demo");
    let summary_path = scratch.path().join("summary.json");
    // A value that occurs nowhere else, so any copy of it is found.
    let marker = format!("ee-private-marker-{}", std::process::id() ^ 0x5eed_cafe);

    let started = Instant::now();
    let output = Command::new(workspace().join("scripts/demo"))
        .current_dir(workspace())
        .env("EE_DEMO_SKIP_DEPS", "1")
        .env("EE_DEMO_DIR", &work)
        .env("EE_DEMO_KEEP", "1")
        .env("EE_DEMO_SUMMARY", &summary_path)
        .env("EE_DEMO_BIN_DIR", &bins)
        .env("EE_DEMO_EE_INIT", &ee_init)
        .env("EE_DEMO_GREETING", &marker)
        .output()
        .expect("running scripts/demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/demo failed ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!(
        "scripts/demo passed in {:.0?} (image build, TCG boot with dockerd, deploy, verify)",
        started.elapsed()
    );

    let summary: Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    let verify = &summary["verify"];
    assert_eq!(verify["verified"], true, "{verify:#}");
    assert_eq!(verify["repo"], "acme/hello");
    assert_eq!(verify["sealed"], true);
    assert_eq!(verify["tcb_status"], "UpToDate");
    // Verified with the default trust: the project's image publisher.
    assert_eq!(
        verify["allowlist"]["publisher"],
        "easy-enclave/easy-enclave"
    );
    assert_eq!(verify["allowlist"]["publisher_pinned"], true);
    assert!(
        verify["release_tag"]
            .as_str()
            .is_some_and(|t| t.starts_with("deploy-")),
        "{verify:#}"
    );
    // The event log the quote's RTMR3 replays: config first, then the
    // deployed bundle, then the seal (ready events may sit in between).
    let types: Vec<&str> = verify["event_log"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|t| *t != "ready")
        .collect();
    assert_eq!(types, ["config", "bundle", "seal"], "{verify:#}");
    // The bundle measured in the TD is the one on disk here.
    let digest = Command::new(bins.join("ee"))
        .args(["bundle", "digest"])
        .arg(work.join("bundle"))
        .output()
        .unwrap();
    let digest = String::from_utf8(digest.stdout).unwrap();
    assert_eq!(verify["bundle"]["digest"], digest.trim(), "{verify:#}");

    // The private value reached the workload, through the verified client...
    let page = summary["page"].as_str().unwrap();
    assert!(
        page.contains(&format!("hello from Easy Enclave: {marker}")),
        "{page}"
    );
    // ...and on the port ee-host forwards to it.
    let forwarded = summary["forwarded"].as_str().unwrap();
    assert!(
        forwarded.contains(&format!("hello from Easy Enclave: {marker}")),
        "{forwarded}"
    );
    // Nothing the run left on the host holds it, except the pages the
    // service itself answered with.
    assert!(
        work.join("serial.log").metadata().unwrap().len() > 0,
        "the console log was kept"
    );
    assert!(work.join("github-state.json").is_file());
    let leaks: Vec<PathBuf> = files_containing(&work, marker.as_bytes())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n != "page.txt" && n != "forwarded.txt")
        })
        .collect();
    assert!(leaks.is_empty(), "private value found in {leaks:?}");
    // In the script's own output it appears only where the service's answer
    // is shown.
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(
            !line.contains(&marker) || line.contains("hello from Easy Enclave: "),
            "the private value is printed outside the service's answer: {line}"
        );
    }
}
