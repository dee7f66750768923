//! The RTMR3 event log bound to the register it mirrors.
//!
//! One mutex guards the TSM and the log together, so recording is
//! extend-then-log as one step and evidence (quote, registers, log) is taken
//! as one consistent snapshot: no event can slip in between the quote and
//! the log handed out with it. If an extension fails the register's state is
//! unknown, so the log is marked broken and refuses further events and
//! evidence rather than serve a log that may not replay to RTMR3.

use std::sync::{Mutex, MutexGuard, PoisonError};

use easyenclave::attestation::ReportData;
use easyenclave::eventlog::{Event, EventLog, EventLogError, PushError};
use easyenclave::rtmr::Measurement;

use crate::tsm::{Backend, Tsm, TsmError};

/// Recording an event failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The log refused the event (wrong place, invalid fields); nothing was extended.
    #[error("event rejected: {0}")]
    Rejected(EventLogError),
    /// There is no TDX provider; nothing was extended or logged.
    #[error("not measured: {0}")]
    Unavailable(String),
    /// The extension failed; the log is now unusable.
    #[error("extending RTMR3 failed, the event log is now unusable: {0}")]
    Extend(TsmError),
    /// An earlier extension failed.
    #[error("the event log is unusable since an earlier RTMR3 extension failed: {0}")]
    Broken(String),
}

/// Getting evidence failed.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The TSM could not quote or read the registers.
    #[error(transparent)]
    Tsm(#[from] TsmError),
    /// An earlier extension failed.
    #[error("the event log is unusable since an earlier RTMR3 extension failed: {0}")]
    Broken(String),
    /// RTMR3 does not equal the replayed log: something else extended it.
    #[error("RTMR3 is {actual} but the event log replays to {replayed}")]
    Diverged {
        /// Hex RTMR3.
        actual: String,
        /// Hex replay.
        replayed: String,
    },
}

/// A quote with the registers and event log it covers.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The quote.
    pub quote: Vec<u8>,
    /// RTMR0..3 read right after quoting, under the same lock.
    pub rtmrs: [Measurement; 4],
    /// The event log at that moment.
    pub event_log: EventLog,
}

struct Inner {
    tsm: Box<dyn Tsm>,
    log: EventLog,
    broken: Option<String>,
}

/// The TSM and the event log behind one lock.
pub struct MeasuredLog {
    backend: Backend,
    description: String,
    inner: Mutex<Inner>,
}

impl MeasuredLog {
    /// Start an empty log on `tsm` (RTMR3 must be at its boot value).
    pub fn new(tsm: Box<dyn Tsm>) -> Self {
        MeasuredLog {
            backend: tsm.backend(),
            description: tsm.describe(),
            inner: Mutex::new(Inner {
                tsm,
                log: EventLog::new(),
                broken: None,
            }),
        }
    }

    /// The TSM backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The backend's description ([`Tsm::describe`]).
    pub fn describe_tsm(&self) -> &str {
        &self.description
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic cannot leave the pair half-updated (the log appends only
        // after a successful extend), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Extend RTMR3 with the event's digest, then append it; returns the digest.
    pub fn record(&self, event: Event) -> Result<Measurement, RecordError> {
        if self.backend == Backend::None {
            return Err(RecordError::Unavailable(self.description.clone()));
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some(why) = &inner.broken {
            return Err(RecordError::Broken(why.clone()));
        }
        let tsm = &mut inner.tsm;
        match inner
            .log
            .push_extended(event, |digest| tsm.extend_rtmr3(digest))
        {
            Ok(digest) => Ok(digest),
            Err(PushError::Rejected(e)) => Err(RecordError::Rejected(e)),
            Err(PushError::Extend(e)) => {
                inner.broken = Some(e.to_string());
                Err(RecordError::Extend(e))
            }
        }
    }

    /// A copy of the log.
    pub fn log(&self) -> EventLog {
        self.lock().log.clone()
    }

    /// Check that RTMR3 equals the replayed log.
    pub fn check_replay(&self) -> Result<(), EvidenceError> {
        let mut inner = self.lock();
        let [_, _, _, rtmr3] = inner.tsm.rtmrs()?;
        check_rtmr3(&rtmr3, &inner.log)
    }

    /// A fresh quote for `report_data`, with RTMR0..3 and the event log, all
    /// taken under the lock.
    pub fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        let mut inner = self.lock();
        if let Some(why) = &inner.broken {
            return Err(EvidenceError::Broken(why.clone()));
        }
        let quote = inner.tsm.quote(report_data)?;
        let rtmrs = inner.tsm.rtmrs()?;
        let [_, _, _, rtmr3] = rtmrs;
        check_rtmr3(&rtmr3, &inner.log)?;
        Ok(Evidence {
            quote,
            rtmrs,
            event_log: inner.log.clone(),
        })
    }
}

fn check_rtmr3(rtmr3: &Measurement, log: &EventLog) -> Result<(), EvidenceError> {
    let replayed = log.replay();
    if &replayed != rtmr3 {
        return Err(EvidenceError::Diverged {
            actual: hex::encode(rtmr3),
            replayed: hex::encode(replayed),
        });
    }
    Ok(())
}
