//! A TCP relay on a free loopback port in front of a service (etcd, mostly), for fault
//! injection: it passes bytes through, freezes (holds every byte, in both directions,
//! as a host cut from the network would seem), drops the replies only (a request
//! arrives and is applied, its answer never comes), or cuts every open connection.
//! Threads and blocking sockets only; everything stops on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the relay does with the bytes of every connection, open or new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Passes everything through.
    Pass,
    /// Holds everything: no byte is passed on in either direction (the kernel buffers
    /// them), so connections stay open and silent; [`Mode::Pass`] lets them through.
    Freeze,
    /// Passes requests to the service and throws its replies away.
    DropReplies,
}

struct Shared {
    /// Held for reading by a pump from its look at the mode until its write is done,
    /// so that once [`Relay::set`] returns no byte moves under the old mode.
    mode: RwLock<Mode>,
    stop: AtomicBool,
    /// Pump threads still running, two per connection.
    pumps: AtomicUsize,
    /// Both ends of every connection, to cut them.
    streams: Mutex<Vec<TcpStream>>,
}

/// A relay to one upstream; stopped on drop.
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay to `upstream` (`host:port`, or a URL such as
    /// `http://127.0.0.1:2379`) in [`Mode::Pass`].
    pub fn start(upstream: &str) -> Relay {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the relay");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: RwLock::new(Mode::Pass),
            stop: AtomicBool::new(false),
            pumps: AtomicUsize::new(0),
            streams: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, &upstream, shared))
        };
        Relay {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>`, to use as the service's endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets what happens to the bytes of every connection from now on.
    pub fn set(&self, mode: Mode) {
        *self.shared.mode.write().unwrap() = mode;
    }

    /// Connections with bytes still moving in at least one direction.
    pub fn open_connections(&self) -> usize {
        self.shared.pumps.load(Ordering::SeqCst).div_ceil(2)
    }

    /// Closes every open connection (both sides see a reset or end of stream); new
    /// connections are accepted as usual.
    pub fn cut(&self) {
        for s in self.shared.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: &str, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let Ok(server) = TcpStream::connect(upstream) else {
            continue; // the client sees its connection closed
        };
        client.set_nonblocking(false).unwrap();
        for s in [&client, &server] {
            s.set_nodelay(true).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        }
        {
            let mut streams = shared.streams.lock().unwrap();
            streams.push(client.try_clone().unwrap());
            streams.push(server.try_clone().unwrap());
        }
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        shared.pumps.fetch_add(2, Ordering::SeqCst);
        let up = shared.clone();
        std::thread::spawn(move || pump(client, server, false, up));
        let down = shared.clone();
        std::thread::spawn(move || pump(s2, c2, true, down));
    }
}

/// Copies `from` to `to` as the mode says until either side closes or the relay stops.
fn pump(mut from: TcpStream, mut to: TcpStream, replies: bool, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    'read: while !shared.stop.load(Ordering::SeqCst) {
        if *shared.mode.read().unwrap() == Mode::Freeze {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        // The mode may have changed during the read: the bytes follow the new one.
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                break 'read;
            }
            let mode = shared.mode.read().unwrap();
            match *mode {
                Mode::Freeze => {
                    drop(mode);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Mode::DropReplies if replies => continue 'read,
                _ => {
                    if to.write_all(&buf[..n]).is_err() {
                        break 'read;
                    }
                    continue 'read;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.pumps.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> (u16, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        (port, t)
    }

    fn read_some(s: &mut TcpStream) -> Option<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    #[test]
    fn passes_freezes_drops_replies_and_cuts() {
        let (port, _server) = echo_server();
        let relay = Relay::start(&format!("127.0.0.1:{port}"));
        let mut c = TcpStream::connect(relay.url().trim_start_matches("http://")).unwrap();
        c.write_all(b"one").unwrap();
        assert_eq!(read_some(&mut c).as_deref(), Some(&b"one"[..]));

        relay.set(Mode::Freeze);
        c.write_all(b"two").unwrap();
        assert_eq!(read_some(&mut c), None, "frozen: nothing comes back");
        relay.set(Mode::Pass);
        assert_eq!(
            read_some(&mut c).as_deref(),
            Some(&b"two"[..]),
            "held, then passed"
        );

        relay.set(Mode::DropReplies);
        c.write_all(b"three").unwrap();
        assert_eq!(read_some(&mut c), None, "the reply is dropped");

        relay.cut();
        assert_eq!(
            read_some(&mut c).as_deref(),
            Some(&b""[..]),
            "cut: end of stream"
        );
    }
}
