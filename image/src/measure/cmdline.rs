//! RTMR2: what the Linux EFI stub (kernel >= 6.9 with a CC measurement
//! protocol) measures before starting the kernel.
//!
//! OVMF's direct-boot loader gives the kernel image its load options: the
//! `-append` command line as UCS-2 with a NUL terminator, with
//! " initrd=initrd" appended when QEMU has an initrd (edk2
//! `OvmfPkg/Library/X86QemuLoadImageLib`). The stub measures those load
//! options, then the initrd it loads through the LINUX_EFI_INITRD_MEDIA
//! device path (facts note: "RTMR2 (Linux EFI stub, kernel >= 6.9)").

use super::efi::utf16le;

/// What OVMF appends to the command line when there is an initrd.
pub const INITRD_SUFFIX: &str = " initrd=initrd";

/// The kernel's load options as the EFI stub measures them:
/// UCS-2LE(`cmdline` [+ " initrd=initrd"]) followed by a NUL code unit.
pub fn load_options(cmdline: &str, has_initrd: bool) -> Vec<u8> {
    let mut text = cmdline.to_string();
    if has_initrd {
        text.push_str(INITRD_SUFFIX);
    }
    let mut out = utf16le(&text);
    out.extend_from_slice(&[0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_and_terminator() {
        assert_eq!(load_options("a", false), b"a\0\0\0");
        let with = load_options("a", true);
        assert_eq!(with.len(), 2 * (1 + INITRD_SUFFIX.len()) + 2);
        assert!(with.ends_with(b"d\0\0\0"));
    }
}
