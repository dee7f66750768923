use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

// Dev-dependency: only strings and JSON cross over (unit tests cannot share
// easyenclave types with it).
use super::*;
use ee_testkit::oidc_signer::{TestSigner, TEST_KID};

const ISSUER: &str = "https://issuer.example";
const URL: &str = "https://issuer.example/.well-known/jwks";
const NOW: u64 = 1_767_225_600;

fn audience() -> String {
    audience_for_spki(b"agent key")
}

fn expected() -> Expected {
    Expected {
        issuer: ISSUER.to_owned(),
        repository: "Alice/App".to_owned(),
        audience: audience(),
        allowed_refs: Vec::new(),
        allowed_environments: Vec::new(),
        now: NOW,
        skew_secs: DEFAULT_SKEW_SECS,
    }
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": audience(),
        "sub": "repo:alice/app:ref:refs/heads/main",
        "repository": "alice/app",
        "ref": "refs/heads/main",
        "actor": "alice",
        "workflow_ref": "alice/app/.github/workflows/deploy.yml@refs/heads/main",
        "run_id": "42",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 290,
    })
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn signer() -> TestSigner {
    TestSigner::issuer().unwrap()
}

fn jwks() -> Jwks {
    Jwks::from_json(signer().jwks().to_string().as_bytes(), URL).unwrap()
}

fn check(token: &str) -> Result<Claims, OidcError> {
    verify(token, &jwks(), URL, &expected())
}

fn check_claims_of(claims: &Value) -> Result<Claims, OidcError> {
    check(&signer().sign(claims).unwrap())
}

/// The refusal names `claim` and says what was found and expected.
fn refused(result: Result<Claims, OidcError>, claim: &str, found: &str, expected: &str) {
    let err = result.expect_err("must be refused");
    assert_eq!(err.claim(), claim, "{err}");
    let text = err.to_string();
    assert!(text.contains(found), "{text} lacks {found}");
    assert!(text.contains(expected), "{text} lacks {expected}");
}

#[test]
fn a_valid_token_verifies() {
    let claims = check_claims_of(&claims()).unwrap();
    assert_eq!(claims.repository, "alice/app");
    assert_eq!(claims.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(claims.actor.as_deref(), Some("alice"));
    assert_eq!(claims.other.get("run_id").map(String::as_str), Some("42"));
    // A one-element audience list is the same audience.
    check_claims_of(&with(json!({"aud": [audience()]}))).unwrap();
}

#[test]
fn audience_names_the_key_hash() {
    let aud = audience_for_spki(b"abc");
    assert_eq!(
        aud,
        "easyenclave:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        jwks_url("https://x.example/"),
        "https://x.example/.well-known/jwks"
    );
    assert!(looks_like_jwt(&signer().sign(&claims()).unwrap()));
    for not_jwt in ["ghp_abc", "github_pat_x", "t-alice", "eyJ.a", "a.b.c"] {
        assert!(!looks_like_jwt(not_jwt), "{not_jwt}");
    }
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    for (header, found) in [
        (json!({"alg": "none", "kid": TEST_KID}), "\"none\""),
        (json!({"alg": "HS256", "kid": TEST_KID}), "\"HS256\""),
        (json!({"alg": "RS512", "kid": TEST_KID}), "\"RS512\""),
        (json!({"kid": TEST_KID}), "nothing"),
    ] {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        // Unsigned, and "signed" with an HMAC over the public key's bytes.
        for signature in ["", "c2lnbmF0dXJl"] {
            let token = format!("{head}.{body}.{signature}");
            refused(check(&token), "alg", found, "expected \"RS256\"");
        }
        // Even with a valid RS256 signature, the header decides.
        let token = signer().sign_with_header(&header, &claims()).unwrap();
        refused(check(&token), "alg", found, "RS256");
    }
}

#[test]
fn bad_signatures_are_refused() {
    // Signed by another key that claims the issuer's kid.
    let forged = TestSigner::stranger(TEST_KID)
        .unwrap()
        .sign(&claims())
        .unwrap();
    refused(check(&forged), "signature", TEST_KID, "does not verify");
    // A genuine token with its claims swapped for others.
    let genuine = signer().sign(&claims()).unwrap();
    let parts: Vec<&str> = genuine.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(with(json!({"repository": "mallory/app"})).to_string());
    let altered = format!("{}.{other}.{}", parts[0], parts[2]);
    refused(check(&altered), "signature", TEST_KID, "altered");
    // A truncated signature.
    let truncated = &genuine[..genuine.len() - 4];
    assert_eq!(check(truncated).unwrap_err().claim(), "signature");
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let stranger = TestSigner::stranger("rotated-key").unwrap();
    let token = stranger.sign(&claims()).unwrap();
    refused(check(&token), "kid", "\"rotated-key\"", TEST_KID);
    let token = signer()
        .sign_with_header(&json!({"alg": "RS256"}), &claims())
        .unwrap();
    refused(check(&token), "header", "kid: found nothing", "signing key");
}

#[test]
fn each_claim_is_checked() {
    refused(
        check_claims_of(&with(json!({"iss": "https://evil.example"}))),
        "iss",
        "\"https://evil.example\"",
        ISSUER,
    );
    let other_agent = audience_for_spki(b"another agent's key");
    refused(
        check_claims_of(&with(json!({"aud": other_agent}))),
        "aud",
        &other_agent,
        &audience(),
    );
    refused(
        check_claims_of(&with(json!({"aud": [audience(), other_agent]}))),
        "aud",
        &audience(),
        "one audience",
    );
    refused(
        check_claims_of(&with(json!({"aud": null}))),
        "aud",
        "nothing",
        "audience",
    );
    refused(
        check_claims_of(&with(json!({"exp": NOW - 61}))),
        "exp",
        "expired 61 s ago",
        "with 60 s skew",
    );
    // Within the skew.
    check_claims_of(&with(json!({"exp": NOW - 59}))).unwrap();
    refused(
        check_claims_of(&with(json!({"exp": null}))),
        "exp",
        "nothing",
        "expiry",
    );
    refused(
        check_claims_of(&with(json!({"exp": "soon"}))),
        "exp",
        "\"soon\"",
        "Unix seconds",
    );
    refused(
        check_claims_of(&with(json!({"nbf": NOW + 120}))),
        "nbf",
        "valid in 120 s",
        "before",
    );
    refused(
        check_claims_of(&with(json!({"iat": NOW + 120}))),
        "iat",
        "in the future by 120 s",
        "before",
    );
    let other_repo = check_claims_of(&with(json!({"repository": "mallory/app"})));
    assert!(other_repo.as_ref().unwrap_err().is_forbidden());
    refused(other_repo, "repository", "\"mallory/app\"", "\"Alice/App\"");
    refused(
        check_claims_of(&with(json!({"repository": null}))),
        "repository",
        "nothing",
        "owner/name",
    );
}

#[test]
fn allowed_refs_and_environments_restrict() {
    let mut expected = expected();
    expected.allowed_refs = vec!["refs/heads/main".into(), "refs/tags/v1".into()];
    expected.allowed_environments = vec!["production".into()];
    let token = |claims: &Value| signer().sign(claims).unwrap();
    let run = |claims: &Value, expected: &Expected| verify(&token(claims), &jwks(), URL, expected);

    run(&with(json!({"environment": "production"})), &expected).unwrap();
    let err = run(
        &with(json!({"ref": "refs/heads/dev", "environment": "production"})),
        &expected,
    )
    .unwrap_err();
    assert!(err.is_forbidden());
    refused(Err(err), "ref", "\"refs/heads/dev\"", "refs/tags/v1");
    refused(
        run(&claims(), &expected),
        "environment",
        "nothing",
        "oidc.allowed_environments",
    );
}

#[test]
fn malformed_tokens_name_the_part() {
    let genuine = signer().sign(&claims()).unwrap();
    for (token, part, needle) in [
        ("abc".to_owned(), "token", "three base64url parts"),
        (format!("{genuine}.x"), "token", "three"),
        ("e30.e30.e30=".to_owned(), "signature", "base64url"),
        ("!!.e30.AA".to_owned(), "header", "base64url"),
        ("W10.e30.AA".to_owned(), "header", "JSON object"),
        ("e30.W10.AA".to_owned(), "claims", "JSON object"),
        ("x".repeat(MAX_TOKEN_BYTES + 1), "token", "bytes"),
    ] {
        let err = check(&token).unwrap_err();
        assert_eq!(err.claim(), part, "{token:.40}: {err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let typ = signer()
        .sign_with_header(
            &json!({"alg": "RS256", "kid": TEST_KID, "typ": "JWE"}),
            &claims(),
        )
        .unwrap();
    refused(check(&typ), "header", "typ", "JWT");
    let crit = signer()
        .sign_with_header(
            &json!({"alg": "RS256", "kid": TEST_KID, "crit": ["exp"]}),
            &claims(),
        )
        .unwrap();
    refused(check(&crit), "header", "crit", "none");
}

#[test]
fn jwks_documents_are_checked() {
    let rsa = signer().jwk();
    let ec = json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"});
    let jwks = Jwks::from_json(json!({"keys": [ec, rsa]}).to_string().as_bytes(), URL).unwrap();
    assert_eq!(jwks.keys.len(), 1, "the EC key is skipped");
    assert!(jwks.find(TEST_KID).is_some());
    for (document, needle) in [
        (json!({"keys": [ec]}).to_string(), "no RSA signing key"),
        (json!({"keys": []}).to_string(), "no RSA signing key"),
        ("[]".to_owned(), "not a JWKS"),
        (
            json!({"keys": [{"kty": "RSA", "kid": "k", "n": "A!", "e": "AQAB"}]}).to_string(),
            "keys[0].n: not base64url",
        ),
        (
            json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}).to_string(),
            "keys[0].kid",
        ),
        (" ".repeat(MAX_JWKS_BYTES + 1), "byte limit"),
    ] {
        let err = Jwks::from_json(document.as_bytes(), URL).unwrap_err();
        assert_eq!(err.claim(), "jwks");
        let text = err.to_string();
        assert!(text.contains(URL) && text.contains(needle), "{text}");
    }
}

#[test]
fn decode_unverified_reads_without_trusting() {
    let forged = TestSigner::stranger(TEST_KID)
        .unwrap()
        .sign(&claims())
        .unwrap();
    let (header, claims) = decode_unverified(&forged).unwrap();
    assert_eq!(header.kid.as_deref(), Some(TEST_KID));
    assert_eq!(claims.aud, audience());
    assert!(check(&forged).is_err());
}
