//! Boot test: ee-init as PID1 of a real VM. Each test builds the static musl
//! ee-init, packs it as `/init` of an initramfs with the guest modules of
//! Debian's cloud kernel (the cache `scripts/install-deps` fills), boots it
//! with `qemu-system-x86_64 -accel tcg -smp 1`, passes the launch config over
//! fw_cfg and talks to the agent API over HTTPS through a forwarded port.
//!
//! - a `sim` build: the agent's TLS certificate carries a quote that
//!   verifies with the simulated root and binds the certificate's key, from
//!   the same TD as the `/attestation` quotes; `/health` answers,
//!   `/attestation` quotes verify with the simulated root, bind the nonce,
//!   and their event log replays to RTMR3;
//! - a release-shaped build: no TDX provider under TCG, and both endpoints
//!   say so, over TLS with a certificate that has no quote; a service that
//!   keeps crashing is reaped and restarted while the agent keeps answering;
//! - the `dhcp` network mode: a lease from QEMU's built-in DHCP server,
//!   applied to eth0 (the agent answers through the forwarded port);
//! - an invalid launch config: the VM powers itself off, naming the field.
//!
//! ee-init's console timestamps give the time from PID1 start to the agent
//! listening (printed with `--nocapture`).
//!
//! The musl binaries are built and packed by `ee_image::devimage` (shared
//! with ee-host's dev image test), into their own target directory
//! (`<target>/ee-init-boot`), so the build does not wait for the lock that
//! the running `cargo test` holds on the main one.

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use easyenclave::attestation::{report_data, ChallengeStatement};
use easyenclave::collateral::Collateral;
use easyenclave::eventlog::{Event, EventLog};
use easyenclave::launch::LaunchConfig;
use easyenclave::ratls::{CertEvidence, RaTlsError};
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::{Policy, TrustRoot, Verifier};
use ee_image::devimage::{self, EeInitBuild, EeInitVariant};
use ee_image::initramfs::ExtraFile;
use ee_image::vm::{
    free_local_port, kernel_cache_dir, GuestKernel, PortForward, RunningVm, VmSpec,
};
use serde_json::Value;
use support::tls_client;

/// The agent port in the guest (the launch config's default).
const AGENT_PORT: u16 = 8443;
/// Generous: a boot takes 5-8 s under TCG on a 2-core machine, several
/// times that when other builds load it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Build the static ee-init (once per test process per variant).
fn ee_init_binary(variant: EeInitVariant) -> PathBuf {
    static BUILT: Mutex<BTreeMap<&'static str, PathBuf>> = Mutex::new(BTreeMap::new());
    // One build at a time: both variants share the target directory.
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = built.get(variant.name()) {
        return path.clone();
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let binary = EeInitBuild {
        cargo: env!("CARGO").into(),
        workspace: Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        target_dir: target.join("ee-init-boot"),
        variant,
    }
    .run()
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "ee-init ({}): {} bytes",
        variant.name(),
        std::fs::metadata(&binary).unwrap().len()
    );
    built.insert(variant.name(), binary.clone());
    binary
}

/// A booted guest; dropping it kills QEMU.
struct Guest {
    vm: RunningVm,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Guest {
    /// Pack `build` with the guest modules (and `extra` files), boot it with
    /// `config` as the launch config.
    fn boot(build: EeInitVariant, config: &str, extra: &[(&str, &str)]) -> Guest {
        let kernel = GuestKernel::from_cache(&kernel_cache_dir()).unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (dest, content) in extra {
            let source = dir
                .path()
                .join(dest.trim_start_matches('/').replace('/', "_"));
            std::fs::write(&source, content).unwrap();
            files.push(ExtraFile {
                source,
                dest: (*dest).to_owned(),
            });
        }
        let image = devimage::pack_initramfs(&ee_init_binary(build), &kernel.modules_dir, files)
            .unwrap_or_else(|e| panic!("{e}"));
        let initrd = dir.path().join("initrd.img");
        std::fs::write(&initrd, &image.bytes).unwrap();
        let launch_config = dir.path().join("launch.json");
        std::fs::write(&launch_config, config).unwrap();

        let port = free_local_port().unwrap();
        let mut spec = VmSpec::new(
            kernel.vmlinux.clone(),
            initrd,
            dir.path().join("serial.log"),
        );
        spec.memory_mib = 512;
        spec.cpus = 1;
        spec.launch_config = Some(launch_config);
        spec.forwards = vec![PortForward {
            host: port,
            guest: AGENT_PORT,
        }];
        let vm = RunningVm::start(&spec).unwrap_or_else(|e| panic!("{e}"));
        Guest {
            vm,
            port,
            _dir: dir,
        }
    }

    /// Wait for `text` on the serial console.
    fn wait_for(&mut self, text: &str) -> Duration {
        self.vm
            .wait_for_serial(text, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn serial(&self) -> String {
        self.vm.serial().unwrap()
    }

    /// `GET target` over HTTPS through the forwarded port: status, JSON
    /// body and the certificate the agent presented. (The client's reads
    /// time out after 30 s: a simulated quote under TCG takes well under a
    /// second.)
    fn get_with_cert(&self, target: &str) -> (u16, Value, Vec<u8>) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let request = format!("GET {target} HTTP/1.1\r\nHost: guest\r\n\r\n");
        let answer = tls_client::try_exchange(addr, request.as_bytes())
            .unwrap_or_else(|e| panic!("GET {target}: {e}\n{}", self.serial()));
        let body = answer.json();
        (answer.status, body, answer.cert_der)
    }

    /// `GET target` over HTTPS: status and JSON body.
    fn get(&self, target: &str) -> (u16, Value) {
        let (status, body, _) = self.get_with_cert(target);
        (status, body)
    }
}

/// A launch config for QEMU's user network (guest 10.0.2.15, gateway
/// 10.0.2.2, DNS 10.0.2.3) with `repo`; `tag` makes it unique to the run, so
/// the guest can only echo it back if it really read this config.
fn launch_config(repo: &str, tag: &str) -> String {
    launch_config_with_network(
        repo,
        tag,
        r#"{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3"]}"#,
    )
}

/// A launch config with the given `network` object.
fn launch_config_with_network(repo: &str, tag: &str, network: &str) -> String {
    format!(
        r#"{{"version":1,"repo":"{repo}","endpoint":"{tag}.example.com:443","agent_port":{AGENT_PORT},"network":{network}}}"#
    )
}

fn unique_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("boot-{nanos}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// ee-init's console lines, `[<ms since boot> ms] ee-init: <message>`, as
/// (ms, message). Kernel messages can share a serial line, so the prefix is
/// searched for anywhere in the line.
fn console_lines(serial: &str) -> Vec<(u64, String)> {
    const MARK: &str = " ms] ee-init: ";
    serial
        .lines()
        .filter_map(|line| {
            let at = line.find(MARK)?;
            let open = line.get(..at)?.rfind('[')?;
            let ms = line.get(open + 1..at)?.trim().parse().ok()?;
            Some((ms, line.get(at + MARK.len()..)?.to_owned()))
        })
        .collect()
}

/// Boot-time figures from ee-init's console.
#[derive(Debug)]
struct Timings {
    /// CLOCK_BOOTTIME when ee-init printed its first line.
    pid1_start_ms: u64,
    /// PID1 start to "agent listening", by the console timestamps.
    to_listening_ms: u64,
    /// Module loading, as ee-init reports it.
    modules_ms: u64,
}

fn timings(lines: &[(u64, String)]) -> Timings {
    let at = |prefix: &str| {
        lines
            .iter()
            .find(|(_, m)| m.starts_with(prefix))
            .unwrap_or_else(|| panic!("no console line {prefix:?}: {lines:#?}"))
    };
    let (start, _) = at("ee-init ");
    let (listening, _) = at("agent listening on ");
    let (_, modules) = at("modules: ");
    let modules_ms = modules
        .rsplit_once(" in ")
        .and_then(|(_, t)| t.strip_suffix(" ms"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("module line without a time: {modules:?}"));
    Timings {
        pid1_start_ms: *start,
        to_listening_ms: listening - start,
        modules_ms,
    }
}

/// GET /attestation for `nonce` and check what a verifier would: the quote
/// verifies with the simulated root under the default policy, its
/// REPORTDATA binds the nonce, and the event log replays to its RTMR3.
fn attest(guest: &Guest, nonce: &[u8], config: &LaunchConfig) -> Vec<u8> {
    let (status, body) = guest.get(&format!("/attestation?nonce={}", hex::encode(nonce)));
    assert_eq!(status, 200, "{body}");
    let quote = base64::engine::general_purpose::STANDARD
        .decode(body["quote"].as_str().unwrap())
        .unwrap();

    let pki = SimPki::from_seed(DEV_SEED).unwrap();
    let now = unix_now();
    let collateral = Collateral::from(pki.collateral(now - 3600, now + 30 * 24 * 3600).unwrap());
    let verified = Verifier::with_root(
        TrustRoot::Explicit(pki.root_ca_der().to_vec()),
        Policy::default(),
    )
    .verify(&quote, &collateral, now)
    .unwrap_or_else(|e| panic!("the sim quote does not verify: {e}"));
    assert_eq!(verified.status, "UpToDate");

    let expected = report_data(&ChallengeStatement {
        nonce: nonce.to_vec(),
    })
    .unwrap();
    assert_eq!(
        verified.measurements.report_data, expected,
        "REPORTDATA binds the nonce"
    );
    assert_eq!(body["report_data"], hex::encode(expected));

    let log = EventLog::from_json(body["event_log"].to_string().as_bytes()).unwrap();
    log.verify_against(&verified.measurements.rtmr3)
        .unwrap_or_else(|e| panic!("event log does not replay to RTMR3: {e}"));
    let events: Vec<&Event> = log.events().collect();
    assert!(
        matches!(events[..], [Event::Config { .. }, Event::Ready {}]),
        "expected the config event, then ready: {events:?}"
    );
    assert_eq!(log.config(), Some(config), "the measured config is ours");
    assert_eq!(body["rtmrs"][3], hex::encode(verified.measurements.rtmr3));
    quote
}

#[test]
fn sim_build_boots_serves_health_and_verifiable_quotes() {
    let tag = unique_tag();
    let config_text = launch_config("octo/boot-test", &tag);
    let config = LaunchConfig::parse(config_text.as_bytes()).unwrap();
    let mut guest = Guest::boot(EeInitVariant::Sim, &config_text, &[]);
    // Host-side view of the same interval, as a check on the guest clock
    // (to within the 20 ms the serial log is polled at).
    let to_start = guest.wait_for("starting (PID1)");
    let to_listening = guest.wait_for("agent listening on ");
    let to_ready = guest.wait_for("ready: 2 events in the RTMR3 log");

    let (status, health, cert) = guest.get_with_cert("/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["tsm"]["backend"], "sim", "{health}");
    assert_eq!(health["tsm"]["quotes"], true, "{health}");

    // RA-TLS: the served certificate's quote verifies with the sim root
    // and binds the certificate's key.
    let (_, cert_quote) = tls_client::verify_with_sim_root(&cert);

    let quote_a = attest(&guest, b"nonce A: boot test", &config);
    let quote_b = attest(&guest, b"nonce B: boot test", &config);
    assert_ne!(quote_a, quote_b, "a second nonce gives a different quote");
    // The certificate's quote comes from the same TD: same launch-time
    // registers as the /attestation quote.
    let challenge = easyenclave::quote::Quote::parse(&quote_a).unwrap();
    let challenge = challenge.body().td10();
    let cert_td = &cert_quote.measurements;
    assert_eq!(cert_td.mr_td, challenge.mr_td);
    assert_eq!(
        [cert_td.rtmr0, cert_td.rtmr1, cert_td.rtmr2],
        [challenge.rtmr0, challenge.rtmr1, challenge.rtmr2]
    );

    let serial = guest.serial();
    let lines = console_lines(&serial);
    let stamps: Vec<u64> = lines.iter().map(|(ms, _)| *ms).collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "console timestamps go backwards: {stamps:?}"
    );
    let messages: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(
        has(&format!(
            "repo octo/boot-test, endpoint {tag}.example.com:443"
        )),
        "{serial}"
    );
    assert!(has("network: eth0 10.0.2.15/24 via 10.0.2.2"), "{serial}");
    // Under TCG there is no TDX CPU: tdx_guest refuses to load (ENODEV), and
    // the sim build falls back to the simulated TD.
    assert!(
        has("module tdx_guest (") && has("FAILED to load: finit_module: ENODEV"),
        "{serial}"
    );
    assert!(has("using the simulated TD"), "{serial}");
    assert!(
        has("agent TLS: RA-TLS: the certificate carries a sim quote binding its key"),
        "{serial}"
    );
    for (ms, message) in &lines {
        eprintln!("  [{ms:>6} ms] {message}");
    }
    let t = timings(&lines);
    eprintln!(
        "TCG boot (sim): QEMU start to ready {to_ready:.2?}; ee-init started at {} ms after boot; \
         PID1 start to agent listening {} ms (host clock: {} ms), of which module loading {} ms, \
         the rest {} ms",
        t.pid1_start_ms,
        t.to_listening_ms,
        to_listening.saturating_sub(to_start).as_millis(),
        t.modules_ms,
        t.to_listening_ms.saturating_sub(t.modules_ms)
    );
}

#[test]
fn release_build_without_tdx_says_so_and_survives_a_crashing_service() {
    // The only program in the image is ee-init itself: not PID1 and with a
    // bad argument it exits with status 2 at once, a service that keeps
    // crashing.
    let services = "crasher always /init --no-such-flag\n";
    let mut guest = Guest::boot(
        EeInitVariant::Release,
        &launch_config("octo/boot-test", &unique_tag()),
        &[("/etc/ee/services", services)],
    );
    guest.wait_for("ready: ");
    // PID1 reaped it (SIGCHLD) and restarts it with a growing back-off.
    guest.wait_for("service crasher (pid ");
    guest.wait_for("exited with status 2; restarting in 1000 ms");

    let (status, health, cert) = guest.get_with_cert("/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        CertEvidence::from_cert_der(&cert).unwrap_err(),
        RaTlsError::MissingQuoteExtension,
        "without TDX the certificate has no quote"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["tsm"]["backend"], "none", "{health}");
    assert_eq!(health["tsm"]["quotes"], false, "{health}");
    let detail = health["tsm"]["detail"].as_str().unwrap();
    assert!(detail.contains("no TDX provider"), "{health}");

    let (status, body) = guest.get("/attestation?nonce=00ff");
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("no TDX provider"), "{body}");

    let serial = guest.serial();
    assert!(serial.contains("config event NOT measured"), "{serial}");
    assert!(
        serial.contains("agent TLS: self-signed certificate without a quote"),
        "{serial}"
    );
    assert!(
        serial.matches("started service crasher (pid ").count() >= 2,
        "{serial}"
    );
    let t = timings(&console_lines(&serial));
    eprintln!(
        "TCG boot (release): PID1 start to agent listening {} ms, of which module loading {} ms",
        t.to_listening_ms, t.modules_ms
    );
}

/// The SDK's default network mode: QEMU's user network has a built-in DHCP
/// server that leases 10.0.2.15/24 with router 10.0.2.2 and DNS 10.0.2.3,
/// the values ee-init must report and apply (the agent answering through the
/// forwarded port shows the address is on eth0).
#[test]
fn dhcp_lease_from_qemu_user_network() {
    let mut guest = Guest::boot(
        EeInitVariant::Release,
        &launch_config_with_network("octo/boot-test", &unique_tag(), r#"{"mode":"dhcp"}"#),
        &[],
    );
    guest.wait_for("ready: ");
    let (status, health) = guest.get("/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["tsm"]["backend"], "none", "{health}");

    let serial = guest.serial();
    let lines = console_lines(&serial);
    let has = |needle: &str| lines.iter().any(|(_, m)| m.contains(needle));
    assert!(has("DHCP: offer of 10.0.2.15 from 10.0.2.2"), "{serial}");
    assert!(
        has("network: eth0 10.0.2.15/24 via 10.0.2.2 (DHCP from 10.0.2.2, lease ")
            && has("; DNS [10.0.2.3])"),
        "{serial}"
    );
    let at = |prefix: &str| {
        lines
            .iter()
            .find(|(_, m)| m.starts_with(prefix))
            .map(|(ms, _)| *ms)
            .unwrap_or_else(|| panic!("no console line {prefix:?}: {serial}"))
    };
    for (ms, message) in lines.iter().filter(|(_, m)| m.contains("DHCP")) {
        eprintln!("  [{ms:>6} ms] {message}");
    }
    eprintln!(
        "TCG boot (DHCP): measured config to network up {} ms",
        at("network: ") - at("config event NOT measured")
    );
}

#[test]
fn invalid_launch_config_powers_off_naming_the_field() {
    let mut guest = Guest::boot(
        EeInitVariant::Release,
        &launch_config("not a repo", &unique_tag()),
        &[],
    );
    guest.wait_for("FATAL: ");
    let status = guest
        .vm
        .wait_for_exit(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the VM did not power off: {e}"));
    let serial = guest.serial();
    assert!(status.success(), "QEMU exit status {status}\n{serial}");
    assert!(
        serial.contains(
            "FATAL: launch config rejected: repo: must be owner/name, got \"not a repo\""
        ),
        "{serial}"
    );
    assert!(serial.contains("powering off"), "{serial}");
    assert!(!serial.contains("agent listening"), "{serial}");
}
