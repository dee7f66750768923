//! The simulated TDX platform against dcap-qvl itself: sim quotes must pass
//! the same verification as Intel's when — and only when — the sim root is
//! the trust anchor, and every tampering or policy case must fail the way it
//! fails for real quotes.
#![cfg(feature = "sim")]

use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::{QuoteCollateralV3, QuotePolicy};
use easyenclave::quote::{EnclaveReport, Header, TdReport10};
use easyenclave::rtmr;
use easyenclave::sim::pki::{
    PckConfiguration, SimPki, SimPkiConfig, DEFAULT_CERT_NOT_BEFORE, SIM_FMSPC,
};
use easyenclave::sim::tcb::{
    PlatformTcbLevel, MODULE_ADVISORY_ID, PLATFORM_ADVISORY_ID, UP_TO_DATE_SVNS,
};
use easyenclave::sim::td::{SimTd, SimTdConfig};
use easyenclave::sim::DEV_SEED;

/// 2025-06-15T15:06:40Z; collateral valid for 30 days from here.
const ISSUE: u64 = 1_750_000_000;
const NEXT_UPDATE: u64 = ISSUE + 30 * 86_400;
const NOW: u64 = ISSUE + 86_400;

/// Offset of the QE report in a v4 quote: header, TD 1.0 body, signature
/// data length, ECDSA signature, attestation key, cert type + length
/// (notes/tdx-facts.md "Quote layout").
const QE_REPORT_OFFSET: usize = Header::LEN + TdReport10::LEN + 4 + 64 + 64 + 2 + 4;

struct Platform {
    pki: SimPki,
    collateral: QuoteCollateralV3,
}

fn platform_with(seed: &[u8], config: SimPkiConfig) -> Platform {
    let pki = SimPki::with_config(seed, config).unwrap();
    let collateral = pki.collateral(ISSUE, NEXT_UPDATE).unwrap();
    Platform { pki, collateral }
}

fn platform() -> Platform {
    platform_with(DEV_SEED, SimPkiConfig::default())
}

fn verifier(p: &Platform) -> QuoteVerifier {
    QuoteVerifier::new(p.pki.root_ca_der().to_vec())
}

fn quote(p: &Platform, config: SimTdConfig, report_data: &[u8; 64]) -> Vec<u8> {
    SimTd::new(&p.pki, config).quote(report_data).unwrap()
}

#[test]
fn sim_quote_verifies_up_to_date_with_the_sim_root() {
    let p = platform();
    let mut td = SimTd::new(&p.pki, SimTdConfig::default());
    td.extend_rtmr(3, &rtmr::sha384(b"launch event")).unwrap();
    let report_data = [0x42; 64];
    let quote = td.quote(&report_data).unwrap();

    let report = verifier(&p).verify(&quote, &p.collateral, NOW).unwrap();
    assert_eq!(report.status, "UpToDate");
    assert!(report.advisory_ids.is_empty(), "{:?}", report.advisory_ids);
    let body = report.report.as_td10().unwrap();
    assert_eq!(body.report_data, report_data);
    assert_eq!(body.rt_mr3, td.rtmrs()[3]);
    assert_eq!(body.td_attributes, 0x1000_0000u64.to_le_bytes());
}

#[test]
fn sim_quote_fails_against_intels_root() {
    let p = platform();
    let quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    let err = QuoteVerifier::new_prod()
        .verify(&quote, &p.collateral, NOW)
        .unwrap_err();
    // The first thing signed by the sim root that dcap-qvl checks is the root CA CRL.
    assert!(format!("{err:#}").contains("root CA CRL"), "{err:#}");
}

#[test]
fn sim_quote_passes_dcap_qvl_policy_with_claims() {
    // The claims path re-parses CRLs and certificates with x509-cert 0.3.
    let config = SimPkiConfig {
        pck_configuration: PckConfiguration {
            dynamic_platform: false,
            cached_keys: false,
            smt_enabled: false,
        },
        ..SimPkiConfig::default()
    };
    let p = platform_with(DEV_SEED, config);
    let quote = quote(&p, SimTdConfig::default(), &[7; 64]);
    let claims = verifier(&p)
        .verify_with_policy(&quote, &p.collateral, NOW, &QuotePolicy::strict(NOW))
        .unwrap();
    assert_eq!(claims.platform.pck.fmspc, SIM_FMSPC);
    assert_eq!(claims.platform.pck.cpu_svn, UP_TO_DATE_SVNS.cpu_svn);
    assert_eq!(claims.platform.pck.pce_svn, UP_TO_DATE_SVNS.pce_svn);
    // Certificates are older than the collateral; the collateral expires first.
    assert_eq!(claims.earliest_issue_date, DEFAULT_CERT_NOT_BEFORE);
    assert_eq!(claims.latest_issue_date, ISSUE);
    assert_eq!(claims.earliest_expiration_date, NEXT_UPDATE);
}

#[test]
fn strict_policy_rejects_the_default_intel_like_configuration_flags() {
    // Intel's sample platform has dynamic platform, cached keys and SMT set,
    // and so does the default sim platform.
    let p = platform();
    let quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    let strict = QuotePolicy::strict(NOW);
    assert!(verifier(&p)
        .verify_with_policy(&quote, &p.collateral, NOW, &strict)
        .is_err());
    let relaxed = QuotePolicy::strict(NOW)
        .allow_dynamic_platform(true)
        .allow_cached_keys(true)
        .allow_smt(true);
    verifier(&p)
        .verify_with_policy(&quote, &p.collateral, NOW, &relaxed)
        .unwrap();
}

#[test]
fn pck_certificate_carries_the_sgx_extension() {
    let p = platform();
    let ext = dcap_qvl::intel::parse_pck_extension(p.pki.pck_leaf_der()).unwrap();
    assert_eq!(ext.fmspc, SIM_FMSPC);
    assert_eq!(ext.cpu_svn, UP_TO_DATE_SVNS.cpu_svn);
    assert_eq!(ext.pce_svn, UP_TO_DATE_SVNS.pce_svn);
    assert_eq!(ext.pce_id, vec![0, 0]);
    assert_eq!(ext.ppid.len(), 16);
    assert_eq!(ext.sgx_type, 1);
    assert_eq!(ext.platform_instance_id.map(|id| id.len()), Some(16));
    assert_eq!(ext.dynamic_platform, Some(true));
    assert_eq!(ext.cached_keys, Some(true));
    assert_eq!(ext.smt_enabled, Some(true));
    assert_eq!(
        dcap_qvl::intel::pck_ca(p.pki.pck_leaf_der()).unwrap(),
        dcap_qvl::config::PckCa::Platform
    );
}

#[test]
fn same_seed_gives_identical_bytes() {
    let (a, b) = (platform(), platform());
    assert_eq!(a.pki.root_ca_der(), b.pki.root_ca_der());
    assert_eq!(a.pki.pck_chain_pem(), b.pki.pck_chain_pem());
    assert_eq!(a.collateral, b.collateral);
    let report_data = [9; 64];
    assert_eq!(
        quote(&a, SimTdConfig::default(), &report_data),
        quote(&b, SimTdConfig::default(), &report_data)
    );
}

#[test]
fn different_seed_gives_a_different_root_that_does_not_verify_the_other() {
    let a = platform();
    let b = platform_with(b"another seed", SimPkiConfig::default());
    assert_ne!(a.pki.root_ca_der(), b.pki.root_ca_der());
    let quote_b = quote(&b, SimTdConfig::default(), &[0; 64]);
    assert!(verifier(&a).verify(&quote_b, &b.collateral, NOW).is_err());
    assert!(verifier(&a).verify(&quote_b, &a.collateral, NOW).is_err());
}

#[test]
fn debug_td_fails_by_default_and_passes_when_allowed() {
    let p = platform();
    let quote = quote(&p, SimTdConfig::default().with_debug(), &[0; 64]);
    let err = verifier(&p).verify(&quote, &p.collateral, NOW).unwrap_err();
    assert!(format!("{err:#}").contains("Debug mode"), "{err:#}");
    let report = verifier(&p)
        .allow_debug(true)
        .verify(&quote, &p.collateral, NOW)
        .unwrap();
    assert_eq!(report.status, "UpToDate");
}

#[test]
fn out_of_date_platform_reports_out_of_date_with_its_advisory() {
    let config = SimPkiConfig {
        platform_level: PlatformTcbLevel::OutOfDate,
        ..SimPkiConfig::default()
    };
    let p = platform_with(DEV_SEED, config);
    let quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    let report = verifier(&p).verify(&quote, &p.collateral, NOW).unwrap();
    // The TD reports the platform's TEE_TCB_SVN, so its TDX module is at the
    // out-of-date module level too.
    assert_eq!(report.status, "OutOfDate");
    assert_eq!(
        report.advisory_ids,
        [PLATFORM_ADVISORY_ID, MODULE_ADVISORY_ID]
    );
}

#[test]
fn lower_td_svns_report_out_of_date() {
    let p = platform();
    // TDX late microcode below the up-to-date level: the platform level drops.
    let mut microcode = UP_TO_DATE_SVNS.tee_tcb_svn;
    microcode[2] -= 1;
    let config = SimTdConfig {
        tee_tcb_svn: Some(microcode),
        ..SimTdConfig::default()
    };
    let report = verifier(&p)
        .verify(&quote(&p, config, &[0; 64]), &p.collateral, NOW)
        .unwrap();
    assert_eq!(report.status, "OutOfDate");
    assert_eq!(report.advisory_ids, [PLATFORM_ADVISORY_ID]);

    // TDX module ISVSVN below the up-to-date module level.
    let mut module = UP_TO_DATE_SVNS.tee_tcb_svn;
    module[0] -= 2;
    let config = SimTdConfig {
        tee_tcb_svn: Some(module),
        ..SimTdConfig::default()
    };
    let report = verifier(&p)
        .verify(&quote(&p, config, &[0; 64]), &p.collateral, NOW)
        .unwrap();
    assert_eq!(report.status, "OutOfDate");
    assert_eq!(report.advisory_ids, [MODULE_ADVISORY_ID]);
}

#[test]
fn collateral_outside_its_window_fails() {
    let p = platform();
    let quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    let v = verifier(&p);
    v.verify(&quote, &p.collateral, ISSUE).unwrap();
    // webpki treats a CRL as expired from its nextUpdate second on.
    v.verify(&quote, &p.collateral, NEXT_UPDATE - 1).unwrap();
    let err = v.verify(&quote, &p.collateral, NEXT_UPDATE).unwrap_err();
    assert!(format!("{err:#}").contains("CrlExpired"), "{err:#}");
    let err = v.verify(&quote, &p.collateral, ISSUE - 1).unwrap_err();
    assert!(format!("{err:#}").contains("future"), "{err:#}");
}

#[test]
fn flipped_byte_in_the_body_fails() {
    let p = platform();
    let mut quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    // A byte of MRTD (body offset 136).
    quote[Header::LEN + 136] ^= 1;
    let err = verifier(&p).verify(&quote, &p.collateral, NOW).unwrap_err();
    assert!(
        format!("{err:#}").contains("ISV enclave report signature"),
        "{err:#}"
    );
}

#[test]
fn flipped_byte_in_the_qe_report_fails() {
    let p = platform();
    let mut quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    // A byte of the QE report's MRENCLAVE (report offset 64).
    quote[QE_REPORT_OFFSET + 64] ^= 1;
    let err = verifier(&p).verify(&quote, &p.collateral, NOW).unwrap_err();
    assert!(format!("{err:#}").contains("qe_report"), "{err:#}");
}

#[test]
fn qe_report_offset_matches_the_encoder() {
    // Guards the offset the tampering test relies on.
    let p = platform();
    let quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    let parsed = easyenclave::quote::Quote::parse(&quote).unwrap();
    let qe_report = parsed.signature().qe_report.to_bytes();
    assert_eq!(
        &quote[QE_REPORT_OFFSET..QE_REPORT_OFFSET + EnclaveReport::LEN],
        qe_report.as_slice()
    );
}

#[test]
fn tampered_collateral_fails() {
    let p = platform();
    let quote = quote(&p, SimTdConfig::default(), &[0; 64]);
    let mut collateral = p.collateral.clone();
    collateral.tcb_info = collateral.tcb_info.replace("OutOfDate", "UpToDate");
    let err = verifier(&p).verify(&quote, &collateral, NOW).unwrap_err();
    assert!(format!("{err:#}").contains("tcb_info"), "{err:#}");
}
