//! RA-TLS certificates: issue with a simulated TD's quote, parse, verify the
//! quote and its binding; tampered certificates are rejected by name.
#![cfg(all(feature = "ratls", feature = "sim"))]

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{Any, OctetString};
use der::{Decode, Encode, Tag, Tagged};
use easyenclave::attestation::{report_data, RaTlsStatement};
use easyenclave::collateral::Collateral;
use easyenclave::ratls::{
    issue, CertEvidence, Identity, RaTlsError, CLOCK_SKEW_ALLOWANCE, MAX_CERT_BYTES,
    MAX_QUOTE_BYTES, QUOTE_EXTENSION_OID, QUOTE_EXTENSION_OID_DER,
};
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig};
use easyenclave::verify::{Policy, TrustRoot, Verifier};
use sha2::{Digest, Sha256};

fn pki() -> &'static SimPki {
    static PKI: OnceLock<SimPki> = OnceLock::new();
    PKI.get_or_init(|| SimPki::from_seed(b"ratls integration test").unwrap())
}

fn td() -> SimTd {
    SimTd::new(pki(), SimTdConfig::default())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An identity whose quote comes from the simulated TD.
fn sim_identity() -> Identity {
    issue(Duration::from_secs(3600), |rd| {
        td().quote(rd).map_err(|e| e.to_string())
    })
    .unwrap()
}

#[test]
fn issued_certificate_round_trips_and_its_quote_binds_the_key() {
    let before = SystemTime::now();
    let identity = sim_identity();
    let evidence = CertEvidence::from_cert_der(&identity.cert_der).unwrap();

    // The quote verifies against the sim root and binds the certificate's key.
    let now = now_unix();
    let collateral = Collateral::from(pki().collateral(now - 60, now + 3600).unwrap());
    let verifier = Verifier::with_root(
        TrustRoot::Explicit(pki().root_ca_der().to_vec()),
        Policy::default(),
    );
    let verified = verifier.verify(&evidence.quote, &collateral, now).unwrap();
    evidence
        .check_binding(&verified.measurements.report_data)
        .unwrap();

    // REPORTDATA recomputed independently: SHA-512(tag || {"spki_sha256":"<hex>"}).
    let spki_hash = hex::encode(Sha256::digest(&evidence.spki_der));
    let mut hasher = sha2::Sha512::new();
    hasher.update(b"easyenclave/reportdata/ra-tls/v1\0");
    hasher.update(format!("{{\"spki_sha256\":\"{spki_hash}\"}}").as_bytes());
    let expected: [u8; 64] = hasher.finalize().into();
    assert_eq!(verified.measurements.report_data, expected);

    // The private key matches the certificate: the SPKI's EC point is the
    // one ring derives from the PKCS#8 key.
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &identity.key_pkcs8_der,
        &rng,
    )
    .unwrap();
    use ring::signature::KeyPair;
    assert!(evidence.spki_der.ends_with(key.public_key().as_ref()));

    // Validity: backdated by the skew allowance, expires as reported.
    assert_eq!(evidence.not_after, identity.not_after);
    let lifetime = evidence
        .not_after
        .duration_since(evidence.not_before)
        .unwrap();
    let expected_lifetime = Duration::from_secs(3600) + CLOCK_SKEW_ALLOWANCE;
    assert!(
        lifetime.abs_diff(expected_lifetime) <= Duration::from_secs(1),
        "{lifetime:?}"
    );
    assert!(evidence.not_before <= before - CLOCK_SKEW_ALLOWANCE + Duration::from_secs(1));
    evidence.check_validity(SystemTime::now()).unwrap();
    let late = identity.not_after + Duration::from_secs(1);
    assert!(matches!(
        evidence.check_validity(late),
        Err(RaTlsError::NotValidNow { .. })
    ));
}

#[test]
fn every_issue_uses_a_fresh_key() {
    let a = CertEvidence::from_cert_der(&sim_identity().cert_der).unwrap();
    let b = CertEvidence::from_cert_der(&sim_identity().cert_der).unwrap();
    assert_ne!(a.spki_der, b.spki_der);
    assert_ne!(a.quote, b.quote);
}

#[test]
fn a_quote_for_another_key_fails_the_binding() {
    let other = CertEvidence::from_cert_der(&sim_identity().cert_der).unwrap();
    let other_rd = other.expected_report_data().unwrap();
    // A certificate whose quote binds a different key (a replayed quote).
    let identity = issue(Duration::from_secs(60), |_| {
        td().quote(&other_rd).map_err(|e| e.to_string())
    })
    .unwrap();
    let evidence = CertEvidence::from_cert_der(&identity.cert_der).unwrap();
    let quote_rd = easyenclave::quote::Quote::parse(&evidence.quote)
        .unwrap()
        .td_report()
        .report_data;
    let err = evidence.check_binding(&quote_rd).unwrap_err();
    match &err {
        RaTlsError::Binding {
            spki_sha256, found, ..
        } => {
            assert_eq!(
                spki_sha256,
                &hex::encode(Sha256::digest(&evidence.spki_der))
            );
            assert_eq!(found, &hex::encode(other_rd));
        }
        other => panic!("expected a binding error, got {other}"),
    }
    assert!(err
        .to_string()
        .contains("does not bind the certificate's key"));
    // And the statement it should have bound is the documented one.
    assert_eq!(
        evidence.expected_report_data().unwrap(),
        report_data(&RaTlsStatement::from_spki_der(&evidence.spki_der)).unwrap()
    );
}

#[test]
fn issue_refuses_bad_quotes_and_validity() {
    let err = issue(Duration::from_secs(60), |_| {
        Ok(vec![0; MAX_QUOTE_BYTES + 1])
    })
    .unwrap_err();
    assert_eq!(
        err,
        RaTlsError::QuoteSize {
            size: MAX_QUOTE_BYTES + 1,
            max: MAX_QUOTE_BYTES
        }
    );
    let err = issue(Duration::from_secs(60), |_| Ok(Vec::new())).unwrap_err();
    assert!(
        matches!(err, RaTlsError::QuoteSize { size: 0, .. }),
        "{err}"
    );
    let err = issue(Duration::from_secs(60), |_| Err("TSM busy".into())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "getting a quote for the certificate failed: TSM busy"
    );
    let err = issue(Duration::ZERO, |_| Ok(vec![1])).unwrap_err();
    assert_eq!(err, RaTlsError::ZeroValidity);
}

// --- Tampering. The certificate is taken apart as generic DER and put back
// --- together with one change; the parser must name the change. (The
// --- certificate's self-signature is not part of the format's trust, so it
// --- is not recomputed.)

/// A certificate with a dummy quote (the parser does not verify quotes).
fn plain_cert() -> Vec<u8> {
    issue(
        Duration::from_secs(60),
        |_| Ok(b"not a real quote".to_vec()),
    )
    .unwrap()
    .cert_der
}

/// `cert` with its extension list replaced by `edit(extensions)`.
fn edit_extensions(cert: &[u8], edit: impl FnOnce(&mut Vec<Any>)) -> Vec<u8> {
    let mut outer: Vec<Any> = Vec::from_der(cert).unwrap();
    let mut tbs: Vec<Any> = outer[0].decode_as().unwrap();
    let last = tbs.last().unwrap();
    assert_eq!(
        last.tag(),
        Tag::ContextSpecific {
            constructed: true,
            number: 3u8.try_into().unwrap()
        }
    );
    let mut extensions: Vec<Any> = Vec::from_der(last.value()).unwrap();
    edit(&mut extensions);
    let wrapped = Any::new(last.tag(), extensions.to_der().unwrap()).unwrap();
    *tbs.last_mut().unwrap() = wrapped;
    outer[0] = Any::encode_from(&tbs).unwrap();
    outer.to_der().unwrap()
}

/// A DER Extension: SEQUENCE { OID, [critical TRUE], OCTET STRING(value) }.
fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Any {
    let mut parts = vec![Any::new(Tag::ObjectIdentifier, oid.to_vec()).unwrap()];
    if critical {
        parts.push(Any::encode_from(&true).unwrap());
    }
    parts.push(Any::encode_from(&OctetString::new(value.to_vec()).unwrap()).unwrap());
    Any::encode_from(&parts).unwrap()
}

fn quote_value(quote: &[u8]) -> Vec<u8> {
    OctetString::new(quote.to_vec()).unwrap().to_der().unwrap()
}

#[test]
fn the_generic_rebuild_is_faithful() {
    // Guards the tamper helpers: an empty edit gives back the same bytes.
    let cert = plain_cert();
    assert_eq!(edit_extensions(&cert, |_| {}), cert);
    let evidence = CertEvidence::from_cert_der(&cert).unwrap();
    assert_eq!(evidence.quote, b"not a real quote");
}

#[test]
fn two_quote_extensions_are_rejected() {
    let cert = edit_extensions(&plain_cert(), |exts| {
        exts.push(extension(
            QUOTE_EXTENSION_OID_DER,
            false,
            &quote_value(b"second quote"),
        ));
    });
    let err = CertEvidence::from_cert_der(&cert).unwrap_err();
    assert_eq!(err, RaTlsError::DuplicateQuoteExtension { count: 2 });
    assert!(err.to_string().contains(QUOTE_EXTENSION_OID));
}

#[test]
fn a_missing_quote_extension_is_rejected() {
    // Another extension under a nearby OID (…​.2) is not the quote.
    let mut other_oid = QUOTE_EXTENSION_OID_DER.to_vec();
    *other_oid.last_mut().unwrap() = 0x02;
    let cert = edit_extensions(&plain_cert(), |exts| {
        *exts = vec![extension(&other_oid, false, &quote_value(b"q"))];
    });
    assert_eq!(
        CertEvidence::from_cert_der(&cert).unwrap_err(),
        RaTlsError::MissingQuoteExtension
    );
}

#[test]
fn a_critical_quote_extension_is_rejected() {
    let cert = edit_extensions(&plain_cert(), |exts| {
        *exts = vec![extension(QUOTE_EXTENSION_OID_DER, true, &quote_value(b"q"))];
    });
    assert_eq!(
        CertEvidence::from_cert_der(&cert).unwrap_err(),
        RaTlsError::CriticalQuoteExtension
    );
}

#[test]
fn a_quote_extension_that_is_not_an_octet_string_is_rejected() {
    // The raw quote bytes without the inner OCTET STRING wrapper.
    let cert = edit_extensions(&plain_cert(), |exts| {
        *exts = vec![extension(QUOTE_EXTENSION_OID_DER, false, b"raw quote")];
    });
    let err = CertEvidence::from_cert_der(&cert).unwrap_err();
    assert!(matches!(err, RaTlsError::QuoteExtensionValue(_)), "{err}");
}

#[test]
fn oversized_quotes_and_certificates_are_rejected() {
    let cert = edit_extensions(&plain_cert(), |exts| {
        *exts = vec![extension(
            QUOTE_EXTENSION_OID_DER,
            false,
            &quote_value(&vec![7; MAX_QUOTE_BYTES + 1]),
        )];
    });
    assert!(cert.len() <= MAX_CERT_BYTES);
    assert_eq!(
        CertEvidence::from_cert_der(&cert).unwrap_err(),
        RaTlsError::QuoteSize {
            size: MAX_QUOTE_BYTES + 1,
            max: MAX_QUOTE_BYTES
        }
    );

    let huge = edit_extensions(&plain_cert(), |exts| {
        exts.push(extension(&[0x2a, 0x03], false, &vec![0; MAX_CERT_BYTES]));
    });
    assert_eq!(
        CertEvidence::from_cert_der(&huge).unwrap_err(),
        RaTlsError::CertTooLarge {
            size: huge.len(),
            max: MAX_CERT_BYTES
        }
    );
}

#[test]
fn malformed_der_is_rejected() {
    let cert = plain_cert();
    let mut trailing = cert.clone();
    trailing.push(0);
    for bad in [
        &b""[..],
        b"\x30\x03\x02\x01",
        &cert[..cert.len() - 1],
        &trailing,
    ] {
        let err = CertEvidence::from_cert_der(bad).unwrap_err();
        assert!(matches!(err, RaTlsError::Der(_)), "{err}");
    }
}

/// OpenSSL reads the certificate and prints the extension under the
/// project's OID (an independent DER parser with arbitrary-size OID arcs).
#[test]
fn openssl_parses_the_certificate() {
    let Ok(output) = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-text"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&plain_cert())?;
            child.wait_with_output()
        })
    else {
        ee_testkit::unavailable(
            "ratls: openssl interop",
            "openssl not installed (scripts/install-deps)",
        );
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains(QUOTE_EXTENSION_OID), "{text}");
    assert!(
        text.contains("CN = Easy Enclave RA-TLS") || text.contains("CN=Easy Enclave RA-TLS"),
        "{text}"
    );
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");

    // The self-signature is a real one: OpenSSL verifies the certificate
    // as its own trust anchor.
    let dir = tempfile::tempdir().unwrap();
    let der = dir.path().join("cert.der");
    let pem = dir.path().join("cert.pem");
    std::fs::write(&der, plain_cert()).unwrap();
    let convert = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem)
        .status()
        .unwrap();
    assert!(convert.success());
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&pem)
        .arg(&pem)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
