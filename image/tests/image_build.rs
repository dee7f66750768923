//! `ee-image build` and `ee-image allowlist` end to end, with the real lock
//! file (image/ee-image.lock) and the real Debian packages.
//!
//! Needs what `scripts/install-deps` provides: apt with the trixie lists (the
//! packages are fetched into /var/cache/easy-enclave/debs on first use), the
//! guest kernel cache, QEMU, OVMF, musl. The heavy tests (two full builds;
//! one build and a TCG boot) run one at a time.
//!
//! - the reproducibility check: `scripts/check-reproducible` builds all three
//!   variants twice and fails naming any differing file;
//! - the sim image boots under TCG and ee-init reports `ready`; its
//!   image.json matches the files, the variant is in the initrd and on the
//!   command line; `ee-image allowlist` lists it for two VM shapes;
//! - a package whose file does not match the lock, and a lock that misses a
//!   configured package, are refused with messages naming them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use easyenclave::allowlist::{Allowlist, Variant};
use ee_image::devimage::{EeInitBuild, EeInitVariant};
use ee_image::vm::{kernel_cache_dir, GuestKernel, RunningVm, VmSpec};

/// One heavy test at a time: each holds ~1 GB and both cores.
static HEAVY: Mutex<()> = Mutex::new(());

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> PathBuf {
    workspace().join("image/ee-image.json")
}

/// ee-init built for `variant` (static musl), copied out of the shared
/// target directory so a later build of the other variant cannot replace it.
fn ee_init(variant: EeInitVariant, into: &Path) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ee-init-boot");
    let built = EeInitBuild {
        cargo: env!("CARGO").into(),
        workspace: workspace(),
        target_dir: target,
        variant,
    }
    .run()
    .unwrap_or_else(|e| panic!("{e}"));
    let copy = into.join(format!("ee-init-{}", variant.name()));
    std::fs::copy(&built, &copy).unwrap();
    copy
}

fn ee_image(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ee-image"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_builds_from_the_lock_are_bit_identical() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let release = ee_init(EeInitVariant::Release, dir.path());
    let sim = ee_init(EeInitVariant::Sim, dir.path());
    let started = Instant::now();
    let output = Command::new(workspace().join("scripts/check-reproducible"))
        .args(["--ee-image", env!("CARGO_BIN_EXE_ee-image")])
        .args(["--ee-init", &format!("production={}", s(&release))])
        .args(["--ee-init", &format!("dev={}", s(&release))])
        .args(["--ee-init", &format!("sim={}", s(&sim))])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // 4 files per variant: vmlinuz, initrd.img, cmdline, image.json.
    assert!(stdout.contains("12 files identical"), "{stdout}");
    eprintln!(
        "reproducibility check (2 builds, 3 variants): {:.0?}\n{stdout}",
        started.elapsed()
    );
}

#[test]
fn sim_image_boots_under_tcg_and_is_allowlisted() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let sim = ee_init(EeInitVariant::Sim, dir.path());
    let out = dir.path().join("out");
    let started = Instant::now();
    let built = ee_image(&[
        "build",
        "--config",
        s(&config()),
        "--ee-init",
        &format!("sim={}", s(&sim)),
        "--out",
        s(&out),
    ]);
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert!(
        stderr.contains("unpacking the base packages"),
        "progress: {stderr}"
    );
    let build_time = started.elapsed();
    let image = out.join("sim");

    // image.json describes the files next to it.
    let manifest = ee_image::build::manifest::load(&image).unwrap();
    assert_eq!(manifest.variant, Variant::Sim);
    let initrd = std::fs::read(image.join("initrd.img")).unwrap();
    let vmlinuz = std::fs::read(image.join("vmlinuz")).unwrap();
    let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
    assert_eq!(
        manifest.outputs.initrd.sha384,
        easyenclave::rtmr::sha384(&initrd)
    );
    assert_eq!(
        manifest.outputs.kernel.sha384,
        easyenclave::rtmr::sha384(&vmlinuz)
    );
    assert_eq!(manifest.cmdline, cmdline);
    assert!(cmdline.ends_with(" ee.variant=sim"), "{cmdline}");
    let ee_init_bytes = std::fs::read(&sim).unwrap();
    assert_eq!(
        manifest.inputs.ee_init.sha384,
        easyenclave::rtmr::sha384(&ee_init_bytes)
    );
    for name in [
        "docker.io",
        "docker-cli",
        "containerd",
        "runc",
        "docker-compose",
        "iptables",
    ] {
        assert!(
            manifest.inputs.packages.iter().any(|p| p.name == name),
            "{name} not among the packages"
        );
    }
    assert!(!manifest
        .inputs
        .packages
        .iter()
        .any(|p| p.name == "busybox-static"));

    // The initrd holds ee-init as /init, the variant, docker; no dev marker.
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(initrd.as_slice())
        .read_to_end(&mut cpio)
        .unwrap();
    let entries = cpio_entries(&cpio);
    assert_eq!(entries["etc/ee/image-variant"], b"sim\n");
    assert_eq!(entries["init"], ee_init_bytes);
    assert!(entries["usr/sbin/dockerd"].len() > 1 << 20);
    assert!(entries["usr/bin/docker"].len() > 1 << 20);
    assert_eq!(entries["lib64"], b"usr/lib64"); // merged /usr link
    assert_eq!(entries["usr/sbin/iptables"], b"iptables-nft"); // alternatives
    assert!(entries.contains_key("usr/sbin/iptables-nft"));
    assert!(String::from_utf8_lossy(&entries["etc/group"]).contains("\ndocker:x:"));
    assert!(!entries.contains_key("etc/ee/dev-image"));
    assert!(!entries.keys().any(|k| k.starts_with("usr/share/doc/")));
    drop(cpio);

    // Boot: the same kernel as the cache's, entered through vmlinux (PVH).
    let kernel = GuestKernel::from_cache(&kernel_cache_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        vmlinuz,
        std::fs::read(&kernel.vmlinuz).unwrap(),
        "the built kernel differs from the kernel cache's"
    );
    let launch = dir.path().join("launch.json");
    std::fs::write(
        &launch,
        r#"{"version":1,"repo":"octo/image-test","endpoint":"image-test.example.com:443","agent_port":8080,"network":{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3"]}}"#,
    )
    .unwrap();
    let mut spec = VmSpec::new(
        kernel.vmlinux.clone(),
        image.join("initrd.img"),
        dir.path().join("serial.log"),
    );
    spec.append = cmdline.clone();
    // The ~340 MB root lives in RAM next to the compressed initrd.
    spec.memory_mib = 2048;
    spec.launch_config = Some(launch);
    let mut vm = RunningVm::start(&spec).unwrap_or_else(|e| panic!("{e}"));
    let to_ready = vm
        .wait_for_serial("ee-init: ready: ", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let serial = vm.serial().unwrap();
    assert!(serial.contains("TSM backend sim"), "{serial}");
    drop(vm);

    // The allowlist for two VM shapes.
    let firmware = Path::new("/usr/share/ovmf/OVMF.fd");
    let mut acpi_dirs = Vec::new();
    for shape in 0..2u8 {
        let acpi = dir.path().join(format!("acpi{shape}"));
        for (i, name) in ["etc/table-loader", "etc/acpi/rsdp", "etc/acpi/tables"]
            .iter()
            .enumerate()
        {
            let path = acpi.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, vec![shape * 3 + i as u8; 64]).unwrap();
        }
        acpi_dirs.push(acpi);
    }
    let list_path = dir.path().join("allowlist.json");
    let measured_at = Instant::now();
    let output = ee_image(&[
        "allowlist",
        "--image",
        s(&image),
        "--firmware",
        s(firmware),
        "--qemu-version",
        "10.2.0",
        "--cpus",
        "2",
        "--memory",
        "4G",
        "--acpi",
        s(&acpi_dirs[0]),
        "--cpus",
        "4",
        "--memory",
        "8G",
        "--acpi",
        s(&acpi_dirs[1]),
        "--out",
        s(&list_path),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let allowlist_time = measured_at.elapsed();
    let list = Allowlist::from_json(&std::fs::read(&list_path).unwrap()).unwrap();
    assert_eq!(list.image_id, manifest.image_id);
    let names: Vec<&str> = list.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["2cpu-4096m", "4cpu-8192m"]);
    let (a, b) = (&list.entries[0], &list.entries[1]);
    assert_eq!(a.profile.variant, Variant::Sim);
    assert_eq!(a.profile.memory_mib, 4096);
    // QEMU 10.2 measures the kernel as shipped: only RTMR0 (TD HOB, ACPI)
    // depends on the shape; the image's registers do not.
    assert_eq!((a.mrtd, a.rtmr1, a.rtmr2), (b.mrtd, b.rtmr1, b.rtmr2));
    assert_ne!(a.rtmr0, b.rtmr0);
    // Same registers as `ee-image measure` on the same inputs.
    let measured = ee_image(&[
        "measure",
        "--firmware",
        s(firmware),
        "--kernel",
        s(&image.join("vmlinuz")),
        "--initrd",
        s(&image.join("initrd.img")),
        "--cmdline",
        &cmdline,
        "--memory",
        "4G",
        "--qemu-version",
        "10.2.0",
        "--acpi",
        s(&acpi_dirs[0]),
        "--json",
    ]);
    assert!(measured.status.success());
    let json: serde_json::Value = serde_json::from_slice(&measured.stdout).unwrap();
    assert_eq!(json["rtmr2"], hex::encode(a.rtmr2));
    assert_eq!(json["rtmr0"], hex::encode(a.rtmr0));

    // Without ACPI blobs RTMR0 cannot be computed: refused, saying why.
    let output = ee_image(&[
        "allowlist",
        "--image",
        s(&image),
        "--firmware",
        s(firmware),
        "--qemu-version",
        "10.2.0",
        "--cpus",
        "2",
        "--memory",
        "4G",
        "--out",
        s(&list_path),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--acpi DIR is required"));

    eprintln!(
        "sim image: build {build_time:.0?}, initrd {} MB, QEMU start to ready {to_ready:.1?}, \
         allowlist (2 shapes) {allowlist_time:.2?}",
        initrd.len() >> 20
    );
}

/// S14: a production image must not carry the simulated platform, which
/// would stand in for TDX wherever configfs-tsm is missing.
#[test]
fn a_production_image_refuses_an_ee_init_with_the_sim_backend() {
    let dir = tempfile::tempdir().unwrap();
    let release = ee_init(EeInitVariant::Release, dir.path());
    let sim = ee_init(EeInitVariant::Sim, dir.path());
    assert_eq!(
        easyenclave::image_manifest::ee_init_backends(&std::fs::read(&release).unwrap()),
        [vec!["tdx".to_owned()]]
    );
    let out = dir.path().join("out");
    let refused = ee_image(&[
        "build",
        "--config",
        s(&config()),
        "--ee-init",
        &format!("production={}", s(&sim)),
        "--out",
        s(&out),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("carries the backends tdx,sim, expected tdx alone"),
        "{stderr}"
    );
    assert!(!out.join("production").exists());
    // The binary says so itself, too.
    let told = Command::new(&sim).arg("--backends").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&told.stdout), "tdx,sim\n");
}

#[test]
fn dev_image_opens_a_console_shell_on_a_fatal_error() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let release = ee_init(EeInitVariant::Release, dir.path());
    let out = dir.path().join("out");
    let built = ee_image(&[
        "build",
        "--config",
        s(&config()),
        "--ee-init",
        &format!("dev={}", s(&release)),
        "--out",
        s(&out),
    ]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let image = out.join("dev");
    let manifest = ee_image::build::manifest::load(&image).unwrap();
    assert_eq!(manifest.variant, Variant::Dev);
    assert!(manifest
        .inputs
        .packages
        .iter()
        .any(|p| p.name == "busybox-static"));
    let kernel = GuestKernel::from_cache(&kernel_cache_dir()).unwrap_or_else(|e| panic!("{e}"));
    // No launch config: ee-init's first fatal error, and on a dev image the
    // shell (busybox as /bin/sh) starts on the serial console.
    let mut spec = VmSpec::new(
        kernel.vmlinux.clone(),
        image.join("initrd.img"),
        dir.path().join("serial.log"),
    );
    spec.append = std::fs::read_to_string(image.join("cmdline")).unwrap();
    spec.memory_mib = 2048;
    let mut vm = RunningVm::start(&spec).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_serial("ee-init: FATAL: no launch config", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_serial("/bin/sh: can't access tty", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// name -> data of a newc cpio archive (an independent reader: 110-byte
/// header, name and data each padded to 4 bytes).
fn cpio_entries(cpio: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let field = |at: usize, i: usize| {
        let text = std::str::from_utf8(&cpio[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
        usize::from_str_radix(text, 16).unwrap()
    };
    let pad = |n: usize| (n + 3) & !3;
    let mut entries = BTreeMap::new();
    let mut at = 0;
    loop {
        assert_eq!(&cpio[at..at + 6], b"070701");
        let (size, name_size) = (field(at, 6), field(at, 11));
        let name = std::str::from_utf8(&cpio[at + 110..at + 110 + name_size - 1]).unwrap();
        if name == "TRAILER!!!" {
            return entries;
        }
        let data_at = pad(at + 110 + name_size);
        entries.insert(name.to_owned(), cpio[data_at..data_at + size].to_vec());
        at = pad(data_at + size);
    }
}

/// A lock holding only the kernel packages, for a configuration without
/// other packages, and a cache whose files do not match it.
fn tampered_setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let lock_text = std::fs::read_to_string(workspace().join("image/ee-image.lock")).unwrap();
    let mut lock: serde_json::Value = serde_json::from_str(&lock_text).unwrap();
    let packages = lock["packages"].as_array_mut().unwrap();
    packages.retain(|p| p["role"] == "kernel");
    assert_eq!(packages.len(), 3);
    let cache = dir.join("cache");
    std::fs::create_dir(&cache).unwrap();
    for p in packages.iter() {
        let sha = p["sha256"].as_str().unwrap();
        std::fs::write(cache.join(format!("{sha}.deb")), b"not the package").unwrap();
    }
    let lock_path = dir.join("ee-image.lock");
    std::fs::write(&lock_path, lock.to_string()).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config()).unwrap()).unwrap();
    config["packages"] = serde_json::json!([]);
    config["dev_packages"] = serde_json::json!([]);
    let config_path = dir.join("ee-image.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    (config_path, lock_path, cache)
}

#[test]
fn a_package_that_does_not_match_the_lock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, lock, cache) = tampered_setup(dir.path());
    let init = dir.path().join("init");
    std::fs::write(&init, b"init").unwrap();
    let output = ee_image(&[
        "build",
        "--config",
        s(&config),
        "--lock",
        s(&lock),
        "--deb-cache",
        s(&cache),
        "--ee-init",
        &format!("sim={}", s(&init)),
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let bogus = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"not the package"));
    // Names the package, the file, the digest found and the one pinned.
    assert!(stderr.contains("package linux-base-"), "{stderr}");
    assert!(stderr.contains(&format!("has sha256 {bogus}")), "{stderr}");
    assert!(stderr.contains("the lock pins "), "{stderr}");
    assert!(!dir.path().join("out/sim/initrd.img").exists());
}

#[test]
fn a_lock_without_a_configured_package_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, lock, cache) = tampered_setup(dir.path());
    let mut text: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    text["packages"] = serde_json::json!(["runc"]);
    std::fs::write(&config, text.to_string()).unwrap();
    let output = ee_image(&[
        "build",
        "--config",
        s(&config),
        "--lock",
        s(&lock),
        "--deb-cache",
        s(&cache),
        "--ee-init",
        "sim=/nonexistent",
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs package runc (Base) but the lock does not pin it"),
        "{stderr}"
    );
}
