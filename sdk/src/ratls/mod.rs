//! RA-TLS certificates: a TLS key whose certificate carries a TD quote that
//! binds it.
//!
//! The agent in the TD serves TLS with a self-signed certificate for a fresh
//! key. The certificate carries a TDX quote whose REPORTDATA binds the key, so
//! a client that verifies the quote (DCAP, policy, allowlist) and then sees the
//! handshake signed by that key knows it talks to the measured agent: nothing
//! else in the certificate (names, issuer, its own signature) is trusted.
//!
//! # Certificate format (version 1)
//!
//! - X.509 v3, self-signed (issuer = subject = `CN=Easy Enclave RA-TLS`),
//!   ECDSA P-256 key generated for this certificate only, signed with
//!   ecdsa-with-SHA256, random 16-byte serial.
//! - Validity: `notBefore` = issue time minus [`CLOCK_SKEW_ALLOWANCE`] (so a
//!   client whose clock is a little behind still accepts it), `notAfter` =
//!   issue time plus the validity the issuer asked for. Times are whole
//!   seconds, UTCTime before 2050 (RFC 5280).
//! - Exactly one extension, non-critical, with OID [`QUOTE_EXTENSION_OID`]:
//!   its `extnValue` holds the DER encoding of an `OCTET STRING` whose
//!   content is the quote (1 to [`MAX_QUOTE_BYTES`] bytes).
//! - The quote's REPORTDATA is
//!   `report_data(&RaTlsStatement::from_spki_der(spki))`
//!   ([`crate::attestation`]): SHA-512 of the RA-TLS purpose tag and the
//!   canonical JSON of `{"spki_sha256": hex(SHA-256(SubjectPublicKeyInfo DER))}`.
//!
//! # The OID
//!
//! The project's arc is `2.25.179555553277548385160634036039040177601`, the
//! ITU-T X.667 form of the UUID `87152444-bc5c-44ec-a87d-07bd6ae915c1`
//! (generated once for Easy Enclave; a `2.25` arc needs no registration). The
//! quote extension is `.1` under it; later extensions take the next numbers.
//!
//! A 128-bit arc is legal X.509, and OpenSSL, BoringSSL and rustls/webpki
//! handle it, but parsers that store OID arcs in fixed-width integers reject
//! the whole certificate (RustCrypto's `const-oid` has 32-bit arcs, which is
//! why [`asn1`] keeps extension OIDs raw). Clients on such stacks need a
//! custom parser to talk to an agent.
//!
//! # Parsing
//!
//! [`CertEvidence::from_cert_der`] is strict: DER only, size-capped
//! ([`MAX_CERT_BYTES`]), X.509 v3, exactly one quote extension, non-critical,
//! holding one well-formed `OCTET STRING` within the quote size cap. It does
//! not verify the quote: the caller verifies it with
//! [`crate::verify::Verifier`] and then calls [`CertEvidence::check_binding`]
//! with the verified REPORTDATA.

mod asn1;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{BitString, GeneralizedTime, OctetString, UtcTime};
use der::{Decode, Encode};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::Version;

use crate::attestation::{report_data, AttestationError, RaTlsStatement, ReportData};

use asn1::{Certificate, Extension, RawOid, TbsCertificate};

/// The project's OID arc: `2.25.<UUID 87152444-bc5c-44ec-a87d-07bd6ae915c1>`.
pub const PROJECT_OID_ARC: &str = "2.25.179555553277548385160634036039040177601";
/// OID of the certificate extension that carries the quote (dotted form).
pub const QUOTE_EXTENSION_OID: &str = "2.25.179555553277548385160634036039040177601.1";
/// [`QUOTE_EXTENSION_OID`] as DER content octets (without tag and length).
pub const QUOTE_EXTENSION_OID_DER: &[u8] = &[
    0x69, 0x82, 0x8e, 0x95, 0x92, 0x91, 0x97, 0xc5, 0xe2, 0x93, 0xd9, 0xa8, 0xbe, 0xc1, 0xf7, 0xd6,
    0xd7, 0xa4, 0xab, 0x41, 0x01,
];
/// Largest quote a certificate may carry. Real TDX quotes are 5 to 8 KiB;
/// the cap keeps the TLS Certificate message under rustls' 64 KiB limit.
pub const MAX_QUOTE_BYTES: usize = 32 * 1024;
/// Largest certificate [`CertEvidence::from_cert_der`] reads.
pub const MAX_CERT_BYTES: usize = MAX_QUOTE_BYTES + 4 * 1024;
/// How far `notBefore` is set before the issue time, for clients whose
/// clocks lag.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);
/// Subject and issuer common name of every RA-TLS certificate.
pub const SUBJECT_COMMON_NAME: &str = "Easy Enclave RA-TLS";

/// A TLS identity: the certificate and its private key.
#[derive(Clone)]
pub struct Identity {
    /// The self-signed RA-TLS certificate (DER).
    pub cert_der: Vec<u8>,
    /// The certificate's private key (PKCS#8 DER, ECDSA P-256).
    pub key_pkcs8_der: Vec<u8>,
    /// When the certificate expires: renew before then.
    pub not_after: SystemTime,
}

/// Hand-written so the private key never reaches a log line.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_der", &format_args!("{} bytes", self.cert_der.len()))
            .field("key_pkcs8_der", &"<private>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Why a certificate could not be issued or was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaTlsError {
    /// `issue` was asked for an empty validity.
    #[error("certificate validity must be longer than zero")]
    ZeroValidity,
    /// A time cannot be written in a certificate (before 1970 or after 9999).
    #[error("certificate {field} is outside the range X.509 can represent")]
    TimeOutOfRange {
        /// `notBefore` or `notAfter`.
        field: &'static str,
    },
    /// The system random generator or the key generator failed.
    #[error("generating the certificate key failed")]
    KeyGeneration,
    /// Signing the certificate failed.
    #[error("signing the certificate failed")]
    Signing,
    /// The caller's quote function failed.
    #[error("getting a quote for the certificate failed: {0}")]
    QuoteProvider(String),
    /// A quote is empty or over [`MAX_QUOTE_BYTES`].
    #[error("quote is {size} bytes, expected 1 to {max}")]
    QuoteSize {
        /// Its size.
        size: usize,
        /// [`MAX_QUOTE_BYTES`].
        max: usize,
    },
    /// The certificate is over [`MAX_CERT_BYTES`].
    #[error("certificate is {size} bytes, over the {max}-byte limit")]
    CertTooLarge {
        /// Its size.
        size: usize,
        /// [`MAX_CERT_BYTES`].
        max: usize,
    },
    /// Not a DER X.509 certificate, or one that cannot be encoded.
    #[error("certificate DER: {0}")]
    Der(String),
    /// Not X.509 v3 (only v3 has extensions).
    #[error("certificate is X.509 {found}, expected v3")]
    Version {
        /// The version found.
        found: String,
    },
    /// No extension with [`QUOTE_EXTENSION_OID`].
    #[error("certificate has no quote extension (OID {QUOTE_EXTENSION_OID})")]
    MissingQuoteExtension,
    /// More than one extension with [`QUOTE_EXTENSION_OID`].
    #[error("certificate has {count} quote extensions (OID {QUOTE_EXTENSION_OID}); exactly one is allowed")]
    DuplicateQuoteExtension {
        /// How many there are.
        count: usize,
    },
    /// The quote extension is marked critical.
    #[error("the quote extension (OID {QUOTE_EXTENSION_OID}) is marked critical; the format makes it non-critical")]
    CriticalQuoteExtension,
    /// The quote extension's value is not one DER `OCTET STRING`.
    #[error("the quote extension's value is not a DER OCTET STRING: {0}")]
    QuoteExtensionValue(String),
    /// The RA-TLS statement has no canonical form (not expected to happen:
    /// it is one fixed-size hex field).
    #[error("RA-TLS statement: {0}")]
    Statement(AttestationError),
    /// The quote's REPORTDATA is not the RA-TLS statement of the certificate's key.
    #[error(
        "the quote's REPORTDATA does not bind the certificate's key \
         (SubjectPublicKeyInfo SHA-256 {spki_sha256}): expected {expected}, quote has {found}"
    )]
    Binding {
        /// SHA-256 of the certificate's SubjectPublicKeyInfo (hex).
        spki_sha256: String,
        /// The REPORTDATA the key calls for (hex).
        expected: String,
        /// The quote's REPORTDATA (hex).
        found: String,
    },
    /// The certificate is not valid at the time of checking.
    #[error("certificate is valid from {not_before} to {not_after} (Unix seconds), not at {now}")]
    NotValidNow {
        /// `notBefore`.
        not_before: u64,
        /// `notAfter`.
        not_after: u64,
        /// The time of the check.
        now: u64,
    },
}

// By hand, not `#[from]`: the message already includes the inner error, so
// it is not also exposed as `source()` (which would print it twice).
impl From<AttestationError> for RaTlsError {
    fn from(e: AttestationError) -> Self {
        RaTlsError::Statement(e)
    }
}

fn der_error(e: der::Error) -> RaTlsError {
    RaTlsError::Der(e.to_string())
}

/// Issue an RA-TLS certificate for a fresh ECDSA P-256 key, valid from now
/// (minus [`CLOCK_SKEW_ALLOWANCE`]) for `validity`.
///
/// `quote_for` gets the REPORTDATA that binds the new key and returns the
/// quote (in the TD: a configfs-tsm report; in tests: a simulated TD).
pub fn issue(
    validity: Duration,
    quote_for: impl FnOnce(&ReportData) -> Result<Vec<u8>, String>,
) -> Result<Identity, RaTlsError> {
    build_identity(validity, Some(quote_for))
}

/// A certificate in the same format for a fresh key, but without the quote
/// extension: for an agent that cannot quote (no TDX provider), so it can
/// still serve TLS and say what it lacks. RA-TLS clients refuse it
/// ([`CertEvidence::from_cert_der`] fails with
/// [`RaTlsError::MissingQuoteExtension`]).
pub fn issue_unattested(validity: Duration) -> Result<Identity, RaTlsError> {
    build_identity(validity, None::<fn(&ReportData) -> Result<Vec<u8>, String>>)
}

/// [`issue`], with the quote extension only when `quote_for` is given.
fn build_identity(
    validity: Duration,
    quote_for: Option<impl FnOnce(&ReportData) -> Result<Vec<u8>, String>>,
) -> Result<Identity, RaTlsError> {
    if validity.is_zero() {
        return Err(RaTlsError::ZeroValidity);
    }
    let now = SystemTime::now();
    let not_before = now.checked_sub(CLOCK_SKEW_ALLOWANCE).unwrap_or(UNIX_EPOCH);
    let not_after = now
        .checked_add(validity)
        .ok_or(RaTlsError::TimeOutOfRange { field: "notAfter" })?;
    let (not_before_time, _) = x509_time(not_before, "notBefore")?;
    let (not_after_time, not_after) = x509_time(not_after, "notAfter")?;

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| RaTlsError::KeyGeneration)?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| RaTlsError::KeyGeneration)?;
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: asn1::ID_EC_PUBLIC_KEY,
            parameters: Some(asn1::SECP256R1.into()),
        },
        subject_public_key: BitString::from_bytes(key.public_key().as_ref()).map_err(der_error)?,
    };
    let spki_der = spki.to_der().map_err(der_error)?;

    let quote = match quote_for {
        Some(quote_for) => {
            let binding = report_data(&RaTlsStatement::from_spki_der(&spki_der))?;
            let quote = quote_for(&binding).map_err(RaTlsError::QuoteProvider)?;
            check_quote_size(&quote)?;
            Some(quote)
        }
        None => None,
    };

    let mut serial = [0u8; 16];
    rng.fill(&mut serial)
        .map_err(|_| RaTlsError::KeyGeneration)?;
    // Positive and minimal as DER INTEGER: top bit clear, first octet non-zero.
    serial[0] = (serial[0] & 0x7f) | 0x40;

    let name: Name = format!("CN={SUBJECT_COMMON_NAME}")
        .parse()
        .map_err(der_error)?;
    let signature_algorithm = AlgorithmIdentifierOwned {
        oid: asn1::ECDSA_WITH_SHA256,
        parameters: None,
    };
    let extensions = quote
        .map(|quote| -> Result<Vec<Extension>, RaTlsError> {
            let extn_value = OctetString::new(quote)
                .and_then(|q| q.to_der())
                .and_then(OctetString::new)
                .map_err(der_error)?;
            Ok(vec![Extension {
                extn_id: RawOid(QUOTE_EXTENSION_OID_DER.to_vec()),
                critical: false,
                extn_value,
            }])
        })
        .transpose()?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(der_error)?,
        signature: signature_algorithm.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: not_before_time,
            not_after: not_after_time,
        },
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions,
    };
    let tbs_der = tbs.to_der().map_err(der_error)?;
    let signature = key.sign(&rng, &tbs_der).map_err(|_| RaTlsError::Signing)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm,
        signature: BitString::from_bytes(signature.as_ref()).map_err(der_error)?,
    };
    Ok(Identity {
        cert_der: cert.to_der().map_err(der_error)?,
        key_pkcs8_der: pkcs8.as_ref().to_vec(),
        not_after,
    })
}

/// `time` truncated to whole seconds, as an X.509 time (UTCTime before 2050,
/// GeneralizedTime after, RFC 5280 §4.1.2.5) and as the `SystemTime` it encodes.
fn x509_time(time: SystemTime, field: &'static str) -> Result<(Time, SystemTime), RaTlsError> {
    let out_of_range = RaTlsError::TimeOutOfRange { field };
    let seconds = Duration::from_secs(
        time.duration_since(UNIX_EPOCH)
            .map_err(|_| out_of_range.clone())?
            .as_secs(),
    );
    let encoded = match UtcTime::from_unix_duration(seconds) {
        Ok(utc) => Time::from(utc),
        Err(_) => Time::from(
            GeneralizedTime::from_unix_duration(seconds).map_err(|_| out_of_range.clone())?,
        ),
    };
    Ok((encoded, UNIX_EPOCH + seconds))
}

fn check_quote_size(quote: &[u8]) -> Result<(), RaTlsError> {
    if quote.is_empty() || quote.len() > MAX_QUOTE_BYTES {
        return Err(RaTlsError::QuoteSize {
            size: quote.len(),
            max: MAX_QUOTE_BYTES,
        });
    }
    Ok(())
}

/// What an RA-TLS certificate claims, before the quote is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEvidence {
    /// The certificate's SubjectPublicKeyInfo (DER): the key the quote must bind.
    pub spki_der: Vec<u8>,
    /// The quote from the quote extension.
    pub quote: Vec<u8>,
    /// Start of the certificate's validity.
    pub not_before: SystemTime,
    /// End of the certificate's validity.
    pub not_after: SystemTime,
}

impl CertEvidence {
    /// Parse an RA-TLS certificate strictly (see the [module docs](self)).
    pub fn from_cert_der(cert_der: &[u8]) -> Result<CertEvidence, RaTlsError> {
        if cert_der.len() > MAX_CERT_BYTES {
            return Err(RaTlsError::CertTooLarge {
                size: cert_der.len(),
                max: MAX_CERT_BYTES,
            });
        }
        let cert = Certificate::from_der(cert_der).map_err(der_error)?;
        let tbs = cert.tbs_certificate;
        if tbs.version != Version::V3 {
            return Err(RaTlsError::Version {
                found: format!("{:?}", tbs.version),
            });
        }
        let quote_extensions: Vec<&Extension> = tbs
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id.0 == QUOTE_EXTENSION_OID_DER)
            .collect();
        let extension = match quote_extensions.as_slice() {
            [] => return Err(RaTlsError::MissingQuoteExtension),
            [one] => *one,
            many => {
                return Err(RaTlsError::DuplicateQuoteExtension { count: many.len() });
            }
        };
        if extension.critical {
            return Err(RaTlsError::CriticalQuoteExtension);
        }
        let quote = OctetString::from_der(extension.extn_value.as_bytes())
            .map_err(|e| RaTlsError::QuoteExtensionValue(e.to_string()))?
            .into_bytes();
        check_quote_size(&quote)?;
        Ok(CertEvidence {
            spki_der: tbs.subject_public_key_info.to_der().map_err(der_error)?,
            quote,
            not_before: tbs.validity.not_before.to_system_time(),
            not_after: tbs.validity.not_after.to_system_time(),
        })
    }

    /// The REPORTDATA that binds this certificate's key.
    pub fn expected_report_data(&self) -> Result<ReportData, RaTlsError> {
        Ok(report_data(&RaTlsStatement::from_spki_der(&self.spki_der))?)
    }

    /// Check that `quote_report_data` (from the verified quote) binds this
    /// certificate's key.
    pub fn check_binding(&self, quote_report_data: &ReportData) -> Result<(), RaTlsError> {
        let expected = self.expected_report_data()?;
        if &expected != quote_report_data {
            return Err(RaTlsError::Binding {
                spki_sha256: hex::encode(RaTlsStatement::from_spki_der(&self.spki_der).spki_sha256),
                expected: hex::encode(expected),
                found: hex::encode(quote_report_data),
            });
        }
        Ok(())
    }

    /// Check that the certificate is valid at `now`.
    pub fn check_validity(&self, now: SystemTime) -> Result<(), RaTlsError> {
        if now < self.not_before || now > self.not_after {
            let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            return Err(RaTlsError::NotValidNow {
                not_before: secs(self.not_before),
                not_after: secs(self.not_after),
                now: secs(now),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OID constants agree with each other and with the UUID, computed
    /// here with an independent base-128 encoder (X.690 §8.19).
    #[test]
    fn oid_constants_encode_the_documented_uuid() {
        let uuid = u128::from_str_radix("87152444bc5c44eca87d07bd6ae915c1", 16).unwrap();
        let arc = PROJECT_OID_ARC.strip_prefix("2.25.").unwrap();
        assert_eq!(arc.parse::<u128>().unwrap(), uuid);
        assert_eq!(QUOTE_EXTENSION_OID, format!("{PROJECT_OID_ARC}.1"));

        let mut base128 = Vec::new();
        let mut rest = uuid;
        loop {
            let continuation = if base128.is_empty() { 0 } else { 0x80 };
            base128.insert(0, (rest & 0x7f) as u8 | continuation);
            rest >>= 7;
            if rest == 0 {
                break;
            }
        }
        let mut expected = vec![2 * 40 + 25];
        expected.extend(base128);
        expected.push(1);
        assert_eq!(QUOTE_EXTENSION_OID_DER, expected.as_slice());
    }
}
