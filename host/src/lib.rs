//! `ee-host`: launch and manage Easy Enclave trust domains on a host.
//!
//! One VM spec ([`spec::VmSpec`], JSON, versioned) describes a trust domain:
//! its image (kernel, initrd, command line), firmware, shape, port forwards,
//! the quote generation service and the launch config handed to the guest.
//! The spec renders to a QEMU command line ([`qemu`]) and to a libvirt domain
//! ([`libvirt`]); [`vm`] starts, lists, inspects and stops VMs, keeping one
//! JSON record per VM in a state directory ([`state`]). [`preflight`] checks
//! that a host can run TDX trust domains and says how to fix what is missing.
//!
//! Two modes share the spec: `tdx` (a real trust domain: TDVF firmware,
//! `tdx-guest` object, KVM) and `dev` (the same guest under plain QEMU, TCG or
//! KVM, for machines without TDX).

pub mod forward;
pub mod image;
pub mod libvirt;
pub mod preflight;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod spec;
pub mod state;
pub mod tdvf;
pub mod vm;

/// fw_cfg file name under which the guest's `ee-init` finds the launch config
/// (`/sys/firmware/qemu_fw_cfg/by_name/opt/easyenclave/launch.json/raw`).
/// QEMU reserves names outside `opt/` for itself.
pub const LAUNCH_CONFIG_FW_CFG_NAME: &str = "opt/easyenclave/launch.json";
