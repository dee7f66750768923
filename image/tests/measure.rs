//! Offline TD measurement (`ee_image::measure`): MRTD on a handcrafted
//! firmware recomputed here from the spec's formulas and on Debian's OVMF,
//! the TD HOB layout, RTMR0-2 events, Authenticode against osslsigncode, the
//! diff helper, bad inputs and the `ee-image measure` command.
//!
//! Independent reference values used below:
//! - `DSTACK_CFV_SHA384`: the CFV event digest dstack-mr (Dstack-TEE/dstack,
//!   `dstack-mr/src/tdvf.rs`) hard-codes from the event log of a real TD.
//!   The CFV is OVMF's empty 4 MiB-build variable store, byte-identical in
//!   Debian's build, so SHA-384 of Debian's CFV must equal it.
//! - `DSTACK_BOOT0000_SHA384`: the Boot0000 (UiApp) event digest dstack-mr
//!   hard-codes for OVMF builds before edk2-stable202505, likewise captured
//!   from a real TD.
//! - osslsigncode's `extract-data -h sha384` for Authenticode digests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use easyenclave::rtmr::{extend, sha384, Measurement, RTMR_RESET};
use ee_image::measure::authenticode::authenticode_sha384;
use ee_image::measure::bzimage::{qemu_patched_setup, DirectBoot};
use ee_image::measure::mrtd::{compute_mrtd, PageAddOrder};
use ee_image::measure::td_hob::build_td_hob;
use ee_image::measure::tdvf::{SectionType, TdvfMetadata};
use ee_image::measure::{
    diff, measure, ovmf, read_acpi_dir, AcpiBlob, Expected, InputFile, MeasureError, MeasureInputs,
    MemorySize, QemuVersion, Register,
};
use ee_testkit::firmware::{guid, tiny_firmware, RawSection, TINY_SECTIONS};
use sha2::{Digest, Sha384};

/// Debian trixie's `ovmf` package (scripts/install-deps installs it).
const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";

const DSTACK_CFV_SHA384: &str = "344bc51c980ba621aaa00da3ed7436f7d6e549197dfe699515dfa2c6583d95e6412af21c097d473155875ffd561d6790";
const DSTACK_BOOT0000_SHA384: &str = "23ada07f5261f12f34a0bd8e46760962d6b4d576a416f1fea1c64bc656b1d28eacf7047ae6e967c58fd2a98bfa74c298";

// ---------------------------------------------------------------- helpers

fn debian_ovmf() -> InputFile {
    static FILE: OnceLock<InputFile> = OnceLock::new();
    FILE.get_or_init(|| {
        InputFile::read(Path::new(DEBIAN_OVMF), 64 << 20).unwrap_or_else(|e| {
            panic!("{e}: install Debian trixie's `ovmf` package (sudo scripts/install-deps)")
        })
    })
    .clone()
}

fn kernel() -> InputFile {
    static FILE: OnceLock<InputFile> = OnceLock::new();
    FILE.get_or_init(|| InputFile::read(&common::guest_kernel().vmlinuz, 512 << 20).unwrap())
        .clone()
}

/// A deterministic 10 MiB "initrd".
fn initrd() -> InputFile {
    static FILE: OnceLock<InputFile> = OnceLock::new();
    FILE.get_or_init(|| InputFile {
        path: PathBuf::from("test-initrd"),
        bytes: (0..10u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect(),
    })
    .clone()
}

fn inputs(qemu: &str, memory: &str) -> MeasureInputs {
    MeasureInputs {
        firmware: debian_ovmf(),
        kernel: kernel(),
        initrd: Some(initrd()),
        cmdline: "console=ttyS0 panic=-1".into(),
        memory: memory.parse().unwrap(),
        qemu: qemu.parse().unwrap(),
        acpi: None,
    }
}

/// Stand-ins for QEMU's ACPI blobs (their content only moves three digests).
fn fake_acpi() -> Vec<AcpiBlob> {
    ["etc/table-loader", "etc/acpi/rsdp", "etc/acpi/tables"]
        .iter()
        .enumerate()
        .map(|(i, name)| AcpiBlob {
            name,
            path: PathBuf::from(name),
            bytes: vec![i as u8; 100 + i],
        })
        .collect()
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// MRTD written out from the facts note's formulas: a 128-byte
/// "MEM.PAGE.ADD"/GPA block per page, a 128-byte "MR.EXTEND"/GPA block plus
/// 256 data bytes per chunk of extended sections, all in one SHA-384.
fn spec_mrtd(fw: &[u8], sections: &[RawSection], two_pass: bool) -> Measurement {
    let block = |tag: &[u8], gpa: u64| {
        let mut b = vec![0u8; 128];
        b[..tag.len()].copy_from_slice(tag);
        b[16..24].copy_from_slice(&gpa.to_le_bytes());
        b
    };
    let mut stream = Vec::new();
    for &(off, _, gpa, size, _, attr) in sections {
        let pages: Vec<u64> = (0..size / 4096).collect();
        let add = |p: u64| block(b"MEM.PAGE.ADD", gpa + p * 4096);
        let ext = |p: u64| {
            let mut out = Vec::new();
            if attr & 1 != 0 {
                for c in 0..16u64 {
                    let at = p * 4096 + c * 256;
                    out.extend(block(b"MR.EXTEND", gpa + at));
                    let from = off as usize + at as usize;
                    out.extend_from_slice(&fw[from..from + 256]);
                }
            }
            out
        };
        if two_pass {
            pages.iter().for_each(|&p| stream.extend(add(p)));
            pages.iter().for_each(|&p| stream.extend(ext(p)));
        } else {
            for &p in &pages {
                stream.extend(add(p));
                stream.extend(ext(p));
            }
        }
    }
    Sha384::digest(&stream).into()
}

/// osslsigncode's Authenticode SHA-384 of `file`, or None when the tool is
/// not installed.
fn osslsigncode_sha384(file: &Path, scratch: &Path) -> Option<Measurement> {
    // osslsigncode refuses to overwrite: one output per input file.
    let mut name = file.file_name().unwrap().to_owned();
    name.push(".authenticode.der");
    let out = scratch.join(name);
    let run = Command::new("osslsigncode")
        .args(["extract-data", "-h", "sha384", "-in"])
        .arg(file)
        .arg("-out")
        .arg(&out)
        .output();
    match run {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ee_testkit::unavailable(
                "measure: osslsigncode cross-check",
                "osslsigncode is not installed (Debian package osslsigncode; scripts/install-deps installs it)",
            );
            return None;
        }
        Err(e) => panic!("running osslsigncode: {e}"),
        Ok(o) => assert!(
            o.status.success(),
            "osslsigncode extract-data failed (it needs osslsigncode >= 2.6: Debian trixie or bookworm-backports): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
    }
    // The DER holds AlgorithmIdentifier{sha384, NULL} then OCTET STRING(48).
    let der = std::fs::read(out).unwrap();
    let prefix = hex::decode("0609608648016503040202050004 30".replace(' ', "")).unwrap();
    let at = der
        .windows(prefix.len())
        .position(|w| w == prefix)
        .expect("sha384 digest in osslsigncode output");
    Some(
        der[at + prefix.len()..at + prefix.len() + 48]
            .try_into()
            .unwrap(),
    )
}

// ------------------------------------------------------------------ MRTD

#[test]
fn tiny_firmware_mrtd_matches_the_spec_formulas() {
    let fw = tiny_firmware(&TINY_SECTIONS);
    // The parse itself is the SDK's and tested there.
    let meta = TdvfMetadata::parse(&fw).unwrap();
    let single = compute_mrtd(&fw, &meta, PageAddOrder::SinglePass).unwrap();
    let two = compute_mrtd(&fw, &meta, PageAddOrder::TwoPass).unwrap();
    assert_eq!(single, spec_mrtd(&fw, &TINY_SECTIONS, false));
    assert_eq!(two, spec_mrtd(&fw, &TINY_SECTIONS, true));
    assert_ne!(single, two, "a 2-page extended section orders differently");

    // Extended bytes count: one changed BFV byte changes MRTD, a changed
    // CFV byte (added, not extended) does not.
    let mut bfv_changed = fw.clone();
    bfv_changed[0x5000] ^= 1;
    assert_ne!(
        compute_mrtd(&bfv_changed, &meta, PageAddOrder::SinglePass).unwrap(),
        single
    );
    let mut cfv_changed = fw.clone();
    cfv_changed[0x10] ^= 1;
    assert_eq!(
        compute_mrtd(&cfv_changed, &meta, PageAddOrder::SinglePass).unwrap(),
        single
    );
}

#[test]
fn debian_ovmf_has_tdvf_metadata_and_both_orders_differ() {
    let fw = debian_ovmf();
    let meta = TdvfMetadata::parse(&fw.bytes).unwrap();
    let bfv = meta
        .sections
        .iter()
        .find(|s| s.kind == SectionType::Bfv)
        .unwrap();
    assert!(bfv.mr_extend(), "the BFV is extended into MRTD");
    assert!(meta.td_hob().is_some() && meta.cfv().is_some());
    assert!(meta.sections.iter().all(|s| !s.page_aug()));
    let single = compute_mrtd(&fw.bytes, &meta, PageAddOrder::SinglePass).unwrap();
    let two = compute_mrtd(&fw.bytes, &meta, PageAddOrder::TwoPass).unwrap();
    assert_ne!(single, two);
    // The QEMU version picks the order.
    let t9 = measure(&inputs("9.2.0", "2G")).unwrap();
    let t8 = measure(&inputs("8.2.2", "2G")).unwrap();
    assert_eq!((t9.mrtd, t8.mrtd), (single, two));
}

/// The TDVF parser's refusals are the SDK's and tested there
/// (`easyenclave::tdvf`); what MRTD itself refuses is tested here.
#[test]
fn mrtd_refuses_page_aug() {
    // PAGE.AUG is refused rather than guessed.
    let aug = [TINY_SECTIONS[0], (0, 0, 0x80_9000, 0x2000, 2, 2)];
    let fw = tiny_firmware(&aug);
    let meta = TdvfMetadata::parse(&fw).unwrap();
    let e = compute_mrtd(&fw, &meta, PageAddOrder::SinglePass)
        .unwrap_err()
        .to_string();
    assert!(e.contains("PAGE.AUG"), "{e}");
}

// ---------------------------------------------------------------- TD HOB

#[test]
fn td_hob_layout() {
    let fw = tiny_firmware(&TINY_SECTIONS);
    let meta = TdvfMetadata::parse(&fw).unwrap();
    for (memory, ram) in [
        (1u64 << 30, vec![(0u64, 1u64 << 30)]),
        // From 0xB0000000 on, q35 keeps 2 GiB low and maps the rest at 4 GiB.
        (8 << 30, vec![(0, 2 << 30), (4 << 30, 6 << 30)]),
    ] {
        let hob = build_td_hob(&meta, memory).unwrap();
        let b = &hob.measured_bytes;
        // Expected descriptors: the TEMP_MEM and TD_HOB ranges added, the
        // rest of RAM unaccepted, sorted by address.
        let mut expected = vec![
            (0, 0x80_0000, 7u32),
            (0x80_0000, 0x6000, 0),
            (0x80_6000, 0x3000, 7),
            (0x80_9000, 0x2000, 0),
            (0x80_b000, ram[0].1 - 0x80_b000, 7),
        ];
        if let Some(&(start, len)) = ram.get(1) {
            expected.push((start, len, 7));
        }
        assert_eq!(b.len(), 56 + 48 * expected.len());
        // PHIT: type 1, length 56, version 9, EfiEndOfHobList just past the
        // 8-byte end-of-list HOB at the TD_HOB address 0x809000.
        assert_eq!(&b[0..4], &[1, 0, 56, 0]);
        assert_eq!(&b[8..12], &9u32.to_le_bytes());
        assert!(b[12..48].iter().all(|&x| x == 0));
        assert_eq!(&b[48..56], &(0x80_9000 + b.len() as u64 + 8).to_le_bytes());
        for (i, &(start, len, kind)) in expected.iter().enumerate() {
            let d = &b[56 + 48 * i..56 + 48 * (i + 1)];
            assert_eq!(&d[0..4], &[3, 0, 48, 0], "descriptor {i}");
            assert!(
                d[4..24].iter().all(|&x| x == 0),
                "reserved and owner are zero"
            );
            assert_eq!(&d[24..28], &kind.to_le_bytes(), "descriptor {i} type");
            assert_eq!(&d[28..32], &7u32.to_le_bytes());
            assert_eq!(&d[32..40], &start.to_le_bytes(), "descriptor {i} start");
            assert_eq!(&d[40..48], &len.to_le_bytes(), "descriptor {i} length");
        }
    }
    let e = build_td_hob(&meta, 4 << 20).unwrap_err().to_string();
    assert!(e.contains("not inside guest RAM"), "{e}");
}

// ------------------------------------------------------------------ RTMR0

#[test]
fn rtmr0_events_with_debian_ovmf() {
    let mut inp = inputs("10.0.2", "2G");
    let t = measure(&inp).unwrap();
    assert_eq!(t.rtmr0, None);
    assert!(t
        .rtmr0_not_computed
        .as_deref()
        .unwrap()
        .contains("etc/table-loader"));
    assert_eq!(t.events_of(Register::Rtmr0).count(), 0);

    inp.acpi = Some(fake_acpi());
    let t = measure(&inp).unwrap();
    let events: Vec<_> = t.events_of(Register::Rtmr0).collect();
    assert_eq!(events.len(), 13);
    assert_eq!(hex::encode(events[1].digest), DSTACK_CFV_SHA384, "CFV");
    // EFI variables with no data: GUID, name length, data length 0, name.
    let vars = [
        ("SecureBoot", "8be4df61-93ca-11d2-aa0d-00e098032b8c"),
        ("PK", "8be4df61-93ca-11d2-aa0d-00e098032b8c"),
        ("KEK", "8be4df61-93ca-11d2-aa0d-00e098032b8c"),
        ("db", "d719b2cb-3d3a-4596-a3bc-dad00e67656f"),
        ("dbx", "d719b2cb-3d3a-4596-a3bc-dad00e67656f"),
    ];
    for (i, (name, vendor)) in vars.iter().enumerate() {
        let mut data = guid(vendor).to_vec();
        data.extend_from_slice(&(name.len() as u64).to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        data.extend(utf16(name));
        assert_eq!(events[2 + i].digest, sha384(&data), "{name}");
    }
    assert_eq!(events[7].digest, sha384(&[0; 4]), "separator");
    for (i, blob) in fake_acpi().iter().enumerate() {
        assert_eq!(events[8 + i].digest, sha384(&blob.bytes));
        assert!(events[8 + i].label.contains(blob.name));
    }
    assert_eq!(events[11].digest, sha384(&[0, 0]), "BootOrder");
    assert_eq!(
        hex::encode(events[12].digest),
        DSTACK_BOOT0000_SHA384,
        "Boot0000"
    );
    assert_eq!(
        hex::encode(sha384(&ovmf::boot0000())),
        DSTACK_BOOT0000_SHA384
    );
    // The register is the replay of exactly these digests.
    let replayed = events.iter().fold(RTMR_RESET, |r, e| extend(&r, &e.digest));
    assert_eq!(t.rtmr0, Some(replayed));

    // The memory size moves only the TD HOB event.
    let mut more = inp.clone();
    more.memory = "4G".parse().unwrap();
    let t4 = measure(&more).unwrap();
    let e4: Vec<_> = t4.events_of(Register::Rtmr0).collect();
    assert_ne!(e4[0].digest, events[0].digest);
    assert_eq!(e4[1..], events[1..]);
}

#[test]
fn acpi_dir_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_acpi_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("etc/table-loader"), "{e}");
    // Plain files, and the guest sysfs layout `<name>/raw`.
    std::fs::create_dir_all(dir.path().join("etc/acpi/tables")).unwrap();
    std::fs::write(dir.path().join("etc/table-loader"), b"loader").unwrap();
    std::fs::write(dir.path().join("etc/acpi/rsdp"), b"rsdp").unwrap();
    std::fs::write(dir.path().join("etc/acpi/tables/raw"), b"tables").unwrap();
    let blobs = read_acpi_dir(dir.path()).unwrap();
    let got: Vec<_> = blobs.iter().map(|b| (b.name, b.bytes.as_slice())).collect();
    assert_eq!(
        got,
        [
            ("etc/table-loader", b"loader".as_slice()),
            ("etc/acpi/rsdp", b"rsdp".as_slice()),
            ("etc/acpi/tables", b"tables".as_slice())
        ]
    );
}

// ------------------------------------------------------------------ RTMR1

#[test]
fn kernel_authenticode_matches_osslsigncode() {
    let scratch = tempfile::tempdir().unwrap();
    let k = kernel();
    let Some(reference) = osslsigncode_sha384(&k.path, scratch.path()) else {
        return;
    };
    assert_eq!(authenticode_sha384(&k.bytes).unwrap(), reference);

    // QEMU >= 10.2 measures the kernel as shipped.
    let t = measure(&inputs("10.2.0", "2G")).unwrap();
    let first = t.events_of(Register::Rtmr1).next().unwrap();
    assert_eq!(first.digest, reference);
    assert!(t.inputs.kernel_header_patch.is_empty());

    // Older QEMU: the patched header; checked by osslsigncode too.
    let boot = DirectBoot {
        cmdline: "console=ttyS0 panic=-1",
        initrd_size: Some(10 << 20),
        below_4g: 2 << 30,
    };
    let (setup, _) = qemu_patched_setup(&k.bytes, &boot).unwrap();
    let patched = [&setup[..], &k.bytes[setup.len()..]].concat();
    let patched_file = scratch.path().join("vmlinuz.patched");
    std::fs::write(&patched_file, &patched).unwrap();
    let patched_reference = osslsigncode_sha384(&patched_file, scratch.path()).unwrap();
    let t = measure(&inputs("10.1.0", "2G")).unwrap();
    let first = t.events_of(Register::Rtmr1).next().unwrap();
    assert_eq!(first.digest, patched_reference);
    assert_ne!(patched_reference, reference);
}

#[test]
fn rtmr1_events_and_memory_dependence() {
    let t = measure(&inputs("10.0.2", "2G")).unwrap();
    let events: Vec<_> = t.events_of(Register::Rtmr1).collect();
    let fixed: Vec<Measurement> = [
        b"Calling EFI Application from Boot Option".as_slice(),
        &[0, 0, 0, 0],
        b"Exit Boot Services Invocation",
        b"Exit Boot Services Returned with Success",
    ]
    .iter()
    .map(|d| sha384(d))
    .collect();
    let got: Vec<_> = events[1..].iter().map(|e| e.digest).collect();
    assert_eq!(got, fixed);
    assert_eq!(t.rtmr1, t.replay(Register::Rtmr1));
    let fields: Vec<_> = t
        .inputs
        .kernel_header_patch
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "cmd_line_ptr",
            "type_of_loader",
            "loadflags",
            "heap_end_ptr",
            "ramdisk_image",
            "ramdisk_size"
        ]
    );

    // With a patched header the initrd address follows the low RAM size:
    // 1 GiB and 2 GiB differ, 3 GiB and 8 GiB (both 2 GiB low) agree.
    let rtmr1 = |qemu: &str, memory: &str| measure(&inputs(qemu, memory)).unwrap().rtmr1;
    assert_ne!(rtmr1("10.0.2", "1G"), rtmr1("10.0.2", "2G"));
    assert_eq!(rtmr1("10.0.2", "3G"), rtmr1("10.0.2", "8G"));
    // QEMU 10.2 leaves the header alone: RTMR1 no longer depends on memory.
    assert_eq!(rtmr1("10.2.0", "1G"), rtmr1("10.2.0", "8G"));
}

// ------------------------------------------------------------------ RTMR2

#[test]
fn rtmr2_is_cmdline_then_initrd() {
    let inp = inputs("10.0.2", "2G");
    let t = measure(&inp).unwrap();
    let mut load_options = utf16("console=ttyS0 panic=-1 initrd=initrd");
    load_options.extend_from_slice(&[0, 0]);
    let expected = extend(
        &extend(&RTMR_RESET, &sha384(&load_options)),
        &sha384(&inp.initrd.as_ref().unwrap().bytes),
    );
    assert_eq!(t.rtmr2, expected);

    let mut no_initrd = inp.clone();
    no_initrd.initrd = None;
    let t = measure(&no_initrd).unwrap();
    let mut load_options = utf16("console=ttyS0 panic=-1");
    load_options.extend_from_slice(&[0, 0]);
    assert_eq!(t.rtmr2, extend(&RTMR_RESET, &sha384(&load_options)));
}

// ------------------------------------------------------------------- diff

#[test]
fn diff_names_the_register_and_event() {
    let mut inp = inputs("10.0.2", "2G");
    inp.acpi = Some(fake_acpi());
    let t = measure(&inp).unwrap();
    let mut expected = Expected {
        version: 1,
        mrtd: Some(t.mrtd),
        rtmr0: t.rtmr0,
        rtmr1: Some(t.rtmr1),
        rtmr2: Some(t.rtmr2),
        ..Expected::default()
    };
    let report = diff(&expected, &t);
    assert_eq!(report.mismatch, None);
    assert_eq!(report.matched, Register::ALL);

    // The TD ran QEMU 10.2 (unpatched kernel header): RTMR1 differs at
    // event 0, the kernel; MRTD and RTMR0 still match.
    let td = measure(&MeasureInputs {
        qemu: "10.2.0".parse().unwrap(),
        ..inp.clone()
    })
    .unwrap();
    expected.rtmr1 = Some(td.rtmr1);
    expected.rtmr1_events = td.events_of(Register::Rtmr1).map(|e| e.digest).collect();
    let report = diff(&expected, &t);
    let m = report.mismatch.expect("rtmr1 differs");
    assert_eq!(m.register, Register::Rtmr1);
    let event = m.event.expect("event digests given");
    assert_eq!(event.index, 0);
    assert!(event.label.unwrap().starts_with("kernel "));
    assert!(event.log_replays);
    assert!(report.matched.contains(&Register::Mrtd));

    // Without the event digests it still names the register, with a hint.
    expected.rtmr1_events.clear();
    let m = diff(&expected, &t).mismatch.unwrap();
    assert_eq!((m.register, m.event), (Register::Rtmr1, None));
    assert!(m.hint.contains("10.2"), "{}", m.hint);

    // A log that does not replay to the quoted value is flagged.
    expected.rtmr2 = Some([7; 48]);
    expected.rtmr1 = Some(t.rtmr1);
    expected.rtmr2_events = vec![[1; 48]];
    let m = diff(&expected, &t).mismatch.unwrap();
    assert_eq!(m.register, Register::Rtmr2);
    assert!(!m.event.unwrap().log_replays);
}

#[test]
fn expected_json_format() {
    let json = format!(
        r#"{{"version": 1, "mrtd": "{}", "rtmr1_events": ["{}"]}}"#,
        "ab".repeat(48),
        "CD".repeat(48)
    );
    let e = Expected::from_json(&json).unwrap();
    assert_eq!(e.mrtd, Some([0xab; 48]));
    assert_eq!(e.rtmr1_events, vec![[0xcd; 48]]);
    assert_eq!(e.rtmr0, None);
    assert!(Expected::from_json(r#"{"version": 2}"#)
        .unwrap_err()
        .contains("version 2"));
    assert!(Expected::from_json(r#"{"version": 1, "rtmr3": "00"}"#).is_err());
    assert!(Expected::from_json(r#"{"version": 1, "mrtd": "abcd"}"#)
        .unwrap_err()
        .contains("expected 48 bytes"));
}

// -------------------------------------------------------------- bad input

#[test]
fn bad_inputs_name_the_file_and_reason() {
    let mut inp = inputs("10.0.2", "2G");
    inp.firmware = InputFile {
        path: PathBuf::from("/fw/plain.fd"),
        bytes: vec![0xff; 1 << 20],
    };
    let e = measure(&inp).unwrap_err().to_string();
    assert!(
        e.starts_with("firmware /fw/plain.fd: no TDVF metadata: footer GUID"),
        "{e}"
    );
    assert!(e.contains("len-48"), "{e}");

    let mut inp = inputs("10.0.2", "2G");
    inp.kernel = debian_ovmf();
    let e = measure(&inp).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("kernel {DEBIAN_OVMF}: not a bzImage")),
        "{e}"
    );

    // A bzImage header but no PE image (the EFI stub's "MZ" removed).
    let mut inp = inputs("10.2.0", "2G");
    inp.kernel.bytes[0] = 0;
    let e = measure(&inp).unwrap_err();
    assert!(matches!(e, MeasureError::KernelPe { .. }), "{e}");
    assert!(e.to_string().contains("not a PE/COFF image"), "{e}");

    // A PE whose section runs past the end of the file.
    let mut inp = inputs("10.2.0", "2G");
    inp.kernel.bytes.truncate(1 << 20);
    let e = measure(&inp).unwrap_err().to_string();
    assert!(
        e.contains("section .text raw data") && e.contains("outside"),
        "{e}"
    );

    let e = "2147483000".parse::<MemorySize>().unwrap_err();
    assert!(
        e.contains("not a non-zero multiple of the 4096-byte page size"),
        "{e}"
    );
    assert!("2X"
        .parse::<MemorySize>()
        .unwrap_err()
        .contains("unknown unit"));
    assert_eq!("2G".parse::<MemorySize>().unwrap().bytes(), 2 << 30);
    assert_eq!("1536M".parse::<MemorySize>().unwrap().bytes(), 1536 << 20);
    assert!("8192T".parse::<MemorySize>().unwrap_err().contains("2^52"));

    // Too little memory for the TDVF's TD HOB at 8 MiB.
    let mut inp = inputs("10.0.2", "2G");
    inp.memory = "4M".parse().unwrap();
    let e = measure(&inp).unwrap_err().to_string();
    assert!(
        e.contains(DEBIAN_OVMF) && e.contains("not inside guest RAM"),
        "{e}"
    );

    assert!("7.2"
        .parse::<QemuVersion>()
        .unwrap_err()
        .contains("older than 8.0.0"));
    assert!("10".parse::<QemuVersion>().is_err());
    assert_eq!(
        "10.1".parse::<QemuVersion>().unwrap(),
        QemuVersion::new(10, 1, 0)
    );
}

// --------------------------------------------------------------------- CLI

/// Run `ee-image` without requiring success.
fn run_ee_image(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ee-image"))
        .args(args)
        .output()
        .expect("running ee-image")
}

#[test]
fn cli_json_and_expected_values() {
    let dir = tempfile::tempdir().unwrap();
    let initrd_path = dir.path().join("initrd.img");
    std::fs::write(&initrd_path, initrd().bytes).unwrap();
    let acpi = dir.path().join("acpi");
    for blob in fake_acpi() {
        let path = acpi.join(blob.name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &blob.bytes).unwrap();
    }
    let kernel = common::guest_kernel().vmlinuz;
    let base = [
        "measure",
        "--firmware",
        DEBIAN_OVMF,
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd_path.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 panic=-1",
        "--memory",
        "2G",
        "--qemu-version",
        "10.0.2",
        "--acpi",
        acpi.to_str().unwrap(),
    ];
    let out = common::ee_image(&[&base[..], &["--json"]].concat(), &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["inputs"]["qemu_version"], "10.0.2");
    assert_eq!(json["inputs"]["page_add_order"], "single-pass");
    assert_eq!(json["events"].as_array().unwrap().len(), 13 + 5 + 2);
    assert_eq!(json["events"][12]["register"], "rtmr0");
    assert_eq!(json["events"][12]["digest"], DSTACK_BOOT0000_SHA384);
    // The library gives the same registers as the command.
    let mut lib_inputs = inputs("10.0.2", "2G");
    lib_inputs.acpi = Some(read_acpi_dir(&acpi).unwrap());
    let t = measure(&lib_inputs).unwrap();
    for register in Register::ALL {
        let value = t.register(register).map(hex::encode);
        assert_eq!(
            json[register.to_string()].as_str(),
            value.as_deref(),
            "{register}"
        );
    }

    // --expected with the same values passes and says so.
    let expected_path = dir.path().join("expected.json");
    let mut expected = serde_json::json!({
        "version": 1,
        "mrtd": json["mrtd"], "rtmr0": json["rtmr0"],
        "rtmr1": json["rtmr1"], "rtmr2": json["rtmr2"],
    });
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let with_expected = [&base[..], &["--expected", expected_path.to_str().unwrap()]].concat();
    let out = common::ee_image(&with_expected, &[]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("rtmr2  matches"), "{report}");

    // A different RTMR2 fails with exit status 1 and names it.
    expected["rtmr2"] = serde_json::json!("00".repeat(48));
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let out = run_ee_image(&with_expected);
    let report = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("rtmr2  DIFFERS"), "{report}");
    assert!(report.contains("measurements differ from"), "{report}");

    // A quote works as the expected values: one whose TD report carries the
    // computed registers matches; the same with another RTMR1 does not.
    use easyenclave::sim::{pki::SimPki, td::SimTd, td::SimTdConfig, DEV_SEED};
    let hex48 = |v: &serde_json::Value| -> [u8; 48] {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let pki = SimPki::from_seed(DEV_SEED).unwrap();
    let quote_path = dir.path().join("quote.hex");
    for (rtmr1, passes) in [(hex48(&json["rtmr1"]), true), ([5; 48], false)] {
        let config = SimTdConfig {
            mr_td: hex48(&json["mrtd"]),
            rtmrs: [hex48(&json["rtmr0"]), rtmr1, hex48(&json["rtmr2"]), [0; 48]],
            ..SimTdConfig::default()
        };
        let quote = SimTd::new(&pki, config).quote(&[0; 64]).unwrap();
        std::fs::write(&quote_path, hex::encode(quote)).unwrap();
        let args = [&base[..], &["--expected", quote_path.to_str().unwrap()]].concat();
        let out = run_ee_image(&args);
        let report = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), passes, "{report}");
        let rtmr1_line = if passes {
            "rtmr1  matches"
        } else {
            "rtmr1  DIFFERS"
        };
        assert!(report.contains(rtmr1_line), "{report}");
    }
}

/// `ee-image diff`: a saved transcript against a TD's values, without the
/// inputs; a transcript that contradicts itself is refused.
#[test]
fn cli_diff_against_a_saved_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let inp = inputs("10.0.2", "2G");
    let t = measure(&inp).unwrap();
    let transcript_path = dir.path().join("transcript.json");
    std::fs::write(&transcript_path, serde_json::to_string(&t).unwrap()).unwrap();
    // The saved transcript reads back as the same value.
    let text = std::fs::read_to_string(&transcript_path).unwrap();
    assert_eq!(ee_image::measure::Transcript::from_json(&text).unwrap(), t);

    // The TD booted with QEMU 10.2: its RTMR1 and event digests differ.
    let td = measure(&MeasureInputs {
        qemu: "10.2.0".parse().unwrap(),
        ..inp.clone()
    })
    .unwrap();
    let td_path = dir.path().join("td.json");
    let values = |rtmr1: Measurement, events: Vec<String>| {
        serde_json::json!({
            "version": 1,
            "mrtd": hex::encode(t.mrtd),
            "rtmr1": hex::encode(rtmr1),
            "rtmr2": hex::encode(t.rtmr2),
            "rtmr1_events": events,
        })
        .to_string()
    };
    let td_events = td
        .events_of(Register::Rtmr1)
        .map(|e| hex::encode(e.digest))
        .collect();
    std::fs::write(&td_path, values(td.rtmr1, td_events)).unwrap();
    let args = [
        "diff",
        "--transcript",
        transcript_path.to_str().unwrap(),
        "--td",
        td_path.to_str().unwrap(),
    ];
    let out = run_ee_image(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("mrtd   matches"), "{stdout}");
    assert!(stdout.contains("rtmr1  DIFFERS"), "{stdout}");
    assert!(
        stdout.contains("first differing event #0: kernel "),
        "{stdout}"
    );
    assert!(stdout.contains("rtmr0  not compared"), "{stdout}");
    assert!(stderr.contains("rtmr1 differs from"), "{stderr}");

    // The same values as computed: exit 0.
    std::fs::write(&td_path, values(t.rtmr1, vec![])).unwrap();
    let out = run_ee_image(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A hand-edited register that its events do not replay to.
    let mut edited: serde_json::Value = serde_json::from_str(&text).unwrap();
    edited["rtmr2"] = serde_json::json!("11".repeat(48));
    std::fs::write(&transcript_path, edited.to_string()).unwrap();
    let out = run_ee_image(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("inconsistent transcript: its rtmr2 events replay to"),
        "{stderr}"
    );

    // Not a transcript at all.
    std::fs::write(&transcript_path, "{\"version\": 1}").unwrap();
    let out = run_ee_image(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("transcript.json: missing field"),
        "{stderr}"
    );
}

#[test]
fn cli_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = common::guest_kernel().vmlinuz;
    let kernel = kernel.to_str().unwrap();
    let args = |firmware: &str, kernel: &str, memory: &str| {
        run_ee_image(&[
            "measure",
            "--firmware",
            firmware,
            "--kernel",
            kernel,
            "--memory",
            memory,
            "--qemu-version",
            "10.0.2",
        ])
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let out = args(DEBIAN_OVMF, kernel, "1000000");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a non-zero multiple of the 4096-byte page size"));

    let plain = dir.path().join("plain.fd");
    std::fs::write(&plain, vec![0u8; 1 << 20]).unwrap();
    let out = args(plain.to_str().unwrap(), kernel, "2G");
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains(&format!("firmware {}: no TDVF metadata", plain.display())),
        "{msg}"
    );

    let out = args(DEBIAN_OVMF, DEBIAN_OVMF, "2G");
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains(&format!("kernel {DEBIAN_OVMF}: not a bzImage")),
        "{msg}"
    );

    let missing = dir.path().join("missing");
    let out = args(DEBIAN_OVMF, missing.to_str().unwrap(), "2G");
    assert!(stderr(&out).contains(&format!("reading {}", missing.display())));
}

#[test]
fn authenticode_of_a_file_in_pieces() {
    use ee_image::measure::authenticode::authenticode_sha384_parts;
    let k = kernel().bytes;
    let whole = authenticode_sha384(&k).unwrap();
    // Cuts inside e_lfanew, the optional header, a section and the trailer.
    for cuts in [
        vec![0x3d],
        vec![1, 0x100, 0x4007],
        vec![0x5000, k.len() - 3],
    ] {
        let mut parts = Vec::new();
        let mut from = 0;
        for &cut in &cuts {
            parts.push(&k[from..cut]);
            from = cut;
        }
        parts.push(&k[from..]);
        assert_eq!(
            authenticode_sha384_parts(&parts).unwrap(),
            whole,
            "{cuts:x?}"
        );
    }
}
