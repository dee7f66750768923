//! `ee-log`: how the host tools (`ee-host`, `ee-image`) log.
//!
//! Progress and diagnostics are `tracing` events written to stderr, so
//! stdout keeps only a command's output (tables, JSON results) that scripts
//! parse. Two formats:
//!
//! - `human` (default): one line per event, `PROGRAM: message key=value`,
//!   with `error: `, `warning: `, `debug: ` or `trace: ` before the message
//!   below and above info (the shape the tools' messages always had).
//! - `json`: one JSON object per line (timestamp, level, target, fields),
//!   for journald or log collectors.
//!
//! The format comes from the global `--log-format` flag or `EE_LOG_FORMAT`;
//! the level from `RUST_LOG` (tracing's filter syntax) when set, else
//! `--verbose` (debug) or info.

#![forbid(unsafe_code)]

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Environment variable that sets the format when `--log-format` is absent.
pub const LOG_FORMAT_ENV: &str = "EE_LOG_FORMAT";

/// How events are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `PROGRAM: [level: ]message key=value`, one line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The logging flags every host tool takes (flatten into its CLI).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Format of the log on stderr: human lines or JSON objects
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        env = LOG_FORMAT_ENV,
        default_value = "human"
    )]
    pub log_format: LogFormat,

    /// Log debug events too (RUST_LOG, when set, decides instead)
    #[arg(long, global = true)]
    pub verbose: bool,
}

/// The filter: `RUST_LOG` if set (and valid), else debug or info.
fn filter(verbose: bool) -> EnvFilter {
    let default = if verbose { Level::DEBUG } else { Level::INFO };
    EnvFilter::builder()
        .with_default_directive(default.into())
        .from_env_lossy()
}

/// Install the global subscriber for `program` (the prefix of human lines).
/// A second call changes nothing: the first subscriber stays.
pub fn init(program: &'static str, args: &LogArgs) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter(args.verbose))
        .with_ansi(false);
    // Err only means a subscriber is already installed; keep it.
    let _ = match args.log_format {
        LogFormat::Human => builder.event_format(Human { program }).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The human format: `PROGRAM: [level: ]message key=value`.
#[derive(Debug, Clone, Copy)]
pub struct Human {
    /// Printed before every line.
    pub program: &'static str,
}

/// The word before the message; none for info, the usual level.
fn level_prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        Level::INFO => "",
        Level::DEBUG => "debug: ",
        Level::TRACE => "trace: ",
    }
}

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(
            writer,
            "{}: {}",
            self.program,
            level_prefix(*event.metadata().level())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use clap::Parser;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A writer the tests read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn human_lines_name_the_program_and_the_level() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .event_format(Human { program: "ee-test" })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(size = 3, "wrote out.img");
            tracing::warn!("unreadable record");
            tracing::error!("memory_mib: too small");
            tracing::debug!("detail");
            tracing::trace!(step = "x", "more detail");
        });
        assert_eq!(
            buffer.text(),
            "ee-test: wrote out.img size=3\n\
             ee-test: warning: unreadable record\n\
             ee-test: error: memory_mib: too small\n\
             ee-test: debug: detail\n\
             ee-test: trace: more detail step=\"x\"\n"
        );
    }

    #[test]
    fn json_lines_parse_as_objects() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .json()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(size = 3, "wrote out.img");
        });
        let text = buffer.text();
        let line = text.lines().next().unwrap();
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(line.contains(r#""level":"INFO""#), "{line}");
        assert!(line.contains(r#""message":"wrote out.img""#), "{line}");
        assert!(line.contains(r#""size":3"#), "{line}");
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn flags_parse_and_bad_formats_are_named() {
        let cli = Cli::try_parse_from(["x", "--log-format", "json", "--verbose"]).unwrap();
        assert_eq!(cli.log.log_format, LogFormat::Json);
        assert!(cli.log.verbose);
        let err = Cli::try_parse_from(["x", "--log-format", "xml"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid value 'xml'"), "{err}");
    }
}
