//! A minimal HTTP/1.1 client over `std::net::TcpStream`, just enough for readiness
//! checks and the load generator — and precise about *how* an exchange failed, which is
//! what the zero-drop counting rules of [`crate::load`] depend on.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a request may take, from connecting to the last body byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Where an `http://host:port/path` URL points.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port`, as sent in the `Host` header.
    pub authority: String,
    /// The resolved address to connect to.
    pub addr: SocketAddr,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Target {
    /// Parses a plain-HTTP URL; the port defaults to 80.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let with_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {with_port} resolves to nothing"))?;
        Ok(Target {
            authority: authority.to_string(),
            addr,
            path: path.to_string(),
        })
    }
}

/// A parsed response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// How an exchange failed. The distinction between [`Failure::ClosedEarly`] and the rest
/// decides whether a client may retry.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Connecting failed.
    Connect(String),
    /// The connection was closed (EOF or reset) before a single response byte arrived.
    ClosedEarly(String),
    /// No complete response within [`REQUEST_TIMEOUT`].
    Timeout,
    /// Some of the response arrived, then the connection ended or broke.
    Partial(String),
    /// The response is not HTTP/1.x as this client understands it.
    Malformed(String),
    /// Any other socket error.
    Io(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::ClosedEarly(e) => write!(f, "connection closed before any response byte: {e}"),
            Failure::Timeout => write!(f, "no complete response within {REQUEST_TIMEOUT:?}"),
            Failure::Partial(e) => write!(f, "partial response: {e}"),
            Failure::Malformed(e) => write!(f, "malformed response: {e}"),
            Failure::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

/// One client connection; responses are read with a deadline.
pub(crate) struct Connection {
    stream: TcpStream,
    /// Bytes received but not consumed yet.
    buf: Vec<u8>,
}

fn is_close_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Connection {
    /// Connects to `target` within [`REQUEST_TIMEOUT`].
    pub fn open(target: &Target) -> Result<Connection, Failure> {
        let stream = TcpStream::connect_timeout(&target.addr, REQUEST_TIMEOUT)
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `GET target.path` and reads the response, all within [`REQUEST_TIMEOUT`].
    pub fn get(
        &mut self,
        target: &Target,
        headers: &[(String, String)],
        keep_alive: bool,
    ) -> Result<Response, Failure> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut request = format!("GET {} HTTP/1.1\r\n", target.path);
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            request.push_str(&format!("Host: {}\r\n", target.authority));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !keep_alive {
            request.push_str("Connection: close\r\n");
        }
        request.push_str("\r\n");
        let _ = self.stream.set_write_timeout(Some(REQUEST_TIMEOUT));
        if let Err(e) = self.stream.write_all(request.as_bytes()) {
            return Err(if is_close_error(&e) {
                Failure::ClosedEarly(e.to_string())
            } else if is_timeout(&e) {
                Failure::Timeout
            } else {
                Failure::Io(e.to_string())
            });
        }
        self.read_response(deadline)
    }

    /// Reads more bytes into `buf`; `Ok(false)` on EOF. A deadline already passed is a
    /// `TimedOut` error.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(remaining))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Like `fill`, but EOF is an error too. Before any response byte (`received_any`
    /// false) EOF and reset are [`Failure::ClosedEarly`]; after some they are
    /// [`Failure::Partial`], with `what` saying where.
    fn fill_or_fail(
        &mut self,
        deadline: Instant,
        received_any: bool,
        what: &str,
    ) -> Result<(), Failure> {
        match self.fill(deadline) {
            Ok(true) => Ok(()),
            Ok(false) if received_any => Err(Failure::Partial(format!("EOF {what}"))),
            Ok(false) => Err(Failure::ClosedEarly("EOF".into())),
            Err(e) => Err(classify(&e, received_any, what)),
        }
    }

    fn read_response(&mut self, deadline: Instant) -> Result<Response, Failure> {
        let mut received_any = !self.buf.is_empty();
        loop {
            let head_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break i;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(Failure::Malformed(format!(
                        "head longer than {MAX_HEAD} bytes"
                    )));
                }
                self.fill_or_fail(deadline, received_any, "in the response head")?;
                received_any = true;
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            self.buf.drain(..head_end + 4);
            let head = Head::parse(&head)?;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue; // an interim response: the real one follows
            }
            let body = if head.status == 204 || head.status == 304 {
                Vec::new()
            } else if head.chunked {
                self.read_chunked(deadline)?
            } else if let Some(length) = head.content_length {
                while self.buf.len() < length {
                    self.fill_or_fail(deadline, true, "in the body")?;
                }
                self.buf.drain(..length).collect()
            } else {
                // No length: the body runs until the server closes.
                while self
                    .fill(deadline)
                    .map_err(|e| classify(&e, true, "in the body"))?
                {}
                let body = std::mem::take(&mut self.buf);
                return Ok(Response {
                    status: head.status,
                    body,
                    close: true,
                });
            };
            return Ok(Response {
                status: head.status,
                body,
                close: head.close,
            });
        }
    }

    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill_or_fail(deadline, true, "in a chunk size")?;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Failure::Malformed(format!("bad chunk size {line:?}")))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers, then an empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            break i;
                        }
                        self.fill_or_fail(deadline, true, "in the trailers")?;
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill_or_fail(deadline, true, "in a chunk")?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

/// The failure a socket error means, given whether any response byte arrived before it.
fn classify(e: &io::Error, received_any: bool, what: &str) -> Failure {
    if is_timeout(e) {
        Failure::Timeout
    } else if is_close_error(e) && !received_any {
        Failure::ClosedEarly(e.to_string())
    } else if is_close_error(e) {
        Failure::Partial(format!("{e} {what}"))
    } else {
        Failure::Io(e.to_string())
    }
}

/// The parts of a response head the client acts on.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

impl Head {
    fn parse(text: &str) -> Result<Head, Failure> {
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(Failure::Malformed(format!("status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure::Malformed(format!("status line {status_line:?}")))?;
        let mut head = Head {
            status,
            content_length: None,
            chunked: false,
            close: version == "HTTP/1.0",
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(Failure::Malformed(format!("header line {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.content_length = Some(
                    value
                        .parse()
                        .map_err(|_| Failure::Malformed(format!("content-length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    head.close = true;
                } else if value.contains("keep-alive") {
                    head.close = false;
                }
            }
        }
        Ok(head)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One `GET` on a fresh connection (`Connection: close`), no retry: the status and the
/// body (lossily decoded), or a description of what went wrong. A non-2xx status is
/// `Ok`; only a transport failure is `Err`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let target = Target::parse(url)?;
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let mut connection = Connection::open(&target).map_err(|e| format!("GET {url}: {e}"))?;
    let response = connection
        .get(&target, &headers, false)
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection: reads a request head, writes `reply`, closes.
    fn one_shot(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = s.write_all(reply);
        });
        url
    }

    #[test]
    fn reads_content_length_chunked_and_close_delimited_bodies() {
        let url = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv1");
        assert_eq!(get(&url, &[]).unwrap(), (200, "v1".to_string()));
        let url = one_shot(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 No\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert_eq!(get(&url, &[]).unwrap(), (503, "abcde".to_string()));
        let url = one_shot(b"HTTP/1.0 200 OK\r\n\r\nuntil close");
        assert_eq!(get(&url, &[]).unwrap(), (200, "until close".to_string()));
    }

    #[test]
    fn tells_early_close_from_partial_response() {
        let url = one_shot(b"");
        let err = get(&url, &[]).unwrap_err();
        assert!(err.contains("before any response byte"), "{err}");
        let url = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let err = get(&url, &[]).unwrap_err();
        assert!(err.contains("partial response"), "{err}");
    }

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/")
        );
        assert!(Target::parse("https://127.0.0.1/").is_err());
    }
}
