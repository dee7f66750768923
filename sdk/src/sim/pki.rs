//! The simulated Intel-shaped PKI and the collateral it signs.
//!
//! Mirrors Intel's SGX/TDX provisioning PKI:
//!
//! ```text
//! SIM SGX Root CA (self-signed, pathlen 1)        signs the root CA CRL
//! ├── SIM SGX PCK Platform CA (pathlen 0)         signs the PCK CRL
//! │   └── SIM SGX PCK Certificate (SGX extension) signs QE reports
//! └── SIM SGX TCB Signing                         signs TCB info, QE identity
//! ```
//!
//! plus the platform's quoting-enclave attestation key, which signs TD quotes
//! (see [`super::td`]). All keys, serial numbers and identifiers derive from
//! the seed, so one seed always yields the same bytes. No security: see the
//! [module docs](super).

use dcap_qvl::QuoteCollateralV3;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use x509_cert::name::Name;

use super::tcb::{self, PlatformTcbLevel, SimTcbLevels, TcbSvns};
use super::x509::{self, CertKind, CertSpec, SgxExtension};
use super::{derive_bytes, derive_signing_key, SimError};

/// Subject CN of the simulated root CA.
pub const ROOT_CA_CN: &str = "Easy Enclave SIM SGX Root CA";
/// Subject CN of the simulated PCK Platform CA. Contains "Platform", as
/// Intel's does, so tools classify the PCK leaf as Platform-CA issued.
pub const PLATFORM_CA_CN: &str = "Easy Enclave SIM SGX PCK Platform CA";
/// Subject CN of the simulated PCK leaf certificate.
pub const PCK_CN: &str = "Easy Enclave SIM SGX PCK Certificate";
/// Subject CN of the simulated TCB signing certificate.
pub const TCB_SIGNING_CN: &str = "Easy Enclave SIM SGX TCB Signing";

/// CRL distribution point of certificates issued by the root (`.invalid`:
/// never resolves).
const ROOT_CA_CRL_URI: &str = "https://easyenclave-sim.invalid/sgx/certification/v4/rootcacrl";
/// CRL distribution point of certificates issued by the Platform CA.
const PCK_CRL_URI: &str =
    "https://easyenclave-sim.invalid/sgx/certification/v4/pckcrl?ca=platform&encoding=der";

/// FMSPC of the simulated platform by default ("EE51" + zeros).
pub const SIM_FMSPC: [u8; 6] = [0xEE, 0x51, 0x00, 0x00, 0x00, 0x00];
/// PCE-ID of the simulated platform (Intel's platforms: 0000).
pub const SIM_PCE_ID: [u8; 2] = [0, 0];
/// SGX type written to the PCK certificate: 1 = Scalable, as on TDX platforms.
const SGX_TYPE_SCALABLE: u8 = 1;

/// Default certificate validity start: 2020-01-01T00:00:00Z.
pub const DEFAULT_CERT_NOT_BEFORE: u64 = 1_577_836_800;
/// Default certificate validity end: 2099-12-31T23:59:59Z.
pub const DEFAULT_CERT_NOT_AFTER: u64 = 4_102_444_799;

/// The Configuration flags of a Platform-CA PCK certificate
/// (OID 1.2.840.113741.1.13.1.7). Verifier policies may reject `true` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PckConfiguration {
    /// The platform can be extended with additional packages.
    pub dynamic_platform: bool,
    /// Platform root keys are cached by the SGX registration backend.
    pub cached_keys: bool,
    /// Simultaneous multithreading is enabled.
    pub smt_enabled: bool,
}

impl Default for PckConfiguration {
    /// All `true`, as in Intel's sample TDX platform certificate.
    fn default() -> Self {
        Self {
            dynamic_platform: true,
            cached_keys: true,
            smt_enabled: true,
        }
    }
}

/// What the simulated platform looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimPkiConfig {
    /// FMSPC in the PCK certificate and the TCB info.
    pub fmspc: [u8; 6],
    /// The TCB levels the TCB info publishes.
    pub tcb_levels: SimTcbLevels,
    /// The level whose CPUSVN/PCESVN the PCK certificate carries (and whose
    /// TEE_TCB_SVN a [`super::td::SimTd`] reports by default).
    pub platform_level: PlatformTcbLevel,
    /// Configuration flags in the PCK certificate.
    pub pck_configuration: PckConfiguration,
    /// Validity start of every certificate (unix seconds).
    pub cert_not_before: u64,
    /// Validity end of every certificate (unix seconds).
    pub cert_not_after: u64,
}

impl Default for SimPkiConfig {
    fn default() -> Self {
        Self {
            fmspc: SIM_FMSPC,
            tcb_levels: SimTcbLevels::default(),
            platform_level: PlatformTcbLevel::UpToDate,
            pck_configuration: PckConfiguration::default(),
            cert_not_before: DEFAULT_CERT_NOT_BEFORE,
            cert_not_after: DEFAULT_CERT_NOT_AFTER,
        }
    }
}

/// Derivation labels: one per key or identifier (see [`super::derive_bytes`]).
mod label {
    pub const ROOT_KEY: &str = "easyenclave-sim/v1/root-ca/key";
    pub const ROOT_SERIAL: &str = "easyenclave-sim/v1/root-ca/serial";
    pub const PLATFORM_CA_KEY: &str = "easyenclave-sim/v1/pck-platform-ca/key";
    pub const PLATFORM_CA_SERIAL: &str = "easyenclave-sim/v1/pck-platform-ca/serial";
    pub const PCK_KEY: &str = "easyenclave-sim/v1/pck/key";
    pub const PCK_SERIAL: &str = "easyenclave-sim/v1/pck/serial";
    pub const PCK_PPID: &str = "easyenclave-sim/v1/pck/ppid";
    pub const PCK_PLATFORM_INSTANCE_ID: &str = "easyenclave-sim/v1/pck/platform-instance-id";
    pub const TCB_SIGNING_KEY: &str = "easyenclave-sim/v1/tcb-signing/key";
    pub const TCB_SIGNING_SERIAL: &str = "easyenclave-sim/v1/tcb-signing/serial";
    pub const QE_ATTESTATION_KEY: &str = "easyenclave-sim/v1/td-qe/attestation-key";
    pub const QE_ID: &str = "easyenclave-sim/v1/td-qe/qe-id";
}

/// A positive 20-byte certificate serial number (Intel's are 20 bytes too).
fn derive_serial(seed: &[u8], label: &str) -> [u8; 20] {
    let bytes = derive_bytes(seed, label);
    let mut serial = [0u8; 20];
    serial.copy_from_slice(&bytes[..20]);
    // Positive and without a leading zero octet, so it encodes in 20 bytes.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

fn derive_16(seed: &[u8], label: &str) -> [u8; 16] {
    let bytes = derive_bytes(seed, label);
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

/// The simulated platform's PKI, keys and collateral signer.
#[derive(Clone)]
pub struct SimPki {
    config: SimPkiConfig,
    root_key: SigningKey,
    platform_ca_key: SigningKey,
    pck_key: SigningKey,
    tcb_signing_key: SigningKey,
    attestation_key: SigningKey,
    qe_id: [u8; 16],
    root_name: Name,
    platform_ca_name: Name,
    root_der: Vec<u8>,
    platform_ca_der: Vec<u8>,
    pck_der: Vec<u8>,
    tcb_signing_der: Vec<u8>,
}

impl std::fmt::Debug for SimPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are left out; the root's fingerprint identifies the instance.
        f.debug_struct("SimPki")
            .field("config", &self.config)
            .field(
                "root_key_id",
                &hex::encode(x509::key_id(self.root_key.verifying_key())),
            )
            .finish_non_exhaustive()
    }
}

impl SimPki {
    /// The default platform (up-to-date TCB, [`SIM_FMSPC`]) for `seed`.
    pub fn from_seed(seed: &[u8]) -> Result<Self, SimError> {
        Self::with_config(seed, SimPkiConfig::default())
    }

    /// The platform described by `config` for `seed`.
    pub fn with_config(seed: &[u8], config: SimPkiConfig) -> Result<Self, SimError> {
        config.tcb_levels.validate()?;
        if config.cert_not_before > config.cert_not_after {
            return Err(SimError::InvalidWindow {
                what: "certificate validity",
                start: config.cert_not_before,
                end: config.cert_not_after,
            });
        }
        let root_key = derive_signing_key(seed, label::ROOT_KEY)?;
        let platform_ca_key = derive_signing_key(seed, label::PLATFORM_CA_KEY)?;
        let pck_key = derive_signing_key(seed, label::PCK_KEY)?;
        let tcb_signing_key = derive_signing_key(seed, label::TCB_SIGNING_KEY)?;
        let attestation_key = derive_signing_key(seed, label::QE_ATTESTATION_KEY)?;

        let root_name = x509::sim_name(ROOT_CA_CN)?;
        let platform_ca_name = x509::sim_name(PLATFORM_CA_CN)?;
        let pck_name = x509::sim_name(PCK_CN)?;
        let tcb_signing_name = x509::sim_name(TCB_SIGNING_CN)?;

        let validity = (config.cert_not_before, config.cert_not_after);
        let spec =
            |serial_label, issuer, subject, subject_key, crl_uri, kind, sgx_extension| CertSpec {
                serial: derive_serial(seed, serial_label),
                issuer,
                subject,
                subject_key,
                not_before: validity.0,
                not_after: validity.1,
                crl_uri,
                kind,
                sgx_extension,
            };

        let root_der = x509::issue_certificate(
            &spec(
                label::ROOT_SERIAL,
                &root_name,
                &root_name,
                root_key.verifying_key(),
                ROOT_CA_CRL_URI,
                CertKind::Ca { path_len: 1 },
                None,
            ),
            &root_key,
        )?;
        let platform_ca_der = x509::issue_certificate(
            &spec(
                label::PLATFORM_CA_SERIAL,
                &root_name,
                &platform_ca_name,
                platform_ca_key.verifying_key(),
                ROOT_CA_CRL_URI,
                CertKind::Ca { path_len: 0 },
                None,
            ),
            &root_key,
        )?;
        let platform_svns = config.tcb_levels.svns(config.platform_level);
        let sgx_extension = SgxExtension {
            ppid: derive_16(seed, label::PCK_PPID),
            cpu_svn: platform_svns.cpu_svn,
            pce_svn: platform_svns.pce_svn,
            pce_id: SIM_PCE_ID,
            fmspc: config.fmspc,
            sgx_type: SGX_TYPE_SCALABLE,
            platform_instance_id: derive_16(seed, label::PCK_PLATFORM_INSTANCE_ID),
            dynamic_platform: config.pck_configuration.dynamic_platform,
            cached_keys: config.pck_configuration.cached_keys,
            smt_enabled: config.pck_configuration.smt_enabled,
        }
        .to_der()?;
        let pck_der = x509::issue_certificate(
            &spec(
                label::PCK_SERIAL,
                &platform_ca_name,
                &pck_name,
                pck_key.verifying_key(),
                PCK_CRL_URI,
                CertKind::EndEntity,
                Some(&sgx_extension),
            ),
            &platform_ca_key,
        )?;
        let tcb_signing_der = x509::issue_certificate(
            &spec(
                label::TCB_SIGNING_SERIAL,
                &root_name,
                &tcb_signing_name,
                tcb_signing_key.verifying_key(),
                ROOT_CA_CRL_URI,
                CertKind::EndEntity,
                None,
            ),
            &root_key,
        )?;

        Ok(Self {
            qe_id: derive_16(seed, label::QE_ID),
            config,
            root_key,
            platform_ca_key,
            pck_key,
            tcb_signing_key,
            attestation_key,
            root_name,
            platform_ca_name,
            root_der,
            platform_ca_der,
            pck_der,
            tcb_signing_der,
        })
    }

    /// The configuration this platform was built from.
    pub fn config(&self) -> &SimPkiConfig {
        &self.config
    }

    /// The SVNs of the TCB level the platform is at.
    pub fn platform_svns(&self) -> &TcbSvns {
        self.config.tcb_levels.svns(self.config.platform_level)
    }

    /// DER of the self-signed simulated root CA: the trust anchor to hand a
    /// verifier (`dcap_qvl::verify::QuoteVerifier::new(root)`) explicitly.
    pub fn root_ca_der(&self) -> &[u8] {
        &self.root_der
    }

    /// DER of the PCK Platform CA certificate.
    pub fn platform_ca_der(&self) -> &[u8] {
        &self.platform_ca_der
    }

    /// DER of the PCK leaf certificate (with the SGX extension).
    pub fn pck_leaf_der(&self) -> &[u8] {
        &self.pck_der
    }

    /// DER of the TCB signing certificate.
    pub fn tcb_signing_der(&self) -> &[u8] {
        &self.tcb_signing_der
    }

    /// The PCK certificate chain as quotes carry it: PEM of the leaf, the
    /// Platform CA and the root, in that order.
    pub fn pck_chain_pem(&self) -> String {
        [&self.pck_der, &self.platform_ca_der, &self.root_der]
            .into_iter()
            .map(|der| x509::pem_certificate(der))
            .collect()
    }

    /// PEM of the TCB signing certificate and the root (the issuer chain of
    /// both TCB info and QE identity).
    fn tcb_signing_chain_pem(&self) -> String {
        x509::pem_certificate(&self.tcb_signing_der) + &x509::pem_certificate(&self.root_der)
    }

    /// PEM of the Platform CA and the root (the issuer chain of the PCK CRL).
    fn pck_crl_issuer_chain_pem(&self) -> String {
        x509::pem_certificate(&self.platform_ca_der) + &x509::pem_certificate(&self.root_der)
    }

    /// Collateral for this platform's quotes, as a PCCS would serve it: both
    /// CRLs (thisUpdate `issue_time_unix`, nextUpdate `next_update_unix`) and
    /// the TCB info and QE identity (issueDate/nextUpdate the same), signed.
    ///
    /// `pck_certificate_chain` is left empty: verifiers take the chain from
    /// the quote, as for real type-5 quotes.
    pub fn collateral(
        &self,
        issue_time_unix: u64,
        next_update_unix: u64,
    ) -> Result<QuoteCollateralV3, SimError> {
        if issue_time_unix > next_update_unix {
            return Err(SimError::InvalidWindow {
                what: "collateral validity",
                start: issue_time_unix,
                end: next_update_unix,
            });
        }
        let root_ca_crl = x509::issue_crl(
            &self.root_name,
            &self.root_key,
            issue_time_unix,
            next_update_unix,
        )?;
        let pck_crl = x509::issue_crl(
            &self.platform_ca_name,
            &self.platform_ca_key,
            issue_time_unix,
            next_update_unix,
        )?;
        let tcb_info = tcb::tcb_info_json(
            &self.config.tcb_levels,
            &self.config.fmspc,
            &SIM_PCE_ID,
            issue_time_unix,
            next_update_unix,
        )?;
        let qe_identity = tcb::qe_identity_json(issue_time_unix, next_update_unix)?;
        let tcb_signing_chain = self.tcb_signing_chain_pem();
        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain_pem(),
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain: tcb_signing_chain.clone(),
            tcb_info_signature: raw_signature(&self.tcb_signing_key, tcb_info.as_bytes()),
            tcb_info,
            qe_identity_issuer_chain: tcb_signing_chain,
            qe_identity_signature: raw_signature(&self.tcb_signing_key, qe_identity.as_bytes()),
            qe_identity,
            pck_certificate_chain: None,
        })
    }

    /// PCK leaf signature (raw r || s) over a QE report, as the PCE signs it.
    pub(super) fn sign_qe_report(&self, qe_report: &[u8]) -> [u8; 64] {
        sign_raw(&self.pck_key, qe_report)
    }

    /// The quoting enclave's attestation key.
    pub(super) fn attestation_key(&self) -> &SigningKey {
        &self.attestation_key
    }

    /// The QE ID that quote headers carry in `user_data[0..16]`.
    pub(super) fn qe_id(&self) -> [u8; 16] {
        self.qe_id
    }
}

/// ECDSA P-256/SHA-256 signature as raw r || s (Intel's encoding in quotes
/// and collateral).
pub(super) fn sign_raw(key: &SigningKey, message: &[u8]) -> [u8; 64] {
    let signature: Signature = key.sign(message);
    signature.to_bytes().into()
}

fn raw_signature(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    sign_raw(key, message).to_vec()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn pki() -> SimPki {
        SimPki::from_seed(b"pki unit test").unwrap()
    }

    #[test]
    fn pck_chain_pem_is_leaf_platform_ca_root() {
        let pki = pki();
        let pem = pki.pck_chain_pem();
        let ders: Vec<Vec<u8>> = pem
            .split("-----END CERTIFICATE-----")
            .filter_map(|block| block.split("-----BEGIN CERTIFICATE-----\n").nth(1))
            .map(|body| {
                base64::engine::general_purpose::STANDARD
                    .decode(body.replace('\n', ""))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            ders,
            [pki.pck_leaf_der(), pki.platform_ca_der(), pki.root_ca_der()]
        );
        assert!(pem
            .lines()
            .all(|line| line.len() <= 64 || line.starts_with("-----")));
    }

    #[test]
    fn inverted_windows_are_rejected() {
        let err = pki().collateral(10, 9).unwrap_err();
        assert!(matches!(err, SimError::InvalidWindow { .. }), "{err}");
        let config = SimPkiConfig {
            cert_not_before: 2,
            cert_not_after: 1,
            ..SimPkiConfig::default()
        };
        let err = SimPki::with_config(b"s", config).unwrap_err();
        assert!(matches!(err, SimError::InvalidWindow { .. }), "{err}");
    }

    #[test]
    fn times_past_9999_are_rejected() {
        let err = pki().collateral(0, u64::MAX).unwrap_err();
        assert!(matches!(err, SimError::TimeOutOfRange { .. }), "{err}");
    }

    #[test]
    fn serials_are_positive_20_byte_integers() {
        for label in [label::ROOT_SERIAL, label::PCK_SERIAL] {
            let serial = derive_serial(b"seed", label);
            assert!((0x01..=0x7f).contains(&serial[0]), "{serial:02x?}");
        }
    }
}
