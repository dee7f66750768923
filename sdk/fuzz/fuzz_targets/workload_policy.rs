//! The workload policy reads whatever `docker compose config` printed for
//! a bundle's project: checking it must never panic, and a render compared
//! with itself never counts as a private value steering the project.
#![no_main]

use std::path::Path;

use easyenclave::workload_policy::{check_private_env_confined, images_pinned, WorkloadPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rendered) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = WorkloadPolicy::v1().check(&rendered, Path::new("/run/ee/deployments/d1/bundle"));
    let _ = images_pinned(&rendered, &["hello:1".to_owned()]);
    assert!(
        check_private_env_confined(&rendered, &rendered).is_ok(),
        "a render differs from itself"
    );
});
