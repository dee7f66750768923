//! `easyenclave::connect` against a realistic published deployment
//! (tests/published_world). `ee verify` is tested in sdk/cli/tests/verify.rs.

#![cfg(all(feature = "fetch", feature = "sim"))]

mod published_world;

use published_world::*;

use std::time::{Duration, Instant};

use easyenclave::allowlist::Variant;
use easyenclave::connect::{
    connect_with, CollateralOrigin, ConnectError, ConnectOptions, OFFICIAL_IMAGE_PUBLISHER,
};
use easyenclave::eventlog::{Event, SealEvent};
use easyenclave::github::{GitHub, NewRelease, RepoName};
use easyenclave::rtmr::sha384;
use easyenclave::sim::tcb::OUT_OF_DATE_SVNS;
use easyenclave::verify::{Policy, TrustRoot, VerifyError};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[test]
fn a_published_deployment_verifies() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    world.server.clear_requests();

    let service = world.connect(&world.options()).unwrap();
    assert_eq!(service.repo, REPO);
    assert_eq!(service.endpoint, ENDPOINT);
    assert_eq!(service.release_tag, TAG);
    assert_eq!(service.timestamp, world.now - 60);
    assert_eq!(service.age_secs, 60);
    assert_eq!(service.bundle.digest, BUNDLE);
    assert_eq!(service.bundles.len(), 1);
    assert!(service.sealed);
    assert_eq!(service.tcb_status, "UpToDate");
    assert_eq!(service.image_id.as_deref(), Some(IMAGE_ID));
    assert_eq!(service.td_report.mr_td, td_config().mr_td);
    assert_eq!(service.td_report.rtmr3, service.event_log.replay());
    assert_eq!(service.event_log.len(), 4);
    assert_eq!(service.allowlist.url, world.allowlist.url);
    assert_eq!(service.allowlist.publisher.as_deref(), Some(PUBLISHER));
    assert!(service.allowlist.publisher_pinned && !service.allowlist.from_file);
    assert_eq!(service.allowlist.entry, "sim-1cpu-2g");
    assert_eq!(service.allowlist.variant, Variant::Sim);
    assert_eq!(service.collateral, CollateralOrigin::Given);

    // The count is the client's own; the server's log is an independent
    // tally: list releases; attestation.json (API 302 + storage); the
    // publisher's release by tag; allowlist.json (API 302 + storage).
    let served = world.server.requests();
    assert_eq!(service.http_requests, served.len() as u64, "{served:#?}");
    assert_eq!(service.http_requests, 6);
    assert!(served.iter().all(|r| !r.authorization && r.status < 400));
}

/// Collateral is held in memory, as a warm cache serves it (the on-disk
/// cache is keyed by the PCK CA's Intel name, which the sim chain does not
/// carry, so the sim quote cannot go through it).
#[test]
fn connect_latency_with_warm_collateral() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let options = world.options();
    let mut timings = Vec::new();
    for _ in 0..11 {
        let start = Instant::now();
        let service = world.connect(&options).unwrap();
        timings.push(start.elapsed());
        assert_eq!(service.http_requests, 6);
    }
    timings.sort();
    // Reported, not asserted: `cargo test --test connect -- --nocapture`.
    println!(
        "connect() against the local server with warm collateral: median {:?}, \
         min {:?}, max {:?} over {} runs; 6 HTTP requests each",
        timings[timings.len() / 2],
        timings[0],
        timings[timings.len() - 1],
        timings.len()
    );
}

#[test]
fn an_edited_endpoint_is_rejected() {
    let world = World::new();
    let mut document: Value = serde_json::from_slice(&world.deployment(TAG).json()).unwrap();
    // The endpoint alone: it no longer agrees with the measured launch config.
    document["endpoint"] = "https://evil.example".into();
    world.publish(TAG, Some(document.to_string().as_bytes()));
    let err = world.connect(&world.options()).unwrap_err();
    assert!(
        matches!(&err, ConnectError::Document { source, .. } if source.to_string().starts_with("endpoint:")),
        "{err}"
    );

    // The endpoint and the config event together: the event log digest in
    // the statement, and so REPORTDATA, no longer match.
    let world = World::new();
    let mut document: Value = serde_json::from_slice(&world.deployment(TAG).json()).unwrap();
    document["endpoint"] = "https://evil.example".into();
    document["event_log"]["events"][0]["config"]["endpoint"] = "https://evil.example".into();
    world.publish(TAG, Some(document.to_string().as_bytes()));
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::Binding { .. }), "{err}");
    assert_eq!(err.check(), "binding");
}

#[test]
fn an_edited_timestamp_breaks_the_binding() {
    let world = World::new();
    let mut document: Value = serde_json::from_slice(&world.deployment(TAG).json()).unwrap();
    document["timestamp"] = (world.now - 30).into();
    world.publish(TAG, Some(document.to_string().as_bytes()));
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::Binding { .. }), "{err}");
}

#[test]
fn an_edited_release_tag_breaks_the_binding() {
    let world = World::new();
    // Made for one release; claims another and is published there.
    let other_tag = "deploy-20250602-080000";
    let mut document: Value = serde_json::from_slice(&world.deployment(TAG).json()).unwrap();
    document["release_tag"] = other_tag.into();
    world.publish(other_tag, Some(document.to_string().as_bytes()));
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::Binding { .. }), "{err}");
}

#[test]
fn a_document_replayed_on_a_newer_release_is_rejected() {
    let world = World::new();
    let old = world.deployment("deploy-20250101-000000").json();
    world.publish("deploy-20250101-000000", Some(&old));
    world.publish(TAG, Some(&old));
    match world.connect(&world.options()).unwrap_err() {
        ConnectError::ReleaseMismatch { document, release } => {
            assert_eq!(document, "deploy-20250101-000000");
            assert_eq!(release, TAG);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_old_deployment_is_stale_and_a_future_one_is_refused() {
    let world = World::new();
    let mut old = world.deployment(TAG);
    old.timestamp = world.now - 2 * DAY;
    world.deploy(&old);
    let options = ConnectOptions {
        max_age: Duration::from_secs(DAY),
        ..world.options()
    };
    match world.connect(&options).unwrap_err() {
        ConnectError::Stale {
            age_secs,
            max_age_secs,
            ..
        } => assert_eq!((age_secs, max_age_secs), (2 * DAY, DAY)),
        other => panic!("{other}"),
    }
    // (The release was created now, so the two-day-old timestamp also
    // disagrees with GitHub's clock; see the test below.)
    let options = ConnectOptions {
        max_age: Duration::from_secs(3 * DAY),
        max_publish_skew: Duration::from_secs(3 * DAY),
        ..world.options()
    };
    assert_eq!(world.connect(&options).unwrap().age_secs, 2 * DAY);

    let world = World::new();
    let mut ahead = world.deployment(TAG);
    ahead.timestamp = world.now + 3600;
    world.deploy(&ahead);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::FutureTimestamp {
                ahead_secs: 3600,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_bundle_must_be_the_expected_one() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let expect = |digest| ConnectOptions {
        expect_bundle: Some(digest),
        ..world.options()
    };
    assert_eq!(
        world.connect(&expect(BUNDLE)).unwrap().bundle.digest,
        BUNDLE
    );
    match world.connect(&expect([0xb2; 32])).unwrap_err() {
        ConnectError::BundleMismatch { expected, running } => {
            assert_eq!(expected, hex::encode([0xb2; 32]));
            assert_eq!(running, hex::encode(BUNDLE));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_deployment_without_a_bundle_is_rejected() {
    let world = World::new();
    let mut empty = world.deployment(TAG);
    empty.bundle = None;
    world.deploy(&empty);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::NoBundle), "{err}");
}

#[test]
fn a_stopped_bundle_is_not_running() {
    let world = World::new();
    let mut failed = world.deployment(TAG);
    failed.stopped = true;
    world.deploy(&failed);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::NoBundle), "{err}");
    assert!(
        err.to_string()
            .contains("the last workload event is `stopped`"),
        "{err}"
    );
}

#[test]
fn require_pinned_refuses_images_pulled_by_tag() {
    let world = World::new();
    let mut by_tag = world.deployment(TAG);
    by_tag.images_pinned = false;
    world.deploy(&by_tag);
    let service = world.connect(&world.options()).unwrap();
    assert!(
        !service.bundle.images_pinned,
        "reported, accepted by default"
    );
    assert_eq!(
        service.bundle.policy,
        easyenclave::workload_policy::WorkloadPolicy::v1()
            .digest()
            .unwrap()
    );
    let strict = ConnectOptions {
        require_pinned: true,
        ..world.options()
    };
    match world.connect(&strict).unwrap_err() {
        ConnectError::NotPinned { digest } => assert_eq!(digest, hex::encode(BUNDLE)),
        other => panic!("{other}"),
    }
}

#[test]
fn an_unsealed_deployment_is_rejected_unless_allowed() {
    let world = World::new();
    let mut unsealed = world.deployment(TAG);
    unsealed.sealed = false;
    world.deploy(&unsealed);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::Unsealed), "{err}");
    let allowed = ConnectOptions {
        allow_unsealed: true,
        ..world.options()
    };
    assert!(!world.connect(&allowed).unwrap().sealed);
}

#[test]
fn an_allowlist_that_does_not_match_is_rejected() {
    let world = World::new();
    let mut other_kernel = td_config();
    other_kernel.rtmrs[1] = sha384(b"rtmr1: another kernel");
    let bytes = allowlist_for(&other_kernel).to_json().unwrap();
    let mut deployment = world.deployment(TAG);
    deployment.allowlist = world.publish_allowlist("v0.2.0", bytes.as_bytes());
    world.deploy(&deployment);
    match world.connect(&world.options()).unwrap_err() {
        ConnectError::Measurements { list, mismatch } => {
            assert!(list.contains("/v0.2.0/allowlist.json"), "{list}");
            let registers: Vec<&str> = mismatch.registers.iter().map(|r| r.register).collect();
            assert_eq!(registers, ["rtmr1"]);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn allowlist_bytes_must_match_the_documents_digest() {
    let world = World::new();
    let mut deployment = world.deployment(TAG);
    deployment.allowlist.sha256 = Sha256::digest(b"another allowlist").into();
    world.deploy(&deployment);
    match world.connect(&world.options()).unwrap_err() {
        ConnectError::AllowlistDigest {
            expected, actual, ..
        } => {
            assert_eq!(expected, hex::encode(Sha256::digest(b"another allowlist")));
            assert_eq!(actual, hex::encode(Sha256::digest(&world.allowlist_bytes)));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_local_allowlist_file_replaces_only_the_download() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("allowlist.json");
    std::fs::write(&same, &world.allowlist_bytes).unwrap();
    let options = ConnectOptions {
        allowlist_override: Some(same),
        ..world.options()
    };
    let service = world.connect(&options).unwrap();
    assert!(service.allowlist.from_file);
    // List releases and attestation.json only.
    assert_eq!(service.http_requests, 3);

    let edited = dir.path().join("edited.json");
    let mut list = allowlist_for(&td_config());
    list.release_tag = Some("v9.9.9".to_owned());
    std::fs::write(&edited, list.to_json().unwrap()).unwrap();
    let options = ConnectOptions {
        allowlist_override: Some(edited),
        ..world.options()
    };
    let err = world.connect(&options).unwrap_err();
    assert!(matches!(err, ConnectError::AllowlistDigest { .. }), "{err}");
}

#[test]
fn allowlist_publishers_can_be_pinned() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let pinned = |publisher: &str| ConnectOptions {
        allowlist_publishers: vec![publisher.parse().unwrap()],
        ..world.options()
    };
    assert!(
        world
            .connect(&pinned(PUBLISHER))
            .unwrap()
            .allowlist
            .publisher_pinned
    );
    let err = world
        .connect(&pinned("easy-enclave/easy-enclave"))
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::UntrustedAllowlist { publisher: Some(p), .. } if p == PUBLISHER),
        "{err}"
    );
}

#[test]
fn an_allowlist_elsewhere_has_no_publisher_to_trust() {
    let world = World::new();
    let mut deployment = world.deployment(TAG);
    // Not the configured GitHub's host: no publisher can vouch for it.
    deployment.allowlist.url = "https://127.0.0.1:1/allowlist.json".to_owned();
    world.deploy(&deployment);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::UntrustedAllowlist {
                publisher: None,
                ..
            }
        ),
        "{err}"
    );
    // A verifier with its own pinned list fetches it with a plain HTTPS
    // GET (which fails here) to check the attested digest.
    let pinned = ConnectOptions {
        allowlist_publishers: Vec::new(),
        policy: Policy::default().with_allowlist(allowlist_for(&td_config())),
        ..world.options()
    };
    let err = world.connect(&pinned).unwrap_err();
    assert!(matches!(err, ConnectError::AllowlistFetch { .. }), "{err}");
    assert!(!err.is_rejection());
}

#[test]
fn a_deployer_fetches_an_allowlist_only_from_a_trusted_publisher() {
    let world = World::new();
    let (list, reference) =
        easyenclave::connect::published_allowlist(&world.allowlist.url, &world.options()).unwrap();
    assert_eq!(reference, world.allowlist);
    assert_eq!(list.image_id, IMAGE_ID);
    let err = easyenclave::connect::published_allowlist(
        &world.allowlist.url,
        &ConnectOptions {
            allowlist_publishers: ConnectOptions::default().allowlist_publishers,
            ..world.options()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::UntrustedAllowlist { publisher: Some(p), .. } if p == PUBLISHER),
        "{err}"
    );
}

#[test]
fn a_sim_quote_is_untrusted_without_the_sim_root() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let options = ConnectOptions {
        trust_root: TrustRoot::IntelProduction,
        ..world.options()
    };
    let err = world.connect(&options).unwrap_err();
    assert!(
        matches!(err, ConnectError::Untrusted(VerifyError::Dcap(_))),
        "{err}"
    );
    assert_eq!(err.check(), "untrusted_quote");
}

#[test]
fn an_out_of_date_platform_fails_the_tcb_policy() {
    let world = World::new();
    let mut old_module = world.deployment(TAG);
    old_module.tee_tcb_svn = Some(OUT_OF_DATE_SVNS.tee_tcb_svn);
    world.deploy(&old_module);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(
        matches!(&err, ConnectError::TcbStatus(VerifyError::TcbStatus { status, .. }) if status == "OutOfDate"),
        "{err}"
    );
}

#[test]
fn an_event_log_that_does_not_replay_is_rejected() {
    let world = World::new();
    let mut lying = world.deployment(TAG);
    lying.unmeasured = Some(Event::Seal(SealEvent {
        removed: vec!["everything".to_owned()],
    }));
    lying.sealed = false;
    world.deploy(&lying);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::EventLog(_)), "{err}");
}

#[test]
fn a_td_bound_to_another_repo_is_rejected() {
    let world = World::new();
    let mut other = world.deployment(TAG);
    other.repo = OTHER_REPO.to_owned();
    world.deploy(&other);
    match world.connect(&world.options()).unwrap_err() {
        ConnectError::RepoBinding {
            requested,
            measured,
        } => assert_eq!((requested.as_str(), measured.as_str()), (REPO, OTHER_REPO)),
        other => panic!("{other}"),
    }
}

#[test]
fn image_variant_and_id_are_checked() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let production_only = ConnectOptions {
        accepted_variants: vec![Variant::Production],
        ..world.options()
    };
    let err = world.connect(&production_only).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Variant {
                variant: Variant::Sim,
                ..
            }
        ),
        "{err}"
    );

    let world = World::new();
    let mut renamed = world.deployment(TAG);
    renamed.image_id = "ee-image-9.9.9".to_owned();
    world.deploy(&renamed);
    let err = world.connect(&world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::ImageMismatch { .. }), "{err}");
}

#[test]
fn a_release_without_the_document_falls_back_to_the_previous_one() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    // A deploy that never published, and a draft (visible to writers only).
    world.publish("deploy-20250601-130000", None);
    let newer = world.deployment("deploy-20250601-140000");
    world.publish_release(
        NewRelease {
            draft: true,
            ..NewRelease::new("deploy-20250601-140000")
        },
        Some(&newer.json()),
    );
    let as_writer = ConnectOptions {
        github_token: Some("t-acme".to_owned()),
        ..world.options()
    };
    for options in [world.options(), as_writer] {
        assert_eq!(world.connect(&options).unwrap().release_tag, TAG);
    }
}

#[test]
fn no_deploy_release_is_not_found() {
    let world = World::new();
    world.publish("v1.0.0", None);
    world.publish("deploy-20250601-130000", None);
    match world.connect(&world.options()).unwrap_err() {
        ConnectError::NotFound { repo, seen } => {
            assert_eq!(repo, REPO);
            assert_eq!(
                seen,
                "releases seen: \"deploy-20250601-130000\" (no attestation.json asset), \
                 \"v1.0.0\" (not a deploy-* release)"
            );
        }
        other => panic!("{other}"),
    }
    let err = connect_with("acme/missing", &world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::NotFound { .. }), "{err}");
    let err = connect_with("not a repo", &world.options()).unwrap_err();
    assert!(matches!(err, ConnectError::InvalidRepo { .. }), "{err}");
    assert!(!err.is_rejection());
}

/// connect() reads release pages only until it finds the deployment, so a
/// repo with years of deploy releases costs one request, not one per page.
#[test]
fn releases_are_read_only_up_to_the_deployment() {
    let world = World::new();
    for day in 1..=5 {
        world.publish(&format!("deploy-2025060{day}-000000"), None);
    }
    let github = GitHub::new(&world.server.base_url())
        .unwrap()
        .with_pagination(2, 10);
    let repo: RepoName = REPO.parse().unwrap();
    let release_pages = |world: &World| {
        world
            .server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/releases"))
            .count()
    };
    world.server.clear_requests();
    let found = github
        .find_release(&repo, |r| {
            (r.tag_name == "deploy-20250604-000000").then_some(r.id)
        })
        .unwrap();
    assert!(found.is_some());
    assert_eq!(release_pages(&world), 1);

    world.server.clear_requests();
    let mut visited = Vec::new();
    let found = github
        .find_release(&repo, |r| {
            visited.push(r.tag_name.clone());
            None::<()>
        })
        .unwrap();
    assert_eq!(found, None);
    assert_eq!(visited.len(), 5);
    assert_eq!(
        visited.first().map(String::as_str),
        Some("deploy-20250605-000000")
    );
    assert_eq!(release_pages(&world), 3);
}

#[test]
fn by_default_only_the_official_publishers_images_verify() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    // Everything as the world's options, but the publishers left at their
    // default: the project's own image releases.
    let defaults = ConnectOptions {
        allowlist_publishers: ConnectOptions::default().allowlist_publishers,
        ..world.options()
    };
    assert_eq!(
        defaults
            .allowlist_publishers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [OFFICIAL_IMAGE_PUBLISHER]
    );
    let err = world.connect(&defaults).unwrap_err();
    match &err {
        ConnectError::UntrustedAllowlist {
            publisher, trusted, ..
        } => {
            assert_eq!(publisher.as_deref(), Some(PUBLISHER));
            assert_eq!(trusted, &[OFFICIAL_IMAGE_PUBLISHER]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(PUBLISHER), "{err}");
}

#[test]
fn nothing_trusted_means_nothing_verifies() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let no_trust = ConnectOptions {
        allowlist_publishers: Vec::new(),
        ..world.options()
    };
    let err = world.connect(&no_trust).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::InvalidOptions {
                option: "allowlist_publishers",
                ..
            }
        ),
        "{err}"
    );
    // The verifier's own file is trust enough (no publisher consulted).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allowlist.json");
    std::fs::write(&file, &world.allowlist_bytes).unwrap();
    let own_file = ConnectOptions {
        allowlist_override: Some(file),
        ..no_trust.clone()
    };
    let service = world.connect(&own_file).unwrap();
    assert!(service.allowlist.from_file && !service.allowlist.publisher_pinned);
    // So is a pinned list, whose labels then decide the variant.
    let mut production_label = allowlist_for(&td_config());
    production_label.entries[0].profile.variant = Variant::Production;
    let pinned = ConnectOptions {
        policy: Policy::default().with_allowlist(production_label),
        accepted_variants: vec![Variant::Production],
        ..no_trust
    };
    let service = world.connect(&pinned).unwrap();
    assert_eq!(service.allowlist.variant, Variant::Production);
}

#[test]
fn a_td_measured_with_another_github_api_is_rejected() {
    let world = World::new();
    let mut hijacked = world.deployment(TAG);
    // The host launched a genuine image with its own "GitHub": it received
    // the deployer's token and served the bundle.
    hijacked.github_api_url = "https://api.attacker.test".to_owned();
    world.deploy(&hijacked);
    let err = world.connect(&world.options()).unwrap_err();
    match &err {
        ConnectError::GithubApi { expected, measured } => {
            assert_eq!(expected, &world.server.base_url());
            assert_eq!(measured, "https://api.attacker.test");
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.check(), "github_api");
    assert!(err.is_rejection());
}

/// S11: MRCONFIGID, MROWNER and MROWNERCONFIG are set by the host at launch;
/// a value no allowlist entry names is refused, register by register.
#[test]
fn host_chosen_owner_registers_are_refused() {
    let world = World::new();
    let mut owned = world.deployment(TAG);
    owned.owner_registers = Some([0x66; 48]);
    world.deploy(&owned);
    let err = world.connect(&world.options()).unwrap_err();
    let ConnectError::Measurements { mismatch, .. } = &err else {
        panic!("{err}");
    };
    let named: Vec<&str> = mismatch.registers.iter().map(|r| r.register).collect();
    assert_eq!(named, ["mrconfigid", "mrowner", "mrownerconfig"], "{err}");
    assert!(err.to_string().contains("mrconfigid"), "{err}");
}

/// S12: the TD's clock is the host's. A host that runs it 20 days ahead
/// gets a document that looks brand new 20 days from now; the release's
/// `created_at` (GitHub's clock) gives it away.
#[test]
fn a_td_clock_set_ahead_is_caught_by_the_release_time() {
    let world = World::new();
    let mut ahead = world.deployment(TAG);
    ahead.timestamp = world.now + 20 * DAY;
    world.deploy(&ahead);
    let later = ConnectOptions {
        now: Some(world.now + 20 * DAY + 60),
        ..world.options()
    };
    let err = world.connect(&later).unwrap_err();
    match &err {
        ConnectError::ReleaseTime {
            release,
            timestamp,
            max_skew_secs,
            ..
        } => {
            assert_eq!(release, TAG);
            assert_eq!(*timestamp, world.now + 20 * DAY);
            assert_eq!(*max_skew_secs, 600);
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.check(), "release_time");
}

/// S9: whoever holds the keys of the issuer a TD takes deploy tokens from
/// can deploy to it; a host-chosen issuer is refused like a host-chosen API.
#[test]
fn a_td_taking_tokens_from_another_oidc_issuer_is_rejected() {
    let world = World::new();
    let mut hijacked = world.deployment(TAG);
    hijacked.oidc_issuer = Some("https://issuer.attacker.test".to_owned());
    world.deploy(&hijacked);
    let err = world.connect(&world.options()).unwrap_err();
    match &err {
        ConnectError::OidcIssuer { expected, measured } => {
            assert_eq!(expected, "https://token.actions.githubusercontent.com");
            assert_eq!(measured, "https://issuer.attacker.test");
        }
        other => panic!("{other}"),
    }
    // A verifier that names that issuer (its own GitHub Enterprise Server).
    let named = ConnectOptions {
        oidc_issuer: "https://issuer.attacker.test".to_owned(),
        ..world.options()
    };
    assert!(world.connect(&named).is_ok());
}
