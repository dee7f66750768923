//! Boot a kernel and initramfs under QEMU with TCG (software emulation), for
//! boot tests and local smoke runs on machines without TDX or usable KVM.
//!
//! The VM gets the shape the guest sees on a TDX host where it matters to
//! `ee-init`: q35, a virtio-net NIC on user-mode networking with host port
//! forwards, the launch config as the fw_cfg file
//! [`LAUNCH_CONFIG_FW_CFG_NAME`], and the serial console (`ttyS0`) written to
//! a log file. The command line comes from [`ee_qemu`], the builder
//! `ee-host` renders its VMs with, so both boot the guest the same way.
//! [`RunningVm`] kills QEMU when dropped, so a failing test does not leave
//! it running.
//!
//! The guest kernel is found through [`kernel_cache_dir`]: the cache that
//! `scripts/install-deps` fills (`EE_KERNEL_DIR`, default
//! `/var/cache/easy-enclave/kernel`).

use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use easyenclave::launch::Protocol;
use ee_qemu::{Accel, ArgvError, FwCfgFile, HostForward, Machine, Network, QemuArgs};
use thiserror::Error;

pub use easyenclave::launch::FW_CFG_NAME as LAUNCH_CONFIG_FW_CFG_NAME;
/// Environment variable naming the guest kernel cache.
pub const KERNEL_DIR_ENV: &str = "EE_KERNEL_DIR";
/// Kernel cache used when [`KERNEL_DIR_ENV`] is unset.
pub const DEFAULT_KERNEL_DIR: &str = "/var/cache/easy-enclave/kernel";
/// How often the serial log and QEMU's status are checked while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How many bytes of the serial log an error message quotes.
const LOG_TAIL_BYTES: usize = 3000;

/// Why a VM could not be started or did not do what was awaited.
#[derive(Debug, Error)]
pub enum VmError {
    /// The kernel cache is missing or incomplete.
    #[error(
        "guest kernel not found: {missing} does not exist (kernel cache {dir}, set by \
         {KERNEL_DIR_ENV}). Run `sudo scripts/install-deps` to download it."
    )]
    KernelMissing {
        /// The cache directory.
        dir: PathBuf,
        /// The file or directory that is missing.
        missing: PathBuf,
    },
    /// A path cannot be passed to QEMU.
    #[error("QEMU command line: {0}")]
    Argv(#[from] ArgvError),
    /// QEMU could not be started.
    #[error("starting {qemu}: {source} (is qemu-system-x86 installed? run scripts/install-deps)")]
    Spawn {
        /// The QEMU binary.
        qemu: PathBuf,
        /// The error from exec.
        source: std::io::Error,
    },
    /// Reading or creating a log file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU exited before the awaited text appeared.
    #[error("QEMU exited ({status}) after {elapsed:?} before {awaited:?} appeared on the serial console\n--- QEMU stderr ---\n{stderr}\n--- serial console (tail) ---\n{serial}")]
    Exited {
        /// QEMU's exit status.
        status: ExitStatus,
        /// Time since start.
        elapsed: Duration,
        /// The awaited text.
        awaited: String,
        /// QEMU's own messages.
        stderr: String,
        /// The end of the serial log.
        serial: String,
    },
    /// The awaited event did not happen in time.
    #[error("timed out after {timeout:?} waiting for {awaited}\n--- serial console (tail) ---\n{serial}")]
    Timeout {
        /// The timeout.
        timeout: Duration,
        /// What was awaited.
        awaited: String,
        /// The end of the serial log.
        serial: String,
    },
}

/// The guest kernel from the cache that `scripts/install-deps` fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    /// The kernel as Debian ships it: a compressed bzImage with an EFI stub
    /// (what OVMF boots in a TD, and what RTMR1 measures).
    pub vmlinuz: PathBuf,
    /// The same kernel uncompressed (ELF with a PVH entry point). QEMU boots
    /// it directly, skipping the decompressor that takes seconds under TCG;
    /// from the entry point on, the kernel runs the same code.
    pub vmlinux: PathBuf,
    /// Its modules directory (`.../lib/modules/<release>`, with modules.dep).
    pub modules_dir: PathBuf,
}

/// The kernel cache directory: `$EE_KERNEL_DIR` or [`DEFAULT_KERNEL_DIR`].
pub fn kernel_cache_dir() -> PathBuf {
    std::env::var_os(KERNEL_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KERNEL_DIR))
}

impl GuestKernel {
    /// Find `vmlinuz`, `vmlinux` and `modules/modules.dep` in the kernel
    /// cache `dir`.
    pub fn from_cache(dir: &Path) -> Result<Self, VmError> {
        let vmlinuz = dir.join("vmlinuz");
        let vmlinux = dir.join("vmlinux");
        let modules_dir = dir.join("modules");
        for needed in [
            vmlinuz.clone(),
            vmlinux.clone(),
            modules_dir.join("modules.dep"),
        ] {
            if !needed.is_file() {
                return Err(VmError::KernelMissing {
                    dir: dir.to_owned(),
                    missing: needed,
                });
            }
        }
        Ok(GuestKernel {
            vmlinuz,
            vmlinux,
            modules_dir,
        })
    }
}

/// A host port forwarded to a guest TCP port (`hostfwd`), host side bound
/// to 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// Port on 127.0.0.1.
    pub host: u16,
    /// Port in the guest.
    pub guest: u16,
}

/// What to boot and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// QEMU binary (default `qemu-system-x86_64` from PATH).
    pub qemu: PathBuf,
    /// Kernel image: a bzImage, or an ELF vmlinux with a PVH entry point.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Kernel command line (should include `console=ttyS0`).
    pub append: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// File passed as the fw_cfg entry [`LAUNCH_CONFIG_FW_CFG_NAME`].
    pub launch_config: Option<PathBuf>,
    /// TCP forwards from the host's loopback into the guest.
    pub forwards: Vec<PortForward>,
    /// Where the serial console is written; QEMU's own stdout and stderr go
    /// to the same path with `.qemu` appended.
    pub serial_log: PathBuf,
}

impl VmSpec {
    /// A 1-CPU, 1 GiB VM with `console=ttyS0 panic=-1` (a kernel panic
    /// ends QEMU at once instead of hanging until the timeout).
    pub fn new(kernel: PathBuf, initrd: PathBuf, serial_log: PathBuf) -> Self {
        VmSpec {
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel,
            initrd,
            append: "console=ttyS0 panic=-1".into(),
            memory_mib: 1024,
            cpus: 1,
            launch_config: None,
            forwards: Vec::new(),
            serial_log,
        }
    }

    /// What QEMU is told: the host's builder ([`ee_qemu::QemuArgs`]) with
    /// TCG, no `-name`, QMP or vsock, no NIC option ROM, and the forwards
    /// on 127.0.0.1.
    pub fn qemu_args(&self) -> QemuArgs {
        QemuArgs {
            name: None,
            machine: Machine::Plain {
                accels: vec![Accel::Tcg],
            },
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            append: self.append.clone(),
            fw_cfg: self
                .launch_config
                .iter()
                .map(|file| FwCfgFile {
                    name: LAUNCH_CONFIG_FW_CFG_NAME.to_owned(),
                    file: file.clone(),
                })
                .collect(),
            serial_log: self.serial_log.clone(),
            network: Network::User {
                forwards: self
                    .forwards
                    .iter()
                    .map(|f| HostForward {
                        protocol: Protocol::Tcp,
                        address: Ipv4Addr::LOCALHOST,
                        host_port: f.host,
                        guest_port: f.guest,
                    })
                    .collect(),
            },
            mac: None,
            // The guest boots from -kernel, never from the network.
            no_nic_rom: true,
            vsock_cid: None,
            qmp_socket: None,
        }
    }

    /// QEMU's arguments (without the program name).
    pub fn args(&self) -> Result<Vec<String>, VmError> {
        Ok(self.qemu_args().argv()?)
    }
}

/// A running QEMU process. Dropping it kills QEMU.
#[derive(Debug)]
pub struct RunningVm {
    child: Child,
    serial_log: PathBuf,
    qemu_log: PathBuf,
    started: Instant,
    exit: Option<ExitStatus>,
}

impl RunningVm {
    /// Start QEMU for `spec`.
    pub fn start(spec: &VmSpec) -> Result<Self, VmError> {
        let mut qemu_log = spec.serial_log.clone().into_os_string();
        qemu_log.push(".qemu");
        let qemu_log = PathBuf::from(qemu_log);
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| VmError::Io { path, source }
        };
        // Create the serial log now, so that waiting never races its creation.
        File::create(&spec.serial_log).map_err(io_err(&spec.serial_log))?;
        let stdout = File::create(&qemu_log).map_err(io_err(&qemu_log))?;
        let stderr = stdout.try_clone().map_err(io_err(&qemu_log))?;
        let started = Instant::now();
        let args = spec.args()?;
        let child = Command::new(&spec.qemu)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| VmError::Spawn {
                qemu: spec.qemu.clone(),
                source,
            })?;
        Ok(RunningVm {
            child,
            serial_log: spec.serial_log.clone(),
            qemu_log,
            started,
            exit: None,
        })
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The serial console output so far (invalid UTF-8 replaced).
    pub fn serial(&self) -> Result<String, VmError> {
        read_lossy(&self.serial_log)
    }

    /// Wait until `needle` appears on the serial console; returns the time
    /// since start. Fails if QEMU exits first or `timeout` passes.
    pub fn wait_for_serial(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<Duration, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Check the log before the exit status, so output written just
            // before a power-off still counts.
            if self.serial()?.contains(needle) {
                return Ok(self.elapsed());
            }
            if let Some(status) = self.try_exit()? {
                if self.serial()?.contains(needle) {
                    return Ok(self.elapsed());
                }
                return Err(VmError::Exited {
                    status,
                    elapsed: self.elapsed(),
                    awaited: needle.to_owned(),
                    stderr: read_lossy(&self.qemu_log)?,
                    serial: tail(&self.serial()?),
                });
            }
            if Instant::now() >= deadline {
                return Err(VmError::Timeout {
                    timeout,
                    awaited: format!("{needle:?} on the serial console"),
                    serial: tail(&self.serial()?),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Wait for QEMU to exit on its own (guest power-off).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(VmError::Timeout {
                    timeout,
                    awaited: "QEMU to exit".into(),
                    serial: tail(&self.serial()?),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn try_exit(&mut self) -> Result<Option<ExitStatus>, VmError> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|source| VmError::Io {
                path: PathBuf::from("<qemu process>"),
                source,
            })?;
        }
        Ok(self.exit)
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // Errors mean it already exited; nothing else to do in drop.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a host forward.
/// Another process may take it before QEMU binds it; tests accept that race.
pub fn free_local_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn read_lossy(path: &Path) -> Result<String, VmError> {
    match fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(source) => Err(VmError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The last [`LOG_TAIL_BYTES`] of `text`, cut at a character boundary.
fn tail(text: &str) -> String {
    let mut start = text.len().saturating_sub(LOG_TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_has_forwards_fw_cfg_and_escaped_paths() {
        let mut spec = VmSpec::new("/k/vmlinuz".into(), "/i/initrd".into(), "/l/a,b.log".into());
        spec.launch_config = Some("/c/launch.json".into());
        spec.forwards = vec![PortForward {
            host: 18080,
            guest: 8080,
        }];
        let args = spec.args().unwrap();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(after("-accel"), "tcg");
        assert_eq!(after("-kernel"), "/k/vmlinuz");
        assert_eq!(after("-initrd"), "/i/initrd");
        assert_eq!(after("-chardev"), "file,id=serial0,path=/l/a,,b.log");
        assert_eq!(
            after("-netdev"),
            "user,id=net0,hostfwd=tcp:127.0.0.1:18080-:8080"
        );
        assert_eq!(
            after("-fw_cfg"),
            "name=opt/easyenclave/launch.json,file=/c/launch.json"
        );
        assert_eq!(after("-device"), "virtio-net-pci,netdev=net0,romfile=");
        assert_eq!(after("-m"), "1024M");
        assert!(args.contains(&"-no-reboot".to_string()));
        assert!(!args.contains(&"-qmp".to_string()));
    }

    #[test]
    fn missing_kernel_cache_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = GuestKernel::from_cache(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scripts/install-deps"), "{msg}");
        assert!(msg.contains("vmlinuz"), "{msg}");
    }

    #[test]
    fn tail_cuts_at_char_boundaries() {
        let text = format!("{}é", "x".repeat(LOG_TAIL_BYTES - 1));
        let t = tail(&text);
        assert!(t.ends_with('é'));
        assert!(t.len() <= LOG_TAIL_BYTES);
    }
}
