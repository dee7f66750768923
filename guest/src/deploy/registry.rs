//! The deployments of this boot: their statuses and log tails, which one is
//! in progress (at most one) and which one runs.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use easyenclave::deploy::{
    ContainerStatus, DeploymentList, DeploymentState, DeploymentStatus, DEPLOY_API_VERSION,
    MAX_LOG_TAIL_LINES,
};
use easyenclave::eventlog::BundleEvent;

use super::workload::Project;

/// Deployments remembered; the oldest finished ones are forgotten first.
pub const MAX_DEPLOYMENTS: usize = 64;
/// Longest log line kept, in characters.
pub const MAX_LOG_LINE_CHARS: usize = 2000;

/// The deployment whose workload runs now.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its id.
    pub id: String,
    /// Its compose project (with its private environment).
    pub project: Project,
    /// Its main port, for `/app/...`.
    pub port: Option<u16>,
    /// Its bundle event, recorded again if a failed deploy falls back to it.
    pub bundle: BundleEvent,
    /// Its work directory (the extracted bundle).
    pub dir: PathBuf,
}

struct Record {
    status: DeploymentStatus,
    log: VecDeque<String>,
    refreshed: Option<Instant>,
}

/// See the module documentation.
#[derive(Default)]
pub struct Registry {
    next_number: u64,
    records: Vec<Record>,
    active: Option<String>,
    current: Option<Running>,
}

impl Registry {
    /// The deployment in progress, if any.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// The running deployment, if any.
    pub fn current(&self) -> Option<&Running> {
        self.current.as_ref()
    }

    /// Start a new deployment in `pending`, unless one is in progress (then
    /// `Err` names it). `sealed` says whether the TD is sealed already.
    pub fn reserve(&mut self, now: u64, sealed: bool) -> Result<String, String> {
        if let Some(active) = &self.active {
            return Err(active.clone());
        }
        self.next_number += 1;
        let id = format!("d{}", self.next_number);
        self.records.push(Record {
            status: DeploymentStatus {
                version: DEPLOY_API_VERSION,
                id: id.clone(),
                state: DeploymentState::Pending,
                reason: None,
                created: now,
                updated: now,
                bundle_digest: None,
                release_tag: None,
                sealed,
                containers: Vec::new(),
                log_tail: Vec::new(),
            },
            log: VecDeque::new(),
            refreshed: None,
        });
        self.active = Some(id.clone());
        self.prune();
        Ok(id)
    }

    /// The deployment `id` is no longer in progress.
    pub fn finish(&mut self, id: &str) {
        if self.active.as_deref() == Some(id) {
            self.active = None;
        }
    }

    /// Make `running` the running deployment; the one it replaces becomes
    /// `superseded`.
    pub fn set_current(&mut self, running: Running, now: u64) -> Option<Running> {
        let previous = self.current.replace(running);
        if let Some(previous) = &previous {
            self.update(&previous.id, now, |s| s.state = DeploymentState::Superseded);
        }
        previous
    }

    /// No deployment runs any more (the previous one could not be restarted).
    pub fn clear_current(&mut self) -> Option<Running> {
        self.current.take()
    }

    /// Change a deployment's status; `updated` is set to `now`.
    pub fn update(&mut self, id: &str, now: u64, change: impl FnOnce(&mut DeploymentStatus)) {
        if let Some(record) = self.record_mut(id) {
            change(&mut record.status);
            record.status.updated = now;
        }
    }

    /// Append a line to a deployment's log tail.
    pub fn log(&mut self, id: &str, line: &str) {
        if let Some(record) = self.record_mut(id) {
            let line: String = line.chars().take(MAX_LOG_LINE_CHARS).collect();
            if record.log.len() == MAX_LOG_TAIL_LINES {
                record.log.pop_front();
            }
            record.log.push_back(line);
        }
    }

    /// Record the containers of a deployment as seen at `at`.
    pub fn set_containers(&mut self, id: &str, containers: Vec<ContainerStatus>, at: Instant) {
        if let Some(record) = self.record_mut(id) {
            record.status.containers = containers;
            record.refreshed = Some(at);
        }
    }

    /// When the containers of `id` were last read.
    pub fn refreshed(&self, id: &str) -> Option<Instant> {
        self.record(id).and_then(|r| r.refreshed)
    }

    /// The status of `id` with its log tail.
    pub fn status(&self, id: &str) -> Option<DeploymentStatus> {
        self.record(id).map(snapshot)
    }

    /// Every deployment, newest first.
    pub fn list(&self) -> DeploymentList {
        DeploymentList {
            version: DEPLOY_API_VERSION,
            deployments: self.records.iter().rev().map(snapshot).collect(),
        }
    }

    fn record(&self, id: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.status.id == id)
    }

    fn record_mut(&mut self, id: &str) -> Option<&mut Record> {
        self.records.iter_mut().find(|r| r.status.id == id)
    }

    /// Forget the oldest records beyond [`MAX_DEPLOYMENTS`], never the one
    /// in progress or the running one.
    fn prune(&mut self) {
        while self.records.len() > MAX_DEPLOYMENTS {
            let keep = |id: &str| {
                self.active.as_deref() == Some(id)
                    || self.current.as_ref().is_some_and(|c| c.id == id)
            };
            let Some(oldest) = self.records.iter().position(|r| !keep(&r.status.id)) else {
                return;
            };
            self.records.remove(oldest);
        }
    }
}

fn snapshot(record: &Record) -> DeploymentStatus {
    let mut status = record.status.clone();
    status.log_tail = record.log.iter().cloned().collect();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_newest_first_and_bounded() {
        let mut r = Registry::default();
        let first = r.reserve(10, false).unwrap();
        assert_eq!(r.reserve(11, false), Err(first.clone()), "busy");
        r.update(&first, 12, |s| s.state = DeploymentState::Failed);
        r.finish(&first);
        let second = r.reserve(13, true).unwrap();
        assert_ne!(first, second);
        let list = r.list();
        let ids: Vec<&str> = list.deployments.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, [second.as_str(), first.as_str()]);
        assert_eq!(list.deployments[1].updated, 12);
        assert!(list.deployments[0].sealed);
        r.finish(&second);

        for i in 0..(MAX_DEPLOYMENTS as u64 + 5) {
            let id = r.reserve(100 + i, false).unwrap();
            r.finish(&id);
        }
        assert_eq!(r.list().deployments.len(), MAX_DEPLOYMENTS);
        assert!(r.status(&first).is_none(), "the oldest are forgotten");
    }

    #[test]
    fn log_tail_is_bounded_in_lines_and_length() {
        let mut r = Registry::default();
        let id = r.reserve(1, false).unwrap();
        for i in 0..(MAX_LOG_TAIL_LINES + 3) {
            r.log(&id, &format!("line {i}"));
        }
        r.log(&id, &"x".repeat(MAX_LOG_LINE_CHARS + 10));
        let tail = r.status(&id).unwrap().log_tail;
        assert_eq!(tail.len(), MAX_LOG_TAIL_LINES);
        assert_eq!(tail[0], "line 4");
        assert_eq!(tail.last().unwrap().len(), MAX_LOG_LINE_CHARS);
    }
}
