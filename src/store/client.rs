//! The handle on etcd: one connection to one member at a time, moved to the next member
//! when a call fails for a transport reason, and retried there when that is safe.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::Mutex;

use super::config::EtcdConfig;
use super::error::{etcd_message, StoreError};

struct Connection {
    client: Option<Client>,
    /// Index into the endpoint list of the member in use.
    member: usize,
    /// Bumped every time the connection is dropped, so that concurrent failures of one
    /// connection move to the next member once, not once per caller.
    generation: u64,
}

struct Inner {
    config: EtcdConfig,
    options: ConnectOptions,
    connection: Mutex<Connection>,
}

/// A handle on etcd, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Whether a failed call may be sent again to another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads and plain puts/deletes: resending is harmless.
    Always,
    /// Compare-and-swap transactions: resend only if the request cannot have arrived.
    IfNotSent,
}

/// The cause of a transport failure in a few words an operator acts on; the full error
/// chain stays for `RUST_LOG=debug`.
/// `https`: the endpoint was `https://`, where a member that speaks plain HTTP resets
/// the connection during the TLS handshake rather than saying anything about TLS.
fn describe_failure(e: &etcd_client::Error, timed_out: bool, https: bool) -> String {
    let text = format!("{e} {e:?}").to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let reset = has(&[
        "connection reset",
        "connectionreset",
        "broken pipe",
        "brokenpipe",
    ]);
    if timed_out || has(&["timed out", "timedout", "deadline"]) {
        "timed out".into()
    } else if has(&["connection refused", "connectionrefused"]) {
        "connection refused (nothing listens there)".into()
    } else if has(&["dns error", "failed to lookup", "name or service not known"]) {
        "host name not found".into()
    } else if has(&["certificate", "tls", "ssl", "handshake"]) || (https && reset) {
        "TLS failed (check https:// against http://, and the CA and client certificate)".into()
    } else if has(&["authenticat", "invalid auth token", "permission denied"]) {
        "authentication failed (check the user and password)".into()
    } else if reset {
        "connection reset".into()
    } else if has(&["http status code", "h2 protocol", "frame"]) {
        "not an etcd client endpoint (wrong port, or https:// against http://)".into()
    } else {
        let message = etcd_message(e);
        let first = message.lines().next().unwrap_or("").trim();
        first.chars().take(120).collect()
    }
}

fn not_sent(e: &etcd_client::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    matches!(e, etcd_client::Error::TransportError(_))
        || text.contains("connection refused")
        || text.contains("tcp connect error")
        || text.contains("error trying to connect")
}

fn transport_failure(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
        ),
        _ => false,
    }
}

impl Store {
    /// Prepares a connection to `config.endpoints`; connects lazily, on first use.
    pub fn new(config: EtcdConfig) -> Result<Self, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Config("no etcd endpoints configured".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        match (&config.user, &config.password) {
            (Some(user), Some(password)) => {
                options = options.with_user(user.clone(), password.clone())
            }
            (Some(_), None) => {
                return Err(StoreError::Config(
                    "etcd user given without a password".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(StoreError::Config(
                    "etcd password given without a user".into(),
                ))
            }
            (None, None) => {}
        }
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let read = |p: &PathBuf| {
                std::fs::read(p)
                    .map_err(|e| StoreError::Config(format!("reading {}: {e}", p.display())))
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
            }
            match (&config.cert_file, &config.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Config(
                        "a client certificate needs both cert_file and key_file".into(),
                    ))
                }
            }
            options = options.with_tls(tls);
        }
        Ok(Store {
            inner: Arc::new(Inner {
                config,
                options,
                connection: Mutex::new(Connection {
                    client: None,
                    member: 0,
                    generation: 0,
                }),
            }),
        })
    }

    /// The configuration this store was built from.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    pub(super) async fn client(
        &self,
    ) -> Result<(Client, u64, String), (etcd_client::Error, u64, String)> {
        let mut conn = self.inner.connection.lock().await;
        let endpoint = self.inner.config.endpoints[conn.member].clone();
        if let Some(client) = &conn.client {
            return Ok((client.clone(), conn.generation, endpoint));
        }
        let connect = Client::connect([endpoint.as_str()], Some(self.inner.options.clone()));
        match tokio::time::timeout(self.inner.config.connect_timeout * 2, connect).await {
            Ok(Ok(client)) => {
                conn.client = Some(client.clone());
                Ok((client, conn.generation, endpoint))
            }
            Ok(Err(e)) => Err((e, conn.generation, endpoint)),
            Err(_) => Err((
                etcd_client::Error::IoError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
                conn.generation,
                endpoint,
            )),
        }
    }

    /// Drops the connection of `generation` and moves to the next member.
    pub(super) async fn failed(&self, generation: u64) {
        let mut conn = self.inner.connection.lock().await;
        if conn.generation == generation {
            conn.client = None;
            conn.member = (conn.member + 1) % self.inner.config.endpoints.len();
            conn.generation += 1;
        }
    }

    /// Runs `op` against a member, moving to the next member on transport failures,
    /// until it succeeds, fails for a reason that is not the member's, or the request
    /// timeout has passed.
    pub(super) async fn call<T, F, Fut>(&self, retry: Retry, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.config.request_timeout;
        let members = self.inner.config.endpoints.len();
        let mut tried = Vec::new();
        let mut attempt = 0u32;
        loop {
            let (result, generation, endpoint) = match self.client().await {
                Ok((client, generation, endpoint)) => {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let per_member = if members > 1 {
                        remaining / 2
                    } else {
                        remaining
                    };
                    match tokio::time::timeout(
                        per_member.max(Duration::from_millis(200)),
                        op(client),
                    )
                    .await
                    {
                        Ok(r) => (r.map_err(|e| (e, false)), generation, endpoint),
                        Err(_) => (
                            Err((
                                etcd_client::Error::IoError(std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "request timed out",
                                )),
                                true,
                            )),
                            generation,
                            endpoint,
                        ),
                    }
                }
                Err((e, generation, endpoint)) => (Err((e, false)), generation, endpoint),
            };
            let (err, timed_out) = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !timed_out && !transport_failure(&err) {
                tracing::debug!(%endpoint, error = ?err, "etcd refused the request");
                return Err(StoreError::Etcd(err));
            }
            if !tried.contains(&endpoint) {
                tried.push(endpoint.clone());
            }
            tracing::debug!(%endpoint, error = ?err, "etcd call failed; trying the next member");
            self.failed(generation).await;
            let may_resend = retry == Retry::Always || (!timed_out && not_sent(&err));
            attempt += 1;
            if !may_resend {
                return Err(StoreError::OutcomeUnknown {
                    tried: tried.join(","),
                    cause: describe_failure(&err, timed_out, endpoint.starts_with("https://")),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable {
                    tried: tried.join(","),
                    cause: describe_failure(&err, timed_out, endpoint.starts_with("https://")),
                    detail: format!("{err:?}"),
                });
            }
            // Go straight to the next member; pause only after a full round.
            if attempt as usize % members == 0 {
                let pause = Duration::from_millis(50 * u64::from(attempt.min(10)));
                tokio::time::sleep(
                    pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_configured_auth_or_tls_is_refused() {
        let mut c = EtcdConfig {
            user: Some("root".into()),
            ..EtcdConfig::default()
        };
        assert!(matches!(Store::new(c.clone()), Err(StoreError::Config(_))));
        c.user = None;
        c.cert_file = Some("/nonexistent.pem".into());
        assert!(matches!(Store::new(c.clone()), Err(StoreError::Config(_))));
        c.endpoints.clear();
        assert!(matches!(Store::new(c), Err(StoreError::Config(_))));
    }
}
