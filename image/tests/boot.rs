//! Boot test: Debian's cloud kernel (from the cache that
//! `scripts/install-deps` fills, booted as the uncompressed vmlinux through
//! its PVH entry point) boots an initramfs packed by `ee-image initramfs`
//! under QEMU TCG. The initramfs's /init is a tiny static C program
//! (tests/data/test_init.c) that loads the packed modules in the listed
//! order, prints the launch config it reads over fw_cfg and whether the
//! virtio NIC appeared, then powers off.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ee_image::vm::{free_local_port, PortForward, RunningVm, VmSpec};

/// Generous limits: the boot takes 5-7 s on this 2-core machine (see
/// image/README.md) and can take several times that when other work
/// loads it.
const MARKER_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// errno ENODEV: tdx_guest refuses to load on a CPU without the TDX guest
/// feature, and TCG emulates no TDX.
const ENODEV: i32 = 19;

#[test]
fn test_init_boots_loads_modules_reads_fw_cfg_and_powers_off() {
    let kernel = common::guest_kernel();
    let dir = tempfile::tempdir().unwrap();
    let init = common::build_test_init(dir.path());
    let initrd = dir.path().join("initrd.img");
    let args = common::initramfs_args(&init, &kernel, &initrd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::ee_image(&args, &[]);

    // A value the guest can only print if it really read the fw_cfg file.
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let config_text = format!("{{\"version\":1,\"nonce\":\"{nonce}\"}}");
    let config = dir.path().join("launch.json");
    fs::write(&config, &config_text).unwrap();

    let mut spec = VmSpec::new(
        kernel.vmlinux.clone(),
        initrd,
        dir.path().join("serial.log"),
    );
    spec.launch_config = Some(config);
    spec.forwards = vec![PortForward {
        host: free_local_port().unwrap(),
        guest: 8080,
    }];
    let mut vm = RunningVm::start(&spec).unwrap_or_else(|e| panic!("{e}"));
    let to_marker = vm
        .wait_for_serial("EE-TEST-INIT: started", MARKER_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = vm
        .wait_for_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let to_exit = vm.elapsed();
    eprintln!("TCG boot: /init ran after {to_marker:.2?}, QEMU exited after {to_exit:.2?}");
    let serial = vm.serial().unwrap();
    assert!(status.success(), "QEMU exit status {status}\n{serial}");
    assert!(serial.contains("EE-TEST-INIT: powering off"), "{serial}");

    // Module results in the order /init reported them.
    let results: Vec<(String, String)> = serial
        .lines()
        .filter_map(|l| l.strip_prefix("ee-test: module "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, result)| (name.to_owned(), result.to_owned()))
        .collect();
    let position: BTreeMap<&str, usize> = results
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let at = |name: &str| {
        *position
            .get(name)
            .unwrap_or_else(|| panic!("module {name} not reported\n{serial}"))
    };
    // Dependencies (Debian 7.3 modules.dep) load before their users.
    assert!(at("failover") < at("net_failover"), "{results:?}");
    assert!(at("net_failover") < at("virtio_net"), "{results:?}");
    assert!(at("configfs") < at("tsm_report"), "{results:?}");
    assert!(at("tsm_report") < at("tdx_guest"), "{results:?}");
    // virtio_pci is built in: nothing to load.
    assert!(!position.contains_key("virtio_pci"), "{results:?}");
    for (name, result) in &results {
        let expected = if name == "tdx_guest" {
            format!("failed errno {ENODEV}")
        } else {
            "loaded".to_owned()
        };
        assert_eq!(result, &expected, "module {name}\n{serial}");
    }
    assert!(
        serial.contains(&format!("ee-test: launch config: {config_text}")),
        "launch config not read over fw_cfg\n{serial}"
    );
    assert!(serial.contains("ee-test: eth0 present"), "{serial}");
}

#[test]
fn qemu_failing_to_start_reports_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kernel");
    let spec = VmSpec::new(
        missing.clone(),
        dir.path().join("no-such-initrd"),
        dir.path().join("serial.log"),
    );
    let mut vm = RunningVm::start(&spec).unwrap_or_else(|e| panic!("{e}"));
    let err = vm
        .wait_for_serial("never printed", MARKER_TIMEOUT)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ee_image::vm::VmError::Exited { .. }), "{msg}");
    assert!(
        msg.contains("no-such-kernel"),
        "QEMU's complaint is missing: {msg}"
    );
}
