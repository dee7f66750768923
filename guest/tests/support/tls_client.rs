//! A test HTTPS client for the agent API, and the RA-TLS checks a verifier
//! makes on the certificate it was served.
//!
//! The client speaks TLS 1.3 with ALPN `http/1.1` and accepts whatever
//! certificate the agent presents during the handshake (the handshake
//! signature is still checked against that certificate's key), then hands the
//! certificate back: each test decides what it must prove, with
//! [`check_binding`] (the quote's REPORTDATA binds the key) and
//! [`verify_with_sim_root`] (the quote verifies with the simulated root).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easyenclave::collateral::Collateral;
use easyenclave::quote::Quote;
use easyenclave::ratls::CertEvidence;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::{Policy, TrustRoot, VerifiedQuote, Verifier};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned,
    SupportedProtocolVersion,
};

/// One exchange with the agent.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Status line and header fields.
    pub head: String,
    /// The body.
    pub body: String,
    /// The certificate the agent presented (DER).
    pub cert_der: Vec<u8>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Remembers the server's certificate; checks the handshake signature.
#[derive(Debug)]
pub struct CaptureCert {
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl CaptureCert {
    /// The certificate the server presented, once the handshake got that far.
    pub fn cert(&self) -> Option<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

impl ServerCertVerifier for CaptureCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client connection to `addr` (not yet handshaken) speaking `versions`,
/// and where the server's certificate will land.
pub fn connect_with(
    addr: SocketAddr,
    versions: &[&'static SupportedProtocolVersion],
) -> (StreamOwned<ClientConnection, TcpStream>, Arc<CaptureCert>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(CaptureCert {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("agent.invalid").unwrap();
    let connection = ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    socket
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (StreamOwned::new(connection, socket), capture)
}

/// Send `raw` over TLS 1.3 and read the whole response (the agent closes
/// after one). An error means the TLS handshake or the exchange failed.
pub fn try_exchange(addr: SocketAddr, raw: &[u8]) -> io::Result<Answer> {
    let (mut tls, capture) = connect_with(addr, &[&rustls::version::TLS13]);
    tls.write_all(raw)?;
    tls.flush()?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)?;
    let response = String::from_utf8(response).map_err(io::Error::other)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no HTTP response: {response:?}")))?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head:?}")))?;
    let cert_der = capture
        .cert()
        .ok_or_else(|| io::Error::other("no certificate was presented"))?;
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
        cert_der,
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
    })
}

/// [`try_exchange`], panicking with the reason on failure.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Answer {
    try_exchange(addr, raw).unwrap_or_else(|e| panic!("HTTPS exchange with {addr} failed: {e}"))
}

/// `METHOD target` over HTTPS.
pub fn request(addr: SocketAddr, method: &str, target: &str) -> Answer {
    exchange(
        addr,
        format!("{method} {target} HTTP/1.1\r\nHost: agent\r\n\r\n").as_bytes(),
    )
}

/// Parse the RA-TLS certificate and check that its quote's REPORTDATA binds
/// its key and that it is valid now (no signature checks: see
/// [`verify_with_sim_root`]).
pub fn check_binding(cert_der: &[u8]) -> CertEvidence {
    let evidence = CertEvidence::from_cert_der(cert_der)
        .unwrap_or_else(|e| panic!("not an RA-TLS certificate: {e}"));
    let quote = Quote::parse(&evidence.quote).unwrap();
    evidence
        .check_binding(&quote.body().td10().report_data)
        .unwrap_or_else(|e| panic!("{e}"));
    evidence
        .check_validity(SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    evidence
}

/// Verify the certificate's quote with the simulated root (default policy,
/// fresh collateral), then check that its verified REPORTDATA binds the
/// certificate's key.
pub fn verify_with_sim_root(cert_der: &[u8]) -> (CertEvidence, VerifiedQuote) {
    let evidence = CertEvidence::from_cert_der(cert_der)
        .unwrap_or_else(|e| panic!("not an RA-TLS certificate: {e}"));
    let pki = SimPki::from_seed(DEV_SEED).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let collateral = Collateral::from(pki.collateral(now - 3600, now + 30 * 24 * 3600).unwrap());
    let verified = Verifier::with_root(
        TrustRoot::Explicit(pki.root_ca_der().to_vec()),
        Policy::default(),
    )
    .verify(&evidence.quote, &collateral, now)
    .unwrap_or_else(|e| panic!("the certificate's quote does not verify: {e}"));
    assert_eq!(verified.status, "UpToDate");
    evidence
        .check_binding(&verified.measurements.report_data)
        .unwrap_or_else(|e| panic!("{e}"));
    evidence
        .check_validity(SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    (evidence, verified)
}
