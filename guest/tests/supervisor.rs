//! The supervisor as PID1 uses it. This test binary makes itself a child
//! subreaper (PR_SET_CHILD_SUBREAPER), so orphans are re-parented to it as
//! they would be to PID1. The tests share one process and reap with
//! waitpid(-1), so they run one at a time.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ee_init::supervisor::{parse_services, Backoff, Exit, Reaped, Supervisor};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

static SERIAL: Mutex<()> = Mutex::new(());

fn subreaper() -> std::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    guard
}

fn fast() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    }
}

/// Reap until `done` says so, or fail after 10 s.
fn reap_until(sup: &mut Supervisor, mut done: impl FnMut(&[Reaped]) -> bool) -> Vec<Reaped> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    while Instant::now() < deadline {
        all.extend(sup.reap(Instant::now()));
        if done(&all) {
            return all;
        }
        sup.start_due(Instant::now());
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out; reaped so far: {all:?}");
}

fn alive(pid: Pid) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn orphaned_grandchild_is_reaped() {
    let _guard = subreaper();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    // The child forks a grandchild and exits at once; the grandchild is
    // re-parented to us and exits a little later.
    let child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "sleep 0.3 & echo $! > {}; exit 3",
            pidfile.display()
        ))
        .spawn()
        .unwrap();
    let child_pid = Pid::from_raw(child.id() as i32);
    drop(child);
    let mut sup = Supervisor::new(Vec::new(), fast());
    let reaped = reap_until(&mut sup, |r| r.len() == 2);
    let grandchild = Pid::from_raw(
        std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    assert!(
        reaped.contains(&Reaped {
            pid: child_pid,
            exit: Exit::Code(3),
            service: None
        }),
        "{reaped:?}"
    );
    assert!(
        reaped.contains(&Reaped {
            pid: grandchild,
            exit: Exit::Code(0),
            service: None
        }),
        "{reaped:?}"
    );
    assert!(!alive(grandchild), "no zombie left");
}

#[test]
fn crashing_service_is_restarted_and_the_supervisor_survives() {
    let _guard = subreaper();
    let specs =
        parse_services("crasher always /bin/sh -c kill${IFS}-SEGV${IFS}$$\nonce never /bin/true\n")
            .unwrap();
    let mut sup = Supervisor::new(specs, fast());
    sup.start_all(Instant::now());
    let reaped = reap_until(&mut sup, |r| {
        r.iter()
            .filter(|x| x.exit == Exit::Signal(Signal::SIGSEGV))
            .count()
            >= 3
    });
    let crashes: Vec<_> = reaped
        .iter()
        .filter(|r| r.service.as_deref() == Some("crasher"))
        .collect();
    assert!(crashes.len() >= 3, "{reaped:?}");
    assert!(crashes
        .iter()
        .all(|r| r.exit == Exit::Signal(Signal::SIGSEGV)));
    // Each restart is a new process.
    let mut pids: Vec<_> = crashes.iter().map(|r| r.pid).collect();
    pids.dedup();
    assert_eq!(pids.len(), crashes.len());
    assert!(sup.restarts_of("crasher").unwrap() >= 3);
    // `never` ran once and stays down.
    assert_eq!(
        reaped
            .iter()
            .filter(|r| r.service.as_deref() == Some("once"))
            .count(),
        1
    );
    assert_eq!(sup.pid_of("once"), None);
    assert_eq!(sup.restarts_of("once"), Some(0));
    sup.stop_all(Duration::from_secs(1));
}

#[test]
fn services_stop_in_reverse_order_and_stubborn_ones_are_killed() {
    let _guard = subreaper();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order");
    let script = dir.path().join("svc.sh");
    // Records its name when asked to stop; `stubborn` ignores SIGTERM.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = stubborn ]; then trap '' TERM; else trap 'echo $1 >> {log}; exit 0' TERM; fi\necho started >> {log}.$1\nwhile :; do sleep 0.05; done\n",
            log = log.display()
        ),
    )
    .unwrap();
    let sh = script.display();
    let specs = parse_services(&format!(
        "first always /bin/sh {sh} first\nstubborn always /bin/sh {sh} stubborn\nlast always /bin/sh {sh} last\n"
    ))
    .unwrap();
    let mut sup = Supervisor::new(specs, fast());
    sup.start_all(Instant::now());
    let stubborn = sup.pid_of("stubborn").unwrap();
    // Wait until every service has installed its trap.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ["first", "stubborn", "last"]
        .iter()
        .any(|n| !dir.path().join(format!("order.{n}")).exists())
    {
        assert!(Instant::now() < deadline, "services did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    sup.stop_all(Duration::from_millis(300));
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "waited for the stubborn one"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "last\nfirst\n");
    for name in ["first", "stubborn", "last"] {
        assert_eq!(sup.pid_of(name), None, "{name} still running");
    }
    assert!(!alive(stubborn));
    // Nothing is restarted after a stop.
    std::thread::sleep(Duration::from_millis(150));
    sup.start_due(Instant::now());
    assert_eq!(sup.pid_of("first"), None);
    assert_eq!(sup.next_start(), None);
}

#[test]
fn missing_program_is_retried_not_fatal() {
    let _guard = subreaper();
    let specs = parse_services("ghost always /nonexistent/program\n").unwrap();
    let mut sup = Supervisor::new(specs, fast());
    sup.start_all(Instant::now());
    assert_eq!(sup.pid_of("ghost"), None);
    assert!(sup.next_start().is_some(), "a retry is scheduled");
    std::thread::sleep(Duration::from_millis(60));
    sup.start_due(Instant::now());
    assert_eq!(sup.restarts_of("ghost"), Some(2));
}

/// ee-init blocks the signals it handles; its services must not inherit
/// that mask (or SIGTERM could never stop them) nor ignored signals.
#[test]
fn services_start_with_a_clean_signal_state() {
    let _guard = subreaper();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("status");
    let script = dir.path().join("probe.sh");
    std::fs::write(
        &script,
        format!(
            "grep -E '^Sig(Blk|Ign)' /proc/self/status > {}\n",
            out.display()
        ),
    )
    .unwrap();
    let spec = format!("probe never /bin/sh {}", script.display());
    std::thread::spawn(move || {
        // This thread stands in for ee-init's main thread: signals blocked,
        // SIGPIPE ignored (as std does).
        let _signals = ee_init::signals::Signals::install().unwrap();
        let mut sup = Supervisor::new(parse_services(&spec).unwrap(), fast());
        sup.start_all(Instant::now());
        reap_until(&mut sup, |r| !r.is_empty());
    })
    .join()
    .unwrap();
    let status = std::fs::read_to_string(&out).unwrap();
    let mask = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.rsplit('\t').next().unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{status}");
    // Signals 1..=31; glibc reserves 32 and 33 for itself and may mark them.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{status}");
}
