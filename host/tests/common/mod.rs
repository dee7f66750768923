//! Shared helpers for ee-host's integration tests: a temporary host layout
//! (image directory, TDVF-shaped firmware, state directory), spec builders,
//! and running the `ee-host` binary with the fake QEMU.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// The fake QEMU (a Python script) in this directory.
pub fn fake_qemu() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-qemu")
}

/// OVMF GUIDed table footer and TDVF metadata GUIDs in on-disk byte order
/// (see src/tdvf.rs; written out again here so the fixture does not depend
/// on the code under test).
const FOOTER_GUID: [u8; 16] = [
    0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d,
];
const TDVF_GUID: [u8; 16] = [
    0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47, 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2,
];

/// A 64 KiB firmware-shaped file: a "TDVF" descriptor at 0x1000, and at the
/// end the OVMF table with one TDVF metadata entry and the footer, laid out
/// as edk2's ResetVectorVtf0.asm does.
pub fn synthetic_tdvf() -> Vec<u8> {
    let size = 64 * 1024;
    let descriptor_at = 0x1000;
    let mut fw = vec![0u8; size];
    fw[descriptor_at..descriptor_at + 16].copy_from_slice(
        &[
            &b"TDVF"[..],
            &16u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &0u32.to_le_bytes(),
        ]
        .concat(),
    );
    // Table, from its start: entry data (u32 offset from the end), u16 entry
    // length 22, GUID; then the footer's u16 table length 40 and GUID; then
    // 32 bytes of reset vector.
    let mut table = Vec::new();
    table.extend_from_slice(&((size - descriptor_at) as u32).to_le_bytes());
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&TDVF_GUID);
    table.extend_from_slice(&40u16.to_le_bytes());
    table.extend_from_slice(&FOOTER_GUID);
    table.extend_from_slice(&[0x90; 32]);
    let start = size - table.len();
    fw[start..].copy_from_slice(&table);
    fw
}

/// A temporary host: `image/` (kernel, initrd, cmdline), `firmware/tdvf.fd`,
/// and `state/` as the state directory.
pub struct Fixture {
    pub dir: TempDir,
    /// The QEMU `ee-host` runs: the fake one unless [`Fixture::with_qemu`].
    qemu: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("eeh").tempdir().unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir_all(&image).unwrap();
        std::fs::write(image.join("vmlinuz"), b"not really a kernel").unwrap();
        std::fs::write(image.join("initrd.img"), b"not really an initrd").unwrap();
        std::fs::write(
            image.join("cmdline"),
            "console=ttyS0 panic=-1 ee.image=agent-v1\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("firmware")).unwrap();
        std::fs::write(dir.path().join("firmware/tdvf.fd"), synthetic_tdvf()).unwrap();
        Fixture {
            dir,
            qemu: fake_qemu(),
        }
    }

    /// The same fixture, with `ee-host` running `qemu` instead of the fake.
    pub fn with_qemu(mut self, qemu: impl Into<PathBuf>) -> Self {
        self.qemu = qemu.into();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Write `spec` as `<name>.json` and return its path.
    pub fn write_spec(&self, file: &str, spec: &Value) -> PathBuf {
        let path = self.path().join(file);
        std::fs::write(&path, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
        path
    }

    /// `ee-host` with this fixture's state directory and the fake QEMU.
    pub fn ee_host(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ee-host"));
        cmd.env("EE_HOST_STATE_DIR", self.state())
            .env("EE_HOST_QEMU", &self.qemu)
            .env_remove("FAKE_QEMU_FAIL")
            // Tests read the human log format; one test sets JSON itself.
            .env_remove("EE_LOG_FORMAT")
            .env_remove("RUST_LOG")
            .env_remove("FAKE_QEMU_IGNORE_POWERDOWN");
        cmd
    }

    /// Run `ee-host args...` and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.ee_host().args(args).output().unwrap()
    }

    /// Run and require success; return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ee-host {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `status NAME --json` as JSON (any exit status).
    pub fn status(&self, name: &str) -> Value {
        let out = self.run(&["status", name, "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status {name}: {e}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// A dev-mode spec forwarding `host_port` to the agent port 8443.
pub fn dev_spec(name: &str, host_port: u16) -> Value {
    json!({
        "version": 1,
        "name": name,
        "mode": "dev",
        "image": "image",
        "cpus": 1,
        "memory_mib": 512,
        "ports": [{"host_port": host_port, "guest_port": 8443}],
        "launch": {
            "version": 1,
            "repo": "easy-enclave/demo",
            "endpoint": "https://demo.example.com"
        }
    })
}

/// The TDX spec the golden files are rendered from.
pub fn tdx_spec() -> Value {
    json!({
        "version": 1,
        "name": "agent",
        "mode": "tdx",
        "image": "image",
        "firmware": "firmware/tdvf.fd",
        "cpus": 2,
        "memory_mib": 4096,
        "ports": [
            {"host_port": 28443, "guest_port": 8443, "address": "0.0.0.0"},
            {"host_port": 28080, "guest_port": 80, "address": "0.0.0.0"}
        ],
        "launch": {
            "version": 1,
            "repo": "easy-enclave/demo",
            "endpoint": "https://demo.example.com",
            "forwarded_ports": [{"protocol": "tcp", "host_port": 28080, "guest_port": 80}],
            "image_id": "agent-v1"
        }
    })
}

/// An allowlist (`easyenclave::allowlist` format) for the fixture image:
/// `2cpu-4g` is the only entry for 2 vCPUs and 4096 MiB (the TDX spec's
/// shape), `1cpu-512m-a` and `1cpu-512m-b` are both for 1 vCPU and 512 MiB
/// (the dev spec's). Entry `i`'s registers are bytes `0x10 + i` (MRTD),
/// `0x20 + i` (RTMR0), `0x30 + i` (RTMR1) and `0x40 + i` (RTMR2).
pub fn allowlist() -> Value {
    let entry = |i: u8, name: &str, cpus: u32, memory_mib: u32| {
        let register = |base: u8| format!("{:02x}", base + i).repeat(48);
        json!({
            "name": name,
            "mrtd": register(0x10), "rtmr0": register(0x20),
            "rtmr1": register(0x30), "rtmr2": register(0x40),
            "profile": {"qemu_version": "10.1.0", "ovmf": "ab".repeat(32),
                        "cpus": cpus, "memory_mib": memory_mib, "variant": "dev"}
        })
    };
    json!({
        "version": 1,
        "image_id": "agent-v1",
        "entries": [
            entry(0, "2cpu-4g", 2, 4096),
            entry(1, "1cpu-512m-a", 1, 512),
            entry(2, "1cpu-512m-b", 1, 512),
        ],
        "xfam": {"accepted": ["0x00000000000602e7"]}
    })
}

/// A TCP port that is free right now (the kernel picks it).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct TCP ports that are free right now: all are held while the
/// kernel picks the next, so none repeats.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Poll `check` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Whether a process with this pid exists and is not a zombie.
pub fn process_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}
