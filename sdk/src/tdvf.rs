//! TDVF metadata: where a TDX firmware image (TDVF, a TDX-enabled OVMF) asks
//! the VMM to place its sections, and which of them go into MRTD. The one
//! parser of it: `ee-host` checks a firmware with [`Descriptor::find`] before
//! it launches a trust domain, `ee-image` computes MRTD and the TD HOB from
//! [`TdvfMetadata::parse`].
//!
//! Layout (notes/tdx-facts.md "TDVF metadata"; Intel TDX Virtual Firmware
//! Design Guide section 11; edk2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`;
//! QEMU `hw/i386/tdvf.c`):
//!
//! - The image ends with an OVMF GUIDed table. Its footer GUID
//!   96b582de-1fb2-45f7-baea-a366c55a082d sits at `len-48..len-32`, the u16
//!   table length (counting the footer's own 18 bytes) at `len-50`.
//! - Entries are walked backwards from the footer, each `[data][u16 entry
//!   length][GUID]` with the length covering all three. The entry with GUID
//!   e47a6535-984a-4798-865e-4685a7bf8ec2 holds a u32 offset X (its data's
//!   last four bytes), counted back from the end of the file.
//! - At `len-X` is the descriptor: "TDVF", u32 length (16 + 32 per section),
//!   u32 version (1), u32 section count, then the 32-byte sections
//!   `{u32 data_offset, u32 raw_size, u64 gpa, u64 mem_size, u32 type,
//!   u32 attributes}`.
//!
//! [`TdvfMetadata::parse`] applies QEMU's checks, so an image QEMU refuses is
//! refused here too. Parsing never panics: every read is bounds-checked and
//! every refusal is a [`TdvfError`] naming the offset, what was found and
//! what was expected.

use std::fmt;

use thiserror::Error;

/// A GUID, stored as UEFI stores it: the first three fields little-endian,
/// the last eight bytes as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid([u8; 16]);

impl Guid {
    /// The GUID `d1-d2-d3-d4[0..2]-d4[2..8]` in its canonical text form.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// A GUID from its 16 on-disk bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Guid(bytes)
    }

    /// The 16 on-disk bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

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

/// Signature at the start of the TDVF descriptor.
pub const TDVF_SIGNATURE: &[u8; 4] = b"TDVF";

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

/// The header of the "TDVF" descriptor as the GUIDed table locates it, its
/// fields read but not checked (that is [`TdvfMetadata::parse`]'s job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// File offset of the descriptor.
    pub offset: usize,
    /// The length field (16 + 32 per section in a well-formed descriptor).
    pub length: u32,
    /// Descriptor version (1 in every TDVF so far).
    pub version: u32,
    /// Number of sections the descriptor lists.
    pub section_count: u32,
}

/// The parsed and checked TDVF descriptor.
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
    /// The footer GUID is not where OVMF puts it: not an OVMF build.
    #[error("no TDVF metadata: footer GUID {TABLE_FOOTER_GUID} not found at len-48 (offset {offset:#x}; found {found}): no OVMF GUIDed table footer, not an OVMF/TDVF build")]
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
    #[error("no TDVF metadata: the OVMF GUIDed table has no TDX metadata entry {TDX_METADATA_OFFSET_GUID} (an OVMF build without TDX support; it cannot start a TDX trust domain)")]
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
    /// A field runs past the end of the image. The checks above leave no
    /// way to reach this; it stands in for a panic on a bad read.
    #[error("TDVF {field} at offset {offset:#x}: {needed} bytes needed, the image has {len}")]
    Truncated {
        /// The field read.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// Its size.
        needed: usize,
        /// The image length.
        len: usize,
    },
}

impl Descriptor {
    /// Walk the GUIDed table of firmware `image` back from its footer to the
    /// TDX metadata entry, check the "TDVF" signature it points at and read
    /// the descriptor header. Enough to tell a TDVF from any other file; the
    /// sections are [`TdvfMetadata::parse`]'s.
    pub fn find(image: &[u8]) -> Result<Self, TdvfError> {
        let offset = find_descriptor_offset(image)?;
        let header = Reader::new(image, "descriptor header", offset, DESCRIPTOR_HEADER)?;
        let signature = header.bytes(0, 4)?;
        if signature != TDVF_SIGNATURE {
            return Err(TdvfError::Signature {
                offset,
                found: String::from_utf8_lossy(signature).into_owned(),
            });
        }
        Ok(Descriptor {
            offset,
            length: header.u32(4)?,
            version: header.u32(8)?,
            section_count: header.u32(12)?,
        })
    }
}

impl TdvfMetadata {
    /// Find and check the TDVF descriptor of firmware `image` and its sections.
    pub fn parse(image: &[u8]) -> Result<Self, TdvfError> {
        let Descriptor {
            offset: descriptor_offset,
            length,
            version,
            section_count: count,
        } = Descriptor::find(image)?;
        if version != 1 {
            return Err(TdvfError::Version {
                offset: descriptor_offset,
                version,
            });
        }
        let expected = DESCRIPTOR_HEADER as u64 + SECTION_ENTRY as u64 * u64::from(count);
        let fits = (descriptor_offset as u64)
            .checked_add(expected)
            .is_some_and(|end| end <= image.len() as u64);
        if u64::from(length) != expected || !fits {
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
        // `fits` bounds every entry by the image length, so `count` fits a usize.
        let sections = (0..count as usize)
            .map(|index| {
                let offset = descriptor_offset + DESCRIPTOR_HEADER + index * SECTION_ENTRY;
                let entry = Reader::new(image, "section entry", offset, SECTION_ENTRY)?;
                parse_section(image.len(), index, offset, &entry)
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

/// A bounds-checked little-endian view of one field of the image.
struct Reader<'a> {
    bytes: &'a [u8],
    field: &'static str,
    offset: usize,
    image_len: usize,
}

impl<'a> Reader<'a> {
    /// The `len` bytes of `field` at `offset`, or [`TdvfError::Truncated`].
    fn new(
        image: &'a [u8],
        field: &'static str,
        offset: usize,
        len: usize,
    ) -> Result<Self, TdvfError> {
        let bytes = offset
            .checked_add(len)
            .and_then(|end| image.get(offset..end))
            .ok_or(TdvfError::Truncated {
                field,
                offset,
                needed: len,
                len: image.len(),
            })?;
        Ok(Reader {
            bytes,
            field,
            offset,
            image_len: image.len(),
        })
    }

    fn bytes(&self, at: usize, n: usize) -> Result<&'a [u8], TdvfError> {
        at.checked_add(n)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or(TdvfError::Truncated {
                field: self.field,
                offset: self.offset.saturating_add(at),
                needed: n,
                len: self.image_len,
            })
    }

    fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], TdvfError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(at, N)?);
        Ok(out)
    }

    fn u16(&self, at: usize) -> Result<u16, TdvfError> {
        self.array(at).map(u16::from_le_bytes)
    }

    fn u32(&self, at: usize) -> Result<u32, TdvfError> {
        self.array(at).map(u32::from_le_bytes)
    }

    fn u64(&self, at: usize) -> Result<u64, TdvfError> {
        self.array(at).map(u64::from_le_bytes)
    }

    fn guid(&self, at: usize) -> Result<Guid, TdvfError> {
        self.array(at).map(Guid::from_bytes)
    }
}

/// Walk the GUIDed table back from its footer to the TDX metadata entry and
/// return the descriptor's file offset (with room for its 16-byte header).
fn find_descriptor_offset(image: &[u8]) -> Result<usize, TdvfError> {
    let len = image.len();
    if len < FOOTER_END_FROM_EOF + ENTRY_TAIL {
        return Err(TdvfError::TooShort { len });
    }
    // The footer is itself an entry: [u16 table length][GUID], ending 32
    // bytes before the end of the file.
    let table_end = len - FOOTER_END_FROM_EOF;
    let footer = Reader::new(image, "table footer", table_end - ENTRY_TAIL, ENTRY_TAIL)?;
    let footer_guid = footer.guid(2)?;
    if footer_guid != TABLE_FOOTER_GUID {
        return Err(TdvfError::NoFooter {
            offset: table_end - 16,
            found: footer_guid,
        });
    }
    let length_offset = table_end - ENTRY_TAIL;
    let table_len = usize::from(footer.u16(0)?);
    if table_len < ENTRY_TAIL || table_len > table_end {
        return Err(TdvfError::TableLength {
            offset: length_offset,
            length: table_len,
        });
    }
    let table_start = table_end - table_len;
    let mut end = table_end - ENTRY_TAIL;
    while end >= table_start + ENTRY_TAIL {
        let tail = Reader::new(image, "table entry", end - ENTRY_TAIL, ENTRY_TAIL)?;
        let guid = tail.guid(2)?;
        let entry_len = usize::from(tail.u16(0)?);
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
            let data_len = entry_len - ENTRY_TAIL;
            let Some(offset_at) = data_len.checked_sub(4).map(|at| data_start + at) else {
                return Err(TdvfError::MetadataEntryShort {
                    offset: data_start,
                    len: data_len,
                });
            };
            let from_end = Reader::new(image, "TDX metadata offset", offset_at, 4)?.u32(0)?;
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
    entry: &Reader<'_>,
) -> Result<Section, TdvfError> {
    let fail = |problem: String| TdvfError::Section {
        index,
        offset,
        problem,
    };
    let raw_type = entry.u32(24)?;
    let kind = SectionType::from_raw(raw_type).ok_or_else(|| {
        fail(format!(
            "unknown section type {raw_type} (known: 0 BFV, 1 CFV, 2 TD_HOB, 3 TEMP_MEM)"
        ))
    })?;
    let section = Section {
        index,
        data_offset: entry.u32(0)?,
        raw_size: entry.u32(4)?,
        gpa: entry.u64(8)?,
        mem_size: entry.u64(16)?,
        kind,
        attributes: entry.u32(28)?,
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
        match u64::from(section.data_offset).checked_add(section.mem_size) {
            Some(end) if end <= image_len as u64 => {}
            end => {
                let end = end.map_or_else(|| "2^64".to_owned(), |end| format!("{end:#x}"));
                return Err(fail(format!(
                    "data {:#x}..{end} extends past the end of the {image_len}-byte image (TDX needs the whole firmware image given with -bios, e.g. OVMF.fd, not a split OVMF_CODE file)",
                    section.data_offset
                )));
            }
        }
    }
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ------------------------------------------------ the table walk (host)

    /// The footer and metadata GUIDs in on-disk byte order, written out
    /// independently of [`Guid::from_fields`].
    const FOOTER_BYTES: [u8; 16] = [
        0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08,
        0x2d,
    ];
    const METADATA_BYTES: [u8; 16] = [
        0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47, 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e,
        0xc2,
    ];

    /// Build a firmware-shaped byte string for tests: `entries` (GUID, data) in
    /// table order, a TDVF descriptor header with no sections at
    /// `descriptor_at` when given, and the footer.
    fn synthetic_firmware(
        size: usize,
        entries: &[([u8; 16], Vec<u8>)],
        descriptor_at: Option<usize>,
    ) -> Vec<u8> {
        let header = descriptor_at.map(|at| (at, descriptor(32, &[])));
        firmware_with(size, entries, header)
    }

    /// A firmware of `size` bytes: the `descriptor` bytes at their offset when
    /// given, the table of `entries` and the footer, 32 bytes of reset vector.
    fn firmware_with(
        size: usize,
        entries: &[([u8; 16], Vec<u8>)],
        descriptor: Option<(usize, Vec<u8>)>,
    ) -> Vec<u8> {
        let mut table = Vec::new();
        for (guid, data) in entries {
            table.extend_from_slice(data);
            let entry_len = (data.len() + ENTRY_TAIL) as u16;
            table.extend_from_slice(&entry_len.to_le_bytes());
            table.extend_from_slice(guid);
        }
        let table_len = (table.len() + ENTRY_TAIL) as u16;
        table.extend_from_slice(&table_len.to_le_bytes());
        table.extend_from_slice(&FOOTER_BYTES);
        table.extend_from_slice(&[0xf4; FOOTER_END_FROM_EOF]);
        let mut out = vec![0u8; size.saturating_sub(table.len())];
        if let Some((at, descriptor)) = descriptor {
            out[at..at + descriptor.len()].copy_from_slice(&descriptor);
        }
        out.extend_from_slice(&table);
        out
    }

    /// The TDVF metadata table entry for a descriptor at `descriptor_at` in a
    /// file of `size` bytes (data = u32 offset from the end).
    fn metadata_entry(size: usize, descriptor_at: usize) -> ([u8; 16], Vec<u8>) {
        let from_end = (size - descriptor_at) as u32;
        (METADATA_BYTES, from_end.to_le_bytes().to_vec())
    }

    fn guid_text(bytes: &[u8; 16]) -> String {
        let b = bytes;
        format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
            b[3],
            b[2],
            b[1],
            b[0],
            b[5],
            b[4],
            b[7],
            b[6],
            hex::encode(&b[8..10]),
            hex::encode(&b[10..16])
        )
    }

    #[test]
    fn guid_constants_match_their_canonical_text() {
        assert_eq!(
            guid_text(&FOOTER_BYTES),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            guid_text(&METADATA_BYTES),
            "e47a6535-984a-4798-865e-4685a7bf8ec2"
        );
        assert_eq!(TABLE_FOOTER_GUID.as_bytes(), &FOOTER_BYTES);
        assert_eq!(TDX_METADATA_OFFSET_GUID.as_bytes(), &METADATA_BYTES);
        assert_eq!(
            TABLE_FOOTER_GUID.to_string(),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            format!("{TDX_METADATA_OFFSET_GUID:?}"),
            "e47a6535-984a-4798-865e-4685a7bf8ec2"
        );
    }

    #[test]
    fn finds_descriptor_behind_other_entries() {
        let other = ([7u8; 16], vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let fw = synthetic_firmware(8192, &[metadata_entry(8192, 1024), other], Some(1024));
        let d = Descriptor::find(&fw).unwrap();
        assert_eq!((d.offset, d.version, d.section_count), (1024, 1, 0));
        assert_eq!(d.length, 32);
    }

    #[test]
    fn rejects_plain_firmware_and_bad_tables() {
        assert_eq!(
            Descriptor::find(&[0; 10]),
            Err(TdvfError::TooShort { len: 10 })
        );
        assert!(matches!(
            Descriptor::find(&[0; 4096]),
            Err(TdvfError::NoFooter { offset: 4048, .. })
        ));
        let no_tdvf = synthetic_firmware(4096, &[([7u8; 16], vec![0; 4])], None);
        assert_eq!(Descriptor::find(&no_tdvf), Err(TdvfError::NoMetadataEntry));
        let wrong_target = synthetic_firmware(4096, &[metadata_entry(4096, 100)], None);
        assert_eq!(
            Descriptor::find(&wrong_target),
            Err(TdvfError::Signature {
                offset: 100,
                found: "\0\0\0\0".to_owned()
            })
        );
        // An entry length that runs past the table start is reported, not followed.
        let mut broken = synthetic_firmware(4096, &[([7u8; 16], vec![0; 4])], None);
        let entry_len_at = 4096 - 32 - 18 - 18;
        broken[entry_len_at..entry_len_at + 2].copy_from_slice(&500u16.to_le_bytes());
        assert!(matches!(
            Descriptor::find(&broken),
            Err(TdvfError::EntryLength { length: 500, .. })
        ));
    }

    #[test]
    fn rejects_bad_metadata_entries_and_offsets() {
        // A metadata entry with fewer than four data bytes.
        let short = synthetic_firmware(4096, &[(METADATA_BYTES, vec![1, 2])], None);
        assert!(matches!(
            Descriptor::find(&short),
            Err(TdvfError::MetadataEntryShort { len: 2, .. })
        ));
        // Offsets 0, past the start of the file, and too close to the end
        // for a descriptor header.
        for from_end in [0u32, 4097, u32::MAX, 8] {
            let fw = synthetic_firmware(
                4096,
                &[(METADATA_BYTES, from_end.to_le_bytes().to_vec())],
                None,
            );
            assert_eq!(
                Descriptor::find(&fw),
                Err(TdvfError::DescriptorOffset {
                    from_end,
                    len: 4096
                }),
                "{from_end}"
            );
        }
        // A table length that reaches before the start of the file, and one
        // smaller than the footer itself.
        for length in [5000u16, 3] {
            let mut fw = synthetic_firmware(4096, &[], None);
            fw[4096 - 50..4096 - 48].copy_from_slice(&length.to_le_bytes());
            assert_eq!(
                Descriptor::find(&fw),
                Err(TdvfError::TableLength {
                    offset: 4096 - 50,
                    length: usize::from(length)
                })
            );
        }
    }

    /// Debian's OVMF (trixie, 2025.02) is built with TDX support, so it must pass.
    #[test]
    fn debian_ovmf_has_tdvf_metadata_when_installed() {
        let path = "/usr/share/ovmf/OVMF.fd";
        let Ok(fw) = std::fs::read(path) else {
            ee_testkit::unavailable(
                "tdvf: debian_ovmf_has_tdvf_metadata_when_installed",
                &format!("{path} is not installed (Debian package ovmf; scripts/install-deps installs it)"),
            );
            return;
        };
        let d = Descriptor::find(&fw).unwrap();
        assert_eq!(d.version, 1);
        assert!(d.section_count > 0);
        let meta = TdvfMetadata::parse(&fw).unwrap();
        assert_eq!(meta.descriptor_offset, d.offset);
        assert_eq!(meta.sections.len(), d.section_count as usize);
    }

    // ------------------------------------------ the full parse (ee-image)

    // The tiny firmware is the test kit's, shared with ee-image's MRTD tests.
    use ee_testkit::firmware::{
        descriptor, tiny_firmware, RawSection, TINY_DESCRIPTOR_AT, TINY_LEN, TINY_SECTIONS,
    };

    fn parse_error(fw: &[u8]) -> String {
        TdvfMetadata::parse(fw).unwrap_err().to_string()
    }

    #[test]
    fn parses_sections_in_descriptor_order() {
        let fw = tiny_firmware(&TINY_SECTIONS);
        let meta = TdvfMetadata::parse(&fw).unwrap();
        assert_eq!(meta.descriptor_offset, TINY_DESCRIPTOR_AT);
        let kinds: Vec<_> = meta.sections.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionType::Bfv,
                SectionType::Cfv,
                SectionType::TdHob,
                SectionType::TempMem
            ]
        );
        let bfv = meta.sections[0];
        assert_eq!(
            (
                bfv.index,
                bfv.data_offset,
                bfv.raw_size,
                bfv.gpa,
                bfv.mem_size
            ),
            (0, 0x4000, 0x2000, 0xffc0_0000, 0x2000)
        );
        assert!(bfv.mr_extend() && !bfv.page_aug());
        assert_eq!(bfv.pages(), 2);
        assert_eq!(meta.td_hob().unwrap().gpa, 0x80_9000);
        assert_eq!(meta.cfv().unwrap().index, 1);
        let d = Descriptor::find(&fw).unwrap();
        assert_eq!(
            (d.offset, d.length, d.version, d.section_count),
            (TINY_DESCRIPTOR_AT, 16 + 32 * 4, 1, 4)
        );
        assert_eq!(
            serde_json::to_string(&SectionType::TdHob).unwrap(),
            "\"TD_HOB\""
        );
    }

    #[test]
    fn tdvf_errors_name_the_offset() {
        let mut no_footer = tiny_firmware(&TINY_SECTIONS);
        no_footer[TINY_LEN - 40] ^= 0xff;
        let e = parse_error(&no_footer);
        assert!(
            e.contains("no TDVF metadata: footer GUID") && e.contains("len-48"),
            "{e}"
        );
        let e = parse_error(&vec![0u8; 1 << 20]);
        assert!(e.contains("footer GUID"), "{e}");

        let mut no_entry = tiny_firmware(&TINY_SECTIONS);
        // Corrupt the TDX metadata entry's GUID: the walk finds no entry.
        no_entry[TINY_LEN - 32 - 18 - 16] ^= 0xff;
        let e = parse_error(&no_entry);
        assert!(e.contains("no TDX metadata entry"), "{e}");

        let mut bad_signature = tiny_firmware(&TINY_SECTIONS);
        bad_signature[TINY_DESCRIPTOR_AT] = b'X';
        let e = parse_error(&bad_signature);
        assert!(
            e.contains("0x8000") && e.contains("expected \"TDVF\""),
            "{e}"
        );

        let unaligned = [
            TINY_SECTIONS[0],
            TINY_SECTIONS[1],
            (0, 0, 0x80_9000, 0x1800, 2, 0),
        ];
        let e = parse_error(&tiny_firmware(&unaligned));
        assert!(e.contains("section 2") && e.contains("4 KiB"), "{e}");

        let past_end = [
            (0xf000, 0x2000, 0xffc0_0000, 0x2000, 0, 1),
            TINY_SECTIONS[2],
        ];
        let e = parse_error(&tiny_firmware(&past_end));
        assert!(e.contains("section 0") && e.contains("past the end"), "{e}");

        // PAGE.AUG parses (ee-image refuses it when computing MRTD).
        let aug = [TINY_SECTIONS[0], (0, 0, 0x80_9000, 0x2000, 2, 2)];
        let meta = TdvfMetadata::parse(&tiny_firmware(&aug)).unwrap();
        assert!(meta.sections[1].page_aug());
    }

    #[test]
    fn section_and_descriptor_checks() {
        let mut v2 = tiny_firmware(&TINY_SECTIONS);
        v2[TINY_DESCRIPTOR_AT + 8] = 2;
        assert_eq!(
            TdvfMetadata::parse(&v2),
            Err(TdvfError::Version {
                offset: TINY_DESCRIPTOR_AT,
                version: 2
            })
        );

        let mut bad_length = tiny_firmware(&TINY_SECTIONS);
        bad_length[TINY_DESCRIPTOR_AT + 4] = 17;
        assert!(matches!(
            TdvfMetadata::parse(&bad_length),
            Err(TdvfError::DescriptorLength {
                length: 17,
                count: 4,
                expected: 144,
                ..
            })
        ));

        // A count (and matching length) that runs past the end of the file.
        let mut too_many = tiny_firmware(&TINY_SECTIONS);
        let count = 0x0700_0000u32;
        too_many[TINY_DESCRIPTOR_AT + 4..TINY_DESCRIPTOR_AT + 8]
            .copy_from_slice(&(16 + 32 * count).to_le_bytes());
        too_many[TINY_DESCRIPTOR_AT + 12..TINY_DESCRIPTOR_AT + 16]
            .copy_from_slice(&count.to_le_bytes());
        assert!(matches!(
            TdvfMetadata::parse(&too_many),
            Err(TdvfError::DescriptorLength { .. })
        ));

        assert_eq!(
            TdvfMetadata::parse(&tiny_firmware(&[(0, 0, 0x80_9000, 0x2000, 2, 0)])),
            Err(TdvfError::TooFewSections {
                offset: TINY_DESCRIPTOR_AT,
                count: 1
            })
        );
        assert_eq!(
            TdvfMetadata::parse(&tiny_firmware(&TINY_SECTIONS[..2])),
            Err(TdvfError::NoTdHob)
        );

        let cases: [(RawSection, &str); 6] = [
            ((0, 0, 0x1000, 0x1000, 9, 0), "unknown section type 9"),
            (
                (0, 0x2000, 0x1000, 0x1000, 1, 0),
                "smaller than raw data size",
            ),
            ((0, 0, 0xffff_ffff_ffff_f000, 0x2000, 3, 0), "overflows"),
            (
                (0, 0, 0x1000, 0x1000, 0, 0),
                "Bfv section with raw data size 0",
            ),
            ((0, 0x10, 0x1000, 0x1000, 3, 0), "(must be 0)"),
            // data_offset + mem_size overflows u64: refused, not wrapped.
            (
                (0xffff_ffff, 0x1000, 0, 0xffff_ffff_ffff_f000, 1, 0),
                "past the end",
            ),
        ];
        for (section, expected) in cases {
            let e = parse_error(&tiny_firmware(&[section, TINY_SECTIONS[2]]));
            assert!(
                e.starts_with("TDVF section 0 (entry at offset 0x8010): ") && e.contains(expected),
                "{e}"
            );
        }
    }

    /// Every prefix of a valid image, and every single-byte corruption of its
    /// table, descriptor and sections, is refused or parsed without a panic.
    #[test]
    fn malformed_images_never_panic() {
        let fw = tiny_firmware(&TINY_SECTIONS);
        for len in (0..fw.len()).step_by(61).chain(fw.len() - 64..fw.len()) {
            let _ = TdvfMetadata::parse(&fw[..len]);
            let _ = Descriptor::find(&fw[..len]);
        }
        let interesting = (TINY_DESCRIPTOR_AT..TINY_DESCRIPTOR_AT + 16 + 32 * 4)
            .chain(TINY_LEN - 32 - 80..TINY_LEN);
        for at in interesting {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                let mut bad = fw.clone();
                bad[at] = value;
                let _ = TdvfMetadata::parse(&bad);
            }
        }
    }
}
