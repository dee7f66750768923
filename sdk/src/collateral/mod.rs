//! DCAP collateral: the Intel-signed data a TDX quote is verified against.
//!
//! [`Collateral`] wraps dcap-qvl's [`QuoteCollateralV3`] and reads and writes
//! the JSON format of dcap-qvl's own sample files (byte fields as hex
//! strings), so files move freely between the two. [`Validity`] is the window
//! in which the whole bundle is current. [`CollateralCache`] keeps bundles on
//! disk until their own expiry, so a warm verifier needs no network; with
//! feature `fetch`, `fetch()` downloads them from Intel PCS or a PCCS.

mod cache;
#[cfg(feature = "fetch")]
mod fetch;
mod pck;
mod pem;
mod source;
pub(crate) mod validity;

use dcap_qvl::QuoteCollateralV3;
use serde_json::{Map, Value};

pub use cache::{
    default_cache_dir, CacheError, CacheKey, CacheLookup, CollateralCache, MissReason, Obtained,
    Provenance,
};
#[cfg(feature = "fetch")]
pub use fetch::{fetch, FetchError, FetchOptions};
pub use pck::{fmspc_and_ca_from_pck_chain, fmspc_and_ca_from_quote, Fmspc, PckCa, PckError};
pub use source::CollateralSource;
pub use validity::{CollateralItem, Validity};

/// Largest collateral JSON document accepted. Real bundles are tens of
/// kilobytes (the processor CA's PCK CRL is the largest part); the cap only
/// bounds memory use on hostile input.
pub const MAX_COLLATERAL_JSON_BYTES: usize = 4 * 1024 * 1024;

/// Why collateral could not be loaded or interpreted.
#[derive(Debug, thiserror::Error)]
pub enum CollateralError {
    /// The document is over [`MAX_COLLATERAL_JSON_BYTES`].
    #[error("collateral JSON is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Size of the rejected document.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The document is not JSON at all.
    #[error("collateral is not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// The document is JSON but not an object.
    #[error("collateral JSON must be an object, got {0}")]
    NotAnObject(&'static str),
    /// A required field is absent.
    #[error("collateral field `{0}` is missing")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("collateral field `{field}` must be {expected}, got {got}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What the format requires.
        expected: &'static str,
        /// The JSON type found.
        got: &'static str,
    },
    /// A byte field is a string but not hex.
    #[error("collateral field `{field}` is not valid hex: {source}")]
    BadHex {
        /// The field.
        field: &'static str,
        /// The decoding problem.
        #[source]
        source: hex::FromHexError,
    },
    /// A field this format does not define.
    #[error("unknown collateral field `{0}`")]
    UnknownField(String),
    /// A field is well-typed but its content cannot be interpreted.
    #[error("collateral {item}: {problem}")]
    BadItem {
        /// The piece of collateral at fault.
        item: CollateralItem,
        /// What is wrong with it.
        problem: String,
    },
}

/// A DCAP collateral bundle: TCB info, QE identity, PCK and root CA CRLs and
/// their issuer chains, optionally with the platform's PCK certificate chain.
///
/// Loading only checks the shape; [`Collateral::validity`] and the other
/// accessors interpret the content and name the item at fault. Signatures are
/// checked by the verifier, not here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collateral(QuoteCollateralV3);

impl From<QuoteCollateralV3> for Collateral {
    fn from(inner: QuoteCollateralV3) -> Self {
        Self(inner)
    }
}

impl Collateral {
    /// Load collateral from JSON in dcap-qvl's format (its `sample/*_collateral.json`).
    ///
    /// Byte fields (`root_ca_crl`, `pck_crl`, `tcb_info_signature`,
    /// `qe_identity_signature`) are hex strings; `pck_certificate_chain` is
    /// optional. Unknown fields are rejected so that a misspelt field cannot
    /// silently fall back to a default.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        if bytes.len() > MAX_COLLATERAL_JSON_BYTES {
            return Err(CollateralError::TooLarge {
                len: bytes.len(),
                max: MAX_COLLATERAL_JSON_BYTES,
            });
        }
        let value: Value = serde_json::from_slice(bytes).map_err(CollateralError::Syntax)?;
        Self::from_json_value(value)
    }

    /// Load collateral from an already-parsed JSON value (see [`Collateral::from_json`]).
    pub fn from_json_value(value: Value) -> Result<Self, CollateralError> {
        let Value::Object(mut fields) = value else {
            return Err(CollateralError::NotAnObject(json_type_name(&value)));
        };
        let inner = QuoteCollateralV3 {
            pck_crl_issuer_chain: take_string(&mut fields, "pck_crl_issuer_chain")?,
            root_ca_crl: take_hex(&mut fields, "root_ca_crl")?,
            pck_crl: take_hex(&mut fields, "pck_crl")?,
            tcb_info_issuer_chain: take_string(&mut fields, "tcb_info_issuer_chain")?,
            tcb_info: take_string(&mut fields, "tcb_info")?,
            tcb_info_signature: take_hex(&mut fields, "tcb_info_signature")?,
            qe_identity_issuer_chain: take_string(&mut fields, "qe_identity_issuer_chain")?,
            qe_identity: take_string(&mut fields, "qe_identity")?,
            qe_identity_signature: take_hex(&mut fields, "qe_identity_signature")?,
            pck_certificate_chain: take_optional_string(&mut fields, "pck_certificate_chain")?,
        };
        if let Some(unknown) = fields.keys().next() {
            return Err(CollateralError::UnknownField(unknown.clone()));
        }
        Ok(Self(inner))
    }

    /// The JSON value [`Collateral::to_json`] writes.
    pub fn to_json_value(&self) -> Value {
        let c = &self.0;
        let mut fields = Map::new();
        let mut put = |name: &str, value: String| {
            fields.insert(name.to_owned(), Value::String(value));
        };
        put("pck_crl_issuer_chain", c.pck_crl_issuer_chain.clone());
        put("root_ca_crl", hex::encode(&c.root_ca_crl));
        put("pck_crl", hex::encode(&c.pck_crl));
        put("tcb_info_issuer_chain", c.tcb_info_issuer_chain.clone());
        put("tcb_info", c.tcb_info.clone());
        put("tcb_info_signature", hex::encode(&c.tcb_info_signature));
        put(
            "qe_identity_issuer_chain",
            c.qe_identity_issuer_chain.clone(),
        );
        put("qe_identity", c.qe_identity.clone());
        put(
            "qe_identity_signature",
            hex::encode(&c.qe_identity_signature),
        );
        if let Some(chain) = &c.pck_certificate_chain {
            put("pck_certificate_chain", chain.clone());
        }
        Value::Object(fields)
    }

    /// Write the collateral as pretty-printed JSON in dcap-qvl's format.
    pub fn to_json(&self) -> Vec<u8> {
        format!("{:#}", self.to_json_value()).into_bytes()
    }

    /// The dcap-qvl form, as its verifier takes it.
    pub fn as_dcap(&self) -> &QuoteCollateralV3 {
        &self.0
    }

    /// Unwrap into the dcap-qvl form.
    pub fn into_dcap(self) -> QuoteCollateralV3 {
        self.0
    }

    /// The platform's PCK certificate chain (PEM), when the bundle carries one.
    ///
    /// dcap-qvl prefers this chain over the one embedded in the quote.
    pub fn pck_certificate_chain(&self) -> Option<&str> {
        self.0.pck_certificate_chain.as_deref()
    }

    /// The same bundle with the PCK certificate chain attached or removed.
    pub fn with_pck_certificate_chain(mut self, chain_pem: Option<String>) -> Self {
        self.0.pck_certificate_chain = chain_pem;
        self
    }

    /// The window in which every part of the bundle is current: from the
    /// latest issue date (`issueDate`, CRL `thisUpdate`, certificate
    /// `notBefore`) to the earliest expiry (`nextUpdate`, certificate
    /// `notAfter`), over TCB info, QE identity, both CRLs and all chains.
    pub fn validity(&self) -> Result<Validity, CollateralError> {
        validity::compute(self)
    }

    /// The TCB info, parsed as the verifier will parse it.
    pub fn tcb_info(&self) -> Result<dcap_qvl::TcbInfo, CollateralError> {
        serde_json::from_str(&self.0.tcb_info).map_err(|e| CollateralError::BadItem {
            item: CollateralItem::TcbInfo,
            problem: format!("not a TCB info document: {e}"),
        })
    }

    /// The QE identity, parsed as the verifier will parse it.
    pub fn qe_identity(&self) -> Result<dcap_qvl::QeIdentity, CollateralError> {
        serde_json::from_str(&self.0.qe_identity).map_err(|e| CollateralError::BadItem {
            item: CollateralItem::QeIdentity,
            problem: format!("not a QE identity document: {e}"),
        })
    }

    /// The FMSPC (platform family) the TCB info describes.
    pub fn fmspc(&self) -> Result<Fmspc, CollateralError> {
        let tcb_info = self.tcb_info()?;
        tcb_info
            .fmspc
            .parse()
            .map_err(|problem| CollateralError::BadItem {
                item: CollateralItem::TcbInfo,
                problem,
            })
    }

    /// TCB info `issueDate`, in Unix seconds.
    pub fn tcb_info_issue_date(&self) -> Result<u64, CollateralError> {
        let tcb_info = self.tcb_info()?;
        validity::parse_timestamp(CollateralItem::TcbInfo, "issueDate", &tcb_info.issue_date)
    }

    /// TCB info `nextUpdate`, in Unix seconds.
    pub fn tcb_info_next_update(&self) -> Result<u64, CollateralError> {
        let tcb_info = self.tcb_info()?;
        validity::parse_timestamp(CollateralItem::TcbInfo, "nextUpdate", &tcb_info.next_update)
    }

    /// Which PCK CA (platform or processor) issued the PCK CRL.
    pub fn pck_crl_ca(&self) -> Result<PckCa, CollateralError> {
        validity::crl_issuer_ca(&self.0.pck_crl)
    }
}

fn take_string(
    fields: &mut Map<String, Value>,
    field: &'static str,
) -> Result<String, CollateralError> {
    take_optional_string(fields, field)?.ok_or(CollateralError::MissingField(field))
}

/// An absent field and an explicit `null` both mean "not present", as in
/// dcap-qvl's own deserializer.
fn take_optional_string(
    fields: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, CollateralError> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(CollateralError::WrongType {
            field,
            expected: "a string",
            got: json_type_name(&other),
        }),
    }
}

fn take_hex(
    fields: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Vec<u8>, CollateralError> {
    match fields.remove(field) {
        None => Err(CollateralError::MissingField(field)),
        Some(Value::String(text)) => {
            hex::decode(text).map_err(|source| CollateralError::BadHex { field, source })
        }
        Some(other) => Err(CollateralError::WrongType {
            field,
            expected: "a hex string",
            got: json_type_name(&other),
        }),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    crate::canonical::json_kind(value)
}
