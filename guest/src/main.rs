//! `ee-init`: PID1 of the TD, or `--dev-run` on a host. See the library docs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ee_init::boot::{self, Mode, Options};
use ee_init::root::FsRoot;
use ee_init::say;
use ee_init::tsm::Selection;

const USAGE: &str = "\
usage: ee-init                  (as PID1 of the TD; kernel-passed arguments are ignored)
       ee-init --backends         (the TSM backends this build carries: tdx[,sim])
       ee-init --dev-run [--root DIR] [--launch-config FILE] [--tsm auto|sim|none] [--listen ADDR:PORT]

--dev-run            run as an ordinary process: no mounts, modules, network
                     changes or power-off; SIGTERM stops it
--root DIR           resolve guest paths (/sys, /etc/ee, ...) under DIR (default /)
--launch-config FILE read the launch config from FILE instead of fw_cfg
--tsm BACKEND        auto (default), sim (sim builds only) or none
--listen ADDR:PORT   agent API address (default 127.0.0.1:<agent_port>)";

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        mode: Mode::DevRun,
        root: FsRoot::system(),
        launch_config: None,
        tsm: Selection::Auto,
        listen: None,
    };
    let mut dev_run = false;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dev-run" => dev_run = true,
            "--root" => options.root = FsRoot::at(value()?),
            "--launch-config" => options.launch_config = Some(PathBuf::from(value()?)),
            "--tsm" => options.tsm = value()?.parse()?,
            "--listen" => {
                let text = value()?;
                options.listen = Some(
                    text.parse::<SocketAddr>()
                        .map_err(|e| format!("--listen {text:?}: {e}"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !dev_run {
        return Err("ee-init runs as PID1; use --dev-run to run it on a host".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::process::id() == 1 {
        if !args.is_empty() {
            say!("ignoring arguments passed by the kernel: {args:?}");
        }
        let options = Options {
            mode: Mode::Pid1,
            root: FsRoot::system(),
            launch_config: None,
            tsm: Selection::Auto,
            listen: None,
        };
        return boot::run(&options);
    }
    match args.first().map(String::as_str) {
        // writeln! rather than println!, which panics when stdout is gone.
        Some("--help" | "-h") => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--backends") => {
            let _ = writeln!(std::io::stdout(), "{}", ee_init::tsm::backends());
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            let _ = writeln!(std::io::stdout(), "ee-init {}", ee_init::api::VERSION);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    match parse_args(&args) {
        Ok(options) => boot::run(&options),
        Err(e) => {
            say!("{e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
