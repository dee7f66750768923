//! `ee verify OWNER/REPO`: the repo's newest published deployment, checked
//! with [`easyenclave::connect::connect_with`]; the summary or the JSON
//! result, and with `--get` the hand-over to [`super::get`].

use anyhow::{anyhow, Context};
use easyenclave::connect::{connect_with, CollateralOrigin, VerifiedService, DEFAULT_MAX_AGE};

use super::{options, pinned_text, variant_name, RootArg, VerifyArgs};
use crate::Failure;

/// Verify the newest published deployment of `args.repo`.
pub(super) fn verify_published(args: &VerifyArgs) -> Result<(), Failure> {
    let options = options(args)?;
    match connect_with(&args.repo, &options) {
        Ok(service) => {
            if let Some(path) = &args.get {
                print_service(&service, args, &mut std::io::stderr());
                return super::get::get_through_verified_client(&service, &options, path);
            }
            if args.json {
                let mut doc = serde_json::to_value(&service).context("encoding JSON")?;
                doc["verified"] = true.into();
                println!("{doc:#}");
            } else {
                print_service(&service, args, &mut std::io::stdout());
            }
            Ok(())
        }
        Err(e) => {
            if args.json {
                let doc = serde_json::json!({
                    "verified": false,
                    "check": e.check(),
                    "error": e.to_string(),
                });
                println!("{doc:#}");
            }
            let error = anyhow!("check {} failed: {e}", e.check());
            Err(if e.is_rejection() {
                Failure::Rejected(error)
            } else {
                Failure::Input(error)
            })
        }
    }
}

/// The human summary of a verified deployment.
fn print_service(service: &VerifiedService, args: &VerifyArgs, out: &mut dyn std::io::Write) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "OK: {} is verified", service.repo).ok();
    writeln!(out, "  endpoint:    {}", service.endpoint).ok();
    writeln!(
        out,
        "  release:     {}, attested {} ago (limit {})",
        service.release_tag,
        human_duration(service.age_secs),
        human_duration(args.max_age.unwrap_or(DEFAULT_MAX_AGE).as_secs())
    )
    .ok();
    let bundle = &service.bundle;
    writeln!(
        out,
        "  bundle:      {}{}",
        hex::encode(bundle.digest),
        if args.expect_bundle.is_some() {
            " (as expected)"
        } else {
            ""
        }
    )
    .ok();
    writeln!(out, "               from {}", bundle.source).ok();
    writeln!(out, "               {}", pinned_text(bundle)).ok();
    writeln!(
        out,
        "               enforced {}",
        easyenclave::workload_policy::describe(&bundle.policy)
    )
    .ok();
    if service.bundles.len() > 1 {
        writeln!(
            out,
            "               {} earlier bundle(s) since boot",
            service.bundles.len() - 1
        )
        .ok();
    }
    writeln!(
        out,
        "  sealed:      {}{}",
        yes_no(service.sealed),
        if service.sealed {
            ""
        } else {
            " (accepted: --allow-unsealed)"
        }
    )
    .ok();
    let advisories = if service.advisory_ids.is_empty() {
        "none".to_owned()
    } else {
        service.advisory_ids.join(", ")
    };
    writeln!(
        out,
        "  TCB status:  {} (advisories: {advisories})",
        service.tcb_status
    )
    .ok();
    let allowlist = &service.allowlist;
    writeln!(
        out,
        "  image:       {}, allowlist entry {:?} ({})",
        allowlist.image_id,
        allowlist.entry,
        variant_name(allowlist.variant)
    )
    .ok();
    writeln!(out, "  allowlist:   {}", allowlist.url).ok();
    writeln!(
        out,
        "               sha256 {}",
        hex::encode(allowlist.sha256)
    )
    .ok();
    let publisher = match (&allowlist.publisher, allowlist.publisher_pinned) {
        (Some(p), true) => format!("published by {p} (a trusted publisher)"),
        (Some(p), false) => {
            format!("published by {p} (not pinned: --allowlist-publisher {p} would require it)")
        }
        (None, _) => "not a release asset on the configured GitHub: publisher unknown".to_owned(),
    };
    writeln!(out, "               {publisher}").ok();
    if allowlist.from_file {
        writeln!(
            out,
            "               read from the local file given with --allowlist"
        )
        .ok();
    }
    let td = &service.td_report;
    writeln!(out, "  MRTD:        {}", hex::encode(td.mr_td)).ok();
    for (i, register) in [td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3].iter().enumerate() {
        writeln!(out, "  RTMR{i}:       {}", hex::encode(register)).ok();
    }
    let collateral = match (&service.collateral, &args.root, &args.collateral) {
        (CollateralOrigin::Given, RootArg::Sim, None) => {
            "made for the simulated platform".to_owned()
        }
        (CollateralOrigin::Given, _, _) => "from --collateral".to_owned(),
        (CollateralOrigin::Cache, _, _) => "from the cache".to_owned(),
        (CollateralOrigin::Fetched { source, cached }, _, _) => format!(
            "fetched from {source}{}",
            if *cached {
                " and cached"
            } else {
                " (not cached)"
            }
        ),
    };
    writeln!(out, "  collateral:  {collateral}").ok();
    writeln!(out, "  requests:    {} HTTP", service.http_requests).ok();
}

/// `3d 4h`, `5m 2s`: the two largest units.
fn human_duration(secs: u64) -> String {
    let units = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    let parts: Vec<String> = units
        .iter()
        .scan(secs, |rest, &(name, size)| {
            let count = *rest / size;
            *rest %= size;
            Some((count, name))
        })
        .skip_while(|&(count, _)| count == 0)
        .take(2)
        .filter(|&(count, _)| count > 0)
        .map(|(count, name)| format!("{count}{name}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_two_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(3600 + 5), "1h");
        assert_eq!(human_duration(2 * 86_400 + 3 * 3600 + 7), "2d 3h");
        assert_eq!(human_duration(65), "1m 5s");
    }
}
