//! The data formats against the vectors in `sdk/testdata/` (see its README),
//! and their strictness: unknown fields, types and versions are rejected with
//! messages that name what was wrong.

use std::collections::HashSet;

use easyenclave::allowlist::{Allowlist, AllowlistError, TdMeasurements, PRODUCTION_TD_ATTRIBUTES};
use easyenclave::attestation::{
    report_data, AllowlistRef, AttestationDocument, AttestationError, ChallengeStatement,
    PublishStatement, Purpose, RaTlsStatement, Statement,
};
use easyenclave::canonical::{self, CanonicalError};
use easyenclave::eventlog::{
    BundleEvent, Event, EventLog, EventLogError, PushError, SealEvent, MAX_EVENTS,
    MAX_EVENT_LOG_BYTES,
};
use easyenclave::launch::{
    LaunchConfig, LaunchConfigError, Network, DEFAULT_GITHUB_API_URL, DEFAULT_OIDC_ISSUER,
};
use easyenclave::rtmr::Measurement;
use easyenclave::workload_policy::{WorkloadPolicy, POLICY_DIGEST_TAG, WORKLOAD_POLICY_VERSION};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CANONICAL_VECTORS: &str = include_str!("../testdata/canonical-json.json");
const LAUNCH_CONFIG: &str = include_str!("../testdata/launch-config-v1.json");
const EVENTLOG_VECTOR: &str = include_str!("../testdata/eventlog-v1.json");
const ALLOWLIST: &str = include_str!("../testdata/allowlist-v1.json");
const ATTESTATION_VECTOR: &str = include_str!("../testdata/attestation-v2.json");
const POLICY_VECTOR: &str = include_str!("../testdata/workload-policy-v1.json");

fn vector(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn hex48(text: &Value) -> Measurement {
    hex::decode(text.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

// ---------------------------------------------------------------- canonical

#[test]
fn canonical_json_vectors() {
    let vectors = vector(CANONICAL_VECTORS);
    for v in vectors["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        match (v.get("canonical"), v.get("rejected_at")) {
            (Some(expected), None) => {
                assert_eq!(
                    canonical::to_string(&v["input"]).unwrap(),
                    expected.as_str().unwrap(),
                    "{name}"
                );
            }
            (None, Some(pointer)) => match canonical::to_string(&v["input"]) {
                Err(CanonicalError::NotAnInteger { pointer: got, .. }) => {
                    assert_eq!(got, pointer.as_str().unwrap(), "{name}")
                }
                other => panic!("{name}: expected a rejected float, got {other:?}"),
            },
            _ => panic!("{name}: malformed vector"),
        }
    }
}

#[test]
fn canonical_json_ignores_struct_field_order() {
    #[derive(serde::Serialize)]
    struct Late {
        zeta: u8,
        alpha: &'static str,
    }
    assert_eq!(
        canonical::to_string(&Late {
            zeta: 1,
            alpha: "a"
        })
        .unwrap(),
        r#"{"alpha":"a","zeta":1}"#
    );
}

// ---------------------------------------------------------------- launch config

fn launch_value() -> Value {
    vector(LAUNCH_CONFIG)
}

fn parse_launch(value: &Value) -> Result<LaunchConfig, LaunchConfigError> {
    LaunchConfig::parse(&bytes(value))
}

#[test]
fn launch_config_vector_parses_and_round_trips() {
    let config = LaunchConfig::parse(LAUNCH_CONFIG.as_bytes()).unwrap();
    assert_eq!(config.repo, "example-org/hello-enclave");
    let Network::Static(net) = &config.network else {
        panic!("static network expected")
    };
    let addressing = net.addressing().unwrap();
    assert_eq!(addressing.address.octets(), [10, 0, 2, 15]);
    assert_eq!(addressing.prefix_len, 24);
    assert_eq!(addressing.gateway.octets(), [10, 0, 2, 2]);
    assert_eq!(addressing.dns.len(), 2);
    assert_eq!(config.forwarded_ports.len(), 2);

    let json = config.to_json().unwrap();
    assert_eq!(LaunchConfig::parse(json.as_bytes()).unwrap(), config);
}

#[test]
fn launch_config_defaults() {
    let config =
        parse_launch(&json!({"version": 1, "repo": "a/b", "endpoint": "b.example.com:443"}))
            .unwrap();
    assert_eq!(config, LaunchConfig::new("a/b", "b.example.com:443"));
    assert_eq!(config.github_api_url, DEFAULT_GITHUB_API_URL);
    assert_eq!(config.agent_port, 8443);
    assert_eq!(config.network, Network::Dhcp {});
    assert!(!config.tsm.legacy_extend_ioctl);
    assert_eq!(config.control_plane_url, None);
}

#[test]
fn launch_config_oidc_policy_is_measured_and_strict() {
    let config = LaunchConfig::parse(LAUNCH_CONFIG.as_bytes()).unwrap();
    assert_eq!(config.oidc.issuer, DEFAULT_OIDC_ISSUER);
    assert_eq!(
        config.oidc.allowed_refs,
        ["refs/heads/main", "refs/tags/v1"]
    );
    assert_eq!(config.oidc.allowed_environments, ["production"]);
    assert!(config
        .to_json()
        .unwrap()
        .contains("\"allowed_environments\":[\"production\"]"));

    // The default policy is left out of the canonical JSON, so configs
    // written before the field existed keep their measurement.
    let plain = LaunchConfig::new("a/b", "b.example.com:443");
    assert_eq!(plain.oidc.issuer, DEFAULT_OIDC_ISSUER);
    assert!(!plain.to_json().unwrap().contains("oidc"));
    let explicit = parse_launch(&json!({"version": 1, "repo": "a/b",
        "endpoint": "b.example.com:443", "oidc": {"issuer": DEFAULT_OIDC_ISSUER}}))
    .unwrap();
    assert_eq!(explicit, plain);
    assert_eq!(explicit.to_json().unwrap(), plain.to_json().unwrap());

    for (oidc, needle) in [
        (
            json!({"issuer": "ftp://x.example"}),
            "oidc.issuer: scheme must be https or http",
        ),
        (
            json!({"issuer": "https://x.example/"}),
            "oidc.issuer: \"https://x.example/\" ends with '/'",
        ),
        (
            json!({"allowed_refs": [""]}),
            "oidc.allowed_refs[0]: \"\" must be 1 to 255 bytes",
        ),
        (
            json!({"allowed_environments": ["a\nb"]}),
            "oidc.allowed_environments[0]",
        ),
        (json!({"audience": "x"}), "unknown field `audience`"),
    ] {
        let mut value = launch_value();
        value["oidc"] = oidc;
        let err = parse_launch(&value).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn launch_config_rejects_unknown_fields_and_versions() {
    let cases: [(&str, Value); 4] = [
        ("sim", json!({"sim": true})),
        ("extra", json!({"network": {"mode": "dhcp", "extra": 1}})),
        (
            "mtu",
            json!({"network": {"mode": "static", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "dns": ["10.0.0.1"], "mtu": 1500}}),
        ),
        ("legacy", json!({"tsm": {"legacy": true}})),
    ];
    for (field, patch) in cases {
        let mut value = launch_value();
        for (k, v) in patch.as_object().unwrap() {
            value[k] = v.clone();
        }
        let err = parse_launch(&value).unwrap_err();
        assert!(matches!(err, LaunchConfigError::Json(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains(&format!("unknown field `{field}`")),
            "{err}"
        );
    }
    let mut value = launch_value();
    value["network"] = json!({"mode": "bridge"});
    assert!(parse_launch(&value)
        .unwrap_err()
        .to_string()
        .contains("unknown variant `bridge`"));

    let mut value = launch_value();
    value["version"] = json!(2);
    value["new_field"] = json!(true);
    let err = parse_launch(&value).unwrap_err();
    assert_eq!(err.to_string(), "launch config version: expected 1, got 2");
    value.as_object_mut().unwrap().remove("version");
    assert_eq!(
        parse_launch(&value).unwrap_err().to_string(),
        "launch config version: expected 1, got nothing"
    );

    let huge = vec![b' '; easyenclave::launch::MAX_LAUNCH_CONFIG_BYTES + 1];
    assert!(matches!(
        LaunchConfig::parse(&huge),
        Err(LaunchConfigError::TooLarge { .. })
    ));
}

#[test]
fn launch_config_validation_names_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/repo", json!("no-slash"), "repo: must be owner/name"),
        ("/repo", json!("-x/y"), "repo: owner"),
        (
            "/endpoint",
            json!("http://hello.example.com"),
            "endpoint: scheme must be https",
        ),
        (
            "/endpoint",
            json!("hello.example.com"),
            "endpoint: must be an https:// URL or host:port",
        ),
        (
            "/control_plane_url",
            json!("ftp://c.example.com"),
            "control_plane_url: scheme must be",
        ),
        (
            "/github_api_url",
            json!("https://user@api.github.com"),
            "github_api_url: must not contain user info",
        ),
        (
            "/network/address",
            json!("10.0.2.15"),
            "network.static.address: must be an IPv4 address/prefix",
        ),
        (
            "/network/address",
            json!("10.0.2.15/33"),
            "network.static.address: prefix length",
        ),
        (
            "/network/gateway",
            json!("10.0.2"),
            "network.static.gateway: not an IPv4 address",
        ),
        (
            "/network/gateway",
            json!("10.0.2.15"),
            "network.static.gateway: must differ",
        ),
        ("/network/dns", json!([]), "network.static.dns: 0 servers"),
        (
            "/network/dns",
            json!(["1.1.1.1", "8.8.8.8", "9.9.9.9", "1.0.0.1"]),
            "network.static.dns: 4 servers",
        ),
        (
            "/network/dns/1",
            json!("224.0.0.1"),
            "network.static.dns[1]: 224.0.0.1 is not a unicast address",
        ),
        ("/agent_port", json!(0), "agent_port: must not be 0"),
        (
            "/forwarded_ports/0/guest_port",
            json!(8443),
            "forwarded_ports[0].guest_port: 8443 is the agent port",
        ),
        (
            "/forwarded_ports/1/host_port",
            json!(0),
            "forwarded_ports[1].host_port: must not be 0",
        ),
        ("/image_id", json!("has space"), "image_id:"),
    ];
    for (pointer, bad, expected) in cases {
        let mut value = launch_value();
        *value.pointer_mut(pointer).unwrap() = bad;
        let err = parse_launch(&value).unwrap_err();
        assert!(
            matches!(err, LaunchConfigError::Invalid { .. }),
            "{pointer}: {err:?}"
        );
        assert!(err.to_string().starts_with(expected), "{pointer}: {err}");
    }

    // Entry 1 forwarded to the same TCP guest port as entry 0.
    let mut value = launch_value();
    value["forwarded_ports"][1] = json!({"protocol": "tcp", "host_port": 8000, "guest_port": 8080});
    let err = parse_launch(&value).unwrap_err();
    assert_eq!(
        err.to_string(),
        "forwarded_ports[1].guest_port: 8080 is forwarded twice"
    );
}

// ---------------------------------------------------------------- event log

fn eventlog_vector() -> Value {
    vector(EVENTLOG_VECTOR)
}

fn vector_log() -> EventLog {
    EventLog::from_json(&bytes(&eventlog_vector()["log"])).unwrap()
}

fn log_with(events: Value) -> Result<EventLog, EventLogError> {
    EventLog::from_json(&bytes(&json!({"version": 1, "events": events})))
}

fn vector_events() -> Vec<Value> {
    eventlog_vector()["log"]["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn eventlog_vector_digests_and_replay() {
    let v = eventlog_vector();
    let log = vector_log();
    let expected: Vec<Measurement> = v["event_digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex48)
        .collect();
    assert_eq!(log.event_digests().copied().collect::<Vec<_>>(), expected);
    for (event, digest) in log.events().zip(&expected) {
        assert_eq!(&event.digest().unwrap(), digest);
    }
    let rtmr3 = hex48(&v["rtmr3"]);
    assert_eq!(log.replay(), rtmr3);
    log.verify_against(&rtmr3).unwrap();
    assert_eq!(log.digest(), hex48(&v["log_digest"]));

    // Re-recording the same events with push gives the same digests.
    let mut rebuilt = EventLog::new();
    let pushed: Vec<Measurement> = log
        .events()
        .map(|e| rebuilt.push(e.clone()).unwrap())
        .collect();
    assert_eq!(pushed, expected);
    assert_eq!(rebuilt, log);
}

#[test]
fn eventlog_round_trips_through_json() {
    let log = vector_log();
    let text = log.to_json();
    assert_eq!(EventLog::from_json(text.as_bytes()).unwrap(), log);
    // The published form is canonical: canonicalizing it again changes nothing.
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(canonical::to_string(&reparsed).unwrap(), text);
    // serde embedding (as in the attestation document) uses the same form.
    assert_eq!(
        serde_json::from_value::<EventLog>(serde_json::to_value(&log).unwrap()).unwrap(),
        log
    );
}

#[test]
fn eventlog_helpers() {
    let log = vector_log();
    assert_eq!(log.len(), 8);
    assert_eq!(log.config().unwrap().repo, "example-org/hello-enclave");
    let bundles: Vec<&BundleEvent> = log.bundles().collect();
    assert_eq!(bundles.len(), 3);
    assert_eq!(
        log.running_bundle().map(|b| b.digest),
        Some(<[u8; 32]>::from(Sha256::digest(b"example bundle v3")))
    );
    let policy = WorkloadPolicy::v1().digest().unwrap();
    assert!(bundles.iter().all(|b| b.policy == policy));
    assert_eq!(
        bundles.iter().map(|b| b.images_pinned).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(bundles[0].artifact_id, Some(1_234_567_890));
    assert_eq!(
        bundles[1].digest,
        <[u8; 32]>::from(Sha256::digest(b"example bundle v2"))
    );
    assert!(log.is_sealed());

    let mut growing = EventLog::new();
    assert!(growing.is_empty() && growing.config().is_none() && !growing.is_sealed());
    for event in log.events() {
        let sealed_before = growing.is_sealed();
        growing.push(event.clone()).unwrap();
        // Once sealed, always sealed: a later bundle or ready keeps it so.
        assert_eq!(
            growing.is_sealed(),
            sealed_before || matches!(event, Event::Seal(_))
        );
    }
    assert!(growing.is_sealed());
}

#[test]
fn eventlog_tampering_fails_replay() {
    let rtmr3 = hex48(&eventlog_vector()["rtmr3"]);

    let mut changed = vector_events();
    changed[1]["digest"] = json!("00".repeat(32));
    let err = log_with(json!(changed))
        .unwrap()
        .verify_against(&rtmr3)
        .unwrap_err();
    let EventLogError::ReplayMismatch {
        replayed,
        expected,
        events,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(expected, &hex::encode(rtmr3));
    assert_ne!(replayed, expected);
    assert_eq!(*events, 8);
    assert!(
        err.to_string().contains(expected.as_str()) && err.to_string().contains(replayed.as_str())
    );

    let mut reordered = vector_events();
    reordered.swap(3, 4);
    assert!(matches!(
        log_with(json!(reordered)).unwrap().verify_against(&rtmr3),
        Err(EventLogError::ReplayMismatch { .. })
    ));

    let mut truncated = vector_events();
    truncated.pop();
    assert!(log_with(json!(truncated))
        .unwrap()
        .verify_against(&rtmr3)
        .is_err());
}

#[test]
fn eventlog_rejects_unknown_types_fields_and_versions() {
    let mut events = vector_events();
    events[3] = json!({"type": "shell"});
    let err = log_with(json!(events)).unwrap_err();
    assert!(
        matches!(err, EventLogError::Event { index: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("unknown variant `shell`"), "{err}");

    let mut events = vector_events();
    events[1]["sealed"] = json!(true);
    let err = log_with(json!(events)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("event 1: unknown field `sealed`"),
        "{err}"
    );

    let mut events = vector_events();
    events[3] = json!({"type": "ready", "at": 5});
    assert!(log_with(json!(events))
        .unwrap_err()
        .to_string()
        .starts_with("event 3: unknown field `at`"));

    let mut events = vector_events();
    events[2].as_object_mut().unwrap().remove("type");
    assert!(log_with(json!(events))
        .unwrap_err()
        .to_string()
        .contains("missing field `type`"));

    // A future version is reported as such, even with event types this build does not know.
    let err =
        EventLog::from_json(br#"{"version": 2, "events": [{"type": "attest"}]}"#).unwrap_err();
    assert_eq!(err.to_string(), "event log version: expected 1, got 2");
    let err =
        EventLog::from_json(br#"{"version": 1, "events": [], "signature": "x"}"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `signature`"),
        "{err}"
    );
}

#[test]
fn eventlog_events_must_be_written_as_hashed() {
    let mut events = vector_events();
    events[0]["config"].as_object_mut().unwrap().remove("tsm");
    let err = log_with(json!(events)).unwrap_err();
    assert!(
        err.to_string()
            .contains("event 0: config event is not written as it was hashed"),
        "{err}"
    );

    let mut events = vector_events();
    events[4]["artifact_id"] = Value::Null;
    assert!(log_with(json!(events))
        .unwrap_err()
        .to_string()
        .starts_with("event 4: bundle event is not written"));
}

#[test]
fn eventlog_shape_rules() {
    let events = vector_events();
    let (config, bundle, seal, ready) = (&events[0], &events[1], &events[2], &events[3]);

    let err = log_with(json!([ready, config])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "event 0: ready event: the first event must be the config event"
    );
    let err = log_with(json!([config, bundle, config])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("event 2: config event: a second config event"),
        "{err}"
    );
    let err = log_with(json!([config, seal, bundle, seal])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "event 3: seal event: the log is already sealed"
    );

    let mut other_repo = bundle.clone();
    other_repo["repo"] = json!("someone-else/app");
    let err = log_with(json!([config, other_repo])).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not the repo the agent is bound to"),
        "{err}"
    );

    let mut bad_config = config.clone();
    bad_config["config"]["repo"] = json!("nope");
    let err = log_with(json!([bad_config])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("event 0: config event: config.repo: must be owner/name"),
        "{err}"
    );

    let mut huge_id = bundle.clone();
    huge_id["artifact_id"] = json!(1u64 << 53);
    let err = log_with(json!([config, huge_id])).unwrap_err();
    assert!(err.to_string().contains("\"/artifact_id\""), "{err}");

    let empty_seal = json!({"type": "seal", "removed": []});
    assert!(log_with(json!([config, empty_seal]))
        .unwrap_err()
        .to_string()
        .contains("removed must list"));
}

/// The newest workload event says what runs: `stopped` names the running
/// bundle and leaves none running until the next `bundle` event.
#[test]
fn eventlog_stopped_events() {
    let events = vector_events();
    let (config, bundle, stopped) = (&events[0], &events[1], &events[6]);
    let v1 = <[u8; 32]>::from(Sha256::digest(b"example bundle v1"));

    let mut stop_v1 = stopped.clone();
    stop_v1["digest"] = json!(hex::encode(v1));
    let log = log_with(json!([config, bundle, stop_v1])).unwrap();
    assert_eq!(
        log.running_bundle(),
        None,
        "a failed first deploy: nothing runs"
    );
    assert_eq!(log.bundles().count(), 1);
    let log = log_with(json!([config, bundle, stop_v1, {"type": "ready"}, bundle])).unwrap();
    assert_eq!(log.running_bundle().map(|b| b.digest), Some(v1));

    // It must name the running bundle, and something must run.
    let err = log_with(json!([config, bundle, stopped])).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "event 2: stopped event: digest {} is not the running bundle {}",
            hex::encode(Sha256::digest(b"example bundle v2")),
            hex::encode(v1)
        )),
        "{err}"
    );
    let err = log_with(json!([config, stop_v1])).unwrap_err();
    assert!(err.to_string().contains("no bundle runs"), "{err}");
    let err = log_with(json!([config, bundle, stop_v1, stop_v1])).unwrap_err();
    assert!(
        err.to_string().starts_with("event 3: stopped event"),
        "{err}"
    );
    let mut no_reason = stop_v1.clone();
    no_reason["reason"] = json!("");
    let err = log_with(json!([config, bundle, no_reason])).unwrap_err();
    assert!(err.to_string().contains("reason must be"), "{err}");
}

#[test]
fn workload_policy_vector() {
    let v = vector(POLICY_VECTOR);
    let policy = WorkloadPolicy::v1();
    assert_eq!(policy.version, WORKLOAD_POLICY_VERSION);
    assert_eq!(serde_json::to_value(&policy).unwrap(), v["policy"]);
    assert_eq!(
        policy.canonical_json().unwrap(),
        v["canonical"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(policy.digest().unwrap()),
        v["digest"].as_str().unwrap()
    );
    let mut input = POLICY_DIGEST_TAG.to_vec();
    input.extend_from_slice(v["canonical"].as_str().unwrap().as_bytes());
    assert_eq!(
        hex::encode(Sha256::digest(&input)),
        v["digest"].as_str().unwrap()
    );
}

#[test]
fn eventlog_size_and_count_caps() {
    let config = vector_events()[0].clone();
    let mut events = vec![config];
    events.extend(std::iter::repeat_n(json!({"type": "ready"}), MAX_EVENTS));
    assert_eq!(
        log_with(json!(events)).unwrap_err(),
        EventLogError::TooManyEvents
    );
    events.pop();
    assert_eq!(log_with(json!(events)).unwrap().len(), MAX_EVENTS);

    let mut log = log_with(json!(events)).unwrap();
    let err = log.push(Event::Ready {}).unwrap_err();
    assert!(err.to_string().contains("maximum of 1024 events"), "{err}");

    let huge = vec![b' '; MAX_EVENT_LOG_BYTES + 1];
    assert!(matches!(
        EventLog::from_json(&huge),
        Err(EventLogError::TooLarge { .. })
    ));
}

#[test]
fn push_extended_is_extend_then_log() {
    let config = vector_log().config().unwrap().clone();
    let mut log = EventLog::new();
    let mut register: Vec<Measurement> = Vec::new();

    // A rejected event never reaches the register.
    let rejected = log.push_extended(Event::Ready {}, |d| {
        register.push(*d);
        Ok::<(), std::io::Error>(())
    });
    assert!(matches!(rejected, Err(PushError::Rejected(_))));
    assert!(register.is_empty() && log.is_empty());

    // A failed extend leaves the log unchanged.
    let failed = log.push_extended(
        Event::Config {
            config: config.clone(),
        },
        |_| Err(std::io::Error::other("EINVAL")),
    );
    assert!(matches!(failed, Err(PushError::Extend(_))));
    assert!(log.is_empty());

    let digest = log
        .push_extended(Event::Config { config }, |d| {
            register.push(*d);
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
    assert_eq!(register, vec![digest]);
    let seal = Event::Seal(SealEvent {
        removed: vec!["getty".into()],
    });
    log.push_extended(seal, |d| {
        register.push(*d);
        Ok::<(), std::io::Error>(())
    })
    .unwrap();
    assert_eq!(log.replay(), easyenclave::rtmr::replay(&register));
}

// ---------------------------------------------------------------- allowlist

fn allowlist_value() -> Value {
    vector(ALLOWLIST)
}

/// The registers of dcap-qvl's `sample/tdx_quote` (entry `dcap-qvl-sample`).
fn sample_td() -> TdMeasurements {
    let entry = &allowlist_value()["entries"][0];
    TdMeasurements {
        mrtd: hex48(&entry["mrtd"]),
        rtmr0: hex48(&entry["rtmr0"]),
        rtmr1: hex48(&entry["rtmr1"]),
        rtmr2: hex48(&entry["rtmr2"]),
        mrconfigid: [0; 48],
        mrowner: [0; 48],
        mrownerconfig: [0; 48],
        td_attributes: 0x1000_0000,
        xfam: 0x602e7,
    }
}

fn parse_allowlist(value: &Value) -> Result<Allowlist, AllowlistError> {
    Allowlist::from_json(&bytes(value))
}

#[test]
fn allowlist_vector_matches_sample_quote() {
    let list = Allowlist::from_json(ALLOWLIST.as_bytes()).unwrap();
    assert_eq!(list.check(&sample_td()).unwrap().name, "dcap-qvl-sample");
    assert_eq!(
        Allowlist::from_json(list.to_json().unwrap().as_bytes()).unwrap(),
        list
    );
}

#[test]
fn allowlist_mismatch_names_registers_of_closest_entry() {
    let list = Allowlist::from_json(ALLOWLIST.as_bytes()).unwrap();
    let mut td = sample_td();
    td.rtmr1[0] ^= 1;
    let err = list.check(&td).unwrap_err();
    assert_eq!(err.closest.as_deref(), Some("dcap-qvl-sample"));
    assert_eq!(err.registers.len(), 1);
    assert_eq!(err.registers[0].register, "rtmr1");
    let message = err.to_string();
    assert!(
        message.contains("rtmr1 differs from entry \"dcap-qvl-sample\""),
        "{message}"
    );
    assert!(
        message.contains(&hex::encode(td.rtmr1))
            && message.contains(&hex::encode(sample_td().rtmr1))
    );

    // The second entry differs from the sample only in RTMR0; a TD with that
    // RTMR0 and another RTMR2 is closest to it.
    let mut td = sample_td();
    td.rtmr0 = [0x11; 48];
    td.rtmr2 = [0x22; 48];
    let err = list.check(&td).unwrap_err();
    assert_eq!(err.closest.as_deref(), Some("4cpu-8g"));
    let names: Vec<&str> = err.registers.iter().map(|r| r.register).collect();
    assert_eq!(names, ["rtmr2"]);
}

#[test]
fn allowlist_td_attributes_and_xfam_policy() {
    let list = Allowlist::from_json(ALLOWLIST.as_bytes()).unwrap();
    let mut td = sample_td();
    td.td_attributes |= 1; // DEBUG
    let err = list.check(&td).unwrap_err();
    assert!(err.registers.is_empty());
    assert!(err.to_string().contains("wrong bits: 0 (DEBUG)"), "{err}");

    let mut td = sample_td();
    td.xfam = 0xe7;
    let err = list.check(&td).unwrap_err();
    assert!(err.td_attributes.is_none());
    assert!(
        err.to_string()
            .contains("xfam 0x00000000000000e7 is not one of 0x00000000000602e7"),
        "{err}"
    );

    // Without a td_attributes member the policy is exactly SEPT_VE_DISABLE.
    let mut value = allowlist_value();
    value.as_object_mut().unwrap().remove("td_attributes");
    let list = parse_allowlist(&value).unwrap();
    assert_eq!(list.td_attributes.expected, PRODUCTION_TD_ATTRIBUTES);
    assert_eq!(list.td_attributes.mask, u64::MAX);
    let mut td = sample_td();
    td.td_attributes |= 1 << 29;
    assert!(list
        .check(&td)
        .unwrap_err()
        .to_string()
        .contains("29 (MIGRATABLE)"));

    // A mask can leave bits free.
    let mut value = allowlist_value();
    value["td_attributes"]["mask"] = json!("0x00000000ffffffff");
    let list = parse_allowlist(&value).unwrap();
    td.td_attributes = 0x1000_0000 | (1 << 63);
    assert!(list.check(&td).is_ok());
}

#[test]
fn allowlist_strict_parsing() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/entries/1/profile/kernel",
            json!("6.12"),
            "allowlist entries[1]: unknown field `kernel`",
        ),
        (
            "/entries/0/rtmr2",
            json!("abcd"),
            "allowlist entries[0]: expected 48 bytes",
        ),
        (
            "/entries/0/profile/variant",
            json!("debug"),
            "allowlist entries[0]: unknown variant `debug`",
        ),
        (
            "/entries/1/name",
            json!("dcap-qvl-sample"),
            "allowlist entries[1].name: \"dcap-qvl-sample\" is used twice",
        ),
        (
            "/entries/0/profile/cpus",
            json!(0),
            "allowlist entries[0].profile.cpus: must be at least 1",
        ),
        (
            "/entries",
            json!([]),
            "allowlist entries: must list at least one",
        ),
        (
            "/xfam/accepted",
            json!([]),
            "allowlist xfam.accepted: must list at least one value",
        ),
        (
            "/td_attributes/mask",
            json!("0x0f"),
            "allowlist td_attributes.expected: 0x0000000010000000 sets bits outside",
        ),
        (
            "/td_attributes/expected",
            json!("10000000"),
            "allowlist: expected 0x followed by",
        ),
        ("/image_id", json!(""), "allowlist image_id:"),
        ("/release_tag", json!("v1..2"), "allowlist release_tag:"),
    ];
    for (pointer, bad, expected) in cases {
        let mut value = allowlist_value();
        match value.pointer_mut(pointer) {
            Some(slot) => *slot = bad,
            None => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                value.pointer_mut(parent).unwrap()[key] = bad;
            }
        }
        let message = parse_allowlist(&value).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{pointer}: {message}");
    }

    let mut value = allowlist_value();
    value["entries"][1] = value["entries"][0].clone();
    value["entries"][1]["name"] = json!("copy");
    assert!(parse_allowlist(&value)
        .unwrap_err()
        .to_string()
        .contains("repeats the registers"));

    let mut value = allowlist_value();
    value["version"] = json!(2);
    value["rtmr3_policy"] = json!({});
    assert_eq!(
        parse_allowlist(&value).unwrap_err().to_string(),
        "allowlist version: expected 1, got 2"
    );
    let mut value = allowlist_value();
    value["signed_by"] = json!("x");
    assert!(parse_allowlist(&value)
        .unwrap_err()
        .to_string()
        .contains("unknown field `signed_by`"));
}

// ---------------------------------------------------------------- attestation

fn attestation_vector() -> Value {
    vector(ATTESTATION_VECTOR)
}

fn hex64(text: &Value) -> [u8; 64] {
    hex::decode(text.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn parse_document(value: &Value) -> Result<AttestationDocument, AttestationError> {
    AttestationDocument::from_json(&bytes(value))
}

#[test]
fn attestation_vector_statement_and_report_data() {
    let v = attestation_vector();
    let document = parse_document(&v["document"]).unwrap();
    let statement = document.statement();
    assert_eq!(
        canonical::to_string(&statement).unwrap(),
        v["publish"]["statement"].as_str().unwrap()
    );
    assert_eq!(
        document.expected_report_data().unwrap(),
        hex64(&v["publish"]["report_data"])
    );
    assert!(document.event_log.is_sealed());
    // The referenced allowlist is the one in testdata, byte for byte.
    assert_eq!(
        document.allowlist.sha256,
        <[u8; 32]>::from(Sha256::digest(ALLOWLIST.as_bytes()))
    );

    let nonce = hex::decode(v["challenge"]["nonce"].as_str().unwrap()).unwrap();
    assert_eq!(
        report_data(&ChallengeStatement { nonce }).unwrap(),
        hex64(&v["challenge"]["report_data"])
    );

    let spki = hex::decode(v["ra_tls"]["spki_der"].as_str().unwrap()).unwrap();
    let ra_tls = RaTlsStatement::from_spki_der(&spki);
    assert_eq!(
        canonical::to_string(&ra_tls).unwrap(),
        v["ra_tls"]["statement"].as_str().unwrap()
    );
    assert_eq!(
        report_data(&ra_tls).unwrap(),
        hex64(&v["ra_tls"]["report_data"])
    );
}

#[test]
fn attestation_document_round_trips() {
    let document = parse_document(&attestation_vector()["document"]).unwrap();
    let text = document.to_json().unwrap();
    assert_eq!(
        AttestationDocument::from_json(text.as_bytes()).unwrap(),
        document
    );
}

#[test]
fn report_data_is_distinct_per_purpose() {
    let tags = [
        Purpose::Publish.tag(),
        Purpose::Challenge.tag(),
        Purpose::RaTls.tag(),
    ];
    for (i, a) in tags.iter().enumerate() {
        assert_eq!(a.last(), Some(&0), "tags are NUL-terminated");
        assert!(a.iter().take(a.len() - 1).all(|b| b.is_ascii_graphic()));
        for b in &tags[i + 1..] {
            assert!(
                !a.starts_with(b) && !b.starts_with(a),
                "no tag is a prefix of another"
            );
        }
    }
    let same = br#"{"nonce":"00"}"#;
    let bound: HashSet<[u8; 64]> = [Purpose::Publish, Purpose::Challenge, Purpose::RaTls]
        .iter()
        .map(|p| p.bind(same))
        .collect();
    assert_eq!(bound.len(), 3);
}

#[test]
fn report_data_changes_with_every_publish_field() {
    let base = PublishStatement {
        repo: "example-org/hello-enclave".into(),
        endpoint: "https://hello.example.com".into(),
        release_tag: "deploy-1".into(),
        timestamp: 1_750_000_000,
        event_log_digest: [7; 48],
        allowlist: AllowlistRef {
            url: "https://github.com/easy-enclave/easy-enclave/releases/download/v1/allowlist.json"
                .into(),
            sha256: [1; 32],
        },
    };
    let variants = [
        base.clone(),
        PublishStatement {
            repo: "example-org/other".into(),
            ..base.clone()
        },
        PublishStatement {
            endpoint: "https://other.example.com".into(),
            ..base.clone()
        },
        PublishStatement {
            release_tag: "deploy-2".into(),
            ..base.clone()
        },
        PublishStatement {
            timestamp: base.timestamp + 1,
            ..base.clone()
        },
        PublishStatement {
            event_log_digest: [8; 48],
            ..base.clone()
        },
        // An attacker with push access re-uploads the document naming their
        // own allowlist: the quote no longer binds it.
        PublishStatement {
            allowlist: AllowlistRef {
                url: "https://github.com/attacker/images/releases/download/v1/allowlist.json"
                    .into(),
                ..base.allowlist.clone()
            },
            ..base.clone()
        },
        PublishStatement {
            allowlist: AllowlistRef {
                sha256: [2; 32],
                ..base.allowlist.clone()
            },
            ..base.clone()
        },
    ];
    let values: HashSet<[u8; 64]> = variants.iter().map(|s| report_data(s).unwrap()).collect();
    assert_eq!(values.len(), variants.len());

    let a = report_data(&ChallengeStatement { nonce: vec![1; 32] }).unwrap();
    let b = report_data(&ChallengeStatement { nonce: vec![2; 32] }).unwrap();
    assert_ne!(a, b);
}

#[test]
fn statements_are_validated() {
    assert!(report_data(&ChallengeStatement { nonce: vec![0; 64] }).is_ok());
    for len in [0, 65] {
        let err = report_data(&ChallengeStatement {
            nonce: vec![0; len],
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("nonce: {len} bytes, expected 1 to 64")
        );
    }
    let statement = PublishStatement {
        repo: "a/b".into(),
        endpoint: "https://b.example.com".into(),
        release_tag: "v1".into(),
        timestamp: 1 << 53,
        event_log_digest: [0; 48],
        allowlist: AllowlistRef {
            url: "https://b.example.com/allowlist.json".into(),
            sha256: [0; 32],
        },
    };
    assert!(statement
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("timestamp:"));
    let statement = PublishStatement {
        timestamp: 1,
        release_tag: "-bad".into(),
        ..statement
    };
    assert!(report_data(&statement)
        .unwrap_err()
        .to_string()
        .starts_with("release_tag:"));
}

#[test]
fn attestation_document_strict_parsing() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/sealed",
            json!(true),
            "attestation document: unknown field `sealed`",
        ),
        (
            "/quote",
            json!("not base64!"),
            "attestation document: quote is not valid base64",
        ),
        ("/quote", json!(""), "quote: 0 bytes"),
        (
            "/repo",
            json!("example-org/other"),
            "repo: \"example-org/other\" differs from the measured launch config",
        ),
        (
            "/endpoint",
            json!("https://evil.example.com"),
            "endpoint: \"https://evil.example.com\" differs",
        ),
        (
            "/image_id",
            json!("ee-image-9"),
            "image_id: \"ee-image-9\" differs from the measured launch config's \"ee-image-0.1.0\"",
        ),
        (
            "/allowlist/url",
            json!("http://github.com/x"),
            "allowlist.url: scheme must be https",
        ),
        ("/release_tag", json!("a b"), "release_tag:"),
        (
            "/event_log/events/3/type",
            json!("debug_shell"),
            "attestation document: event 3: unknown variant `debug_shell`",
        ),
    ];
    for (pointer, bad, expected) in cases {
        let mut value = attestation_vector()["document"].clone();
        match value.pointer_mut(pointer) {
            Some(slot) => *slot = bad,
            None => value[pointer.trim_start_matches('/')] = bad,
        }
        let message = parse_document(&value).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{pointer}: {message}");
    }

    let mut value = attestation_vector()["document"].clone();
    // Version 1 documents did not bind their allowlist: refused by version.
    value["version"] = json!(1);
    assert_eq!(
        parse_document(&value).unwrap_err().to_string(),
        "attestation document version: expected 2, got 1"
    );
    value.as_object_mut().unwrap().remove("version");
    assert!(parse_document(&value)
        .unwrap_err()
        .to_string()
        .ends_with("got nothing"));

    let huge = vec![b' '; easyenclave::attestation::MAX_DOCUMENT_BYTES + 1];
    assert!(matches!(
        AttestationDocument::from_json(&huge),
        Err(AttestationError::TooLarge { .. })
    ));
}

#[test]
fn attestation_binds_the_event_log() {
    let v = attestation_vector();
    let document = parse_document(&v["document"]).unwrap();
    // An extra (validly shaped) event changes the log digest, hence REPORTDATA.
    let mut value = v["document"].clone();
    value["event_log"]["events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "ready"}));
    let extended = parse_document(&value).unwrap();
    assert_ne!(
        extended.expected_report_data().unwrap(),
        document.expected_report_data().unwrap()
    );
}
