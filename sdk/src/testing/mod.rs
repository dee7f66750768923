//! Test support (feature `test-server`): local stand-ins for external services.

pub mod github_server;
