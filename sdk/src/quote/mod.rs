//! TDX quotes, versions 4 and 5: a zero-panic parser with typed access to
//! every field, the encoder the simulated platform uses, JSON and text views.
//!
//! Layout (Intel `sgx_quote_4.h` / `sgx_quote_5.h`, notes/tdx-facts.md):
//! header (48) | v5 only: body type u16, body size u32 | TD report body |
//! u32 signature-data length | signature data | optional zero padding.
//! Only TDX quotes signed with ECDSA-P256 whose certification data is a QE
//! report carrying a PEM PCK chain are accepted — what Intel's TD quoting
//! enclave produces. Parsing checks structure only; signatures, collateral
//! and policy are [`crate::verify`]'s job.

mod attributes;
mod builder;
mod codec;
mod error;
mod header;
mod render;
mod signature;
mod td_report;

pub use attributes::{TdAttributes, TD_ATTRIBUTE_NAMES};
pub use builder::QuoteBuilder;
pub use error::QuoteError;
pub use header::{Header, ATT_KEY_TYPE_ECDSA_P256, INTEL_QE_VENDOR_ID, TEE_TYPE_SGX, TEE_TYPE_TDX};
pub use signature::{
    qe_report_data_hash, EnclaveReport, PckCertChain, SignatureData, CERT_TYPE_PCK_CHAIN,
    CERT_TYPE_QE_REPORT,
};
pub use td_report::{TdBody, TdReport10, TdReport15, TdReport15Ex};

use codec::{len_u32, Reader};
use serde::Serialize;

/// Largest quote accepted, checked before parsing. Real quotes are about
/// 5 KiB; the cap leaves room for long certificate chains.
pub const MAX_QUOTE_LEN: usize = 256 * 1024;

/// v5 body descriptor: body type u16 + body size u32.
const V5_BODY_DESCRIPTOR_LEN: usize = 6;

/// A parsed TDX quote. Built only by [`Quote::parse`] or [`QuoteBuilder`], so
/// the header, body and signature data are always mutually consistent and
/// [`Quote::to_bytes`] reproduces the parsed bytes (minus trailing padding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    header: Header,
    body: TdBody,
    signature: SignatureData,
}

impl Quote {
    /// Parse a v4 or v5 TDX quote. Zero bytes may follow the signature data
    /// (quoting services pad their buffers); any other trailing byte is an
    /// error. Inputs over [`MAX_QUOTE_LEN`] are refused without parsing.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        if bytes.len() > MAX_QUOTE_LEN {
            return Err(QuoteError::Oversized {
                len: bytes.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let header = Header::read(&mut r)?;
        header.check_supported()?;
        let body = if header.version == 5 {
            let body_type = r.u16("body_type")?;
            let body_size = r.u32("body_size")?;
            TdBody::read_v5(&mut r, body_type, body_size)?
        } else {
            TdBody::Td10(TdReport10::read(&mut r)?)
        };

        let signature_len = r.u32("signature_data_len")?;
        let mut sig = r.section(signature_len, "signature_data", "signature data")?;
        let signature = SignatureData::read(&mut sig)?;
        sig.finish()?;

        let end = r.offset();
        if let Some((i, &byte)) = r.rest().iter().enumerate().find(|&(_, &b)| b != 0) {
            return Err(QuoteError::TrailingData {
                offset: end + i,
                end,
                byte,
            });
        }
        Ok(Quote {
            header,
            body,
            signature,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The report body (TD 1.0, 1.5 or 1.5 ex).
    pub fn body(&self) -> &TdBody {
        &self.body
    }

    /// The TD 1.0 fields every body has: measurements, attributes, report data.
    pub fn td_report(&self) -> &TdReport10 {
        self.body.td10()
    }

    /// The signature data.
    pub fn signature(&self) -> &SignatureData {
        &self.signature
    }

    /// The bytes the attestation key signs: header and body (with the v5
    /// body descriptor).
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(&self.header, &self.body)
    }

    /// The encoded quote, without trailing padding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = signed_bytes(&self.header, &self.body);
        out.reserve(self.encoded_len().saturating_sub(out.len()));
        out.extend_from_slice(&len_u32(self.signature.byte_len()).to_le_bytes());
        self.signature.write(&mut out);
        out
    }
}

impl Quote {
    /// Length of [`Quote::to_bytes`].
    fn encoded_len(&self) -> usize {
        signed_len(&self.header, &self.body)
            .saturating_add(4)
            .saturating_add(self.signature.byte_len())
    }
}

/// Length of [`signed_bytes`].
fn signed_len(header: &Header, body: &TdBody) -> usize {
    let descriptor = if header.version == 5 {
        V5_BODY_DESCRIPTOR_LEN
    } else {
        0
    };
    Header::LEN + descriptor + body.byte_len()
}

/// Header, v5 body descriptor and body, as signed by the attestation key.
fn signed_bytes(header: &Header, body: &TdBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(signed_len(header, body));
    out.extend_from_slice(&header.to_bytes());
    if header.version == 5 {
        out.extend_from_slice(&body.body_type().to_le_bytes());
        out.extend_from_slice(&len_u32(body.byte_len()).to_le_bytes());
    }
    body.write(&mut out);
    out
}
