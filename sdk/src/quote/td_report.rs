//! TD report bodies: TD 1.0 (v4, v5 type 2), TD 1.5 (v5 type 3) and
//! TD 1.5 ex (v5 type 4). Layouts from Intel `sgx_quote_4.h`/`sgx_quote_5.h`;
//! the TD 1.5 ex fields as in dcap-qvl's `TDReport15Ex`.

use serde::Serialize;

use super::codec::{concat, Reader};
use super::{QuoteError, TdAttributes};
use crate::rtmr::Measurement;

/// The TD 1.0 report body (584 bytes). Every TD body starts with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport10 {
    /// TCB security versions of the TDX module.
    #[serde(with = "crate::hexser")]
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    #[serde(with = "crate::hexser")]
    pub mr_seam: Measurement,
    /// Signer of the TDX module (zero for Intel's).
    #[serde(with = "crate::hexser")]
    pub mr_signer_seam: Measurement,
    /// TDX module attributes.
    #[serde(with = "crate::hexser")]
    pub seam_attributes: [u8; 8],
    /// TD attributes (DEBUG, profiling, SEPT_VE_DISABLE, ...).
    pub td_attributes: TdAttributes,
    /// Extended features the TD may use (XCR0/XSS mask).
    #[serde(with = "crate::hexser")]
    pub xfam: [u8; 8],
    /// Measurement of the initial TD contents (the firmware).
    #[serde(with = "crate::hexser")]
    pub mr_td: Measurement,
    /// Host-chosen config ID, measured at TD creation.
    #[serde(with = "crate::hexser")]
    pub mr_config_id: Measurement,
    /// Host-chosen owner ID.
    #[serde(with = "crate::hexser")]
    pub mr_owner: Measurement,
    /// Host-chosen owner config.
    #[serde(with = "crate::hexser")]
    pub mr_owner_config: Measurement,
    /// Runtime measurement register 0 (firmware configuration).
    #[serde(with = "crate::hexser")]
    pub rtmr0: Measurement,
    /// Runtime measurement register 1 (kernel, boot events).
    #[serde(with = "crate::hexser")]
    pub rtmr1: Measurement,
    /// Runtime measurement register 2 (command line, initrd).
    #[serde(with = "crate::hexser")]
    pub rtmr2: Measurement,
    /// Runtime measurement register 3 (runtime events).
    #[serde(with = "crate::hexser")]
    pub rtmr3: Measurement,
    /// Data the TD bound into the quote.
    #[serde(with = "crate::hexser")]
    pub report_data: [u8; 64],
}

impl TdReport10 {
    /// Encoded size in bytes.
    pub const LEN: usize = 584;

    /// RTMR0..RTMR3 in order.
    pub fn rtmrs(&self) -> [Measurement; 4] {
        [self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3]
    }

    /// The body's bytes as they appear in the quote.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        concat(&[
            &self.tee_tcb_svn,
            &self.mr_seam,
            &self.mr_signer_seam,
            &self.seam_attributes,
            &self.td_attributes.0,
            &self.xfam,
            &self.mr_td,
            &self.mr_config_id,
            &self.mr_owner,
            &self.mr_owner_config,
            &self.rtmr0,
            &self.rtmr1,
            &self.rtmr2,
            &self.rtmr3,
            &self.report_data,
        ])
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        Ok(TdReport10 {
            tee_tcb_svn: r.array("tee_tcb_svn")?,
            mr_seam: r.array("mr_seam")?,
            mr_signer_seam: r.array("mr_signer_seam")?,
            seam_attributes: r.array("seam_attributes")?,
            td_attributes: TdAttributes(r.array("td_attributes")?),
            xfam: r.array("xfam")?,
            mr_td: r.array("mr_td")?,
            mr_config_id: r.array("mr_config_id")?,
            mr_owner: r.array("mr_owner")?,
            mr_owner_config: r.array("mr_owner_config")?,
            rtmr0: r.array("rtmr0")?,
            rtmr1: r.array("rtmr1")?,
            rtmr2: r.array("rtmr2")?,
            rtmr3: r.array("rtmr3")?,
            report_data: r.array("report_data")?,
        })
    }
}

/// The TD 1.5 report body (648 bytes): TD 1.0 plus two fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport15 {
    /// The TD 1.0 fields.
    #[serde(flatten)]
    pub base: TdReport10,
    /// TCB security versions after a TD-preserving module update.
    #[serde(with = "crate::hexser")]
    pub tee_tcb_svn2: [u8; 16],
    /// Hash of the service TDs bound to this TD.
    #[serde(with = "crate::hexser")]
    pub mr_servicetd: Measurement,
}

impl TdReport15 {
    /// Encoded size in bytes.
    pub const LEN: usize = 648;

    /// The body's bytes as they appear in the quote.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        concat(&[
            &self.base.to_bytes(),
            &self.tee_tcb_svn2,
            &self.mr_servicetd,
        ])
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        Ok(TdReport15 {
            base: TdReport10::read(r)?,
            tee_tcb_svn2: r.array("tee_tcb_svn2")?,
            mr_servicetd: r.array("mr_servicetd")?,
        })
    }
}

/// The TD 1.5 ex report body (885 bytes): TD 1.5 plus TD identity, device
/// and service-TD binding fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport15Ex {
    /// The TD 1.5 fields.
    #[serde(flatten)]
    pub base: TdReport15,
    /// VM index: 0 for an unpartitioned TD or the L1 VMM, 1-3 for TD VMs.
    pub vmid: u8,
    /// TD instance ID, regenerated on relaunch.
    #[serde(with = "crate::hexser")]
    pub td_id: [u8; 32],
    /// Hash of the device information.
    #[serde(with = "crate::hexser")]
    pub dev_info: Measurement,
    /// SERVTD_HASH of the service TDs bound at TD creation.
    #[serde(with = "crate::hexser")]
    pub init_service_td_hash: Measurement,
    /// Attributes of the service TD bound at creation.
    #[serde(with = "crate::hexser")]
    pub init_service_td_attributes: [u8; 8],
    /// CPU SVN when the TD was created.
    #[serde(with = "crate::hexser")]
    pub init_cpu_svn: [u8; 16],
    /// TEE TCB SVN when the TD was created.
    #[serde(with = "crate::hexser")]
    pub init_tee_tcb_svn: [u8; 16],
    /// Platform model (FMSPC) on which `init_tee_tcb_svn` was captured.
    #[serde(with = "crate::hexser")]
    pub init_tee_fmspc: [u8; 12],
    /// SERVTD_HASH of the currently bound service TDs.
    #[serde(with = "crate::hexser")]
    pub cur_service_td_hash: Measurement,
    /// Attributes of the currently bound service TD.
    #[serde(with = "crate::hexser")]
    pub cur_service_td_attributes: [u8; 8],
}

impl TdReport15Ex {
    /// Encoded size in bytes.
    pub const LEN: usize = 885;

    /// The body's bytes as they appear in the quote.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        concat(&[
            &self.base.to_bytes(),
            &[self.vmid],
            &self.td_id,
            &self.dev_info,
            &self.init_service_td_hash,
            &self.init_service_td_attributes,
            &self.init_cpu_svn,
            &self.init_tee_tcb_svn,
            &self.init_tee_fmspc,
            &self.cur_service_td_hash,
            &self.cur_service_td_attributes,
        ])
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        Ok(TdReport15Ex {
            base: TdReport15::read(r)?,
            vmid: r.u8("vmid")?,
            td_id: r.array("td_id")?,
            dev_info: r.array("dev_info")?,
            init_service_td_hash: r.array("init_service_td_hash")?,
            init_service_td_attributes: r.array("init_service_td_attributes")?,
            init_cpu_svn: r.array("init_cpu_svn")?,
            init_tee_tcb_svn: r.array("init_tee_tcb_svn")?,
            init_tee_fmspc: r.array("init_tee_fmspc")?,
            cur_service_td_hash: r.array("cur_service_td_hash")?,
            cur_service_td_attributes: r.array("cur_service_td_attributes")?,
        })
    }
}

/// The report body of a TD quote. In JSON, the fields of all levels appear
/// flat, next to `"kind": "td1.0" | "td1.5" | "td1.5ex"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
// A quote is parsed once and kept whole; boxing the larger variants would add
// allocations and indirection without saving anything.
#[allow(clippy::large_enum_variant)]
pub enum TdBody {
    /// TD 1.0: v4 quotes, v5 body type 2.
    #[serde(rename = "td1.0")]
    Td10(TdReport10),
    /// TD 1.5: v5 body type 3.
    #[serde(rename = "td1.5")]
    Td15(TdReport15),
    /// TD 1.5 ex: v5 body type 4.
    #[serde(rename = "td1.5ex")]
    Td15Ex(TdReport15Ex),
}

/// v5 body type numbers (`sgx_quote_5.h`).
pub(crate) const BODY_TYPE_TD10: u16 = 2;
pub(crate) const BODY_TYPE_TD15: u16 = 3;
pub(crate) const BODY_TYPE_TD15_EX: u16 = 4;

impl TdBody {
    /// The v5 body type number: 2, 3 or 4.
    pub fn body_type(&self) -> u16 {
        match self {
            TdBody::Td10(_) => BODY_TYPE_TD10,
            TdBody::Td15(_) => BODY_TYPE_TD15,
            TdBody::Td15Ex(_) => BODY_TYPE_TD15_EX,
        }
    }

    /// Human name: "TD 1.0", "TD 1.5" or "TD 1.5 ex".
    pub fn name(&self) -> &'static str {
        match self {
            TdBody::Td10(_) => "TD 1.0",
            TdBody::Td15(_) => "TD 1.5",
            TdBody::Td15Ex(_) => "TD 1.5 ex",
        }
    }

    /// Encoded size in bytes.
    pub fn byte_len(&self) -> usize {
        match self {
            TdBody::Td10(_) => TdReport10::LEN,
            TdBody::Td15(_) => TdReport15::LEN,
            TdBody::Td15Ex(_) => TdReport15Ex::LEN,
        }
    }

    /// The TD 1.0 fields, which every body has (measurements, report data).
    pub fn td10(&self) -> &TdReport10 {
        match self {
            TdBody::Td10(r) => r,
            TdBody::Td15(r) => &r.base,
            TdBody::Td15Ex(r) => &r.base.base,
        }
    }

    /// The TD 1.5 fields, for TD 1.5 and TD 1.5 ex bodies.
    pub fn td15(&self) -> Option<&TdReport15> {
        match self {
            TdBody::Td10(_) => None,
            TdBody::Td15(r) => Some(r),
            TdBody::Td15Ex(r) => Some(&r.base),
        }
    }

    /// The TD 1.5 ex fields.
    pub fn td15ex(&self) -> Option<&TdReport15Ex> {
        match self {
            TdBody::Td15Ex(r) => Some(r),
            _ => None,
        }
    }

    /// Append the body's bytes.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match self {
            TdBody::Td10(r) => out.extend_from_slice(&r.to_bytes()),
            TdBody::Td15(r) => out.extend_from_slice(&r.to_bytes()),
            TdBody::Td15Ex(r) => out.extend_from_slice(&r.to_bytes()),
        }
    }

    /// Read a v5 body of `body_type`, whose size field said `declared`.
    pub(crate) fn read_v5(
        r: &mut Reader<'_>,
        body_type: u16,
        declared: u32,
    ) -> Result<Self, QuoteError> {
        let expected = match body_type {
            BODY_TYPE_TD10 => TdReport10::LEN,
            BODY_TYPE_TD15 => TdReport15::LEN,
            BODY_TYPE_TD15_EX => TdReport15Ex::LEN,
            _ => return Err(QuoteError::UnknownBodyType { body_type }),
        };
        if usize::try_from(declared).ok() != Some(expected) {
            return Err(QuoteError::BodySizeMismatch {
                body_type,
                declared,
                expected,
            });
        }
        Ok(match body_type {
            BODY_TYPE_TD15 => TdBody::Td15(TdReport15::read(r)?),
            BODY_TYPE_TD15_EX => TdBody::Td15Ex(TdReport15Ex::read(r)?),
            _ => TdBody::Td10(TdReport10::read(r)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report whose every byte is its own offset (mod 251), so any field
    /// read from the wrong place shows up.
    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn td10_fields_at_documented_offsets() {
        let bytes = patterned(TdReport10::LEN);
        let r = TdReport10::read(&mut Reader::new(&bytes)).unwrap();
        // Offsets relative to the body (notes/tdx-facts.md lists them +48).
        assert_eq!(r.mr_seam[0], 16);
        assert_eq!(r.td_attributes.0[0], 120);
        assert_eq!(r.xfam[0], 128);
        assert_eq!(r.mr_td[0], 136);
        assert_eq!(r.rtmr0[0], (328 % 251) as u8);
        assert_eq!(r.rtmr3[0], (472 % 251) as u8);
        assert_eq!(r.report_data[0], (520 % 251) as u8);
        assert_eq!(r.rtmrs()[2], r.rtmr2);
        assert_eq!(r.to_bytes().to_vec(), bytes);
    }

    #[test]
    fn larger_bodies_round_trip_and_extend_td10() {
        let bytes = patterned(TdReport15Ex::LEN);
        let ex = TdReport15Ex::read(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(ex.to_bytes().to_vec(), bytes);
        assert_eq!(ex.base.tee_tcb_svn2[0], (584 % 251) as u8);
        assert_eq!(ex.vmid, (648 % 251) as u8);
        assert_eq!(ex.cur_service_td_attributes[7], (884 % 251) as u8);
        let body = TdBody::Td15Ex(ex.clone());
        assert_eq!(body.td10(), &ex.base.base);
        assert_eq!(body.td15(), Some(&ex.base));
        assert_eq!((body.body_type(), body.byte_len()), (4, 885));

        let t15 = TdReport15::read(&mut Reader::new(&bytes[..TdReport15::LEN])).unwrap();
        assert_eq!(t15.to_bytes().as_slice(), &bytes[..TdReport15::LEN]);
    }

    #[test]
    fn v5_body_type_and_size_are_checked() {
        let bytes = patterned(TdReport15Ex::LEN);
        let err = TdBody::read_v5(&mut Reader::new(&bytes), 1, 384).unwrap_err();
        assert_eq!(err, QuoteError::UnknownBodyType { body_type: 1 });
        let err = TdBody::read_v5(&mut Reader::new(&bytes), 3, 584).unwrap_err();
        assert_eq!(
            err,
            QuoteError::BodySizeMismatch {
                body_type: 3,
                declared: 584,
                expected: 648
            }
        );
        let body = TdBody::read_v5(&mut Reader::new(&bytes), 3, 648).unwrap();
        assert_eq!(body.body_type(), 3);
    }
}
