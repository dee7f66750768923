//! The quote's signature data: ECDSA signature, attestation key, and the
//! certification data that ties the key to Intel's PKI (QE report signed by
//! the PCK key, QE auth data, PCK certificate chain).

use std::ops::Range;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::codec::{concat, len_u32, Reader};
use super::QuoteError;

/// Certification data type 6: QE report certification data.
pub const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data type 5: PCK certificate chain (PEM).
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;

/// An SGX enclave report (384 bytes); in a TD quote, the quoting enclave's
/// report, signed by the PCK key. Layout as in dcap-qvl's `EnclaveReport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnclaveReport {
    /// CPU security version.
    #[serde(with = "crate::hexser")]
    pub cpu_svn: [u8; 16],
    /// Enclave MISCSELECT.
    pub misc_select: u32,
    /// Reserved (bytes 20..48).
    #[serde(with = "crate::hexser")]
    pub reserved1: [u8; 28],
    /// Enclave attributes.
    #[serde(with = "crate::hexser")]
    pub attributes: [u8; 16],
    /// Enclave measurement.
    #[serde(with = "crate::hexser")]
    pub mr_enclave: [u8; 32],
    /// Reserved (bytes 96..128).
    #[serde(with = "crate::hexser")]
    pub reserved2: [u8; 32],
    /// Hash of the enclave signer's key.
    #[serde(with = "crate::hexser")]
    pub mr_signer: [u8; 32],
    /// Reserved (bytes 160..256).
    #[serde(with = "crate::hexser")]
    pub reserved3: [u8; 96],
    /// Product ID.
    pub isv_prod_id: u16,
    /// Security version.
    pub isv_svn: u16,
    /// Reserved (bytes 260..320).
    #[serde(with = "crate::hexser")]
    pub reserved4: [u8; 60],
    /// Report data; for the QE, SHA-256(attestation key || QE auth data)
    /// in bytes 0..32.
    #[serde(with = "crate::hexser")]
    pub report_data: [u8; 64],
}

impl EnclaveReport {
    /// Encoded size in bytes.
    pub const LEN: usize = 384;

    /// The report's bytes (what the PCK key signs).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        concat(&[
            &self.cpu_svn,
            &self.misc_select.to_le_bytes(),
            &self.reserved1,
            &self.attributes,
            &self.mr_enclave,
            &self.reserved2,
            &self.mr_signer,
            &self.reserved3,
            &self.isv_prod_id.to_le_bytes(),
            &self.isv_svn.to_le_bytes(),
            &self.reserved4,
            &self.report_data,
        ])
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        Ok(EnclaveReport {
            cpu_svn: r.array("qe_report.cpu_svn")?,
            misc_select: r.u32("qe_report.misc_select")?,
            reserved1: r.array("qe_report.reserved1")?,
            attributes: r.array("qe_report.attributes")?,
            mr_enclave: r.array("qe_report.mr_enclave")?,
            reserved2: r.array("qe_report.reserved2")?,
            mr_signer: r.array("qe_report.mr_signer")?,
            reserved3: r.array("qe_report.reserved3")?,
            isv_prod_id: r.u16("qe_report.isv_prod_id")?,
            isv_svn: r.u16("qe_report.isv_svn")?,
            reserved4: r.array("qe_report.reserved4")?,
            report_data: r.array("qe_report.report_data")?,
        })
    }
}

/// The PCK certificate chain (certification data type 5): PEM certificates,
/// leaf first, as the QE wrote them. Always at least one well-formed PEM
/// certificate; Intel's QE appends a NUL byte, kept so the quote round-trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckCertChain {
    pem: String,
    nul_padding: usize,
    certs: Vec<Range<usize>>,
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

impl PckCertChain {
    /// Check and wrap chain bytes as stored in a quote: PEM certificates
    /// separated by whitespace, optionally followed by NUL bytes. Error
    /// offsets are relative to the start of `raw`.
    pub fn new(raw: Vec<u8>) -> Result<Self, QuoteError> {
        Self::parse(raw, 0)
    }

    /// The PEM text (without the NUL padding).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificates, each from its BEGIN line to its END line.
    pub fn certificates(&self) -> Vec<&str> {
        self.certs
            .iter()
            .filter_map(|range| self.pem.get(range.clone()))
            .collect()
    }

    /// Size in the quote, padding included.
    pub fn byte_len(&self) -> usize {
        self.pem.len().saturating_add(self.nul_padding)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.pem.as_bytes());
        out.resize(out.len().saturating_add(self.nul_padding), 0);
    }

    /// `base` is the absolute offset of `raw` in the quote, for errors.
    fn parse(mut raw: Vec<u8>, base: usize) -> Result<Self, QuoteError> {
        let text_len = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let nul_padding = raw.len() - text_len;
        raw.truncate(text_len);
        let pem = String::from_utf8(raw).map_err(|e| QuoteError::BadPemUtf8 {
            offset: base.saturating_add(e.utf8_error().valid_up_to()),
        })?;
        let bad = |at: usize, problem| QuoteError::BadPemChain {
            offset: base.saturating_add(at),
            problem,
        };

        let mut certs = Vec::new();
        let mut pos = 0;
        loop {
            let untrimmed = pem.get(pos..).unwrap_or_default();
            let rest = untrimmed.trim_start();
            pos += untrimmed.len() - rest.len();
            if rest.is_empty() {
                break;
            }
            if !rest.starts_with(PEM_BEGIN) {
                return Err(bad(pos, "expected -----BEGIN CERTIFICATE-----"));
            }
            let Some(end) = rest.find(PEM_END) else {
                return Err(bad(
                    pos,
                    "certificate has no -----END CERTIFICATE----- line",
                ));
            };
            if rest
                .get(PEM_BEGIN.len()..end)
                .is_some_and(|inner| inner.contains("-----"))
            {
                return Err(bad(
                    pos,
                    "certificate contains another PEM boundary before its END line",
                ));
            }
            let cert_end = pos + end + PEM_END.len();
            certs.push(pos..cert_end);
            pos = cert_end;
        }
        if certs.is_empty() {
            return Err(bad(0, "no certificates"));
        }
        Ok(PckCertChain {
            pem,
            nul_padding,
            certs,
        })
    }
}

/// JSON: the list of PEM certificates, leaf first.
impl Serialize for PckCertChain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.certificates())
    }
}

/// The signature data of a v4/v5 quote whose certification data is a QE
/// report (type 6) carrying a PCK certificate chain (type 5), which is what
/// Intel's TD quoting enclave produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureData {
    /// ECDSA P-256 signature (r || s) over header and body by the attestation key.
    #[serde(with = "crate::hexser")]
    pub ecdsa_signature: [u8; 64],
    /// The attestation public key (x || y).
    #[serde(with = "crate::hexser")]
    pub attestation_key: [u8; 64],
    /// The quoting enclave's report, binding the attestation key.
    pub qe_report: EnclaveReport,
    /// ECDSA P-256 signature over the QE report by the PCK key.
    #[serde(with = "crate::hexser")]
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed into the QE report's report data.
    #[serde(with = "crate::hexser::vec")]
    pub qe_auth_data: Vec<u8>,
    /// PCK certificate chain, leaf first.
    pub pck_cert_chain: PckCertChain,
}

/// Fixed bytes of the signature data: signature, key, cert type, cert length.
const SIGNATURE_FIXED_LEN: usize = 64 + 64 + 2 + 4;
/// Fixed bytes of the QE certification data: report, signature, auth length,
/// inner cert type, inner cert length.
const QE_CERT_FIXED_LEN: usize = EnclaveReport::LEN + 64 + 2 + 2 + 4;

/// SHA-256(attestation key || QE auth data): what the QE puts in bytes 0..32
/// of its report data to bind the attestation key.
pub fn qe_report_data_hash(attestation_key: &[u8; 64], qe_auth_data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(attestation_key);
    h.update(qe_auth_data);
    h.finalize().into()
}

impl SignatureData {
    /// Whether the QE report's report data starts with
    /// [`qe_report_data_hash`] of this key and auth data. (Signatures are
    /// checked by [`crate::verify`], not here.)
    pub fn qe_binding_matches(&self) -> bool {
        let expected = qe_report_data_hash(&self.attestation_key, &self.qe_auth_data);
        self.qe_report.report_data.get(..32) == Some(expected.as_slice())
    }

    /// Size of the QE certification data (type 6 block contents).
    fn qe_cert_len(&self) -> usize {
        QE_CERT_FIXED_LEN
            .saturating_add(self.qe_auth_data.len())
            .saturating_add(self.pck_cert_chain.byte_len())
    }

    /// Encoded size in bytes (the quote's signature-data length field).
    pub fn byte_len(&self) -> usize {
        SIGNATURE_FIXED_LEN.saturating_add(self.qe_cert_len())
    }

    /// Append the encoding. Lengths were bounded at construction (parse or
    /// [`super::QuoteBuilder::build`]), so the length prefixes are exact.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ecdsa_signature);
        out.extend_from_slice(&self.attestation_key);
        out.extend_from_slice(&CERT_TYPE_QE_REPORT.to_le_bytes());
        out.extend_from_slice(&len_u32(self.qe_cert_len()).to_le_bytes());
        out.extend_from_slice(&self.qe_report.to_bytes());
        out.extend_from_slice(&self.qe_report_signature);
        let auth_len = u16::try_from(self.qe_auth_data.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&auth_len.to_le_bytes());
        out.extend_from_slice(&self.qe_auth_data);
        out.extend_from_slice(&CERT_TYPE_PCK_CHAIN.to_le_bytes());
        out.extend_from_slice(&len_u32(self.pck_cert_chain.byte_len()).to_le_bytes());
        self.pck_cert_chain.write(out);
    }

    /// Read from the signature-data section; the caller checks it was used up.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        let ecdsa_signature = r.array("ecdsa_signature")?;
        let attestation_key = r.array("attestation_key")?;
        read_cert_type(r, CERT_TYPE_QE_REPORT, "QE report certification data")?;
        let qe_len = r.u32("qe_certification_data_len")?;
        let mut qe = r.section(
            qe_len,
            "qe_certification_data",
            "QE certification data (type 6)",
        )?;

        let qe_report = EnclaveReport::read(&mut qe)?;
        let qe_report_signature = qe.array("qe_report_signature")?;
        let auth_len = qe.u16("qe_auth_data_len")?;
        let qe_auth_data = qe.take(usize::from(auth_len), "qe_auth_data")?.to_vec();
        read_cert_type(&mut qe, CERT_TYPE_PCK_CHAIN, "PCK certificate chain")?;
        // A length that does not fit usize cannot fit the section either.
        let chain_len = usize::try_from(qe.u32("pck_cert_chain_len")?).unwrap_or(usize::MAX);
        let chain_offset = qe.offset();
        let chain = qe.take(chain_len, "pck_cert_chain")?.to_vec();
        qe.finish()?;

        Ok(SignatureData {
            ecdsa_signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            pck_cert_chain: PckCertChain::parse(chain, chain_offset)?,
        })
    }
}

fn read_cert_type(
    r: &mut Reader<'_>,
    expected: u16,
    meaning: &'static str,
) -> Result<(), QuoteError> {
    let offset = r.offset();
    let found = r.u16("certification_data_type")?;
    if found != expected {
        return Err(QuoteError::BadCertificationDataType {
            offset,
            found,
            expected,
            meaning,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
    const CERT_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----";

    #[test]
    fn chain_splits_certificates_and_keeps_nul_padding() {
        let raw = format!("{CERT_A}\n{CERT_B}\n\0").into_bytes();
        let chain = PckCertChain::new(raw.clone()).unwrap();
        assert_eq!(chain.certificates(), [CERT_A, CERT_B]);
        assert_eq!(chain.pem(), format!("{CERT_A}\n{CERT_B}\n"));
        assert_eq!(chain.byte_len(), raw.len());
        let mut out = Vec::new();
        chain.write(&mut out);
        assert_eq!(out, raw);
    }

    #[test]
    fn chain_rejects_what_is_not_a_pem_list() {
        let err = |raw: &[u8]| PckCertChain::parse(raw.to_vec(), 100).unwrap_err();
        assert_eq!(
            err(b"\0\0"),
            QuoteError::BadPemChain {
                offset: 100,
                problem: "no certificates"
            }
        );
        assert!(matches!(err(format!("{CERT_A}\ngarbage").as_bytes()),
            QuoteError::BadPemChain { offset, problem } if offset == 100 + CERT_A.len() + 1
                && problem.contains("expected -----BEGIN")));
        assert!(matches!(err(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            QuoteError::BadPemChain { offset: 100, problem } if problem.contains("no -----END")));
        let nested = format!("-----BEGIN CERTIFICATE-----\n{CERT_B}");
        assert!(matches!(err(nested.as_bytes()),
            QuoteError::BadPemChain { problem, .. } if problem.contains("another PEM boundary")));
        let mut bad_utf8 = CERT_A.as_bytes().to_vec();
        bad_utf8.insert(30, 0xff);
        assert_eq!(err(&bad_utf8), QuoteError::BadPemUtf8 { offset: 130 });
    }

    #[test]
    fn qe_report_fields_at_sgx_offsets() {
        let bytes: Vec<u8> = (0..EnclaveReport::LEN).map(|i| (i % 251) as u8).collect();
        let report = EnclaveReport::read(&mut Reader::new(&bytes)).unwrap();
        // SGX REPORTBODY offsets: attributes 48, mrenclave 64, mrsigner 128,
        // isvprodid 256, isvsvn 258, reportdata 320.
        assert_eq!(report.misc_select, u32::from_le_bytes([16, 17, 18, 19]));
        assert_eq!(report.attributes[0], 48);
        assert_eq!(report.mr_enclave[0], 64);
        assert_eq!(report.mr_signer[0], 128);
        assert_eq!(report.isv_prod_id, u16::from_le_bytes([5, 6]));
        assert_eq!(report.isv_svn, u16::from_le_bytes([7, 8]));
        assert_eq!(report.report_data[0], (320 % 251) as u8);
        assert_eq!(report.to_bytes().to_vec(), bytes);
    }
}
