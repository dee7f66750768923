//! `devimage::write_image_dir` with the real kernel cache: the directory
//! ee-host boots (its manifest format is in host/README.md, "Image
//! directory").

mod common;

use ee_image::devimage::{self, GUEST_MODULES};
use ee_image::initramfs::ExtraFile;

#[test]
fn image_dir_has_manifest_kernel_link_and_initrd_with_the_guest_modules() {
    let kernel = common::guest_kernel();
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init");
    std::fs::write(&init, b"\x7fELF stand-in for ee-init").unwrap();
    let extra = dir.path().join("services");
    std::fs::write(&extra, "# none\n").unwrap();
    let image_dir = dir.path().join("image");

    let image = devimage::write_image_dir(
        &image_dir,
        &init,
        &kernel,
        vec![ExtraFile {
            source: extra,
            dest: "/etc/ee/services".into(),
        }],
    )
    .unwrap();

    assert_eq!(image.dir, image_dir);
    assert_eq!(
        std::fs::read_to_string(image_dir.join("cmdline")).unwrap(),
        "console=ttyS0 panic=-1"
    );
    assert!(!image_dir.join("image.json").exists());
    assert_eq!(
        std::fs::read_link(image_dir.join("vmlinux")).unwrap(),
        kernel.vmlinux
    );
    assert_eq!(
        std::fs::read(image_dir.join("initrd.img")).unwrap(),
        image.initramfs.bytes
    );
    // gzip magic: the kernel unpacks it (RD_GZIP).
    assert_eq!(image.initramfs.bytes.get(..2), Some(&[0x1f, 0x8b][..]));

    // Every guest module is packed (none of them is built into Debian's
    // cloud kernel), with virtio_net's dependencies before it.
    let names: Vec<&str> = image
        .initramfs
        .modules
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for module in GUEST_MODULES {
        assert!(names.contains(module), "{module} missing from {names:?}");
    }
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(at("net_failover") < at("virtio_net"), "{names:?}");
    for path in ["/init", "/etc/ee/modules", "/etc/ee/services"] {
        assert!(
            image.initramfs.paths.iter().any(|p| p == path),
            "{path} missing"
        );
    }

    // A second image into the same directory is refused, naming it,
    // rather than mixing two images.
    let err = devimage::write_image_dir(&image_dir, &init, &kernel, vec![])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}: ", image_dir.display())),
        "{err}"
    );
    assert!(err.contains("exists"), "{err}");
}
