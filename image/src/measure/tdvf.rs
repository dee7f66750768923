//! TDVF metadata: where a TDX firmware image asks the VMM to place its
//! sections, and which of them go into MRTD.
//!
//! Layout (notes/tdx-facts.md "Offline measurement"; Intel TDX Virtual
//! Firmware Design Guide section 11; QEMU `hw/i386/tdvf.c`):
//!
//! - The image ends with an OVMF GUIDed table. Its footer GUID
//!   96b582de-1fb2-45f7-baea-a366c55a082d sits at `len-48..len-32`, the u16
//!   table length (counting the footer's own 18 bytes) at `len-50`.
//! - Entries are walked backwards from the footer, each `[data][u16 entry
//!   length][GUID]` with the length covering all three. The entry with GUID
//!   e47a6535-984a-4798-865e-4685a7bf8ec2 holds a u32 offset X (its data's
//!   last four bytes), counted back from the end of the file.
//! - At `len-X` is the descriptor: "TDVF", u32 length (16 + 32 per section),
//!   u32 version (1), u32 section count, then the 32-byte sections.
//!
//! Checks follow QEMU's, so an image QEMU refuses is refused here too.

use thiserror::Error;

use super::efi::Guid;

/// OVMF GUIDed table footer.
pub const TABLE_FOOTER_GUID: Guid = Guid::from_fields(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);

/// Table entry holding the offset of the TDVF descriptor.
pub const TDX_METADATA_OFFSET_GUID: Guid = Guid::from_fields(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// The TDX page size; section addresses and sizes are multiples of it.
pub const PAGE_SIZE: u64 = 4096;

/// Section attribute bit 0: the VMM extends the section's bytes into MRTD.
pub const ATTRIBUTE_MR_EXTEND: u32 = 1 << 0;
/// Section attribute bit 1: the VMM may add the pages with PAGE.AUG
/// (unmeasured) instead of PAGE.ADD.
pub const ATTRIBUTE_PAGE_AUG: u32 = 1 << 1;

/// Bytes from the end of the footer GUID to the end of the file (the reset
/// vector and padding follow it).
const FOOTER_END_FROM_EOF: usize = 32;
/// A GUID and the u16 length before it: the tail of every table entry.
const ENTRY_TAIL: usize = 18;
/// Descriptor header: signature, length, version, count.
const DESCRIPTOR_HEADER: usize = 16;
/// One section entry.
const SECTION_ENTRY: usize = 32;

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SectionType {
    /// Boot firmware volume: the firmware code.
    Bfv,
    /// Configuration firmware volume: the initial UEFI variable store.
    Cfv,
    /// Where the VMM writes the TD HOB (memory map) for the firmware.
    TdHob,
    /// Zeroed memory the firmware uses before it accepts RAM.
    TempMem,
}

impl SectionType {
    fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(SectionType::Bfv),
            1 => Some(SectionType::Cfv),
            2 => Some(SectionType::TdHob),
            3 => Some(SectionType::TempMem),
            _ => None,
        }
    }

    /// Whether the section's bytes come from the image (BFV, CFV) rather
    /// than being memory the VMM provides.
    pub fn has_image_data(self) -> bool {
        matches!(self, SectionType::Bfv | SectionType::Cfv)
    }
}

/// One TDVF section entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Position in the descriptor (the order the VMM adds sections in).
    pub index: usize,
    /// Offset of the section's bytes in the image.
    pub data_offset: u32,
    /// Number of bytes in the image.
    pub raw_size: u32,
    /// Guest physical address.
    pub gpa: u64,
    /// Size in guest memory (a multiple of [`PAGE_SIZE`]).
    pub mem_size: u64,
    /// What the section holds.
    pub kind: SectionType,
    /// Attribute bits ([`ATTRIBUTE_MR_EXTEND`], [`ATTRIBUTE_PAGE_AUG`]).
    pub attributes: u32,
}

impl Section {
    /// Whether the VMM extends the section's bytes into MRTD.
    pub fn mr_extend(&self) -> bool {
        self.attributes & ATTRIBUTE_MR_EXTEND != 0
    }

    /// Whether the section asks for PAGE.AUG instead of PAGE.ADD.
    pub fn page_aug(&self) -> bool {
        self.attributes & ATTRIBUTE_PAGE_AUG != 0
    }

    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.mem_size / PAGE_SIZE
    }
}

/// The parsed TDVF descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdvfMetadata {
    /// File offset of the "TDVF" descriptor.
    pub descriptor_offset: usize,
    /// Sections in descriptor order.
    pub sections: Vec<Section>,
}

/// Why an image has no usable TDVF metadata. Offsets are file offsets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TdvfError {
    /// Too short to hold the table footer.
    #[error("no TDVF metadata: {len} bytes is too short for an OVMF GUIDed table footer")]
    TooShort {
        /// File length.
        len: usize,
    },
    /// The footer GUID is not where OVMF puts it.
    #[error("no TDVF metadata: footer GUID {TABLE_FOOTER_GUID} not found at len-48 (offset {offset:#x}; found {found})")]
    NoFooter {
        /// Where the GUID was expected.
        offset: usize,
        /// What is there.
        found: Guid,
    },
    /// The table length does not fit the file.
    #[error("no TDVF metadata: GUIDed table length {length} at offset {offset:#x} is smaller than 18 or reaches before the start of the file")]
    TableLength {
        /// The u16 length's offset.
        offset: usize,
        /// Its value.
        length: usize,
    },
    /// A table entry's length is impossible.
    #[error("no TDVF metadata: GUIDed table entry {guid} ending at offset {end:#x} has length {length} (must be 18..={available})")]
    EntryLength {
        /// The entry's GUID.
        guid: Guid,
        /// Offset just past the entry.
        end: usize,
        /// The length field.
        length: usize,
        /// Bytes left in the table.
        available: usize,
    },
    /// The table has no TDX metadata entry: an OVMF build without TDX.
    #[error("no TDVF metadata: the OVMF GUIDed table has no TDX metadata entry {TDX_METADATA_OFFSET_GUID} (an OVMF build without TDX support)")]
    NoMetadataEntry,
    /// The TDX metadata entry is too short to hold its offset.
    #[error("TDVF metadata entry at offset {offset:#x} holds {len} data bytes, needs 4")]
    MetadataEntryShort {
        /// Offset of the entry's data.
        offset: usize,
        /// Data length.
        len: usize,
    },
    /// The descriptor offset points outside the file.
    #[error("TDVF descriptor offset len-{from_end:#x} is outside the {len}-byte file")]
    DescriptorOffset {
        /// The offset counted from the end.
        from_end: u32,
        /// File length.
        len: usize,
    },
    /// No "TDVF" signature at the descriptor.
    #[error("TDVF descriptor at offset {offset:#x}: signature {found:?}, expected \"TDVF\"")]
    Signature {
        /// Descriptor offset.
        offset: usize,
        /// The four bytes found.
        found: String,
    },
    /// A descriptor version other than 1.
    #[error("TDVF descriptor at offset {offset:#x}: version {version}, only 1 is defined")]
    Version {
        /// Descriptor offset.
        offset: usize,
        /// The version found.
        version: u32,
    },
    /// The descriptor's length, count and file size disagree.
    #[error("TDVF descriptor at offset {offset:#x}: length {length} for {count} sections (expected {expected}, and the descriptor must fit in the file)")]
    DescriptorLength {
        /// Descriptor offset.
        offset: usize,
        /// The length field.
        length: u32,
        /// The section count.
        count: u32,
        /// 16 + 32 * count.
        expected: u64,
    },
    /// QEMU needs at least two sections (BFV and TD HOB).
    #[error(
        "TDVF descriptor at offset {offset:#x} lists {count} sections; at least 2 are required"
    )]
    TooFewSections {
        /// Descriptor offset.
        offset: usize,
        /// The section count.
        count: u32,
    },
    /// A section entry is malformed.
    #[error("TDVF section {index} (entry at offset {offset:#x}): {problem}")]
    Section {
        /// Section index.
        index: usize,
        /// Offset of the 32-byte entry.
        offset: usize,
        /// What is wrong.
        problem: String,
    },
    /// No TD_HOB section: the VMM would not know where to put the memory map.
    #[error("TDVF metadata has no TD_HOB section")]
    NoTdHob,
}

impl TdvfMetadata {
    /// Find and check the TDVF descriptor of firmware `image`.
    pub fn parse(image: &[u8]) -> Result<Self, TdvfError> {
        let descriptor_offset = find_descriptor(image)?;
        let header = image
            .get(descriptor_offset..descriptor_offset + DESCRIPTOR_HEADER)
            .ok_or(TdvfError::DescriptorOffset {
                from_end: (image.len() - descriptor_offset) as u32,
                len: image.len(),
            })?;
        if &header[0..4] != b"TDVF" {
            return Err(TdvfError::Signature {
                offset: descriptor_offset,
                found: String::from_utf8_lossy(&header[0..4]).into_owned(),
            });
        }
        let length = le_u32(header, 4);
        let version = le_u32(header, 8);
        let count = le_u32(header, 12);
        if version != 1 {
            return Err(TdvfError::Version {
                offset: descriptor_offset,
                version,
            });
        }
        let expected = DESCRIPTOR_HEADER as u64 + SECTION_ENTRY as u64 * u64::from(count);
        if u64::from(length) != expected || descriptor_offset as u64 + expected > image.len() as u64
        {
            return Err(TdvfError::DescriptorLength {
                offset: descriptor_offset,
                length,
                count,
                expected,
            });
        }
        if count < 2 {
            return Err(TdvfError::TooFewSections {
                offset: descriptor_offset,
                count,
            });
        }
        let entries =
            &image[descriptor_offset + DESCRIPTOR_HEADER..descriptor_offset + expected as usize];
        let sections = entries
            .chunks_exact(SECTION_ENTRY)
            .enumerate()
            .map(|(index, entry)| {
                let offset = descriptor_offset + DESCRIPTOR_HEADER + index * SECTION_ENTRY;
                parse_section(image.len(), index, offset, entry)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !sections.iter().any(|s| s.kind == SectionType::TdHob) {
            return Err(TdvfError::NoTdHob);
        }
        Ok(TdvfMetadata {
            descriptor_offset,
            sections,
        })
    }

    /// The first TD_HOB section (the one QEMU fills).
    pub fn td_hob(&self) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == SectionType::TdHob)
    }

    /// The first CFV section.
    pub fn cfv(&self) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == SectionType::Cfv)
    }
}

/// Walk the GUIDed table back from its footer to the TDX metadata entry and
/// return the descriptor's file offset.
fn find_descriptor(image: &[u8]) -> Result<usize, TdvfError> {
    let len = image.len();
    if len < FOOTER_END_FROM_EOF + ENTRY_TAIL {
        return Err(TdvfError::TooShort { len });
    }
    // The footer is itself an entry: [u16 table length][GUID], ending 32
    // bytes before the end of the file.
    let table_end = len - FOOTER_END_FROM_EOF;
    let footer_guid = guid_at(image, table_end - 16);
    if footer_guid != TABLE_FOOTER_GUID {
        return Err(TdvfError::NoFooter {
            offset: table_end - 16,
            found: footer_guid,
        });
    }
    let length_offset = table_end - ENTRY_TAIL;
    let table_len = usize::from(le_u16(image, length_offset));
    if table_len < ENTRY_TAIL || table_len > table_end {
        return Err(TdvfError::TableLength {
            offset: length_offset,
            length: table_len,
        });
    }
    let table_start = table_end - table_len;
    let mut end = table_end - ENTRY_TAIL;
    while end >= table_start + ENTRY_TAIL {
        let guid = guid_at(image, end - 16);
        let entry_len = usize::from(le_u16(image, end - ENTRY_TAIL));
        let available = end - table_start;
        if entry_len < ENTRY_TAIL || entry_len > available {
            return Err(TdvfError::EntryLength {
                guid,
                end,
                length: entry_len,
                available,
            });
        }
        if guid == TDX_METADATA_OFFSET_GUID {
            let data_start = end - entry_len;
            let data = &image[data_start..end - ENTRY_TAIL];
            let Some(offset_bytes) = data.len().checked_sub(4).map(|at| &data[at..]) else {
                return Err(TdvfError::MetadataEntryShort {
                    offset: data_start,
                    len: data.len(),
                });
            };
            let from_end = le_u32(offset_bytes, 0);
            return usize::try_from(from_end)
                .ok()
                .and_then(|x| len.checked_sub(x))
                .filter(|&offset| from_end != 0 && offset + DESCRIPTOR_HEADER <= len)
                .ok_or(TdvfError::DescriptorOffset { from_end, len });
        }
        end -= entry_len;
    }
    Err(TdvfError::NoMetadataEntry)
}

/// Decode and check one 32-byte section entry.
fn parse_section(
    image_len: usize,
    index: usize,
    offset: usize,
    entry: &[u8],
) -> Result<Section, TdvfError> {
    let fail = |problem: String| TdvfError::Section {
        index,
        offset,
        problem,
    };
    let raw_type = le_u32(entry, 24);
    let kind = SectionType::from_raw(raw_type).ok_or_else(|| {
        fail(format!(
            "unknown section type {raw_type} (known: 0 BFV, 1 CFV, 2 TD_HOB, 3 TEMP_MEM)"
        ))
    })?;
    let section = Section {
        index,
        data_offset: le_u32(entry, 0),
        raw_size: le_u32(entry, 4),
        gpa: le_u64(entry, 8),
        mem_size: le_u64(entry, 16),
        kind,
        attributes: le_u32(entry, 28),
    };
    if section.mem_size < u64::from(section.raw_size) {
        return Err(fail(format!(
            "memory size {:#x} is smaller than raw data size {:#x}",
            section.mem_size, section.raw_size
        )));
    }
    if section.gpa % PAGE_SIZE != 0 || section.mem_size % PAGE_SIZE != 0 {
        return Err(fail(format!(
            "address {:#x} or memory size {:#x} is not a multiple of 4 KiB",
            section.gpa, section.mem_size
        )));
    }
    if section.gpa.checked_add(section.mem_size).is_none() {
        return Err(fail(format!(
            "address {:#x} + size {:#x} overflows",
            section.gpa, section.mem_size
        )));
    }
    match (kind.has_image_data(), section.raw_size) {
        (true, 0) => return Err(fail(format!("{kind:?} section with raw data size 0"))),
        (false, size) if size != 0 => {
            return Err(fail(format!(
                "{kind:?} section with raw data size {size:#x} (must be 0)"
            )))
        }
        _ => {}
    }
    if kind.has_image_data() {
        // QEMU copies (and measures) `mem_size` bytes starting at the data
        // offset, so all of them must be in the image.
        let end = u64::from(section.data_offset) + section.mem_size;
        if end > image_len as u64 {
            return Err(fail(format!(
                "data {:#x}..{end:#x} extends past the end of the {image_len}-byte image (TDX needs the whole firmware image given with -bios, e.g. OVMF.fd, not a split OVMF_CODE file)",
                section.data_offset
            )));
        }
    }
    Ok(section)
}

/// The GUID at `offset` (caller checked the bounds).
fn guid_at(bytes: &[u8], offset: usize) -> Guid {
    let mut g = [0u8; 16];
    g.copy_from_slice(&bytes[offset..offset + 16]);
    Guid::from_bytes(g)
}

fn le_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(b)
}
