//! The 48-byte quote header (Intel `sgx_quote_4.h` / `sgx_quote_5.h`).

use serde::Serialize;

use super::codec::{concat, Reader};
use super::QuoteError;

/// `tee_type` of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// `tee_type` of an SGX enclave quote.
pub const TEE_TYPE_SGX: u32 = 0x0;
/// `att_key_type` for ECDSA-256 with P-256, the only type Intel's QE uses.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// `qe_vendor_id` of Intel's quoting enclave.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// Quote header. Byte layout (little-endian): version @0, att_key_type @2,
/// tee_type @4, qe_svn @8, pce_svn @10, qe_vendor_id @12, user_data @28.
/// Bytes 8..12 are named as dcap-qvl reads them (SGX v3 quotes carry the QE
/// and PCE SVNs there); Intel's TD quotes, dcap-qvl's samples included, have
/// zeros there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Quote format version: 4 or 5.
    pub version: u16,
    /// Attestation key type: 2 = ECDSA-256 with P-256.
    pub att_key_type: u16,
    /// TEE type: 0x81 = TDX, 0x0 = SGX.
    pub tee_type: u32,
    /// Security version of the quoting enclave.
    pub qe_svn: u16,
    /// Security version of the provisioning certification enclave.
    pub pce_svn: u16,
    /// Vendor of the quoting enclave ([`INTEL_QE_VENDOR_ID`] for Intel).
    #[serde(with = "crate::hexser")]
    pub qe_vendor_id: [u8; 16],
    /// QE-defined data; Intel's QE puts the platform's QE ID in bytes 0..16.
    #[serde(with = "crate::hexser")]
    pub user_data: [u8; 20],
}

impl Header {
    /// Encoded size in bytes.
    pub const LEN: usize = 48;

    /// The header's bytes, as they appear at the start of the quote.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        concat(&[
            &self.version.to_le_bytes(),
            &self.att_key_type.to_le_bytes(),
            &self.tee_type.to_le_bytes(),
            &self.qe_svn.to_le_bytes(),
            &self.pce_svn.to_le_bytes(),
            &self.qe_vendor_id,
            &self.user_data,
        ])
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        Ok(Header {
            version: r.u16("version")?,
            att_key_type: r.u16("att_key_type")?,
            tee_type: r.u32("tee_type")?,
            qe_svn: r.u16("qe_svn")?,
            pce_svn: r.u16("pce_svn")?,
            qe_vendor_id: r.array("qe_vendor_id")?,
            user_data: r.array("user_data")?,
        })
    }

    /// Accept only TDX quotes of version 4 or 5 signed with ECDSA-P256. The TEE
    /// type is checked first so that an SGX quote (which may be version 3) is
    /// reported as what it is.
    pub(crate) fn check_supported(&self) -> Result<(), QuoteError> {
        match self.tee_type {
            TEE_TYPE_TDX => {}
            TEE_TYPE_SGX => {
                return Err(QuoteError::NotTdQuote {
                    version: self.version,
                })
            }
            tee_type => return Err(QuoteError::UnknownTeeType { tee_type }),
        }
        if !matches!(self.version, 4 | 5) {
            return Err(QuoteError::UnsupportedVersion {
                version: self.version,
            });
        }
        if self.att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
            return Err(QuoteError::WrongAttestationKeyType {
                att_key_type: self.att_key_type,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            version: 4,
            att_key_type: 2,
            tee_type: TEE_TYPE_TDX,
            qe_svn: 0x0102,
            pce_svn: 0x0304,
            qe_vendor_id: INTEL_QE_VENDOR_ID,
            user_data: [0xaa; 20],
        }
    }

    /// Offsets from notes/tdx-facts.md "Quote layout".
    #[test]
    fn fields_land_at_documented_offsets() {
        let bytes = header().to_bytes();
        assert_eq!(&bytes[0..2], &[4, 0]);
        assert_eq!(&bytes[2..4], &[2, 0]);
        assert_eq!(&bytes[4..8], &[0x81, 0, 0, 0]);
        assert_eq!(&bytes[8..12], &[0x02, 0x01, 0x04, 0x03]);
        assert_eq!(
            hex::encode(&bytes[12..28]),
            "939a7233f79c4ca9940a0db3957f0607"
        );
        assert_eq!(&bytes[28..48], &[0xaa; 20]);
        let parsed = Header::read(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(parsed, header());
    }

    #[test]
    fn support_check_names_the_problem() {
        let mut h = header();
        h.tee_type = TEE_TYPE_SGX;
        h.version = 3;
        assert_eq!(
            h.check_supported(),
            Err(QuoteError::NotTdQuote { version: 3 })
        );
        h.tee_type = 0x7;
        assert_eq!(
            h.check_supported(),
            Err(QuoteError::UnknownTeeType { tee_type: 7 })
        );
        let mut h = header();
        h.version = 6;
        assert_eq!(
            h.check_supported(),
            Err(QuoteError::UnsupportedVersion { version: 6 })
        );
        let mut h = header();
        h.att_key_type = 3;
        assert_eq!(
            h.check_supported(),
            Err(QuoteError::WrongAttestationKeyType { att_key_type: 3 })
        );
        assert_eq!(header().check_supported(), Ok(()));
    }
}
