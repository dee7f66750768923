//! `ee-image`: builds Easy Enclave's guest image.
//!
//! - [`initramfs`]: the reproducible guest initramfs (`/init`, kernel
//!   modules and their load order, extra files), built on [`tree`] and
//!   [`cpio`], with modules resolved by [`kernel_modules`].
//! - [`build`]: the whole guest image from pinned Debian packages (lock
//!   file, package cache, variants, `image.json`).
//! - [`allowlist`]: the easyenclave allowlist for an image and VM shapes.
//! - [`vm`]: boots a kernel and initramfs under QEMU TCG for boot tests.
//! - [`devimage`]: builds the static `ee-init` and packs it into the dev
//!   image directory that `ee-host launch --mode dev` boots.
//! - [`docker_archive`]: `docker save`-format image archives from a
//!   directory tree, for bundles whose images are loaded offline.
//! - [`measure`]: computes a TD's MRTD and RTMR0-2 offline from the
//!   firmware, kernel, initrd, command line, memory size and QEMU version.

#![forbid(unsafe_code)]

pub mod allowlist;
pub mod build;
pub mod cpio;
pub mod devimage;
pub mod docker_archive;
pub mod initramfs;
pub mod kernel_modules;
pub mod measure;
pub mod tree;
pub mod vm;
