//! A tiny TDVF firmware image for tests: small enough to recompute MRTD by
//! hand, laid out the way OVMF lays out a real one. The SDK's TDVF parser
//! tests and ee-image's MRTD tests both build on it, so the two agree on
//! what "the tiny firmware" is.

/// One TDVF section: (data_offset, raw_size, gpa, mem_size, type, attributes).
pub type RawSection = (u32, u32, u64, u64, u32, u32);

/// BFV with MR.EXTEND at file offset 0x4000 (2 pages of a byte pattern), a
/// CFV of one page, a TD HOB and temporary memory.
pub const TINY_SECTIONS: [RawSection; 4] = [
    (0x4000, 0x2000, 0xffc0_0000, 0x2000, 0, 1),
    (0x0000, 0x1000, 0xffbf_f000, 0x1000, 1, 0),
    (0, 0, 0x80_9000, 0x2000, 2, 0),
    (0, 0, 0x80_0000, 0x6000, 3, 0),
];
/// Where [`tiny_firmware`] puts the TDVF descriptor.
pub const TINY_DESCRIPTOR_AT: usize = 0x8000;
/// The size of [`tiny_firmware`]'s image.
pub const TINY_LEN: usize = 0x10000;

/// A GUID string (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`) in UEFI's on-disk
/// byte order: the first three fields little-endian.
///
/// # Panics
/// On a malformed string: this is a test fixture, its GUIDs are literals.
pub fn guid(text: &str) -> [u8; 16] {
    let h = hex::decode(text.replace('-', "")).expect("a GUID literal");
    assert_eq!(h.len(), 16, "a GUID has 16 bytes: {text}");
    let mut g = [0u8; 16];
    g[0..4].copy_from_slice(&[h[3], h[2], h[1], h[0]]);
    g[4..6].copy_from_slice(&[h[5], h[4]]);
    g[6..8].copy_from_slice(&[h[7], h[6]]);
    g[8..].copy_from_slice(&h[8..]);
    g
}

/// A "TDVF" descriptor, version 1, with the `length` field given (honest:
/// `16 + 32 * sections.len()`) and `sections` in order.
pub fn descriptor(length: u32, sections: &[RawSection]) -> Vec<u8> {
    let mut d = b"TDVF".to_vec();
    d.extend_from_slice(&length.to_le_bytes());
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for &(off, raw, gpa, size, kind, attr) in sections {
        d.extend_from_slice(&off.to_le_bytes());
        d.extend_from_slice(&raw.to_le_bytes());
        d.extend_from_slice(&gpa.to_le_bytes());
        d.extend_from_slice(&size.to_le_bytes());
        d.extend_from_slice(&kind.to_le_bytes());
        d.extend_from_slice(&attr.to_le_bytes());
    }
    d
}

/// A 64 KiB image laid out as an OVMF TDVF: a byte pattern in the BFV's
/// pages, the descriptor (version 1, `sections` as given) at
/// [`TINY_DESCRIPTOR_AT`], and the GUIDed table (an unrelated entry, the TDX
/// metadata offset entry, the footer) ending 32 bytes before the end.
pub fn tiny_firmware(sections: &[RawSection]) -> Vec<u8> {
    let mut fw = vec![0u8; TINY_LEN];
    for (i, b) in fw[0x4000..0x6000].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    fw[..16].copy_from_slice(b"test variables..");
    let d = descriptor(16 + 32 * sections.len() as u32, sections);
    fw[TINY_DESCRIPTOR_AT..TINY_DESCRIPTOR_AT + d.len()].copy_from_slice(&d);

    let mut table = Vec::new();
    table.extend_from_slice(&[1, 2, 3, 4]);
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&guid("00f771de-1a7e-4fcb-890e-68c77e2fb44e"));
    table.extend_from_slice(&((TINY_LEN - TINY_DESCRIPTOR_AT) as u32).to_le_bytes());
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&guid("e47a6535-984a-4798-865e-4685a7bf8ec2"));
    table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    table.extend_from_slice(&guid("96b582de-1fb2-45f7-baea-a366c55a082d"));
    let end = TINY_LEN - 32;
    fw[end - table.len()..end].copy_from_slice(&table);
    fw
}
