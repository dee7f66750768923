//! What the project's verifier costs on top of dcap-qvl.
//!
//! Same quote (Intel's v4 sample), same run, collateral from a warm cache:
//! - `dcap_qvl_verify`: dcap-qvl's `QuoteVerifier::verify` called directly
//!   with collateral already in memory — the floor.
//! - `easyenclave_verify`: the project's `Verifier::verify` (parse, DCAP,
//!   policy), collateral already in memory.
//! - `easyenclave_cached`: a collateral lookup in a warm `CollateralCache`
//!   followed by `Verifier::verify` — what a long-running verifier does per
//!   quote.
//!
//! The sample is located through `cargo metadata`, as in the tests.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use dcap_qvl::verify::QuoteVerifier;
use easyenclave::collateral::{CacheKey, Collateral, CollateralCache, CollateralSource};
use easyenclave::verify::{Policy, Verifier};

/// Inside `tdx_quote`'s collateral window.
const NOW: u64 = 1_750_329_200;

fn bench_verify(c: &mut Criterion) {
    let quote = common::sample("tdx_quote");
    let json = common::sample("tdx_quote_collateral.json");
    let collateral = Collateral::from_json(&json).expect("collateral parses");

    let cache_dir = tempfile::tempdir().expect("tempdir");
    let cache = CollateralCache::new(cache_dir.path());
    let key = CacheKey::new(
        CollateralSource::IntelPcs,
        collateral.fmspc().expect("fmspc"),
        collateral.pck_crl_ca().expect("ca"),
    );
    cache.put(&key, &collateral).expect("cache put");
    assert!(cache.get(&key, NOW).hit().is_some(), "cache is warm");

    let dcap = QuoteVerifier::new_prod();
    let ours = Verifier::new(Policy::default());
    dcap.verify(&quote, collateral.as_dcap(), NOW)
        .expect("dcap verifies");
    ours.verify(&quote, &collateral, NOW)
        .expect("ours verifies");

    let mut group = c.benchmark_group("verify_tdx_quote_v4");
    group.bench_function("dcap_qvl_verify", |b| {
        b.iter(|| dcap.verify(&quote, collateral.as_dcap(), NOW).expect("ok"))
    });
    group.bench_function("easyenclave_verify", |b| {
        b.iter(|| ours.verify(&quote, &collateral, NOW).expect("ok"))
    });
    group.bench_function("easyenclave_cached", |b| {
        b.iter(|| {
            let collateral = cache.get(&key, NOW).hit().expect("warm");
            ours.verify(&quote, &collateral, NOW).expect("ok")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
