//! Allowlist format: accepted measurement sets published by the image builder. (in progress)
