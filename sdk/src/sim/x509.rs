//! DER building blocks for the simulated PKI, shaped like Intel's DCAP
//! certificates and CRLs: names (CN, O, L, ST, C), the standard extensions in
//! Intel's order (AKI, CRL distribution point, SKI, key usage, basic
//! constraints), the SGX extension of PCK certificates, signing, PEM.

use std::time::Duration;

use base64::Engine as _;
use der::asn1::{
    Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString, SetOfVec, Uint,
    UtcTime,
};
use der::oid::AssociatedOid;
use der::{DateTime, Encode, Sequence, Tag};
use p256::ecdsa::{signature::Signer, Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::crl::{CertificateList, TbsCertList};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, CrlNumber, KeyUsage,
    KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use super::SimError;

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const LOCALITY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
const STATE_OR_PROVINCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
const COUNTRY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");

/// Intel SGX extension and its fields (Intel SGX PCK Certificate and CRL
/// Profile; dcap-qvl `oids.rs`).
const SGX_EXTENSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
const SGX_PPID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.1");
const SGX_TCB: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2");
const SGX_PCEID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.3");
const SGX_FMSPC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.4");
const SGX_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.5");
const SGX_PLATFORM_INSTANCE_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.6");
const SGX_CONFIGURATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.7");

/// The organization in every simulated name: no one should mistake it for Intel.
const SIM_ORGANIZATION: &str = "Easy Enclave SIM (no security)";

fn der_err(what: &'static str) -> impl FnOnce(der::Error) -> SimError {
    move |source| SimError::Der { what, source }
}

/// ecdsa-with-SHA256 without parameters (RFC 5758), as Intel signs.
fn ecdsa_with_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    }
}

/// Key identifier of a public key: the leftmost 160 bits of the SHA-256 of
/// the subjectPublicKey bits (RFC 7093 section 2, method 1).
pub(super) fn key_id(key: &VerifyingKey) -> [u8; 20] {
    let digest = Sha256::digest(key.to_encoded_point(false).as_bytes());
    let mut id = [0u8; 20];
    id.copy_from_slice(&digest[..20]);
    id
}

fn subject_public_key_info(key: &VerifyingKey) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    let what = "subject public key info";
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&SECP256R1).map_err(der_err(what))?),
        },
        subject_public_key: BitString::from_bytes(key.to_encoded_point(false).as_bytes())
            .map_err(der_err(what))?,
    })
}

/// An Intel-ordered distinguished name (CN, O, L, ST, C) whose organization
/// marks it as simulated.
pub(super) fn sim_name(common_name: &str) -> Result<Name, SimError> {
    let attributes = [
        (COMMON_NAME, Tag::Utf8String, common_name),
        (ORGANIZATION, Tag::Utf8String, SIM_ORGANIZATION),
        (LOCALITY, Tag::Utf8String, "Simulated"),
        (STATE_OR_PROVINCE, Tag::Utf8String, "SIM"),
        // ZZ: user-assigned ISO 3166 code, no real country.
        (COUNTRY, Tag::PrintableString, "ZZ"),
    ];
    let rdns = attributes
        .into_iter()
        .map(|(oid, tag, value)| {
            let atv = AttributeTypeAndValue {
                oid,
                value: Any::new(tag, value.as_bytes())?,
            };
            Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![atv])?))
        })
        .collect::<Result<Vec<_>, der::Error>>()
        .map_err(der_err("distinguished name"))?;
    Ok(RdnSequence(rdns))
}

/// An X.509 time: UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280
/// section 4.1.2.5).
fn x509_time(unix: u64, field: &'static str) -> Result<Time, SimError> {
    let out_of_range = || SimError::TimeOutOfRange { field, unix };
    let datetime =
        DateTime::from_unix_duration(Duration::from_secs(unix)).map_err(|_| out_of_range())?;
    if datetime.year() < 2050 {
        UtcTime::from_date_time(datetime)
            .map(Time::UtcTime)
            .map_err(|_| out_of_range())
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(datetime)))
    }
}

fn extension<T: AssociatedOid + Encode>(
    value: &T,
    critical: bool,
) -> Result<Extension, der::Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// Whether a certificate is a CA (with its path length constraint) or an end
/// entity.
#[derive(Clone, Copy, Debug)]
pub(super) enum CertKind {
    /// A CA certificate: keyCertSign + cRLSign, basicConstraints CA:TRUE.
    Ca { path_len: u8 },
    /// An end-entity certificate: digitalSignature + nonRepudiation, CA:FALSE.
    EndEntity,
}

/// Everything that goes into one certificate.
pub(super) struct CertSpec<'a> {
    pub serial: [u8; 20],
    pub issuer: &'a Name,
    pub subject: &'a Name,
    pub subject_key: &'a VerifyingKey,
    pub not_before: u64,
    pub not_after: u64,
    /// URI of the CRL that covers this certificate.
    pub crl_uri: &'a str,
    pub kind: CertKind,
    /// DER of the SGX extension (PCK certificates only).
    pub sgx_extension: Option<&'a [u8]>,
}

/// Build and sign a certificate with `issuer_key`; returns its DER.
pub(super) fn issue_certificate(
    spec: &CertSpec<'_>,
    issuer_key: &SigningKey,
) -> Result<Vec<u8>, SimError> {
    let what = "certificate";
    let (key_usage, basic_constraints) = match spec.kind {
        CertKind::Ca { path_len } => (
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            BasicConstraints {
                ca: true,
                path_len_constraint: Some(path_len),
            },
        ),
        CertKind::EndEntity => (
            KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation),
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
        ),
    };
    let crl_distribution_point = CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![
            GeneralName::UniformResourceIdentifier(
                Ia5String::new(spec.crl_uri).map_err(der_err("CRL distribution point"))?,
            ),
        ])),
        reasons: None,
        crl_issuer: None,
    }]);
    let authority_key_id = AuthorityKeyIdentifier {
        key_identifier: Some(
            OctetString::new(key_id(issuer_key.verifying_key())).map_err(der_err(what))?,
        ),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let subject_key_id =
        SubjectKeyIdentifier(OctetString::new(key_id(spec.subject_key)).map_err(der_err(what))?);
    let mut extensions = vec![
        extension(&authority_key_id, false),
        extension(&crl_distribution_point, false),
        extension(&subject_key_id, false),
        extension(&key_usage, true),
        extension(&basic_constraints, true),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, der::Error>>()
    .map_err(der_err("certificate extensions"))?;
    if let Some(sgx) = spec.sgx_extension {
        extensions.push(Extension {
            extn_id: SGX_EXTENSION,
            critical: false,
            extn_value: OctetString::new(sgx).map_err(der_err("SGX extension"))?,
        });
    }

    let tbs_certificate = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&spec.serial).map_err(der_err("serial number"))?,
        signature: ecdsa_with_sha256(),
        issuer: spec.issuer.clone(),
        validity: Validity {
            not_before: x509_time(spec.not_before, "certificate notBefore")?,
            not_after: x509_time(spec.not_after, "certificate notAfter")?,
        },
        subject: spec.subject.clone(),
        subject_public_key_info: subject_public_key_info(spec.subject_key)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature = sign_der(
        issuer_key,
        &tbs_certificate.to_der().map_err(der_err(what))?,
    )
    .map_err(der_err(what))?;
    Certificate {
        tbs_certificate,
        signature_algorithm: ecdsa_with_sha256(),
        signature,
    }
    .to_der()
    .map_err(der_err(what))
}

/// Build and sign an empty CRL (no revoked certificates) with Intel's CRL
/// extensions (CRL number 1, authority key identifier); returns its DER.
pub(super) fn issue_crl(
    issuer: &Name,
    issuer_key: &SigningKey,
    this_update: u64,
    next_update: u64,
) -> Result<Vec<u8>, SimError> {
    let what = "CRL";
    let authority_key_id = AuthorityKeyIdentifier {
        key_identifier: Some(
            OctetString::new(key_id(issuer_key.verifying_key())).map_err(der_err(what))?,
        ),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let crl_number = CrlNumber(Uint::new(&[1]).map_err(der_err(what))?);
    let crl_extensions = vec![
        extension(&crl_number, false),
        extension(&authority_key_id, false),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, der::Error>>()
    .map_err(der_err("CRL extensions"))?;
    let tbs_cert_list = TbsCertList {
        version: Version::V2,
        signature: ecdsa_with_sha256(),
        issuer: issuer.clone(),
        this_update: x509_time(this_update, "CRL thisUpdate")?,
        next_update: Some(x509_time(next_update, "CRL nextUpdate")?),
        revoked_certificates: None,
        crl_extensions: Some(crl_extensions),
    };
    let signature = sign_der(issuer_key, &tbs_cert_list.to_der().map_err(der_err(what))?)
        .map_err(der_err(what))?;
    CertificateList {
        tbs_cert_list,
        signature_algorithm: ecdsa_with_sha256(),
        signature,
    }
    .to_der()
    .map_err(der_err(what))
}

/// ECDSA P-256/SHA-256 signature (RFC 6979 nonce) as an X.509 BIT STRING.
fn sign_der(key: &SigningKey, message: &[u8]) -> Result<BitString, der::Error> {
    let signature: Signature = key.sign(message);
    BitString::from_bytes(signature.to_der().as_bytes())
}

/// PEM armor for one DER certificate, 64 base64 characters per line.
pub(super) fn pem_certificate(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The fields of the SGX extension of a PCK certificate issued by the
/// Platform CA.
pub(super) struct SgxExtension {
    pub ppid: [u8; 16],
    /// The 16 SGX TCB component SVNs; also written as the raw CPUSVN.
    pub cpu_svn: [u8; 16],
    pub pce_svn: u16,
    pub pce_id: [u8; 2],
    pub fmspc: [u8; 6],
    /// 0 Standard, 1 Scalable, 2 Scalable with integrity.
    pub sgx_type: u8,
    pub platform_instance_id: [u8; 16],
    pub dynamic_platform: bool,
    pub cached_keys: bool,
    pub smt_enabled: bool,
}

/// One `SEQUENCE { OID, value }` entry of the SGX extension.
#[derive(Sequence)]
struct SgxEntry {
    oid: ObjectIdentifier,
    value: Any,
}

impl SgxEntry {
    fn octets(oid: ObjectIdentifier, bytes: &[u8]) -> der::Result<Self> {
        Ok(Self {
            oid,
            value: Any::new(Tag::OctetString, bytes)?,
        })
    }

    fn encode<T: der::EncodeValue + der::Tagged>(
        oid: ObjectIdentifier,
        value: &T,
    ) -> der::Result<Self> {
        Ok(Self {
            oid,
            value: Any::encode_from(value)?,
        })
    }
}

impl SgxExtension {
    /// DER of the extension value, laid out as in Intel's PCK certificates:
    /// PPID, TCB (16 component SVNs, PCESVN, CPUSVN), PCE-ID, FMSPC, SGX Type
    /// (ENUMERATED), PlatformInstanceID, Configuration (three BOOLEANs).
    pub(super) fn to_der(&self) -> Result<Vec<u8>, SimError> {
        self.entries()
            .and_then(|entries| entries.to_der())
            .map_err(der_err("SGX extension"))
    }

    fn entries(&self) -> der::Result<Vec<SgxEntry>> {
        let mut tcb = Vec::with_capacity(18);
        for (arc, svn) in (1u32..).zip(self.cpu_svn) {
            tcb.push(SgxEntry::encode(SGX_TCB.push_arc(arc)?, &svn)?);
        }
        tcb.push(SgxEntry::encode(SGX_TCB.push_arc(17)?, &self.pce_svn)?);
        tcb.push(SgxEntry::octets(SGX_TCB.push_arc(18)?, &self.cpu_svn)?);

        let configuration = vec![
            SgxEntry::encode(SGX_CONFIGURATION.push_arc(1)?, &self.dynamic_platform)?,
            SgxEntry::encode(SGX_CONFIGURATION.push_arc(2)?, &self.cached_keys)?,
            SgxEntry::encode(SGX_CONFIGURATION.push_arc(3)?, &self.smt_enabled)?,
        ];

        Ok(vec![
            SgxEntry::octets(SGX_PPID, &self.ppid)?,
            SgxEntry::encode(SGX_TCB, &tcb)?,
            SgxEntry::octets(SGX_PCEID, &self.pce_id)?,
            SgxEntry::octets(SGX_FMSPC, &self.fmspc)?,
            SgxEntry {
                oid: SGX_TYPE,
                value: Any::new(Tag::Enumerated, [self.sgx_type])?,
            },
            SgxEntry::octets(SGX_PLATFORM_INSTANCE_ID, &self.platform_instance_id)?,
            SgxEntry::encode(SGX_CONFIGURATION, &configuration)?,
        ])
    }
}
