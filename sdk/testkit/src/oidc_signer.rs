//! Test-only token signing: the GitHub test server's OIDC issuer, and tests
//! of OIDC token checks.
//!
//! The two RSA keys next to this file were generated once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`. They are
//! PUBLIC, committed to the repository, and good for tests only: anything
//! signed with them proves nothing. An agent trusts them only when its
//! measured launch config names the test server as its OIDC issuer.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use serde_json::{json, Value};

/// The test issuer's key (PKCS#8 PEM). Public: tests only.
const ISSUER_KEY_PEM: &str = include_str!("test-issuer-key.pem");
/// A second key, for "signed by another key" tests. Public: tests only.
const STRANGER_KEY_PEM: &str = include_str!("test-stranger-key.pem");
/// The key id the test issuer's JWKS lists.
pub const TEST_KID: &str = "ee-test-issuer-1";

/// Signs JWTs with one of the committed test keys.
pub struct TestSigner {
    key: RsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for TestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSigner")
            .field("kid", &self.kid)
            .finish()
    }
}

/// A committed test key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[error("test signer: {0}")]
pub struct SignerError(String);

impl TestSigner {
    /// The test issuer's key, under [`TEST_KID`].
    pub fn issuer() -> Result<TestSigner, SignerError> {
        TestSigner::from_pem(ISSUER_KEY_PEM, TEST_KID)
    }

    /// Another key, presenting itself under `kid` (use [`TEST_KID`] to forge
    /// a token that names the issuer's key).
    pub fn stranger(kid: &str) -> Result<TestSigner, SignerError> {
        TestSigner::from_pem(STRANGER_KEY_PEM, kid)
    }

    fn from_pem(pem: &str, kid: &str) -> Result<TestSigner, SignerError> {
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|e| SignerError(format!("key PEM: {e}")))?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| SignerError(format!("key: {e}")))?;
        Ok(TestSigner {
            key,
            kid: kid.to_owned(),
        })
    }

    /// The key id put in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS entry.
    pub fn jwk(&self) -> Value {
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(self.key.public());
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }

    /// A JWKS document holding this key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// An RS256 JWT of `claims` with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> Result<String, SignerError> {
        self.sign_with_header(
            &json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    /// A JWT with an arbitrary header, signed RS256 with this key whatever
    /// the header says (for tests of refused headers).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> Result<String, SignerError> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|e| SignerError(format!("signing: {e}")))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}
