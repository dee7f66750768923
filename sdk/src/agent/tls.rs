//! The RA-TLS channel: a rustls client whose certificate verifier accepts
//! the agent's self-signed certificate only on the strength of its quote.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use sha2::{Digest, Sha256};

use crate::ratls::CertEvidence;
use crate::verify::VerifiedQuote;

use super::http::Endpoint;
use super::{AgentError, AgentTrust};

/// What the verifier accepted on a connection.
#[derive(Debug, Clone)]
pub(super) struct Accepted {
    /// The agent's SubjectPublicKeyInfo (DER).
    pub spki_der: Vec<u8>,
    /// The certificate's verified quote; `None` when the key was already
    /// pinned (it was attested when it was pinned).
    pub quote: Option<VerifiedQuote>,
}

/// The verifier's verdict, kept because rustls reports only a string.
type Outcome = Mutex<Option<Result<Accepted, AgentError>>>;

/// Accepts a certificate whose quote verifies (DCAP, policy, allowlist) and
/// binds the certificate's key, or, once pinned, exactly the pinned key.
/// Names, issuers, and the certificate's own signature play no part: the
/// quote and the handshake signature by the bound key are the proof.
struct RaTlsVerifier {
    trust: Arc<AgentTrust>,
    pinned_spki: Option<Vec<u8>>,
    provider: Arc<CryptoProvider>,
    outcome: Arc<Outcome>,
}

impl std::fmt::Debug for RaTlsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaTlsVerifier")
            .field("trust", &self.trust)
            .field("pinned", &self.pinned_spki.as_deref().map(spki_sha256_hex))
            .finish()
    }
}

/// SHA-256 of a SubjectPublicKeyInfo, hex: how keys are named in errors.
pub(super) fn spki_sha256_hex(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

impl RaTlsVerifier {
    fn check(&self, cert_der: &[u8], now: UnixTime) -> Result<Accepted, AgentError> {
        let evidence = CertEvidence::from_cert_der(cert_der).map_err(AgentError::Certificate)?;
        if let Some(pinned) = &self.pinned_spki {
            if pinned != &evidence.spki_der {
                return Err(AgentError::KeyChanged {
                    pinned: spki_sha256_hex(pinned),
                    presented: spki_sha256_hex(&evidence.spki_der),
                });
            }
            return Ok(Accepted {
                spki_der: evidence.spki_der,
                quote: None,
            });
        }
        let now_time = std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        evidence
            .check_validity(now_time)
            .map_err(AgentError::Certificate)?;
        let verified = self.trust.verify_quote(&evidence.quote, now.as_secs())?;
        evidence
            .check_binding(&verified.measurements.report_data)
            .map_err(AgentError::Binding)?;
        Ok(Accepted {
            spki_der: evidence.spki_der,
            quote: Some(verified),
        })
    }

    fn record(&self, verdict: Result<Accepted, AgentError>) -> Result<(), rustls::Error> {
        let message = verdict.as_ref().err().map(ToString::to_string);
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(verdict);
        }
        match message {
            None => Ok(()),
            Some(message) => Err(rustls::Error::General(message)),
        }
    }
}

impl ServerCertVerifier for RaTlsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.record(self.check(end_entity, now))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client offers TLS 1.3 only; rustls never gets here.
        Err(rustls::Error::General(
            "TLS 1.2 is not used with agents".to_owned(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The key the quote was checked to bind, from the same parser.
        let evidence =
            CertEvidence::from_cert_der(cert).map_err(|e| rustls::Error::General(e.to_string()))?;
        let valid = verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(evidence.spki_der.as_slice()),
            dss,
            &self.provider.signature_verification_algorithms,
        );
        if let Err(e) = &valid {
            // Keep the typed reason, as for the certificate.
            self.record(Err(AgentError::HandshakeSignature(e.to_string())))?;
        }
        valid
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An established channel to the agent.
pub(super) struct Channel {
    /// The TLS stream.
    pub stream: StreamOwned<ClientConnection, TcpStream>,
    /// What the certificate verifier accepted.
    pub accepted: Accepted,
}

/// Connect to `endpoint`, complete the handshake with the RA-TLS verifier
/// (pinned to `pinned_spki` when given) and return the channel.
pub(super) fn open(
    endpoint: &Endpoint,
    trust: &Arc<AgentTrust>,
    pinned_spki: Option<&[u8]>,
    timeout: Duration,
) -> Result<Channel, AgentError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let outcome: Arc<Outcome> = Arc::default();
    let verifier = RaTlsVerifier {
        trust: Arc::clone(trust),
        pinned_spki: pinned_spki.map(<[u8]>::to_vec),
        provider: Arc::clone(&provider),
        outcome: Arc::clone(&outcome),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AgentError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // Every connection presents and checks the certificate afresh.
    config.resumption = Resumption::disabled();
    let server_name = ServerName::try_from(endpoint.host.clone()).map_err(|e| AgentError::Url {
        url: endpoint.authority(),
        problem: format!("not usable as a TLS server name: {e}"),
    })?;
    let connection = ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| AgentError::Tls(e.to_string()))?;

    let socket = connect_tcp(endpoint, timeout)?;
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            // The verifier's typed reason, if it was the one that refused.
            if let Some(Err(reason)) = outcome.lock().ok().and_then(|mut slot| slot.take()) {
                return Err(reason);
            }
            return Err(
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(tls) => AgentError::Tls(tls.to_string()),
                    None => AgentError::Io {
                        context: format!("TLS handshake with {}", endpoint.authority()),
                        error: e,
                    },
                },
            );
        }
    }
    let accepted = match outcome.lock().ok().and_then(|mut slot| slot.take()) {
        Some(Ok(accepted)) => accepted,
        Some(Err(reason)) => return Err(reason),
        None => {
            return Err(AgentError::Tls(
                "the handshake finished without the agent's certificate being checked".to_owned(),
            ))
        }
    };
    Ok(Channel { stream, accepted })
}

/// TCP to the first of the endpoint's addresses that answers, with read and
/// write timeouts set.
fn connect_tcp(endpoint: &Endpoint, timeout: Duration) -> Result<TcpStream, AgentError> {
    let context = |what: &str| format!("{what} {}", endpoint.authority());
    let addresses = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|error| AgentError::Io {
            context: context("resolving"),
            error,
        })?;
    let mut last_error = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(socket) => {
                let configured = socket
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| socket.set_write_timeout(Some(timeout)))
                    .and_then(|()| socket.set_nodelay(true));
                return match configured {
                    Ok(()) => Ok(socket),
                    Err(error) => Err(AgentError::Io {
                        context: context("configuring the connection to"),
                        error,
                    }),
                };
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(AgentError::Io {
        context: context("connecting to"),
        error: last_error.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
        }),
    })
}
