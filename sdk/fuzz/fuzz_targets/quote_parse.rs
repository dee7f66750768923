//! Quote parsing must never panic, and what parses must re-encode to the
//! same bytes (minus trailing zero padding) and parse again to the same value.
#![no_main]

use easyenclave::quote::Quote;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = Quote::parse(data) {
        let encoded = quote.to_bytes();
        assert!(data.starts_with(&encoded), "re-encoding changed the quote");
        let again = Quote::parse(&encoded).expect("re-encoded quote parses");
        assert_eq!(again, quote);
        let _ = quote.render_text();
    }
});
