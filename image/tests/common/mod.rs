//! Helpers shared by the integration tests: the guest kernel from the cache
//! that `scripts/install-deps` fills, and running the `ee-image` binary.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ee_image::vm::{kernel_cache_dir, GuestKernel};

/// Modules the guest needs (see image/README.md); `virtio_pci` is built into
/// Debian's cloud kernel and is listed to check that case.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_net",
    "virtio_pci",
    "qemu_fw_cfg",
    "tdx_guest",
    "tsm_report",
    "configfs",
];

/// The guest kernel; panics with the fix when the cache is missing (CI runs
/// scripts/install-deps first, so a missing kernel is a real failure).
pub fn guest_kernel() -> GuestKernel {
    GuestKernel::from_cache(&kernel_cache_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// Run `ee-image` with `args` and extra environment; panics with its stderr
/// if it fails.
pub fn ee_image(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ee-image"));
    cmd.args(args).env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running ee-image");
    assert!(
        out.status.success(),
        "ee-image {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ee-image initramfs` arguments packing `init` with [`GUEST_MODULES`]
/// from `kernel` into `out`.
pub fn initramfs_args(init: &Path, kernel: &GuestKernel, out: &Path) -> Vec<String> {
    let mut args = vec![
        "initramfs".to_string(),
        "--init".into(),
        path_str(init),
        "--kernel-modules".into(),
        path_str(&kernel.modules_dir),
        "--out".into(),
        path_str(out),
    ];
    for m in GUEST_MODULES {
        args.push("--module".into());
        args.push((*m).into());
    }
    args
}

/// A path as a `&str` argument (test paths are UTF-8).
pub fn path_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 test path").to_owned()
}

/// Build tests/data/test_init.c into a static binary in `dir`.
pub fn build_test_init(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/test_init.c");
    let out = dir.join("test-init");
    let result = Command::new("musl-gcc")
        .args(["-static", "-Os", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .output();
    match result {
        Ok(o) if o.status.success() => out,
        Ok(o) => panic!(
            "musl-gcc failed on {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            panic!("musl-gcc not runnable ({e}): run `sudo scripts/install-deps` (musl-tools)")
        }
    }
}
