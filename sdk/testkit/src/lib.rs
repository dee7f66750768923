//! Easy Enclave's test kit: local stand-ins for external services, and what
//! a test does when a real part is missing. Used by the tests of every crate
//! of the workspace and by `scripts/demo`; never by a shipped binary.
//!
//! - [`github_server`]: a GitHub-REST-compatible server (also the
//!   `ee-github-test-server` binary) with an Actions OIDC issuer;
//! - [`oidc_signer`]: the committed, public, test-only keys that issuer signs
//!   with, for tests that forge or sign tokens themselves;
//! - [`unavailable`]: a test that cannot reach a real part fails under CI
//!   and records a skip elsewhere.

#![forbid(unsafe_code)]

pub mod firmware;
pub mod github_server;
pub mod oidc_signer;
mod unavailable;

pub use unavailable::{unavailable, SKIP_LOG_ENV};
