//! Why an etcd call failed, in words an operator can act on.

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

/// What etcd said, without the transport library's framing (`grpc request error:
/// code: ..., message: "..."`): the status message for a gRPC status, else the error.
pub(super) fn etcd_message(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if !s.message().is_empty() => s.message().to_string(),
        other => other.to_string(),
    }
}
