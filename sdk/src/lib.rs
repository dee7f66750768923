//! Easy Enclave SDK: the project's shared vocabulary.
//!
//! Every format that crosses a trust boundary lives here and nowhere else:
//! TDX quotes ([`quote`]), DCAP verification under an explicit policy
//! ([`verify`]), collateral and its cache ([`collateral`]), the RTMR3 runtime
//! event log ([`eventlog`]), allowlists ([`allowlist`]) and the attestation
//! document with its REPORTDATA binding ([`attestation`]).
//!
//! Cargo features: `verify` (dcap-qvl), `fetch` (blocking HTTP: collateral
//! services, GitHub), `cli` (the `ee` tool), `sim` (a simulated TDX platform
//! for tests and dev images), `test-server` (a local GitHub-compatible server).

#![forbid(unsafe_code)]

pub mod allowlist;
pub mod attestation;
#[cfg(feature = "bundle")]
pub mod bundle;
pub mod canonical;
pub mod deploy;
pub mod eventlog;
pub mod hexser;
pub mod image_manifest;
pub mod input;
pub mod launch;
pub mod module_list;
pub mod quote;
pub mod rtmr;
pub mod sim_registers;

#[cfg(feature = "verify")]
pub mod collateral;
#[cfg(feature = "verify")]
pub mod verify;

#[cfg(feature = "fetch")]
pub mod connect;
#[cfg(feature = "github")]
pub mod github;

#[cfg(feature = "agent-client")]
pub mod agent;

#[cfg(feature = "ratls")]
pub mod ratls;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "test-server")]
pub mod testing;
