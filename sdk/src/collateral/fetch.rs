//! Download a TDX collateral bundle from Intel PCS or a PCCS (PCS API v4),
//! with blocking HTTP.
//!
//! Requests, in order:
//! 1. `/sgx/certification/v4/pckcrl?ca={platform|processor}&encoding=der`
//!    (issuer chain in header `SGX-PCK-CRL-Issuer-Chain`);
//! 2. `/tdx/certification/v4/tcb?fmspc={FMSPC}` (`TCB-Info-Issuer-Chain`);
//! 3. `/tdx/certification/v4/qe/identity` (`SGX-Enclave-Identity-Issuer-Chain`);
//! 4. the root CA CRL: a PCCS serves it at `/sgx/certification/v4/rootcacrl`;
//!    Intel PCS does not, so it is fetched from the CRL distribution point of
//!    the root certificate, as dcap-qvl does.
//!
//! Issuer chains arrive URL-encoded in headers. TCB info and QE identity are
//! kept byte for byte as served, because their signatures cover those bytes.

use std::{collections::HashMap, time::Duration};

use dcap_qvl::QuoteCollateralV3;
use der::{oid::AssociatedOid as _, Decode as _};
use serde_json::value::RawValue;
use x509_cert::ext::pkix::{
    name::{DistributionPointName, GeneralName},
    CrlDistributionPoints,
};

use super::{
    fmspc_and_ca_from_pck_chain, pem, validity, Collateral, CollateralError, CollateralItem,
    CollateralSource, Fmspc, PckCa, PckError, MAX_COLLATERAL_JSON_BYTES,
};

/// Timeouts and limits for [`fetch()`].
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Time allowed to establish each connection (DNS, TCP, TLS).
    pub connect_timeout: Duration,
    /// Time allowed for each response's headers to arrive, and again for its body.
    pub read_timeout: Duration,
    /// Largest response body accepted, after decompression.
    pub max_response_bytes: u64,
}

impl Default for FetchOptions {
    /// 10 s to connect, 30 s to read, 4 MiB per response.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_response_bytes: u64::try_from(MAX_COLLATERAL_JSON_BYTES).unwrap_or(u64::MAX),
        }
    }
}

/// Why a fetch failed; every network error names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A connect or read timeout expired.
    #[error("GET {url}: timed out ({what})")]
    Timeout {
        /// The request.
        url: String,
        /// Which timeout expired.
        what: String,
    },
    /// The request failed below HTTP (DNS, TCP, TLS, protocol).
    #[error("GET {url}: {source}")]
    Transport {
        /// The request.
        url: String,
        /// The client's error.
        #[source]
        source: ureq::Error,
    },
    /// The service answered with a non-2xx status.
    #[error("GET {url}: HTTP status {status}")]
    Status {
        /// The request.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The response body is over [`FetchOptions::max_response_bytes`].
    #[error("GET {url}: response body is over the {max}-byte limit")]
    TooLarge {
        /// The request.
        url: String,
        /// The limit.
        max: u64,
    },
    /// A required response header is absent.
    #[error("GET {url}: response has no {header} header")]
    MissingHeader {
        /// The request.
        url: String,
        /// The header.
        header: &'static str,
    },
    /// A response header or body is malformed.
    #[error("GET {url}: {problem}")]
    BadResponse {
        /// The request.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The root CA CRL's location cannot be read from the root certificate.
    #[error("cannot locate the root CA CRL: {0}")]
    RootCrlLocation(String),
    /// The assembled bundle cannot be interpreted.
    #[error("{service} returned unusable collateral: {error}")]
    Invalid {
        /// The service.
        service: String,
        /// What is wrong with the bundle.
        #[source]
        error: CollateralError,
    },
    /// The service returned collateral for another FMSPC or PCK CA.
    #[error("{service} returned collateral for {what} {actual}, requested {expected}")]
    Mismatch {
        /// The service.
        service: String,
        /// `FMSPC` or `PCK CA`.
        what: &'static str,
        /// What was returned.
        actual: String,
        /// What was requested.
        expected: String,
    },
    /// The PCK certificate chain passed in is unusable.
    #[error(transparent)]
    PckChain(#[from] PckError),
    /// The PCK certificate chain passed in is for another FMSPC or PCK CA.
    #[error("the PCK certificate chain is for {what} {actual}, requested {expected}")]
    PckChainMismatch {
        /// `FMSPC` or `PCK CA`.
        what: &'static str,
        /// What the chain says.
        actual: String,
        /// What was requested.
        expected: String,
    },
}

/// Fetch the TDX collateral for platforms of `fmspc` whose PCK certificate
/// was issued by `ca` (see [`super::fmspc_and_ca_from_quote`]).
///
/// `pck_chain_pem`, when given, must be for the same FMSPC and CA and is
/// attached as the bundle's PCK certificate chain. The result is checked to
/// be for the requested FMSPC and CA and to have a readable validity window;
/// signatures are left to the verifier.
pub fn fetch(
    source: &CollateralSource,
    fmspc: Fmspc,
    ca: PckCa,
    pck_chain_pem: Option<&str>,
    options: &FetchOptions,
) -> Result<Collateral, FetchError> {
    if let Some(chain) = pck_chain_pem {
        let (chain_fmspc, chain_ca) = fmspc_and_ca_from_pck_chain(chain)?;
        check_same("FMSPC", chain_fmspc, fmspc, pck_chain_mismatch)?;
        check_same("PCK CA", chain_ca, ca, pck_chain_mismatch)?;
    }
    let client = Client::new(options);
    let base = source.base_url();

    let url = format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der");
    let response = client.get(&url)?;
    let pck_crl_issuer_chain = response.chain_header(&["SGX-PCK-CRL-Issuer-Chain"])?;
    let pck_crl = crl_der(&url, &response.body)?;

    let url = format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}");
    let response = client.get(&url)?;
    // PCS v3 named this header with an `SGX-` prefix; some PCCS still do.
    let tcb_info_issuer_chain =
        response.chain_header(&["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"])?;
    let (tcb_info, tcb_info_signature) = signed_document(&url, &response.body, "tcbInfo")?;

    let url = format!("{base}/tdx/certification/v4/qe/identity");
    let response = client.get(&url)?;
    let qe_identity_issuer_chain = response.chain_header(&["SGX-Enclave-Identity-Issuer-Chain"])?;
    let (qe_identity, qe_identity_signature) =
        signed_document(&url, &response.body, "enclaveIdentity")?;

    let url = match source {
        CollateralSource::Pccs(_) => format!("{base}/sgx/certification/v4/rootcacrl"),
        CollateralSource::IntelPcs => root_crl_url(&qe_identity_issuer_chain)?,
    };
    let root_ca_crl = crl_der(&url, &client.get(&url)?.body)?;

    let collateral = Collateral::from(QuoteCollateralV3 {
        pck_crl_issuer_chain,
        root_ca_crl,
        pck_crl,
        tcb_info_issuer_chain,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain,
        qe_identity,
        qe_identity_signature,
        pck_certificate_chain: pck_chain_pem.map(str::to_owned),
    });
    check_collateral(source, &collateral, fmspc, ca)?;
    Ok(collateral)
}

fn check_collateral(
    source: &CollateralSource,
    collateral: &Collateral,
    fmspc: Fmspc,
    ca: PckCa,
) -> Result<(), FetchError> {
    let invalid = |error| FetchError::Invalid {
        service: source.to_string(),
        error,
    };
    let mismatch = |what, actual: String, expected: String| FetchError::Mismatch {
        service: source.to_string(),
        what,
        actual,
        expected,
    };
    check_same(
        "FMSPC",
        collateral.fmspc().map_err(invalid)?,
        fmspc,
        mismatch,
    )?;
    check_same(
        "PCK CA",
        collateral.pck_crl_ca().map_err(invalid)?,
        ca,
        mismatch,
    )?;
    collateral.validity().map_err(invalid)?;
    Ok(())
}

fn pck_chain_mismatch(what: &'static str, actual: String, expected: String) -> FetchError {
    FetchError::PckChainMismatch {
        what,
        actual,
        expected,
    }
}

fn check_same<T: PartialEq + ToString>(
    what: &'static str,
    actual: T,
    expected: T,
    error: impl FnOnce(&'static str, String, String) -> FetchError,
) -> Result<(), FetchError> {
    if actual == expected {
        Ok(())
    } else {
        Err(error(what, actual.to_string(), expected.to_string()))
    }
}

/// A blocking HTTP client with the fetch limits applied.
struct Client {
    agent: ureq::Agent,
    max_response_bytes: u64,
}

/// A successful response, body read in full.
struct Response {
    url: String,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Client {
    fn new(options: &FetchOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.read_timeout))
            .timeout_recv_body(Some(options.read_timeout))
            .user_agent(concat!("easyenclave/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            max_response_bytes: options.max_response_bytes,
        }
    }

    fn get(&self, url: &str) -> Result<Response, FetchError> {
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| self.transport_error(url, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec()
            .map_err(|e| self.transport_error(url, e))?;
        Ok(Response {
            url: url.to_owned(),
            headers: response.headers().clone(),
            body,
        })
    }

    fn transport_error(&self, url: &str, error: ureq::Error) -> FetchError {
        let url = url.to_owned();
        match error {
            ureq::Error::Timeout(which) => FetchError::Timeout {
                url,
                what: which.to_string(),
            },
            ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge {
                url,
                max: self.max_response_bytes,
            },
            source => FetchError::Transport { url, source },
        }
    }
}

impl Response {
    /// The PEM chain in the first present header of `names`, URL-decoded.
    fn chain_header(&self, names: &[&'static str]) -> Result<String, FetchError> {
        let (name, value) = names
            .iter()
            .find_map(|&name| Some((name, self.headers.get(name)?)))
            .ok_or_else(|| FetchError::MissingHeader {
                url: self.url.clone(),
                header: names.first().copied().unwrap_or_default(),
            })?;
        let bad = |problem: String| FetchError::BadResponse {
            url: self.url.clone(),
            problem: format!("header {name}: {problem}"),
        };
        let text = value
            .to_str()
            .map_err(|_| bad("not visible ASCII".to_owned()))?;
        percent_decode(text).map_err(bad)
    }
}

/// Decode `%XX` escapes. `+` stays `+`: it is a base64 digit in the PEM.
fn percent_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'%' {
            bytes.push(byte);
            continue;
        }
        let offset = text.len() - tail.len() - 1;
        let escape = tail
            .get(..2)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok())
            .ok_or_else(|| format!("bad %-escape at offset {offset}"))?;
        bytes.push(escape);
        rest = tail.get(2..).unwrap_or_default();
    }
    String::from_utf8(bytes).map_err(|_| "decodes to invalid UTF-8".to_owned())
}

/// Split a PCS signed JSON document (`{"<field>": {...}, "signature": "<hex>"}`)
/// into the exact bytes of the signed part and the signature.
fn signed_document(
    url: &str,
    body: &[u8],
    field: &'static str,
) -> Result<(String, Vec<u8>), FetchError> {
    let bad = |problem: String| FetchError::BadResponse {
        url: url.to_owned(),
        problem,
    };
    let expected_shape = || format!("expected {{\"{field}\": {{..}}, \"signature\": \"..\"}}");
    let parts: HashMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| bad(format!("{}: {e}", expected_shape())))?;
    let (Some(document), Some(signature)) = (parts.get(field), parts.get("signature")) else {
        return Err(bad(expected_shape()));
    };
    let document = document.get();
    if !document.starts_with('{') {
        return Err(bad(format!("`{field}` is not a JSON object")));
    }
    let signature: String = serde_json::from_str(signature.get())
        .map_err(|e| bad(format!("`signature` is not a string: {e}")))?;
    let signature =
        hex::decode(signature).map_err(|e| bad(format!("`signature` is not hex: {e}")))?;
    Ok((document.to_owned(), signature))
}

/// A CRL body as DER. Services differ: Intel PCS sends DER when asked,
/// a PCCS sends the root CA CRL as hex, and older services send PEM.
fn crl_der(url: &str, body: &[u8]) -> Result<Vec<u8>, FetchError> {
    let bad = |problem: String| FetchError::BadResponse {
        url: url.to_owned(),
        problem,
    };
    // 0x30 is the DER SEQUENCE tag that starts every CRL.
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| bad("CRL is neither DER, PEM nor hex".to_owned()))?
        .trim();
    if text.contains("-----BEGIN X509 CRL-----") {
        let mut blocks = pem::decode_blocks(text, "X509 CRL").map_err(bad)?;
        return match (blocks.pop(), blocks.is_empty()) {
            (Some(der), true) => Ok(der),
            _ => Err(bad("PEM holds more than one CRL".to_owned())),
        };
    }
    hex::decode(text).map_err(|e| bad(format!("CRL is neither DER, PEM nor hex: {e}")))
}

/// The CRL distribution point URL of the root (last) certificate of `chain_pem`.
fn root_crl_url(chain_pem: &str) -> Result<String, FetchError> {
    let chain = validity::parse_chain(CollateralItem::QeIdentityIssuerChain, chain_pem)
        .map_err(|e| FetchError::RootCrlLocation(e.to_string()))?;
    let root = chain
        .last()
        .ok_or_else(|| FetchError::RootCrlLocation("empty issuer chain".to_owned()))?;
    let extension = root
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|ext| ext.extn_id == CrlDistributionPoints::OID)
        .ok_or_else(|| {
            FetchError::RootCrlLocation("root certificate has no CRL distribution point".to_owned())
        })?;
    let points = CrlDistributionPoints::from_der(extension.extn_value.as_bytes()).map_err(|e| {
        FetchError::RootCrlLocation(format!("malformed CRL distribution points: {e}"))
    })?;
    points
        .0
        .iter()
        .filter_map(|point| match &point.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .find_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .ok_or_else(|| FetchError::RootCrlLocation("CRL distribution point has no URI".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_plus_and_names_bad_escapes() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERTIFICATE-----%0Aab+/=").unwrap(),
            "-----BEGIN CERTIFICATE-----\nab+/="
        );
        assert_eq!(
            percent_decode("ab%4").unwrap_err(),
            "bad %-escape at offset 2"
        );
        assert_eq!(
            percent_decode("%zz").unwrap_err(),
            "bad %-escape at offset 0"
        );
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn signed_document_keeps_the_exact_signed_bytes() {
        // Spacing and key order that a re-serialisation would change.
        let body = br#"{"tcbInfo":{"b":1,  "a":"x\/y"},"signature":"0aff"}"#;
        let (document, signature) = signed_document("u", body, "tcbInfo").unwrap();
        assert_eq!(document, r#"{"b":1,  "a":"x\/y"}"#);
        assert_eq!(signature, vec![0x0a, 0xff]);
        let body = br#"{"enclaveIdentity":{"id":"TD_QE"},"signature":""}"#;
        assert_eq!(
            signed_document("u", body, "enclaveIdentity").unwrap().0,
            r#"{"id":"TD_QE"}"#
        );
        let error = signed_document("u", br#"{"tcbInfo":[],"signature":""}"#, "tcbInfo");
        assert!(error
            .unwrap_err()
            .to_string()
            .contains("`tcbInfo` is not a JSON object"));
        // The QE identity response must not be accepted as TCB info.
        let error = signed_document("u", body, "tcbInfo")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("GET u: expected {\"tcbInfo\""), "{error}");
    }

    #[test]
    fn crl_bodies_are_accepted_as_der_pem_or_hex() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x00];
        let pem = "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n";
        assert_eq!(crl_der("u", &der).unwrap(), der);
        assert_eq!(crl_der("u", pem.as_bytes()).unwrap(), der);
        assert_eq!(crl_der("u", b"3003020100\n").unwrap(), der);
        let error = crl_der("u", b"not a crl").unwrap_err().to_string();
        assert!(
            error.starts_with("GET u: CRL is neither DER, PEM nor hex"),
            "{error}"
        );
    }

    /// The Intel SGX Root CA certificate (SHA-256 fingerprint 44:A0:19:6B:..:74:D3),
    /// as it ends every Intel issuer chain; `openssl x509 -ext
    /// crlDistributionPoints` shows the URI asserted below.
    const INTEL_ROOT_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
";

    #[test]
    fn root_crl_url_is_read_from_the_root_certificate() {
        assert_eq!(
            root_crl_url(INTEL_ROOT_CA_PEM).unwrap(),
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
        );
        let error = root_crl_url("").unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }
}
