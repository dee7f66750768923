//! Test support (feature `test-server`). (in progress)
