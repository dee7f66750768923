//! `image.json`: what a guest image was built from, what it consists of,
//! and its id. `ee-image build` writes it; `ee-image allowlist` and
//! `ee-host` read it.
//!
//! Format version 1:
//!
//! ```json
//! {"version": 1, "image_id": "<sha256 hex>", "variant": "sim",
//!  "kernel": "vmlinuz", "initrd": "initrd.img",
//!  "kernel_release": "7.3.4+deb13-cloud-amd64", "cmdline": "console=ttyS0 ... ee.variant=sim",
//!  "inputs": {"config": {"file", "size", "sha256", "sha384"}, "lock": {..}, "ee_init": {..},
//!             "packages": [{"name", "version", "sha256"}]},
//!  "outputs": {"kernel": {..}, "initrd": {..}, "cmdline": {..}},
//!  "modules": ["failover", ...]}
//! ```
//!
//! The image id is the SHA-256 of the text
//! `ee-image-id 1\nvariant <v>\nkernel <sha384>\ninitrd <sha384>\ncmdline <sha384>\n`:
//! exactly what the kernel, initrd and command line registers are computed
//! from, so two images with the same id measure the same on the same VM shape.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::allowlist::Variant;

/// The manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name in an image directory.
pub const MANIFEST_FILE: &str = "image.json";
/// The kernel's file name in an image directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initrd's file name in an image directory.
pub const INITRD_FILE: &str = "initrd.img";
/// The command line's file name in an image directory (no trailing newline).
pub const CMDLINE_FILE: &str = "cmdline";
/// Largest manifest accepted.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Guest path of the marker file only the dev variant's initramfs holds:
/// while it exists and the TD's log holds no seal event, ee-init opens a
/// console shell on a fatal boot error; sealing unlinks it first.
pub const DEV_IMAGE_MARKER: &str = "/etc/ee/dev-image";

/// Size and digests of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// File name (outputs: inside the image directory).
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    #[serde(with = "crate::hexser")]
    pub sha256: [u8; 32],
    /// SHA-384 (the digest TDX registers extend).
    #[serde(with = "crate::hexser")]
    pub sha384: [u8; 48],
}

impl FileDigest {
    /// Digests of `bytes`, recorded under `file`.
    pub fn of(file: &str, bytes: &[u8]) -> Self {
        FileDigest {
            file: file.to_owned(),
            size: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
            sha384: crate::rtmr::sha384(bytes),
        }
    }
}

/// A package that went into the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageDigest {
    /// Package name.
    pub name: String,
    /// Debian version.
    pub version: String,
    /// SHA-256 of the `.deb`.
    #[serde(with = "crate::hexser")]
    pub sha256: [u8; 32],
}

/// Everything the build read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// The configuration file.
    pub config: FileDigest,
    /// The lock file.
    pub lock: FileDigest,
    /// The variant's ee-init binary.
    pub ee_init: FileDigest,
    /// The packages in this variant (kernel packages included).
    pub packages: Vec<PackageDigest>,
}

/// Everything the build wrote besides the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// The kernel (bzImage with EFI stub).
    pub kernel: FileDigest,
    /// The initrd (gzip'd cpio).
    pub initrd: FileDigest,
    /// The kernel command line.
    pub cmdline: FileDigest,
}

/// `image.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u32,
    /// See the module documentation.
    pub image_id: String,
    /// Which variant this is.
    pub variant: Variant,
    /// The kernel file, relative to the image directory (the same fields
    /// as ee-host's boot manifest: `kernel`, `initrd`, `cmdline`).
    pub kernel: String,
    /// The initrd file, relative to the image directory.
    pub initrd: String,
    /// Kernel release.
    pub kernel_release: String,
    /// The kernel command line (also in the `cmdline` file).
    pub cmdline: String,
    /// Inputs.
    pub inputs: Inputs,
    /// Outputs.
    pub outputs: Outputs,
    /// Kernel modules in the initrd, in load order.
    pub modules: Vec<String>,
}

impl ImageManifest {
    /// A manifest with its image id computed from `outputs`.
    pub fn new(
        variant: Variant,
        cmdline: String,
        kernel_release: String,
        inputs: Inputs,
        outputs: Outputs,
        modules: Vec<String>,
    ) -> Self {
        let image_id = image_id(variant, &outputs);
        ImageManifest {
            version: MANIFEST_VERSION,
            image_id,
            variant,
            kernel: KERNEL_FILE.to_owned(),
            initrd: INITRD_FILE.to_owned(),
            kernel_release,
            cmdline,
            inputs,
            outputs,
            modules,
        }
    }

    /// Parse and check `image.json`: strict fields, the version, and an
    /// image id that matches the outputs. The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(format!(
                "{} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                bytes.len()
            ));
        }
        let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if manifest.version != MANIFEST_VERSION {
            return Err(format!(
                "version: expected {MANIFEST_VERSION}, got {}",
                manifest.version
            ));
        }
        let expected = image_id(manifest.variant, &manifest.outputs);
        if manifest.image_id != expected {
            return Err(format!(
                "image_id {} does not match its outputs (expected {expected})",
                manifest.image_id
            ));
        }
        Ok(manifest)
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        // Strings, numbers and hex only: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// The variant as `image.json`, the image id and the command line name it.
pub fn variant_name(variant: Variant) -> &'static str {
    match variant {
        Variant::Production => "production",
        Variant::Dev => "dev",
        Variant::Sim => "sim",
    }
}

/// See the module documentation.
fn image_id(variant: Variant, outputs: &Outputs) -> String {
    let text = format!(
        "ee-image-id 1\nvariant {}\nkernel {}\ninitrd {}\ncmdline {}\n",
        variant_name(variant),
        hex::encode(outputs.kernel.sha384),
        hex::encode(outputs.initrd.sha384),
        hex::encode(outputs.cmdline.sha384),
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// How an `ee-init` binary tells which TSM backends it was built with,
/// without being run: the bytes `ee-init-backends:`, a comma-separated list
/// of lower-case names (`tdx`, `sim`) and a NUL, kept in the binary. The
/// image builder refuses a production image whose `ee-init` carries `sim`.
pub const EE_INIT_BACKENDS_MARKER: &[u8] = b"ee-init-backends:";

/// Every well-formed backend list that `binary` carries (normally exactly
/// one). Occurrences of the marker not followed by `[a-z,]{1,64}` and a NUL
/// are not lists and are skipped.
pub fn ee_init_backends(binary: &[u8]) -> Vec<Vec<String>> {
    let marker = EE_INIT_BACKENDS_MARKER;
    let mut lists = Vec::new();
    let mut from = 0;
    while let Some(at) = binary
        .get(from..)
        .and_then(|rest| rest.windows(marker.len()).position(|w| w == marker))
    {
        let start = from + at + marker.len();
        from = start;
        let tail = binary.get(start..).unwrap_or_default();
        let Some(end) = tail.iter().take(65).position(|&b| b == 0) else {
            continue;
        };
        let list = tail.get(..end).unwrap_or_default();
        if list.is_empty() || !list.iter().all(|b| b.is_ascii_lowercase() || *b == b',') {
            continue;
        }
        lists.push(
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(initrd: &[u8]) -> Outputs {
        Outputs {
            kernel: FileDigest::of(KERNEL_FILE, b"kernel"),
            initrd: FileDigest::of(INITRD_FILE, initrd),
            cmdline: FileDigest::of(CMDLINE_FILE, b"console=ttyS0"),
        }
    }

    #[test]
    fn image_id_follows_the_documented_text() {
        let o = outputs(b"initrd");
        let text = format!(
            "ee-image-id 1\nvariant sim\nkernel {}\ninitrd {}\ncmdline {}\n",
            hex::encode(crate::rtmr::sha384(b"kernel")),
            hex::encode(crate::rtmr::sha384(b"initrd")),
            hex::encode(crate::rtmr::sha384(b"console=ttyS0")),
        );
        assert_eq!(
            image_id(Variant::Sim, &o),
            hex::encode(Sha256::digest(text))
        );
        assert_ne!(image_id(Variant::Sim, &o), image_id(Variant::Dev, &o));
        assert_ne!(
            image_id(Variant::Sim, &o),
            image_id(Variant::Sim, &outputs(b"x"))
        );
    }

    #[test]
    fn parse_rejects_a_tampered_id() {
        let digest = FileDigest::of("f", b"f");
        let inputs = Inputs {
            config: digest.clone(),
            lock: digest.clone(),
            ee_init: digest,
            packages: vec![],
        };
        let mut m = ImageManifest::new(
            Variant::Production,
            "c".into(),
            "r".into(),
            inputs,
            outputs(b"i"),
            vec![],
        );
        assert_eq!(ImageManifest::parse(m.to_json().as_bytes()).unwrap(), m);
        m.outputs.initrd = FileDigest::of(INITRD_FILE, b"other");
        let err = ImageManifest::parse(m.to_json().as_bytes()).unwrap_err();
        assert!(err.contains("does not match its outputs"), "{err}");
        let err = ImageManifest::parse(b"{}").unwrap_err();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn ee_init_backend_lists_are_read_from_the_bytes() {
        let binary = [
            &b"\x7fELF..ee-init-backends:"[..],
            b"garbage ee-init-backends:tdx,sim\0more ee-init-backends:TDX\0",
            b"ee-init-backends:tdx\0",
        ]
        .concat();
        assert_eq!(
            super::ee_init_backends(&binary),
            [
                vec!["tdx".to_owned(), "sim".to_owned()],
                vec!["tdx".to_owned()]
            ]
        );
        assert!(super::ee_init_backends(b"ee-init-backends:").is_empty());
    }
}
