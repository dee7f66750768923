//! What selects a collateral bundle: the platform's FMSPC and the PCK CA that
//! issued its PCK certificate, both read from the PCK leaf certificate.

use std::{fmt, str::FromStr};

use der::Decode as _;
use x509_cert::{name::Name, Certificate};

use super::pem;

/// FMSPC: the 6-byte platform family and model identifier that selects the
/// TCB info. Displays as 12 upper-case hex digits, as in PCS URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fmspc(pub [u8; 6]);

impl fmt::Display for Fmspc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl FromStr for Fmspc {
    type Err = String;

    /// Parse 12 hex digits, either case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        crate::hexser::decode_array(text)
            .map(Self)
            .map_err(|problem| format!("FMSPC `{text}`: {problem}"))
    }
}

/// The Intel PCK CA that issued a platform's PCK certificate; it selects
/// which PCK CRL applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// "Intel SGX PCK Platform CA" (multi-package platforms, e.g. servers with TDX).
    Platform,
    /// "Intel SGX PCK Processor CA".
    Processor,
}

impl PckCa {
    /// The identifier PCS uses in `pckcrl?ca=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Processor => "processor",
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            Self::Platform => "CN=Intel SGX PCK Platform CA",
            Self::Processor => "CN=Intel SGX PCK Processor CA",
        }
    }

    /// The CA whose common name appears in `issuer`, if either does.
    pub(crate) fn from_issuer(issuer: &Name) -> Option<Self> {
        let has_cn = |ca: Self| {
            issuer
                .0
                .iter()
                .flat_map(|rdn| rdn.0.iter())
                .any(|attribute| attribute.to_string() == ca.common_name())
        };
        [Self::Platform, Self::Processor]
            .into_iter()
            .find(|&ca| has_cn(ca))
    }
}

impl fmt::Display for PckCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PckCa {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "platform" => Ok(Self::Platform),
            "processor" => Ok(Self::Processor),
            other => Err(format!(
                "PCK CA must be `platform` or `processor`, got `{other}`"
            )),
        }
    }
}

/// Why the FMSPC and PCK CA could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PckError {
    /// The quote does not parse.
    #[error(transparent)]
    Quote(#[from] crate::quote::QuoteError),
    /// The PEM chain is malformed.
    #[error("PCK certificate chain: {0}")]
    Pem(String),
    /// The chain is empty.
    #[error("PCK certificate chain holds no certificate")]
    NoCertificate,
    /// The leaf is not a PCK certificate.
    #[error("PCK leaf certificate: {0}")]
    Leaf(String),
    /// The leaf's issuer is neither PCK CA.
    #[error("PCK leaf certificate issuer `{0}` is neither the Intel SGX PCK Platform CA nor the Processor CA")]
    UnknownIssuer(String),
}

/// FMSPC and PCK CA of the PCK leaf certificate embedded in a TDX quote's
/// certification data.
pub fn fmspc_and_ca_from_quote(quote: &[u8]) -> Result<(Fmspc, PckCa), PckError> {
    let quote = crate::quote::Quote::parse(quote)?;
    fmspc_and_ca_from_pck_chain(quote.signature().pck_cert_chain.pem())
}

/// FMSPC and PCK CA of the first (leaf) certificate of a PEM PCK chain.
pub fn fmspc_and_ca_from_pck_chain(chain_pem: &str) -> Result<(Fmspc, PckCa), PckError> {
    let chain = pem::decode_blocks(chain_pem, "CERTIFICATE").map_err(PckError::Pem)?;
    let leaf = chain.first().ok_or(PckError::NoCertificate)?;
    fmspc_and_ca_from_leaf(leaf)
}

fn fmspc_and_ca_from_leaf(leaf_der: &[u8]) -> Result<(Fmspc, PckCa), PckError> {
    let extension = dcap_qvl::intel::parse_pck_extension(leaf_der)
        .map_err(|e| PckError::Leaf(format!("{e:#}")))?;
    let cert = Certificate::from_der(leaf_der).map_err(|e| PckError::Leaf(e.to_string()))?;
    let issuer = &cert.tbs_certificate.issuer;
    let ca =
        PckCa::from_issuer(issuer).ok_or_else(|| PckError::UnknownIssuer(issuer.to_string()))?;
    Ok((Fmspc(extension.fmspc), ca))
}
