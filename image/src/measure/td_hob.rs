//! The TD HOB: the memory map QEMU writes into the TD_HOB section, which
//! the firmware hashes into RTMR0 before using it.
//!
//! QEMU (`target/i386/kvm/tdx.c` `tdx_finalize_vm`, `hw/i386/tdvf-hob.c`):
//!
//! 1. Guest RAM is the q35 e820 RAM map: `[0, below_4g)` and, when RAM does
//!    not fit below the PCI hole, `[4 GiB, 4 GiB + above_4g)`. q35 keeps all
//!    RAM below 4 GiB when it is smaller than 0xB0000000 (2.75 GiB), else it
//!    puts 2 GiB below and the rest above (`hw/i386/pc_q35.c`).
//! 2. Every range starts "unaccepted". Each TD_HOB and TEMP_MEM section, in
//!    descriptor order, is carved out of the range containing it and marked
//!    "added"; the pieces before and after become new unaccepted ranges.
//! 3. Ranges are sorted by address.
//! 4. The HOB list: a PHIT (`EFI_HOB_HANDOFF_INFO_TABLE`, 56 bytes, type 1,
//!    version 9, memory fields zero, `EfiEndOfHobList` = guest address just
//!    past the end-of-list HOB), then one 48-byte resource descriptor (type
//!    3, zero owner GUID) per range: added ranges are system memory (type 0),
//!    the others unaccepted memory (type 7), attribute 7 (present,
//!    initialized, tested) for both; then an 8-byte end-of-list HOB.
//!
//! OVMF (`TdxHelperMeasureTdHob`) hashes the list up to, not including, the
//! end-of-list HOB.

use thiserror::Error;

use super::tdvf::{SectionType, TdvfMetadata};

/// q35 puts all RAM below 4 GiB when there is less than this.
pub const Q35_LOWMEM_LIMIT: u64 = 0xB000_0000;
/// Otherwise it puts this much below 4 GiB.
pub const Q35_LOWMEM_SPLIT: u64 = 0x8000_0000;
/// RAM above the PCI hole starts here.
pub const ABOVE_4G_START: u64 = 0x1_0000_0000;

const HOB_TYPE_HANDOFF: u16 = 0x0001;
const HOB_TYPE_RESOURCE_DESCRIPTOR: u16 = 0x0003;
const HANDOFF_TABLE_VERSION: u32 = 9;
const PHIT_LEN: u16 = 56;
const RESOURCE_DESCRIPTOR_LEN: u16 = 48;
const END_OF_LIST_LEN: u16 = 8;
/// `EFI_RESOURCE_SYSTEM_MEMORY`.
const RESOURCE_SYSTEM_MEMORY: u32 = 0;
/// `EFI_RESOURCE_MEMORY_UNACCEPTED` (BZ3937).
const RESOURCE_MEMORY_UNACCEPTED: u32 = 7;
/// PRESENT | INITIALIZED | TESTED, which QEMU uses for both kinds.
const RESOURCE_ATTRIBUTES: u32 = 0x7;

/// Guest RAM size as QEMU's q35 machine lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamLayout {
    /// RAM in `[0, below_4g)`.
    pub below_4g: u64,
    /// RAM in `[4 GiB, 4 GiB + above_4g)`.
    pub above_4g: u64,
}

impl RamLayout {
    /// The split q35 uses for `ram_size` bytes (default `max-ram-below-4g`).
    pub fn q35(ram_size: u64) -> Self {
        let lowmem = if ram_size >= Q35_LOWMEM_LIMIT {
            Q35_LOWMEM_SPLIT
        } else {
            Q35_LOWMEM_LIMIT
        };
        if ram_size >= lowmem {
            RamLayout {
                below_4g: lowmem,
                above_4g: ram_size - lowmem,
            }
        } else {
            RamLayout {
                below_4g: ram_size,
                above_4g: 0,
            }
        }
    }

    /// The e820 RAM entries, in QEMU's order.
    fn e820_ram(&self) -> Vec<RamRange> {
        let mut ranges = vec![RamRange {
            start: 0,
            length: self.below_4g,
            accepted: false,
        }];
        if self.above_4g > 0 {
            ranges.push(RamRange {
                start: ABOVE_4G_START,
                length: self.above_4g,
                accepted: false,
            });
        }
        ranges
    }
}

/// One resource descriptor of the TD HOB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RamRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Added by the VMM (system memory) rather than left for the firmware
    /// to accept.
    pub accepted: bool,
}

impl RamRange {
    fn end(&self) -> u64 {
        self.start + self.length
    }
}

/// The TD HOB as QEMU writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdHob {
    /// Guest address of the TD_HOB section.
    pub address: u64,
    /// The hashed bytes: PHIT and resource descriptors, without the
    /// end-of-list HOB.
    pub measured_bytes: Vec<u8>,
    /// The resource descriptors, in order.
    pub ranges: Vec<RamRange>,
}

/// Why QEMU would refuse to start with this memory size and firmware.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TdHobError {
    /// A TD_HOB/TEMP_MEM section is not inside one RAM range.
    #[error("TDVF section {index} ({kind:?}) at {start:#x}..{end:#x} is not inside guest RAM ({ram}); QEMU refuses to start (\"Failed to accept memory\"); use more memory")]
    SectionOutsideRam {
        /// Section index.
        index: usize,
        /// Section type.
        kind: SectionType,
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
        /// The RAM ranges, for the message.
        ram: String,
    },
    /// The HOB does not fit in the TD_HOB section.
    #[error("the TD HOB needs {needed} bytes but the TD_HOB section holds {available}")]
    Overrun {
        /// HOB size.
        needed: u64,
        /// Section size.
        available: u64,
    },
    /// The firmware has no TD_HOB section.
    #[error("TDVF metadata has no TD_HOB section")]
    NoTdHob,
}

/// Build the TD HOB QEMU writes for `metadata` and `ram_size` bytes of RAM.
pub fn build_td_hob(metadata: &TdvfMetadata, ram_size: u64) -> Result<TdHob, TdHobError> {
    let hob_section = metadata.td_hob().ok_or(TdHobError::NoTdHob)?;
    let mut ranges = RamLayout::q35(ram_size).e820_ram();
    for section in metadata
        .sections
        .iter()
        .filter(|s| matches!(s.kind, SectionType::TdHob | SectionType::TempMem))
    {
        accept(&mut ranges, section.gpa, section.mem_size).map_err(|()| {
            TdHobError::SectionOutsideRam {
                index: section.index,
                kind: section.kind,
                start: section.gpa,
                end: section.gpa.saturating_add(section.mem_size),
                ram: describe(&RamLayout::q35(ram_size).e820_ram()),
            }
        })?;
    }
    ranges.sort_by_key(|r| r.start);

    let total = u64::from(PHIT_LEN)
        + u64::from(RESOURCE_DESCRIPTOR_LEN) * ranges.len() as u64
        + u64::from(END_OF_LIST_LEN);
    if total > hob_section.mem_size {
        return Err(TdHobError::Overrun {
            needed: total,
            available: hob_section.mem_size,
        });
    }

    let mut hob = Vec::with_capacity(total as usize);
    hob_header(&mut hob, HOB_TYPE_HANDOFF, PHIT_LEN);
    hob.extend_from_slice(&HANDOFF_TABLE_VERSION.to_le_bytes());
    hob.extend_from_slice(&0u32.to_le_bytes()); // BootMode: full configuration
    hob.extend_from_slice(&[0u8; 32]); // EfiMemoryTop/Bottom, EfiFreeMemoryTop/Bottom
    hob.extend_from_slice(&(hob_section.gpa + total).to_le_bytes()); // EfiEndOfHobList
    for range in &ranges {
        hob_header(
            &mut hob,
            HOB_TYPE_RESOURCE_DESCRIPTOR,
            RESOURCE_DESCRIPTOR_LEN,
        );
        hob.extend_from_slice(&[0u8; 16]); // Owner GUID
        let kind = if range.accepted {
            RESOURCE_SYSTEM_MEMORY
        } else {
            RESOURCE_MEMORY_UNACCEPTED
        };
        hob.extend_from_slice(&kind.to_le_bytes());
        hob.extend_from_slice(&RESOURCE_ATTRIBUTES.to_le_bytes());
        hob.extend_from_slice(&range.start.to_le_bytes());
        hob.extend_from_slice(&range.length.to_le_bytes());
    }
    // The end-of-list HOB (type 0xFFFF, length 8) is written by QEMU but not
    // hashed by OVMF; it is accounted for in `total` only.
    Ok(TdHob {
        address: hob_section.gpa,
        measured_bytes: hob,
        ranges,
    })
}

/// QEMU's `tdx_accept_ram_range`: find the first range overlapping
/// `[start, start+length)`; it must contain it; mark it added and split off
/// the unaccepted head and tail. Already-added ranges are left alone.
fn accept(ranges: &mut Vec<RamRange>, start: u64, length: u64) -> Result<(), ()> {
    let end = start.checked_add(length).ok_or(())?;
    let index = ranges
        .iter()
        .position(|r| end > r.start && start < r.end())
        .ok_or(())?;
    let range = ranges[index];
    if range.start > start || range.end() < end {
        return Err(());
    }
    if range.accepted {
        return Ok(());
    }
    ranges[index] = RamRange {
        start,
        length,
        accepted: true,
    };
    if start > range.start {
        ranges.push(RamRange {
            start: range.start,
            length: start - range.start,
            accepted: false,
        });
    }
    if end < range.end() {
        ranges.push(RamRange {
            start: end,
            length: range.end() - end,
            accepted: false,
        });
    }
    Ok(())
}

fn hob_header(hob: &mut Vec<u8>, hob_type: u16, length: u16) {
    hob.extend_from_slice(&hob_type.to_le_bytes());
    hob.extend_from_slice(&length.to_le_bytes());
    hob.extend_from_slice(&0u32.to_le_bytes());
}

fn describe(ranges: &[RamRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{:#x}..{:#x}", r.start, r.end()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::tdvf::PAGE_SIZE;

    #[test]
    fn q35_split() {
        assert_eq!(
            RamLayout::q35(1 << 30),
            RamLayout {
                below_4g: 1 << 30,
                above_4g: 0
            }
        );
        // Just below the limit everything stays low (2.75 GiB - 4 KiB).
        let just_below = Q35_LOWMEM_LIMIT - PAGE_SIZE;
        assert_eq!(RamLayout::q35(just_below).below_4g, just_below);
        assert_eq!(
            RamLayout::q35(8 << 30),
            RamLayout {
                below_4g: 2 << 30,
                above_4g: 6 << 30
            }
        );
    }

    #[test]
    fn accept_splits_and_refuses_straddling() {
        let mut ranges = RamLayout::q35(1 << 30).e820_ram();
        accept(&mut ranges, 0x80_0000, 0x6000).unwrap();
        assert_eq!(ranges.len(), 3);
        assert!(ranges[0].accepted && ranges[0].start == 0x80_0000);
        // Accepting inside an added range is a no-op, as in QEMU.
        accept(&mut ranges, 0x80_1000, 0x1000).unwrap();
        assert_eq!(ranges.len(), 3);
        // A range crossing the end of RAM is refused.
        assert!(accept(&mut ranges, (1 << 30) - 0x1000, 0x2000).is_err());
    }
}
