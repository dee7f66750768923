//! The X.509 structures of an RA-TLS certificate, as DER (RFC 5280 §4.1).
//!
//! Written out here instead of taken from `x509-cert` because its `Extension`
//! holds the OID as a `const-oid` value, whose arcs are 32-bit: decoding a
//! certificate that carries the 128-bit arc of [`super::QUOTE_EXTENSION_OID`]
//! fails there. Extension OIDs are kept as their raw content bytes instead;
//! every other field uses `x509-cert`'s types (standard OIDs only).

use der::asn1::{BitString, OctetString};
use der::{DecodeValue, EncodeValue, FixedTag, Header, Length, Reader, Sequence, Tag, Writer};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::Validity;
use x509_cert::Version;

/// id-ecPublicKey (RFC 5480).
pub const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 (RFC 5480).
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// ecdsa-with-SHA256 (RFC 5758).
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`.
#[derive(Clone, Debug, Sequence)]
pub struct Certificate {
    pub tbs_certificate: TbsCertificate,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: BitString,
}

/// `TBSCertificate` (RFC 5280 §4.1.1.1), extension OIDs kept raw.
#[derive(Clone, Debug, Sequence)]
pub struct TbsCertificate {
    #[asn1(context_specific = "0", default = "Default::default")]
    pub version: Version,
    pub serial_number: SerialNumber,
    pub signature: AlgorithmIdentifierOwned,
    pub issuer: Name,
    pub validity: Validity,
    pub subject: Name,
    pub subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub issuer_unique_id: Option<BitString>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    pub subject_unique_id: Option<BitString>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    pub extensions: Option<Vec<Extension>>,
}

/// `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }`.
#[derive(Clone, Debug, Sequence)]
pub struct Extension {
    pub extn_id: RawOid,
    #[asn1(default = "Default::default")]
    pub critical: bool,
    pub extn_value: OctetString,
}

/// An OBJECT IDENTIFIER as its content octets, whatever the size of its arcs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOid(pub Vec<u8>);

impl RawOid {
    /// True when `bytes` is a well-formed OID body: at least one
    /// sub-identifier, each in minimal base-128 (no leading 0x80 octet), the
    /// last octet ending one.
    fn is_well_formed(bytes: &[u8]) -> bool {
        let mut at_start = true;
        for &byte in bytes {
            if at_start && byte == 0x80 {
                return false;
            }
            at_start = byte & 0x80 == 0;
        }
        !bytes.is_empty() && at_start
    }
}

impl FixedTag for RawOid {
    const TAG: Tag = Tag::ObjectIdentifier;
}

impl<'a> DecodeValue<'a> for RawOid {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_vec(header.length)?;
        if !Self::is_well_formed(&bytes) {
            return Err(Tag::ObjectIdentifier.value_error());
        }
        Ok(RawOid(bytes))
    }
}

impl EncodeValue for RawOid {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.0.len())
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_oid_well_formedness() {
        assert!(RawOid::is_well_formed(&[0x2a, 0x86, 0x48]));
        assert!(!RawOid::is_well_formed(&[]));
        // Unterminated last sub-identifier.
        assert!(!RawOid::is_well_formed(&[0x2a, 0x86]));
        // Non-minimal encoding (leading 0x80).
        assert!(!RawOid::is_well_formed(&[0x2a, 0x80, 0x01]));
    }
}
