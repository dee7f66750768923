//! The codec's behaviour through its public functions.

use std::io::{self, Read};

use crate::*;

fn request(raw: &[u8]) -> Result<RequestHead, Error> {
    read_request_head(
        &mut io::Cursor::new(raw),
        &mut Vec::new(),
        &Limits::default(),
    )
}

fn response(raw: &[u8]) -> Result<ResponseHead, Error> {
    read_response_head(
        &mut io::Cursor::new(raw),
        &mut Vec::new(),
        &Limits::default(),
    )
}

/// A request's head and body, read as a server would.
fn request_body(raw: &[u8], limits: &Limits) -> Result<Vec<u8>, Error> {
    let mut reader = io::Cursor::new(raw);
    let head = read_request_head(&mut reader, &mut Vec::new(), limits)?;
    let framing = request_framing(&head.headers)?;
    BodyReader::new(&mut reader, framing, limits)?.read_to_vec()
}

/// A response's body, read as a client would (`head`: the request was HEAD).
fn response_body(raw: &[u8], head_request: bool) -> Result<Vec<u8>, Error> {
    let limits = Limits {
        max_body: 16,
        ..Limits::default()
    };
    let mut reader = io::Cursor::new(raw);
    let head = read_response_head(&mut reader, &mut Vec::new(), &limits)?;
    let framing = response_framing(head_request, head.status, &head.headers)?;
    BodyReader::new(&mut reader, framing, &limits)?.read_to_vec()
}

fn chunked(body: &str) -> Result<Vec<u8>, Error> {
    let raw = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    request_body(raw.as_bytes(), &Limits::default())
}

#[test]
fn parses_request_and_response_heads() {
    let head = request(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Y:  z \r\n\r\nrest").unwrap();
    assert_eq!(
        (head.method.as_str(), head.target.as_str()),
        ("GET", "/a?b=c")
    );
    assert_eq!(head.version, 1);
    assert_eq!(
        head.headers,
        [("Host".into(), "x".into()), ("X-Y".into(), "z".into())]
    );
    let head = response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n").unwrap();
    assert_eq!((head.version, head.status), (0, 404));
    assert_eq!(head.reason, "Not Found");
    // Bare LF line ends are accepted (RFC 9112 §2.2).
    assert_eq!(request(b"GET / HTTP/1.0\n\n").unwrap().target, "/");
    assert_eq!(response(b"HTTP/1.1 200 OK\nA: b\n\n").unwrap().status, 200);
}

#[test]
fn the_head_reader_leaves_the_body_in_the_stream() {
    let mut reader = io::Cursor::new(&b"GET / HTTP/1.1\r\n\r\nBODY"[..]);
    let mut buf = Vec::new();
    read_head(&mut reader, &mut buf, &Limits::default()).unwrap();
    assert_eq!(buf, b"GET / HTTP/1.1\r\n\r\n");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "BODY");
}

#[test]
fn malformed_heads_are_refused_with_the_problem_named() {
    for (raw, needle) in [
        (&b"GET\r\n\r\n"[..], "malformed request line"),
        (b"GET  / HTTP/1.1\r\n\r\n", "malformed request line"),
        (b"GET / HTTP/1.1 x\r\n\r\n", "malformed request line"),
        (b"G(T / HTTP/1.1\r\n\r\n", "malformed request line"),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", "malformed request line"),
        (b"GET /\xff HTTP/1.1\r\n\r\n", "malformed request line"),
        (
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            "malformed request line: empty line",
        ),
        (
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "invalid header name \"Bad Name\"",
        ),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "without ':' (line 2)"),
        (
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "obsolete line folding",
        ),
        (
            b"GET / HTTP/1.1\r\nA: b\rC: d\r\n\r\n",
            "header A has a bare CR",
        ),
        (
            b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
            "control character 0x00",
        ),
        (b"GET / HTTP/1.1\r\nA: \xff\r\n\r\n", "not UTF-8"),
        (b"GET / HTTP/1.1\r\nA: b\r\n", "closed inside the headers"),
        (b"GET / HTTP/1.1", "closed inside the headers"),
    ] {
        let err = request(raw).unwrap_err();
        assert_eq!(err.status(), Some(400), "{raw:?}: {err}");
        assert!(err.to_string().contains(needle), "{raw:?}: {err}");
    }
    let err = request(b"GET / HTTP/2.0\r\n\r\n").unwrap_err();
    assert_eq!(
        (err.status(), err.to_string().contains("\"HTTP/2.0\"")),
        (Some(505), true)
    );
    assert!(matches!(request(b""), Err(Error::Closed)));
    assert_eq!(Error::Closed.status(), None);

    for (raw, needle) in [
        (&b"SSH-2.0-OpenSSH\r\n\r\n"[..], "not HTTP/1.x"),
        (b"HTTP/2 200\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "status code \"abc\""),
        (b"HTTP/1.1 999 What\r\n\r\n", "not 100 to 599"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "without ':'"),
        (
            b"HTTP/1.1 200 OK\r\nVary: a\r\n folded\r\n\r\n",
            "obsolete line folding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nLocation: /x\rSet-Cookie: a=1\r\n\r\n",
            "header Location has a bare CR",
        ),
    ] {
        let err = response(raw).unwrap_err().to_string();
        assert!(err.contains(needle), "{raw:?}: {err}");
    }
}

#[test]
fn oversized_heads_and_too_many_headers() {
    let limits = Limits::default();
    let line = |n: usize| format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(n));
    // "GET /" and " HTTP/1.1" are 14 bytes.
    assert!(request(line(limits.max_start_line - 14).as_bytes()).is_ok());
    let err = request(line(limits.max_start_line - 13).as_bytes()).unwrap_err();
    assert!(matches!(err, Error::StartLineTooLong(8192)), "{err}");
    assert_eq!(err.status(), Some(414));

    let big = |n: usize| format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(n));
    // "X: " and CRLF are 5 bytes.
    assert!(request(big(limits.max_header_bytes - 5).as_bytes()).is_ok());
    let err = request(big(limits.max_header_bytes - 4).as_bytes()).unwrap_err();
    assert!(matches!(err, Error::HeadTooLarge(16384)), "{err}");
    assert_eq!(err.status(), Some(431));
    // Never more than the cap is buffered: an endless header line stops.
    let endless = io::Cursor::new(b"GET / HTTP/1.1\r\nX: ".to_vec()).chain(io::repeat(b'v'));
    let mut buf = Vec::new();
    let err = read_head(&mut io::BufReader::new(endless), &mut buf, &limits).unwrap_err();
    assert!(matches!(err, Error::HeadTooLarge(_)), "{err}");
    assert!(buf.len() <= limits.max_head_bytes());

    let many = |n: usize| {
        let fields: String = (0..n).map(|i| format!("H{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\n{fields}\r\n")
    };
    assert_eq!(request(many(64).as_bytes()).unwrap().headers.len(), 64);
    let err = request(many(65).as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "more than 64 header fields");
    assert_eq!(err.status(), Some(431));
    let err = response(format!("HTTP/1.1 200 OK\r\n{}", &many(65)[16..]).as_bytes()).unwrap_err();
    assert!(matches!(err, Error::TooManyHeaders(64)), "{err}");
}

#[test]
fn only_origin_form_targets() {
    for raw in [
        &b"GET http://x/ HTTP/1.1\r\n\r\n"[..],
        b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
        b"CONNECT /x HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET //evil.example/x HTTP/1.1\r\n\r\n",
    ] {
        let err = request(raw).unwrap_err();
        assert!(matches!(err, Error::BadTarget { .. }), "{raw:?}: {err}");
        assert_eq!(err.status(), Some(400));
        assert!(
            err.to_string().starts_with("malformed request line"),
            "{err}"
        );
    }
    assert!(check_origin_form("GET", "/a/b?c=//d").is_ok());
    assert!(check_origin_form("GET", "/\u{e9}").is_err());
}

#[test]
fn framing_is_decided_once_and_ambiguity_refused() {
    let h = |fields: &[(&str, &str)]| -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(request_framing(&h(&[])).unwrap(), Framing::Empty);
    assert_eq!(
        response_framing(false, 200, &h(&[])).unwrap(),
        Framing::UntilClose
    );
    assert_eq!(
        request_framing(&h(&[("content-length", "12")])).unwrap(),
        Framing::Length(12)
    );
    assert_eq!(
        request_framing(&h(&[("Transfer-Encoding", "Chunked")])).unwrap(),
        Framing::Chunked
    );
    for (fields, needle, status) in [
        (
            &[("Content-Length", "1"), ("Transfer-Encoding", "chunked")][..],
            "both",
            400,
        ),
        (
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "1")],
            "both",
            400,
        ),
        (
            &[("Content-Length", "1"), ("content-length", "1")],
            "conflicting",
            400,
        ),
        (
            &[("Content-Length", "1"), ("Content-Length", "2")],
            "conflicting",
            400,
        ),
        (&[("Content-Length", "1, 1")], "not a number", 400),
        (&[("Content-Length", "-1")], "not a number", 400),
        (&[("Content-Length", "+1")], "not a number", 400),
        (&[("Content-Length", "")], "not a number", 400),
        (
            &[("Content-Length", "18446744073709551616")],
            "out of range",
            400,
        ),
        (
            &[("Transfer-Encoding", "gzip, chunked")],
            "unsupported",
            501,
        ),
        (
            &[("Transfer-Encoding", "chunked, gzip")],
            "unsupported",
            501,
        ),
        (
            &[
                ("Transfer-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
            ],
            "unsupported",
            501,
        ),
        (
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            "unsupported",
            501,
        ),
        (&[("Transfer-Encoding", "identity")], "unsupported", 501),
    ] {
        for result in [
            request_framing(&h(fields)),
            response_framing(false, 200, &h(fields)),
        ] {
            let err = result.unwrap_err();
            assert!(err.to_string().contains(needle), "{fields:?}: {err}");
            assert_eq!(err.status(), Some(status), "{fields:?}");
        }
    }
    // No body after HEAD, 1xx, 204 and 304, whatever the fields say.
    let lying = h(&[("Content-Length", "10")]);
    assert_eq!(response_framing(true, 200, &lying).unwrap(), Framing::Empty);
    for status in [101, 204, 304] {
        assert_eq!(
            response_framing(false, status, &lying).unwrap(),
            Framing::Empty
        );
    }
}

#[test]
fn bodies_in_every_framing() {
    let limits = Limits::default();
    assert_eq!(
        request_body(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcdef",
            &limits
        )
        .unwrap(),
        b"abc"
    );
    assert_eq!(
        request_body(b"GET / HTTP/1.1\r\n\r\nignored", &limits).unwrap(),
        b""
    );
    assert_eq!(
        chunked("4;ext=1;q=\"x\"\r\nWiki\r\n5 \r\npedia\r\n0\r\nTrailer: x\r\n\r\nnext").unwrap(),
        b"Wikipedia"
    );
    assert_eq!(chunked("3\nabc\n0\n\n").unwrap(), b"abc", "bare LF");
    assert_eq!(
        response_body(b"HTTP/1.1 200 OK\r\n\r\nuntil close", false).unwrap(),
        b"until close"
    );
    // HEAD, 204 and 304 responses: nothing is read, whatever follows.
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let head_request = raw.starts_with(b"HTTP/1.1 200");
        assert_eq!(response_body(raw, head_request).unwrap(), b"", "{raw:?}");
    }
}

#[test]
fn bad_chunks_are_refused() {
    for (body, needle) in [
        ("zz\r\n", "chunk size \"zz\" is not hexadecimal"),
        ("\r\n", "is not hexadecimal"),
        ("+3\r\nabc\r\n0\r\n\r\n", "is not hexadecimal"),
        ("0x3\r\nabc\r\n0\r\n\r\n", "is not hexadecimal"),
        ("3\rX\r\nabc\r\n0\r\n\r\n", "control character"),
        ("10000000000000000\r\n", "is too large"),
        ("2\r\nabc\r\n0\r\n\r\n", "longer than its size"),
        ("3\r\nabc0\r\n\r\n", "longer than its size"),
    ] {
        let err = chunked(body).unwrap_err();
        assert!(err.to_string().contains(needle), "{body:?}: {err}");
        assert_eq!(err.status(), Some(400), "{body:?}");
    }
    let long_line = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(1024));
    assert!(matches!(
        chunked(&long_line),
        Err(Error::ChunkLineTooLong(1024))
    ));
    let ok_line = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(1021));
    assert_eq!(chunked(&ok_line).unwrap(), b"a");
    let trailers = format!("0\r\nT: {}\r\n\r\n", "t".repeat(4 * 1024));
    let err = chunked(&trailers).unwrap_err();
    assert!(matches!(err, Error::TrailersTooLarge(4096)), "{err}");
    assert_eq!(err.status(), Some(431));
    let many: String = (0..2000).map(|_| "T: t\r\n").collect();
    assert!(matches!(
        chunked(&format!("0\r\n{many}\r\n")),
        Err(Error::TrailersTooLarge(_))
    ));
}

#[test]
fn bodies_over_the_cap_are_refused_in_every_framing() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let declared = request_body(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", &limits);
    let err = declared.unwrap_err();
    assert_eq!(
        err.to_string(),
        "body of 11 bytes exceeds the limit of 10 bytes"
    );
    assert_eq!(err.status(), Some(413));
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert!(matches!(
        request_body(raw, &limits),
        Err(Error::BodyTooLarge {
            declared: None,
            limit: 10
        })
    ));
    let at_cap = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    assert_eq!(request_body(at_cap, &limits).unwrap(), b"helloworld");
    // Until close: 16 bytes is the cap in response_body.
    assert_eq!(
        response_body(b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdef", false)
            .unwrap()
            .len(),
        16
    );
    let err = response_body(b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdefX", false).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BodyTooLarge {
                declared: None,
                limit: 16
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_bodies_are_errors() {
    let limits = Limits::default();
    let err = request_body(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", &limits).unwrap_err();
    assert_eq!(err.to_string(), "the body ended after 2 of 5 bytes");
    assert_eq!(err.status(), Some(400));
    for body in [
        "5\r\nab",
        "5\r\nhello",
        "5\r\nhello\r\n",
        "0\r\nT: x\r\n",
        "5",
    ] {
        let err = chunked(body).unwrap_err();
        assert!(
            matches!(err, Error::BodyTruncated { expected: None, .. }),
            "{body:?}: {err}"
        );
    }
    // Through std::io::Read the error is an io::Error that converts back.
    let mut reader = BodyReader::new(&b"ab"[..], Framing::Length(5), &limits).unwrap();
    let io_err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(io_err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(matches!(
        Error::from(io_err),
        Error::BodyTruncated {
            received: 2,
            expected: Some(5)
        }
    ));
    let plain = Error::from(io::Error::from(io::ErrorKind::TimedOut));
    assert!(matches!(plain, Error::Io(ref e) if e.kind() == io::ErrorKind::TimedOut));
}

#[test]
fn writes_heads_with_recomputed_framing_and_checked_fields() {
    let mut out = Vec::new();
    write_request_head(
        &mut out,
        "POST",
        "/x?y=1",
        [
            ("Host", "h"),
            ("Content-Length", "999"),
            ("Transfer-Encoding", "chunked"),
            ("A", "b\tc"),
        ],
        Some(3),
    )
    .unwrap();
    assert_eq!(
        out,
        b"POST /x?y=1 HTTP/1.1\r\nHost: h\r\nA: b\tc\r\nContent-Length: 3\r\n\r\n"
    );
    out.clear();
    write_request_head(&mut out, "GET", "/", Vec::<(&str, &str)>::new(), None).unwrap();
    assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    out.clear();
    write_response_head(
        &mut out,
        404,
        "Not Found",
        [("Allow", "GET".to_string())],
        2,
    )
    .unwrap();
    assert_eq!(
        out,
        b"HTTP/1.1 404 Not Found\r\nAllow: GET\r\nContent-Length: 2\r\n\r\n"
    );

    for (name, value, needle) in [
        ("Bad Name", "v", "not an HTTP token"),
        ("", "v", "not an HTTP token"),
        ("X", "a\r\nInjected: 1", "a bare CR"),
        ("X", "a\nb", "a bare LF"),
        ("X", "a\0b", "control character 0x00"),
    ] {
        let mut out = b"kept".to_vec();
        let err = write_response_head(&mut out, 200, "OK", [(name, value)], 0).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(needle) && !text.contains("Injected"),
            "{text}"
        );
        assert_eq!(out, b"kept", "nothing half-written");
    }
    assert!(write_request_head(&mut out, "GE T", "/", [("A", "b")], None).is_err());
    assert!(write_request_head(&mut out, "GET", "http://x/", [("A", "b")], None).is_err());
    assert!(write_response_head(&mut out, 200, "O\rK", [("A", "b")], 0).is_err());
    assert!(write_response_head(&mut out, 42, "OK", [("A", "b")], 0).is_err());
}

#[test]
fn written_heads_parse_back() {
    let mut out = Vec::new();
    write_response_head(&mut out, 201, "Created", [("Location", "/a")], 4).unwrap();
    out.extend_from_slice(b"body");
    assert_eq!(response_body(&out, false).unwrap(), b"body");
    let head = response(&out).unwrap();
    assert_eq!(head.headers[0], ("Location".into(), "/a".into()));
}
