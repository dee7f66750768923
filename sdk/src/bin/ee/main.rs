//! `ee`: the Easy Enclave command-line tool.
fn main() {}
