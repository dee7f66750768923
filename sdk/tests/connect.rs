//! `easyenclave::connect` and `ee verify` against a realistic published
//! deployment: a simulated TD for `acme/hello` with a measured event log
//! (config, bundle, seal, ready), a quote binding the publish statement, the
//! image publisher's allowlist, all served by the local GitHub test server.

#![cfg(all(feature = "fetch", feature = "sim", feature = "test-server"))]

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use easyenclave::allowlist::{
    Allowlist, MeasurementSet, Profile, TdAttributesPolicy, Variant, XfamPolicy,
};
use easyenclave::attestation::{AllowlistRef, AttestationDocument, ATTESTATION_VERSION};
use easyenclave::collateral::Collateral;
use easyenclave::connect::{
    connect_with, CollateralChoice, CollateralOrigin, ConnectError, ConnectOptions,
    VerifiedService, OFFICIAL_IMAGE_PUBLISHER,
};
use easyenclave::eventlog::{BundleEvent, Event, EventLog, SealEvent};
use easyenclave::github::{GitHub, NewRelease, RepoName, RetryPolicy};
use easyenclave::launch::LaunchConfig;
use easyenclave::rtmr::{sha384, RTMR_RESET};
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::tcb::OUT_OF_DATE_SVNS;
use easyenclave::sim::td::{SimTd, SimTdConfig, DEFAULT_XFAM};
use easyenclave::sim::DEV_SEED;
use easyenclave::testing::github_server::{GithubServer, ServerConfig};
use easyenclave::verify::{Policy, TrustRoot, VerifyError};
use serde_json::Value;
use sha2::{Digest, Sha256};

const REPO: &str = "acme/hello";
const OTHER_REPO: &str = "acme/other";
const PUBLISHER: &str = "acme-images/ee-image";
const IMAGE_TAG: &str = "v0.1.0";
const IMAGE_ID: &str = "ee-image-0.1.0";
const ENDPOINT: &str = "https://hello.acme.example";
const BUNDLE: [u8; 32] = [0xb1; 32];
const DAY: u64 = 86_400;

/// The simulated platform of dev images (its seed is public): `ee verify
/// --root sim` trusts the same root.
fn pki() -> &'static SimPki {
    static PKI: OnceLock<SimPki> = OnceLock::new();
    PKI.get_or_init(|| SimPki::from_seed(DEV_SEED).unwrap())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Launch-time registers of the TD: a firmware MRTD and RTMR0-2 standing in
/// for what `ee-image` computes; RTMR3 at reset, for the runtime events.
fn td_config() -> SimTdConfig {
    SimTdConfig {
        rtmrs: [
            sha384(b"rtmr0: TD HOB, CFV, ACPI"),
            sha384(b"rtmr1: kernel"),
            sha384(b"rtmr2: cmdline, initrd"),
            RTMR_RESET,
        ],
        ..SimTdConfig::default()
    }
}

/// An allowlist whose single entry is `td`'s registers.
fn allowlist_for(td: &SimTdConfig) -> Allowlist {
    Allowlist {
        version: 1,
        image_id: IMAGE_ID.to_owned(),
        release_tag: Some(IMAGE_TAG.to_owned()),
        entries: vec![MeasurementSet {
            name: "sim-1cpu-2g".to_owned(),
            mrtd: td.mr_td,
            rtmr0: td.rtmrs[0],
            rtmr1: td.rtmrs[1],
            rtmr2: td.rtmrs[2],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            profile: Profile {
                qemu_version: "10.1.0".to_owned(),
                ovmf: [0x0f; 32],
                cpus: 1,
                memory_mib: 2048,
                variant: Variant::Sim,
            },
        }],
        td_attributes: TdAttributesPolicy::default(),
        xfam: XfamPolicy {
            accepted: vec![DEFAULT_XFAM],
        },
    }
}

/// What the agent did and published; each field can be varied by a test.
#[derive(Clone)]
struct Deployment {
    repo: String,
    endpoint: String,
    image_id: String,
    release_tag: String,
    timestamp: u64,
    bundle: Option<[u8; 32]>,
    images_pinned: bool,
    /// A measured `stopped` event after the bundle (a failed first deploy).
    stopped: bool,
    sealed: bool,
    /// Appended to the log without extending RTMR3 (a log that lies).
    unmeasured: Option<Event>,
    tee_tcb_svn: Option<[u8; 16]>,
    /// MRCONFIGID, MROWNER, MROWNERCONFIG as the host set them at launch.
    owner_registers: Option<[u8; 48]>,
    allowlist: AllowlistRef,
    /// The GitHub API the host put in the launch config.
    github_api_url: String,
    /// The OIDC issuer the host put in the launch config, if not GitHub's.
    oidc_issuer: Option<String>,
}

impl Deployment {
    /// The attestation document, with a quote from a fresh simulated TD
    /// whose RTMR3 holds the event log (extend-then-log, as `ee-init` does).
    fn document(&self) -> AttestationDocument {
        let mut td = SimTd::new(
            pki(),
            SimTdConfig {
                tee_tcb_svn: self.tee_tcb_svn,
                mr_config_id: self.owner_registers.unwrap_or([0; 48]),
                mr_owner: self.owner_registers.unwrap_or([0; 48]),
                mr_owner_config: self.owner_registers.unwrap_or([0; 48]),
                ..td_config()
            },
        );
        let mut config = LaunchConfig::new(&self.repo, &self.endpoint);
        config.image_id = Some(self.image_id.clone());
        config.github_api_url = self.github_api_url.clone();
        if let Some(issuer) = &self.oidc_issuer {
            config.oidc.issuer = issuer.clone();
        }
        let mut events = vec![Event::Config { config }];
        if let Some(digest) = self.bundle {
            events.push(Event::Bundle(BundleEvent {
                digest,
                repo: self.repo.clone(),
                artifact_id: Some(42),
                source: format!(
                    "https://api.github.com/repos/{}/actions/artifacts/42",
                    self.repo
                ),
                policy: easyenclave::workload_policy::WorkloadPolicy::v1()
                    .digest()
                    .unwrap(),
                images_pinned: self.images_pinned,
            }));
            if self.stopped {
                events.push(Event::Stopped(easyenclave::eventlog::StoppedEvent {
                    digest,
                    reason: "first deploy failed".to_owned(),
                }));
            }
        }
        if self.sealed {
            events.push(Event::Seal(SealEvent {
                removed: vec!["getty".to_owned(), "ssh".to_owned()],
            }));
        }
        events.push(Event::Ready {});
        let mut log = EventLog::new();
        for event in events {
            log.push_extended(event, |digest| td.extend_rtmr(3, digest).map(drop))
                .unwrap();
        }
        if let Some(event) = &self.unmeasured {
            log.push(event.clone()).unwrap();
        }
        let mut document = AttestationDocument {
            version: ATTESTATION_VERSION,
            repo: self.repo.clone(),
            endpoint: self.endpoint.clone(),
            release_tag: self.release_tag.clone(),
            timestamp: self.timestamp,
            quote: Vec::new(),
            event_log: log,
            allowlist: self.allowlist.clone(),
            image_id: Some(self.image_id.clone()),
        };
        document.quote = td.quote(&document.expected_report_data().unwrap()).unwrap();
        document
    }

    fn json(&self) -> Vec<u8> {
        self.document().to_json().unwrap().into_bytes()
    }
}

/// The local GitHub with the image publisher's allowlist released on it.
struct World {
    server: GithubServer,
    now: u64,
    allowlist: AllowlistRef,
    allowlist_bytes: Vec<u8>,
    collateral: Collateral,
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

impl World {
    fn new() -> World {
        let config = ServerConfig::default()
            .with_token("t-acme", "acme")
            .with_token("t-images", "acme-images")
            .with_repo(REPO, false)
            .with_repo(OTHER_REPO, false)
            .with_repo(PUBLISHER, false);
        let server = GithubServer::start(config).unwrap();
        let now = unix_now();
        let mut world = World {
            server,
            now,
            allowlist: AllowlistRef {
                url: String::new(),
                sha256: [0; 32],
            },
            allowlist_bytes: Vec::new(),
            collateral: Collateral::from(pki().collateral(now - DAY, now + 30 * DAY).unwrap()),
        };
        let bytes = allowlist_for(&td_config()).to_json().unwrap().into_bytes();
        world.allowlist = world.publish_allowlist(IMAGE_TAG, &bytes);
        world.allowlist_bytes = bytes;
        world
    }

    fn github(&self, token: &str) -> GitHub {
        GitHub::new(&self.server.base_url())
            .unwrap()
            .with_token(token)
    }

    /// Releases `bytes` as `allowlist.json` of the publisher's release `tag`;
    /// returns the reference a document would carry. The URL names the test
    /// server's host and port under `https`, as the document format requires;
    /// connect() fetches it through the API it is configured with.
    fn publish_allowlist(&self, tag: &str, bytes: &[u8]) -> AllowlistRef {
        let github = self.github("t-images");
        let publisher: RepoName = PUBLISHER.parse().unwrap();
        let release = github
            .create_release(&publisher, &NewRelease::new(tag))
            .unwrap();
        github
            .upload_asset(&release, "allowlist.json", "application/json", bytes)
            .unwrap();
        AllowlistRef {
            url: format!(
                "https://{}/{PUBLISHER}/releases/download/{tag}/allowlist.json",
                self.server.api_addr()
            ),
            sha256: Sha256::digest(bytes).into(),
        }
    }

    /// Creates release `tag` of `REPO`, with `document` as attestation.json if given.
    fn publish(&self, tag: &str, document: Option<&[u8]>) {
        self.publish_release(NewRelease::new(tag), document);
    }

    fn publish_release(&self, release: NewRelease, document: Option<&[u8]>) {
        let github = self.github("t-acme");
        let repo: RepoName = REPO.parse().unwrap();
        let release = github.create_release(&repo, &release).unwrap();
        if let Some(bytes) = document {
            github
                .upload_asset(&release, "attestation.json", "application/json", bytes)
                .unwrap();
        }
    }

    /// A sealed deployment of `REPO` with a bundle, attested a minute ago.
    fn deployment(&self, release_tag: &str) -> Deployment {
        Deployment {
            repo: REPO.to_owned(),
            endpoint: ENDPOINT.to_owned(),
            image_id: IMAGE_ID.to_owned(),
            release_tag: release_tag.to_owned(),
            timestamp: self.now - 60,
            bundle: Some(BUNDLE),
            images_pinned: true,
            stopped: false,
            sealed: true,
            unmeasured: None,
            tee_tcb_svn: None,
            owner_registers: None,
            allowlist: self.allowlist.clone(),
            github_api_url: self.server.base_url(),
            oidc_issuer: None,
        }
    }

    /// Publishes `deployment` on its own release.
    fn deploy(&self, deployment: &Deployment) {
        self.publish(&deployment.release_tag, Some(&deployment.json()));
    }

    /// The verifier's options: the sim root and collateral, sim images, the
    /// test publisher's allowlists.
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            github_api_url: self.server.base_url(),
            allowlist_publishers: vec![PUBLISHER.parse().unwrap()],
            trust_root: TrustRoot::Explicit(pki().root_ca_der().to_vec()),
            accepted_variants: vec![Variant::Sim],
            collateral: CollateralChoice::Given(self.collateral.clone()),
            now: Some(self.now),
            retry: quick_retry(),
            ..ConnectOptions::default()
        }
    }

    fn connect(&self, options: &ConnectOptions) -> Result<VerifiedService, ConnectError> {
        connect_with(REPO, options)
    }
}

const TAG: &str = "deploy-20250601-120000";

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
fn ee_verify_by_default_trusts_only_the_official_publisher() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let base_url = world.server.base_url();
    let output = Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(["verify", REPO, "--api-url", &base_url, "--root", "sim"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("check untrusted_allowlist failed")
            && stderr(&output).contains(&format!("published by {PUBLISHER}"))
            && stderr(&output).contains(OFFICIAL_IMAGE_PUBLISHER),
        "{}",
        stderr(&output)
    );
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

// ---- the `ee verify` command ----

fn ee_verify(world: &World, extra: &[&str]) -> Output {
    let base_url = world.server.base_url();
    let mut args = vec![
        "verify",
        REPO,
        "--api-url",
        &base_url,
        "--root",
        "sim",
        "--allowlist-publisher",
        PUBLISHER,
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(&args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn ee_verify_require_pinned_and_a_stopped_bundle() {
    let world = World::new();
    let mut by_tag = world.deployment(TAG);
    by_tag.images_pinned = false;
    world.deploy(&by_tag);
    let output = ee_verify(&world, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("images: some pulled by tag or built"),
        "{text}"
    );
    assert!(text.contains("enforced workload policy v1 ("), "{text}");
    let output = ee_verify(&world, &["--require-pinned", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["check"], "not_pinned");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("has images_pinned: false"),
        "{doc}"
    );

    let world = World::new();
    let mut stopped = world.deployment(TAG);
    stopped.stopped = true;
    world.deploy(&stopped);
    let output = ee_verify(&world, &["--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["check"], "no_bundle");
}

#[test]
fn ee_verify_prints_a_summary_or_json_and_exits_0() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));

    let output = ee_verify(&world, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "OK: acme/hello is verified",
        ENDPOINT,
        TAG,
        &hex::encode(BUNDLE),
        "sealed:      yes",
        "UpToDate",
        &format!("published by {PUBLISHER} (a trusted publisher)"),
        "made for the simulated platform",
        "requests:    6 HTTP",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    let output = ee_verify(&world, &["--json", "--expect-bundle", &hex::encode(BUNDLE)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["repo"], REPO);
    assert_eq!(json["endpoint"], ENDPOINT);
    assert_eq!(json["release_tag"], TAG);
    assert_eq!(json["bundle"]["digest"], hex::encode(BUNDLE));
    assert_eq!(json["sealed"], true);
    assert_eq!(json["tcb_status"], "UpToDate");
    assert_eq!(json["allowlist"]["publisher"], PUBLISHER);
    assert_eq!(json["allowlist"]["variant"], "sim");
    assert_eq!(json["td_report"]["mr_td"], hex::encode(td_config().mr_td));
    assert_eq!(json["collateral"]["kind"], "given");
    assert_eq!(json["http_requests"], 6);
    assert_eq!(json["event_log"]["events"].as_array().unwrap().len(), 4);
}

#[test]
fn ee_verify_exits_1_naming_the_failed_check() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    let other = hex::encode([0xb2; 32]);

    let output = ee_verify(&world, &["--expect-bundle", &other]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("ee: rejected: check bundle_mismatch failed: "),
        "{}",
        stderr(&output)
    );

    let output = ee_verify(&world, &["--expect-bundle", &other, "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["check"], "bundle_mismatch");
    assert!(json["error"].as_str().unwrap().contains(&other));

    // The same quote, with Intel's root: the sim collateral is given as a file.
    let dir = tempfile::tempdir().unwrap();
    let collateral = dir.path().join("collateral.json");
    std::fs::write(&collateral, world.collateral.to_json()).unwrap();
    let base_url = world.server.base_url();
    let collateral_arg = collateral.to_str().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(["verify", REPO, "--api-url", &base_url])
        .args(["--allowlist-publisher", PUBLISHER])
        .args(["--collateral", collateral_arg, "--accept-variant", "sim"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("check untrusted_quote failed"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn ee_verify_exits_2_on_bad_input() {
    let world = World::new();
    world.deploy(&world.deployment(TAG));
    for (args, message) in [
        (&["--max-age", "24"][..], "has no unit"),
        (&["--max-age", "3w"][..], "unknown unit"),
        (&["--expect-bundle", "abcd"][..], "expected 32"),
        (&["--accept-variant", "beta"][..], "unknown variant"),
        (&["--allowlist-publisher", "no-slash"][..], "owner/name"),
        (
            &["--allowlist", "/nonexistent/allowlist.json"][..],
            "nonexistent",
        ),
    ] {
        let output = ee_verify(&world, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(["verify", "not/a/repo"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("check invalid_repo failed"),
        "{}",
        stderr(&output)
    );
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
