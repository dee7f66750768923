//! Where collateral comes from: Intel's PCS or a caching service (PCCS).

use std::fmt;

use sha2::{Digest, Sha256};

/// A service that serves Intel's PCS v4 API.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CollateralSource {
    /// Intel's Provisioning Certification Service at [`CollateralSource::INTEL_PCS_URL`].
    IntelPcs,
    /// A PCCS (or any PCS-compatible mirror) at this base URL, e.g.
    /// `https://pccs.example:8081`. A trailing `/sgx/certification/v4` or
    /// `/tdx/certification/v4` is accepted and ignored.
    Pccs(String),
}

impl CollateralSource {
    /// Base URL of Intel's PCS.
    pub const INTEL_PCS_URL: &'static str = "https://api.trustedservices.intel.com";

    /// The base URL the API paths are appended to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        match self {
            Self::IntelPcs => Self::INTEL_PCS_URL,
            Self::Pccs(url) => {
                let url = url.trim_end_matches('/');
                let url = url
                    .strip_suffix("/sgx/certification/v4")
                    .or_else(|| url.strip_suffix("/tdx/certification/v4"))
                    .unwrap_or(url);
                url.trim_end_matches('/')
            }
        }
    }

    /// A short identifier safe for file names: `intel-pcs`, or `pccs-`
    /// followed by 16 hex digits of the SHA-256 of the base URL.
    pub fn cache_id(&self) -> String {
        match self {
            Self::IntelPcs => "intel-pcs".to_owned(),
            Self::Pccs(_) => {
                let digest = Sha256::digest(self.base_url().as_bytes());
                format!("pccs-{}", hex::encode(digest.get(..8).unwrap_or_default()))
            }
        }
    }
}

impl fmt::Display for CollateralSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IntelPcs => write!(f, "Intel PCS ({})", Self::INTEL_PCS_URL),
            Self::Pccs(_) => write!(f, "PCCS {}", self.base_url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CollateralSource;

    #[test]
    fn pccs_base_url_is_normalised() {
        for url in [
            "https://pccs.example:8081",
            "https://pccs.example:8081/",
            "https://pccs.example:8081/sgx/certification/v4",
            "https://pccs.example:8081/tdx/certification/v4/",
        ] {
            let source = CollateralSource::Pccs(url.to_owned());
            assert_eq!(source.base_url(), "https://pccs.example:8081", "{url}");
        }
    }

    #[test]
    fn cache_ids_are_file_name_safe_and_distinct() {
        let a = CollateralSource::Pccs("https://a.example".to_owned());
        let a_slash = CollateralSource::Pccs("https://a.example/".to_owned());
        let b = CollateralSource::Pccs("https://b.example".to_owned());
        assert_eq!(CollateralSource::IntelPcs.cache_id(), "intel-pcs");
        assert_eq!(a.cache_id(), a_slash.cache_id());
        assert_ne!(a.cache_id(), b.cache_id());
        let id = a.cache_id();
        assert_eq!(id.len(), "pccs-".len() + 16);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
