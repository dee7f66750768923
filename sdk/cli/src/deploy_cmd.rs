//! `ee deploy`: verify an agent over RA-TLS, then deploy a bundle to it and
//! follow the deployment until it runs or fails.
//!
//! Order matters: the agent is verified (its certificate's quote, the
//! allowlist, a fresh-nonce attestation, the repo its measured launch config
//! names) before the token or any private environment value is even read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use easyenclave::agent::{AgentClient, AgentError, DeployCredential};
use easyenclave::allowlist::{Allowlist, Variant};
use easyenclave::attestation::AllowlistRef;
use easyenclave::bundle;
use easyenclave::collateral::{
    default_cache_dir, Collateral, CollateralCache, CollateralSource, MAX_COLLATERAL_JSON_BYTES,
};
use easyenclave::connect::{
    published_allowlist, verify_agent, CollateralChoice, ConnectError, ConnectOptions,
    VerifiedAgent,
};
use easyenclave::deploy::{
    check_env_name, BundleSource, DeployRequest, DeploymentState, DeploymentStatus,
    DEPLOY_API_VERSION, MAX_INLINE_BUNDLE_BYTES,
};
use easyenclave::github::RepoName;
use easyenclave::launch::{canonical_api_url, check_repo, check_url, DEFAULT_GITHUB_API_URL};
use easyenclave::verify::{Policy, StatusName, TrustRoot};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::quote_cmd::read_capped;
use crate::trust_args::{
    parse_repo, parse_variant, publishers_or_official, root_certificate, sim_collateral, sim_pki,
};
use crate::Failure;

/// Largest root CA file accepted.
/// Largest allowlist file accepted.
const MAX_ALLOWLIST_FILE: u64 = easyenclave::allowlist::MAX_ALLOWLIST_BYTES as u64;
/// Largest env file accepted.
const MAX_ENV_FILE: u64 = 1024 * 1024;
/// Time between two status requests.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Consecutive failed status requests tolerated before giving up.
const MAX_POLL_FAILURES: u32 = 5;

const EXAMPLES: &str = "\
Examples:
  # Deploy an Actions artifact to an agent on real TDX, checking the image
  # against its publisher's allowlist:
  GITHUB_TOKEN=... ee deploy --agent https://td.example:8443 --repo acme/hello \\
      --artifact 1234567 --allowlist allowlist.json --env API_KEY

  # A local bundle to a dev image on the simulated platform:
  ee deploy --agent https://127.0.0.1:8443 --repo acme/hello --bundle ./bundle \\
      --root sim --allow-debug --env-file secrets.env

  # From a GitHub Actions job (permissions: id-token: write, contents: write,
  # actions: read): the job's OIDC token for this agent authorises the
  # deploy, its GITHUB_TOKEN only downloads the artifact and publishes:
  GITHUB_TOKEN=${{ github.token }} ee deploy --agent https://td.example:8443 \\
      --repo acme/hello --artifact 1234567 --allowlist-url URL --oidc-from-actions

  # The audience to request an OIDC token with for this agent:
  ee deploy --agent https://td.example:8443 --repo acme/hello --artifact 1 \\
      --allowlist-url URL --print-oidc-audience";

/// Arguments of `ee deploy`.
#[derive(Args)]
#[command(after_long_help = EXAMPLES)]
pub struct DeployArgs {
    /// The agent: https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    agent: String,
    /// The repo the agent must be bound to (its measured launch config).
    #[arg(long, value_name = "OWNER/NAME")]
    repo: String,
    /// Deploy this GitHub Actions artifact of the repo.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "bundle",
        required_unless_present = "bundle"
    )]
    artifact: Option<u64>,
    /// Deploy this bundle inline: a directory (zipped deterministically) or a
    /// zip file, at most 4 MiB zipped.
    #[arg(long, value_name = "DIR_OR_ZIP")]
    bundle: Option<PathBuf>,
    /// Require the agent's MRTD, RTMR0-2, TD attributes and XFAM to match
    /// this allowlist file (trusted as it is: it is yours).
    #[arg(long, value_name = "FILE")]
    allowlist: Option<PathBuf>,
    /// Where the allowlist is published (https://); the agent binds it, with
    /// its SHA-256, into its attestation for verifiers. Without --allowlist,
    /// it is downloaded through --api-url and must be a release asset of an
    /// --allowlist-publisher. One of the two is required: nothing is sent to
    /// an agent whose image no allowlist vouches for.
    #[arg(long, value_name = "URL")]
    allowlist_url: Option<String>,
    /// Who may publish the allowlist named by --allowlist-url (repeatable)
    /// [default: easy-enclave/easy-enclave, the project's own image releases].
    #[arg(long = "allowlist-publisher", value_name = "OWNER/REPO", value_parser = parse_repo,
          conflicts_with = "allowlist")]
    allowlist_publishers: Vec<RepoName>,
    /// The GitHub REST API the agent must have been launched with: it sends
    /// your token there and fetches artifacts from it. An agent measured
    /// with any other API is refused before anything is sent.
    #[arg(long, value_name = "URL", default_value = DEFAULT_GITHUB_API_URL)]
    api_url: String,
    /// The GitHub API the agent must have been launched with, when it
    /// reaches GitHub at another address than --api-url (a dev TD behind
    /// QEMU's NAT reaching a local test server) [default: --api-url].
    #[arg(long, value_name = "URL")]
    td_api_url: Option<String>,
    /// Private environment from a file of NAME=VALUE lines (# comments).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Private environment variable, its value taken from this process's
    /// environment (repeatable).
    #[arg(long = "env", value_name = "NAME")]
    env: Vec<String>,
    /// Do not seal the TD after the workload starts.
    #[arg(long)]
    no_seal: bool,
    /// The workload's main TCP port inside the TD.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Environment variable holding the GitHub token: a token with push
    /// access to the repo, or with an OIDC option the workflow's
    /// GITHUB_TOKEN (contents: write, actions: read).
    #[arg(long, value_name = "VAR", default_value = "GITHUB_TOKEN")]
    token_env: String,
    #[command(flatten)]
    oidc: crate::oidc_args::OidcArgs,
    /// Root CA the agent's quotes must chain to: `intel` (production), `sim`
    /// (the simulated platform of dev images; without --collateral,
    /// collateral made for it), or a certificate file (PEM, DER, hex or base64).
    #[arg(long, value_name = "intel|sim|FILE", default_value = "intel")]
    root: String,
    /// Collateral JSON (the format `ee quote verify` reads). Without it,
    /// collateral comes from the cache or, when stale, from --pccs or Intel PCS.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pccs", "cache_dir"])]
    collateral: Option<PathBuf>,
    /// Fetch collateral from this PCCS instead of Intel PCS.
    #[arg(long, value_name = "URL")]
    pccs: Option<String>,
    /// Collateral cache directory [default: $XDG_CACHE_HOME/easyenclave/collateral].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Also accept this TCB status (repeatable). Default: only UpToDate.
    #[arg(long = "accept-status", value_name = "STATUS")]
    accept_status: Vec<String>,
    /// Also accept images of this variant (repeatable). Default: production
    /// only (and sim with --root sim).
    #[arg(long = "accept-variant", value_name = "dev|sim", value_parser = parse_variant)]
    accept_variant: Vec<Variant>,
    /// Accept DEBUG TDs (dev images only: the host can read a DEBUG TD's memory).
    #[arg(long)]
    allow_debug: bool,
    /// Accept an http:// --api-url: the agent then sends the token in clear
    /// text (local test servers only).
    #[arg(long)]
    allow_http_github_api: bool,
    /// Give up after this many seconds without the deployment running.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Print the result as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
}

pub fn run(args: DeployArgs) -> Result<(), Failure> {
    // Everything that can be checked without the agent, and nothing secret.
    check_repo(&args.repo).map_err(|p| anyhow!("--repo: {p}"))?;
    for name in &args.env {
        check_env_name(name).map_err(|p| anyhow!("--env: {p}"))?;
    }
    check_api_url(&args)?;
    let (bundle, local_digest) = load_bundle(&args)?;
    let mut options = connect_options(&args)?;
    let allowlist_ref = pin_allowlist(&args, &mut options)?;

    eprintln!("ee: verifying the agent at {}", args.agent);
    let agent = verify_agent(&args.agent, &args.repo, &options).map_err(connect_failure)?;
    describe_agent(&agent);
    if args.oidc.describe(&agent.client, &agent.attested)? {
        return Ok(());
    }
    let client = agent.client;

    // Only now the secrets, in buffers wiped when dropped.
    let token = Zeroizing::new(
        std::env::var(&args.token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("--token-env: ${} is not set", args.token_env))?,
    );
    let mut request = DeployRequest {
        version: DEPLOY_API_VERSION,
        bundle,
        env: private_env(&args)?,
        seal: !args.no_seal,
        port: args.port,
        allowlist: Some(allowlist_ref),
        github_token: None,
    };
    request
        .validate()
        .map_err(|e| anyhow!("deploy request: {e}"))?;
    let oidc_token = args.oidc.token(&client)?.map(Zeroizing::new);
    let credential = match &oidc_token {
        Some(id_token) => DeployCredential::Oidc {
            id_token: id_token.as_str(),
            github_token: &token,
            issuer: args.oidc.issuer(),
        },
        None => DeployCredential::GitHubToken(&token),
    };
    let accepted = client.deploy_with(&credential, &request);
    // The private values have been sent (or refused): wipe this copy.
    request.env.values_mut().for_each(Zeroize::zeroize);
    let accepted = accepted.map_err(agent_failure)?;
    eprintln!("ee: deployment {} accepted", accepted.id);

    // The status views need the deploy's credential: with OIDC, the
    // GITHUB_TOKEN would be refused (it names no user).
    let status = follow(
        client,
        oidc_token.as_deref().map_or(token.as_str(), String::as_str),
        oidc_token.is_some(),
        &accepted.id,
        Duration::from_secs(args.timeout),
    )?;
    finish(&status, local_digest, args.json)
}

/// A plain-http API would carry the token in clear text: only on request.
fn check_api_url(args: &DeployArgs) -> anyhow::Result<()> {
    for (flag, url) in [
        ("--api-url", Some(&args.api_url)),
        ("--td-api-url", args.td_api_url.as_ref()),
    ] {
        let Some(url) = url else { continue };
        canonical_api_url(url).map_err(|p| anyhow!("{flag}: {p}"))?;
        if url.starts_with("http://") && !args.allow_http_github_api {
            bail!(
                "{flag} {url}: plain http carries your token in clear text; add \
                 --allow-http-github-api if this is a local test server"
            );
        }
    }
    Ok(())
}

/// The images to trust, before anything else: the allowlist file, or the
/// one published at --allowlist-url by a trusted publisher. Returns the
/// reference the agent binds into its attestation.
fn pin_allowlist(args: &DeployArgs, options: &mut ConnectOptions) -> anyhow::Result<AllowlistRef> {
    let Some(url) = &args.allowlist_url else {
        bail!(
            "--allowlist-url is required: it names the allowlist (with --allowlist FILE, or \
             published by an --allowlist-publisher) that the agent's image must be in and that \
             its attestation binds; nothing is sent to an agent no allowlist vouches for"
        );
    };
    check_url(url, &["https"]).map_err(|p| anyhow!("--allowlist-url: {p}"))?;
    let (allowlist, reference) = match &args.allowlist {
        Some(path) => {
            let bytes = read_capped(path, MAX_ALLOWLIST_FILE)?;
            let list = Allowlist::from_json(&bytes)
                .with_context(|| format!("allowlist {}", path.display()))?;
            let reference = AllowlistRef {
                url: url.clone(),
                sha256: Sha256::digest(&bytes).into(),
            };
            (list, reference)
        }
        None => {
            let (list, reference) = published_allowlist(url, options)
                .map_err(|e| anyhow!("--allowlist-url: check {} failed: {e}", e.check()))?;
            eprintln!(
                "ee: allowlist {url} (sha256 {}) from a trusted publisher",
                hex::encode(reference.sha256)
            );
            (list, reference)
        }
    };
    options.policy = options.policy.clone().with_allowlist(allowlist);
    Ok(reference)
}

/// What the agent is checked with: the verifier's rules of `ee verify
/// --agent`, except that a TD not yet sealed (or running nothing) is what
/// a first deploy expects.
fn connect_options(args: &DeployArgs) -> anyhow::Result<ConnectOptions> {
    let mut policy = Policy::default().allow_debug(args.allow_debug);
    for s in &args.accept_status {
        policy = policy.accept_status(StatusName::parse(s).context("--accept-status")?);
    }
    let trust_root = trust_root(&args.root)?;
    let mut accepted_variants = vec![Variant::Production];
    accepted_variants.extend(&args.accept_variant);
    if args.root == "sim" {
        accepted_variants.push(Variant::Sim);
    }
    Ok(ConnectOptions {
        github_api_url: args.api_url.clone(),
        td_github_api_url: args.td_api_url.clone(),
        oidc_issuer: args.oidc.issuer().to_owned(),
        trust_root,
        policy,
        accepted_variants,
        allowlist_publishers: publishers_or_official(&args.allowlist_publishers),
        collateral: collateral_choice(args)?,
        allow_unsealed: true,
        ..ConnectOptions::default()
    })
}

fn describe_agent(agent: &VerifiedAgent) {
    let quote = agent.client.tls_quote();
    let attested = &agent.attested;
    let key = hex::encode(Sha256::digest(agent.client.pinned_spki_der()));
    eprintln!("ee: agent verified:");
    eprintln!("  TLS key (SPKI SHA-256): {key}");
    eprintln!("  TCB status:             {}", quote.status);
    eprintln!("  allowlist entry:        {}", agent.entry.name);
    eprintln!("  bound to repo:          {}", attested.launch_config.repo);
    eprintln!(
        "  GitHub API:             {} (measured; the token goes there)",
        attested.launch_config.github_api_url
    );
    eprintln!(
        "  event log:              {} events, RTMR3 replayed{}",
        attested.event_log.len(),
        if attested.event_log.is_sealed() {
            ", sealed"
        } else {
            ""
        }
    );
}

fn connect_failure(e: ConnectError) -> Failure {
    let error = anyhow!("check {} failed: {e}", e.check());
    if e.is_rejection() {
        Failure::Rejected(error)
    } else {
        Failure::Input(error)
    }
}

/// Trust failures are rejections (exit 1); input and transport problems
/// mean the command could not run (exit 2).
fn agent_failure(e: AgentError) -> Failure {
    if e.is_rejection() {
        Failure::Rejected(anyhow!(e))
    } else {
        Failure::Input(anyhow!(e))
    }
}

/// The bundle source, and the canonical digest when the bundle is a local
/// directory (to compare with what the agent measures).
fn load_bundle(args: &DeployArgs) -> anyhow::Result<(BundleSource, Option<[u8; 32]>)> {
    let Some(path) = &args.bundle else {
        let id = args
            .artifact
            .context("--artifact or --bundle is required")?;
        if id == 0 {
            bail!("--artifact: 0 is not an artifact id");
        }
        return Ok((BundleSource::Artifact { id }, None));
    };
    let (zip, digest) = if path.is_dir() {
        let (zip, manifest) = bundle::zip_dir_with_manifest(path)
            .with_context(|| format!("--bundle {}", path.display()))?;
        (zip, Some(manifest.digest()))
    } else {
        let zip = read_capped(path, MAX_INLINE_BUNDLE_BYTES as u64).context(
            "--bundle (inline bundles are at most 4 MiB; use --artifact for larger ones)",
        )?;
        (zip, None)
    };
    if zip.len() > MAX_INLINE_BUNDLE_BYTES {
        bail!(
            "--bundle {}: the zip is {} bytes, inline bundles are at most {MAX_INLINE_BUNDLE_BYTES}; \
             upload it as an Actions artifact and use --artifact",
            path.display(),
            zip.len()
        );
    }
    Ok((BundleSource::Inline { zip }, digest))
}

fn trust_root(root: &str) -> anyhow::Result<TrustRoot> {
    Ok(match root {
        "intel" => TrustRoot::IntelProduction,
        "sim" => TrustRoot::Explicit(sim_pki()?.root_ca_der().to_vec()),
        path => TrustRoot::Explicit(root_certificate(Path::new(path))?),
    })
}

fn collateral_choice(args: &DeployArgs) -> anyhow::Result<CollateralChoice> {
    if let Some(path) = &args.collateral {
        let json = read_capped(path, MAX_COLLATERAL_JSON_BYTES as u64)?;
        return Ok(CollateralChoice::Given(
            Collateral::from_json(&json)
                .with_context(|| format!("collateral {}", path.display()))?,
        ));
    }
    if args.root == "sim" && args.pccs.is_none() {
        // The simulated platform's collateral is made, not fetched.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock is before 1970")?
            .as_secs();
        return Ok(CollateralChoice::Given(sim_collateral(&sim_pki()?, now)?));
    }
    let source = match &args.pccs {
        Some(url) => CollateralSource::Pccs(url.clone()),
        None => CollateralSource::IntelPcs,
    };
    let dir = args
        .cache_dir
        .clone()
        .or_else(default_cache_dir)
        .context("no collateral cache directory: set --cache-dir, XDG_CACHE_HOME or HOME")?;
    Ok(CollateralChoice::Service {
        source,
        cache: Some(CollateralCache::new(dir)),
    })
}

/// The private environment: the env file, then `--env` names from this
/// process's environment. Errors name the line or variable, never a value.
fn private_env(args: &DeployArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    if let Some(path) = &args.env_file {
        let bytes = read_capped(path, MAX_ENV_FILE)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("--env-file {}: not UTF-8", path.display()))?;
        for (index, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let at = || format!("--env-file {} line {}", path.display(), index + 1);
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| anyhow!("{}: expected NAME=VALUE", at()))?;
            check_env_name(name).map_err(|p| anyhow!("{}: {p}", at()))?;
            if env.insert(name.to_owned(), value.to_owned()).is_some() {
                bail!("{}: {name} is set twice", at());
            }
        }
    }
    for name in &args.env {
        let value = std::env::var_os(name)
            .ok_or_else(|| anyhow!("--env {name}: not set in this environment"))?
            .into_string()
            .map_err(|_| anyhow!("--env {name}: the value is not UTF-8"))?;
        if env.insert(name.clone(), value).is_some() {
            bail!("--env {name}: also set in --env-file");
        }
    }
    Ok(env)
}

/// Poll the deployment, printing state changes and new log lines, until it
/// reaches a final state or `timeout` passes. The deploy's `token` gets the
/// full status (the log and a failure's reason), which the agent shows only
/// to a caller with push access. An OIDC token (`oidc`) lives about five
/// minutes: once the agent refuses it, the public view is followed.
fn follow(
    mut client: AgentClient,
    token: &str,
    oidc: bool,
    id: &str,
    timeout: Duration,
) -> Result<DeploymentStatus, Failure> {
    let deadline = Instant::now() + timeout;
    let mut last_state = None;
    let mut shown_tail: Vec<String> = Vec::new();
    let mut failures = 0;
    let mut credential = Some(token);
    loop {
        let status = match client.status_as(id, credential) {
            Ok(status) => {
                failures = 0;
                status
            }
            Err(AgentError::Status {
                status: 401,
                reason,
                ..
            }) if oidc && credential.is_some() => {
                eprintln!(
                    "ee: the agent no longer accepts the OIDC token for the status view \
                     ({reason}); following the public view (no log)"
                );
                credential = None;
                continue;
            }
            Err(AgentError::KeyChanged { .. }) => {
                // The agent renewed its certificate with a new key: verify it
                // from scratch, as at the start.
                eprintln!("ee: the agent's TLS key changed; verifying the agent again");
                let again = client.reconnect().map_err(agent_failure)?;
                again.attest().map_err(agent_failure)?;
                client = again;
                continue;
            }
            Err(e @ (AgentError::Io { .. } | AgentError::Tls(_)))
                if failures < MAX_POLL_FAILURES =>
            {
                failures += 1;
                eprintln!("ee: status request failed ({e}); retrying");
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            Err(e) => return Err(agent_failure(e)),
        };
        if last_state != Some(status.state) {
            eprintln!("ee: {}", status.state);
            last_state = Some(status.state);
        }
        for line in new_lines(&shown_tail, &status.log_tail) {
            eprintln!("  | {line}");
        }
        shown_tail.clone_from(&status.log_tail);
        if status.state.is_final() {
            return Ok(status);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure::Rejected(anyhow!(
                "deployment {id} is still {} after {} s (--timeout)",
                status.state,
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// The lines of `tail` after its overlap with `shown` (both are windows on
/// the end of the same log, `tail` the later one).
fn new_lines<'a>(shown: &[String], tail: &'a [String]) -> &'a [String] {
    let overlap = (0..=shown.len().min(tail.len()))
        .rev()
        .find(|&k| shown.get(shown.len() - k..) == tail.get(..k))
        .unwrap_or(0);
    tail.get(overlap..).unwrap_or_default()
}

fn finish(
    status: &DeploymentStatus,
    local_digest: Option<[u8; 32]>,
    json: bool,
) -> Result<(), Failure> {
    if json {
        let text = serde_json::to_string_pretty(status).context("encoding JSON")?;
        println!("{text}");
    }
    match status.state {
        DeploymentState::Running => {}
        DeploymentState::Failed => {
            return Err(Failure::Rejected(anyhow!(
                "deployment {} failed: {}",
                status.id,
                status
                    .reason
                    .as_deref()
                    .unwrap_or("the agent gave no reason")
            )))
        }
        other => {
            return Err(Failure::Rejected(anyhow!(
                "deployment {} ended {other} (replaced by a later deployment)",
                status.id
            )))
        }
    }
    if let (Some(local), Some(measured)) = (local_digest, &status.bundle_digest) {
        if !measured.eq_ignore_ascii_case(&hex::encode(local)) {
            return Err(Failure::Rejected(anyhow!(
                "the agent measured bundle {measured}, but the bundle sent has digest {}",
                hex::encode(local)
            )));
        }
    }
    if !json {
        println!("deployment {} is running", status.id);
        if let Some(digest) = &status.bundle_digest {
            println!("  bundle digest: {digest}");
        }
        if let Some(tag) = &status.release_tag {
            println!("  release:       {tag}");
        }
        println!("  sealed:        {}", status.sealed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::new_lines;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_lines_follow_a_sliding_tail() {
        let shown = lines(&["a", "b", "c"]);
        assert_eq!(
            new_lines(&shown, &lines(&["b", "c", "d", "e"])),
            lines(&["d", "e"])
        );
        assert!(new_lines(&shown, &shown).is_empty());
        assert_eq!(new_lines(&[], &lines(&["a"])), lines(&["a"]));
        // The window moved past everything shown: all of it is new.
        assert_eq!(new_lines(&shown, &lines(&["x", "y"])), lines(&["x", "y"]));
        // Repeated lines: the longest overlap wins.
        assert_eq!(
            new_lines(&lines(&["a", "b"]), &lines(&["a", "b", "a", "b"])),
            lines(&["a", "b"])
        );
    }
}
