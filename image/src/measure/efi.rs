//! UEFI encodings that measured data is made of: GUIDs in their on-disk byte
//! order, UCS-2 strings, `UEFI_VARIABLE_DATA` (the event data and digest input
//! of `EV_EFI_VARIABLE_DRIVER_CONFIG`) and `EFI_LOAD_OPTION` with its device
//! path (the data of a `Boot####` variable).
//!
//! Layouts are from the UEFI 2.10 specification (sections 3.1.3 "Load
//! Options", 10.3.5.6/10.3.5.7 "PIWG Firmware File/Volume" device path nodes)
//! and the TCG PC Client PFP specification (`UEFI_VARIABLE_DATA`).

/// A GUID in its on-disk byte order: the SDK's, which the TDVF table uses too.
pub use easyenclave::tdvf::Guid;

/// `EFI_GLOBAL_VARIABLE` (8be4df61-93ca-11d2-aa0d-00e098032b8c): SecureBoot,
/// PK, KEK, BootOrder, Boot####.
pub const EFI_GLOBAL_VARIABLE: Guid = Guid::from_fields(
    0x8be4_df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);

/// `EFI_IMAGE_SECURITY_DATABASE_GUID` (d719b2cb-3d3a-4596-a3bc-dad00e67656f):
/// db, dbx.
pub const EFI_IMAGE_SECURITY_DATABASE: Guid = Guid::from_fields(
    0xd719_b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);

/// A string as UCS-2 little-endian code units, without a terminator.
pub fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// `UEFI_VARIABLE_DATA`: vendor GUID, u64 name length in UTF-16 code units,
/// u64 data length, the name (no terminator), the data.
pub fn uefi_variable_data(vendor: &Guid, name: &str, data: &[u8]) -> Vec<u8> {
    let name16 = utf16le(name);
    let mut out = Vec::with_capacity(32 + name16.len() + data.len());
    out.extend_from_slice(vendor.as_bytes());
    out.extend_from_slice(&((name16.len() / 2) as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&name16);
    out.extend_from_slice(data);
    out
}

/// `LOAD_OPTION_ACTIVE`: the option may be booted.
pub const LOAD_OPTION_ACTIVE: u32 = 0x0000_0001;
/// `LOAD_OPTION_HIDDEN`: not shown in boot menus.
pub const LOAD_OPTION_HIDDEN: u32 = 0x0000_0008;
/// `LOAD_OPTION_CATEGORY_APP`: an application, not a boot target.
pub const LOAD_OPTION_CATEGORY_APP: u32 = 0x0000_0100;

/// Device path node: PIWG firmware volume (`MEDIA_PIWG_FW_VOL_DP`, type 4
/// subtype 7) naming the volume by GUID.
pub fn fv_node(volume: &Guid) -> [u8; 20] {
    media_guid_node(7, volume)
}

/// Device path node: PIWG firmware file (`MEDIA_PIWG_FW_FILE_DP`, type 4
/// subtype 6) naming the file by GUID.
pub fn fv_file_node(file: &Guid) -> [u8; 20] {
    media_guid_node(6, file)
}

/// Device path node that ends the whole path (type 0x7f, subtype 0xff).
pub const END_OF_DEVICE_PATH: [u8; 4] = [0x7f, 0xff, 0x04, 0x00];

/// A 20-byte media node: type 4, `subtype`, u16 length 20, the GUID.
fn media_guid_node(subtype: u8, guid: &Guid) -> [u8; 20] {
    let mut node = [0u8; 20];
    node[0] = 0x04;
    node[1] = subtype;
    node[2] = 20;
    node[4..].copy_from_slice(guid.as_bytes());
    node
}

/// `EFI_LOAD_OPTION` without optional data: u32 attributes, u16 length of
/// the device path, the description as NUL-terminated UCS-2, the path.
pub fn load_option<const N: usize>(
    attributes: u32,
    description: &str,
    device_path: &[u8; N],
) -> Vec<u8> {
    // FilePathListLength is a u16: checked when the path's size is fixed.
    const { assert!(N <= u16::MAX as usize) };
    let mut out = Vec::new();
    out.extend_from_slice(&attributes.to_le_bytes());
    out.extend_from_slice(&(N as u16).to_le_bytes());
    out.extend_from_slice(&utf16le(description));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(device_path);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_and_text() {
        // The on-disk bytes of EFI_GLOBAL_VARIABLE, as in any UEFI variable store.
        assert_eq!(
            hex::encode(EFI_GLOBAL_VARIABLE.as_bytes()),
            "61dfe48bca93d211aa0d00e098032b8c"
        );
        assert_eq!(
            EFI_GLOBAL_VARIABLE.to_string(),
            "8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
    }

    #[test]
    fn variable_data_layout() {
        let v = uefi_variable_data(&EFI_IMAGE_SECURITY_DATABASE, "db", &[0xaa]);
        assert_eq!(v.len(), 16 + 8 + 8 + 4 + 1);
        assert_eq!(&v[16..24], &2u64.to_le_bytes());
        assert_eq!(&v[24..32], &1u64.to_le_bytes());
        assert_eq!(&v[32..36], b"d\0b\0");
        assert_eq!(v[36], 0xaa);
    }

    #[test]
    fn load_option_layout() {
        let mut path = [0u8; 24];
        path[..20].copy_from_slice(&fv_node(&EFI_GLOBAL_VARIABLE));
        path[20..].copy_from_slice(&END_OF_DEVICE_PATH);
        let opt = load_option(LOAD_OPTION_ACTIVE, "A", &path);
        assert_eq!(&opt[0..4], &1u32.to_le_bytes());
        assert_eq!(&opt[4..6], &24u16.to_le_bytes());
        assert_eq!(&opt[6..10], b"A\0\0\0");
        assert_eq!(&opt[10..14], &[4, 7, 20, 0]);
        assert_eq!(opt.len(), 10 + 24);
    }
}
