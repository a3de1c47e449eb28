//! Validation of everything that reaches a configuration file: names, addresses,
//! health paths, dark-canary match values. Anything that could inject configuration
//! (whitespace, newlines, `#`, `;`, braces, quotes, control characters) is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a name, address or value was refused. The caller adds the key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: {reason}")]
pub struct Invalid {
    /// What was being validated ("app name", "address", ...).
    pub what: &'static str,
    /// The offending value, truncated to a readable length.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl Invalid {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let mut shown: String = value.chars().take(80).collect();
        if value.chars().count() > 80 {
            shown.push('…');
        }
        Invalid {
            what,
            value: shown,
            reason: reason.into(),
        }
    }
}

/// Describes the first character of `s` that could break out of a configuration value.
fn forbidden_char(s: &str) -> Option<String> {
    s.chars().find_map(|c| {
        let why = match c {
            c if c.is_control() => format!("control character {:?}", c),
            c if c.is_whitespace() => "whitespace".to_string(),
            '#' | ';' | '{' | '}' | '"' | '\'' | '`' | '\\' | '$' => format!("character {c:?}"),
            _ => return None,
        };
        Some(why)
    })
}

/// A name: app, instance, version or agent id. `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`.
pub fn name(what: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::new(what, s, "must not be empty"));
    }
    if let Some(why) = forbidden_char(s) {
        return Err(Invalid::new(what, s, format!("contains {why}")));
    }
    if s.len() > 63 {
        return Err(Invalid::new(what, s, "is longer than 63 characters"));
    }
    let first = s.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return Err(Invalid::new(what, s, "must start with a letter or digit"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Invalid::new(
            what,
            s,
            format!("contains {c:?}; allowed: letters, digits, '.', '_', '-'"),
        ));
    }
    Ok(())
}

/// The host part of an address.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Host {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (written `[..]` in `host:port`).
    V6(Ipv6Addr),
    /// A DNS name.
    Dns(String),
}

/// A validated `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// The host.
    pub host: Host,
    /// The port, 1–65535.
    pub port: u16,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Host::V4(ip) => write!(f, "{ip}:{}", self.port),
            Host::V6(ip) => write!(f, "[{ip}]:{}", self.port),
            Host::Dns(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn dns_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) && !s.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses and validates `host:port`: IPv4, `[IPv6]` or a DNS name; port 1–65535.
pub fn address(s: &str) -> Result<Address, Invalid> {
    const WHAT: &str = "address";
    if let Some(why) = forbidden_char(s) {
        return Err(Invalid::new(WHAT, s, format!("contains {why}")));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, port)) = rest.split_once("]:") else {
            return Err(Invalid::new(WHAT, s, "expected [IPv6]:port"));
        };
        let ip: Ipv6Addr = v6
            .parse()
            .map_err(|_| Invalid::new(WHAT, s, format!("{v6:?} is not an IPv6 address")))?;
        (Host::V6(ip), port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(Invalid::new(WHAT, s, "expected host:port"));
        };
        if host.contains(':') {
            return Err(Invalid::new(
                WHAT,
                s,
                "IPv6 addresses must be written [addr]:port",
            ));
        }
        let host = if let Ok(ip) = host.parse::<Ipv4Addr>() {
            Host::V4(ip)
        } else if dns_name(host) {
            Host::Dns(host.to_ascii_lowercase())
        } else {
            return Err(Invalid::new(
                WHAT,
                s,
                format!("{host:?} is neither an IPv4 address nor a DNS name"),
            ));
        };
        (host, port)
    };
    let port: u16 = match port.parse() {
        Ok(p) if p >= 1 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => {
            return Err(Invalid::new(
                WHAT,
                s,
                format!("port {port:?} is not in 1-65535"),
            ))
        }
    };
    Ok(Address { host, port })
}

/// Where a proxy listens: an address as [`address`] takes, whose host is an IP literal
/// (IPv4 or `[IPv6]`). HAProxy and nginx resolve a listen name only when they load the
/// file, and one that does not resolve fails the whole file, every app with it.
pub fn listen_address(s: &str) -> Result<Address, Invalid> {
    let parsed = address(s)?;
    if matches!(parsed.host, Host::Dns(_)) {
        return Err(Invalid::new(
            "listen address",
            s,
            "must be an IP address and port (IPv4 or [IPv6]), not a name: a name that does not resolve would fail the whole proxy configuration",
        ));
    }
    Ok(parsed)
}

/// A health-check path: starts with `/`, at most 256 characters of
/// `A-Za-z0-9 - . _ ~ / % ? = &`.
pub fn health_path(s: &str) -> Result<(), Invalid> {
    const WHAT: &str = "health path";
    if let Some(why) = forbidden_char(s) {
        return Err(Invalid::new(WHAT, s, format!("contains {why}")));
    }
    if !s.starts_with('/') {
        return Err(Invalid::new(WHAT, s, "must start with '/'"));
    }
    if s.len() > 256 {
        return Err(Invalid::new(WHAT, s, "is longer than 256 characters"));
    }
    if let Some(c) = s.chars().find(|c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '-' | '.' | '_' | '~' | '/' | '%' | '?' | '=' | '&'))
    }) {
        return Err(Invalid::new(WHAT, s, format!("contains {c:?}")));
    }
    Ok(())
}

/// An HTTP header or cookie name (an RFC 7230 token, restricted to `A-Za-z0-9-_`).
pub fn token(what: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 64 {
        return Err(Invalid::new(what, s, "must be 1-64 characters"));
    }
    if let Some(why) = forbidden_char(s) {
        return Err(Invalid::new(what, s, format!("contains {why}")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(Invalid::new(what, s, format!("contains {c:?}")));
    }
    Ok(())
}

/// A header or cookie value to match: 1–128 characters of `A-Za-z0-9 . _ ~ : / = + -`.
pub fn match_value(what: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 128 {
        return Err(Invalid::new(what, s, "must be 1-128 characters"));
    }
    if let Some(why) = forbidden_char(s) {
        return Err(Invalid::new(what, s, format!("contains {why}")));
    }
    if let Some(c) = s.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | ':' | '/' | '=' | '+' | '-'))
    }) {
        return Err(Invalid::new(what, s, format!("contains {c:?}")));
    }
    Ok(())
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address means a single host.
pub fn cidr(s: &str) -> Result<(IpAddr, u8), Invalid> {
    const WHAT: &str = "network";
    if let Some(why) = forbidden_char(s) {
        return Err(Invalid::new(WHAT, s, format!("contains {why}")));
    }
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| Invalid::new(WHAT, s, format!("{ip:?} is not an IP address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && l.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(Invalid::new(
                    WHAT,
                    s,
                    format!("prefix length {l:?} is not in 0-{max}"),
                ))
            }
        },
    };
    Ok((ip, len))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_listen_address_is_an_ip_literal() {
        assert!(super::listen_address("0.0.0.0:80").is_ok());
        assert!(super::listen_address("[::]:443").is_ok());
        let e = super::listen_address("lb.example.com:80").unwrap_err();
        assert!(e.to_string().contains("not a name"), "{e}");
        assert!(
            super::address("lb.example.com:80").is_ok(),
            "endpoints may be names"
        );
    }

    use super::*;

    #[test]
    fn accepts_good_names_and_addresses() {
        for n in ["app1", "v2", "a", "A.b_c-9", &"x".repeat(63)] {
            name("app name", n).unwrap();
        }
        for (a, shown) in [
            ("10.0.0.5:8081", "10.0.0.5:8081"),
            ("[::1]:80", "[::1]:80"),
            ("[fd00::5]:65535", "[fd00::5]:65535"),
            ("App-1.Example.com:443", "app-1.example.com:443"),
            ("localhost:1", "localhost:1"),
        ] {
            assert_eq!(address(a).unwrap().to_string(), shown);
        }
        health_path("/healthz?full=1&x=%20").unwrap();
        assert_eq!(cidr("10.0.0.0/8").unwrap().1, 8);
        assert_eq!(cidr("::1").unwrap().1, 128);
    }

    /// Every refused input, with the reason it is refused. Injection attempts first.
    #[test]
    fn refuses_bad_input_with_a_reason() {
        let cases: Vec<(Result<(), Invalid>, &str)> = vec![
            (
                name("app name", "app1\n  server evil 6.6.6.6:80"),
                "control character",
            ),
            (name("app name", "app 1"), "whitespace"),
            (name("app name", "app#1"), "'#'"),
            (name("app name", "app;1"), "';'"),
            (name("app name", "app{"), "'{'"),
            (name("app name", "app}"), "'}'"),
            (name("app name", "app\"1"), "'\"'"),
            (name("app name", "app'1"), "'\\''"),
            (name("app name", "a\u{0}b"), "control character"),
            (name("app name", "a\tb"), "control character"),
            (name("app name", ""), "must not be empty"),
            (
                name("app name", "-app"),
                "must start with a letter or digit",
            ),
            (
                name("app name", ".app"),
                "must start with a letter or digit",
            ),
            (name("app name", &"x".repeat(64)), "longer than 63"),
            (name("version", "v2/../x"), "'/'"),
            (name("version", "v2:1"), "':'"),
            (name("version", "v2$x"), "'$'"),
            (name("version", "vé"), "'é'"),
            (
                address("10.0.0.5:8081\nbackend evil").map(drop),
                "control character",
            ),
            (address("10.0.0.5:8081 check").map(drop), "whitespace"),
            (address("10.0.0.5:8081;").map(drop), "';'"),
            (address("10.0.0.5").map(drop), "expected host:port"),
            (address("10.0.0.5:0").map(drop), "not in 1-65535"),
            (address("10.0.0.5:65536").map(drop), "not in 1-65535"),
            (address("10.0.0.5:+80").map(drop), "not in 1-65535"),
            (address("::1:80").map(drop), "must be written [addr]:port"),
            (address("[zz::1]:80").map(drop), "not an IPv6 address"),
            (address("[::1]80").map(drop), "expected [IPv6]:port"),
            (
                address("300.1.1.1:80").map(drop),
                "neither an IPv4 address nor a DNS name",
            ),
            (
                address("-bad.example:80").map(drop),
                "neither an IPv4 address nor a DNS name",
            ),
            (
                address("a_b.example:80").map(drop),
                "neither an IPv4 address nor a DNS name",
            ),
            (
                address(":80").map(drop),
                "neither an IPv4 address nor a DNS name",
            ),
            (health_path("healthz"), "must start with '/'"),
            (health_path("/health z"), "whitespace"),
            (health_path("/h\r\nHost: evil"), "control character"),
            (health_path("/h#frag"), "'#'"),
            (health_path("/h\"x"), "'\"'"),
            (health_path("/h<x>"), "'<'"),
            (token("header name", "X-Canary:"), "':'"),
            (token("header name", "X Canary"), "whitespace"),
            (match_value("header value", "1 } server x"), "whitespace"),
            (match_value("header value", "a\"b"), "'\"'"),
            (match_value("cookie value", ""), "must be 1-128"),
            (cidr("10.0.0.0/33").map(drop), "not in 0-32"),
            (cidr("10.0.0.0/8;").map(drop), "';'"),
            (cidr("example.com/8").map(drop), "not an IP address"),
        ];
        assert!(cases.len() >= 30);
        for (i, (result, reason)) in cases.into_iter().enumerate() {
            let err = result.expect_err(&format!("case {i} should be refused"));
            assert!(
                err.to_string().contains(reason),
                "case {i}: error {err:?} should mention {reason:?}"
            );
        }
    }
}
