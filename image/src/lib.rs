//! `ee-image`: builds Easy Enclave's guest image.
//!
//! - [`initramfs`]: the reproducible guest initramfs (`/init`, kernel
//!   modules and their load order, extra files), built on [`tree`] and
//!   [`cpio`], with modules resolved by [`kernel_modules`].
//! - [`vm`]: boots a kernel and initramfs under QEMU TCG for boot tests.
//! - [`measure`]: computes a TD's MRTD and RTMR0-2 offline from the
//!   firmware, kernel, initrd, command line, memory size and QEMU version.

#![forbid(unsafe_code)]

pub mod cpio;
pub mod initramfs;
pub mod kernel_modules;
pub mod measure;
pub mod tree;
pub mod vm;
