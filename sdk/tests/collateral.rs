//! DCAP collateral: loading dcap-qvl's sample bundles, their validity
//! windows, the on-disk cache and fetching from a local PCS-compatible server.
//!
//! Expected values come from outside this crate: dcap-qvl's own loader, the
//! sample files (read with `python3 -m json.tool` and `openssl crl|x509 -noout
//! -dates -issuer`), and the verification windows documented in
//! `/work/shared/notes/tdx-facts.md`.

#![cfg(feature = "verify")]

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use easyenclave::collateral::{
    fmspc_and_ca_from_pck_chain, fmspc_and_ca_from_quote, CacheError, CacheKey, CacheLookup,
    Collateral, CollateralCache, CollateralError, CollateralItem, CollateralSource, Fmspc,
    MissReason, PckCa, PckError, Provenance, MAX_COLLATERAL_JSON_BYTES,
};
use serde_json::{json, Value};

const SAMPLES: [&str; 4] = [
    "sgx_quote",
    "tdx_quote",
    "tdx_quote_outdated",
    "tdx_quote_td15ex",
];

/// dcap-qvl's `sample/` folder, located through `cargo metadata`.
fn sample_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(output.status.success(), "cargo metadata failed");
        let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
        let package = metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "dcap-qvl")
            .expect("dcap-qvl in cargo metadata");
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        manifest.parent().unwrap().join("sample")
    })
}

fn sample_bytes(file: &str) -> Vec<u8> {
    fs::read(sample_dir().join(file)).unwrap()
}

fn sample(name: &str) -> Collateral {
    Collateral::from_json(&sample_bytes(&format!("{name}_collateral.json"))).unwrap()
}

fn sample_json(name: &str) -> Value {
    serde_json::from_slice(&sample_bytes(&format!("{name}_collateral.json"))).unwrap()
}

/// The FMSPC shared by `tdx_quote` and `tdx_quote_td15ex` (their TCB info `fmspc`).
fn tdx_fmspc() -> Fmspc {
    "B0C06F000000".parse().unwrap()
}

fn tdx_key() -> CacheKey {
    CacheKey::new(
        CollateralSource::Pccs("http://pccs.invalid".to_owned()),
        tdx_fmspc(),
        PckCa::Platform,
    )
}

// tdx_quote verifies for now in [1750329147, 1752919234] (tdx-facts.md).
const TDX_QUOTE_NOW: u64 = 1_750_329_147;
// tdx_quote_td15ex verifies for now in [1791419306, 1794008710].
const TD15EX_NOW: u64 = 1_791_419_306;

#[test]
fn loads_every_dcap_qvl_sample_exactly_as_dcap_qvl_does() {
    for name in SAMPLES {
        let bytes = sample_bytes(&format!("{name}_collateral.json"));
        let ours = Collateral::from_json(&bytes).unwrap();
        let theirs: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ours.as_dcap(), &theirs, "{name}");
    }
}

#[test]
fn to_json_writes_the_format_dcap_qvl_reads() {
    for name in SAMPLES {
        let collateral = sample(name);
        let written = collateral.to_json();
        assert_eq!(
            Collateral::from_json(&written).unwrap(),
            collateral,
            "{name}"
        );
        let theirs: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(&written).unwrap();
        assert_eq!(&theirs, collateral.as_dcap(), "{name}");
        // Same fields and values as the sample file itself.
        let value: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(value, sample_json(name), "{name}");
    }
}

#[test]
fn validity_windows_contain_the_documented_verification_windows() {
    // (sample, documented window, exact window, latest-issued item, earliest-expiring item).
    // Exact bounds: the QE identity issueDate 2025-06-19T10:32:27Z and PCK CRL
    // nextUpdate Jul 19 10:00:35 2025 GMT for tdx_quote; the PCK CRL lastUpdate
    // Oct 8 00:28:26 2026 GMT and QE identity nextUpdate 2026-11-06T23:45:11Z
    // for td15ex. Every other date in the bundles lies outside these.
    let cases = [
        (
            "tdx_quote",
            (1_750_329_147, 1_752_919_234),
            (1_750_329_147, 1_752_919_235),
            CollateralItem::QeIdentity,
            CollateralItem::PckCrl,
        ),
        (
            "tdx_quote_td15ex",
            (1_791_419_306, 1_794_008_710),
            (1_791_419_306, 1_794_008_711),
            CollateralItem::PckCrl,
            CollateralItem::QeIdentity,
        ),
    ];
    for (name, documented, exact, first, last) in cases {
        let validity = sample(name).validity().unwrap();
        assert!(validity.contains(documented.0), "{name}: {validity}");
        assert!(validity.contains(documented.1), "{name}: {validity}");
        assert_eq!((validity.not_before, validity.not_after), exact, "{name}");
        assert_eq!(validity.latest_issued, first, "{name}");
        assert_eq!(validity.earliest_expiring, last, "{name}");
        assert!(!validity.contains(exact.0 - 1), "{name}");
        assert!(!validity.contains(exact.1 + 1), "{name}");
    }
    // The other two samples have a readable window too.
    for name in ["sgx_quote", "tdx_quote_outdated"] {
        let validity = sample(name).validity().unwrap();
        assert!(
            validity.not_before < validity.not_after,
            "{name}: {validity}"
        );
    }
}

#[test]
fn accessors_read_the_tcb_info_and_crl() {
    let tdx = sample("tdx_quote");
    assert_eq!(tdx.fmspc().unwrap(), tdx_fmspc());
    assert_eq!(tdx.fmspc().unwrap().to_string(), "B0C06F000000");
    assert_eq!(tdx.pck_crl_ca().unwrap(), PckCa::Platform);
    // 2025-06-19T10:16:03Z and 2025-07-19T10:16:03Z.
    assert_eq!(tdx.tcb_info_issue_date().unwrap(), 1_750_328_163);
    assert_eq!(tdx.tcb_info_next_update().unwrap(), 1_752_920_163);
    assert_eq!(tdx.tcb_info().unwrap().tcb_evaluation_data_number, 17);
    assert_eq!(tdx.qe_identity().unwrap().id, "TD_QE");
    assert_eq!(tdx.pck_certificate_chain(), None);

    let sgx = sample("sgx_quote");
    assert_eq!(sgx.fmspc().unwrap().to_string(), "00A067110000");
    assert_eq!(sgx.pck_crl_ca().unwrap(), PckCa::Processor);
}

#[test]
fn fmspc_and_ca_from_the_sample_quotes_match_their_collateral() {
    for name in ["tdx_quote", "tdx_quote_outdated", "tdx_quote_td15ex"] {
        let collateral = sample(name);
        let quote = sample_bytes(name);
        let (fmspc, ca) = fmspc_and_ca_from_quote(&quote).unwrap();
        assert_eq!(fmspc, collateral.fmspc().unwrap(), "{name}");
        assert_eq!(ca, collateral.pck_crl_ca().unwrap(), "{name}");
    }
    let td15ex = sample("tdx_quote_td15ex");
    let chain = td15ex.pck_certificate_chain().unwrap();
    assert_eq!(
        fmspc_and_ca_from_pck_chain(chain).unwrap(),
        (tdx_fmspc(), PckCa::Platform)
    );
}

#[test]
fn quotes_and_chains_without_a_pck_leaf_are_errors() {
    // Only TDX quotes are accepted; the SGX sample is refused by the quote parser.
    let error = fmspc_and_ca_from_quote(&sample_bytes("sgx_quote")).unwrap_err();
    assert!(matches!(error, PckError::Quote(_)), "{error}");
    let error = fmspc_and_ca_from_quote(&[0u8; 10]).unwrap_err();
    assert!(matches!(error, PckError::Quote(_)), "{error}");
    let error = fmspc_and_ca_from_pck_chain("no pem here").unwrap_err();
    assert_eq!(
        error.to_string(),
        "PCK certificate chain holds no certificate"
    );
    // The QE identity issuer chain starts with a TCB signing cert, not a PCK leaf.
    let not_pck = sample("tdx_quote")
        .as_dcap()
        .qe_identity_issuer_chain
        .clone();
    let error = fmspc_and_ca_from_pck_chain(&not_pck).unwrap_err();
    assert!(
        error.to_string().starts_with("PCK leaf certificate"),
        "{error}"
    );
}

/// The tdx_quote sample with one field replaced (or removed when `value` is None).
fn tdx_with(field: &str, value: Option<Value>) -> Vec<u8> {
    let mut json = sample_json("tdx_quote");
    let object = json.as_object_mut().unwrap();
    match value {
        Some(value) => object.insert(field.to_owned(), value),
        None => object.remove(field),
    };
    serde_json::to_vec(&json).unwrap()
}

#[test]
fn malformed_json_is_rejected_with_the_field_named() {
    let error = Collateral::from_json(b"{\"tcb_info\": ").unwrap_err();
    assert!(matches!(error, CollateralError::Syntax(_)), "{error}");

    let error = Collateral::from_json(b"[1, 2]").unwrap_err();
    assert_eq!(
        error.to_string(),
        "collateral JSON must be an object, got an array"
    );

    let error = Collateral::from_json(&tdx_with("tcb_info", None)).unwrap_err();
    assert!(matches!(error, CollateralError::MissingField("tcb_info")));
    assert_eq!(error.to_string(), "collateral field `tcb_info` is missing");

    let error = Collateral::from_json(&tdx_with("pck_crl", Some(json!(5)))).unwrap_err();
    assert_eq!(
        error.to_string(),
        "collateral field `pck_crl` must be a hex string, got a number"
    );

    let error = Collateral::from_json(&tdx_with("tcb_info", Some(json!({})))).unwrap_err();
    assert_eq!(
        error.to_string(),
        "collateral field `tcb_info` must be a string, got an object"
    );

    let error =
        Collateral::from_json(&tdx_with("pck_certificate_chain", Some(json!([])))).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`pck_certificate_chain` must be a string"),
        "{error}"
    );

    let error = Collateral::from_json(&tdx_with("root_ca_crl", Some(json!("3082zz")))).unwrap_err();
    assert!(
        matches!(
            error,
            CollateralError::BadHex {
                field: "root_ca_crl",
                ..
            }
        ),
        "{error}"
    );
    assert!(error
        .to_string()
        .starts_with("collateral field `root_ca_crl` is not valid hex"));

    let error = Collateral::from_json(&tdx_with("tcb_infos", Some(json!("")))).unwrap_err();
    assert_eq!(error.to_string(), "unknown collateral field `tcb_infos`");

    // An explicit null chain is "no chain", as in dcap-qvl.
    let collateral =
        Collateral::from_json(&tdx_with("pck_certificate_chain", Some(Value::Null))).unwrap();
    assert_eq!(collateral, sample("tdx_quote"));
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let huge = vec![b' '; MAX_COLLATERAL_JSON_BYTES + 1];
    let error = Collateral::from_json(&huge).unwrap_err();
    assert!(
        matches!(error, CollateralError::TooLarge { len, max }
            if len == MAX_COLLATERAL_JSON_BYTES + 1 && max == MAX_COLLATERAL_JSON_BYTES),
        "{error}"
    );
}

#[test]
fn unreadable_content_is_reported_by_item() {
    let cases: [(&str, Value, CollateralItem, &str); 5] = [
        (
            "tcb_info",
            json!("{}"),
            CollateralItem::TcbInfo,
            "not a TCB info document",
        ),
        (
            "pck_crl",
            json!("00"),
            CollateralItem::PckCrl,
            "not a DER X.509 CRL",
        ),
        (
            "pck_crl_issuer_chain",
            json!(""),
            CollateralItem::PckCrlIssuerChain,
            "holds no PEM certificate",
        ),
        (
            "qe_identity_issuer_chain",
            json!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
            CollateralItem::QeIdentityIssuerChain,
            "certificate 0 is not a DER X.509 certificate",
        ),
        (
            "root_ca_crl",
            json!(""),
            CollateralItem::RootCaCrl,
            "not a DER X.509 CRL",
        ),
    ];
    for (field, value, item, problem) in cases {
        let collateral = Collateral::from_json(&tdx_with(field, Some(value))).unwrap();
        match collateral.validity().unwrap_err() {
            CollateralError::BadItem {
                item: got,
                problem: text,
            } => {
                assert_eq!(got, item, "{field}");
                assert!(text.contains(problem), "{field}: {text}");
            }
            other => panic!("{field}: unexpected {other}"),
        }
    }

    // A timestamp in another form names the document and the date field.
    let mut tcb_info: Value =
        serde_json::from_str(&sample("tdx_quote").as_dcap().tcb_info).unwrap();
    tcb_info["nextUpdate"] = json!("2025-07-19 10:16:03");
    let collateral =
        Collateral::from_json(&tdx_with("tcb_info", Some(json!(tcb_info.to_string())))).unwrap();
    let error = collateral.validity().unwrap_err().to_string();
    assert_eq!(
        error,
        "collateral tcb_info: nextUpdate `2025-07-19 10:16:03` is not a timestamp of the form YYYY-MM-DDTHH:MM:SSZ"
    );
}

#[test]
fn fmspc_and_ca_parse_and_print() {
    assert_eq!("b0c06f000000".parse::<Fmspc>().unwrap(), tdx_fmspc());
    assert!("B0C06F"
        .parse::<Fmspc>()
        .unwrap_err()
        .contains("expected 6 bytes"));
    assert_eq!("platform".parse::<PckCa>().unwrap(), PckCa::Platform);
    assert_eq!(PckCa::Processor.to_string(), "processor");
    assert!("Platform".parse::<PckCa>().is_err());
}

// ---------------------------------------------------------------- cache

fn counting_fetcher<'a>(
    calls: &'a std::cell::Cell<u32>,
    result: &'a Collateral,
) -> impl FnOnce(&CacheKey) -> Result<Collateral, String> + 'a {
    move |_| {
        calls.set(calls.get() + 1);
        Ok(result.clone())
    }
}

#[test]
fn miss_then_fetch_then_hit_without_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path().join("nested").join("collateral"));
    let key = tdx_key();
    let calls = std::cell::Cell::new(0);
    let fetched = sample("tdx_quote");

    assert!(matches!(
        cache.get(&key, TDX_QUOTE_NOW),
        CacheLookup::Miss(MissReason::Absent)
    ));

    let first = cache
        .get_or_fetch(&key, TDX_QUOTE_NOW, counting_fetcher(&calls, &fetched))
        .unwrap();
    assert_eq!(calls.get(), 1);
    assert!(matches!(
        first.provenance,
        Provenance::Fetched {
            miss: MissReason::Absent,
            stored: Ok(())
        }
    ));
    assert_eq!(first.collateral, fetched);

    let second = cache
        .get_or_fetch(&key, TDX_QUOTE_NOW, counting_fetcher(&calls, &fetched))
        .unwrap();
    assert_eq!(calls.get(), 1, "a warm cache must not fetch");
    assert!(matches!(second.provenance, Provenance::Cache));
    assert_eq!(second.collateral, fetched);

    // A different key (another source) is a separate entry.
    let other = CacheKey::new(CollateralSource::IntelPcs, tdx_fmspc(), PckCa::Platform);
    assert!(matches!(
        cache.get(&other, TDX_QUOTE_NOW),
        CacheLookup::Miss(MissReason::Absent)
    ));
}

#[test]
fn expired_entry_is_refetched_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path());
    let key = tdx_key();
    cache.put(&key, &sample("tdx_quote")).unwrap();
    assert!(cache.get(&key, TDX_QUOTE_NOW).hit().is_some());

    // A year later the tdx_quote bundle has expired; td15ex (same FMSPC and CA) is current.
    match cache.get(&key, TD15EX_NOW) {
        CacheLookup::Miss(MissReason::OutsideValidity(validity)) => {
            assert_eq!(validity.not_after, 1_752_919_235)
        }
        other => panic!("expected an expired entry, got {other:?}"),
    }
    let calls = std::cell::Cell::new(0);
    let newer = sample("tdx_quote_td15ex");
    let obtained = cache
        .get_or_fetch(&key, TD15EX_NOW, counting_fetcher(&calls, &newer))
        .unwrap();
    assert_eq!(calls.get(), 1);
    assert!(matches!(
        obtained.provenance,
        Provenance::Fetched {
            miss: MissReason::OutsideValidity(_),
            stored: Ok(())
        }
    ));
    // The per-platform PCK chain is never cached nor returned from here.
    let newer_bundle = newer.with_pck_certificate_chain(None);
    assert_eq!(obtained.collateral, newer_bundle);
    assert_eq!(cache.get(&key, TD15EX_NOW).hit(), Some(newer_bundle));

    // Collateral from the future is not served either.
    assert!(matches!(
        cache.get(&key, TDX_QUOTE_NOW),
        CacheLookup::Miss(MissReason::OutsideValidity(_))
    ));
}

/// S12: the bundle is valid for weeks, but a revocation must reach
/// verifiers within a day: a fetched bundle is served for 24 hours only.
#[test]
fn a_bundle_is_refetched_a_day_after_it_was_fetched() {
    const HOUR: u64 = 3600;
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path());
    let key = tdx_key();
    let calls = std::cell::Cell::new(0);
    let fetched = sample("tdx_quote");
    let validity = fetched.validity().unwrap();
    assert!(validity.contains(TDX_QUOTE_NOW + 25 * HOUR), "{validity:?}");

    cache
        .get_or_fetch(&key, TDX_QUOTE_NOW, counting_fetcher(&calls, &fetched))
        .unwrap();
    let later = cache
        .get_or_fetch(
            &key,
            TDX_QUOTE_NOW + 23 * HOUR,
            counting_fetcher(&calls, &fetched),
        )
        .unwrap();
    assert!(matches!(later.provenance, Provenance::Cache));
    assert_eq!(calls.get(), 1);

    // A day later, from memory and from the file alike.
    for cache in [cache.clone(), CollateralCache::new(dir.path())] {
        match cache.get(&key, TDX_QUOTE_NOW + 25 * HOUR) {
            CacheLookup::Miss(MissReason::DueForRefresh {
                fetched_at,
                refresh_secs,
            }) => assert_eq!((fetched_at, refresh_secs), (TDX_QUOTE_NOW, 24 * HOUR)),
            other => panic!("expected a refresh, got {other:?}"),
        }
    }
    let refreshed = cache
        .get_or_fetch(
            &key,
            TDX_QUOTE_NOW + 25 * HOUR,
            counting_fetcher(&calls, &fetched),
        )
        .unwrap();
    assert!(matches!(
        refreshed.provenance,
        Provenance::Fetched {
            miss: MissReason::DueForRefresh { .. },
            stored: Ok(())
        }
    ));
    assert_eq!(calls.get(), 2);

    // The interval is configurable.
    let hourly =
        CollateralCache::new(dir.path()).with_refresh(std::time::Duration::from_secs(HOUR));
    assert!(hourly
        .get(&key, TDX_QUOTE_NOW + 25 * HOUR + 30)
        .hit()
        .is_some());
    assert!(hourly.get(&key, TDX_QUOTE_NOW + 27 * HOUR).hit().is_none());
}

#[test]
fn corrupt_or_foreign_files_are_misses_and_get_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path());
    let key = tdx_key();
    let path = cache.path_for(&key);
    let collateral = sample("tdx_quote");

    cache.put_at(&key, &collateral, TDX_QUOTE_NOW).unwrap();
    let good = fs::read(&path).unwrap();
    let truncated = good.get(..good.len() / 2).unwrap().to_vec();
    let mut wrong_version: Value = serde_json::from_slice(&good).unwrap();
    wrong_version["version"] = json!(2);
    let mut wrong_key: Value = serde_json::from_slice(&good).unwrap();
    wrong_key["source"] = json!("https://elsewhere.example");
    let mut bad_collateral: Value = serde_json::from_slice(&good).unwrap();
    bad_collateral["collateral"]["pck_crl"] = json!("00");

    let damaged: [(&str, Vec<u8>, &str); 5] = [
        ("garbage", b"\x00\xffnot json".to_vec(), "not JSON"),
        ("truncated", truncated, "not JSON"),
        (
            "wrong version",
            wrong_version.to_string().into_bytes(),
            "format version is 2",
        ),
        ("wrong key", wrong_key.to_string().into_bytes(), "`source`"),
        (
            "bad collateral",
            bad_collateral.to_string().into_bytes(),
            "pck_crl",
        ),
    ];
    for (what, bytes, problem) in damaged {
        fs::write(&path, bytes).unwrap();
        // A file damaged between runs: a new process opens the cache. (The
        // cache that wrote the good bundle still serves it from memory.)
        assert!(cache.get(&key, TDX_QUOTE_NOW).hit().is_some(), "{what}");
        let cache = CollateralCache::new(dir.path());
        match cache.get(&key, TDX_QUOTE_NOW) {
            CacheLookup::Miss(MissReason::Unreadable(CacheError::Corrupt {
                path: reported,
                problem: text,
            })) => {
                assert_eq!(reported, path, "{what}");
                assert!(text.contains(problem), "{what}: {text}");
            }
            other => panic!("{what}: expected a corrupt-file miss, got {other:?}"),
        }
        let calls = std::cell::Cell::new(0);
        let obtained = cache
            .get_or_fetch(&key, TDX_QUOTE_NOW, counting_fetcher(&calls, &collateral))
            .unwrap();
        assert_eq!(calls.get(), 1, "{what}");
        assert!(
            matches!(
                obtained.provenance,
                Provenance::Fetched {
                    miss: MissReason::Unreadable(_),
                    stored: Ok(())
                }
            ),
            "{what}"
        );
        assert_eq!(fs::read(&path).unwrap(), good, "{what}: replaced by put");
    }
}

#[test]
fn cache_files_are_written_atomically_with_public_modes() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("collateral");
    let cache = CollateralCache::new(&cache_dir);
    let key = tdx_key();
    cache
        .put_at(&key, &sample("tdx_quote"), TDX_QUOTE_NOW)
        .unwrap();

    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_dir), 0o755);
    assert_eq!(mode(&cache.path_for(&key)), 0o644);
    let names: Vec<_> = fs::read_dir(&cache_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected_name = format!("{}_B0C06F000000_platform.json", key.source.cache_id());
    assert_eq!(names, vec![expected_name]);

    // The file is the versioned envelope around the dcap-qvl format.
    let entry: Value = serde_json::from_slice(&fs::read(cache.path_for(&key)).unwrap()).unwrap();
    let expected = json!({
        "version": 1,
        "source": "http://pccs.invalid",
        "fmspc": "B0C06F000000",
        "ca": "platform",
        "fetched_at": TDX_QUOTE_NOW,
        "collateral": sample_json("tdx_quote"),
    });
    assert_eq!(entry, expected);

    // A reader racing a writer sees the old or the new file, never a partial one.
    let collateral = sample("tdx_quote");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..40 {
                cache.put(&key, &collateral).unwrap();
            }
        });
        for _ in 0..200 {
            assert!(cache.get(&key, TDX_QUOTE_NOW).hit().is_some());
        }
    });
}

#[test]
fn put_refuses_collateral_for_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path());
    let sgx_key = CacheKey::new(
        CollateralSource::IntelPcs,
        "00A067110000".parse().unwrap(),
        PckCa::Platform,
    );
    let error = cache.put(&tdx_key(), &sample("sgx_quote")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cache: collateral is for FMSPC 00A067110000, the key says B0C06F000000"
    );
    let error = cache.put(&sgx_key, &sample("sgx_quote")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cache: collateral is for PCK CA processor, the key says platform"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn fetch_errors_propagate_and_store_failures_do_not_fail_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let key = tdx_key();

    let cache = CollateralCache::new(dir.path().join("c"));
    let result = cache.get_or_fetch(&key, TDX_QUOTE_NOW, |_| Err("offline"));
    assert_eq!(result.unwrap_err(), "offline");
    assert!(!dir.path().join("c").exists());

    // The cache "directory" is a file, so storing fails, but the bundle is returned.
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let cache = CollateralCache::new(&blocker);
    let calls = std::cell::Cell::new(0);
    let collateral = sample("tdx_quote");
    let obtained = cache
        .get_or_fetch(&key, TDX_QUOTE_NOW, counting_fetcher(&calls, &collateral))
        .unwrap();
    assert_eq!(obtained.collateral, collateral);
    match obtained.provenance {
        Provenance::Fetched {
            stored: Err(CacheError::Io { .. }),
            ..
        } => {}
        other => panic!("expected a store failure, got {other:?}"),
    }
}

#[test]
fn default_cache_dir_follows_xdg() {
    // The only test that touches XDG_CACHE_HOME. HOME is left alone: the
    // `cargo metadata` run that finds the samples needs it.
    std::env::set_var("XDG_CACHE_HOME", "/var/cache/someone");
    assert_eq!(
        easyenclave::collateral::default_cache_dir(),
        Some(PathBuf::from("/var/cache/someone/easyenclave/collateral"))
    );
    let home_default = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/easyenclave/collateral"));
    for ignored in ["relative/path", ""] {
        std::env::set_var("XDG_CACHE_HOME", ignored);
        assert_eq!(
            easyenclave::collateral::default_cache_dir(),
            home_default,
            "{ignored:?}"
        );
    }
    std::env::remove_var("XDG_CACHE_HOME");
    assert_eq!(easyenclave::collateral::default_cache_dir(), home_default);
}

// ---------------------------------------------------------------- fetch

#[cfg(feature = "fetch")]
mod fetch {
    use std::{
        io::{BufRead as _, BufReader, Write as _},
        net::{TcpListener, TcpStream},
        sync::{Arc, Mutex},
        thread,
        time::Duration,
    };

    use easyenclave::collateral::{fetch, FetchError, FetchOptions};

    use super::*;

    /// One canned HTTP response.
    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay: Duration,
    }

    impl Reply {
        fn ok(body: impl Into<Vec<u8>>) -> Self {
            Self {
                status: 200,
                headers: Vec::new(),
                body: body.into(),
                delay: Duration::ZERO,
            }
        }

        fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }
    }

    /// A local HTTP/1.1 server answering request targets (path + query) from
    /// a table; anything else gets 404. Records every request target.
    struct Server {
        base: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl Server {
        fn start(routes: Vec<(String, Reply)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&requests);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let routes = routes.clone();
                    let log = Arc::clone(&log);
                    thread::spawn(move || serve(stream, &routes, &log));
                }
            });
            Self { base, requests }
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn serve(stream: TcpStream, routes: &[(String, Reply)], log: &Mutex<Vec<String>>) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let target = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        log.lock().unwrap().push(target.clone());
        let reply = routes
            .iter()
            .find(|(route, _)| *route == target)
            .map(|(_, reply)| reply.clone())
            .unwrap_or(Reply {
                status: 404,
                headers: Vec::new(),
                body: Vec::new(),
                delay: Duration::ZERO,
            });
        thread::sleep(reply.delay);
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = stream;
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&reply.body);
    }

    /// URL-encode as Intel PCS does: everything but unreserved characters.
    fn url_encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    const PCK_CRL: &str = "/sgx/certification/v4/pckcrl?ca=platform&encoding=der";
    const TCB: &str = "/tdx/certification/v4/tcb?fmspc=B0C06F000000";
    const QE_IDENTITY: &str = "/tdx/certification/v4/qe/identity";
    const ROOT_CRL: &str = "/sgx/certification/v4/rootcacrl";

    /// The PCS v4 responses that carry a sample bundle, as a PCCS serves
    /// them: DER PCK CRL, signed JSON documents, hex root CA CRL.
    fn pcs_routes(collateral: &Collateral) -> Vec<(String, Reply)> {
        let c = collateral.as_dcap();
        let signed = |field: &str, document: &str, signature: &[u8]| {
            format!(
                "{{\"{field}\":{document},\"signature\":\"{}\"}}",
                hex::encode(signature)
            )
        };
        vec![
            (
                PCK_CRL.to_owned(),
                Reply::ok(c.pck_crl.clone()).header(
                    "SGX-PCK-CRL-Issuer-Chain",
                    &url_encode(&c.pck_crl_issuer_chain),
                ),
            ),
            (
                TCB.to_owned(),
                Reply::ok(signed("tcbInfo", &c.tcb_info, &c.tcb_info_signature)).header(
                    "TCB-Info-Issuer-Chain",
                    &url_encode(&c.tcb_info_issuer_chain),
                ),
            ),
            (
                QE_IDENTITY.to_owned(),
                Reply::ok(signed(
                    "enclaveIdentity",
                    &c.qe_identity,
                    &c.qe_identity_signature,
                ))
                .header(
                    "SGX-Enclave-Identity-Issuer-Chain",
                    &url_encode(&c.qe_identity_issuer_chain),
                ),
            ),
            (ROOT_CRL.to_owned(), Reply::ok(hex::encode(&c.root_ca_crl))),
        ]
    }

    fn quick() -> FetchOptions {
        FetchOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            ..FetchOptions::default()
        }
    }

    fn fetch_from(
        server: &Server,
        chain: Option<&str>,
        options: &FetchOptions,
    ) -> Result<Collateral, FetchError> {
        let source = CollateralSource::Pccs(format!("{}/", server.base));
        fetch(&source, tdx_fmspc(), PckCa::Platform, chain, options)
    }

    #[test]
    fn fetches_the_sample_from_a_pccs() {
        let expected = sample("tdx_quote");
        let server = Server::start(pcs_routes(&expected));
        let fetched = fetch_from(&server, None, &quick()).unwrap();
        assert_eq!(server.requests(), vec![PCK_CRL, TCB, QE_IDENTITY, ROOT_CRL]);
        assert_eq!(fetched, expected);
        // Byte-exact documents, so the signatures still verify.
        let quote = sample_bytes("tdx_quote");
        dcap_qvl::verify::verify(&quote, fetched.as_dcap(), TDX_QUOTE_NOW).unwrap();
    }

    #[test]
    fn fetch_attaches_the_pck_chain_and_accepts_other_encodings() {
        let expected = sample("tdx_quote_td15ex");
        let c = expected.as_dcap();
        let mut routes = pcs_routes(&expected);
        // PEM instead of DER, and the PCS v3 header name.
        let pem_crl = format!(
            "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
            base64_encode(&c.pck_crl)
        );
        routes[0].1.body = pem_crl.into_bytes();
        routes[1].1.headers = vec![(
            "SGX-TCB-Info-Issuer-Chain".to_owned(),
            url_encode(&c.tcb_info_issuer_chain),
        )];
        let server = Server::start(routes);
        let chain = expected.pck_certificate_chain().unwrap();
        let fetched = fetch_from(&server, Some(chain), &quick()).unwrap();
        assert_eq!(fetched, expected);
    }

    fn base64_encode(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_pck_chain_for_another_platform_is_refused_before_any_request() {
        let server = Server::start(Vec::new());
        let chain = sample("tdx_quote_td15ex")
            .pck_certificate_chain()
            .unwrap()
            .to_owned();
        let source = CollateralSource::Pccs(server.base.clone());
        let other: Fmspc = "90C06F000000".parse().unwrap();
        let error = fetch(&source, other, PckCa::Platform, Some(&chain), &quick()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the PCK certificate chain is for FMSPC B0C06F000000, requested 90C06F000000"
        );
        assert!(server.requests().is_empty());
    }

    #[test]
    fn a_slow_server_times_out_naming_the_url() {
        let mut routes = pcs_routes(&sample("tdx_quote"));
        routes[0].1.delay = Duration::from_secs(3);
        let server = Server::start(routes);
        let options = FetchOptions {
            read_timeout: Duration::from_millis(200),
            ..quick()
        };
        let started = std::time::Instant::now();
        let error = fetch_from(&server, None, &options).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        match &error {
            FetchError::Timeout { url, .. } => {
                assert_eq!(url, &format!("{}{PCK_CRL}", server.base))
            }
            other => panic!("expected a timeout, got {other}"),
        }
        assert!(error.to_string().contains(PCK_CRL), "{error}");
    }

    #[test]
    fn a_404_names_the_url_and_status() {
        let mut routes = pcs_routes(&sample("tdx_quote"));
        routes.retain(|(path, _)| path != TCB);
        let server = Server::start(routes);
        let error = fetch_from(&server, None, &quick()).unwrap_err();
        assert!(
            matches!(error, FetchError::Status { status: 404, .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            format!("GET {}{TCB}: HTTP status 404", server.base)
        );
    }

    #[test]
    fn missing_headers_and_bad_bodies_are_named() {
        let collateral = sample("tdx_quote");

        let mut routes = pcs_routes(&collateral);
        routes[2].1.headers.clear();
        let server = Server::start(routes);
        let error = fetch_from(&server, None, &quick()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "GET {}{QE_IDENTITY}: response has no SGX-Enclave-Identity-Issuer-Chain header",
                server.base
            )
        );

        let mut routes = pcs_routes(&collateral);
        routes[1].1.body = b"{\"tcbInfo\": ".to_vec();
        let server = Server::start(routes);
        let error = fetch_from(&server, None, &quick()).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("GET {}{TCB}: expected {{\"tcbInfo\"", server.base)),
            "{error}"
        );

        let mut routes = pcs_routes(&collateral);
        routes[3].1.body = b"not a crl".to_vec();
        let server = Server::start(routes);
        let error = fetch_from(&server, None, &quick()).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("GET {}{ROOT_CRL}: CRL is neither", server.base)),
            "{error}"
        );
    }

    #[test]
    fn collateral_for_another_platform_is_refused() {
        // A server that answers every FMSPC with the 90C06F000000 bundle.
        let outdated = sample("tdx_quote_outdated");
        let server = Server::start(pcs_routes(&outdated));
        let error = fetch_from(&server, None, &quick()).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("returned collateral for FMSPC 90C06F000000, requested B0C06F000000"),
            "{error}"
        );
    }

    #[test]
    fn oversized_responses_are_refused() {
        let server = Server::start(pcs_routes(&sample("tdx_quote")));
        let options = FetchOptions {
            max_response_bytes: 100,
            ..quick()
        };
        let error = fetch_from(&server, None, &options).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "GET {}{PCK_CRL}: response body is over the 100-byte limit",
                server.base
            )
        );
    }

    #[test]
    fn connection_failures_name_the_url() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let source = CollateralSource::Pccs(format!("http://127.0.0.1:{port}"));
        let error = fetch(&source, tdx_fmspc(), PckCa::Platform, None, &quick()).unwrap_err();
        assert!(matches!(error, FetchError::Transport { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("GET http://127.0.0.1:{port}{PCK_CRL}: ")),
            "{error}"
        );
    }

    #[test]
    fn get_or_fetch_over_http_needs_no_network_when_warm() {
        let expected = sample("tdx_quote");
        let server = Server::start(pcs_routes(&expected));
        let dir = tempfile::tempdir().unwrap();
        let cache = CollateralCache::new(dir.path());
        let key = CacheKey::new(
            CollateralSource::Pccs(server.base.clone()),
            tdx_fmspc(),
            PckCa::Platform,
        );
        let fetch_key = |key: &CacheKey| fetch(&key.source, key.fmspc, key.ca, None, &quick());
        let cold = cache.get_or_fetch(&key, TDX_QUOTE_NOW, fetch_key).unwrap();
        assert_eq!(server.requests().len(), 4);
        let warm = cache.get_or_fetch(&key, TDX_QUOTE_NOW, fetch_key).unwrap();
        assert_eq!(server.requests().len(), 4);
        assert!(matches!(warm.provenance, Provenance::Cache));
        assert_eq!(cold.collateral, warm.collateral);
        assert_eq!(warm.collateral, expected);
    }
}

#[test]
fn a_warm_cache_serves_from_memory_within_the_validity_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path());
    let key = tdx_key();
    let collateral = sample("tdx_quote");
    cache.put(&key, &collateral).unwrap();

    // The file is gone, but this cache (and its clones) still hold the bundle.
    fs::remove_file(cache.path_for(&key)).unwrap();
    assert_eq!(
        cache.get(&key, TDX_QUOTE_NOW).hit(),
        Some(collateral.clone())
    );
    assert_eq!(
        cache.clone().get(&key, TDX_QUOTE_NOW).hit(),
        Some(collateral)
    );
    // Memory does not stretch the bundle's validity.
    assert!(cache.get(&key, TD15EX_NOW).hit().is_none());
    // A separate cache on the same directory starts cold.
    assert!(CollateralCache::new(dir.path())
        .get(&key, TDX_QUOTE_NOW)
        .hit()
        .is_none());
}
