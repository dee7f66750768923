//! The one error type of quote parsing and assembly.

/// Why a byte string is not a TDX quote this crate accepts, or why a quote
/// cannot be assembled. Offsets are absolute byte offsets into the quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The input is larger than [`super::MAX_QUOTE_LEN`]; nothing was parsed.
    #[error("quote is {len} bytes, over the {max}-byte limit; refusing to parse it")]
    Oversized { len: usize, max: usize },

    /// The quote ends before a field does.
    #[error(
        "quote truncated: field `{field}` needs {needed} bytes at offset {offset}, \
         but only {available} remain"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },

    /// tee_type 0: an SGX enclave quote, not a TD quote.
    #[error(
        "not a TD quote: this is an SGX enclave quote (version {version}, tee_type 0x0); \
         only TDX quotes (tee_type 0x81) are supported"
    )]
    NotTdQuote { version: u16 },

    /// tee_type is neither SGX nor TDX.
    #[error("unknown TEE type 0x{tee_type:x} at offset 4: expected 0x81 (TDX)")]
    UnknownTeeType { tee_type: u32 },

    /// Quote version other than 4 or 5.
    #[error("unsupported quote version {version} at offset 0: expected 4 or 5")]
    UnsupportedVersion { version: u16 },

    /// The attestation key is not ECDSA-256 with P-256.
    #[error(
        "attestation key type {att_key_type} at offset 2 is not supported: \
         expected 2 (ECDSA-256 with P-256)"
    )]
    WrongAttestationKeyType { att_key_type: u16 },

    /// A v5 body type that is not a TD report (1 is an SGX enclave report).
    #[error(
        "v5 body type {body_type} at offset 48 is not a TD report: \
         expected 2 (TD 1.0), 3 (TD 1.5) or 4 (TD 1.5 ex)"
    )]
    UnknownBodyType { body_type: u16 },

    /// A v5 body whose declared size does not match its type.
    #[error(
        "v5 body size {declared} at offset 50 does not match body type {body_type}, \
         which is {expected} bytes"
    )]
    BodySizeMismatch {
        body_type: u16,
        declared: u32,
        expected: usize,
    },

    /// A length field inside the signature data claims more bytes than its
    /// enclosing section holds.
    #[error(
        "signature data length mismatch: field `{field}` needs {needed} bytes at offset \
         {offset}, but the enclosing {section} has only {available} left"
    )]
    SignatureDataOverrun {
        section: &'static str,
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },

    /// A section of the signature data declares more bytes than its fields use.
    #[error(
        "signature data length mismatch: {section} at offset {offset} declares {declared} \
         bytes but its fields use {used}"
    )]
    SignatureDataUnderrun {
        section: &'static str,
        offset: usize,
        declared: usize,
        used: usize,
    },

    /// A certification data block of an unexpected type.
    #[error("certification data type {found} at offset {offset}: expected {expected} ({meaning})")]
    BadCertificationDataType {
        offset: usize,
        found: u16,
        expected: u16,
        meaning: &'static str,
    },

    /// The PCK certificate chain is not UTF-8 text.
    #[error("PCK certificate chain is not UTF-8 text: invalid byte at offset {offset}")]
    BadPemUtf8 { offset: usize },

    /// The PCK certificate chain is text but not a list of PEM certificates.
    #[error(
        "PCK certificate chain is not a list of PEM certificates: {problem} at offset {offset}"
    )]
    BadPemChain {
        offset: usize,
        problem: &'static str,
    },

    /// Non-zero bytes after the signature data (only zero padding may follow).
    #[error(
        "non-zero byte 0x{byte:02x} at offset {offset} after the signature data, which ends \
         at offset {end}; only zero padding may follow a quote"
    )]
    TrailingData { offset: usize, end: usize, byte: u8 },

    /// Assembly: the body type cannot be carried by the header's quote version.
    #[error(
        "a version {version} quote cannot carry a {body} body (version 4 carries TD 1.0 only)"
    )]
    BodyNotAllowed { version: u16, body: &'static str },

    /// Assembly: a variable-length field is longer than its length prefix allows.
    #[error("{field} is {len} bytes; the quote format allows at most {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}
