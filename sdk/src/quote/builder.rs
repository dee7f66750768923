//! Assembling a quote from its parts (used by the simulated platform).

use super::{signed_bytes, Header, Quote, QuoteError, SignatureData, TdBody, MAX_QUOTE_LEN};

/// Builds a quote in two steps, because the attestation key signs the header
/// and body before the signature data exists:
///
/// ```ignore
/// let builder = QuoteBuilder::new(header, TdBody::Td10(report))?;
/// let sig = attestation_key.sign(&builder.signed_bytes());
/// let quote_bytes = builder.build(signature_data_with(sig))?.to_bytes();
/// ```
#[derive(Debug, Clone)]
pub struct QuoteBuilder {
    header: Header,
    body: TdBody,
}

impl QuoteBuilder {
    /// Start a quote. The header must describe what [`Quote::parse`]
    /// accepts (TDX, version 4 or 5, ECDSA-P256); version 4 carries only a
    /// TD 1.0 body.
    pub fn new(header: Header, body: TdBody) -> Result<Self, QuoteError> {
        header.check_supported()?;
        if header.version == 4 && !matches!(body, TdBody::Td10(_)) {
            return Err(QuoteError::BodyNotAllowed {
                version: 4,
                body: body.name(),
            });
        }
        Ok(QuoteBuilder { header, body })
    }

    /// The bytes the attestation key must sign.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(&self.header, &self.body)
    }

    /// Attach the signature data. Fails if a length does not fit its prefix
    /// or the quote would exceed [`MAX_QUOTE_LEN`], so every built quote
    /// parses back.
    pub fn build(self, signature: SignatureData) -> Result<Quote, QuoteError> {
        let auth_len = signature.qe_auth_data.len();
        if auth_len > usize::from(u16::MAX) {
            return Err(QuoteError::FieldTooLong {
                field: "qe_auth_data",
                len: auth_len,
                max: usize::from(u16::MAX),
            });
        }
        let quote = Quote {
            header: self.header,
            body: self.body,
            signature,
        };
        let len = quote.encoded_len();
        if len > MAX_QUOTE_LEN {
            return Err(QuoteError::Oversized {
                len,
                max: MAX_QUOTE_LEN,
            });
        }
        Ok(quote)
    }
}
