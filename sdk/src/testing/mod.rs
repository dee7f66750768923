//! Test support (feature `test-server`): local stand-ins for external
//! services, and what a test does when a real part is missing.

pub mod github_server;
mod unavailable;

pub use unavailable::{unavailable, SKIP_LOG_ENV};
