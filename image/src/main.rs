//! `ee-image`: build Easy Enclave guest images.
//!
//! Exit status: 0 success, 1 the build failed, 2 bad arguments.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use easyenclave::allowlist::Variant;
use ee_image::build::config::Config;
use ee_image::build::debs::DebCache;
use ee_image::build::progress::Progress;
use ee_image::build::BuildSpec;
use ee_image::docker_archive::{self, ArchiveSpec};
use ee_image::initramfs::{self, Compression, ExtraFile, InitramfsSpec, ModuleSelection};

#[derive(Parser)]
#[command(
    name = "ee-image",
    version,
    about = "Build Easy Enclave guest images (reproducibly)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: ee_log::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Pack a reproducible initramfs: /init, kernel modules with their
    /// dependencies (decompressed) and load order in /etc/ee/modules, extra
    /// files. Entries are sorted, owned by 0:0 and dated SOURCE_DATE_EPOCH
    /// (or 0), so the same inputs give the same bytes.
    Initramfs(InitramfsArgs),
    /// Compute the TD's MRTD and RTMR0-2 offline from the firmware, kernel,
    /// initrd, command line, memory size and QEMU version (RTMR0 also needs
    /// QEMU's ACPI blobs); optionally compare with the TD's values.
    Measure(ee_image::measure::cli::MeasureArgs),
    /// Compare a TD's registers (a quote, or a JSON of values and event
    /// digests) with a transcript from `ee-image measure --json`, naming the
    /// first register, and event, that differs.
    Diff(ee_image::measure::cli::DiffArgs),
    /// Resolve the configuration's packages (and their dependencies) with
    /// apt, download them into the cache and write the lock file: every
    /// package's version and SHA-256.
    Lock(LockArgs),
    /// Build the guest image from the configuration and the lock file: per
    /// variant a kernel, an initrd, a command line and image.json. Refuses
    /// packages that do not match the lock.
    Build(BuildArgs),
    /// Write the easyenclave allowlist for a built image: MRTD and RTMR0-2
    /// for each VM shape (computed offline, as `ee-image measure`).
    Allowlist(ee_image::allowlist::AllowlistArgs),
    /// Write a `docker save`-format archive (manifest.json, config, one
    /// layer) of a directory tree, loadable with `docker load` without a
    /// registry. Same tree and options, same bytes: entries sorted, owned by
    /// 0:0, dated SOURCE_DATE_EPOCH (or 0); permissions from the tree.
    DockerArchive(DockerArchiveArgs),
}

#[derive(clap::Args)]
struct DockerArchiveArgs {
    /// The directory that becomes the image's root filesystem.
    #[arg(long, value_name = "DIR")]
    rootfs: PathBuf,
    /// The image's name and tag (NAME:TAG), e.g. easyenclave-example/hello:1.
    #[arg(long, value_name = "NAME:TAG")]
    tag: String,
    /// One word of the image's default command (repeatable, in order).
    #[arg(long = "cmd", value_name = "ARG", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// A TCP port the image exposes (repeatable).
    #[arg(long, value_name = "PORT")]
    expose: Vec<u16>,
    /// Output file (written atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct LockArgs {
    /// The image configuration (JSON, e.g. image/ee-image.json).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Where to write the lock file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Package cache (files named by SHA-256).
    #[arg(long, value_name = "DIR", default_value = ee_image::build::debs::DEFAULT_DEB_CACHE)]
    deb_cache: PathBuf,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The image configuration (JSON, e.g. image/ee-image.json).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The lock file (default: ee-image.lock beside the configuration).
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
    /// A variant to build and its ee-init binary: production=PATH (release
    /// build), dev=PATH (release build; the image adds a console shell),
    /// sim=PATH (built with --features sim). Repeatable.
    #[arg(long = "ee-init", value_name = "VARIANT=PATH", required = true)]
    ee_init: Vec<String>,
    /// Output directory; each variant goes to OUT/<variant>/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Package cache (files named by SHA-256).
    #[arg(long, value_name = "DIR", default_value = ee_image::build::debs::DEFAULT_DEB_CACHE)]
    deb_cache: PathBuf,
}

#[derive(clap::Args)]
struct InitramfsArgs {
    /// The PID1 binary (static), installed as /init.
    #[arg(long, value_name = "PATH")]
    init: PathBuf,
    /// The guest kernel's modules directory (lib/modules/<release>, with
    /// modules.dep), e.g. /var/cache/easy-enclave/kernel/modules.
    #[arg(long, value_name = "DIR", requires = "modules")]
    kernel_modules: Option<PathBuf>,
    /// A module to include with its dependencies (repeatable). Modules built
    /// into the kernel are reported and skipped.
    #[arg(long = "module", value_name = "NAME", requires = "kernel_modules")]
    modules: Vec<String>,
    /// An extra file, SOURCE:DEST with DEST absolute (repeatable).
    #[arg(long = "file", value_name = "SRC:DEST")]
    files: Vec<String>,
    /// Compression of the archive.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// Output file (written atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    /// gzip, level 9.
    Gzip,
    /// An uncompressed cpio archive.
    None,
}

/// The `--json` summary.
#[derive(serde::Serialize)]
struct Summary<'a> {
    version: u32,
    out: &'a Path,
    size: usize,
    /// SHA-384 of the file: the initrd digest the kernel's EFI stub extends
    /// into RTMR2.
    sha384: String,
    kernel_release: Option<&'a str>,
    modules: &'a [easyenclave::module_list::ModuleEntry],
    builtin: &'a [String],
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ee_log::init("ee-image", &cli.log);
    let result = match cli.command {
        Command::Initramfs(args) => build_initramfs(args),
        Command::Measure(args) => ee_image::measure::cli::run(args),
        Command::Diff(args) => ee_image::measure::cli::run_diff(args),
        Command::Lock(args) => lock(args),
        Command::Build(args) => build(args),
        Command::Allowlist(args) => ee_image::allowlist::run(args),
        Command::DockerArchive(args) => docker_archive(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_initramfs(args: InitramfsArgs) -> anyhow::Result<()> {
    let files = args
        .files
        .iter()
        .map(|f| f.parse::<ExtraFile>())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = InitramfsSpec {
        init: args.init,
        modules: args.kernel_modules.map(|dir| ModuleSelection {
            dir,
            names: args.modules,
        }),
        files,
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::None => Compression::None,
        },
        mtime: source_date_epoch()?,
    };
    let built = initramfs::build(&spec)?;
    write_atomically(&args.out, &built.bytes)?;
    let sha384 = hex::encode(easyenclave::rtmr::sha384(&built.bytes));
    if args.json {
        let summary = Summary {
            version: 1,
            out: &args.out,
            size: built.bytes.len(),
            sha384,
            kernel_release: built.kernel_release.as_deref(),
            modules: &built.modules,
            builtin: &built.builtin,
        };
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        tracing::info!(
            "wrote {} ({} bytes, {} entries)",
            args.out.display(),
            built.bytes.len(),
            built.paths.len()
        );
        tracing::info!("sha384 {sha384}");
        for module in &built.modules {
            tracing::info!("module {} -> {}", module.name, module.path);
        }
        for name in &built.builtin {
            tracing::info!("module {name}: built into the kernel, not packed");
        }
    }
    Ok(())
}

fn lock(args: LockArgs) -> anyhow::Result<()> {
    let progress = Progress::new(false);
    let config = Config::load(&args.config)?;
    std::fs::create_dir_all(&args.deb_cache)
        .with_context(|| format!("creating {}", args.deb_cache.display()))?;
    let lock = ee_image::build::lock::resolve(&config, &DebCache::new(args.deb_cache), &progress)?;
    write_atomically(&args.out, lock.to_json().as_bytes())?;
    progress.step(&format!(
        "wrote {} ({} packages, {} MB)",
        args.out.display(),
        lock.packages.len(),
        lock.packages.iter().map(|p| p.size).sum::<u64>() >> 20
    ));
    Ok(())
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    let ee_init = args
        .ee_init
        .iter()
        .map(|value| parse_variant_path(value))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lock = args
        .lock
        .unwrap_or_else(|| args.config.with_file_name("ee-image.lock"));
    let spec = BuildSpec {
        config: args.config,
        lock,
        ee_init,
        out: args.out,
        deb_cache: args.deb_cache,
        mtime: source_date_epoch()?,
    };
    let progress = Progress::new(false);
    let manifests = ee_image::build::build(&spec, &progress)?;
    progress.step(&format!("built {} variant(s)", manifests.len()));
    for manifest in &manifests {
        println!(
            "{} {}",
            ee_image::build::variant_name(manifest.variant),
            manifest.image_id
        );
    }
    Ok(())
}

fn docker_archive(args: DockerArchiveArgs) -> anyhow::Result<()> {
    let spec = ArchiveSpec {
        rootfs: args.rootfs,
        reference: args.tag.parse()?,
        cmd: args.cmd,
        expose: args.expose,
        mtime: source_date_epoch()?,
    };
    let archive = docker_archive::build(&spec)?;
    write_atomically(&args.out, &archive.bytes)?;
    tracing::info!(
        "wrote {} ({} bytes): image {} sha256:{}, layer sha256:{}",
        args.out.display(),
        archive.bytes.len(),
        spec.reference,
        hex::encode(archive.image_id),
        hex::encode(archive.layer_digest)
    );
    Ok(())
}

/// `sim=target/.../ee-init` -> (Variant::Sim, path).
fn parse_variant_path(value: &str) -> anyhow::Result<(Variant, PathBuf)> {
    let (name, path) = value
        .split_once('=')
        .with_context(|| format!("--ee-init {value:?}: expected VARIANT=PATH"))?;
    let variant = match name {
        "production" => Variant::Production,
        "dev" => Variant::Dev,
        "sim" => Variant::Sim,
        other => bail!("--ee-init {value:?}: unknown variant {other:?} (production, dev, sim)"),
    };
    Ok((variant, PathBuf::from(path)))
}

/// Entry mtime: `SOURCE_DATE_EPOCH` (reproducible-builds.org) or 0.
fn source_date_epoch() -> anyhow::Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse::<u32>().with_context(|| {
            format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds in 0..=4294967295")
        }),
        Err(std::env::VarError::NotPresent) => Ok(0),
        Err(std::env::VarError::NotUnicode(_)) => bail!("SOURCE_DATE_EPOCH is not UTF-8"),
    }
}

/// Write to a temporary file beside `path`, then rename, so a failed build
/// never leaves a truncated image under the final name.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
