//! The workload policy on a realistic rendered project: six services (web,
//! api, worker, db, cache, proxy) with ports, environment, named volumes,
//! binds inside the bundle, tmpfs, capabilities, healthchecks and networks,
//! shaped like `docker compose config --format json` output.
//!
//! `cargo bench -p easyenclave --bench workload_policy`

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use easyenclave::workload_policy::{check_private_env_confined, images_pinned, WorkloadPolicy};
use serde_json::{json, Value};

const BUNDLE: &str = "/run/ee/deploy/d1/bundle";

fn service(name: &str, image: &str) -> Value {
    json!({
        "image": image,
        "command": null,
        "entrypoint": null,
        "environment": {"API_KEY": "ee-private-value", "MODE": "production", "SERVICE": name,
                         "DB_URL": "postgres://app:ee-private-value@db/app"},
        "ports": [{"mode": "ingress", "target": 8080, "published": "8080", "protocol": "tcp"}],
        "networks": {"default": null, "backend": null},
        "volumes": [
            {"type": "volume", "source": "data", "target": "/data", "volume": {}},
            {"type": "bind", "source": format!("{BUNDLE}/config/{name}"), "target": "/etc/app",
             "read_only": true, "bind": {"create_host_path": true}},
            {"type": "tmpfs", "target": "/tmp"}
        ],
        "cap_drop": ["ALL"],
        "cap_add": ["NET_BIND_SERVICE", "CHOWN", "SETUID", "SETGID"],
        "security_opt": ["no-new-privileges:true"],
        "sysctls": {"net.core.somaxconn": "1024"},
        "healthcheck": {"test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/health"],
                        "interval": "5s", "timeout": "2s", "retries": 3},
        "restart": "unless-stopped",
        "depends_on": {"db": {"condition": "service_healthy", "required": true}},
        "labels": {"com.example.role": name}
    })
}

fn project() -> Value {
    let digest = format!("@sha256:{}", "ab".repeat(32));
    let mut services = serde_json::Map::new();
    for (name, image) in [
        ("web", "app-web:1".to_owned()),
        ("api", "app-api:1".to_owned()),
        ("worker", "app-worker:1".to_owned()),
        ("db", format!("postgres{digest}")),
        ("cache", format!("redis{digest}")),
        ("proxy", format!("nginx{digest}")),
    ] {
        services.insert(name.to_owned(), service(name, &image));
    }
    json!({
        "name": "ee-d1",
        "services": services,
        "networks": {"default": {"name": "ee-d1_default", "ipam": {}},
                     "backend": {"name": "ee-d1_backend", "internal": true, "ipam": {}}},
        "volumes": {"data": {"name": "ee-d1_data"}},
        "secrets": {"key": {"name": "ee-d1_key", "file": format!("{BUNDLE}/key.txt")}}
    })
}

fn bench(c: &mut Criterion) {
    let policy = WorkloadPolicy::v1();
    let public = project();
    let mut private = public.clone();
    for service in ["web", "api", "worker"] {
        private["services"][service]["environment"]["API_KEY"] = json!("s3cret-value");
    }
    let carried = vec![
        "app-web:1".to_owned(),
        "app-api:1".to_owned(),
        "app-worker:1".to_owned(),
    ];
    let text = serde_json::to_vec(&public).unwrap_or_default();
    assert!(policy.check(&public, Path::new(BUNDLE)).is_ok());
    assert!(check_private_env_confined(&public, &private).is_ok());
    assert!(images_pinned(&public, &carried));

    c.bench_function("policy: check (6 services)", |b| {
        b.iter(|| policy.check(black_box(&public), Path::new(BUNDLE)))
    });
    c.bench_function("policy: private env confined (6 services)", |b| {
        b.iter(|| check_private_env_confined(black_box(&public), black_box(&private)))
    });
    c.bench_function(
        "policy: parse both renders + check + confine + pinned",
        |b| {
            b.iter(|| {
                let public: Value = serde_json::from_slice(black_box(&text)).unwrap_or_default();
                let private: Value = serde_json::from_slice(black_box(&text)).unwrap_or_default();
                let ok = policy.check(&public, Path::new(BUNDLE)).is_ok()
                    && check_private_env_confined(&public, &private).is_ok();
                (ok, images_pinned(&public, &carried))
            })
        },
    );
    c.bench_function("policy: digest", |b| b.iter(|| policy.digest()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
