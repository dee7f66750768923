//! A software trust domain on the simulated platform: measurement registers,
//! RTMR extension, and v4 TDX quotes signed the way Intel's TD quoting
//! enclave signs them.
//!
//! A quote is the TD 1.0 report body signed by the QE's attestation key, plus
//! certification data type 6: the QE report (whose report data binds the
//! attestation key), its signature by the PCK leaf key, the QE auth data, and
//! certification data type 5 with the PEM PCK chain. The byte layout comes
//! from [`crate::quote`]; this module only fills in the values. No security:
//! see the [module docs](super).

use crate::quote::{
    qe_report_data_hash, EnclaveReport, Header, PckCertChain, QuoteBuilder, SignatureData,
    TdAttributes, TdBody, TdReport10, ATT_KEY_TYPE_ECDSA_P256, INTEL_QE_VENDOR_ID, TEE_TYPE_TDX,
};
use crate::rtmr::{self, Measurement, RTMR_RESET};

use super::pki::{sign_raw, SimPki};
use super::tcb;
use super::SimError;

/// TD attribute bit 0, DEBUG: the host can read and write the TD. DCAP
/// verifiers reject it unless told to allow debug TDs.
pub const TD_ATTRIBUTE_DEBUG: u64 = 1;
/// TD attributes of a production TD: SEPT_VE_DISABLE (bit 28) only.
pub const PRODUCTION_TD_ATTRIBUTES: u64 = 1 << 28;
/// XFAM of Intel's sample TDX quote (x87, SSE, AVX, AVX-512, PT, AMX state).
pub const DEFAULT_XFAM: u64 = 0x0006_02e7;
/// MRTD of a [`SimTdConfig::default`] TD: SHA-384 of this label, standing in
/// for a firmware measurement.
pub const DEFAULT_MRTD_LABEL: &[u8] = b"easyenclave-sim/v1/default-mrtd";
/// QE authentication data, as Intel's TD QE writes it (bytes 0..32).
const QE_AUTH_DATA: [u8; 32] = {
    let mut data = [0u8; 32];
    let mut i = 0;
    while i < data.len() {
        data[i] = i as u8;
        i += 1;
    }
    data
};

/// Launch-time contents of a simulated TD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimTdConfig {
    /// MRTD: measurement of the initial TD contents (the firmware).
    pub mr_td: Measurement,
    /// MRCONFIGID: host-chosen, measured at TD creation.
    pub mr_config_id: Measurement,
    /// MROWNER: host-chosen owner ID.
    pub mr_owner: Measurement,
    /// MROWNERCONFIG: host-chosen owner configuration.
    pub mr_owner_config: Measurement,
    /// RTMR0..RTMR3 at launch (as firmware and kernel left them).
    pub rtmrs: [Measurement; 4],
    /// TD attributes (see [`PRODUCTION_TD_ATTRIBUTES`], [`TD_ATTRIBUTE_DEBUG`]).
    pub td_attributes: u64,
    /// XFAM: extended CPU state the TD may use.
    pub xfam: u64,
    /// TEE_TCB_SVN the TDX module reports; `None` for the SVNs of the
    /// platform's TCB level ([`SimPki::platform_svns`]). Set it lower than
    /// the platform to get an out-of-date TCB status.
    pub tee_tcb_svn: Option<[u8; 16]>,
}

impl Default for SimTdConfig {
    /// A production-like TD: SEPT_VE_DISABLE only, the XFAM of Intel's
    /// sample quote, zero host-chosen IDs, RTMRs at reset.
    fn default() -> Self {
        Self {
            mr_td: rtmr::sha384(DEFAULT_MRTD_LABEL),
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmrs: [RTMR_RESET; 4],
            td_attributes: PRODUCTION_TD_ATTRIBUTES,
            xfam: DEFAULT_XFAM,
            tee_tcb_svn: None,
        }
    }
}

impl SimTdConfig {
    /// The same TD with the DEBUG attribute set.
    pub fn with_debug(mut self) -> Self {
        self.td_attributes |= TD_ATTRIBUTE_DEBUG;
        self
    }
}

/// A running simulated TD: its registers and the platform that quotes for it.
#[derive(Clone, Debug)]
pub struct SimTd {
    platform: SimPki,
    config: SimTdConfig,
    rtmrs: [Measurement; 4],
    tee_tcb_svn: [u8; 16],
}

impl SimTd {
    /// Launch a TD with `config` on `platform`.
    pub fn new(platform: &SimPki, config: SimTdConfig) -> Self {
        Self {
            tee_tcb_svn: config
                .tee_tcb_svn
                .unwrap_or(platform.platform_svns().tee_tcb_svn),
            rtmrs: config.rtmrs,
            platform: platform.clone(),
            config,
        }
    }

    /// The launch configuration.
    pub fn config(&self) -> &SimTdConfig {
        &self.config
    }

    /// RTMR0..RTMR3 now.
    pub fn rtmrs(&self) -> [Measurement; 4] {
        self.rtmrs
    }

    /// Extend RTMR `index` with `digest` (TDG.MR.RTMR.EXTEND) and return its
    /// new value. Only RTMR0..RTMR3 exist.
    pub fn extend_rtmr(
        &mut self,
        index: usize,
        digest: &Measurement,
    ) -> Result<Measurement, SimError> {
        let register = self
            .rtmrs
            .get_mut(index)
            .ok_or(SimError::RtmrIndex { index })?;
        *register = rtmr::extend(register, digest);
        Ok(*register)
    }

    /// The TD report (TDG.MR.REPORT) with `report_data`, as a quote body.
    pub fn td_report(&self, report_data: &[u8; 64]) -> TdReport10 {
        let [rtmr0, rtmr1, rtmr2, rtmr3] = self.rtmrs;
        TdReport10 {
            tee_tcb_svn: self.tee_tcb_svn,
            mr_seam: tcb::TDX_MODULE_MRSEAM,
            mr_signer_seam: tcb::TDX_MODULE_MRSIGNER,
            seam_attributes: tcb::TDX_MODULE_ATTRIBUTES,
            td_attributes: TdAttributes(self.config.td_attributes.to_le_bytes()),
            xfam: self.config.xfam.to_le_bytes(),
            mr_td: self.config.mr_td,
            mr_config_id: self.config.mr_config_id,
            mr_owner: self.config.mr_owner,
            mr_owner_config: self.config.mr_owner_config,
            rtmr0,
            rtmr1,
            rtmr2,
            rtmr3,
            report_data: *report_data,
        }
    }

    /// A v4 TDX quote over the current registers and `report_data`.
    pub fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, SimError> {
        let mut user_data = [0u8; 20];
        user_data[..16].copy_from_slice(&self.platform.qe_id());
        let header = Header {
            version: 4,
            att_key_type: ATT_KEY_TYPE_ECDSA_P256,
            tee_type: TEE_TYPE_TDX,
            // Intel's TD QE leaves both SVN fields of a v4 TDX header zero.
            qe_svn: 0,
            pce_svn: 0,
            qe_vendor_id: INTEL_QE_VENDOR_ID,
            user_data,
        };
        let builder = QuoteBuilder::new(header, TdBody::Td10(self.td_report(report_data)))?;

        let attestation_key = self.platform.attestation_key();
        let ecdsa_signature = sign_raw(attestation_key, &builder.signed_bytes());
        let mut attestation_public_key = [0u8; 64];
        let point = attestation_key.verifying_key().to_encoded_point(false);
        // Uncompressed SEC1 point: 0x04 || x || y; the quote carries x || y.
        attestation_public_key.copy_from_slice(point.as_bytes().get(1..65).ok_or_else(|| {
            SimError::InvalidConfig("attestation key is not an uncompressed P-256 point".into())
        })?);

        let qe_report = self.qe_report(&attestation_public_key);
        let qe_report_signature = self.platform.sign_qe_report(&qe_report.to_bytes());
        // Intel's QE NUL-terminates the PEM chain.
        let mut chain = self.platform.pck_chain_pem().into_bytes();
        chain.push(0);

        let signature = SignatureData {
            ecdsa_signature,
            attestation_key: attestation_public_key,
            qe_report,
            qe_report_signature,
            qe_auth_data: QE_AUTH_DATA.to_vec(),
            pck_cert_chain: PckCertChain::new(chain)?,
        };
        Ok(builder.build(signature)?.to_bytes())
    }

    /// The QE's report binding `attestation_key`: report_data[0..32] =
    /// SHA-256(attestation key || QE auth data), the rest zero; identity
    /// fields as the sim QE identity expects.
    fn qe_report(&self, attestation_key: &[u8; 64]) -> EnclaveReport {
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&qe_report_data_hash(attestation_key, &QE_AUTH_DATA));
        EnclaveReport {
            cpu_svn: self.platform.platform_svns().cpu_svn,
            misc_select: tcb::QE_MISCSELECT,
            reserved1: [0; 28],
            attributes: tcb::QE_ATTRIBUTES,
            mr_enclave: tcb::QE_MRENCLAVE,
            reserved2: [0; 32],
            mr_signer: tcb::QE_MRSIGNER,
            reserved3: [0; 96],
            isv_prod_id: tcb::QE_ISVPRODID,
            isv_svn: tcb::QE_ISVSVN,
            reserved4: [0; 60],
            report_data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::Quote;

    fn td() -> SimTd {
        let pki = SimPki::from_seed(b"td unit test").unwrap();
        SimTd::new(&pki, SimTdConfig::default())
    }

    #[test]
    fn extend_rtmr_matches_rtmr_extend_and_rejects_index_4() {
        let mut td = td();
        let digest = rtmr::sha384(b"event");
        let value = td.extend_rtmr(3, &digest).unwrap();
        assert_eq!(value, rtmr::replay([&digest]));
        assert_eq!(td.rtmrs()[3], value);
        assert_eq!(td.rtmrs()[..3], [RTMR_RESET; 3]);
        let err = td.extend_rtmr(4, &digest).unwrap_err();
        assert!(matches!(err, SimError::RtmrIndex { index: 4 }), "{err}");
    }

    #[test]
    fn quote_parses_and_carries_the_td_state() {
        let mut td = td();
        td.extend_rtmr(2, &rtmr::sha384(b"cmdline")).unwrap();
        let report_data = [0x5a; 64];
        let quote = Quote::parse(&td.quote(&report_data).unwrap()).unwrap();
        let body = quote.td_report();
        assert_eq!(body.report_data, report_data);
        assert_eq!(body.rtmrs(), td.rtmrs());
        assert_eq!(body.mr_td, rtmr::sha384(DEFAULT_MRTD_LABEL));
        assert_eq!(body.td_attributes.value(), 0x1000_0000);
        assert!(!body.td_attributes.debug());
        assert_eq!(quote.header().version, 4);
        assert_eq!(quote.header().tee_type, 0x81);
        assert!(quote.signature().qe_binding_matches());
        assert_eq!(
            quote.signature().qe_auth_data,
            (0u8..32).collect::<Vec<_>>()
        );
        assert_eq!(quote.signature().pck_cert_chain.certificates().len(), 3);
    }

    #[test]
    fn debug_config_sets_bit_0_only() {
        let config = SimTdConfig::default().with_debug();
        assert_eq!(config.td_attributes, 0x1000_0001);
    }
}
