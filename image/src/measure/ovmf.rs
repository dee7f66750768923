//! The events OVMF extends into RTMR0 and RTMR1 on a QEMU direct kernel
//! boot, in order.
//!
//! The model is edk2's TDX code as in Debian trixie's `ovmf` 2025.02 build
//! (`/usr/share/ovmf/OVMF.fd`, OvmfPkgX64 with TDX support, no Secure Boot):
//! that image contains no fw_cfg measurement ("QEMU FW CFG" events, added
//! upstream after 2025.02), no SMBIOS measurement and no BootManagerMenuApp,
//! so it logs the 13-event RTMR0 list below. Newer edk2 releases
//! (edk2-stable202505 and later) add events; their images need a different
//! list.
//!
//! RTMR0 (edk2 `SecTdxHelper.c`, `TdTcg2Dxe.c`, `AcpiPlatformDxe`):
//! 1. TD HOB (SEC, `TdxHelperMeasureTdHob`);
//! 2. CFV: the initial variable store, `PcdCfvRawDataSize` bytes at the CFV
//!    base (SEC, `TdxHelperMeasureCfvImage`);
//! 3. SecureBoot, PK, KEK, db, dbx as `EV_EFI_VARIABLE_DRIVER_CONFIG`: the
//!    digest covers `UEFI_VARIABLE_DATA`; absent variables are measured with
//!    no data (`ReadAndMeasureVariable`);
//! 4. separator (`MeasureSecureBootPolicy`: separator after the policy);
//! 5. the three "ACPI DATA" blobs;
//! 6. at ReadyToBoot, `BootOrder` and each `Boot####` it lists as
//!    `EV_EFI_VARIABLE_BOOT`: the digest covers the variable data only.
//!    QEMU's `-kernel` path starts the kernel before OVMF registers other
//!    boot options, so the variables hold only the boot manager menu (UiApp).
//!
//! RTMR1 (`TdTcg2Dxe.c` `OnReadyToBoot`, `OnExitBootServices`): the kernel's
//! Authenticode digest when OVMF loads it, "Calling EFI Application from Boot
//! Option", separator, "Exit Boot Services Invocation", "Exit Boot Services
//! Returned with Success".

use super::acpi::AcpiBlob;
use super::efi::{
    fv_file_node, fv_node, load_option, uefi_variable_data, Guid, EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE, END_OF_DEVICE_PATH, LOAD_OPTION_ACTIVE, LOAD_OPTION_CATEGORY_APP,
    LOAD_OPTION_HIDDEN,
};
use super::td_hob::TdHob;
use super::transcript::{Event, Register};
use easyenclave::rtmr::{sha384, Measurement};

/// Event data of `EV_SEPARATOR`.
pub const SEPARATOR: [u8; 4] = [0, 0, 0, 0];

/// `EV_EFI_ACTION` strings OVMF measures into RTMR1 around the kernel.
pub const CALLING_EFI_APPLICATION: &str = "Calling EFI Application from Boot Option";
/// Measured when the kernel calls ExitBootServices.
pub const EXIT_BOOT_SERVICES_INVOCATION: &str = "Exit Boot Services Invocation";
/// Measured when ExitBootServices succeeded.
pub const EXIT_BOOT_SERVICES_SUCCEEDED: &str = "Exit Boot Services Returned with Success";

/// Name GUID of OVMF's DXE firmware volume (`OvmfPkgX64.fdf`, FVMAIN).
pub const OVMF_DXEFV: Guid = Guid::from_fields(
    0x7cb8_bdc9,
    0xf8eb,
    0x4f34,
    [0xaa, 0xea, 0x3e, 0xe4, 0xaf, 0x65, 0x16, 0xa1],
);
/// File GUID of MdeModulePkg's UiApp, OVMF's boot manager menu before
/// edk2-stable202505.
pub const UI_APP_FILE: Guid = Guid::from_fields(
    0x462c_aa21,
    0x7614,
    0x4503,
    [0x83, 0x6e, 0x8a, 0xb6, 0xf4, 0x66, 0x23, 0x31],
);

/// The secure boot policy variables, in measurement order.
const SECURE_BOOT_VARIABLES: [(&str, Guid); 5] = [
    ("SecureBoot", EFI_GLOBAL_VARIABLE),
    ("PK", EFI_GLOBAL_VARIABLE),
    ("KEK", EFI_GLOBAL_VARIABLE),
    ("db", EFI_IMAGE_SECURITY_DATABASE),
    ("dbx", EFI_IMAGE_SECURITY_DATABASE),
];

/// `BootOrder` at ReadyToBoot: just Boot0000.
pub const BOOT_ORDER: [u8; 2] = [0x00, 0x00];

/// `Boot0000` at ReadyToBoot: the boot manager menu BdsDxe registers, UiApp
/// (described by its UI section "UiApp"), active, hidden, an application,
/// at `Fv(OVMF DXEFV)/FvFile(UiApp)`.
pub fn boot0000() -> Vec<u8> {
    let mut path = [0u8; 44];
    path[..20].copy_from_slice(&fv_node(&OVMF_DXEFV));
    path[20..40].copy_from_slice(&fv_file_node(&UI_APP_FILE));
    path[40..].copy_from_slice(&END_OF_DEVICE_PATH);
    load_option(
        LOAD_OPTION_ACTIVE | LOAD_OPTION_HIDDEN | LOAD_OPTION_CATEGORY_APP,
        "UiApp",
        &path,
    )
}

/// RTMR0's events for a TD HOB, the CFV bytes and the ACPI blobs.
pub fn rtmr0_events(td_hob: &TdHob, cfv: &[u8], acpi: &[AcpiBlob]) -> Vec<Event> {
    let event = |label: String, digest: Measurement| Event {
        register: Register::Rtmr0,
        label,
        digest,
    };
    let mut events = vec![
        event(
            format!(
                "TD HOB at {:#x}: PHIT + {} resource descriptors ({})",
                td_hob.address,
                td_hob.ranges.len(),
                td_hob
                    .ranges
                    .iter()
                    .map(|r| format!(
                        "{} {:#x}+{:#x}",
                        if r.accepted { "added" } else { "unaccepted" },
                        r.start,
                        r.length
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            sha384(&td_hob.measured_bytes),
        ),
        event(
            format!("CFV (initial UEFI variable store, {} bytes)", cfv.len()),
            sha384(cfv),
        ),
    ];
    for (name, vendor) in SECURE_BOOT_VARIABLES {
        events.push(event(
            format!("EFI variable {name} ({vendor}): absent, measured with no data"),
            sha384(&uefi_variable_data(&vendor, name, &[])),
        ));
    }
    events.push(event(
        "separator (end of secure boot policy)".into(),
        sha384(&SEPARATOR),
    ));
    for blob in acpi {
        events.push(event(
            format!(
                "ACPI DATA {} ({} bytes from {})",
                blob.name,
                blob.bytes.len(),
                blob.path.display()
            ),
            sha384(&blob.bytes),
        ));
    }
    events.push(event(
        "EFI boot variable BootOrder = [0000] (data only)".into(),
        sha384(&BOOT_ORDER),
    ));
    events.push(event(
        format!(
            "EFI boot variable Boot0000 = \"UiApp\" Fv({OVMF_DXEFV})/FvFile({UI_APP_FILE}), attributes 0x109 (data only)"
        ),
        sha384(&boot0000()),
    ));
    events
}

/// RTMR1's events around a kernel whose Authenticode digest is `kernel`.
pub fn rtmr1_events(kernel: Measurement, kernel_label: String) -> Vec<Event> {
    let event = |label: String, digest: Measurement| Event {
        register: Register::Rtmr1,
        label,
        digest,
    };
    vec![
        event(kernel_label, kernel),
        event(
            format!("EV_EFI_ACTION \"{CALLING_EFI_APPLICATION}\""),
            sha384(CALLING_EFI_APPLICATION.as_bytes()),
        ),
        event("separator (ReadyToBoot)".into(), sha384(&SEPARATOR)),
        event(
            format!("EV_EFI_ACTION \"{EXIT_BOOT_SERVICES_INVOCATION}\""),
            sha384(EXIT_BOOT_SERVICES_INVOCATION.as_bytes()),
        ),
        event(
            format!("EV_EFI_ACTION \"{EXIT_BOOT_SERVICES_SUCCEEDED}\""),
            sha384(EXIT_BOOT_SERVICES_SUCCEEDED.as_bytes()),
        ),
    ]
}
