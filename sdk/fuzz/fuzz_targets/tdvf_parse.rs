//! TDVF metadata parsing (the firmware file a host hands over) must never
//! panic, and the full parse must agree with the light descriptor walk.
#![no_main]

use easyenclave::tdvf::{Descriptor, TdvfMetadata};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let light = Descriptor::find(data);
    if TdvfMetadata::parse(data).is_ok() {
        assert!(light.is_ok(), "a full parse succeeded where the descriptor walk failed");
    }
});
