//! etcd access: one connection at a time to one member, moved to the next member when
//! a call fails for a transport reason, so that disco stays available while a minority
//! of members is down (etcd-client's own balancer keeps dead members in rotation).
//! The watch resumes from the last revision it delivered after any disconnect and, when
//! that revision was compacted away, re-reads the whole prefix and says so.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions, SortOrder,
    SortTarget, WatchOptions,
};
pub use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnResponse};
use tokio::sync::{mpsc, Mutex};

use crate::snapshot::Change;

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the members, e.g. `http://10.0.0.1:2379`. Default: `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// User name for etcd auth. Default: none.
    pub user: Option<String>,
    /// Password for etcd auth. Default: none.
    pub password: Option<String>,
    /// PEM file of the CA that signed the members' certificates (enables TLS). Default: none.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS. Default: none.
    pub cert_file: Option<PathBuf>,
    /// PEM key of the client certificate. Default: none.
    pub key_file: Option<PathBuf>,
    /// Bound on each request, including retries on other members. Default: 5s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bound on connecting to one member. Default: 2s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            user: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Every member tried was unreachable or unavailable.
    #[error("etcd unavailable (tried {tried}): {cause}")]
    Unavailable {
        /// The endpoints tried, comma separated.
        tried: String,
        /// The last failure in a few words: connection refused, timed out, TLS, ...
        cause: String,
        /// The last error with its whole chain (logged at debug level).
        detail: String,
    },
    /// A write that is not safe to send twice (a transaction) failed after it may have
    /// reached etcd: it may or may not have been applied. [`crate::change::ChangeSet`]
    /// finds out which with a linearizable read.
    #[error("etcd did not answer a write that may have been applied (tried {tried}): {cause}")]
    OutcomeUnknown {
        /// The endpoints tried, comma separated.
        tried: String,
        /// The failure in a few words.
        cause: String,
    },
    /// etcd answered with an error that retrying elsewhere does not fix.
    #[error("etcd: {}", etcd_message(.0))]
    Etcd(etcd_client::Error),
    /// The client configuration is unusable (no endpoints, unreadable TLS files).
    #[error("etcd client configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// True when etcd refused a request because the lease it names no longer exists
    /// (it expired while the holder could not reach etcd, or was revoked).
    pub fn is_lease_not_found(&self) -> bool {
        match self {
            StoreError::Etcd(etcd_client::Error::GRpcStatus(s)) => {
                s.message().contains("lease not found")
            }
            // What a keep-alive of an unknown lease answers.
            StoreError::Etcd(etcd_client::Error::LeaseKeepAliveError(m)) => {
                m.contains("lease not found")
            }
            _ => false,
        }
    }
}

/// One key/value as read, with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The full key.
    pub key: String,
    /// The raw value.
    pub value: Vec<u8>,
    /// The revision of the last write.
    pub mod_revision: i64,
    /// The revision the key was created at.
    pub create_revision: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// What a watch delivers, in revision order. Nothing is skipped silently: either every
/// change arrives as `Changes`, or a `Resync` replaces the whole state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchUpdate {
    /// Changes up to and including `revision`.
    Changes { revision: i64, changes: Vec<Change> },
    /// The history needed to resume was compacted away: this is the whole prefix at
    /// `revision`, and replaces all earlier state.
    Resync {
        revision: i64,
        kvs: Vec<(String, Vec<u8>)>,
        reason: String,
    },
    /// The whole prefix at `revision`, read before watching (a watch started from
    /// revision 0); changes follow from `revision + 1`.
    Initial {
        revision: i64,
        kvs: Vec<(String, Vec<u8>)>,
    },
    /// The watch lost its connection (or, before [`WatchUpdate::Initial`], etcd did not
    /// answer the first read) and is retrying; updates resume after it.
    Disconnected { error: String },
    /// The watch is established: etcd answers. Sent every time the watch (re)opens.
    Live,
}

impl From<etcd_client::KeyValue> for Kv {
    fn from(kv: etcd_client::KeyValue) -> Self {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }
    }
}

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
enum Retry {
    /// Reads and plain puts/deletes: resending is harmless.
    Always,
    /// Compare-and-swap transactions: resend only if the request cannot have arrived.
    IfNotSent,
}

/// What etcd said, without the transport library's framing (`grpc request error:
/// code: ..., message: "..."`): the status message for a gRPC status, else the error.
fn etcd_message(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if !s.message().is_empty() => s.message().to_string(),
        other => other.to_string(),
    }
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

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
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

    async fn client(&self) -> Result<(Client, u64, String), (etcd_client::Error, u64, String)> {
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
    async fn failed(&self, generation: u64) {
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
    async fn call<T, F, Fut>(&self, retry: Retry, mut op: F) -> Result<T, StoreError>
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

    /// Reads every key under `prefix`, at `revision` (or the latest), in pages, all at
    /// one revision. Returns that revision and the keys in key order.
    pub async fn get_prefix(
        &self,
        prefix: &str,
        revision: Option<i64>,
    ) -> Result<(i64, Vec<Kv>), StoreError> {
        const PAGE: i64 = 1000;
        let end = prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut at = revision.unwrap_or(0);
        let mut out = Vec::new();
        loop {
            let (key, end_key) = (start.clone(), end.clone());
            let mut resp = self
                .call(Retry::Always, move |mut c| {
                    let (key, end_key) = (key.clone(), end_key.clone());
                    async move {
                        c.get(
                            key,
                            Some(
                                GetOptions::new()
                                    .with_range(end_key)
                                    .with_limit(PAGE)
                                    .with_revision(at),
                            ),
                        )
                        .await
                    }
                })
                .await?;
            if at == 0 {
                at = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            out.extend(resp.take_kvs().into_iter().map(Kv::from));
            match (more, out.last()) {
                (true, Some(last)) => {
                    start = last.key.as_bytes().to_vec();
                    start.push(0);
                }
                _ => return Ok((at, out)),
            }
        }
    }

    /// Reads one key at the latest revision; `None` if it does not exist. Also returns
    /// the store's revision.
    pub async fn get(&self, key: &str) -> Result<(i64, Option<Kv>), StoreError> {
        let k = key.to_string();
        let mut resp = self
            .call(Retry::Always, move |mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let kv = resp.take_kvs().into_iter().next().map(Kv::from);
        Ok((revision, kv))
    }

    /// The last key under `prefix` in key order, if any.
    pub async fn last_key(&self, prefix: &str) -> Result<Option<Kv>, StoreError> {
        let end = prefix_end(prefix);
        let start = prefix.to_string();
        let mut resp = self
            .call(Retry::Always, move |mut c| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let options = GetOptions::new()
                        .with_range(end)
                        .with_limit(1)
                        .with_sort(SortTarget::Key, SortOrder::Descend);
                    c.get(start, Some(options)).await
                }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next().map(Kv::from))
    }

    /// Writes `key`, optionally under a lease; returns the revision of the write.
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        lease: Option<i64>,
    ) -> Result<i64, StoreError> {
        let (k, v) = (key.to_string(), value.into());
        let resp = self
            .call(Retry::Always, move |mut c| {
                let (k, v) = (k.clone(), v.clone());
                let options = lease.map(|id| PutOptions::new().with_lease(id));
                async move { c.put(k, v, options).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Deletes `key`; returns the revision after the delete and whether it existed.
    pub async fn delete(&self, key: &str) -> Result<(i64, bool), StoreError> {
        let k = key.to_string();
        let resp = self
            .call(Retry::Always, move |mut c| {
                let k = k.clone();
                async move { c.delete(k, None::<DeleteOptions>).await }
            })
            .await?;
        Ok((
            resp.header().map(|h| h.revision()).unwrap_or(0),
            resp.deleted() > 0,
        ))
    }

    /// Runs a transaction. It is resent to another member only if it cannot have
    /// arrived, so a compare-and-swap is never applied twice.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.call(Retry::IfNotSent, move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant_lease(&self, ttl: i64) -> Result<i64, StoreError> {
        let resp = self
            .call(Retry::Always, move |mut c| async move {
                c.lease_grant(ttl, None).await
            })
            .await?;
        Ok(resp.id())
    }

    /// Renews a lease once; returns its remaining TTL in seconds, 0 if it is gone.
    pub async fn keep_alive_once(&self, id: i64) -> Result<i64, StoreError> {
        self.call(Retry::Always, move |mut c| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(resp) => Ok(resp.ttl()),
                None => Ok(0),
            }
        })
        .await
    }

    /// Whether lease `id` still exists (not expired, not revoked).
    pub async fn lease_exists(&self, id: i64) -> Result<bool, StoreError> {
        self.call(Retry::Always, move |mut c| async move {
            c.lease_time_to_live(id, None).await
        })
        .await
        .map(|resp| resp.ttl() > 0)
    }

    /// Revokes a lease, deleting every key under it.
    pub async fn revoke_lease(&self, id: i64) -> Result<(), StoreError> {
        self.call(Retry::Always, move |mut c| async move {
            c.lease_revoke(id).await
        })
        .await
        .map(drop)
    }

    /// Watches every key under `prefix`, starting at `start_revision` (normally the
    /// revision of the last read + 1). The watch runs until the receiver is dropped.
    ///
    /// With `start_revision` 0 the watch is opened at etcd's next revision, then the
    /// prefix is read and delivered as [`WatchUpdate::Initial`] (retried with backoff, a
    /// [`WatchUpdate::Disconnected`] per failed attempt), and the changes after that
    /// read follow: one stream for the initial state, the changes and the
    /// reconnections, with no gap and no event delivered twice.
    pub fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        options: WatchSettings,
    ) -> mpsc::Receiver<WatchUpdate> {
        let (tx, rx) = mpsc::channel(64);
        let store = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move { store.run_watch(prefix, start_revision, options, tx).await });
        rx
    }

    async fn run_watch(
        self,
        prefix: String,
        start_revision: i64,
        settings: WatchSettings,
        tx: mpsc::Sender<WatchUpdate>,
    ) {
        let mut next = start_revision;
        let mut backoff = settings.min_backoff;
        loop {
            if tx.is_closed() {
                return;
            }
            let error = match self.watch_once(&prefix, &mut next, &settings, &tx).await {
                WatchEnd::ReceiverGone => return,
                WatchEnd::Reconnect { error, healthy } => {
                    if healthy {
                        backoff = settings.min_backoff;
                    }
                    error
                }
            };
            tracing::warn!(%error, next_revision = next, "etcd watch lost; reconnecting");
            if tx.send(WatchUpdate::Disconnected { error }).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(settings.max_backoff);
        }
    }

    async fn watch_once(
        &self,
        prefix: &str,
        next: &mut i64,
        settings: &WatchSettings,
        tx: &mpsc::Sender<WatchUpdate>,
    ) -> WatchEnd {
        let (client, generation, endpoint) = match self.client().await {
            Ok(c) => c,
            Err((e, generation, endpoint)) => {
                self.failed(generation).await;
                return WatchEnd::Reconnect {
                    error: format!("{endpoint}: {e}"),
                    healthy: false,
                };
            }
        };
        // prev_kv: a delete carries the lease the key was under (expired or explicit?).
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(*next)
            .with_progress_notify()
            .with_prev_key();
        let mut c = client;
        let opened = tokio::time::timeout(
            self.inner.config.request_timeout,
            c.watch(prefix, Some(options)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.failed(generation).await;
                return WatchEnd::Reconnect {
                    error: format!("{endpoint}: {e}"),
                    healthy: false,
                };
            }
            Err(_) => {
                self.failed(generation).await;
                return WatchEnd::Reconnect {
                    error: format!("{endpoint}: opening the watch timed out"),
                    healthy: false,
                };
            }
        };
        // Without a start revision the watch starts at etcd's next revision, and then the
        // prefix is read: events at or below the read's revision are in it. (The other
        // order, a read and then a watch from the revision after it, makes a watch that
        // starts in the past whenever anything was written in between, and etcd sends
        // such a watch its events only on its next sync, up to 100 ms later.)
        let mut in_initial = 0;
        if *next == 0 {
            match tokio::time::timeout(self.inner.config.request_timeout, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.created() => {}
                Ok(Ok(Some(_))) => {
                    return WatchEnd::Reconnect {
                        error: format!("{endpoint}: the watch answered before it was created"),
                        healthy: false,
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    self.failed(generation).await;
                    return WatchEnd::Reconnect {
                        error: format!("{endpoint}: the watch was not created"),
                        healthy: false,
                    };
                }
            }
            match self.get_prefix(prefix, None).await {
                Ok((revision, kvs)) => {
                    let kvs = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                    if tx
                        .send(WatchUpdate::Initial { revision, kvs })
                        .await
                        .is_err()
                    {
                        return WatchEnd::ReceiverGone;
                    }
                    *next = revision + 1;
                    in_initial = revision;
                }
                Err(e) => {
                    return WatchEnd::Reconnect {
                        error: e.to_string(),
                        healthy: false,
                    }
                }
            }
        }
        if tx.send(WatchUpdate::Live).await.is_err() {
            return WatchEnd::ReceiverGone;
        }
        let mut ticker = tokio::time::interval(settings.progress_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = tokio::time::Instant::now();
        let mut delivered = false;
        loop {
            tokio::select! {
                message = stream.message() => {
                    let resp = match message {
                        Ok(Some(resp)) => resp,
                        Ok(None) => {
                            self.failed(generation).await;
                            return WatchEnd::Reconnect { error: format!("{endpoint}: watch stream closed"), healthy: delivered };
                        }
                        Err(e) => {
                            self.failed(generation).await;
                            return WatchEnd::Reconnect { error: format!("{endpoint}: {e}"), healthy: delivered };
                        }
                    };
                    last_heard = tokio::time::Instant::now();
                    if resp.compact_revision() > 0 {
                        let reason = format!(
                            "revision {} was compacted (oldest kept: {}); re-reading {prefix}",
                            *next, resp.compact_revision()
                        );
                        match self.get_prefix(prefix, None).await {
                            Ok((revision, kvs)) => {
                                let kvs = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                                if tx.send(WatchUpdate::Resync { revision, kvs, reason }).await.is_err() {
                                    return WatchEnd::ReceiverGone;
                                }
                                *next = revision + 1;
                                return WatchEnd::Reconnect { error: "resumed after compaction".into(), healthy: true };
                            }
                            Err(e) => return WatchEnd::Reconnect { error: format!("re-read after compaction: {e}"), healthy: false },
                        }
                    }
                    if resp.canceled() {
                        self.failed(generation).await;
                        return WatchEnd::Reconnect { error: format!("{endpoint}: watch canceled: {}", resp.cancel_reason()), healthy: false };
                    }
                    // Responses without events (created, progress) only prove the stream is
                    // alive. Their header revision is not used to move the resume point:
                    // etcd before 3.4.24/3.5.8 can report progress past events it has not
                    // sent yet (etcd-io/etcd#15220), and trusting it would skip them.
                    if resp.events().is_empty() {
                        continue;
                    }
                    let mut revision = *next - 1;
                    let changes: Vec<Change> = resp.events().iter().filter_map(|event| {
                        let kv = event.kv().filter(|kv| kv.mod_revision() > in_initial)?;
                        revision = revision.max(kv.mod_revision());
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        Some(match event.event_type() {
                            EventType::Put => Change::Put { key, value: kv.value().to_vec() },
                            EventType::Delete => Change::Delete { key, lease: event.prev_kv().map_or(0, |kv| kv.lease()) },
                        })
                    }).collect();
                    if changes.is_empty() {
                        continue;
                    }
                    if tx.send(WatchUpdate::Changes { revision, changes }).await.is_err() {
                        return WatchEnd::ReceiverGone;
                    }
                    *next = revision + 1;
                    delivered = true;
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > settings.progress_interval * 3 {
                        self.failed(generation).await;
                        return WatchEnd::Reconnect {
                            error: format!("{endpoint}: no answer to progress requests for {:?}", last_heard.elapsed()),
                            healthy: delivered,
                        };
                    }
                    if let Err(e) = stream.request_progress().await {
                        self.failed(generation).await;
                        return WatchEnd::Reconnect { error: format!("{endpoint}: {e}"), healthy: delivered };
                    }
                }
                _ = tx.closed() => return WatchEnd::ReceiverGone,
            }
        }
    }
}

enum WatchEnd {
    ReceiverGone,
    Reconnect { error: String, healthy: bool },
}

/// Timing of a watch.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// How often to ask etcd for progress; a watch that has not answered for three of
    /// these is reconnected. Default: 2s.
    pub progress_interval: Duration,
    /// First pause before reconnecting. Default: 100ms.
    pub min_backoff: Duration,
    /// Longest pause between reconnects. Default: 5s.
    pub max_backoff: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            progress_interval: Duration::from_secs(2),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/disco/apps/"), b"/disco/apps0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

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
