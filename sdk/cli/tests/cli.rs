//! The `ee` binary: `ee quote inspect` and `ee quote verify`, their exit
//! codes, JSON output, and bad input.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig};

const V4_NOW: &str = "1750329200";

fn ee(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(args)
        .output()
        .expect("run ee")
}

fn sample_path(name: &str) -> String {
    common::dcap_sample_dir()
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn verify_args<'a>(quote: &'a str, collateral: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["quote", "verify", quote, "--collateral", collateral];
    args.extend_from_slice(extra);
    args
}

#[test]
fn verify_sample_quote_json() {
    let (q, c) = (
        sample_path("tdx_quote"),
        sample_path("tdx_quote_collateral.json"),
    );
    let out = ee(&verify_args(&q, &c, &["--now", V4_NOW, "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["status"], "UpToDate");
    assert_eq!(doc["advisory_ids"], serde_json::json!([]));
    assert_eq!(
        doc["measurements"]["mr_td"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    for reg in ["rtmr0", "rtmr1", "rtmr2", "rtmr3"] {
        assert_eq!(
            doc["measurements"][reg].as_str().unwrap().len(),
            96,
            "{reg}"
        );
    }
}

#[test]
fn verify_accepts_hex_and_base64_quote_files() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let raw = common::sample("tdx_quote");
    let c = sample_path("tdx_quote_collateral.json");
    let hex_file = write(dir.path(), "q.hex", hex::encode(&raw).as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let b64_file = write(dir.path(), "q.b64", format!("{b64}\n").as_bytes());
    for file in [hex_file, b64_file] {
        let out = ee(&verify_args(&file, &c, &["--now", V4_NOW]));
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        assert!(stdout(&out).contains("UpToDate"));
    }
}

#[test]
fn rejected_quotes_exit_1_with_the_reason() {
    let c = sample_path("tdx_quote_collateral.json");
    let expired = ee(&verify_args(
        &sample_path("tdx_quote"),
        &c,
        &["--now", "1752919235"],
    ));
    assert_eq!(expired.status.code(), Some(1));
    assert!(
        stderr(&expired).contains("rejected"),
        "{}",
        stderr(&expired)
    );

    let sgx = ee(&verify_args(
        &sample_path("sgx_quote"),
        &sample_path("sgx_quote_collateral.json"),
        &["--now", V4_NOW, "--json"],
    ));
    assert_eq!(sgx.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&sgx)).unwrap();
    assert_eq!(doc["verified"], false);
    assert!(doc["error"].as_str().unwrap().contains("not a TD quote"));
}

#[test]
fn accept_status_and_root_select_policy_and_trust() {
    use easyenclave::sim::pki::SimPkiConfig;
    use easyenclave::sim::tcb::PlatformTcbLevel;

    let dir = tempfile::tempdir().unwrap();
    let pki = SimPki::with_config(
        b"cli test",
        SimPkiConfig {
            platform_level: PlatformTcbLevel::OutOfDate,
            ..SimPkiConfig::default()
        },
    )
    .unwrap();
    let quote = SimTd::new(&pki, SimTdConfig::default())
        .quote(&[1; 64])
        .unwrap();
    let collateral = easyenclave::collateral::Collateral::from(
        pki.collateral(1_800_000_000, 1_900_000_000).unwrap(),
    );
    let q = write(dir.path(), "sim.quote", &quote);
    let c = write(dir.path(), "sim.json", &collateral.to_json());
    let root = write(dir.path(), "root.der", pki.root_ca_der());
    let now = ["--now", "1800000100"];

    // Intel's root: the sim chain is not trusted.
    let out = ee(&verify_args(&q, &c, &now));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // The sim root, default policy: OutOfDate is named with its advisories.
    let mut args = now.to_vec();
    args.extend(["--root", &root]);
    let out = ee(&verify_args(&q, &c, &args));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("OutOfDate") && err.contains("EE-SIM-SA-"),
        "{err}"
    );

    // Opting in to OutOfDate accepts it.
    args.extend(["--accept-status", "OutOfDate", "--json"]);
    let out = ee(&verify_args(&q, &c, &args));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["status"], "OutOfDate");
    assert!(!doc["advisory_ids"].as_array().unwrap().is_empty());

    // An unknown status name is a usage error naming the value.
    let out = ee(&verify_args(&q, &c, &["--accept-status", "Fine"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"Fine\""), "{}", stderr(&out));
}

#[test]
fn inspect_prints_every_field() {
    let out = ee(&["quote", "inspect", &sample_path("tdx_quote_td15ex")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for field in [
        "mr_td",
        "rtmr3",
        "report_data",
        "qe_vendor_id",
        "mr_servicetd",
    ] {
        assert!(text.contains(field), "text lacks {field}");
    }
    let out = ee(&["quote", "inspect", "--json", &sample_path("tdx_quote")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["header"]["version"], 4);
    assert_eq!(doc["header"]["tee_type"], 0x81);
}

#[test]
fn bad_input_gives_a_clear_error_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let raw = common::sample("tdx_quote");
    let collateral = sample_path("tdx_quote_collateral.json");
    let mut wrong_version = raw.clone();
    wrong_version[0] = 7;
    let mut wrong_tee = raw.clone();
    wrong_tee[4] = 0x42;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", raw[..700].to_vec(), "truncated"),
        ("empty", Vec::new(), "empty"),
        ("oversized", vec![b'a'; 2 * 1024 * 1024], "too large"),
        ("wrong-version", wrong_version, "version"),
        ("wrong-tee", wrong_tee, "tee type"),
        ("bad-hex", b"04000200zz".to_vec(), "neither hex"),
        ("bad-base64", b"BAACAIEAAAA*AAAA".to_vec(), "base64"),
    ];
    for (name, bytes, expect) in cases {
        let file = write(dir.path(), name, &bytes);
        for args in [
            vec!["quote", "inspect", file.as_str()],
            verify_args(&file, &collateral, &["--now", V4_NOW]),
        ] {
            let out = ee(&args);
            let err = stderr(&out);
            assert!(
                matches!(out.status.code(), Some(1) | Some(2)),
                "{name}: {:?}",
                out.status
            );
            assert!(!err.contains("panicked"), "{name}: {err}");
            assert!(
                err.to_lowercase().contains(expect),
                "{name}: expected {expect:?} in {err}"
            );
        }
    }

    // Malformed collateral: a usage/input error naming the file and the problem.
    let quote = sample_path("tdx_quote");
    for (name, text, expect) in [
        ("not-json", "{not json", "collateral"),
        ("missing", r#"{"tcb_info": "{}"}"#, "missing"),
        ("wrong-type", r#"{"pck_crl": 5}"#, "pck_crl"),
    ] {
        let c = write(dir.path(), name, text.as_bytes());
        let out = ee(&verify_args(&quote, &c, &["--now", V4_NOW]));
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = stderr(&out);
        assert!(err.contains(expect), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }

    // A missing file names the path.
    let out = ee(&["quote", "inspect", "/nonexistent/quote.bin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/quote.bin"));
}

#[test]
fn verify_without_collateral_file_uses_the_cache_then_the_service() {
    use easyenclave::collateral::{
        fmspc_and_ca_from_quote, CacheKey, Collateral, CollateralCache, CollateralSource,
    };
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let cache_dir_arg = cache_dir.to_string_lossy().into_owned();
    let quote = sample_path("tdx_quote");
    // Nothing listens on port 9 of loopback: a fetch fails at once.
    let pccs = "http://127.0.0.1:9";
    let args = |extra: &[&str]| {
        let mut a = vec![
            "quote",
            "verify",
            quote.as_str(),
            "--cache-dir",
            cache_dir_arg.as_str(),
            "--pccs",
            pccs,
            "--now",
            V4_NOW,
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_ee"))
            .args(a)
            .output()
            .unwrap()
    };

    // Cold cache, unreachable service: an input error naming the service.
    let out = run(args(&[]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("127.0.0.1:9"), "{}", stderr(&out));

    // Warm cache: verified with no network at all.
    let (fmspc, ca) = fmspc_and_ca_from_quote(&common::sample("tdx_quote")).unwrap();
    let collateral = Collateral::from_json(&common::sample("tdx_quote_collateral.json")).unwrap();
    CollateralCache::new(&cache_dir)
        .put(
            &CacheKey::new(CollateralSource::Pccs(pccs.into()), fmspc, ca),
            &collateral,
        )
        .unwrap();
    let out = run(args(&[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("UpToDate"));
}

#[test]
fn sim_root_and_collateral_verify_dev_image_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sim-root.der");
    let collateral = dir.path().join("sim-collateral.json");
    let (root_arg, collateral_arg) = (
        root.to_string_lossy().into_owned(),
        collateral.to_string_lossy().into_owned(),
    );
    let out = ee(&["sim", "root", "--out", &root_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ee(&[
        "sim",
        "collateral",
        "--out",
        &collateral_arg,
        "--issued",
        "1800000000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A quote as a sim dev image makes it (same public seed).
    let pki = SimPki::from_seed(easyenclave::sim::DEV_SEED).unwrap();
    assert_eq!(std::fs::read(&root).unwrap(), pki.root_ca_der());
    let quote = SimTd::new(&pki, SimTdConfig::default())
        .quote(&[3; 64])
        .unwrap();
    let q = write(dir.path(), "dev.quote", &quote);

    let at = ["--now", "1800000100"];
    let mut with_root = at.to_vec();
    with_root.extend(["--root", &root_arg]);
    let out = ee(&verify_args(&q, &collateral_arg, &with_root));
    assert!(out.status.success(), "{}", stderr(&out));
    // Without the explicit root, Intel's root applies and the quote is rejected.
    let out = ee(&verify_args(&q, &collateral_arg, &at));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Past the collateral's 30 days: rejected.
    let mut late = vec!["--now", "1802600001"];
    late.extend(["--root", &root_arg]);
    let out = ee(&verify_args(&q, &collateral_arg, &late));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
