//! ee-init: PID1 of an Easy Enclave TDX trust domain.
//!
//! It mounts the base filesystems, loads the image's kernel modules, reads
//! the host's launch config and measures it into RTMR3 before using it,
//! brings up the network, supervises the image's services and reaps every
//! zombie, serves the agent API (health, fresh quotes), and powers the TD
//! off on SIGTERM or the ACPI power button. See `boot` for the order.
//!
//! No async runtime; `unsafe` only in [`tsm::ioctl`]. Every filesystem path is
//! resolved under a configurable root ([`root::FsRoot`]) so the logic runs in
//! host tests (`--dev-run`).
//!
//! Dependencies point one way, down: `boot` → `api` → `deploy` (its
//! `seal` included) → the shared pieces (`http`, `tls`, `measured`, `tsm`,
//! `supervisor`, `dev_image`, `spawn`, `root`, ...). Nothing below reaches
//! back up; what two layers share lives in a module beneath both (the dev
//! image's marker, read by `boot` and unlinked by `deploy::seal`, is in
//! [`dev_image`]).

#![deny(unsafe_code)]

pub mod console;

pub mod api;
pub mod boot;
pub mod deploy;
pub mod dev_image;
pub mod dhcp;
pub mod http;
pub mod launch;
pub mod measured;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod power;
pub mod ratelimit;
pub mod root;
pub mod signals;
pub mod spawn;
pub mod supervisor;
pub mod tls;
pub mod tsm;
