//! Shared helpers for ee-init's integration tests. Each test binary uses a
//! different subset, hence the dead_code allowance where it is included.

pub mod fake_tdx;
pub mod quotes;
pub mod tls_client;
