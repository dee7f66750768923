//! Authenticode SHA-384 of a PE/COFF image: the digest OVMF extends into
//! RTMR1 when it loads an EFI application (here the kernel's EFI stub).
//!
//! The algorithm is the PE/COFF specification's "Calculating the PE image
//! hash" as edk2 implements it (`OvmfPkg/Tcg/TdTcg2Dxe/MeasureBootPeCoff.c`,
//! `MeasurePeImageAndExtend`):
//!
//! 1. hash the headers up to the optional header's CheckSum, skip it;
//! 2. if the optional header has a Security data directory entry, hash up to
//!    it and skip its 8 bytes; hash the rest of the headers (`SizeOfHeaders`);
//! 3. hash each section with a non-zero `SizeOfRawData`, ordered by
//!    `PointerToRawData`, adding their sizes to the bytes hashed so far;
//! 4. hash what follows in the file except the certificate table's size
//!    (`file size - cert size - bytes hashed`), if positive.
//!
//! Only the headers are parsed: enough to find these ranges, with every
//! range checked against the file. The file may come in pieces, as QEMU
//! serves a kernel's setup code and the rest as two fw_cfg items that OVMF
//! reads back to back.

use sha2::{Digest, Sha384};
use thiserror::Error;

use easyenclave::rtmr::Measurement;

const DOS_MAGIC: &[u8; 2] = b"MZ";
const PE_SIGNATURE: &[u8; 4] = b"PE\0\0";
const PE32_MAGIC: u16 = 0x10b;
const PE32_PLUS_MAGIC: u16 = 0x20b;
const COFF_HEADER_LEN: usize = 20;
const SECTION_HEADER_LEN: usize = 40;
/// Index of the certificate table in the data directories.
const SECURITY_DIRECTORY: u32 = 4;

/// Why a file is not a PE image this code can hash.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeError {
    /// No "MZ" at offset 0.
    #[error("not a PE/COFF image: no \"MZ\" DOS header at offset 0")]
    NoDosHeader,
    /// No "PE\0\0" where `e_lfanew` points.
    #[error("not a PE/COFF image: no \"PE\\0\\0\" signature at e_lfanew = {offset:#x}")]
    NoPeSignature {
        /// The `e_lfanew` value.
        offset: u64,
    },
    /// An unknown optional header magic.
    #[error("PE optional header at {offset:#x}: magic {magic:#x}, expected 0x10b (PE32) or 0x20b (PE32+)")]
    OptionalHeaderMagic {
        /// Offset of the optional header.
        offset: u64,
        /// The magic found.
        magic: u16,
    },
    /// A header field points outside the file or is inconsistent.
    #[error("PE image: {what} ({start:#x}..{end:#x}) is outside the {len}-byte file")]
    OutOfBounds {
        /// Which structure.
        what: String,
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
        /// File length.
        len: u64,
    },
    /// The certificate table claims more bytes than remain after the sections.
    #[error("PE image: certificate table size {cert_size:#x} exceeds the {trailing:#x} bytes after the sections")]
    CertificateTable {
        /// The Security directory's size.
        cert_size: u64,
        /// Bytes after the sections.
        trailing: u64,
    },
}

/// Offsets of the header fields that shape the hash.
#[derive(Debug, Clone, Copy)]
struct Layout {
    checksum: u64,
    /// Offset of the Security directory entry, if the header has one.
    security_entry: Option<u64>,
    size_of_headers: u64,
    cert_size: u64,
    section_table: u64,
    section_count: u64,
}

/// Authenticode SHA-384 of `image`.
pub fn authenticode_sha384(image: &[u8]) -> Result<Measurement, PeError> {
    authenticode_sha384_parts(&[image])
}

/// Authenticode SHA-384 of the file made of `parts` one after the other
/// (QEMU hands OVMF a kernel as its setup code and the rest, separately).
pub fn authenticode_sha384_parts(parts: &[&[u8]]) -> Result<Measurement, PeError> {
    let file = Pieces { parts };
    let layout = parse_layout(&file)?;
    let mut hash = Sha384::new();
    let mut hash_range =
        |start: u64, end: u64, what: &str| file.feed(start, end, what, |b| hash.update(b));

    let headers_end = layout.size_of_headers;
    hash_range(0, layout.checksum, "headers before CheckSum")?;
    match layout.security_entry {
        Some(entry) => {
            hash_range(layout.checksum + 4, entry, "headers after CheckSum")?;
            hash_range(
                entry + 8,
                headers_end,
                "headers after the Security directory",
            )?;
        }
        None => hash_range(layout.checksum + 4, headers_end, "headers after CheckSum")?,
    }

    let mut sections = Vec::new();
    for i in 0..layout.section_count {
        let header: [u8; SECTION_HEADER_LEN] = file.read(
            layout.section_table + i * SECTION_HEADER_LEN as u64,
            "section header",
        )?;
        let size = u64::from(le_u32(&header, 16));
        let pointer = u64::from(le_u32(&header, 20));
        if size > 0 {
            sections.push((pointer, size, section_name(&header)));
        }
    }
    // Stable sort by file offset, as edk2's insertion sort.
    sections.sort_by_key(|&(pointer, _, _)| pointer);
    let mut hashed = headers_end;
    for (pointer, size, name) in &sections {
        hash_range(
            *pointer,
            pointer + size,
            &format!("section {name} raw data"),
        )?;
        hashed += size;
    }

    let file_len = file.len();
    if file_len > hashed {
        let trailing = file_len - hashed;
        let cert_size = layout.security_entry.map_or(0, |_| layout.cert_size);
        if cert_size > trailing {
            return Err(PeError::CertificateTable {
                cert_size,
                trailing,
            });
        }
        hash_range(hashed, file_len - cert_size, "data after the sections")?;
    }
    Ok(hash.finalize().into())
}

fn parse_layout(file: &Pieces) -> Result<Layout, PeError> {
    if file.read::<2>(0, "DOS header").ok() != Some(*DOS_MAGIC) {
        return Err(PeError::NoDosHeader);
    }
    let lfanew = u64::from(u32::from_le_bytes(file.read(0x3c, "DOS header e_lfanew")?));
    if file.read::<4>(lfanew, "PE signature").ok() != Some(*PE_SIGNATURE) {
        return Err(PeError::NoPeSignature { offset: lfanew });
    }
    let coff = lfanew + 4;
    let coff_header: [u8; COFF_HEADER_LEN] = file.read(coff, "COFF header")?;
    let section_count = u64::from(le_u16(&coff_header, 2));
    let optional_len = u64::from(le_u16(&coff_header, 16));
    let optional = coff + COFF_HEADER_LEN as u64;
    let magic = u16::from_le_bytes(file.read(optional, "optional header magic")?);
    // PE32+ drops BaseOfData and widens four fields: the data directories
    // start 16 bytes later.
    let (rva_count_at, directories_at) = match magic {
        PE32_MAGIC => (92, 96),
        PE32_PLUS_MAGIC => (108, 112),
        _ => {
            return Err(PeError::OptionalHeaderMagic {
                offset: optional,
                magic,
            })
        }
    };
    let field = |at: u64, what: &str| -> Result<u32, PeError> {
        Ok(u32::from_le_bytes(file.read(optional + at, what)?))
    };
    let size_of_headers = u64::from(field(60, "SizeOfHeaders")?);
    let rva_count = field(rva_count_at, "NumberOfRvaAndSizes")?;
    let (security_entry, cert_size) = if rva_count > SECURITY_DIRECTORY {
        let entry = optional + directories_at + 8 * u64::from(SECURITY_DIRECTORY);
        let directory: [u8; 8] = file.read(entry, "Security data directory")?;
        (Some(entry), u64::from(le_u32(&directory, 4)))
    } else {
        (None, 0)
    };
    let checksum = optional + 64;
    let headers_min = security_entry.map_or(checksum + 4, |e| e + 8);
    if size_of_headers > file.len() || size_of_headers < headers_min {
        return Err(PeError::OutOfBounds {
            what: "SizeOfHeaders".into(),
            start: 0,
            end: size_of_headers,
            len: file.len(),
        });
    }
    Ok(Layout {
        checksum,
        security_entry,
        size_of_headers,
        cert_size,
        section_table: optional + optional_len,
        section_count,
    })
}

/// A file as consecutive byte slices.
struct Pieces<'a> {
    parts: &'a [&'a [u8]],
}

impl Pieces<'_> {
    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len() as u64).sum()
    }

    /// Pass the bytes `start..end` to `sink`, piece by piece, or fail
    /// naming `what` when they are not all in the file.
    fn feed(
        &self,
        start: u64,
        end: u64,
        what: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), PeError> {
        if start > end || end > self.len() {
            return Err(PeError::OutOfBounds {
                what: what.to_string(),
                start,
                end,
                len: self.len(),
            });
        }
        let mut part_start = 0u64;
        for part in self.parts {
            let part_end = part_start + part.len() as u64;
            let from = start.max(part_start);
            let to = end.min(part_end);
            if from < to {
                // Within this part by construction of `from` and `to`.
                sink(&part[(from - part_start) as usize..(to - part_start) as usize]);
            }
            part_start = part_end;
        }
        Ok(())
    }

    /// `N` bytes at `at`.
    fn read<const N: usize>(&self, at: u64, what: &str) -> Result<[u8; N], PeError> {
        let mut out = [0u8; N];
        let mut filled = 0;
        self.feed(at, at.saturating_add(N as u64), what, |b| {
            out[filled..filled + b.len()].copy_from_slice(b);
            filled += b.len();
        })?;
        Ok(out)
    }
}

fn section_name(header: &[u8]) -> String {
    let name = &header[..8];
    let len = name.iter().position(|&b| b == 0).unwrap_or(8);
    String::from_utf8_lossy(&name[..len]).into_owned()
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
