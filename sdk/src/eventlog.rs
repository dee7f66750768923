//! The RTMR3 runtime event log.
//!
//! `ee-init` records every host-supplied or deployed input that changes what
//! the TD does as a typed event, extending RTMR3 with the event's digest
//! before acting on it. A verifier replays the log and compares the result
//! with RTMR3 in the quote.
//!
//! **Event digest** (the value extended into RTMR3):
//!
//! ```text
//! digest = SHA-384( b"easyenclave/rtmr3-event/v1\0" || JCS(event) )
//! ```
//!
//! where `JCS(event)` is the RFC 8785 canonical JSON of the event object,
//! including its `"type"` member ([`crate::canonical`]). The tag separates
//! these digests from every other SHA-384 in the TD, and its NUL ends it
//! unambiguously. RTMR3 starts at zero and is extended once per event, in log
//! order ([`crate::rtmr`]). `sdk/testdata/eventlog-v1.json` is a worked example.
//!
//! **Log shape** (format version 1): `{"version": 1, "events": [...]}`. The
//! first event is the only `config` event; `bundle` events follow, one per
//! deploy (or rollback), for the config's repo; a `stopped` event names the
//! bundle of the newest `bundle` event when that workload no longer runs (a
//! failed first deploy, or a rollback whose previous workload could not be
//! restarted); at most one `seal` (sealing is one-way until reboot, and a
//! reboot starts a new log); `ready` may appear after any event. So the newest
//! workload event says what runs: a `bundle` (that bundle) or a `stopped`
//! (nothing) -- see [`EventLog::running_bundle`].
//! Each event must be written exactly as it was hashed (every field present,
//! no nulls), so the log's JSON is also the hash input for any implementation.
//!
//! **Log digest** ([`EventLog::digest`]): SHA-384 of the log's canonical JSON,
//! bound into the published attestation's REPORTDATA.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::canonical::{self, CanonicalError};
use crate::launch::{check_repo, LaunchConfig, LaunchConfigError};
use crate::rtmr::{self, Measurement};

/// The event log format version this build reads and writes.
pub const EVENT_LOG_VERSION: u32 = 1;
/// Domain-separation prefix of every event digest.
pub const EVENT_DIGEST_TAG: &[u8] = b"easyenclave/rtmr3-event/v1\0";
/// Largest serialized event log accepted by [`EventLog::from_json`].
pub const MAX_EVENT_LOG_BYTES: usize = 1024 * 1024;
/// Most events a log may hold.
pub const MAX_EVENTS: usize = 1024;
/// Longest bundle `source` string.
pub const MAX_SOURCE_LEN: usize = 2048;
/// Most entries in a seal event's `removed` list.
pub const MAX_REMOVED: usize = 64;

/// One RTMR3 event. Serialized with a `"type"` member naming the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The launch config, measured before the agent uses any of it.
    Config {
        /// The config as the agent parsed it (defaults filled in).
        config: LaunchConfig,
    },
    /// A deployed workload bundle.
    Bundle(BundleEvent),
    /// The workload of the newest `bundle` event no longer runs.
    Stopped(StoppedEvent),
    /// The system was sealed.
    Seal(SealEvent),
    /// The agent reached a steady state (service up).
    Ready {},
}

/// A deployed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    /// SHA-256 of the bundle's canonical form.
    #[serde(with = "crate::hexser")]
    pub digest: [u8; 32],
    /// The repo the bundle belongs to: the launch config's repo.
    pub repo: String,
    /// GitHub Actions artifact id, when the bundle came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<u64>,
    /// Where the agent fetched the bundle from (a URL or a short description).
    pub source: String,
    /// Digest of the workload policy the agent enforced on the bundle's
    /// compose project ([`crate::workload_policy::WorkloadPolicy::digest`]).
    #[serde(with = "crate::hexser")]
    pub policy: [u8; 32],
    /// True when every service image is carried in the bundle (an offline
    /// archive) or pinned by `@sha256:` digest, so the bundle digest fixes
    /// what runs; false when some image is pulled by tag or built
    /// ([`crate::workload_policy::images_pinned`]).
    pub images_pinned: bool,
}

/// The workload of a bundle stopped: nothing runs until the next `bundle` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoppedEvent {
    /// The bundle digest of the newest `bundle` event: the workload stopped.
    #[serde(with = "crate::hexser")]
    pub digest: [u8; 32],
    /// Why, in a few words (e.g. `"first deploy failed"`).
    pub reason: String,
}

/// Sealing: the interactive and administrative entry points removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealEvent {
    /// What was removed or disabled, e.g. `"getty"`, `"ssh"`, `"network-admin"`.
    pub removed: Vec<String>,
}

impl Event {
    /// The event's RTMR3 digest (see the module documentation).
    pub fn digest(&self) -> Result<Measurement, CanonicalError> {
        Ok(tagged_digest(canonical::to_string(self)?.as_bytes()))
    }

    fn type_name(&self) -> &'static str {
        match self {
            Event::Config { .. } => "config",
            Event::Bundle(_) => "bundle",
            Event::Stopped(_) => "stopped",
            Event::Seal(_) => "seal",
            Event::Ready {} => "ready",
        }
    }
}

fn tagged_digest(canonical_event: &[u8]) -> Measurement {
    let mut input = Vec::with_capacity(EVENT_DIGEST_TAG.len() + canonical_event.len());
    input.extend_from_slice(EVENT_DIGEST_TAG);
    input.extend_from_slice(canonical_event);
    rtmr::sha384(&input)
}

/// Why an event log or event was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// The input is over [`MAX_EVENT_LOG_BYTES`].
    #[error("event log is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// Not JSON, or not the shape of an event log.
    #[error("event log: {0}")]
    Json(String),
    /// The version field is missing or not [`EVENT_LOG_VERSION`].
    #[error("event log version: expected {EVENT_LOG_VERSION}, got {found}")]
    Version { found: String },
    /// More than [`MAX_EVENTS`] events.
    #[error("event log holds more than {MAX_EVENTS} events")]
    TooManyEvents,
    /// One event is malformed or out of place.
    #[error("event {index}: {problem}")]
    Event { index: usize, problem: String },
    /// The replayed log does not produce the quote's RTMR3.
    #[error("event log replays to RTMR3 {replayed} over {events} events, but the quote's RTMR3 is {expected}")]
    ReplayMismatch {
        replayed: String,
        expected: String,
        events: usize,
    },
}

/// Why [`EventLog::push_extended`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError<E> {
    /// The event is not valid at this point of the log; nothing was extended.
    #[error(transparent)]
    Rejected(EventLogError),
    /// Extending the register failed; the event was not appended. The
    /// register's state is then unknown: the caller must stop recording.
    #[error("extending RTMR3 failed: {0}")]
    Extend(#[source] E),
}

/// An event with its canonical JSON and digest, computed once when recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    event: Event,
    canonical: String,
    digest: Measurement,
}

/// An append-only RTMR3 event log (format version 1). There is no way to
/// remove or reorder events: the log mirrors a register that only extends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventLog {
    records: Vec<Recorded>,
}

impl EventLog {
    /// An empty log (RTMR3 at reset).
    pub fn new() -> Self {
        EventLog::default()
    }

    /// Check `event` against the log, compute its digest, call `extend` with
    /// it, and append the event only if `extend` succeeded: extend-then-log.
    /// The guest passes its RTMR3 extend here, under the same lock as the log.
    pub fn push_extended<E>(
        &mut self,
        event: Event,
        extend: impl FnOnce(&Measurement) -> Result<(), E>,
    ) -> Result<Measurement, PushError<E>> {
        let index = self.records.len();
        self.check_next(&event).map_err(|problem| {
            PushError::Rejected(EventLogError::Event {
                index,
                problem: format!("{} event: {problem}", event.type_name()),
            })
        })?;
        let canonical = canonical::to_string(&event).map_err(|e| {
            PushError::Rejected(EventLogError::Event {
                index,
                problem: format!("{} event: {e}", event.type_name()),
            })
        })?;
        let digest = tagged_digest(canonical.as_bytes());
        extend(&digest).map_err(PushError::Extend)?;
        self.records.push(Recorded {
            event,
            canonical,
            digest,
        });
        Ok(digest)
    }

    /// Append `event` without touching a register (for logs whose register is
    /// kept elsewhere, as in simulation and tests); returns its digest.
    pub fn push(&mut self, event: Event) -> Result<Measurement, EventLogError> {
        self.push_extended(event, |_| Ok::<(), std::convert::Infallible>(()))
            .map_err(|e| match e {
                PushError::Rejected(e) => e,
                PushError::Extend(never) => match never {},
            })
    }

    /// Why `event` cannot come next, if it cannot.
    fn check_next(&self, event: &Event) -> Result<(), String> {
        if self.records.len() >= MAX_EVENTS {
            return Err(format!(
                "the log already holds the maximum of {MAX_EVENTS} events"
            ));
        }
        match (event, self.config()) {
            (Event::Config { config }, None) => {
                return config.validate().map_err(|e| match e {
                    LaunchConfigError::Invalid { field, problem } => {
                        format!("config.{field}: {problem}")
                    }
                    other => format!("config: {other}"),
                });
            }
            (Event::Config { .. }, Some(_)) => {
                return Err(
                    "a second config event; the launch config is measured once, first".to_owned(),
                )
            }
            (_, None) => return Err("the first event must be the config event".to_owned()),
            (_, Some(_)) => {}
        }
        match event {
            Event::Bundle(bundle) => self.check_bundle(bundle),
            Event::Stopped(stopped) => self.check_stopped(stopped),
            Event::Seal(seal) => {
                if self.is_sealed() {
                    return Err("the log is already sealed".to_owned());
                }
                check_seal(seal)
            }
            Event::Config { .. } | Event::Ready {} => Ok(()),
        }
    }

    fn check_bundle(&self, bundle: &BundleEvent) -> Result<(), String> {
        check_repo(&bundle.repo).map_err(|p| format!("repo: {p}"))?;
        if let Some(config) = self.config() {
            if !bundle.repo.eq_ignore_ascii_case(&config.repo) {
                return Err(format!(
                    "repo {:?} is not the repo the agent is bound to ({:?})",
                    bundle.repo, config.repo
                ));
            }
        }
        if bundle.source.is_empty()
            || bundle.source.len() > MAX_SOURCE_LEN
            || bundle.source.chars().any(char::is_control)
        {
            return Err(format!(
                "source must be 1 to {MAX_SOURCE_LEN} bytes without control characters"
            ));
        }
        Ok(())
    }

    fn check_stopped(&self, stopped: &StoppedEvent) -> Result<(), String> {
        match self.running_bundle() {
            Some(running) if running.digest == stopped.digest => {}
            Some(running) => {
                return Err(format!(
                    "digest {} is not the running bundle {}",
                    hex::encode(stopped.digest),
                    hex::encode(running.digest)
                ))
            }
            None => {
                return Err(format!(
                    "digest {}: no bundle runs (no bundle event since the last stopped event)",
                    hex::encode(stopped.digest)
                ))
            }
        }
        if stopped.reason.is_empty()
            || stopped.reason.len() > 256
            || stopped.reason.chars().any(char::is_control)
        {
            return Err("reason must be 1 to 256 bytes without control characters".to_owned());
        }
        Ok(())
    }

    /// Parse a log from JSON bytes: size and event-count caps, version,
    /// known event types and fields only, log shape, and every event in the
    /// exact form it was hashed.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventLogError> {
        if bytes.len() > MAX_EVENT_LOG_BYTES {
            return Err(EventLogError::TooLarge {
                size: bytes.len(),
                max: MAX_EVENT_LOG_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| EventLogError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Self, EventLogError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            // Checked on the raw value below, before anything else.
            #[serde(rename = "version")]
            _version: serde::de::IgnoredAny,
            events: Vec<Value>,
        }
        // The version first: a newer log is reported as such, not as unknown events.
        crate::versioned::check_version(&value, EVENT_LOG_VERSION)?;
        let wire: Wire =
            serde_json::from_value(value).map_err(|e| EventLogError::Json(e.to_string()))?;
        if wire.events.len() > MAX_EVENTS {
            return Err(EventLogError::TooManyEvents);
        }
        let mut log = EventLog::new();
        for (index, raw) in wire.events.iter().enumerate() {
            let problem = |p: String| EventLogError::Event { index, problem: p };
            let event = Event::deserialize(raw).map_err(|e| problem(e.to_string()))?;
            let hashed_form = serde_json::to_value(&event).map_err(|e| problem(e.to_string()))?;
            if &hashed_form != raw {
                return Err(problem(format!(
                    "{} event is not written as it was hashed: every field must be present, without nulls",
                    event.type_name()
                )));
            }
            log.push(event)?;
        }
        Ok(log)
    }

    /// The log as canonical JSON: its published form and the input of [`EventLog::digest`].
    pub fn to_json(&self) -> String {
        // `{"events":[...],"version":1}`: keys in canonical order, each event
        // already canonical, so the whole text is canonical.
        let events: Vec<&str> = self.records.iter().map(|r| r.canonical.as_str()).collect();
        format!(
            "{{\"events\":[{}],\"version\":{EVENT_LOG_VERSION}}}",
            events.join(",")
        )
    }

    /// SHA-384 of [`EventLog::to_json`].
    pub fn digest(&self) -> Measurement {
        rtmr::sha384(self.to_json().as_bytes())
    }

    /// RTMR3 as the log says it should be: every event digest extended in order from reset.
    pub fn replay(&self) -> Measurement {
        rtmr::replay(self.records.iter().map(|r| &r.digest))
    }

    /// Check that the log replays to `rtmr3` (the value in the quote).
    pub fn verify_against(&self, rtmr3: &Measurement) -> Result<(), EventLogError> {
        let replayed = self.replay();
        if &replayed != rtmr3 {
            return Err(EventLogError::ReplayMismatch {
                replayed: hex::encode(replayed),
                expected: hex::encode(rtmr3),
                events: self.records.len(),
            });
        }
        Ok(())
    }

    /// The events in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = &Event> {
        self.records.iter().map(|r| &r.event)
    }

    /// The per-event digests in order, as extended into RTMR3.
    pub fn event_digests(&self) -> impl ExactSizeIterator<Item = &Measurement> {
        self.records.iter().map(|r| &r.digest)
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no event was recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The measured launch config (the first event), if recorded.
    pub fn config(&self) -> Option<&LaunchConfig> {
        match self.records.first().map(|r| &r.event) {
            Some(Event::Config { config }) => Some(config),
            _ => None,
        }
    }

    /// The bundle that runs now: the newest `bundle` event, unless a
    /// `stopped` event came after it (then nothing runs).
    pub fn running_bundle(&self) -> Option<&BundleEvent> {
        self.records
            .iter()
            .rev()
            .find_map(|r| match &r.event {
                Event::Bundle(bundle) => Some(Some(bundle)),
                Event::Stopped(_) => Some(None),
                _ => None,
            })
            .flatten()
    }

    /// The deployed bundles, oldest first. The last one is what runs now
    /// only if no `stopped` event follows it: use [`EventLog::running_bundle`].
    pub fn bundles(&self) -> impl Iterator<Item = &BundleEvent> {
        self.events().filter_map(|e| match e {
            Event::Bundle(bundle) => Some(bundle),
            _ => None,
        })
    }

    /// True iff a seal event was recorded. Sealing is one-way until reboot
    /// (which starts a new log), so bundles deployed after the seal run on a
    /// sealed system too.
    pub fn is_sealed(&self) -> bool {
        self.events().any(|e| matches!(e, Event::Seal(_)))
    }
}

fn check_seal(seal: &SealEvent) -> Result<(), String> {
    if seal.removed.is_empty() || seal.removed.len() > MAX_REMOVED {
        return Err(format!("removed must list 1 to {MAX_REMOVED} items"));
    }
    for (i, item) in seal.removed.iter().enumerate() {
        if item.is_empty() || item.len() > 128 || item.chars().any(char::is_control) {
            return Err(format!(
                "removed[{i}] must be 1 to 128 bytes without control characters"
            ));
        }
    }
    Ok(())
}

impl Serialize for EventLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("EventLog", 2)?;
        state.serialize_field("version", &EVENT_LOG_VERSION)?;
        let events: Vec<&Event> = self.events().collect();
        state.serialize_field("events", &events)?;
        state.end()
    }
}

/// Parses with the same checks as [`EventLog::from_json`] (the size cap is
/// the enclosing document's).
impl<'de> Deserialize<'de> for EventLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        EventLog::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl From<crate::versioned::EnvelopeError> for EventLogError {
    fn from(e: crate::versioned::EnvelopeError) -> Self {
        use crate::versioned::EnvelopeError as E;
        match e {
            E::TooLarge { size, max } => EventLogError::TooLarge { size, max },
            E::Json(problem) => EventLogError::Json(problem),
            E::Version { found } => EventLogError::Version { found },
        }
    }
}
