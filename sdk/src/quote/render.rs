//! Human-readable rendering of a quote (`ee quote inspect` without --json).

use std::fmt::{self, Display, Formatter, Write as _};

use super::{
    EnclaveReport, Header, Quote, SignatureData, TdBody, TdReport10, ATT_KEY_TYPE_ECDSA_P256,
    INTEL_QE_VENDOR_ID, TEE_TYPE_TDX,
};

/// Width of the label column.
const LABEL: usize = 28;

fn line(f: &mut Formatter<'_>, indent: usize, label: &str, value: impl Display) -> fmt::Result {
    let pad = " ".repeat(indent);
    writeln!(
        f,
        "{pad}{label:<width$} {value}",
        width = LABEL.saturating_sub(indent)
    )
}

fn hex_line(f: &mut Formatter<'_>, indent: usize, label: &str, bytes: &[u8]) -> fmt::Result {
    line(f, indent, label, hex::encode(bytes))
}

impl Quote {
    /// Multi-line text showing every field; byte fields in hex, the PCK
    /// chain summarised (its PEM is in the JSON form).
    pub fn render_text(&self) -> String {
        self.to_string()
    }
}

impl Display for Quote {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let body = self.body();
        writeln!(
            f,
            "TDX quote v{} with a {} report body, {} bytes",
            self.header().version,
            body.name(),
            self.encoded_len()
        )?;
        render_header(f, self.header())?;
        writeln!(
            f,
            "TD report ({}, v5 body type {})",
            body.name(),
            body.body_type()
        )?;
        render_td10(f, body.td10())?;
        render_extras(f, body)?;
        render_signature(f, self.signature())
    }
}

fn render_header(f: &mut Formatter<'_>, h: &Header) -> fmt::Result {
    writeln!(f, "Header")?;
    line(f, 2, "version", h.version)?;
    let key = if h.att_key_type == ATT_KEY_TYPE_ECDSA_P256 {
        " (ECDSA-256 with P-256)"
    } else {
        ""
    };
    line(
        f,
        2,
        "att_key_type",
        format_args!("{}{key}", h.att_key_type),
    )?;
    let tee = if h.tee_type == TEE_TYPE_TDX {
        " (TDX)"
    } else {
        ""
    };
    line(f, 2, "tee_type", format_args!("0x{:x}{tee}", h.tee_type))?;
    line(f, 2, "qe_svn", h.qe_svn)?;
    line(f, 2, "pce_svn", h.pce_svn)?;
    let vendor = if h.qe_vendor_id == INTEL_QE_VENDOR_ID {
        " (Intel)"
    } else {
        ""
    };
    line(
        f,
        2,
        "qe_vendor_id",
        format_args!("{}{vendor}", hex::encode(h.qe_vendor_id)),
    )?;
    hex_line(f, 2, "user_data", &h.user_data)
}

fn render_td10(f: &mut Formatter<'_>, r: &TdReport10) -> fmt::Result {
    hex_line(f, 2, "tee_tcb_svn", &r.tee_tcb_svn)?;
    hex_line(f, 2, "mr_seam", &r.mr_seam)?;
    hex_line(f, 2, "mr_signer_seam", &r.mr_signer_seam)?;
    hex_line(f, 2, "seam_attributes", &r.seam_attributes)?;
    line(f, 2, "td_attributes", r.td_attributes)?;
    hex_line(f, 2, "xfam", &r.xfam)?;
    hex_line(f, 2, "mr_td", &r.mr_td)?;
    hex_line(f, 2, "mr_config_id", &r.mr_config_id)?;
    hex_line(f, 2, "mr_owner", &r.mr_owner)?;
    hex_line(f, 2, "mr_owner_config", &r.mr_owner_config)?;
    for (i, rtmr) in r.rtmrs().iter().enumerate() {
        hex_line(f, 2, &format!("rtmr{i}"), rtmr)?;
    }
    hex_line(f, 2, "report_data", &r.report_data)
}

fn render_extras(f: &mut Formatter<'_>, body: &TdBody) -> fmt::Result {
    if let Some(r) = body.td15() {
        hex_line(f, 2, "tee_tcb_svn2", &r.tee_tcb_svn2)?;
        hex_line(f, 2, "mr_servicetd", &r.mr_servicetd)?;
    }
    if let Some(r) = body.td15ex() {
        line(f, 2, "vmid", r.vmid)?;
        hex_line(f, 2, "td_id", &r.td_id)?;
        hex_line(f, 2, "dev_info", &r.dev_info)?;
        hex_line(f, 2, "init_service_td_hash", &r.init_service_td_hash)?;
        hex_line(
            f,
            2,
            "init_service_td_attributes",
            &r.init_service_td_attributes,
        )?;
        hex_line(f, 2, "init_cpu_svn", &r.init_cpu_svn)?;
        hex_line(f, 2, "init_tee_tcb_svn", &r.init_tee_tcb_svn)?;
        hex_line(f, 2, "init_tee_fmspc", &r.init_tee_fmspc)?;
        hex_line(f, 2, "cur_service_td_hash", &r.cur_service_td_hash)?;
        hex_line(
            f,
            2,
            "cur_service_td_attributes",
            &r.cur_service_td_attributes,
        )?;
    }
    Ok(())
}

fn render_qe_report(f: &mut Formatter<'_>, r: &EnclaveReport) -> fmt::Result {
    writeln!(f, "  QE report")?;
    hex_line(f, 4, "cpu_svn", &r.cpu_svn)?;
    line(f, 4, "misc_select", format_args!("0x{:08x}", r.misc_select))?;
    hex_line(f, 4, "reserved1", &r.reserved1)?;
    hex_line(f, 4, "attributes", &r.attributes)?;
    hex_line(f, 4, "mr_enclave", &r.mr_enclave)?;
    hex_line(f, 4, "reserved2", &r.reserved2)?;
    hex_line(f, 4, "mr_signer", &r.mr_signer)?;
    hex_line(f, 4, "reserved3", &r.reserved3)?;
    line(f, 4, "isv_prod_id", r.isv_prod_id)?;
    line(f, 4, "isv_svn", r.isv_svn)?;
    hex_line(f, 4, "reserved4", &r.reserved4)?;
    hex_line(f, 4, "report_data", &r.report_data)
}

fn render_signature(f: &mut Formatter<'_>, s: &SignatureData) -> fmt::Result {
    writeln!(f, "Signature data")?;
    hex_line(f, 2, "ecdsa_signature", &s.ecdsa_signature)?;
    hex_line(f, 2, "attestation_key", &s.attestation_key)?;
    render_qe_report(f, &s.qe_report)?;
    hex_line(f, 2, "qe_report_signature", &s.qe_report_signature)?;
    hex_line(f, 2, "qe_auth_data", &s.qe_auth_data)?;
    let binding = if s.qe_binding_matches() {
        "matches SHA-256(attestation_key || qe_auth_data)"
    } else {
        "DOES NOT match SHA-256(attestation_key || qe_auth_data)"
    };
    line(f, 2, "qe_report binding", binding)?;
    let certs = s.pck_cert_chain.certificates();
    let mut summary = format!("{} PEM certificates (leaf first):", certs.len());
    for (i, cert) in certs.iter().enumerate() {
        let _ = write!(summary, " #{i} {} bytes", cert.len());
    }
    line(f, 2, "pck_cert_chain", summary)
}
