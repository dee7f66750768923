//! A minimal check that a firmware file is a TDVF (TDX virtual firmware):
//! it carries the OVMF GUIDed table with a TDVF metadata entry pointing at a
//! "TDVF" descriptor.
//!
//! Layout (`notes/tdx-facts.md`, "TDVF metadata"; edk2
//! `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`): the file ends with the
//! table footer GUID at `len-48..len-32`, preceded by the table's u16 length
//! at `len-50`. Entries sit before it, each `[data][u16 entry length][GUID]`
//! and are walked backwards. The TDVF metadata entry's data ends with a u32
//! offset X counted from the end of the file; the descriptor starts at
//! `len-X` with the ASCII signature "TDVF", u32 length, u32 version, u32
//! section count. Full parsing (sections, MRTD) is `ee-image`'s job; the
//! host only needs to refuse a firmware that cannot start a trust domain.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// OVMF GUIDed table footer, 96b582de-1fb2-45f7-baea-a366c55a082d, in its
/// on-disk byte order (first three fields little-endian).
pub const TABLE_FOOTER_GUID: [u8; 16] = [
    0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d,
];
/// TDVF metadata entry, e47a6535-984a-4798-865e-4685a7bf8ec2, on-disk order.
pub const TDVF_METADATA_GUID: [u8; 16] = [
    0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47, 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2,
];
/// Signature at the start of the TDVF descriptor.
pub const TDVF_SIGNATURE: &[u8; 4] = b"TDVF";

/// Largest firmware file read (TDVF builds are 2-4 MiB).
pub const MAX_FIRMWARE_BYTES: u64 = 64 * 1024 * 1024;

/// Size of a GUID plus the u16 length that precedes it in a table entry.
const ENTRY_HEADER: usize = 18;
/// The footer GUID ends 32 bytes before the end of the file (the reset vector follows).
const FOOTER_END_FROM_EOF: usize = 32;

/// What the check found in a TDVF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfDescriptor {
    /// Offset of the descriptor in the file.
    pub offset: usize,
    /// Descriptor version (1 in every TDVF so far).
    pub version: u32,
    /// Number of sections the descriptor lists.
    pub sections: u32,
}

/// Why a file is not a TDVF. Messages give the offset that was checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TdvfError {
    /// The file is too short to hold the table footer.
    #[error("{len} bytes is too short for an OVMF firmware (no GUIDed table footer)")]
    TooShort {
        /// File length.
        len: usize,
    },
    /// The footer GUID is not where OVMF puts it.
    #[error("no OVMF GUIDed table footer (GUID 96b582de-1fb2-45f7-baea-a366c55a082d) at offset {offset}: not an OVMF/TDVF build")]
    NoFooter {
        /// Where the GUID was expected.
        offset: usize,
    },
    /// The table length or an entry length is inconsistent.
    #[error("OVMF GUIDed table is malformed at offset {offset}: {problem}")]
    Malformed {
        /// Offset of the bad length field.
        offset: usize,
        /// What is wrong.
        problem: String,
    },
    /// The table has no TDVF metadata entry.
    #[error("the OVMF GUIDed table has no TDVF metadata entry (GUID e47a6535-984a-4798-865e-4685a7bf8ec2): this firmware cannot start a TDX trust domain")]
    NoMetadata,
    /// The metadata entry points at something that is not a descriptor.
    #[error("TDVF metadata points at offset {offset}, which does not hold a \"TDVF\" descriptor")]
    BadDescriptor {
        /// The offset the entry gave.
        offset: usize,
    },
}

/// Why a firmware file failed the check.
#[derive(Debug, Error)]
pub enum FirmwareFileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The firmware path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is implausibly large for a firmware.
    #[error(
        "{path} is {size} bytes, more than the {MAX_FIRMWARE_BYTES}-byte limit for a firmware"
    )]
    TooLarge {
        /// The firmware path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not a TDVF.
    #[error("{path}: {source}")]
    NotTdvf {
        /// The firmware path.
        path: PathBuf,
        /// What the check found.
        source: TdvfError,
    },
}

/// Read the firmware at `path` and check it with [`find_descriptor`].
pub fn check_file(path: &Path) -> Result<TdvfDescriptor, FirmwareFileError> {
    let read_error = |source| FirmwareFileError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FIRMWARE_BYTES {
        return Err(FirmwareFileError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    find_descriptor(&bytes).map_err(|source| FirmwareFileError::NotTdvf {
        path: path.to_owned(),
        source,
    })
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<usize> {
    let b = bytes.get(offset..offset.checked_add(2)?)?;
    Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Check `firmware` for the TDVF metadata and return its descriptor.
pub fn find_descriptor(firmware: &[u8]) -> Result<TdvfDescriptor, TdvfError> {
    let len = firmware.len();
    let footer_end = len
        .checked_sub(FOOTER_END_FROM_EOF)
        .filter(|end| *end >= ENTRY_HEADER)
        .ok_or(TdvfError::TooShort { len })?;
    let footer_guid = footer_end - 16;
    if firmware.get(footer_guid..footer_end) != Some(&TABLE_FOOTER_GUID[..]) {
        return Err(TdvfError::NoFooter {
            offset: footer_guid,
        });
    }
    let table_len_at = footer_end - ENTRY_HEADER;
    let table_len = u16_at(firmware, table_len_at).unwrap_or(0);
    // The table length counts every entry plus the footer's own GUID and length.
    let table_start = footer_end
        .checked_sub(table_len)
        .filter(|_| table_len >= ENTRY_HEADER)
        .ok_or_else(|| TdvfError::Malformed {
            offset: table_len_at,
            problem: format!("table length {table_len} does not fit the file"),
        })?;
    let mut entry_end = table_len_at;
    while entry_end >= table_start + ENTRY_HEADER {
        let guid_at = entry_end - 16;
        let entry_len_at = entry_end - ENTRY_HEADER;
        let entry_len = u16_at(firmware, entry_len_at).unwrap_or(0);
        if entry_len < ENTRY_HEADER || entry_end - table_start < entry_len {
            return Err(TdvfError::Malformed {
                offset: entry_len_at,
                problem: format!("entry length {entry_len} does not fit the table"),
            });
        }
        if firmware.get(guid_at..entry_end) == Some(&TDVF_METADATA_GUID[..]) {
            // The entry's data ends with the u32 offset of the descriptor from the end.
            let from_end = entry_len_at
                .checked_sub(4)
                .filter(|at| *at >= entry_end - entry_len)
                .and_then(|at| u32_at(firmware, at))
                .ok_or_else(|| TdvfError::Malformed {
                    offset: entry_len_at,
                    problem: "TDVF metadata entry has no offset".to_owned(),
                })?;
            let offset = usize::try_from(from_end)
                .ok()
                .and_then(|x| len.checked_sub(x))
                .ok_or(TdvfError::BadDescriptor { offset: 0 })?;
            if firmware.get(offset..offset + 4) != Some(&TDVF_SIGNATURE[..]) {
                return Err(TdvfError::BadDescriptor { offset });
            }
            let field = |n: usize| u32_at(firmware, offset + 4 * n);
            return match (field(2), field(3)) {
                (Some(version), Some(sections)) => Ok(TdvfDescriptor {
                    offset,
                    version,
                    sections,
                }),
                _ => Err(TdvfError::BadDescriptor { offset }),
            };
        }
        entry_end -= entry_len;
    }
    Err(TdvfError::NoMetadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a firmware-shaped byte string for tests: `entries` (GUID, data) in
    /// table order, a TDVF descriptor at `descriptor_at` when given, and the
    /// footer.
    fn synthetic_firmware(
        size: usize,
        entries: &[([u8; 16], Vec<u8>)],
        descriptor_at: Option<usize>,
    ) -> Vec<u8> {
        let mut table = Vec::new();
        for (guid, data) in entries {
            table.extend_from_slice(data);
            let entry_len = (data.len() + ENTRY_HEADER) as u16;
            table.extend_from_slice(&entry_len.to_le_bytes());
            table.extend_from_slice(guid);
        }
        let table_len = (table.len() + ENTRY_HEADER) as u16;
        table.extend_from_slice(&table_len.to_le_bytes());
        table.extend_from_slice(&TABLE_FOOTER_GUID);
        table.extend_from_slice(&[0xf4; FOOTER_END_FROM_EOF]);
        let mut out = vec![0u8; size.saturating_sub(table.len())];
        if let Some(at) = descriptor_at {
            let descriptor = [
                &TDVF_SIGNATURE[..],
                &32u32.to_le_bytes(),
                &1u32.to_le_bytes(),
                &0u32.to_le_bytes(),
            ]
            .concat();
            out[at..at + descriptor.len()].copy_from_slice(&descriptor);
        }
        out.extend_from_slice(&table);
        out
    }

    /// The TDVF metadata table entry for a descriptor at `descriptor_at` in a
    /// file of `size` bytes (data = u32 offset from the end).
    fn metadata_entry(size: usize, descriptor_at: usize) -> ([u8; 16], Vec<u8>) {
        let from_end = (size - descriptor_at) as u32;
        (TDVF_METADATA_GUID, from_end.to_le_bytes().to_vec())
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
            hex(&b[8..10]),
            hex(&b[10..16])
        )
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn guid_constants_match_their_canonical_text() {
        assert_eq!(
            guid_text(&TABLE_FOOTER_GUID),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            guid_text(&TDVF_METADATA_GUID),
            "e47a6535-984a-4798-865e-4685a7bf8ec2"
        );
    }

    #[test]
    fn finds_descriptor_behind_other_entries() {
        let other = ([7u8; 16], vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let fw = synthetic_firmware(8192, &[metadata_entry(8192, 1024), other], Some(1024));
        let d = find_descriptor(&fw).unwrap();
        assert_eq!((d.offset, d.version, d.sections), (1024, 1, 0));
    }

    #[test]
    fn rejects_plain_firmware_and_bad_tables() {
        assert_eq!(
            find_descriptor(&[0; 10]),
            Err(TdvfError::TooShort { len: 10 })
        );
        assert!(matches!(
            find_descriptor(&[0; 4096]),
            Err(TdvfError::NoFooter { offset: 4048 })
        ));
        let no_tdvf = synthetic_firmware(4096, &[([7u8; 16], vec![0; 4])], None);
        assert_eq!(find_descriptor(&no_tdvf), Err(TdvfError::NoMetadata));
        let wrong_target = synthetic_firmware(4096, &[metadata_entry(4096, 100)], None);
        assert_eq!(
            find_descriptor(&wrong_target),
            Err(TdvfError::BadDescriptor { offset: 100 })
        );
        // An entry length that runs past the table start is reported, not followed.
        let mut broken = synthetic_firmware(4096, &[([7u8; 16], vec![0; 4])], None);
        let entry_len_at = 4096 - 32 - 18 - 18;
        broken[entry_len_at..entry_len_at + 2].copy_from_slice(&500u16.to_le_bytes());
        assert!(matches!(
            find_descriptor(&broken),
            Err(TdvfError::Malformed { .. })
        ));
    }

    /// Debian's OVMF (trixie, 2025.02) is built with TDX support, so it must pass.
    #[test]
    fn debian_ovmf_has_tdvf_metadata_when_installed() {
        let path = "/usr/share/ovmf/OVMF.fd";
        let Ok(fw) = std::fs::read(path) else {
            eprintln!("skipped: {path} not installed (ovmf package, scripts/install-deps)");
            return;
        };
        let d = find_descriptor(&fw).unwrap();
        assert_eq!(d.version, 1);
        assert!(d.sections > 0);
    }
}
