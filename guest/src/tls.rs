//! The agent's TLS identity: an RA-TLS certificate, renewed in the background.
//!
//! Each certificate is for a fresh ECDSA P-256 key that never leaves memory,
//! and carries a quote whose REPORTDATA binds that key
//! ([`easyenclave::ratls::issue`]): a client that verifies the quote knows
//! the TLS session ends inside this measured TD.
//!
//! - **Renewal.** A background thread issues the next certificate once 2/3
//!   of the current one's lifetime has passed, retrying with exponential
//!   back-off when that fails. The resolver swaps the new certificate in
//!   atomically: a handshake sees the old or the new one, never a mix.
//! - **No quote.** Without a TDX provider (a release build off TDX) the
//!   agent serves a self-signed certificate without a quote. RA-TLS clients
//!   refuse it, which is the point; the boot goes on so that `/health` can
//!   say why. A TD whose first quote fails (e.g. the host's quote service is
//!   not up yet) does the same until the renewal thread gets a quote.
//! - **TLS 1.3 only.** Every client is the project's own (rustls), so there
//!   is no legacy client to serve; 1.3 has only forward-secret AEAD suites,
//!   no renegotiation or compression to configure away, and sends the
//!   certificate (with its quote) encrypted.
//! - **No session resumption.** A resumed session skips the certificate, so
//!   every connection gets a full handshake and proves the current attested
//!   key anew; an agent handles few connections, one request each.
//! - ALPN `http/1.1`; no client certificates (callers authenticate inside
//!   the channel, after they verified it).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easyenclave::ratls::{self, Identity, RaTlsError};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use serde::Serialize;

use crate::measured::MeasuredLog;
use crate::say;
use crate::tsm::Backend;

/// The ALPN protocol the agent speaks.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Certificate lifetime and renewal timing.
#[derive(Debug, Clone)]
pub struct CertPolicy {
    /// Lifetime of each certificate.
    pub validity: Duration,
    /// First retry after a failed issue; doubles per failure.
    pub retry_first: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl Default for CertPolicy {
    /// 24 h certificates, renewed after 16 h; retries from 5 s up to 5 min
    /// leave 8 h of attempts before the served certificate expires.
    fn default() -> Self {
        CertPolicy {
            validity: Duration::from_secs(24 * 3600),
            retry_first: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
        }
    }
}

impl CertPolicy {
    /// How long after issuing a certificate its successor is issued: 2/3 of
    /// the lifetime, leaving a third for retries and for clock skew.
    pub fn renew_after(&self) -> Duration {
        self.validity * 2 / 3
    }

    /// The wait before retry number `failures` (1 = after the first failure).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.retry_first
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max)
    }
}

/// What the served certificate proves, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsStatus {
    /// The served certificate carries a quote binding its key (RA-TLS).
    pub attested: bool,
    /// One line: how the certificate is attested, or why it is not.
    pub detail: String,
    /// When the served certificate expires, in Unix seconds.
    pub not_after: u64,
    /// Certificates issued since boot.
    pub issued: u64,
    /// Why the latest renewal attempt failed; `None` once one succeeds.
    pub last_error: Option<String>,
}

/// The TLS identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Building the certificate (key generation, DER, quote) failed.
    #[error("issuing the certificate: {0}")]
    Issue(#[from] RaTlsError),
    /// rustls refused the key or the configuration.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The renewal thread could not be started.
    #[error("starting the certificate renewal thread: {0}")]
    Thread(std::io::Error),
}

/// How `/health` and the console describe a certificate without a quote.
const NO_QUOTE: &str = "self-signed certificate without a quote (RA-TLS clients refuse it)";

/// Where certificates come from.
enum Issuer {
    /// The TD quotes: RA-TLS certificates.
    Attested(Arc<MeasuredLog>),
    /// No TDX provider (`reason`): self-signed, no quote.
    Unattested { reason: String },
}

impl Issuer {
    fn for_log(measured: Arc<MeasuredLog>) -> Issuer {
        match measured.backend() {
            Backend::None => Issuer::Unattested {
                reason: measured.describe_tsm().to_owned(),
            },
            Backend::ConfigfsTsm | Backend::Sim => Issuer::Attested(measured),
        }
    }

    /// A certificate for a fresh key. The quote comes with the registers
    /// and event log checked under the log's lock, so a TD whose RTMR3 no
    /// longer replays from its log gets no new certificate.
    fn issue(&self, validity: Duration) -> Result<Identity, RaTlsError> {
        match self {
            Issuer::Attested(measured) => ratls::issue(validity, |report_data| {
                measured
                    .evidence(report_data)
                    .map(|evidence| evidence.quote)
                    .map_err(|e| e.to_string())
            }),
            Issuer::Unattested { .. } => ratls::issue_unattested(validity),
        }
    }

    /// The status of `identity`, the `issued`-th certificate, just issued here.
    fn status_of(&self, identity: &Identity, issued: u64) -> TlsStatus {
        let (attested, detail) = match self {
            Issuer::Attested(measured) => (
                true,
                format!(
                    "RA-TLS: the certificate carries a {} quote binding its key",
                    measured.backend()
                ),
            ),
            Issuer::Unattested { reason } => (false, format!("{NO_QUOTE}: {reason}")),
        };
        TlsStatus {
            attested,
            detail,
            not_after: unix_secs(identity.not_after),
            issued,
            last_error: None,
        }
    }
}

/// The certificate presented to every new handshake; swapped on renewal.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    fn get(&self) -> Arc<CertifiedKey> {
        // Swapping an Arc cannot leave it half-written: a poisoned lock is fine.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The agent's TLS server configuration with its self-renewing certificate.
#[derive(Clone)]
pub struct AgentTls {
    config: Arc<ServerConfig>,
    current: Arc<CurrentCert>,
    status: Arc<Mutex<TlsStatus>>,
}

impl fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTls")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl AgentTls {
    /// Issue the first certificate and start the renewal thread. RA-TLS when
    /// `measured` can quote; otherwise (no TDX provider, or the first quote
    /// failed) a self-signed certificate without a quote, and for a TD the
    /// renewal thread keeps trying to replace it with an attested one.
    pub fn start(measured: Arc<MeasuredLog>, policy: CertPolicy) -> Result<AgentTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let issuer = Issuer::for_log(measured);
        let (first, status, failures) = match issuer.issue(policy.validity) {
            Ok(identity) => {
                let status = issuer.status_of(&identity, 1);
                (identity, status, 0)
            }
            Err(e) if matches!(issuer, Issuer::Attested(_)) => {
                say!("RA-TLS certificate failed: {e}; serving a {NO_QUOTE} until a quote succeeds");
                let identity = ratls::issue_unattested(policy.validity)?;
                let status = TlsStatus {
                    attested: false,
                    detail: format!("{NO_QUOTE}: quoting failed: {e}"),
                    not_after: unix_secs(identity.not_after),
                    issued: 1,
                    last_error: Some(e.to_string()),
                };
                (identity, status, 1)
            }
            // With no quote involved, only the RNG or the encoder can fail.
            Err(e) => return Err(e.into()),
        };
        let status = Arc::new(Mutex::new(status));
        let current = Arc::new(CurrentCert(RwLock::new(certified_key(first, &provider)?)));
        let config = Arc::new(server_config(provider.clone(), current.clone())?);
        let renewal = Renewal {
            issuer,
            policy,
            provider,
            current: current.clone(),
            status: status.clone(),
        };
        std::thread::Builder::new()
            .name("tls-renew".into())
            .spawn(move || renewal.run(failures))
            .map_err(TlsError::Thread)?;
        Ok(AgentTls {
            config,
            current,
            status,
        })
    }

    /// The rustls configuration to serve with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// What the served certificate proves, and its renewal state.
    pub fn status(&self) -> TlsStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The DER certificate served right now.
    pub fn current_cert_der(&self) -> Vec<u8> {
        let key = self.current.get();
        key.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }
}

/// TLS 1.3 only, no client auth, ALPN http/1.1, no resumption; the
/// certificate comes from `current` at each handshake.
fn server_config(
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(current);
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The identity as rustls serves it; rustls checks that key and certificate match.
fn certified_key(
    identity: Identity,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8_der));
    let chain = vec![CertificateDer::from(identity.cert_der)];
    Ok(Arc::new(CertifiedKey::from_der(chain, key, provider)?))
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The renewal thread's state.
struct Renewal {
    issuer: Issuer,
    policy: CertPolicy,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    status: Arc<Mutex<TlsStatus>>,
}

impl Renewal {
    /// Forever: wait, issue, swap. `failures` counts the failed attempts
    /// since the last success (1 when the boot fell back to no quote).
    fn run(self, mut failures: u32) {
        loop {
            std::thread::sleep(match failures {
                0 => self.policy.renew_after(),
                n => self.policy.retry_delay(n),
            });
            match self.renew() {
                Ok(status) => {
                    failures = 0;
                    say!(
                        "TLS certificate renewed ({}), valid until {} (Unix time)",
                        if status.attested { "RA-TLS" } else { NO_QUOTE },
                        status.not_after
                    );
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let mut status = self.lock_status();
                    status.last_error = Some(e.to_string());
                    let left = status
                        .not_after
                        .saturating_sub(unix_secs(SystemTime::now()));
                    drop(status);
                    say!(
                        "TLS certificate renewal failed (attempt {failures}): {e}; retrying in {:?}; the served certificate {}",
                        self.policy.retry_delay(failures),
                        if left == 0 { "has expired".to_owned() } else { format!("expires in {left} s") }
                    );
                }
            }
        }
    }

    fn lock_status(&self) -> MutexGuard<'_, TlsStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issue the next certificate and serve it; returns the new status.
    fn renew(&self) -> Result<TlsStatus, TlsError> {
        let identity = self.issuer.issue(self.policy.validity)?;
        let issued = self.lock_status().issued + 1;
        let status = self.issuer.status_of(&identity, issued);
        self.current.set(certified_key(identity, &self.provider)?);
        *self.lock_status() = status.clone();
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_and_backoff_doubles_to_the_cap() {
        let policy = CertPolicy::default();
        assert_eq!(policy.renew_after(), Duration::from_secs(16 * 3600));
        let delays: Vec<u64> = (1..=9).map(|n| policy.retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        // No overflow however long it keeps failing.
        assert_eq!(policy.retry_delay(u32::MAX), Duration::from_secs(300));
    }
}
