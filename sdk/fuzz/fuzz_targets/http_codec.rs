//! The HTTP/1.1 codec must never panic, whatever the bytes: a request head
//! and its body, and a response head and its body (after GET and after
//! HEAD), all within small caps. Whatever it accepts stays within them.
#![no_main]

use std::io::{BufRead, Cursor};

use ee_http::{
    read_request_head, read_response_head, request_framing, response_framing, BodyReader, Limits,
};
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    Limits {
        max_start_line: 256,
        max_header_bytes: 1024,
        max_headers: 16,
        max_body: 4096,
        max_chunk_line: 64,
        max_trailer_bytes: 256,
    }
}

/// Read the body that follows a head; what it returns obeys the cap.
fn body<R: BufRead>(reader: R, framing: ee_http::Framing, limits: &Limits) {
    if let Ok(mut reader) = BodyReader::new(reader, framing, limits) {
        if let Ok(body) = reader.read_to_vec() {
            assert!(body.len() as u64 <= limits.max_body);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    let mut buf = Vec::new();

    let mut reader = Cursor::new(data);
    if let Ok(head) = read_request_head(&mut reader, &mut buf, &limits) {
        assert!(buf.len() <= limits.max_head_bytes());
        assert!(head.headers.len() <= limits.max_headers);
        assert!(head.target.starts_with('/') && !head.target.starts_with("//"));
        if let Ok(framing) = request_framing(&head.headers) {
            body(&mut reader, framing, &limits);
        }
    }

    for head_request in [false, true] {
        let mut reader = Cursor::new(data);
        if let Ok(head) = read_response_head(&mut reader, &mut buf, &limits) {
            assert!((100..=599).contains(&head.status));
            if let Ok(framing) = response_framing(head_request, head.status, &head.headers) {
                body(&mut reader, framing, &limits);
            }
        }
    }
});
