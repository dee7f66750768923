//! Easy Enclave SDK: the project's shared vocabulary.
//!
//! Every format that crosses a trust boundary lives here and nowhere else:
//! TDX quotes ([`quote`]), DCAP verification under an explicit policy
//! ([`verify`]), collateral and its cache ([`collateral`]), the RTMR3 runtime
//! event log ([`eventlog`]), allowlists ([`allowlist`]), the attestation
//! document with its REPORTDATA binding ([`attestation`]), deploy bundles
//! ([`bundle`]), the agent's deploy API ([`deploy`]) and its RA-TLS
//! certificates ([`ratls`]), the TDX firmware's TDVF metadata ([`tdvf`]).
//! On top of them: verifying a repo's published service ([`connect`]) and
//! talking to a verified agent ([`agent`]).
//!
//! Cargo features: `verify` (dcap-qvl), `github` (the blocking GitHub
//! client), `fetch` (`github` + collateral services + `connect`), `bundle`
//! (zip extraction and digests), `ratls` (certificate issue and parsing),
//! `agent-client` (rustls client verifying RA-TLS), `oidc` (GitHub Actions
//! OIDC tokens as deploy credentials, [`oidc`]), `sim` (a simulated TDX
//! platform for tests and dev images). The guest (`ee-init`) uses `github`,
//! `bundle`, `ratls` and `oidc` only. The `ee` tool is the `ee-cli` crate
//! and test support (the GitHub test server) the `ee-testkit` crate.

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
pub mod percent;
pub mod quote;
pub mod rtmr;
pub mod service_list;
pub mod sim_registers;
pub mod tdvf;
mod versioned;
pub mod workload_policy;

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

#[cfg(feature = "oidc")]
pub mod oidc;

#[cfg(feature = "ratls")]
pub mod ratls;

#[cfg(feature = "sim")]
pub mod sim;
