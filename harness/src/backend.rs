//! A tiny versioned HTTP/1.1 backend on a free loopback port: it answers every path with
//! its version string, so a test can tell from a response body which backend a proxy
//! chose; its health, error rate and latency can be changed, and it can be killed
//! mid-test.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Stack size of a connection thread: small, so that hundreds of connections are cheap.
const CONNECTION_STACK: usize = 256 * 1024;

/// State shared by the accept thread, the connection threads and the handle.
struct Shared {
    version: String,
    healthy: AtomicBool,
    /// The error rate as `f64` bits.
    error_rate: AtomicU64,
    /// How long each non-health request waits before its answer, in µs.
    latency_us: AtomicU64,
    /// Non-health requests received (also numbers them for the error rate).
    requests: AtomicU64,
    connections: Mutex<Connections>,
}

/// The open connections, so that `stop` can close them all.
#[derive(Default)]
struct Connections {
    stopped: bool,
    next_id: u64,
    open: HashMap<u64, TcpStream>,
}

/// A running backend. Dropping it (or [`Backend::stop`]) closes the listener and every
/// connection, as if the process had been killed.
pub struct Backend {
    addr: String,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl Backend {
    /// Starts a backend answering `version` on a free 127.0.0.1 port.
    pub fn start(version: &str) -> Backend {
        Backend::start_on("127.0.0.1:0", version).expect("binding a backend port")
    }

    /// Starts a backend answering `version` on `listen` (the demo app uses this).
    pub fn start_on(listen: &str, version: &str) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr().expect("backend address").to_string();
        let shared = Arc::new(Shared {
            version: version.to_string(),
            healthy: AtomicBool::new(true),
            error_rate: AtomicU64::new(0f64.to_bits()),
            latency_us: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            connections: Mutex::new(Connections::default()),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("backend-{version}"))
                .spawn(move || accept_loop(listener, shared))
                .expect("spawning the backend accept thread")
        };
        Ok(Backend {
            addr,
            shared,
            acceptor: Mutex::new(Some(acceptor)),
        })
    }

    /// `127.0.0.1:port`, for a proxy's server line.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The version string every response body carries.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// `false` makes `/healthz` answer 503 (and `true` 200 "ok" again).
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// The share (0.0–1.0) of non-health requests answered 500, spread evenly and
    /// deterministically: with 0.25 exactly every 4th request fails.
    pub fn set_error_rate(&self, rate: f64) {
        let rate = rate.clamp(0.0, 1.0);
        self.shared
            .error_rate
            .store(rate.to_bits(), Ordering::SeqCst);
    }

    /// How long every later non-health request waits before it is answered (each
    /// connection has its own thread: others are not held up).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared
            .latency_us
            .store(latency.as_micros() as u64, Ordering::SeqCst);
    }

    /// Requests received so far, not counting `/healthz`.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection (idempotent). Afterwards new
    /// connections are refused and requests in flight see their connection closed.
    pub fn stop(&self) {
        {
            let mut connections = lock(&self.shared.connections);
            if connections.stopped {
                return;
            }
            connections.stopped = true;
            for stream in connections.open.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            connections.open.clear();
        }
        // Wake the accept thread so that it sees `stopped` and drops the listener.
        let _ = TcpStream::connect(&self.addr);
        if let Some(acceptor) = lock(&self.acceptor).take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            if lock(&shared.connections).stopped {
                return;
            }
            // Out of descriptors, say: back off instead of spinning.
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        let id = {
            let mut connections = lock(&shared.connections);
            if connections.stopped {
                return; // drops the listener: the port is closed from here on
            }
            let Ok(handle) = stream.try_clone() else {
                continue;
            };
            connections.next_id += 1;
            let id = connections.next_id;
            connections.open.insert(id, handle);
            id
        };
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _ = serve(stream, &conn_shared);
                lock(&conn_shared.connections).open.remove(&id);
            });
        if spawned.is_err() {
            if let Some(s) = lock(&shared.connections).open.remove(&id) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Serves requests on one connection until the client or `stop` closes it.
fn serve(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_HEAD {
                return Ok(());
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let request = Request::parse(&String::from_utf8_lossy(&buf[..head_end]));
        buf.drain(..head_end + 4);
        // Discard a request body, if any.
        while buf.len() < request.content_length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..request.content_length);

        let (status, body) = respond(&request.path, shared);
        let reason = match status {
            200 => "OK",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let connection = if request.close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes())?;
        if request.close {
            let _ = stream.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

/// Status and body for `path`.
fn respond(path: &str, shared: &Shared) -> (u16, String) {
    if path == "/healthz" || path.starts_with("/healthz?") {
        return if shared.healthy.load(Ordering::SeqCst) {
            (200, "ok".into())
        } else {
            (503, "unhealthy".into())
        };
    }
    let latency_us = shared.latency_us.load(Ordering::SeqCst);
    if latency_us > 0 {
        std::thread::sleep(std::time::Duration::from_micros(latency_us));
    }
    let number = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let rate = f64::from_bits(shared.error_rate.load(Ordering::SeqCst));
    // Request `number` fails when it crosses the next multiple of 1/rate: an exact,
    // evenly spread share.
    let fails = (number as f64 * rate).floor() > ((number - 1) as f64 * rate).floor();
    if fails {
        (500, format!("{} error", shared.version))
    } else {
        (200, shared.version.clone())
    }
}

/// The parts of a request the backend acts on.
struct Request {
    path: String,
    content_length: usize,
    /// The client asked to close (or spoke HTTP/1.0 without keep-alive).
    close: bool,
}

impl Request {
    fn parse(head: &str) -> Request {
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let _method = parts.next();
        let path = parts.next().unwrap_or("/").to_string();
        let version = parts.next().unwrap_or("HTTP/1.1");
        let mut request = Request {
            path,
            content_length: 0,
            close: version == "HTTP/1.0",
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                request.content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    request.close = true;
                } else if value.contains("keep-alive") {
                    request.close = false;
                }
            }
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::get;

    #[test]
    fn answers_version_health_and_errors() {
        let backend = Backend::start("v2");
        let url = format!("http://{}", backend.addr());
        assert_eq!(
            get(&format!("{url}/any/path"), &[]).unwrap(),
            (200, "v2".into())
        );
        assert_eq!(
            get(&format!("{url}/healthz"), &[]).unwrap(),
            (200, "ok".into())
        );
        backend.set_healthy(false);
        assert_eq!(get(&format!("{url}/healthz"), &[]).unwrap().0, 503);
        backend.set_error_rate(0.25);
        let statuses: Vec<u16> = (0..8).map(|_| get(&url, &[]).unwrap().0).collect();
        assert_eq!(
            statuses.iter().filter(|&&s| s == 500).count(),
            2,
            "{statuses:?}"
        );
        assert_eq!(backend.requests(), 9);
    }

    #[test]
    fn keeps_connections_alive_and_closes_them_on_stop() {
        let backend = Backend::start("v1");
        let mut s = TcpStream::connect(backend.addr()).unwrap();
        let mut reply = [0u8; 256];
        for _ in 0..3 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let n = s.read(&mut reply).unwrap();
            assert!(reply[..n].ends_with(b"\r\n\r\nv1"));
        }
        backend.stop();
        // The kept-alive connection is closed, and the port refuses new ones.
        assert_eq!(s.read(&mut reply).unwrap_or(0), 0);
        assert!(TcpStream::connect(backend.addr()).is_err());
    }

    #[test]
    fn serves_hundreds_of_concurrent_connections() {
        let backend = Backend::start("v1");
        let mut streams: Vec<TcpStream> = (0..300)
            .map(|_| TcpStream::connect(backend.addr()).unwrap())
            .collect();
        for s in &mut streams {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        let mut reply = [0u8; 256];
        for s in &mut streams {
            let n = s.read(&mut reply).unwrap();
            assert!(reply[..n].ends_with(b"v1"));
        }
        assert_eq!(backend.requests(), 300);
    }
}
