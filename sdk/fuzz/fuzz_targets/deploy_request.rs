//! The agent parses `POST /deploy` bodies from anyone who passed the
//! credential check: parsing must never panic, and an accepted request must
//! survive its own serialization unchanged.
#![no_main]

use easyenclave::deploy::DeployRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = DeployRequest::from_json(data) {
        let bytes = request.to_json().expect("an accepted request serializes");
        let again = DeployRequest::from_json(&bytes).expect("its serialization parses");
        assert!(again == request, "round trip changed the request");
    }
});
