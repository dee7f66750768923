//! A realistic published deployment for `easyenclave::connect` (sdk/tests/connect.rs)
//! and `ee verify` (sdk/cli/tests/verify.rs): a simulated TD for `acme/hello` with
//! a measured event log (config, bundle, seal, ready), a quote binding the
//! publish statement, the image publisher's allowlist, all served by the local
//! GitHub test server. Each test binary uses a subset.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easyenclave::allowlist::{
    Allowlist, MeasurementSet, Profile, TdAttributesPolicy, Variant, XfamPolicy,
};
use easyenclave::attestation::{AllowlistRef, AttestationDocument, ATTESTATION_VERSION};
use easyenclave::collateral::Collateral;
use easyenclave::connect::{
    connect_with, CollateralChoice, ConnectError, ConnectOptions, VerifiedService,
};
use easyenclave::eventlog::{BundleEvent, Event, EventLog, SealEvent};
use easyenclave::github::{GitHub, NewRelease, RepoName, RetryPolicy};
use easyenclave::launch::LaunchConfig;
use easyenclave::rtmr::{sha384, RTMR_RESET};
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig, DEFAULT_XFAM};
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::TrustRoot;
use ee_testkit::github_server::{GithubServer, ServerConfig};
use sha2::{Digest, Sha256};

pub const REPO: &str = "acme/hello";
pub const OTHER_REPO: &str = "acme/other";
pub const PUBLISHER: &str = "acme-images/ee-image";
pub const IMAGE_TAG: &str = "v0.1.0";
pub const IMAGE_ID: &str = "ee-image-0.1.0";
pub const ENDPOINT: &str = "https://hello.acme.example";
pub const BUNDLE: [u8; 32] = [0xb1; 32];
pub const DAY: u64 = 86_400;

/// The simulated platform of dev images (its seed is public): `ee verify
/// --root sim` trusts the same root.
pub fn pki() -> &'static SimPki {
    static PKI: OnceLock<SimPki> = OnceLock::new();
    PKI.get_or_init(|| SimPki::from_seed(DEV_SEED).unwrap())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Launch-time registers of the TD: a firmware MRTD and RTMR0-2 standing in
/// for what `ee-image` computes; RTMR3 at reset, for the runtime events.
pub fn td_config() -> SimTdConfig {
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
pub fn allowlist_for(td: &SimTdConfig) -> Allowlist {
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
pub struct Deployment {
    pub repo: String,
    pub endpoint: String,
    pub image_id: String,
    pub release_tag: String,
    pub timestamp: u64,
    pub bundle: Option<[u8; 32]>,
    pub images_pinned: bool,
    /// A measured `stopped` event after the bundle (a failed first deploy).
    pub stopped: bool,
    pub sealed: bool,
    /// Appended to the log without extending RTMR3 (a log that lies).
    pub unmeasured: Option<Event>,
    pub tee_tcb_svn: Option<[u8; 16]>,
    /// MRCONFIGID, MROWNER, MROWNERCONFIG as the host set them at launch.
    pub owner_registers: Option<[u8; 48]>,
    pub allowlist: AllowlistRef,
    /// The GitHub API the host put in the launch config.
    pub github_api_url: String,
    /// The OIDC issuer the host put in the launch config, if not GitHub's.
    pub oidc_issuer: Option<String>,
}

impl Deployment {
    /// The attestation document, with a quote from a fresh simulated TD
    /// whose RTMR3 holds the event log (extend-then-log, as `ee-init` does).
    pub fn document(&self) -> AttestationDocument {
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

    pub fn json(&self) -> Vec<u8> {
        self.document().to_json().unwrap().into_bytes()
    }
}

/// The local GitHub with the image publisher's allowlist released on it.
pub struct World {
    pub server: GithubServer,
    pub now: u64,
    pub allowlist: AllowlistRef,
    pub allowlist_bytes: Vec<u8>,
    pub collateral: Collateral,
}

pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

impl World {
    pub fn new() -> World {
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

    pub fn github(&self, token: &str) -> GitHub {
        GitHub::new(&self.server.base_url())
            .unwrap()
            .with_token(token)
    }

    /// Releases `bytes` as `allowlist.json` of the publisher's release `tag`;
    /// returns the reference a document would carry. The URL names the test
    /// server's host and port under `https`, as the document format requires;
    /// connect() fetches it through the API it is configured with.
    pub fn publish_allowlist(&self, tag: &str, bytes: &[u8]) -> AllowlistRef {
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
    pub fn publish(&self, tag: &str, document: Option<&[u8]>) {
        self.publish_release(NewRelease::new(tag), document);
    }

    pub fn publish_release(&self, release: NewRelease, document: Option<&[u8]>) {
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
    pub fn deployment(&self, release_tag: &str) -> Deployment {
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
    pub fn deploy(&self, deployment: &Deployment) {
        self.publish(&deployment.release_tag, Some(&deployment.json()));
    }

    /// The verifier's options: the sim root and collateral, sim images, the
    /// test publisher's allowlists.
    pub fn options(&self) -> ConnectOptions {
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

    pub fn connect(&self, options: &ConnectOptions) -> Result<VerifiedService, ConnectError> {
        connect_with(REPO, options)
    }
}

pub const TAG: &str = "deploy-20250601-120000";
