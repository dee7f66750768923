//! `ee verify OWNER/REPO --agent URL`: attest a running agent live (RA-TLS
//! certificate and a fresh nonce) against `--allowlist`.

use anyhow::anyhow;
use easyenclave::connect::verify_agent;
use sha2::{Digest, Sha256};

use super::{options, pinned_text, variant_name, VerifyArgs};
use crate::Failure;

/// `--agent URL`: attest a running agent with a fresh nonce
/// ([`easyenclave::connect::verify_agent`]).
pub(super) fn verify_live(args: &VerifyArgs, url: &str) -> Result<(), Failure> {
    // Flags of the published mode that a live check cannot honour are
    // refused by name rather than ignored.
    for (given, flag, why) in [
        (
            args.max_age.is_some(),
            "--max-age",
            "a live agent's quote is made now, over a fresh nonce",
        ),
        (
            args.now.is_some(),
            "--now",
            "a live agent is verified at the current time",
        ),
        (
            args.token_env.is_some(),
            "--token-env",
            "a live check reads nothing from GitHub",
        ),
        (
            !args.allowlist_publishers.is_empty(),
            "--allowlist-publisher",
            "a live agent names no allowlist for a publisher to vouch for; give the list with \
             --allowlist FILE",
        ),
    ] {
        if given {
            return Err(Failure::Input(anyhow!(
                "{flag} does not apply with --agent: {why}"
            )));
        }
    }
    if args.allowlist.is_none() {
        return Err(Failure::Input(anyhow!(
            "--agent needs --allowlist FILE: a live agent names no allowlist, and without one \
             nothing says which images to trust"
        )));
    }
    let options = options(args)?;
    let rejected = |e: easyenclave::connect::ConnectError| {
        if args.json {
            let doc = serde_json::json!({
                "verified": false,
                "agent": url,
                "check": e.check(),
                "error": e.to_string(),
            });
            println!("{doc:#}");
        }
        let error = anyhow!("agent {url}: check {} failed: {e}", e.check());
        if e.is_rejection() {
            Failure::Rejected(error)
        } else {
            Failure::Input(error)
        }
    };
    let agent = verify_agent(url, &args.repo, &options).map_err(rejected)?;
    let (client, attested) = (&agent.client, &agent.attested);
    let quote = &attested.quote;
    let bundles: Vec<String> = attested
        .event_log
        .bundles()
        .map(|b| hex::encode(b.digest))
        .collect();
    let running = agent.running.as_ref();
    let sealed = attested.event_log.is_sealed();
    if args.json {
        let doc = serde_json::json!({
            "verified": true,
            "agent": url,
            "repo": attested.launch_config.repo,
            "endpoint": attested.launch_config.endpoint,
            "github_api_url": attested.launch_config.github_api_url,
            "tcb_status": quote.status,
            "advisory_ids": quote.advisory_ids,
            "allowlist_entry": agent.entry.name,
            "variant": variant_name(agent.entry.profile.variant),
            "running_bundle": running,
            "bundles": bundles,
            "sealed": sealed,
            "event_log": attested.event_log,
            "spki_sha256": hex::encode(Sha256::digest(client.pinned_spki_der())),
        });
        println!("{doc:#}");
        return Ok(());
    }
    println!("OK: the agent at {url} is a verified TD of {}", args.repo);
    println!(
        "  endpoint:    {} (from its measured launch config)",
        attested.launch_config.endpoint
    );
    println!(
        "  GitHub API:  {} (measured, as expected)",
        attested.launch_config.github_api_url
    );
    println!("  TCB status:  {}", quote.status);
    println!(
        "  allowlist:   entry {:?} ({})",
        agent.entry.name,
        variant_name(agent.entry.profile.variant)
    );
    match running {
        Some(bundle) => {
            let expected = if args.expect_bundle.is_some() {
                " (as expected)"
            } else {
                ""
            };
            println!("  running:     {}{expected}", hex::encode(bundle.digest));
            println!("               {}", pinned_text(bundle));
            println!(
                "               enforced {}",
                easyenclave::workload_policy::describe(&bundle.policy)
            );
        }
        None => println!("  running:     no bundle (none deployed, or the last one was stopped)"),
    }
    if bundles.len() > 1 {
        println!(
            "               {} bundle(s) deployed since boot",
            bundles.len()
        );
    }
    println!(
        "  sealed:      {}",
        if sealed {
            "yes"
        } else {
            "no (accepted: --allow-unsealed)"
        }
    );
    println!(
        "  TLS key:     spki sha256 {} (quote in its certificate binds it)",
        hex::encode(Sha256::digest(client.pinned_spki_der()))
    );
    Ok(())
}
