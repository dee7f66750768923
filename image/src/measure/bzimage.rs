//! The Linux x86 boot protocol setup header, and what QEMU writes into it
//! for direct kernel boot (`-kernel`) before serving the kernel to the
//! firmware over fw_cfg.
//!
//! OVMF measures the kernel file it receives, so on QEMU versions that patch
//! the header the patched bytes are what RTMR1 holds. The patch follows
//! QEMU's `x86_load_linux` (`hw/i386/x86-common.c`, identical in `x86.c`
//! before 9.1): `type_of_loader` (0x210) = 0xB0; `loadflags` (0x211) |=
//! CAN_USE_HEAP; `heap_end_ptr` (0x224) = cmdline - setup - 0x200;
//! `cmd_line_ptr` (0x228) = 0x20000 for protocol >= 2.02; with an initrd
//! `ramdisk_image`/`ramdisk_size` (0x218/0x21C), the image placed at the top
//! of the low RAM that QEMU leaves below its ACPI area; and `vid_mode`
//! (0x1FA) when the command line has `vga=`. QEMU 10.2 stopped patching
//! the header for confidential guests (commit a7542a38f399).

use thiserror::Error;

/// Offset of the "HdrS" magic.
const HEADER_MAGIC_AT: usize = 0x202;
/// Bytes of the header this code reads or writes (through `setup_data`).
const HEADER_END: usize = 0x258;
/// `XLF_CAN_BE_LOADED_ABOVE_4G` in `xloadflags`.
const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `LOADED_HIGH` in `loadflags`.
const LOADED_HIGH: u8 = 0x01;
/// `CAN_USE_HEAP` in `loadflags`.
const CAN_USE_HEAP: u8 = 0x80;
/// `type_of_loader` QEMU writes (0xB = QEMU, revision 0).
const QEMU_LOADER_TYPE: u8 = 0xB0;
/// Bytes QEMU's q35/i440fx machines reserve below the top of low RAM for
/// ACPI tables (`pcmc->acpi_data_size`, `hw/i386/pc.c`).
pub const QEMU_ACPI_DATA_SIZE: u64 = 0x20000 + 0x8000;

/// The setup header fields that decide QEMU's patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupHeader {
    /// `setup_sects` (0 means 4).
    pub setup_sects: u8,
    /// Boot protocol version, e.g. 0x020f.
    pub protocol: u16,
    /// `loadflags`.
    pub loadflags: u8,
    /// `initrd_addr_max` (protocol >= 2.03).
    pub initrd_addr_max: u32,
    /// `xloadflags` (protocol >= 2.12).
    pub xloadflags: u16,
}

impl SetupHeader {
    /// Read the header of bzImage `kernel`.
    pub fn parse(kernel: &[u8]) -> Result<Self, KernelError> {
        let header = kernel
            .get(..HEADER_END)
            .ok_or(KernelError::TooShort { len: kernel.len() })?;
        if &header[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4] != b"HdrS" {
            return Err(KernelError::NoSetupHeader);
        }
        Ok(SetupHeader {
            setup_sects: header[0x1f1],
            protocol: le_u16(header, 0x206),
            loadflags: header[0x211],
            initrd_addr_max: le_u32(header, 0x22c),
            xloadflags: le_u16(header, 0x236),
        })
    }

    /// Size of the real-mode setup code QEMU hands over as "setup".
    pub fn setup_size(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        (usize::from(sects) + 1) * 512
    }
}

/// What QEMU's direct kernel boot depends on.
#[derive(Debug, Clone, Copy)]
pub struct DirectBoot<'a> {
    /// The `-append` string.
    pub cmdline: &'a str,
    /// Size of the `-initrd` file, if any.
    pub initrd_size: Option<u64>,
    /// Guest RAM below 4 GiB (see `td_hob::RamLayout`).
    pub below_4g: u64,
}

/// One header field QEMU wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatchedField {
    /// Field name in the boot protocol documentation.
    pub field: String,
    /// File offset.
    pub offset: usize,
    /// Value written.
    pub value: u64,
}

/// Why QEMU would not boot this kernel, or it is not a bzImage.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KernelError {
    /// Too short for a setup header.
    #[error("not a bzImage: {len} bytes is too short for the x86 boot setup header")]
    TooShort {
        /// File length.
        len: usize,
    },
    /// No "HdrS" magic.
    #[error("not a bzImage: no \"HdrS\" setup header magic at offset 0x202")]
    NoSetupHeader,
    /// The setup code claims to be longer than the file.
    #[error("invalid kernel header: setup code of {setup_size} bytes is longer than the {len}-byte file")]
    SetupTooLong {
        /// Setup size from `setup_sects`.
        setup_size: usize,
        /// File length.
        len: usize,
    },
    /// Boot protocol before 2.00 cannot take an initrd.
    #[error("boot protocol {protocol:#06x} is too old to load an initrd")]
    TooOldForInitrd {
        /// Protocol version.
        protocol: u16,
    },
    /// The initrd does not fit below QEMU's limit.
    #[error("initrd of {size} bytes does not fit below QEMU's limit {max:#x} (more memory, or a smaller initrd)")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// Highest address QEMU would use.
        max: u64,
    },
    /// Too little RAM below 4 GiB for QEMU's ACPI reservation.
    #[error("{below_4g:#x} bytes of RAM below 4 GiB is less than QEMU's ACPI reservation")]
    TooLittleMemory {
        /// RAM below 4 GiB.
        below_4g: u64,
    },
    /// A `vga=` value QEMU rejects.
    #[error(
        "invalid 'vga=' kernel parameter {value:?} (QEMU accepts normal, ext, ask or a number)"
    )]
    InvalidVga {
        /// The text after `vga=`.
        value: String,
    },
}

/// The setup code as QEMU < 10.2 hands it to the firmware: the first
/// [`SetupHeader::setup_size`] bytes of `kernel` with the header fields QEMU
/// writes, and the list of those fields. The rest of the file goes to the
/// firmware unchanged.
pub fn qemu_patched_setup(
    kernel: &[u8],
    boot: &DirectBoot,
) -> Result<(Vec<u8>, Vec<PatchedField>), KernelError> {
    let header = SetupHeader::parse(kernel)?;
    let setup_size = header.setup_size();
    if setup_size > kernel.len() {
        return Err(KernelError::SetupTooLong {
            setup_size,
            len: kernel.len(),
        });
    }
    let protocol = header.protocol;
    // QEMU aligns the command line buffer to 16 bytes "as a paranoia measure".
    let cmdline_size = ((boot.cmdline.len() + 16) & !15) as u64;
    let (real_addr, cmdline_addr): (u64, u64) =
        if protocol < 0x200 || header.loadflags & LOADED_HIGH == 0 || protocol < 0x202 {
            // Wraps like QEMU's hwaddr arithmetic for absurdly long command lines.
            (0x90000, 0x9a000u64.wrapping_sub(cmdline_size))
        } else {
            (0x10000, 0x20000)
        };

    let mut initrd_max: u64 =
        if protocol >= 0x20c && header.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
            u64::from(u32::MAX)
        } else if protocol >= 0x203 {
            u64::from(header.initrd_addr_max)
        } else {
            0x37ff_ffff
        };
    let low_limit =
        boot.below_4g
            .checked_sub(QEMU_ACPI_DATA_SIZE)
            .ok_or(KernelError::TooLittleMemory {
                below_4g: boot.below_4g,
            })?;
    if initrd_max >= low_limit {
        initrd_max = low_limit.saturating_sub(1);
    }

    // setup_size >= 2560 > HEADER_END, so every field below is inside it.
    let mut out = kernel[..setup_size].to_vec();
    let mut fields = Vec::new();
    let mut put = |field: &'static str, offset: usize, value: u64, width: usize| {
        out[offset..offset + width].copy_from_slice(&value.to_le_bytes()[..width]);
        fields.push(PatchedField {
            field: field.to_owned(),
            offset,
            value,
        });
    };

    if protocol >= 0x202 {
        put("cmd_line_ptr", 0x228, cmdline_addr, 4);
    } else {
        put("cmd_line_magic", 0x20, 0xA33F, 2);
        put(
            "cmd_line_offset",
            0x22,
            cmdline_addr.wrapping_sub(real_addr) & 0xffff,
            2,
        );
    }
    if let Some(mode) = vga_mode(boot.cmdline)? {
        put("vid_mode", 0x1fa, u64::from(mode), 2);
    }
    if protocol >= 0x200 {
        put("type_of_loader", 0x210, u64::from(QEMU_LOADER_TYPE), 1);
    }
    if protocol >= 0x201 {
        put(
            "loadflags",
            0x211,
            u64::from(header.loadflags | CAN_USE_HEAP),
            1,
        );
        let heap_end = cmdline_addr.wrapping_sub(real_addr).wrapping_sub(0x200);
        put("heap_end_ptr", 0x224, heap_end & 0xffff, 2);
    }
    if let Some(size) = boot.initrd_size {
        if protocol < 0x200 {
            return Err(KernelError::TooOldForInitrd { protocol });
        }
        if size >= initrd_max {
            return Err(KernelError::InitrdTooLarge {
                size,
                max: initrd_max,
            });
        }
        put("ramdisk_image", 0x218, (initrd_max - size) & !4095, 4);
        put("ramdisk_size", 0x21c, size, 4);
    }
    Ok((out, fields))
}

/// QEMU's `vga=` handling: the first "vga=" anywhere in the command line
/// (a plain substring search, as QEMU's `strstr`).
fn vga_mode(cmdline: &str) -> Result<Option<u16>, KernelError> {
    let Some(at) = cmdline.find("vga=") else {
        return Ok(None);
    };
    let value = &cmdline[at + 4..];
    // QEMU compares prefixes only for the named modes.
    let named = [("normal", 0xffff), ("ext", 0xfffe), ("ask", 0xfffd)];
    if let Some(&(_, mode)) = named.iter().find(|(name, _)| value.starts_with(name)) {
        return Ok(Some(mode));
    }
    let word = value.split(' ').next().unwrap_or("");
    let invalid = || KernelError::InvalidVga {
        value: word.to_string(),
    };
    // qemu_strtoui with base 0: 0x.. hex, 0.. octal, else decimal; the
    // number must end the word. Modes are stored as u16.
    let parsed = if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16)
    } else if word.len() > 1 && word.starts_with('0') {
        u32::from_str_radix(&word[1..], 8)
    } else {
        word.parse::<u32>()
    };
    parsed.map(|n| Some(n as u16)).map_err(|_| invalid())
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake kernel with a protocol 2.15 header, LOADED_HIGH and
    /// XLF_CAN_BE_LOADED_ABOVE_4G, as modern x86-64 kernels have.
    fn fake_kernel() -> Vec<u8> {
        let mut k = vec![0u8; 0x4000];
        k[0x1f1] = 0x1f;
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        k[0x211] = LOADED_HIGH;
        k[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        k[0x236..0x238].copy_from_slice(&XLF_CAN_BE_LOADED_ABOVE_4G.to_le_bytes());
        k
    }

    fn field(fields: &[PatchedField], name: &str) -> u64 {
        fields.iter().find(|f| f.field == name).unwrap().value
    }

    #[test]
    fn patch_matches_qemu_formulas() {
        let boot = DirectBoot {
            cmdline: "console=ttyS0",
            initrd_size: Some(10_000_000),
            below_4g: 2 << 30,
        };
        let (out, fields) = qemu_patched_setup(&fake_kernel(), &boot).unwrap();
        // initrd_max = 2 GiB - 0x28000 - 1; image page-aligned below it.
        let expected_addr = ((2u64 << 30) - 0x28000 - 1 - 10_000_000) & !4095;
        assert_eq!(field(&fields, "ramdisk_image"), expected_addr);
        assert_eq!(&out[0x218..0x21c], &(expected_addr as u32).to_le_bytes());
        assert_eq!(&out[0x21c..0x220], &10_000_000u32.to_le_bytes());
        assert_eq!(out[0x210], 0xb0);
        assert_eq!(out[0x211], 0x81);
        assert_eq!(&out[0x224..0x226], &0xfe00u16.to_le_bytes());
        assert_eq!(&out[0x228..0x22c], &0x20000u32.to_le_bytes());
        // Nothing outside the patched fields changed.
        let changed: Vec<usize> = (0..out.len())
            .filter(|&i| out[i] != fake_kernel()[i])
            .collect();
        assert!(
            changed.iter().all(|&i| (0x210..0x22c).contains(&i)),
            "{changed:x?}"
        );
    }

    #[test]
    fn without_xlf_initrd_max_comes_from_the_header() {
        let mut k = fake_kernel();
        k[0x236] = 0;
        // 2.5 GiB of RAM, all below 4 GiB: only the header's 2 GiB limit applies.
        let boot = DirectBoot {
            cmdline: "",
            initrd_size: Some(4096),
            below_4g: 0xa000_0000,
        };
        let (_, fields) = qemu_patched_setup(&k, &boot).unwrap();
        assert_eq!(
            field(&fields, "ramdisk_image"),
            (0x7fff_ffff - 4096) & !4095
        );
    }

    #[test]
    fn vga_parameter() {
        assert_eq!(vga_mode("quiet vga=0x317 x").unwrap(), Some(0x317));
        assert_eq!(vga_mode("vga=ask").unwrap(), Some(0xfffd));
        assert_eq!(vga_mode("vga=010").unwrap(), Some(8));
        assert_eq!(vga_mode("console=ttyS0").unwrap(), None);
        assert!(vga_mode("vga=big").is_err());
    }

    #[test]
    fn not_a_bzimage() {
        assert_eq!(
            SetupHeader::parse(&[0u8; 16]),
            Err(KernelError::TooShort { len: 16 })
        );
        assert_eq!(
            SetupHeader::parse(&[0u8; 0x1000]),
            Err(KernelError::NoSetupHeader)
        );
    }
}
