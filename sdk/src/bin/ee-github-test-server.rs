//! A local GitHub-API-compatible server for tests.
fn main() {}
