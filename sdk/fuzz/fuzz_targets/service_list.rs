//! `/etc/ee/services` parsing must never panic, and a parsed list must
//! render to text that parses to the same list.
#![no_main]

use easyenclave::service_list::{parse, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(services) = parse(text) {
        let again = parse(&render(&services)).expect("a rendered list parses");
        assert_eq!(again, services);
    }
});
