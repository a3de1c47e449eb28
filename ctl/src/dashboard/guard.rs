//! Who may read the dashboard and who may act through it, decided from a request's
//! headers. Pure, so that every refusal is tested.
//!
//! - Every request must name a host (`Host`) that is an IP address, `localhost`, or a
//!   name given with `--allow-host`: a page of another site whose name was made to
//!   resolve to this address (DNS rebinding) names its own host, and is refused.
//! - An action needs `--allow-actions`, the token in the `X-Disco-Token` header (a
//!   header that a cross-site form cannot send, and that a cross-site script can send
//!   only after a CORS preflight this server never allows), and, when the browser says
//!   where the request comes from (`Origin`, `Sec-Fetch-Site`), this very origin.

use axum::http::{HeaderMap, StatusCode};

/// The header that carries the token.
pub const TOKEN_HEADER: &str = "x-disco-token";

/// A request refused: the status and a message for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// The dashboard's access rules.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Host names accepted besides IP addresses and `localhost`, lowercase.
    allowed_hosts: Vec<String>,
    /// The actions' token; none when the dashboard is read-only.
    token: Option<String>,
}

impl Guard {
    pub fn new(allowed_hosts: &[String], token: Option<String>) -> Guard {
        Guard {
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            token,
        }
    }

    /// Any request: its `Host` must be one this dashboard answers to.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = header(headers, "host").unwrap_or("");
        let name = host_name(host).to_ascii_lowercase();
        let ip = name.trim_start_matches('[').trim_end_matches(']');
        if ip.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || self.allowed_hosts.contains(&name)
        {
            return Ok(());
        }
        Err(Refusal::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this dashboard does not answer to host {host:?}: open it by IP address or localhost, or start it with --allow-host {name}"
            ),
        ))
    }

    /// An action: allowed, with the token, from this origin.
    pub fn check_action(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "this dashboard is read-only: actions need `discoctl dashboard --allow-actions`",
            ));
        };
        let host = header(headers, "host").unwrap_or("");
        if let Some(origin) = header(headers, "origin") {
            let expected = format!("http://{host}");
            if !origin.eq_ignore_ascii_case(&expected) {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    format!("refused: a page of {origin} may not act here (only {expected})"),
                ));
            }
        }
        if let Some(site) = header(headers, "sec-fetch-site") {
            if !matches!(site, "same-origin" | "none") {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    format!("refused: a {site} request may not act here"),
                ));
            }
        }
        match header(headers, TOKEN_HEADER) {
            None => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "refused: no token; enter the token discoctl dashboard printed at start (or the one in --token-file)",
            )),
            Some(given) if !same(given.as_bytes(), token.as_bytes()) => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "refused: wrong token",
            )),
            Some(_) => Ok(()),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `example.org:8080` → `example.org`; `[::1]:8080` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Equal, in a time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new token: 32 random bytes from the kernel, as hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token in `path`: its first line, at least 16 characters.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "{}: the token must be at least 16 printable characters on the first line",
            path.display()
        );
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Header<'a> = (&'static str, &'a str);

    fn headers(pairs: &[Header]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    const TOKEN: &str = "0123456789abcdef0123";

    fn guard() -> Guard {
        Guard::new(&["Dash.Example.org".into()], Some(TOKEN.into()))
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_allowed_names() {
        let g = guard();
        for host in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "10.1.2.3",
            "dash.example.org:8080",
        ] {
            assert_eq!(g.check_host(&headers(&[("host", host)])), Ok(()), "{host}");
        }
        for host in ["evil.example:8080", "localhost.evil.example", ""] {
            let refused = g.check_host(&headers(&[("host", host)])).unwrap_err();
            assert_eq!(refused.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        }
        assert!(g.check_host(&HeaderMap::new()).is_err());
    }

    #[test]
    fn actions_need_the_flag_the_token_and_this_origin() {
        let ok = [("host", "127.0.0.1:8080"), ("x-disco-token", TOKEN)];
        assert_eq!(guard().check_action(&headers(&ok)), Ok(()));
        let same_origin = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
            ("x-disco-token", TOKEN),
        ];
        assert_eq!(guard().check_action(&headers(&same_origin)), Ok(()));

        let read_only = Guard::new(&[], None);
        let refused = read_only.check_action(&headers(&ok)).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.message.contains("--allow-actions"), "{refused:?}");

        let cases: [(&[Header], StatusCode, &str); 5] = [
            (
                &[("host", "127.0.0.1:8080")],
                StatusCode::UNAUTHORIZED,
                "no token",
            ),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("x-disco-token", "0123456789abcdef0124"),
                ],
                StatusCode::UNAUTHORIZED,
                "wrong token",
            ),
            (
                &[("host", "127.0.0.1:8080"), ("x-disco-token", "short")],
                StatusCode::UNAUTHORIZED,
                "wrong token",
            ),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example"),
                    ("x-disco-token", TOKEN),
                ],
                StatusCode::FORBIDDEN,
                "evil.example",
            ),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("sec-fetch-site", "cross-site"),
                    ("x-disco-token", TOKEN),
                ],
                StatusCode::FORBIDDEN,
                "cross-site",
            ),
        ];
        for (h, status, says) in cases {
            let refused = guard().check_action(&headers(h)).unwrap_err();
            assert_eq!(refused.status, status, "{h:?}");
            assert!(refused.message.contains(says), "{h:?}: {refused:?}");
        }
    }

    #[test]
    fn tokens_are_long_random_hex_and_token_files_are_checked() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        assert_eq!(read_token(&path).unwrap(), TOKEN);
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_token(&path)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        assert!(read_token(&dir.path().join("missing")).is_err());
    }
}
