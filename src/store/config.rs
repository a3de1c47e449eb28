//! How to reach etcd: the members, auth, TLS and timeouts.

use std::path::PathBuf;
use std::time::Duration;

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
