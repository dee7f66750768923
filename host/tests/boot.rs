//! A real boot under QEMU TCG through `ee-host launch --mode dev`: Debian's
//! cloud kernel from the cache that `scripts/install-deps` fills (the
//! uncompressed vmlinux, booted through its PVH entry point) with a
//! one-file initramfs whose /init (tests/data/boot_init.c) prints a marker
//! and idles. Then list/status (QEMU's run state over real QMP), logs and
//! stop (the init ignores the ACPI power button, so stop falls back to
//! SIGTERM).
//!
//! Skips, saying why, when the kernel cache, musl-gcc, cpio or QEMU is missing.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dev_spec, free_port, process_alive, wait_for, Fixture};
use serde_json::json;

use ee_testkit::unavailable;

const MARKER: &str = "EE-HOST-BOOT-TEST: init running as pid 1";
/// Generous: TCG on a busy 2-core machine can be several times slower than
/// the ~6 s measured on a quiet one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn kernel() -> Option<PathBuf> {
    let dir = std::env::var_os("EE_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/easy-enclave/kernel"));
    let vmlinux = dir.join("vmlinux");
    vmlinux.is_file().then_some(vmlinux)
}

fn have(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Compile the init and pack it as a newc cpio archive.
fn build_initramfs(dir: &Path) -> PathBuf {
    let root = dir.join("initramfs-root");
    std::fs::create_dir_all(&root).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/boot_init.c");
    let cc = Command::new("musl-gcc")
        .args(["-static", "-Os", "-o"])
        .arg(root.join("init"))
        .arg(&source)
        .status()
        .unwrap();
    assert!(cc.success(), "musl-gcc failed");
    let initrd = dir.join("initrd.img");
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&initrd).unwrap())
        .spawn()
        .unwrap();
    cpio.stdin.take().unwrap().write_all(b"init\n").unwrap();
    assert!(cpio.wait().unwrap().success(), "cpio failed");
    initrd
}

#[test]
fn dev_mode_boots_a_real_kernel_under_tcg() {
    const TEST: &str = "dev_mode_boots_a_real_kernel_under_tcg";
    let Some(vmlinux) = kernel() else {
        unavailable(
            TEST,
            "no guest kernel cache (run scripts/install-deps; EE_KERNEL_DIR)",
        );
        return;
    };
    for tool in ["musl-gcc", "cpio", "qemu-system-x86_64"] {
        if !have(tool) {
            unavailable(
                TEST,
                &format!("{tool} not installed (scripts/install-deps)"),
            );
            return;
        }
    }
    let fixture = Fixture::new();
    let image = fixture.path().join("boot-image");
    std::fs::create_dir_all(&image).unwrap();
    std::os::unix::fs::symlink(&vmlinux, image.join("vmlinux")).unwrap();
    std::fs::rename(build_initramfs(fixture.path()), image.join("initrd.img")).unwrap();
    std::fs::write(image.join("cmdline"), "console=ttyS0 panic=-1").unwrap();
    let mut spec = dev_spec("tcg-boot", free_port());
    spec["image"] = json!("boot-image");
    let spec = fixture.write_spec("boot.json", &spec);

    let real_qemu = |args: &[&str]| {
        let out = fixture
            .ee_host()
            .env("EE_HOST_QEMU", "qemu-system-x86_64")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ee-host {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let start = Instant::now();
    real_qemu(&["launch", "--accel", "tcg", spec.to_str().unwrap()]);
    let launched = start.elapsed();
    let serial = fixture.state().join("vms/tcg-boot/serial.log");
    let booted = wait_for(BOOT_TIMEOUT, || {
        std::fs::read_to_string(&serial).is_ok_and(|s| s.contains(MARKER))
    });
    let to_init = start.elapsed();
    let logs = real_qemu(&["logs", "tcg-boot"]);
    assert!(
        booted,
        "no marker within {BOOT_TIMEOUT:?}; serial log:\n{logs}"
    );
    assert!(logs.contains("Linux version"), "{logs}");

    let status = fixture.status("tcg-boot");
    assert_eq!(status["state"], "running", "{status}");
    let pid = status["pid"].as_u64().unwrap();
    let argv = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(argv.contains("-accel\0tcg\0"), "{argv:?}");

    let stop_start = Instant::now();
    let out = real_qemu(&["stop", "--timeout", "2", "tcg-boot"]);
    let stopped = stop_start.elapsed();
    assert_eq!(out, "stopped tcg-boot: QEMU stopped with SIGTERM\n");
    assert!(!process_alive(pid));
    assert!(!fixture.state().join("vms/tcg-boot.json").exists());
    eprintln!(
        "TCG boot: launch returned after {launched:.2?} (QMP up), /init ran after {to_init:.2?}, \
         stop took {stopped:.2?} (2 s power-down wait, then SIGTERM)"
    );
}
