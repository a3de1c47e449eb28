//! A webhook receiver on a free loopback port: it records the JSON body of every POST
//! and answers with the status the test sets (or not at all), for `discoctl canary
//! --gate` and `--notify`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// A running webhook receiver; stops taking connections on drop.
pub struct Webhook {
    port: u16,
    status: Arc<AtomicU16>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    stopped: Arc<AtomicBool>,
}

/// [`Webhook::set_status`] value that makes it answer nothing (the caller times out).
pub const NO_ANSWER: u16 = 0;

impl Webhook {
    /// Starts a receiver answering 200.
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (s, b, stop) = (status.clone(), bodies.clone(), stopped.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (s, b) = (s.clone(), b.clone());
                std::thread::spawn(move || serve(conn, &s, &b));
            }
        });
        Webhook {
            port,
            status,
            bodies,
            stopped,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The status of the answers from now on ([`NO_ANSWER`]: none).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The JSON bodies received so far, in order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        // The accept loop sees the flag at its next connection: one of our own, now.
        // It then ends, closing the listener.
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves the requests of one connection (keep-alive) until it closes.
fn serve(conn: TcpStream, status: &AtomicU16, bodies: &Mutex<Vec<serde_json::Value>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(json) = serde_json::from_slice(&body) {
            bodies.lock().unwrap().push(json);
        }
        let code = status.load(Ordering::SeqCst);
        if code == NO_ANSWER {
            // Hold the connection open, answering nothing, until the caller gives up.
            let mut sink = [0u8; 1024];
            while reader.read(&mut sink).unwrap_or(0) > 0 {}
            return;
        }
        let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nno");
        let answer = if (200..300).contains(&code) {
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string()
        } else {
            answer
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
