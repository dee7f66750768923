//! The verified HTTP client: after [`super::connect_with`] has verified a
//! repo's published deployment, open an RA-TLS connection to its endpoint and
//! check that the TD answering there, now, is the one that was verified.
//!
//! The agent's certificate carries a quote binding its TLS key
//! ([`crate::ratls`]); [`AgentClient`] verifies it with the same root, policy
//! and collateral as the publication, pins the key, and asks for a fresh
//! nonce-bound quote with the current event log. [`open`] then requires the
//! live TD to have the published TD's MRTD, RTMR0-2, TD attributes and XFAM,
//! the same repo, the published bundle as its newest bundle event, and (unless
//! unsealed deployments are accepted) a seal. Requests made through the
//! returned client travel only over connections to that pinned key.

use crate::agent::{AgentClient, AgentTrust, CollateralSupply};
use crate::quote::TdReport10;
use crate::verify::Verifier;

use super::{ConnectError, ConnectOptions, VerifiedService};

/// Connect to `service.endpoint` over RA-TLS and check that the live TD is
/// the verified one; the client is the verified HTTP client
/// ([`AgentClient::request`]).
pub fn open(
    service: &VerifiedService,
    options: &ConnectOptions,
) -> Result<AgentClient, ConnectError> {
    let collateral = CollateralSupply::from_choice(options.collateral.clone())
        .map_err(ConnectError::Collateral)?;
    // The published quote already matched the allowlist; the live one must
    // equal it register by register, which is at least as strict.
    let mut policy = options.policy.clone();
    policy.allowlist = None;
    let verifier = Verifier::with_root(options.trust_root.clone(), policy);
    let trust = AgentTrust::new(verifier, collateral, service.repo.clone());
    let live = |source| ConnectError::Live {
        endpoint: service.endpoint.clone(),
        source: Box::new(source),
    };
    let client = AgentClient::connect(&service.endpoint, trust).map_err(live)?;
    let attested = client.attest().map_err(live)?;
    same_td(&service.td_report, &attested.quote.measurements)?;
    let running = attested.event_log.running_bundle().map(|b| b.digest);
    if running != Some(service.bundle.digest) {
        return Err(ConnectError::LiveBundle {
            published: hex::encode(service.bundle.digest),
            running: running.map_or_else(|| "no bundle".to_owned(), hex::encode),
        });
    }
    if !options.allow_unsealed && !attested.event_log.is_sealed() {
        return Err(ConnectError::Unsealed);
    }
    Ok(client)
}

/// The registers that identify what a TD runs (RTMR3 moves with deploys and
/// is checked through the event log instead).
fn same_td(published: &TdReport10, live: &TdReport10) -> Result<(), ConnectError> {
    let registers = [
        ("mrtd", published.mr_td, live.mr_td),
        ("rtmr0", published.rtmr0, live.rtmr0),
        ("rtmr1", published.rtmr1, live.rtmr1),
        ("rtmr2", published.rtmr2, live.rtmr2),
    ];
    for (name, want, got) in registers {
        if want != got {
            return Err(ConnectError::LiveMismatch {
                field: name,
                published: hex::encode(want),
                live: hex::encode(got),
            });
        }
    }
    if published.td_attributes != live.td_attributes {
        return Err(ConnectError::LiveMismatch {
            field: "td_attributes",
            published: format!("{:?}", published.td_attributes),
            live: format!("{:?}", live.td_attributes),
        });
    }
    if published.xfam != live.xfam {
        return Err(ConnectError::LiveMismatch {
            field: "xfam",
            published: hex::encode(published.xfam),
            live: hex::encode(live.xfam),
        });
    }
    Ok(())
}
