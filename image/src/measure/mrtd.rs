//! MRTD: the TDX module's running SHA-384 over how the VMM built the TD's
//! initial memory from the TDVF sections.
//!
//! Each TDH.MEM.PAGE.ADD appends a 128-byte block: "MEM.PAGE.ADD" at bytes
//! 0..12, the page's GPA as u64 at 16..24, zeros elsewhere. Each TDH.MR.EXTEND
//! appends a 128-byte block ("MR.EXTEND" at 0..9, the chunk's GPA at 16..24)
//! followed by the 256 bytes of the chunk (Intel TDX module ABI; the facts
//! note's "Offline measurement" section).
//!
//! QEMU (`target/i386/kvm/tdx.c`, `tdx_init_fw_mem_region`) hands every
//! section to KVM_TDX_INIT_MEM_REGION in descriptor order and asks for
//! MR.EXTEND when the section's attribute bit 0 is set. Upstream KVM (the
//! stack under QEMU >= 9) adds and extends page by page; the pre-upstream
//! stacks that ran QEMU 8.x added all pages of a section first and extended
//! them afterwards. [`PageAddOrder`] names the two.

use sha2::{Digest, Sha384};
use thiserror::Error;

use super::tdvf::{Section, SectionType, TdvfMetadata, PAGE_SIZE};
use easyenclave::rtmr::Measurement;

/// Granularity of TDH.MR.EXTEND.
pub const EXTEND_CHUNK: usize = 256;
/// Size of the block each TDX operation appends to the MRTD hash.
const BLOCK: usize = 128;

/// The order of PAGE.ADD and MR.EXTEND within a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageAddOrder {
    /// Per page: PAGE.ADD, then its 16 MR.EXTENDs (upstream KVM, QEMU >= 9).
    SinglePass,
    /// Per section: every PAGE.ADD, then every MR.EXTEND (QEMU 8.x stacks).
    TwoPass,
}

/// A section this model cannot measure faithfully.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MrtdError {
    /// PAGE.AUG sections: the TDVF design guide lets the VMM skip PAGE.ADD
    /// for them, but QEMU's code adds them anyway. No known OVMF build uses
    /// the bit, so rather than guess, refuse.
    #[error("TDVF section {index} ({kind:?}) has the PAGE.AUG attribute: QEMU adds such pages with PAGE.ADD while the TDVF design guide lets a VMM skip them, so its MRTD contribution is ambiguous and not computed")]
    PageAug {
        /// Section index.
        index: usize,
        /// Section type.
        kind: SectionType,
    },
    /// A section whose pages would wrap the address space.
    #[error("TDVF section {index}: address {gpa:#x} + size {mem_size:#x} overflows or is not page aligned")]
    Layout {
        /// Section index.
        index: usize,
        /// Guest physical address.
        gpa: u64,
        /// Size in memory.
        mem_size: u64,
    },
    /// The bytes to extend are not all in the image.
    #[error("TDVF section {index}: bytes {start:#x}..{end:#x} to extend into MRTD are outside the {len}-byte image")]
    DataOutsideImage {
        /// Section index.
        index: usize,
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
        /// Image length.
        len: usize,
    },
    /// MR.EXTEND on memory the VMM provides (TD HOB, temporary memory): no
    /// known firmware asks for it.
    #[error("TDVF section {index} ({kind:?}) asks for MR.EXTEND of VMM-provided memory; no known TDVF does this and it is not modelled")]
    ExtendWithoutImageData {
        /// Section index.
        index: usize,
        /// Section type.
        kind: SectionType,
    },
}

/// Compute MRTD for firmware `image` with its parsed `metadata`.
pub fn compute_mrtd(
    image: &[u8],
    metadata: &TdvfMetadata,
    order: PageAddOrder,
) -> Result<Measurement, MrtdError> {
    let data = metadata
        .sections
        .iter()
        .map(|s| section_data(image, s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut mrtd = Sha384::new();
    for (section, data) in metadata.sections.iter().zip(data) {
        match order {
            PageAddOrder::SinglePass => {
                for page in 0..section.pages() {
                    page_add(&mut mrtd, section, page);
                    extend_page(&mut mrtd, section, data, page);
                }
            }
            PageAddOrder::TwoPass => {
                for page in 0..section.pages() {
                    page_add(&mut mrtd, section, page);
                }
                for page in 0..section.pages() {
                    extend_page(&mut mrtd, section, data, page);
                }
            }
        }
    }
    Ok(mrtd.finalize().into())
}

/// The bytes MR.EXTEND reads for `section`: QEMU copies `mem_size` bytes of
/// the image from `data_offset` (BFV, CFV); empty when the section is not
/// extended. Also refuses sections this model does not cover.
fn section_data<'a>(image: &'a [u8], section: &Section) -> Result<&'a [u8], MrtdError> {
    if section.page_aug() {
        return Err(MrtdError::PageAug {
            index: section.index,
            kind: section.kind,
        });
    }
    if section.gpa.checked_add(section.mem_size).is_none() || section.mem_size % PAGE_SIZE != 0 {
        return Err(MrtdError::Layout {
            index: section.index,
            gpa: section.gpa,
            mem_size: section.mem_size,
        });
    }
    if !section.mr_extend() {
        return Ok(&[]);
    }
    if !section.kind.has_image_data() {
        return Err(MrtdError::ExtendWithoutImageData {
            index: section.index,
            kind: section.kind,
        });
    }
    let start = u64::from(section.data_offset);
    let end = start.saturating_add(section.mem_size);
    usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(start, end)| image.get(start..end))
        .ok_or(MrtdError::DataOutsideImage {
            index: section.index,
            start,
            end,
            len: image.len(),
        })
}

fn page_add(mrtd: &mut Sha384, section: &Section, page: u64) {
    let mut block = [0u8; BLOCK];
    block[..12].copy_from_slice(b"MEM.PAGE.ADD");
    block[16..24].copy_from_slice(&(section.gpa + page * PAGE_SIZE).to_le_bytes());
    mrtd.update(block);
}

/// The 16 MR.EXTENDs of one page; `data` is the section's bytes (exactly
/// `mem_size` long when the section is extended, see [`section_data`]).
fn extend_page(mrtd: &mut Sha384, section: &Section, data: &[u8], page: u64) {
    if !section.mr_extend() {
        return;
    }
    let page_start = (page * PAGE_SIZE) as usize;
    let page_bytes = &data[page_start..page_start + PAGE_SIZE as usize];
    for (i, chunk) in page_bytes.chunks_exact(EXTEND_CHUNK).enumerate() {
        let mut block = [0u8; BLOCK];
        block[..9].copy_from_slice(b"MR.EXTEND");
        let gpa = section.gpa + (page_start + i * EXTEND_CHUNK) as u64;
        block[16..24].copy_from_slice(&gpa.to_le_bytes());
        mrtd.update(block);
        mrtd.update(chunk);
    }
}
