//! Instruction-count companion of `benches/verify.rs`: verifies Intel's v4
//! sample quote N times with one verifier, so `valgrind --tool=callgrind`
//! can count what each path costs independently of machine load.
//!
//! `verify_cost dcap|ours|cached N` (run by `scripts/bench`).

use dcap_qvl::verify::QuoteVerifier;
use easyenclave::collateral::{CacheKey, Collateral, CollateralCache, CollateralSource};
use easyenclave::verify::{Policy, Verifier};

#[path = "../tests/common/mod.rs"]
mod common;

/// Inside `tdx_quote`'s collateral window.
const NOW: u64 = 1_750_329_200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let n: u32 = args.next().unwrap_or_else(|| "1".into()).parse()?;
    let quote = common::sample("tdx_quote");
    let collateral = Collateral::from_json(&common::sample("tdx_quote_collateral.json"))?;
    let cache_dir = tempfile::tempdir()?;
    let cache = CollateralCache::new(cache_dir.path());
    let key = CacheKey::new(
        CollateralSource::IntelPcs,
        collateral.fmspc()?,
        collateral.pck_crl_ca()?,
    );
    cache.put(&key, &collateral)?;
    let dcap = QuoteVerifier::new_prod();
    let ours = Verifier::new(Policy::default());
    for _ in 0..n {
        match which.as_str() {
            "dcap" => drop(dcap.verify(&quote, collateral.as_dcap(), NOW)?),
            "ours" => drop(ours.verify(&quote, &collateral, NOW)?),
            "cached" => {
                let warm = cache.get(&key, NOW).hit().ok_or("cache is cold")?;
                drop(ours.verify(&quote, &warm, NOW)?)
            }
            other => return Err(format!("unknown path {other:?}: dcap, ours or cached").into()),
        }
    }
    Ok(())
}
