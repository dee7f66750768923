//! A FUSE emulation of the kernel's TDX guest interfaces, mounted at
//! `<root>/sys`, so ee-init's real file I/O runs against kernel-like
//! behaviour (errnos, write-at-close) on a host without TDX.
//!
//! Emulated rules (from `Documentation/ABI/testing/configfs-tsm-report`,
//! `drivers/virt/coco/guest/report.c` and
//! `Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest`):
//!
//! configfs-tsm, `kernel/config/tsm/report/`:
//! - `mkdir <name>` creates a report item holding `provider`, `generation`,
//!   `inblob`, `outblob`; with no provider registered it fails ENXIO.
//!   `rmdir` removes the item with its attributes.
//! - `provider` reads the provider name plus `\n`; `generation` reads
//!   `<n>\n`, starting at 0.
//! - `inblob` writes are buffered per open file (at most 64 bytes, else
//!   EFBIG) and applied when the file is released (close): the blob is
//!   replaced and `generation` advances. FUSE sends the release *after*
//!   close() returns, so the bump is observed asynchronously — which is
//!   why the protocol polls `generation`.
//! - Reading `outblob` generates the quote for the current inblob (EINVAL
//!   unless it is exactly 64 bytes) and caches it until the next inblob
//!   write; scripted errors (EBUSY, ETIMEDOUT, ...) are returned first.
//!
//! sysfs measurements, `devices/virtual/misc/tdx_guest/measurements/`:
//! - `rtmr<N>:sha384` reads the 48-byte register; a write must be exactly
//!   48 bytes at offset 0 (else EINVAL, recorded for the test) and extends:
//!   `RTMR = SHA-384(RTMR || data)`.
//!
//! Test knobs in [`State`] break these rules on purpose (no provider, a
//! generation jump, empty or short outblobs, ...). Every file is opened
//! with direct I/O and zero attribute TTLs, so no page or attribute cache
//! hides an operation from the emulation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use easyenclave::rtmr::{self, Measurement};
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};

use super::quotes::structural_quote;

/// Largest inblob the kernel accepts (`TSM_INBLOB_MAX`).
const INBLOB_MAX: usize = 64;

/// What reading `outblob` returns once scripted errors are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outblob {
    /// A quote for the inblob and the current RTMRs.
    Quote,
    /// Nothing (a host quoting service that answered with no data).
    Empty,
    /// A few bytes only.
    Short,
    /// A quote for different REPORTDATA.
    OtherReportData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    Provider,
    Generation,
    Inblob,
    Outblob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    ReportRoot,
    Report,
    ReportAttr(Attr),
    Rtmr(usize),
}

#[derive(Debug)]
struct Node {
    parent: u64,
    name: String,
    kind: Kind,
}

#[derive(Debug, Default)]
struct Report {
    generation: u64,
    inblob: Vec<u8>,
    outblob: Option<Vec<u8>>,
}

/// The emulated kernel state, plus knobs and counters for tests.
#[derive(Debug)]
pub struct State {
    /// The registered TSM provider; `None` makes mkdir fail ENXIO.
    pub provider: Option<String>,
    /// RTMR0..3.
    pub rtmrs: [Measurement; 4],
    /// Errors returned by successive outblob reads before any data.
    pub outblob_errors: VecDeque<Errno>,
    /// What outblob holds once the errors are used up.
    pub outblob: Outblob,
    /// How far one inblob write moves `generation` (1 in the kernel).
    pub generation_step: u64,
    /// Advance `generation` when outblob is read (at offset 0), as a
    /// concurrent writer would.
    pub bump_generation_on_read: bool,
    /// Report directories created so far.
    pub reports_created: usize,
    /// Report directories currently present.
    pub reports_live: usize,
    /// Quotes generated.
    pub quotes_generated: usize,
    /// RTMR writes refused with EINVAL, as (length, offset).
    pub rejected_rtmr_writes: Vec<(usize, u64)>,
    nodes: BTreeMap<u64, Node>,
    reports: HashMap<u64, Report>,
    inblob_writes: HashMap<u64, Vec<u8>>,
    next_ino: u64,
    next_fh: u64,
}

impl State {
    fn new(measurements: bool) -> Self {
        let mut state = State {
            provider: Some("tdx_guest".into()),
            rtmrs: [[0; 48]; 4],
            outblob_errors: VecDeque::new(),
            outblob: Outblob::Quote,
            generation_step: 1,
            bump_generation_on_read: false,
            reports_created: 0,
            reports_live: 0,
            quotes_generated: 0,
            rejected_rtmr_writes: Vec::new(),
            nodes: BTreeMap::new(),
            reports: HashMap::new(),
            inblob_writes: HashMap::new(),
            next_ino: 2,
            next_fh: 1,
        };
        let kernel = state.add(1, "kernel", Kind::Dir);
        let config = state.add(kernel, "config", Kind::Dir);
        let tsm = state.add(config, "tsm", Kind::Dir);
        state.add(tsm, "report", Kind::ReportRoot);
        if measurements {
            let mut dir = 1;
            for name in ["devices", "virtual", "misc", "tdx_guest", "measurements"] {
                dir = state.add(dir, name, Kind::Dir);
            }
            for i in 0..4 {
                state.add(dir, &format!("rtmr{i}:sha384"), Kind::Rtmr(i));
            }
        }
        state
    }

    fn add(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.into(),
                kind,
            },
        );
        ino
    }

    fn kind(&self, ino: u64) -> Option<Kind> {
        if ino == 1 {
            return Some(Kind::Dir);
        }
        self.nodes.get(&ino).map(|n| n.kind.clone())
    }

    fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.nodes
            .iter()
            .find(|(_, n)| n.parent == parent && n.name == name)
            .map(|(ino, _)| *ino)
    }

    fn children(&self, parent: u64) -> Vec<(u64, String, FileType)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.parent == parent)
            .map(|(ino, n)| (*ino, n.name.clone(), file_type(&n.kind)))
            .collect()
    }

    fn report_of(&self, attr_ino: u64) -> Option<u64> {
        self.nodes.get(&attr_ino).map(|n| n.parent)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let kind = self.kind(ino)?;
        Some(FileAttr {
            ino: INodeNo(ino),
            size: if matches!(kind, Kind::Rtmr(_)) { 48 } else { 0 },
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: file_type(&kind),
            perm: if file_type(&kind) == FileType::Directory {
                0o755
            } else {
                0o644
            },
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn read_attr(&mut self, ino: u64, attr: Attr, offset: u64) -> Result<Vec<u8>, Errno> {
        let report_ino = self.report_of(ino).ok_or(Errno::ENOENT)?;
        let provider = self.provider.clone().unwrap_or_default();
        let rtmrs = self.rtmrs;
        let report = self.reports.get_mut(&report_ino).ok_or(Errno::ENOENT)?;
        match attr {
            Attr::Provider => Ok(format!("{provider}\n").into_bytes()),
            Attr::Generation => Ok(format!("{}\n", report.generation).into_bytes()),
            Attr::Inblob => Err(Errno::EACCES),
            Attr::Outblob => {
                if offset == 0 {
                    if let Some(errno) = self.outblob_errors.pop_front() {
                        return Err(errno);
                    }
                }
                if report.outblob.is_none() {
                    let report_data: [u8; 64] = report
                        .inblob
                        .clone()
                        .try_into()
                        .map_err(|_| Errno::EINVAL)?;
                    let blob = match self.outblob {
                        Outblob::Quote => structural_quote(&report_data, &rtmrs),
                        Outblob::Empty => Vec::new(),
                        Outblob::Short => vec![4, 0, 2, 0],
                        Outblob::OtherReportData => structural_quote(&[0xee; 64], &rtmrs),
                    };
                    report.outblob = Some(blob);
                    self.quotes_generated += 1;
                }
                if self.bump_generation_on_read && offset == 0 {
                    report.generation += 1;
                }
                Ok(report.outblob.clone().unwrap_or_default())
            }
        }
    }
}

fn file_type(kind: &Kind) -> FileType {
    match kind {
        Kind::Dir | Kind::ReportRoot | Kind::Report => FileType::Directory,
        Kind::ReportAttr(_) | Kind::Rtmr(_) => FileType::RegularFile,
    }
}

/// The FUSE filesystem; the state is shared with the test.
struct FakeFs {
    state: Arc<Mutex<State>>,
}

impl FakeFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const NO_TTL: Duration = Duration::ZERO;

impl Filesystem for FakeFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.state();
        match name
            .to_str()
            .and_then(|n| state.child(parent.0, n))
            .and_then(|ino| state.attr(ino))
        {
            Some(attr) => reply.entry(&NO_TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&NO_TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // O_TRUNC and friends change nothing in sysfs/configfs attributes.
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&NO_TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        if state.kind(parent.0) != Some(Kind::ReportRoot) {
            return reply.error(Errno::EPERM);
        }
        if state.provider.is_none() {
            return reply.error(Errno::ENXIO);
        }
        let Some(name) = name.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        if state.child(parent.0, name).is_some() {
            return reply.error(Errno::EEXIST);
        }
        let report = state.add(parent.0, name, Kind::Report);
        for (file, attr) in [
            ("provider", Attr::Provider),
            ("generation", Attr::Generation),
            ("inblob", Attr::Inblob),
            ("outblob", Attr::Outblob),
        ] {
            state.add(report, file, Kind::ReportAttr(attr));
        }
        state.reports.insert(report, Report::default());
        state.reports_created += 1;
        state.reports_live += 1;
        match state.attr(report) {
            Some(attr) => reply.entry(&NO_TTL, &attr, Generation(0)),
            None => reply.error(Errno::EIO),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let Some(ino) = name.to_str().and_then(|n| state.child(parent.0, n)) else {
            return reply.error(Errno::ENOENT);
        };
        if state.kind(ino) != Some(Kind::Report) {
            return reply.error(Errno::EPERM);
        }
        state.nodes.retain(|i, n| *i != ino && n.parent != ino);
        state.reports.remove(&ino);
        state.reports_live -= 1;
        reply.ok();
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let fh = state.next_fh;
        state.next_fh += 1;
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.state();
        let content = match state.kind(ino.0) {
            Some(Kind::ReportAttr(attr)) => state.read_attr(ino.0, attr, offset),
            Some(Kind::Rtmr(i)) => Ok(state.rtmrs[i].to_vec()),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        };
        match content {
            Ok(bytes) => {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size as usize).min(bytes.len());
                reply.data(&bytes[start..end]);
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        match state.kind(ino.0) {
            Some(Kind::ReportAttr(Attr::Inblob)) => {
                let end = offset as usize + data.len();
                if end > INBLOB_MAX {
                    return reply.error(Errno::EFBIG);
                }
                let buffer = state.inblob_writes.entry(fh.0).or_default();
                if buffer.len() < end {
                    buffer.resize(end, 0);
                }
                buffer[offset as usize..end].copy_from_slice(data);
                reply.written(data.len() as u32);
            }
            Some(Kind::Rtmr(i)) => {
                if offset != 0 || data.len() != 48 {
                    state.rejected_rtmr_writes.push((data.len(), offset));
                    return reply.error(Errno::EINVAL);
                }
                let digest: Measurement = data.try_into().unwrap();
                state.rtmrs[i] = rtmr::extend(&state.rtmrs[i], &digest);
                reply.written(48);
            }
            Some(_) => reply.error(Errno::EACCES),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        // The kernel applies a buffered inblob write at release.
        if let Some(blob) = state.inblob_writes.remove(&fh.0) {
            let step = state.generation_step;
            if let Some(report) = state
                .report_of(ino.0)
                .and_then(|r| state.reports.get_mut(&r))
            {
                if step > 0 {
                    report.inblob = blob;
                    report.outblob = None;
                    report.generation += step;
                }
            }
        }
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.state();
        let mut entries = vec![
            (ino.0, ".".to_owned(), FileType::Directory),
            (1, "..".to_owned(), FileType::Directory),
        ];
        entries.extend(state.children(ino.0));
        for (i, (child, name, kind)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted fake; unmounted when dropped.
pub struct FakeTdx {
    state: Arc<Mutex<State>>,
    // Dropped first: unmount before the directory goes away.
    _session: BackgroundSession,
    dir: tempfile::TempDir,
}

impl FakeTdx {
    /// Mount the fake at `<new temp dir>/sys`, with or without the sysfs
    /// measurement files. Panics with a clear message if FUSE is unavailable.
    pub fn mount(measurements: bool) -> FakeTdx {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("sys");
        std::fs::create_dir(&mountpoint).unwrap();
        let state = Arc::new(Mutex::new(State::new(measurements)));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("ee-fake-tdx".into())];
        let session = fuser::spawn_mount(
            FakeFs {
                state: state.clone(),
            },
            &mountpoint,
            &config,
        )
        .unwrap_or_else(|e| {
            panic!(
                "mounting the FUSE TDX emulation at {}: {e} (needs /dev/fuse and CAP_SYS_ADMIN)",
                mountpoint.display()
            )
        });
        wait_until_mounted(&mountpoint);
        FakeTdx {
            state,
            _session: session,
            dir,
        }
    }

    /// The root to hand to ee-init.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Inspect or change the emulated state.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wait_until_mounted(mountpoint: &Path) {
    let report = mountpoint.join("kernel/config/tsm/report");
    for _ in 0..500 {
        if report.is_dir() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("FUSE mount at {} did not come up", mountpoint.display());
}
