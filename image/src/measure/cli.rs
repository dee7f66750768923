//! `ee-image measure`: the command-line front end of [`crate::measure`].

use std::path::PathBuf;

use anyhow::bail;
use easyenclave::input::decode_binary;
use easyenclave::quote::Quote;

use super::{
    diff, join, measure, read_acpi_dir, Expected, InputFile, MeasureInputs, MemorySize,
    QemuVersion, Transcript, MAX_FIRMWARE_BYTES, MAX_INITRD_BYTES, MAX_KERNEL_BYTES,
};

/// Largest expected-values file read.
const MAX_EXPECTED_BYTES: u64 = 1 << 20;
/// Largest transcript read (a real one is a few KiB).
const MAX_TRANSCRIPT_BYTES: u64 = 4 << 20;

/// Arguments of `ee-image measure`.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// TDVF firmware given to QEMU with -bios (e.g. Debian trixie's
    /// /usr/share/ovmf/OVMF.fd).
    #[arg(long, value_name = "FILE")]
    pub firmware: PathBuf,
    /// Kernel bzImage with EFI stub (-kernel).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// Initrd (-initrd).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line exactly as given to -append.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub cmdline: String,
    /// Guest RAM (-m): bytes, or with a K/M/G/T suffix (binary units); a
    /// multiple of 4 KiB.
    #[arg(long, value_name = "SIZE")]
    pub memory: MemorySize,
    /// QEMU release on the host, e.g. 10.0.2: picks the MRTD page order
    /// (two-pass before 9.0) and whether QEMU patches the kernel header
    /// (before 10.2).
    #[arg(long, value_name = "X.Y.Z")]
    pub qemu_version: QemuVersion,
    /// Directory with QEMU's ACPI blobs etc/table-loader, etc/acpi/rsdp and
    /// etc/acpi/tables (plain files or the guest's sysfs `<name>/raw`
    /// layout). Without it RTMR0 is not computed.
    #[arg(long, value_name = "DIR")]
    pub acpi: Option<PathBuf>,
    /// Print every event with its register, digest and label.
    #[arg(long, conflicts_with = "json")]
    pub transcript: bool,
    /// Print the transcript as JSON (format version 1).
    #[arg(long)]
    pub json: bool,
    /// Compare with the TD's values: a TDX quote (raw, hex or base64), or a
    /// JSON file {"version": 1, "mrtd", "rtmr0", "rtmr1", "rtmr2", optional
    /// "rtmr0_events".. "rtmr2_events"} (hex; with the events, the first
    /// differing event is named too). Fails, naming the first register that
    /// differs.
    #[arg(long, value_name = "FILE")]
    pub expected: Option<PathBuf>,
}

/// The TD's values from an expected-values JSON document, or from a TDX
/// quote (raw, hex or base64) whose TD report holds them.
fn expected_values(bytes: Vec<u8>) -> Result<Expected, String> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        return Expected::from_json(&text);
    }
    let quote = decode_binary(bytes).map_err(|e| format!("neither JSON nor a quote: {e}"))?;
    let quote = Quote::parse(&quote).map_err(|e| format!("not a TDX quote: {e}"))?;
    Ok(Expected::from_td_report(quote.td_report()))
}

/// Run `ee-image measure`; an `Err` is a failure to report (exit status 1).
pub fn run(args: MeasureArgs) -> anyhow::Result<()> {
    let expected = match args.expected {
        Some(path) => {
            let file = InputFile::read(&path, MAX_EXPECTED_BYTES)?;
            let values = expected_values(file.bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some((path, values))
        }
        None => None,
    };
    // Reading ~30 MB costs as much as hashing it: read the files side by side.
    let (firmware, kernel, initrd) = std::thread::scope(|scope| {
        let kernel = scope.spawn(|| InputFile::read(&args.kernel, MAX_KERNEL_BYTES));
        let initrd = scope.spawn(|| {
            args.initrd
                .as_deref()
                .map(|p| InputFile::read(p, MAX_INITRD_BYTES))
                .transpose()
        });
        let firmware = InputFile::read(&args.firmware, MAX_FIRMWARE_BYTES);
        (firmware, join(kernel), join(initrd))
    });
    let inputs = MeasureInputs {
        firmware: firmware?,
        kernel: kernel?,
        initrd: initrd?,
        cmdline: args.cmdline,
        memory: args.memory,
        qemu: args.qemu_version,
        acpi: args.acpi.as_deref().map(read_acpi_dir).transpose()?,
    };
    let transcript = measure(&inputs)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&transcript)?);
    } else if args.transcript {
        print!("{}", transcript.render());
    } else {
        print!("{}", transcript.summary());
    }
    if let Some((path, values)) = expected {
        let report = diff(&values, &transcript);
        eprint!("{report}");
        if report.mismatch.is_some() {
            bail!("measurements differ from {}", path.display());
        }
    }
    Ok(())
}

/// Arguments of `ee-image diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The computed transcript: the output of `ee-image measure --json`.
    #[arg(long, value_name = "FILE")]
    pub transcript: PathBuf,
    /// What the TD reported: a TDX quote (raw, hex or base64), or a JSON file
    /// {"version": 1, "mrtd", "rtmr0", "rtmr1", "rtmr2", optional
    /// "rtmr0_events".. "rtmr2_events"} (hex). With the event digests of the
    /// TD's event log, the first differing event is named.
    #[arg(long, value_name = "FILE")]
    pub td: PathBuf,
}

/// Run `ee-image diff`: compare without recomputing anything. An `Err` is
/// reported with exit status 1 (registers differ, or unreadable input).
pub fn run_diff(args: DiffArgs) -> anyhow::Result<()> {
    let file = InputFile::read(&args.transcript, MAX_TRANSCRIPT_BYTES)?;
    let text = String::from_utf8(file.bytes)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", args.transcript.display()))?;
    let transcript = Transcript::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.transcript.display()))?;
    let file = InputFile::read(&args.td, MAX_EXPECTED_BYTES)?;
    let values =
        expected_values(file.bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.td.display()))?;
    let report = diff(&values, &transcript);
    print!("{report}");
    if let Some(mismatch) = &report.mismatch {
        bail!(
            "{} differs from {}",
            mismatch.register,
            args.transcript.display()
        );
    }
    if report.matched.is_empty() {
        bail!(
            "nothing was compared: {} holds no register the transcript has",
            args.td.display()
        );
    }
    Ok(())
}
