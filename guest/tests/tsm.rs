//! ee-init's TSM access against the FUSE emulation of the kernel interfaces
//! (see `support/fake_tdx.rs` for the emulated rules).

#[allow(dead_code)]
mod support;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use easyenclave::eventlog::Event;
use easyenclave::launch::LaunchConfig;
use easyenclave::quote::Quote;
use easyenclave::rtmr;
use ee_init::measured::MeasuredLog;
use ee_init::root::FsRoot;
use ee_init::tsm::configfs::{ConfigfsError, ConfigfsQuotes, RetryPolicy};
use ee_init::tsm::measurements::SysfsRtmrs;
use ee_init::tsm::{self, Backend, Selection, TsmError};
use fuser::Errno;
use support::fake_tdx::{FakeTdx, Outblob};

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        backoff: Duration::from_millis(1),
        generation_timeout: Duration::from_millis(300),
    }
}

fn probe(fake: &FakeTdx) -> ConfigfsQuotes {
    ConfigfsQuotes::probe(&FsRoot::at(fake.root()), fast()).unwrap()
}

#[test]
fn quote_follows_the_generation_protocol_and_cleans_up() {
    let fake = FakeTdx::mount(true);
    let quotes = probe(&fake);
    for i in 0..3u8 {
        let report_data = [i; 64];
        let bytes = quotes.quote(&report_data).unwrap();
        let quote = Quote::parse(&bytes).unwrap();
        assert_eq!(quote.body().td10().report_data, report_data);
    }
    let state = fake.state();
    // One probe directory plus one per quote, all removed again.
    assert_eq!(state.reports_created, 4);
    assert_eq!(state.reports_live, 0);
    assert_eq!(state.quotes_generated, 3);
}

#[test]
fn busy_kernel_is_retried_in_a_fresh_directory() {
    let fake = FakeTdx::mount(true);
    let quotes = probe(&fake);
    fake.state()
        .outblob_errors
        .extend([Errno::EBUSY, Errno::ETIMEDOUT]);
    quotes.quote(&[7; 64]).unwrap();
    let state = fake.state();
    assert_eq!(state.reports_created, 1 + 3);
    assert_eq!(state.reports_live, 0);
}

#[test]
fn retries_are_bounded() {
    let fake = FakeTdx::mount(true);
    let quotes = probe(&fake);
    fake.state().outblob_errors.extend([
        Errno::EBUSY,
        Errno::ETIMEDOUT,
        Errno::EBUSY,
        Errno::EBUSY,
    ]);
    let err = quotes.quote(&[7; 64]).unwrap_err();
    assert!(
        matches!(err, ConfigfsError::Exhausted { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Device or resource busy"), "{err}");
    let state = fake.state();
    assert_eq!(
        state.reports_live, 0,
        "every attempt's directory is removed"
    );
    assert_eq!(
        state.outblob_errors.len(),
        1,
        "exactly three attempts were made"
    );
}

/// std's read loop repeats an interrupted read itself: EINTR costs no attempt.
#[test]
fn interrupted_read_is_repeated_within_the_attempt() {
    let fake = FakeTdx::mount(true);
    let quotes = probe(&fake);
    fake.state()
        .outblob_errors
        .extend([Errno::EINTR, Errno::EINTR]);
    quotes.quote(&[7; 64]).unwrap();
    assert_eq!(fake.state().reports_created, 1 + 1);
}

#[test]
fn other_kernel_errors_are_not_retried() {
    let fake = FakeTdx::mount(true);
    let quotes = probe(&fake);
    fake.state()
        .outblob_errors
        .extend([Errno::EIO, Errno::EBUSY]);
    let err = quotes.quote(&[7; 64]).unwrap_err();
    assert!(matches!(err, ConfigfsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("outblob"), "{err}");
    assert_eq!(fake.state().reports_live, 0);
}

#[test]
fn empty_short_and_foreign_outblobs_are_errors() {
    let fake = FakeTdx::mount(true);
    let quotes = probe(&fake);
    for (mode, check) in [
        (
            Outblob::Empty,
            (|e| matches!(e, ConfigfsError::EmptyOutblob)) as fn(&ConfigfsError) -> bool,
        ),
        (Outblob::Short, |e| {
            matches!(e, ConfigfsError::ShortOutblob { len: 4 })
        }),
        (Outblob::OtherReportData, |e| {
            matches!(e, ConfigfsError::ReportDataMismatch)
        }),
    ] {
        fake.state().outblob = mode;
        let err = quotes.quote(&[1; 64]).unwrap_err();
        assert!(check(&err), "{mode:?}: {err}");
    }
    assert_eq!(fake.state().reports_live, 0);
}

#[test]
fn generation_anomalies_are_detected() {
    let fake = FakeTdx::mount(true);
    let quotes = probe(&fake);

    fake.state().generation_step = 2;
    let err = quotes.quote(&[1; 64]).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigfsError::GenerationRace {
                before: 0,
                after: 2,
                expected: 1
            }
        ),
        "{err}"
    );

    fake.state().generation_step = 0;
    let err = quotes.quote(&[1; 64]).unwrap_err();
    assert!(
        matches!(err, ConfigfsError::GenerationTimeout { before: 0, .. }),
        "{err}"
    );

    let mut state = fake.state();
    state.generation_step = 1;
    state.bump_generation_on_read = true;
    drop(state);
    let err = quotes.quote(&[1; 64]).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigfsError::ChangedDuringRead {
                before: 1,
                after: 2
            }
        ),
        "{err}"
    );
    assert_eq!(fake.state().reports_live, 0);
}

#[test]
fn missing_or_foreign_provider_is_reported() {
    let fake = FakeTdx::mount(true);
    let root = FsRoot::at(fake.root());
    fake.state().provider = None;
    let err = ConfigfsQuotes::probe(&root, fast()).unwrap_err();
    assert!(matches!(err, ConfigfsError::NoProvider { .. }), "{err}");
    assert!(err.to_string().contains("ENXIO"), "{err}");

    fake.state().provider = Some("sev_guest".into());
    let err = ConfigfsQuotes::probe(&root, fast()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "configfs-tsm provider is \"sev_guest\", expected \"tdx_guest\""
    );
    assert_eq!(fake.state().reports_live, 0);

    let empty = tempfile::tempdir().unwrap();
    let err = ConfigfsQuotes::probe(&FsRoot::at(empty.path()), fast()).unwrap_err();
    assert!(matches!(err, ConfigfsError::NotAvailable { .. }), "{err}");
}

#[test]
fn sysfs_rtmr_extension_is_one_48_byte_write() {
    let fake = FakeTdx::mount(true);
    let rtmrs = SysfsRtmrs::find(&FsRoot::at(fake.root())).expect("measurement files");
    let digest = rtmr::sha384(b"abc");
    rtmrs.extend(3, &digest).unwrap();
    // The check value from notes/tdx-facts.md.
    assert_eq!(
        hex::encode(rtmrs.read(3).unwrap()),
        "93732e3733514a841c982cfa75ea76ab55fe011acb9cd980ef4523913c65be1b0998e04d77f8c174f81a82151619ca40"
    );
    assert_eq!(rtmrs.read_all().unwrap()[..3], [[0; 48]; 3]);
    assert!(fake.state().rejected_rtmr_writes.is_empty());
    assert!(rtmrs
        .extend(4, &digest)
        .unwrap_err()
        .to_string()
        .contains("out of range"));

    // The emulation enforces the kernel's rule on other writers.
    let path = fake
        .root()
        .join("sys/devices/virtual/misc/tdx_guest/measurements/rtmr2:sha384");
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let err = file.write_at(&[0; 47], 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EINVAL));
    assert!(file.write_at(&[0; 48], 1).is_err());
    assert_eq!(fake.state().rejected_rtmr_writes, [(47, 0), (48, 1)]);
}

fn config() -> LaunchConfig {
    LaunchConfig::new("octo/app", "app.example.com:443")
}

#[test]
fn selected_tdx_backend_measures_and_attests_consistently() {
    let fake = FakeTdx::mount(true);
    let root = FsRoot::at(fake.root());
    let tsm = tsm::select(&root, Selection::Auto, false).unwrap();
    assert_eq!(tsm.backend(), Backend::ConfigfsTsm);
    assert!(
        tsm.describe().contains("RTMR3 extended via sysfs"),
        "{}",
        tsm.describe()
    );
    let measured = MeasuredLog::new(tsm);
    let d1 = measured.record(Event::Config { config: config() }).unwrap();
    let d2 = measured.record(Event::Ready {}).unwrap();
    assert_eq!(fake.state().rtmrs[3], rtmr::replay([&d1, &d2]));

    let evidence = measured.evidence(&[9; 64]).unwrap();
    let quote = Quote::parse(&evidence.quote).unwrap();
    assert_eq!(quote.body().td10().rtmr3, evidence.event_log.replay());
    assert_eq!(evidence.rtmrs[3], evidence.event_log.replay());
    assert_eq!(evidence.event_log.len(), 2);
    assert_eq!(fake.state().reports_live, 0);
}

#[test]
fn quotes_without_rtmr_extension_are_refused() {
    let fake = FakeTdx::mount(false);
    let root = FsRoot::at(fake.root());
    match tsm::select(&root, Selection::Auto, false) {
        Err(TsmError::NoExtend(why)) => assert!(why.contains("legacy_extend_ioctl"), "{why}"),
        other => panic!("expected NoExtend, got {:?}", other.map(|t| t.backend())),
    }
    // Opting in to the legacy ioctl needs /dev/tdx_guest, which is named.
    let err = tsm::select(&root, Selection::Auto, true).err().unwrap();
    assert!(err.to_string().contains("dev/tdx_guest"), "{err}");
}

#[test]
fn no_provider_means_no_tdx_backend() {
    let fake = FakeTdx::mount(true);
    fake.state().provider = None;
    let tsm = tsm::select(&FsRoot::at(fake.root()), Selection::Auto, false).unwrap();
    if cfg!(feature = "sim") {
        assert_eq!(tsm.backend(), Backend::Sim);
    } else {
        assert_eq!(tsm.backend(), Backend::None);
        assert!(tsm.describe().contains("ENXIO"), "{}", tsm.describe());
    }
}

#[test]
fn failed_extension_breaks_the_log_for_good() {
    let fake = FakeTdx::mount(true);
    let root = FsRoot::at(fake.root());
    let measured = MeasuredLog::new(tsm::select(&root, Selection::Auto, false).unwrap());
    measured.record(Event::Config { config: config() }).unwrap();
    // The register file disappears (a kernel bug, a hostile admin...).
    drop(fake);
    let err = measured.record(Event::Ready {}).unwrap_err();
    assert!(
        err.to_string().contains("the event log is now unusable"),
        "{err}"
    );
    let err = measured.record(Event::Ready {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("since an earlier RTMR3 extension failed"),
        "{err}"
    );
    assert!(measured.evidence(&[0; 64]).is_err());
    assert_eq!(measured.log().len(), 1);
}
