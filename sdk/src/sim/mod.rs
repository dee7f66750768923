//! A simulated TDX platform (cargo feature `sim`), for tests and dev images.
//!
//! **The simulation gives no security at all.** Every key is derived from a
//! seed; with [`DEV_SEED`] the seed is public, so anyone can forge quotes that
//! verify against the simulated root. It exists so that the production
//! verification path runs end to end on machines without TDX: quotes from
//! [`td::SimTd`] pass the *same* dcap-qvl verification as real Intel quotes when
//! — and only when — the verifier is handed the simulated root certificate
//! ([`pki::SimPki::root_ca_der`]) explicitly. Against Intel's production root
//! (`QuoteVerifier::new_prod()`) they fail.
//!
//! The platform is Intel-shaped, mirroring the collateral Intel's PCS serves:
//!
//! - [`pki`]: a root CA, a PCK Platform CA, a PCK leaf certificate carrying the
//!   SGX extension (OID 1.2.840.113741.1.13.1), a TCB signing certificate, the
//!   root CA and PCK CRLs, and the TCB info and QE identity documents signed
//!   by the TCB signing key. Every certificate name says `SIM`.
//! - [`tcb`]: the TCB levels the TCB info publishes and the identity of the
//!   simulated quoting enclave.
//! - [`td`]: a software trust domain with MRTD, RTMR0-3 and a v4 quote
//!   generator (TD 1.0 body, attestation-key signature, QE report signed by
//!   the PCK leaf key, PEM PCK chain).
//!
//! Everything is deterministic: the same seed and inputs give bit-identical
//! certificates, CRLs, collateral and quotes (ECDSA signatures use RFC 6979
//! nonces).

pub mod pki;
pub mod tcb;
pub mod td;
mod x509;

use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};

/// The seed of the simulated platform in dev images. **Not a secret**: it is
/// published here, so anyone can derive the simulated keys and forge quotes.
/// That is why verifiers accept the simulated root only when told to.
pub const DEV_SEED: &[u8] = b"easyenclave-sim-dev-seed-v1 (public, not secret)";

/// Errors from building the simulated platform or its quotes.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value cannot be represented the way Intel does.
    #[error("invalid sim configuration: {0}")]
    InvalidConfig(String),
    /// A derived value is not a valid P-256 private key (probability ~2^-128).
    #[error("key derived for label {label:?} is not a valid P-256 scalar")]
    KeyDerivation {
        /// Derivation label of the key.
        label: String,
    },
    /// DER encoding of a certificate or CRL structure failed.
    #[error("DER encoding of {what} failed: {source}")]
    Der {
        /// The structure being encoded.
        what: &'static str,
        /// The encoder's error.
        source: der::Error,
    },
    /// A time cannot be written as an X.509 time or an RFC 3339 date.
    #[error("{field} = {unix} (unix seconds) is outside the representable range 1970..9999")]
    TimeOutOfRange {
        /// The field being written.
        field: &'static str,
        /// The rejected value.
        unix: u64,
    },
    /// A validity window ends before it starts.
    #[error("{what}: start {start} is after end {end} (unix seconds)")]
    InvalidWindow {
        /// The window being set.
        what: &'static str,
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// TDX has RTMR0..RTMR3 only.
    #[error("RTMR index {index} is out of range (TDX has RTMR0..RTMR3)")]
    RtmrIndex {
        /// The rejected index.
        index: usize,
    },
    /// The quote encoder refused the quote.
    #[error("assembling the quote failed: {0}")]
    Quote(#[from] crate::quote::QuoteError),
    /// Serializing a collateral JSON document failed.
    #[error("serializing {what} failed: {source}")]
    Json {
        /// The document being serialized.
        what: &'static str,
        /// The serializer's error.
        source: serde_json::Error,
    },
}

/// 32 bytes derived from `seed` for one purpose.
///
/// SHA-256(label || 0x00 || seed): labels are fixed NUL-free ASCII strings, so
/// the input is unambiguous for every (label, seed) pair. Labels carry a
/// version (`easyenclave-sim/v1/...`).
fn derive_bytes(seed: &[u8], label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(seed);
    h.finalize().into()
}

/// The P-256 key derived from `seed` for `label`.
fn derive_signing_key(seed: &[u8], label: &str) -> Result<SigningKey, SimError> {
    let bytes = derive_bytes(seed, label);
    SigningKey::from_bytes(&bytes.into()).map_err(|_| SimError::KeyDerivation {
        label: label.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_separates_labels_and_seeds() {
        let a = derive_bytes(b"seed", "easyenclave-sim/v1/a");
        assert_eq!(a, derive_bytes(b"seed", "easyenclave-sim/v1/a"));
        assert_ne!(a, derive_bytes(b"seed", "easyenclave-sim/v1/b"));
        assert_ne!(a, derive_bytes(b"seed2", "easyenclave-sim/v1/a"));
        // The separator keeps label/seed boundaries apart.
        assert_ne!(derive_bytes(b"bc", "a"), derive_bytes(b"c", "ab"));
    }

    #[test]
    fn derived_key_is_sha256_of_label_nul_seed() {
        // Independent recomputation of the documented construction.
        let expected: [u8; 32] = Sha256::digest(b"L\x00S").into();
        let key = derive_signing_key(b"S", "L").unwrap();
        let key_bytes: [u8; 32] = key.to_bytes().into();
        assert_eq!(key_bytes, expected);
    }
}
