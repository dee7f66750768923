//! Decoding raw/hex/base64 input must never panic.
#![no_main]

use easyenclave::input::decode_binary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_binary(data.to_vec());
});
