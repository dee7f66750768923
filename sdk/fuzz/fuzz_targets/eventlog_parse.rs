//! Event-log parsing must never panic; a parsed log must survive a
//! serialize/parse round trip with the same replayed RTMR3.
#![no_main]

use easyenclave::eventlog::EventLog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::from_json(data) {
        let again = EventLog::from_json(log.to_json().as_bytes()).expect("round trip parses");
        assert_eq!(again.replay(), log.replay());
    }
});
