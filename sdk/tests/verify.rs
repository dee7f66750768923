//! DCAP verification under policy, on Intel's real sample quotes (dcap-qvl's
//! `sample/`, at fixed times inside their collateral windows) and on quotes of
//! the simulated platform.
#![cfg(all(feature = "verify", feature = "sim"))]

mod common;

use easyenclave::allowlist::Allowlist;
use easyenclave::collateral::Collateral;
use easyenclave::quote::Quote;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig};
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::{Policy, StatusName, TrustRoot, Verifier, VerifyError};

/// `tdx_quote` (v4) verifies UpToDate for now in [V4_FROM, V4_UNTIL].
const V4_FROM: u64 = 1_750_329_147;
const V4_UNTIL: u64 = 1_752_919_234;
/// `tdx_quote_td15ex` (v5) verifies UpToDate for now in [V5_FROM, V5_UNTIL].
const V5_FROM: u64 = 1_791_419_306;
const V5_UNTIL: u64 = 1_794_008_710;

/// Sim collateral is issued at SIM_ISSUED and valid for 30 days.
const SIM_ISSUED: u64 = 1_800_000_000;
const SIM_NEXT_UPDATE: u64 = SIM_ISSUED + 30 * 24 * 3600;
const SIM_NOW: u64 = SIM_ISSUED + 3600;

fn sample_collateral(name: &str) -> Collateral {
    Collateral::from_json(&common::sample(&format!("{name}_collateral.json"))).unwrap()
}

fn intel() -> Verifier {
    Verifier::new(Policy::default())
}

fn verify_sample(name: &str, now: u64) -> Result<easyenclave::verify::VerifiedQuote, VerifyError> {
    intel().verify(&common::sample(name), &sample_collateral(name), now)
}

fn sim_pki() -> SimPki {
    SimPki::from_seed(DEV_SEED).unwrap()
}

fn sim_collateral(pki: &SimPki) -> Collateral {
    Collateral::from(pki.collateral(SIM_ISSUED, SIM_NEXT_UPDATE).unwrap())
}

fn sim_verifier(pki: &SimPki, policy: Policy) -> Verifier {
    Verifier::with_root(TrustRoot::Explicit(pki.root_ca_der().to_vec()), policy)
}

/// Flip one bit of `bytes` at `offset`.
fn flipped(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset] ^= 0x01;
    out
}

#[test]
fn intel_v4_sample_is_up_to_date() {
    for now in [V4_FROM, (V4_FROM + V4_UNTIL) / 2, V4_UNTIL] {
        let v = verify_sample("tdx_quote", now).unwrap();
        assert_eq!(v.status, "UpToDate");
        assert!(v.advisory_ids.is_empty());
        assert_eq!(v.quote_version, 4);
        assert_eq!(v.measurements.td_attributes.value(), 0x1000_0000);
    }
}

#[test]
fn intel_v5_td15ex_sample_is_up_to_date() {
    let v = verify_sample("tdx_quote_td15ex", (V5_FROM + V5_UNTIL) / 2).unwrap();
    assert_eq!(v.status, "UpToDate");
    assert_eq!(v.quote_version, 5);
    // The measurements reported are the quote's own.
    let quote = Quote::parse(&common::sample("tdx_quote_td15ex")).unwrap();
    assert_eq!(&v.measurements, quote.td_report());
    assert_eq!(v.measurements.rtmr3, quote.td_report().rtmr3);
    assert_eq!(v.measurements.report_data, quote.td_report().report_data);
}

#[test]
fn sgx_sample_is_rejected_as_not_a_td() {
    let err = verify_sample("sgx_quote", V4_FROM).unwrap_err();
    assert!(matches!(err, VerifyError::Parse(_)), "{err}");
    assert!(err.to_string().contains("not a TD quote"), "{err}");
}

/// `tdx_quote_outdated`'s collateral is valid from 2026-02-18T10:58:51Z.
const OUTDATED_NOW: u64 = 1_771_412_331 + 3600;

#[test]
fn outdated_sample_is_rejected() {
    let err = verify_sample("tdx_quote_outdated", OUTDATED_NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
    assert!(err.to_string().contains("No matching TCB level"), "{err}");
}

#[test]
fn expired_collateral_is_rejected() {
    let err = verify_sample("tdx_quote", V4_UNTIL + 1).unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
    let msg = err.to_string().to_lowercase();
    assert!(
        msg.contains("expired") || msg.contains("next update"),
        "{err}"
    );
    // ...and collateral that is not yet valid.
    let err = verify_sample("tdx_quote", V4_FROM - 1).unwrap_err();
    assert!(err.to_string().contains("future"), "{err}");
}

/// Offsets in the v4 sample: header, TD body (RTMR3), QE report, PCK chain.
#[test]
fn a_flipped_byte_anywhere_that_matters_is_rejected() {
    let quote = common::sample("tdx_quote");
    let collateral = sample_collateral("tdx_quote");
    let parsed = Quote::parse(&quote).unwrap();
    let chain = parsed.signature().pck_cert_chain.pem().as_bytes().to_vec();
    let chain_at = quote
        .windows(64)
        .position(|w| w == &chain[100..164])
        .expect("PEM chain is in the quote");
    // Signature data: 4-byte length at 632, then sig(64) | key(64) | type(2) | len(4) | QE report.
    let qe_report_at = 632 + 4 + 64 + 64 + 2 + 4;
    let cases = [
        ("header: user_data", 30),
        ("TD body: RTMR3", 520 + 10),
        ("TD body: report_data", 568),
        ("QE report: mrenclave", qe_report_at + 64),
        ("PCK chain: leaf certificate", chain_at + 20),
    ];
    for (what, offset) in cases {
        let err = intel()
            .verify(&flipped(&quote, offset), &collateral, V4_FROM)
            .expect_err(what);
        assert!(
            matches!(err, VerifyError::Dcap(_) | VerifyError::Parse(_)),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_quote_re_signed_under_another_chain_is_rejected() {
    // How the original system could be forged: keep Intel's TD body, sign it
    // with keys and a certificate chain of one's own. The sim platform is
    // exactly such a chain.
    let real = Quote::parse(&common::sample("tdx_quote")).unwrap();
    let body = real.td_report();
    let pki = sim_pki();
    let td = SimTd::new(
        &pki,
        SimTdConfig {
            mr_td: body.mr_td,
            mr_config_id: body.mr_config_id,
            mr_owner: body.mr_owner,
            mr_owner_config: body.mr_owner_config,
            rtmrs: body.rtmrs(),
            td_attributes: body.td_attributes.value(),
            xfam: u64::from_le_bytes(body.xfam),
            tee_tcb_svn: None,
        },
    );
    let forged = td.quote(&body.report_data).unwrap();
    let forged_body = Quote::parse(&forged).unwrap();
    assert_eq!(forged_body.td_report().rtmrs(), body.rtmrs());
    assert_eq!(forged_body.td_report().report_data, body.report_data);

    // Against Intel's root, with either the forger's or Intel's collateral: rejected.
    for collateral in [sim_collateral(&pki), sample_collateral("tdx_quote")] {
        let err = intel().verify(&forged, &collateral, SIM_NOW).unwrap_err();
        assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
    }
    // The same quote is internally consistent: only the trust root stops it.
    sim_verifier(&pki, Policy::default())
        .verify(&forged, &sim_collateral(&pki), SIM_NOW)
        .unwrap();
}

#[test]
fn sim_quotes_verify_with_the_sim_root_only() {
    let pki = sim_pki();
    let td = SimTd::new(&pki, SimTdConfig::default());
    let quote = td.quote(&[7; 64]).unwrap();
    let v = sim_verifier(&pki, Policy::default())
        .verify(&quote, &sim_collateral(&pki), SIM_NOW)
        .unwrap();
    assert_eq!(v.status, "UpToDate");
    assert_eq!(v.measurements.report_data, [7; 64]);

    let err = intel()
        .verify(&quote, &sim_collateral(&pki), SIM_NOW)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");

    // A different sim platform's root does not anchor this one's quotes.
    let other = SimPki::from_seed(b"another seed").unwrap();
    let err = sim_verifier(&other, Policy::default())
        .verify(&quote, &sim_collateral(&pki), SIM_NOW)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
}

#[test]
fn debug_td_is_rejected_unless_the_policy_allows_debug() {
    let pki = sim_pki();
    let td = SimTd::new(&pki, SimTdConfig::default().with_debug());
    let quote = td.quote(&[0; 64]).unwrap();
    let collateral = sim_collateral(&pki);
    let err = sim_verifier(&pki, Policy::default())
        .verify(&quote, &collateral, SIM_NOW)
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("debug"), "{err}");

    let v = sim_verifier(&pki, Policy::default().allow_debug(true))
        .verify(&quote, &collateral, SIM_NOW)
        .unwrap();
    assert!(v.measurements.td_attributes.debug());
}

#[test]
fn migratable_td_is_rejected_by_the_project_policy() {
    let pki = sim_pki();
    let mut config = SimTdConfig::default();
    config.td_attributes |= 1 << 29;
    let quote = SimTd::new(&pki, config).quote(&[0; 64]).unwrap();
    let err = sim_verifier(&pki, Policy::default())
        .verify(&quote, &sim_collateral(&pki), SIM_NOW)
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("migrat"), "{err}");
}

#[test]
fn a_status_outside_the_policy_names_status_and_advisories() {
    use easyenclave::sim::pki::SimPkiConfig;
    use easyenclave::sim::tcb::PlatformTcbLevel;

    let config = SimPkiConfig {
        platform_level: PlatformTcbLevel::OutOfDate,
        ..SimPkiConfig::default()
    };
    let pki = SimPki::with_config(DEV_SEED, config).unwrap();
    let quote = SimTd::new(&pki, SimTdConfig::default())
        .quote(&[0; 64])
        .unwrap();
    let collateral = sim_collateral(&pki);

    let err = sim_verifier(&pki, Policy::default())
        .verify(&quote, &collateral, SIM_NOW)
        .unwrap_err();
    let VerifyError::TcbStatus {
        status,
        advisory_ids,
        ..
    } = &err
    else {
        panic!("expected a TCB status error, got {err}");
    };
    assert_eq!(status, "OutOfDate");
    assert!(!advisory_ids.is_empty());
    let msg = err.to_string();
    assert!(msg.contains("OutOfDate"), "{msg}");
    for id in advisory_ids {
        assert!(msg.contains(id.as_str()), "{msg} lacks {id}");
    }

    // Opting in accepts it and reports the advisories...
    let accepting = Policy::default().accept_status(StatusName::parse("OutOfDate").unwrap());
    let v = sim_verifier(&pki, accepting.clone())
        .verify(&quote, &collateral, SIM_NOW)
        .unwrap();
    assert_eq!(v.status, "OutOfDate");
    assert_eq!(&v.advisory_ids, advisory_ids);

    // ...unless one of them is on the blocklist.
    let blocking = accepting.reject_advisory(&advisory_ids[0].to_lowercase());
    let err = sim_verifier(&pki, blocking)
        .verify(&quote, &collateral, SIM_NOW)
        .unwrap_err();
    assert!(
        matches!(&err, VerifyError::AdvisoryRejected { id, .. } if id == &advisory_ids[0]),
        "{err}"
    );
}

fn allowlist_for(td: &SimTd, mrtd_override: Option<[u8; 48]>) -> Allowlist {
    let c = td.config();
    let r = td.rtmrs();
    let doc = serde_json::json!({
        "version": 1,
        "image_id": "sim-test-image",
        "xfam": { "accepted": [format!("{:#018x}", c.xfam)] },
        "entries": [{
            "name": "sim-1cpu-1g",
            "mrtd": hex::encode(mrtd_override.unwrap_or(c.mr_td)),
            "rtmr0": hex::encode(r[0]),
            "rtmr1": hex::encode(r[1]),
            "rtmr2": hex::encode(r[2]),
            "profile": {
                "qemu_version": "10.1.0",
                "ovmf": hex::encode([0u8; 32]),
                "cpus": 1,
                "memory_mib": 1024,
                "variant": "sim"
            }
        }]
    });
    Allowlist::from_json(doc.to_string().as_bytes()).unwrap()
}

#[test]
fn allowlist_matches_and_mismatch_names_the_register() {
    let pki = sim_pki();
    let mut td = SimTd::new(&pki, SimTdConfig::default());
    td.extend_rtmr(3, &[1; 48]).unwrap();
    let quote = td.quote(&[0; 64]).unwrap();
    let collateral = sim_collateral(&pki);

    let v = sim_verifier(
        &pki,
        Policy::default().with_allowlist(allowlist_for(&td, None)),
    )
    .verify(&quote, &collateral, SIM_NOW)
    .unwrap();
    assert_eq!(v.allowlist_entry.as_deref(), Some("sim-1cpu-1g"));

    let wrong = allowlist_for(&td, Some([9; 48]));
    let err = sim_verifier(&pki, Policy::default().with_allowlist(wrong))
        .verify(&quote, &collateral, SIM_NOW)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Measurement(_)), "{err}");
    assert!(err.to_string().contains("mrtd"), "{err}");
}
