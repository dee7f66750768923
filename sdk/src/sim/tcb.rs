//! The simulated platform's TCB: the SVNs of its two TCB levels, the TCB info
//! and QE identity documents Intel's PCS would serve for it, and the identity
//! of the simulated TD quoting enclave and TDX module.
//!
//! The documents mirror Intel's `/tdx/certification/v4/tcb` and
//! `/tdx/certification/v4/qe/identity` bodies field for field (TCB info
//! version 3 with `tdxModule` and `tdxModuleIdentities`, QE identity `TD_QE`
//! version 2), serialized compactly in Intel's field order. The signature
//! covers exactly that text, as dcap-qvl checks.

use std::time::Duration;

use serde::Serialize;

use super::SimError;

/// The security version numbers one TCB level requires, and that a platform
/// at that level reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcbSvns {
    /// The 16 SGX TCB component SVNs (the CPUSVN), carried by the PCK
    /// certificate.
    pub cpu_svn: [u8; 16],
    /// The PCE SVN, carried by the PCK certificate. Must be below 0x8000
    /// (Intel encodes it as an INTEGER of at most two bytes).
    pub pce_svn: u16,
    /// TEE_TCB_SVN as the TD quote reports it: `[0]` TDX module ISVSVN, `[1]`
    /// TDX module major version, `[2]` TDX late microcode update, rest 0.
    pub tee_tcb_svn: [u8; 16],
}

/// The SVNs of the sim TCB info's `UpToDate` level (default).
pub const UP_TO_DATE_SVNS: TcbSvns = TcbSvns {
    cpu_svn: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
    pce_svn: 13,
    tee_tcb_svn: [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// The SVNs of the sim TCB info's `OutOfDate` level (default): every
/// component at or below [`UP_TO_DATE_SVNS`], several strictly below.
pub const OUT_OF_DATE_SVNS: TcbSvns = TcbSvns {
    cpu_svn: [2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
    pce_svn: 11,
    tee_tcb_svn: [4, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Advisory of the `OutOfDate` platform TCB level.
pub const PLATFORM_ADVISORY_ID: &str = "EE-SIM-SA-00001";
/// Advisory of the `OutOfDate` TDX module TCB level.
pub const MODULE_ADVISORY_ID: &str = "EE-SIM-SA-00002";

/// `tcbDate` of the `UpToDate` levels.
pub const UP_TO_DATE_TCB_DATE: &str = "2025-01-15T00:00:00Z";
/// `tcbDate` of the `OutOfDate` levels.
pub const OUT_OF_DATE_TCB_DATE: &str = "2023-08-09T00:00:00Z";

/// `tcbEvaluationDataNumber` of both documents.
pub const TCB_EVALUATION_DATA_NUMBER: u32 = 17;

/// MRSIGNER of the simulated TD quoting enclave (ASCII, recognisable in a hex
/// dump; Intel's TD QE has a different one).
pub const QE_MRSIGNER: [u8; 32] = *b"EasyEnclaveSIM-TD_QE-mrsigner-v1";
/// MRENCLAVE of the simulated TD quoting enclave (not checked by DCAP).
pub const QE_MRENCLAVE: [u8; 32] = *b"EasyEnclaveSIM-TD_QE-mrenclave-1";
/// ISVPRODID of the TD quoting enclave (Intel's TD QE is product 2).
pub const QE_ISVPRODID: u16 = 2;
/// ISVSVN of the simulated QE; the QE identity's only level requires it.
pub const QE_ISVSVN: u16 = 4;
/// MISCSELECT of the QE report (Intel's TD QE: 0).
pub const QE_MISCSELECT: u32 = 0;
/// ATTRIBUTES of the QE report, as Intel's TD QE reports them (INIT,
/// MODE64BIT, PROVISIONKEY; XFRM 0xE7).
pub const QE_ATTRIBUTES: [u8; 16] = [0x15, 0, 0, 0, 0, 0, 0, 0, 0xe7, 0, 0, 0, 0, 0, 0, 0];
/// ATTRIBUTES the QE identity expects, under [`QE_ATTRIBUTES_MASK`] (Intel's
/// values).
const QE_IDENTITY_ATTRIBUTES: [u8; 16] = [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Which ATTRIBUTES bits the QE identity checks (Intel's mask: not
/// MODE64BIT, not XFRM).
const QE_ATTRIBUTES_MASK: [u8; 16] = [
    0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// MRSIGNER_SEAM of the TDX module: zero, as for Intel-signed modules.
pub const TDX_MODULE_MRSIGNER: [u8; 48] = [0; 48];
/// SEAM_ATTRIBUTES of the TDX module (production module: 0).
pub const TDX_MODULE_ATTRIBUTES: [u8; 8] = [0; 8];
/// MRSEAM of the simulated TDX module (not appraised by DCAP).
pub const TDX_MODULE_MRSEAM: [u8; 48] = *b"EasyEnclaveSIM-TDX-module-MRSEAM-v1-------------";

/// Which of the TCB info's levels a simulated platform is at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlatformTcbLevel {
    /// The newest level: DCAP status `UpToDate`.
    #[default]
    UpToDate,
    /// The older level: DCAP status `OutOfDate` with [`PLATFORM_ADVISORY_ID`].
    OutOfDate,
}

/// The two TCB levels the sim TCB info publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimTcbLevels {
    /// SVNs of the `UpToDate` level.
    pub up_to_date: TcbSvns,
    /// SVNs of the `OutOfDate` level.
    pub out_of_date: TcbSvns,
}

impl Default for SimTcbLevels {
    fn default() -> Self {
        Self {
            up_to_date: UP_TO_DATE_SVNS,
            out_of_date: OUT_OF_DATE_SVNS,
        }
    }
}

impl SimTcbLevels {
    /// The SVNs of `level`.
    pub fn svns(&self, level: PlatformTcbLevel) -> &TcbSvns {
        match level {
            PlatformTcbLevel::UpToDate => &self.up_to_date,
            PlatformTcbLevel::OutOfDate => &self.out_of_date,
        }
    }

    /// Check that DCAP will tell the levels apart the way their names say:
    /// the out-of-date level is at or below the up-to-date one in every
    /// component and strictly below in a platform component (CPUSVN, PCESVN
    /// or TEE_TCB_SVN[2..]); both name the same, non-zero TDX module version.
    pub fn validate(&self) -> Result<(), SimError> {
        let (new, old) = (&self.up_to_date, &self.out_of_date);
        let invalid = |msg: String| Err(SimError::InvalidConfig(msg));
        for (name, svns) in [("up_to_date", new), ("out_of_date", old)] {
            if svns.pce_svn >= 0x8000 {
                return invalid(format!(
                    "{name}.pce_svn {} does not fit Intel's two-byte INTEGER encoding (max 0x7fff)",
                    svns.pce_svn
                ));
            }
            if svns.tee_tcb_svn[1] == 0 {
                return invalid(format!(
                    "{name}.tee_tcb_svn[1] (TDX module version) must be non-zero"
                ));
            }
        }
        if new.tee_tcb_svn[1] != old.tee_tcb_svn[1] {
            return invalid(format!(
                "the levels name different TDX module versions: {} vs {}",
                new.tee_tcb_svn[1], old.tee_tcb_svn[1]
            ));
        }
        let platform = |s: &TcbSvns| {
            let mut v: Vec<u16> = s.cpu_svn.iter().map(|&x| u16::from(x)).collect();
            v.push(s.pce_svn);
            v.extend(s.tee_tcb_svn[2..].iter().map(|&x| u16::from(x)));
            v
        };
        let (new_platform, old_platform) = (platform(new), platform(old));
        let at_or_below = old_platform.iter().zip(&new_platform).all(|(o, n)| o <= n)
            && old.tee_tcb_svn[0] <= new.tee_tcb_svn[0];
        if !at_or_below || old_platform == new_platform {
            return invalid(
                "out_of_date must be at or below up_to_date in every component and strictly \
                 below in CPUSVN, PCESVN or TEE_TCB_SVN[2..]"
                    .to_string(),
            );
        }
        Ok(())
    }
}

/// An RFC 3339 UTC date as Intel writes it (`2025-01-15T00:00:00Z`).
pub(super) fn rfc3339(unix: u64, field: &'static str) -> Result<String, SimError> {
    der::DateTime::from_unix_duration(Duration::from_secs(unix))
        .map(|t| t.to_string())
        .map_err(|_| SimError::TimeOutOfRange { field, unix })
}

/// SGX TCB component descriptions Intel publishes (index, category, type).
const SGX_COMPONENT_INFO: [(usize, &str, Option<&str>); 7] = [
    (0, "BIOS", Some("Early Microcode Update")),
    (1, "OS/VMM", Some("SGX Late Microcode Update")),
    (2, "OS/VMM", Some("TXT SINIT")),
    (3, "BIOS", None),
    (4, "BIOS", None),
    (5, "BIOS", None),
    (7, "OS/VMM", Some("SEAMLDR ACM")),
];

/// TDX TCB component descriptions Intel publishes.
const TDX_COMPONENT_INFO: [(usize, &str, Option<&str>); 3] = [
    (0, "OS/VMM", Some("TDX Module")),
    (1, "OS/VMM", Some("TDX Module")),
    (2, "OS/VMM", Some("TDX Late Microcode Update")),
];

#[derive(Serialize)]
struct TcbComponentJson {
    svn: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

fn components(
    svns: &[u8; 16],
    info: &[(usize, &'static str, Option<&'static str>)],
) -> Vec<TcbComponentJson> {
    (0..)
        .zip(svns)
        .map(|(i, &svn)| {
            let described = info.iter().find(|(index, _, _)| *index == i);
            TcbComponentJson {
                svn,
                category: described.map(|(_, category, _)| *category),
                kind: described.and_then(|(_, _, kind)| *kind),
            }
        })
        .collect()
}

#[derive(Serialize)]
struct TcbJson {
    sgxtcbcomponents: Vec<TcbComponentJson>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<TcbComponentJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevelJson<T> {
    tcb: T,
    tcb_date: &'static str,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<&'static str>,
}

#[derive(Serialize)]
struct IsvSvnJson<T> {
    isvsvn: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleJson {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleIdentityJson {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<TcbLevelJson<IsvSvnJson<u8>>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u8,
    tcb_evaluation_data_number: u32,
    tdx_module: TdxModuleJson,
    tdx_module_identities: Vec<TdxModuleIdentityJson>,
    tcb_levels: Vec<TcbLevelJson<TcbJson>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<TcbLevelJson<IsvSvnJson<u16>>>,
}

/// The TDX TCB info (`id` "TDX", version 3) for a platform with `fmspc` and
/// PCE-ID `pce_id`, valid from `issue_date` to `next_update` (unix seconds).
/// Levels must have passed [`SimTcbLevels::validate`].
pub(super) fn tcb_info_json(
    levels: &SimTcbLevels,
    fmspc: &[u8; 6],
    pce_id: &[u8; 2],
    issue_date: u64,
    next_update: u64,
) -> Result<String, SimError> {
    let (new, old) = (&levels.up_to_date, &levels.out_of_date);
    let module_attributes = hex::encode_upper(TDX_MODULE_ATTRIBUTES);
    let module_mask = hex::encode_upper([0xffu8; 8]);
    let mut module_levels = vec![TcbLevelJson {
        tcb: IsvSvnJson {
            isvsvn: new.tee_tcb_svn[0],
        },
        tcb_date: UP_TO_DATE_TCB_DATE,
        tcb_status: "UpToDate",
        advisory_ids: vec![],
    }];
    if old.tee_tcb_svn[0] < new.tee_tcb_svn[0] {
        module_levels.push(TcbLevelJson {
            tcb: IsvSvnJson {
                isvsvn: old.tee_tcb_svn[0],
            },
            tcb_date: OUT_OF_DATE_TCB_DATE,
            tcb_status: "OutOfDate",
            advisory_ids: vec![MODULE_ADVISORY_ID],
        });
    }
    let level = |svns: &TcbSvns, tcb_date, tcb_status, advisory_ids| TcbLevelJson {
        tcb: TcbJson {
            sgxtcbcomponents: components(&svns.cpu_svn, &SGX_COMPONENT_INFO),
            pcesvn: svns.pce_svn,
            tdxtcbcomponents: components(&svns.tee_tcb_svn, &TDX_COMPONENT_INFO),
        },
        tcb_date,
        tcb_status,
        advisory_ids,
    };
    let document = TcbInfoJson {
        id: "TDX",
        version: 3,
        issue_date: rfc3339(issue_date, "TCB info issueDate")?,
        next_update: rfc3339(next_update, "TCB info nextUpdate")?,
        fmspc: hex::encode_upper(fmspc),
        pce_id: hex::encode_upper(pce_id),
        tcb_type: 0,
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        tdx_module: TdxModuleJson {
            mrsigner: hex::encode_upper(TDX_MODULE_MRSIGNER),
            attributes: module_attributes.clone(),
            attributes_mask: module_mask.clone(),
        },
        tdx_module_identities: vec![TdxModuleIdentityJson {
            id: format!("TDX_{:02X}", new.tee_tcb_svn[1]),
            mrsigner: hex::encode_upper(TDX_MODULE_MRSIGNER),
            attributes: module_attributes,
            attributes_mask: module_mask,
            tcb_levels: module_levels,
        }],
        tcb_levels: vec![
            level(new, UP_TO_DATE_TCB_DATE, "UpToDate", vec![]),
            level(
                old,
                OUT_OF_DATE_TCB_DATE,
                "OutOfDate",
                vec![PLATFORM_ADVISORY_ID],
            ),
        ],
    };
    serde_json::to_string(&document).map_err(|source| SimError::Json {
        what: "TCB info",
        source,
    })
}

/// The TD QE identity (`id` "TD_QE", version 2), valid from `issue_date` to
/// `next_update` (unix seconds).
pub(super) fn qe_identity_json(issue_date: u64, next_update: u64) -> Result<String, SimError> {
    let document = QeIdentityJson {
        id: "TD_QE",
        version: 2,
        issue_date: rfc3339(issue_date, "QE identity issueDate")?,
        next_update: rfc3339(next_update, "QE identity nextUpdate")?,
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        miscselect: hex::encode_upper(QE_MISCSELECT.to_le_bytes()),
        miscselect_mask: hex::encode_upper([0xffu8; 4]),
        attributes: hex::encode_upper(QE_IDENTITY_ATTRIBUTES),
        attributes_mask: hex::encode_upper(QE_ATTRIBUTES_MASK),
        mrsigner: hex::encode_upper(QE_MRSIGNER),
        isvprodid: QE_ISVPRODID,
        tcb_levels: vec![TcbLevelJson {
            tcb: IsvSvnJson { isvsvn: QE_ISVSVN },
            tcb_date: UP_TO_DATE_TCB_DATE,
            tcb_status: "UpToDate",
            advisory_ids: vec![],
        }],
    };
    serde_json::to_string(&document).map_err(|source| SimError::Json {
        what: "QE identity",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_levels_are_valid() {
        SimTcbLevels::default().validate().unwrap();
    }

    #[test]
    fn levels_in_the_wrong_order_are_rejected() {
        let swapped = SimTcbLevels {
            up_to_date: OUT_OF_DATE_SVNS,
            out_of_date: UP_TO_DATE_SVNS,
        };
        assert!(swapped.validate().is_err());
        let same = SimTcbLevels {
            up_to_date: UP_TO_DATE_SVNS,
            out_of_date: UP_TO_DATE_SVNS,
        };
        assert!(same.validate().is_err());
    }

    #[test]
    fn oversized_pce_svn_is_rejected() {
        let mut levels = SimTcbLevels::default();
        levels.up_to_date.pce_svn = 0x8000;
        let err = levels.validate().unwrap_err().to_string();
        assert!(err.contains("pce_svn"), "{err}");
    }

    #[test]
    fn rfc3339_matches_intel_format() {
        // 2025-06-19T10:16:03Z is the issueDate of Intel's sample TCB info.
        assert_eq!(rfc3339(1_750_328_163, "t").unwrap(), "2025-06-19T10:16:03Z");
    }

    #[test]
    fn tcb_info_has_intel_field_order() {
        let json = tcb_info_json(&SimTcbLevels::default(), &[0; 6], &[0; 2], 0, 1).unwrap();
        let start = r#"{"id":"TDX","version":3,"issueDate":"1970-01-01T00:00:00Z","nextUpdate":"1970-01-01T00:00:01Z","fmspc":"000000000000","pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":17,"tdxModule":{"mrsigner":"#;
        assert!(json.starts_with(start), "{json}");
        assert!(json.contains(r#""tdxModuleIdentities":[{"id":"TDX_01","#));
        assert!(json.contains(r#""advisoryIDs":["EE-SIM-SA-00001"]"#));
    }
}
