//! A minimal QMP (QEMU Machine Protocol) client: enough to know QEMU is up,
//! ask its run state and request an ACPI power-down.
//!
//! Protocol (QEMU `docs/interop/qmp-spec.rst`): on connect QEMU sends a
//! greeting `{"QMP": {...}}`; the client must send `qmp_capabilities` before
//! other commands. Each message is one JSON object on one line; replies are
//! `{"return": ...}` or `{"error": {"class", "desc"}}`, and asynchronous
//! `{"event": ...}` messages may arrive in between.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

/// Longest QMP message read; QEMU's replies to the commands used here are tiny.
const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;

/// QMP failures.
#[derive(Debug, Error)]
pub enum QmpError {
    /// Connecting or talking to the socket failed.
    #[error("QMP socket {path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU sent something that is not QMP.
    #[error("QMP socket {path}: {problem}")]
    Protocol {
        /// The socket.
        path: String,
        /// What was wrong.
        problem: String,
    },
    /// QEMU refused a command.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// A QMP session in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    path: String,
}

impl Qmp {
    /// Connect, read the greeting and enter command mode. Every read and
    /// write gives up after `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let name = path.display().to_string();
        let io = |source| QmpError::Io {
            path: name.clone(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            path: name,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.protocol(format!("expected a greeting, got {greeting}")));
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    fn protocol(&self, problem: String) -> QmpError {
        QmpError::Protocol {
            path: self.path.clone(),
            problem,
        }
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let read = (&mut self.reader)
            .take(MAX_MESSAGE_BYTES)
            .read_line(&mut line)
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        if read == 0 {
            return Err(self.protocol("connection closed".to_owned()));
        }
        if !line.ends_with('\n') {
            return Err(self.protocol(format!(
                "message longer than {MAX_MESSAGE_BYTES} bytes or cut off"
            )));
        }
        serde_json::from_str(&line).map_err(|e| self.protocol(format!("not JSON: {e}")))
    }

    /// Run `command` (no arguments) and return its `return` value.
    pub fn execute(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command }).to_string();
        request.push('\n');
        self.writer
            .write_all(request.as_bytes())
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        loop {
            let mut message = self.read_message()?;
            if message.get("event").is_some() {
                continue;
            }
            if let Some(value) = message.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = message.get("error") {
                let field = |key: &str| {
                    error
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(self.protocol(format!("unexpected reply {message}")));
        }
    }

    /// The VM's run state from `query-status` (`running`, `paused`, `shutdown`, ...).
    pub fn run_state(&mut self) -> Result<String, QmpError> {
        let status = self.execute("query-status")?;
        status
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.protocol(format!("query-status returned {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A scripted QMP server: sends the greeting, then answers each request
    /// line with the next canned reply lines.
    fn serve(path: &Path, replies: Vec<Vec<&'static str>>) -> std::thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut requests = Vec::new();
            for reply in replies {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                requests.push(line.trim().to_owned());
                for r in reply {
                    writer.write_all(r.as_bytes()).unwrap();
                    writer.write_all(b"\r\n").unwrap();
                }
            }
            requests
        })
    }

    #[test]
    fn handshake_events_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = serve(
            &path,
            vec![
                vec![r#"{"return": {}}"#],
                vec![
                    r#"{"event": "RESUME", "data": {}}"#,
                    r#"{"return": {"status": "running", "running": true}}"#,
                ],
                vec![r#"{"error": {"class": "GenericError", "desc": "nope"}}"#],
            ],
        );
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.run_state().unwrap(), "running");
        let err = qmp.execute("system_powerdown").unwrap_err().to_string();
        assert_eq!(
            err,
            "QMP command system_powerdown failed: GenericError: nope"
        );
        let requests = server.join().unwrap();
        assert_eq!(
            requests,
            [
                r#"{"execute":"qmp_capabilities"}"#,
                r#"{"execute":"query-status"}"#,
                r#"{"execute":"system_powerdown"}"#
            ]
        );
    }

    #[test]
    fn not_qmp_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"hello\n").unwrap();
        });
        let err = Qmp::connect(&path, Duration::from_secs(5))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not JSON"), "{err}");
        server.join().unwrap();
    }
}
