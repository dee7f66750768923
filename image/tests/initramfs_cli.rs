//! `ee-image initramfs` against the real guest kernel's modules: the output
//! is reproducible, and gzip, GNU cpio, xz and sha384sum (independent
//! implementations) agree with what it packed and reported.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Run a host tool in `dir`, returning stdout; panics with stderr on failure.
fn tool(dir: &Path, program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} not runnable ({e}): run scripts/install-deps"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Stand-in for PID1: these tests only look at the archive.
fn fake_init(dir: &Path) -> PathBuf {
    let init = dir.join("init-binary");
    fs::write(&init, b"\x7fELF not really").unwrap();
    init
}

/// Build `dir/name` with the guest modules; returns its path and the
/// command's stdout.
fn build(dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> (PathBuf, Vec<u8>) {
    let kernel = common::guest_kernel();
    let out = dir.join(name);
    let mut args = common::initramfs_args(&fake_init(dir), &kernel, &out);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = common::ee_image(&args, env);
    (out, output.stdout)
}

/// Unpack a gzip-compressed initramfs with gzip and GNU cpio (keeping
/// mtimes) into `dir/name.d`.
fn unpack(dir: &Path, image: &Path) -> PathBuf {
    let target = image.with_extension("d");
    fs::create_dir(&target).unwrap();
    let cpio = image.with_extension("cpio");
    fs::write(&cpio, tool(dir, "gzip", &["-dc", &common::path_str(image)])).unwrap();
    let status = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(&cpio)
        .current_dir(&target)
        .status()
        .expect("cpio not runnable: run scripts/install-deps");
    assert!(
        status.success(),
        "cpio could not unpack {}",
        image.display()
    );
    target
}

#[test]
fn two_runs_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = build(dir.path(), "a.img", &[], &[]);
    let (b, _) = build(dir.path(), "b.img", &[], &[]);
    assert!(
        fs::read(a).unwrap() == fs::read(b).unwrap(),
        "two runs from the same inputs differ"
    );
}

#[test]
fn source_date_epoch_sets_every_mtime_and_owners_are_root() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = build(
        dir.path(),
        "c.img",
        &[],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    let (plain, _) = build(dir.path(), "d.img", &[], &[]);
    assert_ne!(fs::read(&image).unwrap(), fs::read(plain).unwrap());

    // GNU cpio restores file mtimes on extraction...
    let root = unpack(dir.path(), &image);
    for file in ["init", "etc/ee/modules"] {
        let meta = fs::metadata(root.join(file)).unwrap();
        assert_eq!(meta.mtime(), 1_700_000_000, "{file}");
    }
    // ...and lists every entry's (directories too): mode, links, uid, gid,
    // size, then the date (2023-11-14 22:13:20 UTC, printed as an old date).
    let listing = Command::new("cpio")
        .args(["-tv", "--quiet", "--numeric-uid-gid", "-F", "c.cpio"])
        .current_dir(dir.path())
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .output()
        .expect("cpio not runnable: run scripts/install-deps");
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.lines().count() > 10, "{listing}");
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[2..4], ["0", "0"], "owner of {line}");
        assert!(line.contains(" Nov 14  2023 "), "date of {line}");
    }
}

#[test]
fn modules_are_decompressed_listed_in_order_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra.txt");
    fs::write(&extra, "extra file\n").unwrap();
    let file_arg = format!("{}:/etc/ee/extra.txt", common::path_str(&extra));
    let (image, stdout) = build(dir.path(), "e.img", &["--json", "--file", &file_arg], &[]);
    let summary: Value = serde_json::from_slice(&stdout).unwrap();
    let root = unpack(dir.path(), &image);

    // The reported SHA-384 is that of the file (coreutils computes it here).
    let sum = tool(dir.path(), "sha384sum", &[&common::path_str(&image)]);
    let sum = String::from_utf8(sum).unwrap();
    assert_eq!(summary["sha384"], sum.split_whitespace().next().unwrap());
    assert_eq!(summary["version"], 1);
    assert_eq!(summary["builtin"], serde_json::json!(["virtio_pci"]));

    let kernel = common::guest_kernel();
    let modules_dir = fs::canonicalize(&kernel.modules_dir).unwrap();
    let release = modules_dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(summary["kernel_release"], release);

    // The list file: header, then the reported modules in the same order.
    let list = fs::read_to_string(root.join("etc/ee/modules")).unwrap();
    let mut lines = list.lines();
    assert_eq!(lines.next(), Some("ee-modules 1"));
    let listed: Vec<(String, String)> = lines
        .map(|l| {
            let (name, path) = l.split_once(' ').unwrap();
            (name.to_owned(), path.to_owned())
        })
        .collect();
    let reported: Vec<(String, String)> = summary["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, reported);
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    for needed in [
        "virtio_net",
        "failover",
        "qemu_fw_cfg",
        "tdx_guest",
        "tsm_report",
        "configfs",
    ] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }

    // Each packed module is exactly what xz makes of the package's .ko.xz.
    for (_, path) in &listed {
        let relative = path
            .strip_prefix(&format!("/lib/modules/{release}/"))
            .unwrap_or_else(|| panic!("{path} outside /lib/modules/{release}"));
        let source = modules_dir.join(format!("{relative}.xz"));
        let expected = tool(dir.path(), "xz", &["-dc", &common::path_str(&source)]);
        let packed = fs::read(root.join(path.trim_start_matches('/'))).unwrap();
        assert!(packed.starts_with(b"\x7fELF"), "{path} is not an ELF file");
        assert!(
            packed == expected,
            "{path} differs from xz -dc {}",
            source.display()
        );
    }
    assert_eq!(
        fs::read_to_string(root.join("etc/ee/extra.txt")).unwrap(),
        "extra file\n"
    );
}

#[test]
fn unknown_module_fails_with_its_name() {
    let kernel = common::guest_kernel();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ee-image"))
        .args(["initramfs", "--init"])
        .arg(fake_init(dir.path()))
        .arg("--kernel-modules")
        .arg(&kernel.modules_dir)
        .args(["--module", "no_such_module", "--out"])
        .arg(dir.path().join("x.img"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"no_such_module\""), "{stderr}");
    assert!(!dir.path().join("x.img").exists(), "no output on failure");
}

#[test]
fn module_without_modules_dir_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ee-image"))
        .args(["initramfs", "--init"])
        .arg(fake_init(dir.path()))
        .args(["--module", "virtio_net", "--out"])
        .arg(dir.path().join("x.img"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn progress_and_errors_are_json_lines_with_log_format_json() {
    let dir = tempfile::tempdir().unwrap();
    let init = fake_init(dir.path());
    let out_path = dir.path().join("x.img");
    let ok = Command::new(env!("CARGO_BIN_EXE_ee-image"))
        .env_remove("RUST_LOG")
        .args(["--log-format", "json", "initramfs", "--init"])
        .arg(&init)
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["level"] == "INFO"
            && e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("wrote "))),
        "{stderr}"
    );
    assert!(
        ok.stdout.is_empty(),
        "the summary is a log, stdout stays empty"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_ee-image"))
        .env("EE_LOG_FORMAT", "json")
        .args(["initramfs", "--init", "/nonexistent/init", "--out"])
        .arg(&out_path)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    let event: Value =
        serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(event["level"], "ERROR", "{event}");
    assert!(
        event["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/init"),
        "{event}"
    );
}
