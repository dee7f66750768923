//! `ee-image build`: the guest image from pinned Debian packages.
//!
//! Everything the TD executes is in the initrd, which the kernel's EFI stub
//! measures into RTMR2 as one blob; the kernel unpacks it into its tmpfs
//! root, so all writable storage is RAM (see image/README.md for why).
//!
//! Steps: read the [`config::Config`] and the [`lock::Lock`], refusing a
//! lock that does not cover the configuration; fetch every package into the
//! [`debs::DebCache`], refusing a file whose SHA-256 differs from the lock;
//! unpack the kernel packages on disk and run `depmod` for the module
//! dependencies; build one file tree from the base packages, the modules
//! ee-init loads and the skeleton PID1 needs; then per variant add ee-init
//! (and for dev the console shell), write the gzip'd cpio and `image.json`
//! ([`manifest::ImageManifest`]).

pub mod config;
pub mod debs;
pub mod lock;
pub mod manifest;
pub mod progress;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use easyenclave::allowlist::Variant;
use thiserror::Error;

use crate::initramfs::{self, InitramfsError, ModuleSelection};
use crate::tree::{FileTree, TreeError};
use config::Config;
use debs::DebCache;
use lock::{Lock, Role};
use manifest::{FileDigest, ImageManifest, Inputs, Outputs, PackageDigest};
use progress::Progress;

/// Where modules go: Debian's merged-/usr path (`/lib` is a link to it).
const MODULES_ROOT: &str = "/usr/lib/modules";
/// ee-init's marker for an unsealed dev image (guest/README.md).
pub use easyenclave::image_manifest::DEV_IMAGE_MARKER;
/// gzip level of the initrd: 6 (zlib's default) compresses the ~340 MB
/// tree about three times faster than 9 for a few percent more size.
const GZIP_LEVEL: u32 = 6;
/// The variant name, readable in the image (`production`, `dev` or `sim`).
pub const VARIANT_PATH: &str = "/etc/ee/image-variant";

/// Why the build failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configuration or lock file is malformed.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The lock does not match the configuration.
    #[error("lock file {path}: {reason}")]
    LockMismatch {
        /// The lock file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A package file's SHA-256 differs from the lock.
    #[error("package {package}: {path} has sha256 {actual}, the lock pins {expected}")]
    DigestMismatch {
        /// `name=version`.
        package: String,
        /// The file.
        path: PathBuf,
        /// SHA-256 in the lock.
        expected: String,
        /// SHA-256 of the file.
        actual: String,
    },
    /// A package could not be unpacked.
    #[error("package {path}: {reason}")]
    Package {
        /// The `.deb` file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// apt's output was not what was asked for.
    #[error("{0}")]
    Apt(String),
    /// A tool could not be run or exited with an error.
    #[error("{command} failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and stderr, or why it did not start.
        reason: String,
    },
    /// The kernel packages lack a file.
    #[error("kernel: {0}")]
    Kernel(String),
    /// The dev variant's shell is missing.
    #[error("{0}")]
    DevShell(String),
    /// A variant's build thread panicked.
    #[error("a variant's build thread panicked")]
    ThreadPanicked,
    /// No ee-init binary was given.
    #[error("no variant to build: pass --ee-init VARIANT=PATH")]
    NoVariant,
    /// A production variant's ee-init carries the simulated platform, or
    /// does not say which backends it carries.
    #[error("--ee-init production={}: {problem}", path.display())]
    EeInitBackends {
        /// The binary.
        path: PathBuf,
        /// What it carries, and what a production image needs.
        problem: String,
    },
    /// Two paths collide or a path is malformed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Modules or compression failed.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The configuration file.
    pub config: PathBuf,
    /// The lock file.
    pub lock: PathBuf,
    /// The ee-init binary of each variant to build.
    pub ee_init: Vec<(Variant, PathBuf)>,
    /// Output directory; each variant goes to `<out>/<variant>/`.
    pub out: PathBuf,
    /// Package cache.
    pub deb_cache: PathBuf,
    /// mtime of every archive entry (SOURCE_DATE_EPOCH).
    pub mtime: u32,
}

/// Build every requested variant; returns their manifests.
pub fn build(spec: &BuildSpec, progress: &Progress) -> Result<Vec<ImageManifest>, BuildError> {
    if spec.ee_init.is_empty() {
        return Err(BuildError::NoVariant);
    }
    for (variant, path) in &spec.ee_init {
        if *variant == Variant::Production {
            check_production_ee_init(path)?;
        }
    }
    let config = Config::load(&spec.config)?;
    let lock = Lock::load(&spec.lock)?;
    lock.check_covers(&config, &spec.lock)?;
    let cache = DebCache::new(spec.deb_cache.clone());
    fs::create_dir_all(&spec.deb_cache).map_err(|source| BuildError::Write {
        path: spec.deb_cache.clone(),
        source,
    })?;

    progress.step(&format!(
        "fetching and verifying {} packages (cache {})",
        lock.packages.len(),
        spec.deb_cache.display()
    ));
    let all: Vec<&lock::LockedPackage> = lock.packages.iter().collect();
    let files = cache.fetch(&all)?;
    let debs: Vec<(&lock::LockedPackage, PathBuf)> = all.into_iter().zip(files).collect();

    progress.step("unpacking the kernel packages, depmod");
    fs::create_dir_all(&spec.out).map_err(|source| BuildError::Write {
        path: spec.out.clone(),
        source,
    })?;
    let staging = spec.out.join(".kernel");
    let _ = fs::remove_dir_all(&staging);
    for (_, deb) in debs.iter().filter(|(p, _)| p.role == Role::Kernel) {
        debs::extract_to_dir(deb, &staging)?;
    }
    let release = &config.kernel.release;
    let modules_dir = staging.join("usr/lib/modules").join(release);
    let vmlinuz_path = modules_dir.join("vmlinuz");
    let vmlinuz = read(&vmlinuz_path).map_err(|_| {
        BuildError::Kernel(format!(
            "no {} in the kernel packages",
            vmlinuz_path.display()
        ))
    })?;
    let mut depmod = Command::new("depmod");
    depmod.arg("-b").arg(staging.join("usr")).arg(release);
    run(&mut depmod)?;

    progress.step("unpacking the base packages");
    let mut tree = FileTree::new();
    initramfs::add_skeleton(&mut tree)?;
    debs::add_merged_usr_links(&mut tree)?;
    for (_, deb) in debs.iter().filter(|(p, _)| p.role == Role::Base) {
        debs::unpack_into(&mut tree, deb, &config.exclude)?;
    }
    for (path, target) in &config.links {
        tree.add_symlink(path, target)?;
    }
    for (path, contents) in &config.files {
        tree.add_file(path, 0o644, contents.clone().into_bytes())?;
    }
    let packed = initramfs::add_modules(
        &mut tree,
        &ModuleSelection {
            dir: modules_dir,
            names: config.modules.clone(),
        },
        MODULES_ROOT,
    )?;
    let _ = fs::remove_dir_all(&staging);
    progress.detail(&format!(
        "{} modules, {} MB of files in the base tree",
        packed.modules.len(),
        tree.content_size() >> 20
    ));

    let shared = Shared {
        config: &config,
        lock: &lock,
        debs: &debs,
        tree: &tree,
        vmlinuz: &vmlinuz,
        modules: packed.modules.iter().map(|m| m.name.clone()).collect(),
        lock_digest: manifest::file_digest(&spec.lock)?,
        config_digest: manifest::file_digest(&spec.config)?,
        out: &spec.out,
        mtime: spec.mtime,
        progress,
    };
    // Compression dominates: two variants at a time on two threads (each
    // holds the tree, the cpio and the gzip output in memory).
    let mut manifests = Vec::new();
    for pair in spec.ee_init.chunks(2) {
        let results: Vec<Result<ImageManifest, BuildError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pair
                .iter()
                .map(|(variant, ee_init)| {
                    let shared = &shared;
                    scope.spawn(move || build_variant(shared, *variant, ee_init))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(BuildError::ThreadPanicked)))
                .collect()
        });
        for result in results {
            manifests.push(result?);
        }
    }
    Ok(manifests)
}

/// What every variant shares.
struct Shared<'a> {
    config: &'a Config,
    lock: &'a Lock,
    debs: &'a [(&'a lock::LockedPackage, PathBuf)],
    tree: &'a FileTree,
    vmlinuz: &'a [u8],
    modules: Vec<String>,
    lock_digest: FileDigest,
    config_digest: FileDigest,
    out: &'a Path,
    mtime: u32,
    progress: &'a Progress,
}

/// Add the variant's ee-init (and dev shell) to the base tree, write its
/// kernel, initrd, command line and image.json into `<out>/<variant>/`.
fn build_variant(
    shared: &Shared<'_>,
    variant: Variant,
    ee_init: &Path,
) -> Result<ImageManifest, BuildError> {
    let name = variant_name(variant);
    let progress = shared.progress;
    progress.step(&format!("variant {name}: packing the initrd"));
    let mut tree = shared.tree.clone();
    tree.add_file("/init", 0o755, read(ee_init)?)?;
    tree.add_file(VARIANT_PATH, 0o644, format!("{name}\n").into_bytes())?;
    let mut packages: Vec<PackageDigest> = shared
        .lock
        .packages
        .iter()
        .filter(|p| p.role != Role::Dev)
        .map(manifest::package_digest)
        .collect();
    if variant == Variant::Dev {
        for (pkg, deb) in shared.debs.iter().filter(|(p, _)| p.role == Role::Dev) {
            debs::unpack_into(&mut tree, deb, &shared.config.exclude)?;
            packages.push(manifest::package_digest(pkg));
        }
        add_dev_shell(&mut tree)?;
    }
    let cpio = tree.write_cpio(Vec::new(), shared.mtime)?;
    drop(tree);
    progress.detail(&format!(
        "variant {name}: {} MB cpio, compressing",
        cpio.len() >> 20
    ));
    let initrd = initramfs::gzip_level(&cpio, GZIP_LEVEL).map_err(InitramfsError::Compress)?;
    drop(cpio);
    let cmdline = format!("{} ee.variant={name}", shared.config.cmdline.trim());

    let dir = shared.out.join(name);
    fs::create_dir_all(&dir).map_err(|source| BuildError::Write {
        path: dir.clone(),
        source,
    })?;
    write(&dir.join(manifest::KERNEL_FILE), shared.vmlinuz)?;
    write(&dir.join(manifest::INITRD_FILE), &initrd)?;
    write(&dir.join(manifest::CMDLINE_FILE), cmdline.as_bytes())?;
    let outputs = Outputs {
        kernel: FileDigest::of(manifest::KERNEL_FILE, shared.vmlinuz),
        initrd: FileDigest::of(manifest::INITRD_FILE, &initrd),
        cmdline: FileDigest::of(manifest::CMDLINE_FILE, cmdline.as_bytes()),
    };
    let manifest = ImageManifest::new(
        variant,
        cmdline,
        shared.config.kernel.release.clone(),
        Inputs {
            config: shared.config_digest.clone(),
            lock: shared.lock_digest.clone(),
            ee_init: manifest::file_digest(ee_init)?,
            packages,
        },
        outputs,
        shared.modules.clone(),
    );
    write(
        &dir.join(manifest::MANIFEST_FILE),
        manifest.to_json().as_bytes(),
    )?;
    progress.detail(&format!(
        "variant {name}: {} written, initrd {} MB, image id {}",
        dir.display(),
        initrd.len() >> 20,
        manifest.image_id
    ));
    Ok(manifest)
}

/// The dev variant's console shell: `/etc/ee/dev-image` makes ee-init open
/// `/bin/sh` on a fatal error; busybox-static provides it.
fn add_dev_shell(tree: &mut FileTree) -> Result<(), BuildError> {
    if tree.file_data("/usr/bin/busybox").is_none() {
        return Err(BuildError::DevShell(
            "the dev variant needs /usr/bin/busybox (package busybox-static in dev_packages)"
                .to_owned(),
        ));
    }
    if !tree.contains("/usr/bin/sh") {
        tree.add_symlink("/usr/bin/sh", "busybox")?;
    }
    tree.add_file(
        DEV_IMAGE_MARKER,
        0o644,
        b"unsealed dev image: console shell on fatal errors\n".to_vec(),
    )?;
    Ok(())
}

pub use easyenclave::image_manifest::variant_name;

/// A production image's ee-init must carry the TDX backend alone: one with
/// the simulated platform would fall back to a software TD (with a public
/// seed) wherever configfs-tsm is missing. Checked from the bytes, before
/// anything is built, so a mislabelled image is never written.
fn check_production_ee_init(path: &Path) -> Result<(), BuildError> {
    let refuse = |problem: String| BuildError::EeInitBackends {
        path: path.to_owned(),
        problem,
    };
    let lists = easyenclave::image_manifest::ee_init_backends(&read(path)?);
    if lists.is_empty() {
        return Err(refuse(
            "the binary does not say which TSM backends it carries (no ee-init-backends \
             marker): build a current ee-init"
                .to_owned(),
        ));
    }
    if let Some(list) = lists.iter().find(|list| list.iter().any(|b| b != "tdx")) {
        return Err(refuse(format!(
            "it carries the backends {}, expected tdx alone: a production ee-init is built \
             without the `sim` feature",
            list.join(",")
        )));
    }
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Write through a temporary file and rename, so a failed build leaves no
/// truncated output under the final name.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|source| BuildError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Run a command; its stdout on success, its stderr in the error otherwise.
pub(crate) fn run(command: &mut Command) -> Result<Vec<u8>, BuildError> {
    let line = format!("{command:?}");
    let output = command.output().map_err(|e| BuildError::Command {
        command: line.clone(),
        reason: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(BuildError::Command {
            command: line,
            reason: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(output.stdout)
}
