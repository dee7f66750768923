//! The HTTP server's resource limits over real sockets: stuck or slow
//! clients time out and cannot starve other clients beyond the slot cap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ee_init::http::{serve, Handler, Limits, Request, Response};

struct Echo;

impl Handler for Echo {
    fn handle(&self, request: &Request) -> Response {
        Response::json(
            200,
            &serde_json::json!({ "path": request.path, "query": request.query }),
        )
    }
}

fn start(limits: Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, limits, Arc::new(Echo)).unwrap();
    addr
}

fn tight() -> Limits {
    Limits {
        io_timeout: Duration::from_millis(300),
        request_deadline: Duration::from_millis(600),
        max_connections: 2,
        ..Limits::default()
    }
}

/// Send `raw`, read the whole response (the server closes after one).
fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn status(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

#[test]
fn serves_one_request_per_connection() {
    let addr = start(Limits::default());
    let response = exchange(addr, b"GET /x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status(&response), 200);
    assert!(response.contains("Connection: close\r\n"));
    assert!(
        response.ends_with("{\"path\":\"/x\",\"query\":\"y=1\"}\n"),
        "{response}"
    );
}

#[test]
fn errors_are_answered_over_the_socket() {
    let addr = start(Limits::default());
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let response = exchange(addr, huge.as_bytes());
    assert_eq!(status(&response), 431, "{response}");
    assert!(response.contains("header section larger than 16384 bytes"));
    assert_eq!(
        status(&exchange(addr, b"BREW /pot HTCPCP/1.0\r\n\r\n")),
        400
    );
}

#[test]
fn stuck_clients_time_out_and_cannot_take_more_than_the_cap() {
    let addr = start(tight());
    // Two clients connect and send nothing: both slots taken.
    let stuck: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let response = exchange(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status(&response), 503, "{response}");
    assert!(response.contains("too many connections"));
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "the refusal is immediate"
    );

    // The stuck ones are answered 408 once their deadline passes...
    for mut s in stuck {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        assert_eq!(status(&response), 408, "{response}");
    }
    // ...which frees their slots.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(status(&exchange(addr, b"GET / HTTP/1.1\r\n\r\n")), 200);
}

#[test]
fn trickling_client_hits_the_request_deadline() {
    let addr = start(tight());
    let mut stream = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    // One byte every 100 ms: each read is within the 300 ms I/O timeout, but
    // the whole request never completes within the 600 ms deadline.
    // Stop sending at 800 ms: the server answers at the deadline and keeps
    // draining while bytes arrive, then closes cleanly once they stop.
    for byte in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if t.elapsed() > Duration::from_millis(800) || stream.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert_eq!(status(&response), 408, "{response}");
}
