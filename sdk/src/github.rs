//! Blocking GitHub REST client (github.com or a GitHub Enterprise Server base URL). (in progress)
