//! A local GitHub-API-compatible server for tests and demos.
//!
//! Prints its API base URL (e.g. `http://127.0.0.1:8080/api/v3`) on stdout,
//! then serves until killed. See `ee_testkit::github_server`.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ee_testkit::github_server::{GithubServer, ServerConfig};

const USAGE: &str = "\
usage: ee-github-test-server --listen ADDR [--storage-listen ADDR] [--state FILE] [--config FILE]

  --listen ADDR          API listener, e.g. 127.0.0.1:8080 (port 0: any free port)
  --storage-listen ADDR  storage listener downloads redirect to (default: same IP, any port)
  --state FILE           JSON file keeping releases, assets and artifacts across restarts
  --config FILE          JSON configuration: tokens, installation_tokens (a workflow's
                         GITHUB_TOKEN), actions_jobs (OIDC token requests), repos
                         (permissions, immutable_releases), limits

Prints the API base URL on stdout and serves until killed. Its Actions OIDC
issuer is http://HOST:PORT/_services/token (signing with a public, test-only key).";

/// The command line.
struct Args {
    listen: SocketAddr,
    storage_listen: Option<SocketAddr>,
    state: Option<PathBuf>,
    config: Option<PathBuf>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Parsed> {
    let mut listen = None;
    let mut storage_listen = None;
    let mut state = None;
    let mut config = None;
    while let Some(flag) = argv.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(Parsed::Help);
        }
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let address = |v: &str| -> anyhow::Result<SocketAddr> {
            v.parse()
                .with_context(|| format!("{flag}: {v:?} is not an IP:port address"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(address(&value)?),
            "--storage-listen" => storage_listen = Some(address(&value)?),
            "--state" => state = Some(PathBuf::from(value)),
            "--config" => config = Some(PathBuf::from(value)),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(Parsed::Run(Args {
        listen: listen.context("--listen is required")?,
        storage_listen,
        state,
        config,
    }))
}

fn run(args: Args) -> anyhow::Result<Infallible> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    config.listen = args.listen;
    if args.storage_listen.is_some() {
        config.storage_listen = args.storage_listen;
    }
    if args.state.is_some() {
        config.state_file = args.state;
    }
    let server = GithubServer::start(config)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", server.base_url()).context("writing the base URL")?;
    stdout.flush().context("writing the base URL")?;
    drop(stdout);
    eprintln!(
        "ee-github-test-server: storage at http://{}",
        server.storage_addr()
    );
    eprintln!(
        "ee-github-test-server: Actions OIDC issuer {} (test-only key)",
        server.oidc_issuer()
    );
    loop {
        // Workers serve; this thread only keeps the server alive.
        std::thread::park();
    }
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(args)) => match run(args) {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("ee-github-test-server: {e:#}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("ee-github-test-server: {e:#}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
