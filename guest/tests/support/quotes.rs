//! Structurally valid TDX quotes for the emulated quote provider.
//!
//! Built with the SDK's own encoder, with zero signatures and a placeholder
//! certificate: they pass `Quote::parse` (which checks structure only) and
//! carry the given REPORTDATA and RTMRs, which is all ee-init checks.

use easyenclave::quote::{
    EnclaveReport, Header, PckCertChain, QuoteBuilder, SignatureData, TdAttributes, TdBody,
    TdReport10, ATT_KEY_TYPE_ECDSA_P256, INTEL_QE_VENDOR_ID, TEE_TYPE_TDX,
};
use easyenclave::rtmr::Measurement;

/// A v4 quote binding `report_data` over `rtmrs`.
pub fn structural_quote(report_data: &[u8; 64], rtmrs: &[Measurement; 4]) -> Vec<u8> {
    let header = Header {
        version: 4,
        att_key_type: ATT_KEY_TYPE_ECDSA_P256,
        tee_type: TEE_TYPE_TDX,
        qe_svn: 0,
        pce_svn: 0,
        qe_vendor_id: INTEL_QE_VENDOR_ID,
        user_data: [0; 20],
    };
    let [rtmr0, rtmr1, rtmr2, rtmr3] = *rtmrs;
    let body = TdBody::Td10(TdReport10 {
        tee_tcb_svn: [0; 16],
        mr_seam: [0; 48],
        mr_signer_seam: [0; 48],
        seam_attributes: [0; 8],
        td_attributes: TdAttributes((1u64 << 28).to_le_bytes()),
        xfam: [0; 8],
        mr_td: [0x11; 48],
        mr_config_id: [0; 48],
        mr_owner: [0; 48],
        mr_owner_config: [0; 48],
        rtmr0,
        rtmr1,
        rtmr2,
        rtmr3,
        report_data: *report_data,
    });
    let qe_report = EnclaveReport {
        cpu_svn: [0; 16],
        misc_select: 0,
        reserved1: [0; 28],
        attributes: [0; 16],
        mr_enclave: [0; 32],
        reserved2: [0; 32],
        mr_signer: [0; 32],
        reserved3: [0; 96],
        isv_prod_id: 0,
        isv_svn: 0,
        reserved4: [0; 60],
        report_data: [0; 64],
    };
    let chain = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".to_vec();
    let signature = SignatureData {
        ecdsa_signature: [0; 64],
        attestation_key: [0; 64],
        qe_report,
        qe_report_signature: [0; 64],
        qe_auth_data: Vec::new(),
        pck_cert_chain: PckCertChain::new(chain).unwrap(),
    };
    QuoteBuilder::new(header, body)
        .unwrap()
        .build(signature)
        .unwrap()
        .to_bytes()
}
