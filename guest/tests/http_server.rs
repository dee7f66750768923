//! The agent's HTTPS server over real sockets: every request goes over TLS
//! 1.3 with the agent's own certificate; stuck, slow, plain-HTTP and
//! TLS-1.2 clients fail cleanly and cannot starve other clients beyond the
//! slot cap; the certificate is RA-TLS (its quote verifies with the
//! simulated root and binds its key), is renewed with a fresh key before it
//! expires, and falls back to a quote-less certificate that clients refuse
//! when there is no quote to be had.

#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use easyenclave::ratls::{CertEvidence, RaTlsError};
use ee_init::http::{serve, Body, Budget, Class, Handler, Limits, Request, Response};
use ee_init::measured::MeasuredLog;
use ee_init::tls::{AgentTls, CertPolicy};
use ee_init::tsm::NoTsm;
use support::tls_client::{connect_with, exchange, request};

struct Echo;

impl Handler for Echo {
    fn handle(&self, request: &Request, _body: &mut Body<'_>) -> Response {
        Response::json(
            200,
            &serde_json::json!({ "path": request.path, "query": request.query }),
        )
    }
}

/// TLS without a TDX provider: a self-signed certificate without a quote.
fn unattested() -> AgentTls {
    let measured = Arc::new(MeasuredLog::new(Box::new(NoTsm::new("test without TDX"))));
    AgentTls::start(measured, CertPolicy::default()).unwrap()
}

fn start_with(limits: Limits, tls: &AgentTls) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, limits, tls.server_config(), Arc::new(Echo)).unwrap();
    addr
}

fn start(limits: Limits) -> SocketAddr {
    start_with(limits, &unattested())
}

fn tight() -> Limits {
    Limits {
        io_timeout: Duration::from_millis(300),
        head_timeout: Duration::from_millis(600),
        request_deadline: Duration::from_millis(600),
        opening: Budget {
            total: 2,
            per_peer: 2,
        },
        ..Limits::default()
    }
}

/// A plain TCP exchange: send `raw`, read until the server closes.
fn plain_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

/// Wait until the server closes `stream` (EOF or reset) and return what it
/// sent; panics if it is still open after `limit`.
fn closed_within(mut stream: TcpStream, limit: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection within {limit:?}: {e}"),
    }
    received
}

#[test]
fn serves_one_request_per_connection_over_tls_1_3() {
    let addr = start(Limits::default());
    let answer = exchange(addr, b"GET /x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(answer.status, 200);
    assert!(
        answer.head.contains("\r\nConnection: close"),
        "{}",
        answer.head
    );
    assert_eq!(answer.body, "{\"path\":\"/x\",\"query\":\"y=1\"}\n");
    assert_eq!(answer.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn errors_are_answered_over_tls() {
    let addr = start(Limits::default());
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let answer = exchange(addr, huge.as_bytes());
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(answer
        .body
        .contains("header section larger than 16384 bytes"));
    assert_eq!(exchange(addr, b"BREW /pot HTCPCP/1.0\r\n\r\n").status, 400);
}

#[test]
fn plain_http_gets_a_clean_refusal_and_the_server_keeps_serving() {
    let addr = start(Limits::default());
    let response = plain_exchange(addr, b"GET /health HTTP/1.1\r\nHost: agent\r\n\r\n");
    let response = String::from_utf8(response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(
        response.contains("this agent speaks HTTPS only (RA-TLS)"),
        "{response}"
    );
    // Bytes that are neither TLS nor HTTP get a TLS alert at most, never a crash.
    let response = plain_exchange(addr, &[0x00, 0x01, 0x02, 0x03, 0xff, 0xfe, 0x0d, 0x0a]);
    assert!(
        response.is_empty() || response.first() == Some(&0x15),
        "nothing or a TLS alert record: {response:?}"
    );
    assert_eq!(request(addr, "GET", "/after").status, 200);
}

#[test]
fn tls_1_2_is_refused() {
    let addr = start(Limits::default());
    let (mut tls, _) = connect_with(addr, &[&rustls::version::TLS12]);
    let err = tls
        .conn
        .complete_io(&mut tls.sock)
        .expect_err("a TLS 1.2-only client must not get a session");
    assert!(
        err.to_string().contains("ProtocolVersion"),
        "the server answers with a protocol_version alert: {err}"
    );
    assert_eq!(request(addr, "GET", "/after").status, 200);
}

#[test]
fn a_stalled_handshake_does_not_block_another_client() {
    let addr = start(Limits {
        io_timeout: Duration::from_secs(2),
        request_deadline: Duration::from_secs(3),
        ..Limits::default()
    });
    // The start of a TLS record header, then silence.
    let mut staller = TcpStream::connect(addr).unwrap();
    staller.write_all(&[0x16, 0x03, 0x01]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(request(addr, "GET", "/other").status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "served in {:?} while the other handshake stalls",
        t.elapsed()
    );
    // The staller is dropped, unanswered, once its read times out.
    let received = closed_within(staller, Duration::from_secs(5));
    assert!(received.is_empty(), "{received:?}");
}

#[test]
fn stuck_clients_are_evicted_by_newcomers_and_time_out() {
    let addr = start(tight());
    // Two clients finish the handshake and send nothing: the opening stage
    // (2 places) is full.
    let mut stuck: Vec<_> = (0..2)
        .map(|_| {
            let (mut tls, _) = connect_with(addr, &[&rustls::version::TLS13]);
            tls.conn.complete_io(&mut tls.sock).unwrap();
            tls
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // A third client is served: the oldest idle one makes room.
    assert_eq!(request(addr, "GET", "/third").status, 200);
    let mut evicted = Vec::new();
    let _ = stuck.remove(0).read_to_end(&mut evicted);
    assert!(
        !evicted.starts_with(b"HTTP/1.1"),
        "the evicted client gets no answer: {:?}",
        String::from_utf8_lossy(&evicted)
    );
    // The other stuck one is answered 408 once its head deadline passes.
    for mut tls in stuck {
        let mut response = String::new();
        tls.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
    }
    assert_eq!(request(addr, "GET", "/").status, 200);
}

/// 64 connections that never finish a request head: half silent, half
/// stalled in the TLS record header.
fn idle_connections(addr: SocketAddr) -> Vec<TcpStream> {
    (0..64)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).unwrap();
            if i % 2 == 1 {
                stream.write_all(&[0x16, 0x03, 0x01]).unwrap();
            }
            stream
        })
        .collect()
}

#[test]
fn sixty_four_idle_connections_do_not_lock_out_a_request() {
    let addr = start(Limits::default());
    let idle = idle_connections(addr);
    std::thread::sleep(Duration::from_millis(200));
    for path in ["/health", "/again"] {
        let answer = exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").as_bytes(),
        );
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    drop(idle);
}

/// Counts requests in progress; each waits until released.
struct Gate {
    inside: std::sync::atomic::AtomicUsize,
    release: std::sync::Mutex<bool>,
    open: std::sync::Condvar,
}

impl Handler for Gate {
    fn class(&self, head: &Request) -> Class {
        match head.path.as_str() {
            "/health" => Class::Health,
            "/deploy" => Class::Deploy,
            _ => Class::App,
        }
    }

    fn handle(&self, request: &Request, _body: &mut Body<'_>) -> Response {
        if request.path != "/health" {
            self.inside
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut released = self.release.lock().unwrap();
            while !*released {
                released = self.open.wait(released).unwrap();
            }
        }
        Response::json(200, &request.path)
    }
}

#[test]
fn each_class_has_its_own_budget_and_one_client_cannot_take_it_all() {
    let gate = Arc::new(Gate {
        inside: Default::default(),
        release: std::sync::Mutex::new(false),
        open: std::sync::Condvar::new(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        app: Budget {
            total: 4,
            per_peer: 2,
        },
        ..Limits::default()
    };
    serve(listener, limits, unattested().server_config(), gate.clone()).unwrap();
    // Two workload requests from this address hang in the workload.
    let hanging: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || request(addr, "GET", "/app/slow").status))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while gate.inside.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the requests never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A third from the same address: 503, naming the per-client cap.
    let refused = request(addr, "GET", "/app/more");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.head.contains("\r\nRetry-After: 1"),
        "{}",
        refused.head
    );
    assert!(
        refused
            .body
            .contains("already has 2 workload (/app) requests in progress"),
        "{}",
        refused.body
    );
    // Health has its own budget.
    assert_eq!(request(addr, "GET", "/health").status, 200);
    *gate.release.lock().unwrap() = true;
    gate.open.notify_all();
    for thread in hanging {
        assert_eq!(thread.join().unwrap(), 200);
    }
    assert_eq!(request(addr, "GET", "/app/after").status, 200);
}

#[test]
fn silent_connections_are_closed_after_the_read_timeout() {
    let addr = start(tight());
    let silent = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let received = closed_within(silent, Duration::from_secs(5));
    assert!(received.is_empty(), "{received:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "closed after {:?}",
        t.elapsed()
    );
}

#[test]
fn a_handshake_trickled_byte_by_byte_is_closed_at_the_head_timeout() {
    // Default limits: each byte arrives well within the 10 s read timeout,
    // but the handshake never completes; the 5 s head timeout ends it (the
    // whole-request deadline of 30 s used to).
    let addr = start(Limits::default());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // A TLS handshake record header announcing 512 bytes, then its body.
    let bytes = [0x16, 0x03, 0x01, 0x02, 0x00]
        .into_iter()
        .chain([0x01; 512]);
    let t = Instant::now();
    let mut closed = false;
    for byte in bytes {
        if t.elapsed() > Duration::from_secs(20) {
            break;
        }
        if stream.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            other => {
                closed = true;
                assert!(other.is_err(), "the server sent something: {other:?}");
                break;
            }
        }
    }
    assert!(closed, "still open after {:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "closed after {:?}; the head timeout is 5 s",
        t.elapsed()
    );
}

#[test]
fn trickling_client_hits_the_request_deadline() {
    let addr = start(tight());
    let (mut tls, _) = connect_with(addr, &[&rustls::version::TLS13]);
    tls.conn.complete_io(&mut tls.sock).unwrap();
    let t = Instant::now();
    // One byte every 100 ms, each in its own TLS record: each read is within
    // the 300 ms I/O timeout, but the whole request never completes within
    // the 600 ms deadline. Stop sending at 800 ms.
    for byte in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if t.elapsed() > Duration::from_millis(800) || tls.write_all(&[*byte]).is_err() {
            break;
        }
        let _ = tls.flush();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
}

#[test]
fn without_a_tdx_provider_the_certificate_carries_no_quote() {
    let tls = unattested();
    let status = tls.status();
    assert!(!status.attested, "{status:?}");
    assert!(
        status.detail.contains("without a quote") && status.detail.contains("test without TDX"),
        "{status:?}"
    );
    let addr = start_with(Limits::default(), &tls);
    let answer = request(addr, "GET", "/health");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.cert_der, tls.current_cert_der());
    assert_eq!(
        CertEvidence::from_cert_der(&answer.cert_der).unwrap_err(),
        RaTlsError::MissingQuoteExtension,
        "an RA-TLS client refuses it"
    );
}

#[cfg(feature = "sim")]
mod sim {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};

    use easyenclave::attestation::ReportData;
    use easyenclave::rtmr::Measurement;
    use ee_init::tsm::sim::SimTsm;
    use ee_init::tsm::{Backend, Tsm, TsmError};

    use crate::support::tls_client;

    fn sim_tls(policy: CertPolicy) -> AgentTls {
        let measured = Arc::new(MeasuredLog::new(Box::new(SimTsm::dev().unwrap())));
        AgentTls::start(measured, policy).unwrap()
    }

    #[test]
    fn the_certificate_quote_verifies_and_binds_the_served_key() {
        let tls = sim_tls(CertPolicy::default());
        let status = tls.status();
        assert!(status.attested, "{status:?}");
        assert_eq!(status.issued, 1);
        assert!(status.detail.contains("sim quote"), "{status:?}");
        let addr = start_with(Limits::default(), &tls);
        let answer = request(addr, "GET", "/health");
        assert_eq!(answer.status, 200);
        let (evidence, _) = tls_client::verify_with_sim_root(&answer.cert_der);
        // 24 h, to the second (notAfter is whole seconds).
        let lifetime = evidence
            .not_after
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(
            lifetime > Duration::from_secs(24 * 3600 - 60)
                && lifetime <= Duration::from_secs(24 * 3600),
            "{lifetime:?}"
        );
        // The next connection gets the same certificate until renewal.
        assert_eq!(request(addr, "GET", "/").cert_der, answer.cert_der);
    }

    #[test]
    fn the_certificate_is_renewed_with_a_fresh_key_and_stays_valid() {
        // 6 s certificates, renewed after 4 s.
        let tls = sim_tls(CertPolicy {
            validity: Duration::from_secs(6),
            ..CertPolicy::default()
        });
        let addr = start_with(Limits::default(), &tls);
        let first = request(addr, "GET", "/").cert_der;
        let (first_evidence, _) = tls_client::verify_with_sim_root(&first);
        let deadline = Instant::now() + Duration::from_secs(15);
        let renewed = loop {
            assert!(Instant::now() < deadline, "not renewed: {:?}", tls.status());
            std::thread::sleep(Duration::from_millis(250));
            // Every certificate served, before and after the swap, verifies
            // and is valid at the time it is served.
            let cert = request(addr, "GET", "/").cert_der;
            tls_client::verify_with_sim_root(&cert);
            if cert != first {
                break cert;
            }
        };
        let (renewed_evidence, _) = tls_client::verify_with_sim_root(&renewed);
        assert_ne!(
            renewed_evidence.spki_der, first_evidence.spki_der,
            "a renewal brings a new key"
        );
        assert!(renewed_evidence.not_after > first_evidence.not_after);
        let status = tls.status();
        assert!(status.attested && status.issued >= 2, "{status:?}");
        assert_eq!(status.last_error, None);
    }

    /// The simulated TD, refusing its first `failures` quotes.
    struct FlakyQuotes {
        inner: SimTsm,
        failures: Arc<AtomicU32>,
    }

    impl Tsm for FlakyQuotes {
        fn backend(&self) -> Backend {
            self.inner.backend()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn extend_rtmr3(&mut self, digest: &Measurement) -> Result<(), TsmError> {
            self.inner.extend_rtmr3(digest)
        }
        fn rtmrs(&mut self) -> Result<[Measurement; 4], TsmError> {
            self.inner.rtmrs()
        }
        fn quote(&mut self, report_data: &ReportData) -> Result<Vec<u8>, TsmError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(TsmError::Unavailable("quote service not up yet".into()));
            }
            self.inner.quote(report_data)
        }
    }

    #[test]
    fn failed_quotes_at_boot_serve_no_quote_until_a_retry_gets_one() {
        let failures = Arc::new(AtomicU32::new(2));
        let tsm = FlakyQuotes {
            inner: SimTsm::dev().unwrap(),
            failures: failures.clone(),
        };
        let tls = AgentTls::start(
            Arc::new(MeasuredLog::new(Box::new(tsm))),
            CertPolicy {
                retry_first: Duration::from_millis(300),
                ..CertPolicy::default()
            },
        )
        .unwrap();
        let status = tls.status();
        assert!(!status.attested, "{status:?}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("quote service not up yet")),
            "{status:?}"
        );
        let addr = start_with(Limits::default(), &tls);
        let before = request(addr, "GET", "/").cert_der;
        assert_eq!(
            CertEvidence::from_cert_der(&before).unwrap_err(),
            RaTlsError::MissingQuoteExtension
        );
        // Retries after 300 ms (fails again) and 600 ms more (succeeds).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tls.status().attested {
            assert!(Instant::now() < deadline, "{:?}", tls.status());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        let status = tls.status();
        assert_eq!(status.last_error, None, "{status:?}");
        assert_eq!(status.issued, 2, "{status:?}");
        tls_client::verify_with_sim_root(&request(addr, "GET", "/").cert_der);
    }
}
